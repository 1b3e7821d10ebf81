//! The language model: a pre-norm Transformer, decoder-only or an encoder-decoder
//! (`model.kind = "seq2seq"`), whose FFN at chosen layers is a Hash, MultiHash, Switch,
//! Token-Switch or BASE layer.
//!
//! `x = x + drop(attn(ln1(x)))`, (a sequence-to-sequence decoder) `x = x + drop(cross(ln(x),
//! encoder))`, `x = x + drop(ffn(ln2(x)))`, then a final layer norm and the output projection
//! (tied to the input embedding by default). The encoder's layers are the same without
//! cross-attention, each row attending to its real positions; it shares the token embedding
//! and has its own positions (`encoder.positions`) and final norm.

mod attention;
mod base;
mod block;
mod experts;
mod ffn;
mod groups;
mod hash;
mod routes;
mod staging;
mod switch;

use tch::{nn, Kind, Tensor};

pub use attention::KeyMask;
pub(crate) use base::BaseFfn;
use block::{Block, Memory};
pub(crate) use experts::ExpertMatmul;
pub(crate) use ffn::FeedForward;
use ffn::FfnExtras;
pub(crate) use hash::HashFfn;
pub(crate) use routes::DeviceRoute;
pub(crate) use staging::Staging;
pub(crate) use switch::SwitchFfn;

use crate::config::{LayerId, ModelConfig, ModelKind, Positions, Stack};

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

/// What one forward pass produced.
#[derive(Debug)]
pub struct ModelOutput {
    /// `[B * T, V]` (the decoder's positions).
    pub logits: Tensor,
    /// Sum of the sparse layers' load-balancing terms (a zero scalar without Switch layers).
    pub aux_loss: Tensor,
    /// Per sparse layer (encoder first, each stack in layer order): its layer and tokens per
    /// expert.
    pub loads: Vec<(LayerId, Vec<u64>)>,
}

/// The encoder's side of a sequence-to-sequence batch on the device.
#[derive(Debug)]
pub struct EncoderInput {
    /// `[B, S]` i64: each row's context, padded after.
    pub input_ids: Tensor,
    /// Each row's real positions.
    pub keys: KeyMask,
    /// The routes of the encoder's positions (the batch's route handles name them).
    pub routes: Vec<DeviceRoute>,
}

/// A sequence-to-sequence model's encoder: its own positions, the token embedding shared with
/// the decoder.
#[derive(Debug)]
struct Encoder {
    positions: Tensor,
    blocks: Vec<Block>,
    ln_final: nn::LayerNorm,
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
    encoder: Option<Encoder>,
    dropout: f64,
}

impl LanguageModel {
    /// Moves the tensors that are not variables of the store (sinusoidal positions) to
    /// `device`, after `VarStore::set_device` moved the variables.
    pub fn move_buffers(&mut self, device: tch::Device) {
        if !self.learned_positions {
            self.positions = self.positions.to_device(device);
            if let Some(encoder) = &mut self.encoder {
                encoder.positions = encoder.positions.to_device(device);
            }
        }
    }

