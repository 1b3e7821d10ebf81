//! A loader route on the device: the permutation that groups positions by expert, and the
//! group offsets, which stay on the host so slicing needs no device-to-host copy.

use tch::{Device, Tensor};

/// One routing stream of one batch, ready for the device.
#[derive(Debug)]
pub struct DeviceRoute {
    /// `[N]` i64: positions grouped by expert.
    pub order: Tensor,
    /// `K + 1` group boundaries into `order`, on the host.
    pub offsets: Vec<i64>,
}

impl DeviceRoute {
    /// Uploads a route given as host permutation and offsets.
    pub fn new(order: &[u32], offsets: &[u32], device: Device) -> Self {
        let order: Vec<i64> = order.iter().map(|&p| i64::from(p)).collect();
        Self {
            order: Tensor::from_slice(&order).to_device(device),
            offsets: offsets.iter().map(|&o| i64::from(o)).collect(),
        }
    }

    /// Builds the route of per-position expert ids on the host (tests and benchmarks; the
    /// loader does this on its workers).
    pub fn from_expert_ids(expert_ids: &[u32], experts: u32, device: Device) -> Self {
        let (order, offsets) = hashprep::bucket_positions(expert_ids, experts);
        Self::new(&order, &offsets, device)
    }

    /// Number of experts K.
    pub fn experts(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Tokens per expert.
    pub fn counts(&self) -> Vec<u64> {
        self.offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as u64)
            .collect()
    }
}
