//! Stages wired together: `tokenize` (with resume and task partitioning, over the `encode`
//! engine), `merge`, `inspect`, `export`, `build-table`, tokenizer training over the same
//! readers, and progress reporting.

mod build_table;
mod export;
mod inspect;
mod megatron;
mod merge;
mod progress;
mod reddit_spill;
mod tokenize;
mod train_tokenizer;

pub use build_table::{
    build_table_files, compare_tables, measure_table, BuildTableRequest, StreamReport,
    TableComparison, TableReport,
};
pub use export::export_parquet;
pub use inspect::{inspect, Inspection, TopToken};
pub use megatron::{export_megatron, MegatronDtype, MegatronExport};
pub use merge::merge;
pub use reddit_spill::{remove_merged_spill, spill_reddit, RedditPhase, SpillSummary};
pub use tokenize::{tokenize, tokenize_ranges, RunOptions, TokenizeSettings, TokenizeSummary};
pub use train_tokenizer::{train_tokenizer_files, TokenizerChoice};
