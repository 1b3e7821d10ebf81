"""Expert-parallel step time: split sizes known on the host (`HashMoE`, from the loader's
`peer_counts`) against the usual way (Megatron, torchtitan, DeepSpeed: count the tokens per
expert on the device, exchange the counts with an all_to_all, read them back with `.tolist()`
for the split sizes). Same model, same batches, 2 gloo processes on CPU, 1 thread each.

Rows: a stack of hash layers alone (where the exchange is the whole difference) with top-1,
top-2 and top-6 tables (DeepSeek-V4's hash layers are top-6), hashtrain's decoder with two hash
layers, and a stack of Switch layers (`SwitchMoE`: router on the device, count exchange, one host
read per layer) beside the top-1 hash stack. Prints the median step time of each variant, their
ratio, and the collectives and device-to-host reads per step, counted by wrappers.

    python benches/ep_step.py                          # after `make python` (run by `make bench`)
    python benches/ep_step.py --device cuda --world 1  # one GPU (scripts/gpu-check.sh)

On CPU a `.tolist()` waits for nothing (every op is synchronous), so this measures the count
exchange itself; on GPUs the read also stalls the host until the device has caught up. With
`--world 1` both variants still take the exchange path (its all_to_alls copy locally, NCCL on a
GPU): two ranks cannot share one GPU under NCCL, and on one GPU the difference that remains is
the count exchange's device-to-host read.
"""

import argparse
import dataclasses
import os
import socket
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import hashprep
from hashprep.torch import HashMoE, HashprepDataset, LanguageModel, device_route, masked_nll
from hashprep.torch.moe import Expert
from hashprep.torch.routers import SwitchMoE

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
EXPERTS, WARMUP, STEPS = 8, 3, 30
STACK = dict(layers=4, d_model=64, d_ff=256, batch=16, seq=128)
DECODER = dict(layers=4, d_model=128, d_ff=512, heads=4, batch=16, seq=64, hash_layers=(2, 4))


class HostKnownMoE(HashMoE):
    """`HashMoE`, whose exchange path (host-known split sizes) is taken on one rank too."""

    def _through_experts(self, grouped, route, part=Expert.__call__):
        return self._exchange(grouped, route, part)


class CountExchangeMoE(HostKnownMoE):
    """The usual EP exchange: counts from the router's expert ids on the device, one
    all_to_all of the counts, one `.tolist()` of the split sizes, then the same token exchange."""

    def _exchange(self, grouped, route, part=Expert.__call__):
        counts = torch.bincount(route.expert_ids.reshape(-1), minlength=self.num_experts)
        _, peer_counts = self._exchange_counts(counts)
        return super()._exchange(grouped, dataclasses.replace(route, peer_counts=peer_counts), part)


class Stack(nn.Module):
    """Token embedding, then `layers` residual sparse layers, each `x += moe(norm(x))`: hash
    layers of `top_k`, or Switch layers (`switch`), which route themselves."""

    def __init__(self, vocab, layers, d_model, d_ff, group, top_k=1, switch=False):
        super().__init__()
        self.embedding = nn.Embedding(vocab, d_model)
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(layers))
        self.switch = switch
        self.moes = nn.ModuleList(
            SwitchMoE(d_model, d_ff, EXPERTS, group=group, seed=i) if switch
            else HashMoE(d_model, d_ff, EXPERTS, group=group, seed=i, top_k=top_k, scoring="softmax")
            for i in range(layers))

    def loss(self, batch, route):
        ids = batch["input_ids"].reshape(-1)
        x = self.embedding(ids)
        for norm, moe in zip(self.norms, self.moes):
            x = x + (moe(norm(x), ids) if self.switch else moe(norm(x), route))
        return x.square().mean()


class Decoder(nn.Module):
    def __init__(self, vocab, group, cfg):
        super().__init__()
        self.net = LanguageModel(vocab, layers=cfg["layers"], d_model=cfg["d_model"], d_ff=cfg["d_ff"],
                                 heads=cfg["heads"], context=cfg["seq"], ep_group=group, expert_seed=0,
                                 hash_layers={at: EXPERTS for at in cfg["hash_layers"]})
        self.moes = [m for m in self.net.modules() if isinstance(m, HashMoE)]
        self.hash_layers = cfg["hash_layers"]

    def loss(self, batch, route):
        logits = self.net(batch["input_ids"], {at: route for at in self.hash_layers})
        nll, count = masked_nll(logits, batch["targets"], batch["loss_mask"])
        return nll / count


class Counter:
    """Counts all_to_alls and device-to-host reads (`Tensor.tolist`/`item`) while active."""

    def __init__(self):
        self.all_to_all = self.reads = 0
        self.active = False
        self._a2a, self._tolist, self._item = dist.all_to_all_single, torch.Tensor.tolist, torch.Tensor.item
        counter = self

        def a2a(*args, **kwargs):
            counter.all_to_all += counter.active
            return counter._a2a(*args, **kwargs)

        def tolist(t):
            counter.reads += counter.active
            return counter._tolist(t)

        def item(t):
            counter.reads += counter.active
            return counter._item(t)

        dist.all_to_all_single, torch.Tensor.tolist, torch.Tensor.item = a2a, tolist, item


