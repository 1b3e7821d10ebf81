//! Phase 1 on many tasks: the dumps are cut into one contiguous piece per task, of about equal
//! work, so that each record is parsed once by one task. An uncompressed file is cut at any
//! byte (each task reads the lines that start in its byte range); a compressed one is read whole
//! by one task (it cannot be entered in the middle). Pieces keep input order, so the spill files
//! of the tasks, taken in task order, hold the records in input order, as one task would.

use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::corpus::decompress::Compression;
use crate::corpus::{InputFile, RedditOptions};
use crate::error::{Error, Result};

/// What phase 1 reads of one input: the whole file, or the lines that start in a byte range
/// of an uncompressed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpillUnit {
    /// The input file.
    pub path: PathBuf,
    /// Bytes `[start, end)` of an uncompressed file; the whole file when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<[u64; 2]>,
}

impl SpillUnit {
    /// Every file whole.
    pub(crate) fn whole_files(files: &[PathBuf]) -> Vec<SpillUnit> {
        files
            .iter()
            .map(|path| SpillUnit {
                path: path.clone(),
                bytes: None,
            })
            .collect()
    }
}

/// The share of phase 1 of each of `tasks` tasks (see the module documentation). The work of a
/// file is its size, ten times that for a compressed one (dumps expand about that much).
///
/// # Errors
/// A file cannot be read to tell whether it is compressed.
pub(crate) fn plan_tasks(files: &[InputFile], tasks: usize) -> Result<Vec<Vec<SpillUnit>>> {
    let mut works = Vec::with_capacity(files.len());
    for file in files {
        let compressed = is_compressed(file)?;
        let work = if compressed {
            file.bytes.saturating_mul(RedditOptions::EXPANSION)
        } else {
            file.bytes
        };
        works.push((work, !compressed && file.bytes > 0));
    }
    Ok(split_work(files, &works, tasks))
}

/// Cuts the line of all work into `tasks` equal segments; a divisible file is cut at the
/// segments' bounds, another goes whole to the task its middle falls in.
fn split_work(files: &[InputFile], works: &[(u64, bool)], tasks: usize) -> Vec<Vec<SpillUnit>> {
    let tasks = tasks.max(1);
    let total: u128 = works.iter().map(|&(w, _)| u128::from(w)).sum();
    // Where task t's segment starts on the line of work.
    let bound = |t: usize| total * t as u128 / tasks as u128;
    let task_at = |point: u128| {
        (point * tasks as u128)
            .checked_div(total)
            .map_or(0, |t| (t as usize).min(tasks - 1))
    };
    let mut plan = vec![Vec::new(); tasks];
    let mut start: u128 = 0;
    for (file, &(work, divisible)) in files.iter().zip(works) {
        let end = start + u128::from(work);
        if divisible {
            for (t, units) in plan.iter_mut().enumerate() {
                let (from, to) = (bound(t).max(start), bound(t + 1).min(end));
                if from < to {
                    // Plain files: work is bytes, so offsets on the line are byte offsets.
                    units.push(SpillUnit {
                        path: file.path.clone(),
                        bytes: Some([(from - start) as u64, (to - start) as u64]),
                    });
                }
            }
        } else {
            plan[task_at(start + u128::from(work) / 2)].push(SpillUnit {
                path: file.path.clone(),
                bytes: None,
            });
        }
        start = end;
    }
    plan
}

/// Whether `file` starts with the magic bytes of a compressed stream.
fn is_compressed(file: &InputFile) -> Result<bool> {
    let mut head = Vec::with_capacity(8);
    std::fs::File::open(&file.path)
        .and_then(|f| f.take(8).read_to_end(&mut head))
        .map_err(|e| Error::io(&file.path, e))?;
    Ok(Compression::detect(&head) != Compression::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, bytes: u64) -> InputFile {
        InputFile {
            path: PathBuf::from(name),
            bytes,
            documents: None,
        }
    }

    /// Bytes of a divisible file each task reads, by task.
    fn bytes_per_task(plan: &[Vec<SpillUnit>]) -> Vec<u64> {
        plan.iter()
            .map(|units| {
                units
                    .iter()
                    .map(|u| u.bytes.map_or(0, |[a, b]| b - a))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn plain_files_are_cut_into_equal_contiguous_ranges() {
        let files = [file("a", 1000), file("b", 10), file("c", 3001)];
        let works: Vec<(u64, bool)> = files.iter().map(|f| (f.bytes, true)).collect();
        for tasks in 1..=9 {
            let plan = split_work(&files, &works, tasks);
            let per_task = bytes_per_task(&plan);
            assert_eq!(per_task.iter().sum::<u64>(), 4011, "{tasks} tasks");
            let (lo, hi) = (
                per_task.iter().min().unwrap(),
                per_task.iter().max().unwrap(),
            );
            assert!(hi - lo <= 1, "{tasks} tasks: {per_task:?}");
            // In input order, the ranges of each file tile it.
            let units: Vec<&SpillUnit> = plan.iter().flatten().collect();
            for f in &files {
                let ranges: Vec<[u64; 2]> = units
                    .iter()
                    .filter(|u| u.path == f.path)
                    .map(|u| u.bytes.unwrap())
                    .collect();
                assert_eq!(ranges.first().unwrap()[0], 0);
                assert_eq!(ranges.last().unwrap()[1], f.bytes);
                assert!(ranges.windows(2).all(|w| w[0][1] == w[1][0]));
            }
            let order: Vec<&str> = units.iter().map(|u| u.path.to_str().unwrap()).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(order, sorted, "input order");
        }
    }

    #[test]
    fn compressed_files_go_whole_and_balanced() {
        // Twelve equal months on four tasks: three each, in order.
        let files: Vec<InputFile> = (1..=12).map(|m| file(&format!("RC_{m:02}"), 100)).collect();
        let works: Vec<(u64, bool)> = files.iter().map(|_| (1000, false)).collect();
        let plan = split_work(&files, &works, 4);
        let names: Vec<Vec<&str>> = plan
            .iter()
            .map(|units| units.iter().map(|u| u.path.to_str().unwrap()).collect())
            .collect();
        assert_eq!(names[0], ["RC_01", "RC_02", "RC_03"]);
        assert_eq!(names[3], ["RC_10", "RC_11", "RC_12"]);
        assert!(plan.iter().flatten().all(|u| u.bytes.is_none()));
        // Five tasks: no task holds more than the three the best split needs.
        let plan = split_work(&files, &works, 5);
        assert!(plan.iter().all(|units| units.len() <= 3), "{plan:?}");
        assert_eq!(plan.iter().map(Vec::len).sum::<usize>(), 12);
        // More tasks than files: every file once, the other tasks idle.
        let plan = split_work(&files[..2], &works[..2], 5);
        assert_eq!(plan.iter().map(Vec::len).sum::<usize>(), 2);
    }

    #[test]
    fn empty_inputs_go_to_the_first_task() {
        let files = [file("a", 0), file("b", 0)];
        let plan = split_work(&files, &[(0, false), (0, false)], 3);
        assert_eq!(plan[0].len(), 2);
        assert!(plan[1].is_empty() && plan[2].is_empty());
    }
}
