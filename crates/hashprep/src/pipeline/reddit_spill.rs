//! Reddit on many machines, as two dependent task arrays over a shared spill directory:
//! `tokenize --phase spill` (phase 1: each task parses its share of the dumps once into the
//! spill) and `tokenize --phase rebuild` (phase 2: each task rebuilds, tokenizes and writes its
//! share of the partitions; [`tokenize`](super::tokenize) does it). `merge --remove-spill`
//! joins the outputs and removes the spill. See `corpus::reddit::shared_spill` for the layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::progress::Progress;
use super::tokenize::{RunOptions, TokenizeSettings};
use crate::corpus::reddit::{check_removable, spill_task, task_lock_file, SpillUnit};
use crate::corpus::{check_task, expand_inputs, Format};
use crate::error::{EmptyProblem, Error, OutputProblem, Result, SpillProblem};
use crate::shard::{Manifest, OutputLock, ReadLock};

/// Which part of a Reddit run a tokenize call does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RedditPhase {
    /// Both phases in one process, the spill inside the output directory (one machine).
    #[default]
    Both,
    /// Phase 2 of a run on many machines: this task's share of the partitions of the finished
    /// spill in this directory (phase 1 is [`spill_reddit`]).
    Rebuild(PathBuf),
}

/// What a phase-1 task did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpillSummary {
    /// The spill directory.
    pub spill_dir: PathBuf,
    /// This task's index and the number of tasks.
    pub task: [usize; 2],
    /// Partitions of the spill.
    pub partitions: usize,
    /// What this task read.
    pub units: Vec<SpillUnit>,
    /// Bytes of its share of the inputs (on disk).
    pub input_bytes: u64,
    /// Bytes it spilled.
    pub spill_bytes: u64,
    /// Records skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// The task had finished before; nothing was done.
    pub already_complete: bool,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Phase 1 of task `options.task_index` of `options.num_tasks`: parses its share of the Reddit
/// dumps `inputs` once (files balanced by size, uncompressed ones cut into byte ranges) into
/// the spill directory `spill_dir` shared by the tasks. A finished task is not redone; a killed
/// one is redone from the start.
///
/// # Errors
/// Not `--format reddit`; the directory holds another spill; bad input (file and line); I/O.
pub fn spill_reddit(
    settings: &TokenizeSettings,
    inputs: &[PathBuf],
    spill_dir: &Path,
    options: &RunOptions,
) -> Result<SpillSummary> {
    let started = Instant::now();
    let Format::Reddit(reddit) = &settings.format else {
        return Err(Error::setting(
            "phase",
            "spill: only `format` reddit is read in two phases",
        ));
    };
    let files = expand_inputs(inputs)?;
    if files.is_empty() {
        return Err(Error::Empty(EmptyProblem::NoInputs));
    }
    check_task(options.num_tasks, options.task_index)?;
    let partitions = reddit.partitions_for(files.iter().map(|f| f.bytes).sum());
    let task = (options.task_index, options.num_tasks);
    let bytes = Arc::new(AtomicU64::new(0));
    let share = files.iter().map(|f| f.bytes).sum::<u64>() / options.num_tasks as u64;
    crate::util::create_output_dir(spill_dir)?;
    let _lock = OutputLock::acquire_file(
        spill_dir,
        &task_lock_file([task.0, task.1]),
        &format!("spill task {} of {}", task.0, task.1),
    )?;
    let spilled = with_progress((options.progress, share), &bytes, || {
        spill_task(
            spill_dir,
            &files,
            task,
            partitions,
            settings.on_error,
            Some(&bytes),
        )
    })?;
    let input_bytes = spilled
        .task
        .units
        .iter()
        .map(|u| match u.bytes {
            Some([start, end]) => end - start,
            None => files
                .iter()
                .find(|f| f.path == u.path)
                .map_or(0, |f| f.bytes),
        })
        .sum();
    Ok(SpillSummary {
        spill_dir: spill_dir.to_owned(),
        task: spilled.task.task,
        partitions,
        input_bytes,
        spill_bytes: spilled.task.partition_bytes.iter().sum(),
        skipped: spilled.task.skipped.clone(),
        units: spilled.task.units,
        already_complete: spilled.already_complete,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs `work` with a bar (when `enabled`) over the `total` bytes it reports to `bytes`.
fn with_progress<T>(
    (enabled, total): (bool, u64),
    bytes: &Arc<AtomicU64>,
    work: impl FnOnce() -> T,
) -> T {
    let progress = Progress::new(total, enabled, "reddit 1/2: spill");
    let out = std::thread::scope(|scope| {
        // Dropped when the work is done, which wakes the bar's thread at once.
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let progress = &progress;
        scope.spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = done.recv_timeout(Duration::from_millis(200))
            {
                progress.update(bytes.load(Ordering::Relaxed), 0, 0);
            }
        });
        let out = work();
        drop(done_tx);
        out
    });
    progress.finish();
    out
}

/// Removes the spill directory `spill_dir` once the merged output `merged` holds the outputs
/// of every rebuild task of that spill.
///
/// # Errors
/// `merged` is not rebuilt from this spill, or misses rebuild tasks; a rebuild task still
/// reads the spill; I/O.
pub fn remove_merged_spill(merged: &Path, spill_dir: &Path) -> Result<()> {
    let manifest = Manifest::read(merged)?;
    let not_removed = |why: String| Error::Spill {
        dir: spill_dir.to_owned(),
        problem: SpillProblem::NotRemoved(why),
    };
    let Some(identity) = manifest
        .config
        .pointer("/spill/identity")
        .and_then(|v| v.as_str())
    else {
        return Err(not_removed(format!(
            "{} was not rebuilt from a shared spill",
            merged.display()
        )));
    };
    let tasks = manifest.tasks.first().map_or(0, |t| t[1]);
    let mut indices: Vec<usize> = manifest.tasks.iter().map(|t| t[0]).collect();
    indices.sort_unstable();
    indices.dedup();
    if indices.len() != tasks {
        return Err(not_removed(format!(
            "{} holds {} of the {tasks} rebuild tasks",
            merged.display(),
            indices.len()
        )));
    }
    check_removable(spill_dir, identity)?;
    ReadLock::remove_dir(
        spill_dir,
        OutputProblem::Locked("a rebuild task is reading it".into()),
    )
}
