//! Corpus -> shards: `tokenize`, `inspect`, `train_tokenizer`, and `Dataset`, whose rows are
//! numpy views of the memory-mapped shards.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use numpy::ndarray::ArrayView1;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{detached, interruptible, to_py, to_python, Error};

/// The input format named as on the command line, with its options.
pub(crate) fn format(
    name: &str,
    text_field: &str,
    blank_line_separated: bool,
    max_context_turns: usize,
) -> PyResult<hashprep::Format> {
    let mut format = hashprep::Format::from_cli(name, text_field, blank_line_separated)
        .map_err(|e| to_py(&e))?;
    if let hashprep::Format::Reddit(reddit) = &mut format {
        reddit.max_context_turns = max_context_turns;
    }
    Ok(format)
}

fn on_error(name: &str) -> PyResult<hashprep::OnError> {
    hashprep::OnError::from_name(name).map_err(|e| to_py(&e))
}

/// Tokenizes `inputs` (files, directories or globs) into the directory `out`: Arrow shards,
/// token counts and a manifest, the same bytes as `hashprep tokenize`. Rerunning an interrupted
/// call resumes it. Returns the output's summary as a dict: the fields of
/// `hashprep inspect --json` (every shard verified), and under "run" what this call did (the
/// `hashprep tokenize --json` record: seconds, resumed_items, already_complete, ...).
///
/// format: wikitext103, cc100, text, jsonl or reddit. tokenizer: "gpt2" or a tokenizer.json.
/// eos_token / no_eos: the end-of-document token (default: the tokenizer's usual one).
/// bos_token: a beginning-of-document token put before each document (default: none).
/// special_tokens: "ordinary" (a literal `<|endoftext|>` is text) or "recognize".
/// on_error: "fail" or "skip" (bad records counted by reason). shard_mib: shard size
/// (default: the CLI's).
/// threads: 0 = all cores. num_tasks / task_index: this task's share of the inputs.
/// spill_dir: reddit on many machines, phase 2 (`--phase rebuild`): this task's share of the
/// partitions of the finished spill there (written by `spill_reddit`).
/// force: replace an output made with other settings. progress: a bar on stderr.
#[pyfunction]
#[pyo3(signature = (inputs, out, *, format, tokenizer, text_field = "text", blank_line_separated = false,
    on_error = "fail", eos_token = None, no_eos = false, bos_token = None, special_tokens = "ordinary",
    max_context_turns = 7, shard_mib = None, threads = 0, num_tasks = 1, task_index = 0,
    spill_dir = None, force = false, progress = true))]
#[allow(clippy::too_many_arguments, clippy::fn_params_excessive_bools)]
pub(crate) fn tokenize<'py>(
    py: Python<'py>,
    inputs: Vec<PathBuf>,
    out: PathBuf,
    format: &str,
    tokenizer: String,
    text_field: &str,
    blank_line_separated: bool,
    on_error: &str,
    eos_token: Option<String>,
    no_eos: bool,
    bos_token: Option<String>,
    special_tokens: &str,
    max_context_turns: usize,
    shard_mib: Option<f64>,
    threads: usize,
    num_tasks: usize,
    task_index: usize,
    spill_dir: Option<PathBuf>,
    force: bool,
    progress: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let format = self::format(format, text_field, blank_line_separated, max_context_turns)?;
    let defaults = hashprep::TokenizeSettings::new(format, tokenizer);
    let shard_bytes = match shard_mib {
        None => defaults.shard_bytes,
        Some(mib) if mib.is_finite() && mib > 0.0 => (mib * f64::from(1u32 << 20)) as u64,
        Some(_) => return Err(Error::new_err("`shard_mib` must be positive")),
    };
    let settings = hashprep::TokenizeSettings {
        eos_token,
        no_eos,
        bos_token,
        shard_bytes,
        on_error: self::on_error(on_error)?,
        special_tokens: hashprep::SpecialTokens::from_name(special_tokens)
            .map_err(|e| to_py(&e))?,
        ..defaults
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let options = hashprep::RunOptions {
        threads,
        progress,
        num_tasks,
        task_index,
        force,
        cancel: Some(cancel.clone()),
        reddit_phase: spill_dir.map_or(hashprep::RedditPhase::Both, hashprep::RedditPhase::Rebuild),
        ..hashprep::RunOptions::default()
    };
    // Ctrl-C stops the run within a chunk or two and leaves it resumable.
    let run = interruptible(py, cancel, move || {
        hashprep::tokenize(&settings, &inputs, &out, &options)
    })?;
    let inspection = detached(py, || hashprep::inspect(&run.out, INSPECT_TOP))?;
    let summary = to_python(py, &inspection)?;
    summary.set_item("run", to_python(py, &run)?)?;
    Ok(summary)
}

