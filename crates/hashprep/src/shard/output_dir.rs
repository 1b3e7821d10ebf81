//! The state of an output directory before a run: complete (manifest), unfinished (journal),
//! empty, or foreign. Decides between "nothing to do", "resume", "start" and "refuse".

use std::path::Path;

use super::journal::{Journal, JournalEntry, JOURNAL_FILE};
use super::TOKENIZER_FILE;
use super::{Manifest, ShardReader, MANIFEST_FILE};
use crate::counts::COUNTS_FILE;
use crate::error::{Error, OutputProblem, Result};

/// What a run finds in its output directory.
pub(crate) enum OutputState {
    /// A complete output of the same run: nothing to do.
    Complete(Box<Manifest>),
    /// Continue after these verified shards (none for a fresh start).
    Resume {
        journal: Journal,
        entries: Vec<JournalEntry>,
    },
}

/// The names a tokenize run writes (exact names, so the case-sensitive suffixes are right).
#[allow(clippy::case_sensitive_file_extension_comparisons)]
fn is_ours(name: &str) -> bool {
    name == MANIFEST_FILE
        || name == JOURNAL_FILE
        || name == COUNTS_FILE
        || name == TOKENIZER_FILE
        || name.ends_with(".tmp")
        || (name.starts_with("shard-") && name.ends_with(".arrow"))
}

fn list_ours(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = entry
            .map_err(|e| Error::io(dir, e))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if is_ours(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Removes the files a tokenize run writes (other files are left alone), except `keep`.
fn remove_ours(dir: &Path, keep: &[String]) -> Result<()> {
    for name in list_ours(dir)? {
        if !keep.contains(&name) {
            let path = dir.join(&name);
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Prepares `dir` (which exists, locked by the caller) for run `run`; see [`OutputState`].
pub(crate) fn prepare_output(dir: &Path, run: &str, force: bool) -> Result<OutputState> {
    let refuse = |what: &'static str| {
        Err(Error::Output {
            dir: dir.to_owned(),
            problem: OutputProblem::HoldsOther(what),
        })
    };
    if dir.join(MANIFEST_FILE).exists() {
        let manifest = Manifest::read(dir)?;
        if manifest
            .config
            .get("run_fingerprint")
            .and_then(|v| v.as_str())
            == Some(run)
        {
            return Ok(OutputState::Complete(Box::new(manifest)));
        }
        if !force {
            return refuse("a complete tokenize output");
        }
        remove_ours(dir, &[])?;
    }
    match Journal::read(dir)? {
        Some((journal_run, entries)) if journal_run == run => {
            let kept = verified_prefix(dir, entries);
            let keep: Vec<String> = kept.iter().map(|e| e.shard.file.clone()).collect();
            remove_ours(dir, &[keep.as_slice(), &[JOURNAL_FILE.to_owned()]].concat())?;
            let journal = Journal::rewrite(dir, run, &kept)?;
            Ok(OutputState::Resume {
                journal,
                entries: kept,
            })
        }
        Some(_) if !force => refuse("an unfinished tokenize run"),
        None if !force && !list_ours(dir)?.is_empty() => {
            refuse("tokenize files without a journal or manifest")
        }
        _ => {
            remove_ours(dir, &[])?;
            Ok(OutputState::Resume {
                journal: Journal::create(dir, run)?,
                entries: Vec::new(),
            })
        }
    }
}

/// The journal entries whose shards are on disk with the recorded size and checksum, up to the
/// first that is not.
fn verified_prefix(dir: &Path, entries: Vec<JournalEntry>) -> Vec<JournalEntry> {
    entries
        .into_iter()
        .take_while(|entry| {
            let path = dir.join(&entry.shard.file);
            std::fs::metadata(&path).is_ok_and(|m| m.len() == entry.shard.bytes)
                && ShardReader::open(&path, Some(&entry.shard.checksum)).is_ok()
        })
        .collect()
}
