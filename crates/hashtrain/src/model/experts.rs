//! K expert FFNs `B_e(relu(A_e(h)))`, and the grouped evaluation every sparse kind shares:
//! gather the positions in expert order, run each expert on its contiguous slice, put the
//! results back in position order.
//!
//! The experts run one matrix product per expert (the loop), or all at once through libtorch's
//! grouped GEMM (`_grouped_mm`) over the same slices: one kernel instead of K on a GPU. The
//! grouped form stacks the weights of the experts that have rows this step, so an expert that
//! saw no token still gets no gradient, as in the loop.

use tch::{nn, Kind, Tensor};

use super::groups::Groups;
use super::routes::DeviceRoute;

/// How a bank runs its experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpertMatmul {
    /// One matrix product per expert with rows.
    #[default]
    Loop,
    /// One grouped GEMM per stage, where the shapes allow it (rows of 16-byte multiples);
    /// otherwise the loop.
    Grouped,
}

/// What of each expert to run on its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The whole FFN.
    Ffn,
    /// Hidden units `[from, from + width)`: `relu(x A_e[:, seg] + b)`.
    Hidden {
        /// First unit.
        from: i64,
        /// Units.
        width: i64,
    },
    /// Output columns `[from, from + width)` of `B_e` on hidden units.
    Output {
        /// First column.
        from: i64,
        /// Columns.
        width: i64,
    },
}

