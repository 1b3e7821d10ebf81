"""The real client of top-k tables: HF transformers' DeepSeek-V4 loads our exported `tid2eid`
and routes real text by it."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

import transformers
from safetensors.torch import load_file

import hashprep

EXPERTS, TOP_K, VOCAB = 8, 2, 50304  # GPT-2's 50257 ids, padded as models pad them


def tiny_config():
    return transformers.DeepseekV4Config(
        vocab_size=VOCAB, hidden_size=32, moe_intermediate_size=16, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, q_lora_rank=16,
        num_experts_per_tok=TOP_K, n_routed_experts=EXPERTS, n_shared_experts=1, hc_mult=2,
        o_groups=1, o_lora_rank=16, index_n_heads=2, index_head_dim=16, index_topk=8,
        sliding_window=16, num_nextn_predict_layers=0,
        mlp_layer_types=["hash_moe", "hash_moe", "moe"],
    )


@pytest.fixture(scope="module")
def small_text(tmp_path_factory, wiki_test):
    """The first ~100 kB of Wikitext-103 test (about 25k GPT-2 tokens), tokenized."""
    lines, size = [], 0
    with open(wiki_test, encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            size += len(line)
            if size > 100_000:
                break
    root = tmp_path_factory.mktemp("deepseek")
    text = root / "wiki.small.tokens"
    text.write_text("".join(lines), encoding="utf-8")
    hashprep.tokenize([text], root / "data", format="wikitext103", tokenizer="gpt2", progress=False)
    return root


def test_deepseek_v4_routes_real_text_by_our_exported_table(small_text):
    data = small_text / "data"
    table = hashprep.build_table(data, small_text / "top2.arrow", method="balanced", experts=EXPERTS,
                                 top_k=TOP_K, layers=2)
    assert table.expert_ids.shape == (50257, 2, TOP_K)
    out = small_text / "tid2eid.safetensors"
    table.export(out, to="hf-deepseek-v4", layers=[0, 1], vocab_size=VOCAB, top_k=TOP_K)

    torch.manual_seed(0)
    model = transformers.DeepseekV4ForCausalLM(tiny_config()).eval()
    result = model.load_state_dict(load_file(out), strict=False)
    assert result.unexpected_keys == [], "every exported key is one the model has"
    assert not [k for k in result.missing_keys if "tid2eid" in k]

    selected = {0: [], 1: []}
    for layer in selected:
        gate = model.model.layers[layer].mlp.gate
        assert isinstance(gate, transformers.models.deepseek_v4.modeling_deepseek_v4.DeepseekV4HashRouter)
        gate.register_forward_hook(lambda _m, _in, output, layer=layer: selected[layer].append(output[2]))

    dataset = hashprep.Dataset(data)
    ids = np.concatenate([dataset[i] for i in range(len(dataset))]).astype(np.int64)
    with torch.no_grad():  # the base model: the routing, without the 50k-wide output layer
        for chunk in np.array_split(ids, -(-len(ids) // 2048)):
            model.model(input_ids=torch.from_numpy(chunk)[None])

    stats = table.stats()
    for layer in selected:
        experts = torch.cat(selected[layer]).numpy()
        # Every position's experts, in slot order, are our table's row for its token.
        np.testing.assert_array_equal(experts, table.expert_ids[ids, layer, :])
        # The loads the model sees are the loads our statistics report (over the same tokens).
        loads = np.bincount(experts.ravel(), minlength=EXPERTS)
        reported = stats["streams"][layer]["stats"]
        assert loads.sum() == TOP_K * len(ids)
        assert loads.max() == reported["max_load"]
        np.testing.assert_allclose(loads / loads.sum(), reported["shares"], rtol=0, atol=1e-12)
    # Ids beyond the tokenizer's vocabulary got (id + j) mod K.
    tid2eid = model.model.layers[0].mlp.gate.tid2eid
    assert tid2eid[50300].tolist() == [50300 % EXPERTS, (50300 + 1) % EXPERTS]


def test_exports_that_do_not_fit_the_model_are_refused(small_text):
    top1 = hashprep.build_table(small_text / "data", method="balanced", experts=EXPERTS)
    out = small_text / "refused.safetensors"
    with pytest.raises(hashprep.Error, match="6, but the table gives each token 1 expert"):
        top1.export(out, to="hf-deepseek-v4", layers=[0], vocab_size=VOCAB, top_k=6)
    top2 = hashprep.build_table(small_text / "data", method="random", experts=EXPERTS, top_k=2)
    with pytest.raises(hashprep.Error, match="50000 is smaller than the table's vocabulary of 50257 ids"):
        top2.export(out, to="hf-deepseek-v4", layers=[0], vocab_size=50_000, top_k=2)
    with pytest.raises(hashprep.Error, match="9 is more than the 8 experts"):
        hashprep.build_table(small_text / "data", method="balanced", experts=EXPERTS, top_k=9)
    with pytest.raises(hashprep.Error, match="0: must be at least 1"):
        hashprep.build_table(small_text / "data", method="balanced", experts=EXPERTS, top_k=0)
    assert not out.exists()


def test_the_loader_hands_python_the_pairs_of_a_top_k_table(small_text):
    data = small_text / "data"
    table = hashprep.build_table(data, small_text / "random-top3.arrow", method="random", experts=EXPERTS,
                                 top_k=3)
    batch = next(iter(hashprep.Loader(data, [small_text / "random-top3.arrow"], batch_size=4, seq_len=32)))
    route = batch.routes[0]
    assert route.top_k == 3
    assert route.expert_ids.shape == (4, 32, 3)
    np.testing.assert_array_equal(route.expert_ids, table.expert_ids[batch.input_ids])
    n = 4 * 32
    assert route.order.shape == route.slots.shape == (n * 3,)
    # Each (position, slot) pair once, grouped by expert as the offsets say.
    pairs = route.order * 3 + route.slots
    np.testing.assert_array_equal(np.sort(pairs), np.arange(n * 3))
    experts_in_order = route.expert_ids.reshape(-1)[pairs]
    np.testing.assert_array_equal(experts_in_order, np.repeat(np.arange(EXPERTS), np.diff(route.offsets)))


# --- Tables written into a checkpoint the user has (`export-table --into`) ---------------------


@pytest.fixture(scope="module")
def saved_checkpoints(tmp_path_factory):
    """A tiny DeepSeek-V4 saved by transformers, sharded (3 files and an index) and single-file."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = transformers.DeepseekV4ForCausalLM(tiny_config())
    model.save_pretrained(root / "sharded", max_shard_size="2MB")
    model.save_pretrained(root / "single")
    assert (root / "sharded" / "model.safetensors.index.json").exists() and (root / "single" / "model.safetensors").exists()
    return root


