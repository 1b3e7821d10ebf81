//! Token frequency counts: one `u64` per id of the vocabulary (zeros included), mergeable
//! across tasks, stored as `counts.arrow`.

use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{RecordBatch, UInt32Array, UInt64Array};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema};

use crate::error::{Error, Result};
use crate::util::write_atomic;

/// File name of the counts inside an output directory.
pub(crate) const COUNTS_FILE: &str = "counts.arrow";

/// The counts file's format version (its `hashprep.version` metadata; the manifest has its
/// own, `MANIFEST_VERSION`, equal so far).
const COUNTS_VERSION: u32 = 1;

/// Counts of every token id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCounts {
    counts: Vec<u64>,
}

impl TokenCounts {
    /// All-zero counts for `vocab_size` ids.
    pub fn new(vocab_size: usize) -> Self {
        Self {
            counts: vec![0; vocab_size],
        }
    }

    /// Counts from a vector indexed by id.
    pub fn from_vec(counts: Vec<u64>) -> Self {
        Self { counts }
    }

    /// Adds one occurrence of each id.
    ///
    /// # Panics
    /// An id outside the vocabulary (a tokenizer bug).
    pub fn add(&mut self, ids: &[u32]) {
        for &id in ids {
            self.counts[id as usize] += 1;
        }
    }

    /// Adds another set of counts of the same vocabulary.
    ///
    /// # Errors
    /// The vocabulary sizes differ.
    pub fn merge(&mut self, other: &TokenCounts) -> Result<()> {
        if other.counts.len() != self.counts.len() {
            return Err(Error::Merge(crate::error::MergeProblem::OtherVocabulary {
                theirs: other.counts.len(),
                ours: self.counts.len(),
            }));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        Ok(())
    }

    /// Counts indexed by id.
    pub fn as_slice(&self) -> &[u64] {
        &self.counts
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `n` most frequent ids with their counts (ties: lower id first).
    pub fn top(&self, n: usize) -> Vec<(u32, u64)> {
        let mut ids: Vec<(u32, u64)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (i as u32, c))
            .collect();
        ids.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ids.truncate(n);
        ids
    }

    fn schema(tokenizer_fingerprint: &str) -> Arc<Schema> {
        let metadata = [
            ("hashprep.schema".to_owned(), "counts".to_owned()),
            ("hashprep.version".to_owned(), COUNTS_VERSION.to_string()),
            (
                "hashprep.tokenizer_fingerprint".to_owned(),
                tokenizer_fingerprint.to_owned(),
            ),
        ];
        Arc::new(
            Schema::new(vec![
                Field::new("token_id", DataType::UInt32, false),
                Field::new("count", DataType::UInt64, false),
            ])
            .with_metadata(
                metadata
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            ),
        )
    }

    /// Writes the counts as an Arrow IPC file (atomically) and returns its bytes.
    ///
    /// # Errors
    /// I/O or Arrow failure.
    pub fn write(&self, path: &Path, tokenizer_fingerprint: &str) -> Result<Vec<u8>> {
        let schema = Self::schema(tokenizer_fingerprint);
        let ids = UInt32Array::from_iter_values(0..self.counts.len() as u32);
        let counts = UInt64Array::from(self.counts.clone());
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(counts)])
            .map_err(|e| Error::format(path, e))?;
        let mut bytes = Vec::new();
        {
            let mut writer =
                FileWriter::try_new(&mut bytes, &schema).map_err(|e| Error::format(path, e))?;
            writer.write(&batch).map_err(|e| Error::format(path, e))?;
            writer.finish().map_err(|e| Error::format(path, e))?;
        }
        write_atomic(path, &bytes)?;
        Ok(bytes)
    }

    /// Reads a counts file; returns the counts and the tokenizer fingerprint it records.
    ///
    /// # Errors
    /// Missing file, wrong schema, or ids that are not `0..V` in order.
    pub fn read(path: &Path) -> Result<(Self, Option<String>)> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a counts file; `path` names it in errors.
    ///
    /// # Errors
    /// Wrong schema, or ids that are not `0..V` in order.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<(Self, Option<String>)> {
        crate::integrity::checked_footer(bytes)
            .map_err(|e| Error::corrupt(path, format!("not a counts file: {e}")))?;
        let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| Error::corrupt(path, e.to_string()))?;
        let fingerprint = reader
            .schema()
            .metadata()
            .get("hashprep.tokenizer_fingerprint")
            .cloned();
        let mut counts = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
            let (Some(ids), Some(values)) = (
                batch.column_by_name("token_id"),
                batch.column_by_name("count"),
            ) else {
                return Err(Error::corrupt(path, "expected columns token_id and count"));
            };
            let ids = ids
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| Error::corrupt(path, "token_id is not u32"))?;
            let values = values
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| Error::corrupt(path, "count is not u64"))?;
            for (id, count) in ids.values().iter().zip(values.values().iter()) {
                if *id as usize != counts.len() {
                    return Err(Error::corrupt(
                        path,
                        format!("token_id {id} out of order at row {}", counts.len()),
                    ));
                }
                counts.push(*count);
            }
        }
        Ok((Self { counts }, fingerprint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = TokenCounts::new(5);
        a.add(&[1, 1, 4]);
        let path = dir.path().join(COUNTS_FILE);
        a.write(&path, "blake3:x").unwrap();
        let (back, fp) = TokenCounts::read(&path).unwrap();
        assert_eq!(back, a);
        assert_eq!(fp.as_deref(), Some("blake3:x"));
        let mut b = TokenCounts::new(5);
        b.add(&[0, 4]);
        b.merge(&a).unwrap();
        assert_eq!(b.as_slice(), &[1, 2, 0, 0, 2]);
        assert_eq!(b.top(2), vec![(1, 2), (4, 2)]);
        assert!(b.merge(&TokenCounts::new(3)).is_err());
    }
}
