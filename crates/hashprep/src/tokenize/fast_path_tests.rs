//! The byte-level BPE fast path gives the ids of the `tokenizers` library on every input, and
//! is refused for files it does not reproduce.

use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;

fn gpt2() -> &'static TextTokenizer {
    static GPT2: OnceLock<TextTokenizer> = OnceLock::new();
    GPT2.get_or_init(|| TextTokenizer::load("gpt2").unwrap())
}

/// A byte-level BPE trained as `hashprep train-tokenizer --kind bpe` trains one.
fn trained() -> &'static TextTokenizer {
    static TRAINED: OnceLock<TextTokenizer> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let text = std::fs::read_to_string(wikitext("wiki.test.tokens")).unwrap();
        let lines = text.lines().map(str::to_owned).collect::<Vec<_>>();
        train_tokenizer(
            &TrainOptions::new(TokenizerKind::Bpe { vocab_size: 2000 }),
            lines.into_iter(),
        )
        .unwrap()
    })
}

fn wikitext(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/wikitext-103")
        .join(name)
}

/// Asserts both tokenizers' fast path gives the library's ids for `text`.
fn assert_same_ids(text: &str) {
    for tok in [gpt2(), trained()] {
        assert_eq!(tok.fast_path_refusal(), None);
        let fast = tok.encode(text).unwrap();
        let library = tok.encode_with_library(text).unwrap();
        if fast != library {
            let at = fast
                .iter()
                .zip(&library)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{}: ids differ at {at}: fast {:?} vs library {:?} (text {:?}...)",
                tok.source(),
                &fast[at..(at + 8).min(fast.len())],
                &library[at..(at + 8).min(library.len())],
                text.chars().take(80).collect::<String>()
            );
        }
    }
}

#[test]
fn wikitext_files_get_the_librarys_ids() {
    for name in ["wiki.valid.tokens", "wiki.test.tokens"] {
        let text = std::fs::read_to_string(wikitext(name)).unwrap();
        // Whole articles and single lines: the pieces do not depend on what is around them.
        assert_same_ids(&text);
        for line in text.lines().take(400) {
            assert_same_ids(line);
        }
    }
}

#[test]
fn every_unicode_plane_gets_the_librarys_ids() {
    // Every assigned or unassigned scalar value, in runs of 48 separated by the characters the
    // pattern treats apart (space, apostrophe, digits, letters, newline).
    let separators = [" ", "'s ", "  ", "\n", "1", "a", " ,", "\t\t"];
    let chars: Vec<char> = (0u32..0x11_0000).filter_map(char::from_u32).collect();
    for (i, run) in chars.chunks(48 * 64).enumerate() {
        let mut text = String::new();
        for (j, part) in run.chunks(48).enumerate() {
            text.extend(part);
            text.push_str(separators[(i + j) % separators.len()]);
        }
        assert_same_ids(&text);
    }
}

#[test]
fn long_runs_of_spaces_digits_and_punctuation_get_the_librarys_ids() {
    let runs = [
        " ".repeat(20_000),
        format!("{}x", " ".repeat(20_000)),
        "\n".repeat(5000) + "word",
        "\u{3000}".repeat(3000) + " end",
        "9".repeat(20_000),
        " 1234567890".repeat(2000),
        "!?.,;:-".repeat(3000),
        "'s'''t're".repeat(1000),
        "a".repeat(20_000),
        "\u{1F642}".repeat(2000),
    ];
    for text in runs {
        assert_same_ids(&text);
    }
}

fn text_strategy() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => "[ \t\n]{1,4}",
        4 => "[a-zA-Z]{1,8}",
        2 => "[0-9]{1,6}",
        2 => "'(s|t|re|ve|m|ll|d|x)",
        2 => "[!-/:-@\\[-`{-~]{1,4}",
        3 => any::<char>().prop_map(String::from),
        1 => "\\PC{1,6}",
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn random_text_gets_the_librarys_ids(text in text_strategy()) {
        assert_same_ids(&text);
    }
}

/// A change to a `tokenizer.json`.
type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);

