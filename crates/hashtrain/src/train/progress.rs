//! The training progress bar on stderr: shown only when asked (a terminal) and only when the
//! `progress` feature is on; without it every call does nothing.

/// Steps done out of the run's total, with the last loss and throughput.
pub(super) struct StepBar(bar::Bar);

impl StepBar {
    /// A bar over `total` steps, `done` of them already (a resumed run); hidden unless `show`.
    pub(super) fn new(total: u64, done: u64, show: bool) -> Self {
        Self(bar::Bar::new(total, done, show))
    }

    /// One more step.
    pub(super) fn inc(&self) {
        self.0.inc();
    }

    /// The text after the bar.
    pub(super) fn set_message(&self, message: impl FnOnce() -> String) {
        self.0.set_message(message);
    }

    /// Removes the bar.
    pub(super) fn finish(&self) {
        self.0.finish();
    }
}

#[cfg(feature = "progress")]
mod bar {
    use indicatif::{ProgressBar, ProgressStyle};

    pub(super) struct Bar(ProgressBar);

    impl Bar {
        pub(super) fn new(total: u64, done: u64, show: bool) -> Self {
            if !show {
                return Self(ProgressBar::hidden());
            }
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("step {pos}/{len} [{bar:30}] {msg} | ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_position(done);
            bar.reset_eta();
            Self(bar)
        }

        pub(super) fn inc(&self) {
            self.0.inc(1);
        }

        pub(super) fn set_message(&self, message: impl FnOnce() -> String) {
            if !self.0.is_hidden() {
                self.0.set_message(message());
            }
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
        pub(super) fn new(_total: u64, _done: u64, _show: bool) -> Self {
            Self
        }

        pub(super) fn inc(&self) {}

        pub(super) fn set_message(&self, _message: impl FnOnce() -> String) {}

        pub(super) fn finish(&self) {}
    }
}
