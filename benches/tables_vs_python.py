#!/usr/bin/env python3
"""hashprep build-table against the Python tools people use for the same job.

1. k-means for `clustered` / `dispersed`: `hashprep build-table --method clustered` (greedy
   k-means++, one run, at most 300 iterations, tol 1e-4) against scikit-learn `KMeans` with
   the same settings, on the same seeded float32 embeddings (default 50k x 256, K = 64).
   Both end to end on the same file; the inertia of both clusterings is reported too, so a
   faster but worse clustering shows.
2. `balanced` on a 270k-id Zipf vocabulary: hashprep (greedy + refinement, and greedy only)
   against the paper-style Python implementation of the greedy rule with `heapq`.

Prints seconds, the ratios, and the balance reached. Run with `make bench`.
"""
import argparse
import heapq
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc

REPO = Path(__file__).resolve().parent.parent


def write_counts(path: Path, counts: np.ndarray) -> None:
    schema = pa.schema([("token_id", pa.uint32()), ("count", pa.uint64())],
                       metadata={"hashprep.schema": "counts", "hashprep.version": "1",
                                 "hashprep.tokenizer_fingerprint": "blake3:benchmark"})
    table = pa.table({"token_id": np.arange(len(counts), dtype=np.uint32), "count": counts.astype(np.uint64)},
                     schema=schema)
    with pa.ipc.new_file(str(path), schema) as writer:
        writer.write_table(table)


def read_column(path: Path, name: str = "expert") -> np.ndarray:
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all().column(name).to_numpy()


def inertia(x: np.ndarray, labels: np.ndarray) -> float:
    total = 0.0
    for c in np.unique(labels):
        members = x[labels == c].astype(np.float64)
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def kmeans_bench(hashprep: str, work: Path, n: int, dim: int, k: int) -> None:
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (k, dim)).astype(np.float32)
    x = centres[rng.integers(0, k, n)] + rng.normal(0, 0.6, (n, dim)).astype(np.float32)
    np.save(work / "emb.npy", x)
    write_counts(work / "counts-emb.arrow", np.ones(n, dtype=np.uint64))
    t_hp, _ = timed(lambda: run([hashprep, "build-table", "--counts", str(work / "counts-emb.arrow"), "--method",
                                 "clustered", "--experts", str(k), "--embeddings", str(work / "emb.npy"),
                                 "--out", str(work / "clustered.arrow")]))
    t_sk, model = timed(lambda: KMeans(n_clusters=k, n_init=1, max_iter=300, tol=1e-4, random_state=0).fit(
        np.load(work / "emb.npy")))
    i_hp = inertia(x, read_column(work / "clustered.arrow"))
    i_sk = inertia(x, model.labels_)
    print(f"k-means, {n} x {dim} float32, K = {k} (end to end, same file)")
    print(f"  scikit-learn KMeans                {t_sk:8.2f} s   inertia {i_sk:.4g}")
    print(f"  hashprep build-table clustered     {t_hp:8.2f} s   inertia {i_hp:.4g}")
    print(f"  speed ratio hashprep / sklearn: {t_sk / t_hp:5.2f}x   inertia ratio: {i_hp / i_sk:5.3f}")


def python_greedy(counts: np.ndarray, k: int) -> np.ndarray:
    order = sorted(range(len(counts)), key=lambda t: (-int(counts[t]), t))
    heap = [(0, e) for e in range(k)]
    assignment = np.zeros(len(counts), dtype=np.uint32)
    for t in order:
        load, e = heapq.heappop(heap)
        assignment[t] = e
        heapq.heappush(heap, (load + int(counts[t]), e))
    return assignment


def balanced_bench(hashprep: str, work: Path, vocab: int, k: int, exponent: float) -> None:
    rng = np.random.default_rng(1)
    counts = (1e9 / np.arange(1, vocab + 1) ** exponent).astype(np.uint64)
    counts = counts[rng.permutation(vocab)]
    counts[rng.integers(0, vocab, vocab // 20)] = 0
    write_counts(work / "counts-zipf.arrow", counts)
    base = [hashprep, "build-table", "--counts", str(work / "counts-zipf.arrow"), "--method", "balanced",
            "--experts", str(k)]
    t_py, py = timed(lambda: python_greedy(counts, k))
    t_greedy, _ = timed(lambda: run(base + ["--no-refine", "--out", str(work / "greedy.arrow")]))
    t_refined, _ = timed(lambda: run(base + ["--out", str(work / "refined.arrow")]))
    greedy = read_column(work / "greedy.arrow")
    assert (greedy == py).all(), "hashprep's greedy differs from the Python rule"
    bound = max(counts.sum() / k, counts.max())
    def ratio(assignment):
        return np.bincount(assignment, weights=counts.astype(np.float64), minlength=k).max() / bound
    print(f"balanced, {vocab} ids (Zipf, exponent {exponent}), K = {k}")
    print(f"  Python heapq greedy                {t_py:8.2f} s   max load / bound {ratio(py):.6f}")
    print(f"  hashprep greedy (--no-refine)      {t_greedy:8.2f} s   max load / bound {ratio(greedy):.6f}")
    print(f"  hashprep greedy + refinement       {t_refined:8.2f} s   max load / bound "
          f"{ratio(read_column(work / 'refined.arrow')):.6f}")
    print(f"  speed ratio hashprep greedy / Python: {t_py / t_greedy:5.1f}x   (identical assignment)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashprep", default=str(REPO / "target/release/hashprep"))
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=270_000)
    parser.add_argument("--workdir", default=str(REPO / "target/bench/tables"))
    parser.add_argument("--only", choices=["balanced", "kmeans"], help="run one of the two")
    args = parser.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    # 1.07: a word-level vocabulary, where the most frequent token alone sets the bound;
    # 0.6: a flatter (BPE-like) distribution, where the bound is total / K and refinement matters.
    if args.only != "kmeans":
        for exponent in (1.07, 0.6):
            balanced_bench(args.hashprep, work, args.vocab, args.k, exponent)
    if args.only != "balanced":
        kmeans_bench(args.hashprep, work, args.n, args.dim, args.k)


if __name__ == "__main__":
    sys.exit(main())
