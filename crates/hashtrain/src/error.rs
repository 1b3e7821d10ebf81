//! The trainer's errors: bad input (a config, a checkpoint, a device that is not there) is told
//! apart from failures inside libtorch or the data stages.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in `hashtrain`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    /// A setting that does not fit the model or data it meets (known only once they are built).
    #[error("{setting} {problem}")]
    Setting {
        /// The setting's path in the config.
        setting: String,
        /// What is wrong, following the setting's name.
        problem: String,
    },
    /// A run config that cannot be used.
    #[error(transparent)]
    RunConfig(#[from] hashtrain_config::ConfigError),
    /// A device name that is none, or a device this build or machine cannot use.
    #[error("device `{name}`: {problem}")]
    Device {
        /// The name as given.
        name: String,
        /// Why it cannot be used.
        problem: DeviceProblem,
    },
    /// A run folder that holds a run, and neither `resume` nor `force` was asked.
    #[error("{}: already holds a run; `resume` continues it, `force` starts over", out.display())]
    RunExists {
        /// The run folder.
        out: PathBuf,
    },
    /// A path that is neither a checkpoint nor a run folder with one.
    #[error("{}: {problem}", path.display())]
    NoCheckpoint {
        /// The path given (or the run's `latest` file).
        path: PathBuf,
        /// What is missing.
        problem: String,
    },
    /// A checkpoint's file that is not what the checkpoint recorded or what the model needs.
    #[error("{}: {problem}", path.display())]
    BadCheckpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: CheckpointProblem,
    },
    /// A checkpoint that this config cannot resume.
    #[error("{}: {problem}", dir.display())]
    NotResumable {
        /// The checkpoint.
        dir: PathBuf,
        /// What differs.
        problem: ResumeProblem,
    },
    /// A checkpoint that a run cannot start from (`init_from`).
    #[error("{}: cannot start from this checkpoint: {problem}", dir.display())]
    NotInitializable {
        /// The checkpoint.
        dir: PathBuf,
        /// What differs.
        problem: String,
    },
    /// Data tokenized by another tokenizer than the one the run uses.
    #[error(
        "{}: tokenized by {found}, but {reference} was made with {expected}: tokenize every split \
         with one tokenizer",
        data.display()
    )]
    OtherTokenizer {
        /// The data.
        data: PathBuf,
        /// Its tokenizer's fingerprint.
        found: String,
        /// The expected tokenizer's fingerprint.
        expected: String,
        /// What was made with the expected one.
        reference: String,
    },
    /// A model too large for this machine's memory.
    #[error(
        "the model has about {parameters} parameters ({vocab} ids; model.layers, d_model, d_ff and \
         the experts of model.sparse), about {needed_gib:.1} GiB {}, more than this machine's \
         {memory_gib:.1} GiB of memory: make it smaller",
        if *on_gpu { "to draw its weights on the host" } else { "with gradients and Adam's moments" }
    )]
    ModelTooLarge {
        /// Estimated parameters.
        parameters: u64,
        /// Vocabulary size.
        vocab: usize,
        /// Estimated memory.
        needed_gib: f64,
        /// The machine's memory.
        memory_gib: f64,
        /// Whether the model trains on a GPU (its weights are drawn on the host first).
        on_gpu: bool,
    },
    /// A record file of ours (`metrics.jsonl`, `summary.json`, a sweep's data folder) that does
    /// not hold what it should.
    #[error("{}: {problem}", path.display())]
    BadRecord {
        /// The file (with `:LINE` for a line of `metrics.jsonl`).
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The loss or the weights stopped being finite; the run folder resumes from its last
    /// checkpoint, which was written before it happened.
    #[error("training diverged at step {step}: {detail}; lower train.lr or raise train.warmup (`resume` continues from the last checkpoint, written while everything was finite)")]
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
    /// A failure of ours (a bug), not of the input.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a device cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceProblem {
    /// Not a device name.
    #[error("expected cpu, cuda or cuda:N")]
    UnknownName,
    /// A CUDA device asked of a build without libtorch's CUDA library.
    #[error(
        "this hashtrain was built without libtorch's CUDA library (built against {built_against}, \
         which has none): build it against a CUDA libtorch (`hashtrain info` says what it sees)"
    )]
    NoCudaLibrary {
        /// The libtorch it was built against.
        built_against: String,
    },
    /// A CUDA device beyond those libtorch sees.
    #[error(
        "libtorch's CUDA library is loaded but sees {available} CUDA device(s) (no GPU, no driver, \
         or CUDA_VISIBLE_DEVICES hides them; `hashtrain info` says what it sees)"
    )]
    NotSeen {
        /// The devices libtorch sees.
        available: usize,
    },
}

