//! Checkpoints: `runs/NAME/checkpoints/step-XXXXXXXX/` holds `model.safetensors`,
//! `optimizer.safetensors` (Adam's moments), `tables/` (copies of the routing tables) and
//! `state.json` (step, optimizer, loader state, config, table fingerprints, the open metrics
//! window). Each is written under a `.tmp` name and renamed when complete, then `latest` is
//! pointed at it, so a crash never leaves a checkpoint that looks whole but is not.
//! Format: `schemas/checkpoint.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hashprep::util::{rename_durable, write_atomic};
use hashprep::LoaderState;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use super::optimizer::Adam;
use crate::config::RunConfig;
use crate::error::{CheckpointProblem, Error, Result};

/// `state.json`'s `format`.
pub(crate) const CHECKPOINT_FORMAT: &str = "hashtrain-checkpoint";
/// `state.json`'s `version`.
pub(crate) const CHECKPOINT_VERSION: u32 = 1;

/// A routing table a checkpoint carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRecord {
    /// Where the run read it.
    pub source: PathBuf,
    /// Its copy, relative to the checkpoint folder.
    pub file: String,
    /// blake3 of its bytes.
    pub fingerprint: String,
}

/// Training statistics of the steps since the last `train` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenWindow {
    /// Steps in the window.
    pub steps: u64,
    /// Sum of the per-step mean losses.
    pub loss_sum: f64,
    /// Sum of the per-step load-balancing terms.
    pub aux_sum: f64,
    /// Tokens per expert per sparse layer (layer -> counts; a decoder layer's key is its
    /// number).
    pub counts: BTreeMap<crate::config::LayerId, Vec<u64>>,
}

/// `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Adam's update count (bias corrections).
    pub optimizer_steps: u64,
    /// Where the training loader stands.
    pub loader: LoaderState,
    /// The run's config.
    pub config: RunConfig,
    /// The routing tables, in the loader's order.
    pub tables: Vec<TableRecord>,
    /// Fingerprint of the tokenizer of the training data.
    pub tokenizer: String,
    /// The metrics window open at this step.
    pub window: OpenWindow,
    /// blake3 of each file of the checkpoint but `state.json` (path relative to its folder),
    /// verified before they are loaded ([`verify_files`]); absent in checkpoints written before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checksums: BTreeMap<String, String>,
    /// The checkpoint the run started from (`init_from`); absent for a run from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<super::InitSource>,
}

impl CheckpointState {
    /// This run's state at `step`: `self` with the step, optimizer count, loader position and
    /// open metrics window filled in.
    #[must_use]
    pub fn at(&self, step: u64, adam: &Adam, next_batch: u64, window: OpenWindow) -> Self {
        Self {
            step,
            optimizer_steps: adam.steps,
            loader: self.loader.at(next_batch),
            window,
            ..self.clone()
        }
    }
}

/// The folder of the checkpoint at `step`.
pub(crate) fn checkpoint_dir(run: &Path, step: u64) -> PathBuf {
    run.join("checkpoints").join(format!("step-{step:08}"))
}

/// Writes a checkpoint of `vs` and `adam` with `state` into `run`, points `latest` at it and
/// removes the oldest beyond `keep`. Returns its folder.
///
/// # Errors
/// Any write fails; the previous `latest` then still stands.
pub(crate) fn save(
    run: &Path,
    vs: &nn::VarStore,
    adam: &Adam,
    state: &CheckpointState,
    table_files: &[PathBuf],
    keep: usize,
) -> Result<PathBuf> {
    let root = run.join("checkpoints");
    let dir = checkpoint_dir(run, state.step);
    // Written under a unique temporary name (removed if this fails), renamed when complete.
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let staging = hashprep::util::output_dir_builder()
        .prefix(&format!(".step-{:08}.", state.step))
        .suffix(".tmp")
        .tempdir_in(&root)
        .map_err(|e| Error::io(&root, e))?;
    let tmp = staging.path().to_path_buf();
    std::fs::create_dir_all(tmp.join("tables")).map_err(|e| Error::io(&tmp, e))?;
    vs.save(tmp.join("model.safetensors"))?;
    Tensor::write_safetensors(&adam.state_tensors(), tmp.join("optimizer.safetensors"))?;
    for (record, source) in state.tables.iter().zip(table_files) {
        let to = tmp.join(&record.file);
        std::fs::copy(source, &to).map_err(|e| Error::io(source, e))?;
    }
    let mut files = vec![
        "model.safetensors".to_owned(),
        "optimizer.safetensors".to_owned(),
    ];
    files.extend(state.tables.iter().map(|t| t.file.clone()));
    let mut checksums = BTreeMap::new();
    for file in files {
        let checksum = file_checksum(&tmp.join(&file))?;
        checksums.insert(file, checksum);
    }
    let state = CheckpointState {
        checksums,
        ..state.clone()
    };
    let json = serde_json::to_vec_pretty(&state).expect("serializable");
    write_atomic(&tmp.join("state.json"), &json)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    rename_durable(&staging.keep(), &dir)?;
    let name = dir
        .file_name()
        .expect("named")
        .to_string_lossy()
        .into_owned();
    write_atomic(&root.join("latest"), name.as_bytes())?;
    prune(&root, keep)?;
    Ok(dir)
}

