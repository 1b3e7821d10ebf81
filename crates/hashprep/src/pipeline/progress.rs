//! Progress bars on stderr: shown only on a terminal and unless `--no-progress`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-based progress bar with documents/s and tokens/s in its message.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
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
        }
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
