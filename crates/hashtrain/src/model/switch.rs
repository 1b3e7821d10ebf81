//! Switch (Fedus et al.) and Token-Switch FFNs: a softmax router picks one expert per token on
//! the device, the expert's output is scaled by the router probability, and a load-balancing
//! loss `K * sum_k f_k * P_k` (f: share of tokens sent to k, P: mean router probability of k)
//! keeps experts busy. Grouping needs a device sort and one device-to-host copy of the group
//! sizes per layer: the cost that precomputed hash routes avoid.

use tch::{nn, Kind, Tensor};

use super::experts::{ExpertBank, Part};
use super::groups::Groups;

/// A Switch FFN; with a token embedding, Token-Switch.
#[derive(Debug)]
pub(crate) struct SwitchFfn {
    /// The experts.
    pub bank: ExpertBank,
    router: nn::Linear,
    /// Token-Switch: the router's input is this embedding of the current token.
    token_embedding: Option<Tensor>,
    capacity_factor: Option<f64>,
}

/// What a Switch layer produced for one batch.
#[derive(Debug)]
pub(crate) struct SwitchOutput {
    /// `[N, d]`.
    pub y: Tensor,
    /// The load-balancing loss (scalar, not yet multiplied by its coefficient).
    pub balance_loss: Tensor,
    /// Tokens each expert ran, and (last) tokens dropped for capacity.
    pub counts: Vec<u64>,
}

impl SwitchFfn {
    /// K experts; `vocab` given: Token-Switch with a `vocab x d` router embedding.
    pub(crate) fn new(
        path: &nn::Path<'_>,
        experts: i64,
        d_model: i64,
        d_ff: i64,
        vocab: Option<i64>,
        capacity_factor: Option<f64>,
    ) -> Self {
        let token_embedding = vocab.map(|v| {
            path.var(
                "router_embedding",
                &[v, d_model],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )
        });
        Self {
            bank: ExpertBank::new(path, experts, d_model, d_ff),
            router: nn::linear(
                path / "router",
                d_model,
                experts,
                nn::LinearConfig::default(),
            ),
            token_embedding,
            capacity_factor,
        }
    }

    /// `h`: `[N, d]`; `token_ids`: `[N]` i64 (Token-Switch routes on them).
    pub(crate) fn forward(&self, h: &Tensor, token_ids: &Tensor) -> SwitchOutput {
        let experts = self.bank.experts();
        let router_input = match &self.token_embedding {
            Some(embedding) => embedding.index_select(0, token_ids),
            None => h.shallow_clone(),
        };
        let probs = router_input.apply(&self.router).softmax(-1, Kind::Float);
        let (gate, expert) = probs.max_dim(1, false);
        let balance_loss = load_balancing_loss(&probs, &expert);
        // Tokens over an expert's capacity go to bucket K, which runs nothing.
        let bucket = match self.capacity_factor {
            Some(factor) => {
                let tokens = h.size()[0];
                let capacity = (factor * tokens as f64 / experts as f64).ceil() as i64;
                let one_hot = expert.one_hot(experts);
                let rank = (one_hot.cumsum(0, Kind::Int64) * &one_hot).sum_dim_intlist(
                    1,
                    false,
                    Kind::Int64,
                ) - 1;
                let kept = rank.lt(capacity).to_kind(Kind::Int64);
                &expert * &kept + (1 - &kept) * experts
            }
            None => expert,
        };
        let order = bucket.argsort_stable(true, 0, false);
        let sizes = Vec::<i64>::try_from(bucket.bincount(None::<Tensor>, experts + 1))
            .expect("bincount gives i64");
        // Dropped tokens (bucket K) sort last and run nothing.
        let mut offsets = vec![0i64];
        for size in &sizes[..experts as usize] {
            offsets.push(offsets.last().expect("starts at 0") + size);
        }
        let kept = offsets[experts as usize];
        let groups = Groups::upload(&offsets, h.device());
        let sorted = h.index_select(0, &order);
        let ran = self
            .bank
            .run(&sorted.narrow(0, 0, kept), &groups, Part::Ffn);
        let dropped = sorted.narrow(0, kept, sorted.size()[0] - kept).zeros_like();
        let y = h
            .zeros_like()
            .index_copy(0, &order, &Tensor::cat(&[ran, dropped], 0));
        SwitchOutput {
            y: y * gate.unsqueeze(1).to_kind(h.kind()),
            balance_loss,
            counts: sizes.iter().map(|&s| s as u64).collect(),
        }
    }
}

