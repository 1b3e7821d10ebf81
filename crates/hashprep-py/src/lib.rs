//! The Python package `hashprep` (module `hashprep._hashprep`): the stages of the Rust library
//! one call away, arrays handed to numpy without a copy. Keyword arguments mirror the CLI's
//! options (dashes become underscores, same defaults); the pure-Python side lives in
//! `python/hashprep/`.

// Doc comments are the Python docstrings: they name arguments as Python users write them.
// PyO3 extracts every argument into an owned value.
#![allow(clippy::doc_markdown, clippy::needless_pass_by_value)]

mod assignment;
mod config;
mod data;
mod errors;
mod loader;
mod tables;

use pyo3::prelude::*;

#[pymodule]
fn _hashprep(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("Error", m.py().get_type::<errors::Error>())?;
    m.add_function(wrap_pyfunction!(errors::_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(data::tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(data::spill_reddit, m)?)?;
    m.add_function(wrap_pyfunction!(data::inspect, m)?)?;
    m.add_function(wrap_pyfunction!(data::train_tokenizer, m)?)?;
    m.add_class::<data::Dataset>()?;
    m.add_function(wrap_pyfunction!(tables::build_table, m)?)?;
    m.add_class::<tables::Table>()?;
    m.add_function(wrap_pyfunction!(assignment::balanced_assignment, m)?)?;
    m.add_class::<loader::Loader>()?;
    m.add_class::<loader::Batches>()?;
    m.add_class::<loader::Batch>()?;
    m.add_class::<loader::Route>()?;
    m.add_class::<loader::RouteInfo>()?;
    m.add_class::<config::RunConfig>()?;
    m.add_class::<config::DataConfig>()?;
    m.add_class::<config::ModelConfig>()?;
    m.add_class::<config::SparseLayer>()?;
    m.add_class::<config::TrainConfig>()?;
    Ok(())
}
