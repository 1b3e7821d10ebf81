//! The sweep's results: a table like the paper's Table 3 (`results.md`), the same as JSON
//! (`results.json`), and every run's curves in one plot (`curves.png`). Always recomputed from
//! the run folders, never written by hand.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::finetune::FinetuneResult;
use super::{Job, SweepConfig, SweepMethod, SweepOptions};
use crate::config::RunConfig;
use crate::error::Result;
use crate::train::{plot_curves, read_records, Curve, Evaluation, RunSummary};

/// `runs/NAME/test.json`: the test evaluation of a run's final checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TestRecord {
    pub step: u64,
    pub loss: f64,
    pub ppl: f64,
    pub tokens: u64,
}

impl TestRecord {
    pub(super) fn new(step: u64, e: &Evaluation) -> Self {
        Self {
            step,
            loss: e.loss,
            ppl: e.ppl,
            tokens: e.tokens,
        }
    }

    pub(super) fn into_evaluation(self) -> Evaluation {
        Evaluation {
            loss: self.loss,
            ppl: self.ppl,
            tokens: self.tokens,
            loads: Vec::new(),
        }
    }
}

/// Which run of a sweep: its folder under `runs/` and its seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunId {
    /// The folder (`NAME`, or `NAME-seedS` in a sweep over seeds).
    pub name: String,
    /// Its `train.seed`.
    pub seed: u64,
}

/// The results of one run (a row of the table, or one seed of a row).
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    /// Method name.
    pub method: String,
    /// The row: the run's name without the seed suffix (the method and its layout or shape).
    pub row: String,
    /// Experts K of each sparse layer (none for dense models).
    pub experts: Option<u32>,
    /// The sparse layers (1-based; empty for dense models).
    pub sparse_layers: Vec<usize>,
    /// The run folder under `runs/`.
    pub run: String,
    /// The run's seed.
    pub seed: u64,
    /// The paper's name for the model.
    pub model: String,
    /// Its configuration, in the paper's notation.
    pub configuration: String,
    /// Parameters.
    pub parameters: u64,
    /// Steps trained.
    pub steps: u64,
    /// Validation perplexity at the end.
    pub valid_ppl: f64,
    /// Test perplexity of the final checkpoint.
    pub test_ppl: f64,
    /// Busiest expert over the mean on the validation data (sparse models).
    pub max_over_mean: Option<f64>,
    /// Training tokens per second (of the invocation that finished the run).
    pub tokens_per_s: f64,
}

impl MethodResult {
    /// Reads the results of a finished run.
    ///
    /// # Errors
    /// The run's `summary.json` is missing or unreadable.
    pub fn collect(
        job: &Job,
        config: &RunConfig,
        show_positions: bool,
        run: RunId,
        run_dir: &Path,
        test: &Evaluation,
    ) -> Result<Self> {
        let path = run_dir.join("summary.json");
        let bytes = std::fs::read(&path).map_err(|e| crate::Error::io(&path, e))?;
        let summary: RunSummary =
            serde_json::from_slice(&bytes).map_err(|e| crate::Error::BadRecord {
                path: path.clone(),
                problem: e.to_string(),
            })?;
        let (model, configuration) = describe(job, config, show_positions);
        Ok(Self {
            method: job.method.name(),
            row: job.name.clone(),
            experts: job.layout.as_ref().map(|l| l.experts),
            sparse_layers: job
                .layout
                .as_ref()
                .map_or_else(Vec::new, |l| l.layers.clone()),
            run: run.name,
            seed: run.seed,
            model,
            configuration,
            parameters: summary.parameters,
            steps: summary.steps,
            valid_ppl: summary.valid_ppl,
            test_ppl: test.ppl,
            max_over_mean: summary.valid_loads.first().map(|l| l.max_over_mean),
            tokens_per_s: summary.tokens_per_s,
        })
    }
}

