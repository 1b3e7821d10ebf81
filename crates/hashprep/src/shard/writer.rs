//! Writes one shard: rows are buffered into record batches, bytes go through a hashing writer,
//! and the file only gets its final name once complete.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, ListArray, RecordBatch, UInt16Array, UInt32Array};
use arrow_buffer::{ArrowNativeType, OffsetBuffer, ScalarBuffer};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{Field, SchemaRef};

use super::sink::ShardSink;
use super::{shard_schema, ShardInfo, TokenWidth};
use crate::corpus::{Source, SourceRef};
use crate::error::{Error, Result};
use crate::util::{persist, temp_file_beside};
use tempfile::TempPath;

/// Ids per record batch before it is flushed (keeps list offsets far below `i32::MAX`).
const BATCH_TOKENS: usize = 1 << 22;

/// A `Write` that hashes and counts everything passing through.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The ids of the record batch being gathered, at the shard's width.
enum Values {
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
}

/// Room for a batch's ids and the example that fills it, so that gathering a batch does not
/// grow (copy) its buffer: most examples are far shorter.
const BATCH_ROOM: usize = BATCH_TOKENS + (1 << 16);

impl Values {
    fn with_room(width: TokenWidth) -> Self {
        Self::with_capacity(width, BATCH_ROOM)
    }

    fn with_capacity(width: TokenWidth, capacity: usize) -> Self {
        match width {
            TokenWidth::Uint16 => Values::Uint16(Vec::with_capacity(capacity)),
            TokenWidth::Uint32 => Values::Uint32(Vec::with_capacity(capacity)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::Uint16(values) => values.len(),
            Values::Uint32(values) => values.len(),
        }
    }
}

/// The ids of a batch being written, kept to take their memory back for the next batch (fresh
/// memory for each batch was faulted in and zeroed page by page: a tenth of the writer's time).
enum WrittenValues {
    Uint16(UInt16Array),
    Uint32(UInt32Array),
}

impl WrittenValues {
    /// The ids' buffer, emptied, once nothing else holds it; new room otherwise.
    fn into_room(self, width: TokenWidth) -> Values {
        fn emptied<T: ArrowNativeType>(values: ScalarBuffer<T>) -> Option<Vec<T>> {
            let mut values = values.into_inner().into_vec::<T>().ok()?;
            values.clear();
            Some(values)
        }
        let reused = match self {
            WrittenValues::Uint16(values) => emptied(values.into_parts().1).map(Values::Uint16),
            WrittenValues::Uint32(values) => emptied(values.into_parts().1).map(Values::Uint32),
        };
        reused.unwrap_or_else(|| Values::with_room(width))
    }
}

/// Writer of one shard file.
pub struct ShardWriter {
    final_path: PathBuf,
    temp_path: TempPath,
    schema: SchemaRef,
    width: TokenWidth,
    writer: FileWriter<HashingWriter<ShardSink>>,
    offsets: Vec<i32>,
    values: Values,
    prefix_lens: Vec<u32>,
    /// `id` and `subreddit` per row, for dialogue shards.
    sources: Option<(StringBuilder, StringBuilder)>,
    rows: u64,
    tokens: u64,
}

impl ShardWriter {
    /// Starts `path` (written under a temporary name beside it until [`ShardWriter::finish`]).
    ///
    /// # Errors
    /// The temporary file cannot be created.
    pub fn create(path: &Path, width: TokenWidth, tokenizer_fingerprint: &str) -> Result<Self> {
        Self::create_with(path, width, tokenizer_fingerprint, false)
    }

    /// Like [`ShardWriter::create`]; `with_sources` adds the `id` and `subreddit` columns.
    ///
    /// # Errors
    /// The temporary file cannot be created.
    pub fn create_with(
        path: &Path,
        width: TokenWidth,
        tokenizer_fingerprint: &str,
        with_sources: bool,
    ) -> Result<Self> {
        let (file, temp) = temp_file_beside(path)?;
        let sink = HashingWriter {
            inner: ShardSink::new(file),
            hasher: blake3::Hasher::new(),
            bytes: 0,
        };
        let schema = shard_schema(width, tokenizer_fingerprint, with_sources);
        let writer = FileWriter::try_new(sink, &schema).map_err(|e| Error::format(&temp, e))?;
        Ok(Self {
            final_path: path.to_path_buf(),
            temp_path: temp,
            schema,
            width,
            writer,
            offsets: vec![0],
            values: Values::with_room(width),
            prefix_lens: Vec::new(),
            sources: with_sources.then(|| (StringBuilder::new(), StringBuilder::new())),
            rows: 0,
            tokens: 0,
        })
    }

    /// Appends one example.
    ///
    /// # Errors
    /// Writing a full record batch fails.
    pub fn push(&mut self, tokens: &[u32], prefix_len: u32) -> Result<()> {
        self.push_with_source(tokens, prefix_len, None)
    }

    /// Appends one example with its origin (written only by shards created with sources).
    ///
    /// # Errors
    /// Writing a full record batch fails.
    pub fn push_with_source(
        &mut self,
        tokens: &[u32],
        prefix_len: u32,
        source: Option<&Source>,
    ) -> Result<()> {
        self.push_with_source_ref(tokens, prefix_len, source.map(Source::borrowed))
    }

