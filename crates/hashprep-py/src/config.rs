//! hashtrain's run config for Python: `RunConfig.load(path, overrides=[...])` reads, defaults and
//! checks a config with the crate hashtrain reads it with (same refusals, same messages), and
//! hands it over as typed, read-only objects.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::errors::{config_to_py, detached, Error};

/// A whole run config (`schemas/run-config.md`): `data`, `model` (its `sparse` layers) and
/// `train`, defaults filled in and checked as hashtrain checks them.
#[pyclass(module = "hashprep", frozen)]
pub(crate) struct RunConfig {
    pub(crate) inner: hashtrain_config::RunConfig,
}

/// `[data]`: the tokenize outputs of a run.
#[pyclass(module = "hashprep", frozen, get_all)]
pub(crate) struct DataConfig {
    train: PathBuf,
    valid: PathBuf,
    test: Option<PathBuf>,
}

/// `[model]`: the Transformer (decoder-only, or `kind = "seq2seq"` with an encoder) and its
/// sparse layers.
#[pyclass(module = "hashprep", frozen, get_all)]
pub(crate) struct ModelConfig {
    kind: &'static str,
    layers: usize,
    encoder_layers: usize,
    encoder_context: Option<usize>,
    d_model: i64,
    d_ff: i64,
    heads: i64,
    dropout: f64,
    context: usize,
    positions: &'static str,
    tie_embeddings: bool,
    sparse: Vec<Py<SparseLayer>>,
}

/// One `[[model.sparse]]` layer: `at` (1-based), `kind`, and the settings of its kind (None
/// where not given).
#[pyclass(module = "hashprep", frozen, get_all)]
pub(crate) struct SparseLayer {
    at: usize,
    stack: &'static str,
    kind: &'static str,
    experts: Option<u32>,
    table: Option<PathBuf>,
    table_layer: u32,
    load_bal: f64,
    capacity_factor: Option<f64>,
    d_ff: Option<i64>,
    top_k: Option<u32>,
    scoring: Option<&'static str>,
}

/// `[train]`, one flat table as written.
#[pyclass(module = "hashprep", frozen, get_all)]
pub(crate) struct TrainConfig {
    steps: u64,
    batch_size: usize,
    lr: f64,
    warmup: u64,
    clip: f64,
    betas: (f64, f64),
    eps: f64,
    seed: u64,
    precision: &'static str,
    freeze: Vec<&'static str>,
    eval_every: u64,
    eval_batches: u64,
    log_every: u64,
    checkpoint_every: u64,
    keep_checkpoints: usize,
    device: String,
    workers: usize,
    prefetch: usize,
    threads: usize,
    expert_matmul: &'static str,
}

#[pymethods]
impl RunConfig {
    /// Reads the run config `path`, applies `overrides` (`key.path=value`, as hashtrain's
    /// `--set`) and checks it. Raises `hashprep.Error` naming the file, override or setting.
    #[staticmethod]
    #[pyo3(signature = (path, overrides = Vec::new()))]
    fn load(py: Python<'_>, path: PathBuf, overrides: Vec<String>) -> PyResult<Self> {
        let inner = detached(py, || hashtrain_config::RunConfig::load(&path, &overrides))?;
        Ok(Self { inner })
    }

    /// As `load`, from TOML text; `origin` names it in errors.
    #[staticmethod]
    #[pyo3(signature = (text, origin = PathBuf::from("<text>"), overrides = Vec::new()))]
    fn parse(text: &str, origin: PathBuf, overrides: Vec<String>) -> PyResult<Self> {
        hashtrain_config::RunConfig::parse(text, &origin, &overrides)
            .map(|inner| Self { inner })
            .map_err(|e| config_to_py(&e))
    }

