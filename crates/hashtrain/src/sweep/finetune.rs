//! The sweep's fine-tuning (the paper's Table 8): each trained model of the listed methods is
//! fine-tuned on other data (`[finetune]`: its own splits, tokenized with the sweep's
//! tokenizer) in the configurations the paper compares: nothing frozen, parts frozen
//! (`train.freeze`), or Switch's load balancing changed. Each run starts from its method's
//! final checkpoint of the same seed (`--init-from`), with a fresh optimizer and the sweep's
//! `[train]` settings but `steps`; its result is the validation perplexity on the fine-tuning
//! data.

use std::fmt::Write as _;
use std::path::Path;

use hashprep::{Format, InputRange};
use serde::{Deserialize, Serialize};

use super::report::{by_row_of, mean_and_deviation};
use super::{Job, SweepMethod};
use crate::config::{DataConfig, Freeze, RunConfig};
use crate::error::{Error, Result};
use crate::train::RunSummary;

/// `[finetune]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetunePlan {
    /// Input format of the fine-tuning data (default: `[data]`'s).
    #[serde(default)]
    pub format: Option<Format>,
    /// Fine-tuning data.
    pub train: Vec<InputRange>,
    /// Its validation data (the results).
    pub valid: Vec<InputRange>,
    /// Optimizer steps of each fine-tuning.
    pub steps: u64,
    /// The fine-tunings, each of a trained model of the sweep.
    pub runs: Vec<FinetuneRun>,
}

/// One fine-tuning configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneRun {
    /// The model it starts from: a run name of the sweep without seed (`dense`, `balanced`,
    /// `switch`, `switch-lb0.1` where `load_bal` lists several).
    pub from: String,
    /// Weights kept fixed (`train.freeze`).
    #[serde(default)]
    pub freeze: Vec<Freeze>,
    /// Switch kinds: the load-balancing coefficient while fine-tuning (default: the
    /// pretraining's).
    #[serde(default)]
    pub load_bal: Option<f64>,
}

impl FinetuneRun {
    /// Its run name before the seed: `ft-FROM`, then `-lbC` and `-freeze-ENTRY+ENTRY`.
    pub fn name(&self) -> String {
        let mut name = format!("ft-{}", self.from);
        if let Some(c) = self.load_bal {
            let _ = write!(name, "-lb{c}");
        }
        if !self.freeze.is_empty() {
            let entries: Vec<&str> = self.freeze.iter().map(|f| f.name()).collect();
            let _ = write!(name, "-freeze-{}", entries.join("+"));
        }
        name
    }

    /// The paper's words for it ("Hash weights frozen", "No weights frozen, `load_bal=0`").
    fn describe(&self, job: &Job, load_bal: f64) -> String {
        let sparse = match job.method {
            SweepMethod::Switch => "Switch",
            SweepMethod::TokenSwitch => "Token-Switch",
            SweepMethod::Base => "BASE",
            SweepMethod::Dense => "sparse",
            _ => "Hash",
        };
        let frozen: Vec<String> = self
            .freeze
            .iter()
            .map(|f| match f {
                Freeze::Experts => format!("{sparse} weights frozen"),
                Freeze::Router => "Router weights frozen".to_owned(),
                Freeze::AllButLast => "All layers but last frozen".to_owned(),
                Freeze::AllButSparse => format!("All layers but {sparse} frozen"),
            })
            .collect();
        let mut words = if frozen.is_empty() {
            "No weights frozen".to_owned()
        } else {
            frozen.join(", ")
        };
        if matches!(job.method, SweepMethod::Switch | SweepMethod::TokenSwitch) {
            let _ = write!(words, ", load_bal={load_bal}");
        }
        words
    }
}

