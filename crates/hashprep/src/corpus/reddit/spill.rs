//! Threads at scale: the comments of a month are tens of GB and arrive in any order, so they
//! are first partitioned by a hash of their thread (`link_id`) into spill files on disk; each
//! partition then fits in memory and is rebuilt independently, partitions in parallel.
//! `--num-tasks` splits the threads (not the files) the same way, so every thread is whole in
//! exactly one task.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::filters::RedditFilter;
use super::plan::SpillUnit;
use super::rebuild::Spill;
use super::records::Submission;
use super::spill_record::{
    decode_each, DumpRecord, SpillRecord, MAX_LINE_BYTES, SPILL_PREFIX_BYTES,
};
#[cfg(test)]
use super::threads::ResolvedDialogue;
use super::threads::{thread_examples, ThreadDialogues, ThreadStats};
use crate::corpus::decompress::{lines_before_range, open_range};
use crate::corpus::jsonl::json_lines_error;
use crate::corpus::lines::{LineBlock, LineRun, Lines};
use crate::corpus::open_input;
use crate::corpus::OnError;
use crate::error::{Error, Location, Result, SkipReason};
use crate::util::splitmix64;

/// The thread a record belongs to: a comment's `link_id`, a submission's own id.
fn thread_of<'r>(record: &'r DumpRecord) -> Option<&'r str> {
    if record.is_comment() {
        record
            .link_id
            .as_deref()
            .map(|l| l.strip_prefix("t3_").unwrap_or(l))
    } else if record.title.is_some() {
        record.id.as_deref()
    } else {
        None
    }
}

/// A stable 64-bit hash of a thread id (FNV-1a, then mixed).
fn thread_hash(thread: &str) -> u64 {
    let fnv = thread.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    });
    splitmix64(fnv)
}

/// Where a thread goes: `(task, partition)`.
fn route(thread: &str, tasks: usize, partitions: usize) -> (usize, usize) {
    let h = thread_hash(thread);
    (
        (h % tasks as u64) as usize,
        ((h / tasks as u64) % partitions as u64) as usize,
    )
}

/// Records skipped while partitioning, by reason.
pub(crate) type Skipped = HashMap<SkipReason, u64>;

/// Bytes of whole lines read together in phase 1 and parsed on all cores, while the next block
/// is read (small in tests, so that they cross blocks and runs).
const BLOCK_BYTES: usize = if cfg!(test) { 4 << 10 } else { 8 << 20 };

/// Bytes of lines parsed by one task of the rayon pool: their spill forms go into one buffer
/// instead of a buffer per record.
const RUN_BYTES: usize = if cfg!(test) { 512 } else { 512 << 10 };

/// What phase 1 does with one line.
enum Routed {
    /// A blank line, or a record of another task.
    Nothing,
    /// The record's spill form was appended; it goes to this partition.
    Spill(usize),
    /// A bad record (skipped or fatal under the policy) or a fatal error.
    Bad(Error),
}

/// A run of lines parsed: their spill forms back to back, with each one's partition and end
/// offset, and the bad lines, each in input order.
struct RoutedRun {
    spilled: Vec<u8>,
    records: Vec<(usize, usize)>,
    bad: Vec<Error>,
}

/// Parses a run of lines (runs on the rayon pool).
fn route_run(run: &LineRun, partitions: usize, task: (usize, usize)) -> RoutedRun {
    let mut routed_run = RoutedRun {
        spilled: Vec::with_capacity(run.byte_len() + run.line_count() * SPILL_PREFIX_BYTES),
        records: Vec::with_capacity(run.line_count()),
        bad: Vec::new(),
    };
    for (number, line) in run.lines() {
        let routed = match line {
            Ok(text) => route_line(
                text,
                (run.path(), number),
                partitions,
                task,
                &mut routed_run.spilled,
            ),
            Err(e) => Routed::Bad(e),
        };
        match routed {
            Routed::Nothing => {}
            Routed::Spill(p) => routed_run.records.push((p, routed_run.spilled.len())),
            Routed::Bad(e) => routed_run.bad.push(e),
        }
    }
    routed_run
}

