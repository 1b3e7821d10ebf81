"""The end-of-document token of a tokenizer file, found without `--eos-token`: the `eos_token` of
a `tokenizer_config.json` beside it wins, else the usual tokens (DeepSeek's among them); the
manifest and stderr say which was taken."""

import json

import pytest

import hashprep
from conftest import write_word_level_tokenizer

DEEPSEEK_EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"


def word_tokenizer(path, specials):
    """A word-level tokenizer.json: `specials` first, then the words of the test text."""
    words = "the cat sat on mat and dog ran".split()
    vocab = {token: i for i, token in enumerate(["[UNK]", *specials, *words])}
    write_word_level_tokenizer(path, vocab, specials)
    return vocab


def test_the_end_token_comes_from_the_config_beside_the_tokenizer_else_the_usual_list(tmp_path, cli_result):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog ran\n")
    # Only DeepSeek's token: found in the usual list, said on stderr and in the manifest.
    deepseek = tmp_path / "deepseek"
    deepseek.mkdir()
    vocab = word_tokenizer(deepseek / "tokenizer.json", [DEEPSEEK_EOS])
    done = cli_result("tokenize", "--format", "text", "--tokenizer", deepseek / "tokenizer.json", corpus,
                      "--out", tmp_path / "out-deepseek")
    assert done.returncode == 0, done.stderr
    assert f'end-of-document token "{DEEPSEEK_EOS}" (id 1), the first of the usual end-of-document tokens' \
        in done.stderr, done.stderr
    manifest = hashprep.Dataset(tmp_path / "out-deepseek").manifest["tokenizer"]
    assert (manifest["eos_token"], manifest["eos_id"], manifest["eos_from"]) == (DEEPSEEK_EOS, vocab[DEEPSEEK_EOS], "built_in")
    assert hashprep.Dataset(tmp_path / "out-deepseek")[0][-1] == vocab[DEEPSEEK_EOS]

    # Both tokens in the vocabulary: "</s>" comes first in the usual list, but the config names
    # DeepSeek's (as a dict, as Hugging Face writes it) and wins.
    both = tmp_path / "both"
    both.mkdir()
    vocab = word_tokenizer(both / "tokenizer.json", ["</s>", DEEPSEEK_EOS])
    out = tmp_path / "out-both"
    hashprep.tokenize([corpus], out, format="text", tokenizer=str(both / "tokenizer.json"), progress=False)
    assert hashprep.Dataset(out).manifest["tokenizer"]["eos_from"] == "built_in"
    assert hashprep.Dataset(out).manifest["tokenizer"]["eos_token"] == "</s>"
    (both / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": DEEPSEEK_EOS, "special": True}}))
    # The token the config names is part of the run's identity: the earlier output is not taken
    # for this run's.
    with pytest.raises(hashprep.Error, match="other settings or inputs"):
        hashprep.tokenize([corpus], tmp_path / "out-both", format="text", tokenizer=str(both / "tokenizer.json"),
                          progress=False)
    out = tmp_path / "out-configured"
    hashprep.tokenize([corpus], out, format="text", tokenizer=str(both / "tokenizer.json"), progress=False)
    manifest = hashprep.Dataset(out).manifest["tokenizer"]
    assert (manifest["eos_token"], manifest["eos_from"]) == (DEEPSEEK_EOS, "tokenizer_config")
    assert all(hashprep.Dataset(out)[i][-1] == vocab[DEEPSEEK_EOS] for i in range(len(hashprep.Dataset(out))))
    # A named token wins over both.
    out = tmp_path / "out-named"
    hashprep.tokenize([corpus], out, format="text", tokenizer=str(both / "tokenizer.json"), eos_token="</s>",
                      progress=False)
    manifest = hashprep.Dataset(out).manifest["tokenizer"]
    assert (manifest["eos_token"], manifest["eos_from"]) == ("</s>", "named")


def test_a_beginning_token_leads_every_document_when_named(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog ran\n")
    vocab = word_tokenizer(tmp_path / "tokenizer.json", ["<s>", "</s>"])
    plain, with_bos = tmp_path / "plain", tmp_path / "bos"
    hashprep.tokenize([corpus], plain, format="text", tokenizer=str(tmp_path / "tokenizer.json"), progress=False)
    hashprep.tokenize([corpus], with_bos, format="text", tokenizer=str(tmp_path / "tokenizer.json"),
                      bos_token="<s>", progress=False)
    rows, bos_rows = hashprep.Dataset(plain), hashprep.Dataset(with_bos)
    assert len(rows) == len(bos_rows) == 2
    for i in range(len(rows)):
        assert list(bos_rows[i]) == [vocab["<s>"], *rows[i]]
    manifest = bos_rows.manifest["tokenizer"]
    assert (manifest["bos_token"], manifest["bos_id"]) == ("<s>", vocab["<s>"])
    assert manifest["encoder"]["path"] == "tokenizers" and manifest["encoder"]["reason"]
    with pytest.raises(hashprep.Error, match='beginning-of-document token "<bos>" is not in tokenizer'):
        hashprep.tokenize([corpus], tmp_path / "none", format="text", tokenizer=str(tmp_path / "tokenizer.json"),
                          bos_token="<bos>", progress=False)
