//! `hashtrain sweep`: the paper's Table 3 comparisons in one command. With one budget (model,
//! steps, data) it trains the dense baseline and a model per routing method with one sparse
//! layer of K experts, evaluates each on validation and test data, and writes
//! `OUT/results.md` (and `results.json`) plus `OUT/curves.png`.
//!
//! `OUT/data/` holds the tokenized splits, `OUT/tables/` the routing tables (clustered and
//! dispersed from the trained baseline's embeddings), `OUT/runs/NAME/` each run. A rerun skips
//! finished runs and resumes unfinished ones from their checkpoints; the results are always
//! recomputed from the run folders. Format of the config: `schemas/sweep-config.md`.

mod data;
#[cfg(feature = "plot")]
mod figure;
mod finetune;
mod grid;
mod report;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hashprep::{build_table_files, BuildTableRequest};
use hashprep::{Method, TableSpec};
use serde::{Deserialize, Serialize};

pub(crate) use data::{prepare, PreparedData, SweepData};
use finetune::FinetuneResult;
pub use finetune::{FinetunePlan, FinetuneRun};
pub(crate) use grid::{DenseShape, Layout, OneOrMany, Placement};
pub(crate) use report::write_report;
pub use report::{MethodResult, RunId};

use crate::config::{DataConfig, ModelConfig, RunConfig, SparseKind, SparseLayer, TrainConfig};
use crate::error::{Error, Result};
use crate::train::{self, evaluate, RunOptions};

/// A sweep config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Heading of the results.
    pub title: String,
    /// How the data is made.
    pub data: SweepData,
    /// The shared model (its `sparse` list must be empty: the sweep adds one layer per method).
    pub model: ModelConfig,
    /// The shared budget.
    #[serde(default)]
    pub train: TrainConfig,
    /// What is compared.
    pub sweep: SweepPlan,
    /// Fine-tuning of the trained models (the paper's Table 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetunePlan>,
}

/// The compared models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepPlan {
    /// Experts K of every sparse layer; a list trains every method once per value (Figure 3).
    pub experts: OneOrMany<u32>,
    /// Which layer is sparse (1-based); a list trains every method once per entry, an entry
    /// that is itself a list (`[2, 4]`) makes all those layers sparse in one model.
    pub layer: OneOrMany<Placement>,
    /// Dense baselines of other shapes, trained after `dense` (Table 1's wider and deeper).
    #[serde(default)]
    pub dense: Vec<DenseShape>,
    /// Switch kinds: load-balancing coefficient; a list trains every Switch kind once per
    /// value (Table 9).
    #[serde(default = "default_load_bal")]
    pub load_bal: OneOrMany<f64>,
    /// Switch kinds: capacity factor.
    #[serde(default)]
    pub capacity_factor: Option<f64>,
    /// Seeds to train every method with; the results give each method's mean and standard
    /// deviation over them. Empty (the default): one run per method with `train.seed`.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Every sparse layout gets the expert parameters of the layout with the most sparse
    /// layers: with N layers there and n here, each expert is `N / n` times as wide (the
    /// paper's Figure 2, right: one layer of experts of 3 stacked FFNs against 3 layers of
    /// one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub equal_parameters: bool,
    /// `results.md` adds each model's validation perplexity at every evaluation (mean ±
    /// deviation over seeds): the numbers of `curves.png` (the paper's Figure 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub curve_table: bool,
    /// In order: `dense`, `balanced`, `random`, `clustered`, `dispersed`, `position`,
    /// `bigram`, `previous`, `oracle`, `multihash-N`, `balanced-topN`, `switch`, `token-switch`,
    /// `base`.
    pub methods: Vec<String>,
}

fn default_load_bal() -> OneOrMany<f64> {
    OneOrMany::One(0.1)
}

/// One compared model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepMethod {
    /// The dense baseline.
    Dense,
    /// A hash layer routed by a table of this method.
    Table(Method),
    /// MultiHash with N balanced hashes.
    MultiHash(u32),
    /// A balanced top-N table over N times the experts, each N times narrower: the active
    /// compute and the parameters of the top-1 layer.
    TopK(u32),
    /// Switch.
    Switch,
    /// Token-Switch.
    TokenSwitch,
    /// BASE layers.
    Base,
}