/// Reddit on many machines, phase 1 (`hashprep tokenize --phase spill`): task `task_index` of
/// `num_tasks` parses its share of the dumps `inputs` once into the spill directory
/// `spill_dir` that every task shares. A finished task's rerun does nothing; a killed one is
/// redone. Then `tokenize(..., spill_dir=)` on any number of tasks, and `hashprep merge`.
/// partitions: 0 sizes them from the inputs. Returns what the task did (`--json`'s record).
#[pyfunction]
#[pyo3(signature = (inputs, spill_dir, *, num_tasks = 1, task_index = 0, partitions = 0,
    on_error = "fail", progress = true))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn spill_reddit<'py>(
    py: Python<'py>,
    inputs: Vec<PathBuf>,
    spill_dir: PathBuf,
    num_tasks: usize,
    task_index: usize,
    partitions: usize,
    on_error: &str,
    progress: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let mut format = self::format("reddit", "text", false, 7)?;
    if let hashprep::Format::Reddit(reddit) = &mut format {
        reddit.partitions = partitions;
    }
    let settings = hashprep::TokenizeSettings {
        on_error: self::on_error(on_error)?,
        ..hashprep::TokenizeSettings::new(format, "gpt2")
    };
    let options = hashprep::RunOptions {
        progress,
        num_tasks,
        task_index,
        ..hashprep::RunOptions::default()
    };
    let summary = detached(py, || {
        hashprep::spill_reddit(&settings, &inputs, &spill_dir, &options)
    })?;
    to_python(py, &summary)
}

/// The most frequent tokens a summary lists, as `hashprep inspect`'s default.
const INSPECT_TOP: usize = 20;

/// What a tokenize output holds, every shard verified: the fields of `hashprep inspect --json`.
#[pyfunction]
#[pyo3(signature = (path, *, top = INSPECT_TOP))]
pub(crate) fn inspect(py: Python<'_>, path: PathBuf, top: usize) -> PyResult<Bound<'_, PyAny>> {
    let inspection = detached(py, || hashprep::inspect(&path, top))?;
    to_python(py, &inspection)
}

/// Trains a tokenizer on `inputs` and writes it to `out` (a tokenizer.json), as
/// `hashprep train-tokenizer`. kind: "bpe" (byte-level, vocab_size ids) or "word" (words seen
/// min_count times). Returns the tokenizer's fingerprint.
#[pyfunction]
#[pyo3(signature = (inputs, out, *, format, kind, vocab_size = hashprep::TokenizerKind::DEFAULT_VOCAB_SIZE,
    min_count = hashprep::TokenizerKind::DEFAULT_MIN_COUNT, eos_token = None, text_field = "text",
    blank_line_separated = false, on_error = "fail", progress = true))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_tokenizer(
    py: Python<'_>,
    inputs: Vec<PathBuf>,
    out: PathBuf,
    format: &str,
    kind: &str,
    vocab_size: usize,
    min_count: u64,
    eos_token: Option<String>,
    text_field: &str,
    blank_line_separated: bool,
    on_error: &str,
    progress: bool,
) -> PyResult<String> {
    // The library's names; the sizes given here replace its defaults.
    let kind = match hashprep::TokenizerKind::from_name(kind) {
        Some(hashprep::TokenizerKind::Bpe { .. }) => hashprep::TokenizerKind::Bpe { vocab_size },
        Some(hashprep::TokenizerKind::Word { .. }) => hashprep::TokenizerKind::Word { min_count },
        None => {
            return Err(Error::new_err(format!(
                "`kind` {kind:?} is none of bpe, word"
            )))
        }
    };
    let mut options = hashprep::TrainOptions::new(kind);
    if let Some(eos) = eos_token {
        options.eos_token = eos;
    }
    let format = self::format(format, text_field, blank_line_separated, 7)?;
    let on_error = self::on_error(on_error)?;
    detached(py, || {
        let tokenizer =
            hashprep::train_tokenizer_files(&inputs, &format, on_error, &options, progress)?;
        hashprep::util::write_atomic(&out, tokenizer.json())?;
        Ok::<_, hashprep::Error>(tokenizer.fingerprint().to_owned())
    })
}

