//! `hashtrain run`: the training loop, with evaluation, metrics, curves and checkpoints.
//!
//! A run folder holds `config.toml` (the config as run), `metrics.jsonl`, `curves.png`,
//! `checkpoints/` and, when the run ends, `summary.json`. `--resume` continues from the latest
//! checkpoint: weights, Adam's moments, the loader position and the open metrics window are
//! restored, and dropout is seeded per step, so the losses equal an uninterrupted run's.

mod batch;
pub(crate) mod checkpoint;
mod divergence;
mod eval;
mod export;
mod freeze;
mod init;
pub(crate) mod metrics;
mod optimizer;
pub(crate) mod plot;
mod progress;
mod restore;
mod run;
mod run_folder;
mod session;
mod trainer;
mod window;

use std::path::PathBuf;

use serde::Serialize;

pub use batch::DeviceBatch;
pub use checkpoint::CheckpointState;
pub(crate) use checkpoint::{OpenWindow, TableRecord};
pub use eval::{evaluate, Evaluation};
pub(crate) use metrics::MetricsLog;
pub use metrics::{read_records, LayerLoad, Record};
pub(crate) use optimizer::{inverse_sqrt_lr, Adam};
pub(crate) use plot::{plot_curves, Curve};
pub(crate) use session::{
    build_model, open_loader, parameter_count, resolve_routing, same_tokenizer, sparse_layers,
};

/// The sparse layers of a model: layer -> (kind, experts K).
pub type SparseLayers =
    std::collections::BTreeMap<crate::config::LayerId, (crate::config::SparseKind, usize)>;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the latest checkpoint in the run folder.
    pub resume: bool,
    /// Start over in a run folder that already holds a run.
    pub force: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Start from this checkpoint's weights (a checkpoint, or a run's latest) with a fresh
    /// optimizer: fine-tuning. A resumed run continues from its own checkpoint instead.
    pub init_from: Option<PathBuf>,
}

/// What a finished run reports (also `summary.json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunSummary {
    /// Steps trained in total.
    pub steps: u64,
    /// Model parameters.
    pub parameters: u64,
    /// Last validation loss.
    pub valid_loss: f64,
    /// Last validation perplexity.
    pub valid_ppl: f64,
    /// Expert loads of the last evaluation.
    pub valid_loads: Vec<LayerLoad>,
    /// Training tokens per second in this invocation.
    pub tokens_per_s: f64,
    /// Share of this invocation's step time spent waiting for the loader.
    pub loader_wait: f64,
    /// Mean time of one step (seconds) in this invocation.
    pub step_seconds: f64,
    /// The run folder.
    pub out: PathBuf,
}

pub use export::write_embeddings_npy;
pub use init::InitSource;
pub use restore::{restore, Restored};
pub use run::run;
pub use trainer::{Setup, StepResult, Trainer};
