//! `hashprep inspect`: what a tokenize output holds, with every shard verified.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::shard::{Manifest, ShardInfo, ShardReader, TokenWidth};
use crate::tokenize::TextTokenizer;

/// A frequent token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopToken {
    /// Its id.
    pub id: u32,
    /// Its text, decoded.
    pub text: String,
    /// Occurrences.
    pub count: u64,
    /// Share of all tokens.
    pub share: f64,
}

/// The result of [`inspect`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// The directory.
    pub dir: PathBuf,
    /// Shards as listed in the manifest (each verified: checksum, rows and tokens).
    pub shards: Vec<ShardInfo>,
    /// Examples in all shards.
    pub rows: u64,
    /// Ids in all shards.
    pub tokens: u64,
    /// Bytes of all shards.
    pub bytes: u64,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Ids that occur at least once.
    pub used_ids: usize,
    /// Integer type of the ids.
    pub token_type: TokenWidth,
    /// Tokenizer source and fingerprint.
    pub tokenizer: String,
    /// Tokenizer fingerprint.
    pub tokenizer_fingerprint: String,
    /// Records skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The most frequent tokens.
    pub top: Vec<TopToken>,
}

/// Reads and verifies the output in `dir`, listing the `top` most frequent tokens.
///
/// # Errors
/// No manifest, or a shard, the counts file or the tokenizer copy that does not match the
/// manifest.
pub fn inspect(dir: &Path, top: usize) -> Result<Inspection> {
    let manifest = Manifest::read(dir)?;
    let (mut rows, mut tokens, mut bytes) = (0u64, 0u64, 0u64);
    for info in &manifest.shards {
        let path = dir.join(&info.file);
        let shard = ShardReader::open(&path, Some(&info.checksum))?;
        let shard_rows = shard.num_rows() as u64;
        let shard_tokens: u64 = shard.documents().map(|(doc, _)| doc.len() as u64).sum();
        if shard_rows != info.rows || shard_tokens != info.tokens {
            return Err(Error::corrupt(
                &path,
                format!(
                    "holds {shard_rows} rows / {shard_tokens} tokens, manifest says {} / {}",
                    info.rows, info.tokens
                ),
            ));
        }
        rows += shard_rows;
        tokens += shard_tokens;
        bytes += info.bytes;
    }
    let counts = manifest.read_counts(dir)?;
    if counts.total() != tokens {
        return Err(Error::corrupt(
            dir.join(&manifest.counts_file),
            format!("counts add up to {}, shards hold {tokens}", counts.total()),
        ));
    }
    let tokenizer = TextTokenizer::from_json_bytes(
        manifest.read_tokenizer_json(dir)?,
        &manifest.tokenizer.source,
    )?;
    let top = counts
        .top(top)
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(id, count)| TopToken {
            id,
            text: tokenizer.decode(&[id]),
            count,
            share: count as f64 / tokens.max(1) as f64,
        })
        .collect();
    Ok(Inspection {
        dir: dir.to_path_buf(),
        rows,
        tokens,
        bytes,
        vocab_size: manifest.tokenizer.vocab_size,
        used_ids: counts.as_slice().iter().filter(|&&c| c > 0).count(),
        token_type: manifest.token_type,
        tokenizer: manifest.tokenizer.source.clone(),
        tokenizer_fingerprint: manifest.tokenizer.fingerprint.clone(),
        skipped: manifest.totals.skipped.clone(),
        shards: manifest.shards,
        top,
    })
}
