//! Links libtorch's CUDA libraries into every hashtrain executable (binary, tests, benches)
//! whenever the libtorch it builds against ships them.
//!
//! Nothing in hashtrain calls a symbol of `libtorch_cuda.so`: the library only registers
//! libtorch's CUDA hooks when it is loaded. The linker's default `--as-needed` therefore drops
//! it, and a binary built that way sees no GPU on any machine (tch-rs issue #980). Naming the
//! libraries between `--no-as-needed` and `--as-needed` keeps them among the binary's needed
//! libraries. Against a CPU-only libtorch nothing is added and the binary runs on the CPU.

use std::path::PathBuf;

/// The CUDA libraries of a libtorch build, in link order.
const CUDA_LIBRARIES: [&str; 2] = ["torch_cuda", "c10_cuda"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // torch-sys (links = "tch") hands its libtorch folder to the crates that depend on it.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib_dir = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from);
    let cuda = lib_dir.as_ref().is_some_and(|dir| {
        CUDA_LIBRARIES
            .iter()
            .all(|name| dir.join(format!("lib{name}.so")).exists())
    });
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if cuda && target_os == "linux" {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        for name in CUDA_LIBRARIES {
            println!("cargo:rustc-link-arg=-l{name}");
        }
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
    // What `hashtrain info` and the `--device cuda` refusal say about the build.
    let linked = cuda && target_os == "linux";
    println!("cargo:rustc-env=HASHTRAIN_CUDA_LINKED={}", u8::from(linked));
    println!(
        "cargo:rustc-env=HASHTRAIN_LIBTORCH_LIB={}",
        lib_dir.map(|d| d.display().to_string()).unwrap_or_default()
    );
}
