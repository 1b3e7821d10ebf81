//! The table file: Arrow IPC (`token_id` + one expert column per stream, a fixed-size list of
//! k experts for top-k tables) with the table's metadata as JSON, or `.npy` (`[V]`,
//! `[V, streams]`, `[V, k]` or `[V, streams, k]`) with the metadata beside it in `FILE.json`.
//! Documented in `schemas/table.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{UInt16Type, UInt32Type};
use arrow_array::{Array, ArrayRef, FixedSizeListArray, RecordBatch, UInt16Array, UInt32Array};
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use super::hashing::stream_key;
use super::{BalanceStats, Method, Rule};
use crate::counts::TokenCounts;
use crate::error::{Error, Result, TableProblem};
use crate::util::write_atomic;

/// Version of the table format.
pub(crate) const TABLE_VERSION: u32 = 1;

/// The Arrow schema metadata key of the table's checksum (see `RoutingTable::checksum`).
const CHECKSUM_KEY: &str = "hashprep.checksum";
/// The field of a `.npy` table's `FILE.json` that holds its checksum.
const SIDECAR_CHECKSUM: &str = "checksum";

/// The metadata of a table (the `hashprep.table` schema metadata, or `FILE.json` beside a `.npy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMeta {
    /// Always `hashprep-table`.
    pub kind: String,
    /// [`TABLE_VERSION`].
    pub version: u32,
    /// How it was built.
    pub method: Method,
    /// What the loader routes on.
    pub rule: Rule,
    /// `previous` / `oracle`: the per-token method of the columns.
    pub base: Option<Method>,
    /// Number of experts K.
    pub experts: u32,
    /// Distinct experts per token k (absent in the file when 1).
    #[serde(
        default = "crate::util::one",
        skip_serializing_if = "crate::util::is_one"
    )]
    pub top_k: u32,
    /// Hashes per layer N.
    pub hashes: u32,
    /// Layers with their own table.
    pub layers: u32,
    /// Seed.
    pub seed: u64,
    /// Whether the balanced refinement ran.
    pub refined: bool,
    /// Number of token ids.
    pub vocab_size: usize,
    /// Fingerprint of the tokenizer of the data it was built for.
    pub tokenizer_fingerprint: String,
    /// Checksum of the counts file it was built from.
    pub counts_fingerprint: String,
}

/// Output format of a table file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum TableFormat {
    /// Arrow IPC file with metadata (the default).
    Arrow,
    /// NumPy `.npy` plus `FILE.json` metadata.
    Npy,
}

impl TableFormat {
    /// Every format.
    pub const ALL: [TableFormat; 2] = [TableFormat::Arrow, TableFormat::Npy];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TableFormat::Arrow => "arrow",
            TableFormat::Npy => "npy",
        }
    }

    /// The format called `name`.
    ///
    /// # Errors
    /// None is; the error lists them.
    pub fn from_name(name: &str) -> Result<Self> {
        crate::util::by_name("format", name, &Self::ALL, Self::name)
    }
}

/// A built or loaded table.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingTable {
    /// Its metadata.
    pub meta: TableMeta,
    /// One column per stream (`layer * hashes + hash`), each `[vocab_size, top_k]` row-major;
    /// none for rules.
    columns: Vec<Vec<u32>>,
}

/// Name of the column of `layer`, `hash`.
pub(crate) fn column_name(meta: &TableMeta, layer: u32, hash: u32) -> String {
    let plural = if meta.top_k > 1 { "s" } else { "" };
    match (meta.layers, meta.hashes) {
        (1, 1) => format!("expert{plural}"),
        (1, _) => format!("expert_{hash}"),
        _ if meta.top_k > 1 => format!("layer{layer}_experts"),
        _ => format!("layer{layer}_expert_{hash}"),
    }
}

impl RoutingTable {
    /// A table from metadata and columns (checked against each other).
    ///
    /// # Errors
    /// Column count or lengths that do not match the metadata, or experts out of range.
    pub fn new(meta: TableMeta, columns: Vec<Vec<u32>>) -> Result<Self> {
        let expected = if meta.rule.has_columns() {
            (meta.layers * meta.hashes) as usize
        } else {
            0
        };
        if columns.len() != expected {
            return Err(Error::table(TableProblem::Columns {
                found: columns.len(),
                expected,
            }));
        }
        let k = meta.top_k as usize;
        if k < 1 || meta.top_k > meta.experts {
            return Err(Error::table(TableProblem::TopKRange {
                top_k: meta.top_k,
                experts: meta.experts,
            }));
        }
        for column in &columns {
            if column.len() != meta.vocab_size * k {
                return Err(Error::table(TableProblem::ColumnLength {
                    len: column.len(),
                    vocab: meta.vocab_size,
                    top_k: meta.top_k,
                }));
            }
            if let Some(bad) = column.iter().find(|&&e| e >= meta.experts) {
                return Err(Error::table(TableProblem::ExpertRange {
                    expert: *bad,
                    experts: meta.experts,
                }));
            }
            if k > 1 {
                if let Some(token) = column.chunks_exact(k).position(has_repeat) {
                    return Err(Error::table(TableProblem::RepeatedExpert {
                        token,
                        top_k: meta.top_k,
                    }));
                }
            }
        }
        Ok(Self { meta, columns })
    }

