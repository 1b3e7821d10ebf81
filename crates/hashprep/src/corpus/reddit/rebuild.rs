//! Phase 2 ahead of its reader: the spill partitions are rebuilt into examples a few at a time
//! (one per core, and one more) on a pool of their own, while the examples of the partitions
//! before are encoded; besides those, one rebuilt partition waits for the reader, so memory
//! stays bounded by partitions.
//!
//! The pool is the rebuild's own, not rayon's global one: a reader that itself runs on the
//! global pool (the `tokenizers` trainer reads its texts through `par_bridge`, every worker
//! waiting on the iterator) would otherwise wait for partitions that no free worker rebuilds.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::filters::RedditFilter;
use super::spill::partition_examples;
use super::threads::{ThreadDialogues, ThreadStats};
use crate::error::{Error, Result};
use crate::tokenize::TextTokenizer;

/// One partition rebuilt: its examples and what happened to its comments.
pub(crate) type Rebuilt = Result<(ThreadDialogues, ThreadStats)>;

/// The partitions' examples, in partition order; nothing after the first error.
pub(crate) struct Rebuilding {
    results: Option<Receiver<Rebuilt>>,
    worker: Option<JoinHandle<()>>,
}

impl Rebuilding {
    /// Starts rebuilding `parts` (each the spill files of one partition, in task order). A
    /// run's own spill is removed file by file once read (its pages freed, and never written
    /// back to disk, while the run goes on); a shared spill (`Spill::Shared`) stays for the
    /// other tasks and reruns. With a tokenizer, each partition's texts are encoded there too,
    /// while they are fresh in the cache of the core that unescaped them.
    ///
    /// # Errors
    /// The background thread cannot be started.
    pub(crate) fn start(
        parts: Vec<Vec<PathBuf>>,
        spill: Spill,
        max_turns: usize,
        filter: RedditFilter,
        tokenizer: Option<Arc<TextTokenizer>>,
    ) -> Result<Self> {
        let threads = rayon::current_num_threads().max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("hashprep-rebuild-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the Reddit rebuild pool: {e}")))?;
        // One partition per core and one more, so a core that finishes has the next one to
        // start while the oldest is handed on.
        let window = threads + 1;
        let (results_tx, results) = sync_channel(1);
        let filter = Arc::new(filter);
        let worker = std::thread::Builder::new()
            .name("hashprep-rebuild".into())
            .spawn(move || {
                // Partitions are rebuilt on the pool, `window` at a time in any order (no
                // core waits for the slowest of a group), and handed on in order.
                let mut in_flight = VecDeque::with_capacity(window);
                let mut parts = parts.into_iter();
                loop {
                    while in_flight.len() < window {
                        let Some(paths) = parts.next() else { break };
                        let (filter, tokenizer) = (filter.clone(), tokenizer.clone());
                        in_flight.push_back(spawn_rebuild(&pool, paths, move |paths| {
                            rebuild(paths, spill, max_turns, &filter, tokenizer.as_deref())
                        }));
                    }
                    let Some(next) = in_flight.pop_front() else {
                        return;
                    };
                    let rebuilt = next.wait();
                    let failed = rebuilt.is_err();
                    if results_tx.send(rebuilt).is_err() || failed {
                        // The reader stopped, or this is the last result: no spill file is
                        // read once the stream is gone.
                        for rest in in_flight {
                            drop(rest.wait());
                        }
                        return;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the Reddit rebuild thread: {e}")))?;
        Ok(Self {
            results: Some(results),
            worker: Some(worker),
        })
    }
}

/// Whose spill files a rebuild reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spill {
    /// The run's own: each file is removed once read.
    Own,
    /// A spill directory shared by tasks: nothing is removed.
    Shared,
}

/// A partition being rebuilt on the pool.
struct InFlight {
    paths: Vec<PathBuf>,
    done: Receiver<std::thread::Result<Rebuilt>>,
}

impl InFlight {
    /// Its examples; a panic while rebuilding it goes on here.
    fn wait(self) -> Rebuilt {
        match self.done.recv() {
            Ok(Ok(rebuilt)) => rebuilt,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(Error::Internal(format!(
                "{}: the rebuild of this partition stopped",
                self.paths
                    .first()
                    .map_or_else(String::new, |p| p.display().to_string())
            ))),
        }
    }
}

/// Runs `rebuild` on `paths` on `pool`; a panic there is kept for [`InFlight::wait`].
fn spawn_rebuild(
    pool: &rayon::ThreadPool,
    paths: Vec<PathBuf>,
    rebuild: impl FnOnce(&[PathBuf]) -> Rebuilt + Send + 'static,
) -> InFlight {
    let (done_tx, done) = sync_channel(1);
    let task_paths = paths.clone();
    pool.spawn(move || {
        let rebuilt = std::panic::catch_unwind(AssertUnwindSafe(|| rebuild(&task_paths)));
        let _ = done_tx.send(rebuilt);
    });
    InFlight { paths, done }
}

/// One partition's examples, encoded when there is a tokenizer; a run's own spill files are
/// removed.
fn rebuild(
    paths: &[PathBuf],
    spill: Spill,
    max_turns: usize,
    filter: &RedditFilter,
    tokenizer: Option<&TextTokenizer>,
) -> Rebuilt {
    let rebuilt = partition_examples(paths, max_turns, filter);
    if spill == Spill::Own {
        // The run removes the whole directory at its end and reports a failure to remove it
        // there.
        for path in paths {
            let _ = std::fs::remove_file(path);
        }
    }
    let (mut dialogues, stats) = rebuilt?;
    if let Some(tokenizer) = tokenizer {
        dialogues.texts.encode(tokenizer)?;
    }
    Ok((dialogues, stats))
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
    use crate::corpus::reddit::plan::SpillUnit;
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
        let units = SpillUnit::whole_files(&[dump]);
        partition(&units, &dir.join("spill"), 5, (0, 1), OnError::Fail, None)
            .unwrap()
            .0
    }

    fn ids(rebuilt: &Rebuilt) -> Vec<String> {
        let (dialogues, _) = rebuilt.as_ref().unwrap();
        dialogues.resolved().into_iter().map(|d| d.id).collect()
    }

    /// Each spill file as a partition of its own.
    fn one_file_each(parts: &[PathBuf]) -> Vec<Vec<PathBuf>> {
        parts.iter().map(|p| vec![p.clone()]).collect()
    }

    #[test]
    fn partitions_come_in_order_and_their_files_are_removed_unless_shared() {
        let tmp = tempfile::tempdir().unwrap();
        let parts = spilled(tmp.path());
        let expected: Vec<Vec<String>> = parts
            .iter()
            .map(|p| {
                let rebuilt =
                    partition_examples(std::slice::from_ref(p), 7, &RedditFilter::default());
                ids(&rebuilt)
            })
            .collect();
        assert_eq!(expected.iter().map(Vec::len).sum::<usize>(), 40);
        for spill in [Spill::Shared, Spill::Own] {
            let rebuilt: Vec<Vec<String>> = Rebuilding::start(
                one_file_each(&parts),
                spill,
                7,
                RedditFilter::default(),
                None,
            )
            .unwrap()
            .map(|r| ids(&r))
            .collect();
            assert_eq!(rebuilt, expected);
            assert_eq!(parts.iter().all(|p| p.exists()), spill == Spill::Shared);
        }
    }

    #[test]
    fn a_partition_of_several_files_reads_them_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let parts = spilled(tmp.path());
        let each: Vec<String> = parts
            .iter()
            .flat_map(|p| {
                ids(&partition_examples(
                    std::slice::from_ref(p),
                    7,
                    &RedditFilter::default(),
                ))
            })
            .collect();
        let together = partition_examples(&parts, 7, &RedditFilter::default());
        assert_eq!(ids(&together), each);
    }

    #[test]
    fn a_panic_while_rebuilding_goes_on_in_the_thread_that_waits() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let in_flight = spawn_rebuild(&pool, vec![PathBuf::from("p")], |_| panic!("rebuild bug"));
        let panic = std::panic::catch_unwind(AssertUnwindSafe(|| in_flight.wait())).unwrap_err();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"rebuild bug"));
    }

    #[test]
    fn nothing_comes_after_a_damaged_partition() {
        let tmp = tempfile::tempdir().unwrap();
        let parts = spilled(tmp.path());
        let damaged = std::fs::read(&parts[2]).unwrap();
        std::fs::write(&parts[2], &damaged[..damaged.len() - 3]).unwrap();
        let parts = one_file_each(&parts);
        let rebuilt: Vec<Rebuilt> =
            Rebuilding::start(parts, Spill::Own, 7, RedditFilter::default(), None)
                .unwrap()
                .collect();
        assert_eq!(rebuilt.len(), 3);
        assert!(rebuilt[..2].iter().all(Result::is_ok));
        let error = rebuilt[2].as_ref().unwrap_err().to_string();
        assert!(error.contains("part-00002.spill"), "{error}");
    }
}
