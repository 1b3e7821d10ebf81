//! Step time of the sparse kinds against the dense model of the same active compute, and how
//! long training waits for the loader.
//!
//! `cargo bench -p hashtrain --bench train_step` (CPU), or on a GPU:
//! `BENCH_DEVICE=cuda BENCH_MODEL=paper cargo bench -p hashtrain --bench train_step`.
//! Real text: Wikitext-103 validation through a word-level vocabulary (~7k ids).
//! - `BENCH_MODEL=small` (default): B x T = 16 x 128, 4 layers of d = 256, D = 1024, one sparse
//!   layer (layer 3) of 16 experts.
//! - `BENCH_MODEL=paper`: the paper's Reddit-sized decoder, 11 layers of d = 1024, D = 4096,
//!   16 heads, sparse layer 7 of 64 experts; B x T from `BENCH_BATCH` x `BENCH_CONTEXT`
//!   (default 64 x 256).
//! - `BENCH_TEXT`: the Wikitext-103 validation file (default: this checkout's `data/`).
//! - `BENCH_PRECISION=fp32|bf16` (default bf16 on CUDA, fp32 on the CPU); the experts run
//!   with `train.expert_matmul = "auto"` (the grouped GEMM on CUDA).
//!
//! Reported as ratios against the dense anchor measured in the same run:
//! - hash / dense: the cost of grouping by precomputed routes (target <= 1.10; GPU <= 1.05);
//! - hash / switch: what skipping the learned router, its device sort and host sync saves
//!   (target < 1);
//! - host ahead: the share of a step the host spends not enqueueing it (it runs ahead of the
//!   device; about 0 on the CPU, where every op runs as it is enqueued);
//! - model FLOPs utilisation on CUDA: `6 N tokens + 12 L T d tokens` per step (N: active
//!   parameters) over the step time, against `BENCH_PEAK_TFLOPS` (default 989, an H100 SXM's
//!   dense bf16);
//! - loader wait as a share of step time in a real `hashtrain run` (target < 1 %).

use std::path::{Path, PathBuf};
use std::time::Instant;

use hashprep::Format;
use hashprep::{build_table_files, tokenize, BuildTableRequest, RunOptions, TokenizeSettings};
use hashprep::{train_tokenizer, TokenizerKind, TrainOptions};
use hashprep::{Method, TableSpec};
use hashtrain::RunConfig;
use hashtrain::{masked_nll, run, DeviceBatch, Setup};

const WARMUP: u64 = 3;
const TIMED: u64 = 20;
/// Each kind is timed this many times, in turns; the fastest counts (the least disturbed).
const ROUNDS: usize = 3;

/// The model measured.
struct Shape {
    layers: usize,
    d_model: usize,
    d_ff: usize,
    heads: usize,
    context: usize,
    batch: usize,
    sparse_at: usize,
    experts: u32,
    precision: String,
    device: String,
}

impl Shape {
    fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok();
        let number = |k: &str, default: usize| {
            env(k).map_or(default, |v| {
                v.parse().unwrap_or_else(|_| panic!("{k}={v}: a number"))
            })
        };
        let device = env("BENCH_DEVICE").unwrap_or_else(|| "cpu".into());
        let precision = env("BENCH_PRECISION").unwrap_or_else(|| {
            if device.starts_with("cuda") {
                "bf16"
            } else {
                "fp32"
            }
            .into()
        });
        match env("BENCH_MODEL").as_deref().unwrap_or("small") {
            "small" => Self {
                layers: 4,
                d_model: 256,
                d_ff: 1024,
                heads: 4,
                context: number("BENCH_CONTEXT", 128),
                batch: number("BENCH_BATCH", 16),
                sparse_at: 3,
                experts: 16,
                precision,
                device,
            },
            "paper" => Self {
                layers: 11,
                d_model: 1024,
                d_ff: 4096,
                heads: 16,
                context: number("BENCH_CONTEXT", 256),
                batch: number("BENCH_BATCH", 64),
                sparse_at: 7,
                experts: 64,
                precision,
                device,
            },
            other => panic!("BENCH_MODEL={other}: small or paper"),
        }
    }

    /// Training FLOPs of one step with one expert active per token.
    fn flops_per_step(&self, vocab: usize) -> f64 {
        let (l, d, f) = (self.layers as f64, self.d_model as f64, self.d_ff as f64);
        let active = l * (4.0 * d * d + 2.0 * d * f) + vocab as f64 * d;
        let tokens = (self.batch * self.context) as f64;
        6.0 * active * tokens + 12.0 * l * self.context as f64 * d * tokens
    }
}