/// `K * sum_k f_k * P_k` over the tokens of `probs` (`[N, K]`) and their chosen `expert`
/// (`[N]`): 1 when routing is uniform, K when every token goes to one expert with certainty.
pub(crate) fn load_balancing_loss(probs: &Tensor, expert: &Tensor) -> Tensor {
    let experts = probs.size()[1];
    let dispatched = expert
        .one_hot(experts)
        .to_kind(Kind::Float)
        .mean_dim(0, false, Kind::Float);
    let mean_prob = probs.mean_dim(0, false, Kind::Float);
    (dispatched * mean_prob).sum(Kind::Float) * experts as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExpertMatmul;
    use tch::Device;

    #[test]
    fn load_balancing_loss_matches_its_formula_by_hand() {
        // 4 tokens, K = 2. Argmax: experts 0, 0, 1, 0 -> f = (3/4, 1/4).
        // Mean probabilities: P_0 = (0.9 + 0.6 + 0.2 + 0.7) / 4 = 0.6, P_1 = 0.4.
        // Loss = 2 * (0.75 * 0.6 + 0.25 * 0.4) = 2 * 0.55 = 1.1.
        let probs = Tensor::from_slice(&[0.9f32, 0.1, 0.6, 0.4, 0.2, 0.8, 0.7, 0.3]).view([4, 2]);
        let (_, expert) = probs.max_dim(1, false);
        let loss = load_balancing_loss(&probs, &expert).double_value(&[]);
        assert!((loss - 1.1).abs() < 1e-6, "loss {loss}");
        // Perfectly uniform routing gives exactly 1.
        let uniform = Tensor::from_slice(&[0.5f32, 0.5, 0.5, 0.5]).view([2, 2]);
        let expert = Tensor::from_slice(&[0i64, 1]);
        assert!((load_balancing_loss(&uniform, &expert).double_value(&[]) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn each_token_goes_through_its_argmax_expert_scaled_by_its_gate() {
        for matmul in [ExpertMatmul::Loop, ExpertMatmul::Grouped] {
            check_switch_tokens(matmul);
        }
    }

    fn check_switch_tokens(matmul: ExpertMatmul) {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut layer = SwitchFfn::new(&vs.root(), 4, 8, 12, None, None);
        layer.bank.matmul = matmul;
        let h = Tensor::randn([19, 8], (Kind::Float, Device::Cpu));
        let ids = Tensor::zeros([19], (Kind::Int64, Device::Cpu));
        let out = layer.forward(&h, &ids);
        let probs = h.apply(&layer.router).softmax(-1, Kind::Float);
        let (gate, expert) = probs.max_dim(1, false);
        for i in 0..19 {
            let e = expert.int64_value(&[i]);
            let want = layer.bank.ffn(e, &h.get(i).unsqueeze(0)) * gate.double_value(&[i]);
            let diff = (out.y.get(i) - want.squeeze())
                .abs()
                .max()
                .double_value(&[]);
            assert!(diff < 1e-5, "token {i}: {diff}");
        }
        assert_eq!(out.counts.iter().sum::<u64>(), 19);
        assert_eq!(
            *out.counts.last().unwrap(),
            0,
            "no capacity limit: nothing dropped"
        );
    }

    #[test]
    fn tokens_over_capacity_skip_the_layer() {
        for matmul in [ExpertMatmul::Loop, ExpertMatmul::Grouped] {
            check_capacity(matmul);
        }
    }

    fn check_capacity(matmul: ExpertMatmul) {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        // Capacity = ceil(0.5 * 16 / 2) = 4 per expert: at most 8 tokens run.
        let mut layer = SwitchFfn::new(&vs.root(), 2, 4, 8, None, Some(0.5));
        layer.bank.matmul = matmul;
        let h = Tensor::randn([16, 4], (Kind::Float, Device::Cpu));
        let out = layer.forward(&h, &Tensor::zeros([16], (Kind::Int64, Device::Cpu)));
        assert!(out.counts[0] <= 4 && out.counts[1] <= 4);
        assert_eq!(out.counts.iter().sum::<u64>(), 16);
        let zero_rows = (0..16)
            .filter(|&i| out.y.get(i).abs().sum(Kind::Float).double_value(&[]) == 0.0)
            .count() as u64;
        assert_eq!(zero_rows, out.counts[2], "dropped tokens output zero");
    }
}
