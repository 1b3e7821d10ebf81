//! `hashprep export --to megatron DIR PREFIX`: the tokens as Megatron-LM's indexed dataset,
//! `PREFIX.bin` (every document's ids, back to back) and `PREFIX.idx` (the `MMIDIDX` index:
//! version 1, the token type's code, the sequence and document counts, each sequence's length
//! and byte offset, the document boundaries), one sequence per document, read by
//! `megatron.core.datasets.indexed_dataset.IndexedDataset`. Streamed from the mapped shards:
//! only the per-document lengths are held. Reddit outputs add `PREFIX.prefix_len.npy` (uint32,
//! one per document: the context's length, so a loss mask can be rebuilt).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, OutputProblem, Result};
use crate::npy::encode_header;
use crate::shard::{DocTokens, Manifest, ShardReader};
use crate::util::{persist, temp_file_beside};

/// The `.idx` file's first bytes.
const INDEX_HEADER: &[u8; 9] = b"MMIDIDX\x00\x00";
/// Below this many ids Megatron stores tokens as uint16, else int32 (`DType.optimal_dtype`).
const UINT16_BELOW: usize = 65_500;

/// The token type of a Megatron export, chosen from the vocabulary size as Megatron does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MegatronDtype {
    /// Vocabularies below 65,500 ids.
    Uint16,
    /// Larger vocabularies.
    Int32,
}

impl MegatronDtype {
    /// Megatron's choice for `vocab_size` ids.
    #[must_use]
    pub fn for_vocab(vocab_size: usize) -> Self {
        if vocab_size < UINT16_BELOW {
            Self::Uint16
        } else {
            Self::Int32
        }
    }

    /// `uint16` or `int32`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Uint16 => "uint16",
            Self::Int32 => "int32",
        }
    }

    /// Megatron's `DType` code.
    fn code(self) -> u8 {
        match self {
            Self::Uint16 => 8,
            Self::Int32 => 4,
        }
    }

    fn width(self) -> u64 {
        match self {
            Self::Uint16 => 2,
            Self::Int32 => 4,
        }
    }
}

/// What [`export_megatron`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct MegatronExport {
    /// `PREFIX.bin`.
    pub bin: PathBuf,
    /// `PREFIX.idx`.
    pub idx: PathBuf,
    /// `PREFIX.prefix_len.npy` (Reddit outputs).
    pub prefix_len: Option<PathBuf>,
    /// Documents (= sequences).
    pub documents: u64,
    /// Tokens.
    pub tokens: u64,
    /// Token type.
    pub dtype: MegatronDtype,
}

/// The files of the export to `prefix`.
fn targets(prefix: &Path, reddit: bool) -> (PathBuf, PathBuf, Option<PathBuf>) {
    let with = |suffix: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    (
        with(".bin"),
        with(".idx"),
        reddit.then(|| with(".prefix_len.npy")),
    )
}

/// Writes the tokenize output `dir` as `PREFIX.bin` + `PREFIX.idx` (and, for Reddit,
/// `PREFIX.prefix_len.npy`). Existing files are refused unless `force`; the files appear
/// together, complete, when everything is written.
///
/// # Errors
/// The input is not a complete, intact tokenize output; a file of the export exists (without
/// `force`); an id lies outside the vocabulary; a document is longer than Megatron's int32
/// lengths; writing fails.
pub fn export_megatron(dir: &Path, prefix: &Path, force: bool) -> Result<MegatronExport> {
    let manifest = Manifest::read(dir)?;
    let reddit = manifest
        .config
        .pointer("/tokenize/format/kind")
        .and_then(serde_json::Value::as_str)
        == Some("reddit");
    let (bin, idx, prefix_file) = targets(prefix, reddit);
    if let Some(parent) = bin.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    if !force {
        if let Some(existing) = [Some(&bin), Some(&idx), prefix_file.as_ref()]
            .into_iter()
            .flatten()
            .find(|p| p.exists())
        {
            return Err(Error::Output {
                dir: existing.clone(),
                problem: OutputProblem::Exists,
            });
        }
    }
    let vocab = manifest.tokenizer.vocab_size;
    let dtype = MegatronDtype::for_vocab(vocab);
    let (bin_file, bin_tmp) = temp_file_beside(&bin)?;
    let mut out = BufWriter::with_capacity(1 << 20, bin_file);
    let mut lengths: Vec<i32> = Vec::new();
    let mut prefixes: Vec<u32> = Vec::new();
    for info in &manifest.shards {
        let path = dir.join(&info.file);
        let shard = ShardReader::open(&path, Some(&info.checksum))?;
        for (row, (tokens, prefix_len)) in shard.documents().enumerate() {
            let length = i32::try_from(tokens.len()).map_err(|_| {
                Error::setting(
                    "to",
                    format!(
                        "megatron: {} row {row} holds {} ids, more than Megatron's int32 \
                         sequence lengths",
                        path.display(),
                        tokens.len()
                    ),
                )
            })?;
            write_ids(&mut out, tokens, dtype, vocab)
                .map_err(|e| e.in_row(&path, row, &bin_tmp))?;
            lengths.push(length);
            prefixes.push(prefix_len);
        }
    }
    let bin_file = out
        .into_inner()
        .map_err(|e| Error::io(&bin_tmp, e.into_error()))?;
    bin_file.sync_all().map_err(|e| Error::io(&bin_tmp, e))?;
    drop(bin_file);
    let (idx_file, idx_tmp) = temp_file_beside(&idx)?;
    write_index(idx_file, &lengths, dtype).map_err(|e| Error::io(&idx_tmp, e))?;
    let prefix_tmp = match &prefix_file {
        Some(target) => {
            let (file, tmp) = temp_file_beside(target)?;
            write_npy_u32(file, &prefixes).map_err(|e| Error::io(&tmp, e))?;
            Some(tmp)
        }
        None => None,
    };
    // The index last: a reader that finds it finds the tokens it points into.
    persist(bin_tmp, &bin)?;
    if let (Some(tmp), Some(target)) = (prefix_tmp, &prefix_file) {
        persist(tmp, target)?;
    }
    persist(idx_tmp, &idx)?;
    Ok(MegatronExport {
        bin,
        idx,
        prefix_len: prefix_file,
        documents: lengths.len() as u64,
        tokens: lengths.iter().map(|&l| l as u64).sum(),
        dtype,
    })
}

