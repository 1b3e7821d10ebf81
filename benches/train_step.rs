//! Step time of the sparse kinds against the dense model of the same active compute, and how
//! long training waits for the loader.
//!
//! `cargo bench -p hashtrain --bench train_step` (CPU), or with `BENCH_DEVICE=cuda` on a GPU.
//! Real text: Wikitext-103 validation through a word-level vocabulary (~7k ids), B x T =
//! 16 x 128, 4 layers of d = 256, D = 1024, one sparse layer (layer 3) of 16 experts.
//! Reported as ratios against the dense anchor measured in the same run:
//! - hash / dense: the cost of grouping by precomputed routes (target <= 1.10);
//! - hash / switch: what skipping the learned router, its device sort and host sync saves
//!   (target < 1);
//! - loader wait as a share of step time in a real `hashtrain run` (target < 1 %).

use std::path::{Path, PathBuf};
use std::time::Instant;

use hashprep::Format;
use hashprep::{build_table_files, tokenize, BuildTableRequest, RunOptions, TokenizeSettings};
use hashprep::{train_tokenizer, TokenizerKind, TrainOptions};
use hashprep::{Method, TableSpec};
use hashtrain::model::masked_nll;
use hashtrain::train::{run, DeviceBatch, Setup};
use hashtrain::RunConfig;

const WARMUP: u64 = 3;
const TIMED: u64 = 20;
/// Each kind is timed this many times, in turns; the fastest counts (the least disturbed).
const ROUNDS: usize = 3;

fn main() {
    let device = std::env::var("BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, table) = prepare(dir.path());
    println!(
        "device {device}, libtorch threads {}",
        tch::get_num_threads()
    );
    let kinds = [
        ("dense", String::new()),
        (
            "hash",
            format!(
                "[[model.sparse]]\nat = 3\nkind = \"hash\"\ntable = \"{}\"\n",
                table.display()
            ),
        ),
        (
            "switch",
            "[[model.sparse]]\nat = 3\nkind = \"switch\"\nexperts = 16\n".into(),
        ),
        (
            "token-switch",
            "[[model.sparse]]\nat = 3\nkind = \"token-switch\"\nexperts = 16\n".into(),
        ),
    ];
    let mut times: Vec<(&str, f64, f64)> = kinds
        .iter()
        .map(|(k, _)| (*k, f64::INFINITY, f64::INFINITY))
        .collect();
    for _ in 0..ROUNDS {
        for ((_, sparse), (_, step, passes)) in kinds.iter().zip(&mut times) {
            let (s, p) = step_ms(&config(&data, sparse, &device, 40));
            *step = step.min(s);
            *passes = passes.min(p);
        }
    }
    println!(
        "{:<14} {:>10} {:>9} {:>14} {:>9}",
        "kind", "step ms", "vs dense", "fwd+bwd ms", "vs dense"
    );
    let (_, dense_step, dense_passes) = times[0];
    for (kind, step, passes) in &times {
        println!(
            "{kind:<14} {step:>10.2} {:>8.3}x {passes:>14.2} {:>8.3}x",
            step / dense_step,
            passes / dense_passes
        );
    }
    let of = |k: &str| *times.iter().find(|t| t.0 == k).expect("measured");
    let (hash, switch) = (of("hash"), of("switch"));
    println!(
        "hash / dense  = {:.3} whole step, {:.3} forward + backward (target <= 1.10)",
        hash.1 / dense_step,
        hash.2 / dense_passes
    );
    println!(
        "hash / switch = {:.3} whole step, {:.3} forward + backward (target < 1)",
        hash.1 / switch.1,
        hash.2 / switch.2
    );

    let hash = format!(
        "[[model.sparse]]\nat = 3\nkind = \"hash\"\ntable = \"{}\"\n",
        table.display()
    );
    let config = config(&data, &hash, &device, 40);
    let summary = run(
        &config,
        &dir.path().join("run"),
        &hashtrain::RunOptions::default(),
    )
    .expect("run");
    println!(
        "loader wait in a 40-step hash run: {:.3} % of step time (target < 1 %), {:.0} tokens/s",
        summary.loader_wait * 100.0,
        summary.tokens_per_s
    );
}

/// Mean time (ms) of a whole training step over prebuilt batches (the loader is not in the
/// timing), and of its forward + backward alone (without the optimizer, whose work grows with
/// the parameter count: K experts hold K times the FFN's parameters).
fn step_ms(config: &RunConfig) -> (f64, f64) {
    let mut setup = Setup::open(config).expect("setup");
    let device = setup.trainer.device;
    let batches: Vec<DeviceBatch> = (0..4)
        .map(|i| DeviceBatch::new(&setup.loader.batch(i).expect("batch"), device))
        .collect();
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i64::try_from(i).unwrap_or(0));
        }
    };
    for step in 1..=WARMUP {
        let _ = setup.trainer.step(&batches[(step % 4) as usize], step);
    }
    sync();
    let started = Instant::now();
    for step in WARMUP + 1..=WARMUP + TIMED {
        let _ = setup.trainer.step(&batches[(step % 4) as usize], step);
    }
    sync();
    let whole = started.elapsed().as_secs_f64() * 1000.0 / TIMED as f64;
    let started = Instant::now();
    for step in 0..TIMED {
        let batch = &batches[(step % 4) as usize];
        let out = setup
            .trainer
            .model
            .forward(&batch.input_ids, &batch.routes, true);
        let (nll, count) = masked_nll(&out.logits, &batch.targets, &batch.mask);
        setup.trainer.adam.zero_grad();
        (nll / count + out.aux_loss).backward();
    }
    sync();
    (
        whole,
        started.elapsed().as_secs_f64() * 1000.0 / TIMED as f64,
    )
}

fn config(data: &Path, sparse: &str, device: &str, steps: u64) -> RunConfig {
    let text = format!(
        "[data]\ntrain = \"{d}\"\nvalid = \"{d}\"\n\n[model]\nlayers = 4\nd_model = 256\nd_ff = 1024\nheads = 4\ncontext = 128\n{sparse}\n[train]\nsteps = {steps}\nbatch_size = 16\nwarmup = 10\neval_batches = 4\nlog_every = 10\ndevice = \"{device}\"\n",
        d = data.display()
    );
    RunConfig::parse(&text, Path::new("bench.toml"), &[]).expect("bench config")
}

/// Wikitext-103 validation through a word-level vocabulary, and a balanced table of 16.
fn prepare(dir: &Path) -> (PathBuf, PathBuf) {
    let text =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/wikitext-103/wiki.valid.tokens");
    let docs = hashprep::read_documents(
        std::slice::from_ref(&text),
        &Format::Wikitext103,
        hashprep::OnError::Fail,
    )
    .expect("wikitext")
    .map(|r| r.expect("doc").text);
    let tokenizer = train_tokenizer(
        &TrainOptions::new(TokenizerKind::Word { min_count: 3 }),
        docs,
    )
    .expect("train");
    let tokenizer_path = dir.join("word.json");
    std::fs::write(&tokenizer_path, tokenizer.json()).expect("write tokenizer");
    let mut settings = TokenizeSettings::new(Format::Wikitext103, tokenizer_path.to_string_lossy());
    settings.eos_token = Some("<eos>".into());
    let data = dir.join("data");
    let options = RunOptions {
        progress: false,
        ..RunOptions::default()
    };
    tokenize(&settings, &[text], &data, &options).expect("tokenize");
    let table = dir.join("balanced.arrow");
    build_table_files(&BuildTableRequest::from_data(
        TableSpec::new(Method::Balanced, 16),
        &data,
        &table,
    ))
    .expect("table");
    (data, table)
}