/// The weights of K experts: `A_e = w1[e]` (`d x D`), `B_e = w2[e]` (`D x d`), with biases.
/// Each expert's tensors are parameters of their own: a gradient lands directly in its
/// expert, and an expert that saw no token this step gets none (stacking the experts into one
/// `[K, ...]` tensor made every expert's backward allocate and add a full-size gradient).
#[derive(Debug)]
pub(crate) struct ExpertBank {
    /// How the experts run (set once the model is built).
    pub matmul: ExpertMatmul,
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
    pub(crate) fn new(path: &nn::Path<'_>, experts: i64, d_model: i64, d_ff: i64) -> Self {
        let bound_in = 1.0 / (d_model as f64).sqrt();
        let bound_hidden = 1.0 / (d_ff as f64).sqrt();
        let uniform = |b: f64| nn::Init::Uniform { lo: -b, up: b };
        let mut bank = Self {
            matmul: ExpertMatmul::Loop,
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
    pub(crate) fn experts(&self) -> i64 {
        self.w1.len() as i64
    }

    /// `(d, D)`.
    pub(crate) fn dims(&self) -> (i64, i64) {
        let size = self.w1[0].size();
        (size[0], size[1])
    }

    /// Segment `[from, from + width)` of expert `e`'s hidden units: `relu(x A_e[:, seg] + b)`.
    pub(crate) fn hidden(&self, e: i64, x: &Tensor, from: i64, width: i64) -> Tensor {
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
    pub(crate) fn output(&self, e: i64, v: &Tensor, from: i64, width: i64) -> Tensor {
        let e = e as usize;
        if width == self.dims().0 {
            return self.b2[e].addmm(v, &self.w2[e]);
        }
        self.b2[e]
            .narrow(0, from, width)
            .addmm(v, &self.w2[e].narrow(1, from, width))
    }

    /// The whole FFN of expert `e`.
    pub(crate) fn ffn(&self, e: i64, x: &Tensor) -> Tensor {
        let (d_model, d_ff) = self.dims();
        self.output(e, &self.hidden(e, x, 0, d_ff), 0, d_model)
    }

    /// `part` of each expert on its rows of `sorted` (`[M, *]`, grouped as `groups`).
    pub(crate) fn run(&self, sorted: &Tensor, groups: &Groups, part: Part) -> Tensor {
        if groups.spans.is_empty() {
            let width = match part {
                Part::Ffn => self.dims().0,
                Part::Hidden { width, .. } | Part::Output { width, .. } => width,
            };
            return Tensor::zeros([0, width], (sorted.kind(), sorted.device()));
        }
        if self.matmul == ExpertMatmul::Grouped && self.grouped_fits(sorted, part) {
            return self.run_grouped(sorted, groups, part);
        }
        let parts: Vec<Tensor> = groups
            .spans
            .iter()
            .map(|&(e, start, rows)| {
                let x = sorted.narrow(0, start, rows);
                match part {
                    Part::Ffn => self.ffn(e, &x),
                    Part::Hidden { from, width } => self.hidden(e, &x, from, width),
                    Part::Output { from, width } => self.output(e, &x, from, width),
                }
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    /// The grouped GEMM reads rows and weight columns in 16-byte steps.
    pub(crate) fn grouped_fits(&self, x: &Tensor, part: Part) -> bool {
        let (d_model, d_ff) = self.dims();
        let bytes = x.kind().elt_size_in_bytes() as i64;
        let widths = match part {
            Part::Ffn => vec![d_model, d_ff],
            Part::Hidden { width, .. } | Part::Output { width, .. } => vec![x.size()[1], width],
        };
        widths.iter().all(|w| w * bytes % 16 == 0)
    }

    fn run_grouped(&self, sorted: &Tensor, groups: &Groups, part: Part) -> Tensor {
        assert_eq!(sorted.size()[0], groups.rows(), "rows of the groups");
        // Each row's index among the non-empty groups, for its expert's bias.
        let row_group = Tensor::arange(groups.rows(), (Kind::Int64, sorted.device())).bucketize(
            &groups.ends,
            false,
            true,
        );
        let (d_model, d_ff) = self.dims();
        let linear = |x: &Tensor, (w, b): (&[Tensor], &[Tensor]), from: i64, width: i64| {
            let full = w[0].size()[1] == width;
            let stacked = |tensors: &[Tensor], dim: i64| {
                let picked: Vec<Tensor> = groups
                    .spans
                    .iter()
                    .map(|&(e, _, _)| {
                        let t = &tensors[e as usize];
                        if full {
                            t.shallow_clone()
                        } else {
                            t.narrow(dim, from, width)
                        }
                    })
                    .collect();
                Tensor::stack(&picked, 0)
            };
            x.internal_grouped_mm(&stacked(w, 1), Some(&groups.ends), None, None)
                + stacked(b, 0).index_select(0, &row_group)
        };
        let first = (self.w1.as_slice(), self.b1.as_slice());
        let second = (self.w2.as_slice(), self.b2.as_slice());
        match part {
            Part::Ffn => linear(&linear(sorted, first, 0, d_ff).relu(), second, 0, d_model),
            Part::Hidden { from, width } => linear(sorted, first, from, width).relu(),
            Part::Output { from, width } => linear(sorted, second, from, width),
        }
    }
}

/// Applies `part` of each position's expert to the rows of `x` (`[N, *]`) as grouped by
/// `route`, and returns the results in position order.
pub(crate) fn apply_grouped(
    x: &Tensor,
    route: &DeviceRoute,
    bank: &ExpertBank,
    part: Part,
) -> Tensor {
    let grouped = run_groups(x, route, bank, part);
    // Scatter back: a permutation, so every row is written once; its backward is a gather.
    grouped.zeros_like().index_copy(0, &route.order, &grouped)
}

/// The top-k form of [`apply_grouped`]: each (position, slot) pair of `route` runs through its
/// expert, its output is scaled by its entry of `weights` (`[N * k]`, in `order`'s order), and
/// the k outputs of a position are summed.
pub(crate) fn apply_grouped_weighted(
    x: &Tensor,
    route: &DeviceRoute,
    weights: &Tensor,
    bank: &ExpertBank,
) -> Tensor {
    let grouped = run_groups(x, route, bank, Part::Ffn) * weights.unsqueeze(1).to_kind(x.kind());
    let mut size = grouped.size();
    size[0] = x.size()[0];
    Tensor::zeros(size.as_slice(), (grouped.kind(), grouped.device())).index_add(
        0,
        &route.order,
        &grouped,
    )
}

/// Gathers the rows of `route.order` and runs each expert on its slice, in expert order.
fn run_groups(x: &Tensor, route: &DeviceRoute, bank: &ExpertBank, part: Part) -> Tensor {
    bank.run(&x.index_select(0, &route.order), &route.groups, part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Output and every gradient (weights and input) of `part` run both ways, on rows grouped
    /// as `offsets`.
    fn both_ways(
        bank: &mut ExpertBank,
        x: &Tensor,
        offsets: &[i64],
        part: Part,
    ) -> [Vec<Tensor>; 2] {
        let groups = Groups::upload(offsets, Device::Cpu);
        [ExpertMatmul::Loop, ExpertMatmul::Grouped].map(|matmul| {
            bank.matmul = matmul;
            let y = bank.run(x, &groups, part);
            let weights = Tensor::linspace(-1.0, 1.0, y.numel() as i64, (Kind::Float, Device::Cpu))
                .view_as(&y);
            let mut inputs: Vec<Tensor> = [&bank.w1, &bank.b1, &bank.w2, &bank.b2]
                .into_iter()
                .flatten()
                .map(Tensor::shallow_clone)
                .collect();
            inputs.push(x.shallow_clone());
            let mut out = vec![y.detach()];
            out.extend(Tensor::run_backward(
                &[(&y * &weights).sum(Kind::Float)],
                &inputs,
                false,
                true,
            ));
            out
        })
    }

    #[test]
    fn grouped_gemm_gives_the_loops_outputs_and_gradients() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let (d_model, d_ff) = (8, 16);
        let mut bank = ExpertBank::new(&vs.root(), 5, d_model, d_ff);
        // 23 rows; expert 1 and expert 4 get none.
        let offsets = [0, 6, 6, 15, 23, 23];
        for part in [
            Part::Ffn,
            Part::Hidden { from: 4, width: 8 },
            Part::Output { from: 4, width: 4 },
        ] {
            let input_width = if let Part::Output { .. } = part {
                d_ff
            } else {
                d_model
            };
            let x = Tensor::randn([23, input_width], (Kind::Float, Device::Cpu))
                .set_requires_grad(true);
            assert!(bank.grouped_fits(&x, part), "{part:?} runs grouped");
            let [looped, grouped] = both_ways(&mut bank, &x, &offsets, part);
            for (i, (a, b)) in looped.iter().zip(&grouped).enumerate() {
                // Experts without rows get no gradient either way.
                assert_eq!(a.defined(), b.defined(), "{part:?}: tensor {i}");
                if a.defined() {
                    let diff = (a - b).abs().max().double_value(&[]);
                    assert!(diff < 1e-5, "{part:?}: tensor {i} differs by {diff}");
                }
            }
            assert!(
                !grouped[2].defined() && !grouped[5].defined(),
                "expert 1 and 4 unused"
            );
        }
    }

    #[test]
    fn widths_the_grouped_gemm_cannot_read_fall_back_to_the_loop() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut bank = ExpertBank::new(&vs.root(), 3, 8, 12);
        // 6 float32 hidden units are 24 bytes: not a 16-byte multiple.
        let part = Part::Hidden { from: 6, width: 6 };
        let x = Tensor::randn([10, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        assert!(!bank.grouped_fits(&x, part));
        let [looped, grouped] = both_ways(&mut bank, &x, &[0, 3, 3, 10], part);
        assert!((&looped[0] - &grouped[0]).abs().max().double_value(&[]) < 1e-6);
        // No rows at all: an empty result of the part's width.
        let groups = Groups::upload(&[0, 0, 0, 0], Device::Cpu);
        let empty = bank.run(&x.narrow(0, 0, 0), &groups, Part::Ffn);
        assert_eq!(empty.size(), [0, 8]);
    }

    #[test]
    fn layout_keeps_the_non_empty_groups_in_order() {
        let (spans, ends) = Groups::layout(&[0, 2, 2, 7, 7]);
        assert_eq!(spans, [(0, 0, 2), (2, 2, 5)]);
        assert_eq!(ends, [2, 7]);
    }
}