/// Removes the oldest complete checkpoints beyond `keep`.
fn prune(root: &Path, keep: usize) -> Result<()> {
    let mut steps: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("step-"))
        })
        .collect();
    steps.sort();
    let excess = steps.len().saturating_sub(keep);
    for old in &steps[..excess] {
        std::fs::remove_dir_all(old).map_err(|e| Error::io(old, e))?;
    }
    Ok(())
}

/// The checkpoint folder `path` names: a checkpoint itself, or a run whose `latest` is read.
///
/// # Errors
/// Neither a checkpoint nor a run with one.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join("state.json").is_file() {
        return Ok(path.to_owned());
    }
    let latest = path.join("checkpoints").join("latest");
    let name = std::fs::read_to_string(&latest).map_err(|_| Error::NoCheckpoint {
        path: path.to_owned(),
        problem: "neither a checkpoint (no state.json) nor a run with checkpoints (no \
                  checkpoints/latest)"
            .into(),
    })?;
    let dir = path.join("checkpoints").join(name.trim());
    if !dir.join("state.json").is_file() {
        return Err(Error::NoCheckpoint {
            path: latest,
            problem: format!(
                "names {}, which is not a complete checkpoint",
                dir.display()
            ),
        });
    }
    Ok(dir)
}

/// Reads and checks `state.json` of the checkpoint `dir`.
///
/// # Errors
/// Missing, unreadable, or of another format or version.
pub fn read_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("state.json");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let state: CheckpointState = serde_json::from_slice(&bytes)
        .map_err(|e| bad_file(&path, CheckpointProblem::NotAState(e.to_string())))?;
    if state.format != CHECKPOINT_FORMAT || state.version != CHECKPOINT_VERSION {
        let problem = CheckpointProblem::Version {
            format: state.format,
            version: state.version,
            expected_format: CHECKPOINT_FORMAT,
            expected_version: CHECKPOINT_VERSION,
        };
        return Err(bad_file(&path, problem));
    }
    Ok(state)
}

/// Refuses a checkpoint whose files differ from the checksums its `state.json` records (read
/// before loading its weights, optimizer or tables; [`read_state`] alone hashes nothing).
///
/// # Errors
/// A file is missing or altered since the checkpoint was written.
pub(crate) fn verify_files(dir: &Path, state: &CheckpointState) -> Result<()> {
    for (file, expected) in &state.checksums {
        let path = dir.join(file);
        let actual = file_checksum(&path)?;
        if &actual != expected {
            let problem = CheckpointProblem::Altered {
                expected: expected.clone(),
                actual,
            };
            return Err(bad_file(&path, problem));
        }
    }
    Ok(())
}

/// blake3 of a file's bytes, as `state.json` records it.
fn file_checksum(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(hashprep::fingerprint_bytes(&bytes))
}

fn bad_file(path: &Path, problem: CheckpointProblem) -> Error {
    Error::BadCheckpoint {
        path: path.to_owned(),
        problem,
    }
}

/// Loads the model weights of checkpoint `dir` into `vs`.
///
/// # Errors
/// A tensor is missing or of another shape.
pub(crate) fn load_weights(dir: &Path, vs: &mut nn::VarStore) -> Result<()> {
    let path = dir.join("model.safetensors");
    vs.load(&path)
        .map_err(|e| bad_file(&path, CheckpointProblem::DoesNotFit(e.to_string())))
}

