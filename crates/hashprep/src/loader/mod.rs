//! The prefetching loader: batches of `B x T` ids that arrive with, for every routing spec, the
//! expert of each position already grouped by expert (`order`, `offsets`), so a trainer does no
//! routing work on the device. Framework-free; `hashtrain` wraps batches into tensors.
//!
//! Batch `i` is a pure function of (data, tables, config, `i`): worker threads build batches
//! ahead through a bounded queue, and the sequence is the same for any number of workers and
//! after [`Loader::resume`]. Data-parallel ranks take every `world_size`-th sample of an epoch;
//! with `expert_parallel` E, each route also counts the tokens per expert of the same batch of
//! the other ranks of its expert-parallel group.

mod dataset;
mod prefetch;
mod routing;
mod sampler;
mod seq2seq;
mod tables;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use dataset::TokenDataset;
pub use prefetch::{Batches, Prefetcher};
pub use routing::{bucket_pairs, bucket_positions, Route};
use sampler::{permutation, PackedEpoch};
pub use tables::{RouteHandle, RouteInfo, TableSet};

use crate::error::{Error, LoaderProblem, Result, TableProblem};
use crate::integrity::fingerprint_bytes;
use crate::table::RoutingTable;
use routing::RowContext;
use sampler::SALT_DOCS;

/// The most batches a loader builds ahead (the `prefetch` of [`Loader::take`]): far more
/// than keeps any device busy, and a bound on what a mistyped value can ask of memory.
pub const MAX_PREFETCH: usize = 1024;
/// The most worker threads a loader starts (the `workers` of [`Loader::take`]).
pub const MAX_WORKERS: usize = 256;
/// The most positions (`batch_size * seq_len`) in one batch: 2^28, gigabytes per batch.
pub const MAX_BATCH_POSITIONS: u64 = 1 << 28;

/// Checks the `workers` and `prefetch` a caller gives [`Loader::take`] against their caps
/// ([`MAX_WORKERS`], [`MAX_PREFETCH`]). `take` and `batches` clamp to 1..=cap (0 counts as
/// 1); programs that take the values from their users check them first, so that a typo is
/// refused by name rather than clamped.
///
/// # Errors
/// Either is above its cap; the message names the setting and the limit.
pub fn check_prefetch(workers: usize, prefetch: usize) -> Result<()> {
    for (name, value, cap) in [
        ("workers", workers, MAX_WORKERS),
        ("prefetch", prefetch, MAX_PREFETCH),
    ] {
        if value > cap {
            return Err(Error::setting(
                name,
                format!("{value} is above the limit of {cap}"),
            ));
        }
    }
    Ok(())
}

/// How batches are made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoaderConfig {
    /// Rows per batch (B).
    pub batch_size: usize,
    /// Positions per row (T).
    pub seq_len: usize,
    /// Seed of the shuffles.
    pub seed: u64,
    /// Concatenate documents into windows of `T + 1` ids (language modelling); otherwise one
    /// example per row, padded, with the loss on the response only.
    pub packing: bool,
    /// Drop the last partial batch of an epoch (otherwise it is shorter).
    pub drop_last: bool,
    /// This data-parallel rank.
    pub rank: usize,
    /// Number of data-parallel ranks.
    pub world_size: usize,
    /// Size E of the expert-parallel groups (consecutive ranks `g*E .. g*E+E-1`; divides
    /// `world_size`): every route carries the tokens per expert of each rank of this rank's
    /// group ([`Route::peer_counts`]), the split sizes of an all-to-all known on the host.
    #[serde(
        default = "crate::util::one",
        skip_serializing_if = "crate::util::is_one"
    )]
    pub expert_parallel: usize,
    /// Id written into padding positions.
    pub pad_id: u32,
    /// Sequence-to-sequence batches (dialogue data, per example): each example's context goes
    /// to the encoder, its last `encoder_len` ids ([`Batch::encoder`]), and its response to the
    /// decoder's `seq_len` positions. Requires `packing` off and no expert parallelism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_len: Option<usize>,
}

