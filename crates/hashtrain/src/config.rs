//! The run config: one TOML file (`pipelines/NAME.toml`) with `[data]`, `[model]` (and its
//! `[[model.sparse]]` layers) and `[train]`, plus `--set key=value` overrides applied before it is
//! checked. Relative paths are taken from the working directory, as on the command line.
//! Format: `schemas/run-config.md`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Where the token data is.
    pub data: DataConfig,
    /// The network.
    pub model: ModelConfig,
    /// The optimization.
    #[serde(default)]
    pub train: TrainConfig,
}

/// Tokenize outputs (`hashprep tokenize --out DIR`) of one tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training data.
    pub train: PathBuf,
    /// Validation data, evaluated every `train.eval_every` steps.
    pub valid: PathBuf,
    /// Test data (`hashtrain eval` and sweeps).
    #[serde(default)]
    pub test: Option<PathBuf>,
}

/// Position encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Positions {
    /// A learned embedding per position.
    #[default]
    Learned,
    /// Fixed sinusoids (Vaswani et al.).
    Sinusoidal,
}

/// A decoder-only pre-norm Transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Number of Transformer layers.
    pub layers: usize,
    /// Hidden size d.
    pub d_model: i64,
    /// FFN inner size D (of every expert too).
    pub d_ff: i64,
    /// Attention heads.
    pub heads: i64,
    /// Dropout on attention weights and residual branches.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Context length T (positions per training row).
    pub context: usize,
    /// Position encoding.
    #[serde(default)]
    pub positions: Positions,
    /// Share the input embedding with the output projection.
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    /// Layers whose FFN is replaced (the rest are dense).
    #[serde(default)]
    pub sparse: Vec<SparseLayer>,
}

/// What replaces the FFN of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SparseKind {
    /// The plain FFN `B(relu(A(h)))` (a baseline in sweeps).
    Dense,
    /// K expert FFNs, each token routed by a precomputed table.
    Hash,
    /// N hashes, each selecting one segment of the experts' weights (paper section 3.2).
    Multihash,
    /// A learned softmax router on the hidden state, top-1, with a load-balancing loss.
    Switch,
    /// As Switch, but the router sees a learned embedding of the current token.
    TokenSwitch,
    /// BASE layers: a balanced assignment of the batch's tokens on learned scores in training,
    /// the best expert at evaluation, outputs gated by the score's sigmoid.
    Base,
}

impl SparseKind {
    /// Its name in configs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            SparseKind::Dense => "dense",
            SparseKind::Hash => "hash",
            SparseKind::Multihash => "multihash",
            SparseKind::Switch => "switch",
            SparseKind::TokenSwitch => "token-switch",
            SparseKind::Base => "base",
        }
    }

    /// Routed by a table from the loader.
    pub fn uses_table(self) -> bool {
        matches!(self, SparseKind::Hash | SparseKind::Multihash)
    }

    /// Routed by a learned router (K given in the config).
    pub fn is_switch(self) -> bool {
        matches!(
            self,
            SparseKind::Switch | SparseKind::TokenSwitch | SparseKind::Base
        )
    }
}

/// One sparse layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseLayer {
    /// Which layer, counted from 1 as in the paper ("layer 7 of 11").
    pub at: usize,
    /// What it is.
    pub kind: SparseKind,
    /// Number of experts K (hash kinds: taken from the table; if given it must agree).
    #[serde(default)]
    pub experts: Option<u32>,
    /// Hash kinds: the table file (`hashprep build-table --out`).
    #[serde(default)]
    pub table: Option<PathBuf>,
    /// Hash kinds: which layer of a `--layers N` table.
    #[serde(default)]
    pub table_layer: u32,
    /// Switch kinds: coefficient of the load-balancing loss (paper: 0.1).
    #[serde(default = "default_load_bal")]
    pub load_bal: f64,
    /// Switch kinds: an expert takes at most `capacity_factor * tokens / K` tokens per batch;
    /// the rest skip the layer (residual only). None: no limit.
    #[serde(default)]
    pub capacity_factor: Option<f64>,
    /// Expert kinds: each expert's hidden width D (default: `model.d_ff`).
    #[serde(default)]
    pub d_ff: Option<i64>,
    /// `hash`: experts per token k (taken from the table; must agree if given).
    #[serde(default)]
    pub top_k: Option<u32>,
    /// `hash` with a top-k table: how the k experts' outputs are weighted (default
    /// `sqrtsoftplus`, DeepSeek-V4's).
    #[serde(default)]
    pub scoring: Option<Scoring>,
}

