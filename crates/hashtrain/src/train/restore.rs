//! Continuing from a checkpoint: what must match the config, and the restored model.

use std::path::{Path, PathBuf};

use tch::Device;

use super::{
    build_model, checkpoint, open_loader, resolve_routing, same_tokenizer, session, sparse_layers,
    CheckpointState, TableRecord,
};
use crate::config::RunConfig;
use crate::error::{CheckpointProblem, Error, Result, ResumeProblem};
use crate::model::LanguageModel;

/// A checkpoint resumes a config when everything that shapes the losses is the same: data,
/// model, tables and `train`'s optimization settings (its runtime settings may change).
pub(super) fn check_resumable(
    config: &RunConfig,
    state: &CheckpointState,
    tables: &[TableRecord],
    dir: &Path,
) -> Result<()> {
    let changed = config.resume_differences(&state.config);
    if !changed.is_empty() {
        return Err(not_resumable(dir, ResumeProblem::OtherSettings(changed)));
    }
    for (now, then) in tables.iter().zip(&state.tables) {
        if now.fingerprint != then.fingerprint {
            return Err(not_resumable(
                dir,
                ResumeProblem::TableChanged(now.source.clone()),
            ));
        }
    }
    if config.train.runtime.log_every != state.config.train.runtime.log_every
        && state.window.steps > 0
    {
        return Err(not_resumable(dir, ResumeProblem::LogEveryChanged));
    }
    Ok(())
}

fn not_resumable(dir: &Path, problem: ResumeProblem) -> Error {
    Error::NotResumable {
        dir: dir.to_owned(),
        problem,
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
    /// Its sparse layers (layer -> kind, experts).
    pub layers: super::SparseLayers,
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
    checkpoint::verify_files(&dir, &state)?;
    let mut config = state.config.clone();
    // Route with the tables the checkpoint carries, whatever happened to the originals.
    for layer in &mut config.model.sparse {
        if let Some(table) = &layer.table {
            let record = state
                .tables
                .iter()
                .find(|r| &r.source == table)
                .ok_or_else(|| Error::BadCheckpoint {
                    path: dir.clone(),
                    problem: CheckpointProblem::MissingTable(table.clone()),
                })?;
            layer.table = Some(dir.join(&record.file));
        }
    }
    let tables = hashprep::TableSet::open(&config.table_paths())?;
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
    let (mut vs, model) = build_model(&config, tokenizer.vocab_size, &routing, device)?;
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
