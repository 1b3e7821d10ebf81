//! The training loop: steps, periodic evaluation, metrics records and checkpoints.

use std::path::Path;
use std::time::{Duration, Instant};

use super::divergence::stop_if_diverged;
use super::init::{init_from, InitSource};
use super::progress::StepBar;
use super::restore::check_resumable;
use super::run_folder::{finished_summary, plot_run, prepare_run_folder};
use super::window::Window;
use super::{
    checkpoint, evaluate, parameter_count, session, CheckpointState, DeviceBatch, Evaluation,
    MetricsLog, Record, RunOptions, RunSummary, Setup, Trainer,
};
use crate::config::RunConfig;
use crate::error::{Error, Result};

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
        mut checkpoint_base,
    } = Setup::open(config)?;
    let device = trainer.device;
    let from = (resuming, options.init_from.as_deref());
    let base = &mut checkpoint_base;
    let (mut step, mut window) = start(out, from, base, &mut trainer, &mut loader)?;
    if let Some(summary) = finished_summary(out, resuming, step, config.train.runtime.steps)? {
        return Ok(summary);
    }
    hashprep::util::write_atomic(&out.join("config.toml"), config.to_toml().as_bytes())?;
    let mut log = MetricsLog::open(&out.join("metrics.jsonl"), resuming.then_some(step))?;

    let t = &config.train.runtime;
    let progress = StepBar::new(t.steps, step, options.progress);
    let (base_state, base_step) = (loader.state(), step);
    let mut totals = Totals::default();
    let mut last_eval: Option<Evaluation> = None;
    let mut batches = loader.take(t.steps.saturating_sub(step), t.workers, t.prefetch);
    // One batch ahead: step n+1's upload is enqueued right after step n's kernels, before the
    // log, evaluation or checkpoint that may wait for the device.
    let mut ahead: Option<(DeviceBatch, Duration)> = None;
    while step < t.steps {
        let started = Instant::now();
        let (batch, waited) = ahead
            .take()
            .map_or_else(|| next_batch(&mut batches, device), Ok)?;
        step += 1;
        let done = trainer.step(&batch, step);
        ahead = (step < t.steps)
            .then(|| next_batch(&mut batches, device))
            .transpose()?;
        window.add(&done, batch.tokens, started.elapsed(), waited);
        totals.add(batch.tokens, started.elapsed(), waited);
        progress.inc();

        if step % t.log_every == 0 {
            let steps_in_window = window.steps;
            let record = window.flush(step, done.lr, &done.grad_norm, &layers);
            log.write(&record)?;
            if let Record::Train {
                loss, tokens_per_s, ..
            } = &record
            {
                progress.set_message(|| format!("loss {loss:.3} | {tokens_per_s:.0} tokens/s"));
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
    progress.finish();

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

/// The loader's next batch on `device`, and how long the loader kept us waiting for it.
fn next_batch(
    batches: &mut impl Iterator<Item = hashprep::Result<hashprep::Batch>>,
    device: tch::Device,
) -> Result<(DeviceBatch, Duration)> {
    let started = Instant::now();
    let batch = batches
        .next()
        .ok_or_else(|| Error::Internal("the loader stopped early".into()))??;
    let waited = started.elapsed();
    Ok((DeviceBatch::new(&batch, device), waited))
}

/// Where the run starts: its latest checkpoint when `resuming`, else step 0 with the weights of
/// the checkpoint `init` (fine-tuning) when given; `base` records where the first weights came
/// from.
fn start(
    out: &Path,
    (resuming, init): (bool, Option<&Path>),
    base: &mut CheckpointState,
    trainer: &mut Trainer<'_>,
    loader: &mut hashprep::Loader,
) -> Result<(u64, Window)> {
    if resuming {
        let (step, window, source) = resume(out, base, trainer, loader)?;
        base.init_from = source;
        return Ok((step, window));
    }
    if let Some(init) = init {
        let fits = (base.tables.as_slice(), base.tokenizer.as_str());
        base.init_from = Some(init_from(init, &base.config, fits, &mut trainer.vs)?);
    }
    Ok((0, Window::new(trainer.device)))
}

/// Restores weights, optimizer, loader position and the open metrics window from the run's
/// latest checkpoint; returns the step it was taken at, the window and where the run's first
/// weights came from.
pub(super) fn resume(
    out: &Path,
    base: &CheckpointState,
    trainer: &mut Trainer<'_>,
    loader: &mut hashprep::Loader,
) -> Result<(u64, Window, Option<InitSource>)> {
    let dir = checkpoint::resolve(out)?;
    let state = checkpoint::read_state(&dir)?;
    checkpoint::verify_files(&dir, &state)?;
    check_resumable(&base.config, &state, &base.tables, &dir)?;
    checkpoint::load_weights(&dir, &mut trainer.vs)?;
    checkpoint::load_optimizer(&dir, &mut trainer.adam, state.optimizer_steps)?;
    loader.resume(&state.loader)?;
    let window = Window::restore(&state.window, trainer.device);
    Ok((state.step, window, state.init_from))
}

/// Throughput of this invocation.
#[derive(Default)]
pub(super) struct Totals {
    pub(super) tokens: u64,
    pub(super) time: Duration,
    pub(super) wait: Duration,
}

impl Totals {
    pub(super) fn add(&mut self, tokens: u64, time: Duration, wait: Duration) {
        self.tokens += tokens;
        self.time += time;
        self.wait += wait;
    }

    pub(super) fn summary(
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