impl LoaderConfig {
    /// Packing, no drop, a single rank, pad id 0.
    pub fn new(batch_size: usize, seq_len: usize, seed: u64) -> Self {
        Self {
            batch_size,
            seq_len,
            seed,
            packing: true,
            drop_last: false,
            rank: 0,
            world_size: 1,
            expert_parallel: 1,
            pad_id: 0,
            encoder_len: None,
        }
    }
}

/// One batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// Index of the batch in this rank's sequence (across epochs).
    pub index: u64,
    /// Epoch it belongs to.
    pub epoch: u64,
    /// Rows (B; smaller for a kept last partial batch).
    pub rows: usize,
    /// T.
    pub seq_len: usize,
    /// `[rows * T]` input ids.
    pub input_ids: Vec<u32>,
    /// `[rows * T]` targets: the inputs shifted by one.
    pub targets: Vec<u32>,
    /// `[rows * T]` 1 where the loss counts.
    pub loss_mask: Vec<u8>,
    /// One route per (table, layer, hash): see [`Loader::routes`], [`Batch::route`].
    pub routes: Vec<Route>,
    /// Sequence-to-sequence batches ([`LoaderConfig::encoder_len`]): the contexts. Then
    /// `input_ids`, `targets` and `loss_mask` are the decoder's: the response, its first input
    /// the context's last id (the end token that closes it). Absent from the JSON of other
    /// batches (`hashprep batches`), whose output is unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderBatch>,
}

/// The encoder's side of a sequence-to-sequence batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncoderBatch {
    /// Positions per row S.
    pub seq_len: usize,
    /// `[rows * S]`: each example's context, its last S ids, padded after.
    pub input_ids: Vec<u32>,
    /// Per row: the real positions (the rest is padding; 0 for an example without context).
    pub lengths: Vec<u32>,
    /// The routes of the encoder's positions, one per route of [`Batch::routes`], in the same
    /// order (a [`RouteHandle`] names both).
    pub routes: Vec<Route>,
}

impl Batch {
    /// The route `handle` names.
    pub fn route(&self, handle: RouteHandle) -> &Route {
        &self.routes[handle.0]
    }
}

/// Where a loader stands: enough to continue exactly there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// The next batch to deliver.
    pub next_batch: u64,
    /// Fingerprint of data, tables and config: a state only resumes the same loader.
    pub fingerprint: String,
    /// The settings of the loader that saved the state, so that a refusal names the one that
    /// differs (absent from states written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<LoaderConfig>,
    /// Fingerprint of the data alone, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Fingerprint of the tables alone, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<String>,
}

impl LoaderState {
    /// The state at batch `next_batch` of the loader that saved `self`.
    #[must_use]
    pub fn at(&self, next_batch: u64) -> Self {
        Self {
            next_batch,
            ..self.clone()
        }
    }
}

/// A routing spec: one layer of one table (its `hashes` streams).
#[derive(Debug, Clone)]
struct Spec {
    table: Arc<RoutingTable>,
    layer: u32,
    /// The table's file in the [`TableSet`] (the first of those with the same bytes).
    file: usize,
}

/// The shuffles of one epoch.
enum EpochPlan {
    Packed(PackedEpoch),
    Examples(Vec<u32>),
}

impl EpochPlan {
    fn samples(&self) -> usize {
        match self {
            EpochPlan::Packed(p) => p.len(),
            EpochPlan::Examples(order) => order.len(),
        }
    }
}

/// Everything a worker needs to build any batch.
pub(crate) struct Core {
    data: TokenDataset,
    specs: Vec<Spec>,
    routes: Vec<RouteInfo>,
    tables: TableSet,
    config: LoaderConfig,
    batches_per_epoch: u64,
    fingerprint: String,
    /// The data's and the tables' parts of `fingerprint`, to say which differs when a state
    /// is refused.
    data_fingerprint: String,
    tables_fingerprint: String,
    plans: Mutex<Vec<(u64, Arc<EpochPlan>)>>,
    /// Testing: building this batch panics.
    #[cfg(test)]
    panic_at: Option<u64>,
}

