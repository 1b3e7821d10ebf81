//! The sweep's data: the splits named by the config, tokenized once into `OUT/data/` with the
//! tokenizer the config chooses (trained on the training split, or a given one). Document
//! ranges select part of a file (the shipped Wikitext-103 test file gives both validation and
//! test halves). Rerunning finds everything done and does nothing.

use std::path::{Path, PathBuf};

use hashprep::{
    tokenize_ranges, Format, InputRange, RunOptions, TokenizeSettings, TokenizerChoice,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the sweep's data is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepData {
    /// Input format of every source.
    pub format: Format,
    /// `word` (word-level, trained), `bpe` (byte-level BPE, trained), `gpt2`, or the path of a
    /// `tokenizer.json`.
    pub tokenizer: String,
    /// `word`: ids for words seen at least this often (default 3).
    #[serde(default)]
    pub min_count: Option<u64>,
    /// `bpe`: vocabulary size (default 8008, the paper's).
    #[serde(default)]
    pub vocab_size: Option<usize>,
    /// End-of-document token (default: the tokenizer's usual one).
    #[serde(default)]
    pub eos_token: Option<String>,
    /// Training split.
    pub train: Vec<InputRange>,
    /// Validation split.
    pub valid: Vec<InputRange>,
    /// Test split.
    pub test: Vec<InputRange>,
}

/// The three tokenize outputs.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Training data.
    pub train: PathBuf,
    /// Validation data.
    pub valid: PathBuf,
    /// Test data.
    pub test: PathBuf,
}

/// Makes (or finds) the data of `spec` under `dir`.
///
/// # Errors
/// Unreadable inputs, a document range past a file's end, or a `dir` prepared with other
/// settings.
pub(crate) fn prepare(spec: &SweepData, dir: &Path, progress: bool) -> Result<PreparedData> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let record = dir.join("data-config.json");
    let wanted = serde_json::to_vec_pretty(spec).expect("serializable");
    match std::fs::read(&record) {
        Ok(found) if found != wanted => {
            return Err(Error::BadRecord {
                path: record,
                problem: "the data there was made with other [data] settings; use another \
                          output folder or start over with `force`"
                    .into(),
            })
        }
        Ok(_) => {}
        Err(_) => hashprep::util::write_atomic(&record, &wanted)?,
    }
    let choice = TokenizerChoice::from_name(
        &spec.tokenizer,
        spec.min_count,
        spec.vocab_size,
        spec.eos_token.as_deref(),
    );
    let tokenizer = choice.resolve(&spec.train, &spec.format, &dir.join("tokenizer.json"))?;
    let mut settings = TokenizeSettings::new(spec.format.clone(), tokenizer);
    settings.eos_token.clone_from(&spec.eos_token);
    let options = RunOptions {
        progress,
        ..RunOptions::default()
    };
    let split = |name: &str, sources: &[InputRange]| -> Result<PathBuf> {
        let out = dir.join(name);
        tokenize_ranges(&settings, sources, &out, &options)?;
        Ok(out)
    };
    Ok(PreparedData {
        train: split("train", &spec.train)?,
        valid: split("valid", &spec.valid)?,
        test: split("test", &spec.test)?,
    })
}
