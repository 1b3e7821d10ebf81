"""The reference trainer: hashtrain's run config on torch.distributed.

    torchrun --nproc-per-node N -m hashprep.torch.train --config pipelines/NAME.toml --out DIR [--ep E] [--set KEY=VALUE]

Data parallel over all N ranks (DDP for the dense parameters; the config's `batch_size` is the
global batch, `batch_size / N` rows per rank); with `--ep E` the experts of each hash layer are
sharded over groups of E consecutive ranks (`HashMoE`), the all-to-all sizes known on the host,
and each expert's gradient is reduced only over its replicas (the ranks holding the same experts).
Writes hashtrain's `metrics.jsonl` records; checkpoints with torch.distributed.checkpoint every
`checkpoint_every` steps, and `--resume` continues from the latest one (with the settings,
world size and `--ep` it was written with; each file is verified against `checksums.json`).
Without torchrun it runs as one process. The config is read, defaulted and checked by
`hashprep.RunConfig`, the code hashtrain reads it with: a config one trainer refuses, the other
refuses with the same message. Every sparse kind hashtrain runs: `hash` (top-1 and top-k, every
scoring), `multihash`, `switch`, `token-switch` and `base`, in fp32 or bf16 (autocast). Switch and
BASE layers route on the device, each rank its own batch (capacity, balanced assignment and
load-balancing term per rank, as engines do).

Like hashtrain, it stops with exit code 2 when the loss or the weights stop being finite (checked
at each log record and before each checkpoint, all ranks agreeing), so no checkpoint ever holds
them. A worker whose launcher dies (torchrun killed) ends too.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import json
import math
import os
import pathlib
import shutil
import signal
import sys
import time
import warnings
from typing import IO, Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union, cast

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

import hashprep

from .model import LanguageModel, RoutedLayer, masked_nll
from .moe import DeviceRoute, device_route

# Tokens per expert of each sparse layer (1-based).
Loads = Dict[int, npt.NDArray[np.int64]]

# torch.distributed.checkpoint warns at every save and load outside a process group, which is
# what `no_dist` says already.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")


class ConfigError(ValueError):
    """A setting or command-line option this trainer cannot use."""


class Diverged(Exception):
    """The loss or the weights stopped being finite (hashtrain's words)."""

    def __init__(self, step: int, detail: str) -> None:
        super().__init__(
            f"training diverged at step {step}: {detail}; lower train.lr or raise train.warmup "
            "(--resume continues from the last checkpoint, written while everything was finite)"
        )


class Distributed:
    """This process's place: world W, rank, the expert-parallel group of E ranks and the group
    of the ranks holding the same experts (the expert replicas)."""

    def __init__(self, ep: int, device: torch.device) -> None:
        self.on = "RANK" in os.environ
        if self.on and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.world = dist.get_world_size() if self.on else 1
        self.rank = dist.get_rank() if self.on else 0
        if ep < 1 or self.world % ep:
            raise ConfigError(f"--ep {ep} must divide the {self.world} ranks")
        self.ep = ep
        self.ep_group = self.replicas = None
        if ep > 1:  # every rank creates every group, in the same order
            for first in range(0, self.world, ep):
                group = dist.new_group(list(range(first, first + ep)))
                if first <= self.rank < first + ep:
                    self.ep_group = group
            for offset in range(ep):
                group = dist.new_group(list(range(offset, self.world, ep)))
                if self.rank % ep == offset:
                    self.replicas = group

    def all_reduce(self, tensor: torch.Tensor, group: Optional[dist.ProcessGroup] = None) -> torch.Tensor:
        if self.on:
            dist.all_reduce(tensor, group=group)
        return tensor

    def barrier(self) -> None:
        if self.on:
            dist.barrier()


def shard_dense(model: LanguageModel, experts: Set[torch.nn.Parameter], place: Distributed,
                device: torch.device) -> None:
    """FSDP2 over every rank: each block, then the rest (embeddings, final norm, head), sharded
    and gathered layer by layer; the experts stay out (see `Trainer`). Gradients are averaged
    over the ranks by the reduce-scatter, as DDP averages them."""
    mesh = init_device_mesh(device.type, (place.world,))
    for block in model.layers.values():
        fully_shard(block, mesh=mesh, ignored_params=experts)
    fully_shard(model, mesh=mesh, ignored_params=experts)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's part of a tensor FSDP sharded (a `DTensor`), or the tensor itself."""
    return t.to_local() if isinstance(t, DTensor) else t


def inverse_sqrt_lr(peak: float, warmup: int, step: int) -> float:
    step = max(step, 1)
    return peak * step / warmup if step <= warmup else peak * math.sqrt(max(warmup, 1) / step)


class Trainer:
    def __init__(self, config: hashprep.RunConfig, place: Distributed, device: torch.device,
                 fsdp: bool = False) -> None:
        self.config, self.place, self.device, self.fsdp = config, place, device, fsdp
        m, t = config.model, config.train
        if t.freeze:
            raise ConfigError(f"train.freeze = {t.freeze}: fine-tuning with frozen weights is hashtrain's "
                              "(`hashtrain run --init-from CHECKPOINT`); this trainer trains every weight")

        def loader(data: pathlib.Path) -> hashprep.Loader:
            return hashprep.Loader.for_run(config, data, rank=place.rank, world_size=place.world,
                                           expert_parallel=place.ep)

        self.train_loader, self.valid_loader = loader(config.data.train), loader(config.data.valid)
        routes = self.train_loader.routes
        # The loader matched each table-routed layer to its route (by the table's bytes).
        # A MultiHash layer is served by one route per hash, in hash order.
        self.route_of: Dict[int, List[int]] = {}
        for r in routes:
            for at in r.sparse_layers:
                self.route_of.setdefault(at, []).append(r.index)
        self.experts_of = {at: routes[ix[0]].experts for at, ix in self.route_of.items()}
        routed = {s.at: RoutedLayer(s.kind, s.experts, s.d_ff, s.load_bal, s.capacity_factor)
                  for s in m.sparse if s.kind in ("switch", "token-switch", "base") and s.experts is not None}
        self.experts_of.update({at: layer.experts for at, layer in routed.items()})
        # Tokens per expert in the load records; a Switch layer's last entry counts those dropped.
        self.load_width = {at: k + (routed[at].kind != "base" if at in routed else 0)
                           for at, k in self.experts_of.items()}
        scoring = {s.at: s.scoring or "sqrtsoftplus" for s in m.sparse}
        top_k = {at: (routes[ix[0]].top_k, scoring[at]) for at, ix in self.route_of.items()}
        hashes = {at: len(ix) for at, ix in self.route_of.items()}
        for i, layer in enumerate(m.sparse):
            experts = self.experts_of.get(layer.at)
            if experts is not None and experts % place.ep:
                raise ConfigError(f"--ep {place.ep} does not divide the {experts} experts of model.sparse[{i}] "
                                  f"(layer {layer.at}): choose an --ep that divides them")
        self.kind_of = {s.at: s.kind for s in m.sparse}
        vocab = hashprep.Dataset(config.data.train).manifest["tokenizer"]["vocab_size"]
        torch.manual_seed(t.seed)
        self.model = LanguageModel(
            vocab, layers=m.layers, d_model=m.d_model, d_ff=m.d_ff, heads=m.heads,
            context=m.context, dropout=m.dropout, positions=m.positions,
            tie_embeddings=m.tie_embeddings, hash_layers=self.experts_of,
            expert_d_ff={s.at: s.d_ff for s in m.sparse if s.d_ff is not None}, top_k=top_k, hashes=hashes,
            routed_layers=routed, ep_group=place.ep_group, expert_seed=t.seed,
        )
        self.model.to(device)
        # Sharded experts are not data-parallel parameters: their gradient comes through the
        # all-to-all and is reduced over their replicas only. Under FSDP every expert is kept out
        # of the shards and reduced so (a replicated expert that saw no token on a rank has no
        # gradient there, and FSDP2 reduces only the gradients a rank has: the ranks would not agree).
        # A top-k layer's gate is replicated on every rank: a data-parallel parameter like the rest.
        self.experts = [p for layer in self.model.expert_layers() if place.ep > 1 or fsdp
                        for p in layer.experts.parameters()]
        expert_ids = {id(p) for p in self.experts}
        self.net: torch.nn.Module = self.model
        if fsdp:
            shard_dense(self.model, set(self.experts), place, device)
        elif place.on and place.world > 1:
            ignored = [n for n, p in self.model.named_parameters() if id(p) in expert_ids]
            ignore = cast(Callable[[torch.nn.Module, List[str]], None],
                          DistributedDataParallel._set_params_and_buffers_to_ignore_for_model)
            ignore(self.model, ignored)
            # Replicated experts (no --ep) that saw no token on this rank get no gradient here.
            self.net = DistributedDataParallel(self.model, find_unused_parameters=bool(self.experts_of) and place.ep == 1)
        self.dense = [p for p in self.model.parameters() if id(p) not in expert_ids]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr, betas=t.betas, eps=t.eps)

    def close(self) -> None:
        """Drops what holds process groups, threads and mapped files (see `shut_down`)."""
        del self.net, self.model, self.optimizer, self.train_loader, self.valid_loader
        self.experts = self.dense = []

    def forward(self, batch: hashprep.Batch, net: torch.nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
        ids = torch.from_numpy(batch.input_ids).to(self.device, non_blocking=True)
        routes: Dict[int, Union[DeviceRoute, List[DeviceRoute]]] = {
            at: device_route(batch.routes[ix[0]], self.device) if len(ix) == 1
            else [device_route(batch.routes[i], self.device) for i in ix]
            for at, ix in self.route_of.items()
        }
        # bf16: matrix products in bfloat16 under autocast, weights, Adam and the loss in float32
        # (hashtrain keeps float32 master weights too; no loss scaling: bfloat16 has float32's range).
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.train.precision == "bf16"):
            logits = net(ids, routes)
        return masked_nll(logits.float(), torch.from_numpy(batch.targets).to(self.device),
                          torch.from_numpy(batch.loss_mask).to(self.device))

    def step(self, batch: hashprep.Batch, step: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """One optimizer step: the global mean loss, this rank's load-balancing term, the
        gradient norm (device scalars) and the learning rate."""
        t, place = self.config.train, self.place
        torch.manual_seed(t.seed * 1_000_003 + step * place.world + place.rank)  # dropout
        nll, count = self.forward(batch, self.net)
        aux = self.model.aux_loss()
        tokens = place.all_reduce(count.detach().clone()).clamp_min(1.0)
        # DDP averages over the W ranks: W * (this rank's share of the global mean), and the
        # mean of the ranks' load-balancing terms.
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(nll * place.world / tokens + aux)
        if self.experts:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.experts]
            flat = place.all_reduce(torch.cat([g.reshape(-1) for g in grads]), place.replicas) / place.world
            for p, g in zip(self.experts, torch.split(flat, [p.numel() for p in self.experts])):
                p.grad = g.view_as(p)
        grad_norm = self._clip(t.clip)
        lr = inverse_sqrt_lr(t.lr, t.warmup, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return nll.detach() / tokens, aux.detach(), grad_norm, lr

    def _clip(self, max_norm: float) -> torch.Tensor:
        """Global gradient norm over every distinct parameter (sharded experts summed over their
        group), scaled on the device: nothing is read back."""
        def square(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
            grads = [local(p.grad).reshape(-1) for p in params if p.grad is not None]
            return torch.cat(grads).pow(2).sum() if grads else torch.zeros((), device=self.device)
        total = square(self.dense)
        if self.fsdp:  # each rank holds a shard of every dense gradient
            total = self.place.all_reduce(total)
        if self.experts:
            experts = square(self.experts)
            total = total + (self.place.all_reduce(experts, self.place.ep_group) if self.place.ep > 1 else experts)
        norm = total.sqrt()
        if max_norm > 0:
            scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
            for p in self.model.parameters():
                if p.grad is not None:
                    local(p.grad).mul_(scale)
        return norm

    def evaluate(self, max_batches: int) -> Dict[str, Any]:
        per_epoch = self.valid_loader.batches_per_epoch
        batches = per_epoch if max_batches == 0 else min(max_batches, per_epoch)
        self.valid_loader.load_state({**self.valid_loader.state(), "next_batch": 0})
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        loads = self._new_loads()
        self.model.eval()
        with torch.no_grad():
            for batch in self.valid_loader.take(batches):
                nll, count = self.forward(batch, self.model)
                totals += torch.stack([nll.double(), count.double()])
                self._add_loads(loads, batch)
        self.model.train()
        nll, tokens = self.place.all_reduce(totals).tolist()
        loss = nll / tokens if tokens else float("nan")
        return {"loss": loss, "ppl": math.exp(loss) if loss == loss else loss, "tokens": int(tokens),
                "loads": self._load_records(loads)}

    def _new_loads(self) -> Loads:
        return {at: np.zeros(width, dtype=np.int64) for at, width in self.load_width.items()}

    def _add_loads(self, loads: Loads, batch: hashprep.Batch) -> None:
        """The loads of `batch`'s forward: table-routed layers from its routes (MultiHash summed
        over its hashes, as hashtrain), the others as they routed."""
        for at, ix in self.route_of.items():
            for i in ix:
                loads[at] += np.diff(batch.routes[i].offsets)
        for at, counts in self.model.routed_counts().items():
            loads[at] += np.asarray(counts, dtype=np.int64)

    def _load_records(self, loads: Loads) -> List[Dict[str, Any]]:
        records = []
        for at in sorted(loads):
            counts = self.place.all_reduce(torch.from_numpy(loads[at]).to(self.device)).tolist()
            routed = counts[: self.experts_of[at]]  # not the tokens a Switch layer dropped
            total = sum(routed)
            records.append({"layer": at, "kind": self.kind_of[at], "counts": counts,
                            "max_over_mean": max(routed) * len(routed) / total if total else 0.0})
        return records


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hashprep.torch.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=pathlib.Path, required=True, help="hashtrain's run config (TOML)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="the run folder")
    parser.add_argument("--ep", type=int, default=1, help="expert-parallel group size E (divides the ranks)")
    parser.add_argument("--fsdp", action="store_true",
                        help="shard the dense parameters and their Adam state over the ranks (FSDP2)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting of the config, as hashtrain's --set (repeatable)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--stop-after", type=int, default=None, help="stop once this step is done (as if preempted)")
    args = parser.parse_args(argv)
    stop_with_launcher()
    place = trainer = None
    context = ""  # as hashtrain's: which run failed, once the config is read
    try:
        config = hashprep.RunConfig.load(args.config, overrides=args.overrides)
        device = run_device(config)
        context = f"training {args.out}: "
        place = Distributed(args.ep, device)
        if args.fsdp and not place.on:
            raise ConfigError("--fsdp shards over the ranks of torchrun: launch with torchrun --nproc-per-node N")
        trainer = Trainer(config, place, device, fsdp=args.fsdp)
        run(trainer, args)
    except (ConfigError, hashprep.Error, Diverged) as e:
        print(f"error: {context}{as_flags(str(e), parser)}", file=sys.stderr)
        return 2
    except OSError as e:  # the config or data cannot be read (hashtrain: exit 1 too)
        print(f"error: {context}{e}", file=sys.stderr)
        return 1
    finally:
        shut_down(trainer, place)
    return 0


def run_device(config: hashprep.RunConfig) -> torch.device:
    """The device of `train.device` for this rank (a GPU: the one of LOCAL_RANK), with the
    config's `train.threads`."""
    t = config.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = torch.device(t.device if t.device == "cpu" else f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def as_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """The library names command-line options as settings (`` `set` ``); here they are flags."""
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--"):
                message = message.replace(f"`{flag[2:]}`", flag)
    return message


def shut_down(trainer: Optional[Trainer], place: Optional[Distributed]) -> None:
    """Frees the model, its DDP wrapper and the loaders, then the process groups, in that order
    and while the interpreter is whole. torch keeps the trainer alive past `main` through a
    reference cycle (frames of a lazy import made inside `Optimizer.__init__` stay referenced,
    the trainer's constructor among them); left to the cyclic collector, DDP and the last
    reference to the gloo group it holds would be destroyed at an arbitrary time, possibly
    during interpreter shutdown, where a rank could hang forever with its run complete."""
    if trainer is not None:
        trainer.close()
    gc.collect()
    if place is not None and place.on:
        dist.destroy_process_group()


def stop_with_launcher() -> None:
    """Under torchrun (Linux), ends this worker when its launcher dies: torchrun killed with
    SIGKILL cannot stop its workers, which would train on in their own sessions and go on
    writing checkpoints."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    launcher = os.getppid()
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != launcher:  # it died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)


def run(trainer: Trainer, args: argparse.Namespace) -> None:
    place, out = trainer.place, args.out
    checkpoints = out / "checkpoints"
    step = 0
    resuming = args.resume and (checkpoints / "latest").exists()
    if resuming:
        step = restore(trainer, checkpoints)
    elif (out / "metrics.jsonl").exists() or checkpoints.exists():
        if not args.resume:
            raise ConfigError(f"{out} holds a run: --resume it or choose another --out")
        # As hashtrain: a run stopped before its first checkpoint starts over.
        if place.rank == 0:
            print(f"hashprep.torch.train: {out}: no checkpoint was completed yet: starting the run over",
                  file=sys.stderr)
            (out / "metrics.jsonl").unlink(missing_ok=True)
            shutil.rmtree(checkpoints, ignore_errors=True)
    if place.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    place.barrier()
    metrics = open(out / "metrics.jsonl", "a") if place.rank == 0 else None
    try:
        train_steps(trainer, args, step, metrics, checkpoints)
    finally:
        if metrics:
            metrics.close()


def train_steps(trainer: Trainer, args: argparse.Namespace, step: int, metrics: Optional[IO[str]],
                checkpoints: pathlib.Path) -> None:
    t, place = trainer.config.train, trainer.place
    last = min(t.steps, args.stop_after or t.steps)
    window = new_window(trainer)
    batches = trainer.train_loader.take(last - step)
    while step < last:
        waited = time.perf_counter()
        batch = next(batches)
        window["wait"] += time.perf_counter() - waited
        step += 1
        loss, aux, grad_norm, lr = trainer.step(batch, step)
        window["loss"] += loss
        window["aux"] += aux
        window["steps"] += 1
        window["tokens"] += int(batch.loss_mask.size) * place.world
        trainer._add_loads(window["loads"], batch)
        final = step == t.steps
        if step % t.log_every == 0 or (final and window["steps"]):
            record = train_record(trainer, window, step, lr, grad_norm)
            write(metrics, record)
            stop_if_diverged(record, window["steps"])
            window = new_window(trainer)
        if (t.eval_every and step % t.eval_every == 0) or final:
            record = {"type": "valid", "step": step, **trainer.evaluate(t.eval_batches)}
            write(metrics, record)
            stop_if_diverged(record, 0)
        if (t.checkpoint_every and step % t.checkpoint_every == 0) or final or step == last:
            check_finite_state(trainer, window, step)
            save(trainer, checkpoints, step, t.keep_checkpoints)


def stop_if_diverged(record: Dict[str, Any], window_steps: int) -> None:
    """Every rank holds the same all-reduced losses, so all of them stop together."""
    loss, aux = record["loss"], record.get("aux_loss", 0.0)
    if math.isfinite(loss + aux):
        return
    step = record["step"]
    if record["type"] == "train":
        detail = (f"the mean training loss of steps {step + 1 - window_steps}..={step} is {loss} "
                  f"(load-balancing term {aux})")
    else:
        detail = f"the validation loss is {loss}"
    raise Diverged(step, detail)


def check_finite_state(trainer: Trainer, window: Dict[str, Any], step: int) -> None:
    """No checkpoint of weights, or of an open window, that are no longer finite; the ranks
    agree through one all-reduce (a device read of one flag)."""
    with torch.no_grad():
        bad = (~torch.isfinite(window["loss"] + window["aux"])).to(torch.float32).reshape(1)
        for p in trainer.model.parameters():
            bad = bad + (~torch.isfinite(local(p))).any().to(torch.float32)
        if trainer.place.all_reduce(bad).item() > 0:
            raise Diverged(step, "the weights or the training loss are no longer finite; no checkpoint was written")


def new_window(trainer: Trainer) -> Dict[str, Any]:
    """The training statistics since the last `train` record (the loss stays on the device)."""
    def zero() -> torch.Tensor:  # each its own: the window adds into them in place
        return torch.zeros((), device=trainer.device)
    return {"loss": zero(), "aux": zero(), "steps": 0, "tokens": 0, "wait": 0.0, "started": time.perf_counter(),
            "loads": trainer._new_loads()}


def train_record(trainer: Trainer, window: Dict[str, Any], step: int, lr: float,
                 grad_norm: torch.Tensor) -> Dict[str, Any]:
    place = trainer.place
    # One read for both: the loss is the global mean already, the ranks' terms are averaged.
    loss, aux = (place.all_reduce(torch.stack([window["loss"], window["aux"] / place.world])) / window["steps"]).tolist()
    seconds = time.perf_counter() - window["started"]
    return {"type": "train", "step": step, "loss": loss, "aux_loss": aux, "lr": lr,
            "grad_norm": grad_norm.item(), "tokens_per_s": window["tokens"] / seconds,
            "loader_wait": window["wait"] / seconds, "loads": trainer._load_records(window["loads"])}


def write(metrics: Optional[IO[str]], record: Dict[str, Any]) -> None:
    """One JSON line; a number that is not finite is written as null (as hashtrain does), so
    the file stays JSON."""
    if metrics is not None:
        finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        metrics.write(json.dumps(finite, allow_nan=False) + "\n")
        metrics.flush()


def run_identity(trainer: Trainer) -> Dict[str, Any]:
    """What a checkpoint must be resumed with: its config (all but the runtime settings must be
    the same, `RunConfig.resume_differences`), the world size and the expert-parallel size."""
    return {"config": trainer.config.to_toml(), "world_size": trainer.place.world, "ep": trainer.place.ep,
            "fsdp": trainer.fsdp}


CHECKSUMS = "checksums.json"


def file_digest(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def save(trainer: Trainer, checkpoints: pathlib.Path, step: int, keep: int) -> None:
    """`step-XXXXXXXX/`: the model and optimizer (torch.distributed.checkpoint, each rank its
    shards), each rank's loader position, `run.json` (what a resume must match) and, once the
    rest is complete, `checksums.json` (every file's sha256); `latest` names it after that."""
    place = trainer.place
    folder = checkpoints / f"step-{step:08d}"
    model_state, optim_state = get_state_dict(trainer.model, trainer.optimizer)
    dcp_save({"model": model_state, "optim": optim_state}, checkpoint_id=folder, no_dist=not place.on)
    (folder / f"loader-rank{place.rank}.json").write_text(json.dumps(trainer.train_loader.state()))
    place.barrier()
    if place.rank == 0:
        (folder / "run.json").write_text(json.dumps(run_identity(trainer), indent=2))
        sums = {p.name: file_digest(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != CHECKSUMS}
        tmp = folder / (CHECKSUMS + ".tmp")
        tmp.write_text(json.dumps(sums, indent=2))
        tmp.replace(folder / CHECKSUMS)
        latest = checkpoints / "latest"
        latest.with_suffix(".tmp").write_text(folder.name)
        latest.with_suffix(".tmp").replace(latest)
        for old in sorted(checkpoints.glob("step-*"))[:-keep] if keep else []:
            shutil.rmtree(old)
    place.barrier()


def verify_checkpoint(trainer: Trainer, folder: pathlib.Path) -> None:
    """Refuses a checkpoint whose files differ from its `checksums.json`, or that was written
    with other settings, world size or `--ep`. Each rank checks its share of the files; the
    ranks agree on the outcome."""
    place = trainer.place
    sums_path = folder / CHECKSUMS
    if not sums_path.exists() and not (folder / "run.json").exists():
        if place.rank == 0:
            print(f"hashprep.torch.train: {folder}: written before checkpoints recorded checksums and "
                  "settings: resumed unverified", file=sys.stderr)
        return
    problems = []
    if not sums_path.exists():
        problems.append(f"{folder}: no {CHECKSUMS} (not a complete checkpoint)")
    else:
        sums = json.loads(sums_path.read_text())
        for i, (name, expected) in enumerate(sorted(sums.items())):
            if i % place.world != place.rank:
                continue
            path = folder / name
            actual = file_digest(path) if path.exists() else "missing"
            if actual != expected:
                problems.append(f"{path}: checksum mismatch: {CHECKSUMS} says {expected}, the file is {actual} "
                                "(altered since the checkpoint was written; resume from another checkpoint)")
    if place.on:
        gathered: List[Any] = [None] * place.world
        dist.all_gather_object(gathered, problems)
        problems = [p for rank in gathered for p in rank]
    if problems:
        raise ConfigError(problems[0])
    saved = json.loads((folder / "run.json").read_text())
    now = run_identity(trainer)
    if (saved["world_size"], saved["ep"]) != (now["world_size"], now["ep"]):
        raise ConfigError(
            f"{folder}: written by {saved['world_size']} rank(s) with --ep {saved['ep']}, resumed by "
            f"{now['world_size']} with --ep {now['ep']}: resume with the same (the weights would reshard, "
            "but each rank's loader position is its own: another world size would not continue the "
            "same sequence of batches)")
    if saved.get("fsdp", False) != now["fsdp"]:
        raise ConfigError(f"{folder}: written {'with' if saved.get('fsdp') else 'without'} --fsdp: resume the same way")
    if not isinstance(saved["config"], str):
        raise ConfigError(f"{folder}: written by an earlier hashprep.torch.train, which recorded its settings "
                          "in another form: resume it with that version, or start over in another --out")
    then = hashprep.RunConfig.parse(saved["config"], origin=folder / "run.json")
    changed = trainer.config.resume_differences(then)
    if changed:
        raise ConfigError(f"{folder}: the checkpoint was trained with other settings: {'; '.join(changed)}; "
                          "keep them to resume, or start over in another --out")


def restore(trainer: Trainer, checkpoints: pathlib.Path) -> int:
    folder = checkpoints / (checkpoints / "latest").read_text().strip()
    verify_checkpoint(trainer, folder)
    model_state, optim_state = get_state_dict(trainer.model, trainer.optimizer)
    state: Dict[str, Any] = {"model": model_state, "optim": optim_state}
    dcp_load(state, checkpoint_id=folder, no_dist=not trainer.place.on)
    set_state_dict(trainer.model, trainer.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    loader_state = json.loads((folder / f"loader-rank{trainer.place.rank}.json").read_text())
    trainer.train_loader.load_state(loader_state)
    step = int(folder.name.split("-")[1])
    if trainer.place.rank == 0:  # the records after the checkpoint are redone
        metrics = checkpoints.parent / "metrics.jsonl"
        kept = [line for line in metrics.read_text().splitlines() if json.loads(line)["step"] <= step]
        metrics.write_text("".join(line + "\n" for line in kept))
    return step


if __name__ == "__main__":
    sys.exit(main())