    /// Number of streams (`layers * hashes`).
    pub fn streams(&self) -> u32 {
        self.meta.layers * self.meta.hashes
    }

    /// The per-token column of a stream, `[vocab_size, top_k]` row-major (empty for `bigram` /
    /// `position`).
    pub fn column(&self, stream: u32) -> &[u32] {
        self.columns.get(stream as usize).map_or(&[], Vec::as_slice)
    }

    /// The `top_k` experts of `token` in a per-token stream (empty for rules or ids beyond
    /// the vocabulary).
    pub fn experts_of(&self, stream: u32, token: u32) -> &[u32] {
        let k = self.meta.top_k as usize;
        self.column(stream)
            .get(token as usize * k..(token as usize + 1) * k)
            .unwrap_or(&[])
    }

    /// The hash key of a stream (used by `bigram`).
    pub fn stream_key(&self, stream: u32) -> u64 {
        stream_key(self.meta.seed, u64::from(stream))
    }

    /// Refuses a table built for another tokenizer or vocabulary.
    ///
    /// # Errors
    /// The fingerprints or the vocabulary sizes differ.
    pub fn check_data(&self, tokenizer_fingerprint: &str, vocab_size: usize) -> Result<()> {
        if self.meta.tokenizer_fingerprint != tokenizer_fingerprint
            || self.meta.vocab_size != vocab_size
        {
            return Err(Error::table(TableProblem::OtherTokenizer {
                table_tokenizer: self.meta.tokenizer_fingerprint.clone(),
                table_vocab: self.meta.vocab_size,
                data_tokenizer: tokenizer_fingerprint.to_owned(),
                data_vocab: vocab_size,
            }));
        }
        Ok(())
    }

    /// Balance of each stream over `counts` (per-token rules; `previous`/`oracle` use the
    /// unigram counts as the distribution of the neighbouring token). `None` for rules.
    pub fn token_stats(&self, counts: &TokenCounts) -> Option<Vec<BalanceStats>> {
        if !self.meta.rule.has_columns() {
            return None;
        }
        let largest = counts.as_slice().iter().copied().max().unwrap_or(0);
        Some(
            self.columns
                .iter()
                .map(|c| {
                    BalanceStats::from_loads(
                        &super::loads(counts.as_slice(), c, self.meta.experts),
                        largest,
                    )
                })
                .collect(),
        )
    }

    /// Writes the table; `.npy` also writes `FILE.json`. Returns the files written.
    ///
    /// # Errors
    /// I/O failure, or `npy` for a rule table (it has no columns to store).
    pub fn write(&self, path: &Path, format: TableFormat) -> Result<Vec<PathBuf>> {
        match format {
            TableFormat::Arrow => {
                write_atomic(path, &self.arrow_bytes(path)?)?;
                Ok(vec![path.to_path_buf()])
            }
            TableFormat::Npy => {
                if self.columns.is_empty() {
                    return Err(
                        Error::table(TableProblem::RuleAsNpy(self.meta.method.name()))
                            .in_table_file(path),
                    );
                }
                write_atomic(path, &self.npy_bytes())?;
                let sidecar = npy_sidecar(path);
                // The metadata with the checksum of the table (metadata and columns) added.
                let mut json = serde_json::to_value(&self.meta).expect("serializable");
                let checksum =
                    self.checksum(&serde_json::to_string(&self.meta).expect("serializable"));
                json[SIDECAR_CHECKSUM] = checksum.into();
                let json = serde_json::to_string_pretty(&json).expect("serializable") + "\n";
                write_atomic(&sidecar, json.as_bytes())?;
                Ok(vec![path.to_path_buf(), sidecar])
            }
        }
    }

    fn expert_type(&self) -> DataType {
        if self.meta.experts <= 1 << 16 {
            DataType::UInt16
        } else {
            DataType::UInt32
        }
    }

