//! The example stream over all input files of a run, with the bad-record policy applied.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use super::{Dialogue, Example, Format, InputFile, Records, SharedTexts};
use crate::error::{Error, InputProblem, Result, SkipReason};
use crate::tokenize::TextTokenizer;

use super::reddit::{Rebuilding, Rebuilt, Skipped, Spill};
use super::OnError;

/// What the reading side reports to the bar: on-disk bytes read and, for formats read in two
/// phases (Reddit: partition, then rebuild), whether the second phase has begun.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProgressFeed {
    /// On-disk input bytes read so far.
    pub(crate) bytes: Arc<AtomicU64>,
    /// Set when the second phase begins.
    pub(crate) second_phase: Arc<AtomicBool>,
}

/// One element of the stream: an example, or a record that was skipped (and why).
#[derive(Debug)]
pub(crate) enum Item {
    /// A usable example.
    Example(Example),
    /// A dialogue example whose turns are texts shared with other examples (Reddit).
    Dialogue(Arc<SharedTexts>, Dialogue),
    /// A record skipped under the policy (empty records are always skipped).
    Skipped(SkipReason),
    /// Something worth counting that loses nothing (a Reddit context cut at a missing parent).
    Notice(&'static str),
}

/// A stream of items, whatever produced it.
pub(crate) type Items = Box<dyn Iterator<Item = Result<Item>> + Send>;

/// Examples of several files in order; `Err` items are fatal and end the stream.
pub(crate) struct ExampleStream {
    files: std::vec::IntoIter<InputFile>,
    format: Format,
    on_error: OnError,
    progress: Option<Arc<AtomicU64>>,
    current: Option<(PathBuf, Records)>,
    /// Records the current file has produced so far: a file with none is an empty input.
    records_in_file: u64,
    failed: bool,
}

impl ExampleStream {
    /// A stream over `files` (each whole or a range of its documents); `progress` is advanced
    /// by on-disk bytes read.
    pub(crate) fn new(
        files: Vec<InputFile>,
        format: Format,
        on_error: OnError,
        progress: Option<Arc<AtomicU64>>,
    ) -> Self {
        Self {
            files: files.into_iter(),
            format,
            on_error,
            progress,
            current: None,
            records_in_file: 0,
            failed: false,
        }
    }
}

impl Iterator for ExampleStream {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            let Some((path, records)) = self.current.as_mut() else {
                let file = self.files.next()?;
                let path = file.path;
                match self.format.open(&path, self.progress.clone()) {
                    Ok(records) => {
                        let records = match file.documents {
                            Some(range) => in_range(records, &path, range),
                            None => records,
                        };
                        self.current = Some((path, records));
                        self.records_in_file = 0;
                    }
                    Err(e) => {
                        self.failed = true;
                        return Some(Err(e));
                    }
                }
                continue;
            };
            let next = records.next();
            if next.is_some() {
                self.records_in_file += 1;
            }
            match next {
                None => {
                    let path = path.clone();
                    self.current = None;
                    if self.records_in_file == 0 {
                        if self.on_error == OnError::Skip {
                            return Some(Ok(Item::Skipped(SkipReason::Empty)));
                        }
                        self.failed = true;
                        return Some(Err(Error::Input {
                            path: path.clone(),
                            problem: InputProblem::Empty,
                        }));
                    }
                }
                Some(Ok(example)) => return Some(Ok(Item::Example(example))),
                Some(Err(Error::BadRecord {
                    reason: SkipReason::Empty,
                    ..
                })) => return Some(Ok(Item::Skipped(SkipReason::Empty))),
                Some(Err(Error::BadRecord { reason, .. })) if self.on_error == OnError::Skip => {
                    return Some(Ok(Item::Skipped(reason)))
                }
                Some(Err(Error::CorruptStream { .. })) if self.on_error == OnError::Skip => {
                    self.current = None;
                    return Some(Ok(Item::Skipped(SkipReason::CorruptStream)));
                }
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The records `[start, end)` of a file's `records`: every record counts, a bad one included.
/// A file that ends before `end` is an error naming the range and what the file holds.
fn in_range(mut records: Records, path: &Path, [start, end]: [usize; 2]) -> Records {
    let path = path.to_path_buf();
    let mut seen = 0;
    Box::new(std::iter::from_fn(move || {
        while seen < end {
            let Some(record) = records.next() else {
                let held = std::mem::replace(&mut seen, end); // said once
                return Some(Err(Error::Input {
                    path: path.clone(),
                    problem: InputProblem::RangeBeyond { start, end, held },
                }));
            };
            seen += 1;
            if seen > start {
                return Some(record);
            }
        }
        None
    }))
}

/// The example stream of a Reddit run. Phase 1 partitions every record of every file by thread
/// into spill files under `spill_dir` (keeping this task's threads); phase 2 rebuilds the
/// partitions a few at a time, in parallel, ahead of the reader on a background thread, and
/// streams their examples in partition order.
pub(crate) struct RedditStream {
    files: Vec<PathBuf>,
    spill_dir: PathBuf,
    options: crate::corpus::RedditOptions,
    task: (usize, usize),
    on_error: OnError,
    progress: Option<ProgressFeed>,
    tokenizer: Option<Arc<TextTokenizer>>,
    phase: RedditPhase,
    buffer: std::collections::VecDeque<Result<Item>>,
    /// The examples of the partition being streamed, after the buffer.
    dialogues: Option<(Arc<SharedTexts>, std::vec::IntoIter<Dialogue>)>,
}

impl RedditStream {
    /// A stream over `files` for task `task.0` of `task.1`.
    pub(crate) fn new(
        files: Vec<PathBuf>,
        spill_dir: PathBuf,
        options: crate::corpus::RedditOptions,
        task: (usize, usize),
        on_error: OnError,
    ) -> Self {
        Self {
            files,
            spill_dir,
            options,
            task,
            on_error,
            progress: None,
            tokenizer: None,
            phase: RedditPhase::Partition,
            buffer: std::collections::VecDeque::new(),
            dialogues: None,
        }
    }

    /// Reports the on-disk bytes read in phase 1, and the start of phase 2, to `progress`.
    #[must_use]
    pub(crate) fn with_progress(mut self, progress: ProgressFeed) -> Self {
        self.progress = Some(progress);
        self
    }

    /// A stream over the partitions of a shared spill (phase 2 of a run on many machines),
    /// first reporting the records phase 1 `skipped`.
    pub(crate) fn from_spill(
        partitions: Vec<Vec<PathBuf>>,
        skipped: Skipped,
        options: crate::corpus::RedditOptions,
    ) -> Self {
        Self {
            phase: RedditPhase::Spilled(partitions, skipped),
            ..Self::new(Vec::new(), PathBuf::new(), options, (0, 1), OnError::Fail)
        }
    }

    /// Encodes each partition's texts with `tokenizer` where it is rebuilt.
    #[must_use]
    pub(crate) fn encoding_with(mut self, tokenizer: Option<Arc<TextTokenizer>>) -> Self {
        self.tokenizer = tokenizer;
        self
    }

    fn skips(&mut self, reason: SkipReason, n: u64) {
        self.buffer
            .extend((0..n).map(|_| Ok(Item::Skipped(reason))));
    }

    /// Refills the buffer; false when everything has been streamed.
    fn refill(&mut self) -> bool {
        match &mut self.phase {
            RedditPhase::Partition => self.partition(),
            RedditPhase::Spilled(..) => {
                let RedditPhase::Spilled(parts, skipped) =
                    std::mem::replace(&mut self.phase, RedditPhase::Done)
                else {
                    unreachable!("matched above")
                };
                self.rebuild(Ok((parts, skipped)), Spill::Shared);
            }
            RedditPhase::Rebuild(rebuilding) => match rebuilding.next() {
                Some(rebuilt) => self.push_rebuilt(rebuilt),
                None => self.phase = RedditPhase::Done,
            },
            RedditPhase::Done => return false,
        }
        true
    }

    /// Phase 1, then the start of phase 2.
    fn partition(&mut self) {
        let partitions = self.options.partitions_for(
            self.files
                .iter()
                .filter_map(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
                .sum(),
        );
        let partitioned = crate::corpus::reddit::partition(
            &super::reddit::SpillUnit::whole_files(&self.files),
            &self.spill_dir,
            partitions,
            self.task,
            self.on_error,
            self.progress.as_ref().map(|p| &p.bytes),
        );
        let parts = partitioned.map(|(parts, skipped)| {
            let one_file_each = parts.into_iter().map(|p| vec![p]).collect();
            (one_file_each, skipped)
        });
        self.rebuild(parts, Spill::Own);
    }

    /// Phase 2 over `spilled` partitions, after the records phase 1 skipped.
    fn rebuild(&mut self, spilled: Result<(Vec<Vec<PathBuf>>, Skipped)>, spill: Spill) {
        let started = spilled.and_then(|(parts, skipped)| {
            if let Some(progress) = &self.progress {
                progress
                    .second_phase
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            for reason in SkipReason::ALL {
                self.skips(reason, skipped.get(&reason).copied().unwrap_or(0));
            }
            Rebuilding::start(
                parts,
                spill,
                self.options.max_context_turns,
                self.options.filter.clone(),
                self.tokenizer.clone(),
            )
        });
        match started {
            Ok(rebuilding) => self.phase = RedditPhase::Rebuild(rebuilding),
            Err(e) => {
                self.phase = RedditPhase::Done;
                self.buffer.push_back(Err(e));
            }
        }
    }

    /// The items of one rebuilt partition: its skips, notices and examples.
    fn push_rebuilt(&mut self, rebuilt: Rebuilt) {
        let (dialogues, stats) = match rebuilt {
            Ok(rebuilt) => rebuilt,
            Err(e) => {
                self.phase = RedditPhase::Done;
                self.buffer.push_back(Err(e));
                return;
            }
        };
        self.skips(SkipReason::Deleted, stats.deleted);
        self.skips(SkipReason::Duplicate, stats.duplicates);
        self.skips(SkipReason::Cycle, stats.cycles);
        for (reason, n) in &stats.filtered {
            self.skips(*reason, *n);
        }
        self.buffer
            .extend((0..stats.orphans).map(|_| Ok(Item::Notice("orphan_context"))));
        self.dialogues = Some((Arc::new(dialogues.texts), dialogues.dialogues.into_iter()));
    }
}

/// Where a Reddit stream is.
enum RedditPhase {
    /// Phase 1 has not run yet.
    Partition,
    /// Phase 1 ran elsewhere: the partitions of a shared spill, and what it skipped.
    Spilled(Vec<Vec<PathBuf>>, Skipped),
    /// Phase 2: partitions rebuilt on a background thread.
    Rebuild(Rebuilding),
    /// Everything streamed, or an error ended the stream.
    Done,
}

impl Iterator for RedditStream {
    type Item = Result<Item>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.buffer.pop_front() {
                if item.is_err() {
                    self.phase = RedditPhase::Done;
                }
                return Some(item);
            }
            if let Some((texts, dialogues)) = &mut self.dialogues {
                match dialogues.next() {
                    Some(dialogue) => return Some(Ok(Item::Dialogue(texts.clone(), dialogue))),
                    None => self.dialogues = None,
                }
            }
            if !self.refill() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::RedditOptions;
    use std::sync::atomic::Ordering;

    #[test]
    fn reddit_stream_reports_bytes_then_the_second_phase() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("RC");
        std::fs::write(
            &dump,
            "{\"id\":\"a\",\"parent_id\":\"t3_s\",\"link_id\":\"t3_s\",\"body\":\"hello\"}\n",
        )
        .unwrap();
        let feed = ProgressFeed::default();
        let mut stream = RedditStream::new(
            vec![dump],
            dir.path().join("spill"),
            RedditOptions::default(),
            (0, 1),
            OnError::Fail,
        )
        .with_progress(feed.clone());
        assert!(!feed.second_phase.load(Ordering::Relaxed));
        let first = stream.find_map(|item| match item.unwrap() {
            Item::Dialogue(texts, d) => Some(texts.text(d.response).to_owned()),
            _ => None,
        });
        assert_eq!(first.as_deref(), Some("hello"));
        assert!(feed.second_phase.load(Ordering::Relaxed));
        assert!(feed.bytes.load(Ordering::Relaxed) > 0);
    }
}
