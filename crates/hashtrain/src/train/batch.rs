//! A loader batch moved to the device in one upload (ids, targets, loss mask and every route
//! packed together, a sequence-to-sequence batch's contexts and their masks too; pinned and
//! non-blocking on a GPU): ids as i64 tensors, the loss mask as floats, and each route as a
//! device permutation with host-side group offsets.

use hashprep::Batch;
use tch::{Device, Kind, Tensor};

use crate::model::{DeviceRoute, EncoderInput, KeyMask, Staging};

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
    /// A sequence-to-sequence batch's contexts.
    pub encoder: Option<EncoderInput>,
}

impl DeviceBatch {
    /// Uploads `batch`.
    pub fn new(batch: &Batch, device: Device) -> Self {
        let mut staging = Staging::default();
        let input_ids = staging.push_u32(&batch.input_ids);
        let targets = staging.push_u32(&batch.targets);
        let mask = staging.push(batch.loss_mask.iter().map(|&m| i64::from(m)));
        let routes: Vec<_> = batch
            .routes
            .iter()
            .map(|r| DeviceRoute::stage(r, &mut staging))
            .collect();
        let encoder = batch.encoder.as_ref().map(|e| {
            let (attend, has_keys) = KeyMask::host_values(&e.lengths, e.seq_len);
            let routes: Vec<_> = e
                .routes
                .iter()
                .map(|r| DeviceRoute::stage(r, &mut staging))
                .collect();
            let slots = (
                staging.push_u32(&e.input_ids),
                staging.push(attend),
                staging.push(has_keys),
            );
            (slots, routes, e.seq_len)
        });
        let uploaded = staging.upload(device);
        let rows = batch.rows as i64;
        Self {
            input_ids: uploaded.get(input_ids).view([rows, batch.seq_len as i64]),
            targets: uploaded.get(targets),
            mask: uploaded.get(mask).to_kind(Kind::Float),
            routes: routes.into_iter().map(|r| r.finish(&uploaded)).collect(),
            tokens: batch.loss_mask.iter().map(|&m| u64::from(m)).sum(),
            encoder: encoder.map(
                |((ids, attend, has_keys), routes, positions)| EncoderInput {
                    input_ids: uploaded.get(ids).view([rows, positions as i64]),
                    keys: KeyMask::from_values(
                        &uploaded.get(attend),
                        &uploaded.get(has_keys),
                        rows,
                    ),
                    routes: routes.into_iter().map(|r| r.finish(&uploaded)).collect(),
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(t: &Tensor) -> Vec<i64> {
        Vec::<i64>::try_from(t.reshape([-1])).expect("i64")
    }

    fn wide(v: &[u32]) -> Vec<i64> {
        v.iter().map(|&x| i64::from(x)).collect()
    }

    /// A top-1 and a top-2 route of 6 positions over 3 experts, from the loader's bucketing.
    fn route(expert_ids: &[u32], top_k: u32) -> hashprep::Route {
        let (order, slots, offsets) = hashprep::bucket_pairs(expert_ids, top_k, 3);
        hashprep::Route {
            spec: 0,
            hash: 0,
            experts: 3,
            top_k,
            expert_ids: expert_ids.to_vec(),
            order,
            slots,
            offsets,
            peer_counts: Vec::new(),
        }
    }

    #[test]
    fn one_packed_upload_gives_every_tensor_of_the_batch() {
        let top1 = route(&[2, 0, 2, 1, 0, 2], 1);
        let top2 = route(&[0, 1, 1, 2, 2, 0, 0, 2, 1, 0, 2, 1], 2);
        let batch = Batch {
            index: 0,
            epoch: 0,
            rows: 2,
            seq_len: 3,
            input_ids: vec![5, 6, 7, 8, 9, 10],
            targets: vec![6, 7, 11, 9, 10, 12],
            loss_mask: vec![1, 1, 0, 1, 1, 1],
            routes: vec![top1.clone(), top2.clone()],
            encoder: None,
        };
        let device = DeviceBatch::new(&batch, Device::Cpu);
        assert_eq!(device.input_ids.size(), [2, 3]);
        assert_eq!(ids(&device.input_ids), wide(&batch.input_ids));
        assert_eq!(ids(&device.targets), wide(&batch.targets));
        let mask = Vec::<f32>::try_from(&device.mask).expect("f32");
        assert_eq!(mask, [1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(device.tokens, 5);
        for (got, want) in device.routes.iter().zip([&top1, &top2]) {
            assert_eq!(ids(&got.order), wide(&want.order));
            assert_eq!(
                got.counts(),
                want.offsets
                    .windows(2)
                    .map(|w| u64::from(w[1] - w[0]))
                    .collect::<Vec<_>>()
            );
            assert_eq!(got.top_k, i64::from(want.top_k));
        }
        let pairs = device.routes[1].pairs.as_ref().expect("top-2");
        assert_eq!(pairs.expert_ids.size(), [6, 2]);
        assert_eq!(ids(&pairs.expert_ids), wide(&top2.expert_ids));
        let flat: Vec<i64> = top2
            .order
            .iter()
            .zip(&top2.slots)
            .map(|(&p, &j)| i64::from(p * 2 + j))
            .collect();
        assert_eq!(ids(&pairs.flat), flat);
        assert!(device.routes[0].pairs.is_none());
    }
}
