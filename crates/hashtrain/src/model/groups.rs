//! Rows grouped by expert: what the router or the loader's route hands the experts (the spans
//! on the host, the group ends on the device).

use tch::{Kind, Tensor};

use super::staging::Staging;

/// Rows grouped by expert, contiguous and in expert order: the spans stay on the host, so
/// slicing needs no device read; the ends of the groups are on the device for the grouped GEMM.
#[derive(Debug)]
pub struct Groups {
    /// `(expert, first row, rows)` of each non-empty group, in order.
    pub(super) spans: Vec<(i64, i64, i64)>,
    /// `[G]` i32: the end row of each non-empty group (G = `spans.len()`).
    pub(super) ends: Tensor,
}

impl Groups {
    /// The non-empty groups of `offsets` (`K + 1` boundaries) as `(expert, first row, rows)`,
    /// and their end rows: what [`Groups::new`] takes, the ends to be uploaded.
    pub fn layout(offsets: &[i64]) -> (Vec<(i64, i64, i64)>, Vec<i64>) {
        let spans: Vec<(i64, i64, i64)> = offsets
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[1] > w[0])
            .map(|(e, w)| (e as i64, w[0], w[1] - w[0]))
            .collect();
        let ends = spans.iter().map(|&(_, start, rows)| start + rows).collect();
        (spans, ends)
    }

    /// `spans` from [`Groups::layout`] and their `ends` on the device (any integer kind).
    pub fn new(spans: Vec<(i64, i64, i64)>, ends: &Tensor) -> Self {
        Self {
            spans,
            ends: ends.to_kind(Kind::Int),
        }
    }

    /// The groups of `offsets`, their ends uploaded to `device` (Switch, whose groups are known
    /// only during the forward pass).
    pub fn upload(offsets: &[i64], device: tch::Device) -> Self {
        let (spans, ends) = Self::layout(offsets);
        let mut staging = Staging::default();
        let ends = staging.push(ends);
        Self::new(spans, &staging.upload(device).get(ends))
    }

    /// Rows in all groups.
    pub(super) fn rows(&self) -> i64 {
        self.spans
            .last()
            .map_or(0, |&(_, start, rows)| start + rows)
    }
}
