//! Evaluation: mean loss per token, perplexity and expert loads over a tokenize output.

use std::collections::BTreeMap;

use hashprep::Loader;
use tch::Device;

use super::batch::DeviceBatch;
use super::metrics::LayerLoad;
use super::SparseLayers;
use crate::config::LayerId;
use crate::error::Result;
use crate::model::{masked_nll, LanguageModel};

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean loss per token (nats).
    pub loss: f64,
    /// `exp(loss)`.
    pub ppl: f64,
    /// Tokens evaluated.
    pub tokens: u64,
    /// Tokens per expert of each sparse layer.
    pub loads: Vec<LayerLoad>,
}

/// Adds `counts` of `layer` into `totals`.
pub(super) fn add_counts(totals: &mut BTreeMap<LayerId, Vec<u64>>, layer: LayerId, counts: &[u64]) {
    let total = totals.entry(layer).or_insert_with(|| vec![0; counts.len()]);
    for (t, c) in total.iter_mut().zip(counts) {
        *t += c;
    }
}

/// The loads of the sparse layers from summed counts.
pub(super) fn layer_loads(
    totals: &BTreeMap<LayerId, Vec<u64>>,
    layers: &SparseLayers,
) -> Vec<LayerLoad> {
    totals
        .iter()
        .map(|(&layer, counts)| {
            let (kind, experts) = layers[&layer];
            LayerLoad::new(layer, kind.name(), counts.clone(), experts)
        })
        .collect()
}

/// Runs `model` (no dropout, no gradients) over the first `max_batches` batches of `loader`
/// (0: all of one epoch).
///
/// # Errors
/// A batch the loader cannot build (an id outside the vocabulary, named by shard and row).
pub fn evaluate(
    model: &LanguageModel,
    loader: &mut Loader,
    device: Device,
    max_batches: u64,
    layers: &SparseLayers,
) -> Result<Evaluation> {
    let epoch = loader.batches_per_epoch();
    let batches = if max_batches == 0 {
        epoch
    } else {
        max_batches.min(epoch)
    };
    let start = loader.state().at(0);
    loader.resume(&start).expect("the loader's own fingerprint");
    let (mut nll, mut tokens) = (0.0f64, 0u64);
    let mut totals = BTreeMap::new();
    tch::no_grad(|| -> Result<()> {
        for batch in loader.take(batches, 1, 2) {
            let batch = DeviceBatch::new(&batch?, device);
            let out = model.forward(
                &batch.input_ids,
                &batch.routes,
                batch.encoder.as_ref(),
                false,
            );
            let (sum, _) = masked_nll(&out.logits, &batch.targets, &batch.mask);
            nll += sum.double_value(&[]);
            tokens += batch.tokens;
            for (layer, counts) in &out.loads {
                add_counts(&mut totals, *layer, counts);
            }
        }
        Ok(())
    })?;
    let loss = if tokens == 0 {
        f64::NAN
    } else {
        nll / tokens as f64
    };
    Ok(Evaluation {
        loss,
        ppl: loss.exp(),
        tokens,
        loads: layer_loads(&totals, layers),
    })
}