    fn arrow_bytes(&self, path: &Path) -> Result<Vec<u8>> {
        let mut fields = vec![Field::new("token_id", DataType::UInt32, false)];
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from_iter_values(
            0..self.meta.vocab_size as u32,
        ))];
        for layer in 0..self.meta.layers {
            for hash in 0..self.meta.hashes {
                let Some(column) = self.columns.get((layer * self.meta.hashes + hash) as usize)
                else {
                    continue;
                };
                let values: ArrayRef = match self.expert_type() {
                    DataType::UInt16 => Arc::new(UInt16Array::from_iter_values(
                        column.iter().map(|&e| e as u16),
                    )),
                    _ => Arc::new(UInt32Array::from(column.clone())),
                };
                let name = column_name(&self.meta, layer, hash);
                if self.meta.top_k == 1 {
                    fields.push(Field::new(name, self.expert_type(), false));
                    arrays.push(values);
                } else {
                    let item = Arc::new(Field::new("item", self.expert_type(), false));
                    let k = i32::try_from(self.meta.top_k).map_err(|_| {
                        Error::table(TableProblem::TopKTooLarge(self.meta.top_k))
                            .in_table_file(path)
                    })?;
                    let list = FixedSizeListArray::try_new(item.clone(), k, values, None)
                        .map_err(|e| Error::format(path, e))?;
                    fields.push(Field::new(name, DataType::FixedSizeList(item, k), false));
                    arrays.push(Arc::new(list));
                }
            }
        }
        let meta_json = serde_json::to_string(&self.meta).expect("serializable");
        let metadata = [
            ("hashprep.schema".to_owned(), "table".to_owned()),
            (CHECKSUM_KEY.to_owned(), self.checksum(&meta_json)),
            ("hashprep.table".to_owned(), meta_json),
        ];
        let schema = Arc::new(
            Schema::new(fields).with_metadata(
                metadata
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            ),
        );
        let batch =
            RecordBatch::try_new(schema.clone(), arrays).map_err(|e| Error::format(path, e))?;
        let mut bytes = Vec::new();
        let mut writer =
            FileWriter::try_new(&mut bytes, &schema).map_err(|e| Error::format(path, e))?;
        writer.write(&batch).map_err(|e| Error::format(path, e))?;
        writer.finish().map_err(|e| Error::format(path, e))?;
        drop(writer);
        Ok(bytes)
    }

    /// blake3 of the metadata (as JSON, `meta_json`) and of every column's experts (u32
    /// little-endian, stream by stream): what a table file records and its reader verifies.
    fn checksum(&self, meta_json: &str) -> String {
        let mut hasher = blake3::Hasher::new();
        hasher.update(meta_json.as_bytes());
        for column in &self.columns {
            for expert in column {
                hasher.update(&expert.to_le_bytes());
            }
        }
        format!("blake3:{}", hasher.finalize().to_hex())
    }

    /// Refuses a table read from `path` whose recorded checksum (if the file has one: tables
    /// written before it was recorded do not) differs from its contents'.
    fn verify(self, path: &Path, meta_json: &str, recorded: Option<&str>) -> Result<Self> {
        if let Some(expected) = recorded {
            let actual = self.checksum(meta_json);
            if actual != expected {
                return Err(Error::corrupt(
                    path,
                    format!(
                        "checksum mismatch: the table records {expected}, its contents are \
                         {actual} (altered since it was written; build it again)"
                    ),
                ));
            }
        }
        Ok(self)
    }

    fn npy_bytes(&self) -> Vec<u8> {
        let wide = self.expert_type() == DataType::UInt32;
        let streams = self.columns.len();
        let k = self.meta.top_k as usize;
        let mut shape = vec![self.meta.vocab_size];
        if streams > 1 {
            shape.push(streams);
        }
        if k > 1 {
            shape.push(k);
        }
        let mut bytes = crate::npy::encode_header(if wide { "<u4" } else { "<u2" }, &shape);
        for token in 0..self.meta.vocab_size {
            for column in &self.columns {
                for &expert in &column[token * k..(token + 1) * k] {
                    if wide {
                        bytes.extend(expert.to_le_bytes());
                    } else {
                        bytes.extend((expert as u16).to_le_bytes());
                    }
                }
            }
        }
        bytes
    }

    /// Reads a table written by [`RoutingTable::write`] (Arrow, or `.npy` with its `FILE.json`).
    ///
    /// # Errors
    /// Missing file, not a table, or a table of an unknown version.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, bytes)
    }

    /// [`RoutingTable::read`] of the bytes of `path`, already read.
    pub(crate) fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        if bytes.starts_with(crate::npy::MAGIC) {
            let sidecar = npy_sidecar(path);
            let text = std::fs::read_to_string(&sidecar).map_err(|e| Error::io(&sidecar, e))?;
            let mut json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| Error::corrupt(&sidecar, e.to_string()))?;
            let recorded = json
                .as_object_mut()
                .and_then(|o| o.remove(SIDECAR_CHECKSUM))
                .and_then(|v| v.as_str().map(str::to_owned));
            let meta: TableMeta = serde_json::from_value(json)
                .map_err(|e| Error::corrupt(&sidecar, e.to_string()))?;
            let meta_json = serde_json::to_string(&meta).expect("serializable");
            let table = Self::new(meta.clone(), read_npy_columns(path, &bytes, &meta)?)?;
            return table.verify(path, &meta_json, recorded.as_deref());
        }
        crate::integrity::checked_footer(&bytes)
            .map_err(|e| Error::corrupt(path, format!("not a table (Arrow IPC or .npy): {e}")))?;
        let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| Error::corrupt(path, format!("not a table (Arrow IPC or .npy): {e}")))?;
        let meta_json = reader
            .schema()
            .metadata()
            .get("hashprep.table")
            .cloned()
            .ok_or_else(|| {
                Error::corrupt(path, "no hashprep.table metadata: not a hashprep table")
            })?;
        let recorded = reader.schema().metadata().get(CHECKSUM_KEY).cloned();
        let meta: TableMeta =
            serde_json::from_str(&meta_json).map_err(|e| Error::corrupt(path, e.to_string()))?;
        if meta.kind != "hashprep-table" || meta.version != TABLE_VERSION {
            return Err(Error::corrupt(
                path,
                format!("table version {} is not {TABLE_VERSION}", meta.version),
            ));
        }
        let mut columns: Vec<Vec<u32>> = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| Error::corrupt(path, e.to_string()))?;
            columns.resize(batch.num_columns() - 1, Vec::new());
            for (i, array) in batch.columns().iter().skip(1).enumerate() {
                let array = match array.data_type() {
                    DataType::FixedSizeList(_, k) if *k as u32 == meta.top_k => {
                        array.as_fixed_size_list().values()
                    }
                    DataType::FixedSizeList(_, k) => {
                        return Err(Error::corrupt(
                            path,
                            format!("lists of {k} experts for top_k {}", meta.top_k),
                        ))
                    }
                    _ => array,
                };
                match array.data_type() {
                    DataType::UInt16 => columns[i].extend(
                        array
                            .as_primitive::<UInt16Type>()
                            .values()
                            .iter()
                            .map(|&e| u32::from(e)),
                    ),
                    DataType::UInt32 => {
                        columns[i].extend_from_slice(array.as_primitive::<UInt32Type>().values());
                    }
                    other => {
                        return Err(Error::corrupt(
                            path,
                            format!("expert column of type {other}"),
                        ))
                    }
                }
                debug_assert_eq!(array.null_count(), 0);
            }
        }
        Self::new(meta, columns)
            .map_err(|e| Error::corrupt(path, e.to_string()))?
            .verify(path, &meta_json, recorded.as_deref())
    }
}

