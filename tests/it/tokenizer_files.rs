//! Real-world `tokenizer.json` files: truncation and padding sections, and special-token
//! strings written inside the text.

use hashprep::Manifest;
use hashprep::{Encoder, TextTokenizer, GPT2_EOS};

use crate::common::*;

/// GPT-2's tokenizer.json as published on the hub: truncation to 50 ids, plus a padding section.
fn gpt2_json_with_truncation_and_padding(dir: &std::path::Path) -> std::path::PathBuf {
    let gpt2 = TextTokenizer::load("gpt2").unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(gpt2.json()).unwrap();
    json["truncation"] = serde_json::json!({
        "direction": "Right", "max_length": 50, "strategy": "LongestFirst", "stride": 0
    });
    json["padding"] = serde_json::json!({
        "strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": 8,
        "pad_id": 50256, "pad_type_id": 0, "pad_token": "<|endoftext|>"
    });
    let path = dir.join("gpt2-truncating.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[test]
fn truncation_and_padding_of_a_tokenizer_json_are_disabled_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = gpt2_wikitext(tmp.path(), &[]);
    let tokenizer = gpt2_json_with_truncation_and_padding(tmp.path());
    let out = tmp.path().join("out");
    let result = tokenize_into(&out, &["--format", "wikitext103", "--tokenizer"])
        .arg(&tokenizer)
        .arg(wikitext("valid"))
        .output()
        .unwrap();
    assert!(result.status.success());
    let stderr = String::from_utf8(result.stderr).unwrap();
    assert_eq!(
        stderr
            .matches("truncation disabled (max_length 50)")
            .count(),
        1,
        "said once: {stderr}"
    );
    assert!(stderr.contains("padding disabled"), "{stderr}");

    // Every document whole, no padding ids: the same rows as the built-in GPT-2.
    assert_eq!(read_rows(&out), read_rows(&reference));
    let manifest = Manifest::read(&out).unwrap();
    assert_eq!(
        manifest.totals.tokens,
        Manifest::read(&reference).unwrap().totals.tokens
    );
    assert_eq!(manifest.tokenizer.adjusted.len(), 2);
    assert_eq!(manifest.tokenizer.encoder, Some(Encoder::FastPath));
    // The copy next to the shards is the tokenizer as used.
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("tokenizer.json")).unwrap()).unwrap();
    assert!(stored["truncation"].is_null() && stored["padding"].is_null());
}

#[test]
fn special_token_strings_inside_text_are_ordinary_text_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.txt");
    std::fs::write(
        &input,
        "a document that quotes <|endoftext|> in its text\nand a second one <|endoftext|><|endoftext|>\n",
    )
    .unwrap();
    let ordinary = tmp.path().join("ordinary");
    let recognized = tmp.path().join("recognized");
    let summary = run_ok(
        tokenize_into(
            &ordinary,
            &["--format", "text", "--tokenizer", "gpt2", "--json"],
        )
        .arg(&input),
    );
    run_ok(
        tokenize_into(
            &recognized,
            &[
                "--format",
                "text",
                "--tokenizer",
                "gpt2",
                "--special-tokens",
                "recognize",
            ],
        )
        .arg(&input),
    );

    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["totals"]["notices"]["special_token_text"], 3);
    assert_eq!(summary["encoder"], serde_json::json!({"path": "fast_path"}));
    // Recognized on the fast path too.
    assert_eq!(
        Manifest::read(&recognized).unwrap().tokenizer.encoder,
        Some(Encoder::FastPath)
    );
    let eos = GPT2_EOS.1;
    for (tokens, _) in read_rows(&ordinary) {
        // The end-of-document id only where the tool appends it.
        assert_eq!(
            tokens.iter().position(|&id| id == eos),
            Some(tokens.len() - 1)
        );
    }
    let recognized_rows = read_rows(&recognized);
    let eos_per_row: Vec<usize> = recognized_rows
        .iter()
        .map(|(tokens, _)| tokens.iter().filter(|&&id| id == eos).count())
        .collect();
    assert_eq!(eos_per_row, [2, 3]);
    assert_eq!(
        Manifest::read(&recognized).unwrap().totals.notices["special_token_text"],
        3
    );
}

#[test]
fn a_beginning_token_leads_every_document_when_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("docs.txt");
    std::fs::write(&input, "first document\nsecond one\n").unwrap();
    let plain = tmp.path().join("plain");
    let with_bos = tmp.path().join("bos");
    let text = ["--format", "text", "--tokenizer", "gpt2"];
    run_ok(tokenize_into(&plain, &text).arg(&input));
    run_ok(
        tokenize_into(&with_bos, &text)
            .args(["--bos-token", GPT2_EOS.0])
            .arg(&input),
    );
    let expected: Vec<(Vec<u32>, u32)> = (read_rows(&plain).into_iter())
        .map(|(tokens, prefix)| ([vec![GPT2_EOS.1], tokens].concat(), prefix))
        .collect();
    assert_eq!(read_rows(&with_bos), expected);
    let tokenizer = Manifest::read(&with_bos).unwrap().tokenizer;
    assert_eq!(
        (tokenizer.bos_token.as_deref(), tokenizer.bos_id),
        (Some(GPT2_EOS.0), Some(GPT2_EOS.1))
    );
    assert_eq!(Manifest::read(&plain).unwrap().tokenizer.bos_id, None);

    let (code, stderr) = run_fail(
        tokenize_into(&tmp.path().join("none"), &text)
            .args(["--bos-token", "<s>"])
            .arg(&input),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(r#"beginning-of-document token "<s>" is not in tokenizer gpt2"#),
        "{stderr}"
    );
}

#[test]
fn a_tokenizer_file_the_library_panics_on_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(TextTokenizer::load("gpt2").unwrap().json()).unwrap();
    json["model"]["continuing_subword_prefix"] = "##".into();
    let file = tmp.path().join("prefixed.json");
    std::fs::write(&file, json.to_string()).unwrap();
    let input = tmp.path().join("docs.txt");
    std::fs::write(&input, "a document\n").unwrap();
    let (code, stderr) = run_fail(
        tokenize_into(
            &tmp.path().join("out"),
            &["--format", "text", "--tokenizer"],
        )
        .arg(&file)
        .arg(&input),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("prefixed.json: not a valid tokenizer.json: the tokenizers library failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