def file_digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def routed_experts(model, ids):
    """The experts each hash layer's router picks for `ids`, by forward hooks."""
    selected = {0: [], 1: []}
    hooks = [model.model.layers[layer].mlp.gate.register_forward_hook(
        lambda _m, _in, output, layer=layer: selected[layer].append(output[2])) for layer in selected]
    with torch.no_grad():
        model.model(input_ids=torch.from_numpy(ids)[None])
    for hook in hooks:
        hook.remove()
    return {layer: torch.cat(found).numpy() for layer, found in selected.items()}


@pytest.mark.parametrize("layout,keys", [("sharded", "transformers"), ("single", "transformers"), ("sharded", "deepseek")])
def test_tables_written_into_a_checkpoint_load_with_from_pretrained(small_text, saved_checkpoints, tmp_path, cli,
                                                                     layout, keys):
    data = small_text / "data"
    table_file = small_text / "top2-two-layers.arrow"
    table = hashprep.build_table(data, table_file, method="balanced", experts=EXPERTS, top_k=TOP_K, layers=2)
    checkpoint = tmp_path / layout
    shutil.copytree(saved_checkpoints / layout, checkpoint)
    before = file_digests(checkpoint)
    done = json.loads(cli("export-table", table_file, "--to", "hf-deepseek-v4", "--into", checkpoint, "--keys", keys,
                          "--json"))
    prefix = "model." if keys == "transformers" else ""
    assert done["keys"] == {str(i): f"{prefix}layers.{i}.ffn.gate.tid2eid" for i in (0, 1)}
    after = file_digests(checkpoint)
    # No weight file rewritten: every file is as it was (a single file renamed, its bytes kept).
    if layout == "single":
        assert done["renamed"] == str(checkpoint / "model-00001-of-00001.safetensors")
        assert after["model-00001-of-00001.safetensors"] == before.pop("model.safetensors")
    assert {k: v for k, v in after.items() if k in before and k != "model.safetensors.index.json"} == \
        {k: v for k, v in before.items() if k != "model.safetensors.index.json"}
    assert set(after) - set(before) - {"model-00001-of-00001.safetensors"} == {"tid2eid.safetensors"} | \
        ({"model.safetensors.index.json"} if layout == "single" else set())

    model, info = transformers.DeepseekV4ForCausalLM.from_pretrained(checkpoint, output_loading_info=True)
    assert not any(info.values()), info
    for layer in (0, 1):
        tid2eid = model.model.layers[layer].mlp.gate.tid2eid
        np.testing.assert_array_equal(tid2eid[:50257].numpy(), table.expert_ids[:, layer, :])
    dataset = hashprep.Dataset(data)
    ids = np.concatenate([dataset[i] for i in range(min(len(dataset), 3))]).astype(np.int64)[:2048]
    for layer, experts in routed_experts(model.eval(), ids).items():
        np.testing.assert_array_equal(experts, table.expert_ids[ids, layer, :])


