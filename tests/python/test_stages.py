"""tokenize, train_tokenizer, build_table and Dataset: the CLI's bytes, numpy views, errors."""

import json
import signal
import threading
import time

import numpy as np
import pytest

import hashprep


def files(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_tokenize_writes_the_cli_bytes(tmp_path, cli, wiki_test, shards):
    cli("tokenize", "--format", "wikitext103", "--tokenizer", "gpt2", "--out", tmp_path / "cli", wiki_test)
    assert files(shards) == files(tmp_path / "cli")
    summary = hashprep.tokenize(
        [wiki_test], shards, format="wikitext103", tokenizer="gpt2", progress=False
    )
    run = summary.pop("run")
    assert run["already_complete"] is True and run["totals"]["documents"] == 62
    inspection = json.loads(cli("inspect", "--json", shards))
    assert summary == inspection, "the summary is `hashprep inspect --json`"
    assert summary["rows"] == 62 and summary["top"][0]["count"] > 0


def test_train_tokenizer_and_word_level_tokenize_match_the_cli(tmp_path, cli, wiki_test):
    fingerprint = hashprep.train_tokenizer(
        [wiki_test], tmp_path / "py.json", format="wikitext103", kind="word", min_count=3, progress=False
    )
    cli("train-tokenizer", "--format", "wikitext103", "--kind", "word", "--min-count", "3",
        "--out", tmp_path / "cli.json", wiki_test)
    assert (tmp_path / "py.json").read_bytes() == (tmp_path / "cli.json").read_bytes()
    assert fingerprint.startswith("blake3:")


def test_dataset_rows_are_read_only_views_of_the_mapping(shards):
    ds = hashprep.Dataset(shards)
    manifest = ds.manifest
    assert len(ds) == manifest["totals"]["documents"] == 62
    first = ds[0]
    assert first.dtype == np.uint16 and not first.flags.writeable
    assert not first.flags.owndata and first.base is ds, "a view kept alive by the dataset"
    assert np.shares_memory(ds[0], ds[0]), "two reads of a row are the same memory"
    with pytest.raises(ValueError):
        first[0] = 1
    assert sum(len(ds[i]) for i in range(len(ds))) == manifest["totals"]["tokens"]
    assert ds[-1].tolist() == ds[len(ds) - 1].tolist()
    with pytest.raises(IndexError):
        ds[len(ds)]
    counts = ds.counts()
    assert counts.dtype == np.uint64 and counts.shape == (50257,)
    assert counts.sum() == manifest["totals"]["tokens"]
    assert (ds.prefix_lens() == 0).all()


def test_build_table_matches_the_cli_and_loads_back(tmp_path, cli, shards):
    table = hashprep.build_table(shards, tmp_path / "py.arrow", method="balanced", experts=16)
    cli("build-table", "--data", shards, "--method", "balanced", "--experts", "16",
        "--out", tmp_path / "cli.arrow")
    assert (tmp_path / "py.arrow").read_bytes() == (tmp_path / "cli.arrow").read_bytes()
    ids = table.expert_ids
    assert ids.shape == (50257,) and ids.max() == 15
    stats = table.stats()
    assert stats["streams"][0]["stats"]["max_over_mean"] < 1.01
    again = hashprep.Table.load(tmp_path / "cli.arrow")
    assert (again.expert_ids == ids).all() and again.meta["experts"] == 16
    with pytest.raises(hashprep.Error, match="pass `data`"):
        again.stats()
    measured = again.stats(shards)
    assert measured["streams"] == stats["streams"] and measured["files"] == []
    multi = hashprep.build_table(shards, method="random", experts=4, hashes=3)
    assert multi.expert_ids.shape == (50257, 3)
    saved = multi.save(tmp_path / "multi.npy", format="npy")
    assert [p.name for p in map(__import__("pathlib").Path, saved)][0] == "multi.npy"


def test_errors_are_value_os_or_runtime_errors_with_the_cli_message(tmp_path, shards):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{broken\n')
    with pytest.raises(hashprep.Error, match=r"bad\.jsonl:2") as caught:
        hashprep.tokenize([bad], tmp_path / "o", format="jsonl", tokenizer="gpt2", progress=False)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(hashprep.Error, match="no manifest.json"):
        hashprep.Dataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="nowhere.arrow"):
        hashprep.Table.load(tmp_path / "nowhere.arrow")
    with pytest.raises(hashprep.Error, match="`experts` must be at least 1"):
        hashprep.build_table(shards, method="random", experts=0)
    with pytest.raises(hashprep.Error, match="none of random, balanced"):
        hashprep.build_table(shards, method="fancy", experts=4)
    # Every choice is looked up by the library's names, its keyword named in the message.
    with pytest.raises(hashprep.Error, match='`format` "parquet" is none of arrow, npy'):
        hashprep.build_table(shards, method="random", experts=4, format="parquet")
    with pytest.raises(hashprep.Error, match='`on_error` "maybe" is none of fail, skip'):
        hashprep.tokenize([bad], tmp_path / "o2", format="jsonl", tokenizer="gpt2", on_error="maybe")
    with pytest.raises(hashprep.Error, match='`special_tokens` "all" is none of ordinary, recognize'):
        hashprep.tokenize([bad], tmp_path / "o3", format="jsonl", tokenizer="gpt2", special_tokens="all")
    with pytest.raises(hashprep.Error, match="`seq_len`"):
        hashprep.Loader(shards, batch_size=2, seq_len=100000, per_example=True)


def test_a_rust_panic_is_a_runtime_error_and_the_interpreter_goes_on(shards):
    for on_thread in (False, True):
        with pytest.raises(RuntimeError, match="internal error \\(a bug\\): a deliberate panic"):
            hashprep._hashprep._panic_for_tests(on_thread)
    assert len(hashprep.Dataset(shards)) == 62, "still working after the panics"


def test_the_gil_is_released_while_rust_works(tmp_path, wiki_test):
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    # Enough text to run well over 0.2 s (GPT-2 loads in under 0.1 s).
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = wiki_test.read_text() + wiki_test.with_name("wiki.valid.tokens").read_text()
    for i in range(24):
        (corpus / f"part{i}.tokens").write_text(text)
    counter = threading.Thread(target=count)
    counter.start()
    started = time.perf_counter()
    hashprep.tokenize([corpus], tmp_path / "o", format="wikitext103", tokenizer="gpt2", progress=False)
    finished = time.perf_counter()
    stop.set()
    counter.join()
    during = [t for t in ticks if started < t < finished]
    assert finished - started > 0.2, "long enough to see"
    assert len(during) > 20, f"the other thread ran {len(during)} times in {finished - started:.2f}s"


def test_ctrl_c_stops_tokenize_soon_and_a_rerun_resumes_to_the_same_bytes(tmp_path, wiki_test):
    import _thread

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = wiki_test.read_text() + wiki_test.with_name("wiki.valid.tokens").read_text()
    # Enough text that the run goes on well after its first shard (0.9 s on the 2-core machine,
    # 0.26 s with 6 copies, once shards were written with direct I/O and cost next to nothing to
    # sync): the watcher below may be late on a loaded machine, and Ctrl-C is noticed within
    # 100 ms; a run that ends first has nothing left to interrupt.
    for i in range(48):
        (corpus / f"part{i}.tokens").write_text(text)
    args = dict(format="wikitext103", tokenizer="gpt2", shard_mib=0.25, threads=1, progress=False)
    straight = tmp_path / "straight"
    started = time.perf_counter()
    hashprep.tokenize([corpus], straight, **args)
    whole = time.perf_counter() - started

    interrupted = tmp_path / "interrupted"
    journal = interrupted / "journal.jsonl"
    interrupted_at = []
    finished = threading.Event()

    def journaled_shards():
        try:
            return journal.read_text().count("\n") - 1  # after the header line
        except OSError:  # not there yet, or removed by a finished run
            return 0

    def interrupt_after_the_first_shard():
        # Ctrl-C once a shard is journaled, whatever the machine's speed.
        while not finished.is_set():
            if journaled_shards() >= 1:
                interrupted_at.append(time.perf_counter())
                _thread.interrupt_main()
                return
            time.sleep(0.005)

    # Python's own Ctrl-C handler, whatever an earlier test or the runner installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=interrupt_after_the_first_shard)
    watcher.start()
    raised = False
    try:
        hashprep.tokenize([corpus], interrupted, **args)
    except KeyboardInterrupt:
        raised = True
    finally:
        finished.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)
    assert interrupted_at, "the run ended before a shard was journaled"
    assert raised, f"tokenize returned instead of raising KeyboardInterrupt (whole run {whole:.2f}s)"
    stopped = time.perf_counter() - interrupted_at[0]
    assert stopped < 2.0, f"stopped {stopped:.2f}s after Ctrl-C (whole run {whole:.2f}s)"
    assert not (interrupted / "manifest.json").exists()
    assert (interrupted / "journal.jsonl").exists()
    summary = hashprep.tokenize([corpus], interrupted, **args)
    assert summary["run"]["resumed_items"] > 0
    assert files(interrupted) == files(straight)


