//! Balance statistics of an assignment: how evenly the token mass spreads over the experts.

use serde::Serialize;

/// Load statistics of one assignment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BalanceStats {
    /// Token mass per expert, as a share of the total.
    pub shares: Vec<f64>,
    /// Token mass of the most loaded expert.
    pub max_load: u64,
    /// Mean load.
    pub mean_load: f64,
    /// `max_load / mean_load` (1 is perfect balance).
    pub max_over_mean: f64,
    /// Coefficient of variation of the loads (std / mean).
    pub cv: f64,
    /// Entropy of the shares in bits (`log2 K` is perfect balance).
    pub entropy_bits: f64,
    /// `max(total / K, largest single count)`: no assignment can do better.
    pub lower_bound: f64,
    /// `max_load / lower_bound` (1 is optimal).
    pub ratio_to_bound: f64,
}

impl BalanceStats {
    /// Statistics of per-expert `loads`, given the largest count of a single token.
    pub fn from_loads(loads: &[u64], largest_item: u64) -> Self {
        let k = loads.len().max(1) as f64;
        let total: u64 = loads.iter().sum();
        let mean = total as f64 / k;
        let max_load = loads.iter().copied().max().unwrap_or(0);
        let var = loads
            .iter()
            .map(|&l| (l as f64 - mean).powi(2))
            .sum::<f64>()
            / k;
        let shares: Vec<f64> = loads
            .iter()
            .map(|&l| {
                if total == 0 {
                    0.0
                } else {
                    l as f64 / total as f64
                }
            })
            .collect();
        let entropy_bits = -shares
            .iter()
            .filter(|&&p| p > 0.0)
            .map(|&p| p * p.log2())
            .sum::<f64>();
        let lower_bound = mean.max(largest_item as f64);
        let safe = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Self {
            shares,
            max_load,
            mean_load: mean,
            max_over_mean: safe(max_load as f64, mean),
            cv: safe(var.sqrt(), mean),
            entropy_bits,
            lower_bound,
            ratio_to_bound: safe(max_load as f64, lower_bound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_skewed_balance() {
        let even = BalanceStats::from_loads(&[10, 10, 10, 10], 3);
        assert_eq!(even.max_over_mean, 1.0);
        assert_eq!(even.cv, 0.0);
        assert!((even.entropy_bits - 2.0).abs() < 1e-12);
        assert_eq!(even.ratio_to_bound, 1.0);
        let skew = BalanceStats::from_loads(&[30, 10], 25);
        assert_eq!(skew.lower_bound, 25.0);
        assert_eq!(skew.ratio_to_bound, 30.0 / 25.0);
        assert_eq!(skew.shares, vec![0.75, 0.25]);
    }
}