/// `base` changed by `edit`, loaded.
fn edited(base: &serde_json::Value, edit: Edit) -> TextTokenizer {
    let mut json = base.clone();
    edit(&mut json);
    TextTokenizer::from_json_bytes(json.to_string().into_bytes(), "variant").unwrap()
}

/// `tok` is refused the fast path for `reason`, and encodes `text` as the library does.
fn assert_takes_the_library(tok: &TextTokenizer, reason: &str, text: &str) {
    let refusal = tok.fast_path_refusal().unwrap_or_default();
    assert!(refusal.contains(reason), "{refusal} (expected {reason})");
    assert_eq!(
        tok.encode(text).unwrap(),
        tok.encode_with_library(text).unwrap()
    );
}

#[test]
fn files_it_does_not_reproduce_take_the_library() {
    let base: serde_json::Value = serde_json::from_slice(gpt2().json()).unwrap();
    let cases: [(Edit, &str); 3] = [
        (
            &|j| j["normalizer"] = serde_json::json!({"type": "NFC"}),
            "normalizer",
        ),
        (
            &|j| j["pre_tokenizer"]["add_prefix_space"] = true.into(),
            "prefix space",
        ),
        (
            &|j| j["model"]["byte_fallback"] = true.into(),
            "byte fallback",
        ),
    ];
    let text = "Caf\u{e9} d\u{e9}j\u{e0} vu <x> \u{212b}ngstr\u{f6}m";
    for (edit, reason) in cases {
        // The library's ids, whatever the component does.
        assert_takes_the_library(&edited(&base, edit), reason, text);
    }
}

#[test]
fn added_tokens_are_found_as_the_library_finds_them_in_either_mode() {
    let mut json: serde_json::Value = serde_json::from_slice(gpt2().json()).unwrap();
    // Non-special tokens found in any mode, one normalized, one not; a special one that
    // overlaps a normalized one (found first, or passed over as text).
    let added = json["added_tokens"].as_array_mut().unwrap();
    for (id, content, normalized, special) in [
        (50_257, "<x>", false, false),
        (50_258, "[n]", true, false),
        (50_259, "<|sys|>", false, true),
        (50_260, "sys|>!", true, false),
        (50_261, "\u{ff5c}tool\u{ff5c}", true, false),
    ] {
        added.push(
            serde_json::json!({"id": id, "content": content, "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": normalized, "special": special}),
        );
    }
    let texts = [
        "a <x> b [n]y c<|sys|>! d <|endoftext|> e<|endoftext|><x>",
        "<x><x>y<|sys|>!<|sys|>sys|>! \u{ff5c}tool\u{ff5c}\u{ff5c}tool",
        "no added tokens here at all",
    ];
    for mode in SpecialTokens::ALL {
        let mut tok =
            TextTokenizer::from_json_bytes(json.to_string().into_bytes(), "added").unwrap();
        tok.set_special_tokens(mode);
        assert_eq!(tok.fast_path_refusal(), None, "{mode:?}");
        for text in texts {
            assert_eq!(
                tok.encode(text).unwrap(),
                tok.encode_with_library(text).unwrap(),
                "{mode:?}: {text:?}"
            );
            // Special-token strings counted while encoding, or not looked for again where no
            // added token occurs: as a count of its own gives them.
            let mut ids = Vec::new();
            let counted = tok.encode_counting(text, &mut ids).unwrap();
            assert_eq!(
                counted,
                tok.count_special_strings(text),
                "{mode:?}: {text:?}"
            );
        }
        assert_eq!(tok.count_special_strings(texts[1]), 2);
        let ids = tok.encode(texts[0]).unwrap();
        assert!(ids.contains(&50_257) && ids.contains(&50_258));
        assert_eq!(ids.contains(&GPT2_EOS.1), mode == SpecialTokens::Recognize);
    }
    let mut options = json.clone();
    options["added_tokens"][1]["lstrip"] = true.into();
    let refused = TextTokenizer::from_json_bytes(options.to_string().into_bytes(), "x").unwrap();
    assert!(refused.fast_path_refusal().unwrap().contains("with lstrip"));
}

