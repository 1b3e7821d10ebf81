//! The feed-forward part of a layer: dense, or one of the sparse kinds, behind one interface.

use tch::{nn, Tensor};

use super::base::BaseFfn;
use super::experts::ExpertBank;
use super::hash::HashFfn;
use super::routes::DeviceRoute;
use super::switch::SwitchFfn;

/// A layer's FFN.
#[derive(Debug)]
pub(crate) enum FeedForward {
    /// `B(relu(A(h)))`.
    Dense {
        /// A.
        a: nn::Linear,
        /// B.
        b: nn::Linear,
    },
    /// Hash or MultiHash: one route per hash.
    Hash {
        /// The layer.
        layer: HashFfn,
        /// The loader's handle of each hash's route (its index in the batch's routes).
        routes: Vec<hashprep::RouteHandle>,
    },
    /// BASE: balanced assignment in training, best expert at evaluation.
    Base(BaseFfn),
    /// Switch or Token-Switch.
    Switch {
        /// The layer.
        layer: SwitchFfn,
        /// Coefficient of its load-balancing loss.
        load_bal: f64,
    },
}

/// What an FFN produced for one batch, besides its output.
#[derive(Debug, Default)]
pub(crate) struct FfnExtras {
    /// Load-balancing term already multiplied by its coefficient.
    pub aux_loss: Option<Tensor>,
    /// Tokens per expert (Switch: plus a last entry for tokens dropped for capacity).
    pub counts: Option<Vec<u64>>,
}

impl FeedForward {
    /// A dense FFN `d -> D -> d`.
    pub(crate) fn dense(path: &nn::Path<'_>, d_model: i64, d_ff: i64) -> Self {
        let config = nn::LinearConfig::default();
        FeedForward::Dense {
            a: nn::linear(path / "a", d_model, d_ff, config),
            b: nn::linear(path / "b", d_ff, d_model, config),
        }
    }

    /// The experts of a sparse FFN.
    pub(crate) fn bank_mut(&mut self) -> Option<&mut ExpertBank> {
        match self {
            FeedForward::Dense { .. } => None,
            FeedForward::Hash { layer, .. } => Some(&mut layer.bank),
            FeedForward::Base(layer) => Some(&mut layer.bank),
            FeedForward::Switch { layer, .. } => Some(&mut layer.bank),
        }
    }

    /// `h`: `[N, d]`; `token_ids`: `[N]`; `routes`: the batch's routes; `train`: a training
    /// step (BASE assigns differently then).
    pub(crate) fn forward(
        &self,
        h: &Tensor,
        token_ids: &Tensor,
        routes: &[DeviceRoute],
        train: bool,
    ) -> (Tensor, FfnExtras) {
        match self {
            FeedForward::Dense { a, b } => (h.apply(a).relu().apply(b), FfnExtras::default()),
            FeedForward::Hash {
                layer,
                routes: handles,
            } => {
                let mine: Vec<&DeviceRoute> = handles.iter().map(|h| &routes[h.index()]).collect();
                // MultiHash: a token uses one segment of N experts; count every use.
                let mut counts = vec![0u64; mine[0].experts()];
                for route in &mine {
                    for (total, c) in counts.iter_mut().zip(route.counts()) {
                        *total += c;
                    }
                }
                (
                    layer.forward(h, &mine),
                    FfnExtras {
                        aux_loss: None,
                        counts: Some(counts),
                    },
                )
            }
            FeedForward::Base(layer) => {
                let (y, counts) = layer.forward(h, train);
                (
                    y,
                    FfnExtras {
                        aux_loss: None,
                        counts: Some(counts),
                    },
                )
            }
            FeedForward::Switch { layer, load_bal } => {
                let out = layer.forward(h, token_ids);
                (
                    out.y,
                    FfnExtras {
                        aux_loss: Some(out.balance_loss * *load_bal),
                        counts: Some(out.counts),
                    },
                )
            }
        }
    }
}
