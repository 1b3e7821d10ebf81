"""python -m hashprep.torch.train: 2 ranks (data parallel, and expert parallel) give what one
process gives; a stopped run resumes to the same losses; what it cannot run is refused by name;
divergence stops every rank before a checkpoint holds it; resumes refuse what differs; runs
never hang at exit, nor outlive their torchrun."""

import json
import math
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save  # noqa: E402

import hashprep  # noqa: E402
from hashprep.torch import eval as torch_eval  # noqa: E402
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
    top2 = tmp / "top2.arrow"
    hashprep.build_table(shards, top2, method="balanced", experts=8, top_k=2)
    multihash = tmp / "multi.arrow"
    hashprep.build_table(shards, multihash, method="balanced", experts=8, hashes=2)
    multi = ("--set", f"model.sparse.0.table={multihash}", "--set", "model.sparse.0.kind=multihash")
    switch = ("--set", 'model.sparse=[{at = 2, kind = "switch", experts = 4, capacity_factor = 1.0}]')
    base = ("--set", 'model.sparse=[{at = 2, kind = "base", experts = 4}]')
    top2_table = ("--set", f"model.sparse.0.table={top2}")
    fsdp = [(f"fsdp{ep}-{layer}", 2, ("--fsdp", *(("--ep", 2) if ep else ()), *sets))
            for layer, sets in [("top1", ()), ("top2", top2_table), ("multi", multi)] for ep in ("", "-ep2")]
    made = {}
    for name, ranks, extra in fsdp + [("one", 1, ()), ("dp2", 2, ()), ("ep2", 2, ("--ep", 2)),
                               ("one-top2", 1, top2_table),
                               ("dp2-top2", 2, top2_table), ("ep2-top2", 2, ("--ep", 2, *top2_table)),
                               ("one-multi", 1, multi), ("dp2-multi", 2, multi), ("ep2-multi", 2, ("--ep", 2, *multi)),
                               ("dp2-switch", 2, switch), ("ep2-switch", 2, ("--ep", 2, *switch)),
                               ("ep2-base", 2, ("--ep", 2, *base))]:
        done = train(config, tmp / name, *extra, ranks=ranks)
        assert done.returncode == 0, done.stderr[-3000:]
        made[name] = tmp / name
    stopped = train(config, tmp / "resumed", "--fsdp", "--ep", 2, "--stop-after", 2, ranks=2)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert [r["step"] for r in records(tmp / "resumed", "train")] == [1, 2]
    resumed = train(config, tmp / "resumed", "--fsdp", "--ep", 2, "--resume", ranks=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    made["resumed"] = tmp / "resumed"
    return made, config


@pytest.mark.parametrize("name,reference", [("dp2", "one"), ("ep2", "one"), ("resumed", "one"),
                                            ("dp2-top2", "one-top2"), ("ep2-top2", "one-top2"),
                                            ("dp2-multi", "one-multi"),
                                            ("ep2-multi", "one-multi"),
                                            *[(f"fsdp{ep}-{layer}", reference) for ep in ("", "-ep2")
                                              for layer, reference in [("top1", "one"), ("top2", "one-top2"),
                                                                       ("multi", "one-multi")]]])
def test_two_ranks_give_the_losses_and_weights_of_one_process(runs, name, reference, tmp_path):
    made, _ = runs
    one, other = records(made[reference], "train"), records(made[name], "train")
    assert [r["step"] for r in other] == [1, 2, 3]
    for a, b in zip(one, other):
        assert abs(a["loss"] - b["loss"]) < 1e-5, (a["step"], a["loss"], b["loss"])
        assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-4
        assert a["loads"] == b["loads"], "the same global batch, routed the same"
    assert one[0]["loss"] != one[2]["loss"], "training moves the loss"
    valid_one, valid_other = records(made[reference], "valid"), records(made[name], "valid")
    assert len(valid_one) == len(valid_other) == 1
    assert abs(valid_one[0]["loss"] - valid_other[0]["loss"]) < 1e-5
    expected, got = final_weights(made[reference], tmp_path), final_weights(made[name], tmp_path)
    assert sorted(expected) == sorted(got), "every expert saved once, by its rank"
    for key, value in expected.items():
        assert torch.allclose(value, got[key], atol=1e-5, rtol=0), key


@pytest.mark.parametrize("name", ["dp2-switch", "ep2-switch", "ep2-base"])
def test_switch_and_base_train_on_two_ranks_each_routing_its_own_batch(runs, name):
    """Per-rank routing (capacity, balanced assignment, load-balancing term per rank): finite,
    falling losses; loads that count every position of the global batch."""
    made, _ = runs
    train_records = records(made[name], "train")
    assert [r["step"] for r in train_records] == [1, 2, 3]
    losses = [r["loss"] for r in train_records]
    assert all(map(math.isfinite, losses)) and losses[2] < losses[0], losses
    for r in train_records:
        assert sum(r["loads"][0]["counts"]) == 4 * 16, r["loads"]
        if "switch" in name:
            assert r["aux_loss"] > 0 and len(r["loads"][0]["counts"]) == 5
        else:
            assert r["aux_loss"] == 0 and r["loads"][0]["counts"] == [16] * 4, "balanced on each rank"


def test_torch_eval_reads_sharded_checkpoints_on_one_process(runs, capsys):
    """`python -m hashprep.torch.eval` on checkpoints written with FSDP and experts sharded:
    every tensor under its global name, the numbers of the one-process run's checkpoint."""
    made, _ = runs
    results = {}
    for name in ("one", "fsdp-ep2-top1", "ep2-top2", "one-top2"):
        assert torch_eval.main(["--checkpoint", str(made[name]), "--batches", "2", "--json"]) == 0
        results[name] = json.loads(capsys.readouterr().out)
    for name, reference in (("fsdp-ep2-top1", "one"), ("ep2-top2", "one-top2")):
        assert results[name]["tokens"] == results[reference]["tokens"] > 0
        assert abs(results[name]["loss"] - results[reference]["loss"]) < 1e-5, name
        assert results[name]["loads"] == results[reference]["loads"]
    assert results["one"]["loss"] != results["one-top2"]["loss"]


def test_fsdp_refuses_what_it_cannot_shard_or_resume(runs, tmp_path):
    made, config = runs
    done = train(config, tmp_path / "run", "--fsdp")
    assert done.returncode == 2 and "--fsdp shards over the ranks of torchrun" in done.stderr, done.stderr[-2000:]
    ep2 = tmp_path / "ep2"
    shutil.copytree(made["ep2"], ep2)
    done = train(config, ep2, "--fsdp", "--ep", 2, "--resume", ranks=2)
    assert done.returncode != 0 and "written without --fsdp: resume the same way" in done.stderr, done.stderr[-2000:]


def test_frozen_weights_are_refused_by_name(runs, tmp_path):
    """Fine-tuning with frozen weights is hashtrain's: this trainer says so instead of training
    every weight."""
    _, config = runs
    done = train(config, tmp_path / "never", "--set", 'train.freeze=["experts"]')
    assert done.returncode == 2, done.stderr[-2000:]
    assert "train.freeze = ['experts']: fine-tuning with frozen weights is hashtrain's" in done.stderr


def test_metrics_records_have_hashtrains_fields(runs, tmp_path, hashtrain):
    made, config = runs
    hashtrain("run", "--config", config, "--out", tmp_path / "hashtrain")
    for kind in ("train", "valid"):
        ours, theirs = records(made["one"], kind)[-1], records(tmp_path / "hashtrain", kind)[-1]
        assert list(ours) == list(theirs), kind
        assert list(ours["loads"][0]) == list(theirs["loads"][0])
        assert ours["loads"][0]["counts"] == theirs["loads"][0]["counts"] or kind == "train"


def hashtrain_refusal(config, out, *sets):
    """hashtrain's exit code and message (after `hashtrain: error: `) for `run` with `sets`."""
    binary = os.environ.get("HASHTRAIN_BIN", str(pathlib.Path(__file__).resolve().parents[2] / "target" / "debug" / "hashtrain"))
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(os.path.dirname(torch.__file__), "lib"))
    args = [a for s in sets for a in ("--set", s)]
    done = subprocess.run([binary, "run", "--config", str(config), "--out", str(out), *args],
                          capture_output=True, text=True, env=env)
    return done.returncode, done.stderr.strip().removeprefix("hashtrain: error: ")


