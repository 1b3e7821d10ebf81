//! Host integers on their way to the device: a batch's ids, mask and routes are packed into one
//! i64 buffer and sent with one copy. On a GPU the buffer is pinned and the copy non-blocking,
//! so the host goes on preparing the next step while the device runs this one (libtorch's
//! pinned-memory allocator keeps a buffer until its copy has finished, so buffers are never
//! overwritten in flight); the copies queue on the stream before the kernels that read them.

use tch::{Device, Kind, Tensor};

/// Values packed for one upload.
#[derive(Debug, Default)]
pub struct Staging {
    values: Vec<i64>,
}

/// Where a pushed vector lies in the upload.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    start: i64,
    len: i64,
}

/// The packed values on the device.
#[derive(Debug)]
pub struct Uploaded(Tensor);

impl Staging {
    /// Appends `values`; returns where they will be.
    pub fn push(&mut self, values: impl IntoIterator<Item = i64>) -> Slot {
        let start = self.values.len();
        self.values.extend(values);
        Slot {
            start: start as i64,
            len: (self.values.len() - start) as i64,
        }
    }

    /// Appends ids.
    pub fn push_u32(&mut self, values: &[u32]) -> Slot {
        self.push(values.iter().map(|&v| i64::from(v)))
    }

    /// One copy to `device`: from pinned memory and non-blocking on a GPU, none on the CPU.
    pub fn upload(self, device: Device) -> Uploaded {
        let host = Tensor::from_slice(&self.values);
        match device {
            Device::Cpu => Uploaded(host),
            _ => Uploaded(
                host.pin_memory(device)
                    .to_device_(device, Kind::Int64, true, false),
            ),
        }
    }
}

impl Uploaded {
    /// The values pushed at `slot` (a view into the upload).
    pub fn get(&self, slot: Slot) -> Tensor {
        self.0.narrow(0, slot.start, slot.len)
    }
}
