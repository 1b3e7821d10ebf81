//! Reddit (pushshift dumps): comment and submission records, and the reconstruction of each
//! comment's thread into a dialogue example (context turns + response).
//!
//! This is the in-memory core; the spill-partitioned pipeline over dumps larger than RAM and
//! the `--format reddit` wiring build on it.

mod filters;
pub(crate) mod plan;
mod rebuild;
mod records;
mod shared_spill;
mod spill;
mod spill_record;
mod threads;

pub use filters::RedditFilter;
pub use plan::SpillUnit;
pub(crate) use rebuild::{Rebuilding, Rebuilt, Spill};
pub use shared_spill::SpillTask;
pub(crate) use shared_spill::{check_removable, spill_task, task_lock_file, FinishedSpill};
pub(crate) use spill::{partition, Skipped};
