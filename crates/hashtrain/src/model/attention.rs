//! Multi-head causal self-attention (libtorch's fused scaled-dot-product kernel).

use tch::{nn, Tensor};

/// Causal self-attention over `[B, T, d]`.
#[derive(Debug)]
pub(crate) struct CausalSelfAttention {
    qkv: nn::Linear,
    out: nn::Linear,
    heads: i64,
    dropout: f64,
}

impl CausalSelfAttention {
    /// `heads` heads of `d_model / heads` dimensions.
    pub(crate) fn new(path: &nn::Path<'_>, d_model: i64, heads: i64, dropout: f64) -> Self {
        let config = nn::LinearConfig::default();
        Self {
            qkv: nn::linear(path / "qkv", d_model, 3 * d_model, config),
            out: nn::linear(path / "out", d_model, d_model, config),
            heads,
            dropout,
        }
    }

    /// Each position attends to itself and the positions before it.
    pub(crate) fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let (b, t, d) = x.size3().expect("[B, T, d]");
        let head_dim = d / self.heads;
        let qkv = x
            .apply(&self.qkv)
            .view([b, t, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let dropout = if train { self.dropout } else { 0.0 };
        Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, dropout, true, None, false)
            .transpose(1, 2)
            .contiguous()
            .view([b, t, d])
            .apply(&self.out)
    }
}
