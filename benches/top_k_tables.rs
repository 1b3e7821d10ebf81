//! Building DeepSeek-V4-sized top-k tables: 129,280 ids (DeepSeek-V4's vocabulary), K = 256,
//! k = 6, Zipf counts over a billion tokens (exponent 1.0, the shape of real text, where the
//! most frequent token alone bounds the maximum load, and 0.7, flatter, where `k * total / K`
//! does). Prints the build time of `random` and of `balanced` (greedy + refinement) and the
//! balance reached; the anchor is the top-1 build of the same method in the same run, so the
//! ratio is the price of k.
//!
//! Run: `cargo bench -p hashprep --bench top_k_tables`.

use std::path::Path;
use std::time::Instant;

use hashprep::{build_table_files, BuildTableRequest, Method, TableSpec, TokenCounts};

const VOCAB: usize = 129_280;
const EXPERTS: u32 = 256;
const TOP_K: u32 = 6;

fn zipf_counts(exponent: f64) -> TokenCounts {
    let total = 1e9;
    let weight = |r: usize| (r as f64).powf(-exponent);
    let norm: f64 = (1..=VOCAB).map(weight).sum();
    TokenCounts::from_vec(
        (1..=VOCAB)
            .map(|r| (total * weight(r) / norm).round() as u64)
            .collect(),
    )
}

fn build(counts: &Path, out: &Path, method: Method, top_k: u32) -> (f64, f64) {
    let spec = TableSpec {
        top_k,
        ..TableSpec::new(method, EXPERTS)
    };
    let request = BuildTableRequest {
        data: None,
        counts: Some(counts.to_owned()),
        ..BuildTableRequest::from_data(spec, Path::new(""), out)
    };
    let started = Instant::now();
    let report = build_table_files(&request).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let stats = report.streams[0].stats.as_ref().unwrap();
    (seconds, stats.ratio_to_bound)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let counts = dir.path().join("counts.arrow");
    for exponent in [1.0, 0.7] {
        zipf_counts(exponent).write(&counts, "blake3:zipf").unwrap();
        println!("{VOCAB} ids, K = {EXPERTS}, Zipf counts (exponent {exponent}) over 1e9 tokens");
        compare(dir.path(), &counts);
    }
}

fn compare(dir: &Path, counts: &Path) {
    for method in [Method::Random, Method::Balanced] {
        let out = dir.join(format!("{}.arrow", method.name()));
        let (anchor, anchor_ratio) = build(counts, &out, method, 1);
        let (seconds, ratio) = build(counts, &out, method, TOP_K);
        println!(
            "{:>8}: top-1 {anchor:.3} s (max load / bound {anchor_ratio:.4}), top-{TOP_K} {seconds:.3} s \
             (max load / bound {ratio:.4}); top-{TOP_K} / top-1 = {:.2}x",
            method.name(),
            seconds / anchor
        );
    }
}
