//! End-to-end tests of `hashprep`: they run the binary and the library on real Wikitext-103
//! text and on generated fixtures.

// Building fixture text line by line reads best with format!.
#![allow(clippy::format_collect)]

mod bad_input;
mod common;
mod formats;
mod fuzz;
mod inspect;
mod integrity;
mod loader;
mod python;
mod reddit;
mod reddit_tasks;
mod resume;
mod shared_outputs;
mod tables;
mod tasks;
mod tokenizer_files;
mod wikitext;
