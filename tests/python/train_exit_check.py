"""Runs `python -m hashprep.torch.train`'s `main` under torchrun (as `torchrun ... this file ARGS`)
and then fails (exit code 3) if it left any torch module alive: whatever `main` leaves to the
cyclic collector is destroyed at an arbitrary time, possibly during interpreter shutdown, where a
DDP wrapper holding the last reference to a gloo process group can hang the rank forever.

The collector is off from the start, so anything `main` does not free itself shows up here.
MODULE (environment) names another trainer module to check, e.g. an older version of it."""

import gc
import importlib
import os
import sys
import warnings

gc.disable()
train = importlib.import_module(os.environ.get("MODULE", "hashprep.torch.train"))

import torch  # noqa: E402

code = train.main(sys.argv[1:])
warnings.simplefilter("ignore")  # isinstance on deprecated torch aliases warns
alive = sorted({type(o).__name__ for o in gc.get_objects() if isinstance(o, torch.nn.Module)})
if alive:
    print(f"rank {os.environ.get('RANK')}: modules alive after main: {', '.join(alive)}", file=sys.stderr)
    sys.exit(3)
sys.exit(code)