/// The loader. See the module documentation.
pub struct Loader {
    core: Arc<Core>,
    next_batch: u64,
}

impl Loader {
    /// Opens the data and the table files and checks everything before the first batch:
    /// shard checksums, that the tables were built for the data's tokenizer, that `B * T` fits
    /// the position type, and (per-example mode) that some example fills a row. Routes come in
    /// table order, layer by layer, hash by hash; files with the same bytes share routes.
    ///
    /// # Errors
    /// Any of the above, named by file or setting.
    pub fn new(data: &Path, tables: &[PathBuf], config: LoaderConfig) -> Result<Self> {
        Self::with_tables(data, &TableSet::open(tables)?, config)
    }

    /// [`Loader::new`] with tables already opened (shared by the loaders of several splits).
    ///
    /// # Errors
    /// As [`Loader::new`].
    pub fn with_tables(data: &Path, tables: &TableSet, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 || config.seq_len == 0 {
            let name = if config.batch_size == 0 {
                "batch_size"
            } else {
                "seq_len"
            };
            return Err(Error::setting(name, "must be at least 1"));
        }
        if config.world_size == 0 || config.rank >= config.world_size {
            return Err(Error::setting(
                "rank",
                format!(
                    "{} must be below `world_size` {}",
                    config.rank, config.world_size
                ),
            ));
        }
        if config.expert_parallel == 0 || !config.world_size.is_multiple_of(config.expert_parallel)
        {
            return Err(Error::setting(
                "expert_parallel",
                format!(
                    "{} must divide `world_size` {}",
                    config.expert_parallel, config.world_size
                ),
            ));
        }
        let positions = (config.batch_size as u64).saturating_mul(config.seq_len as u64);
        if positions > MAX_BATCH_POSITIONS {
            return Err(Error::setting(
                "batch_size",
                format!(
                    "{} x `seq_len` {} = {positions} positions per batch, more than the limit of \
                     {MAX_BATCH_POSITIONS}: use smaller batches",
                    config.batch_size, config.seq_len
                ),
            ));
        }
        let data = TokenDataset::open(data)?;
        let vocab = data.manifest().tokenizer.vocab_size;
        if config.pad_id as usize >= vocab {
            return Err(Error::Loader(LoaderProblem::PadOutside {
                pad_id: config.pad_id,
                vocab,
            }));
        }
        let specs = specs_of(tables, &data)?;
        if let Some(encoder_len) = config.encoder_len {
            seq2seq::check(&config, encoder_len, &data)?;
        } else if !config.packing {
            let longest = data.lengths().iter().copied().max().unwrap_or(0) as usize;
            if longest < config.seq_len {
                return Err(Error::setting(
                    "seq_len",
                    format!(
                        "{} is longer than every example (the longest has {longest} ids): lower it or use packing",
                        config.seq_len
                    ),
                ));
            }
        }
        let fingerprint = loader_fingerprint(&data, tables, &config);
        let (data_fingerprint, tables_fingerprint) =
            (data_fingerprint(&data), tables_fingerprint(tables));
        let mut core = Core {
            data,
            routes: route_infos(&specs, tables),
            specs,
            tables: tables.clone(),
            config,
            batches_per_epoch: 0,
            fingerprint,
            data_fingerprint,
            tables_fingerprint,
            plans: Mutex::new(Vec::new()),
            #[cfg(test)]
            panic_at: None,
        };
        // Every rank takes every `world_size`-th sample, the same number each.
        let samples = core.plan(0).samples();
        let per_rank = samples / core.config.world_size;
        core.batches_per_epoch = if core.config.drop_last {
            (per_rank / core.config.batch_size) as u64
        } else {
            per_rank.div_ceil(core.config.batch_size) as u64
        };
        if core.batches_per_epoch == 0 {
            return Err(Error::Loader(LoaderProblem::TooLittleData {
                samples,
                seq_len: core.config.seq_len,
                batch_size: core.config.batch_size,
            }));
        }
        Ok(Self {
            core: Arc::new(core),
            next_batch: 0,
        })
    }

