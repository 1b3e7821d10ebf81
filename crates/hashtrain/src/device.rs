//! What this hashtrain sees of libtorch and the GPUs (`hashtrain info`), and the device names
//! a config or flag gives (`cpu`, `cuda`, `cuda:N`).
//!
//! Two facts are told apart because they have different fixes: whether the binary was linked
//! with libtorch's CUDA library (without it libtorch registers no CUDA hooks and sees no GPU on
//! any machine: rebuild against a CUDA libtorch), and how many devices that library finds
//! (none without a GPU or its driver).

use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::error::{DeviceProblem, Error, Result};

/// Whether build.rs linked libtorch's CUDA libraries into this executable.
const CUDA_LINKED: bool = matches!(env!("HASHTRAIN_CUDA_LINKED").as_bytes(), b"1");

/// The libtorch `lib/` folder this executable was built against.
const BUILT_AGAINST: &str = env!("HASHTRAIN_LIBTORCH_LIB");

/// What `hashtrain info` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    /// hashtrain's own version.
    pub hashtrain: String,
    /// The libtorch `lib/` folder hashtrain was built against.
    pub built_against: PathBuf,
    /// Whether libtorch's CUDA libraries were linked in at build time.
    pub cuda_linked: bool,
    /// The `lib/` folder of the libtorch loaded now (from the process's mapped libraries).
    pub libtorch_lib: Option<PathBuf>,
    /// That libtorch's version (`torch/version.py` or libtorch's `build-version`).
    pub libtorch_version: Option<String>,
    /// Whether `libtorch_cuda.so` is loaded in this process.
    pub cuda_library_loaded: bool,
    /// The CUDA runtime libtorch was built with (`13.0`), where its CUDA library is loaded.
    pub cuda_runtime: Option<String>,
    /// cuDNN's version, where libtorch can use it.
    pub cudnn: Option<String>,
    /// The CUDA devices libtorch sees.
    pub devices: Vec<GpuReport>,
}

/// One CUDA device.
#[derive(Debug, Clone, Serialize)]
pub struct GpuReport {
    /// `cuda:N`.
    pub device: String,
    /// The GPU's model as the driver names it, where the driver says.
    pub name: Option<String>,
    /// Whether a bfloat16 matrix product ran on it.
    pub bf16: bool,
}

impl DeviceReport {
    /// Looks at the process as it runs.
    pub fn collect() -> Self {
        let libtorch_lib =
            loaded_library("libtorch_cpu.so").and_then(|p| p.parent().map(Into::into));
        let libtorch_version = libtorch_lib.as_deref().and_then(libtorch_version);
        let cuda_library_loaded = loaded_library("libtorch_cuda.so").is_some();
        let count = device_count(cuda_library_loaded);
        let names = driver_gpu_names();
        let devices = (0..count)
            .map(|i| GpuReport {
                device: format!("cuda:{i}"),
                name: names.get(i).cloned(),
                bf16: bf16_runs(Device::Cuda(i)),
            })
            .collect();
        // libtorch throws when these are asked of a build without its CUDA library.
        let (cuda_runtime, cudnn) = if cuda_library_loaded {
            let cudart = tch::utils::version_cudart();
            let cudnn = tch::Cuda::cudnn_is_available().then(tch::utils::version_cudnn);
            (
                Some(format!("{}.{}", cudart / 1000, cudart % 1000 / 10)),
                cudnn.map(version_number),
            )
        } else {
            (None, None)
        };
        Self {
            hashtrain: env!("CARGO_PKG_VERSION").into(),
            built_against: BUILT_AGAINST.into(),
            cuda_linked: CUDA_LINKED,
            libtorch_lib,
            libtorch_version,
            cuda_library_loaded,
            cuda_runtime,
            cudnn,
            devices,
        }
    }