def test_a_config_is_refused_by_both_trainers_with_the_same_message(runs, tmp_path, shards, hashtrain):
    """One reader of the run config: what hashtrain refuses, the torch trainer refuses in the same
    words, settings named by their path in the config."""
    _, config = runs
    top2 = tmp_path / "top2.arrow"
    hashprep.build_table(shards, top2, method="balanced", experts=8, top_k=2)
    cases = [
        ("train.fancy=1",),  # not a setting: the TOML reader names it
        ("model.d_model=15",),
        ("train.lr=nan",),
        ("model.sparse.3.kind=hash",),  # an override that names no setting
        ("model.sparse.0.at=5",),
        ("model.sparse.0.scoring=softmax",),  # valid for a top-k table only: the table decides
        ("model.sparse.0.experts=4",),
        ("model.sparse.0.table_layer=1",),
        (f"model.sparse.0.table={top2}", "model.sparse.0.top_k=3"),
        ("train.batch_size=0",),
    ]
    for sets in cases:
        code, expected = hashtrain_refusal(config, tmp_path / "never", *sets)
        assert code == 2, (sets, expected)
        # What the torch trainer does first: read the config, open its loader.
        with pytest.raises(hashprep.Error) as refused:
            loaded = hashprep.RunConfig.load(config, overrides=list(sets))
            hashprep.Loader.for_run(loaded, loaded.data.train)
        # hashtrain writes the names of its own flags as flags (its `--device` among the keys
        # TOML lists for an unknown one); the torch trainer has no --device.
        # Both trainers say which run failed once the config is read.
        core = expected.replace("--device", "`device`").removeprefix(f"training {tmp_path / 'never'}: ")
        assert str(refused.value).replace("`set`", "--set").strip() == core, sets
    for sets in cases[3], cases[5], cases[8]:  # and the trainer itself, end to end
        done = train(config, tmp_path / "never", *[a for s in sets for a in ("--set", s)])
        assert done.returncode == 2, (sets, done.stderr[-2000:])
        assert done.stderr.strip() == f"error: {hashtrain_refusal(config, tmp_path / 'never', *sets)[1]}"
    assert "model.sparse[0].scoring weights the experts of a top-k table" in hashtrain_refusal(
        config, tmp_path / "never", "model.sparse.0.scoring=softmax")[1]
    with pytest.raises(hashprep.Error, match=r"`set` model.sparse.3.kind=hash: no element 3"):
        hashprep.RunConfig.load(config, overrides=["model.sparse.3.kind=hash"])


