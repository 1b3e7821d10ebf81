//! Loader throughput: bucketed tokens per second delivered with one and with four routing
//! specs, B * T = 65,536, one worker and all workers. The anchor, measured in the same run, is
//! the same loader with no table (ids, targets and mask only), so the ratio is the price of
//! routing. Target: at least 20 million bucketed tokens per second per worker with one spec.
//!
//! Run: `cargo bench -p hashprep --bench loader` (data: the shipped Wikitext-103 text, GPT-2).

use std::path::{Path, PathBuf};
use std::time::Instant;

use hashprep::Format;
use hashprep::{build_table_files, tokenize, BuildTableRequest, RunOptions, TokenizeSettings};
use hashprep::{Loader, LoaderConfig};
use hashprep::{Method, TableSpec};

const BATCH: usize = 64;
const SEQ: usize = 1024;
const STEPS: u64 = 60;

fn prepare(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let inputs = ["valid", "test"].map(|s| repo.join(format!("data/wikitext-103/wiki.{s}.tokens")));
    let data = dir.join("data");
    tokenize(
        &TokenizeSettings::new(Format::Wikitext103, "gpt2"),
        &inputs,
        &data,
        &RunOptions::default(),
    )
    .unwrap();
    let tables = [
        Method::Balanced,
        Method::Random,
        Method::Bigram,
        Method::Previous,
    ]
    .iter()
    .map(|&method| {
        let out = dir.join(format!("{}.arrow", method.name()));
        build_table_files(&BuildTableRequest::from_data(
            TableSpec::new(method, 64),
            &data,
            &out,
        ))
        .unwrap();
        out
    })
    .collect();
    (data, tables)
}

/// Tokens per second delivering `STEPS` batches (best of three runs).
fn tokens_per_second(data: &Path, tables: &[PathBuf], workers: usize) -> f64 {
    let mut best = f64::MAX;
    for round in 0..3 {
        let config = LoaderConfig {
            drop_last: true,
            ..LoaderConfig::new(BATCH, SEQ, round)
        };
        let mut loader = Loader::new(data, tables, config).unwrap();
        let start = Instant::now();
        let mut tokens = 0usize;
        for batch in loader.take(STEPS, workers, 2 * workers) {
            let batch = batch.expect("batch");
            tokens += batch.input_ids.len();
            std::hint::black_box(&batch.routes);
        }
        assert_eq!(tokens, BATCH * SEQ * STEPS as usize);
        best = best.min(start.elapsed().as_secs_f64());
    }
    (BATCH * SEQ) as f64 * STEPS as f64 / best
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let (data, tables) = prepare(dir.path());
    let all = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "loader, B x T = {BATCH} x {SEQ} = {} tokens per batch, {STEPS} batches, {all} cores",
        BATCH * SEQ
    );
    println!(
        "{:<28} {:>8} {:>14} {:>18} {:>10}",
        "routing", "workers", "Mtokens/s", "Mtokens/s/worker", "vs anchor"
    );
    for workers in [1, all] {
        let anchor = tokens_per_second(&data, &[], workers);
        for (label, specs) in [
            ("anchor: no table", &tables[..0]),
            ("1 spec (balanced)", &tables[..1]),
            ("4 specs", &tables[..]),
        ] {
            let rate = if specs.is_empty() {
                anchor
            } else {
                tokens_per_second(&data, specs, workers)
            };
            println!(
                "{label:<28} {workers:>8} {:>14.1} {:>18.1} {:>9.2}x",
                rate / 1e6,
                rate / 1e6 / workers as f64,
                rate / anchor
            );
        }
    }
}
