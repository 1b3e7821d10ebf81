"""hashprep: corpus -> Arrow shards -> token->expert tables -> bucketed batches, for Hash Layer
MoE training. The stages of the Rust library, keyword arguments named as the CLI's options.

    import hashprep
    hashprep.tokenize(["wiki.valid.tokens"], "out/wiki", format="wikitext103", tokenizer="gpt2")
    table = hashprep.build_table("out/wiki", "balanced.arrow", method="balanced", experts=16)
    for batch in hashprep.Loader("out/wiki", ["balanced.arrow"], batch_size=8, seq_len=512):
        batch.input_ids, batch.routes[0].order, batch.routes[0].offsets

`hashprep.RunConfig.load(path, overrides=[...])` reads hashtrain's run config with hashtrain's own
code; `Loader.for_run(config, data)` opens its loader as hashtrain does.

`hashprep.torch` wraps the loader as a torch IterableDataset (torch is imported lazily).
"""

from ._hashprep import (
    Batch,
    DataConfig,
    Dataset,
    Error,
    Loader,
    ModelConfig,
    Route,
    RouteInfo,
    RunConfig,
    SparseLayer,
    Table,
    TrainConfig,
    balanced_assignment,
    build_table,
    inspect,
    spill_reddit,
    tokenize,
    train_tokenizer,
)

__all__ = [
    "Batch",
    "DataConfig",
    "Dataset",
    "Error",
    "Loader",
    "ModelConfig",
    "Route",
    "RouteInfo",
    "RunConfig",
    "SparseLayer",
    "Table",
    "TrainConfig",
    "balanced_assignment",
    "build_table",
    "inspect",
    "spill_reddit",
    "tokenize",
    "train_tokenizer",
]
