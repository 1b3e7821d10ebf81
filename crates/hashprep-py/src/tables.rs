//! Token -> expert tables: `build_table` and `Table` (load, save, expert ids as numpy).

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::prelude::*;

use crate::errors::{detached, to_py, to_python, Error};

/// A routing table: `expert_ids` (numpy, `[V]`, `[V, S]` for S streams = layers x hashes,
/// `[V, k]` or `[V, S, k]` for a top-k table), `meta` (the metadata of `schemas/table.md`),
/// `stats()`, `save(path)`, `export(out, to=...)`.
#[pyclass(module = "hashprep", frozen)]
pub(crate) struct Table {
    table: hashprep::RoutingTable,
    report: Option<hashprep::TableReport>,
}

/// Builds a token -> expert table from the counts of the tokenize output `data`, as
/// `hashprep build-table`, and returns it; written to `out` when given (format "arrow" or
/// "npy"). method: random, balanced, clustered, dispersed, bigram, previous, position, oracle.
/// experts: K. top_k: distinct experts per token (random, balanced, clustered, dispersed).
/// hashes: N per layer (MultiHash). layers: layers with their own table. seed.
/// no_refine: skip the balanced refinement. base: the per-token method of previous/oracle.
/// embeddings / tensor: `[V, d]` .npy or safetensors for clustered/dispersed. kmeans_runs.
/// plot: a .png/.svg of the loads (only if this build draws plots).
#[pyfunction]
#[pyo3(signature = (data, out = None, *, method, experts, top_k = 1, hashes = 1, layers = 1, seed = 0,
    no_refine = false, base = "balanced", embeddings = None, tensor = None, kmeans_runs = 1,
    format = "arrow", plot = None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_table(
    py: Python<'_>,
    data: PathBuf,
    out: Option<PathBuf>,
    method: &str,
    experts: u32,
    top_k: u32,
    hashes: u32,
    layers: u32,
    seed: u64,
    no_refine: bool,
    base: &str,
    embeddings: Option<PathBuf>,
    tensor: Option<String>,
    kmeans_runs: usize,
    format: &str,
    plot: Option<PathBuf>,
) -> PyResult<Table> {
    let mut spec = hashprep::TableSpec::new(method_named(method)?, experts);
    spec.top_k = top_k;
    spec.hashes = hashes;
    spec.layers = layers;
    spec.seed = seed;
    spec.refine = !no_refine;
    spec.base = method_named(base)?;
    spec.kmeans.runs = kmeans_runs;
    let format = table_format(format)?;
    // Without `out`, the table goes through a temporary file: the stages work on files.
    let temp = match out {
        Some(_) => None,
        None => Some(tempfile_dir()?),
    };
    let out = out.unwrap_or_else(|| {
        temp.as_ref()
            .expect("made above")
            .path()
            .join("table.arrow")
    });
    let mut request = hashprep::BuildTableRequest::from_data(spec, &data, &out);
    request.embeddings = embeddings;
    request.tensor = tensor;
    request.format = format;
    request.plot = plot;
    detached(py, || {
        let report = hashprep::build_table_files(&request)?;
        let table = hashprep::RoutingTable::read(&out)?;
        Ok::<_, hashprep::Error>(Table {
            table,
            report: Some(report),
        })
    })
}

fn table_format(name: &str) -> PyResult<hashprep::TableFormat> {
    hashprep::TableFormat::from_name(name).map_err(|e| to_py(&e))
}

fn method_named(name: &str) -> PyResult<hashprep::Method> {
    hashprep::Method::from_name(name).map_err(|e| to_py(&e))
}

fn tempfile_dir() -> PyResult<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))
}

