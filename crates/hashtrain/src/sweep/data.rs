//! The sweep's data: the splits named by the config, tokenized once into `OUT/data/` with the
//! tokenizer the config chooses (trained on the training split, or a given one). Document
//! ranges select part of a file (the shipped Wikitext-103 test file gives both validation and
//! test halves). Rerunning finds everything done and does nothing.

use std::path::{Path, PathBuf};

use hashprep::{
    tokenize_ranges, Format, InputRange, RunOptions, TokenizeSettings, TokenizerChoice,
};
use serde::{Deserialize, Serialize};

use super::finetune::FinetunePlan;
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

/// The three tokenize outputs, and the fine-tuning data's two.
#[derive(Debug, Clone)]
pub struct PreparedData {
    /// Training data.
    pub train: PathBuf,
    /// Validation data.
    pub valid: PathBuf,
    /// Test data.
    pub test: PathBuf,
    /// `[finetune]`: its training and validation data, tokenized with the sweep's tokenizer.
    pub finetune: Option<(PathBuf, PathBuf)>,
}

/// Makes (or finds) the data of `spec` under `dir`.
///
/// # Errors
/// Unreadable inputs, a document range past a file's end, or a `dir` prepared with other
/// settings.
pub(crate) fn prepare(
    spec: &SweepData,
    finetune: Option<&FinetunePlan>,
    dir: &Path,
    progress: bool,
) -> Result<PreparedData> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    same_settings(&dir.join("data-config.json"), spec, "[data]")?;
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
    let prepared = PreparedData {
        train: split("train", &spec.train)?,
        valid: split("valid", &spec.valid)?,
        test: split("test", &spec.test)?,
        finetune: None,
    };
    let Some(plan) = finetune else {
        return Ok(prepared);
    };
    let sources = (&plan.format, &plan.train, &plan.valid);
    same_settings(&dir.join("finetune-config.json"), &sources, "[finetune]")?;
    if let Some(format) = &plan.format {
        settings.format = format.clone();
    }
    let split = |name: &str, sources: &[InputRange]| -> Result<PathBuf> {
        let out = dir.join(name);
        tokenize_ranges(&settings, sources, &out, &options)?;
        Ok(out)
    };
    let finetune = (
        split("finetune-train", &plan.train)?,
        split("finetune-valid", &plan.valid)?,
    );
    Ok(PreparedData {
        finetune: Some(finetune),
        ..prepared
    })
}

/// Records `settings` in `record` the first time; refuses data made with other settings.
fn same_settings(record: &Path, settings: &impl Serialize, table: &str) -> Result<()> {
    let wanted = serde_json::to_vec_pretty(settings).expect("serializable");
    match std::fs::read(record) {
        Ok(found) if found != wanted => Err(Error::BadRecord {
            path: record.to_owned(),
            problem: format!(
                "the data there was made with other {table} settings; use another output \
                 folder or start over with `force`"
            ),
        }),
        Ok(_) => Ok(()),
        Err(_) => hashprep::util::write_atomic(record, &wanted).map_err(Into::into),
    }
}
