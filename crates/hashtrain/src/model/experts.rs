//! K expert FFNs `B_e(relu(A_e(h)))` stored as stacked tensors, and the grouped evaluation the
//! hash and switch layers share: gather the positions in expert order, run each expert on its
//! contiguous slice, put the results back in position order.

use tch::{nn, Tensor};

use super::routes::DeviceRoute;

/// The weights of K experts: `A_e = w1[e]` (`d x D`), `B_e = w2[e]` (`D x d`), with biases.
/// Each expert's tensors are parameters of their own: a gradient lands directly in its
/// expert, and an expert that saw no token this step gets none (stacking the experts into one
/// `[K, ...]` tensor made every expert's backward allocate and add a full-size gradient).
#[derive(Debug)]
pub struct ExpertBank {
    /// `[d, D]` per expert.
    pub w1: Vec<Tensor>,
    /// `[D]` per expert.
    pub b1: Vec<Tensor>,
    /// `[D, d]` per expert.
    pub w2: Vec<Tensor>,
    /// `[d]` per expert.
    pub b2: Vec<Tensor>,
}

impl ExpertBank {
    /// K experts of a `d -> D -> d` FFN, initialized as `nn::linear` initializes one (uniform
    /// in `±1/sqrt(fan_in)`); expert `e`'s tensors are `experts.e.{w1,b1,w2,b2}`.
    pub fn new(path: &nn::Path<'_>, experts: i64, d_model: i64, d_ff: i64) -> Self {
        let bound_in = 1.0 / (d_model as f64).sqrt();
        let bound_hidden = 1.0 / (d_ff as f64).sqrt();
        let uniform = |b: f64| nn::Init::Uniform { lo: -b, up: b };
        let mut bank = Self {
            w1: Vec::new(),
            b1: Vec::new(),
            w2: Vec::new(),
            b2: Vec::new(),
        };
        for e in 0..experts {
            let p = path / "experts" / e;
            bank.w1
                .push(p.var("w1", &[d_model, d_ff], uniform(bound_in)));
            bank.b1.push(p.var("b1", &[d_ff], uniform(bound_in)));
            bank.w2
                .push(p.var("w2", &[d_ff, d_model], uniform(bound_hidden)));
            bank.b2.push(p.var("b2", &[d_model], uniform(bound_hidden)));
        }
        bank
    }

    /// Number of experts K.
    pub fn experts(&self) -> i64 {
        self.w1.len() as i64
    }

    /// `(d, D)`.
    pub fn dims(&self) -> (i64, i64) {
        let size = self.w1[0].size();
        (size[0], size[1])
    }

    /// Segment `[from, from + width)` of expert `e`'s hidden units: `relu(x A_e[:, seg] + b)`.
    pub fn hidden(&self, e: i64, x: &Tensor, from: i64, width: i64) -> Tensor {
        let e = e as usize;
        if width == self.dims().1 {
            return self.b1[e].addmm(x, &self.w1[e]).relu();
        }
        self.b1[e]
            .narrow(0, from, width)
            .addmm(x, &self.w1[e].narrow(1, from, width))
            .relu()
    }

    /// Output columns `[from, from + width)` of expert `e` on hidden units `v`.
    pub fn output(&self, e: i64, v: &Tensor, from: i64, width: i64) -> Tensor {
        let e = e as usize;
        if width == self.dims().0 {
            return self.b2[e].addmm(v, &self.w2[e]);
        }
        self.b2[e]
            .narrow(0, from, width)
            .addmm(v, &self.w2[e].narrow(1, from, width))
    }

    /// The whole FFN of expert `e`.
    pub fn ffn(&self, e: i64, x: &Tensor) -> Tensor {
        let (d_model, d_ff) = self.dims();
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
    let grouped = run_groups(x, route, expert);
    // Scatter back: a permutation, so every row is written once; its backward is a gather.
    grouped.zeros_like().index_copy(0, &route.order, &grouped)
}

/// The top-k form of [`apply_grouped`]: each (position, slot) pair of `route` runs through its
/// expert, its output is scaled by its entry of `weights` (`[N * k]`, in `order`'s order), and
/// the k outputs of a position are summed.
pub fn apply_grouped_weighted(
    x: &Tensor,
    route: &DeviceRoute,
    weights: &Tensor,
    expert: impl Fn(i64, &Tensor) -> Tensor,
) -> Tensor {
    let grouped = run_groups(x, route, expert) * weights.unsqueeze(1);
    let mut size = grouped.size();
    size[0] = x.size()[0];
    Tensor::zeros(size.as_slice(), (grouped.kind(), grouped.device())).index_add(
        0,
        &route.order,
        &grouped,
    )
}

/// Gathers the rows of `route.order` and runs each expert on its slice, in expert order.
fn run_groups(x: &Tensor, route: &DeviceRoute, expert: impl Fn(i64, &Tensor) -> Tensor) -> Tensor {
    let sorted = x.index_select(0, &route.order);
    let parts: Vec<Tensor> = route
        .offsets
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] > w[0])
        .map(|(e, w)| expert(e as i64, &sorted.narrow(0, w[0], w[1] - w[0])))
        .collect();
    Tensor::cat(&parts, 0)
}
