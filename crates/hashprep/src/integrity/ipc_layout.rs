//! Bounds checks on an Arrow IPC file before arrow decodes it. arrow-ipc trusts the offsets
//! and lengths in the file's metadata (it slices buffers, unwraps negative lengths and views
//! buffers as typed values without checking their size), so a damaged or hostile file would
//! panic inside it; every reader of our Arrow files (shards, counts, tables) calls
//! [`checked_footer`] first and gets an error instead. Only the types our files hold
//! (fixed-width primitives, `Utf8`, `List`, `FixedSizeList`) are accepted.

use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::read_footer_length;
use arrow_ipc::{root_as_footer, root_as_message, Block, FieldNode, Footer};
use arrow_schema::{DataType, Schema};

/// Alignment of blocks, metadata and buffers required by the IPC format (arrow asserts it when
/// it views a buffer as typed values).
const ALIGNMENT: usize = 8;

/// The marker that may open an IPC message's metadata.
const CONTINUATION: [u8; 4] = [0xFF; 4];

/// The footer and schema of an IPC file, once its record-batch blocks and their message
/// buffers are known to lie within the data before the footer, each buffer as long as its
/// column's type and length need.
///
/// # Errors
/// What is out of bounds or unreadable, in words.
pub(crate) fn checked_footer(bytes: &[u8]) -> Result<(Footer<'_>, Schema), String> {
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
    let schema =
        try_fb_to_schema(footer.schema().ok_or("no schema")?).map_err(|e| e.to_string())?;
    for (i, block) in footer.recordBatches().into_iter().flatten().enumerate() {
        check_block(bytes, footer_start, block, &schema)
            .map_err(|e| format!("record batch {i}: {e}"))?;
    }
    Ok((footer, schema))
}

fn check_block(
    bytes: &[u8],
    data_end: usize,
    block: &Block,
    schema: &Schema,
) -> Result<(), String> {
    let as_len = |v: i64, what: &str| usize::try_from(v).map_err(|_| format!("negative {what}"));
    let start = as_len(block.offset(), "offset")?;
    let meta_len = as_len(i64::from(block.metaDataLength()), "metadata length")?;
    let body_len = as_len(block.bodyLength(), "body length")?;
    if start % ALIGNMENT != 0 || meta_len % ALIGNMENT != 0 {
        return Err(format!("block not aligned to {ALIGNMENT} bytes"));
    }
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
        if offset % ALIGNMENT != 0 {
            return Err(format!(
                "a buffer at {offset}, not aligned to {ALIGNMENT} bytes"
            ));
        }
        if offset.checked_add(len).is_none_or(|e| e > body_len) {
            return Err(format!(
                "a buffer at {offset} of {len} bytes outside the {body_len}-byte body"
            ));
        }
    }
    let mut nodes = batch.nodes().into_iter().flatten();
    let mut lengths = batch
        .buffers()
        .into_iter()
        .flatten()
        .map(|b| b.length() as usize); // not negative: checked above
    for field in schema.fields() {
        check_array(field.data_type(), 0, &mut nodes, &mut lengths)
            .map_err(|e| format!("column {:?}: {e}", field.name()))?;
    }
    Ok(())
}

/// Checks the buffers of one array of type `ty` (and of its child), taken in the IPC order:
/// validity, then offsets and/or values. The array must hold at least `min_rows` rows.
fn check_array<'a>(
    ty: &DataType,
    min_rows: usize,
    nodes: &mut impl Iterator<Item = &'a FieldNode>,
    lengths: &mut impl Iterator<Item = usize>,
) -> Result<(), String> {
    let node = nodes.next().ok_or("fewer arrays than columns")?;
    let rows = node.length() as usize; // not negative: checked above
    if rows < min_rows {
        return Err(format!("{rows} list items where {min_rows} are needed"));
    }
    let mut next = || lengths.next().ok_or("fewer buffers than the arrays need");
    let validity = next()?;
    if node.null_count() > 0 && validity < rows.div_ceil(8) {
        return Err("validity bitmap shorter than the array".into());
    }
    let sized = |len: usize, width: usize, count: usize, what: &str| {
        let fits = len.is_multiple_of(width) && count.checked_mul(width).is_some_and(|n| len >= n);
        if fits || (len == 0 && rows == 0) {
            Ok(())
        } else {
            Err(format!(
                "{what} buffer of {len} bytes for {count} items of {width} bytes"
            ))
        }
    };
    match ty {
        DataType::Utf8 => {
            sized(next()?, 4, rows + 1, "offsets")?;
            next()?; // the bytes, bounded by the offsets, which arrow validates
            Ok(())
        }
        DataType::List(item) => {
            sized(next()?, 4, rows + 1, "offsets")?;
            check_array(item.data_type(), 0, nodes, lengths)
        }
        DataType::FixedSizeList(item, size) => {
            let items = usize::try_from(*size)
                .ok()
                .and_then(|s| s.checked_mul(rows))
                .ok_or("a list size out of range")?;
            check_array(item.data_type(), items, nodes, lengths)
        }
        other => match other.primitive_width() {
            Some(width) => sized(next()?, width, rows, "values"),
            None => Err(format!("type {other}, which these files never hold")),
        },
    }
}
