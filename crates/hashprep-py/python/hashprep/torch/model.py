"""hashtrain's decoder on torch, parameter for parameter (names and layouts of its
`model.safetensors`): a pre-norm Transformer, `x += drop(attn(ln_attn(x)))`,
`x += drop(ffn(ln_ffn(x)))`, a final layer norm and the output projection (tied to the input
embedding by default). The FFN of a table-routed layer is a `HashMoE` driven by its loader
route; that of a Switch, Token-Switch or BASE layer routes itself (`routers`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from .moe import DeviceRoute, ExpertLayer, HashMoE
from .routers import BaseMoE, SwitchMoE


@dataclass(frozen=True)
class RoutedLayer:
    """A sparse layer that routes on the device: `kind` switch, token-switch or base."""

    kind: str
    experts: int
    d_ff: Optional[int] = None
    load_bal: float = 0.01
    capacity_factor: Optional[float] = None


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.heads, self.dropout = heads, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        out: torch.Tensor = self.out(y.transpose(1, 2).reshape(b, t, d))
        return out


class DenseFfn(nn.Module):
    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.b(torch.relu(self.a(h)))
        return out


class Block(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float, ffn: nn.Module) -> None:
        super().__init__()
        self.ln_attn, self.ln_ffn = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, heads, dropout)
        self.ffn = ffn
        self.dropout = dropout

    def forward(self, x: torch.Tensor, flat_ids: torch.Tensor,
                route: Union[DeviceRoute, Sequence[DeviceRoute], None]) -> torch.Tensor:
        """`x` `[B, T, d]`; `route`: a table-routed FFN's route(s)."""
        b, t, _ = x.shape
        x = x + F.dropout(self.attn(self.ln_attn(x)), self.dropout, self.training)
        h = self.ln_ffn(x).reshape(b * t, -1)
        if isinstance(self.ffn, HashMoE):
            assert route is not None, "a Hash layer needs its route"
            y = self.ffn(h, route)
        elif isinstance(self.ffn, SwitchMoE):
            y = self.ffn(h, flat_ids)
        else:
            y = self.ffn(h)
        return x + F.dropout(y.view(b, t, -1), self.dropout, self.training)


