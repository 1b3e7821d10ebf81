//! Reads a shard by memory map: the Arrow arrays point into the mapped file, nothing is copied.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt32Type};
use arrow_array::{Array, ListArray, RecordBatch, UInt32Array};
use arrow_buffer::Buffer;
use arrow_ipc::reader::FileDecoder;
use arrow_schema::DataType;

use super::{TokenWidth, PREFIX_LEN_COLUMN, TOKENS_COLUMN};
use crate::error::{Error, Result};
use crate::integrity::{checked_footer, verify_checksum};

/// The ids of one example, borrowed from the mapped shard.
#[derive(Debug, Clone, Copy)]
pub enum DocTokens<'a> {
    /// 16-bit ids.
    U16(&'a [u16]),
    /// 32-bit ids.
    U32(&'a [u32]),
}

impl DocTokens<'_> {
    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            DocTokens::U16(v) => v.len(),
            DocTokens::U32(v) => v.len(),
        }
    }

    /// True when there are no ids.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id at position `i`.
    pub fn get(&self, i: usize) -> u32 {
        match self {
            DocTokens::U16(v) => u32::from(v[i]),
            DocTokens::U32(v) => v[i],
        }
    }

    /// Appends the ids of `range` to `out`.
    pub fn extend_into(&self, range: std::ops::Range<usize>, out: &mut Vec<u32>) {
        match self {
            DocTokens::U16(v) => out.extend(v[range].iter().map(|&x| u32::from(x))),
            DocTokens::U32(v) => out.extend_from_slice(&v[range]),
        }
    }

    /// The ids widened to `u32`.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            DocTokens::U16(v) => v.iter().map(|&x| u32::from(x)).collect(),
            DocTokens::U32(v) => v.to_vec(),
        }
    }

    /// Calls `f` on each id.
    pub fn for_each(&self, mut f: impl FnMut(u32)) {
        match self {
            DocTokens::U16(v) => v.iter().for_each(|&x| f(u32::from(x))),
            DocTokens::U32(v) => v.iter().for_each(|&x| f(x)),
        }
    }
}

/// A memory-mapped shard.
pub struct ShardReader {
    path: PathBuf,
    /// The mapped file, kept open to notice it shrinking ([`ShardReader::check_unchanged`]).
    file: File,
    mapped_len: u64,
    batches: Vec<RecordBatch>,
    width: TokenWidth,
    tokenizer_fingerprint: Option<String>,
}

