"""Evaluates a checkpoint with the torch model: the counterpart of `hashtrain eval`.

    python -m hashprep.torch.eval --checkpoint PATH [--data DIR] [--batches N] [--json]
    torchrun --nproc-per-node N -m hashprep.torch.eval --checkpoint PATH --ep E ...

`PATH`: a run folder or one of its checkpoints, written by `hashtrain run` (`model.safetensors`
and `state.json`; the routing tables are the checkpoint's own copies) or by
`hashprep.torch.train` (torch.distributed.checkpoint files and `run.json`; read on any world
size and `--ep`: every tensor is saved under its global name). `--data`: a tokenize output
(default: the run's test data, else its validation data). Prints the mean loss per token, the
perplexity, the tokens counted and the loads per sparse layer; `--json` as `hashtrain eval
--json` writes them. Exit 2 for a checkpoint or data it cannot use, naming it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

import hashprep

from .train import ConfigError, Distributed, Trainer, run_device, shut_down


def resolve(path: pathlib.Path) -> pathlib.Path:
    """The checkpoint folder `path` names: itself, or the latest of a run or checkpoints folder."""
    for checkpoints in (path / "checkpoints", path):
        latest = checkpoints / "latest"
        if latest.is_file():
            return checkpoints / latest.read_text().strip()
    if (path / "state.json").is_file() or (path / "run.json").is_file():
        return path
    raise ConfigError(f"{path}: neither a run folder nor a checkpoint (no checkpoints/latest, state.json or run.json)")


def read_config(folder: pathlib.Path, data: Optional[pathlib.Path]) -> Tuple[hashprep.RunConfig, pathlib.Path, str]:
    """The run config of the checkpoint in `folder` with its training and validation data set to
    the data to evaluate (and, for hashtrain's checkpoints, its tables to the checkpoint's
    copies), that data, and which trainer wrote the checkpoint."""
    copies: Dict[pathlib.Path, pathlib.Path] = {}
    if (folder / "state.json").is_file():
        origin, state = folder / "state.json", json.loads((folder / "state.json").read_text())
        text, writer = json.dumps(state["config"]), "hashtrain"
        read = hashprep.RunConfig.from_json
        copies = {pathlib.Path(t["source"]): folder / t["file"] for t in state["tables"]}
    else:
        origin, writer = folder / "run.json", "torch"
        text, read = json.loads((folder / "run.json").read_text())["config"], hashprep.RunConfig.parse
    then = read(text, origin)
    tables = [f"model.sparse.{i}.table={copies[s.table]}" for i, s in enumerate(then.model.sparse)
              if s.table is not None and s.table in copies]
    data = data or then.data.test or then.data.valid
    return read(text, origin, [*tables, f"data.train={data}", f"data.valid={data}"]), data, writer


def load_weights(trainer: Trainer, folder: pathlib.Path, writer: str) -> None:
    """The checkpoint's weights into the model: this rank's share of them under `--ep`."""
    model = trainer.model
    if writer == "torch":
        state = {"model": get_model_state_dict(model)}
        dcp_load(state, checkpoint_id=folder, no_dist=not trainer.place.on)
        set_model_state_dict(model, state["model"])
        return
    from safetensors.torch import load_file

    weights = load_file(folder / "model.safetensors")
    mine = model.state_dict()
    missing = sorted(set(mine) - set(weights))
    if missing:
        raise ConfigError(f"{folder / 'model.safetensors'}: no {missing[0]} (another model than the run config's)")
    for name, value in mine.items():
        if weights[name].shape != value.shape:
            raise ConfigError(f"{folder / 'model.safetensors'}: {name} is {list(weights[name].shape)}, "
                              f"the run config's model has {list(value.shape)}")
    model.load_state_dict({name: weights[name] for name in mine})


def evaluate(folder: pathlib.Path, config: hashprep.RunConfig, writer: str, batches: int,
             place: Distributed, device: torch.device) -> Dict[str, Any]:
    trainer = Trainer(config, place, device)
    try:
        load_weights(trainer, folder, writer)
        return trainer.evaluate(batches)
    finally:
        trainer.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hashprep.torch.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True, help="a run folder or checkpoint")
    parser.add_argument("--data", type=pathlib.Path, help="the tokenize output to evaluate on")
    parser.add_argument("--batches", type=int, default=0, help="batches to evaluate (0: one epoch)")
    parser.add_argument("--ep", type=int, default=1, help="expert-parallel group size E (under torchrun)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    place = None
    try:
        folder = resolve(args.checkpoint)
        config, data, writer = read_config(folder, args.data)
        device = run_device(config)
        place = Distributed(args.ep, device)
        result = evaluate(folder, config, writer, args.batches, place, device)
    except (ConfigError, hashprep.Error) as e:
        print(f"error: evaluating {args.checkpoint}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: evaluating {args.checkpoint}: {e}", file=sys.stderr)
        return 1
    finally:
        shut_down(None, place)
    step = int(folder.name.split("-")[1]) if folder.name.startswith("step-") else None
    result = {"checkpoint": str(folder), "step": step, "data": str(data), **result}
    if place.rank == 0:
        print(json.dumps(result, indent=2) if args.json else summary(result))
    return 0


def summary(result: Dict[str, Any]) -> str:
    lines = [f"{result['checkpoint']} (step {result['step']}) on {result['data']}: loss {result['loss']:.4f}, "
             f"ppl {result['ppl']:.2f} over {result['tokens']} tokens"]
    lines += [f"  layer {load['layer']} ({load['kind']}): max/mean load {load['max_over_mean']:.3f}"
              for load in result["loads"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