def test_experts_that_do_not_split_over_the_expert_parallel_groups_are_refused(runs, tmp_path):
    """Bad input, not a traceback: an --ep that does not divide the ranks, or a table's or a
    Switch layer's experts."""
    _, config = runs
    done = train(config, tmp_path / "run", "--ep", "2")
    assert done.returncode == 2 and "--ep 2 must divide the 1 ranks" in done.stderr, done.stderr[-2000:]
    odd = tmp_path / "odd.arrow"
    hashprep.build_table(hashprep.RunConfig.load(config).data.train, odd, method="balanced", experts=5)
    for setting, said in [(f"model.sparse.0.table={odd}", "--ep 2 does not divide the 5 experts of model.sparse[0]"),
                          ('model.sparse=[{at = 2, kind = "switch", experts = 3}]',
                           "--ep 2 does not divide the 3 experts of model.sparse[0]")]:
        done = train(config, tmp_path / "run", "--ep", "2", "--set", setting, ranks=2)
        assert done.returncode != 0 and said in done.stderr, done.stderr[-2000:]  # torchrun: 1


def test_bf16_trains_close_to_fp32(runs, tmp_path):
    """`train.precision = "bf16"`: autocast products, float32 weights and loss; the losses follow
    the fp32 run's within bfloat16's precision (hashtrain's GPU check uses 3e-2 too)."""
    made, config = runs
    done = train(config, tmp_path / "bf16", "--set", "train.precision=bf16")
    assert done.returncode == 0, done.stderr[-3000:]
    fp32, bf16 = records(made["one"], "train"), records(tmp_path / "bf16", "train")
    assert [r["step"] for r in bf16] == [1, 2, 3]
    for a, b in zip(fp32, bf16):
        assert abs(a["loss"] - b["loss"]) < 3e-2 * abs(a["loss"]), (a["step"], a["loss"], b["loss"])
    assert any(a["loss"] != b["loss"] for a, b in zip(fp32, bf16)), "bf16 was in effect"
    assert bf16[2]["loss"] < bf16[0]["loss"]


