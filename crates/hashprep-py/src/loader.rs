//! The bucketed loader: `Loader` yields `Batch`es built ahead on worker threads; their arrays
//! are Rust buffers handed to numpy without a copy.

use std::path::PathBuf;
use std::sync::Mutex;

use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::prelude::*;

use crate::config::RunConfig;
use crate::errors::{detached, from_python, to_py, to_python, Error};

/// Batches of `[B, T]` ids over a tokenize output, each position's experts attached and
/// grouped by expert for every table (layer and hash): the batches of `hashprep batches`.
///
/// data: a tokenize output. tables: table files, one route per (table, layer, hash).
/// batch_size (B), seq_len (T), seed: the shuffle. per_example: one example per row, padded,
/// the loss on the response only (default: documents packed into windows). drop_last: drop
/// each epoch's partial batch. rank / world_size: this data-parallel rank's share.
/// expert_parallel: E, the size of the expert-parallel groups (consecutive ranks): each route
/// then carries `peer_counts`, the tokens per expert of every rank of this rank's group.
/// workers: threads building batches (at most 256). prefetch: batches built ahead (at most
/// 1024); larger values are refused.
///
/// Iterating yields the rest of the current epoch; `take(steps)` any number of batches.
/// `state()` / `load_state(state)` continue exactly where a loader stopped.
#[pyclass(module = "hashprep")]
pub(crate) struct Loader {
    inner: hashprep::Loader,
    position: u64,
    workers: usize,
    prefetch: usize,
    /// For each route, the sparse layers (`at`) of the run config it serves (`for_run`).
    serves: Vec<Vec<usize>>,
}

/// What one route of every batch routes (`Loader.routes`, in batch order): `index` into
/// `Batch.routes`, the `table` file (the first given of those with the same bytes) and its
/// `fingerprint`, `method`, table `layer`, `hash` (MultiHash), `experts` K, `top_k`, and
/// `sparse_layers`: the layers (`at`) of the run config it serves (`Loader.for_run`; empty
/// otherwise).
#[pyclass(module = "hashprep", frozen, get_all)]
pub(crate) struct RouteInfo {
    index: usize,
    table: PathBuf,
    fingerprint: String,
    method: &'static str,
    layer: u32,
    hash: u32,
    experts: u32,
    top_k: u32,
    sparse_layers: Vec<usize>,
}

#[pymethods]
impl RouteInfo {
    fn __repr__(&self) -> String {
        format!(
            "RouteInfo(index={}, table='{}', layer={}, hash={}, experts={}, top_k={}, sparse_layers={:?})",
            self.index, self.table.display(), self.layer, self.hash, self.experts, self.top_k, self.sparse_layers
        )
    }
}

/// Batches being built ahead for a `Loader`, which moves on as they are taken.
#[pyclass(module = "hashprep", frozen)]
pub(crate) struct Batches {
    loader: Py<Loader>,
    batches: Mutex<hashprep::Batches>,
}

