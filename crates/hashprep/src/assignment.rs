//! BASE layers' balanced assignment (Lewis et al. 2021): N tokens to K experts maximizing the
//! summed router scores, every expert taking exactly its capacity (N / K; when K does not
//! divide N, the first `N mod K` experts take one more). Solved with Bertsekas' auction
//! algorithm, as BASE does, on the host: each expert is `capacity` identical slots with their
//! own prices; an unassigned token bids for the slot worth most to it (score minus price),
//! raising its price by the margin over its second-best choice plus `eps`. With eps scaling
//! down to `eps_final`, the result is within `N * eps_final` of the optimum.
//!
//! hashtrain's BASE layers and the torch trainer's (through the Python bindings) share it, so
//! both assign the same tokens to the same experts.

/// The expert of each of the `scores.len() / experts` tokens (`scores` is `[N, K]` row-major).
/// `None` when the scores are not `[N, K]` with `K >= 1`, or one of them is not finite (an
/// auction on NaN prices would never settle).
#[must_use]
pub fn balanced_assignment(scores: &[f32], experts: usize) -> Option<Vec<u32>> {
    if experts == 0
        || !scores.len().is_multiple_of(experts)
        || !scores.iter().all(|s| s.is_finite())
    {
        return None;
    }
    let n = scores.len() / experts;
    if n == 0 {
        return Some(Vec::new());
    }
    let capacity: Vec<usize> = (0..experts)
        .map(|e| n / experts + usize::from(e < n % experts))
        .collect();
    let (lo, hi) = scores
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &s| {
            (lo.min(f64::from(s)), hi.max(f64::from(s)))
        });
    let range = (hi - lo).max(1e-12);
    // Within 1e-7 of the range per token of the optimum: exact unless two assignments differ
    // by less than that.
    let eps_final = range * 1e-7 / n as f64;
    let mut auction = Auction::new(scores, experts, &capacity);
    let mut eps = range / 4.0;
    loop {
        auction.run(eps);
        if eps <= eps_final {
            break;
        }
        eps = (eps / 8.0).max(eps_final);
        auction.release_all();
    }
    Some(auction.owner_expert())
}

/// Prices and owners of every expert's slots, and each token's slot.
struct Auction<'a> {
    scores: &'a [f32],
    experts: usize,
    /// Per expert: `(price, owner)` of each of its slots.
    slots: Vec<Vec<(f64, Option<usize>)>>,
    /// Per token: `(expert, slot)` it holds.
    held: Vec<Option<(usize, usize)>>,
}

impl<'a> Auction<'a> {
    fn new(scores: &'a [f32], experts: usize, capacity: &[usize]) -> Self {
        Self {
            scores,
            experts,
            slots: capacity.iter().map(|&c| vec![(0.0, None); c]).collect(),
            held: vec![None; scores.len() / experts],
        }
    }

    /// Keeps the prices, frees every slot (the next, finer round starts from these prices).
    fn release_all(&mut self) {
        for slots in &mut self.slots {
            for slot in slots.iter_mut() {
                slot.1 = None;
            }
        }
        self.held.iter_mut().for_each(|h| *h = None);
    }

    /// Bids until every token holds a slot.
    fn run(&mut self, eps: f64) {
        let mut unassigned: Vec<usize> = (0..self.held.len()).rev().collect();
        while let Some(token) = unassigned.pop() {
            let row = &self.scores[token * self.experts..(token + 1) * self.experts];
            // Each expert's value is its score minus its cheapest slot's price; the margin of
            // the bid is over the second-best value (another expert, or the best expert's next
            // cheapest slot).
            let mut best: Option<(f64, usize, usize)> = None; // (value, expert, slot)
            let mut second = f64::NEG_INFINITY;
            let mut best_runner_up = f64::NEG_INFINITY;
            for (e, slots) in self.slots.iter().enumerate() {
                let Some((cheapest, next)) = two_cheapest(slots) else {
                    continue;
                };
                let value = f64::from(row[e]) - slots[cheapest].0;
                let runner_up = next.map_or(f64::NEG_INFINITY, |s| f64::from(row[e]) - slots[s].0);
                match best {
                    Some((v, ..)) if value <= v => second = second.max(value),
                    _ => {
                        second = second.max(best.map_or(f64::NEG_INFINITY, |b| b.0));
                        best = Some((value, e, cheapest));
                        best_runner_up = runner_up;
                    }
                }
            }
            second = second.max(best_runner_up);
            let (value, expert, slot) = best.expect("some expert has a slot");
            let margin = if second.is_finite() {
                value - second
            } else {
                0.0
            };
            let (price, previous) = self.slots[expert][slot];
            self.slots[expert][slot] = (price + margin + eps, Some(token));
            self.held[token] = Some((expert, slot));
            if let Some(outbid) = previous {
                self.held[outbid] = None;
                unassigned.push(outbid);
            }
        }
    }

