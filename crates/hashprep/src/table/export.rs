//! Tables where engines load them. `hf-deepseek-v4`: HF transformers' DeepSeek-V4 hash
//! layers read a frozen `tid2eid` buffer, int64 `[vocab_size, k]`, from the checkpoint under
//! `model.layers.{i}.mlp.gate.tid2eid`; this writes those keys as a safetensors file to load
//! with `load_state_dict(strict=False)`. `npy`: the table's `.npy` + `.json` (other engines).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::{RoutingTable, TableFormat};
use crate::error::{Error, Result, TableProblem};
use crate::util::write_atomic;

/// Where an exported table goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ExportTarget {
    /// safetensors with `model.layers.{i}.mlp.gate.tid2eid`, int64 `[vocab_size, k]`.
    HfDeepseekV4,
    /// The table as `.npy` (`[V]`, `[V, k]`, ...) with its metadata in `FILE.json`.
    Npy,
}

impl ExportTarget {
    /// Every target.
    pub const ALL: [ExportTarget; 2] = [ExportTarget::HfDeepseekV4, ExportTarget::Npy];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ExportTarget::HfDeepseekV4 => "hf-deepseek-v4",
            ExportTarget::Npy => "npy",
        }
    }

    /// The target called `name`.
    ///
    /// # Errors
    /// None is; the error lists them.
    pub fn from_name(name: &str) -> crate::Result<Self> {
        crate::util::by_name("to", name, &Self::ALL, Self::name)
    }
}

/// The names of the `tid2eid` tensors of an `hf-deepseek-v4` export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum TidKeys {
    /// `model.layers.{i}.mlp.gate.tid2eid`: the module's names, for `load_state_dict`
    /// (the default of a file of its own).
    State,
    /// `model.layers.{i}.ffn.gate.tid2eid`: what transformers' `save_pretrained` writes and
    /// `from_pretrained` reads (the default into a checkpoint).
    Transformers,
    /// `layers.{i}.ffn.gate.tid2eid`: `DeepSeek`'s upstream names, read by `vLLM`, `SGLang` and
    /// transformers' conversion mapping.
    Deepseek,
}

impl TidKeys {
    /// Every style.
    pub const ALL: [TidKeys; 3] = [TidKeys::State, TidKeys::Transformers, TidKeys::Deepseek];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TidKeys::State => "state",
            TidKeys::Transformers => "transformers",
            TidKeys::Deepseek => "deepseek",
        }
    }

    /// The style called `name`.
    ///
    /// # Errors
    /// None is; the error lists them.
    pub fn from_name(name: &str) -> crate::Result<Self> {
        crate::util::by_name("keys", name, &Self::ALL, Self::name)
    }

    /// The key of layer `layer`'s table.
    pub fn key(self, layer: u32) -> String {
        match self {
            TidKeys::State => format!("model.layers.{layer}.mlp.gate.tid2eid"),
            TidKeys::Transformers => format!("model.layers.{layer}.ffn.gate.tid2eid"),
            TidKeys::Deepseek => format!("layers.{layer}.ffn.gate.tid2eid"),
        }
    }
}

/// The integer type of exported expert ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum IdDtype {
    /// int64 (transformers' buffer type; the default).
    #[default]
    Int64,
    /// int32.
    Int32,
}

impl IdDtype {
    /// Every type.
    pub const ALL: [IdDtype; 2] = [IdDtype::Int64, IdDtype::Int32];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            IdDtype::Int64 => "int64",
            IdDtype::Int32 => "int32",
        }
    }

    /// The type called `name`.
    ///
    /// # Errors
    /// None is; the error lists them.
    pub fn from_name(name: &str) -> crate::Result<Self> {
        crate::util::by_name("dtype", name, &Self::ALL, Self::name)
    }
}

/// What `export-table` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableExport {
    /// The target format.
    pub to: ExportTarget,
    /// `hf-deepseek-v4`: the model's hash layers (0-based `layer_idx`). A one-layer table goes
    /// to every one of them; a table of several layers gives layer `i` of the table to the
    /// `i`-th listed.
    pub layers: Vec<u32>,
    /// `hf-deepseek-v4`: the model's `vocab_size` (rows of `tid2eid`). Ids at or beyond the
    /// table's vocabulary (padding of the embedding matrix) get experts `(id + j) mod K` in slot
    /// `j`, distinct like every row.
    pub vocab_size: Option<usize>,
    /// `hf-deepseek-v4`: the model's `num_experts_per_tok`, which must equal the table's k.
    pub top_k: Option<u32>,
    /// `hf-deepseek-v4`: the tensors' names (default: [`TidKeys::State`] in a file of its own,
    /// [`TidKeys::Transformers`] into a checkpoint).
    pub keys: Option<TidKeys>,
    /// `hf-deepseek-v4`: the ids' type.
    pub dtype: IdDtype,
}

impl TableExport {
    /// An export of every setting left out (fill in those the target needs).
    pub fn new(to: ExportTarget) -> Self {
        Self {
            to,
            layers: Vec::new(),
            vocab_size: None,
            top_k: None,
            keys: None,
            dtype: IdDtype::Int64,
        }
    }
}

