//! Stages wired together: `tokenize` (with resume and task partitioning), `merge`, `inspect`,
//! `export`, tokenizer training over the same readers, and progress reporting.

mod build_table;
mod export;
mod inspect;
mod journal;
mod merge;
mod output_dir;
mod progress;
mod stream;
mod tokenize;

pub use build_table::{
    build_table_files, compare_tables, BuildTableRequest, StreamReport, TableComparison,
    TableReport,
};
pub use export::export_parquet;
pub use inspect::{inspect, Inspection, TopToken};
pub use merge::merge;
pub use progress::{Progress, ProgressFeed};
pub use stream::{ExampleStream, Item, Items, OnError, RedditStream};
pub use tokenize::{
    shard_file_name, skipped_by_reason, tokenize, RunOptions, TokenizeSettings, TokenizeSummary,
    TOKENIZER_FILE,
};
