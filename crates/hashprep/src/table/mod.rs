//! Token -> expert tables (section 3 of the Hash Layers paper): how each token is routed.
//!
//! Per-token methods give every token id one expert per hash: `random`, `balanced` (the
//! paper's greedy rule, plus a refinement), `clustered` and `dispersed` (k-means on baseline
//! embeddings). Context rules are evaluated by the loader: `bigram` (a fixed hash of
//! `(x[t-1], x[t])`), `previous` (the per-token table applied to `x[t-1]`), `oracle` (applied to
//! the target `x[t+1]`) and `position` (`t mod K`). MultiHash keeps `hashes` assignments per
//! layer; `layers` gives each sparse layer its own.

mod balanced;
mod checkpoint;
mod embeddings;
mod export;
mod file;
mod hashing;
mod kmeans;
mod plot;
mod stats;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod top_k_tests;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub(crate) use balanced::{greedy, loads, refine};
pub use checkpoint::CheckpointInsert;
pub(crate) use embeddings::load_embeddings;
pub use export::{ExportTarget, IdDtype, TableExport, TidKeys};
pub(crate) use file::TABLE_VERSION;
pub use file::{RoutingTable, TableFormat, TableMeta};
pub use hashing::bigram_expert;
pub(crate) use hashing::{bucket, random_experts, stream_key};
pub(crate) use kmeans::{cluster, disperse, KMeansParams};
pub(crate) use plot::{plot_expert_shares, Series};
pub use stats::BalanceStats;

use crate::counts::TokenCounts;
use crate::error::{Error, Result};

/// How a table assigns experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Uniformly random expert per token id (seeded).
    Random,
    /// Greedy: most frequent tokens first, each to the least loaded expert.
    Balanced,
    /// k-means clusters of baseline embeddings, one cluster per expert.
    Clustered,
    /// k-means clusters, each dealt evenly across all experts.
    Dispersed,
    /// A fixed hash of the previous and current token.
    Bigram,
    /// The per-token table applied to the previous token.
    Previous,
    /// `t mod K` for position `t`.
    Position,
    /// The per-token table applied to the next token (the target): an upper baseline.
    Oracle,
}

impl Method {
    /// Every method, in the order the command line lists them.
    pub const ALL: [Method; 8] = [
        Method::Random,
        Method::Balanced,
        Method::Clustered,
        Method::Dispersed,
        Method::Bigram,
        Method::Previous,
        Method::Position,
        Method::Oracle,
    ];

    /// The method called `name` (as [`Method::name`] writes it).
    ///
    /// # Errors
    /// No method has that name; the error lists them.
    pub fn from_name(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
                Error::setting(
                    "method",
                    format!("{name:?} is none of {}", names.join(", ")),
                )
            })
    }

    /// What the loader looks at to route position `t`.
    pub fn rule(self) -> Rule {
        match self {
            Method::Random | Method::Balanced | Method::Clustered | Method::Dispersed => {
                Rule::Token
            }
            Method::Previous => Rule::Previous,
            Method::Oracle => Rule::Next,
            Method::Bigram => Rule::Bigram,
            Method::Position => Rule::Position,
        }
    }

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Method::Random => "random",
            Method::Balanced => "balanced",
            Method::Clustered => "clustered",
            Method::Dispersed => "dispersed",
            Method::Bigram => "bigram",
            Method::Previous => "previous",
            Method::Position => "position",
            Method::Oracle => "oracle",
        }
    }

    fn needs_embeddings(self) -> bool {
        matches!(self, Method::Clustered | Method::Dispersed)
    }
}

/// The input a table routes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// The current token `x[t]`, through the table's columns.
    Token,
    /// The previous token `x[t-1]`, through the table's columns.
    Previous,
    /// The next token `x[t+1]` (the target), through the table's columns.
    Next,
    /// `bigram_expert(stream_key, x[t-1], x[t], K)`; no columns.
    Bigram,
    /// `t mod K`; no columns.
    Position,
}

impl Rule {
    /// True when the table stores a per-token column per stream.
    pub fn has_columns(self) -> bool {
        matches!(self, Rule::Token | Rule::Previous | Rule::Next)
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// The method.
    pub method: Method,
    /// Number of experts K.
    pub experts: u32,
    /// Distinct experts per token (DeepSeek-V4's `tid2eid[vocab, k]`; 1 for the paper's layer).
    pub top_k: u32,
    /// Hashes per layer (MultiHash N; 1 for a plain hash layer).
    pub hashes: u32,
    /// Sparse layers with their own table (1: all layers share one).
    pub layers: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// `balanced`: run the refinement after the greedy rule.
    pub refine: bool,
    /// `previous` / `oracle`: the per-token method applied to the neighbouring token.
    pub base: Method,
    /// `clustered` / `dispersed`: k-means settings.
    pub kmeans: KMeansParams,
}

impl TableSpec {
    /// A spec with defaults: one expert per token, one hash, one layer, seed 0, refinement
    /// on, `random` base.
    pub fn new(method: Method, experts: u32) -> Self {
        Self {
            method,
            experts,
            top_k: 1,
            hashes: 1,
            layers: 1,
            seed: 0,
            refine: true,
            base: Method::Random,
            kmeans: KMeansParams::default(),
        }
    }
}

/// What a table is built from.
#[derive(Debug, Clone)]
pub(crate) struct TableInputs<'a> {
    /// Token counts of the training data.
    pub counts: &'a TokenCounts,
    /// Fingerprint of the tokenizer those counts were made with.
    pub tokenizer_fingerprint: String,
    /// Checksum of the counts file.
    pub counts_fingerprint: String,
    /// Baseline embeddings `[vocab, dim]` for `clustered` / `dispersed`.
    pub embeddings: Option<&'a Array2<f64>>,
}

