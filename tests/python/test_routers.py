"""Switch, Token-Switch and BASE on torch: `python -m hashprep.torch.eval` gives `hashtrain eval`'s
numbers on hashtrain's checkpoints, a training step from hashtrain's weights gives its loss,
load-balancing term and gradient norm on the same batch, and BASE assigns as hashtrain does."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hashprep  # noqa: E402
from conftest import RUN_CONFIG  # noqa: E402
from hashprep.torch import eval as torch_eval  # noqa: E402
from hashprep.torch.train import Distributed, Trainer  # noqa: E402

# Each kind with the settings it is tested under (a capacity that drops tokens for Switch).
KINDS = {
    "switch": "experts = 4\ncapacity_factor = 1.0\nload_bal = 0.05",
    "token-switch": "experts = 4\nload_bal = 0.05",
    "base": "experts = 4",
}


def routed_config(tmp_path, shards, kind):
    config = tmp_path / f"{kind}.toml"
    text = RUN_CONFIG.format(data=shards, table="-", kind=kind)
    config.write_text(text.replace('table = "-"', KINDS[kind]))
    return config


def evaluate_in_torch(capsys, *args):
    assert torch_eval.main([*map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def hashtrain_runs(tmp_path_factory, shards, hashtrain):
    tmp = tmp_path_factory.mktemp("routed")
    runs = {}
    for kind in KINDS:
        config = routed_config(tmp, shards, kind)
        hashtrain("run", "--config", config, "--out", tmp / kind)
        runs[kind] = (config, tmp / kind)
    return runs


@pytest.mark.parametrize("kind", list(KINDS))
def test_torch_eval_reproduces_hashtrain_eval_on_its_checkpoint(hashtrain_runs, kind, shards, hashtrain, capsys):
    _, run = hashtrain_runs[kind]
    expected = json.loads(hashtrain("eval", "--checkpoint", run, "--data", shards, "--batches", 3, "--json"))
    got = evaluate_in_torch(capsys, "--checkpoint", run, "--data", shards, "--batches", 3)
    assert got["checkpoint"] == expected["checkpoint"] and got["step"] == expected["step"] == 3
    assert got["tokens"] == expected["tokens"]
    assert abs(got["loss"] - expected["loss"]) < 1e-5, (got["loss"], expected["loss"])
    assert [(r["layer"], r["kind"], r["counts"]) for r in got["loads"]] == \
        [(r["layer"], r["kind"], r["counts"]) for r in expected["loads"]]
    assert len(got["loads"][0]["counts"]) == 4 + (kind != "base"), "Switch counts the dropped tokens last"


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_training_step_from_hashtrains_weights_gives_its_loss_aux_and_gradient_norm(hashtrain_runs, kind):
    """hashtrain's step 3 ran on its step-2 checkpoint; so does the torch trainer here: the
    training-mode routing (capacity, balanced assignment) and the load-balancing term included."""
    config_path, run = hashtrain_runs[kind]
    folder = run / "checkpoints" / "step-00000002"
    config = hashprep.RunConfig.load(config_path)
    trainer = Trainer(config, Distributed(1, torch.device("cpu")), torch.device("cpu"))
    torch_eval.load_weights(trainer, folder, "hashtrain")
    trainer.train_loader.load_state(json.loads((folder / "state.json").read_text())["loader"])
    batch = next(trainer.train_loader.take(1))
    loss, aux, grad_norm, _ = trainer.step(batch, 3)
    expected = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    step3 = next(r for r in expected if r["type"] == "train" and r["step"] == 3)
    assert abs(loss.item() - step3["loss"]) < 1e-5, (loss.item(), step3["loss"])
    assert abs(aux.item() - step3["aux_loss"]) < 1e-6, (aux.item(), step3["aux_loss"])
    assert (aux.item() > 0) == (kind != "base"), "Switch layers have a load-balancing term, BASE none"
    assert abs(grad_norm.item() - step3["grad_norm"]) < 1e-4 * max(1.0, step3["grad_norm"])
    counts = trainer.model.routed_counts()[2]
    assert counts == step3["loads"][0]["counts"], "the same tokens to the same experts"
    if kind == "switch":
        assert counts[-1] > 0, "capacity 1.0 dropped tokens"
    if kind == "base":
        assert counts == [16] * 4, "balanced: 64 positions over 4 experts"
    trainer.close()


def test_balanced_assignment_fills_every_expert_and_refuses_scores_that_are_not_finite():
    scores = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    assigned = hashprep.balanced_assignment(scores)
    assert assigned.dtype == np.uint32 and assigned.shape == (10,)
    assert np.bincount(assigned, minlength=4).tolist() == [3, 3, 2, 2]
    # Each token's favourite when nothing competes for it.
    easy = np.full((4, 4), -1.0, dtype=np.float32)
    np.fill_diagonal(easy, 5.0)
    assert hashprep.balanced_assignment(easy[[2, 0, 3, 1]]).tolist() == [2, 0, 3, 1]
    scores[3, 1] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        hashprep.balanced_assignment(scores)
