//! Routing a batch on the host: for one stream of one table, the expert(s) of every position, a
//! stable permutation grouping positions by expert, and the group offsets. The device then only
//! gathers, runs each expert on a contiguous slice and scatters back. A top-k table routes each
//! position to k experts: the permutation is over the (position, slot) pairs.

use serde::Serialize;

use crate::table::{bigram_expert, RoutingTable, Rule};

/// The routing of one stream over a batch of `B * T` positions (row-major).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Which routing spec (table and layer) this is.
    pub spec: usize,
    /// Hash within the spec (MultiHash).
    pub hash: u32,
    /// Number of experts K.
    pub experts: u32,
    /// Experts per position k (the table's `top_k`).
    pub top_k: u32,
    /// The k experts of each position, `[B * T, k]` row-major (slot order).
    pub expert_ids: Vec<u32>,
    /// The `B * T * k` (position, slot) pairs grouped by expert, in position order within a
    /// group: the positions.
    pub order: Vec<u32>,
    /// The slot of each pair of `order` (all 0 when k = 1).
    pub slots: Vec<u32>,
    /// `order[offsets[e]..offsets[e+1]]` are the positions of expert `e`; `K + 1` entries.
    pub offsets: Vec<u32>,
    /// `[E * K]` row-major: row `i` is the tokens per expert of rank `g*E + i` of this rank's
    /// expert-parallel group of size E for the same batch index (its own row included; E = 1
    /// without expert parallelism).
    pub peer_counts: Vec<u32>,
}

/// The ids around each row that context rules need.
pub(crate) struct RowContext<'a> {
    /// Input ids `[B * T]`.
    pub inputs: &'a [u32],
    /// Target ids `[B * T]`.
    pub targets: &'a [u32],
    /// Per row: the id just before the row's first input, if the stream has one.
    pub before: &'a [Option<u32>],
    /// Per row: positions that are real (the rest is padding).
    pub valid: &'a [usize],
    /// `T`.
    pub seq_len: usize,
}

/// Routes stream `stream` of `table` over a batch. Padding positions go to experts `0..k` (they
/// are masked out of the loss). Without a previous id (the very start of the data, or of an
/// example in per-example mode), `previous` and `bigram` use the current id in its place.
pub(crate) fn route(
    table: &RoutingTable,
    stream: u32,
    spec: usize,
    hash: u32,
    ctx: &RowContext<'_>,
) -> Route {
    let k = table.meta.experts;
    let top_k = table.meta.top_k as usize;
    let key = table.stream_key(stream);
    let n = ctx.inputs.len();
    let mut expert_ids = Vec::with_capacity(n * top_k);
    let experts_of = |token: u32| table.experts_of(stream, token);
    for (row, (&valid, &before)) in ctx.valid.iter().zip(ctx.before).enumerate() {
        let base = row * ctx.seq_len;
        let x = &ctx.inputs[base..base + ctx.seq_len];
        let y = &ctx.targets[base..base + ctx.seq_len];
        for t in 0..ctx.seq_len {
            if t >= valid {
                expert_ids.extend(0..top_k as u32);
                continue;
            }
            let previous = || {
                if t > 0 {
                    x[t - 1]
                } else {
                    before.unwrap_or(x[t])
                }
            };
            match table.meta.rule {
                Rule::Token => expert_ids.extend_from_slice(experts_of(x[t])),
                Rule::Previous => expert_ids.extend_from_slice(experts_of(previous())),
                Rule::Next => expert_ids.extend_from_slice(experts_of(y[t])),
                Rule::Bigram => expert_ids.push(bigram_expert(key, previous(), x[t], k)),
                Rule::Position => expert_ids.push((t % k as usize) as u32),
            }
        }
    }
    let (order, slots, offsets) = bucket_pairs(&expert_ids, top_k as u32, k);
    Route {
        spec,
        hash,
        experts: k,
        top_k: top_k as u32,
        expert_ids,
        order,
        slots,
        offsets,
        peer_counts: Vec::new(),
    }
}

/// Counting sort of positions by expert: a stable permutation and the `K + 1` offsets.
pub fn bucket_positions(expert_ids: &[u32], experts: u32) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; experts as usize + 1];
    for &e in expert_ids {
        offsets[e as usize + 1] += 1;
    }
    for e in 0..experts as usize {
        offsets[e + 1] += offsets[e];
    }
    let mut cursor = offsets.clone();
    let mut order = vec![0u32; expert_ids.len()];
    for (position, &e) in expert_ids.iter().enumerate() {
        order[cursor[e as usize] as usize] = position as u32;
        cursor[e as usize] += 1;
    }
    (order, offsets)
}

/// [`bucket_positions`] of the `[N, k]` row-major experts of N positions: the positions of
/// the (position, slot) pairs grouped by expert (in position order within a group), the slot of
/// each, and the `K + 1` offsets.
pub fn bucket_pairs(
    expert_ids: &[u32],
    top_k: u32,
    experts: u32,
) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let (mut order, offsets) = bucket_positions(expert_ids, experts);
    if top_k == 1 {
        return (order, vec![0; expert_ids.len()], offsets);
    }
    // Pair p * k + j is slot j of position p.
    let slots = order.iter().map(|&pair| pair % top_k).collect();
    for pair in &mut order {
        *pair /= top_k;
    }
    (order, slots, offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucketing_is_a_stable_grouping() {
        let (order, offsets) = bucket_positions(&[2, 0, 2, 1, 0], 3);
        assert_eq!(order, vec![1, 4, 3, 0, 2]);
        assert_eq!(offsets, vec![0, 2, 3, 5]);
    }
}