fn main() {
    let shape = Shape::from_env();
    let dir = tempfile::tempdir().expect("temp dir");
    let (data, table, vocab) = prepare(dir.path(), shape.experts);
    println!(
        "device {}, {}, libtorch threads {}; {} layers d = {} D = {}, sparse layer {} of {} experts, B x T = {} x {}",
        shape.device,
        shape.precision,
        tch::get_num_threads(),
        shape.layers,
        shape.d_model,
        shape.d_ff,
        shape.sparse_at,
        shape.experts,
        shape.batch,
        shape.context
    );
    let (at, experts) = (shape.sparse_at, shape.experts);
    let kinds = [
        ("dense", String::new()),
        (
            "hash",
            format!(
                "[[model.sparse]]\nat = {at}\nkind = \"hash\"\ntable = \"{}\"\n",
                table.display()
            ),
        ),
        (
            "switch",
            format!("[[model.sparse]]\nat = {at}\nkind = \"switch\"\nexperts = {experts}\n"),
        ),
        (
            "token-switch",
            format!("[[model.sparse]]\nat = {at}\nkind = \"token-switch\"\nexperts = {experts}\n"),
        ),
    ];
    let mut times: Vec<(&str, Timing)> =
        kinds.iter().map(|(k, _)| (*k, Timing::default())).collect();
    for _ in 0..ROUNDS {
        for ((_, sparse), (_, best)) in kinds.iter().zip(&mut times) {
            best.keep_fastest(step_ms(&config(&data, sparse, &shape, 40)));
        }
    }
    print_table(&times, &shape, vocab);
    let of = |k: &str| times.iter().find(|t| t.0 == k).expect("measured").1;
    let (hash, switch, dense) = (of("hash"), of("switch"), of("dense"));
    let (dense_step, dense_passes) = (dense.step, dense.passes);
    println!(
        "hash / dense  = {:.3} whole step, {:.3} forward + backward (target <= 1.10)",
        hash.step / dense_step,
        hash.passes / dense_passes
    );
    println!(
        "hash / switch = {:.3} whole step, {:.3} forward + backward (target < 1)",
        hash.step / switch.step,
        hash.passes / switch.passes
    );

    let hash = format!(
        "[[model.sparse]]\nat = {at}\nkind = \"hash\"\ntable = \"{}\"\n",
        table.display()
    );
    let config = config(&data, &hash, &shape, 40);
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

/// Each kind's times against dense, the host's lead and (CUDA) model FLOPs utilisation.
fn print_table(times: &[(&str, Timing)], shape: &Shape, vocab: usize) {
    let peak_tflops: f64 = std::env::var("BENCH_PEAK_TFLOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(989.0);
    let step_tflop = shape.flops_per_step(vocab) / 1e12;
    println!(
        "{:<14} {:>10} {:>9} {:>14} {:>9} {:>11} {:>7}",
        "kind", "step ms", "vs dense", "fwd+bwd ms", "vs dense", "host ahead", "MFU"
    );
    let dense = times[0].1;
    let on_gpu = shape.device.starts_with("cuda");
    for (kind, t) in times {
        let mfu = step_tflop / (t.step / 1000.0) / peak_tflops;
        println!(
            "{kind:<14} {:>10.2} {:>8.3}x {:>14.2} {:>8.3}x {:>10.1}% {:>7}",
            t.step,
            t.step / dense.step,
            t.passes,
            t.passes / dense.passes,
            100.0 * (1.0 - t.host / t.step).max(0.0_f64),
            if on_gpu {
                format!("{:.1}%", 100.0 * mfu)
            } else {
                "-".into()
            }
        );
    }
    if on_gpu {
        println!(
            "MFU: {step_tflop:.3} TFLOP per step (one expert active) over a peak of {peak_tflops} TFLOP/s"
        );
    }
}

/// Milliseconds per step of one kind.
#[derive(Clone, Copy)]
struct Timing {
    /// A whole training step.
    step: f64,
    /// The host's time to enqueue a step (no device wait).
    host: f64,
    /// Forward + backward alone.
    passes: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            step: f64::INFINITY,
            host: f64::INFINITY,
            passes: f64::INFINITY,
        }
    }
}

