//! # hashprep
//!
//! Data preparation for Mixture-of-Experts language models with **Hash Layers**
//! (Roller et al., 2021): raw corpora become memory-mapped Arrow shards plus token counts,
//! from which token -> expert tables are built for training.
//!
//! The stages, each usable alone:
//! - [`corpus`]: readers for Wikitext-103, cc100, plain text and JSONL, plain or compressed
//!   (zstd with a 2 GiB window, xz, bzip2, gzip — detected by magic bytes);
//! - [`tokenize`]: `HuggingFace` `tokenizer.json` files, GPT-2's BPE built in (offline), and
//!   training of byte-level BPE and word-level vocabularies;
//! - [`shard`]: Arrow IPC shards written atomically and read back by memory map;
//! - [`counts`]: token frequencies, mergeable across tasks;
//! - [`pipeline`]: `tokenize` (parallel, deterministic, resumable), `merge`, `inspect`, `export`.
//!
//! ```no_run
//! use hashprep::corpus::Format;
//! use hashprep::pipeline::{tokenize, RunOptions, TokenizeSettings};
//!
//! let settings = TokenizeSettings::new(Format::Wikitext103, "gpt2");
//! let summary = tokenize(&settings, &["wiki.valid.tokens".into()], "out/wiki".as_ref(), &RunOptions::default())?;
//! println!("{} documents, {} tokens", summary.totals.documents, summary.totals.tokens);
//! # Ok::<(), hashprep::Error>(())
//! ```

pub mod corpus;
pub mod counts;
mod error;
pub mod fsutil;
pub mod loader;
pub mod npy;
pub mod pipeline;
pub mod shard;
pub mod table;
pub mod tokenize;

pub use error::{error_message, Error, Location, Result, SkipReason};