#[test]
fn split_pattern_post_processors_and_ignore_merges_keep_the_fast_path() {
    let base: serde_json::Value = serde_json::from_slice(gpt2().json()).unwrap();
    let mut split = base.clone();
    split["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": byte_bpe::GPT2_PATTERN}, "behavior": "Isolated",
         "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
    ]});
    split["post_processor"] = serde_json::json!({"type": "RobertaProcessing",
        "sep": ["</s>", 2], "cls": ["<s>", 0], "trim_offsets": true, "add_prefix_space": false});
    let mut whole = base.clone();
    whole["model"]["ignore_merges"] = true.into();
    let text = std::fs::read_to_string(wikitext("wiki.valid.tokens")).unwrap();
    let text = format!("{} don't 'll 12345 \u{1F642}  x", &text[..200_000]);
    for json in [split, whole] {
        let tok = TextTokenizer::from_json_bytes(json.to_string().into_bytes(), "variant").unwrap();
        assert_eq!(tok.fast_path_refusal(), None);
        assert_eq!(
            tok.encode(&text).unwrap(),
            tok.encode_with_library(&text).unwrap()
        );
    }
}

#[test]
fn two_tokenizers_on_one_thread_keep_their_own_pieces() {
    let text = "The tokenizers share a thread, not a cache.";
    let first = gpt2().encode(text).unwrap();
    let other = trained().encode(text).unwrap();
    assert_ne!(first, other);
    assert_eq!(gpt2().encode(text).unwrap(), first);
    assert_eq!(
        trained().encode(text).unwrap(),
        trained().encode_with_library(text).unwrap()
    );
}

/// GPT-2's vocabulary and merges behind `splits` (`Split` patterns, `Isolated`) and a
/// `ByteLevel` without its own regex; `ignore_merges` as Llama-3 sets it.
fn with_splits(splits: &[&str], ignore_merges: bool) -> TextTokenizer {
    let mut json: serde_json::Value = serde_json::from_slice(gpt2().json()).unwrap();
    let mut steps: Vec<serde_json::Value> = (splits.iter())
        .map(|pattern| {
            serde_json::json!({"type": "Split", "pattern": {"Regex": pattern},
                "behavior": "Isolated", "invert": false})
        })
        .collect();
    steps.push(
        serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": false}),
    );
    json["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": steps});
    json["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": []});
    json["model"]["ignore_merges"] = ignore_merges.into();
    TextTokenizer::from_json_bytes(json.to_string().into_bytes(), "family").unwrap()
}

