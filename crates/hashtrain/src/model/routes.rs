//! A loader route on the device: the permutation that groups positions by expert, and the
//! group offsets, which stay on the host so slicing needs no device-to-host copy. A top-k route
//! groups (position, slot) pairs and also carries what the gate needs to weight them.

use tch::{Device, Tensor};

/// One routing stream of one batch, ready for the device.
#[derive(Debug)]
pub struct DeviceRoute {
    /// `[N * k]` i64: the positions of the (position, slot) pairs, grouped by expert.
    pub order: Tensor,
    /// `K + 1` group boundaries into `order`, on the host.
    pub offsets: Vec<i64>,
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

impl DeviceRoute {
    /// Uploads a top-1 route given as host permutation and offsets.
    pub fn new(order: &[u32], offsets: &[u32], device: Device) -> Self {
        Self {
            order: upload(order, device),
            offsets: offsets.iter().map(|&o| i64::from(o)).collect(),
            top_k: 1,
            pairs: None,
        }
    }

    /// Uploads a loader route (top-1 or top-k).
    pub fn from_route(route: &hashprep::Route, device: Device) -> Self {
        Self::from_parts(
            &route.expert_ids,
            &route.order,
            &route.slots,
            &route.offsets,
            route.top_k,
            device,
        )
    }

    /// Builds the route of per-position experts (`[N, k]` row-major) on the host (tests and
    /// benchmarks; the loader does this on its workers).
    pub fn from_expert_ids(expert_ids: &[u32], top_k: u32, experts: u32, device: Device) -> Self {
        let (order, slots, offsets) = hashprep::bucket_pairs(expert_ids, top_k, experts);
        Self::from_parts(expert_ids, &order, &slots, &offsets, top_k, device)
    }

    fn from_parts(
        expert_ids: &[u32],
        order: &[u32],
        slots: &[u32],
        offsets: &[u32],
        top_k: u32,
        device: Device,
    ) -> Self {
        let mut route = Self::new(order, offsets, device);
        if top_k > 1 {
            let k = i64::from(top_k);
            let flat: Vec<u32> = order
                .iter()
                .zip(slots)
                .map(|(&p, &j)| p * top_k + j)
                .collect();
            route.top_k = k;
            route.pairs = Some(PairIndex {
                expert_ids: upload(expert_ids, device).view([-1, k]),
                flat: upload(&flat, device),
            });
        }
        route
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

/// `values` as an i64 tensor on `device` (ids, positions, experts).
pub fn upload(values: &[u32], device: Device) -> Tensor {
    let wide: Vec<i64> = values.iter().map(|&v| i64::from(v)).collect();
    Tensor::from_slice(&wide).to_device(device)
}
