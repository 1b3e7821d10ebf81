//! The resume journal of an unfinished tokenize run: `journal.jsonl` in the output directory.
//! Its first line names the run; each later line records a shard that is complete on disk and
//! how far into the example stream it reaches. A rerun with the same settings continues after
//! the last shard it can verify; the journal is removed once the manifest is written.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ShardInfo, Totals};
use crate::error::{Error, Result};

/// File name of the journal inside an output directory.
pub(crate) const JOURNAL_FILE: &str = "journal.jsonl";

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    kind: String,
    run: String,
}

/// One completed shard and the stream position after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct JournalEntry {
    /// The shard.
    pub(crate) shard: ShardInfo,
    /// Items of the example stream (examples and skipped records) consumed up to its end.
    pub(crate) items: u64,
    /// Totals up to its end.
    pub(crate) totals: Totals,
}

/// An open journal, appended to as shards complete.
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Starts a fresh journal for run fingerprint `run`.
    ///
    /// # Errors
    /// I/O failure.
    pub(crate) fn create(dir: &Path, run: &str) -> Result<Self> {
        let path = dir.join(JOURNAL_FILE);
        let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let header = Header {
            kind: "hashprep-journal".into(),
            run: run.into(),
        };
        writeln!(
            file,
            "{}",
            serde_json::to_string(&header).expect("serializable")
        )
        .map_err(|e| Error::io(&path, e))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, file })
    }

    /// Reads the journal of `dir`: `None` if there is none, else its run fingerprint and the
    /// entries whose lines are whole (a line cut by a kill is ignored).
    ///
    /// # Errors
    /// The file exists but cannot be read, or its header is not a journal's.
    pub(crate) fn read(dir: &Path) -> Result<Option<(String, Vec<JournalEntry>)>> {
        let path = dir.join(JOURNAL_FILE);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut lines = BufReader::new(file).lines();
        let header: Header = match lines.next() {
            Some(Ok(line)) => serde_json::from_str(&line)
                .map_err(|e| Error::corrupt(&path, format!("bad header: {e}")))?,
            _ => return Ok(Some((String::new(), Vec::new()))),
        };
        let entries = lines
            .map_while(|line| line.ok().and_then(|l| serde_json::from_str(&l).ok()))
            .collect();
        Ok(Some((header.run, entries)))
    }

    /// Rewrites the journal with exactly `entries` (used when resuming drops unverifiable ones).
    ///
    /// # Errors
    /// I/O failure.
    pub(crate) fn rewrite(dir: &Path, run: &str, entries: &[JournalEntry]) -> Result<Self> {
        let mut journal = Self::create(dir, run)?;
        for entry in entries {
            journal.append(entry)?;
        }
        Ok(journal)
    }

    /// Records a completed shard durably.
    ///
    /// # Errors
    /// I/O failure.
    pub(crate) fn append(&mut self, entry: &JournalEntry) -> Result<()> {
        let line = serde_json::to_string(entry).expect("serializable");
        writeln!(self.file, "{line}").map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Deletes the journal (the run is complete).
    ///
    /// # Errors
    /// I/O failure.
    pub(crate) fn remove(self) -> Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}