#[test]
fn each_familys_split_patterns_take_the_fast_path_with_the_librarys_ids() {
    use super::split_pattern::tests::{FAMILIES, SAMPLES};
    let wiki = std::fs::read_to_string(wikitext("wiki.valid.tokens")).unwrap();
    let wiki = &wiki[..60_000];
    let deepseek: Vec<&str> = (FAMILIES.iter())
        .filter(|(name, _)| name.starts_with("deepseek"))
        .map(|(_, pattern)| *pattern)
        .collect();
    let mut tokenizers: Vec<(String, TextTokenizer)> = (FAMILIES.iter())
        .map(|(name, pattern)| {
            (
                (*name).to_owned(),
                with_splits(&[pattern], *name == "llama3"),
            )
        })
        .collect();
    tokenizers.push(("deepseek, all three".into(), with_splits(&deepseek, false)));
    let mut state = 7u64;
    let alphabet: Vec<char> = "aZé日カ한ع١2½ 's\t\r\n\u{a0}!.,-/ßſ👍🏽\u{301}Kk"
        .chars()
        .collect();
    for (name, tok) in &tokenizers {
        assert_eq!(tok.fast_path_refusal(), None, "{name}");
        for text in SAMPLES.iter().copied().chain([wiki]) {
            assert_eq!(
                tok.encode(text).unwrap(),
                tok.encode_with_library(text).unwrap(),
                "{name}: {text:?}"
            );
        }
        for _ in 0..300 {
            let text: String = (0..20)
                .map(|_| {
                    state = crate::util::splitmix64(state);
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect();
            assert_eq!(
                tok.encode(&text).unwrap(),
                tok.encode_with_library(&text).unwrap(),
                "{name}: {text:?}"
            );
        }
    }
}

#[test]
fn split_steps_it_does_not_reproduce_take_the_library() {
    let cases: [(&str, &str); 3] = [
        (r"(?<=a)b|\s+", "group kind"),
        (r"\bword\b", "escape `\\b`"),
        (r"(?i:ss)|x", "multi-character case fold"),
    ];
    for (pattern, reason) in cases {
        let tok = with_splits(&[pattern], false);
        assert_takes_the_library(&tok, reason, "a b word STRASSE straße x");
    }
    let base: serde_json::Value =
        serde_json::from_slice(with_splits(&["x"], false).json()).unwrap();
    let steps: [(Edit, &str); 4] = [
        (
            &|j| j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed".into(),
            "Isolated",
        ),
        (
            &|j| j["pre_tokenizer"]["pretokenizers"][0]["invert"] = true.into(),
            "not inverted",
        ),
        (
            &|j| {
                j["pre_tokenizer"]["pretokenizers"][0]["pattern"] =
                    serde_json::json!({"String": "x"});
            },
            "Split by a regex",
        ),
        (
            &|j| {
                let steps = j["pre_tokenizer"]["pretokenizers"].as_array_mut().unwrap();
                steps.reverse(); // ByteLevel first, the Split after it
            },
            "last step is not ByteLevel",
        ),
    ];
    for (edit, reason) in steps {
        assert_takes_the_library(&edited(&base, edit), reason, "a x b xx Caf\u{e9}");
    }
}

#[test]
fn a_file_the_library_panics_on_is_refused_as_invalid() {
    // `tokenizers` 0.23 slices out of bounds loading a BPE whose merges are shorter than its
    // continuing-subword prefix.
    let mut json: serde_json::Value = serde_json::from_slice(gpt2().json()).unwrap();
    json["model"]["continuing_subword_prefix"] = "##".into();
    let refused = TextTokenizer::from_json_bytes(json.to_string().into_bytes(), "prefixed");
    let Err(crate::Error::Tokenizer(message)) = refused else {
        panic!("refused as an invalid tokenizer");
    };
    assert!(
        message.contains("the tokenizers library failed"),
        "{message}"
    );
}

#[test]
fn a_file_on_the_fast_path_is_checked_and_described_as_the_library_would() {
    let mut json: serde_json::Value = serde_json::from_slice(gpt2().json()).unwrap();
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 50_300, "content": "<|extra|>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": false
        }));
    let bytes = json.to_string().into_bytes();
    let tok = TextTokenizer::from_json_bytes(bytes.clone(), "file").unwrap();
    let library = tokenizers::Tokenizer::from_bytes(&bytes).unwrap();
    // The fast path read the vocabulary itself: the library is not loaded to describe it.
    let max_id = library.get_vocab(true).into_values().max().unwrap();
    assert_eq!(tok.vocab_size(), max_id as usize + 1);
    for token in [
        "hello",
        "\u{120}world",
        "<|endoftext|>",
        "<|extra|>",
        "no such token",
    ] {
        assert_eq!(
            tok.token_to_id(token),
            library.token_to_id(token),
            "{token}"
        );
    }
    assert!(tok.library.get().is_none());
    // The library numbers added tokens its own way (not by the file's ids).
    let ids = tok.encode("Hello <|extra|> world").unwrap();
    let expected = library.encode("Hello <|extra|> world", false).unwrap();
    assert_eq!(ids, expected.get_ids());
    // Loaded on first use, it decodes.
    assert_eq!(tok.decode(&ids), library.decode(&ids, false).unwrap());
    // The parts but the vocabulary and merges are still the library's to check.
    json["decoder"] = serde_json::json!({"type": "NoSuchDecoder"});
    let refused = TextTokenizer::from_json_bytes(json.to_string().into_bytes(), "bad decoder");
    assert!(
        matches!(refused, Err(crate::Error::Tokenizer(_))),
        "{refused:?}"
    );
}