/// The paper's name and configuration notation of a model; `show_positions` adds where its
/// sparse layers are.
fn describe(job: &Job, config: &RunConfig, show_positions: bool) -> (String, String) {
    let m = &config.model;
    let layers = m.layers;
    let sparse = m.sparse.first();
    let (count, experts) = job
        .layout
        .as_ref()
        .map_or((0, 0), |l| (l.layers.len(), l.experts));
    let mut modules = format!(", modules={count}x{experts}");
    if show_positions {
        if let Some(layout) = &job.layout {
            let at: Vec<String> = layout.layers.iter().map(usize::to_string).collect();
            let plural = if at.len() > 1 { "s" } else { "" };
            let _ = write!(modules, " at layer{plural} {}", at.join(", "));
        }
    }
    // Experts of another width than the dense FFN (`equal_parameters`; top-k rows say it).
    if let Some(width) = sparse.and_then(|s| s.d_ff) {
        if !matches!(job.method, SweepMethod::TopK(_)) {
            let _ = write!(modules, ", D={width}");
        }
    }
    let dense_shape = format!("layers={layers}, d={}, D={}", m.d_model, m.d_ff);
    match job.method {
        SweepMethod::Dense => match &job.shape {
            None => ("Baseline Transformer".into(), dense_shape),
            Some(shape) => (format!("{} (more compute)", shape.title()), dense_shape),
        },
        SweepMethod::Table(t) => {
            let name = match t.name() {
                "clustered" => "token clustering",
                "previous" => "previous token",
                "oracle" => "oracle future token",
                other => other,
            };
            (
                format!("Hash Layer ({name})"),
                format!("layers={layers}{modules}"),
            )
        }
        SweepMethod::MultiHash(n) => (
            "MultiHash Layer".into(),
            format!("layers={layers}{modules}, hashes={n}"),
        ),
        SweepMethod::TopK(k) => {
            let s = sparse.expect("a top-k row has its sparse layer");
            let scoring = s
                .scoring
                .map_or("sqrtsoftplus", crate::config::Scoring::name);
            (
                format!("Hash Layer (balanced, top-{k})"),
                format!(
                    "layers={layers}, modules={count}x{}, D={}, top-{k} ({scoring} gate)",
                    experts * k,
                    s.d_ff.unwrap_or(m.d_ff)
                ),
            )
        }
        SweepMethod::Base => ("BASE Layer".into(), format!("layers={layers}{modules}")),
        SweepMethod::Switch | SweepMethod::TokenSwitch => {
            let load_bal = sparse.map_or(0.0, |s| s.load_bal);
            let name = if job.method == SweepMethod::Switch {
                "Switch Transformer"
            } else {
                "Token-Switch"
            };
            (
                name.into(),
                format!("layers={layers}{modules}, load_bal={load_bal}"),
            )
        }
    }
}

/// Writes `results.md`, `results.json` and `curves.png` into `out` (the caller draws
/// `grid.png` of a sweep over experts or layer positions).
///
/// # Errors
/// A file cannot be written or a run's metrics read.
pub(crate) fn write_report(
    config: &SweepConfig,
    (results, finetuned): (&[MethodResult], &[FinetuneResult]),
    out: &Path,
    options: &SweepOptions,
) -> Result<()> {
    hashprep::util::write_atomic(
        &out.join("results.json"),
        &serde_json::to_vec_pretty(results).expect("serializable"),
    )?;
    // Every run's records, read once: for the curve table and for `curves.png`.
    let names = results
        .iter()
        .map(|r| &r.run)
        .chain(finetuned.iter().map(|r| &r.run));
    let records: Vec<(String, Vec<crate::train::Record>)> = names
        .map(|run| {
            Ok((
                run.clone(),
                read_records(&out.join("runs").join(run).join("metrics.jsonl"))?,
            ))
        })
        .collect::<Result<_>>()?;
    let mut md = markdown(config, results, out, options);
    if config.sweep.curve_table {
        md.push_str(&curve_table(results, &records));
    }
    if let Some(plan) = config.finetune.as_ref().filter(|_| !finetuned.is_empty()) {
        hashprep::util::write_atomic(
            &out.join("finetune.json"),
            &serde_json::to_vec_pretty(finetuned).expect("serializable"),
        )?;
        let tokens = |split: &str| {
            hashprep::Manifest::read(&out.join("data").join(split)).map_or(0, |m| m.totals.tokens)
        };
        let note = format!(
            "{} training tokens, {} validation",
            tokens("finetune-train"),
            tokens("finetune-valid")
        );
        md.push_str(&super::finetune::markdown(plan, finetuned, &note));
    }
    hashprep::util::write_atomic(&out.join("results.md"), md.as_bytes())?;
    let curves: Vec<Curve<'_>> = records
        .iter()
        .map(|(label, records)| Curve { label, records })
        .collect();
    plot_curves(&out.join("curves.png"), &config.title, &curves)
}

