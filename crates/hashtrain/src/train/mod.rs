//! `hashtrain run`: the training loop, with evaluation, metrics, curves and checkpoints.
//!
//! A run folder holds `config.toml` (the config as run), `metrics.jsonl`, `curves.png`,
//! `checkpoints/` and, when the run ends, `summary.json`. `--resume` continues from the latest
//! checkpoint: weights, Adam's moments, the loader position and the open metrics window are
//! restored, and dropout is seeded per step, so the losses equal an uninterrupted run's.

mod batch;
pub mod checkpoint;
mod eval;
pub mod metrics;
mod optimizer;
mod plot;
mod session;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

pub use batch::DeviceBatch;
pub use checkpoint::{CheckpointState, OpenWindow, TableRecord};
pub use eval::{evaluate, Evaluation};
pub use metrics::{read_records, LayerLoad, MetricsLog, Record};
pub use optimizer::{inverse_sqrt_lr, Adam};
pub use plot::{plot_curves, Curve};
pub use session::{
    build_model, open_loader, parameter_count, parse_device, resolve_routing, same_tokenizer,
    sparse_layers, table_paths,
};

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::model::{masked_nll, LanguageModel};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from the latest checkpoint in the run folder.
    pub resume: bool,
    /// Start over in a run folder that already holds a run.
    pub force: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
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

/// Files of a run folder that a new run replaces.
const RUN_FILES: [&str; 4] = ["metrics.jsonl", "curves.png", "summary.json", "config.toml"];

/// Trains `config` into the run folder `out`.
///
/// # Errors
/// Bad config, data or tables (named by file), a run folder in use without `--resume` or
/// `--force`, a checkpoint that does not match the config, or a libtorch failure.
pub fn run(config: &RunConfig, out: &Path, options: &RunOptions) -> Result<RunSummary> {
    let _rng = session::torch_rng_lock();
    let resuming = prepare_run_folder(out, options)?;
    let Setup {
        mut trainer,
        mut loader,
        mut valid_loader,
        layers,
        tables,
        checkpoint_base,
    } = Setup::open(config)?;
    let device = trainer.device;
    let (mut step, mut window) = if resuming {
        resume(out, &checkpoint_base, &mut trainer, &mut loader)?
    } else {
        (0, Window::new(device))
    };
    if let Some(summary) = finished_summary(out, resuming, step, config.train.steps)? {
        return Ok(summary);
    }
    hashprep::util::write_atomic(&out.join("config.toml"), config.to_toml().as_bytes())?;
    let mut log = MetricsLog::open(&out.join("metrics.jsonl"), resuming.then_some(step))?;

    let t = &config.train;
    let progress = progress_bar(t.steps, step, options.progress);
    let (base_state, base_step) = (loader.state(), step);
    let mut totals = Totals::default();
    let mut last_eval: Option<Evaluation> = None;
    let mut batches = loader.take(t.steps.saturating_sub(step), t.workers, t.prefetch);
    while step < t.steps {
        let started = Instant::now();
        let batch = batches
            .next()
            .ok_or_else(|| Error::BadInput("the loader stopped early".into()))??;
        let waited = started.elapsed();
        step += 1;
        let batch = DeviceBatch::new(&batch, device);
        let done = trainer.step(&batch, step);
        window.add(&done, batch.tokens, started.elapsed(), waited);
        totals.add(batch.tokens, started.elapsed(), waited);
        progress.inc(1);

        if step % t.log_every == 0 {
            let steps_in_window = window.steps;
            let record = window.flush(step, done.lr, &done.grad_norm, &layers);
            log.write(&record)?;
            if let Record::Train {
                loss, tokens_per_s, ..
            } = &record
            {
                progress.set_message(format!("loss {loss:.3} | {tokens_per_s:.0} tokens/s"));
            }
            stop_if_diverged(&record, steps_in_window, out)?;
        }
        let last = step == t.steps;
        if (t.eval_every > 0 && step % t.eval_every == 0) || last {
            let evaluation = evaluate(
                &trainer.model,
                &mut valid_loader,
                device,
                t.eval_batches,
                &layers,
            )?;
            let record = Record::valid(step, &evaluation);
            log.write(&record)?;
            stop_if_diverged(&record, 0, out)?;
            plot_run(out)?;
            last_eval = Some(evaluation);
        }
        if (t.checkpoint_every > 0 && step % t.checkpoint_every == 0) || last {
            let next_batch = base_state.next_batch + (step - base_step);
            let position = (step, next_batch);
            trainer.save_checkpoint(out, position, &window, &checkpoint_base, &tables)?;
        }
        if last && window.steps > 0 {
            log.write(&window.flush(step, done.lr, &done.grad_norm, &layers))?;
        }
    }
    drop(batches);
    progress.finish_and_clear();

    let evaluation = match last_eval {
        Some(e) => e,
        None => evaluate(
            &trainer.model,
            &mut valid_loader,
            device,
            t.eval_batches,
            &layers,
        )?,
    };
    let summary = totals.summary(
        step,
        step - base_step,
        parameter_count(&trainer.vs),
        evaluation,
        out,
    );
    let json = serde_json::to_vec_pretty(&summary).expect("serializable");
    hashprep::util::write_atomic(&out.join("summary.json"), &json)?;
    plot_run(out)?;
    Ok(summary)
}