/// Loads the optimizer state of checkpoint `dir` into `adam`.
///
/// # Errors
/// A moment is missing or of another shape.
pub(crate) fn load_optimizer(dir: &Path, adam: &mut Adam, steps: u64) -> Result<()> {
    let path = dir.join("optimizer.safetensors");
    let saved: BTreeMap<String, Tensor> = Tensor::read_safetensors(&path)?.into_iter().collect();
    adam.load_state(&saved, steps)
        .map_err(|e| bad_file(&path, CheckpointProblem::DoesNotFit(e)))
}

#[cfg(test)]
mod tests {
    use tch::nn::Module;

    use super::*;

    const CONFIG: &str = "[data]\ntrain = \"t\"\nvalid = \"v\"\n[model]\nlayers = 1\nd_model = 4\nd_ff = 8\nheads = 1\ncontext = 4\n";

    /// A linear layer trained for one step, so weights and both moments are nonzero.
    fn trained(seed: i64) -> (nn::VarStore, Adam) {
        let _rng = super::super::session::torch_rng_lock();
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let layer = nn::linear(vs.root() / "proj", 3, 2, nn::LinearConfig::default());
        let mut adam = Adam::new(vs.variables().into_iter().collect(), (0.9, 0.98), 1e-8);
        layer
            .forward(&Tensor::ones([5, 3], (tch::Kind::Float, tch::Device::Cpu)))
            .sum(tch::Kind::Float)
            .backward();
        adam.step(0.01);
        (vs, adam)
    }

    fn state(step: u64, adam: &Adam) -> CheckpointState {
        let config = RunConfig::parse(CONFIG, Path::new("c.toml"), &[]).unwrap();
        CheckpointState {
            format: CHECKPOINT_FORMAT.into(),
            version: CHECKPOINT_VERSION,
            step: 0,
            optimizer_steps: 0,
            loader: LoaderState {
                next_batch: 0,
                fingerprint: "blake3:loader".into(),
                config: None,
                data: None,
                tables: None,
            },
            config,
            tables: Vec::new(),
            tokenizer: "blake3:tokenizer".into(),
            window: OpenWindow::default(),
            checksums: BTreeMap::new(),
            init_from: None,
        }
        .at(
            step,
            adam,
            step * 2,
            OpenWindow {
                steps: 1,
                loss_sum: 2.5,
                aux_sum: 0.0,
                counts: BTreeMap::from([(crate::config::LayerId::decoder(1), vec![3, 4])]),
            },
        )
    }

    fn same(a: &Tensor, b: &Tensor) -> bool {
        a.size() == b.size() && a.equal(b)
    }

    #[test]
    fn a_checkpoint_restores_weights_moments_and_state_exactly() {
        let run = tempfile::tempdir().unwrap();
        let (vs, adam) = trained(1);
        let saved = state(3, &adam);
        let dir = save(run.path(), &vs, &adam, &saved, &[], 2).unwrap();
        assert_eq!(resolve(run.path()).unwrap(), dir);
        let read = read_state(&dir).unwrap();
        assert_eq!(
            read.checksums.keys().collect::<Vec<_>>(),
            ["model.safetensors", "optimizer.safetensors"]
        );
        assert_eq!(
            CheckpointState {
                checksums: BTreeMap::new(),
                ..read
            },
            saved
        );

        // Another initialization and fresh moments, then everything loaded back.
        let (mut other, _) = trained(2);
        let mut fresh = Adam::new(other.variables().into_iter().collect(), (0.9, 0.98), 1e-8);
        assert!(!same(
            &other.variables()["proj.weight"],
            &vs.variables()["proj.weight"]
        ));
        load_weights(&dir, &mut other).unwrap();
        load_optimizer(&dir, &mut fresh, saved.optimizer_steps).unwrap();
        for (name, tensor) in vs.variables() {
            assert!(same(&other.variables()[&name], &tensor), "{name}");
        }
        let (want, got) = (adam.state_tensors(), fresh.state_tensors());
        assert_eq!(want.len(), got.len());
        for ((name, a), (_, b)) in want.iter().zip(&got) {
            assert!(same(a, b), "{name}");
        }
        assert_eq!(fresh.steps, adam.steps);
    }

    #[test]
    fn newer_checkpoints_replace_the_oldest_beyond_keep_and_leave_no_temporaries() {
        let run = tempfile::tempdir().unwrap();
        let (vs, adam) = trained(1);
        for step in [2, 4, 6] {
            save(run.path(), &vs, &adam, &state(step, &adam), &[], 2).unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(run.path().join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["latest", "step-00000004", "step-00000006"]);
        assert_eq!(resolve(run.path()).unwrap(), checkpoint_dir(run.path(), 6));
    }
}