    /// Builds the model of `config` for `vocab` ids. `routing(layer)` gives the routes of
    /// each table-routed layer.
    pub fn new(
        root: &nn::Path<'_>,
        config: &ModelConfig,
        vocab: i64,
        routing: &dyn Fn(LayerId) -> TableRouting,
    ) -> Self {
        let d = config.d_model;
        let init = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let embedding = root.var("embedding", &[vocab, d], init);
        let positions_of = |path: &nn::Path<'_>, length: usize| match config.positions {
            Positions::Learned => path.var("positions", &[length as i64, d], init),
            Positions::Sinusoidal => sinusoids(length as i64, d).to_device(root.device()),
        };
        let positions = positions_of(root, config.context);
        let seq2seq = config.kind == ModelKind::Seq2seq;
        let stack = |path: &nn::Path<'_>, stack: Stack| -> Vec<Block> {
            (1..=config.layers_of(stack))
                .map(|at| {
                    let layer = LayerId { stack, at };
                    let sparse = config.sparse.iter().find(|s| s.layer() == layer);
                    let cross = seq2seq && stack == Stack::Decoder;
                    let routes = || routing(layer);
                    Block::new(
                        &(path / "layers" / at),
                        config,
                        (sparse, cross),
                        vocab,
                        &routes,
                    )
                })
                .collect()
        };
        let blocks = stack(root, Stack::Decoder);
        let norm =
            |path: nn::Path<'_>| nn::layer_norm(path, vec![d], nn::LayerNormConfig::default());
        let ln_final = norm(root / "ln_final");
        let head = (!config.tie_embeddings).then(|| root.var("head", &[vocab, d], init));
        let encoder = config.encoder_positions().map(|length| {
            let path = root / "encoder";
            Encoder {
                positions: positions_of(&path, length),
                blocks: stack(&path, Stack::Encoder),
                ln_final: norm(&path / "ln_final"),
            }
        });
        Self {
            embedding,
            positions,
            learned_positions: config.positions == Positions::Learned,
            blocks,
            ln_final,
            head,
            encoder,
            dropout: config.dropout,
        }
    }

    /// How every sparse layer runs its experts.
    pub fn set_expert_matmul(&mut self, matmul: ExpertMatmul) {
        let encoder_blocks = self.encoder.iter_mut().flat_map(|e| &mut e.blocks);
        for block in self.blocks.iter_mut().chain(encoder_blocks) {
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

    /// `input_ids`: `[B, T]` i64 (a sequence-to-sequence model's decoder inputs); `routes`: the
    /// batch's routes on the device; `encoder`: a sequence-to-sequence batch's contexts.
    ///
    /// # Panics
    /// A sequence-to-sequence model without `encoder`, or the other way round.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        routes: &[DeviceRoute],
        encoder: Option<&EncoderInput>,
        train: bool,
    ) -> ModelOutput {
        assert_eq!(
            self.encoder.is_some(),
            encoder.is_some(),
            "a sequence-to-sequence model takes sequence-to-sequence batches, and only it"
        );
        let mut aux_loss = Tensor::zeros([], (Kind::Float, input_ids.device()));
        let mut loads = Vec::new();
        let mut sum_up = |layer: LayerId, extras: FfnExtras| {
            if let Some(aux) = extras.aux_loss {
                aux_loss += aux;
            }
            if let Some(counts) = extras.counts {
                loads.push((layer, counts));
            }
        };
        let encoded = match (&self.encoder, encoder) {
            (Some(stack), Some(input)) => {
                let layers = (Stack::Encoder, stack.blocks.as_slice(), &stack.positions);
                let stream = (&input.input_ids, input.routes.as_slice());
                let states = self.run_stack(
                    layers,
                    stream,
                    (Some(&input.keys), None),
                    train,
                    &mut sum_up,
                );
                Some((states.apply(&stack.ln_final), &input.keys))
            }
            _ => None,
        };
        let memory = encoded
            .as_ref()
            .map(|(states, keys)| Memory { states, keys });
        let layers = (Stack::Decoder, self.blocks.as_slice(), &self.positions);
        let x = self.run_stack(
            layers,
            (input_ids, routes),
            (None, memory.as_ref()),
            train,
            &mut sum_up,
        );
        let (b, t) = input_ids.size2().expect("[B, T]");
        let d = self.embedding.size()[1];
        let x = x.apply(&self.ln_final).view([b * t, d]);
        let logits = x.matmul(&self.head.as_ref().unwrap_or(&self.embedding).tr());
        ModelOutput {
            logits,
            aux_loss,
            loads,
        }
    }

    /// The states `[B, T, d]` after the `blocks` of `stack` over `ids` (`[B, T]`, embedded with
    /// `positions`) and their `routes`; `context`: an encoder's real positions, or what a
    /// decoder's cross-attention reads. Each sparse layer's extras go to `sum_up`.
    fn run_stack(
        &self,
        (stack, blocks, positions): (Stack, &[Block], &Tensor),
        (ids, routes): (&Tensor, &[DeviceRoute]),
        context: (Option<&KeyMask>, Option<&Memory<'_>>),
        train: bool,
        sum_up: &mut dyn FnMut(LayerId, FfnExtras),
    ) -> Tensor {
        let flat_ids = ids.reshape([-1]);
        let mut x = self.embed(&flat_ids, ids.size2().expect("[B, T]"), positions, train);
        for (i, block) in blocks.iter().enumerate() {
            let (y, extras) =
                block.forward(&x, context, (&flat_ids, routes), (self.dropout, train));
            x = y;
            sum_up(LayerId { stack, at: i + 1 }, extras);
        }
        x
    }

    /// Token embeddings of `flat_ids` (`[B * T]`) plus `positions`, with dropout in training.
    fn embed(
        &self,
        flat_ids: &Tensor,
        (b, t): (i64, i64),
        positions: &Tensor,
        train: bool,
    ) -> Tensor {
        let d = self.embedding.size()[1];
        let positions = positions.narrow(0, 0, t).to_kind(self.embedding.kind());
        (self.embedding.index_select(0, flat_ids).view([b, t, d]) + positions.unsqueeze(0))
            .dropout(self.dropout, train)
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
