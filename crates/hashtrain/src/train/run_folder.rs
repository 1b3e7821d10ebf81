//! The run folder: what a new run replaces, what a finished one reports, its curves.

use std::path::Path;

use super::{plot_curves, read_records, Curve, RunOptions, RunSummary};
use crate::error::{Error, Result};

/// Files of a run folder that a new run replaces.
pub(super) const RUN_FILES: [&str; 4] =
    ["metrics.jsonl", "curves.png", "summary.json", "config.toml"];

/// Refuses to mix runs: a folder holding a run needs `--resume` or `--force`. `--resume` where
/// no checkpoint was completed yet (a run stopped before its first) starts over. Returns
/// whether the run resumes from a checkpoint.
pub(super) fn prepare_run_folder(out: &Path, options: &RunOptions) -> Result<bool> {
    hashprep::util::create_output_dir(out)?;
    let has_run = out.join("metrics.jsonl").exists() || out.join("checkpoints").exists();
    let resuming = options.resume && out.join("checkpoints").join("latest").exists();
    if has_run && !resuming {
        if !options.force && !options.resume {
            return Err(Error::RunExists {
                out: out.to_owned(),
            });
        }
        if options.resume {
            eprintln!(
                "hashtrain: {}: no checkpoint was completed yet: starting the run over",
                out.display()
            );
        }
        for name in RUN_FILES {
            let path = out.join(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        let checkpoints = out.join("checkpoints");
        if checkpoints.exists() {
            std::fs::remove_dir_all(&checkpoints).map_err(|e| Error::io(&checkpoints, e))?;
        }
    }
    Ok(resuming)
}

/// The `summary.json` of a resumed run that already trained all its steps: nothing to do.
pub(super) fn finished_summary(
    out: &Path,
    resuming: bool,
    step: u64,
    steps: u64,
) -> Result<Option<RunSummary>> {
    let path = out.join("summary.json");
    if !resuming || step < steps || !path.is_file() {
        return Ok(None);
    }
    eprintln!(
        "hashtrain: {}: already trained {step} steps; nothing to do",
        out.display()
    );
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    Ok(serde_json::from_slice(&bytes).ok())
}

pub(super) fn plot_run(out: &Path) -> Result<()> {
    let records = read_records(&out.join("metrics.jsonl"))?;
    let name = out
        .file_name()
        .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    plot_curves(
        &out.join("curves.png"),
        &name,
        &[Curve {
            label: &name,
            records: &records,
        }],
    )
}
