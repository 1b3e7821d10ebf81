//! # hashtrain
//!
//! Trains decoder-only language models whose FFN at chosen layers is a **Hash Layer** (routes
//! from precomputed token -> expert tables), MultiHash, Switch or Token-Switch, on the Arrow
//! shards that `hashprep tokenize` writes. Built on tch (libtorch); CPU by default, CUDA when
//! asked.
//!
//! The loader (`hashprep::Loader`) groups each batch's positions by expert on worker threads;
//! each table-routed layer holds the `hashprep::RouteHandle`s of its routes, and the model only
//! gathers, runs each expert on a contiguous slice and scatters back.
// libtorch counts sizes and indices in i64; tensor code converts at every call.
#![allow(clippy::cast_possible_wrap, clippy::many_single_char_names)]

mod device;
mod error;
pub mod model;
pub mod sweep;
pub mod train;

/// The run config (types, defaults, checks, overrides): the crate `hashtrain-config`, which
/// the Python trainer reads too.
pub use hashtrain_config as config;

pub use config::{RunConfig, SparseKind};
pub use device::{parse_device, DeviceReport, GpuReport};
pub use error::{Error, Result};
pub use train::{run, RunOptions, RunSummary};
