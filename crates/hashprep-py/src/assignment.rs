//! `balanced_assignment`: BASE layers' routing of one batch, the code hashtrain runs.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// The expert of each of the N tokens of `scores` (float32 `[N, K]`, the router's scores),
/// every expert taking N / K of them (the first N mod K experts one more) and the summed
/// scores as high as possible: BASE layers' balanced assignment, hashtrain's own code. uint32
/// `[N]`. Raises ValueError when a score is not finite.
#[pyfunction]
pub(crate) fn balanced_assignment<'py>(
    py: Python<'py>,
    scores: PyReadonlyArray2<'py, f32>,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let experts = scores.shape()[1];
    let flat = scores.as_array().iter().copied().collect::<Vec<f32>>();
    let assigned = py.detach(|| hashprep::balanced_assignment(&flat, experts));
    match assigned {
        Some(experts) => Ok(experts.into_pyarray(py)),
        None if experts == 0 => Err(PyValueError::new_err(
            "scores of 0 experts: nothing to assign to",
        )),
        None => Err(PyValueError::new_err(
            "a score is not finite (NaN or infinite): the router's scores cannot be assigned",
        )),
    }
}
