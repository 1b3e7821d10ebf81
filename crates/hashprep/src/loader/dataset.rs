//! A tokenize output opened for training: every shard memory-mapped and verified against the
//! manifest, with an index from example number to its ids.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::shard::{DocTokens, Manifest, ShardReader};

/// Where an example lives: shard, record batch, row.
#[derive(Debug, Clone, Copy)]
struct DocRef {
    shard: u32,
    batch: u32,
    row: u32,
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
            for (b, batch) in shard.batches().iter().enumerate() {
                for row in 0..batch.num_rows() {
                    docs.push(DocRef {
                        shard: s as u32,
                        batch: b as u32,
                        row: row as u32,
                    });
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

    /// The ids of example `i`, borrowed from the mapped shard.
    pub fn tokens(&self, i: usize) -> DocTokens<'_> {
        let doc = self.docs[i];
        self.shards[doc.shard as usize].row(doc.batch as usize, doc.row as usize)
    }
}
