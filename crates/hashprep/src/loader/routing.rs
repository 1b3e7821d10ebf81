//! Routing a batch on the host: for one stream of one table, the expert of every position, a
//! stable permutation grouping positions by expert, and the group offsets. The device then only
//! gathers, runs each expert on a contiguous slice and scatters back.

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
    /// Expert of each position.
    pub expert_ids: Vec<u32>,
    /// Positions grouped by expert, in position order within a group.
    pub order: Vec<u32>,
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

/// Routes stream `stream` of `table` over a batch. Padding positions go to expert 0 (they are
/// masked out of the loss). Without a previous id (the very start of the data, or of an
/// example in per-example mode), `previous` and `bigram` use the current id in its place.
pub(crate) fn route(
    table: &RoutingTable,
    stream: u32,
    spec: usize,
    hash: u32,
    ctx: &RowContext<'_>,
) -> Route {
    let k = table.meta.experts;
    let column = table.column(stream);
    let key = table.stream_key(stream);
    let n = ctx.inputs.len();
    let mut expert_ids = Vec::with_capacity(n);
    for (row, (&valid, &before)) in ctx.valid.iter().zip(ctx.before).enumerate() {
        let base = row * ctx.seq_len;
        let x = &ctx.inputs[base..base + ctx.seq_len];
        let y = &ctx.targets[base..base + ctx.seq_len];
        for t in 0..ctx.seq_len {
            if t >= valid {
                expert_ids.push(0);
                continue;
            }
            let previous = || {
                if t > 0 {
                    x[t - 1]
                } else {
                    before.unwrap_or(x[t])
                }
            };
            expert_ids.push(match table.meta.rule {
                Rule::Token => column[x[t] as usize],
                Rule::Previous => column[previous() as usize],
                Rule::Next => column[y[t] as usize],
                Rule::Bigram => bigram_expert(key, previous(), x[t], k),
                Rule::Position => (t % k as usize) as u32,
            });
        }
    }
    let (order, offsets) = bucket_positions(&expert_ids, k);
    Route {
        spec,
        hash,
        experts: k,
        expert_ids,
        order,
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
