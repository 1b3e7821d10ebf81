//! What keeps a damaged file from being read as a good one: fingerprints and checksums of
//! bytes, and the bounds checks of an Arrow IPC file before arrow decodes it. Shards, counts,
//! tables, tokenizers and loader states all rely on it; it relies on nothing of theirs.

mod ipc_layout;

use std::path::Path;

use crate::error::{Error, Result};

pub(crate) use ipc_layout::checked_footer;

/// `blake3:<hex>` of some bytes: how files are fingerprinted and checksummed.
pub fn fingerprint_bytes(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

/// Refuses the bytes of `path` unless they hash to `expected` (what the manifest recorded).
pub(crate) fn verify_checksum(path: &Path, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = fingerprint_bytes(bytes);
    if actual == expected {
        return Ok(());
    }
    Err(Error::corrupt(
        path,
        format!(
            "checksum mismatch: manifest says {expected}, file is {actual} \
             (altered or replaced since it was written; rerun the command that made it)"
        ),
    ))
}
