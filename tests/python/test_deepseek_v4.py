"""The real client of top-k tables: HF transformers' DeepSeek-V4 loads our exported `tid2eid`
and routes real text by it."""

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
