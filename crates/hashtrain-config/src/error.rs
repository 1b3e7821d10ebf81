//! What can be wrong with a run config, each named where the user fixes it: the file, the
//! `--set` override, or the setting by its path in the config (`model.sparse[0].top_k`).

use std::path::PathBuf;

/// A run config (or sweep config) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The text is not TOML, or does not fit the config's types (an unknown key, a wrong type).
    #[error("{}: {message}", origin.display())]
    Syntax {
        /// The file.
        origin: PathBuf,
        /// The parser's words, which name the key and line.
        message: String,
    },
    /// A `--set` override that cannot be applied. Rendered with the library's name of the
    /// option, `` `set` ``; the command lines write it as their flag.
    #[error("`set` {item}: {problem}")]
    Override {
        /// The override as given (`key.path=value`).
        item: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A setting out of range, or that does not fit the others.
    #[error("{}: {setting} {problem}", origin.display())]
    Setting {
        /// The file.
        origin: PathBuf,
        /// The setting's path in the config (`train.lr`, `model.sparse[0].experts`).
        setting: String,
        /// What is wrong, following the setting's name.
        problem: String,
    },
    /// A sparse layer's table that does not fit the layer's settings.
    #[error("{}: {setting} {problem}", table.display())]
    Table {
        /// The setting's path in the config (`model.sparse[0].top_k`).
        setting: String,
        /// The table file.
        table: PathBuf,
        /// What is wrong, following the setting's name.
        problem: String,
    },
    /// The data split among data-parallel ranks does not fit the batch.
    #[error("{setting} {problem}")]
    Placement {
        /// The setting's path in the config.
        setting: String,
        /// What is wrong.
        problem: String,
    },
    /// The data or a table could not be opened.
    #[error(transparent)]
    Data(#[from] hashprep::Error),
}

impl ConfigError {
    /// Whether the user can fix it by changing the input (exit code 2), rather than an
    /// internal failure (exit code 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ConfigError::Data(e) => e.is_bad_input(),
            ConfigError::Read { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => true,
        }
    }
}

/// `Result` with [`ConfigError`].
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;
