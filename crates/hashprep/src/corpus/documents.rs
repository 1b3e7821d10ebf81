//! The one entry point to a corpus: every format, Reddit included, read as a stream of items
//! (examples, skipped records, notices) with the bad-record policy applied.

use std::path::PathBuf;
use std::sync::Arc;

use super::inputs::{expand_inputs, expand_ranges};
use super::reddit::Skipped;
use super::{
    Example, ExampleStream, Format, InputFile, Item, Items, OnError, ProgressFeed, RedditStream,
};
use crate::error::{Error, Result};
use crate::tokenize::TextTokenizer;

/// Where a Reddit read keeps its partitions, and which share of the threads it keeps.
pub(crate) struct RedditRun {
    /// Spill directory of the partitions.
    pub(crate) spill_dir: PathBuf,
    /// This task's index and the number of tasks.
    pub(crate) task: (usize, usize),
    /// Encodes each partition's texts where it is rebuilt (a tokenize run).
    pub(crate) tokenizer: Option<Arc<TextTokenizer>>,
    /// Phase 2 of a shared spill: this task's partitions (the files of each), and the records
    /// phase 1 skipped that it reports.
    pub(crate) shared: Option<(Vec<Vec<PathBuf>>, Skipped)>,
}

/// The items of `files` read as `format`, in order. Reddit dumps are partitioned by thread
/// under `reddit.spill_dir` first (every file together); other formats stream file by file,
/// each whole or the range of documents it names.
pub(crate) fn items(
    files: Vec<InputFile>,
    format: &Format,
    on_error: OnError,
    reddit: RedditRun,
    feed: &ProgressFeed,
) -> Items {
    match format {
        Format::Reddit(_) if files.iter().any(|f| f.documents.is_some()) => {
            Box::new(std::iter::once(Err(Error::setting(
                "inputs",
                "document ranges select documents of a file; Reddit examples are rebuilt across \
                 files: give whole dumps",
            ))))
        }
        Format::Reddit(options) => {
            let stream = match reddit.shared {
                Some((partitions, skipped)) => {
                    RedditStream::from_spill(partitions, skipped, options.clone())
                }
                None => RedditStream::new(
                    files.into_iter().map(|f| f.path).collect(),
                    reddit.spill_dir,
                    options.clone(),
                    reddit.task,
                    on_error,
                ),
            };
            Box::new(
                stream
                    .with_progress(feed.clone())
                    .encoding_with(reddit.tokenizer),
            )
        }
        _ => Box::new(ExampleStream::new(
            files,
            format.clone(),
            on_error,
            Some(feed.bytes.clone()),
        )),
    }
}

/// The examples of a corpus, read by [`read_documents`]: bad records skipped or fatal per the
/// policy; the first `Err` ends the stream.
pub struct Documents {
    items: Items,
    /// Reddit: the partitions, removed when the stream drops.
    _spill: Option<tempfile::TempDir>,
}

impl Iterator for Documents {
    type Item = Result<Example>;

    fn next(&mut self) -> Option<Result<Example>> {
        loop {
            match self.items.next()? {
                Ok(Item::Example(example)) => return Some(Ok(example)),
                Ok(Item::Dialogue(texts, dialogue)) => {
                    return Some(Ok(dialogue.to_example(&texts)))
                }
                Ok(Item::Skipped(_) | Item::Notice(_)) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

impl Example {
    /// The example's text with its context turns before it, one per line: what a tokenizer
    /// learns from.
    pub fn full_text(self) -> String {
        let mut parts = self.context;
        parts.push(self.text);
        parts.join("\n")
    }
}

/// Part of an input file: all its documents, or those in `[start, end)` in reading order (every
/// record counts, a bad one included). The Wikitext-103 test file gives a validation and a test
/// split this way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRange {
    /// The file (any format and compression `tokenize` reads).
    pub path: PathBuf,
    /// Documents `[start, end)`; all when absent.
    #[serde(default)]
    pub documents: Option<[usize; 2]>,
}

impl InputRange {
    /// The documents of the range read as `format`, every bad record an error (Reddit dumps
    /// take no range).
    ///
    /// # Errors
    /// The file does not exist; through the iterator, a bad record or a range past the end of
    /// the file.
    pub fn read(&self, format: &Format) -> Result<Documents> {
        let files = expand_ranges(std::slice::from_ref(self))?;
        read_files(files, format, OnError::Fail, &ProgressFeed::default())
    }
}

/// Reads the examples of `inputs` (files, directories or globs; plain or compressed) as
/// `format`. Reddit dumps are partitioned by thread into a temporary directory first.
///
/// # Errors
/// An input that does not exist; errors while reading come through the iterator.
pub fn read_documents(inputs: &[PathBuf], format: &Format, on_error: OnError) -> Result<Documents> {
    read_files(
        expand_inputs(inputs)?,
        format,
        on_error,
        &ProgressFeed::default(),
    )
}

/// The documents of `files`, reporting the bytes read to `feed`.
pub(crate) fn read_files(
    files: Vec<InputFile>,
    format: &Format,
    on_error: OnError,
    feed: &ProgressFeed,
) -> Result<Documents> {
    let spill = match format {
        Format::Reddit(_) => Some(
            tempfile::Builder::new()
                .prefix("hashprep-reddit-")
                .tempdir()
                .map_err(|e| crate::Error::io(std::env::temp_dir(), e))?,
        ),
        _ => None,
    };
    let reddit = RedditRun {
        spill_dir: spill
            .as_ref()
            .map_or_else(PathBuf::new, |dir| dir.path().to_path_buf()),
        task: (0, 1),
        tokenizer: None,
        shared: None,
    };
    Ok(Documents {
        items: items(files, format, on_error, reddit, feed),
        _spill: spill,
    })
}
