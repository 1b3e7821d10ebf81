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
use super::records::Submission;
use super::spill_record::{decode_all, DumpRecord, SpillRecord, MAX_LINE_BYTES};
#[cfg(test)]
use super::threads::ResolvedDialogue;
use super::threads::{thread_examples, ThreadDialogues, ThreadStats};
use crate::corpus::jsonl::json_lines_error;
use crate::corpus::lines::{Line, Lines};
use crate::corpus::open_input;
use crate::corpus::OnError;
use crate::error::{Error, Result, SkipReason};
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

/// Phase 1: streams every record of `files` into `partitions` spill files under `dir`, keeping
/// only the threads of task `task.0` of `task.1`. Returns the spill files and what was skipped.
///
/// # Errors
/// I/O failure; under `OnError::Fail`, the first malformed record (file and line).
pub(crate) fn partition(
    files: &[PathBuf],
    dir: &Path,
    partitions: usize,
    task: (usize, usize),
    on_error: OnError,
    progress: Option<&std::sync::Arc<std::sync::atomic::AtomicU64>>,
) -> Result<(Vec<PathBuf>, Skipped)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let paths: Vec<PathBuf> = (0..partitions)
        .map(|p| dir.join(format!("part-{p:05}.spill")))
        .collect();
    let mut writers = paths
        .iter()
        .map(|p| {
            File::create(p)
                .map(|f| BufWriter::with_capacity(1 << 16, f))
                .map_err(|e| Error::io(p, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut skipped = Skipped::new();
    let mut encoded = Vec::new();
    for file in files {
        let mut lines = Lines::new(open_input(file, progress.cloned())?, file);
        while let Some(next) = lines.next_line() {
            let line = match next {
                Ok(Line::Text(line)) => line,
                Ok(Line::Invalid(Error::BadRecord { reason, .. })) if on_error == OnError::Skip => {
                    *skipped.entry(reason).or_default() += 1;
                    continue;
                }
                // A truncated or damaged stream (a partly downloaded dump): the records before
                // the damage are kept, the rest of the file is lost and counted once.
                Err(Error::CorruptStream { .. }) if on_error == OnError::Skip => {
                    *skipped.entry(SkipReason::CorruptStream).or_default() += 1;
                    break;
                }
                Ok(Line::Invalid(e)) | Err(e) => return Err(e),
            };
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: SkipReason, detail: String| Error::BadRecord {
                location: lines.location(),
                reason,
                detail,
            };
            if line.len() > MAX_LINE_BYTES {
                return Err(Error::BadInput(format!(
                    "{}: a record of {} bytes; the Reddit spill holds records of at most {MAX_LINE_BYTES}",
                    lines.location(),
                    line.len()
                )));
            }
            let record = serde_json::from_str::<DumpRecord>(&line);
            let outcome = match &record {
                Err(e) => Err(bad(SkipReason::MalformedJson, json_lines_error(&line, e))),
                Ok(r) if r.id.is_none() => Err(bad(SkipReason::MissingField, "no id".into())),
                Ok(r) => thread_of(r)
                    .map(|t| route(t, task.1, partitions))
                    .ok_or_else(|| {
                        bad(
                            SkipReason::MissingField,
                            "neither a comment with link_id nor a submission with title".into(),
                        )
                    }),
            };
            match (outcome, record) {
                (Ok((t, p)), Ok(record)) if t == task.0 => {
                    encoded.clear();
                    record.encode(&mut encoded);
                    writers[p]
                        .write_all(&encoded)
                        .map_err(|e| Error::io(&paths[p], e))?;
                }
                (Ok(_), _) => {}
                (Err(Error::BadRecord { reason, .. }), _) if on_error == OnError::Skip => {
                    *skipped.entry(reason).or_default() += 1;
                }
                (Err(e), _) => return Err(e),
            }
        }
    }
    for (writer, path) in writers.iter_mut().zip(&paths) {
        writer.flush().map_err(|e| Error::io(path, e))?;
    }
    Ok((paths, skipped))
}

/// Phase 2 for one partition (or, in memory, for everything): its examples, in input order,
/// with the texts they share.
///
/// # Errors
/// The spill file cannot be read.
pub(crate) fn partition_examples(
    path: &Path,
    max_turns: usize,
    filter: &RedditFilter,
) -> Result<(ThreadDialogues, ThreadStats)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let records = decode_all(&bytes).map_err(|e| Error::corrupt(path, e))?;
    drop(bytes);
    let mut comments = Vec::with_capacity(records.len());
    let mut submissions: HashMap<String, Submission, ahash::RandomState> = HashMap::default();
    for record in records {
        match record {
            SpillRecord::Comment(comment) => comments.push(comment),
            SpillRecord::Submission(submission) => {
                submissions
                    .entry(submission.id.clone())
                    .or_insert(submission);
            }
        }
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
        .map(|p| partition_examples(p, max_turns, filter))
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

    fn sorted(mut examples: Vec<ResolvedDialogue>) -> Vec<ResolvedDialogue> {
        examples.sort_by(|a, b| a.id.cmp(&b.id));
        examples
    }

    #[test]
    fn spilled_partitions_give_the_same_examples_as_one_in_memory_pass() {
        let tmp = tempfile::tempdir().unwrap();
        let files = dumps(tmp.path());
        let (one, skipped) = partition(
            &files,
            &tmp.path().join("one"),
            1,
            (0, 1),
            OnError::Skip,
            None,
        )
        .unwrap();
        assert_eq!(skipped.get(&SkipReason::MalformedJson), Some(&1));
        let (in_memory, memory_stats) = all_examples(&one, 7, &RedditFilter::default()).unwrap();
        let (parts, _) = partition(
            &files,
            &tmp.path().join("many"),
            7,
            (0, 1),
            OnError::Skip,
            None,
        )
        .unwrap();
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
        let (whole, _) = partition(
            &files,
            &tmp.path().join("whole"),
            3,
            (0, 1),
            OnError::Skip,
            None,
        )
        .unwrap();
        let (all, _) = all_examples(&whole, 7, &RedditFilter::default()).unwrap();
        let mut union = Vec::new();
        for task in 0..3 {
            let (parts, _) = partition(
                &files,
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
        let err = partition(
            &files,
            &tmp.path().join("p"),
            2,
            (0, 1),
            OnError::Fail,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("RC_2019-01:261: malformed_json"), "{err}");
    }
}
