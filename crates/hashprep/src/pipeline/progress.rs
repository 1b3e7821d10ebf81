//! Progress bars on stderr: shown only on a terminal, unless turned off, and only when the
//! `progress` feature is on (without it every bar is silent).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::corpus::ProgressFeed;

/// A byte-based progress bar with documents/s and tokens/s in its message.
pub(crate) struct Progress {
    bar: bar::Bar,
    started: Instant,
    phases: Option<[&'static str; 2]>,
    in_second_phase: AtomicBool,
}

impl Progress {
    /// A bar over `total_bytes` of input; hidden when `enabled` is false or stderr is no terminal.
    pub(crate) fn new(total_bytes: u64, enabled: bool, label: &str) -> Self {
        Self {
            bar: bar::Bar::new(total_bytes, enabled, label),
            started: Instant::now(),
            phases: None,
            in_second_phase: AtomicBool::new(false),
        }
    }

    /// Labels the bar by phase: the first label now, the second once the feed says so.
    #[must_use]
    pub(crate) fn with_phases(mut self, phases: Option<[&'static str; 2]>) -> Self {
        if let Some([first, _]) = phases {
            self.bar.set_prefix(first);
        }
        self.phases = phases;
        self
    }

    /// Updates the bar from the feed and the writer's totals.
    pub(crate) fn update_from(&self, feed: &ProgressFeed, documents: u64, tokens: u64) {
        if let Some([_, second]) = self.phases {
            if feed.second_phase.load(Ordering::Relaxed)
                && !self.in_second_phase.swap(true, Ordering::Relaxed)
            {
                self.bar.set_prefix(second);
            }
        }
        self.update(feed.bytes.load(Ordering::Relaxed), documents, tokens);
    }

    /// Updates the position (input bytes read) and the rates.
    pub(crate) fn update(&self, bytes: u64, documents: u64, tokens: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar.update(bytes, || {
            format!(
                "{documents} docs ({:.0}/s), {tokens} tokens ({:.2}M/s)",
                documents as f64 / secs,
                tokens as f64 / secs / 1e6
            )
        });
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        self.bar.finish();
    }
}

#[cfg(feature = "progress")]
mod bar {
    use std::io::IsTerminal;
    use std::time::Duration;

    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    pub(super) struct Bar(pub(super) ProgressBar);

    impl Bar {
        pub(super) fn new(total_bytes: u64, enabled: bool, label: &str) -> Self {
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
            Self(bar)
        }

        pub(super) fn set_prefix(&self, prefix: &'static str) {
            self.0.set_prefix(prefix);
        }

        pub(super) fn update(&self, bytes: u64, message: impl FnOnce() -> String) {
            self.0.set_position(bytes);
            self.0.set_message(message());
        }

        pub(super) fn finish(&self) {
            self.0.finish_and_clear();
        }
    }
}

#[cfg(not(feature = "progress"))]
mod bar {
    pub(super) struct Bar;

    // The same methods as the real bar's, doing nothing.
    #[allow(clippy::unused_self)]
    impl Bar {
        pub(super) fn new(_total_bytes: u64, _enabled: bool, _label: &str) -> Self {
            Self
        }

        pub(super) fn set_prefix(&self, _prefix: &'static str) {}

        pub(super) fn update(&self, _bytes: u64, _message: impl FnOnce() -> String) {}

        pub(super) fn finish(&self) {}
    }
}

#[cfg(all(test, feature = "progress"))]
mod tests {
    use super::*;

    #[test]
    fn the_bar_is_labelled_by_phase() {
        let feed = ProgressFeed::default();
        let progress = Progress::new(100, false, "tokenize").with_phases(Some(["one", "two"]));
        progress.update_from(&feed, 1, 2);
        assert_eq!(progress.bar.0.prefix(), "one");
        feed.second_phase.store(true, Ordering::Relaxed);
        feed.bytes.store(100, Ordering::Relaxed);
        progress.update_from(&feed, 3, 4);
        assert_eq!(
            (progress.bar.0.prefix().as_str(), progress.bar.0.position()),
            ("two", 100)
        );
    }
}
