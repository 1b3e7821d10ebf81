//! The language model: a decoder-only pre-norm Transformer whose FFN at chosen layers is a
//! Hash, MultiHash, Switch or Token-Switch layer.
//!
//! `x = x + drop(attn(ln1(x)))`, `x = x + drop(ffn(ln2(x)))`, then a final layer norm and the
//! output projection (tied to the input embedding by default).

mod attention;
mod base;
mod experts;
mod ffn;
mod groups;
mod hash;
mod routes;
mod staging;
mod switch;

use tch::{nn, Kind, Tensor};

pub(crate) use attention::CausalSelfAttention;
pub(crate) use base::BaseFfn;
pub(crate) use experts::ExpertMatmul;
pub(crate) use ffn::FeedForward;
pub(crate) use hash::HashFfn;
pub(crate) use routes::DeviceRoute;
pub(crate) use staging::Staging;
pub(crate) use switch::SwitchFfn;

use crate::config::{ModelConfig, Positions, Scoring, SparseKind};

/// How a table-routed layer finds its routes in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRouting {
    /// Number of experts K (from the table).
    pub experts: u32,
    /// Experts per token k (from the table).
    pub top_k: u32,
    /// The loader's handle of each hash's route.
    pub routes: Vec<hashprep::RouteHandle>,
}

/// One Transformer layer.
#[derive(Debug)]
struct Block {
    ln_attn: nn::LayerNorm,
    attn: CausalSelfAttention,
    ln_ffn: nn::LayerNorm,
    ffn: FeedForward,
}

/// What one forward pass produced.
#[derive(Debug)]
pub struct ModelOutput {
    /// `[B * T, V]`.
    pub logits: Tensor,
    /// Sum of the sparse layers' load-balancing terms (a zero scalar without Switch layers).
    pub aux_loss: Tensor,
    /// Per sparse layer (in layer order): its 1-based layer number and tokens per expert.
    pub loads: Vec<(usize, Vec<u64>)>,
}

/// The model. Its parameters live in the `VarStore` it was built from.
#[derive(Debug)]
pub struct LanguageModel {
    embedding: Tensor,
    positions: Tensor,
    learned_positions: bool,
    blocks: Vec<Block>,
    ln_final: nn::LayerNorm,
    head: Option<Tensor>,
    dropout: f64,
}

impl LanguageModel {
    /// Moves the tensors that are not variables of the store (sinusoidal positions) to
    /// `device`, after `VarStore::set_device` moved the variables.
    pub fn move_buffers(&mut self, device: tch::Device) {
        if !self.learned_positions {
            self.positions = self.positions.to_device(device);
        }
    }

    /// Builds the model of `config` for `vocab` ids. `routing(at)` gives the routes of each
    /// table-routed layer (1-based `at`).
    pub fn new(
        root: &nn::Path<'_>,
        config: &ModelConfig,
        vocab: i64,
        routing: &dyn Fn(usize) -> TableRouting,
    ) -> Self {
        let d = config.d_model;
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let embedding = root.var("embedding", &[vocab, d], init);
        let context = config.context as i64;
        let (positions, learned_positions) = match config.positions {
            Positions::Learned => (root.var("positions", &[context, d], init), true),
            Positions::Sinusoidal => (sinusoids(context, d).to_device(root.device()), false),
        };
        let blocks = (1..=config.layers)
            .map(|at| {
                let path = root / "layers" / at;
                let sparse = config.sparse.iter().find(|s| s.at == at);
                let ffn_path = &path / "ffn";
                let ffn = match sparse {
                    None => FeedForward::dense(&ffn_path, d, config.d_ff),
                    Some(s) => match s.kind {
                        SparseKind::Dense => FeedForward::dense(&ffn_path, d, config.d_ff),
                        SparseKind::Hash | SparseKind::Multihash => {
                            let r = routing(at);
                            FeedForward::Hash {
                                layer: HashFfn::new(
                                    &ffn_path,
                                    i64::from(r.experts),
                                    r.routes.len() as i64,
                                    (d, s.d_ff.unwrap_or(config.d_ff)),
                                    (
                                        i64::from(r.top_k),
                                        s.scoring.unwrap_or(Scoring::Sqrtsoftplus),
                                    ),
                                ),
                                routes: r.routes,
                            }
                        }
                        SparseKind::Base => FeedForward::Base(BaseFfn::new(
                            &ffn_path,
                            i64::from(s.experts.expect("validated")),
                            d,
                            s.d_ff.unwrap_or(config.d_ff),
                        )),
                        SparseKind::Switch | SparseKind::TokenSwitch => FeedForward::Switch {
                            layer: SwitchFfn::new(
                                &ffn_path,
                                i64::from(s.experts.expect("validated")),
                                d,
                                s.d_ff.unwrap_or(config.d_ff),
                                (s.kind == SparseKind::TokenSwitch).then_some(vocab),
                                s.capacity_factor,
                            ),
                            load_bal: s.load_bal,
                        },
                    },
                };
                Block {
                    ln_attn: nn::layer_norm(
                        &path / "ln_attn",
                        vec![d],
                        nn::LayerNormConfig::default(),
                    ),
                    attn: CausalSelfAttention::new(
                        &(&path / "attn"),
                        d,
                        config.heads,
                        config.dropout,
                    ),
                    ln_ffn: nn::layer_norm(
                        &path / "ln_ffn",
                        vec![d],
                        nn::LayerNormConfig::default(),
                    ),
                    ffn,
                }
            })
            .collect();
        Self {
            embedding,
            positions,
            learned_positions,
            blocks,
            ln_final: nn::layer_norm(root / "ln_final", vec![d], nn::LayerNormConfig::default()),
            head: (!config.tie_embeddings).then(|| root.var("head", &[vocab, d], init)),
            dropout: config.dropout,
        }
    }