#[pymethods]
impl Loader {
    #[new]
    #[pyo3(signature = (data, tables = None, *, batch_size, seq_len, seed = 0,
        per_example = false, drop_last = false, rank = 0, world_size = 1, expert_parallel = 1,
        workers = 2, prefetch = 4))]
    #[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
    fn new(
        py: Python<'_>,
        data: PathBuf,
        tables: Option<Vec<PathBuf>>,
        batch_size: usize,
        seq_len: usize,
        seed: u64,
        per_example: bool,
        drop_last: bool,
        rank: usize,
        world_size: usize,
        expert_parallel: usize,
        workers: usize,
        prefetch: usize,
    ) -> PyResult<Self> {
        let config = hashprep::LoaderConfig {
            packing: !per_example,
            drop_last,
            rank,
            world_size,
            expert_parallel,
            ..hashprep::LoaderConfig::new(batch_size, seq_len, seed)
        };
        hashprep::check_prefetch(workers, prefetch).map_err(|e| to_py(&e))?;
        let tables = tables.unwrap_or_default();
        let loader = detached(py, || hashprep::Loader::new(&data, &tables, config))?;
        Ok(Self::over(loader, workers, prefetch, None))
    }

    /// The loader of a run config over `data` (its training, validation or test data), as
    /// hashtrain opens it: the config's tables, `train.batch_size` split among `world_size`
    /// data-parallel ranks, `model.context` positions per row, `train.seed`, `train.workers`
    /// and `train.prefetch`, the last partial batch kept. Each table is checked against its
    /// layer's settings as hashtrain checks it (same messages), and each route names the
    /// layers it serves in `sparse_layers` (matched by the table's bytes).
    #[staticmethod]
    #[pyo3(signature = (config, data, *, rank = 0, world_size = 1, expert_parallel = 1))]
    fn for_run(
        py: Python<'_>,
        config: &RunConfig,
        data: PathBuf,
        rank: usize,
        world_size: usize,
        expert_parallel: usize,
    ) -> PyResult<Self> {
        let config = &config.inner;
        if config.model.kind == hashtrain_config::ModelKind::Seq2seq {
            return Err(Error::new_err(
                "model.kind = \"seq2seq\": its batches carry each example's context for the \
                 encoder, which this loader does not hand to Python; hashtrain trains it",
            ));
        }
        let placement = hashtrain_config::Placement {
            rank,
            world_size,
            expert_parallel,
        };
        let runtime = &config.train.runtime;
        let (loader, routing) = detached(py, || {
            let loader_config = config.loader_config(placement)?;
            let tables = hashprep::TableSet::open(&config.table_paths())?;
            let loader = hashprep::Loader::with_tables(&data, &tables, loader_config)?;
            let routing = config.routing(&loader)?;
            Ok::<_, hashtrain_config::ConfigError>((loader, routing))
        })?;
        Ok(Self::over(
            loader,
            runtime.workers,
            runtime.prefetch,
            Some(&routing),
        ))
    }

    /// Batches in one epoch of this rank.
    #[getter]
    fn batches_per_epoch(&self) -> u64 {
        self.inner.batches_per_epoch()
    }

    /// What every batch's `routes` hold, in order (`RouteInfo`).
    #[getter]
    fn routes(&self) -> Vec<RouteInfo> {
        self.inner
            .routes()
            .iter()
            .zip(&self.serves)
            .map(|(r, serves)| RouteInfo {
                index: r.handle.index(),
                table: r.table.clone(),
                fingerprint: r.fingerprint.clone(),
                method: r.method.name(),
                layer: r.layer,
                hash: r.hash,
                experts: r.experts,
                top_k: r.top_k,
                sparse_layers: serves.clone(),
            })
            .collect()
    }

    /// The rest of the current epoch.
    fn __iter__(slf: &Bound<'_, Self>) -> Batches {
        let (position, per_epoch) = {
            let this = slf.borrow();
            (this.position, this.inner.batches_per_epoch())
        };
        Batches::start(slf, (position / per_epoch + 1) * per_epoch - position)
    }

    /// The next `steps` batches (across epochs), built ahead on the worker threads.
    fn take(slf: &Bound<'_, Self>, steps: u64) -> Batches {
        Batches::start(slf, steps)
    }

    /// Where the loader stands, as a JSON-serializable dict.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let state = hashprep::LoaderState {
            next_batch: self.position,
            ..self.inner.state()
        };
        to_python(py, &state)
    }

    /// Continues from `state()` of a loader over the same data, tables and settings.
    fn load_state(&mut self, state: &Bound<'_, PyAny>) -> PyResult<()> {
        let state: hashprep::LoaderState = from_python(state)?;
        self.inner.resume(&state).map_err(|e| to_py(&e))?;
        self.position = state.next_batch;
        Ok(())
    }
}

impl Loader {
    fn over(
        inner: hashprep::Loader,
        workers: usize,
        prefetch: usize,
        routing: Option<&[hashtrain_config::LayerRouting]>,
    ) -> Self {
        let mut serves = vec![Vec::new(); inner.routes().len()];
        for layer in routing.unwrap_or_default() {
            for handle in &layer.routes {
                serves[handle.index()].push(layer.at);
            }
        }
        Self {
            inner,
            position: 0,
            workers: workers.max(1),
            prefetch: prefetch.max(1),
            serves,
        }
    }
}

