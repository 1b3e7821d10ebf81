"""Fixtures of the Python package's tests: the CLI to compare with, and real Wikitext text."""

import os
import pathlib
import socket
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
WIKI = ROOT / "data" / "wikitext-103"


@pytest.fixture(scope="session")
def cli_result():
    """Runs the `hashprep` binary (HASHPREP_BIN, default target/debug/hashprep); the finished
    process back (exit code, stdout, stderr)."""
    binary = os.environ.get("HASHPREP_BIN", str(ROOT / "target" / "debug" / "hashprep"))
    assert pathlib.Path(binary).exists(), f"{binary}: build the CLI first (cargo build)"

    def run(*args):
        return subprocess.run([binary, "--no-progress", *map(str, args)], capture_output=True, text=True)

    return run


@pytest.fixture(scope="session")
def cli(cli_result):
    """As `cli_result`, for runs that must succeed: stdout back."""

    def run(*args):
        done = cli_result(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@pytest.fixture(scope="session")
def wiki_test():
    return WIKI / "wiki.test.tokens"


@pytest.fixture(scope="session")
def shards(tmp_path_factory, wiki_test):
    """Wikitext-103 test text through GPT-2, by the package."""
    import hashprep

    out = tmp_path_factory.mktemp("data") / "gpt2"
    hashprep.tokenize([wiki_test], out, format="wikitext103", tokenizer="gpt2", progress=False)
    return out


# A tiny hashtrain run config: 2 layers of 16, layer 2 a `kind` layer over `table`, 3 steps.
RUN_CONFIG = """
[data]
train = "{data}"
valid = "{data}"

[model]
layers = 2
d_model = 16
d_ff = 32
heads = 2
dropout = 0.0
context = 16

[[model.sparse]]
at = 2
kind = "{kind}"
table = "{table}"

[train]
steps = 3
batch_size = 4
lr = 0.01
warmup = 1
# Adam moves a weight by ~lr whatever the size of its gradient once that is well above eps: the
# attention's key bias (a gradient of 0 up to rounding) and barely used hidden units would turn
# rounding differences between 1 and 2 processes into lr-sized ones. eps damps those.
eps = 1e-3
eval_every = 0
eval_batches = 2
log_every = 1
checkpoint_every = 2
threads = 1
"""


@pytest.fixture(scope="session")
def hashtrain():
    """Runs the `hashtrain` binary (HASHTRAIN_BIN, default target/debug/hashtrain); stdout back."""
    binary = os.environ.get("HASHTRAIN_BIN", str(ROOT / "target" / "debug" / "hashtrain"))
    assert pathlib.Path(binary).exists(), f"{binary}: build hashtrain first (cargo build)"
    import torch

    env = dict(os.environ)
    torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
    env["LD_LIBRARY_PATH"] = torch_lib + os.pathsep + env.get("LD_LIBRARY_PATH", "")

    def run(*args):
        done = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def run_gloo_ranks(fn, *args, ranks=2):
    """Runs `fn(rank, world_size, *args)` in `ranks` processes joined in a gloo group."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gloo_rank, args=(ranks, port, fn, args), nprocs=ranks, join=True)


def _gloo_rank(rank, world_size, port, fn, args):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def write_word_level_tokenizer(path, vocab, specials):
    """A word-level `tokenizer.json` (whitespace-split words, `[UNK]` for the rest) of `vocab`
    (token -> id), with `specials` as its special tokens."""
    import json

    path.write_text(json.dumps({
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for t in specials],
        "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }))