def strict_records(out):
    """metrics.jsonl as strict JSON: NaN or Infinity literals are refused."""
    def refuse(name):
        raise ValueError(f"{name} in metrics.jsonl")
    return [json.loads(line, parse_constant=refuse) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_divergence_stops_every_rank_before_any_checkpoint_holds_it(tmp_path, shards):
    table = tmp_path / "balanced8.arrow"
    hashprep.build_table(shards, table, method="balanced", experts=8)
    config = tmp_path / "run.toml"
    text = RUN_CONFIG.format(data=shards, table=table, kind="hash").replace("lr = 0.01", "lr = 1e30")
    config.write_text(text.replace("steps = 3", "steps = 6").replace("checkpoint_every = 2", "checkpoint_every = 1"))
    done = train(config, tmp_path / "run", ranks=2)
    assert done.returncode != 0
    # Both ranks stop, with hashtrain's words.
    assert done.stderr.count("training diverged at step 2") == 2, done.stderr[-3000:]
    records = strict_records(tmp_path / "run")
    assert [r["step"] for r in records] == [1, 2]
    assert records[1]["loss"] is None, "not finite, written as null"
    checkpoints = tmp_path / "run" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step-00000001"
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-00000001"]


def test_resume_refuses_other_settings_world_sizes_and_altered_files(runs, tmp_path):
    made, config = runs
    # Another world size and --ep: named, not a traceback.
    ep2 = tmp_path / "ep2"
    shutil.copytree(made["ep2"], ep2)
    done = train(config, ep2, "--resume")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "written by 2 rank(s) with --ep 2, resumed by 1 with --ep 1" in done.stderr, done.stderr
    # A setting that shapes the losses, named with both values.
    one = tmp_path / "one"
    shutil.copytree(made["one"], one)
    changed = tmp_path / "changed.toml"
    changed.write_text(config.read_text().replace("lr = 0.01", "lr = 0.02"))
    done = train(changed, one, "--resume")
    assert done.returncode == 2
    assert "train.lr (0.01 in the checkpoint, 0.02 now)" in done.stderr, done.stderr
    # A flipped byte inside a shard of the checkpoint.
    latest = one / "checkpoints" / (one / "checkpoints" / "latest").read_text().strip()
    shard = sorted(latest.glob("*.distcp"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    done = train(config, one, "--resume")
    assert done.returncode == 2
    assert f"{shard}: checksum mismatch" in done.stderr, done.stderr


def test_resume_without_a_checkpoint_starts_over_saying_so(runs, tmp_path):
    _, config = runs
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"type": "train", "step": 1, "loss": 9.0}\n')
    done = train(config, out, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no checkpoint was completed yet: starting the run over" in done.stderr
    assert [r["step"] for r in records(out, "train")] == [1, 2, 3]
    assert records(out, "train")[0]["loss"] != 9.0


EXIT_CHECK = pathlib.Path(__file__).with_name("train_exit_check.py")


def test_two_rank_runs_end_and_free_everything_before_exit(runs, tmp_path):
    """10 short 2-rank runs, each under a timeout: every rank exits, and `main` leaves no torch
    module (a DDP wrapper holds its process group) to be destroyed during interpreter shutdown."""
    _, config = runs
    short = tmp_path / "short.toml"
    short.write_text(config.read_text().replace("steps = 3", "steps = 1"))
    for i in range(10):
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        extra = ["--ep", "2"] if i % 2 else []
        try:
            done = subprocess.run([*launch, str(EXIT_CHECK), "--config", str(short), "--out", str(tmp_path / f"r{i}"), *extra],
                                  capture_output=True, text=True, timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {i} did not end within 90 s")
        assert done.returncode == 0, done.stderr[-3000:]


def test_workers_end_when_torchrun_is_killed(runs, tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("parent-death signals are Linux's")
    _, config = runs
    long = tmp_path / "long.toml"
    long.write_text(config.read_text().replace("steps = 3", "steps = 100000").replace("checkpoint_every = 2", "checkpoint_every = 0"))
    out = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                                 "-m", "hashprep.torch.train", "--config", str(long), "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
            assert time.monotonic() < deadline and launcher.poll() is None, "the run did not start"
            time.sleep(0.2)
        workers = children(launcher.pid)
        assert len(workers) == 2, workers
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [pid for pid in workers if alive(pid)]
    finally:
        for pid in children(launcher.pid) if launcher.poll() is None else []:
            os.kill(pid, signal.SIGKILL)
        launcher.kill()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} outlived their torchrun"


def children(pid):
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid):
    """Running (not a zombie waiting for its reaper)."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