impl RoutingTable {
    /// Writes the table for an engine; returns the files written.
    ///
    /// # Errors
    /// A setting the target needs is missing or does not fit the table (named, with its
    /// value), or writing fails.
    pub fn export(&self, export: &TableExport, out: &Path) -> Result<Vec<PathBuf>> {
        match export.to {
            ExportTarget::Npy => {
                if !export.layers.is_empty() || export.vocab_size.is_some() {
                    return Err(Error::setting(
                        "layers",
                        "`layers` and `vocab_size` are for hf-deepseek-v4; npy writes the table as built",
                    ));
                }
                self.check_top_k(export.top_k)?;
                self.write(out, TableFormat::Npy)
            }
            ExportTarget::HfDeepseekV4 => {
                let keys = export.keys.unwrap_or(TidKeys::State);
                let bytes = self.deepseek_v4_safetensors(export, keys)?;
                write_atomic(out, &bytes)?;
                Ok(vec![out.to_path_buf()])
            }
        }
    }

    fn check_top_k(&self, wanted: Option<u32>) -> Result<()> {
        match wanted {
            Some(k) if k != self.meta.top_k => Err(Error::setting(
                "top_k",
                format!(
                    "{k}, but the table gives each token {} expert(s) (built with top_k {}): build it with `top_k` {k}",
                    self.meta.top_k, self.meta.top_k
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The `tid2eid` tensors of `export` as a safetensors file, named in the style `keys`.
    pub(super) fn deepseek_v4_safetensors(
        &self,
        export: &TableExport,
        keys: TidKeys,
    ) -> Result<Vec<u8>> {
        let meta = &self.meta;
        let Some(top_k) = export.top_k else {
            return Err(Error::setting(
                "top_k",
                "required for hf-deepseek-v4: the model's num_experts_per_tok",
            ));
        };
        self.check_top_k(Some(top_k))?;
        let Some(vocab) = export.vocab_size else {
            return Err(Error::setting(
                "vocab_size",
                "required for hf-deepseek-v4: the model's vocab_size",
            ));
        };
        if vocab < meta.vocab_size {
            return Err(Error::setting(
                "vocab_size",
                format!(
                    "{vocab} is smaller than the table's vocabulary of {} ids",
                    meta.vocab_size
                ),
            ));
        }
        if !meta.rule.has_columns() || meta.hashes > 1 {
            return Err(Error::table(TableProblem::NoPerTokenExperts {
                method: meta.method.name(),
                several_hashes: meta.hashes > 1,
            }));
        }
        if export.layers.is_empty() {
            return Err(Error::setting(
                "layers",
                "required for hf-deepseek-v4: the model's hash_moe layer indices",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        let repeated: std::collections::BTreeSet<u32> = export
            .layers
            .iter()
            .copied()
            .filter(|&layer| !seen.insert(layer))
            .collect();
        if !repeated.is_empty() {
            let names: Vec<String> = repeated.iter().map(ToString::to_string).collect();
            return Err(Error::setting(
                "layers",
                format!(
                    "layer {} listed more than once: each model layer takes one tid2eid",
                    names.join(", ")
                ),
            ));
        }
        if meta.layers != 1 && meta.layers as usize != export.layers.len() {
            return Err(Error::setting(
                "layers",
                format!(
                    "{} layers listed for a table of {} layers: list one per table layer, or build a one-layer table",
                    export.layers.len(),
                    meta.layers
                ),
            ));
        }
        let tensors: Vec<(String, Vec<u8>)> = export
            .layers
            .iter()
            .enumerate()
            .map(|(i, &layer)| {
                let stream = if meta.layers == 1 { 0 } else { i as u32 };
                (
                    keys.key(layer),
                    self.tid2eid_bytes(stream, vocab, export.dtype),
                )
            })
            .collect();
        let shape = vec![vocab, top_k as usize];
        let dtype = match export.dtype {
            IdDtype::Int64 => Dtype::I64,
            IdDtype::Int32 => Dtype::I32,
        };
        let views = tensors
            .iter()
            .map(|(key, bytes)| {
                TensorView::new(dtype, shape.clone(), bytes)
                    .map(|view| (key.clone(), view))
                    .map_err(|e| Error::Internal(format!("tid2eid {key}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let info: HashMap<String, String> = [
            ("format".to_owned(), "pt".to_owned()),
            (
                "hashprep.table".to_owned(),
                serde_json::to_string(meta).expect("serializable"),
            ),
        ]
        .into();
        safetensors::serialize(views, Some(info))
            .map_err(|e| Error::Internal(format!("safetensors: {e}")))
    }

    /// `[vocab, k]` little-endian: the table's rows, then `(id + j) mod K` beyond them.
    fn tid2eid_bytes(&self, stream: u32, vocab: usize, dtype: IdDtype) -> Vec<u8> {
        let (k, experts) = (self.meta.top_k as usize, self.meta.experts as usize);
        let mut bytes = Vec::with_capacity(vocab * k * 8);
        let mut push = |expert: u32| match dtype {
            IdDtype::Int64 => bytes.extend(i64::from(expert).to_le_bytes()),
            // Experts are counted in u32 but never near 2^31.
            IdDtype::Int32 => bytes.extend(expert.to_le_bytes()),
        };
        for &expert in self.column(stream) {
            push(expert);
        }
        for id in self.meta.vocab_size..vocab {
            for slot in 0..k {
                push(u32::try_from((id + slot) % experts).expect("below K, a u32"));
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use safetensors::SafeTensors;

    use super::*;
    use crate::counts::TokenCounts;
    use crate::table::tests::inputs;
    use crate::table::{build_table, Method, TableSpec};

    fn table(top_k: u32, layers: u32) -> RoutingTable {
        let counts = TokenCounts::from_vec((1..=40u64).rev().collect());
        let spec = TableSpec {
            top_k,
            layers,
            ..TableSpec::new(Method::Balanced, 8)
        };
        build_table(&spec, &inputs(&counts)).unwrap()
    }

    fn hf(layers: &[u32], vocab: usize, top_k: u32) -> TableExport {
        TableExport {
            layers: layers.to_vec(),
            vocab_size: Some(vocab),
            top_k: Some(top_k),
            ..TableExport::new(ExportTarget::HfDeepseekV4)
        }
    }

    fn rows(file: &SafeTensors<'_>, key: &str) -> Vec<Vec<i64>> {
        let view = file.tensor(key).unwrap();
        assert_eq!(view.dtype(), Dtype::I64);
        let k = view.shape()[1];
        let values: Vec<i64> = view
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        values.chunks_exact(k).map(<[i64]>::to_vec).collect()
    }

    #[test]
    fn deepseek_v4_keys_hold_the_table_and_padding_rows() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tid2eid.safetensors");
        let one = table(3, 1);
        one.export(&hf(&[0, 2], 44, 3), &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut names = file.names();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "model.layers.0.mlp.gate.tid2eid",
                "model.layers.2.mlp.gate.tid2eid"
            ]
        );
        for key in names {
            assert_eq!(file.tensor(key).unwrap().shape(), [44, 3]);
            let rows = rows(&file, key);
            for (id, row) in rows.iter().enumerate().take(40) {
                let want: Vec<i64> = one
                    .experts_of(0, id as u32)
                    .iter()
                    .map(|&e| i64::from(e))
                    .collect();
                assert_eq!(row, &want, "id {id}");
            }
            assert_eq!(rows[40], [0, 1, 2]); // (40 + j) mod 8
            assert_eq!(rows[43], [3, 4, 5]);
        }
        // A table of two layers: layer i of the table to the i-th listed layer.
        let two = table(3, 2);
        two.export(&hf(&[1, 5], 40, 3), &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let layer = |key: &str| rows(&file, key).concat();
        let column = |s: u32| -> Vec<i64> { two.column(s).iter().map(|&e| i64::from(e)).collect() };
        assert_eq!(layer("model.layers.1.mlp.gate.tid2eid"), column(0));
        assert_eq!(layer("model.layers.5.mlp.gate.tid2eid"), column(1));
    }

    #[test]
    fn npy_export_is_the_table_as_built() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t.npy");
        let two = table(3, 2);
        let export = TableExport {
            top_k: Some(3),
            ..TableExport::new(ExportTarget::Npy)
        };
        assert_eq!(
            two.export(&export, &out).unwrap().len(),
            2,
            "the .npy and its .json"
        );
        assert_eq!(RoutingTable::read(&out).unwrap(), two);
        let header = std::fs::read(&out).unwrap();
        assert!(String::from_utf8_lossy(&header[..128]).contains("'shape': (40, 2, 3)"));
        let layers = TableExport {
            layers: vec![0],
            ..TableExport::new(ExportTarget::Npy)
        };
        assert!(two.export(&layers, &out).is_err());
    }

    #[test]
    fn bad_exports_name_the_setting_and_value() {
        let out = tempfile::tempdir().unwrap().path().join("x.safetensors");
        let message = |table: &RoutingTable, export: TableExport| {
            table.export(&export, &out).unwrap_err().to_string()
        };
        let top1 = table(1, 1);
        assert!(
            message(&top1, hf(&[0], 40, 6)).contains("6, but the table gives each token 1 expert")
        );
        let top3 = table(3, 1);
        assert!(message(&top3, hf(&[0], 39, 3))
            .contains("39 is smaller than the table's vocabulary of 40 ids"));
        assert!(message(&top3, hf(&[], 40, 3)).contains("hash_moe layer indices"));
        assert!(message(&table(3, 2), hf(&[0, 1, 2], 40, 3))
            .contains("3 layers listed for a table of 2 layers"));
        // A repeated layer would be two safetensors entries of one name (a panic in safetensors).
        assert!(message(&top3, hf(&[0, 2, 0, 2, 1], 40, 3))
            .contains("layer 0, 2 listed more than once"));
        let no_k = TableExport {
            top_k: None,
            ..hf(&[0], 40, 3)
        };
        assert!(message(&top3, no_k).contains("num_experts_per_tok"));
        assert!(!out.exists());
    }
}