/// Restores weights, optimizer, loader position and the open metrics window from the run's
/// latest checkpoint; returns the step it was taken at and the window.
fn resume(
    out: &Path,
    base: &CheckpointState,
    trainer: &mut Trainer<'_>,
    loader: &mut hashprep::Loader,
) -> Result<(u64, Window)> {
    let dir = checkpoint::resolve(out)?;
    let state = checkpoint::read_state(&dir)?;
    check_resumable(&base.config, &state, &base.tables, &dir)?;
    checkpoint::load_weights(&dir, &mut trainer.vs)?;
    checkpoint::load_optimizer(&dir, &mut trainer.adam, state.optimizer_steps)?;
    loader.resume(&state.loader)?;
    Ok((state.step, Window::restore(&state.window, trainer.device)))
}

/// Everything a run builds from its config before the first step (also for embedding the
/// trainer in other programs and benchmarks).
pub struct Setup<'a> {
    /// Model and optimizer.
    pub trainer: Trainer<'a>,
    /// Training batches.
    pub loader: hashprep::Loader,
    /// Validation batches.
    pub valid_loader: hashprep::Loader,
    /// Sparse layers: 1-based layer -> (kind, experts).
    pub layers: BTreeMap<usize, (crate::config::SparseKind, usize)>,
    /// The routing table files, in the loader's order.
    pub tables: Vec<PathBuf>,
    /// The parts of every checkpoint's state that do not change during the run.
    pub checkpoint_base: CheckpointState,
}

impl<'a> Setup<'a> {
    /// Opens data and tables, wires the routes and builds the model and optimizer.
    ///
    /// # Errors
    /// Bad device, data or tables (named by file).
    pub fn open(config: &'a RunConfig) -> Result<Self> {
        let device = parse_device(&config.train.device)?;
        if config.train.threads > 0 {
            tch::set_num_threads(i32::try_from(config.train.threads).unwrap_or(i32::MAX));
        }
        let tables = table_paths(config);
        // Each table file is read and fingerprinted once, here.
        let table_set = hashprep::TableSet::open(&tables)?;
        let loader = open_loader(&config.data.train, config, &table_set)?;
        let valid_loader = open_loader(&config.data.valid, config, &table_set)?;
        let trained_on = &loader.manifest().tokenizer.fingerprint;
        let training_data = format!("the training data {}", config.data.train.display());
        same_tokenizer(
            &config.data.valid,
            &valid_loader.manifest().tokenizer.fingerprint,
            trained_on,
            &training_data,
        )?;
        if let Some(test) = &config.data.test {
            let fingerprint = hashprep::Manifest::read(test)?.tokenizer.fingerprint;
            same_tokenizer(test, &fingerprint, trained_on, &training_data)?;
        }
        let routing = resolve_routing(config, &loader)?;
        let tokenizer = loader.manifest().tokenizer.clone();
        let (vs, model) = build_model(config, tokenizer.vocab_size, &routing, device);
        let adam = Adam::new(
            vs.variables().into_iter().collect(),
            config.train.betas,
            config.train.eps,
        );
        let table_records = table_set
            .paths()
            .zip(table_set.fingerprints())
            .enumerate()
            .map(|(i, (path, fingerprint))| TableRecord {
                source: path.to_owned(),
                file: format!("tables/{i:02}.{}", extension(path)),
                fingerprint: fingerprint.to_owned(),
            })
            .collect();
        let checkpoint_base = CheckpointState {
            format: checkpoint::CHECKPOINT_FORMAT.into(),
            version: checkpoint::CHECKPOINT_VERSION,
            step: 0,
            optimizer_steps: 0,
            loader: loader.state(),
            config: config.clone(),
            tables: table_records,
            tokenizer: tokenizer.fingerprint,
            window: OpenWindow::default(),
        };
        Ok(Self {
            trainer: Trainer {
                config,
                device,
                vs,
                model,
                adam,
            },
            loader,
            valid_loader,
            layers: sparse_layers(config, &routing),
            tables,
            checkpoint_base,
        })
    }
}

