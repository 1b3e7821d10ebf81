#!/usr/bin/env python3
"""The whole Reddit pipeline on generated pushshift dumps of at least 1 GB (uncompressed).

Generates seeded comment and submission dumps (threads of random shape spread over two
"months", comments in shuffled order, some deleted, HTML entities), then runs
`hashprep tokenize --format reddit` (partition to spill files, rebuild threads, tokenize, write
shards) and, as the anchor measured in the same run, `hashprep tokenize --format jsonl
--text-field body` over the same comment file (reading and tokenizing the same bodies without
thread reconstruction). The two take turns --repeat times (default 3); prints the median
seconds, comments/s and peak memory of each, and the ratio of the medians.
Run with `make bench` (or directly: --gb 0.1 for a quick look).
"""
import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORDS = ("the a of to and in is it you that for on this with be are not have but what just like "
         "&amp; &gt; &lt; would if so can about people think they one get more your was do my an").split()


def generate(directory: Path, gigabytes: float, seed: int = 0) -> tuple[list[Path], int]:
    rng = random.Random(seed)
    target = int(gigabytes * 1e9)
    months = [directory / "RC_2020-01", directory / "RC_2020-02"]
    outs = [m.open("w") for m in months]
    subs = (directory / "RS_2020-01").open("w")
    written = comments = thread = 0
    while written < target:
        thread += 1
        sub = f"sub{thread % 97}"
        subs.write(f'{{"id":"s{thread:x}","title":"Thread {thread} about {rng.choice(WORDS)}",'
                   f'"selftext":"","subreddit":"{sub}","author":"op"}}\n')
        size = rng.randint(5, 60)
        lines = []
        for c in range(size):
            parent = f"t3_s{thread:x}" if c == 0 or rng.random() < 0.2 else f"t1_c{thread:x}_{rng.randrange(c)}"
            body = "[deleted]" if rng.random() < 0.05 else " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25)))
            lines.append(f'{{"id":"c{thread:x}_{c}","parent_id":"{parent}","link_id":"t3_s{thread:x}",'
                         f'"body":"{body}","author":"u{rng.randrange(10000)}","subreddit":"{sub}",'
                         f'"created_utc":{1577836800 + comments},"score":{rng.randint(-5, 50)}}}\n')
            comments += 1
        rng.shuffle(lines)
        for line in lines:
            outs[rng.randrange(2)].write(line)
            written += len(line)
    for f in outs + [subs]:
        f.close()
    return months + [directory / "RS_2020-01"], comments


def run(args: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one command, via /usr/bin/time."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M"] + args, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    return seconds, int(proc.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashprep", default=str(REPO / "target/release/hashprep"))
    parser.add_argument("--gb", type=float, default=1.0, help="comment data to generate, in GB (default 1)")
    parser.add_argument("--workdir", default=str(REPO / "target/bench/reddit"))
    parser.add_argument("--repeat", type=int, default=3, help="runs of each pipeline, taking turns (default 3)")
    args = parser.parse_args()
    work = Path(args.workdir)
    dumps = work / "dumps"
    dumps.mkdir(parents=True, exist_ok=True)
    for old in dumps.iterdir():
        old.unlink()
    start = time.perf_counter()
    files, comments = generate(dumps, args.gb)
    size = sum(f.stat().st_size for f in files)
    print(f"generated {comments} comments, {size / 1e9:.2f} GB in {time.perf_counter() - start:.0f} s; "
          f"{os.cpu_count()} cores")
    # The fresh dumps on disk, so that neither run competes with their writeback.
    os.sync()
    hp = [args.hashprep, "--no-progress", "tokenize", "--tokenizer", "gpt2", "--force"]
    anchor = hp + ["--format", "jsonl", "--text-field", "body", "--on-error", "skip",
                   "--out", str(work / "jsonl"), str(files[0]), str(files[1])]
    reddit = hp + ["--format", "reddit", "--partitions", "64", "--out", str(work / "reddit"), str(dumps)]
    anchors, reddits = [], []
    for _ in range(max(1, args.repeat)):
        # A complete output of the same inputs and settings is kept as it is, even with --force
        # (the generated dumps are the same each time): remove the outputs so each run does the work.
        for output in (work / "jsonl", work / "reddit"):
            shutil.rmtree(output, ignore_errors=True)
        anchors.append(run(anchor))
        reddits.append(run(reddit))
    t_anchor, m_anchor = (statistics.median(x) for x in zip(*anchors))
    t_reddit, m_reddit = (statistics.median(x) for x in zip(*reddits))
    print(f"runs (anchor, reddit seconds): {', '.join(f'{a:.1f}/{r:.1f}' for (a, _), (r, _) in zip(anchors, reddits))}")
    print(f"{'pipeline':<52} {'seconds':>8} {'comments/s':>12} {'peak MiB':>9}")
    print(f"{'anchor: tokenize --format jsonl (bodies only)':<52} {t_anchor:8.1f} {comments / t_anchor:12.0f} {m_anchor:9.0f}")
    print(f"{'tokenize --format reddit (threads, spill, shards)':<52} {t_reddit:8.1f} {comments / t_reddit:12.0f} {m_reddit:9.0f}")
    print(f"reddit pipeline / anchor speed: {t_anchor / t_reddit:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
