//! A loader route on the device: the permutation that groups positions by expert, and the
//! group offsets, which stay on the host so slicing needs no device-to-host copy. A top-k route
//! groups (position, slot) pairs and also carries what the gate needs to weight them.

use tch::{Device, Tensor};

use super::groups::Groups;
use super::staging::{Slot, Staging, Uploaded};

/// One routing stream of one batch, ready for the device.
#[derive(Debug)]
pub struct DeviceRoute {
    /// `[N * k]` i64: the positions of the (position, slot) pairs, grouped by expert.
    pub order: Tensor,
    /// `K + 1` group boundaries into `order`, on the host.
    pub offsets: Vec<i64>,
    /// The non-empty groups of `order`, for running the experts.
    pub groups: Groups,
    /// Experts per position k (1: `order` is a permutation of the positions).
    pub top_k: i64,
    /// Top-k only.
    pub pairs: Option<PairIndex>,
}

/// What a top-k layer needs to weight each pair by its gate.
#[derive(Debug)]
pub struct PairIndex {
    /// `[N, k]` i64: the experts of each position, in slot order.
    pub expert_ids: Tensor,
    /// `[N * k]` i64: for each pair of `order`, its index `position * k + slot` into
    /// `expert_ids` viewed flat.
    pub flat: Tensor,
}

/// A route packed for an upload, not yet on the device.
#[derive(Debug)]
pub struct StagedRoute {
    order: Slot,
    offsets: Vec<i64>,
    spans: Vec<(i64, i64, i64)>,
    ends: Slot,
    top_k: i64,
    pairs: Option<(Slot, Slot)>,
}

impl DeviceRoute {
    /// Uploads a loader route (top-1 or top-k).
    pub fn from_route(route: &hashprep::Route, device: Device) -> Self {
        let mut staging = Staging::default();
        let staged = Self::stage(route, &mut staging);
        staged.finish(&staging.upload(device))
    }

    /// Packs a loader route into `staging` (a batch uploads all of its routes at once).
    pub fn stage(route: &hashprep::Route, staging: &mut Staging) -> StagedRoute {
        Self::stage_parts(
            &route.expert_ids,
            &route.order,
            &route.slots,
            &route.offsets,
            route.top_k,
            staging,
        )
    }

    /// Builds the route of per-position experts (`[N, k]` row-major) on the host (tests and
    /// benchmarks; the loader does this on its workers).
    pub fn from_expert_ids(expert_ids: &[u32], top_k: u32, experts: u32, device: Device) -> Self {
        let mut staging = Staging::default();
        let staged = Self::stage_expert_ids(expert_ids, top_k, experts, &mut staging);
        staged.finish(&staging.upload(device))
    }

    /// Packs the route of per-position experts into `staging` (BASE uploads it with the ids).
    pub fn stage_expert_ids(
        expert_ids: &[u32],
        top_k: u32,
        experts: u32,
        staging: &mut Staging,
    ) -> StagedRoute {
        let (order, slots, offsets) = hashprep::bucket_pairs(expert_ids, top_k, experts);
        Self::stage_parts(expert_ids, &order, &slots, &offsets, top_k, staging)
    }

    fn stage_parts(
        expert_ids: &[u32],
        order: &[u32],
        slots: &[u32],
        offsets: &[u32],
        top_k: u32,
        staging: &mut Staging,
    ) -> StagedRoute {
        let offsets: Vec<i64> = offsets.iter().map(|&o| i64::from(o)).collect();
        let (spans, ends) = Groups::layout(&offsets);
        let pairs = (top_k > 1).then(|| {
            let flat = order
                .iter()
                .zip(slots)
                .map(|(&p, &j)| i64::from(p * top_k + j));
            (staging.push_u32(expert_ids), staging.push(flat))
        });
        StagedRoute {
            order: staging.push_u32(order),
            ends: staging.push(ends),
            offsets,
            spans,
            top_k: i64::from(top_k),
            pairs,
        }
    }

    /// Number of experts K.
    pub fn experts(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Tokens (top-k: pairs) per expert.
    pub fn counts(&self) -> Vec<u64> {
        self.offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as u64)
            .collect()
    }
}

impl StagedRoute {
    /// The route on the device, its tensors views into `uploaded`.
    pub fn finish(self, uploaded: &Uploaded) -> DeviceRoute {
        DeviceRoute {
            order: uploaded.get(self.order),
            groups: Groups::new(self.spans, &uploaded.get(self.ends)),
            offsets: self.offsets,
            top_k: self.top_k,
            pairs: self.pairs.map(|(expert_ids, flat)| PairIndex {
                expert_ids: uploaded.get(expert_ids).view([-1, self.top_k]),
                flat: uploaded.get(flat),
            }),
        }
    }
}