    /// As `parse`, from the JSON form hashtrain's checkpoints record (`state.json`'s `config`).
    #[staticmethod]
    #[pyo3(signature = (text, origin = PathBuf::from("<text>"), overrides = Vec::new()))]
    fn from_json(text: &str, origin: PathBuf, overrides: Vec<String>) -> PyResult<Self> {
        let config: hashtrain_config::RunConfig = serde_json::from_str(text).map_err(|e| {
            Error::new_err(format!(
                "{}: not a run config in JSON: {e}",
                origin.display()
            ))
        })?;
        Self::parse(&config.to_toml(), origin, overrides)
    }

    #[getter]
    fn data(&self) -> DataConfig {
        let d = &self.inner.data;
        DataConfig {
            train: d.train.clone(),
            valid: d.valid.clone(),
            test: d.test.clone(),
        }
    }

    #[getter]
    fn model(&self, py: Python<'_>) -> PyResult<ModelConfig> {
        let m = &self.inner.model;
        let sparse = m
            .sparse
            .iter()
            .map(|s| Py::new(py, SparseLayer::from(s)))
            .collect::<PyResult<_>>()?;
        Ok(ModelConfig {
            kind: m.kind.name(),
            layers: m.layers,
            encoder_layers: m.encoder_layers,
            encoder_context: m.encoder_context,
            d_model: m.d_model,
            d_ff: m.d_ff,
            heads: m.heads,
            dropout: m.dropout,
            context: m.context,
            positions: m.positions.name(),
            tie_embeddings: m.tie_embeddings,
            sparse,
        })
    }

    #[getter]
    fn train(&self) -> TrainConfig {
        let (o, r) = (&self.inner.train.optimization, &self.inner.train.runtime);
        TrainConfig {
            steps: r.steps,
            batch_size: o.batch_size,
            lr: o.lr,
            warmup: o.warmup,
            clip: o.clip,
            betas: o.betas,
            eps: o.eps,
            seed: o.seed,
            precision: o.precision.name(),
            freeze: o.freeze.iter().map(|f| f.name()).collect(),
            eval_every: r.eval_every,
            eval_batches: r.eval_batches,
            log_every: r.log_every,
            checkpoint_every: r.checkpoint_every,
            keep_checkpoints: r.keep_checkpoints,
            device: r.device.clone(),
            workers: r.workers,
            prefetch: r.prefetch,
            threads: r.threads,
            expert_matmul: r.expert_matmul.name(),
        }
    }

    /// The distinct table files of the table-routed layers, in config order.
    fn table_paths(&self) -> Vec<PathBuf> {
        self.inner.table_paths()
    }

    /// The config as TOML, as hashtrain writes it into its run folders.
    fn to_toml(&self) -> String {
        self.inner.to_toml()
    }

    /// The settings that keep a checkpoint trained under `then` from resuming under this
    /// config (all but `[train]`'s runtime settings), each named by its path with both values;
    /// empty when it resumes (hashtrain's rule and words).
    fn resume_differences(&self, then: &RunConfig) -> Vec<String> {
        self.inner.resume_differences(&then.inner)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<RunConfig>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "RunConfig(<{} sparse layer(s)>)",
            self.inner.model.sparse.len()
        )
    }
}

impl From<&hashtrain_config::SparseLayer> for SparseLayer {
    fn from(s: &hashtrain_config::SparseLayer) -> Self {
        Self {
            at: s.at,
            stack: s.stack.name(),
            kind: s.kind.name(),
            experts: s.experts,
            table: s.table.clone(),
            table_layer: s.table_layer,
            load_bal: s.load_bal,
            capacity_factor: s.capacity_factor,
            d_ff: s.d_ff,
            top_k: s.top_k,
            scoring: s.scoring.map(hashtrain_config::Scoring::name),
        }
    }
}

#[pymethods]
impl SparseLayer {
    fn __repr__(&self) -> String {
        let table = self
            .table
            .as_deref()
            .map_or(String::new(), |t| format!(", table='{}'", t.display()));
        format!("SparseLayer(at={}, kind={:?}{table})", self.at, self.kind)
    }
}
