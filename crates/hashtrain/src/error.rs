//! The trainer's errors: bad input (a config, a checkpoint, a device that is not there) is told
//! apart from failures inside libtorch or the data stages.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in `hashtrain`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config, flag or checkpoint that cannot be used, with what is wrong.
    #[error("{0}")]
    BadInput(String),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A sweep config that does not parse or validate.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A run config that cannot be used.
    #[error(transparent)]
    RunConfig(#[from] hashtrain_config::ConfigError),
    /// The loss or the weights stopped being finite; the run folder resumes from its last
    /// checkpoint, which was written before it happened.
    #[error("training diverged at step {step}: {detail}; lower train.lr or raise train.warmup (--resume continues from the last checkpoint, written while everything was finite)")]
    Diverged {
        /// The step at which it was seen.
        step: u64,
        /// What was not finite.
        detail: String,
    },
    /// A data stage failed (shards, tables, loader).
    #[error(transparent)]
    Data(#[from] hashprep::Error),
    /// libtorch refused an operation.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl Error {
    /// An I/O failure on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Whether the user can fix it by changing the input (exit code 2) rather than an internal
    /// failure (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::BadInput(_) | Error::Config { .. } | Error::Diverged { .. } => true,
            Error::Data(e) => e.is_bad_input(),
            Error::RunConfig(e) => e.is_bad_input(),
            Error::Io { .. } | Error::Torch(_) => false,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
