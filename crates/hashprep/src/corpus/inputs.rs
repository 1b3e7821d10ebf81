//! Expanding command-line inputs (files, globs, directories) and sharing them among tasks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, InputProblem, Result};

/// One input file with its on-disk size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// The path as expanded from the command line.
    pub path: PathBuf,
    /// Size in bytes on disk (compressed size for compressed inputs).
    pub bytes: u64,
    /// Only the documents `[start, end)` of the file (see [`InputRange`](super::InputRange)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<[usize; 2]>,
}

/// Expands files, globs and directories (recursively, hidden entries skipped) into a list of
/// files in a stable order: arguments in the order given, each expansion sorted, no duplicates.
///
/// # Errors
/// A path that does not exist, a glob that matches nothing, or an unreadable directory.
pub(crate) fn expand_inputs(args: &[PathBuf]) -> Result<Vec<InputFile>> {
    let mut out: Vec<InputFile> = Vec::new();
    let mut push = |path: PathBuf| -> Result<()> {
        if out.iter().all(|f| f.path != path) {
            let bytes = std::fs::metadata(&path)
                .map_err(|e| Error::io(&path, e))?
                .len();
            out.push(InputFile {
                path,
                bytes,
                documents: None,
            });
        }
        Ok(())
    };
    for arg in args {
        let text = arg.to_string_lossy();
        if text.contains(['*', '?', '[']) && !arg.exists() {
            let mut matches: Vec<PathBuf> = glob::glob(&text)
                .map_err(|e| Error::Input {
                    path: arg.clone(),
                    problem: InputProblem::BadPattern(e.to_string()),
                })?
                .filter_map(std::result::Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if matches.is_empty() {
                return Err(Error::Input {
                    path: arg.clone(),
                    problem: InputProblem::NoMatch,
                });
            }
            matches.sort();
            for path in matches {
                push(path)?;
            }
        } else if arg.is_dir() {
            let mut files = Vec::new();
            walk(arg, &mut files)?;
            files.sort();
            for path in files {
                push(path)?;
            }
        } else if arg.is_file() {
            push(arg.clone())?;
        } else {
            return Err(Error::Input {
                path: arg.clone(),
                problem: InputProblem::Missing,
            });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// The files of `ranges`: each a file (its range kept) or, without a range, anything
/// [`expand_inputs`] expands.
///
/// # Errors
/// As [`expand_inputs`]; a range on a directory or glob, or one with `start > end`.
pub(crate) fn expand_ranges(ranges: &[super::InputRange]) -> Result<Vec<InputFile>> {
    let mut out = Vec::new();
    for range in ranges {
        let mut files = expand_inputs(std::slice::from_ref(&range.path))?;
        if let Some([start, end]) = range.documents {
            if !range.path.is_file() {
                return Err(Error::Input {
                    path: range.path.clone(),
                    problem: InputProblem::RangeOfMany { start, end },
                });
            }
            if start > end {
                return Err(Error::Input {
                    path: range.path.clone(),
                    problem: InputProblem::NotARange { start, end },
                });
            }
            files[0].documents = range.documents;
        }
        out.extend(files);
    }
    Ok(out)
}

/// Task `index` of `count` tasks exists.
///
/// # Errors
/// It does not (0-based, below `count`, which is at least 1).
pub(crate) fn check_task(count: usize, index: usize) -> Result<()> {
    if count == 0 || index >= count {
        return Err(Error::setting(
            "task_index",
            format!("{index} must be below `num_tasks` {count} (and `num_tasks` at least 1)"),
        ));
    }
    Ok(())
}

/// The inputs of task `index` out of `count`: file `i` of the expanded list goes to task
/// `i % count`. Every file belongs to exactly one task, whatever machine runs it.
///
/// # Errors
/// `count` is zero or `index >= count`.
pub(crate) fn partition_for_task(
    files: Vec<InputFile>,
    count: usize,
    index: usize,
) -> Result<Vec<InputFile>> {
    check_task(count, index)?;
    Ok(files
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % count == index)
        .map(|(_, f)| f)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_partition_the_inputs() {
        let files: Vec<InputFile> = (0..7)
            .map(|i| InputFile {
                path: PathBuf::from(format!("f{i}")),
                bytes: i,
                documents: None,
            })
            .collect();
        let mut seen: Vec<PathBuf> = Vec::new();
        for index in 0..3 {
            seen.extend(
                partition_for_task(files.clone(), 3, index)
                    .unwrap()
                    .into_iter()
                    .map(|f| f.path),
            );
        }
        seen.sort();
        let mut all: Vec<PathBuf> = files.into_iter().map(|f| f.path).collect();
        all.sort();
        assert_eq!(seen, all);
        assert!(partition_for_task(Vec::new(), 2, 2).is_err());
    }
}
