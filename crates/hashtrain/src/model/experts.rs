//! K expert FFNs `B_e(relu(A_e(h)))` stored as stacked tensors, and the grouped evaluation the
//! hash and switch layers share: gather the positions in expert order, run each expert on its
//! contiguous slice, put the results back in position order.

use tch::{nn, Tensor};

use super::routes::DeviceRoute;

/// The weights of K experts: `A_e = w1[e]` (`d x D`), `B_e = w2[e]` (`D x d`), with biases.
#[derive(Debug)]
pub struct ExpertBank {
    /// `[K, d, D]`.
    pub w1: Tensor,
    /// `[K, D]`.
    pub b1: Tensor,
    /// `[K, D, d]`.
    pub w2: Tensor,
    /// `[K, d]`.
    pub b2: Tensor,
}

impl ExpertBank {
    /// K experts of a `d -> D -> d` FFN, initialized as `nn::linear` initializes one (uniform
    /// in `±1/sqrt(fan_in)`).
    pub fn new(path: &nn::Path<'_>, experts: i64, d_model: i64, d_ff: i64) -> Self {
        let bound_in = 1.0 / (d_model as f64).sqrt();
        let bound_hidden = 1.0 / (d_ff as f64).sqrt();
        let uniform = |b: f64| nn::Init::Uniform { lo: -b, up: b };
        Self {
            w1: path.var("w1", &[experts, d_model, d_ff], uniform(bound_in)),
            b1: path.var("b1", &[experts, d_ff], uniform(bound_in)),
            w2: path.var("w2", &[experts, d_ff, d_model], uniform(bound_hidden)),
            b2: path.var("b2", &[experts, d_model], uniform(bound_hidden)),
        }
    }

    /// Number of experts K.
    pub fn experts(&self) -> i64 {
        self.w1.size()[0]
    }

    /// Segment `[from, from + width)` of expert `e`'s hidden units: `relu(x A_e[:, seg] + b)`.
    pub fn hidden(&self, e: i64, x: &Tensor, from: i64, width: i64) -> Tensor {
        (x.matmul(&self.w1.get(e).narrow(1, from, width)) + self.b1.get(e).narrow(0, from, width))
            .relu()
    }

    /// Output columns `[from, from + width)` of expert `e` on hidden units `v`.
    pub fn output(&self, e: i64, v: &Tensor, from: i64, width: i64) -> Tensor {
        v.matmul(&self.w2.get(e).narrow(1, from, width)) + self.b2.get(e).narrow(0, from, width)
    }

    /// The whole FFN of expert `e`.
    pub fn ffn(&self, e: i64, x: &Tensor) -> Tensor {
        let (d_ff, d_model) = (self.w1.size()[2], self.w1.size()[1]);
        self.output(e, &self.hidden(e, x, 0, d_ff), 0, d_model)
    }
}

/// Applies `expert(e, rows)` to each expert's positions of `x` (`[N, *]`) as grouped by
/// `route`, and returns the results in position order. Each expert sees one contiguous slice;
/// the slice bounds come from the host, so nothing waits on the device.
pub fn apply_grouped(
    x: &Tensor,
    route: &DeviceRoute,
    expert: impl Fn(i64, &Tensor) -> Tensor,
) -> Tensor {
    let sorted = x.index_select(0, &route.order);
    let parts: Vec<Tensor> = route
        .offsets
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] > w[0])
        .map(|(e, w)| expert(e as i64, &sorted.narrow(0, w[0], w[1] - w[0])))
        .collect();
    Tensor::cat(&parts, 0).index_select(0, &route.inverse)
}
