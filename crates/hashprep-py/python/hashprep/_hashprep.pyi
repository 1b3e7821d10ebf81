"""Type stubs of the Rust extension hashprep._hashprep (what `hashprep` re-exports)."""

from os import PathLike
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Optional, Sequence, Tuple, TypedDict, Union, final, overload, type_check_only

import numpy as np
import numpy.typing as npt

_Path = Union[str, "PathLike[str]"]
_Format = Literal["wikitext103", "cc100", "text", "jsonl", "reddit"]
_OnError = Literal["fail", "skip"]
_Method = Literal["random", "balanced", "clustered", "dispersed", "bigram", "previous", "position", "oracle"]
_TableFormat = Literal["arrow", "npy"]

@type_check_only
class ShardInfo(TypedDict):
    file: str
    rows: int
    tokens: int
    bytes: int
    checksum: str

@type_check_only
class TopToken(TypedDict):
    id: int
    text: str
    count: int
    share: float

@type_check_only
class Inspection(TypedDict):
    """`inspect`'s summary of a tokenize output (`hashprep inspect --json`)."""

    dir: str
    shards: List[ShardInfo]
    rows: int
    tokens: int
    bytes: int
    vocab_size: int
    used_ids: int
    token_type: Literal["uint16", "uint32"]
    tokenizer: str
    tokenizer_fingerprint: str
    skipped: Dict[str, int]
    top: List[TopToken]

@type_check_only
class SpillUnit(TypedDict, total=False):
    path: str
    bytes: List[int]

@type_check_only
class SpillSummary(TypedDict):
    """`spill_reddit`'s record of what one phase-1 task did (`tokenize --phase spill --json`)."""

    spill_dir: str
    task: List[int]
    partitions: int
    units: List[SpillUnit]
    input_bytes: int
    spill_bytes: int
    skipped: Dict[str, int]
    already_complete: bool
    seconds: float

@type_check_only
class TokenizeResult(Inspection):
    """`tokenize`'s result: the inspection of its output, and under `run` what the call did."""

    run: Dict[str, Any]

@type_check_only
class _ManifestTokenizerRequired(TypedDict):
    file: str
    fingerprint: str
    source: str
    vocab_size: int
    eos_token: Optional[str]
    eos_id: Optional[int]

@type_check_only
class _Encoder(TypedDict):
    path: Literal["fast_path", "tokenizers"]

@type_check_only
class Encoder(_Encoder, total=False):
    """Which encoder tokenized the text; `reason` (with `tokenizers`): why not the fast path."""

    reason: str

@type_check_only
class ManifestTokenizer(_ManifestTokenizerRequired, total=False):
    eos_from: Literal["named", "tokenizer_config", "built_in"]
    adjusted: List[str]
    encoder: Encoder
    bos_token: str
    bos_id: int

@type_check_only
class ManifestTotals(TypedDict):
    documents: int
    tokens: int
    skipped: Dict[str, int]

@type_check_only
class Manifest(TypedDict):
    """A tokenize output's `manifest.json` (`schemas/manifest.md`)."""

    kind: str
    version: int
    created_by: str
    tokenizer: ManifestTokenizer
    token_type: Literal["uint16", "uint32"]
    shards: List[ShardInfo]
    counts_file: str
    counts_checksum: str
    totals: ManifestTotals
    inputs: List[Dict[str, Any]]
    tasks: List[Dict[str, Any]]
    config: Dict[str, Any]

@type_check_only
class TableMeta(TypedDict):
    """A table's metadata (`schemas/table.md`)."""

    kind: str
    version: int
    method: _Method
    rule: Literal["token", "previous", "next", "position", "bigram"]
    base: Optional[_Method]
    experts: int
    top_k: int
    hashes: int
    layers: int
    seed: int
    refined: bool
    vocab_size: int
    tokenizer_fingerprint: str
    counts_fingerprint: str

@type_check_only
class TableStats(TypedDict):
    """A table's balance statistics (`hashprep compare-tables --json`, one table)."""

    files: List[str]
    method: _Method
    experts: int
    top_k: int
    vocab_size: int
    total_tokens: int
    streams: List[Dict[str, Any]]
    note: Optional[str]

@type_check_only
class LoaderConfig(TypedDict, total=False):
    batch_size: int
    seq_len: int
    seed: int
    packing: bool
    drop_last: bool
    rank: int
    world_size: int
    expert_parallel: int
    pad_id: int

