//! Exports of a trained model for the data stages (token embeddings for clustered tables).

use std::path::Path;

use tch::{Device, Kind};

use crate::error::{Error, Result};
use crate::model::LanguageModel;

/// Writes the input embedding matrix of `model` (`[vocab, d_model]`, float32) as `.npy`,
/// atomically: the input of `hashprep build-table --method clustered|dispersed`.
///
/// # Errors
/// The file cannot be written.
pub fn write_embeddings_npy(model: &LanguageModel, path: &Path) -> Result<()> {
    let embedding = model
        .embedding()
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .contiguous();
    // Written beside `path` under a unique name, then renamed: never a partial file there.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = hashprep::util::output_builder()
        .prefix(".embeddings.")
        .suffix(".npy.tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?
        .into_temp_path();
    embedding.write_npy(&temp)?;
    hashprep::util::rename_durable(&temp, path)?;
    Ok(())
}
