"""`hashprep export --to megatron` / `Dataset.export(to="megatron")`: Megatron-LM's own reader
(megatron-core's `IndexedDataset`) returns every document's ids as the shards hold them, for a
uint16 (GPT-2) and an int32 (DeepSeek-V4's 129,280 ids) export, several shards, merged task
outputs and Reddit examples (whose prefix lengths are written beside); bad input is refused."""

import json
import subprocess

import numpy as np
import pytest

pytest.importorskip("megatron.core")
import warnings  # noqa: E402

with warnings.catch_warnings():  # megatron-core notes that Transformer Engine and Apex are absent
    warnings.simplefilter("ignore")
    from megatron.core.datasets.indexed_dataset import IndexedDataset  # noqa: E402

import hashprep  # noqa: E402
from conftest import write_word_level_tokenizer  # noqa: E402


def assert_same_documents(prefix, data, dtype):
    """Megatron's reader sees the documents of `data`, in order, with their ids."""
    dataset, megatron = hashprep.Dataset(data), IndexedDataset(str(prefix))
    assert megatron.index.dtype == dtype
    assert len(megatron) == len(dataset) > 0
    assert megatron.document_indices.tolist() == list(range(len(dataset) + 1)), "one sequence per document"
    for i in range(len(dataset)):
        assert np.array_equal(megatron[i], dataset[i]), f"document {i}"
    return megatron


def test_gpt2_shards_and_merged_tasks_read_back_through_megatron(tmp_path, wiki_test, cli):
    many = tmp_path / "many"
    hashprep.tokenize([wiki_test], many, format="wikitext103", tokenizer="gpt2", shard_mib=0.2, progress=False)
    assert len(hashprep.Dataset(many).manifest["shards"]) > 2
    written = hashprep.Dataset(many).export(tmp_path / "out" / "wiki", to="megatron")
    assert written["dtype"] == "uint16" and written["prefix_len"] is None
    megatron = assert_same_documents(tmp_path / "out" / "wiki", many, np.uint16)
    assert written["tokens"] == int(megatron.sequence_lengths.sum()) == hashprep.Dataset(many).manifest["totals"]["tokens"]
    # Two tasks' outputs merged, exported by the command line.
    tasks = []
    for task in range(2):
        out = tmp_path / f"task{task}"
        hashprep.tokenize([wiki_test], out, format="wikitext103", tokenizer="gpt2", num_tasks=2, task_index=task,
                          progress=False)
        tasks.append(out)
    cli("merge", *tasks, "--out", tmp_path / "merged")
    printed = json.loads(cli("export", "--to", "megatron", tmp_path / "merged", tmp_path / "merged-mt", "--json"))
    assert printed["documents"] == len(hashprep.Dataset(tmp_path / "merged"))
    assert_same_documents(tmp_path / "merged-mt", tmp_path / "merged", np.uint16)


def test_megatron_builds_training_samples_from_the_export(tmp_path, shards):
    """GPTDataset (megatron-core's sample builder, its C++ helpers on CPU): each sample is the
    window of the documents, in its shuffled order, that its index says."""
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.utils import Split

    class Tokenizer:  # what GPTDataset reads of one: the end-of-document and padding ids
        eod = pad = 50256
        vocab_size = 50257
        unique_identifiers = {"class": "gpt2"}

    prefix = tmp_path / "wiki"
    hashprep.Dataset(shards).export(prefix, to="megatron")
    indexed = IndexedDataset(str(prefix))
    config = GPTDatasetConfig(random_seed=1, sequence_length=32, split="1,0,0", tokenizer=Tokenizer(),
                              reset_position_ids=False, reset_attention_mask=False, eod_mask_loss=False,
                              path_to_cache=str(tmp_path / "cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = GPTDataset(indexed, str(prefix), np.arange(len(indexed)), 20, Split.train, config)
    dataset = hashprep.Dataset(shards)
    order = samples.document_index
    text = np.concatenate([dataset[int(d)] for d in order]).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum([len(dataset[int(d)]) for d in order])])
    for i in range(20):
        at, offset = samples.sample_index[samples.shuffle_index[i]]
        window = text[starts[at] + offset:][:33]
        sample = samples[i]
        assert sample["tokens"].tolist() == window[:-1].tolist(), i
        assert sample["labels"].tolist() == window[1:].tolist(), i


BIG_VOCAB = 129_280  # DeepSeek-V4's vocabulary size