impl SweepMethod {
    /// Parses a method name of the config.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        Ok(match name {
            "dense" => SweepMethod::Dense,
            "switch" => SweepMethod::Switch,
            "token-switch" => SweepMethod::TokenSwitch,
            "base" => SweepMethod::Base,
            other => {
                // Every table method by the table module's own names.
                if let Ok(method) = Method::from_name(other) {
                    return Ok(SweepMethod::Table(method));
                }
                let n = |prefix: &str| other.strip_prefix(prefix).and_then(|n| n.parse().ok());
                match (n("multihash-"), n("balanced-top")) {
                    (Some(n), _) if n >= 2 => SweepMethod::MultiHash(n),
                    (_, Some(k)) if k >= 2 => SweepMethod::TopK(k),
                    _ => {
                        let tables: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                        return Err(format!(
                            "unknown method `{other}` (dense, {}, multihash-N, balanced-topN, \
                             switch, token-switch, base; N >= 2)",
                            tables.join(", ")
                        ));
                    }
                }
            }
        })
    }

    /// Its name in the config and the run folder.
    pub fn name(self) -> String {
        match self {
            SweepMethod::Dense => "dense".into(),
            SweepMethod::Table(m) => m.name().into(),
            SweepMethod::MultiHash(n) => format!("multihash-{n}"),
            SweepMethod::TopK(k) => format!("balanced-top{k}"),
            SweepMethod::Switch => "switch".into(),
            SweepMethod::TokenSwitch => "token-switch".into(),
            SweepMethod::Base => "base".into(),
        }
    }

    fn uses_table(self) -> bool {
        matches!(
            self,
            SweepMethod::Table(_) | SweepMethod::MultiHash(_) | SweepMethod::TopK(_)
        )
    }

    fn needs_embeddings(self) -> bool {
        matches!(
            self,
            SweepMethod::Table(Method::Clustered | Method::Dispersed)
        )
    }
}

/// One training of every method: its seed, and the suffix of its run and table names
/// (`-seedS`; none for a sweep without `seeds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// `train.seed` of its runs (and the seed of its tables).
    pub seed: u64,
    /// Appended to run folder and table names.
    pub suffix: String,
}

/// One model of the sweep, trained once per replica.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// How it routes (or `Dense`).
    pub method: SweepMethod,
    /// Its sparse layers (`None` for dense models).
    pub layout: Option<Layout>,
    /// The shape of a dense baseline other than the shared model's.
    pub shape: Option<DenseShape>,
    /// Switch kinds: its load-balancing coefficient.
    pub load_bal: Option<f64>,
    /// Its run and table name, before the replica's suffix: the method's name, then the
    /// layout's suffix or `-NAME` of the dense shape, then `-lbC` where `sweep.load_bal`
    /// lists several coefficients.
    pub name: String,
}

/// How to run a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Start over: remove `OUT` first.
    pub force: bool,
    /// Progress bars on stderr.
    pub progress: bool,
    /// The command line, recorded in the results.
    pub command: String,
}

