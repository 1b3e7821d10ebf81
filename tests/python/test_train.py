"""python -m hashprep.torch.train: 2 ranks (data parallel, and expert parallel) give what one
process gives; a stopped run resumes to the same losses; what it cannot run is refused by name."""

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save  # noqa: E402

import hashprep  # noqa: E402
from conftest import RUN_CONFIG  # noqa: E402



def train(config, out, *extra, ranks=1):
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks > 1 else [sys.executable]
    done = subprocess.run([*launch, "-m", "hashprep.torch.train", "--config", str(config), "--out", str(out), *map(str, extra)],
                          capture_output=True, text=True, timeout=300)
    return done


def records(out, kind):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def final_weights(out, tmp_path):
    folder = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    flat = tmp_path / f"{out.name}.pt"
    dcp_to_torch_save(folder, flat)
    return torch.load(flat, weights_only=False)["model"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, shards):
    tmp = tmp_path_factory.mktemp("train")
    table = tmp / "balanced8.arrow"
    hashprep.build_table(shards, table, method="balanced", experts=8)
    config = tmp / "run.toml"
    config.write_text(RUN_CONFIG.format(data=shards, table=table, kind="hash"))
    made = {}
    for name, ranks, extra in [("one", 1, ()), ("dp2", 2, ()), ("ep2", 2, ("--ep", 2))]:
        done = train(config, tmp / name, *extra, ranks=ranks)
        assert done.returncode == 0, done.stderr[-3000:]
        made[name] = tmp / name
    stopped = train(config, tmp / "resumed", "--ep", 2, "--stop-after", 2, ranks=2)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert [r["step"] for r in records(tmp / "resumed", "train")] == [1, 2]
    resumed = train(config, tmp / "resumed", "--ep", 2, "--resume", ranks=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    made["resumed"] = tmp / "resumed"
    return made, config


@pytest.mark.parametrize("name", ["dp2", "ep2", "resumed"])
def test_two_ranks_give_the_losses_and_weights_of_one_process(runs, name, tmp_path):
    made, _ = runs
    one, other = records(made["one"], "train"), records(made[name], "train")
    assert [r["step"] for r in other] == [1, 2, 3]
    for a, b in zip(one, other):
        assert abs(a["loss"] - b["loss"]) < 1e-5, (a["step"], a["loss"], b["loss"])
        assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-4
        assert a["loads"] == b["loads"], "the same global batch, routed the same"
    assert one[0]["loss"] != one[2]["loss"], "training moves the loss"
    valid_one, valid_other = records(made["one"], "valid"), records(made[name], "valid")
    assert len(valid_one) == len(valid_other) == 1
    assert abs(valid_one[0]["loss"] - valid_other[0]["loss"]) < 1e-5
    expected, got = final_weights(made["one"], tmp_path), final_weights(made[name], tmp_path)
    assert sorted(expected) == sorted(got), "every expert saved once, by its rank"
    for key, value in expected.items():
        assert torch.allclose(value, got[key], atol=1e-5, rtol=0), key


def test_metrics_records_have_hashtrains_fields(runs, tmp_path, hashtrain):
    made, config = runs
    hashtrain("run", "--config", config, "--out", tmp_path / "hashtrain")
    for kind in ("train", "valid"):
        ours, theirs = records(made["one"], kind)[-1], records(tmp_path / "hashtrain", kind)[-1]
        assert list(ours) == list(theirs), kind
        assert list(ours["loads"][0]) == list(theirs["loads"][0])
        assert ours["loads"][0]["counts"] == theirs["loads"][0]["counts"] or kind == "train"


def test_what_it_cannot_run_is_refused_by_name(tmp_path, shards):
    config = tmp_path / "switch.toml"
    config.write_text(RUN_CONFIG.format(data=shards, table="", kind="switch"))
    done = train(config, tmp_path / "run")
    assert done.returncode == 2
    assert "`model.sparse[0]`.kind = 'switch'" in done.stderr and "hash and dense" in done.stderr
    config.write_text(RUN_CONFIG.format(data=shards, table="", kind="dense") + "fancy = 1\n")
    done = train(config, tmp_path / "run")
    assert done.returncode == 2 and "`train.fancy` is not a setting" in done.stderr, done.stderr
    # hashtrain's own GPU settings: the kernel choice is accepted, bf16 refused by name.
    config.write_text(RUN_CONFIG.format(data=shards, table="", kind="dense") + 'precision = "bf16"\n')
    done = train(config, tmp_path / "run")
    assert done.returncode == 2 and "`train.precision = 'bf16'`" in done.stderr, done.stderr
