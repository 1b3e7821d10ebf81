//! The sweep's data: the splits named by the config, tokenized once into `OUT/data/` with a
//! tokenizer trained on the training split (or a given one). Document ranges select part of a
//! file (the shipped Wikitext-103 test file gives both validation and test halves); such splits
//! are written as JSON Lines first. Rerunning finds everything done and does nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use hashprep::Format;
use hashprep::{tokenize, RunOptions, TokenizeSettings};
use hashprep::{train_tokenizer, TokenizerKind, TrainOptions};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Part of an input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The file (any format and compression `hashprep tokenize` reads).
    pub path: PathBuf,
    /// Documents `[start, end)` of the file, in reading order; all when absent.
    #[serde(default)]
    pub documents: Option<[usize; 2]>,
}

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
    pub train: Vec<Source>,
    /// Validation split.
    pub valid: Vec<Source>,
    /// Test split.
    pub test: Vec<Source>,
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
pub fn prepare(spec: &SweepData, dir: &Path, progress: bool) -> Result<PreparedData> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let record = dir.join("data-config.json");
    let wanted = serde_json::to_vec_pretty(spec).expect("serializable");
    match std::fs::read(&record) {
        Ok(found) if found != wanted => {
            return Err(Error::BadInput(format!(
            "{}: the data there was made with other [data] settings; use another --out or --force",
            dir.display()
        )))
        }
        Ok(_) => {}
        Err(_) => hashprep::util::write_atomic(&record, &wanted)?,
    }
    let tokenizer = tokenizer_for(spec, dir)?;
    let mut settings = TokenizeSettings::new(spec.format.clone(), tokenizer);
    settings.eos_token.clone_from(&spec.eos_token);
    let options = RunOptions {
        progress,
        ..RunOptions::default()
    };
    let split = |name: &str, sources: &[Source]| -> Result<PathBuf> {
        let out = dir.join(name);
        if sources.iter().all(|s| s.documents.is_none()) {
            let inputs: Vec<PathBuf> = sources.iter().map(|s| s.path.clone()).collect();
            tokenize(&settings, &inputs, &out, &options)?;
        } else {
            let jsonl = dir.join(format!("{name}.jsonl"));
            write_documents(&spec.format, sources, &jsonl)?;
            let mut as_jsonl = settings.clone();
            as_jsonl.format = Format::Jsonl {
                text_field: "text".into(),
            };
            tokenize(&as_jsonl, &[jsonl], &out, &options)?;
        }
        Ok(out)
    };
    Ok(PreparedData {
        train: split("train", &spec.train)?,
        valid: split("valid", &spec.valid)?,
        test: split("test", &spec.test)?,
    })
}

/// The tokenizer to use: trained once on the training split for `word` / `bpe`.
fn tokenizer_for(spec: &SweepData, dir: &Path) -> Result<String> {
    let kind = match spec.tokenizer.as_str() {
        "word" => TokenizerKind::Word {
            min_count: spec.min_count.unwrap_or(3),
        },
        "bpe" => TokenizerKind::Bpe {
            vocab_size: spec.vocab_size.unwrap_or(8008),
        },
        other => return Ok(other.to_owned()),
    };
    let path = dir.join("tokenizer.json");
    if !path.exists() {
        let texts = documents(&spec.format, &spec.train)?;
        let mut options = TrainOptions::new(kind);
        if let Some(eos) = &spec.eos_token {
            options.eos_token.clone_from(eos);
        }
        let tokenizer = train_tokenizer(&options, texts.into_iter())?;
        hashprep::util::write_atomic(&path, tokenizer.json())?;
    }
    Ok(path.to_string_lossy().into_owned())
}

/// The documents of `sources`, each range applied.
fn documents(format: &Format, sources: &[Source]) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for source in sources {
        let [start, end] = source.documents.unwrap_or([0, usize::MAX]);
        let mut seen = 0;
        for record in format.open(&source.path, None)?.take(end) {
            if seen >= start {
                texts.push(record?.text);
            }
            seen += 1;
        }
        if end != usize::MAX && seen < end {
            return Err(Error::BadInput(format!(
                "{}: documents [{start}, {end}) asked for, but the file holds {seen}",
                source.path.display()
            )));
        }
    }
    Ok(texts)
}

/// Writes the selected documents as JSON Lines (`{"text": ...}`), atomically.
fn write_documents(format: &Format, sources: &[Source], path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    for text in documents(format, sources)? {
        serde_json::to_writer(&mut bytes, &serde_json::json!({ "text": text }))
            .expect("a string serializes");
        bytes.write_all(b"\n").expect("writing to memory");
    }
    hashprep::util::write_atomic(path, &bytes)?;
    Ok(())
}
