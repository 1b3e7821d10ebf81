//! # hashprep
//!
//! Data preparation for Mixture-of-Experts language models with **Hash Layers**
//! (Roller et al., 2021). Four stages, each one call, each usable alone:
//!
//! 1. **Tokenize** a corpus ([`Format`]: Wikitext-103, cc100, plain text, JSON Lines, Reddit
//!    dumps; plain or compressed) with a [`TextTokenizer`] (GPT-2's BPE built in, any
//!    `HuggingFace` `tokenizer.json`, or one trained by [`train_tokenizer`]) into memory-mapped
//!    Arrow shards and token counts: [`tokenize`] (parallel, deterministic, resumable), then
//!    [`merge`], [`inspect`] and [`export_parquet`]. A [`Manifest`] describes the output.
//! 2. **Build a table** mapping every token id to its expert(s): [`build_table_files`] with a
//!    [`TableSpec`] ([`Method`]: balanced, random, clustered, dispersed, bigram, previous,
//!    position, oracle; several hashes or layers), with [`BalanceStats`]. A [`RoutingTable`]
//!    is the file read back.
//! 3. **Load batches**: a [`Loader`] packs the shards into `[B, T]` batches, attaches each
//!    position's expert and groups positions by expert on the host ([`Route`]); the layer that
//!    consumes a route finds it by its [`RouteHandle`].
//! 4. Train: the `hashtrain` crate (tch) consumes the batches. BASE layers' routing, a balanced
//!    assignment of a batch's tokens to experts, is [`balanced_assignment`], shared by both
//!    trainers.
//!
//! Everything reports failures as [`Error`], which names the file, line, shard or setting.
//! [`util`] holds the helpers other crates of the project share; [`exit`] (feature `cli`) how its
//! command-line programs report errors.
//!
//! ```
//! # fn main() -> hashprep::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let corpus = dir.path().join("corpus.txt");
//! # std::fs::write(&corpus, "the cat sat on the mat\nthe dog sat on the log\n".repeat(20)).unwrap();
//! # let out = dir.path().join("shards");
//! # let table_file = dir.path().join("balanced.arrow");
//! use hashprep::{BuildTableRequest, Format, Loader, LoaderConfig, Method, RunOptions, TableSpec, TokenizeSettings};
//!
//! // Corpus -> shards + counts.
//! let settings = TokenizeSettings::new(Format::Text { blank_line_separated: false }, "gpt2");
//! let summary = hashprep::tokenize(&settings, &[corpus], &out, &RunOptions::default())?;
//! assert_eq!(summary.totals.documents, 40);
//!
//! // Counts -> a balanced token -> expert table over 4 experts.
//! let request = BuildTableRequest::from_data(TableSpec::new(Method::Balanced, 4), &out, &table_file);
//! let report = hashprep::build_table_files(&request)?;
//! let stats = report.streams[0].stats.as_ref().expect("balanced tables have statistics");
//! assert!(stats.max_over_mean < 1.5);
//!
//! // Shards + table -> batches whose positions are grouped by expert.
//! let mut loader = Loader::new(&out, &[table_file.clone()], LoaderConfig::new(2, 8, 0))?;
//! let route = loader.route_handles(&table_file, 0)?[0];
//! for batch in loader.take(3, 1, 2) {
//!     let batch = batch?;
//!     let routed = batch.route(route);
//!     assert_eq!(routed.offsets.len(), 4 + 1);
//!     assert_eq!(routed.order.len(), batch.input_ids.len());
//! }
//! # Ok(())
//! # }
//! ```

mod assignment;
mod corpus;
mod counts;
mod encode;
mod error;
#[cfg(feature = "cli")]
pub mod exit;
mod integrity;
mod loader;
mod npy;
mod pipeline;
#[cfg(feature = "plot")]
pub mod plot;
mod shard;
mod table;
mod tokenize;
pub mod util;

pub use assignment::balanced_assignment;
pub use corpus::{
    read_documents, Documents, Example, Format, InputFile, InputRange, OnError, RedditFilter,
    RedditOptions, Source, SpillTask, SpillUnit,
};
pub use counts::TokenCounts;
pub use error::{
    error_message, CheckpointProblem, EmptyProblem, Error, InputProblem, LoaderProblem, Location,
    MergeProblem, OutputProblem, PlotProblem, Result, SkipReason, SpillProblem, TableProblem,
    TokenizerProblem,
};
pub use integrity::fingerprint_bytes;
pub use loader::{
    bucket_pairs, bucket_positions, check_prefetch, Batch, Batches, Loader, LoaderConfig,
    LoaderState, Prefetcher, Route, RouteHandle, RouteInfo, TableSet, TokenDataset,
    MAX_BATCH_POSITIONS, MAX_PREFETCH, MAX_WORKERS,
};
pub use pipeline::{
    build_table_files, compare_tables, export_megatron, export_parquet, inspect, measure_table,
    merge, remove_merged_spill, spill_reddit, tokenize, tokenize_ranges, train_tokenizer_files,
    BuildTableRequest, Inspection, MegatronDtype, MegatronExport, RedditPhase, RunOptions,
    SpillSummary, StreamReport, TableComparison, TableReport, TokenizeSettings, TokenizeSummary,
    TokenizerChoice, TopToken,
};
pub use shard::{
    DocTokens, Manifest, OutputLock, ShardInfo, ShardReader, ShardWriter, TokenWidth,
    TokenizerInfo, Totals,
};
pub use table::{
    bigram_expert, BalanceStats, CheckpointInsert, ExportTarget, IdDtype, Method, RoutingTable,
    Rule, TableExport, TableFormat, TableMeta, TableSpec, TidKeys,
};
pub use tokenize::{
    train_tokenizer, Encoder, EosSource, SpecialTokens, TextTokenizer, TokenizerKind, TrainOptions,
    GPT2_EOS,
};
