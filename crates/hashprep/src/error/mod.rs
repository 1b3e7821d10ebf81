//! The crate's error type: every failure says which file, line or shard it came from, and
//! whether it was the input's fault ([`Error::is_bad_input`]) or ours.

mod problems;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use problems::{
    CheckpointProblem, EmptyProblem, InputProblem, LoaderProblem, MergeProblem, OutputProblem,
    PlotProblem, SpillProblem, TableProblem, TokenizerProblem,
};

/// Where in the input a record came from: file and 1-based line (or record) number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The input file.
    pub path: PathBuf,
    /// 1-based line number in the decompressed stream.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Why a record was rejected. With `--on-error skip` these are counted by name in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// A line that is not valid UTF-8.
    InvalidUtf8,
    /// A JSON line that does not parse.
    MalformedJson,
    /// A JSON record without the text field, or with a non-string one.
    MissingField,
    /// A compressed stream that is truncated or corrupt; the rest of that file is lost.
    CorruptStream,
    /// A record with no text (counted, never an error).
    Empty,
    /// A Reddit comment whose body is `[deleted]` or `[removed]`.
    Deleted,
    /// A record whose id was already seen (the first is kept).
    Duplicate,
    /// A Reddit comment on, or below, a cycle of parents.
    Cycle,
    /// Filtered: not in the subreddit allow list, or in the deny list.
    FilterSubreddit,
    /// Recipes filter: body over 2048 characters.
    FilterTooLong,
    /// Recipes filter: body under 5 characters.
    FilterTooShort,
    /// Recipes filter: body with a URL.
    FilterUrl,
    /// Recipes filter: body starting with a non-ASCII character.
    FilterNonAscii,
    /// Recipes filter: author that looks like a bot.
    FilterBot,
    /// Recipes filter: comment deeper than 7.
    FilterDepth,
    /// Recipes filter: response over the token limit.
    FilterLongResponse,
}

impl SkipReason {
    /// Every reason, in the order the summary lists them.
    pub const ALL: [SkipReason; 16] = [
        SkipReason::InvalidUtf8,
        SkipReason::MalformedJson,
        SkipReason::MissingField,
        SkipReason::CorruptStream,
        SkipReason::Empty,
        SkipReason::Deleted,
        SkipReason::Duplicate,
        SkipReason::Cycle,
        SkipReason::FilterSubreddit,
        SkipReason::FilterTooLong,
        SkipReason::FilterTooShort,
        SkipReason::FilterUrl,
        SkipReason::FilterNonAscii,
        SkipReason::FilterBot,
        SkipReason::FilterDepth,
        SkipReason::FilterLongResponse,
    ];

