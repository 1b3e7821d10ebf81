//! Bounds checks on an Arrow IPC file before arrow decodes it. arrow-ipc trusts the offsets
//! and lengths in the file's metadata (it slices buffers and unwraps negative lengths without
//! checking), so a damaged or hostile file would panic inside it; every reader of our Arrow
//! files (shards, counts, tables) calls [`checked_footer`] first and gets an error instead.

use arrow_ipc::reader::read_footer_length;
use arrow_ipc::{root_as_footer, root_as_message, Block, Footer};

/// The marker that may open an IPC message's metadata.
const CONTINUATION: [u8; 4] = [0xFF; 4];

/// The footer of an IPC file, once its record-batch blocks and their message buffers are
/// known to lie within the data before it.
///
/// # Errors
/// What is out of bounds or unreadable, in words.
pub(crate) fn checked_footer(bytes: &[u8]) -> Result<Footer<'_>, String> {
    if bytes.len() < 10 {
        return Err("file too short for an Arrow IPC file".into());
    }
    let trailer: [u8; 10] = bytes[bytes.len() - 10..].try_into().expect("10 bytes");
    let footer_len = read_footer_length(trailer).map_err(|e| e.to_string())?;
    let footer_start = bytes
        .len()
        .checked_sub(10 + footer_len)
        .ok_or("footer longer than the file")?;
    let footer =
        root_as_footer(&bytes[footer_start..bytes.len() - 10]).map_err(|e| e.to_string())?;
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err("dictionary batches, which these files never hold".into());
    }
    for (i, block) in footer.recordBatches().into_iter().flatten().enumerate() {
        check_block(bytes, footer_start, block).map_err(|e| format!("record batch {i}: {e}"))?;
    }
    Ok(footer)
}

fn check_block(bytes: &[u8], data_end: usize, block: &Block) -> Result<(), String> {
    let as_len = |v: i64, what: &str| usize::try_from(v).map_err(|_| format!("negative {what}"));
    let start = as_len(block.offset(), "offset")?;
    let meta_len = as_len(i64::from(block.metaDataLength()), "metadata length")?;
    let body_len = as_len(block.bodyLength(), "body length")?;
    let end = start
        .checked_add(meta_len)
        .and_then(|e| e.checked_add(body_len))
        .filter(|&e| e <= data_end)
        .ok_or("lies past the end of the data")?;
    let meta = &bytes[start..end - body_len];
    if meta.len() < 8 {
        return Err("metadata too short".into());
    }
    let flatbuffer = if meta[..4] == CONTINUATION {
        &meta[8..]
    } else {
        &meta[4..]
    };
    let message = root_as_message(flatbuffer).map_err(|e| e.to_string())?;
    let batch = message
        .header_as_record_batch()
        .ok_or("not a record batch message")?;
    if batch.compression().is_some() {
        return Err("compressed buffers, which these files never hold".into());
    }
    let length = as_len(batch.length(), "row count")?;
    for node in batch.nodes().into_iter().flatten() {
        if as_len(node.length(), "array length")? > length.max(body_len) {
            return Err("an array longer than its data".into());
        }
        as_len(node.null_count(), "null count")?;
    }
    for buffer in batch.buffers().into_iter().flatten() {
        let offset = as_len(buffer.offset(), "buffer offset")?;
        let len = as_len(buffer.length(), "buffer length")?;
        if offset.checked_add(len).is_none_or(|e| e > body_len) {
            return Err(format!(
                "a buffer at {offset} of {len} bytes outside the {body_len}-byte body"
            ));
        }
    }
    Ok(())
}