/// A tokenize output, memory-mapped: `len(ds)` rows; `ds[i]` is row i's ids as a read-only
/// numpy array viewing the shard's mapping (uint16 or uint32, no copy).
#[pyclass(module = "hashprep", frozen)]
pub(crate) struct Dataset {
    data: hashprep::TokenDataset,
    dir: PathBuf,
}

#[pymethods]
impl Dataset {
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let data = detached(py, || hashprep::TokenDataset::open(&path))?;
        Ok(Self { data, dir: path })
    }

    fn __len__(&self) -> usize {
        self.data.len()
    }

    fn __getitem__<'py>(slf: &Bound<'py, Self>, index: isize) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let len = this.data.len();
        let i = if index < 0 {
            len.checked_sub(index.unsigned_abs())
        } else {
            Some(index.unsigned_abs()).filter(|&i| i < len)
        };
        let Some(i) = i else {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "row {index} of a dataset of {len} rows"
            )));
        };
        let container = slf.clone().into_any();
        // A shard truncated since it was opened is refused here rather than faulting on the
        // first read of the view; a view handed out earlier reads the file as it now is.
        let tokens = this.data.tokens_checked(i).map_err(|e| to_py(&e))?;
        // SAFETY: the slice lives in the shard mapping that `this.data` owns; `container` is
        // the Dataset object, kept alive by the array as its base, and frozen (never mutated).
        #[allow(unsafe_code)]
        let array = unsafe {
            match tokens {
                hashprep::DocTokens::U16(ids) => {
                    PyArray1::borrow_from_array(&ArrayView1::from(ids), container).into_any()
                }
                hashprep::DocTokens::U32(ids) => {
                    PyArray1::borrow_from_array(&ArrayView1::from(ids), container).into_any()
                }
            }
        };
        let kwargs = PyDict::new(slf.py());
        kwargs.set_item("write", false)?;
        array.call_method("setflags", (), Some(&kwargs))?;
        Ok(array)
    }

    /// Per row, the ids before the response (dialogue data; 0 for plain documents).
    fn prefix_lens<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        (0..self.data.len())
            .map(|i| self.data.prefix_len(i))
            .collect::<Vec<u32>>()
            .into_pyarray(py)
    }

    /// Occurrences of every id of the vocabulary (uint64), from the verified counts file.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let counts = detached(py, || self.data.manifest().read_counts(&self.dir))?;
        Ok(counts.as_slice().to_vec().into_pyarray(py))
    }

    /// Writes the tokens in another format, as `hashprep export`: `to="megatron"`: `out` is a
    /// path prefix of `out.bin` + `out.idx` (Megatron-LM's indexed dataset; Reddit outputs add
    /// `out.prefix_len.npy`), returning what was written as a dict; `to="parquet"`: `out` is a
    /// directory of one Parquet file per shard, returning their paths. An existing Megatron
    /// export is refused unless `force`.
    #[pyo3(signature = (out, *, to, force = false))]
    fn export<'py>(
        &self,
        py: Python<'py>,
        out: PathBuf,
        to: &str,
        force: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        match to {
            "megatron" => {
                let written = detached(py, || hashprep::export_megatron(&self.dir, &out, force))?;
                to_python(py, &written)
            }
            "parquet" => {
                let files = detached(py, || hashprep::export_parquet(&self.dir, &out))?;
                Ok(files.into_pyobject(py)?.into_any())
            }
            other => Err(pyo3::exceptions::PyValueError::new_err(format!(
                "to={other:?}: expected \"megatron\" or \"parquet\""
            ))),
        }
    }

    /// The shards as a Hugging Face `datasets.Dataset` (columns `tokens`, `prefix_len`) whose
    /// buffers lie in the shards' memory mappings: nothing is copied (needs datasets and pyarrow).
    fn to_hf<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let manifest = to_python(py, self.data.manifest())?;
        py.import("hashprep._hf")?
            .call_method1("to_hf", (self.dir.clone(), manifest))
    }

    /// The manifest (`schemas/manifest.md`) as a dict.
    #[getter]
    fn manifest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, self.data.manifest())
    }
}
