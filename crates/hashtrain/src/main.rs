//! The `hashtrain` command line. Results go to stdout (`--json` for scripts), progress to
//! stderr. Exit codes: 0 success, 2 bad input (the message names the file or setting),
//! 1 internal failure.
// libtorch counts sizes and indices in i64; tensor code converts at every call.
#![allow(clippy::cast_possible_wrap, clippy::many_single_char_names)]

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use hashtrain::{evaluate, parse_device, DeviceReport, LayerLoad, RunConfig, RunOptions};

/// Trains dense, Hash, MultiHash, Switch and Token-Switch language models on hashprep data.
#[derive(Debug, Parser)]
#[command(name = "hashtrain", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress bar.
    #[arg(long, global = true)]
    no_progress: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model from a run config (pipelines/NAME.toml).
    Run(RunArgs),
    /// Evaluate a checkpoint on a tokenize output: loss, perplexity, expert loads.
    Eval(EvalArgs),
    /// Write a checkpoint's token embeddings as .npy (for build-table --method clustered).
    ExportEmbeddings(ExportArgs),
    /// The paper's Table 3 comparisons: dense baseline and each routing method on one budget.
    Sweep(SweepArgs),
    /// What this hashtrain sees: libtorch's version and folder, its CUDA library, the GPUs.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
struct InfoArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// A config file and its overrides (run and sweep).
#[derive(Debug, Args)]
struct ConfigArgs {
    /// The config (TOML), e.g. pipelines/demo-hash.toml or pipelines/paper-table3-small.toml.
    #[arg(long)]
    config: PathBuf,
    /// Override a setting: `train.steps=200`, `model.sparse.0.kind=switch`,
    /// `sweep.methods=["dense","balanced"]` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Debug, Args)]
struct SweepArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The sweep folder (data, tables, runs, results.md).
    #[arg(long)]
    out: PathBuf,
    /// Remove the sweep folder first (otherwise finished runs are kept, unfinished resumed).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The run folder (metrics, curves, checkpoints).
    #[arg(long)]
    out: PathBuf,
    /// Continue from the run folder's latest checkpoint.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Start over in a run folder that holds a run.
    #[arg(long)]
    force: bool,
    /// Device, overriding train.device: cpu, cuda, cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Start from this checkpoint's weights (a checkpoint or a run folder) with a fresh
    /// optimizer: fine-tuning, with `train.freeze` for the weights kept fixed. The model must
    /// be the checkpoint's, its hash layers routed by the same tables. A resumed run continues
    /// from its own checkpoint instead.
    #[arg(long, value_name = "CHECKPOINT")]
    init_from: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// A checkpoint folder, or a run folder (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Tokenize output to evaluate on (default: the config's test data, else validation).
    #[arg(long)]
    data: Option<PathBuf>,
    /// At most this many batches (default: all).
    #[arg(long, default_value_t = 0)]
    batches: u64,
    /// Device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// A checkpoint folder, or a run folder (its latest checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The .npy file to write (`[vocab, d_model]` float32).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let outcome = dispatch(Cli::parse());
    hashprep::exit::exit("hashtrain", &Cli::command(), outcome, |err| {
        err.downcast_ref::<hashtrain::Error>()
            .is_some_and(hashtrain::Error::is_bad_input)
    })
}

fn dispatch(cli: Cli) -> Result<()> {
    let progress = !cli.no_progress && std::io::stderr().is_terminal();
    match cli.command {
        Command::Run(args) => run(args, progress),
        Command::Eval(args) => eval(&args),
        Command::ExportEmbeddings(args) => export_embeddings(&args),
        Command::Sweep(args) => sweep(&args, progress),
        Command::Info(args) => info(&args),
    }
}

