//! Tokenizer training over the same readers as `tokenize`, with its progress bar.

use std::path::PathBuf;
use std::sync::Mutex;

use super::progress::Progress;
use crate::corpus::{expand_inputs, read_with_progress, Format, OnError, ProgressFeed};
use crate::error::Result;
use crate::tokenize::{train_tokenizer, TextTokenizer, TrainOptions};

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
    let total: u64 = expand_inputs(inputs)?.iter().map(|f| f.bytes).sum();
    let feed = ProgressFeed::default();
    let bar = Progress::new(total, progress, "train-tokenizer");
    let documents = read_with_progress(inputs, format, on_error, &feed)?;
    // The trainer takes plain strings: a fatal read error stops the stream and is reported after.
    let failure = Mutex::new(None);
    let mut docs = 0u64;
    let texts = documents.map_while(|example| match example {
        Ok(example) => {
            docs += 1;
            if docs % 1024 == 0 {
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
