//! A spill directory shared by the tasks of a Reddit run on many machines.
//!
//! Phase 1 (`spill`): each of N tasks parses its share of the dumps ([`plan_tasks`]) once and
//! writes the spill forms, partitioned by thread, to `DIR/task-I-of-N/part-P.spill`. A task
//! writes under a temporary name (`DIR/.task-I-of-N.tmp`) and renames it when complete, with
//! `spill.json` (inputs, share, partition sizes, skipped records) inside: a finished task is a
//! directory that holds it, a killed one left only the temporary name, which its rerun
//! replaces. Phase 2 (`rebuild`): each of M tasks takes its share of the partitions, partition
//! `p` being the `part-p` files of every phase-1 task in task order, and rebuilds, tokenizes
//! and writes its output as any tokenize run does; `hashprep merge` joins them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::plan::{plan_tasks, SpillUnit};
use super::rebuild::Spill;
use super::spill::{partition_for, Skipped};
use crate::corpus::{InputFile, OnError};
use crate::error::{Error, Result, SkipReason, SpillProblem};
use crate::integrity::fingerprint_bytes;
use crate::util::{rename_durable, write_atomic};

/// `kind` of a spill task's manifest.
const SPILL_KIND: &str = "hashprep-spill-task";
/// Version of its layout.
const SPILL_VERSION: u32 = 1;
/// The manifest inside a finished task's directory.
const TASK_MANIFEST: &str = "spill.json";

/// What one finished phase-1 task wrote (`DIR/task-I-of-N/spill.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpillTask {
    /// Always `hashprep-spill-task`.
    pub kind: String,
    /// Layout version.
    pub version: u32,
    /// The program that wrote it.
    pub created_by: String,
    /// Identity of the whole spill: inputs, tasks and partitions (equal in all its tasks).
    pub spill: String,
    /// This task's index and the number of tasks.
    pub task: [usize; 2],
    /// Partitions (threads are grouped by a hash of their id).
    pub partitions: usize,
    /// Every input of the spill, in order, with its size.
    pub inputs: Vec<InputFile>,
    /// What this task read of them.
    pub units: Vec<SpillUnit>,
    /// Bytes of each partition's spill file.
    pub partition_bytes: Vec<u64>,
    /// Records skipped, by reason (rebuild task 0 reports them).
    pub skipped: BTreeMap<String, u64>,
}

/// The identity of a spill of `inputs` by `tasks` tasks into `partitions` partitions.
pub(crate) fn spill_identity(inputs: &[InputFile], tasks: usize, partitions: usize) -> String {
    let identity = serde_json::json!({
        "version": SPILL_VERSION,
        "inputs": inputs,
        "tasks": tasks,
        "partitions": partitions,
    });
    fingerprint_bytes(identity.to_string().as_bytes())
}

/// `task-00002-of-00004`.
fn task_name([index, tasks]: [usize; 2]) -> String {
    format!("task-{index:05}-of-{tasks:05}")
}

/// The lock file a run of task `task` holds in the spill directory (see `OutputLock`).
pub(crate) fn task_lock_file(task: [usize; 2]) -> String {
    format!(".{}.lock", task_name(task))
}

/// What a phase-1 task did.
#[derive(Debug, Clone)]
pub(crate) struct Spilled {
    /// Its manifest.
    pub(crate) task: SpillTask,
    /// It had finished before: nothing was done.
    pub(crate) already_complete: bool,
}

