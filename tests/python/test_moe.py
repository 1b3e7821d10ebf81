"""HashMoE: hashtrain's numbers on its own checkpoint (`hashtrain eval` and `python -m
hashprep.torch.eval` agree), and expert parallelism over 2 gloo processes equal to one process
holding every expert, with no hidden sync and one all-to-all each way."""

import json
import os
import pathlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
import torch.distributed as dist  # noqa: E402

import hashprep  # noqa: E402
from conftest import RUN_CONFIG, run_gloo_ranks  # noqa: E402
from hashprep.torch import HashMoE, LanguageModel, device_route  # noqa: E402
from hashprep.torch import eval as torch_eval  # noqa: E402


@pytest.fixture(scope="module")
def balanced8(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("tables") / "balanced8.arrow"
    hashprep.build_table(shards, out, method="balanced", experts=8)
    return out


def _evaluations(hashtrain, capsys, run, shards):
    """`hashtrain eval` and `python -m hashprep.torch.eval` of the same checkpoint over the same
    3 batches, checked equal (loss within 1e-5, same tokens and loads); hashtrain's result."""
    expected = json.loads(hashtrain("eval", "--checkpoint", run, "--data", shards, "--batches", 3, "--json"))
    assert torch_eval.main(["--checkpoint", str(run), "--data", str(shards), "--batches", "3", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["tokens"] == expected["tokens"] > 0
    assert abs(got["loss"] - expected["loss"]) < 1e-5, (got["loss"], expected["loss"])
    assert [r["counts"] for r in got["loads"]] == [r["counts"] for r in expected["loads"]]
    return expected


def _checkpoint_model(expected, **layers):
    """hashtrain's checkpoint weights in `LanguageModel` (strict: every name matches)."""
    weights = safetensors_torch.load_file(pathlib.Path(expected["checkpoint"]) / "model.safetensors")
    model = LanguageModel(50257, layers=2, d_model=16, d_ff=32, heads=2, context=16, hash_layers={2: 8}, **layers)
    model.load_state_dict(weights, strict=True)
    model.eval()
    return model, weights


def test_the_model_reproduces_hashtrain_on_its_checkpoint(tmp_path, shards, balanced8, hashtrain, capsys):
    config = tmp_path / "run.toml"
    config.write_text(RUN_CONFIG.format(data=shards, table=balanced8, kind="hash"))
    run = tmp_path / "run"
    hashtrain("run", "--config", config, "--out", run)
    model, weights = _checkpoint_model(_evaluations(hashtrain, capsys, run, shards))
    assert torch.equal(model.layers["2"].ffn.experts["7"].w2, weights["layers.2.ffn.experts.7.w2"])
    # The check can fail: another routing of the same weights gives another loss.
    loader = hashprep.Loader(shards, [balanced8], batch_size=4, seq_len=16, seed=0)
    with torch.no_grad():
        batch = loader.take(1).__next__()
        route = device_route(batch.routes[0])
        shifted = device_route({"order": np.roll(batch.routes[0].order, 1),
                                "offsets": batch.routes[0].offsets, "peer_counts": batch.routes[0].peer_counts})
        ids = torch.from_numpy(batch.input_ids)
        assert not torch.allclose(model(ids, {2: route}), model(ids, {2: shifted}))


def test_top_k_layers_reproduce_hashtrain_on_its_checkpoints_for_every_scoring(tmp_path, shards, hashtrain, capsys):
    """Top-2 tables, each scoring: hashtrain trains and evaluates; the torch model with its
    weights (the gate under the same name) gives the same loss over the same batches."""
    table = tmp_path / "top2.arrow"
    hashprep.build_table(shards, table, method="balanced", experts=8, top_k=2)
    losses = {}
    for scoring in ("softmax", "sigmoid", "sqrtsoftplus", "uniform"):
        config = tmp_path / f"{scoring}.toml"
        config.write_text(RUN_CONFIG.format(data=shards, table=table, kind="hash")
                          .replace('kind = "hash"', f'kind = "hash"\nscoring = "{scoring}"'))
        run = tmp_path / scoring
        hashtrain("run", "--config", config, "--out", run)
        expected = _evaluations(hashtrain, capsys, run, shards)
        _, weights = _checkpoint_model(expected, top_k={2: (2, scoring)})
        assert ("layers.2.ffn.gate" in weights) == (scoring != "uniform")
        losses[scoring] = expected["loss"]
    assert len(set(losses.values())) == 4, "each scoring weights the experts differently"


def test_multihash_reproduces_hashtrain_on_its_checkpoint(tmp_path, shards, hashtrain, capsys):
    """Two hashes: hidden and output segments of the experts picked per hash, as hashtrain."""
    table = tmp_path / "multi.arrow"
    hashprep.build_table(shards, table, method="balanced", experts=8, hashes=2)
    config = tmp_path / "multi.toml"
    config.write_text(RUN_CONFIG.format(data=shards, table=table, kind="multihash"))
    hashtrain("run", "--config", config, "--out", tmp_path / "run")
    model, _ = _checkpoint_model(_evaluations(hashtrain, capsys, tmp_path / "run", shards), hashes={2: 2})
    # The check can fail: the hashes in the other order give another loss.
    batch = next(hashprep.Loader(shards, [table], batch_size=4, seq_len=16, seed=0).take(1))
    ids = torch.from_numpy(batch.input_ids)
    with torch.no_grad():
        logits = model(ids, {2: [device_route(r) for r in batch.routes]})
        swapped = model(ids, {2: [device_route(r) for r in batch.routes[::-1]]})
    assert not torch.allclose(swapped, logits)


D_MODEL, D_FF, EXPERTS, ROWS, SEQ = 8, 16, 8, 2, 16


def _inputs(rank):
    generator = torch.Generator().manual_seed(100 + rank)
    h = torch.randn(ROWS * SEQ, D_MODEL, generator=generator)
    weights = torch.randn(ROWS * SEQ, D_MODEL, generator=generator)
    return h.requires_grad_(), weights


def _full_layer(top_k=1):
    torch.manual_seed(0)
    return HashMoE(D_MODEL, D_FF, EXPERTS, top_k=top_k, scoring="softmax", seed=11)


class _Forbidden:
    """Makes the calls that would wait for the device raise, and counts all-to-alls."""

    def __init__(self):
        self.all_to_all = 0

    def __enter__(self):
        self.saved = [(torch.Tensor, name, getattr(torch.Tensor, name)) for name in ("item", "tolist", "cpu")]
        self.saved += [(torch.cuda, "synchronize", torch.cuda.synchronize), (dist, "all_to_all_single", dist.all_to_all_single)]

        def forbidden(name):
            def call(*args, **kwargs):
                raise AssertionError(f"{name} called inside the expert-parallel layer")
            return call

        for owner, name, _ in self.saved[:-1]:
            setattr(owner, name, forbidden(name))
        original = dist.all_to_all_single

        def counted(*args, **kwargs):
            self.all_to_all += 1
            return original(*args, **kwargs)

        dist.all_to_all_single = counted
        return self

    def __exit__(self, *exc):
        for owner, name, value in self.saved:
            setattr(owner, name, value)


def _ep_rank(rank, world_size, shards, table, out, top_k):
    layer = HashMoE(D_MODEL, D_FF, EXPERTS, group=dist.group.WORLD, top_k=top_k, scoring="softmax", seed=11)
    missing, unexpected = layer.load_state_dict(_full_layer(top_k).state_dict(), strict=False)
    assert not missing and len(unexpected) == 4 * (EXPERTS // 2)
    loader = hashprep.Loader(shards, [table], batch_size=ROWS, seq_len=SEQ, seed=3,
                             rank=rank, world_size=world_size, expert_parallel=world_size)
    batch = next(iter(loader.take(1)))
    route = device_route(batch.routes[0])
    h, weights = _inputs(rank)
    with _Forbidden() as guard:
        loss = (layer(h, route) * weights).sum()
        forward_calls = guard.all_to_all
        loss.backward()
    grads = {name: p.grad for name, p in layer.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "h_grad": h.grad, "grads": grads,
                "calls": (forward_calls, guard.all_to_all - forward_calls)},
               os.path.join(out, f"rank{rank}.pt"))


@pytest.mark.parametrize("method,top_k", [("balanced", 1), ("random", 1), ("balanced", 2)])
def test_expert_parallel_over_two_ranks_equals_one_process_with_all_experts(tmp_path, shards, method, top_k):
    table = tmp_path / f"{method}.arrow"
    hashprep.build_table(shards, table, method=method, experts=EXPERTS, seed=5, top_k=top_k)
    run_gloo_ranks(_ep_rank, str(shards), str(table), str(tmp_path), top_k)

    layer = _full_layer(top_k)
    inputs, losses = [], []
    for rank in range(2):
        loader = hashprep.Loader(shards, [table], batch_size=ROWS, seq_len=SEQ, seed=3, rank=rank, world_size=2)
        route = device_route(next(iter(loader.take(1))).routes[0])
        h, weights = _inputs(rank)
        losses.append((layer(h, route) * weights).sum())
        inputs.append(h)
    sum(losses).backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["calls"] == (2, 2), "one all-to-all out and one back, in each direction"
        assert torch.allclose(got["loss"], losses[rank].detach(), atol=1e-5, rtol=0)
        assert torch.allclose(got["h_grad"], inputs[rank].grad, atol=1e-5, rtol=0)
        experts = {name: grad for name, grad in got["grads"].items() if name != "gate"}
        assert sorted(experts) == sorted(
            f"experts.{e}.{w}" for e in range(4 * rank, 4 * rank + 4) for w in ("w1", "b1", "w2", "b2")
            if layer.experts[str(e)].w1.grad is not None
        )
        for name, grad in experts.items():
            expected = layer.get_parameter(name).grad
            assert torch.allclose(grad, expected, atol=1e-5, rtol=0), name
    if top_k > 1:  # the gate is replicated: each rank's gradient is its own loss's share
        gate = sum(torch.load(tmp_path / f"rank{rank}.pt")["grads"]["gate"] for rank in range(2))
        assert torch.allclose(gate, layer.gate.grad, atol=1e-5, rtol=0)