/// How a top-k hash layer weights its k experts' outputs: a learned gate `W` (`K x d`) scores
/// every expert, `s = f(W h)`, and the k chosen ones get `s_e / sum of the k s` (DeepSeek-V4's
/// hash layers); `uniform` gives each `1/k` and has no gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    /// `f = softmax` over all K experts.
    Softmax,
    /// `f = sigmoid`.
    Sigmoid,
    /// `f = sqrt(softplus(x))` (DeepSeek-V4).
    Sqrtsoftplus,
    /// `1/k` each, no gate.
    Uniform,
}

impl Scoring {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Softmax => "softmax",
            Scoring::Sigmoid => "sigmoid",
            Scoring::Sqrtsoftplus => "sqrtsoftplus",
            Scoring::Uniform => "uniform",
        }
    }
}

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

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
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

fn default_dropout() -> f64 {
    0.1
}

fn default_true() -> bool {
    true
}

fn default_load_bal() -> f64 {
    0.1
}

/// The most experts a Switch, Token-Switch or BASE layer may have (`experts`): 64 times
/// DeepSeek-V3's 256, and a bound on what a mistyped value allocates.
pub const MAX_EXPERTS: u32 = 1 << 16;

impl RunConfig {
    /// Reads `path`, applies `overrides` (`key.path=value`, value in TOML syntax or a bare
    /// string) and checks the result.
    ///
    /// # Errors
    /// The file cannot be read, does not parse, an override names no setting, or a value is
    /// out of range; each names the file or the override.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path, overrides)
    }

    /// As [`RunConfig::load`], from text; `origin` names it in errors.
    ///
    /// # Errors
    /// See [`RunConfig::load`].
    pub fn parse(text: &str, origin: &Path, overrides: &[String]) -> Result<Self> {
        let config: RunConfig = parse_toml(text, origin, overrides)?;
        config.validate().map_err(|message| Error::Config {
            path: origin.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// The config as TOML (what `runs/NAME/config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serializes")
    }

    /// Checks ranges and that each sparse layer has what its kind needs.
    ///
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.check_finite()?;
        let m = &self.model;
        if m.layers == 0 || m.d_model <= 0 || m.d_ff <= 0 || m.heads <= 0 || m.context == 0 {
            return Err("model.layers, d_model, d_ff, heads and context must be at least 1".into());
        }
        if m.d_model % m.heads != 0 {
            return Err(format!(
                "model.d_model {} is not a multiple of model.heads {}",
                m.d_model, m.heads
            ));
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return Err(format!("model.dropout {} must be in [0, 1)", m.dropout));
        }
        let mut seen = Vec::new();
        for (i, s) in m.sparse.iter().enumerate() {
            let name = format!("model.sparse[{i}] (at = {})", s.at);
            if s.at == 0 || s.at > m.layers {
                return Err(format!(
                    "{name}: layers count from 1 to model.layers = {}",
                    m.layers
                ));
            }
            if seen.contains(&s.at) {
                return Err(format!("{name}: layer {} is given twice", s.at));
            }
            seen.push(s.at);
            if s.kind.uses_table() && s.table.is_none() {
                return Err(format!("{name}: kind {} needs a table", s.kind.name()));
            }
            if !s.kind.uses_table() && s.table.is_some() {
                return Err(format!("{name}: kind {} takes no table", s.kind.name()));
            }
            if s.kind.is_switch() && s.experts.unwrap_or(0) < 1 {
                return Err(format!("{name}: kind {} needs experts >= 1", s.kind.name()));
            }
            if s.load_bal < 0.0 {
                return Err(format!("{name}: load_bal must not be negative"));
            }
            if s.capacity_factor.is_some_and(|c| c <= 0.0) {
                return Err(format!("{name}: capacity_factor must be positive"));
            }
            if s.kind == SparseKind::Dense && s.d_ff.is_some() {
                return Err(format!(
                    "{name}: d_ff is the experts' width; a dense layer uses model.d_ff"
                ));
            }
            if s.d_ff.is_some_and(|d| d < 1) {
                return Err(format!("{name}: d_ff must be at least 1"));
            }
            if s.kind != SparseKind::Hash && (s.top_k.is_some() || s.scoring.is_some()) {
                return Err(format!(
                    "{name}: top_k and scoring are settings of kind hash, not {}",
                    s.kind.name()
                ));
            }
            if s.top_k == Some(0) {
                return Err(format!("{name}: top_k 0 must be at least 1"));
            }
        }
        let t = &self.train;
        if t.runtime.steps == 0 || t.optimization.batch_size == 0 || t.runtime.log_every == 0 {
            return Err("train.steps, batch_size and log_every must be at least 1".into());
        }
        if t.optimization.lr <= 0.0 || t.optimization.clip < 0.0 || t.optimization.eps <= 0.0 {
            return Err("train.lr and eps must be positive, clip not negative".into());
        }
        if !(0.0..1.0).contains(&t.optimization.betas.0)
            || !(0.0..1.0).contains(&t.optimization.betas.1)
        {
            return Err("train.betas must be in [0, 1)".into());
        }
        if t.runtime.keep_checkpoints == 0 {
            return Err("train.keep_checkpoints must be at least 1".into());
        }
        self.check_sizes()
    }

    /// Refuses sizes that no real run reaches before anything is allocated: a mistyped
    /// `prefetch` or `experts` would otherwise abort the process on a failed allocation.
    fn check_sizes(&self) -> std::result::Result<(), String> {
        let (m, t) = (&self.model, &self.train);
        for (name, value, cap) in [
            ("train.workers", t.runtime.workers, hashprep::MAX_WORKERS),
            ("train.prefetch", t.runtime.prefetch, hashprep::MAX_PREFETCH),
        ] {
            if value > cap {
                return Err(format!("{name} {value} is above the limit of {cap}"));
            }
        }
        let positions = (t.optimization.batch_size as u64).saturating_mul(m.context as u64);
        if positions > hashprep::MAX_BATCH_POSITIONS {
            return Err(format!(
                "train.batch_size {} x model.context {} = {positions} positions per batch, more \
                 than the limit of {}",
                t.optimization.batch_size,
                m.context,
                hashprep::MAX_BATCH_POSITIONS
            ));
        }
        for (i, s) in m.sparse.iter().enumerate() {
            let name = format!("model.sparse[{i}]");
            if let Some(experts) = s.experts.filter(|&k| k > MAX_EXPERTS) {
                return Err(format!(
                    "{name}.experts {experts} is above the limit of {MAX_EXPERTS}"
                ));
            }
        }
        Ok(())
    }

    /// Refuses `nan` and `inf` in every real-valued setting (comparisons let NaN through).
    fn check_finite(&self) -> std::result::Result<(), String> {
        let (m, t) = (&self.model, &self.train);
        let mut settings = vec![
            ("model.dropout".to_owned(), m.dropout),
            ("train.lr".to_owned(), t.optimization.lr),
            ("train.clip".to_owned(), t.optimization.clip),
            ("train.betas[0]".to_owned(), t.optimization.betas.0),
            ("train.betas[1]".to_owned(), t.optimization.betas.1),
            ("train.eps".to_owned(), t.optimization.eps),
        ];
        for (i, s) in m.sparse.iter().enumerate() {
            settings.push((format!("model.sparse[{i}].load_bal"), s.load_bal));
            if let Some(c) = s.capacity_factor {
                settings.push((format!("model.sparse[{i}].capacity_factor"), c));
            }
        }
        match settings.into_iter().find(|(_, v)| !v.is_finite()) {
            Some((name, value)) => Err(format!("{name} = {value} is not a finite number")),
            None => Ok(()),
        }
    }

    /// Sparse layer settings of layer `at` (1-based), if it has any.
    pub fn sparse_at(&self, at: usize) -> Option<&SparseLayer> {
        self.model.sparse.iter().find(|s| s.at == at)
    }
}

