//! Multi-head attention (libtorch's fused scaled-dot-product kernel): a decoder's causal
//! self-attention, an encoder's self-attention over the real positions of each row, and a
//! decoder's cross-attention over the encoder's output.

use tch::{nn, Tensor};

/// Which positions of a row keys may be, for rows of different lengths.
#[derive(Debug)]
pub struct KeyMask {
    /// `[B, 1, 1, S]` bool: true where a position is real. A row without any real position
    /// lets its first position through, so that no softmax is over nothing (no NaN); its
    /// cross-attention output is zeroed by `has_keys`.
    pub attend: Tensor,
    /// `[B, 1, 1]` float32: 1 for a row with real positions, else 0.
    pub has_keys: Tensor,
}

/// Self-attention over `[B, T, d]`: causal (a decoder), or over the real positions of each
/// row (an encoder).
#[derive(Debug)]
pub(crate) struct SelfAttention {
    qkv: nn::Linear,
    out: nn::Linear,
    heads: i64,
    dropout: f64,
}

impl KeyMask {
    /// The masks of rows of `lengths` real positions out of `positions`, built on the host:
    /// `(attend, has_keys)` as `[B * positions]` and `[B]` values of 0 and 1.
    pub fn host_values(lengths: &[u32], positions: usize) -> (Vec<i64>, Vec<i64>) {
        let mut attend = Vec::with_capacity(lengths.len() * positions);
        for &length in lengths {
            // A row without context lets its first position through (see `attend`).
            let open = (length as usize).max(1);
            attend.extend((0..positions).map(|p| i64::from(p < open)));
        }
        let has_keys = lengths.iter().map(|&l| i64::from(l > 0)).collect();
        (attend, has_keys)
    }

    /// The masks from the values of [`KeyMask::host_values`] on the device.
    pub fn from_values(attend: &Tensor, has_keys: &Tensor, rows: i64) -> Self {
        Self {
            attend: attend.to_kind(tch::Kind::Bool).view([rows, 1, 1, -1]),
            has_keys: has_keys.to_kind(tch::Kind::Float).view([rows, 1, 1]),
        }
    }
}

impl SelfAttention {
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

    /// Without `keys`: each position attends to itself and the positions before it. With
    /// `keys`: each position attends to every real position of its row.
    pub(crate) fn forward(&self, x: &Tensor, keys: Option<&KeyMask>, train: bool) -> Tensor {
        let (b, t, d) = x.size3().expect("[B, T, d]");
        let head_dim = d / self.heads;
        let qkv = x
            .apply(&self.qkv)
            .view([b, t, 3, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let dropout = if train { self.dropout } else { 0.0 };
        let mask = keys.map(|k| &k.attend);
        Tensor::scaled_dot_product_attention(&q, &k, &v, mask, dropout, mask.is_none(), None, false)
            .transpose(1, 2)
            .contiguous()
            .view([b, t, d])
            .apply(&self.out)
    }
}

/// A decoder layer's attention over the encoder's output.
#[derive(Debug)]
pub(crate) struct CrossAttention {
    q: nn::Linear,
    kv: nn::Linear,
    out: nn::Linear,
    heads: i64,
    dropout: f64,
}

impl CrossAttention {
    /// `heads` heads of `d_model / heads` dimensions.
    pub(crate) fn new(path: &nn::Path<'_>, d_model: i64, heads: i64, dropout: f64) -> Self {
        let config = nn::LinearConfig::default();
        Self {
            q: nn::linear(path / "q", d_model, d_model, config),
            kv: nn::linear(path / "kv", d_model, 2 * d_model, config),
            out: nn::linear(path / "out", d_model, d_model, config),
            heads,
            dropout,
        }
    }

    /// `x`: `[B, T, d]` decoder states; `memory`: `[B, S, d]` the encoder's output, of which
    /// each row's real positions (`keys`) are attended; rows without any give 0.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        memory: &Tensor,
        keys: &KeyMask,
        train: bool,
    ) -> Tensor {
        let (b, t, d) = x.size3().expect("[B, T, d]");
        let s = memory.size()[1];
        let head_dim = d / self.heads;
        let q = x
            .apply(&self.q)
            .view([b, t, self.heads, head_dim])
            .transpose(1, 2);
        let kv = memory
            .apply(&self.kv)
            .view([b, s, 2, self.heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (k, v) = (kv.get(0), kv.get(1));
        let dropout = if train { self.dropout } else { 0.0 };
        let attended = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(&keys.attend),
            dropout,
            false,
            None,
            false,
        );
        attended
            .transpose(1, 2)
            .contiguous()
            .view([b, t, d])
            .apply(&self.out)
            * keys.has_keys.to_kind(x.kind())
    }
}