fn info(args: &InfoArgs) -> Result<()> {
    let report = DeviceReport::collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        for line in report.lines() {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

fn run(args: RunArgs, progress: bool) -> Result<()> {
    let mut config = RunConfig::load(&args.config.config, &args.config.overrides)
        .map_err(hashtrain::Error::from)?;
    if let Some(device) = args.device {
        config.train.runtime.device = device;
    }
    let options = RunOptions {
        resume: args.resume,
        force: args.force,
        progress,
        init_from: args.init_from,
    };
    let summary = hashtrain::run(&config, &args.out, &options)
        .with_context(|| format!("training {}", args.out.display()))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        writeln!(
            out,
            "{}: {} steps, {} parameters, valid loss {:.4}, valid ppl {:.2}, {:.0} tokens/s, loader wait {:.2}%",
            summary.out.display(),
            summary.steps,
            summary.parameters,
            summary.valid_loss,
            summary.valid_ppl,
            summary.tokens_per_s,
            summary.loader_wait * 100.0
        )?;
        print_loads(&mut out, &summary.valid_loads)?;
    }
    Ok(())
}

fn eval(args: &EvalArgs) -> Result<()> {
    let device = parse_device(&args.device)?;
    let dir = hashtrain::resolve_checkpoint(&args.checkpoint)?;
    let saved = hashtrain::read_checkpoint_state(&dir)?;
    let data = args
        .data
        .clone()
        .or(saved.config.data.test.clone())
        .unwrap_or(saved.config.data.valid.clone());
    let (restored, mut loader) = hashtrain::restore(&dir, device, Some(&data))?;
    let result = evaluate(
        &restored.model,
        &mut loader,
        device,
        args.batches,
        &restored.layers,
    )?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::json!({
            "checkpoint": dir,
            "step": restored.state.step,
            "data": data,
            "loss": result.loss,
            "ppl": result.ppl,
            "tokens": result.tokens,
            "loads": result.loads,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        writeln!(
            out,
            "{} (step {}) on {}: loss {:.4}, ppl {:.2} over {} tokens",
            dir.display(),
            restored.state.step,
            data.display(),
            result.loss,
            result.ppl,
            result.tokens
        )?;
        print_loads(&mut out, &result.loads)?;
    }
    Ok(())
}

fn export_embeddings(args: &ExportArgs) -> Result<()> {
    let (restored, _) = hashtrain::restore(&args.checkpoint, tch::Device::Cpu, None)?;
    hashtrain::write_embeddings_npy(&restored.model, &args.out)?;
    let shape = restored.model.embedding().size();
    writeln!(
        std::io::stdout().lock(),
        "{}: {} x {} token embeddings (float32)",
        args.out.display(),
        shape[0],
        shape[1]
    )?;
    Ok(())
}

fn sweep(args: &SweepArgs, progress: bool) -> Result<()> {
    let config = hashtrain::SweepConfig::load(&args.config.config, &args.config.overrides)?;
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    let options = hashtrain::SweepOptions {
        force: args.force,
        progress,
        command: command.replacen(&std::env::args().next().unwrap_or_default(), "hashtrain", 1),
    };
    let results = hashtrain::run_sweep(&config, &args.out, &options)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20} {:>10} {:>10} {:>14}",
        "run", "valid ppl", "test ppl", "max/mean load"
    )?;
    for r in &results {
        let load = r
            .max_over_mean
            .map_or_else(|| "-".into(), |x| format!("{x:.2}"));
        writeln!(
            out,
            "{:<20} {:>10.2} {:>10.2} {:>14}",
            r.run, r.valid_ppl, r.test_ppl, load
        )?;
    }
    writeln!(out, "results: {}", args.out.join("results.md").display())?;
    Ok(())
}

/// One line per sparse layer: its busiest expert's load over the mean.
fn print_loads(out: &mut impl Write, loads: &[LayerLoad]) -> std::io::Result<()> {
    for load in loads {
        writeln!(
            out,
            "  {} ({}): max/mean expert load {:.3}",
            load.layer, load.kind, load.max_over_mean
        )?;
    }
    Ok(())
}
