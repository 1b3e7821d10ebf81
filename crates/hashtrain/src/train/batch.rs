//! A loader batch moved to the device: ids as i64 tensors, the loss mask as floats, and each
//! route as a device permutation with host-side group offsets.

use hashprep::Batch;
use tch::{Device, Kind, Tensor};

use crate::model::{upload, DeviceRoute};

/// One batch on the device.
#[derive(Debug)]
pub struct DeviceBatch {
    /// `[B, T]` i64.
    pub input_ids: Tensor,
    /// `[B * T]` i64.
    pub targets: Tensor,
    /// `[B * T]` f32, 1 where the loss counts.
    pub mask: Tensor,
    /// The batch's routes, in the loader's order.
    pub routes: Vec<DeviceRoute>,
    /// Positions where the loss counts (known on the host).
    pub tokens: u64,
}

impl DeviceBatch {
    /// Uploads `batch`.
    pub fn new(batch: &Batch, device: Device) -> Self {
        let (rows, t) = (batch.rows as i64, batch.seq_len as i64);
        let mask: Vec<f32> = batch.loss_mask.iter().map(|&m| f32::from(m)).collect();
        Self {
            input_ids: upload(&batch.input_ids, device).view([rows, t]),
            targets: upload(&batch.targets, device),
            mask: Tensor::from_slice(&mask)
                .to_kind(Kind::Float)
                .to_device(device),
            routes: batch
                .routes
                .iter()
                .map(|r| DeviceRoute::from_route(r, device))
                .collect(),
            tokens: batch.loss_mask.iter().map(|&m| u64::from(m)).sum(),
        }
    }
}