    /// The stable name used in summaries and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::InvalidUtf8 => "invalid_utf8",
            SkipReason::MalformedJson => "malformed_json",
            SkipReason::MissingField => "missing_field",
            SkipReason::CorruptStream => "corrupt_stream",
            SkipReason::Empty => "empty",
            SkipReason::Deleted => "deleted",
            SkipReason::Duplicate => "duplicate",
            SkipReason::Cycle => "cycle",
            SkipReason::FilterSubreddit => "filter_subreddit",
            SkipReason::FilterTooLong => "filter_too_long",
            SkipReason::FilterTooShort => "filter_too_short",
            SkipReason::FilterUrl => "filter_url",
            SkipReason::FilterNonAscii => "filter_non_ascii_start",
            SkipReason::FilterBot => "filter_bot_author",
            SkipReason::FilterDepth => "filter_depth",
            SkipReason::FilterLongResponse => "filter_long_response",
        }
    }

    /// Parses a name written by [`SkipReason::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of the hashprep library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A record the reader could not use (bad UTF-8, bad JSON, missing field, ...).
    #[error("{location}: {reason}: {detail}")]
    BadRecord {
        /// Where the record is.
        location: Location,
        /// The reason, also the counter name under `--on-error skip`.
        reason: SkipReason,
        /// Human-readable detail.
        detail: String,
    },
    /// A compressed stream that cannot be decoded past some point.
    #[error("{path}: corrupt or truncated {codec} stream after {offset} compressed bytes (line {line}): {source}")]
    CorruptStream {
        /// The input file.
        path: PathBuf,
        /// Compression format name.
        codec: &'static str,
        /// Compressed bytes consumed before the failure.
        offset: u64,
        /// Last line read completely.
        line: u64,
        /// The decoder's error.
        source: io::Error,
    },
    /// A setting whose value cannot be used, named as configs name it (`experts`); the
    /// command-line programs print it as their flag (`--experts`).
    #[error("`{name}` {problem}")]
    Setting {
        /// The setting (a field of the settings types, a config key).
        name: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
    /// Input files that cannot be read as asked.
    #[error("{}: {problem}", path.display())]
    Input {
        /// The file, directory or pattern as given.
        path: PathBuf,
        /// What is wrong.
        problem: InputProblem,
    },
    /// Input that leaves nothing to work on.
    #[error("{0}")]
    Empty(EmptyProblem),
    /// An output directory that cannot be written.
    #[error("{}: {problem}", dir.display())]
    Output {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        problem: OutputProblem,
    },
    /// A directory that is no tokenize output.
    #[error("{}: no manifest.json: not a hashprep tokenize output, or one that did not finish", dir.display())]
    NotTokenized {
        /// The directory.
        dir: PathBuf,
    },
    /// A shared Reddit spill directory that cannot be used as asked.
    #[error("{}: {problem}", dir.display())]
    Spill {
        /// The spill directory.
        dir: PathBuf,
        /// What is wrong.
        problem: SpillProblem,
    },
    /// Tokenize outputs or counts that do not merge.
    #[error("{0}")]
    Merge(MergeProblem),
    /// A tokenizer that cannot be used as asked.
    #[error("{0}")]
    TokenizerSetup(TokenizerProblem),
    /// A routing table that is not valid or does not fit what is asked of it.
    #[error("{}{problem}", problems::at(.path.as_ref()))]
    Table {
        /// The file it concerns, where known: the table, or the data it is measured on.
        path: Option<PathBuf>,
        /// What is wrong.
        problem: TableProblem,
    },
    /// A loader that cannot be opened or resumed as asked.
    #[error("{0}")]
    Loader(LoaderProblem),
    /// A model checkpoint that cannot take a table; left as it was.
    #[error("{}: {problem}", path.display())]
    Checkpoint {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        problem: CheckpointProblem,
    },
    /// A plot that cannot be made as asked.
    #[error("{}{problem}", problems::at(.path.as_ref()))]
    PlotRequest {
        /// The image file, where known.
        path: Option<PathBuf>,
        /// What is wrong.
        problem: PlotProblem,
    },
    /// A Reddit record too large for the spill.
    #[error(
        "{location}: a record of {bytes} bytes; the Reddit spill holds records of at most {max}"
    )]
    RecordTooLarge {
        /// Where the record is.
        location: Location,
        /// Its size.
        bytes: usize,
        /// The largest the spill holds.
        max: usize,
    },
    /// An example too long for one Arrow list.
    #[error("{}: an example of {tokens} tokens is too long for one Arrow list", path.display())]
    ExampleTooLong {
        /// The shard being written.
        path: PathBuf,
        /// Its tokens.
        tokens: usize,
    },
    /// An I/O failure on a file we read or write.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An output directory or file that is inconsistent with what it claims (checksum, manifest).
    #[error("{path}: {message}")]
    Corrupt {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An Arrow or Parquet failure.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The library's message.
        message: String,
    },
    /// A plot that could not be drawn or written.
    #[error("{path}: cannot draw the plot: {message}")]
    Plot {
        /// The image file.
        path: PathBuf,
        /// The drawing library's message.
        message: String,
    },
    /// A tokenizer library failure.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Stopped on request (`RunOptions::cancel`); what was complete is kept for a rerun.
    #[error("interrupted: the completed shards are kept, and a rerun resumes after them")]
    Interrupted,
    /// A failure of this program (a panicking worker thread): a bug to report.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// True when the user's input (files, options) is at fault rather than this program.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::BadRecord { .. }
            | Error::CorruptStream { .. }
            | Error::Setting { .. }
            | Error::Input { .. }
            | Error::Empty(_)
            | Error::Output { .. }
            | Error::NotTokenized { .. }
            | Error::Merge(_)
            | Error::Spill { .. }
            | Error::TokenizerSetup(_)
            | Error::Table { .. }
            | Error::Loader(_)
            | Error::Checkpoint { .. }
            | Error::PlotRequest { .. }
            | Error::RecordTooLarge { .. }
            | Error::ExampleTooLong { .. }
            | Error::Corrupt { .. } => true,
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::PermissionDenied
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::UnexpectedEof
            ),
            Error::Format { .. }
            | Error::Plot { .. }
            | Error::Tokenizer(_)
            | Error::Interrupted
            | Error::Internal(_) => false,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Wraps an Arrow / Parquet / JSON error with the path it happened on.
    pub fn format(path: impl AsRef<Path>, message: impl fmt::Display) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            message: message.to_string(),
        }
    }

    /// A problem of the table at `path` (no file named yet).
    pub fn table(problem: TableProblem) -> Self {
        Error::Table {
            path: None,
            problem,
        }
    }

    /// This error, naming the file `path` where it is a table's and names none yet.
    #[must_use]
    pub fn in_table_file(self, path: &Path) -> Self {
        match self {
            Error::Table {
                path: None,
                problem,
            } => Error::Table {
                path: Some(path.to_owned()),
                problem,
            },
            other => other,
        }
    }

    /// Setting `name` cannot be used: `problem` says why.
    pub fn setting(name: &'static str, problem: impl Into<String>) -> Self {
        Error::Setting {
            name,
            problem: problem.into(),
        }
    }

    /// A plot of `path` that could not be drawn.
    pub fn plot(path: impl AsRef<Path>, message: impl fmt::Display) -> Self {
        Error::Plot {
            path: path.as_ref().to_path_buf(),
            message: message.to_string(),
        }
    }

    /// A corrupt output file or directory.
    pub fn corrupt(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Corrupt {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
}

/// An error and its causes joined by ": ", leaving out a cause whose text the message already
/// holds (errors such as [`Error::Io`] print their source themselves): what the command-line
/// programs print.
pub fn error_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut cause = Some(error);
    while let Some(current) = cause {
        let text = current.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        cause = current.source();
    }
    message
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_comes_as_its_class_and_case_with_the_message_rendered_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere.txt");
        let err = crate::corpus::expand_inputs(std::slice::from_ref(&missing)).unwrap_err();
        assert!(
            matches!(&err, Error::Input { path, problem: InputProblem::Missing } if *path == missing)
        );
        assert_eq!(
            err.to_string(),
            format!("{}: no such input file or directory", missing.display())
        );
        assert!(err.is_bad_input());

        let table = Error::table(TableProblem::NoSuchLayer {
            layer: 3,
            layers: 2,
        });
        assert_eq!(table.to_string(), "the table has no layer 3 (it has 2)");
        let named = table.in_table_file(Path::new("t.arrow"));
        assert_eq!(
            named.to_string(),
            "t.arrow: the table has no layer 3 (it has 2)"
        );
        // A file already named is kept; other errors pass through unchanged.
        let renamed = named.in_table_file(Path::new("other.arrow"));
        assert!(renamed.to_string().starts_with("t.arrow: "));
        assert!(Error::Internal("x".into())
            .in_table_file(Path::new("t.arrow"))
            .to_string()
            .starts_with("internal error"));

        let merge = Error::Merge(MergeProblem::TasksMissing {
            missing: vec![1],
            tasks: 3,
        });
        assert!(merge.is_bad_input());
        assert!(merge.to_string().contains("`allow_partial`"));
        assert!(!Error::Internal("a worker thread died".into()).is_bad_input());
    }
}
