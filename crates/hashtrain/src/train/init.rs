//! `hashtrain run --init-from CHECKPOINT`: a run that starts from another run's trained weights
//! (fine-tuning, the paper's Table 8) with a fresh optimizer and its own config. The model must
//! have the checkpoint's weights, name for name and shape for shape; each table-routed layer
//! must route by the table the checkpoint's same layer was trained with; the data must be
//! tokenized by the checkpoint's tokenizer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::{checkpoint, same_tokenizer, TableRecord};
use crate::config::RunConfig;
use crate::error::{Error, Result};

/// Where a run's first weights came from (recorded in each of its checkpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSource {
    /// The checkpoint folder.
    pub checkpoint: PathBuf,
    /// The step it was written at.
    pub step: u64,
    /// blake3 of its `model.safetensors`.
    pub weights: String,
}

/// Loads the weights of the checkpoint `path` names (a checkpoint, or a run's latest) into
/// `vs`, after checking that it fits: `config`'s tables (`tables`, the run's records) against
/// the checkpoint's, `tokenizer` (the training data's) against its tokenizer.
///
/// # Errors
/// Not a checkpoint, altered files, another tokenizer, another table for a layer, or weights
/// that differ in name or shape; each names the checkpoint and what differs.
pub(crate) fn init_from(
    path: &Path,
    config: &RunConfig,
    (tables, tokenizer): (&[TableRecord], &str),
    vs: &mut nn::VarStore,
) -> Result<InitSource> {
    let dir = checkpoint::resolve(path)?;
    let state = checkpoint::read_state(&dir)?;
    checkpoint::verify_files(&dir, &state)?;
    let reference = format!("the checkpoint {}", dir.display());
    same_tokenizer(&config.data.train, tokenizer, &state.tokenizer, &reference)?;
    let refuse = |problem: String| Error::NotInitializable {
        dir: dir.clone(),
        problem,
    };
    for (index, layer) in config.model.sparse.iter().enumerate() {
        let Some(table) = layer.table.as_ref().filter(|_| layer.kind.uses_table()) else {
            continue;
        };
        let fingerprint_of = |records: &[TableRecord], source: &Path| {
            records
                .iter()
                .find(|r| r.source == source)
                .map(|r| r.fingerprint.clone())
        };
        let ours = fingerprint_of(tables, table);
        let theirs = state
            .config
            .sparse_at(layer.layer())
            .filter(|then| then.kind.uses_table() && then.table_layer == layer.table_layer)
            .and_then(|then| then.table.as_deref())
            .and_then(|then| fingerprint_of(&state.tables, then));
        if ours.is_none() || ours != theirs {
            return Err(refuse(format!(
                "model.sparse[{index}] ({}) routes by {} (layer {} of it), which is not the \
                 table that layer was trained with: fine-tune with the pretraining's table",
                layer.layer(),
                table.display(),
                layer.table_layer
            )));
        }
    }
    let weights_file = dir.join("model.safetensors");
    let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(&weights_file)?
        .into_iter()
        .collect();
    // In name order, so that a refusal names the same weight every time.
    let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    for (name, variable) in &variables {
        let Some(value) = saved.get(name) else {
            return Err(refuse(format!(
                "it has no weight `{name}` of this model: model settings other than dropout, \
                 load_bal and capacity_factor must be the pretraining's"
            )));
        };
        if value.size() != variable.size() {
            return Err(refuse(format!(
                "its weight `{name}` has shape {:?}, this model's {:?}",
                value.size(),
                variable.size()
            )));
        }
    }
    if let Some(extra) = saved.keys().find(|name| !variables.contains_key(*name)) {
        return Err(refuse(format!(
            "its weight `{extra}` is not one of this model's: model settings other than \
             dropout, load_bal and capacity_factor must be the pretraining's"
        )));
    }
    tch::no_grad(|| {
        for (name, mut variable) in variables {
            variable.copy_(&saved[&name].to_device(variable.device()));
        }
    });
    Ok(InitSource {
        checkpoint: dir,
        step: state.step,
        weights: state
            .checksums
            .get("model.safetensors")
            .cloned()
            .unwrap_or_default(),
    })
}