/// `FILE.json` beside `FILE` (`table.npy` -> `table.npy.json`).
fn has_repeat(row: &[u32]) -> bool {
    row.iter().enumerate().any(|(i, e)| row[..i].contains(e))
}

fn npy_sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    path.with_file_name(name)
}

fn read_npy_columns(path: &Path, bytes: &[u8], meta: &TableMeta) -> Result<Vec<Vec<u32>>> {
    let (header, data) = crate::npy::decode(bytes).map_err(|e| Error::corrupt(path, e))?;
    let wide = match header.descr.as_str() {
        "<u4" => true,
        "<u2" => false,
        other => {
            return Err(Error::corrupt(
                path,
                format!("expected a uint16 or uint32 .npy table, found {other}"),
            ))
        }
    };
    let values: Vec<u32> = if wide {
        data.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
            .collect()
    } else {
        data.chunks_exact(2)
            .map(|c| u32::from(u16::from_le_bytes([c[0], c[1]])))
            .collect()
    };
    let streams = (meta.layers * meta.hashes) as usize;
    let k = meta.top_k as usize;
    if values.len() != streams * meta.vocab_size * k {
        return Err(Error::corrupt(
            path,
            format!(
                "{} values for {} ids x {streams} streams x top_k {k}",
                values.len(),
                meta.vocab_size
            ),
        ));
    }
    // Rows are [streams, k] per token: stream s of a token is the k values at (s * k).
    Ok((0..streams)
        .map(|s| {
            values
                .chunks_exact(streams * k)
                .flat_map(|row| &row[s * k..(s + 1) * k])
                .copied()
                .collect()
        })
        .collect())
}
