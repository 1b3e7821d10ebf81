//! Reddit (pushshift dumps): comment and submission records, and the reconstruction of each
//! comment's thread into a dialogue example (context turns + response).
//!
//! This is the in-memory core; the spill-partitioned pipeline over dumps larger than RAM and
//! the `--format reddit` wiring build on it.

mod filters;
mod records;
mod spill;
mod threads;

pub use filters::{RedditFilter, MAX_CHARS, MAX_DEPTH, MIN_CHARS};
pub use records::{is_deleted, unescape_html, Comment, Submission};
pub use spill::{all_examples, partition, partition_examples, Skipped};
pub use threads::{thread_examples, DialogueExample, ThreadStats};
