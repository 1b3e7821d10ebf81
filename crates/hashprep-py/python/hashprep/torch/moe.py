"""The Hash layer's experts on torch: `HashMoE` takes hidden states and one loader route
(positions grouped by expert, `schemas/batch.md`), gathers them in expert order, runs each
expert on its contiguous slice and scatters back, as hashtrain's hash layer does.

Top-k tables (DeepSeek-V4's hash layers): the route groups (position, slot) pairs by expert;
each pair's output is weighted by `s_e / sum of the k s` with `s = f(gate h)` (`softmax`,
`sigmoid`, `sqrtsoftplus`) or by `1/k` (`uniform`, no gate), and the k outputs of a position are
summed, as hashtrain's top-k hash layer does (its `gate` `[K, d]` under the same name).

Expert parallel: with an expert-parallel `group` of E ranks, each rank holds K/E experts (rank i
of the group the experts `i*K/E .. (i+1)*K/E - 1`) and tokens travel to their expert's rank
and back with one `all_to_all_single` each way (autograd runs the same two in the backward).
Every split size comes from the route's `peer_counts` (the loader routed the other ranks'
batches on the host), so a step exchanges no counts and copies nothing back from the device.

`ExpertLayer` holds the experts and that dispatch; `HashMoE` feeds it the loader's routes, the
layers of `routers` (Switch, BASE) routes they compute on the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union, cast

import numpy.typing as npt

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_to_all_single

if TYPE_CHECKING:
    from .. import Route

# The autograd all-to-all (torch does not annotate it).
_all_to_all = cast(Callable[..., torch.Tensor], all_to_all_single)


@dataclass
class DeviceRoute:
    """One route ready for `HashMoE`: `order` on the device; the sizes stay on the host."""

    order: torch.Tensor
    """`[N]` int64: positions grouped by expert."""
    counts: List[int]
    """Tokens per expert of this rank (`K` ints)."""
    peer_counts: npt.NDArray[np.int64]
    """`[E, K]` tokens per expert of each rank of the expert-parallel group."""
    top_k: int = 1
    """Experts per position k (`order` holds N * k pairs)."""
    flat: Optional[torch.Tensor] = None
    """Top-k: `[N * k]` int64, each pair's `position * k + slot` (on the device)."""
    expert_ids: Optional[torch.Tensor] = None
    """Top-k: `[N, k]` int64, the experts of each position (on the device)."""


def device_route(route: Union["Route", Mapping[str, Any]], device: Union[torch.device, str, None] = None,
                 non_blocking: bool = True) -> DeviceRoute:
    """A `DeviceRoute` from a `hashprep.Route` or a route dict of `HashprepDataset`."""
    def get(name: str) -> Any:
        return route[name] if isinstance(route, Mapping) else getattr(route, name)

    order = get("order")
    if isinstance(order, np.ndarray):
        order = torch.from_numpy(order)
    peer_counts = np.asarray(get("peer_counts"))
    offsets = get("offsets")
    offsets = offsets.numpy() if isinstance(offsets, torch.Tensor) else np.asarray(offsets)
    expert_ids = get("expert_ids") if _has(route, "expert_ids") else None
    top_k = 1 if expert_ids is None or np.ndim(expert_ids) == 2 else int(np.shape(expert_ids)[-1])

    def place(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, non_blocking=non_blocking) if device is not None else t

    flat = ids = None
    if top_k > 1:
        flat = place(order * top_k + torch.as_tensor(np.asarray(get("slots"))))
        ids = place(torch.as_tensor(np.asarray(expert_ids)).reshape(-1, top_k))
    return DeviceRoute(
        order=place(order),
        counts=np.diff(offsets).tolist(),
        peer_counts=peer_counts,
        top_k=top_k,
        flat=flat,
        expert_ids=ids,
    )


def _has(route: Any, name: str) -> bool:
    return name in route if isinstance(route, Mapping) else hasattr(route, name)


# How a top-k layer weights its k experts (hashtrain's `scoring`).
SCORINGS = ("softmax", "sigmoid", "sqrtsoftplus", "uniform")