/// Phase 1 of task `task.0` of `task.1`: its share of `inputs` into `partitions` partitions
/// under `dir` (which exists; the caller holds the task's lock, [`task_lock_file`]). A
/// finished task is left as it is; a killed one is redone.
///
/// # Errors
/// The directory holds another spill; bad input (file and line of the whole file); an I/O
/// failure.
pub(crate) fn spill_task(
    dir: &Path,
    inputs: &[InputFile],
    (index, tasks): (usize, usize),
    partitions: usize,
    on_error: OnError,
    progress: Option<&Arc<AtomicU64>>,
) -> Result<Spilled> {
    let name = task_name([index, tasks]);
    let identity = spill_identity(inputs, tasks, partitions);
    let finished = finished_tasks(dir)?;
    if let Some(found) = of_another_spill(&finished, &identity) {
        return Err(other_spill(dir, found, &identity));
    }
    if let Some((_, task)) = finished.iter().find(|(_, t)| t.task == [index, tasks]) {
        return Ok(Spilled {
            task: task.clone(),
            already_complete: true,
        });
    }
    let units = plan_tasks(inputs, tasks)?.swap_remove(index);
    let staging = dir.join(format!(".{name}.tmp"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    }
    let (paths, skipped) = partition_for(
        Spill::Shared,
        &units,
        &staging,
        (partitions, (0, 1)),
        on_error,
        progress,
    )?;
    // On disk before the rename makes the task finished; files in parallel, so that their
    // writes overlap.
    let partition_bytes = paths
        .par_iter()
        .map(|path| {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            file.sync_all().map_err(|e| Error::io(path, e))?;
            Ok(file.metadata().map_err(|e| Error::io(path, e))?.len())
        })
        .collect::<Result<Vec<u64>>>()?;
    let task = SpillTask {
        kind: SPILL_KIND.into(),
        version: SPILL_VERSION,
        created_by: format!("hashprep {}", env!("CARGO_PKG_VERSION")),
        spill: identity,
        task: [index, tasks],
        partitions,
        inputs: inputs.to_vec(),
        units,
        partition_bytes,
        skipped: skipped
            .iter()
            .map(|(reason, n)| (reason.name().to_owned(), *n))
            .collect(),
    };
    let json = serde_json::to_vec_pretty(&task).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&staging.join(TASK_MANIFEST), &json)?;
    rename_durable(&staging, &dir.join(name))?;
    Ok(Spilled {
        task,
        already_complete: false,
    })
}

/// The finished tasks found in `dir`, with their directories, in task order.
fn finished_tasks(dir: &Path) -> Result<Vec<(PathBuf, SpillTask)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let named_as_task = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("task-"));
        let manifest = path.join(TASK_MANIFEST);
        if !named_as_task || !manifest.is_file() {
            continue;
        }
        let bytes = std::fs::read(&manifest).map_err(|e| Error::io(&manifest, e))?;
        let task: SpillTask = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corrupt(&manifest, format!("not a spill task manifest: {e}")))?;
        if task.kind != SPILL_KIND || task.version != SPILL_VERSION {
            return Err(Error::corrupt(
                &manifest,
                format!(
                    "a {} of version {}, not a {SPILL_KIND} of version {SPILL_VERSION}",
                    task.kind, task.version
                ),
            ));
        }
        found.push((path, task));
    }
    found.sort_by_key(|(_, t)| t.task);
    Ok(found)
}

/// The first of the `finished` tasks that belongs to another spill than `identity`.
fn of_another_spill<'a>(
    finished: &'a [(PathBuf, SpillTask)],
    identity: &str,
) -> Option<&'a (PathBuf, SpillTask)> {
    finished.iter().find(|(_, t)| t.spill != identity)
}

fn other_spill(dir: &Path, (found, task): &(PathBuf, SpillTask), wanted: &str) -> Error {
    Error::Spill {
        dir: dir.to_owned(),
        problem: SpillProblem::OtherSpill {
            found: format!(
                "{} of spill {}",
                found.file_name().unwrap_or_default().to_string_lossy(),
                task.spill
            ),
            wanted: format!("spill {wanted}"),
        },
    }
}

/// A spill whose every phase-1 task has finished (its readers hold the directory's
/// `ReadLock` against removal).
#[derive(Debug)]
pub(crate) struct FinishedSpill {
    dir: PathBuf,
    tasks: Vec<SpillTask>,
}

impl FinishedSpill {
    /// Opens the spill in `dir` for a rebuild of `inputs`.
    ///
    /// # Errors
    /// No task or not every task has finished (the missing ones named), tasks of other
    /// spills, other inputs than the spill's, or a spill file missing or of another size.
    pub(crate) fn open(dir: &Path, inputs: &[InputFile]) -> Result<Self> {
        let spill_error = |problem| Error::Spill {
            dir: dir.to_owned(),
            problem,
        };
        if !dir.is_dir() {
            return Err(spill_error(SpillProblem::NothingSpilled));
        }
        let finished = finished_tasks(dir)?;
        let Some((_, first)) = finished.first() else {
            return Err(spill_error(SpillProblem::NothingSpilled));
        };
        if let Some(found) = of_another_spill(&finished, &first.spill) {
            return Err(other_spill(dir, found, &first.spill));
        }
        let count = first.task[1];
        let missing: Vec<usize> = (0..count)
            .filter(|i| finished.iter().all(|(_, t)| t.task[0] != *i))
            .collect();
        if !missing.is_empty() {
            return Err(spill_error(SpillProblem::Unfinished {
                missing,
                tasks: count,
            }));
        }
        if first.inputs != inputs {
            return Err(spill_error(SpillProblem::OtherInputs(differences(
                &first.inputs,
                inputs,
            ))));
        }
        let spill = Self {
            dir: dir.to_owned(),
            tasks: finished.into_iter().map(|(_, t)| t).collect(),
        };
        spill.check_files()?;
        Ok(spill)
    }

