//! Phase 2 ahead of its reader: the spill partitions are rebuilt into examples a group at a time
//! (one partition per core, in parallel) on a background thread, while the examples of the
//! groups before are encoded; at most one group waits, so memory stays bounded by partitions.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use super::filters::RedditFilter;
use super::spill::partition_examples;
use super::threads::{ThreadDialogues, ThreadStats};
use crate::error::{Error, Result};

/// One partition rebuilt: its examples and what happened to its comments.
pub(crate) type Rebuilt = Result<(ThreadDialogues, ThreadStats)>;

/// The partitions' examples, in partition order; nothing after the first error.
pub(crate) struct Rebuilding {
    results: Option<Receiver<Rebuilt>>,
    worker: Option<JoinHandle<()>>,
}

impl Rebuilding {
    /// Starts rebuilding `parts`; each spill file is removed once read (its pages freed, and
    /// never written back to disk, while the run goes on).
    ///
    /// # Errors
    /// The background thread cannot be started.
    pub(crate) fn start(
        parts: Vec<PathBuf>,
        max_turns: usize,
        filter: RedditFilter,
    ) -> Result<Self> {
        use rayon::prelude::*;
        let group = rayon::current_num_threads().max(1);
        let (results_tx, results) = sync_channel(group);
        let worker = std::thread::Builder::new()
            .name("hashprep-rebuild".into())
            .spawn(move || {
                for paths in parts.chunks(group) {
                    let rebuilt: Vec<Rebuilt> = paths
                        .par_iter()
                        .map(|path| {
                            let examples = partition_examples(path, max_turns, &filter);
                            // The run removes the whole directory at its end and reports a
                            // failure to remove it there.
                            let _ = std::fs::remove_file(path);
                            examples
                        })
                        .collect();
                    for result in rebuilt {
                        let failed = result.is_err();
                        if results_tx.send(result).is_err() || failed {
                            return; // the reader stopped, or this is the last result
                        }
                    }
                }
            })
            .map_err(|e| Error::BadInput(format!("cannot start the Reddit rebuild thread: {e}")))?;
        Ok(Self {
            results: Some(results),
            worker: Some(worker),
        })
    }
}

impl Iterator for Rebuilding {
    type Item = Rebuilt;

    fn next(&mut self) -> Option<Rebuilt> {
        if let Ok(rebuilt) = self.results.as_ref()?.recv() {
            return Some(rebuilt);
        }
        // The thread is done: everything was sent, or it panicked, which must not pass for
        // the end of the examples.
        self.results = None;
        if let Some(Err(panic)) = self.worker.take().map(JoinHandle::join) {
            std::panic::resume_unwind(panic);
        }
        None
    }
}

impl Drop for Rebuilding {
    /// Stops the thread (its next send fails) and waits for it, so no spill file is still read
    /// once the stream is gone.
    fn drop(&mut self) {
        self.results = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::reddit::partition;
    use crate::corpus::OnError;

    /// Five spill partitions of 40 one-comment threads, under `dir`.
    fn spilled(dir: &std::path::Path) -> Vec<PathBuf> {
        let dump = dir.join("RC_2020-01");
        let lines: String = (0..40)
            .map(|i| {
                format!(
                    r#"{{"id":"c{i}","parent_id":"t3_s{i}","link_id":"t3_s{i}","body":"b {i}"}}"#
                ) + "\n"
            })
            .collect();
        std::fs::write(&dump, lines).unwrap();
        partition(&[dump], &dir.join("spill"), 5, (0, 1), OnError::Fail, None)
            .unwrap()
            .0
    }

    fn ids(rebuilt: &Rebuilt) -> Vec<String> {
        let (dialogues, _) = rebuilt.as_ref().unwrap();
        dialogues.resolved().into_iter().map(|d| d.id).collect()
    }

    #[test]
    fn partitions_come_in_order_and_their_files_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let parts = spilled(tmp.path());
        let expected: Vec<Vec<String>> = parts
            .iter()
            .map(|p| ids(&partition_examples(p, 7, &RedditFilter::default())))
            .collect();
        assert_eq!(expected.iter().map(Vec::len).sum::<usize>(), 40);
        let rebuilt: Vec<Vec<String>> =
            Rebuilding::start(parts.clone(), 7, RedditFilter::default())
                .unwrap()
                .map(|r| ids(&r))
                .collect();
        assert_eq!(rebuilt, expected);
        assert!(parts.iter().all(|p| !p.exists()));
    }

    #[test]
    fn nothing_comes_after_a_damaged_partition() {
        let tmp = tempfile::tempdir().unwrap();
        let parts = spilled(tmp.path());
        let damaged = std::fs::read(&parts[2]).unwrap();
        std::fs::write(&parts[2], &damaged[..damaged.len() - 3]).unwrap();
        let rebuilt: Vec<Rebuilt> = Rebuilding::start(parts, 7, RedditFilter::default())
            .unwrap()
            .collect();
        assert_eq!(rebuilt.len(), 3);
        assert!(rebuilt[..2].iter().all(Result::is_ok));
        let error = rebuilt[2].as_ref().unwrap_err().to_string();
        assert!(error.contains("part-00002.spill"), "{error}");
    }
}
