//! `hashprep export --to parquet`: one Parquet file per shard, for `DuckDB`, Spark and
//! `datasets.load_dataset("parquet")`.

use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::shard::{Manifest, ShardReader};
use crate::util::{create_output_dir, persist, temp_file_beside};

/// Writes every shard of `dir` as `out/shard-NNNNN.parquet` (snappy); returns the files.
///
/// # Errors
/// The input is not a complete, intact tokenize output, or writing fails.
pub fn export_parquet(dir: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let manifest = Manifest::read(dir)?;
    create_output_dir(out)?;
    let mut written = Vec::new();
    for info in &manifest.shards {
        let shard = ShardReader::open(&dir.join(&info.file), Some(&info.checksum))?;
        let target = out.join(Path::new(&info.file).with_extension("parquet"));
        let (file, tmp) = temp_file_beside(&target)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build();
        let schema = shard.batches().first().map_or_else(
            || {
                crate::shard::shard_schema(
                    manifest.token_type,
                    &manifest.tokenizer.fingerprint,
                    false,
                )
            },
            arrow_array::RecordBatch::schema,
        );
        let mut writer =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| Error::format(&tmp, e))?;
        for batch in shard.batches() {
            writer.write(batch).map_err(|e| Error::format(&tmp, e))?;
        }
        writer.close().map_err(|e| Error::format(&tmp, e))?;
        persist(tmp, &target)?;
        written.push(target);
    }
    Ok(written)
}