@type_check_only
class _LoaderStateRequired(TypedDict):
    next_batch: int
    fingerprint: str

@type_check_only
class LoaderState(_LoaderStateRequired, total=False):
    """Where a `Loader` stands (`state()`), JSON-serializable; `load_state` continues there."""

    config: LoaderConfig
    data: str
    tables: str

class Error(ValueError):
    """Input hashprep cannot use: a file, record, setting or state, named in the message."""

def tokenize(
    inputs: Sequence[_Path],
    out: _Path,
    *,
    format: _Format,
    tokenizer: str,
    text_field: str = "text",
    blank_line_separated: bool = False,
    on_error: _OnError = "fail",
    eos_token: Optional[str] = None,
    no_eos: bool = False,
    bos_token: Optional[str] = None,
    special_tokens: Literal["ordinary", "recognize"] = "ordinary",
    max_context_turns: int = 7,
    shard_mib: Optional[float] = None,
    threads: int = 0,
    num_tasks: int = 1,
    task_index: int = 0,
    spill_dir: Optional[_Path] = None,
    force: bool = False,
    progress: bool = True,
) -> TokenizeResult: ...
def spill_reddit(
    inputs: Sequence[_Path],
    spill_dir: _Path,
    *,
    num_tasks: int = 1,
    task_index: int = 0,
    partitions: int = 0,
    on_error: _OnError = "fail",
    progress: bool = True,
) -> SpillSummary: ...
def inspect(path: _Path, *, top: int = ...) -> Inspection: ...
def train_tokenizer(
    inputs: Sequence[_Path],
    out: _Path,
    *,
    format: _Format,
    kind: Literal["bpe", "word"],
    vocab_size: int = ...,
    min_count: int = ...,
    eos_token: Optional[str] = None,
    text_field: str = "text",
    blank_line_separated: bool = False,
    on_error: _OnError = "fail",
    progress: bool = True,
) -> str: ...

@type_check_only
class CheckpointInsert(TypedDict):
    checkpoint: str
    file: str
    keys: Dict[str, str]
    replaced: List[str]
    renamed: Optional[str]

@type_check_only
class MegatronExport(TypedDict):
    bin: str
    idx: str
    prefix_len: Optional[str]
    documents: int
    tokens: int
    dtype: Literal["uint16", "int32"]

@final
class Dataset:
    def __new__(cls, path: _Path) -> "Dataset": ...
    def __len__(self) -> int: ...
    def __getitem__(self, index: int, /) -> npt.NDArray[Union[np.uint16, np.uint32]]: ...
    def prefix_lens(self) -> npt.NDArray[np.uint32]: ...
    def counts(self) -> npt.NDArray[np.uint64]: ...
    @overload
    def export(self, out: _Path, *, to: Literal["megatron"], force: bool = False) -> MegatronExport: ...
    @overload
    def export(self, out: _Path, *, to: Literal["parquet"], force: bool = False) -> List[Path]: ...
    def to_hf(self) -> Any: ...
    @property
    def manifest(self) -> Manifest: ...

@final
class Table:
    @staticmethod
    def load(path: _Path) -> "Table": ...
    def save(self, path: _Path, *, format: _TableFormat = "arrow") -> List[str]: ...
    @overload
    def export(
        self,
        out: _Path,
        *,
        to: Literal["hf-deepseek-v4", "npy"],
        layers: Sequence[int] = ...,
        vocab_size: Optional[int] = None,
        top_k: Optional[int] = None,
        into: None = None,
        keys: Optional[Literal["state", "transformers", "deepseek"]] = None,
        dtype: Literal["int64", "int32"] = "int64",
    ) -> List[Path]: ...
    @overload
    def export(
        self,
        out: None = None,
        *,
        to: Literal["hf-deepseek-v4"],
        layers: Sequence[int] = ...,
        vocab_size: None = None,
        top_k: None = None,
        into: _Path,
        keys: Optional[Literal["state", "transformers", "deepseek"]] = None,
        dtype: Literal["int64", "int32"] = "int64",
    ) -> CheckpointInsert: ...
    @property
    def expert_ids(self) -> npt.NDArray[np.uint32]: ...
    @property
    def meta(self) -> TableMeta: ...
    def stats(self, data: Optional[_Path] = None) -> TableStats: ...

