//! Reddit (pushshift dumps): comment and submission records, and the reconstruction of each
//! comment's thread into a dialogue example (context turns + response).
//!
//! This is the in-memory core; the spill-partitioned pipeline over dumps larger than RAM and
//! the `--format reddit` wiring build on it.

mod filters;
mod rebuild;
mod records;
mod spill;
mod spill_record;
mod threads;

pub use filters::RedditFilter;
pub(crate) use rebuild::{Rebuilding, Rebuilt};
pub(crate) use spill::partition;