    /// The manifest of the data (tokenizer, vocabulary size, totals).
    pub fn manifest(&self) -> &crate::shard::Manifest {
        self.core.data.manifest()
    }

    /// Batches in one epoch for this rank.
    pub fn batches_per_epoch(&self) -> u64 {
        self.core.batches_per_epoch
    }

    /// Every route of a batch, in [`Batch::routes`] order.
    pub fn routes(&self) -> &[RouteInfo] {
        &self.core.routes
    }

    /// The handles of the routes of `layer` of the table file `table` (one per hash), which
    /// must be one of the files the loader was opened with.
    ///
    /// # Errors
    /// `table` is not one of the loader's tables, or has no such layer.
    pub fn route_handles(&self, table: &Path, layer: u32) -> Result<Vec<RouteHandle>> {
        let file = self
            .core
            .tables
            .first_with_bytes_of(table)
            .ok_or_else(|| Error::table(TableProblem::NotLoaded).in_table_file(table))?;
        let mut handles = Vec::new();
        let mut slot = 0;
        for spec in &self.core.specs {
            let hashes = spec.table.meta.hashes as usize;
            if spec.file == file && spec.layer == layer {
                handles.extend((slot..slot + hashes).map(RouteHandle));
            }
            slot += hashes;
        }
        if handles.is_empty() {
            let layers = self.core.tables.table(table).map_or(0, |t| t.meta.layers);
            return Err(
                Error::table(TableProblem::NoSuchLayer { layer, layers }).in_table_file(table)
            );
        }
        Ok(handles)
    }

    /// The tables the loader routes with.
    pub fn tables(&self) -> &TableSet {
        &self.core.tables
    }

    /// Builds batch `index` (no prefetching).
    ///
    /// # Errors
    /// An id outside the vocabulary in the data (a foreign or altered shard), named by shard and row.
    pub fn batch(&self, index: u64) -> Result<Batch> {
        self.core.batch(index)
    }

    /// Where the loader stands.
    pub fn state(&self) -> LoaderState {
        LoaderState {
            next_batch: self.next_batch,
            fingerprint: self.core.fingerprint.clone(),
            config: Some(self.core.config.clone()),
            data: Some(self.core.data_fingerprint.clone()),
            tables: Some(self.core.tables_fingerprint.clone()),
        }
    }

    /// Continues from `state`.
    ///
    /// # Errors
    /// The state belongs to a loader with other data, tables or settings; the message names
    /// the setting that differs (`world_size`, ...), or the data or the tables.
    pub fn resume(&mut self, state: &LoaderState) -> Result<()> {
        if state.fingerprint != self.core.fingerprint {
            return Err(self.mismatch(state));
        }
        self.next_batch = state.next_batch;
        Ok(())
    }

