#!/usr/bin/env python3
"""The whole Reddit pipeline on generated pushshift dumps of at least 1 GB (uncompressed).

Generates seeded comment and submission dumps (threads of random shape, written as 12 monthly
comment files and a submission file; a thread's comments fall in its month or the next, in
shuffled order, some deleted, HTML entities), then measures:

1. One machine: `hashprep tokenize --format reddit` (partition to spill files, rebuild threads,
   tokenize, write shards) against the anchor measured in the same run, `hashprep tokenize
   --format jsonl --text-field body` over the same comment files (reading and tokenizing the same
   bodies without thread reconstruction). The two take turns --repeat times (default 3); prints
   the median seconds, comments/s and peak memory of each, and the ratio of the medians.
2. Many machines (--tasks, default 1,2,4), simulated here by running the tasks one after another,
   each with the cores the one-machine run uses: `--phase spill` on N tasks, `--phase rebuild` on
   N tasks, `merge`, removal of the spill. Prints the CPU seconds of the whole job (merge and
   removal included) over those of the one-machine run, and the wall time N machines would take
   to the merged output (slowest spill task + slowest rebuild task + merge; the removal, timed
   apart, follows) over the one-machine run's; and, for the largest N, the
   same for the old split (`--num-tasks N` without --phase: every task reads every file).
   Medians of --repeat runs.
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
    months = [directory / f"RC_2020-{m:02}" for m in range(1, 13)]
    outs = [m.open("w") for m in months]
    subs = (directory / "RS_2020").open("w")
    per_month = target / len(months)
    written = comments = thread = 0
    while written < target:
        thread += 1
        month = min(int(written / per_month), len(months) - 1)
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
            # Most replies in the thread's month, some in the next.
            outs[min(month + (rng.random() < 0.2), len(months) - 1)].write(line)
            written += len(line)
    for f in outs + [subs]:
        f.close()
    return months + [directory / "RS_2020"], comments


def timed(args: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one command, via /usr/bin/time."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S"] + args, check=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    user, system = (float(x) for x in proc.stderr.strip().splitlines()[-1].split())
    return wall, user + system


def scale_out(hp: list[str], reddit: list[str], inputs: list[str], work: Path, tasks: int) -> tuple[float, float]:
    """Phase 1 on `tasks` tasks, phase 2 on `tasks` tasks, merge: (CPU seconds of the whole job,
    wall seconds of the slowest spill task + the slowest rebuild task + the merge)."""
    spill, merged = work / f"spill-{tasks}", work / f"merged-{tasks}"
    for path in [spill, merged] + [work / f"rebuilt-{tasks}-{j}" for j in range(tasks)]:
        shutil.rmtree(path, ignore_errors=True)
    phases = []
    for phase in ("spill", "rebuild"):
        runs = []
        for task in range(tasks):
            out = [] if phase == "spill" else ["--out", str(work / f"rebuilt-{tasks}-{task}")]
            runs.append(timed(hp + reddit + ["--phase", phase, "--spill-dir", str(spill), "--num-tasks", str(tasks),
                                             "--task-index", str(task)] + out + inputs))
        phases.append(runs)
    parts = [str(work / f"rebuilt-{tasks}-{j}") for j in range(tasks)]
    merge = timed([hp[0], "--no-progress", "merge", *parts, "--out", str(merged)])
    # The output is complete once merged; removing the spill (unlinking its files, which frees
    # their cached pages here) is counted in CPU, not on the way to the output.
    removal = timed(["rm", "-r", str(spill)])
    cpu = sum(c for runs in phases for _, c in runs) + merge[1] + removal[1]
    wall = sum(max(w for w, _ in runs) for runs in phases) + merge[0]
    print(f"  {tasks} task(s): slowest spill {max(w for w, _ in phases[0]):.2f} s, slowest rebuild "
          f"{max(w for w, _ in phases[1]):.2f} s, merge {merge[0]:.2f} s, spill removal {removal[0]:.2f} s")
    return cpu, wall


def old_split(hp: list[str], reddit: list[str], inputs: list[str], work: Path, tasks: int) -> tuple[float, float]:
    """`--num-tasks` without phases (every task reads every file), merge: as `scale_out`."""
    outs = [work / f"old-{tasks}-{t}" for t in range(tasks)]
    for path in outs + [work / f"old-merged-{tasks}"]:
        shutil.rmtree(path, ignore_errors=True)
    runs = [timed(hp + reddit + ["--num-tasks", str(tasks), "--task-index", str(t), "--out", str(out)] + inputs)
            for t, out in enumerate(outs)]
    merge = timed([hp[0], "--no-progress", "merge", *map(str, outs), "--out", str(work / f"old-merged-{tasks}")])
    return sum(c for _, c in runs) + merge[1], max(w for w, _ in runs) + merge[0]


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
    parser.add_argument("--tasks", default="1,2,4", help="task counts of the many-machine runs ('' for none)")
    args = parser.parse_args()
    work = Path(args.workdir)
    dumps = work / "dumps"
    dumps.mkdir(parents=True, exist_ok=True)
    for old in dumps.iterdir():
        old.unlink()
    start = time.perf_counter()
    files, comments = generate(dumps, args.gb)
    size = sum(f.stat().st_size for f in files)
    print(f"generated {comments} comments, {size / 1e9:.2f} GB in {len(files)} files in "
          f"{time.perf_counter() - start:.0f} s; {os.cpu_count()} cores")
    # The fresh dumps on disk, so that neither run competes with their writeback.
    os.sync()
    hp = [args.hashprep, "--no-progress", "tokenize", "--tokenizer", "gpt2", "--force"]
    comment_files = [str(f) for f in files if f.name.startswith("RC_")]
    anchor = hp + ["--format", "jsonl", "--text-field", "body", "--on-error", "skip",
                   "--out", str(work / "jsonl")] + comment_files
    reddit_args = ["--format", "reddit", "--partitions", "64"]
    reddit = hp + reddit_args + ["--out", str(work / "reddit"), str(dumps)]
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

    counts = [int(n) for n in args.tasks.split(",") if n.strip()]
    if not counts:
        return
    hp_tasks = [args.hashprep, "--no-progress", "tokenize", "--tokenizer", "gpt2"]
    inputs = [str(f) for f in files]
    rows: dict[str, list[tuple[float, float]]] = {}
    for _ in range(max(1, args.repeat)):
        shutil.rmtree(work / "one", ignore_errors=True)
        rows.setdefault("one machine", []).append(
            tuple(reversed(timed(hp_tasks + reddit_args + ["--out", str(work / "one")] + inputs))))
        for n in counts:
            rows.setdefault(f"{n} task(s) per phase", []).append(scale_out(hp_tasks, reddit_args, inputs, work, n))
        if counts[-1] > 1:
            rows.setdefault(f"old split, {counts[-1]} tasks", []).append(
                old_split(hp_tasks, reddit_args, inputs, work, counts[-1]))
    cpu_one, wall_one = (statistics.median(x) for x in zip(*rows["one machine"]))
    print(f"\n{'job (tasks run one after another here)':<40} {'CPU s':>8} {'CPU / one':>10} {'wall s':>8} {'wall / one':>11}")
    for name, runs in rows.items():
        cpu, wall = (statistics.median(x) for x in zip(*runs))
        print(f"{name:<40} {cpu:8.1f} {cpu / cpu_one:9.2f}x {wall:8.1f} {wall / wall_one:10.2f}x")
    print("wall of N tasks: slowest spill task + slowest rebuild task + merge, as N machines would take "
          "(the spill's removal after)")


if __name__ == "__main__":
    sys.exit(main())