fn markdown(
    config: &SweepConfig,
    results: &[MethodResult],
    out: &Path,
    options: &SweepOptions,
) -> String {
    let mut md = format!("# {}\n\n", config.title);
    let t = &config.train;
    let m = &config.model;
    let data = |split: &str| {
        hashprep::Manifest::read(&out.join("data").join(split)).map_or((0, 0), |manifest| {
            (manifest.totals.tokens, manifest.tokenizer.vocab_size)
        })
    };
    let ((train, vocab), (valid, _), (test, _)) = (data("train"), data("valid"), data("test"));
    let _ = write!(
        md,
        "Produced by `{}` on {}.\n\nData: {train} training tokens, {valid} validation, {test} test; vocabulary of {vocab} ids (`{}`). \
         Every model: {} steps of {} x {} tokens, Adam at peak lr {} (inverse-sqrt, {} warmup steps), dropout {}; \
         {}.\n\n",
        options.command,
        machine(&t.runtime.device, t.runtime.threads),
        config.data.tokenizer,
        t.runtime.steps,
        t.optimization.batch_size,
        m.context,
        t.optimization.lr,
        t.optimization.warmup,
        m.dropout,
        sparse_sentence(config),
    );
    md.push_str(
        "| Model | Configuration | Params | Valid PPL | Test PPL | Max/mean load | Tokens/s |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|\n");
    for runs in by_row(results) {
        let r = runs[0];
        let stat = |value: fn(&MethodResult) -> f64| {
            let values: Vec<f64> = runs.iter().map(|&r| value(r)).collect();
            mean_and_deviation(&values)
        };
        let load = if r.max_over_mean.is_some() {
            stat(|r| r.max_over_mean.unwrap_or(f64::NAN))
        } else {
            "-".into()
        };
        let (tokens_per_s, _) =
            mean_and_std(&runs.iter().map(|r| r.tokens_per_s).collect::<Vec<_>>());
        let _ = writeln!(
            md,
            "| {} | {} | {:.2}M | {} | {} | {load} | {tokens_per_s:.0} |",
            r.model,
            r.configuration,
            r.parameters as f64 / 1e6,
            stat(|r| r.valid_ppl),
            stat(|r| r.test_ppl),
        );
    }
    if !config.sweep.seeds.is_empty() {
        let seeds: Vec<String> = config.sweep.seeds.iter().map(u64::to_string).collect();
        let _ = write!(
            md,
            "\nEach row: mean ± sample standard deviation over seeds {} (one run each; tokens/s: the mean).\n",
            seeds.join(", ")
        );
    }
    md.push_str(
        "\nValid PPL: the last evaluation during training; Test PPL: the final checkpoint on the test split. \
         Max/mean load: the busiest expert's validation tokens over the mean (1 = perfectly balanced). \
         Tokens/s: training throughput of the invocation that finished the run. Curves: `curves.png`; \
         each run's metrics: `runs/NAME/metrics.jsonl`.\n",
    );
    md
}

/// Each row's validation perplexity at every evaluation step (mean ± deviation over its runs):
/// the numbers of `curves.png`, from every run's `records` (by run name).
fn curve_table(
    results: &[MethodResult],
    records: &[(String, Vec<crate::train::Record>)],
) -> String {
    use crate::train::Record;
    let mut rows = Vec::new();
    let mut steps = std::collections::BTreeSet::new();
    for runs in by_row(results) {
        let mut by_step = std::collections::BTreeMap::<u64, Vec<f64>>::new();
        let of_row = records
            .iter()
            .filter(|(run, _)| runs.iter().any(|r| &r.run == run));
        for record in of_row.flat_map(|(_, records)| records) {
            if let Record::Valid { step, ppl, .. } = record {
                by_step.entry(*step).or_default().push(*ppl);
                steps.insert(*step);
            }
        }
        rows.push((runs[0], by_step));
    }
    let mut md =
        String::from("\n## Validation perplexity over training\n\n| Model | Configuration |");
    for step in &steps {
        let _ = write!(md, " {step} |");
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(steps.len()));
    md.push('\n');
    for (r, by_step) in rows {
        let _ = write!(md, "| {} | {} |", r.model, r.configuration);
        for step in &steps {
            let cell = by_step
                .get(step)
                .map_or_else(|| "-".to_owned(), |v| mean_and_deviation(v));
            let _ = write!(md, " {cell} |");
        }
        md.push('\n');
    }
    md
}

/// Where the sparse layers are, in words, for the heading.
fn sparse_sentence(config: &SweepConfig) -> String {
    let layouts = super::Layout::grid(&config.sweep.experts, &config.sweep.layer);
    match layouts.as_slice() {
        [layout] if layout.layers.len() == 1 => format!(
            "the sparse layer replaces the FFN of layer {} of {} with {} experts",
            layout.layers[0], config.model.layers, layout.experts
        ),
        _ => format!(
            "each sparse model replaces the FFN of the layers its configuration names (of {}) with its experts",
            config.model.layers
        ),
    }
}

/// The runs of each row, rows in the order of their first run.
pub(super) fn by_row(results: &[MethodResult]) -> Vec<Vec<&MethodResult>> {
    by_row_of(results, |r| r.row.as_str())
}

/// The results of each row (`row` names it), rows in the order of their first result.
pub(super) fn by_row_of<T>(results: &[T], row: impl Fn(&T) -> &str) -> Vec<Vec<&T>> {
    let mut groups: Vec<Vec<&T>> = Vec::new();
    for r in results {
        match groups.iter_mut().find(|g| row(g[0]) == row(r)) {
            Some(group) => group.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
}

/// Mean and sample standard deviation (0 for one value).
pub(super) fn mean_and_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// `x.xx` for one value, `mean ± std` for several.
pub(super) fn mean_and_deviation(values: &[f64]) -> String {
    let (mean, std) = mean_and_std(values);
    if values.len() < 2 {
        format!("{mean:.2}")
    } else {
        format!("{mean:.2} ± {std:.2}")
    }
}

/// The processor (or GPU) the sweep ran on, and the libtorch threads its runs were configured
/// with (0: libtorch's default), whether or not this invocation trained any of them.
fn machine(device: &str, threads: usize) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let threads = match threads {
        0 => tch::get_num_threads(),
        n => i32::try_from(n).unwrap_or(i32::MAX),
    };
    let plural = if threads == 1 { "" } else { "s" };
    format!("{cpu} ({cores} cores, libtorch {threads} thread{plural}), device {device}")
}