/// Parses TOML `text` (named `origin` in errors), applies `--set` `overrides`, and
/// deserializes the result: what run and sweep configs share.
///
/// # Errors
/// The text does not parse, an override names no setting, or the result does not fit `T`.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &Path,
    overrides: &[String],
) -> Result<T> {
    let config_error = |message: String| Error::Config {
        path: origin.to_owned(),
        message,
    };
    let table: toml::Table = toml::from_str(text).map_err(|e| config_error(e.to_string()))?;
    let mut root = toml::Value::Table(table);
    for item in overrides {
        apply_override(&mut root, item).map_err(|message| Error::Config {
            path: PathBuf::from(format!("`set` {item}")),
            message,
        })?;
    }
    root.try_into()
        .map_err(|e: toml::de::Error| config_error(e.to_string()))
}

/// Sets `key.path=value` in `root`. Array elements are addressed by index
/// (`model.sparse.0.kind=switch`). The value is parsed as TOML, else taken as a string.
pub(crate) fn apply_override(
    root: &mut toml::Value,
    item: &str,
) -> std::result::Result<(), String> {
    let (key, raw) = item
        .split_once('=')
        .ok_or("expected key=value, e.g. train.steps=200")?;
    let value = parse_value(raw.trim());
    let parts: Vec<&str> = key.trim().split('.').collect();
    let (last, parents) = parts.split_last().expect("split yields one part");
    let mut node = root;
    for part in parents {
        node = child(node, part)?;
    }
    match node {
        toml::Value::Table(t) => {
            t.insert((*last).to_owned(), value);
        }
        toml::Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("`{last}` is not an index"))?;
            let slot = a.get_mut(i).ok_or(format!("no element {i}"))?;
            *slot = value;
        }
        _ => return Err(format!("`{key}`: its parent is not a table")),
    }
    Ok(())
}

