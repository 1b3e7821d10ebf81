//! A tokenize output opened for training: every shard memory-mapped and verified against the
//! manifest, with an index from example number to its ids.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::shard::{DocTokens, Manifest, ShardReader};

/// Where an example lives: shard, record batch, row in the batch, row in the shard.
#[derive(Debug, Clone, Copy)]
struct DocRef {
    shard: u32,
    batch: u32,
    row: u32,
    shard_row: u32,
}

/// The examples of a tokenize output, readable by number without copying.
pub struct TokenDataset {
    dir: PathBuf,
    manifest: Manifest,
    shards: Vec<ShardReader>,
    docs: Vec<DocRef>,
    lengths: Vec<u32>,
    prefix_lens: Vec<u32>,
}

impl std::fmt::Debug for TokenDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDataset")
            .field("dir", &self.dir)
            .field("docs", &self.docs.len())
            .finish_non_exhaustive()
    }
}

impl TokenDataset {
    /// Opens `dir`, verifying every shard's checksum and row count, the counts file and the
    /// tokenizer copy against the manifest.
    ///
    /// # Errors
    /// No manifest, or a shard, the counts or the tokenizer missing, truncated or altered since
    /// they were written.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::read(dir)?;
        manifest.read_counts(dir)?;
        let mut shards = Vec::with_capacity(manifest.shards.len());
        let (mut docs, mut lengths, mut prefix_lens) = (Vec::new(), Vec::new(), Vec::new());
        for (s, info) in manifest.shards.iter().enumerate() {
            let path = dir.join(&info.file);
            let shard = ShardReader::open(&path, Some(&info.checksum))?;
            let mut shard_row = 0u32;
            for (b, batch) in shard.batches().iter().enumerate() {
                for row in 0..batch.num_rows() {
                    docs.push(DocRef {
                        shard: s as u32,
                        batch: b as u32,
                        row: row as u32,
                        shard_row,
                    });
                    shard_row += 1;
                }
            }
            for (tokens, prefix) in shard.documents() {
                lengths.push(tokens.len() as u32);
                prefix_lens.push(prefix);
            }
            if shard.num_rows() as u64 != info.rows {
                return Err(Error::corrupt(
                    &path,
                    format!("{} rows, manifest says {}", shard.num_rows(), info.rows),
                ));
            }
            shards.push(shard);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            shards,
            docs,
            lengths,
            prefix_lens,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// True without examples.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Length in ids of every example.
    pub fn lengths(&self) -> &[u32] {
        &self.lengths
    }

    /// Context ids at the start of example `i` (0 for plain text).
    pub fn prefix_len(&self, i: usize) -> u32 {
        self.prefix_lens[i]
    }

    /// The ids of example `i`, borrowed from the mapped shard. Reading them faults (SIGBUS)
    /// if the shard was truncated since it was opened: [`TokenDataset::tokens_checked`] checks
    /// first.
    pub fn tokens(&self, i: usize) -> DocTokens<'_> {
        let doc = self.docs[i];
        self.shards[doc.shard as usize].row(doc.batch as usize, doc.row as usize)
    }

    /// The ids of example `i`, once its shard is checked to have its length still
    /// ([`ShardReader::check_unchanged`]).
    ///
    /// # Errors
    /// The shard shrank since it was opened.
    pub fn tokens_checked(&self, i: usize) -> Result<DocTokens<'_>> {
        self.shards[self.docs[i].shard as usize].check_unchanged()?;
        Ok(self.tokens(i))
    }

    /// Appends the ids at `range` of example `i` to `out`.
    ///
    /// # Errors
    /// An id outside the vocabulary (a foreign or altered shard), named by shard and row; the
    /// shard shrank since it was opened.
    pub fn extend_checked(
        &self,
        i: usize,
        range: std::ops::Range<usize>,
        out: &mut Vec<u32>,
    ) -> Result<()> {
        let start = out.len();
        self.tokens_checked(i)?.extend_into(range.clone(), out);
        let vocab = self.manifest.tokenizer.vocab_size;
        match out[start..].iter().position(|&id| id as usize >= vocab) {
            Some(offset) => Err(self.foreign_id(i, range.start + offset, out[start + offset])),
            None => Ok(()),
        }
    }

    /// The id at `position` of example `i`.
    ///
    /// # Errors
    /// An id outside the vocabulary, named by shard and row; the shard shrank since it was
    /// opened.
    pub fn id_checked(&self, i: usize, position: usize) -> Result<u32> {
        let id = self.tokens_checked(i)?.get(position);
        if id as usize >= self.manifest.tokenizer.vocab_size {
            return Err(self.foreign_id(i, position, id));
        }
        Ok(id)
    }

    fn foreign_id(&self, i: usize, position: usize, id: u32) -> Error {
        let doc = self.docs[i];
        Error::corrupt(
            self.dir
                .join(&self.manifest.shards[doc.shard as usize].file),
            format!(
                "row {}: id {id} at position {position} is outside the vocabulary of {} ids \
                 (a shard of another tokenizer, or altered)",
                doc.shard_row, self.manifest.tokenizer.vocab_size
            ),
        )
    }
}
