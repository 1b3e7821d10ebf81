//! A run's loader and the routes of its table-routed layers: the loader settings of one
//! data-parallel rank, and each layer matched to its table's routes (by the table's bytes,
//! through the loader), with the checks that the table fits the layer's settings.

use std::path::PathBuf;

use hashprep::{Loader, LoaderConfig, RouteHandle, TableMeta};

use crate::error::{ConfigError, Result};
use crate::layer_id::Stack;
use crate::model::{SparseKind, SparseLayer};
use crate::run::RunConfig;

/// Where one process stands among the data-parallel ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// This rank.
    pub rank: usize,
    /// Data-parallel ranks; `train.batch_size` is split among them.
    pub world_size: usize,
    /// Size of the expert-parallel groups (consecutive ranks).
    pub expert_parallel: usize,
}

impl Placement {
    /// One process.
    pub const SINGLE: Placement = Placement {
        rank: 0,
        world_size: 1,
        expert_parallel: 1,
    };
}

/// A table-routed layer and the routes that serve it in every batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRouting {
    /// Its layer, counted from 1 in its stack.
    pub at: usize,
    /// Its stack: the decoder's routes are a batch's `routes`, the encoder's its
    /// `encoder.routes` (the same handles).
    pub stack: Stack,
    /// Its index in `model.sparse`.
    pub index: usize,
    /// Experts K (the table's).
    pub experts: u32,
    /// Experts per token k (the table's).
    pub top_k: u32,
    /// Its routes, one per hash of the table.
    pub routes: Vec<RouteHandle>,
}

impl RunConfig {
    /// The loader settings of `placement`'s rank: `train.batch_size` split among the ranks,
    /// `model.context` positions per row, the run's seed; the last partial batch is kept.
    /// Sequence-to-sequence models get one example per row, the context in the encoder's
    /// positions.
    ///
    /// # Errors
    /// The batch does not split evenly among the ranks.
    pub fn loader_config(&self, placement: Placement) -> Result<LoaderConfig> {
        let batch = self.train.optimization.batch_size;
        let ranks = placement.world_size.max(1);
        if !batch.is_multiple_of(ranks) {
            return Err(ConfigError::Placement {
                setting: "train.batch_size".into(),
                problem: format!("{batch} is not a multiple of the {ranks} data-parallel ranks"),
            });
        }
        let mut config = LoaderConfig::new(
            batch / ranks,
            self.model.context,
            self.train.optimization.seed,
        );
        config.drop_last = false;
        config.rank = placement.rank;
        config.world_size = ranks;
        config.expert_parallel = placement.expert_parallel;
        config.encoder_len = self.model.encoder_positions();
        config.packing = config.encoder_len.is_none();
        Ok(config)
    }

    /// Each table-routed layer with its routes in the batches of `loader`, which was opened
    /// with [`RunConfig::table_paths`].
    ///
    /// # Errors
    /// A table whose kind, layers, hashes, experts or top-k do not fit its layer's settings.
    pub fn routing(&self, loader: &Loader) -> Result<Vec<LayerRouting>> {
        let mut routing = Vec::new();
        for (index, layer) in self.model.sparse.iter().enumerate() {
            let Some(path) = layer.table.as_ref().filter(|_| layer.kind.uses_table()) else {
                continue;
            };
            let meta = &loader
                .tables()
                .table(path)
                .ok_or_else(|| {
                    hashprep::Error::table(hashprep::TableProblem::NotLoaded).in_table_file(path)
                })?
                .meta;
            self.check_table(index, path, meta)?;
            routing.push(LayerRouting {
                at: layer.at,
                stack: layer.stack,
                index,
                experts: meta.experts,
                top_k: meta.top_k,
                routes: loader.route_handles(path, layer.table_layer)?,
            });
        }
        Ok(routing)
    }

    /// Whether the table `meta` (read from `path`) fits `model.sparse[index]`.
    ///
    /// # Errors
    /// The first mismatch, naming the setting and the table.
    pub fn check_table(
        &self,
        index: usize,
        path: &std::path::Path,
        meta: &TableMeta,
    ) -> Result<()> {
        let layer: &SparseLayer = &self.model.sparse[index];
        let problem = |name: &str, problem: String| ConfigError::Table {
            setting: format!("model.sparse[{index}].{name}"),
            table: PathBuf::from(path),
            problem,
        };
        if layer.table_layer >= meta.layers {
            return Err(problem(
                "table_layer",
                format!(
                    "= {}: the table has {} layer(s), counted from 0",
                    layer.table_layer, meta.layers
                ),
            ));
        }
        match (layer.kind, meta.hashes) {
            (SparseKind::Hash, h) if h != 1 => {
                return Err(problem(
                    "kind",
                    format!("= \"hash\": the table has {h} hashes; use kind = \"multihash\""),
                ))
            }
            (SparseKind::Multihash, 1) => {
                return Err(problem(
                    "kind",
                    "= \"multihash\" needs a table built with `hashes` > 1".into(),
                ))
            }
            _ => {}
        }
        let hashes = i64::from(meta.hashes);
        let d_ff = layer.d_ff.unwrap_or(self.model.d_ff);
        if self.model.d_model % hashes != 0 || d_ff % hashes != 0 {
            return Err(problem(
                "kind",
                format!(
                    "= \"multihash\": model.d_model {} and the experts' d_ff {d_ff} must be multiples of the table's {hashes} hashes",
                    self.model.d_model
                ),
            ));
        }
        if let Some(k) = layer.top_k.filter(|&k| k != meta.top_k) {
            return Err(problem(
                "top_k",
                format!(
                    "= {k} but the table gives each token {} expert(s) (build it with `top_k` {k})",
                    meta.top_k
                ),
            ));
        }
        if meta.top_k == 1 && layer.scoring.is_some() {
            return Err(problem(
                "scoring",
                "weights the experts of a top-k table; this table is top-1".into(),
            ));
        }
        if let Some(k) = layer.experts.filter(|&k| k != meta.experts) {
            return Err(problem(
                "experts",
                format!("= {k} but the table has {}", meta.experts),
            ));
        }
        Ok(())
    }
}
