//! hashtrain's executables keep libtorch's CUDA library among their needed libraries when the
//! libtorch they are built against has one (the linker's `--as-needed` would drop it, and
//! libtorch would then see no GPU on any machine), and `hashtrain info` says so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The libtorch `lib/` hashtrain was built against (from build.rs).
fn libtorch_lib() -> PathBuf {
    PathBuf::from(env!("HASHTRAIN_LIBTORCH_LIB"))
}

fn libtorch_has_cuda() -> bool {
    libtorch_lib().join("libtorch_cuda.so").exists()
}

/// The `NEEDED` entries of an ELF executable's dynamic section, as `readelf -d` lists them.
fn needed(executable: &Path) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(executable)
        .output()
        .expect("readelf (binutils) on PATH");
    assert!(out.status.success(), "readelf {}", executable.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split('[').nth(1)?.trim_end_matches(']').to_string()))
        .collect()
}

/// The `train_step` bench executable in this profile's `deps/`, newest first. `make test` builds
/// it (`cargo test -p hashtrain --bench train_step --no-run`).
fn bench_executable() -> Option<PathBuf> {
    let deps = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&deps)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("train_step-") && p.extension().is_none()
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

#[test]
fn executables_need_libtorch_cuda_when_libtorch_ships_it() {
    if !libtorch_has_cuda() {
        // A CPU-only libtorch: nothing to link, and the binaries must not ask for it.
        let libs = needed(Path::new(env!("CARGO_BIN_EXE_hashtrain")));
        assert!(!libs.iter().any(|l| l.contains("cuda")), "{libs:?}");
        return;
    }
    let bench = bench_executable().expect(
        "the train_step bench executable: build it with \
         `cargo test -p hashtrain --bench train_step --no-run` (make test does)",
    );
    let this_test = std::env::current_exe().unwrap();
    for exe in [
        Path::new(env!("CARGO_BIN_EXE_hashtrain")),
        &bench,
        &this_test,
    ] {
        let libs = needed(exe);
        for lib in ["libtorch_cuda.so", "libc10_cuda.so", "libtorch_cpu.so"] {
            assert!(
                libs.iter().any(|l| l == lib),
                "{} does not need {lib}: {libs:?}",
                exe.display()
            );
        }
    }
}

#[test]
fn info_reports_the_cuda_library_and_cuda_refusals_say_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_hashtrain"))
        .args(["info", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let has_cuda = libtorch_has_cuda();
    assert_eq!(report["cuda_linked"], has_cuda, "{report}");
    assert_eq!(report["cuda_library_loaded"], has_cuda, "{report}");
    // The libtorch loaded is the one the venv gives on LD_LIBRARY_PATH, with its version.
    let loaded = PathBuf::from(report["libtorch_lib"].as_str().expect("libtorch_lib"));
    assert_eq!(
        loaded.canonicalize().unwrap(),
        libtorch_lib().canonicalize().unwrap()
    );
    assert!(
        report["libtorch_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("2.11.")),
        "{report}"
    );
    let devices = report["devices"].as_array().unwrap().len();

    // A device past the last one is refused, naming which of the two cases this is.
    let beyond = format!("cuda:{devices}");
    let err = hashtrain::parse_device(&beyond).unwrap_err().to_string();
    if has_cuda {
        assert!(
            err.contains(&format!(
                "CUDA library is loaded but sees {devices} CUDA device(s)"
            )),
            "{err}"
        );
        assert_eq!(
            report["cuda_runtime"].as_str().map(str::is_empty),
            Some(false)
        );
    } else {
        assert!(
            err.contains("built without libtorch's CUDA library"),
            "{err}"
        );
    }
    let text = Command::new(env!("CARGO_BIN_EXE_hashtrain"))
        .arg("info")
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    let loaded_line = if has_cuda {
        "CUDA library: loaded"
    } else {
        "CUDA library: not loaded"
    };
    assert!(text.contains(loaded_line), "{text}");
    assert!(text.contains(&format!("CUDA devices: {devices}")), "{text}");
}
