"""`Dataset.to_hf()`: a tokenize output as a Hugging Face `datasets.Dataset` over the memory-mapped
shards, without a copy.

`datasets.Dataset.from_file` reads the Arrow stream format, and the shards are Arrow IPC files
(with a footer, which their checksums and resume rely on); `load_dataset("arrow", ...)` reads them
but copies them into its cache. Here pyarrow maps each shard and reads it in place, the shards are
joined as chunks of one table (no copy either), and datasets holds that table as an
`InMemoryTable`: its buffers stay in the mapping. Being "in memory" for datasets, such a table is
serialized whole where datasets pickles it (`map(num_proc=N)`, spawn-started workers); fork-started
workers (torch's DataLoader on Linux) share the mapping.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import os


def to_hf(path: Union[str, "os.PathLike[str]"], manifest: Any) -> Any:
    """The tokenize output at `path` (its `manifest`) as a `datasets.Dataset` with the shards'
    columns, `tokens` and `prefix_len`."""
    try:
        import datasets  # type: ignore[import-untyped]
        import pyarrow as pa  # type: ignore[import-untyped]
        from datasets.table import InMemoryTable  # type: ignore[import-untyped]
    except ImportError as e:
        raise ImportError("Dataset.to_hf() needs the packages datasets and pyarrow (pip install datasets)") from e
    shards = [pa.ipc.open_file(pa.memory_map(str(pathlib.Path(path) / s["file"]))).read_all() for s in manifest["shards"]]
    table = pa.concat_tables(shards)
    description = f"hashprep tokenize output {path} ({manifest['tokenizer']['source']}, {len(shards)} shard(s))"
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(description=description))
