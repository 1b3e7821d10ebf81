//! `balanced`: the paper's greedy assignment (largest count first, to the least loaded expert),
//! and a local-search refinement that lowers the maximum load further.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use crate::util::splitmix64;

/// The paper's rule, for `top_k` experts per token. Token ids sorted by count descending (ties:
/// id ascending) go one by one to the `top_k` experts with the smallest loads so far (ties:
/// lowest expert index), least loaded first; each of them gains the token's count. Zero-count
/// ids continue the same rule. `tie_key` > 0 breaks ties among equal counts and equal loads by
/// a seeded hash instead, which gives the extra hashes of MultiHash different assignments.
/// Returns `[V, top_k]` row-major.
pub(crate) fn greedy(counts: &[u64], experts: u32, top_k: u32, tie_key: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..counts.len() as u32).collect();
    if tie_key == 0 {
        order.sort_unstable_by_key(|&t| (Reverse(counts[t as usize]), t));
    } else {
        order.sort_unstable_by_key(|&t| {
            (
                Reverse(counts[t as usize]),
                splitmix64(tie_key ^ u64::from(t)),
                t,
            )
        });
    }
    let expert_tie = |e: u32| {
        if tie_key == 0 {
            u64::from(e)
        } else {
            splitmix64(tie_key.rotate_left(17) ^ u64::from(e))
        }
    };
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32)>> = (0..experts)
        .map(|e| Reverse((0, expert_tie(e), e)))
        .collect();
    let k = top_k as usize;
    let mut assignment = vec![0u32; counts.len() * k];
    let mut chosen = Vec::with_capacity(k);
    for token in order {
        chosen.clear();
        chosen.extend((0..k).map(|_| heap.pop().expect("top_k <= experts").0));
        for (slot, &(load, tie, expert)) in chosen.iter().enumerate() {
            assignment[token as usize * k + slot] = expert;
            heap.push(Reverse((load + counts[token as usize], tie, expert)));
        }
    }
    assignment
}

/// Per-expert loads of an assignment `[V, k]` (row-major, `k = assignment.len() / V`): each
/// token's count loads each of its k experts.
pub(crate) fn loads(counts: &[u64], assignment: &[u32], experts: u32) -> Vec<u64> {
    let mut loads = vec![0u64; experts as usize];
    let k = slots_per_token(counts, assignment);
    for (pair, &expert) in assignment.iter().enumerate() {
        loads[expert as usize] += counts[pair / k];
    }
    loads
}

fn slots_per_token(counts: &[u64], assignment: &[u32]) -> usize {
    let k = assignment.len() / counts.len().max(1);
    debug_assert_eq!(
        k * counts.len(),
        assignment.len(),
        "assignment is not [V, k]"
    );
    k.max(1)
}

/// Lowers the maximum load by moving one (token, slot) pair, or swapping two, between the
/// heaviest expert and another one, as long as that strictly lowers the heavier of the two and
/// no token ends up with the same expert twice. Every accepted step lowers the sum of squared
/// loads, so the search ends; `max_steps` bounds it anyway. `assignment` is `[V, k]`.
/// Returns the number of steps taken.
pub(crate) fn refine(
    counts: &[u64],
    assignment: &mut [u32],
    experts: u32,
    max_steps: usize,
) -> usize {
    let k = experts as usize;
    let slots = slots_per_token(counts, assignment);
    // Pairs of each expert ordered by (count, pair): lookups of "the count closest to x".
    let mut members: Vec<BTreeSet<(u64, u32)>> = vec![BTreeSet::new(); k];
    for (pair, &expert) in assignment.iter().enumerate() {
        let count = counts[pair / slots];
        if count > 0 {
            members[expert as usize].insert((count, pair as u32));
        }
    }
    let mut load = loads(counts, assignment, experts);
    for step in 0..max_steps {
        let heavy = (0..k)
            .max_by_key(|&e| (load[e], Reverse(e)))
            .expect("experts");
        let mut others: Vec<usize> = (0..k).filter(|&e| e != heavy).collect();
        others.sort_by_key(|&e| (load[e], e));
        let improved = others.into_iter().find_map(|light| {
            let gap = load[heavy] - load[light];
            // A pair may go to an expert its token does not have yet.
            let row_has = |pair: u32, expert: usize| {
                let token = pair as usize / slots;
                assignment[token * slots..(token + 1) * slots].contains(&(expert as u32))
            };
            let sides = Sides {
                heavy: &members[heavy],
                light: &members[light],
                may_give: &|pair: u32| !row_has(pair, light),
                may_take: &|pair: u32| !row_has(pair, heavy),
            };
            best_exchange(&sides, gap).map(|m| (light, m))
        });
        let Some((light, exchange)) = improved else {
            return step;
        };
        apply(&mut members, &mut load, assignment, heavy, light, exchange);
    }
    max_steps
}