/// The model under training with its optimizer.
pub struct Trainer<'a> {
    config: &'a RunConfig,
    /// Where tensors live.
    pub device: Device,
    /// The parameters.
    pub vs: tch::nn::VarStore,
    /// The model.
    pub model: LanguageModel,
    /// The optimizer.
    pub adam: Adam,
}

/// What one step left behind (device scalars: read them only when needed, as each read waits
/// for the device).
pub struct StepResult {
    /// Mean language-model loss.
    pub loss: Tensor,
    /// Weighted load-balancing term.
    pub aux_loss: Tensor,
    /// Tokens per expert per sparse layer.
    pub loads: Vec<(usize, Vec<u64>)>,
    /// Gradient norm before clipping.
    pub grad_norm: Tensor,
    /// Learning rate used.
    pub lr: f64,
}

impl Trainer<'_> {
    /// One optimizer step on `batch` as step number `step` (from 1).
    pub fn step(&mut self, batch: &DeviceBatch, step: u64) -> StepResult {
        let t = &self.config.train;
        tch::manual_seed(step_seed(t.seed, step));
        let output = self.model.forward(&batch.input_ids, &batch.routes, true);
        let (nll, count) = masked_nll(&output.logits, &batch.targets, &batch.mask);
        let loss = nll / count.clamp_min(1.0);
        self.adam.zero_grad();
        (&loss + &output.aux_loss).backward();
        let grad_norm = self.adam.clip_grad_norm(t.clip);
        let lr = inverse_sqrt_lr(t.lr, t.warmup, step);
        self.adam.step(lr);
        StepResult {
            loss: loss.detach(),
            aux_loss: output.aux_loss.detach(),
            loads: output.loads,
            grad_norm,
            lr,
        }
    }
}

impl Trainer<'_> {
    /// Writes the checkpoint of `step`: weights, optimizer, loader position `next_batch` and
    /// the open metrics window; refused when any of them is no longer finite.
    fn save_checkpoint(
        &self,
        out: &Path,
        (step, next_batch): (u64, u64),
        window: &Window,
        base: &CheckpointState,
        tables: &[PathBuf],
    ) -> Result<()> {
        check_finite_state(self, window, step)?;
        let state = base.at(step, &self.adam, next_batch, window.snapshot());
        let keep = self.config.train.keep_checkpoints;
        checkpoint::save(out, &self.vs, &self.adam, &state, tables, keep)?;
        Ok(())
    }
}

/// Throughput of this invocation.
#[derive(Default)]
struct Totals {
    tokens: u64,
    time: Duration,
    wait: Duration,
}

impl Totals {
    fn add(&mut self, tokens: u64, time: Duration, wait: Duration) {
        self.tokens += tokens;
        self.time += time;
        self.wait += wait;
    }

    fn summary(
        &self,
        steps: u64,
        steps_here: u64,
        parameters: u64,
        valid: Evaluation,
        out: &Path,
    ) -> RunSummary {
        let seconds = self.time.as_secs_f64().max(1e-9);
        RunSummary {
            steps,
            parameters,
            valid_loss: valid.loss,
            valid_ppl: valid.ppl,
            valid_loads: valid.loads,
            tokens_per_s: self.tokens as f64 / seconds,
            loader_wait: self.wait.as_secs_f64() / seconds,
            step_seconds: if steps_here == 0 {
                0.0
            } else {
                seconds / steps_here as f64
            },
            out: out.to_owned(),
        }
    }
}

