//! Fixed integer hashes behind `random`, `bigram` and the tie-breaking of extra hashes. They
//! are part of the table format (documented in `schemas/table.md`), so a table built today
//! routes the same way in any later version, and Python can reproduce them.

use crate::util::splitmix64;

/// Maps a 64-bit hash uniformly onto `0..k` (Lemire's multiply-shift).
pub(crate) fn bucket(hash: u64, k: u32) -> u32 {
    ((u128::from(hash) * u128::from(k)) >> 64) as u32
}

/// The key of hash stream `stream` (= `layer * hashes + hash`) under `seed`.
pub(crate) fn stream_key(seed: u64, stream: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// `random`: the expert of `token` in a stream.
pub(crate) fn random_expert(key: u64, token: u32, k: u32) -> u32 {
    bucket(splitmix64(key ^ u64::from(token)), k)
}

/// `random` with `top_k` distinct experts of `token` (appended to `out`): slot 0 is
/// [`random_expert`]; slot j draws uniformly among the `k - j` experts not taken yet, in
/// ascending order, with its own hash.
pub(crate) fn random_experts(key: u64, token: u32, k: u32, top_k: u32, out: &mut Vec<u32>) {
    let first = out.len();
    out.push(random_expert(key, token, k));
    for slot in 1..top_k {
        let hash = splitmix64(key ^ u64::from(token) ^ u64::from(slot).wrapping_mul(SLOT_MIX));
        // The draw-th expert not taken yet: walk past the taken ones in ascending order.
        let mut expert = bucket(hash, k - slot);
        let mut taken: Vec<u32> = out[first..].to_vec();
        taken.sort_unstable();
        for t in taken {
            if t <= expert {
                expert += 1;
            }
        }
        out.push(expert);
    }
}

const SLOT_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// `bigram`: the expert of the pair (`previous`, `current`) in a stream.
pub fn bigram_expert(key: u64, previous: u32, current: u32, k: u32) -> u32 {
    let pair = (u64::from(previous) << 32) | u64::from(current);
    bucket(splitmix64(splitmix64(key) ^ pair), k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_never_change() {
        // Part of the on-disk contract: these values must stay the same forever.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(
            random_expert(stream_key(0, 0), 0, 16),
            random_expert(stream_key(0, 0), 0, 16)
        );
        let key = stream_key(1, 0);
        let spread: std::collections::BTreeSet<u32> =
            (0..1000).map(|t| random_expert(key, t, 8)).collect();
        assert_eq!(spread.len(), 8);
    }

    #[test]
    fn buckets_are_uniform() {
        let mut hist = [0u32; 10];
        for i in 0..100_000u64 {
            hist[bucket(splitmix64(i), 10) as usize] += 1;
        }
        assert!(
            hist.iter().all(|&n| (9_500..10_500).contains(&n)),
            "{hist:?}"
        );
    }
}
