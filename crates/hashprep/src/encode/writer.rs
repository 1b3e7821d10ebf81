//! Writing: encoded chunks applied strictly in input order to the shards, the counts and the
//! journal, which a rerun resumes from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::chunks::{Encoded, EncodedChunk, Message};
use crate::counts::TokenCounts;
use crate::error::{Error, Result};
use crate::shard::journal::{Journal, JournalEntry};
use crate::shard::{shard_file_name, ShardInfo, ShardReader, ShardWriter, TokenWidth, Totals};
use crate::tokenize::TextTokenizer;

/// The notice counting special-token strings written in the text.
const SPECIAL_TOKEN_TEXT: &str = "special_token_text";

/// Writer loop on the calling thread: applies encoded chunks strictly in sequence order,
/// calling `written` with the totals after each.
/// On failure the caller drops the writer: the shard in progress stays under its temporary
/// name, as after a kill.
pub(crate) fn write_in_order(
    results: &Receiver<Message>,
    (credits, recycle): (&Sender<()>, &Sender<Vec<u32>>),
    writer: &mut OutputWriter,
    journal: &mut Journal,
    written: &dyn Fn(&Totals),
    cancel: Option<&AtomicBool>,
) -> Result<()> {
    let mut pending: HashMap<u64, EncodedChunk> = HashMap::new();
    let mut next = 0u64;
    let mut total: Option<u64> = None;
    while total != Some(next) {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(Error::Interrupted);
        }
        let message = match results.recv_timeout(Duration::from_millis(100)) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Internal("the reader stopped unexpectedly".into()))
            }
        };
        match message {
            Message::Failed(e) => return Err(e),
            Message::ReaderDone { chunks } => total = Some(chunks),
            Message::Chunk(chunk) => {
                pending.insert(chunk.seq, chunk);
                while let Some(chunk) = pending.remove(&next) {
                    writer.write_chunk(&chunk, journal)?;
                    let _ = recycle.try_send(chunk.ids);
                    next += 1;
                    let _ = credits.send(());
                    written(&writer.totals);
                }
            }
        }
    }
    Ok(())
}

/// The state of the output being written: current shard, finished shards, counts, totals.
pub(crate) struct OutputWriter {
    pub(crate) dir: PathBuf,
    pub(crate) width: TokenWidth,
    pub(crate) tokenizer_fingerprint: String,
    pub(crate) shard_bytes: u64,
    pub(crate) current: Option<ShardWriter>,
    pub(crate) shards: Vec<ShardInfo>,
    pub(crate) counts: TokenCounts,
    pub(crate) totals: Totals,
    /// Stream items consumed (examples and skipped records).
    pub(crate) items: u64,
    /// Testing: fail, as if killed, once this many shards are complete and the next is begun.
    pub(crate) halt_after_shards: Option<usize>,
    /// Write the `id` and `subreddit` columns (dialogue data).
    pub(crate) with_sources: bool,
}

impl OutputWriter {
    /// Picks up after the journaled shards: their counts are recomputed from the files.
    pub(crate) fn resume(
        dir: &Path,
        width: TokenWidth,
        tokenizer: &TextTokenizer,
        entries: &[JournalEntry],
        shard_bytes: u64,
    ) -> Result<Self> {
        let mut counts = TokenCounts::new(tokenizer.vocab_size());
        for entry in entries {
            let shard = ShardReader::open(&dir.join(&entry.shard.file), None)?;
            let mut ids = Vec::new();
            for (doc, _) in shard.documents() {
                ids.clear();
                doc.for_each(|id| ids.push(id));
                counts.add(&ids);
            }
        }
        let last = entries.last();
        Ok(Self {
            dir: dir.to_path_buf(),
            width,
            tokenizer_fingerprint: tokenizer.fingerprint().to_owned(),
            shard_bytes: shard_bytes.max(1),
            current: None,
            shards: entries.iter().map(|e| e.shard.clone()).collect(),
            counts,
            totals: last.map(|e| e.totals.clone()).unwrap_or_default(),
            items: last.map_or(0, |e| e.items),
            halt_after_shards: None,
            with_sources: false,
        })
    }

    pub(super) fn write_chunk(
        &mut self,
        chunk: &EncodedChunk,
        journal: &mut Journal,
    ) -> Result<()> {
        let mut offset = 0usize;
        for item in &chunk.items {
            self.items += 1;
            match *item {
                Encoded::Notice(name) => {
                    *self.totals.notices.entry(name.to_owned()).or_default() += 1;
                }
                Encoded::Skipped(reason) => {
                    *self
                        .totals
                        .skipped
                        .entry(reason.name().to_owned())
                        .or_default() += 1;
                }
                Encoded::Example {
                    len,
                    prefix_len,
                    source,
                    special_strings,
                } => {
                    let ids = &chunk.ids[offset..offset + len as usize];
                    offset += len as usize;
                    if self.current.is_none() {
                        let path = self.dir.join(shard_file_name(self.shards.len()));
                        self.current = Some(ShardWriter::create_with(
                            &path,
                            self.width,
                            &self.tokenizer_fingerprint,
                            self.with_sources,
                        )?);
                    }
                    let shard = self.current.as_mut().expect("just created");
                    let source = source.map(|at| chunk.sources.source(at));
                    shard.push_with_source_ref(ids, prefix_len, source)?;
                    if self
                        .halt_after_shards
                        .is_some_and(|limit| self.shards.len() >= limit)
                    {
                        let done = self.shards.len();
                        return Err(Error::setting(
                            "halt_after_shards",
                            format!("halted the run after {done} shards"),
                        ));
                    }
                    self.counts.add(ids);
                    if special_strings > 0 {
                        *self
                            .totals
                            .notices
                            .entry(SPECIAL_TOKEN_TEXT.to_owned())
                            .or_default() += special_strings;
                    }
                    self.totals.documents += 1;
                    self.totals.tokens += u64::from(len);
                    if shard.data_bytes() >= self.shard_bytes {
                        self.close_shard(journal)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn close_shard(&mut self, journal: &mut Journal) -> Result<()> {
        if let Some(shard) = self.current.take() {
            let info = shard.finish()?;
            self.shards.push(info.clone());
            journal.append(&JournalEntry {
                shard: info,
                items: self.items,
                totals: self.totals.clone(),
            })?;
        }
        Ok(())
    }

    pub(crate) fn finish(
        mut self,
        journal: &mut Journal,
    ) -> Result<(Vec<ShardInfo>, Totals, TokenCounts)> {
        self.close_shard(journal)?;
        Ok((self.shards, self.totals, self.counts))
    }
}