    /// What differs between this loader and the one that saved `state`.
    fn mismatch(&self, state: &LoaderState) -> Error {
        if let Some(saved) = &state.config {
            let value = |c: &LoaderConfig| serde_json::to_value(c).expect("serializable");
            let (ours, theirs) = (value(&self.core.config), value(saved));
            let keys = ours.as_object().into_iter().flat_map(|o| o.keys());
            if let Some(key) = keys.into_iter().find(|k| ours.get(*k) != theirs.get(*k)) {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or_else(|| "1".to_owned(), ToString::to_string)
                };
                return Error::Loader(LoaderProblem::StateSetting {
                    key: key.clone(),
                    ours: show(ours.get(key)),
                    theirs: show(theirs.get(key)),
                });
            }
        }
        let part = if state
            .data
            .as_ref()
            .is_some_and(|d| *d != self.core.data_fingerprint)
        {
            "other data (a tokenize output with other settings or counts)"
        } else if state
            .tables
            .as_ref()
            .is_some_and(|t| *t != self.core.tables_fingerprint)
        {
            "other tables (their files' bytes differ)"
        } else {
            "other data, tables or loader settings"
        };
        Error::Loader(LoaderProblem::StateOf(part.to_owned()))
    }

    /// Batches `start..start + steps` built ahead, without moving the loader (the caller keeps
    /// the position, e.g. as a [`LoaderState`] with `next_batch`).
    /// `workers` and `prefetch` are clamped to 1..=[`MAX_WORKERS`] and 1..=[`MAX_PREFETCH`]
    /// ([`check_prefetch`] refuses values beyond them).
    pub fn batches(&self, start: u64, steps: u64, workers: usize, prefetch: usize) -> Batches {
        Batches::start(
            &self.core,
            start,
            steps,
            workers.clamp(1, MAX_WORKERS),
            prefetch.clamp(1, MAX_PREFETCH),
        )
    }

    /// The next `steps` batches, built ahead by `workers` threads with at most `prefetch`
    /// batches waiting; advances the state as batches are taken. `workers` and `prefetch` are
    /// clamped as in [`Loader::batches`].
    pub fn take(&mut self, steps: u64, workers: usize, prefetch: usize) -> Prefetcher<'_> {
        Prefetcher::start(
            self,
            steps,
            workers.clamp(1, MAX_WORKERS),
            prefetch.clamp(1, MAX_PREFETCH),
        )
    }
}

/// One spec per layer of each distinct table, in table order; each checked against the data.
fn specs_of(tables: &TableSet, data: &TokenDataset) -> Result<Vec<Spec>> {
    let manifest = data.manifest();
    let mut specs = Vec::new();
    for (file, table) in tables.distinct() {
        table
            .check_data(
                &manifest.tokenizer.fingerprint,
                manifest.tokenizer.vocab_size,
            )
            .map_err(|e| e.in_table_file(tables.paths().nth(file).unwrap_or(Path::new(""))))?;
        for layer in 0..table.meta.layers {
            specs.push(Spec {
                table: table.clone(),
                layer,
                file,
            });
        }
    }
    Ok(specs)
}

fn route_infos(specs: &[Spec], tables: &TableSet) -> Vec<RouteInfo> {
    let mut routes = Vec::new();
    for spec in specs {
        let table = tables.paths().nth(spec.file).unwrap_or(Path::new(""));
        for hash in 0..spec.table.meta.hashes {
            routes.push(RouteInfo {
                handle: RouteHandle(routes.len()),
                table: table.to_path_buf(),
                method: spec.table.meta.method,
                layer: spec.layer,
                hash,
                experts: spec.table.meta.experts,
                top_k: spec.table.meta.top_k,
                fingerprint: tables.fingerprint(spec.file).to_owned(),
            });
        }
    }
    routes
}

/// The data's part of [`loader_fingerprint`].
fn data_fingerprint(data: &TokenDataset) -> String {
    let identity = serde_json::to_vec(&(&data.manifest().config, &data.manifest().counts_checksum))
        .expect("serializable");
    fingerprint_bytes(&identity)
}

/// The tables' part of [`loader_fingerprint`].
fn tables_fingerprint(tables: &TableSet) -> String {
    let mut identity = Vec::new();
    for bytes in tables.contents() {
        identity.extend_from_slice(bytes);
    }
    fingerprint_bytes(&identity)
}

/// What a loader state must match: the batch settings, the data, and every table's bytes.
fn loader_fingerprint(data: &TokenDataset, tables: &TableSet, config: &LoaderConfig) -> String {
    let mut identity = serde_json::to_vec(&(
        config,
        &data.manifest().config,
        &data.manifest().counts_checksum,
    ))
    .expect("serializable");
    for bytes in tables.contents() {
        identity.extend_from_slice(bytes);
    }
    fingerprint_bytes(&identity)
}