/// Dropout's seed at `step`: a function of the run seed and the step only, so a resumed run
/// draws the same masks.
fn step_seed(seed: u64, step: u64) -> i64 {
    hashprep::util::splitmix64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64
}

fn extension(path: &Path) -> String {
    path.extension()
        .map_or_else(|| "arrow".into(), |e| e.to_string_lossy().into_owned())
}

fn progress_bar(total: u64, done: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("step {pos}/{len} [{bar:30}] {msg} | ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_position(done);
    bar.reset_eta();
    bar
}

fn plot_run(out: &Path) -> Result<()> {
    let records = read_records(&out.join("metrics.jsonl"))?;
    let name = out
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    plot_curves(
        &out.join("curves.png"),
        &name,
        &[Curve {
            label: &name,
            records: &records,
        }],
    )
}

/// Refuses to mix runs: a folder holding a run needs `--resume` or `--force`. `--resume` where
/// no checkpoint was completed yet (a run stopped before its first) starts over. Returns
/// whether the run resumes from a checkpoint.
fn prepare_run_folder(out: &Path, options: &RunOptions) -> Result<bool> {
    hashprep::util::create_output_dir(out)?;
    let has_run = out.join("metrics.jsonl").exists() || out.join("checkpoints").exists();
    let resuming = options.resume && out.join("checkpoints").join("latest").exists();
    if has_run && !resuming {
        if !options.force && !options.resume {
            return Err(Error::BadInput(format!(
                "{}: already holds a run; --resume continues it, --force starts over",
                out.display()
            )));
        }
        if options.resume {
            eprintln!(
                "hashtrain: {}: no checkpoint was completed yet: starting the run over",
                out.display()
            );
        }
        for name in RUN_FILES {
            let path = out.join(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        let checkpoints = out.join("checkpoints");
        if checkpoints.exists() {
            std::fs::remove_dir_all(&checkpoints).map_err(|e| Error::io(&checkpoints, e))?;
        }
    }
    Ok(resuming)
}

/// Stops the run when a record just written (a `train` record over `window_steps` steps, or a
/// `valid` one) holds a loss that is no longer finite; draws the curves first.
fn stop_if_diverged(record: &Record, window_steps: u64, out: &Path) -> Result<()> {
    let detail = match *record {
        Record::Train {
            step,
            loss,
            aux_loss,
            ..
        } if !(loss + aux_loss).is_finite() => format!(
            "the mean training loss of steps {}..={step} is {loss} (load-balancing term {aux_loss})",
            step + 1 - window_steps
        ),
        Record::Valid { loss, .. } if !loss.is_finite() => {
            format!("the validation loss is {loss}")
        }
        _ => return Ok(()),
    };
    plot_run(out)?;
    Err(Error::Diverged {
        step: record.step(),
        detail,
    })
}

/// The `summary.json` of a resumed run that already trained all its steps: nothing to do.
fn finished_summary(
    out: &Path,
    resuming: bool,
    step: u64,
    steps: u64,
) -> Result<Option<RunSummary>> {
    let path = out.join("summary.json");
    if !resuming || step < steps || !path.is_file() {
        return Ok(None);
    }
    eprintln!(
        "hashtrain: {}: already trained {step} steps; nothing to do",
        out.display()
    );
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    Ok(serde_json::from_slice(&bytes).ok())
}

/// Refuses to checkpoint weights, or an open metrics window, that are no longer finite: the
/// last checkpoint of a diverged run stays one to resume from. One device read.
fn check_finite_state(trainer: &Trainer<'_>, window: &Window, step: u64) -> Result<()> {
    let finite = tch::no_grad(|| {
        let mut all = window.loss.isfinite().logical_and(&window.aux.isfinite());
        for variable in trainer.vs.trainable_variables() {
            all = all.logical_and(&variable.isfinite().all());
        }
        all.to_kind(Kind::Int64).int64_value(&[]) == 1
    });
    if finite {
        return Ok(());
    }
    Err(Error::Diverged {
        step,
        detail: "the weights or the training loss are no longer finite; no checkpoint was written"
            .into(),
    })
}

/// A checkpoint resumes a config when everything that shapes the losses is the same: data,
/// model, tables and the optimization settings (steps, logging, evaluation, checkpointing,
/// device and threads may change).
fn check_resumable(
    config: &RunConfig,
    state: &CheckpointState,
    tables: &[TableRecord],
    dir: &Path,
) -> Result<()> {
    let shape = |c: &RunConfig| {
        let mut c = c.clone();
        let defaults = crate::config::TrainConfig::default();
        c.train.steps = defaults.steps;
        c.train.eval_every = defaults.eval_every;
        c.train.eval_batches = defaults.eval_batches;
        c.train.log_every = defaults.log_every;
        c.train.checkpoint_every = defaults.checkpoint_every;
        c.train.keep_checkpoints = defaults.keep_checkpoints;
        c.train.device = defaults.device;
        c.train.workers = defaults.workers;
        c.train.prefetch = defaults.prefetch;
        c.train.threads = defaults.threads;
        c
    };
    let (now, then) = (shape(config), shape(&state.config));
    if now != then {
        let mut changed = Vec::new();
        let as_json = |c: &RunConfig| serde_json::to_value(c).expect("serializable");
        config_differences(&as_json(&then), &as_json(&now), "", &mut changed);
        return Err(Error::BadInput(format!(
            "{}: the checkpoint was trained with other settings: {}; keep them to resume, or --force to start over",
            dir.display(),
            changed.join("; ")
        )));
    }
    for (now, then) in tables.iter().zip(&state.tables) {
        if now.fingerprint != then.fingerprint {
            return Err(Error::BadInput(format!(
                "{}: has changed since the checkpoint {} was written",
                now.source.display(),
                dir.display()
            )));
        }
    }
    if config.train.log_every != state.config.train.log_every && state.window.steps > 0 {
        return Err(Error::BadInput(
            "train.log_every changed while a metrics window is open; keep it to resume".into(),
        ));
    }
    Ok(())
}

/// The dotted names of the settings that differ between two configs, with both values.
fn config_differences(
    then: &serde_json::Value,
    now: &serde_json::Value,
    name: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if let (Value::Object(a), Value::Object(b)) = (then, now) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let child = if name.is_empty() {
                key.clone()
            } else {
                format!("{name}.{key}")
            };
            let missing = Value::Null;
            let (x, y) = (
                a.get(key).unwrap_or(&missing),
                b.get(key).unwrap_or(&missing),
            );
            config_differences(x, y, &child, out);
        }
    } else if then != now {
        out.push(format!("{name} ({then} in the checkpoint, {now} now)"));
    }
}

/// Training statistics since the last `train` record. Losses add up on the device, so steps
/// do not wait for the host; the host reads them once per record.
struct Window {
    loss: Tensor,
    aux: Tensor,
    steps: u64,
    tokens: u64,
    counts: BTreeMap<usize, Vec<u64>>,
    time: Duration,
    wait: Duration,
}

impl Window {
    fn new(device: Device) -> Self {
        Self {
            loss: Tensor::zeros([], (Kind::Float, device)),
            aux: Tensor::zeros([], (Kind::Float, device)),
            steps: 0,
            tokens: 0,
            counts: BTreeMap::new(),
            time: Duration::ZERO,
            wait: Duration::ZERO,
        }
    }

    fn restore(saved: &OpenWindow, device: Device) -> Self {
        let mut window = Self::new(device);
        window.loss = Tensor::from(saved.loss_sum as f32).to_device(device);
        window.aux = Tensor::from(saved.aux_sum as f32).to_device(device);
        window.steps = saved.steps;
        window.counts.clone_from(&saved.counts);
        window
    }

    fn add(&mut self, step: &StepResult, tokens: u64, time: Duration, wait: Duration) {
        self.loss = &self.loss + &step.loss;
        self.aux = &self.aux + &step.aux_loss;
        self.steps += 1;
        self.tokens += tokens;
        self.time += time;
        self.wait += wait;
        for (layer, counts) in &step.loads {
            eval::add_counts(&mut self.counts, *layer, counts);
        }
    }

    fn snapshot(&self) -> OpenWindow {
        OpenWindow {
            steps: self.steps,
            loss_sum: self.loss.double_value(&[]),
            aux_sum: self.aux.double_value(&[]),
            counts: self.counts.clone(),
        }
    }

    /// The `train` record of the window, which starts over.
    fn flush(
        &mut self,
        step: u64,
        lr: f64,
        grad_norm: &Tensor,
        layers: &BTreeMap<usize, (crate::config::SparseKind, usize)>,
    ) -> Record {
        let steps = self.steps.max(1) as f64;
        let seconds = self.time.as_secs_f64().max(1e-9);
        let record = Record::Train {
            step,
            loss: self.loss.double_value(&[]) / steps,
            aux_loss: self.aux.double_value(&[]) / steps,
            lr,
            grad_norm: grad_norm.double_value(&[]),
            tokens_per_s: self.tokens as f64 / seconds,
            loader_wait: self.wait.as_secs_f64() / seconds,
            loads: eval::layer_loads(&self.counts, layers),
        };
        let device = self.loss.device();
        *self = Self::new(device);
        record
    }
}

/// A trained model loaded from a checkpoint, for evaluation and export.
pub struct Restored {
    /// The config it was trained with, its tables pointing at the checkpoint's copies.
    pub config: RunConfig,
    /// Its parameters.
    pub vs: tch::nn::VarStore,
    /// The model.
    pub model: LanguageModel,
    /// The checkpoint's state.
    pub state: CheckpointState,
    /// The table files it routes with.
    pub tables: Vec<PathBuf>,
    /// Its sparse layers (1-based layer -> kind, experts).
    pub layers: BTreeMap<usize, (crate::config::SparseKind, usize)>,
}

/// Loads the checkpoint `path` names (a checkpoint, or a run's latest) onto `device`; `data`
/// is a tokenize output of the same tokenizer used to wire the routes (default: the config's
/// validation data).
///
/// # Errors
/// Not a checkpoint, or its weights do not fit its config.
pub fn restore(
    path: &Path,
    device: Device,
    data: Option<&Path>,
) -> Result<(Restored, hashprep::Loader)> {
    let _rng = session::torch_rng_lock();
    let dir = checkpoint::resolve(path)?;
    let state = checkpoint::read_state(&dir)?;
    let mut config = state.config.clone();
    // Route with the tables the checkpoint carries, whatever happened to the originals.
    for layer in &mut config.model.sparse {
        if let Some(table) = &layer.table {
            let record = state
                .tables
                .iter()
                .find(|r| &r.source == table)
                .ok_or_else(|| {
                    Error::BadInput(format!(
                        "{}: carries no copy of {}",
                        dir.display(),
                        table.display()
                    ))
                })?;
            layer.table = Some(dir.join(&record.file));
        }
    }
    let tables = hashprep::TableSet::open(&table_paths(&config))?;
    let data = data.unwrap_or(&config.data.valid).to_owned();
    let loader = open_loader(&data, &config, &tables)?;
    let tokenizer = &loader.manifest().tokenizer;
    same_tokenizer(
        &data,
        &tokenizer.fingerprint,
        &state.tokenizer,
        &format!("the checkpoint {}", dir.display()),
    )?;
    let routing = resolve_routing(&config, &loader)?;
    let layers = sparse_layers(&config, &routing);
    let (mut vs, model) = build_model(&config, tokenizer.vocab_size, &routing, device);
    checkpoint::load_weights(&dir, &mut vs)?;
    Ok((
        Restored {
            config,
            vs,
            model,
            state,
            tables: tables.paths().map(Path::to_path_buf).collect(),
            layers,
        },
        loader,
    ))
}

/// Writes the input embedding matrix of `model` (`[vocab, d_model]`, float32) as `.npy`,
/// atomically: the input of `hashprep build-table --method clustered|dispersed`.
///
/// # Errors
/// The file cannot be written.
pub fn write_embeddings_npy(model: &LanguageModel, path: &Path) -> Result<()> {
    let embedding = model
        .embedding()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    // Written beside `path` under a unique name, then renamed: never a partial file there.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".embeddings.")
        .suffix(".npy.tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?
        .into_temp_path();
    embedding.write_npy(&temp)?;
    hashprep::util::rename_durable(&temp, path)?;
    Ok(())
}
