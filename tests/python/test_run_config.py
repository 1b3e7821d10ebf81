"""hashprep.RunConfig: hashtrain's run config read by hashtrain's own code (typed attributes,
defaults, overrides, resume rule), and Loader.for_run: a run's loader with each route naming the
sparse layers it serves."""

import pathlib
import shutil

import pytest

import hashprep
from conftest import RUN_CONFIG


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, shards):
    tmp = tmp_path_factory.mktemp("config")
    table = tmp / "balanced8.arrow"
    hashprep.build_table(shards, table, method="balanced", experts=8)
    path = tmp / "run.toml"
    path.write_text(RUN_CONFIG.format(data=shards, table=table, kind="hash"))
    return path, table


def test_typed_settings_with_defaults_and_overrides(config_file, shards):
    path, table = config_file
    config = hashprep.RunConfig.load(path, overrides=["train.betas=[0.8, 0.9]", "model.sparse.0.d_ff=24"])
    assert config.data.train == pathlib.Path(shards) and config.data.test is None
    m, t = config.model, config.train
    assert (m.layers, m.d_model, m.d_ff, m.heads, m.context, m.dropout) == (2, 16, 32, 2, 16, 0.0)
    assert m.positions == "learned" and m.tie_embeddings is True  # defaults
    [layer] = m.sparse
    assert (layer.at, layer.kind, layer.table, layer.d_ff, layer.table_layer) == (2, "hash", table, 24, 0)
    assert layer.experts is None and layer.top_k is None and layer.scoring is None and layer.load_bal == 0.1
    assert t.betas == (0.8, 0.9) and t.lr == 0.01 and t.steps == 3
    assert (t.seed, t.precision, t.expert_matmul, t.device, t.clip) == (0, "fp32", "auto", "cpu", 1.0)
    assert t.freeze == []
    frozen = hashprep.RunConfig.load(path, overrides=['train.freeze=["experts", "all-but-last"]'])
    assert frozen.train.freeze == ["experts", "all-but-last"]
    assert frozen.resume_differences(hashprep.RunConfig.load(path)) == [
        'train.freeze (null in the checkpoint, ["experts","all-but-last"] now)']
    assert config.table_paths() == [table]
    assert hashprep.RunConfig.parse(config.to_toml()) == config
    assert hashprep.RunConfig.load(path) != config


def test_a_sequence_to_sequence_config_reads_and_its_loader_is_hashtrains(config_file):
    path, _ = config_file
    config = hashprep.RunConfig.load(path, overrides=[
        "model.kind=seq2seq", "model.encoder_layers=2", "model.sparse.0.stack=encoder"])
    m = config.model
    assert (m.kind, m.encoder_layers, m.encoder_context, m.sparse[0].stack) == ("seq2seq", 2, None, "encoder")
    assert hashprep.RunConfig.load(path).model.kind == "decoder"
    with pytest.raises(hashprep.Error, match=r'model.kind = "seq2seq": its batches carry each example.s context'):
        hashprep.Loader.for_run(config, config.data.train)
    with pytest.raises(hashprep.Error, match=r'model.sparse\[0\].stack = "encoder": only a model.kind = "seq2seq"'):
        hashprep.RunConfig.load(path, overrides=["model.sparse.0.stack=encoder"])


def test_resume_differences_ignore_runtime_settings_only(config_file):
    path, _ = config_file
    now = hashprep.RunConfig.load(path)
    then = hashprep.RunConfig.load(path, overrides=["train.steps=9", "train.workers=3", "train.lr=0.5"])
    assert now.resume_differences(then) == ["train.lr (0.5 in the checkpoint, 0.01 now)"]
    assert now.resume_differences(hashprep.RunConfig.load(path, overrides=["train.steps=9"])) == []


def test_missing_and_unreadable_configs(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.toml"):
        hashprep.RunConfig.load(tmp_path / "nowhere.toml")
    with pytest.raises(hashprep.Error, match=r"<text>: .*missing field `data`"):
        hashprep.RunConfig.parse("[model]\nlayers = 1\nd_model = 8\nd_ff = 8\nheads = 1\ncontext = 4\n")


def test_for_run_matches_layers_to_routes_by_the_tables_bytes(config_file, tmp_path, shards):
    path, table = config_file
    twin = tmp_path / "twin.arrow"  # the same bytes under another name: one route serves both
    shutil.copy(table, twin)
    sparse = f'[{{at = 1, kind = "hash", table = "{table}"}}, {{at = 2, kind = "hash", table = "{twin}"}}]'
    config = hashprep.RunConfig.load(path, overrides=[f"model.sparse={sparse}"])
    loader = hashprep.Loader.for_run(config, config.data.train, rank=1, world_size=2)
    [route] = loader.routes
    assert (route.index, route.table, route.layer, route.hash, route.experts, route.top_k) == (0, table, 0, 0, 8, 1)
    assert route.sparse_layers == [1, 2] and route.fingerprint.startswith("blake3:")
    batch = next(iter(loader.take(1)))
    assert batch.input_ids.shape == (2, 16), "train.batch_size 4 split over 2 ranks"
    plain = hashprep.Loader(shards, [table], batch_size=2, seq_len=16)
    assert plain.routes[0].sparse_layers == []
    with pytest.raises(hashprep.Error, match="train.batch_size 4 is not a multiple of the 3 data-parallel ranks"):
        hashprep.Loader.for_run(config, config.data.train, world_size=3)