impl SweepConfig {
    /// Reads `path` with `--set` overrides (as [`RunConfig::load`]) and checks it.
    ///
    /// # Errors
    /// Unreadable, unparsable or inconsistent, naming the file or setting.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config_error = |message: String| Error::Config {
            path: path.to_owned(),
            message,
        };
        let config: SweepConfig = crate::config::parse_toml(&text, path, overrides)?;
        config.methods().map_err(config_error)?;
        let plan = &config.sweep;
        grid::check(&plan.experts, &plan.layer, &plan.dense, &config.model)
            .map_err(config_error)?;
        if !config.model.sparse.is_empty() {
            return Err(config_error(
                "model.sparse must be empty: the sweep adds the sparse layer of each method".into(),
            ));
        }
        let coefficients = config.sweep.load_bal.values();
        if coefficients.is_empty() {
            return Err(config_error("sweep.load_bal: an empty list".into()));
        }
        if let Some(c) = grid::repeated(&coefficients) {
            return Err(config_error(format!("sweep.load_bal: {c} is listed twice")));
        }
        if let Some(seed) = grid::repeated(&config.sweep.seeds) {
            return Err(config_error(format!("sweep.seeds: {seed} is listed twice")));
        }
        let jobs = config.jobs().map_err(config_error)?;
        if let Some(plan) = &config.finetune {
            plan.check(&jobs).map_err(config_error)?;
        }
        // Every run config of the sweep must be valid.
        for job in jobs {
            let table = job.method.uses_table().then_some(Path::new("table.arrow"));
            config
                .run_config(&job, &placeholder_data(), table)
                .validate()
                .map_err(|e| config_error(format!("{}: {e}", job.name)))?;
        }
        Ok(config)
    }

    /// The methods, parsed; `clustered` / `dispersed` need `dense` before them.
    ///
    /// # Errors
    /// An unknown or repeated method, or clustered/dispersed without dense first.
    pub fn methods(&self) -> std::result::Result<Vec<SweepMethod>, String> {
        let mut methods: Vec<SweepMethod> = Vec::new();
        for name in &self.sweep.methods {
            let method = SweepMethod::parse(name).map_err(|e| format!("sweep.methods: {e}"))?;
            if methods.contains(&method) {
                return Err(format!("sweep.methods: `{name}` is listed twice"));
            }
            if method.needs_embeddings() && !methods.contains(&SweepMethod::Dense) {
                return Err(format!(
                    "sweep.methods: `{name}` clusters the dense baseline's embeddings: list `dense` before it"
                ));
            }
            if let SweepMethod::TopK(k) = method {
                if self.model.d_ff % i64::from(k) != 0 {
                    return Err(format!(
                        "sweep.methods: `{name}` gives experts d_ff / {k}: model.d_ff {} is not a multiple of {k}",
                        self.model.d_ff
                    ));
                }
            }
            methods.push(method);
        }
        if methods.is_empty() {
            return Err("sweep.methods is empty".into());
        }
        if self.sweep.equal_parameters {
            let most = self.most_sparse_layers() as i64;
            let d_ff = self.model.d_ff;
            if let Some(n) = self
                .sparse_layer_counts()
                .into_iter()
                .find(|&n| (d_ff * most) % n as i64 != 0)
            {
                return Err(format!(
                    "sweep.equal_parameters: model.d_ff {d_ff} x {most} layers does not split over {n} layers"
                ));
            }
        }
        Ok(methods)
    }

    /// Every model of the sweep, in the order they train: each method over the grid's layouts;
    /// `dense` followed by its other shapes.
    ///
    /// # Errors
    /// As [`SweepConfig::methods`].
    pub fn jobs(&self) -> std::result::Result<Vec<Job>, String> {
        let layouts = Layout::grid(&self.sweep.experts, &self.sweep.layer);
        let mut jobs = Vec::new();
        for method in self.methods()? {
            if method == SweepMethod::Dense {
                jobs.push(Job {
                    method,
                    layout: None,
                    shape: None,
                    load_bal: None,
                    name: method.name(),
                });
                jobs.extend(self.sweep.dense.iter().map(|shape| Job {
                    method,
                    layout: None,
                    shape: Some(shape.clone()),
                    load_bal: None,
                    name: format!("dense-{}", shape.name),
                }));
                continue;
            }
            // Switch kinds once per coefficient, named by it where there are several.
            let values = self.sweep.load_bal.values();
            let coefficients: Vec<Option<f64>> =
                if matches!(method, SweepMethod::Switch | SweepMethod::TokenSwitch) {
                    values.iter().copied().map(Some).collect()
                } else {
                    vec![None]
                };
            for layout in &layouts {
                for &load_bal in &coefficients {
                    let mut name = format!("{}{}", method.name(), layout.suffix);
                    if let Some(c) = load_bal.filter(|_| values.len() > 1) {
                        let _ = write!(name, "-lb{c}");
                    }
                    jobs.push(Job {
                        method,
                        layout: Some(layout.clone()),
                        shape: None,
                        load_bal,
                        name,
                    });
                }
            }
        }
        Ok(jobs)
    }

    /// Every training of the methods: one per seed of `sweep.seeds`, or `train.seed` alone.
    pub fn replicas(&self) -> Vec<Replica> {
        if self.sweep.seeds.is_empty() {
            return vec![Replica {
                seed: self.train.optimization.seed,
                suffix: String::new(),
            }];
        }
        self.sweep
            .seeds
            .iter()
            .map(|&seed| Replica {
                seed,
                suffix: format!("-seed{seed}"),
            })
            .collect()
    }

    /// The run config of `job` over `data`, routed by `table` (hash kinds; one table layer per
    /// sparse layer).
    pub fn run_config(&self, job: &Job, data: &PreparedData, table: Option<&Path>) -> RunConfig {
        let plan = &self.sweep;
        let first_load_bal = plan.load_bal.values().first().copied().unwrap_or(0.1);
        let mut model = job
            .shape
            .as_ref()
            .map_or_else(|| self.model.clone(), |shape| shape.apply(&self.model));
        let kind = match job.method {
            SweepMethod::Dense => None,
            SweepMethod::Table(_) | SweepMethod::TopK(_) => Some(SparseKind::Hash),
            SweepMethod::MultiHash(_) => Some(SparseKind::Multihash),
            SweepMethod::Switch => Some(SparseKind::Switch),
            SweepMethod::TokenSwitch => Some(SparseKind::TokenSwitch),
            SweepMethod::Base => Some(SparseKind::Base),
        };
        let top_k = match job.method {
            SweepMethod::TopK(k) => Some(k),
            _ => None,
        };
        model.sparse = match (kind, &job.layout) {
            (Some(kind), Some(layout)) => (0u32..)
                .zip(&layout.layers)
                .map(|(table_layer, &at)| SparseLayer {
                    at,
                    stack: crate::config::Stack::Decoder,
                    kind,
                    experts: kind.is_switch().then_some(layout.experts),
                    table: table.map(Path::to_path_buf),
                    table_layer,
                    // Kinds without the loss ignore it; they keep the first value, as the runs
                    // of sweeps with a single value always did.
                    load_bal: job.load_bal.unwrap_or(first_load_bal),
                    capacity_factor: plan.capacity_factor,
                    d_ff: self.expert_width(layout, top_k),
                    top_k,
                    scoring: None,
                })
                .collect(),
            _ => Vec::new(),
        };
        RunConfig {
            data: DataConfig {
                train: data.train.clone(),
                valid: data.valid.clone(),
                test: Some(data.test.clone()),
            },
            model,
            train: self.train.clone(),
        }
    }
}