impl Batches {
    fn start(loader: &Bound<'_, Loader>, steps: u64) -> Self {
        let this = loader.borrow();
        let batches = this
            .inner
            .batches(this.position, steps, this.workers, this.prefetch);
        Self {
            loader: loader.clone().unbind(),
            batches: Mutex::new(batches),
        }
    }
}

#[pymethods]
impl Batches {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Batch>> {
        let next = detached(py, || {
            self.batches
                .lock()
                .expect("not poisoned")
                .next()
                .transpose()
        })?;
        let Some(batch) = next else {
            return Ok(None);
        };
        self.loader.borrow_mut(py).position = batch.index + 1;
        Ok(Some(Batch::new(py, batch)?))
    }
}

/// One batch (`schemas/batch.md`): `index`, `epoch`, `input_ids`, `targets` (int64 `[B, T]`),
/// `loss_mask` (bool `[B, T]`), `routes` (one `Route` per table, layer and hash).
#[pyclass(module = "hashprep", frozen, get_all)]
pub(crate) struct Batch {
    index: u64,
    epoch: u64,
    input_ids: Py<PyAny>,
    targets: Py<PyAny>,
    loss_mask: Py<PyAny>,
    routes: Vec<Py<Route>>,
}

/// The routing of one table stream over a batch: `expert_ids` (int64 `[B, T]`, `[B, T, k]`
/// for a top-k table), `order` (int64 `[B*T*k]`, the positions of the (position, slot) pairs
/// grouped by expert), `slots` (int64 `[B*T*k]`, the slot of each pair), `offsets` (int64
/// `[K+1]`), `peer_counts` (int64 `[E, K]`: pairs per expert of each rank of the
/// expert-parallel group, this batch index; row `rank % E` is this rank's), `top_k`.
#[pyclass(module = "hashprep", frozen, get_all)]
pub(crate) struct Route {
    spec: usize,
    hash: u32,
    experts: u32,
    top_k: u32,
    expert_ids: Py<PyAny>,
    order: Py<PyAny>,
    slots: Py<PyAny>,
    offsets: Py<PyAny>,
    peer_counts: Py<PyAny>,
}

fn ids(values: &[u32]) -> Vec<i64> {
    values.iter().map(|&v| i64::from(v)).collect()
}

impl Batch {
    fn new(py: Python<'_>, batch: hashprep::Batch) -> PyResult<Self> {
        let shape = [batch.rows, batch.seq_len];
        let matrix = |values: Vec<i64>| -> PyResult<Py<PyAny>> {
            Ok(values.into_pyarray(py).reshape(shape)?.into_any().unbind())
        };
        let mask: Vec<bool> = batch.loss_mask.iter().map(|&m| m != 0).collect();
        let routes = batch
            .routes
            .iter()
            .map(|r| {
                Py::new(
                    py,
                    Route {
                        spec: r.spec,
                        hash: r.hash,
                        experts: r.experts,
                        top_k: r.top_k,
                        expert_ids: if r.top_k == 1 {
                            matrix(ids(&r.expert_ids))?
                        } else {
                            ids(&r.expert_ids)
                                .into_pyarray(py)
                                .reshape([shape[0], shape[1], r.top_k as usize])?
                                .into_any()
                                .unbind()
                        },
                        order: ids(&r.order).into_pyarray(py).into_any().unbind(),
                        slots: ids(&r.slots).into_pyarray(py).into_any().unbind(),
                        offsets: ids(&r.offsets).into_pyarray(py).into_any().unbind(),
                        peer_counts: ids(&r.peer_counts)
                            .into_pyarray(py)
                            .reshape([
                                r.peer_counts.len() / r.experts as usize,
                                r.experts as usize,
                            ])?
                            .into_any()
                            .unbind(),
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        Ok(Self {
            index: batch.index,
            epoch: batch.epoch,
            input_ids: matrix(ids(&batch.input_ids))?,
            targets: matrix(ids(&batch.targets))?,
            loss_mask: mask.into_pyarray(py).reshape(shape)?.into_any().unbind(),
            routes,
        })
    }
}
