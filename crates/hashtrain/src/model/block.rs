//! One pre-norm Transformer layer: self-attention, (a sequence-to-sequence decoder's)
//! cross-attention over the encoder, and the FFN, dense or one of the sparse kinds.

use tch::{nn, Tensor};

use super::attention::{CrossAttention, KeyMask, SelfAttention};
use super::ffn::FfnExtras;
use super::{BaseFfn, DeviceRoute, FeedForward, HashFfn, SwitchFfn, TableRouting};
use crate::config::{ModelConfig, Scoring, SparseKind, SparseLayer};

/// One layer.
#[derive(Debug)]
pub(super) struct Block {
    ln_attn: nn::LayerNorm,
    attn: SelfAttention,
    cross: Option<(nn::LayerNorm, CrossAttention)>,
    ln_ffn: nn::LayerNorm,
    pub(super) ffn: FeedForward,
}

/// The encoder's output as a decoder layer's cross-attention reads it.
pub(super) struct Memory<'a> {
    pub(super) states: &'a Tensor,
    pub(super) keys: &'a KeyMask,
}

impl Block {
    /// The layer at `path` with the FFN `sparse` asks (dense without), a cross-attention when
    /// `cross`; `routing` gives a table-routed FFN its routes.
    pub(super) fn new(
        path: &nn::Path<'_>,
        config: &ModelConfig,
        (sparse, cross): (Option<&SparseLayer>, bool),
        vocab: i64,
        routing: &dyn Fn() -> TableRouting,
    ) -> Self {
        let d = config.d_model;
        let norm =
            |name: &str| nn::layer_norm(path / name, vec![d], nn::LayerNormConfig::default());
        // Drawn in this order (FFN, then attention): a seed gives the weights it always gave.
        let ffn = feed_forward(&(path / "ffn"), config, sparse, vocab, routing);
        let ln_attn = norm("ln_attn");
        let attn = SelfAttention::new(&(path / "attn"), d, config.heads, config.dropout);
        let cross = cross.then(|| {
            let attention = CrossAttention::new(&(path / "cross"), d, config.heads, config.dropout);
            (norm("ln_cross"), attention)
        });
        Self {
            ln_attn,
            attn,
            cross,
            ln_ffn: norm("ln_ffn"),
            ffn,
        }
    }

    /// `x`: `[B, T, d]`; `keys`: the real positions of an encoder's rows (None: causal);
    /// `memory`: what cross-attention reads; `token_ids` (`[B * T]`) and `routes`: this stack's.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        (keys, memory): (Option<&KeyMask>, Option<&Memory<'_>>),
        (token_ids, routes): (&Tensor, &[DeviceRoute]),
        (dropout, train): (f64, bool),
    ) -> (Tensor, FfnExtras) {
        let (b, t, d) = x.size3().expect("[B, T, d]");
        let mut x = x + self
            .attn
            .forward(&x.apply(&self.ln_attn), keys, train)
            .dropout(dropout, train);
        if let (Some((ln, cross)), Some(memory)) = (&self.cross, memory) {
            let attended = cross.forward(&x.apply(ln), memory.states, memory.keys, train);
            x = &x + attended.dropout(dropout, train);
        }
        let h = x.apply(&self.ln_ffn).view([b * t, d]);
        let (y, extras) = self.ffn.forward(&h, token_ids, routes, train);
        (&x + y.view([b, t, d]).dropout(dropout, train), extras)
    }
}

/// The FFN of a layer: dense, or what its `[[model.sparse]]` entry asks.
fn feed_forward(
    path: &nn::Path<'_>,
    config: &ModelConfig,
    sparse: Option<&SparseLayer>,
    vocab: i64,
    routing: &dyn Fn() -> TableRouting,
) -> FeedForward {
    let d = config.d_model;
    let Some(s) = sparse else {
        return FeedForward::dense(path, d, config.d_ff);
    };
    let width = s.d_ff.unwrap_or(config.d_ff);
    match s.kind {
        SparseKind::Dense => FeedForward::dense(path, d, config.d_ff),
        SparseKind::Hash | SparseKind::Multihash => {
            let r = routing();
            FeedForward::Hash {
                layer: HashFfn::new(
                    path,
                    i64::from(r.experts),
                    r.routes.len() as i64,
                    (d, width),
                    (
                        i64::from(r.top_k),
                        s.scoring.unwrap_or(Scoring::Sqrtsoftplus),
                    ),
                ),
                routes: r.routes,
            }
        }
        SparseKind::Base => FeedForward::Base(BaseFfn::new(
            path,
            i64::from(s.experts.expect("validated")),
            d,
            width,
        )),
        SparseKind::Switch | SparseKind::TokenSwitch => FeedForward::Switch {
            layer: SwitchFfn::new(
                path,
                i64::from(s.experts.expect("validated")),
                d,
                width,
                (s.kind == SparseKind::TokenSwitch).then_some(vocab),
                s.capacity_factor,
            ),
            load_bal: s.load_bal,
        },
    }
}
