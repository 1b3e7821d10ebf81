//! `[model]`: the network, and `[[model.sparse]]`: what replaces the FFN of chosen layers.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::layer_id::{LayerId, Stack};
use crate::train::is_default;

/// Position encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Positions {
    /// A learned embedding per position.
    #[default]
    Learned,
    /// Fixed sinusoids (Vaswani et al.).
    Sinusoidal,
}

impl Positions {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Positions::Learned => "learned",
            Positions::Sinusoidal => "sinusoidal",
        }
    }
}

/// What the network is (`model.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// One causal stack over whole examples (the loss on a dialogue's response only).
    #[default]
    Decoder,
    /// An encoder over a dialogue example's context and a decoder with cross-attention over
    /// its response (the paper's dialogue model).
    Seq2seq,
}

impl ModelKind {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Decoder => "decoder",
            ModelKind::Seq2seq => "seq2seq",
        }
    }
}

/// A pre-norm Transformer: decoder-only, or an encoder-decoder (`kind = "seq2seq"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Decoder-only or sequence-to-sequence. Written only when not the default, as the other
    /// settings of sequence-to-sequence models, so earlier configs read back unchanged.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: ModelKind,
    /// Number of (decoder) Transformer layers.
    pub layers: usize,
    /// `seq2seq`: encoder layers.
    #[serde(default, skip_serializing_if = "is_default")]
    pub encoder_layers: usize,
    /// `seq2seq`: encoder positions S, the last S ids of each context (default `context`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_context: Option<usize>,
    /// Hidden size d.
    pub d_model: i64,
    /// FFN inner size D (of every expert too).
    pub d_ff: i64,
    /// Attention heads.
    pub heads: i64,
    /// Dropout on attention weights and residual branches.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Context length T (positions per training row; `seq2seq`: the decoder's, the response).
    pub context: usize,
    /// Position encoding.
    #[serde(default)]
    pub positions: Positions,
    /// Share the input embedding with the output projection.
    #[serde(default = "default_true")]
    pub tie_embeddings: bool,
    /// Layers whose FFN is replaced (the rest are dense).
    #[serde(default)]
    pub sparse: Vec<SparseLayer>,
}

/// What replaces the FFN of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SparseKind {
    /// The plain FFN `B(relu(A(h)))` (a baseline in sweeps).
    Dense,
    /// K expert FFNs, each token routed by a precomputed table.
    Hash,
    /// N hashes, each selecting one segment of the experts' weights (paper section 3.2).
    Multihash,
    /// A learned softmax router on the hidden state, top-1, with a load-balancing loss.
    Switch,
    /// As Switch, but the router sees a learned embedding of the current token.
    TokenSwitch,
    /// BASE layers: a balanced assignment of the batch's tokens on learned scores in training,
    /// the best expert at evaluation, outputs gated by the score's sigmoid.
    Base,
}

impl SparseKind {
    /// Its name in configs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            SparseKind::Dense => "dense",
            SparseKind::Hash => "hash",
            SparseKind::Multihash => "multihash",
            SparseKind::Switch => "switch",
            SparseKind::TokenSwitch => "token-switch",
            SparseKind::Base => "base",
        }
    }

    /// Routed by a table from the loader.
    pub fn uses_table(self) -> bool {
        matches!(self, SparseKind::Hash | SparseKind::Multihash)
    }

    /// Routed by a learned router (K given in the config).
    pub fn is_switch(self) -> bool {
        matches!(
            self,
            SparseKind::Switch | SparseKind::TokenSwitch | SparseKind::Base
        )
    }
}

/// One sparse layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseLayer {
    /// Which layer, counted from 1 as in the paper ("layer 7 of 11") in its stack.
    pub at: usize,
    /// `seq2seq`: the stack it is in (default the decoder).
    #[serde(default, skip_serializing_if = "is_default")]
    pub stack: Stack,
    /// What it is.
    pub kind: SparseKind,
    /// Number of experts K (hash kinds: taken from the table; if given it must agree).
    #[serde(default)]
    pub experts: Option<u32>,
    /// Hash kinds: the table file (`hashprep build-table --out`).
    #[serde(default)]
    pub table: Option<PathBuf>,
    /// Hash kinds: which layer of a `--layers N` table.
    #[serde(default)]
    pub table_layer: u32,
    /// Switch kinds: coefficient of the load-balancing loss (paper: 0.1).
    #[serde(default = "default_load_bal")]
    pub load_bal: f64,
    /// Switch kinds: an expert takes at most `capacity_factor * tokens / K` tokens per batch;
    /// the rest skip the layer (residual only). None: no limit.
    #[serde(default)]
    pub capacity_factor: Option<f64>,
    /// Expert kinds: each expert's hidden width D (default: `model.d_ff`).
    #[serde(default)]
    pub d_ff: Option<i64>,
    /// `hash`: experts per token k (taken from the table; must agree if given).
    #[serde(default)]
    pub top_k: Option<u32>,
    /// `hash` with a top-k table: how the k experts' outputs are weighted (default
    /// `sqrtsoftplus`, DeepSeek-V4's).
    #[serde(default)]
    pub scoring: Option<Scoring>,
}

/// How a top-k hash layer weights its k experts' outputs: a learned gate `W` (`K x d`) scores
/// every expert, `s = f(W h)`, and the k chosen ones get `s_e / sum of the k s` (DeepSeek-V4's
/// hash layers); `uniform` gives each `1/k` and has no gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    /// `f = softmax` over all K experts.
    Softmax,
    /// `f = sigmoid`.
    Sigmoid,
    /// `f = sqrt(softplus(x))` (DeepSeek-V4).
    Sqrtsoftplus,
    /// `1/k` each, no gate.
    Uniform,
}

impl SparseLayer {
    /// Its layer.
    pub fn layer(&self) -> LayerId {
        LayerId {
            stack: self.stack,
            at: self.at,
        }
    }
}

impl ModelConfig {
    /// Layers of `stack`.
    pub fn layers_of(&self, stack: Stack) -> usize {
        match stack {
            Stack::Encoder => self.encoder_layers,
            Stack::Decoder => self.layers,
        }
    }

    /// `seq2seq`: the encoder's positions S.
    pub fn encoder_positions(&self) -> Option<usize> {
        (self.kind == ModelKind::Seq2seq).then(|| self.encoder_context.unwrap_or(self.context))
    }
}

impl Scoring {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Scoring::Softmax => "softmax",
            Scoring::Sigmoid => "sigmoid",
            Scoring::Sqrtsoftplus => "sqrtsoftplus",
            Scoring::Uniform => "uniform",
        }
    }
}

fn default_dropout() -> f64 {
    0.1
}

fn default_true() -> bool {
    true
}

fn default_load_bal() -> f64 {
    0.1
}
