#!/usr/bin/env python3
"""hashprep tokenize against the pipelines people use today, on the same input and tokenizer.

1. HuggingFace datasets: load_dataset("text") + .map(batched=True) with the fast tokenizer
   + save_to_disk (the usual preprocessing script);
2. raw tokenizers.Tokenizer.encode_batch over the lines (no I/O, no storage: the anchor);
3. hashprep tokenize --format text (read, encode, write shards + counts + manifest);
4. with GPT-2's BPE: tiktoken's encode_ordinary_batch over the lines on every core (a second
   anchor, also no I/O), against hashprep tokenize --tokenizer gpt2.

Input: the shipped Wikitext-103 validation and test text repeated to --mb megabytes, one
document per line; tokenizer: an 8008-id byte-level BPE trained by hashprep on that text.
Prints MB/s for each and the ratios. Run with `make bench`.
"""
import argparse
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


if __name__ == "__main__":
    sys.exit(main())
