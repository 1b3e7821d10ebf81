//! `export-table --to hf-deepseek-v4 --into CKPT`: a table's `tid2eid` tensors written into a
//! Hugging Face safetensors checkpoint the user already has, without rewriting its weight files
//! (they can be hundreds of GB). The tables go into a file of their own, `tid2eid.safetensors`,
//! and the index `model.safetensors.index.json` maps their keys to it (replacing any earlier
//! `tid2eid` of those layers, in any key style). A single-file checkpoint gets an index and its
//! `model.safetensors` is renamed `model-00001-of-00001.safetensors` (transformers reads
//! `model.safetensors` whenever it exists, and would not see the index): the index is written
//! first, so a kill before the rename leaves the old checkpoint loading as it did.
//! `vocab_size`, `num_experts_per_tok` and the hash layers come from `config.json`, checked
//! against the table before anything is written.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::export::{ExportTarget, TableExport, TidKeys};
use super::RoutingTable;
use crate::error::{CheckpointProblem, Error, Result};
use crate::util::{rename_durable, write_atomic};

const CONFIG: &str = "config.json";
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";
/// What a single-file checkpoint's weights are renamed to once it has an index.
const RENAMED_SINGLE: &str = "model-00001-of-00001.safetensors";
/// The file of the tables.
const TID2EID_FILE: &str = "tid2eid.safetensors";

/// What [`RoutingTable::insert_into_checkpoint`] did.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointInsert {
    /// The checkpoint.
    pub checkpoint: PathBuf,
    /// The tables' file.
    pub file: PathBuf,
    /// Model layer (0-based) -> key.
    pub keys: BTreeMap<u32, String>,
    /// The earlier entries of the index that the tables replace.
    pub replaced: Vec<String>,
    /// The single weight file renamed to take an index, if any.
    pub renamed: Option<PathBuf>,
}

impl RoutingTable {
    /// Writes the table's `tid2eid` into the checkpoint folder `dir` (see the module docs).
    /// `export.layers` empty: every hash layer of the config, in order; `vocab_size` and
    /// `top_k` must be left out (the config has them).
    ///
    /// # Errors
    /// The folder is not a safetensors checkpoint with a `config.json`, a file of it is
    /// truncated or unreadable, or the config does not fit the table (a smaller vocabulary,
    /// another expert count or top-k, a listed layer that is no hash layer); nothing is
    /// written then.
    pub fn insert_into_checkpoint(
        &self,
        export: &TableExport,
        dir: &Path,
    ) -> Result<CheckpointInsert> {
        if export.to != ExportTarget::HfDeepseekV4 {
            return Err(Error::setting(
                "into",
                format!("writes hf-deepseek-v4 tables, not {}", export.to.name()),
            ));
        }
        for (setting, given) in [
            ("vocab_size", export.vocab_size.is_some()),
            ("top_k", export.top_k.is_some()),
        ] {
            if given {
                return Err(Error::setting(
                    setting,
                    "comes from the checkpoint's config.json with `into`: leave it out",
                ));
            }
        }
        let config = read_json(&dir.join(CONFIG))?;
        let export = self.fitted(export, &config, &dir.join(CONFIG))?;
        let single = dir.join(SINGLE);
        let (mut weight_map, mut metadata, renamed) = if single.exists() {
            let keys = tensor_names(&single)?;
            let map = keys
                .into_iter()
                .map(|k| (k, Value::from(RENAMED_SINGLE)))
                .collect();
            (map, Value::Object(serde_json::Map::new()), Some(single))
        } else if dir.join(INDEX).exists() {
            let index = read_json(&dir.join(INDEX))?;
            let map = index
                .get("weight_map")
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| unreadable(&dir.join(INDEX), "no weight_map object"))?;
            let files: std::collections::BTreeSet<&str> =
                map.values().filter_map(Value::as_str).collect();
            for file in files.into_iter().filter(|&f| f != TID2EID_FILE) {
                tensor_names(&dir.join(file))?; // a truncated shard is refused, not loaded later
            }
            let metadata = index.get("metadata").cloned().unwrap_or(Value::Null);
            (map, metadata, None)
        } else {
            return Err(Error::Checkpoint {
                path: dir.to_owned(),
                problem: CheckpointProblem::NoWeights,
            });
        };
        let style = export.keys.unwrap_or(TidKeys::Transformers);
        let bytes = self.deepseek_v4_safetensors(&export, style)?;
        let keys: BTreeMap<u32, String> = export
            .layers
            .iter()
            .map(|&layer| (layer, style.key(layer)))
            .collect();
        let mut replaced = Vec::new();
        for &layer in keys.keys() {
            for style in TidKeys::ALL {
                if weight_map.remove(&style.key(layer)).is_some() {
                    replaced.push(style.key(layer));
                }
            }
        }
        for key in keys.values() {
            weight_map.insert(key.clone(), Value::from(TID2EID_FILE));
        }
        if let Some(total) = metadata.get_mut("total_size") {
            // transformers reads it as information only; keep it near the truth.
            let now = total.as_u64().unwrap_or(0) + bytes.len() as u64;
            *total = Value::from(now);
        }
        let file = dir.join(TID2EID_FILE);
        write_atomic(&file, &bytes)?;
        let index = serde_json::json!({ "metadata": metadata, "weight_map": weight_map });
        let text = serde_json::to_string_pretty(&index).expect("JSON values serialize");
        write_atomic(&dir.join(INDEX), text.as_bytes())?;
        let renamed = match renamed {
            Some(single) => {
                let to = dir.join(RENAMED_SINGLE);
                rename_durable(&single, &to)?;
                Some(to)
            }
            None => None,
        };
        Ok(CheckpointInsert {
            checkpoint: dir.to_owned(),
            file,
            keys,
            replaced,
            renamed,
        })
    }

    /// `export` with the checkpoint's vocabulary, top-k and hash layers, each checked.
    fn fitted(&self, export: &TableExport, config: &Value, path: &Path) -> Result<TableExport> {
        let meta = &self.meta;
        let number = |setting: &str| -> Result<u64> {
            config
                .get(setting)
                .and_then(Value::as_u64)
                .ok_or_else(|| unreadable(path, &format!("no integer {setting}")))
        };
        let does_not_fit = |setting: &str, value: String, why: String| Error::Checkpoint {
            path: path.to_owned(),
            problem: CheckpointProblem::DoesNotFit {
                setting: setting.to_owned(),
                value,
                why,
            },
        };
        let vocab = number("vocab_size")?;
        if vocab < meta.vocab_size as u64 {
            return Err(does_not_fit(
                "vocab_size",
                vocab.to_string(),
                format!("smaller than the table's {} ids", meta.vocab_size),
            ));
        }
        let experts = number("n_routed_experts")?;
        if experts != u64::from(meta.experts) {
            return Err(does_not_fit(
                "n_routed_experts",
                experts.to_string(),
                format!("the table routes to {} experts", meta.experts),
            ));
        }
        let top_k = number("num_experts_per_tok")?;
        if top_k != u64::from(meta.top_k) {
            return Err(does_not_fit(
                "num_experts_per_tok",
                top_k.to_string(),
                format!("the table gives each token {} expert(s)", meta.top_k),
            ));
        }
        let hash_layers = hash_layers(config, path)?;
        let layers = if export.layers.is_empty() {
            hash_layers.clone()
        } else {
            export.layers.clone()
        };
        for &layer in &layers {
            if !hash_layers.contains(&layer) {
                let (setting, value) = match config.get("mlp_layer_types") {
                    Some(types) => (
                        format!("mlp_layer_types[{layer}]"),
                        types
                            .get(layer as usize)
                            .map_or_else(|| "absent".to_owned(), Value::to_string),
                    ),
                    None => (
                        "num_hash_layers".to_owned(),
                        number("num_hash_layers")?.to_string(),
                    ),
                };
                return Err(does_not_fit(
                    &setting,
                    value,
                    format!("layer {layer} is not a hash layer, and only hash layers read tid2eid"),
                ));
            }
        }
        Ok(TableExport {
            layers,
            vocab_size: Some(vocab as usize),
            top_k: Some(meta.top_k),
            ..export.clone()
        })
    }
}

