//! Sequence-to-sequence batches of dialogue data ([`LoaderConfig::encoder_len`]): each row is one
//! example, its context into the encoder's S positions and its response into the decoder's T.
//!
//! An example is `context ids (each turn closed by the end token) | response ids | end`, with
//! `prefix_len` context ids. The encoder takes the context's last S ids (the turns nearest the
//! response; earlier ones are cut, as `ParlAI` truncates its text); the decoder's first input is the
//! context's last id and its targets are the response, so it predicts exactly the ids that a
//! decoder-only model's loss mask counts on the same example. Both streams are routed on the host,
//! each position by its own stream's ids.

use super::routing::RowContext;
use super::{Core, LoaderConfig, TokenDataset, MAX_BATCH_POSITIONS};
use crate::error::{Error, Result};

/// The rows of one stream: ids, targets and loss mask `[rows * seq_len]`, and per row the id
/// before its first position and its real positions.
pub(super) struct Stream {
    pub(super) inputs: Vec<u32>,
    pub(super) targets: Vec<u32>,
    pub(super) mask: Vec<u8>,
    before: Vec<Option<u32>>,
    pub(super) valid: Vec<usize>,
    seq_len: usize,
}

impl Stream {
    fn with_rows(rows: usize, seq_len: usize) -> Self {
        Self {
            inputs: Vec::with_capacity(rows * seq_len),
            targets: Vec::with_capacity(rows * seq_len),
            mask: Vec::with_capacity(rows * seq_len),
            before: Vec::with_capacity(rows),
            valid: Vec::with_capacity(rows),
            seq_len,
        }
    }

    /// Appends a row from `window` (its ids, then the id after the last input): input `j` is
    /// `window[j]`, its target `window[j + 1]`; padded to `seq_len` with `pad`.
    fn push_row(&mut self, window: &[u32], before: Option<u32>, (loss, pad): (bool, u32)) {
        let real = window.len().saturating_sub(1).min(self.seq_len);
        for j in 0..self.seq_len {
            if j < real {
                self.inputs.push(window[j]);
                self.targets.push(window[j + 1]);
                self.mask.push(u8::from(loss));
            } else {
                self.inputs.push(pad);
                self.targets.push(pad);
                self.mask.push(0);
            }
        }
        self.before.push(before);
        self.valid.push(real);
    }

    /// What the routing rules read.
    pub(super) fn rows(&self) -> RowContext<'_> {
        RowContext {
            inputs: &self.inputs,
            targets: &self.targets,
            before: &self.before,
            valid: &self.valid,
            seq_len: self.seq_len,
        }
    }
}

/// Refuses settings and data that make no sequence-to-sequence batches.
///
/// # Errors
/// Packing or expert parallelism asked, `encoder_len` 0 or too large a batch, or data without
/// a single example that has a context (not dialogue data).
pub(super) fn check(config: &LoaderConfig, encoder_len: usize, data: &TokenDataset) -> Result<()> {
    if config.packing {
        return Err(Error::setting(
            "encoder_len",
            "makes one example per row: turn packing off",
        ));
    }
    if config.expert_parallel != 1 {
        return Err(Error::setting(
            "encoder_len",
            "sequence-to-sequence batches are not split over expert-parallel groups",
        ));
    }
    let positions = (config.batch_size as u64).saturating_mul(encoder_len as u64);
    if encoder_len == 0 || positions > MAX_BATCH_POSITIONS {
        return Err(Error::setting(
            "encoder_len",
            format!(
                "{encoder_len} must be at least 1 and {positions} encoder positions per batch \
                 at most {MAX_BATCH_POSITIONS}"
            ),
        ));
    }
    if (0..data.len()).all(|i| data.prefix_len(i) == 0) {
        return Err(Error::setting(
            "encoder_len",
            "needs dialogue examples, but no example of the data has a context (prefix_len 0 \
             everywhere): tokenize a dialogue format such as reddit",
        ));
    }
    Ok(())
}

impl Core {
    /// The decoder's and the encoder's rows of the examples `docs`.
    ///
    /// # Errors
    /// An id outside the vocabulary, or a shard that shrank (named by shard and row).
    pub(super) fn seq2seq_rows(
        &self,
        docs: impl ExactSizeIterator<Item = usize>,
        encoder_len: usize,
    ) -> Result<(Stream, Stream)> {
        let (rows, t, pad) = (docs.len(), self.config.seq_len, self.config.pad_id);
        let mut decoder = Stream::with_rows(rows, t);
        let mut encoder = Stream::with_rows(rows, encoder_len);
        let mut window = Vec::with_capacity(t.max(encoder_len) + 1);
        let before = |doc: usize, at: usize| {
            at.checked_sub(1)
                .map(|j| self.data.id_checked(doc, j))
                .transpose()
        };
        for doc in docs {
            let n = self.data.lengths()[doc] as usize;
            let prefix = (self.data.prefix_len(doc) as usize).min(n);
            // The context's last S ids, and the id after them (the routes' next id).
            let start = prefix.saturating_sub(encoder_len);
            window.clear();
            if prefix > start {
                self.data
                    .extend_checked(doc, start..(prefix + 1).min(n), &mut window)?;
                if window.len() == prefix - start {
                    window.push(pad); // an example that ends with its context
                }
            }
            encoder.push_row(&window, before(doc, start)?, (false, pad));
            // The response, after the context's last id.
            let first = prefix.saturating_sub(1);
            window.clear();
            self.data
                .extend_checked(doc, first..n.min(first + t + 1), &mut window)?;
            decoder.push_row(&window, before(doc, first)?, (true, pad));
        }
        Ok((decoder, encoder))
    }
}
