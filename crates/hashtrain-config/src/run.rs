//! The whole run config: reading it, writing it back, and what two configs differ in.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Result};
use crate::layer_id::LayerId;
use crate::model::{ModelConfig, SparseLayer};
use crate::overrides::parse_toml;
use crate::train::TrainConfig;

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

impl RunConfig {
    /// Reads `path`, applies `overrides` (`key.path=value`, value in TOML syntax or a bare
    /// string) and checks the result.
    ///
    /// # Errors
    /// The file cannot be read, does not parse, an override names no setting, or a value is
    /// out of range; each names the file, the override or the setting.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, overrides)
    }

    /// As [`RunConfig::load`], from text; `origin` names it in errors.
    ///
    /// # Errors
    /// See [`RunConfig::load`].
    pub fn parse(text: &str, origin: &Path, overrides: &[String]) -> Result<Self> {
        let config: RunConfig = parse_toml(text, origin, overrides)?;
        config.validate().map_err(|e| e.in_file(origin))?;
        Ok(config)
    }

    /// The config as TOML (what `runs/NAME/config.toml` holds).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serializes")
    }

    /// Sparse layer settings of `layer`, if it has any.
    pub fn sparse_at(&self, layer: LayerId) -> Option<&SparseLayer> {
        self.model.sparse.iter().find(|s| s.layer() == layer)
    }

    /// The distinct table files of the table-routed layers, in config order.
    pub fn table_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for table in self.model.sparse.iter().filter_map(|s| s.table.as_ref()) {
            if !paths.contains(table) {
                paths.push(table.clone());
            }
        }
        paths
    }

    /// What a checkpoint written under `then` would refuse to resume under `self`: every
    /// setting but `train`'s runtime ones (which may change on resume), named by its path
    /// with both values. Empty when it resumes.
    pub fn resume_differences(&self, then: &RunConfig) -> Vec<String> {
        let mut then = then.clone();
        then.train.runtime.clone_from(&self.train.runtime);
        let mut changed = Vec::new();
        if *self != then {
            let as_json = |c: &RunConfig| serde_json::to_value(c).expect("serializable");
            json_differences(&as_json(&then), &as_json(self), "", &mut changed);
        }
        changed
    }
}

/// The dotted names of the values that differ between two JSON trees, with both values.
fn json_differences(
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
            json_differences(x, y, &child, out);
        }
    } else if then != now {
        out.push(format!("{name} ({then} in the checkpoint, {now} now)"));
    }
}