class Expert(nn.Module):
    """`relu(x w1 + b1) w2 + b2`, `w1: [d, D]`, `w2: [D, d]` (hashtrain's layout and initial
    distribution: uniform in +-1/sqrt(fan_in))."""

    def __init__(self, d_model: int, d_ff: int, device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(d_model, d_ff, device=device, dtype=dtype))
        self.b1 = nn.Parameter(torch.empty(d_ff, device=device, dtype=dtype))
        self.w2 = nn.Parameter(torch.empty(d_ff, d_model, device=device, dtype=dtype))
        self.b2 = nn.Parameter(torch.empty(d_model, device=device, dtype=dtype))
        bound_in, bound_hidden = 1 / math.sqrt(d_model), 1 / math.sqrt(d_ff)
        for p, bound in ((self.w1, bound_in), (self.b1, bound_in), (self.w2, bound_hidden), (self.b2, bound_hidden)):
            nn.init.uniform_(p, -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b2, torch.relu(torch.addmm(self.b1, x, self.w1)), self.w2)

    def hidden(self, x: torch.Tensor, first: int, width: int) -> torch.Tensor:
        """Hidden units `[first, first + width)`: `relu(x w1[:, seg] + b1[seg])` (MultiHash)."""
        return torch.relu(torch.addmm(self.b1[first:first + width], x, self.w1[:, first:first + width]))

    def output(self, v: torch.Tensor, first: int, width: int) -> torch.Tensor:
        """Output columns `[first, first + width)` on all hidden units `v` (MultiHash)."""
        return torch.addmm(self.b2[first:first + width], v, self.w2[:, first:first + width])


