//! BASE layers (Lewis et al. 2021, the Hash Layers paper's reference [10]): a learned router
//! scores every expert, `s = W h`; in training the tokens of a batch are assigned to experts
//! by a balanced linear assignment on those scores (every expert takes the same number of
//! tokens, [`hashprep::balanced_assignment`]), at evaluation each token takes its best-scoring expert.
//! The expert's output is gated by `sigmoid(s_e)`, which is how the router learns. The scores
//! are read to the host once per layer per step, as Switch reads its group sizes.

use tch::{nn, Device, Kind, Tensor};

use super::experts::{apply_grouped, ExpertBank, Part};
use super::routes::DeviceRoute;
use super::staging::Staging;

/// A BASE FFN.
#[derive(Debug)]
pub(crate) struct BaseFfn {
    /// The experts.
    pub bank: ExpertBank,
    /// `[K, d]`: expert e's score of `h` is `router[e] . h`.
    router: Tensor,
}

impl BaseFfn {
    /// K experts `d -> d_ff -> d` and their router.
    pub(crate) fn new(path: &nn::Path<'_>, experts: i64, d_model: i64, d_ff: i64) -> Self {
        let bound = 1.0 / (d_model as f64).sqrt();
        Self {
            bank: ExpertBank::new(path, experts, d_model, d_ff),
            router: path.var(
                "router",
                &[experts, d_model],
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
        }
    }

    /// `h`: `[N, d]`. Returns the output and the tokens each expert ran.
    pub(crate) fn forward(&self, h: &Tensor, train: bool) -> (Tensor, Vec<u64>) {
        let experts = self.bank.experts();
        let scores = h.matmul(&self.router.tr());
        let expert_ids: Vec<u32> = if train {
            let host = scores.detach().to_device(Device::Cpu).to_kind(Kind::Float);
            let flat = Vec::<f32>::try_from(host.reshape([-1])).expect("f32 scores");
            // Scores that are no longer finite cannot be auctioned; the step's loss is not
            // finite either and the run stops on it (best experts meanwhile).
            hashprep::balanced_assignment(&flat, experts as usize)
                .unwrap_or_else(|| best_experts(&scores))
        } else {
            best_experts(&scores)
        };
        let mut staging = Staging::default();
        let route = DeviceRoute::stage_expert_ids(&expert_ids, 1, experts as u32, &mut staging);
        let chosen = staging.push_u32(&expert_ids);
        let uploaded = staging.upload(h.device());
        let (route, chosen) = (route.finish(&uploaded), uploaded.get(chosen).unsqueeze(1));
        let gate = scores.gather(1, &chosen, false).sigmoid();
        let y = apply_grouped(h, &route, &self.bank, Part::Ffn) * gate;
        (y, route.counts())
    }
}

/// Each token's best-scoring expert (`scores`: `[N, K]`).
fn best_experts(scores: &Tensor) -> Vec<u32> {
    let best = scores.argmax(1, false).to_device(Device::Cpu);
    Vec::<i64>::try_from(best)
        .expect("i64 ids")
        .into_iter()
        .map(|e| e as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_balances_exactly_and_evaluation_takes_the_best_expert() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let layer = BaseFfn::new(&vs.root(), 4, 6, 8);
        let h = Tensor::randn([32, 6], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let (y, counts) = layer.forward(&h, true);
        assert_eq!(counts, vec![8, 8, 8, 8]);
        // Each token's output is its assigned expert's, gated by the sigmoid of its score.
        let scores = h.matmul(&layer.router.tr());
        let (y_eval, eval_counts) = layer.forward(&h, false);
        let best = scores.argmax(1, false);
        for i in 0..32 {
            let e = best.int64_value(&[i]);
            let gate = scores.double_value(&[i, e]);
            let want = layer.bank.ffn(e, &h.get(i).unsqueeze(0)) * (1.0 / (1.0 + (-gate).exp()));
            let diff = (y_eval.get(i) - want.squeeze())
                .abs()
                .max()
                .double_value(&[]);
            assert!(diff < 1e-5, "token {i}: {diff}");
        }
        assert_eq!(eval_counts.iter().sum::<u64>(), 32);
        // The router learns through the gate.
        let grads = Tensor::run_backward(&[y.sum(Kind::Float)], &[&layer.router], false, false);
        assert!(grads[0].abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }
}
