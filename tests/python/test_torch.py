"""hashprep.torch: tensors without copies, and each rank of a torch.distributed group gets the
batches of its rank."""

import json
import os

import pytest

torch = pytest.importorskip("torch")
import hashprep  # noqa: E402
from conftest import run_gloo_ranks  # noqa: E402
from hashprep.torch import HashprepDataset  # noqa: E402


def test_items_are_tensors_sharing_the_loader_arrays(shards):
    ds = HashprepDataset(shards, batch_size=4, seq_len=16, steps=3)
    items = list(torch.utils.data.DataLoader(ds, batch_size=None))
    assert [item["index"] for item in items] == [0, 1, 2]
    assert items[0]["input_ids"].dtype == torch.int64 and items[0]["input_ids"].shape == (4, 16)
    assert ds.state_dict()["next_batch"] == 3
    loader = hashprep.Loader(shards, batch_size=4, seq_len=16)
    expected = [b.input_ids.tolist() for b in loader.take(3)]
    assert [item["input_ids"].tolist() for item in items] == expected


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_are_refused(shards, workers):
    """Two would repeat each other's batches; one would advance a copy of the loader in its own
    process, leaving this dataset's state_dict() at batch 0 (a resume would replay them)."""
    ds = HashprepDataset(shards, batch_size=4, seq_len=16, steps=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    with pytest.raises(ValueError, match=f"num_workers={workers}"):
        list(loader)
    assert ds.state_dict()["next_batch"] == 0


def _rank_main(rank, world_size, shards, out):
    ds = HashprepDataset(shards, batch_size=2, seq_len=16, steps=3)
    got = [item["input_ids"].tolist() for item in ds]
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": ds.rank, "world_size": ds.world_size, "batches": got}, f)


def test_each_rank_of_a_gloo_group_gets_its_own_batches(tmp_path, shards):
    run_gloo_ranks(_rank_main, str(shards), str(tmp_path))
    for rank in range(2):
        seen = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert (seen["rank"], seen["world_size"]) == (rank, 2)
        loader = hashprep.Loader(shards, batch_size=2, seq_len=16, rank=rank, world_size=2)
        assert seen["batches"] == [b.input_ids.tolist() for b in loader.take(3)]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text())["batches"] for r in range(2)]
    assert ranks[0] != ranks[1]