class ExpertLayer(nn.Module):
    """K expert FFNs `d -> D -> d`, sharded over an expert-parallel `group` of E ranks (None:
    every expert here), and the dispatch of a route's positions to them and back. Expert `e`'s
    parameters are `experts.{e}.{w1,b1,w2,b2}` with the global `e`, as in hashtrain's
    checkpoints, so each rank's state dict names only its own experts. `seed`: expert `e` is
    initialized from its own generator seeded with `(seed, e)`, so the weights do not depend on
    the expert-parallel layout (default: torch's global generator)."""

    def __init__(self, d_model: int, d_ff: int, experts: int, *, group: Optional[dist.ProcessGroup] = None,
                 seed: Optional[int] = None, device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.group = group
        self.ep_size = dist.get_world_size(group) if group is not None else 1
        self.ep_rank = dist.get_rank(group) if group is not None else 0
        if experts % self.ep_size:
            raise ValueError(f"{experts} experts do not split over an expert-parallel group of {self.ep_size}")
        self.num_experts, self.d_model, self.d_ff = experts, d_model, d_ff
        self.local = experts // self.ep_size
        self.seed = seed
        first = self.ep_rank * self.local
        self.experts = nn.ModuleDict(
            {str(e): Expert(d_model, d_ff, device, dtype, self._generator(e)) for e in range(first, first + self.local)}
        )

    def _generator(self, stream: int) -> Optional[torch.Generator]:
        return None if self.seed is None else torch.Generator().manual_seed(self.seed * 1_000_003 + stream)

    def _dispatch(self, h: torch.Tensor, route: DeviceRoute,
                  part: Callable[[Expert, torch.Tensor], torch.Tensor] = Expert.__call__) -> torch.Tensor:
        """Each position of `route.order` through its expert (or `part` of it), written back
        to its row; rows the route does not name stay zero (a Switch layer's dropped tokens)."""
        out = self._through_experts(h.index_select(0, route.order), route, part)
        return out.new_zeros((h.shape[0], out.shape[1])).index_copy(0, route.order, out)

    def _through_experts(self, grouped: torch.Tensor, route: DeviceRoute,
                         part: Callable[[Expert, torch.Tensor], torch.Tensor] = Expert.__call__) -> torch.Tensor:
        """Rows grouped by expert through their experts: here, or on their experts' ranks."""
        return self._run(grouped, route.counts, part) if self.ep_size == 1 else self._exchange(grouped, route, part)

    def _run(self, x: torch.Tensor, sizes: Sequence[int],
             part: Callable[[Expert, torch.Tensor], torch.Tensor] = Expert.__call__) -> torch.Tensor:
        """This rank's experts, in order, each on its slice of `x` (host-known `sizes`): the
        whole FFN, or `part` of it (MultiHash's segments)."""
        experts = [cast(Expert, e) for e in self.experts.values()]
        parts = [part(expert, rows) for expert, rows in zip(experts, torch.split(x, list(sizes))) if rows.shape[0] > 0]
        # No token here: an empty result of the right width, still in the graph, so the
        # backward's all-to-all runs.
        return torch.cat(parts) if parts else part(experts[0], x[:0])

    def _exchange_counts(self, sizes: torch.Tensor) -> Tuple[List[int], npt.NDArray[np.int64]]:
        """The usual count exchange of expert parallelism, for routing computed on the device:
        `sizes` (this rank's tokens per bucket, the first K of them experts) go to the host with
        what each peer sends to this rank's experts (one all-to-all, one device-to-host read).
        Returns the host `sizes` and the `[E, K]` peer counts `_exchange` reads (this rank's row
        and its experts' columns; the rest 0)."""
        mine = sizes[: self.num_experts].contiguous()
        arrived = torch.empty_like(mine)
        dist.all_to_all_single(arrived, mine, group=self.group)
        host = torch.cat([sizes, arrived]).tolist()
        first, buckets = self.ep_rank * self.local, sizes.shape[0]
        peer_counts = np.zeros((self.ep_size, self.num_experts), dtype=np.int64)
        peer_counts[self.ep_rank] = host[: self.num_experts]
        peer_counts[:, first : first + self.local] = np.asarray(host[buckets:]).reshape(self.ep_size, self.local)
        return host[:buckets], peer_counts

    def _exchange(self, grouped: torch.Tensor, route: DeviceRoute,
                  part: Callable[[Expert, torch.Tensor], torch.Tensor] = Expert.__call__) -> torch.Tensor:
        counts = np.asarray(route.peer_counts, dtype=np.int64)
        if counts.shape != (self.ep_size, self.num_experts):
            raise ValueError(
                f"route peer_counts of shape {counts.shape}, expected ({self.ep_size}, {self.num_experts}): "
                f"open the loader with expert_parallel={self.ep_size}"
            )
        first = self.ep_rank * self.local
        send = counts[self.ep_rank].reshape(self.ep_size, self.local).sum(1).tolist()
        mine = counts[:, first : first + self.local]  # [source rank, local expert]
        receive = mine.sum(1).tolist()
        arrived = _all_to_all(
            grouped.new_empty((sum(receive), grouped.shape[1])), grouped, receive, send, self.group
        )
        # Arrivals come by source rank, then expert; the experts want them by expert.
        by_expert = torch.from_numpy(_by_expert_index(mine))
        if grouped.is_cuda:
            by_expert = by_expert.pin_memory()
        by_expert = by_expert.to(grouped.device, non_blocking=True)
        out = self._run(arrived.index_select(0, by_expert), mine.sum(0).tolist(), part)
        out = torch.zeros_like(out).index_copy(0, by_expert, out)
        return _all_to_all(out.new_empty((grouped.shape[0], out.shape[1])), out, send, receive, self.group)


class HashMoE(ExpertLayer):
    """A Hash layer: K expert FFNs routed by a loader route (`forward(h [N, d], route)`);
    `top_k` > 1 weights a position's k experts by `scoring`, `hashes` > 1 is MultiHash (one
    route per hash)."""

    def __init__(self, d_model: int, d_ff: int, experts: int, *, group: Optional[dist.ProcessGroup] = None,
                 seed: Optional[int] = None, device: Optional[torch.device] = None,
                 dtype: Optional[torch.dtype] = None, top_k: int = 1, scoring: str = "sqrtsoftplus",
                 hashes: int = 1) -> None:
        super().__init__(d_model, d_ff, experts, group=group, seed=seed, device=device, dtype=dtype)
        if hashes > 1 and (d_model % hashes or d_ff % hashes or top_k > 1):
            raise ValueError(f"MultiHash with {hashes} hashes needs d_model and d_ff divisible by them "
                             "and one expert per hash")
        self.hashes = hashes
        if scoring not in SCORINGS:
            raise ValueError(f"scoring {scoring!r} is none of {', '.join(SCORINGS)}")
        self.top_k, self.scoring = top_k, scoring
        # Replicated on every rank of the group (a dense parameter), drawn from its own generator.
        self.gate: Optional[nn.Parameter] = None
        if top_k > 1 and scoring != "uniform":
            self.gate = nn.Parameter(torch.empty(experts, d_model, device=device, dtype=dtype))
            bound = 1 / math.sqrt(d_model)
            nn.init.uniform_(self.gate, -bound, bound, generator=self._generator(experts))

    def forward(self, h: torch.Tensor, route: Union[DeviceRoute, Sequence[DeviceRoute]]) -> torch.Tensor:
        """`route`: the layer's route, or one per hash in hash order (MultiHash)."""
        if not isinstance(route, DeviceRoute):
            return self._multihash(h, route)
        if route.top_k != self.top_k or route.order.shape[0] != h.shape[0] * self.top_k:
            raise ValueError(
                f"a route of {route.order.shape[0]} pairs (top-{route.top_k}) for {h.shape[0]} positions: "
                f"this layer is top-{self.top_k}"
            )
        if self.top_k == 1:
            return self._dispatch(h, route)
        out = self._through_experts(h.index_select(0, route.order), route)
        weighted = out * self._pair_weights(h, route).unsqueeze(1).to(out.dtype)
        return out.new_zeros((h.shape[0], out.shape[1])).index_add(0, route.order, weighted)

    def _multihash(self, h: torch.Tensor, routes: Sequence[DeviceRoute]) -> torch.Tensor:
        """Hash m picks the expert whose hidden segment m (`d_ff / N` units) each position uses,
        then the expert whose output segment m (`d / N` columns) reads all the hidden units
        (hashtrain's MultiHash, paper section 3.2). Under expert parallelism each segment
        travels to its expert's rank and back (two all-to-alls per hash and segment)."""
        if len(routes) != self.hashes:
            raise ValueError(f"{len(routes)} routes for a layer of {self.hashes} hashes")
        seg_hidden, seg_out = self.d_ff // self.hashes, self.d_model // self.hashes

        def hidden(m: int) -> Callable[[Expert, torch.Tensor], torch.Tensor]:
            return lambda e, x: e.hidden(x, m * seg_hidden, seg_hidden)

        def output(m: int) -> Callable[[Expert, torch.Tensor], torch.Tensor]:
            return lambda e, x: e.output(x, m * seg_out, seg_out)

        v = torch.cat([self._dispatch(h, r, hidden(m)) for m, r in enumerate(routes)], 1)
        return torch.cat([self._dispatch(v, r, output(m)) for m, r in enumerate(routes)], 1)

    def _pair_weights(self, h: torch.Tensor, route: DeviceRoute) -> torch.Tensor:
        """Each pair's weight, in the route's order (hashtrain's formula)."""
        assert route.flat is not None and route.expert_ids is not None, "a top-k route"
        if self.gate is None:
            return torch.full(route.flat.shape, 1.0 / self.top_k, dtype=h.dtype, device=h.device)
        logits = h @ self.gate.t()
        if self.scoring == "softmax":
            scores = logits.softmax(-1, dtype=torch.float32)
        elif self.scoring == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = torch.nn.functional.softplus(logits).sqrt()
        chosen = scores.gather(1, route.expert_ids)
        normalized = chosen / (chosen.sum(1, keepdim=True, dtype=torch.float32) + 1e-20)
        return normalized.reshape(-1).index_select(0, route.flat)


def _by_expert_index(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For rows laid out by (source, expert) with `counts[source, expert]` rows each, the row
    indices in (expert, source) order."""
    by_source = (np.cumsum(counts.ravel()) - counts.ravel()).reshape(counts.shape)
    starts, lengths = by_source.T.ravel(), counts.T.ravel()
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    index: npt.NDArray[np.int64] = np.repeat(starts, lengths) + within
    return index
