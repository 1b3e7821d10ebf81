"""`hashprep.Dataset(...).to_hf()`: a `datasets.Dataset` with the shards' columns whose buffers lie
in the shards' memory mappings (nothing copied), every row equal to the shards'."""

import pathlib

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

import hashprep  # noqa: E402


def mapped_ranges(path):
    """The address ranges where this process maps `path` (Linux /proc/self/maps)."""
    ranges = []
    for line in pathlib.Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


def test_to_hf_reads_every_row_in_place_over_several_shards(tmp_path, wiki_test):
    data = tmp_path / "wiki"
    hashprep.tokenize([wiki_test], data, format="wikitext103", tokenizer="gpt2", shard_mib=0.2, progress=False)
    dataset = hashprep.Dataset(data)
    shards = [data / s["file"] for s in dataset.manifest["shards"]]
    assert len(shards) > 2
    hf = dataset.to_hf()
    assert isinstance(hf, datasets.Dataset)
    assert hf.column_names == ["tokens", "prefix_len"] and len(hf) == len(dataset)
    assert hf.features["tokens"].feature.dtype == "uint16"
    for i in range(0, len(hf), 7):
        assert np.array_equal(np.asarray(hf[i]["tokens"], dtype=np.uint16), dataset[i]), i
    assert hf["prefix_len"] == dataset.prefix_lens().tolist()
    # No copy: each chunk's ids lie in the mapping of its own shard.
    chunks = hf.data.table.column("tokens").chunks
    assert len(chunks) >= len(shards)
    if not pathlib.Path("/proc/self/maps").exists():
        pytest.skip("the mapping check reads Linux's /proc/self/maps")
    ranges = {shard: mapped_ranges(shard) for shard in shards}
    found = set()
    for chunk in chunks:
        values = chunk.values.buffers()[1]
        inside = [s for s, spans in ranges.items()
                  if any(start <= values.address and values.address + values.size <= end for start, end in spans)]
        assert len(inside) == 1, f"ids at {values.address:#x} lie in no shard's mapping"
        found.update(inside)
    assert found == set(shards)


def test_to_hf_of_a_folder_that_is_no_tokenize_output_names_it(tmp_path):
    with pytest.raises(hashprep.Error, match=str(tmp_path)):
        hashprep.Dataset(tmp_path).to_hf()
