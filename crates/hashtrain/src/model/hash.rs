//! The Hash layer (paper section 3.1) and its MultiHash form (section 3.2). The routes come
//! from the loader, already grouped by expert, so the device only gathers, multiplies and
//! scatters: no argsort, no nonzero, no device-to-host copy.
//!
//! MultiHash with N hashes splits each expert's `A` (`d x D`) into N column segments `A_{e,m}`
//! (`d x D/N`) and `B` (`D x d`) into N column segments `B_{e,m}` (`D x d/N`). For hashes
//! `k_1..k_N` of a token: `v = relu([A_{k_1,1} h, ..., A_{k_N,N} h])` and the output is
//! `[B_{k_1,1} v, ..., B_{k_N,N} v]`: the same parameters as K plain experts. (The paper writes
//! `B_m: R^{D/N} -> R^{d/N}` but applies it to the whole `v`; we follow the formula and its
//! "same number of parameters".) With N = 1 this is the plain Hash layer.
//!
//! Top-k (DeepSeek-V4's hash layers): a table of k experts per token; each token goes through
//! its k experts and their outputs are summed with weights `s_e / sum_j s_j` over the k chosen
//! experts, `s = f(W h)` from a learned gate `W` (`K x d`, `f` = softmax, sigmoid or
//! sqrt(softplus)), or `1/k` each (`uniform`, no gate).

use tch::{nn, Kind, Tensor};

use super::experts::{apply_grouped, apply_grouped_weighted, ExpertBank, Part};
use super::routes::DeviceRoute;
use crate::config::Scoring;

/// A Hash or MultiHash FFN.
#[derive(Debug)]
pub(crate) struct HashFfn {
    /// The experts.
    pub bank: ExpertBank,
    /// Number of hashes N.
    pub hashes: i64,
    /// Experts per token k (1 with MultiHash).
    pub top_k: i64,
    /// Top-k: how the k outputs are weighted, and the gate `[K, d]` unless uniform.
    pub scoring: Scoring,
    gate: Option<Tensor>,
}

impl HashFfn {
    /// K experts of width `d_ff`, N hashes (`d_model` and `d_ff` divisible by N), k experts per
    /// token weighted by `scoring` (k > 1 only with N = 1).
    pub(crate) fn new(
        path: &nn::Path<'_>,
        experts: i64,
        hashes: i64,
        (d_model, d_ff): (i64, i64),
        (top_k, scoring): (i64, Scoring),
    ) -> Self {
        assert!(
            hashes >= 1 && d_model % hashes == 0 && d_ff % hashes == 0,
            "d_model and d_ff must be multiples of the number of hashes (checked by the config)"
        );
        assert!(top_k == 1 || hashes == 1, "top-k tables have one hash");
        let bound = 1.0 / (d_model as f64).sqrt();
        let gate = (top_k > 1 && scoring != Scoring::Uniform).then(|| {
            path.var(
                "gate",
                &[experts, d_model],
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            )
        });
        Self {
            bank: ExpertBank::new(path, experts, d_model, d_ff),
            hashes,
            top_k,
            scoring,
            gate,
        }
    }

    /// `h`: `[N_tokens, d]`; `routes`: one per hash, in hash order.
    pub(crate) fn forward(&self, h: &Tensor, routes: &[&DeviceRoute]) -> Tensor {
        assert_eq!(routes.len() as i64, self.hashes, "one route per hash");
        let bank = &self.bank;
        if self.top_k > 1 {
            let weights = self.pair_weights(h, routes[0]);
            return apply_grouped_weighted(h, routes[0], &weights, bank);
        }
        if self.hashes == 1 {
            return apply_grouped(h, routes[0], bank, Part::Ffn);
        }
        let (d_model, d_ff) = bank.dims();
        let (seg_hidden, seg_out) = (d_ff / self.hashes, d_model / self.hashes);
        let hidden: Vec<Tensor> = routes
            .iter()
            .zip(0..)
            .map(|(route, m)| {
                let part = Part::Hidden {
                    from: m * seg_hidden,
                    width: seg_hidden,
                };
                apply_grouped(h, route, bank, part)
            })
            .collect();
        let v = Tensor::cat(&hidden, 1);
        let outputs: Vec<Tensor> = routes
            .iter()
            .zip(0..)
            .map(|(route, m)| {
                let part = Part::Output {
                    from: m * seg_out,
                    width: seg_out,
                };
                apply_grouped(&v, route, bank, part)
            })
            .collect();
        Tensor::cat(&outputs, 1)
    }

