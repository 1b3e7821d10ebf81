//! What a run builds before its first step (data, tables, model, optimizer), and one step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

use super::divergence::check_finite_state;
use super::freeze::frozen_names;
use super::window::Window;
use super::{
    build_model, checkpoint, inverse_sqrt_lr, open_loader, resolve_routing, same_tokenizer,
    sparse_layers, Adam, CheckpointState, DeviceBatch, OpenWindow, TableRecord,
};
use crate::config::RunConfig;
use crate::device::parse_device;
use crate::error::Result;
use crate::model::{masked_nll, LanguageModel};

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
    pub layers: super::SparseLayers,
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
        let device = parse_device(&config.train.runtime.device)?;
        if config.train.runtime.threads > 0 {
            tch::set_num_threads(i32::try_from(config.train.runtime.threads).unwrap_or(i32::MAX));
        }
        let tables = config.table_paths();
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
        let (vs, model) = build_model(config, tokenizer.vocab_size, &routing, device)?;
        let adam = Adam::new(
            trainable(config, &vs)?,
            config.train.optimization.betas,
            config.train.optimization.eps,
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
            checksums: BTreeMap::new(),
            init_from: None,
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

/// The weights Adam updates: all but those `train.freeze` keeps fixed, which get no gradient.
///
/// # Errors
/// A `train.freeze` entry that names none of the model's weights, or all of them.
fn trainable(config: &RunConfig, vs: &tch::nn::VarStore) -> Result<BTreeMap<String, Tensor>> {
    let mut variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let names: Vec<&str> = variables.keys().map(String::as_str).collect();
    let frozen = frozen_names(config, &names)?;
    for name in &frozen {
        if let Some(variable) = variables.remove(name) {
            let _ = variable.set_requires_grad(false);
        }
    }
    Ok(variables)
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

impl Trainer<'_> {
    /// One optimizer step on `batch` as step number `step` (from 1).
    pub fn step(&mut self, batch: &DeviceBatch, step: u64) -> StepResult {
        let t = &self.config.train;
        tch::manual_seed(step_seed(t.optimization.seed, step));
        let encoder = batch.encoder.as_ref();
        let output = self
            .model
            .forward(&batch.input_ids, &batch.routes, encoder, true);
        let (nll, count) = masked_nll(&output.logits, &batch.targets, &batch.mask);
        let loss = nll / count.clamp_min(1.0);
        self.adam.zero_grad();
        (&loss + &output.aux_loss).backward();
        let grad_norm = self.adam.clip_grad_norm(t.optimization.clip);
        let lr = inverse_sqrt_lr(t.optimization.lr, t.optimization.warmup, step);
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
    pub(super) fn save_checkpoint(
        &self,
        out: &Path,
        (step, next_batch): (u64, u64),
        window: &Window,
        base: &CheckpointState,
        tables: &[PathBuf],
    ) -> Result<()> {
        check_finite_state(self, window, step)?;
        let state = base.at(step, &self.adam, next_batch, window.snapshot());
        let keep = self.config.train.runtime.keep_checkpoints;
        checkpoint::save(out, &self.vs, &self.adam, &state, tables, keep)?;
        Ok(())
    }
}

/// What one step left behind (device scalars: read them only when needed, as each read waits
/// for the device).
pub struct StepResult {
    /// Mean language-model loss.
    pub loss: Tensor,
    /// Weighted load-balancing term.
    pub aux_loss: Tensor,
    /// Tokens per expert per sparse layer.
    pub loads: Vec<(crate::config::LayerId, Vec<u64>)>,
    /// Gradient norm before clipping.
    pub grad_norm: Tensor,
    /// Learning rate used.
    pub lr: f64,
}

/// Dropout's seed at `step`: a function of the run seed and the step only, so a resumed run
/// draws the same masks.
pub(super) fn step_seed(seed: u64, step: u64) -> i64 {
    hashprep::util::splitmix64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)) as i64
}

pub(super) fn extension(path: &Path) -> String {
    path.extension()
        .map_or_else(|| "arrow".into(), |e| e.to_string_lossy().into_owned())
}