impl SweepConfig {
    /// The experts' width of a layout where it is not `model.d_ff`: `d_ff / k` for a top-k
    /// table, times `N / n` with `equal_parameters` (n sparse layers here, N in the largest
    /// layout). Integer division: [`SweepConfig::load`] refuses widths that do not divide.
    fn expert_width(&self, layout: &Layout, top_k: Option<u32>) -> Option<i64> {
        let per_k = top_k.map_or(self.model.d_ff, |k| self.model.d_ff / i64::from(k));
        let scale = if self.sweep.equal_parameters {
            (self.most_sparse_layers() as i64, layout.layers.len() as i64)
        } else {
            (1, 1)
        };
        let width = per_k * scale.0 / scale.1;
        (width != self.model.d_ff).then_some(width)
    }

    /// The sparse layers of each model of the grid (`sweep.layer`), counted.
    fn sparse_layer_counts(&self) -> Vec<usize> {
        let placements = self.sweep.layer.values();
        placements.iter().map(|p| p.layers().len()).collect()
    }

    /// The most sparse layers of one model of the grid.
    fn most_sparse_layers(&self) -> usize {
        self.sparse_layer_counts().into_iter().max().unwrap_or(1)
    }
}

fn placeholder_data() -> PreparedData {
    PreparedData {
        train: "train".into(),
        valid: "valid".into(),
        test: "test".into(),
        finetune: None,
    }
}

/// Runs the sweep of `config` into `out`; returns the results in method order.
///
/// # Errors
/// Data, tables or a run fail (named by file), or `out` holds a sweep of other data.
pub fn run_sweep(
    config: &SweepConfig,
    out: &Path,
    options: &SweepOptions,
) -> Result<Vec<MethodResult>> {
    if options.force && out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    let jobs = config.jobs().map_err(|message| Error::Config {
        path: PathBuf::from("[sweep]"),
        message,
    })?;
    let finetune = config.finetune.as_ref();
    let data = prepare(&config.data, finetune, &out.join("data"), options.progress)?;
    let tables = out.join("tables");
    std::fs::create_dir_all(&tables).map_err(|e| Error::io(&tables, e))?;
    let (mut results, mut finetuned) = (Vec::new(), Vec::new());
    for replica in config.replicas() {
        let mut trained = Vec::new();
        for job in &jobs {
            let name = format!("{}{}", job.name, replica.suffix);
            let table = build_table(job, &data, out, &replica)?;
            let mut run_config = config.run_config(job, &data, table.as_deref());
            run_config.train.optimization.seed = replica.seed;
            let run_dir = out.join("runs").join(&name);
            eprintln!("hashtrain sweep: {name}");
            train_once(&run_config, &run_dir, None, options.progress)?;
            if job.method == SweepMethod::Dense && job.shape.is_none() {
                export_embeddings(&run_dir, &embeddings_file(out, &replica))?;
            }
            let test = test_eval(&run_dir, &data.test)?;
            let run = report::RunId {
                name,
                seed: replica.seed,
            };
            let result = MethodResult::collect(
                job,
                &run_config,
                grid::shows_positions(&config.sweep.layer),
                run,
                &run_dir,
                &test,
            )?;
            trained.push((job, run_config, run_dir, result.model.clone()));
            results.push(result);
            write_report(config, (&results, &finetuned), out, options)?;
            #[cfg(feature = "plot")]
            figure::plot_grid(&out.join("grid.png"), &config.title, &results)?;
        }
        if let (Some(plan), Some(splits)) = (finetune, &data.finetune) {
            for run in &plan.runs {
                let (job, trained_config, from, model) = trained
                    .iter()
                    .find(|(job, ..)| job.name == run.from)
                    .expect("checked when the config was read");
                let name = format!("{}{}", run.name(), replica.suffix);
                let run_config = plan.run_config(run, trained_config, (&splits.0, &splits.1));
                let run_dir = out.join("runs").join(&name);
                eprintln!("hashtrain sweep: {name}");
                train_once(&run_config, &run_dir, Some(from), options.progress)?;
                let id = (name, replica.seed);
                let describe = (model.as_str(), &run_config);
                finetuned.push(FinetuneResult::collect(run, job, describe, id, &run_dir)?);
                write_report(config, (&results, &finetuned), out, options)?;
            }
        }
    }
    Ok(results)
}

