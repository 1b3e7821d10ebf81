//! Corpus readers: turn input files of a given [`Format`] into a stream of [`Example`]s.
//!
//! Readers report a bad record as [`Error::BadRecord`] and keep going; any other error ends the
//! file. What to do with bad records (fail or skip) is the caller's policy.

pub(crate) mod decompress;
mod dialogue;
mod documents;
mod inputs;
mod jsonl;
mod lines;
mod packed;
pub(crate) mod reddit;
mod stream;
mod text;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub(crate) use decompress::open_input;
pub(crate) use dialogue::{Dialogue, SharedTexts};
pub(crate) use documents::{items, read_files, RedditRun};
pub use documents::{read_documents, Documents, InputRange};
pub use inputs::InputFile;
pub(crate) use inputs::{check_task, expand_inputs, expand_ranges, partition_for_task};
pub(crate) use packed::PackedTexts;
pub use reddit::{RedditFilter, SpillTask, SpillUnit};
pub(crate) use stream::{ExampleStream, Item, Items, ProgressFeed, RedditStream};

use crate::error::{Error, Result};
use jsonl::JsonlRecords;
use lines::Lines;
use text::{Grouping, TextRecords};

/// What to do with a bad record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Stop with an error naming the file and line (the default).
    #[default]
    Fail,
    /// Skip the record, count it by reason, and go on.
    Skip,
}

impl OnError {
    /// Every choice.
    pub const ALL: [OnError; 2] = [OnError::Fail, OnError::Skip];

    /// Its name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OnError::Fail => "fail",
            OnError::Skip => "skip",
        }
    }

    /// The choice called `name`.
    ///
    /// # Errors
    /// None is; the error lists them.
    pub fn from_name(name: &str) -> crate::Result<Self> {
        crate::util::by_name("on_error", name, &Self::ALL, Self::name)
    }
}

/// One training example: a plain document, or a dialogue turn with its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Context turns, oldest first (empty for plain documents).
    pub context: Vec<String>,
    /// The document text, or the response of a dialogue example.
    pub text: String,
    /// Where a dialogue example comes from (Reddit: comment id and subreddit).
    pub source: Option<Source>,
}

/// The origin of a dialogue example, kept as shard columns so users can filter and trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The responding record's id.
    pub id: String,
    /// Its subreddit.
    pub subreddit: String,
}

/// A [`Source`] borrowed from where it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceRef<'a> {
    pub(crate) id: &'a str,
    pub(crate) subreddit: &'a str,
}

impl Source {
    pub(crate) fn borrowed(&self) -> SourceRef<'_> {
        SourceRef {
            id: &self.id,
            subreddit: &self.subreddit,
        }
    }
}

impl SourceRef<'_> {
    pub(crate) fn to_source(self) -> Source {
        Source {
            id: self.id.to_owned(),
            subreddit: self.subreddit.to_owned(),
        }
    }
}

impl Example {
    /// A plain document without context.
    pub fn document(text: String) -> Self {
        Self {
            context: Vec::new(),
            text,
            source: None,
        }
    }
}

/// The input formats `hashprep tokenize` understands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Format {
    /// Plain text: one document per line, or blank-line separated documents.
    Text {
        /// Documents are separated by blank lines instead of being one per line.
        #[serde(default)]
        blank_line_separated: bool,
    },
    /// JSON Lines with the text in a string field.
    Jsonl {
        /// Name of the field holding the text.
        text_field: String,
    },
    /// cc100: one paragraph per line, documents separated by blank lines.
    Cc100,
    /// Wikitext-103 `wiki.*.tokens`: an article starts at each ` = Title = ` heading.
    Wikitext103,
    /// Pushshift Reddit dumps (comments and submissions): one dialogue example per comment.
    Reddit(RedditOptions),
}

impl Format {
    /// Reads the examples of one input file.
    ///
    /// # Errors
    /// The file cannot be opened. Errors while reading come through the iterator.
    pub(crate) fn open(&self, path: &Path, progress: Option<Arc<AtomicU64>>) -> Result<Records> {
        let lines = Lines::new(open_input(path, progress)?, path);
        Ok(match self {
            Format::Text {
                blank_line_separated: false,
            } => Box::new(TextRecords::new(lines, Grouping::PerLine)),
            Format::Text {
                blank_line_separated: true,
            }
            | Format::Cc100 => Box::new(TextRecords::new(lines, Grouping::BlankLineSeparated)),
            Format::Wikitext103 => Box::new(TextRecords::new(lines, Grouping::WikitextArticles)),
            Format::Jsonl { text_field } => Box::new(JsonlRecords::new(lines, text_field.clone())),
            Format::Reddit(_) => {
                return Err(Error::setting(
                    "format",
                    "reddit: dumps are read all together (threads span files): use the tokenize \
                     pipeline",
                ))
            }
        })
    }

