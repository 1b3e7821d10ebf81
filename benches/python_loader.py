"""Throughput of `for batch in hashprep.Loader(...)` from Python, next to the Rust loader bench
(benches/loader.rs: same data, B = 64, T = 1024, 60 batches, best of three, one table of 64
experts). Prints tokens per second with 1 and 2 workers, and the same loop without tables.

    python benches/python_loader.py      # after `make python`
"""

import os
import tempfile
import time

import hashprep

BATCH, SEQ, STEPS = 64, 1024, 60
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def tokens_per_second(data, tables, workers):
    best = float("inf")
    for seed in range(3):
        loader = hashprep.Loader(data, tables, batch_size=BATCH, seq_len=SEQ, seed=seed,
                                 drop_last=True, workers=workers)
        started = time.perf_counter()
        n = 0
        for batch in loader.take(STEPS):
            n += batch.input_ids.size
        best = min(best, time.perf_counter() - started)
    return n / best


def main():
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [os.path.join(ROOT, "data", "wikitext-103", f"wiki.{s}.tokens") for s in ("valid", "test")]
        data = os.path.join(tmp, "data")
        hashprep.tokenize(inputs, data, format="wikitext103", tokenizer="gpt2", progress=False)
        table = os.path.join(tmp, "balanced.arrow")
        hashprep.build_table(data, table, method="balanced", experts=64)
        for workers in (1, 2):
            plain = tokens_per_second(data, [], workers)
            routed = tokens_per_second(data, [table], workers)
            print(f"python loop, {workers} worker(s): no table {plain / 1e6:.1f}M tokens/s, "
                  f"1 table {routed / 1e6:.1f}M tokens/s")


if __name__ == "__main__":
    main()