/// The dense baseline's token embeddings of a replica (for clustered / dispersed).
fn embeddings_file(out: &Path, replica: &Replica) -> PathBuf {
    out.join("tables")
        .join(format!("dense-embeddings{}.npy", replica.suffix))
}

/// Builds (once) the table a job routes by in a replica (one table layer per sparse layer);
/// `None` for dense and switch kinds.
fn build_table(
    job: &Job,
    data: &PreparedData,
    out: &Path,
    replica: &Replica,
) -> Result<Option<PathBuf>> {
    let (spec_method, hashes, top_k) = match job.method {
        SweepMethod::Table(m) => (m, 1, 1),
        SweepMethod::MultiHash(n) => (Method::Balanced, n, 1),
        SweepMethod::TopK(k) => (Method::Balanced, 1, k),
        _ => return Ok(None),
    };
    let Some(layout) = &job.layout else {
        return Ok(None);
    };
    let path = out
        .join("tables")
        .join(format!("{}{}.arrow", job.name, replica.suffix));
    if path.exists() {
        return Ok(Some(path));
    }
    let mut spec = TableSpec::new(spec_method, layout.experts * top_k);
    spec.hashes = hashes;
    spec.top_k = top_k;
    spec.layers = u32::try_from(layout.layers.len()).expect("a few sparse layers");
    spec.seed = replica.seed;
    // Previous-token and oracle routes hash the neighbouring token as balanced does the current one.
    spec.base = Method::Balanced;
    let mut request = BuildTableRequest::from_data(spec, &data.train, &path);
    request.embeddings = job
        .method
        .needs_embeddings()
        .then(|| embeddings_file(out, replica));
    build_table_files(&request)?;
    Ok(Some(path))
}

/// Trains `config` into `dir` (from the weights of the run `init_from`, when given) unless a
/// finished run of the same config is there; resumes an unfinished one.
fn train_once(
    config: &RunConfig,
    dir: &Path,
    init_from: Option<&Path>,
    progress: bool,
) -> Result<()> {
    let same_config =
        std::fs::read_to_string(dir.join("config.toml")).is_ok_and(|t| t == config.to_toml());
    if same_config && dir.join("summary.json").exists() {
        return Ok(());
    }
    let resumable = same_config && train::checkpoint::resolve(dir).is_ok();
    let options = RunOptions {
        resume: resumable,
        force: !resumable,
        progress,
        init_from: init_from.map(Path::to_path_buf),
    };
    train::run(config, dir, &options)?;
    Ok(())
}

/// Perplexity on the test data from the run's final checkpoint (cached in `test.json`).
fn test_eval(run_dir: &Path, test: &Path) -> Result<train::Evaluation> {
    let cache = run_dir.join("test.json");
    let checkpoint = train::checkpoint::resolve(run_dir)?;
    let state = train::checkpoint::read_state(&checkpoint)?;
    let step = state.step;
    if let Ok(bytes) = std::fs::read(&cache) {
        if let Ok(cached) = serde_json::from_slice::<report::TestRecord>(&bytes) {
            if cached.step == step {
                return Ok(cached.into_evaluation());
            }
        }
    }
    let device = crate::parse_device(&state.config.train.runtime.device)?;
    let (restored, mut loader) = train::restore(&checkpoint, device, Some(test))?;
    let evaluation = evaluate(&restored.model, &mut loader, device, 0, &restored.layers)?;
    let record = report::TestRecord::new(step, &evaluation);
    hashprep::util::write_atomic(
        &cache,
        &serde_json::to_vec_pretty(&record).expect("serializable"),
    )?;
    Ok(evaluation)
}

/// Writes the token embeddings of the run's final checkpoint as `.npy`.
fn export_embeddings(run_dir: &Path, path: &Path) -> Result<()> {
    let (restored, _) = train::restore(run_dir, tch::Device::Cpu, None)?;
    train::write_embeddings_npy(&restored.model, path)
}