impl ShardReader {
    /// Maps `path` and decodes its record batches in place. With `checksum`, the file's bytes
    /// must hash to it (a shard truncated or altered after it was written is refused).
    ///
    /// # Errors
    /// The file is missing, not an Arrow IPC file of the shard schema, or fails the checksum.
    pub fn open(path: &Path, checksum: Option<&str>) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let map = crate::util::map_file(&file, false).map_err(|e| Error::io(path, e))?;
        let mapped_len = map.len() as u64;
        if let Some(expected) = checksum {
            verify_checksum(path, &map, expected)?;
        }
        let buffer = Buffer::from(bytes::Bytes::from_owner(map));
        let bad = |msg: String| Error::corrupt(path, format!("not a valid shard: {msg}"));
        let (footer, schema) = checked_footer(&buffer).map_err(bad)?;
        let width = match schema
            .field_with_name(TOKENS_COLUMN)
            .map(|f| f.data_type().clone())
        {
            Ok(DataType::List(item)) if item.data_type() == &DataType::UInt16 => TokenWidth::Uint16,
            Ok(DataType::List(item)) if item.data_type() == &DataType::UInt32 => TokenWidth::Uint32,
            other => return Err(bad(format!("column {TOKENS_COLUMN:?} has type {other:?}"))),
        };
        if schema.field_with_name(PREFIX_LEN_COLUMN).is_err() {
            return Err(bad(format!("no column {PREFIX_LEN_COLUMN:?}")));
        }
        let tokenizer_fingerprint = schema
            .metadata()
            .get("hashprep.tokenizer_fingerprint")
            .cloned();
        let decoder = FileDecoder::new(std::sync::Arc::new(schema), footer.version());
        let mut batches = Vec::new();
        for block in footer.recordBatches().into_iter().flatten() {
            // Within the data: `checked_footer` verified every block.
            let len = block.bodyLength() as usize + block.metaDataLength() as usize;
            let start = block.offset() as usize;
            let data = buffer.slice_with_length(start, len);
            if let Some(batch) = decoder
                .read_record_batch(block, &data)
                .map_err(|e| bad(e.to_string()))?
            {
                batches.push(batch);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            mapped_len,
            batches,
            width,
            tokenizer_fingerprint,
        })
    }

    /// Checks a shard's layout without reading its data: the footer, the record batches it
    /// lists (within the file, aligned, their buffers inside their bodies) and the columns.
    /// Only those pages are read (no readahead around them): what a merge of hard links
    /// checks, a few kilobytes per shard.
    ///
    /// # Errors
    /// The file cannot be read, or is no shard.
    pub(crate) fn check_layout(path: &Path) -> Result<()> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let map = crate::util::map_file(&file, false).map_err(|e| Error::io(path, e))?;
        #[cfg(unix)]
        map.advise(memmap2::Advice::Random)
            .map_err(|e| Error::io(path, e))?;
        let bad = |msg: String| Error::corrupt(path, format!("not a valid shard: {msg}"));
        let (_, schema) = checked_footer(&map).map_err(bad)?;
        for column in [TOKENS_COLUMN, PREFIX_LEN_COLUMN] {
            if schema.field_with_name(column).is_err() {
                return Err(bad(format!("no column {column:?}")));
            }
        }
        Ok(())
    }

    /// Checks that the file still has the length it had when it was mapped. A page of the
    /// mapping past a shrunken file's end cannot be read (the process would get SIGBUS), so
    /// every read of mapped ids is preceded by this check. What stays racy: a file truncated
    /// between the check and the read, and views handed out before (they read the file as it
    /// is).
    ///
    /// # Errors
    /// The file shrank (another program truncated or rewrote it), or cannot be examined.
    pub fn check_unchanged(&self) -> Result<()> {
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.path, e))?
            .len();
        if len < self.mapped_len {
            return Err(Error::corrupt(
                &self.path,
                format!(
                    "shrank from {} to {len} bytes since it was opened (truncated or rewritten \
                     by another program): reopen the data once it is whole again",
                    self.mapped_len
                ),
            ));
        }
        Ok(())
    }

    /// The shard's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record batches (zero-copy views of the file).
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Width of the ids.
    pub fn width(&self) -> TokenWidth {
        self.width
    }

    /// The tokenizer fingerprint stored in the schema metadata.
    pub fn tokenizer_fingerprint(&self) -> Option<&str> {
        self.tokenizer_fingerprint.as_deref()
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The ids of row `row` of record batch `batch`.
    pub fn row(&self, batch: usize, row: usize) -> DocTokens<'_> {
        let list: &ListArray = self.batches[batch].column(0).as_list::<i32>();
        let offsets = list.value_offsets();
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        match self.width {
            TokenWidth::Uint16 => {
                DocTokens::U16(&list.values().as_primitive::<UInt16Type>().values()[start..end])
            }
            TokenWidth::Uint32 => {
                DocTokens::U32(&list.values().as_primitive::<UInt32Type>().values()[start..end])
            }
        }
    }

    /// Every example in order: its ids and its `prefix_len`.
    pub fn documents(&self) -> impl Iterator<Item = (DocTokens<'_>, u32)> + '_ {
        self.batches.iter().flat_map(move |batch| {
            let list: &ListArray = batch.column(0).as_list::<i32>();
            let prefix: &UInt32Array = batch.column(1).as_primitive::<UInt32Type>();
            let offsets = list.value_offsets();
            let values = list.values();
            let width = self.width;
            (0..list.len()).map(move |row| {
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                let tokens = match width {
                    TokenWidth::Uint16 => {
                        DocTokens::U16(&values.as_primitive::<UInt16Type>().values()[start..end])
                    }
                    TokenWidth::Uint32 => {
                        DocTokens::U32(&values.as_primitive::<UInt32Type>().values()[start..end])
                    }
                };
                (tokens, prefix.value(row))
            })
        })
    }
}