impl Core {
    /// The shuffles of `epoch`, built once and shared (the two most recent are kept).
    fn plan(&self, epoch: u64) -> Arc<EpochPlan> {
        let mut plans = self.plans.lock().expect("not poisoned");
        if let Some((_, plan)) = plans.iter().find(|(e, _)| *e == epoch) {
            return plan.clone();
        }
        let lengths = self.data.lengths();
        let plan = Arc::new(if self.config.packing {
            EpochPlan::Packed(PackedEpoch::new(
                lengths,
                self.config.seq_len,
                self.config.seed,
                epoch,
            ))
        } else {
            EpochPlan::Examples(permutation(
                lengths.len(),
                self.config.seed ^ epoch.wrapping_mul(0x9E37_79B9),
                SALT_DOCS,
            ))
        });
        plans.push((epoch, plan.clone()));
        if plans.len() > 2 {
            plans.remove(0);
        }
        plan
    }

    fn batch(&self, index: u64) -> Result<Batch> {
        #[cfg(test)]
        assert_ne!(Some(index), self.panic_at, "injected loader failure");
        let mut batch = self.batch_of_rank(index, self.config.rank)?;
        self.attach_peer_counts(&mut batch)?;
        Ok(batch)
    }

    /// Fills every route's `peer_counts` by routing the same batch of each rank of this rank's
    /// expert-parallel group (batches are pure functions of the rank, so no rank waits for
    /// another's counts).
    fn attach_peer_counts(&self, batch: &mut Batch) -> Result<()> {
        let group = self.config.expert_parallel;
        let first = self.config.rank - self.config.rank % group;
        for route in &mut batch.routes {
            route.peer_counts = Vec::with_capacity(group * route.experts as usize);
        }
        for peer in first..first + group {
            let peer_batch = if peer == self.config.rank {
                None
            } else {
                Some(self.batch_of_rank(batch.index, peer)?)
            };
            for (i, route) in batch.routes.iter_mut().enumerate() {
                let offsets = match &peer_batch {
                    Some(other) => &other.routes[i].offsets,
                    None => &route.offsets,
                };
                let counts: Vec<u32> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
                route.peer_counts.extend(counts);
            }
        }
        // Sequence-to-sequence batches have no expert-parallel peers (refused when opened).
        for route in batch.encoder.iter_mut().flat_map(|e| &mut e.routes) {
            route.peer_counts = route.offsets.windows(2).map(|w| w[1] - w[0]).collect();
        }
        Ok(())
    }

    /// Batch `index` of `rank` (its routes without peer counts).
    fn batch_of_rank(&self, index: u64, rank: usize) -> Result<Batch> {
        let (b, t) = (self.config.batch_size, self.config.seq_len);
        let epoch = index / self.batches_per_epoch;
        let local = (index % self.batches_per_epoch) as usize;
        let plan = self.plan(epoch);
        let per_rank = plan.samples() / self.config.world_size;
        let first = local * b;
        let rows = b.min(per_rank - first);
        if let (Some(encoder_len), EpochPlan::Examples(order)) = (self.config.encoder_len, &*plan) {
            let docs =
                (0..rows).map(|r| order[(first + r) * self.config.world_size + rank] as usize);
            let (decoder, encoder) = self.seq2seq_rows(docs, encoder_len)?;
            let (routes, encoder_routes) = (
                self.routes_of(&decoder.rows()),
                self.routes_of(&encoder.rows()),
            );
            return Ok(Batch {
                index,
                epoch,
                rows,
                seq_len: t,
                input_ids: decoder.inputs,
                targets: decoder.targets,
                loss_mask: decoder.mask,
                routes,
                encoder: Some(EncoderBatch {
                    seq_len: encoder_len,
                    routes: encoder_routes,
                    lengths: encoder.valid.iter().map(|&v| v as u32).collect(),
                    input_ids: encoder.inputs,
                }),
            });
        }
        let mut inputs = Vec::with_capacity(rows * t);
        let mut targets = Vec::with_capacity(rows * t);
        let mut mask = Vec::with_capacity(rows * t);
        let mut before = Vec::with_capacity(rows);
        let mut valid = Vec::with_capacity(rows);
        let mut window: Vec<u32> = Vec::with_capacity(t + 1);
        let mut response: Vec<bool> = Vec::with_capacity(t + 1);
        for r in 0..rows {
            let sample = (first + r) * self.config.world_size + rank;
            window.clear();
            response.clear();
            let prev = match &*plan {
                EpochPlan::Packed(packed) => {
                    let mut checked = Ok(());
                    let before = packed.pieces(sample, |doc, range| {
                        let prefix = self.data.prefix_len(doc) as usize;
                        response.extend(range.clone().map(|j| j >= prefix));
                        if checked.is_ok() {
                            checked = self.data.extend_checked(doc, range, &mut window);
                        }
                    });
                    checked?;
                    before
                        .map(|(doc, at)| self.data.id_checked(doc, at))
                        .transpose()?
                }
                EpochPlan::Examples(order) => {
                    let doc = order[sample] as usize;
                    let n = (self.data.lengths()[doc] as usize).min(t + 1);
                    let prefix = self.data.prefix_len(doc) as usize;
                    self.data.extend_checked(doc, 0..n, &mut window)?;
                    response.extend((0..n).map(|j| j >= prefix));
                    None
                }
            };
            let real = window.len().saturating_sub(1);
            for p in 0..t {
                if p < real {
                    inputs.push(window[p]);
                    targets.push(window[p + 1]);
                    mask.push(u8::from(response[p + 1]));
                } else {
                    inputs.push(self.config.pad_id);
                    targets.push(self.config.pad_id);
                    mask.push(0);
                }
            }
            before.push(prev);
            valid.push(real);
        }
        let ctx = RowContext {
            inputs: &inputs,
            targets: &targets,
            before: &before,
            valid: &valid,
            seq_len: t,
        };
        Ok(Batch {
            index,
            epoch,
            rows,
            seq_len: t,
            routes: self.routes_of(&ctx),
            input_ids: inputs,
            targets,
            loss_mask: mask,
            encoder: None,
        })
    }