class LanguageModel(nn.Module):
    """`layers` blocks of `d_model`; `hash_layers` maps a 1-based layer to its number of experts
    (those layers' FFNs are `HashMoE`s, sharded over `ep_group` when given, their experts seeded
    from `expert_seed` and the layer when given, each expert `d -> expert_d_ff[layer] -> d`, by default
`d_ff`; `top_k[layer]` = (k, scoring) for a top-k table, `hashes[layer]` = N for MultiHash, whose
routes come as a list); `routed_layers` maps a layer to its Switch, Token-Switch or BASE FFN;
others are dense `d -> d_ff -> d`. `forward(input_ids [B, T], routes {layer: DeviceRoute})` -> logits
    `[B*T, V]`."""

    def __init__(
        self,
        vocab: int,
        *,
        layers: int,
        d_model: int,
        d_ff: int,
        heads: int,
        context: int,
        dropout: float = 0.0,
        positions: str = "learned",
        tie_embeddings: bool = True,
        hash_layers: Optional[Mapping[int, int]] = None,
        expert_d_ff: Optional[Mapping[int, int]] = None,
        top_k: Optional[Mapping[int, Tuple[int, str]]] = None,
        hashes: Optional[Mapping[int, int]] = None,
        routed_layers: Optional[Mapping[int, RoutedLayer]] = None,
        ep_group: Any = None,
        expert_seed: Optional[int] = None,
    ) -> None:
        super().__init__()
        hash_layers = dict(hash_layers or {})
        self.embedding = nn.Parameter(torch.randn(vocab, d_model) * 0.02)
        if positions == "learned":
            self.positions = nn.Parameter(torch.randn(context, d_model) * 0.02)
        elif positions == "sinusoidal":
            self.register_buffer("positions", _sinusoids(context, d_model), persistent=False)
        else:
            raise ValueError(f"positions {positions!r}: expected learned or sinusoidal")
        self.layers = nn.ModuleDict()
        routed = dict(routed_layers or {})
        for at in range(1, layers + 1):
            ffn: nn.Module
            seed = None if expert_seed is None else expert_seed * 10_007 + at
            if at in routed:
                ffn = _routed_ffn(routed[at], d_model, d_ff, vocab, ep_group, seed)
            elif at in hash_layers:
                width = (expert_d_ff or {}).get(at, d_ff)
                k, scoring = (top_k or {}).get(at, (1, "sqrtsoftplus"))
                ffn = HashMoE(d_model, width, hash_layers[at], group=ep_group, seed=seed, top_k=k, scoring=scoring,
                              hashes=(hashes or {}).get(at, 1))
            else:
                ffn = DenseFfn(d_model, d_ff)
            self.layers[str(at)] = Block(d_model, heads, dropout, ffn)
        self.ln_final = nn.LayerNorm(d_model)
        self.head = None if tie_embeddings else nn.Parameter(torch.randn(vocab, d_model) * 0.02)
        self.dropout = dropout

    def forward(self, input_ids: torch.Tensor,
                routes: Mapping[int, Union[DeviceRoute, Sequence[DeviceRoute]]]) -> torch.Tensor:
        b, t = input_ids.shape
        flat_ids = input_ids.reshape(-1)
        x = F.dropout(self.embedding[flat_ids].view(b, t, -1) + self.positions[:t], self.dropout, self.training)
        for at, block in self.layers.items():
            x = block(x, flat_ids, routes.get(int(at)))
        x = self.ln_final(x).reshape(b * t, -1)
        logits: torch.Tensor = x @ (self.embedding if self.head is None else self.head).t()
        return logits

    def aux_loss(self) -> torch.Tensor:
        """The Switch layers' load-balancing terms of the last forward, summed (times their
        `load_bal`; a zero scalar without Switch layers)."""
        terms = [m.aux_loss for m in self.modules() if isinstance(m, SwitchMoE) and m.aux_loss is not None]
        return torch.stack(terms).sum() if terms else torch.zeros((), device=self.embedding.device)

    def routed_counts(self) -> Dict[int, List[int]]:
        """Tokens per expert of each layer that routed on the device in the last forward."""
        ffns = {int(at): cast(Block, block).ffn for at, block in self.layers.items()}
        return {at: ffn.counts for at, ffn in ffns.items() if isinstance(ffn, (SwitchMoE, BaseMoE))}

    def expert_layers(self) -> List[ExpertLayer]:
        return [m for m in self.modules() if isinstance(m, ExpertLayer)]


def _routed_ffn(layer: RoutedLayer, d_model: int, d_ff: int, vocab: int, group: Any, seed: Optional[int]) -> nn.Module:
    width = layer.d_ff or d_ff
    if layer.kind == "base":
        return BaseMoE(d_model, width, layer.experts, group=group, seed=seed)
    if layer.kind in ("switch", "token-switch"):
        return SwitchMoE(d_model, width, layer.experts, load_bal=layer.load_bal, capacity_factor=layer.capacity_factor,
                         vocab=vocab if layer.kind == "token-switch" else None, group=group, seed=seed)
    raise ValueError(f"a routed layer of kind {layer.kind!r}: expected switch, token-switch or base")


def masked_nll(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood over the positions where `mask` holds, and their number
    (device scalars: nothing is read back)."""
    nll = F.cross_entropy(logits, targets.reshape(-1), reduction="none")
    mask = mask.reshape(-1).to(nll.dtype)
    return (nll * mask).sum(), mask.sum()


def _sinusoids(context: int, d: int) -> torch.Tensor:
    half = d // 2
    rates = torch.exp(torch.arange(half, dtype=torch.float32) * (-math.log(10_000.0) / half))
    angles = torch.arange(context, dtype=torch.float32)[:, None] * rates[None, :]
    table = torch.cat([angles.sin(), angles.cos()], 1)
    return torch.cat([table, torch.zeros(context, 1)], 1) if d % 2 else table