    /// Parses a `--format` name.
    ///
    /// # Errors
    /// An unknown name.
    pub fn from_cli(name: &str, text_field: &str, blank_line_separated: bool) -> Result<Self> {
        Ok(match name {
            "text" => Format::Text {
                blank_line_separated,
            },
            "jsonl" => Format::Jsonl {
                text_field: text_field.to_owned(),
            },
            "cc100" => Format::Cc100,
            "wikitext103" | "wikitext-103" => Format::Wikitext103,
            "reddit" => Format::Reddit(RedditOptions::default()),
            other => {
                return Err(Error::setting(
                    "format",
                    format!("{other:?} is none of text, jsonl, cc100, wikitext103, reddit"),
                ))
            }
        })
    }
}

/// Settings of the Reddit reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedditOptions {
    /// Context turns kept before each response, nearest last.
    pub max_context_turns: usize,
    /// Spill partitions (threads are grouped by a hash of their id); each must fit in memory.
    /// 0 sizes them from the input: see [`RedditOptions::partitions_for`].
    pub partitions: usize,
    /// Response filters (off by default).
    #[serde(default)]
    pub filter: reddit::RedditFilter,
}

impl Default for RedditOptions {
    fn default() -> Self {
        Self {
            max_context_turns: 7,
            partitions: 0,
            filter: reddit::RedditFilter::default(),
        }
    }
}

impl RedditOptions {
    /// Decompressed bytes assumed per on-disk byte when sizing partitions (zstd dumps: ~8x).
    pub(crate) const EXPANSION: u64 = 10;
    /// Target decompressed bytes per partition: small enough that a few partitions, parsed,
    /// fit in memory at once (one per thread).
    const TARGET_BYTES: u64 = 256 << 20;

    /// The number of partitions for `input_bytes` on disk: the configured one, or with `0`,
    /// enough that each holds about 256 MiB of decompressed records (at least 16).
    pub fn partitions_for(&self, input_bytes: u64) -> usize {
        if self.partitions > 0 {
            return self.partitions;
        }
        let estimate = input_bytes.saturating_mul(Self::EXPANSION) / Self::TARGET_BYTES + 1;
        (estimate as usize).max(16)
    }
}

/// The examples of one file, in order.
pub(crate) type Records = Box<dyn Iterator<Item = Result<Example>> + Send>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::SkipReason;
    use std::io::Write;

    fn read_all(format: &Format, content: &[u8]) -> Vec<std::result::Result<String, String>> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        format
            .open(file.path(), None)
            .unwrap()
            .map(|r| {
                r.map(|e| e.text).map_err(|e| match e {
                    Error::BadRecord {
                        reason, location, ..
                    } => format!("{reason}@{}", location.line),
                    other => other.to_string(),
                })
            })
            .collect()
    }

    #[test]
    fn reddit_partitions_grow_with_the_input() {
        let auto = RedditOptions::default();
        assert_eq!(auto.partitions_for(0), 16);
        assert_eq!(
            auto.partitions_for(30 << 30),
            30 * 4 * 10 + 1,
            "30 GiB of zstd dumps"
        );
        assert_eq!(
            RedditOptions {
                partitions: 5,
                ..auto
            }
            .partitions_for(30 << 30),
            5
        );
    }

    #[test]
    fn text_per_line_counts_blank_lines_as_empty() {
        let got = read_all(
            &Format::Text {
                blank_line_separated: false,
            },
            b"a b\n\nc\r\n",
        );
        assert_eq!(
            got,
            vec![Ok("a b".into()), Err("empty@2".into()), Ok("c".into())]
        );
    }

    #[test]
    fn cc100_joins_paragraphs_until_blank_line() {
        let got = read_all(&Format::Cc100, b"p1\np2\n\n\nq1\n");
        assert_eq!(got, vec![Ok("p1\np2".into()), Ok("q1".into())]);
    }

    #[test]
    fn wikitext_splits_on_titles_and_keeps_text_verbatim() {
        let input = b" \n = A = \n \n x @-@ y <unk> \n = = S = = \n z \n = B = \n w \n";
        let got = read_all(&Format::Wikitext103, input);
        assert_eq!(
            got,
            vec![
                Ok(" = A = \n \n x @-@ y <unk> \n = = S = = \n z \n".into()),
                Ok(" = B = \n w \n".into())
            ]
        );
    }

    #[test]
    fn invalid_utf8_poisons_the_whole_document() {
        let got = read_all(&Format::Cc100, b"ok\n\nbad \xff line\nsame doc\n\nfine\n");
        assert_eq!(
            got,
            vec![
                Ok("ok".into()),
                Err(format!("{}@3", SkipReason::InvalidUtf8)),
                Ok("fine".into())
            ]
        );
    }

    #[test]
    fn jsonl_reports_each_bad_record_with_its_line() {
        let input =
            b"{\"text\": \"one\"}\n{bad\n{\"other\": 1}\n{\"text\": 5}\n\n{\"text\": \"two\"}\n";
        let got = read_all(
            &Format::Jsonl {
                text_field: "text".into(),
            },
            input,
        );
        assert_eq!(
            got,
            vec![
                Ok("one".into()),
                Err("malformed_json@2".into()),
                Err("missing_field@3".into()),
                Err("missing_field@4".into()),
                Ok("two".into())
            ]
        );
    }
}