def _route(batch, device):
    route = device_route(batch["routes"][0], device)
    if route.expert_ids is None:  # top-1: the counting variant reads them (top-k routes carry them)
        route.expert_ids = batch["routes"][0]["expert_ids"].reshape(-1).to(device)
    return route


def _on(batch, device):
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


HOST_KNOWN, COUNT_EXCHANGE, SWITCH = "host-known splits", "count exchange + .tolist()", "switch"
# (row, config, table's top-k, variants): each variant runs the same batches.
ROWS = [
    ("hash layers only, top-1", STACK, 1, (HOST_KNOWN, COUNT_EXCHANGE)),
    ("hash layers only, top-2", STACK, 2, (HOST_KNOWN, COUNT_EXCHANGE)),
    ("hash layers only, top-6", STACK, 6, (HOST_KNOWN, COUNT_EXCHANGE)),
    ("switch layers only (router on the device, count exchange)", STACK, 1, (SWITCH,)),
    ("decoder, 2 of 4 layers hash", DECODER, 1, (HOST_KNOWN, COUNT_EXCHANGE)),
]


def _model(vocab, group, cfg, top_k, variant):
    if cfg is DECODER:
        return Decoder(vocab, group, cfg)
    return Stack(vocab, cfg["layers"], cfg["d_model"], cfg["d_ff"], group, top_k, switch=variant == SWITCH)


def _rank(rank, port, world, device, data, tables, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    cuda = device == "cuda"
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    group = dist.new_group(list(range(world)))
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    vocab = hashprep.Table.load(tables[1]).meta["vocab_size"]
    counter = Counter()
    rows = {}
    for name, cfg, top_k, variants in ROWS:
        dataset = HashprepDataset(data, [tables[top_k]], batch_size=cfg["batch"] // world, seq_len=cfg["seq"],
                                  drop_last=True, expert_parallel=world, steps=WARMUP + STEPS)
        batches = [(_on(b, device), _route(b, device)) for b in dataset]
        model = _model(vocab, group, cfg, top_k, variants[0]).to(device)
        times = {variant: [] for variant in variants}
        calls = {}
        for step, (batch, route) in enumerate(batches):
            for variant in variants:
                for moe in model.moes:
                    if variant != SWITCH:
                        moe.__class__ = HostKnownMoE if variant == HOST_KNOWN else CountExchangeMoE
                model.zero_grad(set_to_none=True)
                sync()
                dist.barrier()
                counter.all_to_all = counter.reads = 0
                counter.active = True
                started = time.perf_counter()
                model.loss(batch, route).backward()
                sync()
                elapsed = time.perf_counter() - started
                counter.active = False
                if step >= WARMUP:
                    times[variant].append(elapsed)
                calls[variant] = (counter.all_to_all, counter.reads)
        rows[name] = {v: (statistics.median(t), calls[v]) for v, t in times.items()}
    if rank == 0:
        results.update(rows)
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--world", type=int, default=2, help="processes (one GPU each on cuda)")
    args = parser.parse_args()
    world = args.world
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        wiki = os.path.join(ROOT, "data", "wikitext-103", "wiki.valid.tokens")
        hashprep.tokenize([wiki], data, format="wikitext103", tokenizer="gpt2", progress=False)
        tables = {}
        for top_k in sorted({row[2] for row in ROWS}):
            tables[top_k] = os.path.join(tmp, f"balanced-top{top_k}.arrow")
            hashprep.build_table(data, tables[top_k], method="balanced", experts=EXPERTS, top_k=top_k)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        results = mp.Manager().dict()
        mp.spawn(_rank, args=(port, world, args.device, data, tables, results), nprocs=world, join=True)
    where = f"{world} GPU process(es), NCCL" if args.device == "cuda" else f"{world} gloo processes x 1 thread"
    print(f"EP step (forward + backward), {where}, {EXPERTS} experts "
          f"({EXPERTS // world} per rank), balanced table, Wikitext-103 valid via GPT-2, median of {STEPS}:")
    for name, row in results.items():
        described = ", ".join(f"{variant} {t * 1e3:.1f} ms ({a2a} all_to_all, {reads} reads)"
                              for variant, (t, (a2a, reads)) in row.items())
        ratio = ""
        if COUNT_EXCHANGE in row:
            ratio = f"; usual / host-known = {row[COUNT_EXCHANGE][0] / row[HOST_KNOWN][0]:.3f}x"
        elif SWITCH in row:
            top1 = results[ROWS[0][0]][HOST_KNOWN][0]
            ratio = f"; switch / host-known hash top-1 = {row[SWITCH][0] / top1:.3f}x"
        print(f"  {name}: {described}{ratio}")

if __name__ == "__main__":
    main()