    /// Every route of a stream of rows: per spec, per hash.
    fn routes_of(&self, ctx: &RowContext<'_>) -> Vec<Route> {
        let mut routes = Vec::new();
        for (s, spec) in self.specs.iter().enumerate() {
            for hash in 0..spec.table.meta.hashes {
                let stream = spec.layer * spec.table.meta.hashes + hash;
                routes.push(routing::route(&spec.table, stream, s, hash, ctx));
            }
        }
        routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Format;
    use crate::pipeline::{tokenize, RunOptions, TokenizeSettings};

    /// A small tokenize output in `dir/data`.
    fn small_data(dir: &Path) -> PathBuf {
        let input = dir.join("docs.txt");
        let text = "document number N with a few words in it\n".repeat(200);
        std::fs::write(&input, text).unwrap();
        let data = dir.join("data");
        let settings =
            TokenizeSettings::new(Format::from_cli("text", "text", false).unwrap(), "gpt2");
        tokenize(&settings, &[input], &data, &RunOptions::default()).unwrap();
        data
    }

    #[test]
    fn a_panicking_worker_delivers_its_error_in_place_and_ends_the_batches() {
        let tmp = tempfile::tempdir().unwrap();
        let data = small_data(tmp.path());
        for workers in [1, 2, 4] {
            let mut loader = Loader::new(&data, &[], LoaderConfig::new(2, 8, 0)).unwrap();
            Arc::get_mut(&mut loader.core).unwrap().panic_at = Some(3);
            // On a thread, so that a hang fails the test instead of stalling it.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let results: Vec<Result<Batch>> = loader.take(10, workers, 2).collect();
                let _ = tx.send((results, loader.state().next_batch));
            });
            let (results, next_batch) = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{workers} workers: the loader hung"));
            assert_eq!(
                results.len(),
                4,
                "{workers} workers: three batches, then the error"
            );
            assert!(results[..3].iter().all(Result::is_ok));
            let error = results[3].as_ref().unwrap_err();
            assert!(
                error.to_string().contains("panicked building batch 3")
                    && error.to_string().contains("injected loader failure"),
                "{error}"
            );
            assert!(!error.is_bad_input());
            assert_eq!(next_batch, 3, "the failed batch is not counted as taken");
        }
    }
}