#[pymethods]
impl Table {
    /// Reads a table file (Arrow, or .npy with its .json).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let table = detached(py, || hashprep::RoutingTable::read(&path))?;
        Ok(Self {
            table,
            report: None,
        })
    }

    /// Writes the table to `path` (format "arrow" or "npy").
    #[pyo3(signature = (path, *, format = "arrow"))]
    fn save(&self, py: Python<'_>, path: PathBuf, format: &str) -> PyResult<Vec<PathBuf>> {
        let format = table_format(format)?;
        detached(py, || self.table.write(&path, format))
    }

    /// The expert(s) of every token id: `[V]` for one stream, `[V, S]` for S = layers x
    /// hashes; a top-k table adds a last axis of k (`[V, k]`, `[V, S, k]`). Empty for rules
    /// that route by position.
    #[getter]
    fn expert_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let streams = self.table.streams() as usize;
        let vocab = self.table.meta.vocab_size;
        let k = self.table.meta.top_k as usize;
        if !self.table.meta.rule.has_columns() {
            return Ok(Vec::<u32>::new().into_pyarray(py).into_any());
        }
        let mut values = Vec::with_capacity(vocab * streams * k);
        for id in 0..vocab as u32 {
            for stream in 0..streams as u32 {
                values.extend_from_slice(self.table.experts_of(stream, id));
            }
        }
        let mut shape = vec![vocab];
        shape.extend((streams > 1).then_some(streams));
        shape.extend((k > 1).then_some(k));
        Ok(values.into_pyarray(py).reshape(shape)?.into_any())
    }

    /// Writes the table where an engine loads it, as `hashprep export-table`: `to`
    /// "hf-deepseek-v4" (safetensors with a `tid2eid` int64 `[vocab_size, k]` (or `dtype`
    /// "int32") for each of `layers`; ids beyond the table get `(id + j) mod K`) or "npy".
    /// `top_k`: the model's num_experts_per_tok (must equal the table's). `keys`: "state"
    /// (`model.layers.{i}.mlp.gate.tid2eid`, for load_state_dict; the default of `out`),
    /// "transformers" (`model.layers.{i}.ffn.gate.tid2eid`, as save_pretrained writes; the
    /// default of `into`) or "deepseek" (`layers.{i}.ffn.gate.tid2eid`). `into`: instead of
    /// `out`, a Hugging Face checkpoint folder to write the tables into (its config.json gives
    /// vocab_size, top_k and the hash layers; no weight file rewritten), returning what was
    /// done as a dict. Otherwise returns the files written.
    #[pyo3(signature = (out = None, *, to, layers = Vec::new(), vocab_size = None, top_k = None,
        into = None, keys = None, dtype = "int64"))]
    #[allow(clippy::too_many_arguments)]
    fn export<'py>(
        &self,
        py: Python<'py>,
        out: Option<PathBuf>,
        to: &str,
        layers: Vec<u32>,
        vocab_size: Option<usize>,
        top_k: Option<u32>,
        into: Option<PathBuf>,
        keys: Option<&str>,
        dtype: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let export = hashprep::TableExport {
            to: hashprep::ExportTarget::from_name(to).map_err(|e| to_py(&e))?,
            layers,
            vocab_size,
            top_k,
            keys: keys
                .map(hashprep::TidKeys::from_name)
                .transpose()
                .map_err(|e| to_py(&e))?,
            dtype: hashprep::IdDtype::from_name(dtype).map_err(|e| to_py(&e))?,
        };
        match (out, into) {
            (Some(out), None) => {
                let files = detached(py, || self.table.export(&export, &out))?;
                Ok(files.into_pyobject(py)?.into_any())
            }
            (None, Some(into)) => {
                let inserted = detached(py, || self.table.insert_into_checkpoint(&export, &into))?;
                to_python(py, &inserted)
            }
            _ => Err(pyo3::exceptions::PyTypeError::new_err(
                "export() takes exactly one of `out` (a file) and `into` (a checkpoint folder)",
            )),
        }
    }

    /// The table's metadata (`schemas/table.md`) as a dict.
    #[getter]
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.table.meta)
    }

    /// The statistics `hashprep build-table --json` prints, as a dict: a table built here
    /// reports those of its build; `data` (a tokenize output) measures the table over that data
    /// (needed for a loaded table).
    #[pyo3(signature = (data = None))]
    fn stats<'py>(&self, py: Python<'py>, data: Option<PathBuf>) -> PyResult<Bound<'py, PyAny>> {
        match (&self.report, data) {
            (_, Some(data)) => {
                let report = detached(py, || hashprep::measure_table(&self.table, &data))?;
                to_python(py, &report)
            }
            (Some(report), None) => to_python(py, report),
            (None, None) => Err(Error::new_err(
                "a loaded table's statistics are over some data: pass `data`, a tokenize output",
            )),
        }
    }
}