    /// The spill's identity.
    pub(crate) fn identity(&self) -> &str {
        &self.tasks[0].spill
    }

    /// Its partitions.
    pub(crate) fn partitions(&self) -> usize {
        self.tasks[0].partitions
    }

    /// Its phase-1 tasks.
    pub(crate) fn task_count(&self) -> usize {
        self.tasks.len()
    }

    fn part_file(&self, task: &SpillTask, partition: usize) -> PathBuf {
        self.dir
            .join(task_name(task.task))
            .join(format!("part-{partition:05}.spill"))
    }

    fn check_files(&self) -> Result<()> {
        for task in &self.tasks {
            for (p, &expected) in task.partition_bytes.iter().enumerate() {
                let file = self.part_file(task, p);
                let found = match std::fs::metadata(&file) {
                    Ok(m) if m.len() == expected => continue,
                    Ok(m) => format!("{} bytes", m.len()),
                    Err(_) => "missing".to_owned(),
                };
                return Err(Error::Spill {
                    dir: self.dir.clone(),
                    problem: SpillProblem::Damaged {
                        file,
                        found,
                        expected,
                    },
                });
            }
        }
        Ok(())
    }

    /// The partitions rebuild task `index` of `tasks` takes, each the files of every phase-1
    /// task in task order: partitions go, largest first, to the task with the fewest bytes
    /// so far; each task takes its own in partition order.
    pub(crate) fn share(&self, index: usize, tasks: usize) -> Vec<Vec<PathBuf>> {
        let sizes: Vec<u64> = (0..self.partitions())
            .map(|p| self.tasks.iter().map(|t| t.partition_bytes[p]).sum())
            .collect();
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by_key(|&p| (std::cmp::Reverse(sizes[p]), p));
        let mut loads = vec![0u64; tasks.max(1)];
        let mut mine = Vec::new();
        for p in order {
            let least = (0..loads.len()).min_by_key(|&t| (loads[t], t)).unwrap_or(0);
            loads[least] += sizes[p];
            if least == index {
                mine.push(p);
            }
        }
        mine.sort_unstable();
        mine.into_iter()
            .map(|p| self.tasks.iter().map(|t| self.part_file(t, p)).collect())
            .collect()
    }

    /// The records phase 1 skipped, by reason, over all its tasks.
    pub(crate) fn skipped(&self) -> Skipped {
        let mut skipped = Skipped::new();
        for task in &self.tasks {
            for (name, n) in &task.skipped {
                if let Some(reason) = SkipReason::ALL.into_iter().find(|r| r.name() == name) {
                    *skipped.entry(reason).or_default() += n;
                }
            }
        }
        skipped
    }
}

/// How the inputs given differ from the spill's, in a few words.
fn differences(spilled: &[InputFile], given: &[InputFile]) -> String {
    let name = |f: &InputFile| format!("{} ({} bytes)", f.path.display(), f.bytes);
    let only = |a: &[InputFile], b: &[InputFile]| -> Vec<String> {
        a.iter()
            .filter(|f| !b.contains(f))
            .map(name)
            .take(3)
            .collect()
    };
    let (gone, new) = (only(spilled, given), only(given, spilled));
    match (gone.is_empty(), new.is_empty()) {
        (true, true) => "the same files in another order".into(),
        _ => format!(
            "spilled but not given: [{}]; given but not spilled: [{}]",
            gone.join(", "),
            new.join(", ")
        ),
    }
}