    /// How every sparse layer runs its experts.
    pub fn set_expert_matmul(&mut self, matmul: ExpertMatmul) {
        for block in &mut self.blocks {
            if let Some(bank) = block.ffn.bank_mut() {
                bank.matmul = matmul;
            }
        }
    }

    /// The input embedding matrix `[V, d]`.
    pub fn embedding(&self) -> &Tensor {
        &self.embedding
    }

    /// Whether positions are learned (part of the parameters).
    pub fn learned_positions(&self) -> bool {
        self.learned_positions
    }

    /// `input_ids`: `[B, T]` i64; `routes`: the batch's routes on the device.
    pub fn forward(&self, input_ids: &Tensor, routes: &[DeviceRoute], train: bool) -> ModelOutput {
        let (b, t) = input_ids.size2().expect("[B, T]");
        let d = self.embedding.size()[1];
        let flat_ids = input_ids.reshape([b * t]);
        let positions = self
            .positions
            .narrow(0, 0, t)
            .to_kind(self.embedding.kind());
        let mut x = (self.embedding.index_select(0, &flat_ids).view([b, t, d])
            + positions.unsqueeze(0))
        .dropout(self.dropout, train);
        let mut aux_loss = Tensor::zeros([], (Kind::Float, x.device()));
        let mut loads = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            x = &x
                + block
                    .attn
                    .forward(&x.apply(&block.ln_attn), train)
                    .dropout(self.dropout, train);
            let h = x.apply(&block.ln_ffn).view([b * t, d]);
            let (y, extras) = block.ffn.forward(&h, &flat_ids, routes, train);
            x = &x + y.view([b, t, d]).dropout(self.dropout, train);
            if let Some(aux) = extras.aux_loss {
                aux_loss += aux;
            }
            if let Some(counts) = extras.counts {
                loads.push((i + 1, counts));
            }
        }
        let x = x.apply(&self.ln_final).view([b * t, d]);
        let logits = x.matmul(&self.head.as_ref().unwrap_or(&self.embedding).tr());
        ModelOutput {
            logits,
            aux_loss,
            loads,
        }
    }
}

/// Fixed sinusoidal position encodings `[context, d]`.
fn sinusoids(context: i64, d: i64) -> Tensor {
    let half = d / 2;
    let position = Tensor::arange(context, (Kind::Float, tch::Device::Cpu)).unsqueeze(1);
    let rates = (Tensor::arange(half, (Kind::Float, tch::Device::Cpu))
        * (-(10_000f64.ln()) / half as f64))
        .exp();
    let angles = position * rates.unsqueeze(0);
    let table = Tensor::cat(&[angles.sin(), angles.cos()], 1);
    if d % 2 == 1 {
        Tensor::cat(
            &[
                table,
                Tensor::zeros([context, 1], (Kind::Float, tch::Device::Cpu)),
            ],
            1,
        )
    } else {
        table
    }
}

/// Summed negative log-likelihood of `targets` under `logits` over the positions where `mask`
/// is 1, and the number of those positions (both float32 scalars on the device; the loss is
/// taken in float32 whatever the logits' format).
pub fn masked_nll(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> (Tensor, Tensor) {
    let nll = logits.to_kind(Kind::Float).cross_entropy_loss(
        targets,
        None::<Tensor>,
        tch::Reduction::None,
        -100,
        0.0,
    );
    ((nll * mask).sum(Kind::Float), mask.sum(Kind::Float))
}