impl Timing {
    fn keep_fastest(&mut self, other: Timing) {
        if other.step < self.step {
            (self.step, self.host) = (other.step, other.host);
        }
        self.passes = self.passes.min(other.passes);
    }
}

/// Mean time (ms) of a whole training step over prebuilt batches (the loader is not in the
/// timing), of the host's part of it, and of its forward + backward alone (without the
/// optimizer, whose work grows with the parameter count: K experts hold K times the FFN's
/// parameters).
fn step_ms(config: &RunConfig) -> Timing {
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
    let mut host = 0.0;
    let started = Instant::now();
    for step in WARMUP + 1..=WARMUP + TIMED {
        let enqueue = Instant::now();
        let _ = setup.trainer.step(&batches[(step % 4) as usize], step);
        host += enqueue.elapsed().as_secs_f64();
    }
    sync();
    let whole = started.elapsed().as_secs_f64() * 1000.0 / TIMED as f64;
    let started = Instant::now();
    for step in 0..TIMED {
        let batch = &batches[(step % 4) as usize];
        let out = setup
            .trainer
            .model
            .forward(&batch.input_ids, &batch.routes, None, true);
        let (nll, count) = masked_nll(&out.logits, &batch.targets, &batch.mask);
        setup.trainer.adam.zero_grad();
        (nll / count + out.aux_loss).backward();
    }
    sync();
    Timing {
        step: whole,
        host: host * 1000.0 / TIMED as f64,
        passes: started.elapsed().as_secs_f64() * 1000.0 / TIMED as f64,
    }
}

fn config(data: &Path, sparse: &str, shape: &Shape, steps: u64) -> RunConfig {
    let text = format!(
        "[data]\ntrain = \"{d}\"\nvalid = \"{d}\"\n\n[model]\nlayers = {}\nd_model = {}\nd_ff = {}\nheads = {}\ncontext = {}\n{sparse}\n[train]\nsteps = {steps}\nbatch_size = {}\nwarmup = 10\neval_batches = 4\nlog_every = 10\ndevice = \"{}\"\nprecision = \"{}\"\n",
        shape.layers,
        shape.d_model,
        shape.d_ff,
        shape.heads,
        shape.context,
        shape.batch,
        shape.device,
        shape.precision,
        d = data.display()
    );
    RunConfig::parse(&text, Path::new("bench.toml"), &[]).expect("bench config")
}

/// Wikitext-103 validation through a word-level vocabulary, a balanced table of `experts`, and
/// the vocabulary's size.
fn prepare(dir: &Path, experts: u32) -> (PathBuf, PathBuf, usize) {
    // BENCH_TEXT: where the executable runs away from this checkout (scripts/gpu-check.sh).
    let text = std::env::var_os("BENCH_TEXT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/wikitext-103/wiki.valid.tokens"),
        PathBuf::from,
    );
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
    let vocab = tokenizer.vocab_size();
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
        TableSpec::new(Method::Balanced, experts),
        &data,
        &table,
    ))
    .expect("table");
    (data, table, vocab)
}
