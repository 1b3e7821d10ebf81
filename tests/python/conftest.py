"""Fixtures of the Python package's tests: the CLI to compare with, and real Wikitext text."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
WIKI = ROOT / "data" / "wikitext-103"


@pytest.fixture(scope="session")
def cli():
    """Runs the `hashprep` binary (HASHPREP_BIN, default target/debug/hashprep); stdout back."""
    binary = os.environ.get("HASHPREP_BIN", str(ROOT / "target" / "debug" / "hashprep"))
    assert pathlib.Path(binary).exists(), f"{binary}: build the CLI first (cargo build)"

    def run(*args):
        done = subprocess.run(
            [binary, "--no-progress", *map(str, args)], capture_output=True, text=True
        )
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
