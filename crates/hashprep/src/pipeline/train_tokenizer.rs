//! Tokenizer training over the same readers as `tokenize`, and the choice of a run's tokenizer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::progress::Progress;
use crate::corpus::{expand_inputs, read_files, Format, InputRange, OnError, ProgressFeed};
use crate::error::Result;
use crate::tokenize::{train_tokenizer, TextTokenizer, TokenizerKind, TrainOptions};
use crate::util::write_atomic;

/// Trains a tokenizer on every document of `inputs` (files, directories or globs) read as
/// `format`; a progress bar on stderr when `progress`.
///
/// # Errors
/// Unreadable inputs, a bad record under [`OnError::Fail`], or a corpus with nothing to learn.
pub fn train_tokenizer_files(
    inputs: &[PathBuf],
    format: &Format,
    on_error: OnError,
    options: &TrainOptions,
    progress: bool,
) -> Result<TextTokenizer> {
    let files = expand_inputs(inputs)?;
    let total: u64 = files.iter().map(|f| f.bytes).sum();
    let feed = ProgressFeed::default();
    let bar = Progress::new(total, progress, "train-tokenizer");
    let documents = read_files(files, format, on_error, &feed)?;
    // The trainer takes plain strings: a fatal read error stops the stream and is reported after.
    let failure = Mutex::new(None);
    let mut docs = 0u64;
    let texts = documents.map_while(|example| match example {
        Ok(example) => {
            docs += 1;
            if docs.is_multiple_of(1024) {
                bar.update_from(&feed, docs, 0);
            }
            Some(example.full_text())
        }
        Err(e) => {
            *failure.lock().expect("not poisoned") = Some(e);
            None
        }
    });
    let trained = train_tokenizer(options, texts);
    bar.finish();
    if let Some(err) = failure.into_inner().expect("not poisoned") {
        return Err(err);
    }
    trained
}

/// How a run gets its tokenizer: one that exists (`gpt2` or a `tokenizer.json` path), or one
/// trained on the run's training split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizerChoice {
    /// `gpt2` or the path of a `tokenizer.json`.
    Existing(String),
    /// Trained with these options.
    Train(TrainOptions),
}

impl TokenizerChoice {
    /// `word` or `bpe` (trained; `min_count` / `vocab_size` and `eos_token` when given, the
    /// defaults otherwise), or any other name as an existing tokenizer.
    pub fn from_name(
        name: &str,
        min_count: Option<u64>,
        vocab_size: Option<usize>,
        eos_token: Option<&str>,
    ) -> Self {
        let Some(mut kind) = TokenizerKind::from_name(name) else {
            return TokenizerChoice::Existing(name.to_owned());
        };
        match &mut kind {
            TokenizerKind::Word { min_count: m } => *m = min_count.unwrap_or(*m),
            TokenizerKind::Bpe { vocab_size: v } => *v = vocab_size.unwrap_or(*v),
        }
        let mut options = TrainOptions::new(kind);
        if let Some(eos) = eos_token {
            eos.clone_into(&mut options.eos_token);
        }
        TokenizerChoice::Train(options)
    }

    /// The tokenizer to tokenize with ([`TokenizeSettings::new`]'s `tokenizer`): the existing
    /// one, or one trained on the documents of `train` read as `format` and written to `dest`
    /// (kept when `dest` exists: a rerun trains nothing).
    ///
    /// # Errors
    /// Unreadable training inputs, a bad record, or a training failure.
    ///
    /// [`TokenizeSettings::new`]: crate::TokenizeSettings::new
    pub fn resolve(&self, train: &[InputRange], format: &Format, dest: &Path) -> Result<String> {
        let options = match self {
            TokenizerChoice::Existing(name) => return Ok(name.clone()),
            TokenizerChoice::Train(options) => options,
        };
        if !dest.exists() {
            let mut documents = Vec::with_capacity(train.len());
            for range in train {
                documents.push(range.read(format)?);
            }
            let failure = Mutex::new(None);
            let texts = documents
                .into_iter()
                .flatten()
                .map_while(|example| match example {
                    Ok(example) => Some(example.full_text()),
                    Err(e) => {
                        *failure.lock().expect("not poisoned") = Some(e);
                        None
                    }
                });
            let trained = train_tokenizer(options, texts);
            if let Some(err) = failure.into_inner().expect("not poisoned") {
                return Err(err);
            }
            write_atomic(dest, trained?.json())?;
        }
        Ok(dest.to_string_lossy().into_owned())
    }
}