    /// [`Self::push_with_source`] with the source borrowed from where it is kept.
    pub(crate) fn push_with_source_ref(
        &mut self,
        tokens: &[u32],
        prefix_len: u32,
        source: Option<SourceRef>,
    ) -> Result<()> {
        if let Some((ids, subreddits)) = &mut self.sources {
            ids.append_value(source.map_or("", |s| s.id));
            subreddits.append_value(source.map_or("", |s| s.subreddit));
        }
        let end =
            i32::try_from(self.values.len() + tokens.len()).map_err(|_| Error::ExampleTooLong {
                path: self.final_path.clone(),
                tokens: tokens.len(),
            })?;
        match &mut self.values {
            // Ids of a 16-bit shard are below its tokenizer's vocabulary size.
            Values::Uint16(values) => values.extend(tokens.iter().map(|&id| id as u16)),
            Values::Uint32(values) => values.extend_from_slice(tokens),
        }
        self.offsets.push(end);
        self.prefix_lens.push(prefix_len);
        self.rows += 1;
        self.tokens += tokens.len() as u64;
        if self.values.len() >= BATCH_TOKENS {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Ids written so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Approximate bytes of data so far (ids and offsets), for deciding when to start a new shard.
    pub fn data_bytes(&self) -> u64 {
        self.tokens * self.width.bytes() as u64 + self.rows * 8
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.prefix_lens.is_empty() {
            return Ok(());
        }
        let rows = self.prefix_lens.len();
        // Empty (at the shard's width) until the batch is written and its memory taken back.
        let empty = Values::with_capacity(self.width, 0);
        let written = match std::mem::replace(&mut self.values, empty) {
            Values::Uint16(values) => WrittenValues::Uint16(UInt16Array::from(values)),
            Values::Uint32(values) => WrittenValues::Uint32(UInt32Array::from(values)),
        };
        let values: ArrayRef = match &written {
            WrittenValues::Uint16(values) => Arc::new(values.clone()),
            WrittenValues::Uint32(values) => Arc::new(values.clone()),
        };
        // The next batch likely holds about as many rows.
        let mut next_offsets = Vec::with_capacity(rows + rows / 4 + 1);
        next_offsets.push(0);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(
            &mut self.offsets,
            next_offsets,
        )));
        let item = Arc::new(Field::new("item", self.width.data_type(), false));
        let tokens = ListArray::try_new(item, offsets, values, None)
            .map_err(|e| Error::format(&self.temp_path, e))?;
        let prefix = UInt32Array::from(std::mem::replace(
            &mut self.prefix_lens,
            Vec::with_capacity(rows + rows / 4),
        ));
        let mut columns: Vec<ArrayRef> = vec![Arc::new(tokens), Arc::new(prefix)];
        if let Some((ids, subreddits)) = &mut self.sources {
            columns.push(Arc::new(ids.finish()));
            columns.push(Arc::new(subreddits.finish()));
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| Error::format(&self.temp_path, e))?;
        self.writer
            .write(&batch)
            .map_err(|e| Error::format(&self.temp_path, e))?;
        drop(batch);
        self.values = written.into_room(self.width);
        Ok(())
    }

    /// Completes the file, syncs it and renames it to its final name.
    ///
    /// # Errors
    /// Writing, syncing or renaming fails.
    pub fn finish(mut self) -> Result<ShardInfo> {
        self.flush_batch()?;
        self.writer
            .finish()
            .map_err(|e| Error::format(&self.temp_path, e))?;
        let sink = self
            .writer
            .into_inner()
            .map_err(|e| Error::format(&self.temp_path, e))?;
        let HashingWriter {
            inner,
            hasher,
            bytes,
        } = sink;
        let file = inner
            .into_file()
            .map_err(|e| Error::io(&self.temp_path, e))?;
        file.sync_all().map_err(|e| Error::io(&self.temp_path, e))?;
        drop(file);
        persist(self.temp_path, &self.final_path)?;
        Ok(ShardInfo {
            file: self
                .final_path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
            rows: self.rows,
            tokens: self.tokens,
            bytes,
            checksum: format!("blake3:{}", hasher.finalize().to_hex()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ShardReader;

    #[test]
    fn batches_after_the_first_hold_their_own_ids_at_either_width() {
        let tmp = tempfile::tempdir().unwrap();
        // Examples of 100,003 ids each, numbered by example and place: batches two and three
        // are gathered in the first one's memory, taken back once it is written.
        let example = |k: u32| {
            (0..100_003)
                .map(|i| (k * 7 + i) % 60_000)
                .collect::<Vec<_>>()
        };
        let examples = 2 * BATCH_TOKENS / 100_003 + 5;
        for width in [TokenWidth::Uint16, TokenWidth::Uint32] {
            let path = tmp.path().join(format!("{width:?}.arrow"));
            let mut writer = ShardWriter::create(&path, width, "test").unwrap();
            for k in 0..examples as u32 {
                writer.push(&example(k), k % 5).unwrap();
            }
            let info = writer.finish().unwrap();
            let shard = ShardReader::open(&path, Some(&info.checksum)).unwrap();
            assert_eq!(shard.batches().len(), 3, "{width:?}");
            let read: Vec<(Vec<u32>, u32)> = (shard.documents())
                .map(|(tokens, prefix)| (tokens.to_vec(), prefix))
                .collect();
            assert_eq!(read.len(), examples, "{width:?}");
            for (k, (tokens, prefix)) in (0u32..).zip(read) {
                assert_eq!(
                    (tokens, prefix),
                    (example(k), k % 5),
                    "{width:?} example {k}"
                );
            }
        }
    }
}
