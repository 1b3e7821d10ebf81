"""Loader batches: the same as `hashprep batches --json`, without copies, resumable."""

import json

import numpy as np
import pytest

import hashprep


@pytest.fixture(scope="module")
def tables(tmp_path_factory, shards):
    out = tmp_path_factory.mktemp("tables")
    hashprep.build_table(shards, out / "balanced.arrow", method="balanced", experts=8)
    hashprep.build_table(shards, out / "multi.arrow", method="random", experts=4, hashes=2)
    return [out / "balanced.arrow", out / "multi.arrow"]


def as_json(batch):
    """A batch as `hashprep batches --json` writes it."""
    rows, t = batch.input_ids.shape
    return {
        "index": batch.index,
        "epoch": batch.epoch,
        "rows": rows,
        "seq_len": t,
        "input_ids": batch.input_ids.ravel().tolist(),
        "targets": batch.targets.ravel().tolist(),
        "loss_mask": batch.loss_mask.ravel().astype(int).tolist(),
        "routes": [
            {
                "spec": r.spec,
                "hash": r.hash,
                "experts": r.experts,
                "top_k": r.top_k,
                "expert_ids": r.expert_ids.ravel().tolist(),
                "order": r.order.tolist(),
                "slots": r.slots.tolist(),
                "offsets": r.offsets.tolist(),
                "peer_counts": r.peer_counts.ravel().tolist(),
            }
            for r in batch.routes
        ],
    }


def cli_batches(cli, shards, tables, steps, start=0):
    args = ["batches", "--data", shards, "--batch-size", 4, "--seq-len", 32, "--seed", 3,
            "--steps", steps, "--start", start, "--json"]
    for table in tables:
        args += ["--table", table]
    return [json.loads(line) for line in cli(*args).splitlines()]


@pytest.mark.parametrize("workers", [1, 3])
def test_batches_equal_the_cli_for_any_worker_count(cli, shards, tables, workers):
    loader = hashprep.Loader(shards, tables, batch_size=4, seq_len=32, seed=3, workers=workers)
    got = [as_json(b) for b in loader.take(6)]
    assert got == cli_batches(cli, shards, tables, 6)
    assert [r.method for r in loader.routes] == ["balanced", "random", "random"]


def test_peer_counts_equal_the_cli_with_expert_parallel(cli, shards, tables):
    loader = hashprep.Loader(shards, tables, batch_size=4, seq_len=32, seed=3, rank=1, world_size=2,
                             expert_parallel=2)
    got = [as_json(b) for b in loader.take(2)]
    assert got == [json.loads(line) for line in cli(
        "batches", "--data", shards, "--batch-size", 4, "--seq-len", 32, "--seed", 3, "--steps", 2,
        "--rank", 1, "--world-size", 2, "--expert-parallel", 2, "--table", tables[0], "--table", tables[1],
        "--json").splitlines()]
    route = loader.take(1).__next__().routes[0]
    assert route.peer_counts.shape == (2, 8)
    assert (route.peer_counts[1] == np.diff(route.offsets)).all(), "row rank % E is this rank's"


def test_state_continues_exactly_there(cli, shards, tables):
    loader = hashprep.Loader(shards, tables, batch_size=4, seq_len=32, seed=3)
    list(loader.take(4))
    state = json.loads(json.dumps(loader.state()))
    assert state["next_batch"] == 4
    other = hashprep.Loader(shards, tables, batch_size=4, seq_len=32, seed=3, workers=2)
    other.load_state(state)
    assert [as_json(b) for b in other.take(3)] == cli_batches(cli, shards, tables, 3, start=4)
    foreign = hashprep.Loader(shards, tables, batch_size=4, seq_len=32, seed=4)
    with pytest.raises(hashprep.Error, match="`seed` is 4 here but 3 in the loader state"):
        foreign.load_state(state)


def test_iterating_yields_one_epoch_of_int64_arrays_without_copies(shards, tables):
    loader = hashprep.Loader(shards, tables, batch_size=8, seq_len=64)
    batches = list(loader)
    assert len(batches) == loader.batches_per_epoch
    assert [b.index for b in batches] == list(range(len(batches)))
    batch = batches[0]
    assert batch.input_ids.dtype == np.int64 and batch.input_ids.shape == (8, 64)
    assert batch.loss_mask.dtype == np.bool_
    for array in [batch.input_ids, batch.targets, batch.routes[0].order, batch.routes[0].offsets]:
        assert not array.flags.owndata, "handed over from Rust, not copied into numpy"
    route = batch.routes[0]
    assert route.offsets[-1] == 8 * 64 and len(route.offsets) == 8 + 1
    # The order groups positions by expert.
    experts = route.expert_ids.ravel()[route.order]
    assert (np.diff(experts) >= 0).all()
    assert list(loader) != [] and loader.state()["next_batch"] == 2 * len(batches)