fn child<'a>(
    node: &'a mut toml::Value,
    part: &str,
) -> std::result::Result<&'a mut toml::Value, String> {
    match node {
        toml::Value::Table(t) => Ok(t
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))),
        toml::Value::Array(a) => {
            let i: usize = part
                .parse()
                .map_err(|_| format!("`{part}` is not an index"))?;
            a.get_mut(i).ok_or(format!("no element {i}"))
        }
        _ => Err(format!("`{part}` is not a table")),
    }
}

fn parse_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    toml::from_str::<toml::Table>(&wrapped)
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[data]
train = "t"
valid = "v"

[model]
layers = 2
d_model = 8
d_ff = 16
heads = 2
context = 4

[[model.sparse]]
at = 2
kind = "switch"
experts = 4

[train]
steps = 10
lr = 0.001
"#;

    fn parsed(overrides: &[&str]) -> Result<RunConfig> {
        let overrides: Vec<String> = overrides.iter().map(ToString::to_string).collect();
        RunConfig::parse(BASE, Path::new("base.toml"), &overrides)
    }

    #[test]
    fn overrides_take_toml_values_bare_strings_and_array_indices() {
        let config = parsed(&[
            "train.steps=200",
            "train.betas=[0.8, 0.9]",
            "train.device = cuda:1",
            "model.sparse.0.kind=token-switch",
            "model.sparse.0.capacity_factor=1.5",
            "data.test=elsewhere",
        ])
        .unwrap();
        assert_eq!(config.train.runtime.steps, 200);
        assert_eq!(config.train.optimization.betas, (0.8, 0.9));
        assert_eq!(config.train.runtime.device, "cuda:1");
        assert_eq!(config.model.sparse[0].kind, SparseKind::TokenSwitch);
        assert_eq!(config.model.sparse[0].capacity_factor, Some(1.5));
        assert_eq!(config.data.test.as_deref(), Some(Path::new("elsewhere")));
        // Untouched settings keep the file's values and the defaults.
        assert_eq!(config.train.optimization.lr, 0.001);
        assert_eq!(config.train.runtime.log_every, 10);
    }

    #[test]
    fn bad_overrides_are_refused_naming_the_override() {
        for (item, said) in [
            ("train.steps", "expected key=value"),
            ("train.stepz=3", "stepz"),
            ("model.sparse.x.kind=hash", "`x` is not an index"),
            ("model.sparse.3.kind=hash", "no element 3"),
            ("train.steps.deeper=1", "not a table"),
            ("train.lr=nan", "train.lr"),
        ] {
            let err = parsed(&[item]).unwrap_err().to_string();
            assert!(err.contains(said), "{item}: {err}");
        }
        let err = parsed(&["model.sparse.3.kind=hash"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("`set` model.sparse.3.kind=hash"), "{err}");
    }

    #[test]
    fn train_is_one_flat_table_split_into_optimization_and_runtime() {
        let config = parsed(&["train.threads=3", "train.seed=7"]).unwrap();
        assert_eq!(config.train.runtime.threads, 3);
        assert_eq!(config.train.optimization.seed, 7);
        let text = config.to_toml();
        let train = text.split("[train]").nth(1).expect("a [train] table");
        assert!(
            train.contains("threads = 3") && train.contains("seed = 7"),
            "{text}"
        );
        assert!(
            !text.contains("optimization") && !text.contains("runtime"),
            "{text}"
        );
        let again = RunConfig::parse(&text, Path::new("again.toml"), &[]).unwrap();
        assert_eq!(again, config);
        // Settings at their defaults that earlier versions did not have are not written, so an
        // earlier run's config.toml is still the text this version writes for it.
        assert!(
            !text.contains("precision") && !text.contains("expert_matmul"),
            "{text}"
        );
        let set = parsed(&["train.precision=bf16", "train.expert_matmul=grouped"]).unwrap();
        assert_eq!(set.train.optimization.precision, Precision::Bf16);
        let text = set.to_toml();
        assert!(
            text.contains("precision = \"bf16\"") && text.contains("expert_matmul = \"grouped\"")
        );
        assert_eq!(
            RunConfig::parse(&text, Path::new("again.toml"), &[]).unwrap(),
            set
        );
        assert!(parsed(&["train.precision=fp16"]).is_err());
    }
}
