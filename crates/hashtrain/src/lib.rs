//! # hashtrain
//!
//! Trains language models, decoder-only or encoder-decoder (the paper's dialogue model, on
//! dialogue data), whose FFN at chosen layers is a **Hash Layer** (routes from precomputed
//! token -> expert tables), MultiHash, Switch, Token-Switch or BASE, on the Arrow shards that
//! `hashprep tokenize` writes. Built on tch (libtorch); CPU by default, CUDA
//! when asked.
//!
//! The loader (`hashprep::Loader`) groups each batch's positions by expert on worker threads;
//! each table-routed layer holds the `hashprep::RouteHandle`s of its routes, and the model only
//! gathers, runs each expert on a contiguous slice and scatters back.
//!
//! Everything public is here, at the root; the modules are private:
//! - the run config: [`RunConfig`] and the rest of [`config`] (the crate `hashtrain-config`,
//!   which the Python trainer reads too);
//! - training: [`run`] a config into a run folder ([`RunOptions`], [`RunSummary`]; fine-tuning
//!   from another run's checkpoint records its [`InitSource`]), its `metrics.jsonl` read back
//!   with [`read_records`];
//! - evaluation: [`resolve_checkpoint`], [`read_checkpoint_state`], [`restore`] a model from a
//!   checkpoint and [`evaluate`] it;
//! - exports: [`write_embeddings_npy`] (for `build-table --method clustered`);
//! - sweeps: [`SweepConfig`] and [`run_sweep`] (the paper's Table 3 comparisons);
//! - embedding the trainer in a program: [`Setup`] (data, tables, model and optimizer of a
//!   config), [`Trainer::step`], [`DeviceBatch`] (a sequence-to-sequence batch's contexts as
//!   [`EncoderInput`]), the [`LanguageModel`] and [`masked_nll`];
//! - the device: [`parse_device`], [`DeviceReport`].
//!
//! Cargo features: `cli` (default: the `hashtrain` binary, progress bar and plots), `progress`
//! (a progress bar on stderr), `plot` (`curves.png`, `grid.png`). A program that embeds the
//! trainer depends on it with `default-features = false`.
// libtorch counts sizes and indices in i64; tensor code converts at every call.
#![allow(clippy::cast_possible_wrap, clippy::many_single_char_names)]

mod device;
mod error;
mod model;
mod sweep;
mod train;

/// The run config (types, defaults, checks, overrides): the crate `hashtrain-config`, which
/// the Python trainer reads too.
pub use hashtrain_config as config;

pub use config::{ConfigError, RunConfig, SparseKind};
pub use device::{parse_device, DeviceReport, GpuReport};
pub use error::{CheckpointProblem, DeviceProblem, Error, Result, ResumeProblem};
pub use model::{masked_nll, EncoderInput, KeyMask, LanguageModel, ModelOutput};
pub use sweep::{
    run_sweep, FinetunePlan, FinetuneRun, MethodResult, RunId, SweepConfig, SweepOptions,
};
pub use train::checkpoint::{read_state as read_checkpoint_state, resolve as resolve_checkpoint};
pub use train::{
    evaluate, read_records, restore, run, write_embeddings_npy, CheckpointState, DeviceBatch,
    Evaluation, InitSource, LayerLoad, Record, Restored, RunOptions, RunSummary, Setup,
    SparseLayers, StepResult, Trainer,
};
