"""The package under misuse: a shard truncated under a Dataset or Loader raises instead of
killing Python, sizes beyond their limits are refused by name before anything is allocated,
and refusals name what is wrong."""

import shutil
import subprocess
import sys
import textwrap

import pytest

import hashprep

TRUNCATE_THEN_READ = textwrap.dedent(
    """
    import os, sys, hashprep
    data = sys.argv[1]
    shard = os.path.join(data, "shard-00000.arrow")
    ds = hashprep.Dataset(data)
    loader = hashprep.Loader(data, batch_size=4, seq_len=16)
    last = len(ds) - 1
    whole = ds[last].tolist()
    os.truncate(shard, os.path.getsize(shard) // 2)  # another program shrinks the file
    for what, read in (("dataset", lambda: ds[last]), ("loader", lambda: next(iter(loader.take(1))))):
        try:
            read()
        except hashprep.Error as e:
            assert "shrank from" in str(e) and "shard-00000.arrow" in str(e), str(e)
            print(what, "refused")
        else:
            sys.exit(f"{what}: read a truncated shard without an error")
    """
)


def test_a_shard_truncated_under_a_dataset_or_loader_raises(tmp_path, shards):
    data = tmp_path / "data"
    shutil.copytree(shards, data)
    # In a child: before the check, this read was a SIGBUS that killed the interpreter.
    done = subprocess.run([sys.executable, "-c", TRUNCATE_THEN_READ, str(data)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split("\n")[:2] == ["dataset refused", "loader refused"]


@pytest.mark.parametrize("setting, value, limit", [("prefetch", 2**40, 1024), ("workers", 10**6, 256)])
def test_loader_sizes_beyond_their_limits_are_refused_by_name(shards, setting, value, limit):
    with pytest.raises(hashprep.Error, match=f"`{setting}` {value} is above the limit of {limit}"):
        hashprep.Loader(shards, batch_size=4, seq_len=16, **{setting: value})
    with pytest.raises(hashprep.Error, match="positions per batch, more than the limit"):
        hashprep.Loader(shards, batch_size=2**20, seq_len=2**10)


def test_loader_state_of_other_settings_names_the_setting(shards):
    saved = hashprep.Loader(shards, batch_size=4, seq_len=16, rank=1, world_size=2).state()
    for kwargs, named in (({"batch_size": 2, "rank": 1, "world_size": 2}, "`batch_size` is 2 here but 4"),
                          ({"batch_size": 4}, "`rank` is 0 here but 1")):
        other = hashprep.Loader(shards, seq_len=16, **kwargs)
        with pytest.raises(hashprep.Error, match=named):
            other.load_state(saved)


def test_an_export_listing_a_layer_twice_is_refused(tmp_path, shards):
    table = hashprep.build_table(shards, tmp_path / "t.arrow", method="balanced", experts=8, top_k=2)
    vocab = table.meta["vocab_size"]
    with pytest.raises(hashprep.Error, match="layer 1 listed more than once"):
        table.export(tmp_path / "x.safetensors", to="hf-deepseek-v4", layers=[0, 1, 1], vocab_size=vocab, top_k=2)
    assert not (tmp_path / "x.safetensors").exists()


def test_a_table_altered_after_it_was_written_is_refused(tmp_path, shards):
    path = tmp_path / "t.arrow"
    table = hashprep.build_table(shards, path, method="balanced", experts=8)
    data = bytearray(path.read_bytes())
    # An expert id in the column (still below K, so only the checksum can tell).
    at = data.find(table.expert_ids[:64].astype("<u2").tobytes())  # stored as uint16 for K = 8
    assert at > 0
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(hashprep.Error, match="checksum mismatch"):
        hashprep.Table.load(path)
