//! Adam (Kingma & Ba) with its moment estimates in plain tensors, so a checkpoint can save them
//! and a resumed run continues with exactly the same updates; and global-norm gradient
//! clipping done on the device (no host sync per step).
//!
//! A parameter kept in a narrower format than float32 (bfloat16 training) gets a float32 master
//! copy: the update is applied to the master and the parameter is its rounding, so updates
//! smaller than the parameter's bfloat16 step are not lost.

use std::collections::BTreeMap;

use tch::{Kind, Tensor};

/// Adam over named parameters.
#[derive(Debug)]
pub struct Adam {
    params: Vec<(String, Tensor)>,
    /// The float32 master of each parameter that is not float32 itself.
    masters: Vec<Option<Tensor>>,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    /// Updates applied so far (for the bias corrections).
    pub steps: u64,
}

impl Adam {
    /// Adam over `params` (name, trainable tensor), in name order.
    pub fn new(params: BTreeMap<String, Tensor>, betas: (f64, f64), eps: f64) -> Self {
        let params: Vec<(String, Tensor)> = params.into_iter().collect();
        let masters: Vec<Option<Tensor>> = params
            .iter()
            .map(|(_, p)| (p.kind() != Kind::Float).then(|| p.detach().to_kind(Kind::Float)))
            .collect();
        let zeros = |p: &Tensor| {
            Tensor::zeros(p.size().as_slice(), (Kind::Float, p.device())).set_requires_grad(false)
        };
        Self {
            exp_avg: params.iter().map(|(_, p)| zeros(p)).collect(),
            exp_avg_sq: params.iter().map(|(_, p)| zeros(p)).collect(),
            params,
            masters,
            beta1: betas.0,
            beta2: betas.1,
            eps,
            steps: 0,
        }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    /// Scales all gradients so their global L2 norm is at most `max_norm` (0: no clipping) and
    /// returns the norm before clipping, as a device scalar.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Tensor {
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|(_, p)| p.grad())
            .filter(Tensor::defined)
            .collect();
        let Some(first) = grads.first() else {
            return Tensor::zeros([], (Kind::Float, tch::Device::Cpu));
        };
        let squares: Vec<Tensor> = grads
            .iter()
            .map(|g| g.pow_tensor_scalar(2).sum(Kind::Float))
            .collect();
        let norm = Tensor::stack(&squares, 0)
            .sum(Kind::Float)
            .sqrt()
            .to_device(first.device());
        if max_norm > 0.0 {
            let scale = (max_norm / (&norm + 1e-6)).clamp_max(1.0);
            tch::no_grad(|| {
                for mut g in grads {
                    let _ = g.g_mul_(&scale);
                }
            });
        }
        norm
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2 = 1.0 - self.beta2.powi(t);
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        tch::no_grad(|| {
            for ((((_, p), master), m), v) in self
                .params
                .iter_mut()
                .zip(&mut self.masters)
                .zip(&mut self.exp_avg)
                .zip(&mut self.exp_avg_sq)
            {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = g.to_kind(Kind::Float);
                // In place, few temporaries: the update is memory-bound and sparse models
                // carry many parameters (K experts) for their active compute.
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = v.lerp_(&(&g * &g), 1.0 - b2);
                // p -= lr/bias1 * m / (sqrt(v)/sqrt(bias2) + eps), as p += m / denom with
                // denom = sqrt(v) * c1 + c2 (c1, c2 < 0): four passes over the parameter.
                let mut denom = v.sqrt();
                let _ = denom.g_mul_scalar_(-bias1 / (lr * bias2.sqrt()));
                let _ = denom.g_add_scalar_(-eps * bias1 / lr);
                match master {
                    Some(master) => {
                        let _ = master.addcdiv_(m, &denom);
                        p.copy_(master);
                    }
                    None => {
                        let _ = p.addcdiv_(m, &denom);
                    }
                }
            }
        });
    }

    /// The moment estimates by name (`exp_avg.NAME`, `exp_avg_sq.NAME`) and the float32
    /// masters (`master.NAME`), for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for ((((name, _), m), v), master) in self
            .params
            .iter()
            .zip(&self.exp_avg)
            .zip(&self.exp_avg_sq)
            .zip(&self.masters)
        {
            out.push((format!("exp_avg.{name}"), m));
            out.push((format!("exp_avg_sq.{name}"), v));
            if let Some(master) = master {
                out.push((format!("master.{name}"), master));
            }
        }
        out
    }

    /// Restores the moment estimates saved by [`Adam::state_tensors`].
    ///
    /// # Errors
    /// A parameter has no saved moments, or their shape differs.
    pub fn load_state(
        &mut self,
        saved: &BTreeMap<String, Tensor>,
        steps: u64,
    ) -> Result<(), String> {
        for ((((name, _), m), v), master) in self
            .params
            .iter()
            .zip(&mut self.exp_avg)
            .zip(&mut self.exp_avg_sq)
            .zip(&mut self.masters)
        {
            let mut slots = vec![("exp_avg", &mut *m), ("exp_avg_sq", &mut *v)];
            if let Some(master) = master {
                slots.push(("master", master));
            }
            for (prefix, slot) in slots {
                let key = format!("{prefix}.{name}");
                let value = saved
                    .get(&key)
                    .ok_or(format!("no optimizer state `{key}`"))?;
                if value.size() != slot.size() {
                    return Err(format!(
                        "optimizer state `{key}` has shape {:?}, not {:?}",
                        value.size(),
                        slot.size()
                    ));
                }
                tch::no_grad(|| slot.copy_(&value.to_device(slot.device())));
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// The inverse-square-root schedule with linear warmup (fairseq's `inverse_sqrt`): the rate
/// rises linearly to `peak` over `warmup` steps, then decays as `peak * sqrt(warmup / step)`.
/// Steps count from 1.
pub(crate) fn inverse_sqrt_lr(peak: f64, warmup: u64, step: u64) -> f64 {
    let step = step.max(1) as f64;
    let warmup = warmup as f64;
    if step <= warmup {
        peak * step / warmup
    } else {
        peak * (warmup.max(1.0) / step).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn adam_follows_its_update_rule() {
        // One parameter, gradient g = 2 * x (loss x^2), two steps by hand.
        let x = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut adam = Adam::new(
            BTreeMap::from([("x".to_owned(), x.shallow_clone())]),
            (0.9, 0.999),
            1e-8,
        );
        let mut want = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            adam.zero_grad();
            (&x * &x).sum(Kind::Float).backward();
            adam.step(0.1);
            for i in 0..2 {
                let g = 2.0 * want[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let m_hat = m[i] / (1.0 - 0.9f64.powi(t));
                let v_hat = v[i] / (1.0 - 0.999f64.powi(t));
                want[i] -= 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
            }
        }
        for (i, w) in want.iter().enumerate() {
            assert!((x.double_value(&[i as i64]) - w).abs() < 1e-6);
        }
    }

    #[test]
    fn clipping_scales_the_global_norm_down_only() {
        let a = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        let b = Tensor::from_slice(&[4.0f32]).set_requires_grad(true);
        let params = BTreeMap::from([
            ("a".to_owned(), a.shallow_clone()),
            ("b".to_owned(), b.shallow_clone()),
        ]);
        let mut adam = Adam::new(params, (0.9, 0.999), 1e-8);
        // Gradients (3, 4): norm 5.
        ((&a * &a + &b * &b) * 0.5).sum(Kind::Float).backward();
        let norm = adam.clip_grad_norm(1.0).double_value(&[]);
        assert!((norm - 5.0).abs() < 1e-5);
        assert!((a.grad().double_value(&[0]) - 0.6).abs() < 1e-5);
        assert!((b.grad().double_value(&[0]) - 0.8).abs() < 1e-5);
        // Under the limit: unchanged.
        let norm = adam.clip_grad_norm(10.0).double_value(&[]);
        assert!((norm - 1.0).abs() < 1e-5);
        assert!((b.grad().double_value(&[0]) - 0.8).abs() < 1e-5);
        let _ = Device::Cpu;
    }

    #[test]
    fn schedule_warms_up_then_decays_as_inverse_sqrt() {
        assert_eq!(inverse_sqrt_lr(1.0, 4, 1), 0.25);
        assert_eq!(inverse_sqrt_lr(1.0, 4, 4), 1.0);
        assert!((inverse_sqrt_lr(1.0, 4, 16) - 0.5).abs() < 1e-12);
        assert!((inverse_sqrt_lr(2.0, 0, 4) - 1.0).abs() < 1e-12);
    }
}
