//! Stopping on a loss or weights that are no longer finite, before any checkpoint holds them.

use std::path::Path;

use tch::Kind;

use super::run_folder::plot_run;
use super::window::Window;
use super::{Record, Trainer};
use crate::error::{Error, Result};

/// Stops the run when a record just written (a `train` record over `window_steps` steps, or a
/// `valid` one) holds a loss that is no longer finite; draws the curves first.
pub(super) fn stop_if_diverged(record: &Record, window_steps: u64, out: &Path) -> Result<()> {
    let detail = match *record {
        Record::Train {
            step,
            loss,
            aux_loss,
            ..
        } if !(loss + aux_loss).is_finite() => format!(
            "the mean training loss of steps {}..={step} is {loss} (load-balancing term {aux_loss})",
            step + 1 - window_steps
        ),
        Record::Valid { loss, .. } if !loss.is_finite() => {
            format!("the validation loss is {loss}")
        }
        _ => return Ok(()),
    };
    plot_run(out)?;
    Err(Error::Diverged {
        step: record.step(),
        detail,
    })
}

/// Refuses to checkpoint weights, or an open metrics window, that are no longer finite: the
/// last checkpoint of a diverged run stays one to resume from. One device read.
pub(super) fn check_finite_state(trainer: &Trainer<'_>, window: &Window, step: u64) -> Result<()> {
    let finite = tch::no_grad(|| {
        let mut all = window.loss.isfinite().logical_and(&window.aux.isfinite());
        for variable in trainer.vs.trainable_variables() {
            all = all.logical_and(&variable.isfinite().all());
        }
        all.to_kind(Kind::Int64).int64_value(&[]) == 1
    });
    if finite {
        return Ok(());
    }
    Err(Error::Diverged {
        step,
        detail: "the weights or the training loss are no longer finite; no checkpoint was written"
            .into(),
    })
}