impl FinetunePlan {
    /// Checks each run against the sweep's jobs.
    ///
    /// # Errors
    /// No runs, a repeated run, a `from` that names no job, or a run config that fails its
    /// checks.
    pub(super) fn check(&self, jobs: &[Job]) -> std::result::Result<(), String> {
        if self.runs.is_empty() || self.steps == 0 {
            return Err("finetune: `runs` and `steps` need at least one".into());
        }
        let names: Vec<String> = self.runs.iter().map(FinetuneRun::name).collect();
        for (i, run) in self.runs.iter().enumerate() {
            if names[..i].contains(&names[i]) {
                return Err(format!(
                    "finetune.runs[{i}]: `{}` is listed twice",
                    names[i]
                ));
            }
            if !jobs.iter().any(|j| j.name == run.from) {
                let known: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
                return Err(format!(
                    "finetune.runs[{i}].from = `{}` is none of the sweep's models ({})",
                    run.from,
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The run config of `run`: the config its model was trained with on the fine-tuning data
    /// (`train`, `valid`), `steps` steps, its frozen weights and load balancing.
    pub(super) fn run_config(
        &self,
        run: &FinetuneRun,
        trained: &RunConfig,
        (train, valid): (&Path, &Path),
    ) -> RunConfig {
        let mut config = trained.clone();
        config.data = DataConfig {
            train: train.to_owned(),
            valid: valid.to_owned(),
            test: None,
        };
        config.train.runtime.steps = self.steps;
        config.train.optimization.freeze.clone_from(&run.freeze);
        if let Some(c) = run.load_bal {
            for layer in &mut config.model.sparse {
                layer.load_bal = c;
            }
        }
        config
    }
}

/// The result of one fine-tuning run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FinetuneResult {
    /// The row: the run's name without the seed.
    pub row: String,
    /// The run folder under `runs/`.
    pub run: String,
    /// Its seed.
    pub seed: u64,
    /// The paper's name of the model it started from.
    pub model: String,
    /// What was frozen, in the paper's words.
    pub configuration: String,
    /// Parameters (all, frozen ones included).
    pub parameters: u64,
    /// Validation perplexity on the fine-tuning data at the end.
    pub valid_ppl: f64,
}

impl FinetuneResult {
    /// Reads the result of a finished fine-tuning run.
    ///
    /// # Errors
    /// Its `summary.json` is missing or unreadable.
    pub(super) fn collect(
        run: &FinetuneRun,
        job: &Job,
        (model, config): (&str, &RunConfig),
        (name, seed): (String, u64),
        run_dir: &Path,
    ) -> Result<Self> {
        let path = run_dir.join("summary.json");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let summary: RunSummary = serde_json::from_slice(&bytes).map_err(|e| Error::BadRecord {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let load_bal = config.model.sparse.first().map_or(0.0, |s| s.load_bal);
        Ok(Self {
            row: run.name(),
            run: name,
            seed,
            model: model.to_owned(),
            configuration: run.describe(job, load_bal),
            parameters: summary.parameters,
            valid_ppl: summary.valid_ppl,
        })
    }
}

/// The fine-tuning table of `results.md`.
pub(super) fn markdown(
    plan: &FinetunePlan,
    results: &[FinetuneResult],
    vocab_note: &str,
) -> String {
    let mut md = format!(
        "\n## Fine-tuning (Table 8)\n\nEach model above fine-tuned for {} steps on the fine-tuning data \
         ({vocab_note}), starting from its final checkpoint of the same seed with a fresh optimizer; \
         Valid PPL on the fine-tuning validation data.\n\n\
         | Model | Configuration | Params | Valid PPL |\n|---|---|---|---|\n",
        plan.steps
    );
    for runs in by_row_of(results, |r| r.row.as_str()) {
        let r = runs[0];
        let values: Vec<f64> = runs.iter().map(|r| r.valid_ppl).collect();
        let _ = writeln!(
            md,
            "| {} | {} | {:.2}M | {} |",
            r.model,
            r.configuration,
            r.parameters as f64 / 1e6,
            mean_and_deviation(&values)
        );
    }
    md
}
