//! Baseline token embeddings for `clustered` / `dispersed`: a `.npy` matrix (float32/float64,
//! `[V, d]`) or one tensor of a safetensors file (f32, f64, f16, bf16).

use std::path::Path;

use ndarray::Array2;

use crate::error::{Error, Result};

/// Loads a `[rows, dim]` embedding matrix as f64, refusing NaN and infinities.
///
/// # Errors
/// Unreadable file, unsupported dtype or layout, a tensor name that is missing or ambiguous,
/// or a non-finite value (named by row).
pub(crate) fn load_embeddings(path: &Path, tensor: Option<&str>) -> Result<Array2<f64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let matrix = if bytes.starts_with(crate::npy::MAGIC) {
        read_npy(path, &bytes)?
    } else {
        read_safetensors(path, &bytes, tensor)?
    };
    if let Some((row, _)) = matrix
        .indexed_iter()
        .find(|(_, v)| !v.is_finite())
        .map(|((r, c), _)| (r, c))
    {
        return Err(bad(
            path,
            format!("embedding row {row} holds NaN or infinity"),
        ));
    }
    Ok(matrix)
}

/// An embeddings file that is not what it should be.
fn bad(path: &Path, message: impl std::fmt::Display) -> Error {
    Error::corrupt(path, message.to_string())
}

/// A `.npy` matrix: little-endian f4/f8, C or Fortran order, two dimensions.
fn read_npy(path: &Path, bytes: &[u8]) -> Result<Array2<f64>> {
    let (header, data) = crate::npy::decode(bytes).map_err(|e| bad(path, e))?;
    let [rows, dim] = header.shape[..] else {
        return Err(bad(
            path,
            format!(
                "embeddings must be 2-D [vocab, dim], got shape {:?}",
                header.shape
            ),
        ));
    };
    let fortran = header.fortran_order;
    let descr = header.descr.as_str();
    let values: Vec<f64> = match descr {
        "<f4" => data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4"))))
            .collect(),
        "<f8" => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect(),
        other => {
            return Err(bad(
                path,
                format!("unsupported dtype {other:?} (expected float32 <f4 or float64 <f8)"),
            ))
        }
    };
    to_matrix(path, values, rows, dim, fortran)
}

fn to_matrix(
    path: &Path,
    values: Vec<f64>,
    rows: usize,
    dim: usize,
    fortran: bool,
) -> Result<Array2<f64>> {
    if values.len() != rows * dim {
        return Err(bad(
            path,
            format!(
                "holds {} values, shape [{rows}, {dim}] needs {}",
                values.len(),
                rows * dim
            ),
        ));
    }
    if fortran {
        Ok(Array2::from_shape_vec((dim, rows), values)
            .map_err(|e| bad(path, e))?
            .reversed_axes()
            .as_standard_layout()
            .into_owned())
    } else {
        Array2::from_shape_vec((rows, dim), values).map_err(|e| bad(path, e))
    }
}

fn read_safetensors(path: &Path, bytes: &[u8], tensor: Option<&str>) -> Result<Array2<f64>> {
    use safetensors::{Dtype, SafeTensors};
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| bad(path, format!("neither .npy nor safetensors: {e}")))?;
    let name = if let Some(name) = tensor {
        name.to_owned()
    } else {
        let matrices: Vec<String> = file
            .tensors()
            .into_iter()
            .filter(|(_, t)| t.shape().len() == 2)
            .map(|(n, _)| n)
            .collect();
        let [only] = &matrices[..] else {
            return Err(bad(
                path,
                format!("name the embedding tensor with `tensor` (2-D tensors: {matrices:?})"),
            ));
        };
        only.clone()
    };
    let view = file
        .tensor(&name)
        .map_err(|_| bad(path, format!("no tensor {name:?}")))?;
    let [rows, dim] = view.shape()[..] else {
        return Err(bad(
            path,
            format!(
                "tensor {name:?} has shape {:?}, expected [vocab, dim]",
                view.shape()
            ),
        ));
    };
    let data = view.data();
    let values: Vec<f64> = match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().expect("4"))))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64())
            .collect(),
        other => {
            return Err(bad(
                path,
                format!("tensor {name:?} has dtype {other:?}; expected a float type"),
            ))
        }
    };
    to_matrix(path, values, rows, dim, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a `.npy` file the way numpy does (version 1.0 header).
    pub(crate) fn write_npy_f32(path: &Path, rows: usize, dim: usize, values: &[f32]) {
        let mut bytes = crate::npy::encode_header("<f4", &[rows, dim]);
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn reads_npy_and_refuses_nan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        write_npy_f32(&path, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let m = load_embeddings(&path, None).unwrap();
        assert_eq!(m.shape(), &[2, 3]);
        assert_eq!(m[[1, 2]], 6.0);
        write_npy_f32(&path, 2, 3, &[1.0, 2.0, 3.0, 4.0, f32::NAN, 6.0]);
        let err = load_embeddings(&path, None).unwrap_err().to_string();
        assert!(err.contains("row 1"), "{err}");
    }

    #[test]
    fn reads_a_named_safetensors_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.safetensors");
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let bias: Vec<u8> = [0.5f32, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensors = vec![
            (
                "embed.weight",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 2], &data)
                    .unwrap(),
            ),
            (
                "embed.bias",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &bias)
                    .unwrap(),
            ),
        ];
        safetensors::serialize_to_file(tensors, None, &path).unwrap();
        let m = load_embeddings(&path, None).unwrap();
        assert_eq!(m.row(1).to_vec(), vec![3.0, 4.0]);
        assert!(load_embeddings(&path, Some("missing")).is_err());
    }
}
