//! What a run, an evaluation and an export share: the device, the loaders over the config's
//! routing tables, and the model with each table-routed layer wired to its routes.

use std::collections::BTreeMap;
use std::path::Path;

use hashprep::{Loader, TableSet};
use tch::{nn, Device};

use super::SparseLayers;
use crate::config::{
    ExpertMatmulSetting, LayerId, Placement, Precision, RunConfig, SparseKind, Stack,
};
use crate::error::{Error, Result};
use crate::model::{ExpertMatmul, LanguageModel, TableRouting};

/// libtorch's random generator is one per process: runs that seed it and draw from it
/// (initialization, dropout) take this lock, so two runs in one process (tests, sweeps on
/// threads) cannot shift each other's random streams.
pub(crate) fn torch_rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Refuses `data`, tokenized by `found`, unless `expected` (what `reference` was tokenized or
/// trained with) is the same tokenizer: ids of another vocabulary give a meaningless loss.
///
/// # Errors
/// The fingerprints differ; the message names both.
pub(crate) fn same_tokenizer(
    data: &Path,
    found: &str,
    expected: &str,
    reference: &str,
) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(Error::OtherTokenizer {
        data: data.to_owned(),
        found: found.to_owned(),
        expected: expected.to_owned(),
        reference: reference.to_owned(),
    })
}

/// A loader over `data` with the config's batch shape and tables. Training shuffles with the
/// run's seed; evaluation keeps the last partial batch.
///
/// # Errors
/// The data or a table cannot be used (named by file).
pub(crate) fn open_loader(data: &Path, config: &RunConfig, tables: &TableSet) -> Result<Loader> {
    let loader_config = config.loader_config(Placement::SINGLE)?;
    Ok(Loader::with_tables(data, tables, loader_config)?)
}

/// For each table-routed layer (1-based), its expert count and the handles of its routes in the
/// batches of `loader`.
///
/// # Errors
/// A table whose kind, layers, hash count, expert count or top-k does not fit its layer.
pub(crate) fn resolve_routing(
    config: &RunConfig,
    loader: &Loader,
) -> Result<BTreeMap<LayerId, TableRouting>> {
    Ok(config
        .routing(loader)?
        .into_iter()
        .map(|layer| {
            let routing = TableRouting {
                experts: layer.experts,
                top_k: layer.top_k,
                routes: layer.routes,
            };
            (
                LayerId {
                    stack: layer.stack,
                    at: layer.at,
                },
                routing,
            )
        })
        .collect())
}

/// The model of `config` in a new `VarStore` on `device`, initialized from the run's seed.
///
/// # Errors
/// The model would not fit this machine's memory ([`check_model_fits`]).
pub(crate) fn build_model(
    config: &RunConfig,
    vocab: usize,
    routing: &BTreeMap<LayerId, TableRouting>,
    device: Device,
) -> Result<(nn::VarStore, LanguageModel)> {
    check_model_fits(config, vocab, routing, device)?;
    tch::manual_seed(config.train.optimization.seed as i64);
    // Drawn on the CPU, then moved: a seed gives the same weights on every device (a GPU's
    // generator draws other numbers), so CPU and CUDA runs can be compared step by step.
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut model = LanguageModel::new(&vs.root(), &config.model, vocab as i64, &|layer| {
        routing[&layer].clone()
    });
    vs.set_device(device);
    model.move_buffers(device);
    // Initialized in float32 (the same draws in both formats), then rounded.
    if config.train.optimization.precision == Precision::Bf16 {
        vs.bfloat16();
    }
    let setting = config.train.runtime.expert_matmul;
    let grouped = setting == ExpertMatmulSetting::Grouped
        || (setting == ExpertMatmulSetting::Auto && device.is_cuda());
    model.set_expert_matmul(if grouped {
        ExpertMatmul::Grouped
    } else {
        ExpertMatmul::Loop
    });
    Ok((vs, model))
}

/// About how many parameters the model of `config` has (within a few percent: biases and
/// norms are left out).
pub(crate) fn estimated_parameters(
    config: &RunConfig,
    vocab: usize,
    routing: &BTreeMap<LayerId, TableRouting>,
) -> u64 {
    let m = &config.model;
    let (d, ff) = (m.d_model.unsigned_abs(), m.d_ff.unsigned_abs());
    let mut total = (vocab as u64).saturating_mul(d) + (m.context as u64).saturating_mul(d);
    if !m.tie_embeddings {
        total = total.saturating_add((vocab as u64).saturating_mul(d));
    }
    let sparse = sparse_layers(config, routing);
    let encoder = m.encoder_positions().unwrap_or(0);
    total = total.saturating_add((encoder as u64).saturating_mul(d));
    let layers = (1..=m.encoder_layers)
        .map(LayerId::encoder)
        .chain((1..=m.layers).map(LayerId::decoder));
    for layer in layers {
        let experts = sparse.get(&layer).map_or(1, |&(_, k)| k.max(1) as u64);
        let width = config
            .sparse_at(layer)
            .and_then(|s| s.d_ff)
            .map_or(ff, i64::unsigned_abs);
        let ffn = experts.saturating_mul(2u64.saturating_mul(d).saturating_mul(width));
        // Self-attention; a sequence-to-sequence decoder layer's cross-attention too.
        let cross = encoder > 0 && layer.stack == Stack::Decoder;
        let attention = 4u64.saturating_mul(d).saturating_mul(d) * if cross { 2 } else { 1 };
        total = total.saturating_add(attention).saturating_add(ffn);
    }
    total
}

/// Refuses a model that cannot fit this machine's memory before libtorch tries to allocate
/// it (a failed allocation would end the process). Weights are drawn on the CPU first
/// ([`build_model`]), 4 bytes each; a CPU run also holds their gradients and Adam's two
/// moments (16 bytes per parameter in all).
///
/// # Errors
/// The estimate is above the machine's memory; the message names the model's settings.
pub(crate) fn check_model_fits(
    config: &RunConfig,
    vocab: usize,
    routing: &BTreeMap<LayerId, TableRouting>,
    device: Device,
) -> Result<()> {
    let Some(memory) = machine_memory() else {
        return Ok(());
    };
    let parameters = estimated_parameters(config, vocab, routing);
    let per_parameter = if device.is_cuda() { 4 } else { 16 };
    let needed = parameters.saturating_mul(per_parameter);
    if needed <= memory {
        return Ok(());
    }
    let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
    Err(Error::ModelTooLarge {
        parameters,
        vocab,
        needed_gib: gib(needed),
        memory_gib: gib(memory),
        on_gpu: device.is_cuda(),
    })
}

/// This machine's memory (`MemTotal` of /proc/meminfo), where the system says.
fn machine_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Experts of each sparse layer with counts (1-based layer -> (kind, K)).
pub(crate) fn sparse_layers(
    config: &RunConfig,
    routing: &BTreeMap<LayerId, TableRouting>,
) -> SparseLayers {
    config
        .model
        .sparse
        .iter()
        .filter(|s| s.kind != SparseKind::Dense)
        .map(|s| {
            let experts = routing
                .get(&s.layer())
                .map_or(s.experts.unwrap_or(0) as usize, |r| r.experts as usize);
            (s.layer(), (s.kind, experts))
        })
        .collect()
}

/// Number of parameters in `vs`.
pub(crate) fn parameter_count(vs: &nn::VarStore) -> u64 {
    vs.variables().values().map(|t| t.numel() as u64).sum()
}