    fn owner_expert(&self) -> Vec<u32> {
        self.held
            .iter()
            .map(|h| h.expect("every token holds a slot").0 as u32)
            .collect()
    }
}

/// Indices of the cheapest slot and of the next cheapest, if any.
fn two_cheapest(slots: &[(f64, Option<usize>)]) -> Option<(usize, Option<usize>)> {
    let mut first: Option<usize> = None;
    let mut second: Option<usize> = None;
    for (i, &(price, _)) in slots.iter().enumerate() {
        if first.is_none_or(|f| price < slots[f].0) {
            second = first;
            first = Some(i);
        } else if second.is_none_or(|s| price < slots[s].0) {
            second = Some(i);
        }
    }
    first.map(|f| (f, second))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(scores: &[f32], experts: usize, assignment: &[u32]) -> f64 {
        assignment
            .iter()
            .enumerate()
            .map(|(t, &e)| f64::from(scores[t * experts + e as usize]))
            .sum()
    }

    /// The best total over every assignment that fills each expert to its capacity.
    fn brute_force(scores: &[f32], experts: usize) -> f64 {
        let n = scores.len() / experts;
        let capacity: Vec<usize> = (0..experts)
            .map(|e| n / experts + usize::from(e < n % experts))
            .collect();
        let mut best = f64::NEG_INFINITY;
        for code in 0..experts.pow(n as u32) {
            let mut c = code;
            let assignment: Vec<u32> = (0..n)
                .map(|_| {
                    let e = c % experts;
                    c /= experts;
                    e as u32
                })
                .collect();
            let fills = (0..experts)
                .all(|e| assignment.iter().filter(|&&a| a as usize == e).count() == capacity[e]);
            if fills {
                best = best.max(total(scores, experts, &assignment));
            }
        }
        best
    }

    fn scores(seed: u64, n: usize, experts: usize) -> Vec<f32> {
        (0..n * experts)
            .map(|i| {
                let h = crate::util::splitmix64(seed ^ (i as u64).wrapping_mul(0x9E37));
                (h % 10_000) as f32 / 1000.0 - 5.0
            })
            .collect()
    }

    #[test]
    fn every_expert_takes_exactly_its_capacity() {
        for (n, experts) in [(64, 8), (61, 8), (1024, 16), (5, 7), (1, 3)] {
            let s = scores(n as u64, n, experts);
            let assignment = balanced_assignment(&s, experts).expect("finite scores");
            assert_eq!(assignment.len(), n);
            for e in 0..experts {
                let want = n / experts + usize::from(e < n % experts);
                let got = assignment.iter().filter(|&&a| a as usize == e).count();
                assert_eq!(got, want, "n {n}, K {experts}, expert {e}");
            }
        }
    }

    #[test]
    fn small_cases_are_optimal_against_brute_force() {
        for seed in 0..40 {
            let (n, experts) = (4 + seed as usize % 5, 2 + seed as usize % 3);
            let s = scores(seed, n, experts);
            let assignment = balanced_assignment(&s, experts).expect("finite scores");
            let (got, best) = (total(&s, experts, &assignment), brute_force(&s, experts));
            assert!(
                (got - best).abs() < 1e-4,
                "seed {seed}: {got} vs optimum {best}"
            );
        }
    }

    #[test]
    fn a_token_keeps_its_favourite_when_nothing_competes() {
        // Token t prefers expert t by far: the assignment is the identity.
        let experts = 4;
        let s: Vec<f32> = (0..16)
            .map(|i| if i / 4 == i % 4 { 10.0 } else { 0.0 })
            .collect();
        assert_eq!(balanced_assignment(&s, experts), Some(vec![0, 1, 2, 3]));
    }

    #[test]
    fn scores_that_are_not_finite_or_not_a_matrix_are_refused() {
        assert_eq!(balanced_assignment(&[1.0, f32::NAN, 0.0, 2.0], 2), None);
        assert_eq!(balanced_assignment(&[1.0, f32::INFINITY], 2), None);
        assert_eq!(balanced_assignment(&[1.0, 2.0, 3.0], 2), None);
        assert_eq!(balanced_assignment(&[1.0], 0), None);
        assert_eq!(balanced_assignment(&[], 4), Some(Vec::new()));
    }
}
