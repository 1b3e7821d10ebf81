//! `runs/NAME/metrics.jsonl`: one JSON record per line, `train` records every `log_every` steps
//! and `valid` records at each evaluation. On resume the file is cut back to the checkpoint's
//! step, so a resumed run's file equals an uninterrupted run's (timings aside).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::LayerId;
use crate::error::{Error, Result};

/// JSON has no NaN or infinity: `serde_json` writes them as `null`, read back as NaN, so a
/// diverged run's records stay readable.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// Tokens per expert of one sparse layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerLoad {
    /// The layer: written as its number (1-based) in the decoder, `"encoder-N"` in a
    /// sequence-to-sequence model's encoder.
    pub layer: LayerId,
    /// Its kind.
    pub kind: String,
    /// Tokens per expert (Switch: a last entry counts tokens dropped for capacity).
    pub counts: Vec<u64>,
    /// Busiest expert's tokens over the mean (1 = perfectly balanced).
    #[serde(deserialize_with = "nan_if_null")]
    pub max_over_mean: f64,
}

impl LayerLoad {
    /// The load of `layer` from its counts; `experts` of them are experts (the rest dropped).
    pub fn new(layer: LayerId, kind: &str, counts: Vec<u64>, experts: usize) -> Self {
        let routed = &counts[..experts.min(counts.len())];
        let total: u64 = routed.iter().sum();
        let max = routed.iter().copied().max().unwrap_or(0);
        let max_over_mean = if total == 0 {
            0.0
        } else {
            max as f64 * routed.len() as f64 / total as f64
        };
        Self {
            layer,
            kind: kind.to_owned(),
            counts,
            max_over_mean,
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    /// Training, averaged over the steps since the previous record.
    Train {
        /// Optimizer step.
        step: u64,
        /// Mean language-model loss (nats per token).
        #[serde(deserialize_with = "nan_if_null")]
        loss: f64,
        /// Mean load-balancing term (already weighted).
        #[serde(deserialize_with = "nan_if_null")]
        aux_loss: f64,
        /// Learning rate of this step.
        #[serde(deserialize_with = "nan_if_null")]
        lr: f64,
        /// Gradient norm before clipping at this step.
        #[serde(deserialize_with = "nan_if_null")]
        grad_norm: f64,
        /// Training tokens per second over the window.
        #[serde(deserialize_with = "nan_if_null")]
        tokens_per_s: f64,
        /// Share of the window's time spent waiting for the loader.
        #[serde(deserialize_with = "nan_if_null")]
        loader_wait: f64,
        /// Expert loads over the window.
        loads: Vec<LayerLoad>,
    },
    /// An evaluation on the validation data.
    Valid {
        /// Optimizer step.
        step: u64,
        /// Mean loss per token.
        #[serde(deserialize_with = "nan_if_null")]
        loss: f64,
        /// `exp(loss)`.
        #[serde(deserialize_with = "nan_if_null")]
        ppl: f64,
        /// Tokens evaluated.
        tokens: u64,
        /// Expert loads on the validation data.
        loads: Vec<LayerLoad>,
    },
}

impl Record {
    /// The `valid` record of an evaluation at `step`.
    pub fn valid(step: u64, evaluation: &super::Evaluation) -> Self {
        Record::Valid {
            step,
            loss: evaluation.loss,
            ppl: evaluation.ppl,
            tokens: evaluation.tokens,
            loads: evaluation.loads.clone(),
        }
    }

    /// The step it was written at.
    pub fn step(&self) -> u64 {
        match self {
            Record::Train { step, .. } | Record::Valid { step, .. } => *step,
        }
    }
}

/// Appends records to a metrics file.
#[derive(Debug)]
pub(crate) struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending, keeping only the records up to `keep_through` (a resume),
    /// or none (`None`: a new run).
    ///
    /// # Errors
    /// The file cannot be read or written.
    pub(crate) fn open(path: &Path, keep_through: Option<u64>) -> Result<Self> {
        let kept = match keep_through {
            Some(step) if path.exists() => read_records(path)?
                .into_iter()
                .filter(|r| r.step() <= step)
                .collect(),
            _ => Vec::new(),
        };
        let mut text = String::new();
        for record in &kept {
            text.push_str(&serde_json::to_string(record).expect("serializable"));
            text.push('\n');
        }
        hashprep::util::write_atomic(path, text.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Appends `record` (flushed, so a crash loses at most the line being written).
    ///
    /// # Errors
    /// The write fails.
    pub(crate) fn write(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record).expect("serializable");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads every record of a metrics file; a torn last line (a crash mid-write) is ignored.
///
/// # Errors
/// The file cannot be read, or a line before the last is not a record.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(path, e))?;
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if i + 1 == lines.len() => break,
            Err(e) => {
                return Err(Error::BadRecord {
                    path: PathBuf::from(format!("{}:{}", path.display(), i + 1)),
                    problem: format!("not a metrics record: {e}"),
                })
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_with_non_finite_values_are_written_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        let mut log = MetricsLog::open(&path, None).unwrap();
        let record = |step, loss, grad_norm| Record::Train {
            step,
            loss,
            aux_loss: 0.0,
            lr: 1e3,
            grad_norm,
            tokens_per_s: 10.0,
            loader_wait: 0.0,
            loads: Vec::new(),
        };
        log.write(&record(10, 3.5, 2.0)).unwrap();
        log.write(&record(20, f64::NAN, f64::INFINITY)).unwrap();
        log.write(&record(30, 3.0, 1.0)).unwrap();
        let back = read_records(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0], record(10, 3.5, 2.0));
        assert_eq!(back[2], record(30, 3.0, 1.0));
        let Record::Train {
            loss, grad_norm, ..
        } = back[1]
        else {
            panic!("a train record")
        };
        assert!(loss.is_nan() && grad_norm.is_nan());
    }
}