/// Why one document's ids could not be written.
enum IdsError {
    /// An id at or past the vocabulary size.
    OutOfVocabulary { id: u32, vocab: usize },
    /// Writing the `.bin` failed.
    Io(std::io::Error),
}

impl IdsError {
    fn in_row(self, shard: &Path, row: usize, bin: &Path) -> Error {
        match self {
            IdsError::OutOfVocabulary { id, vocab } => Error::corrupt(
                shard,
                format!("row {row}: id {id} is outside the tokenizer's {vocab} ids"),
            ),
            IdsError::Io(e) => Error::io(bin, e),
        }
    }
}

fn write_ids(
    out: &mut impl Write,
    tokens: DocTokens<'_>,
    dtype: MegatronDtype,
    vocab: usize,
) -> std::result::Result<(), IdsError> {
    let mut bytes = Vec::with_capacity(tokens.len() * dtype.width() as usize);
    let mut bad = None;
    tokens.for_each(|id| {
        if id as usize >= vocab {
            bad.get_or_insert(id);
        }
        match dtype {
            // Below 65,500 ids every id fits 16 bits.
            MegatronDtype::Uint16 => bytes.extend_from_slice(&(id as u16).to_le_bytes()),
            // An id below the vocabulary size has int32's bytes.
            MegatronDtype::Int32 => bytes.extend_from_slice(&id.to_le_bytes()),
        }
    });
    if let Some(id) = bad {
        return Err(IdsError::OutOfVocabulary { id, vocab });
    }
    out.write_all(&bytes).map_err(IdsError::Io)
}

/// The `MMIDIDX` index of one sequence per document.
fn write_index(file: File, lengths: &[i32], dtype: MegatronDtype) -> std::io::Result<()> {
    let mut out = BufWriter::new(file);
    out.write_all(INDEX_HEADER)?;
    out.write_all(&1u64.to_le_bytes())?;
    out.write_all(&[dtype.code()])?;
    let sequences = lengths.len() as u64;
    out.write_all(&sequences.to_le_bytes())?;
    out.write_all(&(sequences + 1).to_le_bytes())?; // document boundaries: 0..=N
    for length in lengths {
        out.write_all(&length.to_le_bytes())?;
    }
    let mut pointer = 0u64;
    for &length in lengths {
        out.write_all(&pointer.to_le_bytes())?;
        pointer += length as u64 * dtype.width();
    }
    for document in 0..=sequences {
        out.write_all(&document.to_le_bytes())?;
    }
    out.into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .sync_all()
}

fn write_npy_u32(file: File, values: &[u32]) -> std::io::Result<()> {
    let mut out = BufWriter::new(file);
    out.write_all(&encode_header("<u4", &[values.len()]))?;
    for v in values {
        out.write_all(&v.to_le_bytes())?;
    }
    out.into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megatron_picks_uint16_below_65500_ids_and_int32_from_there() {
        assert_eq!(MegatronDtype::for_vocab(50_257), MegatronDtype::Uint16);
        assert_eq!(MegatronDtype::for_vocab(65_499), MegatronDtype::Uint16);
        assert_eq!(MegatronDtype::for_vocab(65_500), MegatronDtype::Int32);
        assert_eq!(MegatronDtype::for_vocab(129_280), MegatronDtype::Int32);
    }

    #[test]
    fn the_index_holds_lengths_pointers_and_one_document_per_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.idx");
        write_index(
            File::create(&path).unwrap(),
            &[3, 0, 2],
            MegatronDtype::Int32,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..9], INDEX_HEADER);
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!((u64_at(9), bytes[17], u64_at(18), u64_at(26)), (1, 4, 3, 4));
        let lengths: Vec<i32> = bytes[34..46]
            .chunks(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(lengths, [3, 0, 2]);
        assert_eq!([u64_at(46), u64_at(54), u64_at(62)], [0, 12, 12]);
        assert_eq!(
            [u64_at(70), u64_at(78), u64_at(86), u64_at(94)],
            [0, 1, 2, 3]
        );
        assert_eq!(bytes.len(), 102);
    }
}