/// Builds the table described by `spec`.
///
/// # Errors
/// K < 1 or larger than the vocabulary, zero hashes or layers, a base method that is not
/// per-token, missing embeddings or embeddings whose rows differ from the vocabulary size.
pub(crate) fn build_table(spec: &TableSpec, inputs: &TableInputs<'_>) -> Result<RoutingTable> {
    let counts = inputs.counts.as_slice();
    let vocab = counts.len();
    validate(spec, vocab, inputs.embeddings)?;
    let per_token = match spec.method {
        Method::Previous | Method::Oracle => Some(spec.base),
        m if m.rule() == Rule::Token => Some(m),
        _ => None,
    };
    let streams = u64::from(spec.layers) * u64::from(spec.hashes);
    let mut columns = Vec::new();
    if let Some(method) = per_token {
        for stream in 0..streams {
            columns.push(assign(method, spec, counts, inputs.embeddings, stream)?);
        }
    }
    let meta = TableMeta {
        kind: "hashprep-table".into(),
        version: TABLE_VERSION,
        method: spec.method,
        rule: spec.method.rule(),
        base: per_token.filter(|_| matches!(spec.method, Method::Previous | Method::Oracle)),
        experts: spec.experts,
        top_k: spec.top_k,
        hashes: spec.hashes,
        layers: spec.layers,
        seed: spec.seed,
        refined: spec.refine && per_token == Some(Method::Balanced),
        vocab_size: vocab,
        tokenizer_fingerprint: inputs.tokenizer_fingerprint.clone(),
        counts_fingerprint: inputs.counts_fingerprint.clone(),
    };
    RoutingTable::new(meta, columns)
}

fn validate_top_k(spec: &TableSpec) -> Result<()> {
    let k = spec.top_k;
    if k < 1 {
        return Err(Error::setting("top_k", "0: must be at least 1"));
    }
    if k > spec.experts {
        return Err(Error::setting(
            "top_k",
            format!("{k} is more than the {} experts", spec.experts),
        ));
    }
    if k > 1 {
        if spec.method.rule() != Rule::Token {
            return Err(Error::setting(
                "top_k",
                format!(
                    "{k} needs a per-token method (random, balanced, clustered, dispersed), not {}",
                    spec.method.name()
                ),
            ));
        }
        if spec.hashes > 1 {
            return Err(Error::setting(
                "top_k",
                format!(
                    "{k} with {} hashes: MultiHash tables are top-1",
                    spec.hashes
                ),
            ));
        }
    }
    Ok(())
}

fn validate(spec: &TableSpec, vocab: usize, embeddings: Option<&Array2<f64>>) -> Result<()> {
    if spec.experts < 1 {
        return Err(Error::setting("experts", "must be at least 1"));
    }
    if spec.experts as usize > vocab && spec.method.rule() != Rule::Position {
        return Err(Error::setting(
            "experts",
            format!(
                "{} is larger than the vocabulary ({vocab} ids)",
                spec.experts
            ),
        ));
    }
    validate_top_k(spec)?;
    if spec.hashes < 1 {
        return Err(Error::setting("hashes", "must be at least 1"));
    }
    if spec.layers < 1 {
        return Err(Error::setting("layers", "must be at least 1"));
    }
    if matches!(spec.method, Method::Previous | Method::Oracle) && spec.base.rule() != Rule::Token {
        return Err(Error::setting(
            "base",
            format!("{} is not a per-token method", spec.base.name()),
        ));
    }
    let needs = spec.method.needs_embeddings()
        || (spec.method.rule() != Rule::Token && spec.base.needs_embeddings());
    if needs {
        let Some(matrix) = embeddings else {
            return Err(Error::setting(
                "method",
                format!(
                    "{} needs `embeddings` (a .npy or safetensors file)",
                    spec.method.name()
                ),
            ));
        };
        if matrix.nrows() != vocab {
            return Err(Error::table(crate::error::TableProblem::EmbeddingRows {
                rows: matrix.nrows(),
                vocab,
            }));
        }
    }
    Ok(())
}

/// One stream's assignment by a per-token method: `[V, top_k]` row-major.
fn assign(
    method: Method,
    spec: &TableSpec,
    counts: &[u64],
    embeddings: Option<&Array2<f64>>,
    stream: u64,
) -> Result<Vec<u32>> {
    let key = stream_key(spec.seed, stream);
    let (k, top_k) = (spec.experts, spec.top_k);
    Ok(match method {
        Method::Random => {
            let mut experts = Vec::with_capacity(counts.len() * top_k as usize);
            for t in 0..counts.len() as u32 {
                random_experts(key, t, k, top_k, &mut experts);
            }
            experts
        }
        Method::Balanced => {
            // Stream 0 follows the paper's rule exactly; later streams break ties by the key.
            let mut assignment = greedy(counts, k, top_k, if stream == 0 { 0 } else { key | 1 });
            if spec.refine {
                refine(counts, &mut assignment, k, 1_000_000);
            }
            assignment
        }
        Method::Clustered | Method::Dispersed => {
            let matrix = embeddings.expect("validated");
            let clusters = cluster(matrix, k as usize, key, spec.kmeans)?;
            match method {
                Method::Clustered if top_k == 1 => clusters.labels,
                Method::Clustered => clusters.nearest(top_k as usize),
                _ => disperse(&clusters.labels, counts, k, top_k),
            }
        }
        other => unreachable!("{} is not per-token", other.name()),
    })
}