/// Checks that `dir` holds only tasks of the spill `identity` (the one merged outputs were
/// rebuilt from), before it is removed.
///
/// # Errors
/// The directory holds another spill.
pub(crate) fn check_removable(dir: &Path, identity: &str) -> Result<()> {
    let finished = finished_tasks(dir)?;
    if let Some((found, _)) = of_another_spill(&finished, identity) {
        return Err(Error::Spill {
            dir: dir.to_owned(),
            problem: SpillProblem::NotRemoved(format!(
                "{} belongs to another spill than the outputs merged",
                found.display()
            )),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dumps(dir: &Path) -> Vec<InputFile> {
        let lines: String = (0..300)
            .map(|i| {
                let t = i % 17;
                format!(
                    r#"{{"id":"c{i}","parent_id":"t3_s{t}","link_id":"t3_s{t}","body":"b {i}"}}"#
                ) + "\n"
            })
            .collect();
        let path = dir.join("RC_2020-01");
        std::fs::write(&path, &lines).unwrap();
        crate::corpus::expand_inputs(&[path]).unwrap()
    }

    /// Phase 1 of one task (the directory made first, as the pipeline does).
    fn spill_task(
        dir: &Path,
        inputs: &[InputFile],
        task: (usize, usize),
        partitions: usize,
        on_error: OnError,
        progress: Option<&Arc<AtomicU64>>,
    ) -> Result<Spilled> {
        std::fs::create_dir_all(dir).unwrap();
        super::spill_task(dir, inputs, task, partitions, on_error, progress)
    }

    fn spill_all(dir: &Path, inputs: &[InputFile], tasks: usize) {
        for t in 0..tasks {
            let done = spill_task(dir, inputs, (t, tasks), 4, OnError::Fail, None).unwrap();
            assert!(!done.already_complete);
        }
    }

    #[test]
    fn a_rebuild_waits_for_every_task_and_the_shares_cover_the_partitions() {
        let tmp = tempfile::tempdir().unwrap();
        let inputs = dumps(tmp.path());
        let dir = tmp.path().join("spill");
        spill_task(&dir, &inputs, (1, 3), 4, OnError::Fail, None).unwrap();
        let err = FinishedSpill::open(&dir, &inputs).unwrap_err().to_string();
        assert!(
            err.contains("spill tasks [0, 2] of 3 have not finished"),
            "{err}"
        );
        for t in [0, 2] {
            spill_task(&dir, &inputs, (t, 3), 4, OnError::Fail, None).unwrap();
        }
        let spill = FinishedSpill::open(&dir, &inputs).unwrap();
        assert_eq!((spill.task_count(), spill.partitions()), (3, 4));
        let sizes: Vec<usize> = (0..2).map(|j| spill.share(j, 2).len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 4);
        assert!(spill.share(0, 2).iter().all(|files| files.len() == 3));
    }

    #[test]
    fn reruns_are_no_ops_and_a_killed_task_is_redone() {
        let tmp = tempfile::tempdir().unwrap();
        let inputs = dumps(tmp.path());
        let dir = tmp.path().join("spill");
        let first = spill_task(&dir, &inputs, (0, 2), 4, OnError::Fail, None).unwrap();
        let again = spill_task(&dir, &inputs, (0, 2), 4, OnError::Fail, None).unwrap();
        assert!(again.already_complete);
        assert_eq!(again.task, first.task);
        // Task 1 killed while writing: a temporary directory with a partial file.
        let staging = dir.join(".task-00001-of-00002.tmp");
        std::fs::create_dir(&staging).unwrap();
        std::fs::write(staging.join("part-00000.spill"), b"partial").unwrap();
        let redone = spill_task(&dir, &inputs, (1, 2), 4, OnError::Fail, None).unwrap();
        assert!(!redone.already_complete);
        assert!(!staging.exists());
        let spill = FinishedSpill::open(&dir, &inputs).unwrap();
        assert_eq!(spill.task_count(), 2);
        // Every partition goes to exactly one of 3 rebuild tasks.
        let mut taken: Vec<PathBuf> = (0..3).flat_map(|j| spill.share(j, 3)).flatten().collect();
        taken.sort();
        taken.dedup();
        assert_eq!(taken.len(), 4 * 2);
    }

    #[test]
    fn spills_of_other_inputs_or_splits_are_not_mixed() {
        let tmp = tempfile::tempdir().unwrap();
        let inputs = dumps(tmp.path());
        let dir = tmp.path().join("spill");
        spill_all(&dir, &inputs, 2);
        let err = spill_task(&dir, &inputs, (0, 3), 4, OnError::Fail, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("holds the spill of other inputs or settings"),
            "{err}"
        );
        let mut other = inputs.clone();
        other[0].bytes += 1;
        let err = FinishedSpill::open(&dir, &other).unwrap_err().to_string();
        assert!(err.contains("was spilled from other inputs"), "{err}");
        // A damaged spill file is named.
        let part = dir.join("task-00001-of-00002/part-00003.spill");
        std::fs::write(&part, b"x").unwrap();
        let err = FinishedSpill::open(&dir, &inputs).unwrap_err().to_string();
        assert!(err.contains("part-00003.spill: 1 bytes"), "{err}");
    }

    #[test]
    fn only_a_spill_of_the_merged_outputs_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let inputs = dumps(tmp.path());
        let dir = tmp.path().join("spill");
        spill_all(&dir, &inputs, 1);
        let spill = FinishedSpill::open(&dir, &inputs).unwrap();
        check_removable(&dir, spill.identity()).unwrap();
        let err = check_removable(&dir, "other").unwrap_err().to_string();
        assert!(err.contains("another spill"), "{err}");
    }
}
