//! The metrics window: training statistics summed on the device between `train` records.

use std::collections::BTreeMap;
use std::time::Duration;

use tch::{Device, Kind, Tensor};

use super::{eval, OpenWindow, Record, StepResult};

/// Training statistics since the last `train` record. Losses add up on the device, so steps
/// do not wait for the host; the host reads them once per record.
pub(super) struct Window {
    pub(super) loss: Tensor,
    pub(super) aux: Tensor,
    pub(super) steps: u64,
    pub(super) tokens: u64,
    pub(super) counts: BTreeMap<crate::config::LayerId, Vec<u64>>,
    pub(super) time: Duration,
    pub(super) wait: Duration,
}

impl Window {
    pub(super) fn new(device: Device) -> Self {
        Self {
            loss: Tensor::zeros([], (Kind::Float, device)),
            aux: Tensor::zeros([], (Kind::Float, device)),
            steps: 0,
            tokens: 0,
            counts: BTreeMap::new(),
            time: Duration::ZERO,
            wait: Duration::ZERO,
        }
    }

    pub(super) fn restore(saved: &OpenWindow, device: Device) -> Self {
        let mut window = Self::new(device);
        window.loss = Tensor::from(saved.loss_sum as f32).to_device(device);
        window.aux = Tensor::from(saved.aux_sum as f32).to_device(device);
        window.steps = saved.steps;
        window.counts.clone_from(&saved.counts);
        window
    }

    pub(super) fn add(&mut self, step: &StepResult, tokens: u64, time: Duration, wait: Duration) {
        self.loss = &self.loss + &step.loss;
        self.aux = &self.aux + &step.aux_loss;
        self.steps += 1;
        self.tokens += tokens;
        self.time += time;
        self.wait += wait;
        for (layer, counts) in &step.loads {
            eval::add_counts(&mut self.counts, *layer, counts);
        }
    }

    pub(super) fn snapshot(&self) -> OpenWindow {
        OpenWindow {
            steps: self.steps,
            loss_sum: self.loss.double_value(&[]),
            aux_sum: self.aux.double_value(&[]),
            counts: self.counts.clone(),
        }
    }

    /// The `train` record of the window, which starts over.
    pub(super) fn flush(
        &mut self,
        step: u64,
        lr: f64,
        grad_norm: &Tensor,
        layers: &super::SparseLayers,
    ) -> Record {
        let steps = self.steps.max(1) as f64;
        let seconds = self.time.as_secs_f64().max(1e-9);
        let record = Record::Train {
            step,
            loss: self.loss.double_value(&[]) / steps,
            aux_loss: self.aux.double_value(&[]) / steps,
            lr,
            grad_norm: grad_norm.double_value(&[]),
            tokens_per_s: self.tokens as f64 / seconds,
            loader_wait: self.wait.as_secs_f64() / seconds,
            loads: eval::layer_loads(&self.counts, layers),
        };
        let device = self.loss.device();
        *self = Self::new(device);
        record
    }
}
