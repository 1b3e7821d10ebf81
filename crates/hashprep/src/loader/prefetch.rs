//! Batches built ahead by worker threads through a bounded queue, delivered in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Batch, Core, Loader};
use crate::error::{Error, Result};

/// Batches built ahead by worker threads, delivered in order; the loader's position advances
/// as batches are taken. See [`Batches`].
pub struct Prefetcher<'a> {
    loader: &'a mut Loader,
    batches: Batches,
}

impl<'a> Prefetcher<'a> {
    pub(super) fn start(
        loader: &'a mut Loader,
        steps: u64,
        workers: usize,
        prefetch: usize,
    ) -> Self {
        let batches = Batches::start(&loader.core, loader.next_batch, steps, workers, prefetch);
        Self { loader, batches }
    }
}

impl Iterator for Prefetcher<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let built = self.batches.next()?;
        self.loader.next_batch = self.batches.next_index();
        Some(built)
    }
}

/// Batches `start..start + steps` built ahead by worker threads, delivered in order, owning
/// what it needs (for holders that cannot borrow the loader, such as other languages'
/// iterators). A batch that cannot be built (an id outside the vocabulary, a worker that
/// panicked) arrives as its error, in its place, and ends the sequence.
pub struct Batches {
    next: u64,
    end: u64,
    receiver: crossbeam_channel::Receiver<(u64, Result<Batch>)>,
    credits: crossbeam_channel::Sender<()>,
    pending: HashMap<u64, Result<Batch>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicU64>,
}

impl Batches {
    pub(super) fn start(
        core: &Arc<Core>,
        start: u64,
        steps: u64,
        workers: usize,
        prefetch: usize,
    ) -> Self {
        let end = start + steps;
        let next = Arc::new(AtomicU64::new(start));
        let stop = Arc::new(AtomicU64::new(0));
        let (sender, receiver) = crossbeam_channel::unbounded();
        let (credits, credit_rx) = crossbeam_channel::bounded::<()>(prefetch + workers);
        for _ in 0..prefetch + workers {
            let _ = credits.send(());
        }
        let handles = (0..workers)
            .map(|w| {
                let (core, next, stop, sender, credit_rx) = (
                    core.clone(),
                    next.clone(),
                    stop.clone(),
                    sender.clone(),
                    credit_rx.clone(),
                );
                std::thread::Builder::new()
                    .name(format!("hashprep-loader-{w}"))
                    .spawn(move || {
                        while credit_rx.recv().is_ok() && stop.load(Ordering::Relaxed) == 0 {
                            let index = next.fetch_add(1, Ordering::Relaxed);
                            if index >= end || sender.send((index, core.build(index))).is_err() {
                                return;
                            }
                        }
                    })
                    .expect("spawn a loader worker")
            })
            .collect();
        Self {
            next: start,
            end,
            receiver,
            credits,
            pending: HashMap::new(),
            workers: handles,
            stop,
        }
    }
}

impl Core {
    /// Builds batch `index`, turning a panic into an error so that every index a worker takes
    /// is answered (a lost batch would leave the consumer waiting forever).
    fn build(&self, index: u64) -> Result<Batch> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.batch(index))).unwrap_or_else(
            |panic| {
                Err(Error::Internal(format!(
                    "a loader worker panicked building batch {index}: {}",
                    crate::util::panic_message(&*panic)
                )))
            },
        )
    }
}

impl Batches {
    /// The index of the next batch it delivers.
    pub fn next_index(&self) -> u64 {
        self.next
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let index = self.next;
        if index >= self.end {
            return None;
        }
        let built = loop {
            if let Some(built) = self.pending.remove(&index) {
                break built;
            }
            match self.receiver.recv() {
                Ok((i, built)) => {
                    self.pending.insert(i, built);
                }
                Err(_) => {
                    break Err(Error::Internal(format!(
                        "the loader's workers stopped before batch {index}"
                    )))
                }
            }
        };
        if built.is_err() {
            self.end = index; // nothing after a failed batch
        } else {
            self.next += 1;
            let _ = self.credits.send(());
        }
        Some(built)
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::Relaxed);
        for _ in &self.workers {
            let _ = self.credits.send(());
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}
