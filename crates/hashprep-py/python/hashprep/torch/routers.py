"""The learned-routing layers hashtrain compares Hash layers with, on torch, parameter for
parameter (its names and layouts, so its checkpoints load):

- `SwitchMoE` (Switch, Fedus et al.; Token-Switch when given a vocabulary): a softmax router
  picks each token's expert on the device, the output is scaled by that probability, tokens over
  an expert's capacity skip the layer, and the load-balancing term `K * sum_k f_k * P_k` (times
  `load_bal`) is left in `aux_loss`.
- `BaseMoE` (BASE, Lewis et al.): in training a balanced assignment of the batch's tokens on the
  router's scores (`hashprep.balanced_assignment`, hashtrain's own code, on the host), at
  evaluation each token's best expert; the output is gated by `sigmoid(score)`.

Both group their tokens on the device and read the group sizes back once per layer, as engines
do; under expert parallelism the sizes are exchanged with one all-to-all first (the count
exchange that the loader's host-known routes spare Hash layers). Under data parallelism each
rank routes its own batch: capacity, balanced assignment and load-balancing term are per rank.
Each keeps the tokens per expert of its last forward in `counts` (Switch: a last entry for the
tokens dropped for capacity), as hashtrain's load records count them.
"""

from __future__ import annotations

import math
from typing import List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import hashprep

from .moe import DeviceRoute, ExpertLayer


class _DeviceRouted(ExpertLayer):
    """Experts fed by a routing computed on the device: the expert of each token, grouped."""

    counts: List[int]

    def _route(self, expert: torch.Tensor, buckets: int) -> DeviceRoute:
        """Positions grouped by `expert` (`[N]`, values below `buckets`; those at K and above
        run nothing), the sizes read back to the host with the peers' when sharded."""
        order = torch.argsort(expert, stable=True)
        sizes = torch.bincount(expert, minlength=buckets)
        if self.ep_size == 1:  # one device-to-host read per layer
            self.counts = sizes.tolist()
            peer_counts = np.asarray([self.counts[: self.num_experts]], dtype=np.int64)
        else:
            self.counts, peer_counts = self._exchange_counts(sizes)
        routed = sum(self.counts[: self.num_experts])
        return DeviceRoute(order=order[:routed], counts=self.counts[: self.num_experts], peer_counts=peer_counts)


class SwitchMoE(_DeviceRouted):
    """`router` (`nn.Linear(d, K)`: `router.weight [K, d]`, `router.bias [K]`); with `vocab`,
    Token-Switch: the router reads `router_embedding [V, d]` of the current token instead of the
    hidden state. `capacity_factor`: at most `ceil(factor * N / K)` tokens per expert, in
    position order. `forward(h [N, d], token_ids [N])`."""

    def __init__(self, d_model: int, d_ff: int, experts: int, *, load_bal: float = 0.01,
                 capacity_factor: Optional[float] = None, vocab: Optional[int] = None,
                 group: Optional[dist.ProcessGroup] = None, seed: Optional[int] = None) -> None:
        super().__init__(d_model, d_ff, experts, group=group, seed=seed)
        self.router = nn.Linear(d_model, experts)
        self.router_embedding: Optional[nn.Parameter] = None
        if vocab is not None:
            self.router_embedding = nn.Parameter(torch.randn(vocab, d_model) * 0.02)
        self.load_bal, self.capacity_factor = load_bal, capacity_factor
        self.aux_loss: Optional[torch.Tensor] = None
        """The load-balancing term of the last forward, times `load_bal` (a device scalar)."""

    def forward(self, h: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
        k = self.num_experts
        router_input = h if self.router_embedding is None else self.router_embedding.index_select(0, token_ids)
        probs = self.router(router_input).softmax(-1, dtype=torch.float32)
        gate, expert = probs.max(1)
        self.aux_loss = load_balancing_loss(probs, expert) * self.load_bal
        if self.capacity_factor is not None:
            capacity = math.ceil(self.capacity_factor * h.shape[0] / k)
            one_hot = nn.functional.one_hot(expert, k)
            rank = (one_hot.cumsum(0) * one_hot).sum(1) - 1  # each token's place in its expert's queue
            expert = torch.where(rank < capacity, expert, k)  # bucket K runs nothing
        y = self._dispatch(h, self._route(expert, k + 1))
        scaled: torch.Tensor = y * gate.unsqueeze(1).to(y.dtype)
        return scaled


def load_balancing_loss(probs: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
    """`K * sum_k f_k * P_k` over `probs` `[N, K]` and the chosen `expert` `[N]`: 1 when routing
    is uniform, K when every token goes to one expert with certainty (hashtrain's formula)."""
    k = probs.shape[1]
    dispatched = nn.functional.one_hot(expert, k).to(torch.float32).mean(0)
    loss: torch.Tensor = (dispatched * probs.mean(0)).sum() * k
    return loss


class BaseMoE(_DeviceRouted):
    """`router` `[K, d]`: expert e's score of `h` is `router[e] . h`. `forward(h [N, d])`;
    training (`self.training`) assigns the tokens in balance, evaluation by best score."""

    def __init__(self, d_model: int, d_ff: int, experts: int, *, group: Optional[dist.ProcessGroup] = None,
                 seed: Optional[int] = None) -> None:
        super().__init__(d_model, d_ff, experts, group=group, seed=seed)
        bound = 1 / math.sqrt(d_model)
        self.router = nn.Parameter(torch.empty(experts, d_model).uniform_(-bound, bound))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = h @ self.router.t()
        if self.training:
            try:
                assigned = hashprep.balanced_assignment(scores.detach().float().cpu().numpy())
                expert = torch.from_numpy(assigned.astype(np.int64)).to(h.device)
            except ValueError:  # scores no longer finite: the loss is not either, and the run stops on it
                expert = scores.argmax(1)
        else:
            expert = scores.argmax(1)
        y = self._dispatch(h, self._route(expert, self.num_experts))
        gate = scores.gather(1, expert.unsqueeze(1)).sigmoid()
        return y * gate.to(y.dtype)