/// Parses one dump line, appends its spill form to `spilled` and names its partition.
fn route_line(
    line: &str,
    (file, number): (&Path, u64),
    partitions: usize,
    task: (usize, usize),
    spilled: &mut Vec<u8>,
) -> Routed {
    let location = || Location {
        path: file.to_path_buf(),
        line: number,
    };
    if line.trim().is_empty() {
        return Routed::Nothing;
    }
    if line.len() > MAX_LINE_BYTES {
        return Routed::Bad(Error::RecordTooLarge {
            location: location(),
            bytes: line.len(),
            max: MAX_LINE_BYTES,
        });
    }
    let bad = |reason: SkipReason, detail: String| {
        Routed::Bad(Error::BadRecord {
            location: location(),
            reason,
            detail,
        })
    };
    let record = match serde_json::from_str::<DumpRecord>(line) {
        Err(e) => return bad(SkipReason::MalformedJson, json_lines_error(line, &e)),
        Ok(r) if r.id.is_none() => return bad(SkipReason::MissingField, "no id".into()),
        Ok(r) => r,
    };
    let Some(thread) = thread_of(&record) else {
        return bad(
            SkipReason::MissingField,
            "neither a comment with link_id nor a submission with title".into(),
        );
    };
    let (t, p) = route(thread, task.1, partitions);
    if t != task.0 {
        return Routed::Nothing;
    }
    record.encode(spilled);
    Routed::Spill(p)
}

/// Phase 1: streams every record of `files` into `partitions` spill files under `dir`, keeping
/// only the threads of task `task.0` of `task.1`. Returns the spill files and what was skipped.
/// Blocks of lines are parsed on all cores while the next block is read and the last one's
/// spill forms are written, in input order, by a writer thread.
///
/// # Errors
/// I/O failure; under `OnError::Fail`, the first malformed record (file and line).
pub(crate) fn partition(
    files: &[SpillUnit],
    dir: &Path,
    partitions: usize,
    task: (usize, usize),
    on_error: OnError,
    progress: Option<&std::sync::Arc<std::sync::atomic::AtomicU64>>,
) -> Result<(Vec<PathBuf>, Skipped)> {
    partition_for(
        Spill::Own,
        files,
        dir,
        (partitions, task),
        on_error,
        progress,
    )
}