/// What is wrong with a checkpoint's file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointProblem {
    /// `state.json` does not parse.
    #[error("not a checkpoint state: {0}")]
    NotAState(String),
    /// `state.json` of another format or version.
    #[error(
        "format {format} version {version}, expected {expected_format} version {expected_version}"
    )]
    Version {
        /// Its format.
        format: String,
        /// Its version.
        version: u32,
        /// This build's format.
        expected_format: &'static str,
        /// This build's version.
        expected_version: u32,
    },
    /// A file whose bytes differ from the checksum `state.json` records.
    #[error(
        "checksum mismatch: state.json says {expected}, the file is {actual} (altered since the \
         checkpoint was written; resume from another checkpoint)"
    )]
    Altered {
        /// The recorded checksum.
        expected: String,
        /// The file's.
        actual: String,
    },
    /// Weights or optimizer moments that do not fit the model.
    #[error("does not fit this model ({0})")]
    DoesNotFit(String),
    /// A table the config names that the checkpoint carries no copy of.
    #[error("carries no copy of {}", .0.display())]
    MissingTable(PathBuf),
}

/// Why a checkpoint cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeProblem {
    /// Settings that shape the losses differ.
    #[error(
        "the checkpoint was trained with other settings: {}; keep them to resume, or start over \
         with `force`",
        .0.join("; ")
    )]
    OtherSettings(Vec<String>),
    /// A table file changed since the checkpoint.
    #[error("{} has changed since the checkpoint was written", .0.display())]
    TableChanged(PathBuf),
    /// `train.log_every` changed while a metrics window is open.
    #[error("train.log_every changed while a metrics window is open; keep it to resume")]
    LogEveryChanged,
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
            Error::Config { .. }
            | Error::Setting { .. }
            | Error::Device { .. }
            | Error::RunExists { .. }
            | Error::NoCheckpoint { .. }
            | Error::BadCheckpoint { .. }
            | Error::NotResumable { .. }
            | Error::NotInitializable { .. }
            | Error::OtherTokenizer { .. }
            | Error::ModelTooLarge { .. }
            | Error::BadRecord { .. }
            | Error::Diverged { .. } => true,
            Error::Data(e) => e.is_bad_input(),
            Error::RunConfig(e) => e.is_bad_input(),
            Error::Io { .. } | Error::Torch(_) | Error::Internal(_) => false,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_renders_its_message_and_says_whose_fault_it_is() {
        let device = Error::Device {
            name: "cuda:3".into(),
            problem: DeviceProblem::NotSeen { available: 1 },
        };
        assert!(device.is_bad_input());
        assert!(device
            .to_string()
            .starts_with("device `cuda:3`: libtorch's CUDA library is loaded but sees 1 CUDA"));
        let resume = Error::NotResumable {
            dir: "runs/a/checkpoints/step-00000010".into(),
            problem: ResumeProblem::OtherSettings(vec![
                "train.lr (0.1 in the checkpoint, 0.2 now)".into(),
            ]),
        };
        assert_eq!(
            resume.to_string(),
            "runs/a/checkpoints/step-00000010: the checkpoint was trained with other settings: \
             train.lr (0.1 in the checkpoint, 0.2 now); keep them to resume, or start over with `force`"
        );
        assert!(resume.is_bad_input());
        // Ours, not the input's: exit code 1 on the command line.
        assert!(!Error::Internal("the loader stopped early".into()).is_bad_input());
        let config = Error::from(hashtrain_config::ConfigError::Placement {
            setting: "train.batch_size".into(),
            problem: "6 is not a multiple of the 4 data-parallel ranks".into(),
        });
        assert!(config.is_bad_input());
    }
}
