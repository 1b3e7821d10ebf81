//! Progress bars on stderr: shown only on a terminal and unless `--no-progress`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What the reading side reports to the bar: on-disk bytes read and, for formats read in two
/// phases (Reddit: partition, then rebuild), whether the second phase has begun.
#[derive(Debug, Clone, Default)]
pub struct ProgressFeed {
    /// On-disk input bytes read so far.
    pub bytes: Arc<AtomicU64>,
    /// Set when the second phase begins.
    pub second_phase: Arc<AtomicBool>,
}

/// A byte-based progress bar with documents/s and tokens/s in its message.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    phases: Option<[&'static str; 2]>,
}

impl Progress {
    /// A bar over `total_bytes` of input; hidden when `enabled` is false or stderr is no terminal.
    pub fn new(total_bytes: u64, enabled: bool, label: &str) -> Self {
        let bar = ProgressBar::new(total_bytes);
        if enabled && std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        } else {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, ETA {eta}) {msg}",
        )
        .expect("valid template");
        bar.set_style(style);
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(250));
        Self {
            bar,
            started: Instant::now(),
            phases: None,
        }
    }

    /// Labels the bar by phase: the first label now, the second once the feed says so.
    #[must_use]
    pub fn with_phases(mut self, phases: Option<[&'static str; 2]>) -> Self {
        if let Some([first, _]) = phases {
            self.bar.set_prefix(first);
        }
        self.phases = phases;
        self
    }

    /// Updates the bar from the feed and the writer's totals.
    pub fn update_from(&self, feed: &ProgressFeed, documents: u64, tokens: u64) {
        if let Some([_, second]) = self.phases {
            if feed.second_phase.load(Ordering::Relaxed) && self.bar.prefix() != second {
                self.bar.set_prefix(second);
            }
        }
        self.update(feed.bytes.load(Ordering::Relaxed), documents, tokens);
    }

    /// Updates the position (input bytes read) and the rates.
    pub fn update(&self, bytes: u64, documents: u64, tokens: u64) {
        self.bar.set_position(bytes);
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "{documents} docs ({:.0}/s), {tokens} tokens ({:.2}M/s)",
            documents as f64 / secs,
            tokens as f64 / secs / 1e6
        ));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_is_labelled_by_phase() {
        let feed = ProgressFeed::default();
        let progress = Progress::new(100, false, "tokenize").with_phases(Some(["one", "two"]));
        progress.update_from(&feed, 1, 2);
        assert_eq!(progress.bar.prefix(), "one");
        feed.second_phase.store(true, Ordering::Relaxed);
        feed.bytes.store(100, Ordering::Relaxed);
        progress.update_from(&feed, 3, 4);
        assert_eq!(
            (progress.bar.prefix().as_str(), progress.bar.position()),
            ("two", 100)
        );
    }
}