    /// The report as lines for a terminal.
    pub fn lines(&self) -> Vec<String> {
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        let mut lines = vec![
            format!("hashtrain {}", self.hashtrain),
            format!(
                "libtorch: {} ({})",
                or_unknown(&self.libtorch_version),
                self.libtorch_lib.as_deref().map_or_else(
                    || "not found among the loaded libraries".into(),
                    |p| p.display().to_string()
                )
            ),
            format!(
                "built against: {} (CUDA library {})",
                self.built_against.display(),
                if self.cuda_linked {
                    "linked"
                } else {
                    "not linked: that libtorch has none"
                }
            ),
            format!(
                "CUDA library: {}",
                if self.cuda_library_loaded {
                    "loaded"
                } else {
                    "not loaded"
                }
            ),
        ];
        if self.cuda_library_loaded {
            lines.push(format!("CUDA runtime: {}", or_unknown(&self.cuda_runtime)));
            lines.push(format!(
                "cuDNN: {}",
                self.cudnn.clone().unwrap_or_else(|| "not available".into())
            ));
        }
        lines.push(format!("CUDA devices: {}", self.devices.len()));
        for gpu in &self.devices {
            lines.push(format!(
                "  {}: {}, bf16 {}",
                gpu.device,
                or_unknown(&gpu.name),
                if gpu.bf16 { "yes" } else { "no" }
            ));
        }
        lines
    }
}

/// Parses `cpu`, `cuda` or `cuda:N` and checks the device is there.
///
/// # Errors
/// Another name, or a CUDA device libtorch does not see; the message tells a hashtrain built
/// without libtorch's CUDA library from one whose CUDA library finds too few devices.
pub fn parse_device(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match name.strip_prefix("cuda:").and_then(|i| i.parse().ok()) {
            Some(i) => Device::Cuda(i),
            None => {
                return Err(device_error(name, DeviceProblem::UnknownName));
            }
        },
    };
    if let Device::Cuda(i) = device {
        if loaded_library("libtorch_cuda.so").is_none() {
            let built_against = BUILT_AGAINST.to_owned();
            return Err(device_error(
                name,
                DeviceProblem::NoCudaLibrary { built_against },
            ));
        }
        let available = device_count(true);
        if i >= available {
            return Err(device_error(name, DeviceProblem::NotSeen { available }));
        }
    }
    Ok(device)
}

fn device_error(name: &str, problem: DeviceProblem) -> Error {
    Error::Device {
        name: name.to_owned(),
        problem,
    }
}

/// The CUDA devices libtorch sees (none without its CUDA library).
fn device_count(cuda_library_loaded: bool) -> usize {
    if cuda_library_loaded && tch::Cuda::is_available() {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    } else {
        0
    }
}

/// Whether a small bfloat16 matrix product runs on `device`.
fn bf16_runs(device: Device) -> bool {
    let ones = || Tensor::f_ones([8, 8], (Kind::BFloat16, device));
    let product = ones().and_then(|a| ones().and_then(|b| a.f_matmul(&b)));
    product
        .and_then(|p| p.f_to_kind(Kind::Float))
        .and_then(|p| p.f_double_value(&[0, 0]))
        .is_ok_and(|v| v == 8.0)
}

/// The path of a shared library mapped into this process whose file name is `name`.
fn loaded_library(name: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .map(Path::new)
        .find(|path| path.file_name().is_some_and(|f| f == name))
        .map(Path::to_path_buf)
}

/// `2.11.0+cu130`: PyTorch's `version.py` beside its `lib/`, or a libtorch archive's
/// `build-version`.
fn libtorch_version(lib: &Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    let text = std::fs::read_to_string(root.join("build-version")).ok()?;
    Some(text.trim().to_string())
}

/// cuDNN's version number (`91000`) as `9.10.0`.
fn version_number(v: i64) -> String {
    format!("{}.{}.{}", v / 10000, v % 10000 / 100, v % 100)
}

/// The GPU models the NVIDIA driver lists, in bus order.
fn driver_gpu_names() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    let mut gpus: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    gpus.sort();
    gpus.iter()
        .filter_map(|dir| {
            let info = std::fs::read_to_string(dir.join("information")).ok()?;
            let model = info.lines().find_map(|l| l.strip_prefix("Model:"))?;
            Some(model.trim().to_string())
        })
        .collect()
}
