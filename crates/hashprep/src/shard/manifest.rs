//! `manifest.json`: the list of shards and everything needed to trust and reuse them. Its
//! presence marks a complete output directory; it is always written last, atomically.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TokenWidth;
use crate::corpus::InputFile;
use crate::counts::TokenCounts;
use crate::error::{Error, Result, SkipReason};
use crate::integrity::verify_checksum;
use crate::tokenize::{Encoder, EosSource};
use crate::util::write_atomic;

/// File name of the manifest inside an output directory.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";
/// Version of the on-disk formats described in `schemas/`.
pub(crate) const MANIFEST_VERSION: u32 = 1;

/// One shard as listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardInfo {
    /// File name, relative to the directory.
    pub file: String,
    /// Examples (rows).
    pub rows: u64,
    /// Token ids.
    pub tokens: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// `blake3:<hex>` of the file.
    pub checksum: String,
}

/// The tokenizer the shards were made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerInfo {
    /// Copy of the tokenizer, relative to the directory.
    pub file: String,
    /// `blake3:<hex>` of that file.
    pub fingerprint: String,
    /// What was loaded (`gpt2` or the path given).
    pub source: String,
    /// Number of ids.
    pub vocab_size: usize,
    /// End-of-document token appended to every example, if any.
    pub eos_token: Option<String>,
    /// Its id.
    pub eos_id: Option<u32>,
    /// Where it was taken from (absent in outputs written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_from: Option<EosSource>,
    /// Beginning-of-document token put before every example, if one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token: Option<String>,
    /// Its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_id: Option<u32>,
    /// What loading disabled in the given `tokenizer.json` (truncation, padding); the copy in
    /// the directory is the tokenizer as used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adjusted: Vec<String>,
    /// Which encoder tokenized the text (absent in outputs written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<Encoder>,
}

/// Totals over all shards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    /// Examples written.
    pub documents: u64,
    /// Ids written.
    pub tokens: u64,
    /// Records skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Counts that lose nothing, by name: `special_token_text` (special-token strings found
    /// inside the text), Reddit's `orphan_context` (contexts cut at a missing parent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notices: BTreeMap<String, u64>,
}

impl Totals {
    /// Adds another set of totals (merging task outputs).
    pub fn add(&mut self, other: &Totals) {
        self.documents += other.documents;
        self.tokens += other.tokens;
        for (reason, n) in &other.skipped {
            *self.skipped.entry(reason.clone()).or_default() += n;
        }
        for (name, n) in &other.notices {
            *self.notices.entry(name.clone()).or_default() += n;
        }
    }

    /// Skipped-record counts as `reason -> n`, every reason listed (zeros included).
    pub fn skipped_by_reason(&self) -> BTreeMap<&'static str, u64> {
        SkipReason::ALL
            .iter()
            .map(|r| (r.name(), self.skipped.get(r.name()).copied().unwrap_or(0)))
            .collect()
    }
}

/// The manifest of a tokenize output directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `hashprep-shards`.
    pub kind: String,
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The program that wrote it.
    pub created_by: String,
    /// Tokenizer used.
    pub tokenizer: TokenizerInfo,
    /// Integer type of the ids in every shard.
    pub token_type: TokenWidth,
    /// The shards, in order.
    pub shards: Vec<ShardInfo>,
    /// The counts file, relative to the directory.
    pub counts_file: String,
    /// `blake3:<hex>` of the counts file.
    pub counts_checksum: String,
    /// Totals.
    pub totals: Totals,
    /// Input files of this output (after task partitioning).
    pub inputs: Vec<InputFile>,
    /// Task partition: `[index, count]` per merged task; `[[0, 1]]` for a single run.
    pub tasks: Vec<[usize; 2]>,
    /// The settings that produced the output (format, eos, shard size, ...).
    pub config: serde_json::Value,
}

impl Manifest {
    /// Reads `dir/manifest.json`.
    ///
    /// # Errors
    /// Missing or unparsable manifest, or another kind/version.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotTokenized {
                    dir: dir.to_owned(),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::corrupt(&path, format!("invalid manifest: {e}")))?;
        if manifest.kind != "hashprep-shards" || manifest.version != MANIFEST_VERSION {
            return Err(Error::corrupt(
                &path,
                format!(
                    "kind {:?} version {} is not hashprep-shards v{MANIFEST_VERSION}",
                    manifest.kind, manifest.version
                ),
            ));
        }
        Ok(manifest)
    }

    /// Reads the counts file of `dir`, refusing it unless its bytes match `counts_checksum` and
    /// it records this manifest's tokenizer, whose copy must match its fingerprint too (counts
    /// mean nothing without the tokenizer that made their ids).
    ///
    /// # Errors
    /// Missing, altered or foreign counts file or tokenizer copy.
    pub fn read_counts(&self, dir: &Path) -> Result<TokenCounts> {
        self.read_tokenizer_json(dir)?;
        let path = dir.join(&self.counts_file);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        verify_checksum(&path, &bytes, &self.counts_checksum)?;
        let (counts, fingerprint) = TokenCounts::from_bytes(&bytes, &path)?;
        if fingerprint.as_deref() != Some(self.tokenizer.fingerprint.as_str()) {
            return Err(Error::corrupt(
                &path,
                format!(
                    "records tokenizer {}, manifest says {}",
                    fingerprint.as_deref().unwrap_or("(none)"),
                    self.tokenizer.fingerprint
                ),
            ));
        }
        Ok(counts)
    }

    /// The bytes of the tokenizer copy of `dir`, refused unless they hash to the fingerprint.
    ///
    /// # Errors
    /// Missing, altered or replaced tokenizer file.
    pub fn read_tokenizer_json(&self, dir: &Path) -> Result<Vec<u8>> {
        let path = dir.join(&self.tokenizer.file);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        verify_checksum(&path, &bytes, &self.tokenizer.fingerprint)?;
        Ok(bytes)
    }

    /// Writes `dir/manifest.json` atomically.
    ///
    /// # Errors
    /// I/O failure.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| Error::format(dir, e))?;
        text.push('\n');
        write_atomic(&dir.join(MANIFEST_FILE), text.as_bytes())
    }
}