/// [`partition`] into a run's own spill, or into a shared one: its files are then written
/// back to disk as they grow (the task syncs them before it is finished), not all at the end.
pub(crate) fn partition_for(
    spill: Spill,
    files: &[SpillUnit],
    dir: &Path,
    (partitions, task): (usize, (usize, usize)),
    on_error: OnError,
    progress: Option<&std::sync::Arc<std::sync::atomic::AtomicU64>>,
) -> Result<(Vec<PathBuf>, Skipped)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let paths: Vec<PathBuf> = (0..partitions)
        .map(|p| dir.join(format!("part-{p:05}.spill")))
        .collect();
    let writers = paths
        .iter()
        .map(|p| {
            File::create(p)
                .map(|f| BufWriter::with_capacity(1 << 16, f))
                .map_err(|e| Error::io(p, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let (parsed, written) = std::thread::scope(|scope| {
        // One block's runs waiting while the writer writes the one before.
        let (runs_tx, runs_rx) = std::sync::mpsc::sync_channel(1);
        let paths = &paths;
        let writer = scope.spawn(move || write_runs(runs_rx, writers, paths, spill));
        let parsed = parse_files(files, partitions, task, on_error, progress, &runs_tx);
        drop(runs_tx);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (parsed, written)
    });
    // A writer that failed stopped the parsing: its error is the one to report.
    written?;
    Ok((paths, parsed?))
}

/// Parses the lines of `files` block by block, the next block read meanwhile, and sends each
/// block's runs to the writer; stops early if the writer has stopped.
fn parse_files(
    files: &[SpillUnit],
    partitions: usize,
    task: (usize, usize),
    on_error: OnError,
    progress: Option<&std::sync::Arc<std::sync::atomic::AtomicU64>>,
    runs_tx: &std::sync::mpsc::SyncSender<Vec<RoutedRun>>,
) -> Result<Skipped> {
    use rayon::prelude::*;
    let mut skipped = Skipped::new();
    let mut reader: Option<Lines> = None;
    for unit in files {
        let file = &unit.path;
        let stream = match unit.bytes {
            None => open_input(file, progress.cloned())?,
            Some(range) => open_range(file, range, progress.cloned())?,
        };
        let lines = match &mut reader {
            Some(lines) => {
                lines.restart(stream, file);
                lines
            }
            None => reader.insert(Lines::new(stream, file)),
        };
        let mut block = lines.next_block(BLOCK_BYTES);
        loop {
            if block.is_empty() && block.ended.is_none() {
                break;
            }
            let (mut runs, next) = rayon::join(
                || {
                    block
                        .runs(RUN_BYTES, file)
                        .par_iter()
                        .map(|run| route_run(run, partitions, task))
                        .collect::<Vec<_>>()
                },
                || match block.ended {
                    None => lines.next_block(BLOCK_BYTES),
                    Some(_) => LineBlock::default(),
                },
            );
            for run in &mut runs {
                for bad in run.bad.drain(..) {
                    match bad {
                        Error::BadRecord { reason, .. } if on_error == OnError::Skip => {
                            *skipped.entry(reason).or_default() += 1;
                        }
                        e => return Err(in_whole_file(e, unit)),
                    }
                }
            }
            if runs_tx.send(runs).is_err() {
                return Ok(skipped); // the writer failed and reports why
            }
            let ended = block.ended.take();
            lines.recycle(std::mem::replace(&mut block, next));
            match ended {
                None => {}
                Some(Error::CorruptStream { .. }) if on_error == OnError::Skip => {
                    *skipped.entry(SkipReason::CorruptStream).or_default() += 1;
                    break;
                }
                Some(e) => return Err(e),
            }
        }
        lines.recycle(block);
    }
    Ok(skipped)
}

/// A fatal error of a line of `unit`, its line counted from the start of the file (a byte
/// range counts its lines from its own start while it is read).
fn in_whole_file(error: Error, unit: &SpillUnit) -> Error {
    let Some([start, _]) = unit.bytes.filter(|[start, _]| *start > 0) else {
        return error;
    };
    let before = match lines_before_range(&unit.path, start) {
        Ok(before) => before,
        Err(e) => return Error::io(&unit.path, e),
    };
    match error {
        Error::BadRecord {
            mut location,
            reason,
            detail,
        } => {
            location.line += before;
            Error::BadRecord {
                location,
                reason,
                detail,
            }
        }
        Error::RecordTooLarge {
            mut location,
            bytes,
            max,
        } => {
            location.line += before;
            Error::RecordTooLarge {
                location,
                bytes,
                max,
            }
        }
        other => other,
    }
}

/// Writes each run's spill forms to their partitions' files, in the order they come; into a
/// shared spill, starts writing back each block's bytes to disk once it is written.
fn write_runs(
    runs_rx: std::sync::mpsc::Receiver<Vec<RoutedRun>>,
    mut writers: Vec<BufWriter<File>>,
    paths: &[PathBuf],
    spill: Spill,
) -> Result<()> {
    for runs in runs_rx {
        for run in runs {
            let mut start = 0;
            for (p, end) in run.records {
                writers[p]
                    .write_all(&run.spilled[start..end])
                    .map_err(|e| Error::io(&paths[p], e))?;
                start = end;
            }
        }
        if spill == Spill::Shared {
            for writer in &writers {
                crate::util::start_writeback(writer.get_ref());
            }
        }
    }
    for (writer, path) in writers.iter_mut().zip(paths) {
        writer.flush().map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Phase 2 for one partition (or, in memory, for everything): its examples, in input order,
/// with the texts they share. A partition is one spill file per phase-1 task that wrote it,
/// in task order (which is input order).
///
/// # Errors
/// A spill file cannot be read.
pub(crate) fn partition_examples(
    paths: &[PathBuf],
    max_turns: usize,
    filter: &RedditFilter,
) -> Result<(ThreadDialogues, ThreadStats)> {
    // Mapped, not read: a partition's bytes are not copied, nor fresh memory zeroed for them.
    let maps = paths
        .iter()
        .map(|path| {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            crate::util::map_file(&file, true).map_err(|e| Error::io(path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let spilled: usize = maps.iter().map(|m| m.len()).sum();
    // The comments borrow their strings from the maps.
    // Room for one comment per 64 bytes of spill (a record's prefixes and ids alone take
    // about 30; a body, the rest): no pass over the bytes to count them first, nor a copy
    // on growing, for all but the shortest bodies.
    let mut comments = Vec::with_capacity(spilled / 64);
    let mut submissions: HashMap<String, Submission, ahash::RandomState> = HashMap::default();
    for (bytes, path) in maps.iter().zip(paths) {
        decode_each(bytes, |record| match record {
            SpillRecord::Comment(comment) => comments.push(comment),
            SpillRecord::Submission(submission) => {
                submissions
                    .entry(submission.id.clone())
                    .or_insert(submission);
            }
        })
        .map_err(|e| Error::corrupt(path, e))?;
    }
    let mut stats = ThreadStats::default();
    let examples = thread_examples(&comments, &submissions, max_turns, filter, &mut stats);
    Ok((examples, stats))
}

/// Phase 2 over all partitions, in parallel; examples in partition order.
///
/// # Errors
/// A spill file cannot be read.
#[cfg(test)]
pub(crate) fn all_examples(
    partitions: &[PathBuf],
    max_turns: usize,
    filter: &RedditFilter,
) -> Result<(Vec<ResolvedDialogue>, ThreadStats)> {
    use rayon::prelude::*;
    let results: Vec<(ThreadDialogues, ThreadStats)> = partitions
        .par_iter()
        .map(|p| partition_examples(std::slice::from_ref(p), max_turns, filter))
        .collect::<Result<_>>()?;
    let mut stats = ThreadStats::default();
    let mut examples = Vec::new();
    for (part, part_stats) in results {
        stats.add(&part_stats);
        examples.extend(part.resolved());
    }
    Ok((examples, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generated dumps: threads spread over two files, comments shuffled, a submission in the
    /// second file, duplicates across files, deleted comments, a malformed line.
    fn dumps(dir: &Path) -> Vec<PathBuf> {
        let mut lines: Vec<String> = Vec::new();
        for thread in 0..40 {
            lines.push(format!(r#"{{"id":"s{thread}","title":"Thread {thread} &amp; co","selftext":"","subreddit":"r{}"}}"#, thread % 3));
            for c in 0..12 {
                let parent = if c == 0 {
                    format!("t3_s{thread}")
                } else {
                    format!("t1_c{thread}x{}", (c - 1) / 2)
                };
                let body = if c == 5 {
                    "[deleted]".to_owned()
                } else {
                    format!("comment {c} of {thread} &gt; x")
                };
                lines.push(format!(
                    r#"{{"id":"c{thread}x{c}","parent_id":"{parent}","link_id":"t3_s{thread}","body":"{body}","subreddit":"r{}","created_utc":"{}"}}"#,
                    thread % 3,
                    1_500_000_000 + c
                ));
            }
        }
        // Shuffle deterministically, then split over two "months".
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by_key(|&i| splitmix64(i as u64));
        let shuffled: Vec<&String> = order.iter().map(|&i| &lines[i]).collect();
        let (a, b) = shuffled.split_at(shuffled.len() / 2);
        let first = dir.join("RC_2019-01");
        let second = dir.join("RC_2019-02");
        let join = |part: &[&String]| {
            part.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        };
        std::fs::write(&first, join(a) + "{not json\n").unwrap();
        std::fs::write(&second, join(b) + &join(&a[..10])).unwrap(); // 10 duplicates
        vec![first, second]
    }

    /// Phase 1 as the only task, without progress.
    fn partition_whole(
        files: &[PathBuf],
        dir: &Path,
        partitions: usize,
        on_error: OnError,
    ) -> Result<(Vec<PathBuf>, Skipped)> {
        partition(
            &SpillUnit::whole_files(files),
            dir,
            partitions,
            (0, 1),
            on_error,
            None,
        )
    }

    fn sorted(mut examples: Vec<ResolvedDialogue>) -> Vec<ResolvedDialogue> {
        examples.sort_by(|a, b| a.id.cmp(&b.id));
        examples
    }

    #[test]
    fn spilled_partitions_give_the_same_examples_as_one_in_memory_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let files = dumps(tmp.path());
        let (one, skipped) =
            partition_whole(&files, &tmp.path().join("one"), 1, OnError::Skip).unwrap();
        assert_eq!(skipped.get(&SkipReason::MalformedJson), Some(&1));
        let (in_memory, memory_stats) = all_examples(&one, 7, &RedditFilter::default()).unwrap();
        let (parts, _) =
            partition_whole(&files, &tmp.path().join("many"), 7, OnError::Skip).unwrap();
        let (spilled, spill_stats) = all_examples(&parts, 7, &RedditFilter::default()).unwrap();
        assert_eq!(memory_stats, spill_stats);
        assert_eq!(memory_stats.duplicates, 10);
        assert_eq!(memory_stats.deleted, 40);
        assert_eq!(sorted(in_memory.clone()), sorted(spilled));
        // Thread 3, comment 11: parent chain 11 -> 5 (deleted) ends the context at once.
        let e = in_memory.iter().find(|e| e.id == "c3x11").unwrap();
        assert!(e.context.is_empty());
        // Comment 4 -> 1 -> 0 -> submission, whatever file each came from.
        let e = in_memory.iter().find(|e| e.id == "c3x4").unwrap();
        assert_eq!(
            e.context,
            vec!["Thread 3 & co", "comment 0 of 3 > x", "comment 1 of 3 > x"]
        );
        assert_eq!(e.subreddit, "r0");
    }

    #[test]
    fn tasks_split_threads_not_files() {
        let tmp = tempfile::tempdir().unwrap();
        let files = dumps(tmp.path());
        let (whole, _) =
            partition_whole(&files, &tmp.path().join("whole"), 3, OnError::Skip).unwrap();
        let (all, _) = all_examples(&whole, 7, &RedditFilter::default()).unwrap();
        let mut union = Vec::new();
        for task in 0..3 {
            let (parts, _) = partition(
                &SpillUnit::whole_files(&files),
                &tmp.path().join(format!("task{task}")),
                2,
                (task, 3),
                OnError::Skip,
                None,
            )
            .unwrap();
            union.extend(all_examples(&parts, 7, &RedditFilter::default()).unwrap().0);
        }
        assert_eq!(sorted(union), sorted(all));
    }

    #[test]
    fn malformed_lines_fail_with_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let files = dumps(tmp.path());
        let err = partition_whole(&files, &tmp.path().join("p"), 2, OnError::Fail)
            .unwrap_err()
            .to_string();
        assert!(err.contains("RC_2019-01:261: malformed_json"), "{err}");
    }

    #[test]
    fn the_first_bad_line_fails_across_runs_and_skips_count_every_one() {
        let tmp = tempfile::tempdir().unwrap();
        let good = |i: usize| {
            format!(r#"{{"id":"c{i}","parent_id":"t3_s","link_id":"t3_s","body":"b {i}"}}"#)
        };
        // Two bad lines close together, one many blocks of lines later (blocks and runs of
        // lines are a few KiB in tests): the first one in input order fails the partition.
        let lines = 3000;
        let bad_at = [2055, 2057, 2950];
        assert!(bad_at[2] * good(bad_at[2]).len() > bad_at[0] * good(0).len() + 2 * BLOCK_BYTES);
        let text: String = (1..=lines)
            .map(|line| {
                if bad_at.contains(&line) {
                    "{broken\n".to_owned()
                } else {
                    good(line) + "\n"
                }
            })
            .collect();
        let dump = tmp.path().join("RC_2020-01");
        std::fs::write(&dump, text).unwrap();
        let files = [dump];
        let err = partition_whole(&files, &tmp.path().join("f"), 3, OnError::Fail)
            .unwrap_err()
            .to_string();
        let first = format!("RC_2020-01:{}: malformed_json", bad_at[0]);
        assert!(err.contains(&first), "{err}");
        let (parts, skipped) =
            partition_whole(&files, &tmp.path().join("s"), 3, OnError::Skip).unwrap();
        assert_eq!(skipped.get(&SkipReason::MalformedJson), Some(&3));
        let (examples, _) = all_examples(&parts, 7, &RedditFilter::default()).unwrap();
        assert_eq!(examples.len(), lines - 3);
    }
}