def test_a_second_table_replaces_the_first_and_int32_ids_load(small_text, saved_checkpoints, tmp_path):
    data = small_text / "data"
    first = hashprep.build_table(data, method="balanced", experts=EXPERTS, top_k=TOP_K, layers=2)
    second = hashprep.build_table(data, method="random", experts=EXPERTS, top_k=TOP_K, layers=2, seed=4)
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(saved_checkpoints / "sharded", checkpoint)
    first.export(into=checkpoint, to="hf-deepseek-v4")
    done = second.export(into=checkpoint, to="hf-deepseek-v4", keys="deepseek", dtype="int32")
    assert sorted(done["replaced"]) == [f"model.layers.{i}.ffn.gate.tid2eid" for i in (0, 1)]
    index = json.loads((checkpoint / "model.safetensors.index.json").read_text())
    assert not [k for k in index["weight_map"] if k.startswith("model.") and "tid2eid" in k]
    assert load_file(checkpoint / "tid2eid.safetensors")["layers.0.ffn.gate.tid2eid"].dtype == torch.int32
    model = transformers.DeepseekV4ForCausalLM.from_pretrained(checkpoint)
    np.testing.assert_array_equal(model.model.layers[1].mlp.gate.tid2eid[:50257].numpy(), second.expert_ids[:, 1, :])


def test_checkpoints_the_table_does_not_fit_are_refused_and_left_untouched(small_text, saved_checkpoints, tmp_path,
                                                                           cli_result):
    data = small_text / "data"
    table_file = small_text / "top2-refusals.arrow"
    hashprep.build_table(data, table_file, method="balanced", experts=EXPERTS, top_k=TOP_K)
    cases = [
        ({"vocab_size": 50000}, "vocab_size = 50000: smaller than the table's 50257 ids"),
        ({"n_routed_experts": 16}, "n_routed_experts = 16: the table routes to 8 experts"),
        ({"num_experts_per_tok": 6}, "num_experts_per_tok = 6: the table gives each token 2 expert(s)"),
    ]
    for change, said in cases:
        checkpoint = tmp_path / f"ckpt-{next(iter(change))}"
        shutil.copytree(saved_checkpoints / "sharded", checkpoint)
        config = json.loads((checkpoint / "config.json").read_text())
        (checkpoint / "config.json").write_text(json.dumps({**config, **change}))
        before = file_digests(checkpoint)
        done = cli_result("export-table", table_file, "--to", "hf-deepseek-v4", "--into", checkpoint)
        assert done.returncode == 2 and f"{checkpoint / 'config.json'}: {said}" in done.stderr, done.stderr
        assert file_digests(checkpoint) == before
    # A listed layer that is no hash layer.
    checkpoint = tmp_path / "ckpt-layer"
    shutil.copytree(saved_checkpoints / "single", checkpoint)
    before = file_digests(checkpoint)
    done = cli_result("export-table", table_file, "--to", "hf-deepseek-v4", "--into", checkpoint, "--layers", "2")
    assert done.returncode == 2 and 'mlp_layer_types[2] = "moe": layer 2 is not a hash layer' in done.stderr, done.stderr
    # Settings the config gives; no checkpoint there; a shard cut short.
    done = cli_result("export-table", table_file, "--to", "hf-deepseek-v4", "--into", checkpoint, "--top-k", "2")
    assert done.returncode == 2 and "--top-k comes from the checkpoint's config.json" in done.stderr, done.stderr
    assert file_digests(checkpoint) == before
    done = cli_result("export-table", table_file, "--to", "hf-deepseek-v4", "--into", tmp_path / "nothing")
    assert done.returncode == 2 and str(tmp_path / "nothing" / "config.json") in done.stderr, done.stderr
    checkpoint = tmp_path / "ckpt-cut"
    shutil.copytree(saved_checkpoints / "sharded", checkpoint)
    shard = checkpoint / "model-00002-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes()[:-100])
    before = file_digests(checkpoint)
    done = cli_result("export-table", table_file, "--to", "hf-deepseek-v4", "--into", checkpoint)
    assert done.returncode == 2 and f"{shard}: cut short" in done.stderr, done.stderr
    assert file_digests(checkpoint) == before
