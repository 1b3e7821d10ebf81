//! Rust failures as Python exceptions: bad input is `hashprep.Error` (a `ValueError`) with the
//! CLI's message, I/O is `OSError`, a failure of ours (a panic included) is `RuntimeError`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    hashprep,
    Error,
    PyValueError,
    "Input hashprep cannot use: a file, record, setting or state, named in the message."
);

/// The Python exception of a library error.
pub(crate) fn to_py(err: &hashprep::Error) -> PyErr {
    let message = hashprep::error_message(err);
    match err {
        hashprep::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        hashprep::Error::Io { .. } => PyOSError::new_err(message),
        e if e.is_bad_input() => Error::new_err(message),
        _ => PyRuntimeError::new_err(message),
    }
}

/// The Python exception of a run-config error: as [`to_py`], the file that cannot be read an
/// `OSError`.
pub(crate) fn config_to_py(err: &hashtrain_config::ConfigError) -> PyErr {
    use hashtrain_config::ConfigError;
    match err {
        ConfigError::Data(e) => to_py(e),
        ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(err.to_string())
        }
        ConfigError::Read { .. } => PyOSError::new_err(err.to_string()),
        _ => Error::new_err(err.to_string()),
    }
}

/// A library error that becomes a Python exception.
pub(crate) trait ToPyErr: Send {
    fn to_py_err(&self) -> PyErr;
}

impl ToPyErr for hashprep::Error {
    fn to_py_err(&self) -> PyErr {
        to_py(self)
    }
}

impl ToPyErr for hashtrain_config::ConfigError {
    fn to_py_err(&self) -> PyErr {
        config_to_py(self)
    }
}

/// Runs `work` without the GIL (other Python threads go on), turning its errors and panics
/// into Python exceptions.
pub(crate) fn detached<T: Send, E: ToPyErr>(
    py: Python<'_>,
    work: impl FnOnce() -> Result<T, E> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(err.to_py_err()),
        Err(panic) => Err(panic_error(&*panic)),
    }
}

/// Runs `work` on its own thread and waits for it without the GIL, handling Python signals
/// meanwhile: on Ctrl-C (KeyboardInterrupt) `cancel` is set, `work` stops at its next check, and
/// the interrupt is raised once it has.
pub(crate) fn interruptible<T: Send + 'static>(
    py: Python<'_>,
    cancel: Arc<AtomicBool>,
    work: impl FnOnce() -> hashprep::Result<T> + Send + 'static,
) -> PyResult<T> {
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let worker = std::thread::Builder::new()
        .name("hashprep-python-call".into())
        .spawn(move || {
            let _ = sender.send(catch_unwind(AssertUnwindSafe(work)));
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    let outcome = loop {
        match py.detach(|| receiver.recv_timeout(Duration::from_millis(100))) {
            Ok(outcome) => break outcome,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    cancel.store(true, Ordering::Relaxed);
                    let _ = py.detach(|| receiver.recv());
                    let _ = worker.join();
                    return Err(interrupt);
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                break Err(Box::new("the worker thread ended without an answer"))
            }
        }
    };
    let _ = worker.join();
    match outcome {
        Ok(result) => result.map_err(|e| to_py(&e)),
        Err(panic) => Err(panic_error(&*panic)),
    }
}

fn panic_error(panic: &(dyn std::any::Any + Send)) -> PyErr {
    PyRuntimeError::new_err(format!(
        "internal error (a bug): {}",
        hashprep::util::panic_message(panic)
    ))
}

/// A JSON-serializable value as the Python object `json.loads` makes of it.
pub(crate) fn to_python<'py>(
    py: Python<'py>,
    value: &(impl serde::Serialize + ?Sized),
) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// A Python object (dicts, lists, numbers, strings) as a serde value, through `json.dumps`.
pub(crate) fn from_python<T: serde::de::DeserializeOwned>(value: &Bound<'_, PyAny>) -> PyResult<T> {
    let text: String = value
        .py()
        .import("json")?
        .call_method1("dumps", (value,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| Error::new_err(e.to_string()))
}

/// Panics on purpose, for the tests of the panic -> `RuntimeError` path: inside [`detached`]
/// or, with `on_thread`, inside [`interruptible`]. Not part of the API.
#[pyfunction]
pub(crate) fn _panic_for_tests(py: Python<'_>, on_thread: bool) -> PyResult<()> {
    fn boom() -> hashprep::Result<()> {
        panic!("a deliberate panic")
    }
    if on_thread {
        interruptible(py, Arc::new(AtomicBool::new(false)), boom)
    } else {
        detached(py, boom)
    }
}