/// The 0-based hash layers of a DeepSeek-V4 config: those `mlp_layer_types` calls `hash_moe`,
/// else the first `num_hash_layers`.
fn hash_layers(config: &Value, path: &Path) -> Result<Vec<u32>> {
    if let Some(types) = config.get("mlp_layer_types").and_then(Value::as_array) {
        return Ok((0u32..)
            .zip(types)
            .filter(|(_, t)| t.as_str() == Some("hash_moe"))
            .map(|(i, _)| i)
            .collect());
    }
    match config.get("num_hash_layers").and_then(Value::as_u64) {
        Some(n) => Ok((0..u32::try_from(n).unwrap_or(u32::MAX)).collect()),
        None => Err(unreadable(
            path,
            "neither mlp_layer_types nor num_hash_layers: no hash layers to take a table",
        )),
    }
}

fn unreadable(path: &Path, why: &str) -> Error {
    Error::Checkpoint {
        path: path.to_owned(),
        problem: CheckpointProblem::Unreadable(why.to_owned()),
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| unreadable(path, &e.to_string()))
}

/// The tensor names of a safetensors file, after checking that the file holds every byte its
/// header describes (only the header is read).
fn tensor_names(path: &Path) -> Result<Vec<String>> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .map_err(|_| unreadable(path, "shorter than a safetensors header"))?;
    let header_len = u64::from_le_bytes(length);
    if header_len > size.saturating_sub(8) {
        return Err(Error::Checkpoint {
            path: path.to_owned(),
            problem: CheckpointProblem::Truncated {
                size,
                expected: 8 + header_len,
            },
        });
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&header)
        .map_err(|e| unreadable(path, &format!("safetensors header: {e}")))?;
    let data_end = header
        .values()
        .filter_map(|t| t.get("data_offsets")?.get(1)?.as_u64())
        .max()
        .unwrap_or(0);
    let expected = 8 + header_len + data_end;
    if size < expected {
        return Err(Error::Checkpoint {
            path: path.to_owned(),
            problem: CheckpointProblem::Truncated { size, expected },
        });
    }
    Ok(header.into_keys().filter(|k| k != "__metadata__").collect())
}