    /// The weight of each (position, slot) pair of a top-k `route`, in its `order`.
    fn pair_weights(&self, h: &Tensor, route: &DeviceRoute) -> Tensor {
        assert_eq!(
            route.top_k, self.top_k,
            "a route of the layer's top-k table"
        );
        let pairs = route.pairs.as_ref().expect("a top-k route");
        let Some(gate) = &self.gate else {
            let n = pairs.flat.size()[0];
            return Tensor::full([n], 1.0 / self.top_k as f64, (h.kind(), h.device()));
        };
        let logits = h.matmul(&gate.tr());
        let scores = match self.scoring {
            Scoring::Softmax => logits.softmax(-1, Kind::Float),
            Scoring::Sigmoid => logits.sigmoid(),
            Scoring::Sqrtsoftplus => logits.softplus().sqrt(),
            Scoring::Uniform => unreachable!("no gate"),
        };
        let chosen = scores.gather(1, &pairs.expert_ids, false);
        let normalized = &chosen / (chosen.sum_dim_intlist(1, true, Kind::Float) + 1e-20);
        normalized.view([-1]).index_select(0, &pairs.flat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExpertMatmul;
    use tch::Device;

    /// Each token through its own expert(s), one at a time: the formula, without grouping.
    fn naive(layer: &HashFfn, h: &Tensor, expert_ids: &[Vec<u32>]) -> Tensor {
        let bank = &layer.bank;
        let n = layer.hashes;
        let (d_model, d_ff) = bank.dims();
        let rows: Vec<Tensor> = (0..h.size()[0])
            .map(|i| {
                let x = h.get(i).unsqueeze(0);
                let experts: Vec<i64> = expert_ids
                    .iter()
                    .map(|ids| i64::from(ids[i as usize]))
                    .collect();
                let v = Tensor::cat(
                    &experts
                        .iter()
                        .zip(0..)
                        .map(|(&e, m)| bank.hidden(e, &x, m * d_ff / n, d_ff / n))
                        .collect::<Vec<_>>(),
                    1,
                );
                Tensor::cat(
                    &experts
                        .iter()
                        .zip(0..)
                        .map(|(&e, m)| bank.output(e, &v, m * d_model / n, d_model / n))
                        .collect::<Vec<_>>(),
                    1,
                )
            })
            .collect();
        Tensor::cat(&rows, 0)
    }

    fn check_against_naive(hashes: i64, matmul: ExpertMatmul) {
        tch::manual_seed(7);
        // Segments of 16 bytes or more, so the grouped GEMM runs them.
        let (experts, d_model, d_ff, tokens) = (5, 16, 16, 37);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut layer = HashFfn::new(
            &vs.root(),
            experts,
            hashes,
            (d_model, d_ff),
            (1, Scoring::Uniform),
        );
        layer.bank.matmul = matmul;
        let h =
            Tensor::randn([tokens, d_model], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        // Expert 3 gets no token in the first hash: empty groups must be skipped.
        let expert_ids: Vec<Vec<u32>> = (0..hashes)
            .map(|m| {
                (0..tokens as u32)
                    .map(|i| {
                        let e = (i * 7 + m as u32 * 3 + i / 5) % experts as u32;
                        if m == 0 && e == 3 {
                            1
                        } else {
                            e
                        }
                    })
                    .collect()
            })
            .collect();
        let routes: Vec<DeviceRoute> = expert_ids
            .iter()
            .map(|ids| DeviceRoute::from_expert_ids(ids, 1, experts as u32, Device::Cpu))
            .collect();
        let route_refs: Vec<&DeviceRoute> = routes.iter().collect();

        let grads = |y: &Tensor| {
            let weights = Tensor::linspace(-1.0, 1.0, y.numel() as i64, (Kind::Float, Device::Cpu))
                .view_as(y);
            let mut vars = vs.trainable_variables();
            vars.push(h.shallow_clone());
            Tensor::run_backward(&[(y * &weights).sum(Kind::Float)], &vars, false, false)
        };
        let fast = layer.forward(&h, &route_refs);
        let slow = naive(&layer, &h, &expert_ids);
        let max_diff = (&fast - &slow).abs().max().double_value(&[]);
        assert!(max_diff < 1e-5, "forward differs by {max_diff}");
        for (a, b) in grads(&fast).iter().zip(grads(&slow).iter()) {
            // An expert no token reached has no gradient in either.
            assert_eq!(a.defined(), b.defined());
            if !a.defined() {
                continue;
            }
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "gradient differs by {diff}");
        }
        // The reference really depends on the routing: another routing gives another output.
        let shifted: Vec<DeviceRoute> = expert_ids
            .iter()
            .map(|ids| {
                let moved: Vec<u32> = ids.iter().map(|e| (e + 1) % experts as u32).collect();
                DeviceRoute::from_expert_ids(&moved, 1, experts as u32, Device::Cpu)
            })
            .collect();
        let other = layer.forward(&h, &shifted.iter().collect::<Vec<_>>());
        assert!((&other - &fast).abs().max().double_value(&[]) > 1e-3);
    }

    #[test]
    fn hash_layer_matches_per_token_reference() {
        check_against_naive(1, ExpertMatmul::Loop);
        check_against_naive(1, ExpertMatmul::Grouped);
    }

    /// Sum of each token's k experts, weighted by the gate formula computed for that token
    /// alone.
    fn naive_top_k(layer: &HashFfn, h: &Tensor, expert_ids: &[u32]) -> Tensor {
        let k = layer.top_k as usize;
        let rows: Vec<Tensor> = (0..h.size()[0])
            .map(|i| {
                let x = h.get(i).unsqueeze(0);
                let mine = &expert_ids[i as usize * k..(i as usize + 1) * k];
                let scores: Vec<Tensor> = match &layer.gate {
                    None => (0..k).map(|_| Tensor::from(1.0f32)).collect(),
                    Some(gate) => {
                        let logits = x.matmul(&gate.tr()).squeeze_dim(0);
                        let all = match layer.scoring {
                            Scoring::Softmax => logits.softmax(0, Kind::Float),
                            Scoring::Sigmoid => logits.sigmoid(),
                            Scoring::Sqrtsoftplus => logits.softplus().sqrt(),
                            Scoring::Uniform => unreachable!(),
                        };
                        mine.iter().map(|&e| all.get(i64::from(e))).collect()
                    }
                };
                let total = scores.iter().fold(Tensor::from(0.0f32), |a, s| a + s);
                mine.iter()
                    .zip(&scores)
                    .map(|(&e, s)| layer.bank.ffn(i64::from(e), &x) * (s / &total))
                    .fold(Tensor::zeros_like(&x), |a, y| a + y)
            })
            .collect();
        Tensor::cat(&rows, 0)
    }

    #[test]
    fn top_k_layer_matches_per_token_reference_for_every_scoring() {
        let scorings = [
            Scoring::Softmax,
            Scoring::Sigmoid,
            Scoring::Sqrtsoftplus,
            Scoring::Uniform,
        ];
        for (scoring, matmul) in scorings
            .into_iter()
            .flat_map(|s| [(s, ExpertMatmul::Loop), (s, ExpertMatmul::Grouped)])
        {
            tch::manual_seed(11);
            let (experts, k, d_model, d_ff, tokens) = (6u32, 3usize, 8, 12, 29);
            let vs = nn::VarStore::new(Device::Cpu);
            let mut layer = HashFfn::new(
                &vs.root(),
                i64::from(experts),
                1,
                (d_model, d_ff),
                (k as i64, scoring),
            );
            layer.bank.matmul = matmul;
            assert_eq!(layer.gate.is_some(), scoring != Scoring::Uniform);
            let h = Tensor::randn([tokens, d_model], (Kind::Float, Device::Cpu))
                .set_requires_grad(true);
            // k distinct experts per token; expert 5 gets no pair.
            let expert_ids: Vec<u32> = (0..tokens as u32)
                .flat_map(|i| (0..k as u32).map(move |j| (i * 2 + j) % 5))
                .collect();
            let route = DeviceRoute::from_expert_ids(&expert_ids, k as u32, experts, Device::Cpu);
            let fast = layer.forward(&h, &[&route]);
            let slow = naive_top_k(&layer, &h, &expert_ids);
            let diff = (&fast - &slow).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{scoring:?}: forward differs by {diff}");
            let weights =
                Tensor::linspace(-1.0, 1.0, fast.numel() as i64, (Kind::Float, Device::Cpu))
                    .view_as(&fast);
            let grads = |y: &Tensor| {
                let mut vars = vs.trainable_variables();
                vars.push(h.shallow_clone());
                Tensor::run_backward(&[(y * &weights).sum(Kind::Float)], &vars, false, false)
            };
            for (a, b) in grads(&fast).iter().zip(grads(&slow).iter()) {
                assert_eq!(a.defined(), b.defined());
                if a.defined() {
                    let diff = (a - b).abs().max().double_value(&[]);
                    assert!(diff < 1e-5, "{scoring:?}: gradient differs by {diff}");
                }
            }
        }
    }

    #[test]
    fn multihash_matches_its_formula() {
        for matmul in [ExpertMatmul::Loop, ExpertMatmul::Grouped] {
            check_against_naive(2, matmul);
            check_against_naive(4, matmul);
        }
    }
}
