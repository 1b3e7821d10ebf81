"""The loader as a `torch.utils.data.IterableDataset` of dicts of tensors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Sequence, cast

import numpy.typing as npt

import torch
import torch.distributed as dist

from .. import Loader

if TYPE_CHECKING:
    from .._hashprep import LoaderState

__all__ = ["HashprepDataset"]


class HashprepDataset(torch.utils.data.IterableDataset[Dict[str, Any]]):
    """Batches of `hashprep.Loader` as dicts of tensors (`torch.from_numpy`, no copy).

    Takes the Loader's arguments; `rank` and `world_size` default to the `torch.distributed`
    group's when it is initialized. `steps` batches per iteration (default: one epoch).
    `pin_memory` pins the tensors for non-blocking copies to a GPU. Each item is a dict with
    `input_ids`, `targets`, `loss_mask` (`[B, T]`) and `routes`: per route, a dict of
    `expert_ids`, `order`, `slots`, `offsets` (tensors) and `peer_counts` (a host numpy `[E, K]`, the
    split sizes `HashMoE` needs on the host; E = `expert_parallel`). Use it with `DataLoader(ds, batch_size=None)` and no
    worker processes (refused): batches are already built (and built ahead) by the loader's
    threads, and `state_dict()` is the position of this process's loader.
    """

    def __init__(
        self,
        data: str,
        tables: Sequence[str] = (),
        *,
        batch_size: int,
        seq_len: int,
        seed: int = 0,
        per_example: bool = False,
        drop_last: bool = False,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        expert_parallel: int = 1,
        workers: int = 2,
        prefetch: int = 4,
        steps: Optional[int] = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        initialized = dist.is_available() and dist.is_initialized()
        if rank is None:
            rank = dist.get_rank() if initialized else 0
        if world_size is None:
            world_size = dist.get_world_size() if initialized else 1
        self.rank, self.world_size = rank, world_size
        self.loader = Loader(
            str(data),
            [str(t) for t in tables],
            batch_size=batch_size,
            seq_len=seq_len,
            seed=seed,
            per_example=per_example,
            drop_last=drop_last,
            rank=rank,
            world_size=world_size,
            expert_parallel=expert_parallel,
            workers=workers,
            prefetch=prefetch,
        )
        self.steps = steps
        self.pin_memory = pin_memory

    def _tensor(self, array: npt.NDArray[Any]) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return tensor.pin_memory() if self.pin_memory else tensor

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            # Several workers would each yield the same batches; one would advance a copy of the
            # loader in its own process, so this object's state_dict() would never move and a
            # resume would replay every batch.
            raise ValueError(
                f"HashprepDataset under a DataLoader with num_workers={worker.num_workers}: use "
                "num_workers=0 (the loader's own `workers` threads build batches ahead, and "
                "state_dict() follows the batches taken)"
            )
        batches = self.loader.take(self.steps) if self.steps is not None else iter(self.loader)
        for batch in batches:
            yield {
                "index": batch.index,
                "epoch": batch.epoch,
                "input_ids": self._tensor(batch.input_ids),
                "targets": self._tensor(batch.targets),
                "loss_mask": self._tensor(batch.loss_mask),
                "routes": [
                    {
                        "expert_ids": self._tensor(r.expert_ids),
                        "order": self._tensor(r.order),
                        "slots": self._tensor(r.slots),
                        "offsets": self._tensor(r.offsets),
                        "peer_counts": r.peer_counts,
                    }
                    for r in batch.routes
                ],
            }

    def state_dict(self) -> Dict[str, Any]:
        """The loader's position (JSON-serializable)."""
        return dict(self.loader.state())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue where `state_dict()` was taken."""
        self.loader.load_state(cast("LoaderState", state))