def big_vocabulary_tokenizer(path, text):
    """A word-level tokenizer.json of DeepSeek-V4's 129,280 ids whose words of `text` sit at the
    top of the range (ids past 65,535)."""
    words = sorted({w for line in text.splitlines() for w in line.split()})
    vocab = {"[UNK]": 0, "</s>": 1}
    vocab.update({f"filler{i}": i for i in range(2, BIG_VOCAB - len(words))})
    vocab.update({w: BIG_VOCAB - len(words) + i for i, w in enumerate(words)})
    write_word_level_tokenizer(path, vocab, ["</s>"])


def test_a_deepseek_v4_sized_vocabulary_exports_int32(tmp_path):
    text = "".join(f"line {i} of the corpus with word{i % 37} and more words\n" for i in range(300))
    corpus, tokenizer = tmp_path / "corpus.txt", tmp_path / "tokenizer.json"
    corpus.write_text(text)
    big_vocabulary_tokenizer(tokenizer, text)
    data = tmp_path / "data"
    hashprep.tokenize([corpus], data, format="text", tokenizer=str(tokenizer), eos_token="</s>", progress=False)
    assert hashprep.Dataset(data).manifest["tokenizer"]["vocab_size"] == BIG_VOCAB
    assert max(int(hashprep.Dataset(data)[i].max()) for i in range(len(hashprep.Dataset(data)))) > 65_535
    written = hashprep.Dataset(data).export(tmp_path / "big", to="megatron")
    assert written["dtype"] == "int32"
    assert_same_documents(tmp_path / "big", data, np.int32)


def reddit_dump(path):
    """Three threads of four comments (each replying to the one before) under their submissions."""
    lines = []
    for t in range(3):
        lines.append({"id": f"s{t}", "title": f"Question {t} about things", "selftext": "", "subreddit": "x"})
        for c in range(4):
            parent = f"t3_s{t}" if c == 0 else f"t1_c{t}_{c - 1}"
            lines.append({"id": f"c{t}_{c}", "parent_id": parent, "link_id": f"t3_s{t}",
                          "body": f"reply number {c} in thread {t} with some words", "subreddit": "x",
                          "created_utc": 1_600_000_000 + c})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_reddit_examples_keep_their_prefix_lengths_beside_the_export(tmp_path):
    dump = tmp_path / "RC_2020-01.jsonl"
    reddit_dump(dump)
    data = tmp_path / "reddit"
    hashprep.tokenize([dump], data, format="reddit", tokenizer="gpt2", progress=False)
    written = hashprep.Dataset(data).export(tmp_path / "dialogue", to="megatron")
    assert written["prefix_len"] == str(tmp_path / "dialogue.prefix_len.npy")
    assert_same_documents(tmp_path / "dialogue", data, np.uint16)
    prefix = np.load(tmp_path / "dialogue.prefix_len.npy")
    assert prefix.dtype == np.uint32
    assert prefix.tolist() == hashprep.Dataset(data).prefix_lens().tolist()
    assert (prefix > 0).all(), "every Reddit example has a context"


def test_bad_input_is_refused_with_the_file_named_and_nothing_lost(tmp_path, shards, cli_result):
    prefix = tmp_path / "wiki"
    hashprep.Dataset(shards).export(prefix, to="megatron")
    before = (prefix.with_suffix(".bin").read_bytes(), prefix.with_suffix(".idx").read_bytes())
    # An export that exists: refused, untouched; --force replaces it.
    done = cli_result("export", "--to", "megatron", shards, prefix)
    assert done.returncode == 2 and f"{prefix}.bin: exists already" in done.stderr and "--force" in done.stderr
    assert (prefix.with_suffix(".bin").read_bytes(), prefix.with_suffix(".idx").read_bytes()) == before
    assert cli_result("export", "--to", "megatron", shards, prefix, "--force").returncode == 0
    with pytest.raises(hashprep.Error, match="exists already"):
        hashprep.Dataset(shards).export(prefix, to="megatron")
    # No tokenize output there; another format.
    done = cli_result("export", "--to", "megatron", tmp_path / "nothing", tmp_path / "x")
    assert done.returncode == 2 and str(tmp_path / "nothing") in done.stderr
    done = cli_result("export", "--to", "nemo", shards, tmp_path / "x")
    assert done.returncode == 2 and "expected parquet or megatron" in done.stderr
    # A shard cut short since it was written: named, and no export appears.
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(shards), str(broken)], check=True)
    shard = broken / hashprep.Dataset(shards).manifest["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    done = cli_result("export", "--to", "megatron", broken, tmp_path / "cut")
    assert done.returncode == 2 and str(shard) in done.stderr, done.stderr
    assert not list(tmp_path.glob("cut*")) and not list(tmp_path.glob(".cut*"))