def build_table(
    data: _Path,
    out: Optional[_Path] = None,
    *,
    method: _Method,
    experts: int,
    top_k: int = 1,
    hashes: int = 1,
    layers: int = 1,
    seed: int = 0,
    no_refine: bool = False,
    base: _Method = "balanced",
    embeddings: Optional[_Path] = None,
    tensor: Optional[str] = None,
    kmeans_runs: int = 1,
    format: _TableFormat = "arrow",
    plot: Optional[_Path] = None,
) -> Table: ...

def balanced_assignment(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.uint32]: ...

@final
class Route:
    spec: int
    hash: int
    experts: int
    top_k: int
    expert_ids: npt.NDArray[np.int64]
    order: npt.NDArray[np.int64]
    slots: npt.NDArray[np.int64]
    offsets: npt.NDArray[np.int64]
    peer_counts: npt.NDArray[np.int64]

@final
class Batch:
    index: int
    epoch: int
    input_ids: npt.NDArray[np.int64]
    targets: npt.NDArray[np.int64]
    loss_mask: npt.NDArray[np.bool_]
    routes: List[Route]

@final
class RouteInfo:
    index: int
    table: Path
    fingerprint: str
    method: _Method
    layer: int
    hash: int
    experts: int
    top_k: int
    sparse_layers: List[int]

@final
class Batches(Iterator[Batch]):
    def __iter__(self) -> "Batches": ...
    def __next__(self) -> Batch: ...

@final
class Loader:
    def __new__(
        cls,
        data: _Path,
        tables: Optional[Sequence[_Path]] = None,
        *,
        batch_size: int,
        seq_len: int,
        seed: int = 0,
        per_example: bool = False,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        expert_parallel: int = 1,
        workers: int = 2,
        prefetch: int = 4,
    ) -> "Loader": ...
    @staticmethod
    def for_run(
        config: "RunConfig",
        data: _Path,
        *,
        rank: int = 0,
        world_size: int = 1,
        expert_parallel: int = 1,
    ) -> "Loader": ...
    def __iter__(self) -> Batches: ...
    def take(self, steps: int) -> Batches: ...
    def state(self) -> LoaderState: ...
    def load_state(self, state: LoaderState) -> None: ...
    @property
    def batches_per_epoch(self) -> int: ...
    @property
    def routes(self) -> List[RouteInfo]: ...

@final
class DataConfig:
    train: Path
    valid: Path
    test: Optional[Path]

@final
class SparseLayer:
    at: int
    stack: Literal["encoder", "decoder"]
    kind: Literal["dense", "hash", "multihash", "switch", "token-switch", "base"]
    experts: Optional[int]
    table: Optional[Path]
    table_layer: int
    load_bal: float
    capacity_factor: Optional[float]
    d_ff: Optional[int]
    top_k: Optional[int]
    scoring: Optional[Literal["softmax", "sigmoid", "sqrtsoftplus", "uniform"]]

@final
class ModelConfig:
    kind: Literal["decoder", "seq2seq"]
    layers: int
    encoder_layers: int
    encoder_context: Optional[int]
    d_model: int
    d_ff: int
    heads: int
    dropout: float
    context: int
    positions: Literal["learned", "sinusoidal"]
    tie_embeddings: bool
    sparse: List[SparseLayer]

@final
class TrainConfig:
    steps: int
    batch_size: int
    lr: float
    warmup: int
    clip: float
    betas: Tuple[float, float]
    eps: float
    seed: int
    precision: Literal["fp32", "bf16"]
    freeze: List[Literal["experts", "router", "all-but-last", "all-but-sparse"]]
    eval_every: int
    eval_batches: int
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    device: str
    workers: int
    prefetch: int
    threads: int
    expert_matmul: Literal["auto", "grouped", "loop"]

@final
class RunConfig:
    @staticmethod
    def load(path: _Path, overrides: Sequence[str] = ...) -> "RunConfig": ...
    @staticmethod
    def parse(text: str, origin: _Path = ..., overrides: Sequence[str] = ...) -> "RunConfig": ...
    @staticmethod
    def from_json(text: str, origin: _Path = ..., overrides: Sequence[str] = ...) -> "RunConfig": ...
    @property
    def data(self) -> DataConfig: ...
    @property
    def model(self) -> ModelConfig: ...
    @property
    def train(self) -> TrainConfig: ...
    def table_paths(self) -> List[Path]: ...
    def to_toml(self) -> str: ...
    def resume_differences(self, then: "RunConfig") -> List[str]: ...