def test_reddit_spill_and_rebuild_tasks_give_one_calls_examples(tmp_path, cli):
    """Phase 1 on two tasks, phase 2 on two, merged: the examples and counts of one call."""
    months = []
    for m in range(2):
        lines = [json.dumps({"id": f"c{t}_{c}", "parent_id": f"t3_s{t}" if c == 0 else f"t1_c{t}_{c - 1}",
                             "link_id": f"t3_s{t}", "body": f"reply {c} in {t} month {m}", "subreddit": "r"})
                 for t in range(30) for c in range(m * 3, m * 3 + 3)]
        months.append(tmp_path / f"RC_2020-0{m + 1}")
        months[-1].write_text("\n".join(lines) + "\n")
    one = hashprep.tokenize(months, tmp_path / "one", format="reddit", tokenizer="gpt2", progress=False)
    spill = tmp_path / "spill"
    for task in range(2):
        done = hashprep.spill_reddit(months, spill, num_tasks=2, task_index=task, partitions=3, progress=False)
        assert done["task"] == [task, 2] and not done["already_complete"]
        assert done["units"] and all("bytes" in unit for unit in done["units"]), "plain files: byte ranges"
    parts = [tmp_path / f"part{j}" for j in range(2)]
    for j, part in enumerate(parts):
        hashprep.tokenize(months, part, format="reddit", tokenizer="gpt2", num_tasks=2, task_index=j,
                          spill_dir=spill, progress=False)
    cli("merge", *parts, "--out", tmp_path / "merged", "--remove-spill", spill)
    assert not spill.exists()
    merged, single = hashprep.Dataset(tmp_path / "merged"), hashprep.Dataset(tmp_path / "one")
    assert len(merged) == len(single) == one["rows"] == 180
    assert sorted(merged[i].tolist() for i in range(len(merged))) == sorted(
        single[i].tolist() for i in range(len(single)))
    assert (merged.counts() == single.counts()).all()