/// The two experts of a candidate exchange, and which of their pairs may cross.
struct Sides<'a> {
    heavy: &'a BTreeSet<(u64, u32)>,
    light: &'a BTreeSet<(u64, u32)>,
    /// A pair of the heavy expert whose token does not have the light one.
    may_give: &'a dyn Fn(u32) -> bool,
    /// A pair of the light expert whose token does not have the heavy one.
    may_take: &'a dyn Fn(u32) -> bool,
}

/// A move of `give` from heavy to light, with `take` coming back if it is a swap.
#[derive(Debug, Clone, Copy)]
struct Exchange {
    give: (u64, u32),
    take: Option<(u64, u32)>,
}

/// The exchange whose net transfer `d` (0 < d < gap) is closest to `gap / 2`, if any.
fn best_exchange(sides: &Sides<'_>, gap: u64) -> Option<Exchange> {
    if gap < 2 {
        return None;
    }
    let target = gap / 2;
    let score = |d: u64| target.abs_diff(d);
    let mut best: Option<(u64, Exchange)> = None;
    let mut consider = |d: u64, exchange: Exchange| {
        if d > 0 && d < gap && best.is_none_or(|(s, _)| score(d) < s) {
            best = Some((score(d), exchange));
        }
    };
    // Moves: a pair of count closest to the target.
    for give in closest(sides.heavy, target, sides.may_give) {
        consider(give.0, Exchange { give, take: None });
    }
    // Swaps: for each pair of the heavy expert, the light pair that makes d closest to target.
    for &give in sides.heavy.iter().rev().take(4096) {
        if give.0 <= target {
            break; // any swap with it transfers less than a move would
        }
        if !(sides.may_give)(give.1) {
            continue;
        }
        for take in closest(sides.light, give.0 - target, sides.may_take) {
            if take.0 < give.0 {
                consider(
                    give.0 - take.0,
                    Exchange {
                        give,
                        take: Some(take),
                    },
                );
            }
        }
    }
    best.map(|(_, e)| e)
}

/// The allowed members with the counts just below and just above `x` (a few disallowed ones
/// are skipped on each side; with one expert per token every member is allowed).
fn closest<'a>(
    set: &'a BTreeSet<(u64, u32)>,
    x: u64,
    allowed: &'a dyn Fn(u32) -> bool,
) -> impl Iterator<Item = (u64, u32)> + 'a {
    const SKIP: usize = 64;
    let below = set
        .range(..(x, u32::MAX))
        .rev()
        .take(SKIP)
        .find(|m| allowed(m.1))
        .copied();
    let above = set
        .range((x, u32::MAX)..)
        .take(SKIP)
        .find(|m| allowed(m.1))
        .copied();
    below.into_iter().chain(above)
}

fn apply(
    members: &mut [BTreeSet<(u64, u32)>],
    load: &mut [u64],
    assignment: &mut [u32],
    heavy: usize,
    light: usize,
    exchange: Exchange,
) {
    members[heavy].remove(&exchange.give);
    members[light].insert(exchange.give);
    assignment[exchange.give.1 as usize] = light as u32;
    load[heavy] -= exchange.give.0;
    load[light] += exchange.give.0;
    if let Some(take) = exchange.take {
        members[light].remove(&take);
        members[heavy].insert(take);
        assignment[take.1 as usize] = heavy as u32;
        load[light] -= take.0;
        load[heavy] += take.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_follows_the_rule_on_a_hand_example() {
        // counts: t0=5, t1=9, t2=2, t3=9, t4=0, t5=4 ; order: t1,t3,t0,t5,t2,t4
        // e0 <- t1 (9); e1 <- t3 (9); e0 <- t0 (14); e1 <- t5 (13); e1 <- t2 (15); e0 <- t4 (14)
        let counts = [5, 9, 2, 9, 0, 4];
        assert_eq!(greedy(&counts, 2, 1, 0), vec![0, 0, 1, 1, 0, 1]);
    }

    #[test]
    fn refine_fixes_the_classic_greedy_worst_case() {
        // LPT on {3,3,2,2,2} with 2 machines gives 7 (3+2+2 | 3+2); the optimum is 6 (3+3 | 2+2+2).
        let counts = [3, 3, 2, 2, 2];
        let mut assignment = greedy(&counts, 2, 1, 0);
        assert_eq!(*loads(&counts, &assignment, 2).iter().max().unwrap(), 7);
        refine(&counts, &mut assignment, 2, 100);
        assert_eq!(*loads(&counts, &assignment, 2).iter().max().unwrap(), 6);
    }
}
