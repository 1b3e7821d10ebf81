//! Which ids make sample `s` of epoch `e`: seeded permutations of documents and windows, and the
//! split of each epoch among data-parallel ranks. Pure functions of (seed, epoch), so batches
//! are the same whatever the number of workers.

use crate::util::splitmix64;

/// A seeded permutation of `0..n` (Fisher-Yates driven by SplitMix64).
pub(super) fn permutation(n: usize, seed: u64, salt: u64) -> Vec<u32> {
    let mut items: Vec<u32> = (0..n as u32).collect();
    let mut state = splitmix64(seed ^ salt.wrapping_mul(0xA076_1D64_78BD_642F));
    for i in (1..n).rev() {
        state = splitmix64(state);
        let j = crate::table::bucket(state, i as u32 + 1) as usize;
        items.swap(i, j);
    }
    items
}

/// Salts that keep the permutations of one seed independent of each other.
pub(crate) const SALT_DOCS: u64 = 1;
pub(crate) const SALT_WINDOWS: u64 = 2;

/// The concatenation of all documents in one epoch's order, cut into windows of `T + 1` ids
/// that start every `T` ids (each id is a target exactly once).
pub(super) struct PackedEpoch {
    /// Documents in this epoch's order.
    order: Vec<u32>,
    /// `starts[i]`: offset of `order[i]` in the concatenated stream; one extra entry at the end.
    starts: Vec<u64>,
    /// Windows in this epoch's order.
    windows: Vec<u32>,
    seq_len: usize,
}

impl PackedEpoch {
    /// The packing of epoch `epoch` for documents of `lengths`.
    pub(super) fn new(lengths: &[u32], seq_len: usize, seed: u64, epoch: u64) -> Self {
        let order = permutation(
            lengths.len(),
            seed ^ epoch.wrapping_mul(0x9E37_79B9),
            SALT_DOCS,
        );
        let mut starts = Vec::with_capacity(order.len() + 1);
        let mut total = 0u64;
        for &doc in &order {
            starts.push(total);
            total += u64::from(lengths[doc as usize]);
        }
        starts.push(total);
        let count = Self::window_count(total, seq_len);
        let windows = permutation(count, seed ^ epoch.wrapping_mul(0x9E37_79B9), SALT_WINDOWS);
        Self {
            order,
            starts,
            windows,
            seq_len,
        }
    }

    /// Windows of `T + 1` ids with stride `T` in `total` ids.
    pub(super) fn window_count(total: u64, seq_len: usize) -> usize {
        if total <= seq_len as u64 {
            0
        } else {
            ((total - 1) / seq_len as u64) as usize
        }
    }

    /// Number of samples (windows).
    pub(super) fn len(&self) -> usize {
        self.windows.len()
    }

    /// The documents and ranges that make sample `sample`: calls `piece(doc, range)` in order,
    /// covering `T + 1` ids from stream offset `window * T`; returns the id just before the
    /// window start, if any, through `before`.
    pub(super) fn pieces(
        &self,
        sample: usize,
        mut piece: impl FnMut(usize, std::ops::Range<usize>),
    ) -> Option<(usize, usize)> {
        let start = u64::from(self.windows[sample]) * self.seq_len as u64;
        let end = start + self.seq_len as u64 + 1;
        let mut i = self.starts.partition_point(|&s| s <= start) - 1;
        let before = if start == 0 {
            None
        } else {
            let j = self.starts.partition_point(|&s| s < start) - 1;
            Some((
                self.order[j] as usize,
                (start - 1 - self.starts[j]) as usize,
            ))
        };
        let mut at = start;
        while at < end {
            let doc_start = self.starts[i];
            let doc_end = self.starts[i + 1];
            if doc_end > at {
                let from = (at - doc_start) as usize;
                let to = (end.min(doc_end) - doc_start) as usize;
                piece(self.order[i] as usize, from..to);
                at = end.min(doc_end);
            }
            i += 1;
        }
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_permutations_and_depend_on_the_seed() {
        let p = permutation(1000, 7, SALT_DOCS);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<u32>>());
        assert_ne!(p, permutation(1000, 8, SALT_DOCS));
        assert_eq!(p, permutation(1000, 7, SALT_DOCS));
    }

    #[test]
    fn windows_cover_the_stream_with_stride_t() {
        let lengths = [5u32, 1, 7, 3];
        let epoch = PackedEpoch::new(&lengths, 4, 3, 0);
        assert_eq!(epoch.len(), (16 - 1) / 4);
        let mut seen = Vec::new();
        for s in 0..epoch.len() {
            let mut n = 0;
            epoch.pieces(s, |_, r| n += r.len());
            assert_eq!(n, 5);
            seen.push(epoch.windows[s]);
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
