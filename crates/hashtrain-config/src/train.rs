//! `[train]`: one flat TOML table, read as the settings that shape the losses
//! ([`Optimization`], compared on `--resume`) and those of the run's course ([`Runtime`]).

use serde::{Deserialize, Serialize};

/// The number format of the weights and activations (`train.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 everywhere.
    #[default]
    Fp32,
    /// bfloat16 weights and activations; Adam keeps float32 master weights and moments, and
    /// the loss is taken in float32 (no loss scaling: bfloat16 has float32's range).
    Bf16,
}

impl Precision {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// How the experts of a sparse layer run (`train.expert_matmul`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExpertMatmulSetting {
    /// `grouped` on a GPU, `loop` on the CPU (where stacking the weights costs more than the
    /// grouped GEMM saves).
    #[default]
    Auto,
    /// libtorch's grouped GEMM, one per stage, where the shapes allow it.
    Grouped,
    /// One matrix product per expert.
    Loop,
}

impl ExpertMatmulSetting {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            ExpertMatmulSetting::Auto => "auto",
            ExpertMatmulSetting::Grouped => "grouped",
            ExpertMatmulSetting::Loop => "loop",
        }
    }
}

/// What a fine-tuning run keeps fixed (`train.freeze`, a list: the paper's Table 8). The frozen
/// weights get no gradient and no update; they stay bit-identical to where the run started
/// (`hashtrain run --init-from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Freeze {
    /// The expert FFNs of every sparse layer ("Hash/Switch weights frozen").
    Experts,
    /// The learned routers: Switch's and BASE's router, Token-Switch's router embedding, a
    /// top-k hash layer's gate ("Router weights frozen").
    Router,
    /// Every weight but those of the last layer and the final layer norm (an untied output
    /// projection included) ("All layers but last frozen").
    AllButLast,
    /// Every weight but those of the sparse layers' FFNs ("All layers but Hash/Switch frozen").
    AllButSparse,
}

impl Freeze {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Freeze::Experts => "experts",
            Freeze::Router => "router",
            Freeze::AllButLast => "all-but-last",
            Freeze::AllButSparse => "all-but-sparse",
        }
    }
}

/// `[train]`: the optimization, whose settings shape the results (a checkpoint resumes only
/// with the same ones), and how the run is carried out, which may change on `--resume`. Written
/// as one flat TOML table; every key has a default.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "TrainTable", into = "TrainTable")]
pub struct TrainConfig {
    /// Settings that shape the losses.
    pub optimization: Optimization,
    /// Settings of the run's course and resources.
    pub runtime: Runtime,
}

/// The settings of `[train]` that shape the losses (compared on `--resume`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Optimization {
    /// Rows per batch B.
    pub batch_size: usize,
    /// Peak learning rate (paper: 0.002).
    pub lr: f64,
    /// Linear warmup steps, then the rate decays as `1/sqrt(step)`.
    pub warmup: u64,
    /// Gradient norm clip (paper: 1.0); 0 disables.
    pub clip: f64,
    /// Adam betas.
    pub betas: (f64, f64),
    /// Adam epsilon.
    pub eps: f64,
    /// Seed of initialization, dropout and data order.
    pub seed: u64,
    /// Number format of weights and activations.
    pub precision: Precision,
    /// Weights kept fixed (fine-tuning); empty: all train.
    pub freeze: Vec<Freeze>,
}

/// The settings of `[train]` that may change on `--resume`: how long, how often to evaluate,
/// log and checkpoint, and on what.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runtime {
    /// Optimizer steps.
    pub steps: u64,
    /// Evaluate on the validation data every N steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Validation batches per evaluation; 0: the whole validation set.
    pub eval_batches: u64,
    /// Write a training record every N steps.
    pub log_every: u64,
    /// Write a checkpoint every N steps (and at the end); 0: only at the end.
    pub checkpoint_every: u64,
    /// Checkpoints kept (oldest removed first).
    pub keep_checkpoints: usize,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Loader worker threads.
    pub workers: usize,
    /// Batches prepared ahead.
    pub prefetch: usize,
    /// libtorch CPU threads; 0: libtorch's default.
    pub threads: usize,
    /// How the experts run.
    pub expert_matmul: ExpertMatmulSetting,
}

impl Default for Optimization {
    fn default() -> Self {
        Self {
            batch_size: 16,
            lr: 0.002,
            warmup: 100,
            clip: 1.0,
            betas: (0.9, 0.98),
            eps: 1e-8,
            seed: 0,
            precision: Precision::Fp32,
            freeze: Vec::new(),
        }
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            steps: 1000,
            eval_every: 0,
            eval_batches: 0,
            log_every: 10,
            checkpoint_every: 0,
            keep_checkpoints: 2,
            device: "cpu".into(),
            workers: 1,
            prefetch: 4,
            threads: 0,
            expert_matmul: ExpertMatmulSetting::Auto,
        }
    }
}

/// `[train]` as written: one flat table, in this key order.
#[derive(Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TrainTable {
    steps: u64,
    batch_size: usize,
    lr: f64,
    warmup: u64,
    clip: f64,
    betas: (f64, f64),
    eps: f64,
    seed: u64,
    // Written only when not the default, so the configs of earlier runs read back unchanged
    // (a sweep compares them to skip finished runs).
    #[serde(skip_serializing_if = "is_default")]
    precision: Precision,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    freeze: Vec<Freeze>,
    eval_every: u64,
    eval_batches: u64,
    log_every: u64,
    checkpoint_every: u64,
    keep_checkpoints: usize,
    device: String,
    workers: usize,
    prefetch: usize,
    threads: usize,
    #[serde(skip_serializing_if = "is_default")]
    expert_matmul: ExpertMatmulSetting,
}

/// Whether a setting is at its default (settings added later are written only when set, so the
/// configs of earlier runs read back unchanged).
pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Default for TrainTable {
    fn default() -> Self {
        TrainConfig::default().into()
    }
}

impl From<TrainTable> for TrainConfig {
    fn from(t: TrainTable) -> Self {
        Self {
            optimization: Optimization {
                batch_size: t.batch_size,
                lr: t.lr,
                warmup: t.warmup,
                clip: t.clip,
                betas: t.betas,
                eps: t.eps,
                seed: t.seed,
                precision: t.precision,
                freeze: t.freeze,
            },
            runtime: Runtime {
                steps: t.steps,
                eval_every: t.eval_every,
                eval_batches: t.eval_batches,
                log_every: t.log_every,
                checkpoint_every: t.checkpoint_every,
                keep_checkpoints: t.keep_checkpoints,
                device: t.device,
                workers: t.workers,
                prefetch: t.prefetch,
                threads: t.threads,
                expert_matmul: t.expert_matmul,
            },
        }
    }
}

impl From<TrainConfig> for TrainTable {
    fn from(c: TrainConfig) -> Self {
        let (o, r) = (c.optimization, c.runtime);
        Self {
            steps: r.steps,
            batch_size: o.batch_size,
            lr: o.lr,
            warmup: o.warmup,
            clip: o.clip,
            betas: o.betas,
            eps: o.eps,
            seed: o.seed,
            precision: o.precision,
            freeze: o.freeze,
            eval_every: r.eval_every,
            eval_batches: r.eval_batches,
            log_every: r.log_every,
            checkpoint_every: r.checkpoint_every,
            keep_checkpoints: r.keep_checkpoints,
            device: r.device,
            workers: r.workers,
            prefetch: r.prefetch,
            threads: r.threads,
            expert_matmul: r.expert_matmul,
        }
    }
}
