//! Bad input: a clear error naming the file and line, exit code 2, nothing that looks complete;
//! or, with `--on-error skip`, counted by reason.

use std::path::Path;

use crate::common::*;
use crate::formats::compress;

fn tokenize_fail(out: &Path, format: &[&str], inputs: &[&Path]) -> (i32, String) {
    let (code, stderr) = run_fail(
        tokenize_into(out, &["--tokenizer", "gpt2"])
            .args(format)
            .args(inputs),
    );
    assert!(
        !out.join("manifest.json").exists(),
        "a failed run must not leave a manifest"
    );
    assert!(!out.join("counts.arrow").exists());
    (code, stderr)
}

#[test]
fn each_kind_of_bad_input_is_named_with_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    std::fs::write(p("bad-utf8.txt"), b"fine line\nbad \xC3\x28 line\n").unwrap();
    std::fs::write(
        p("bad.jsonl"),
        "{\"text\": \"ok\"}\n{\"text\": \"ok\"}\n{\"text\": oops}\n",
    )
    .unwrap();
    std::fs::write(p("no-field.jsonl"), "{\"body\": \"x\"}\n").unwrap();
    std::fs::write(p("array.json"), "[{\"text\": \"a\"}, {\"text\": \"b\"}]\n").unwrap();
    std::fs::write(
        p("pretty.json"),
        "[\n  {\"text\": \"a\"},\n  {\"text\": \"b\"}\n]\n",
    )
    .unwrap();
    std::fs::write(
        p("RS_2020-01"),
        "{\"id\":\"s1\",\"title\":\"T\",\"selftext\":\"\",\"subreddit\":\"r\"}\n",
    )
    .unwrap();
    std::fs::write(p("empty.txt"), "").unwrap();
    let big: String = (0..20_000)
        .map(|i| format!("line number {i} of a longer file\n"))
        .collect();
    let zst = compress(&p("trunc.txt"), "zst", big.as_bytes());
    let bytes = std::fs::read(&zst).unwrap();
    std::fs::write(&zst, &bytes[..bytes.len() / 2]).unwrap();
    let gz = compress(&p("corrupt.txt"), "gz", big.as_bytes());
    let mut bytes = std::fs::read(&gz).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 64].fill(0xAA);
    std::fs::write(&gz, &bytes).unwrap();

    let text: &[&str] = &["--format", "text"];
    let jsonl: &[&str] = &["--format", "jsonl"];
    let cases: Vec<(&[&str], std::path::PathBuf, &str)> = vec![
        (text, p("missing.txt"), "missing.txt: no such input file"),
        (text, p("bad-utf8.txt"), "bad-utf8.txt:2: invalid_utf8"),
        (jsonl, p("bad.jsonl"), "bad.jsonl:3: malformed_json"),
        (
            jsonl,
            p("no-field.jsonl"),
            "no-field.jsonl:1: missing_field",
        ),
        (
            jsonl,
            p("array.json"),
            "array.json:1: malformed_json: a JSON array, not an object: JSON Lines is expected",
        ),
        (
            jsonl,
            p("pretty.json"),
            "pretty.json:1: malformed_json: EOF while parsing a list at line 1 column 1: JSON Lines is expected",
        ),
        (
            &["--format", "reddit"],
            p("RS_2020-01"),
            "no Reddit comments were found in the input",
        ),
        (text, p("empty.txt"), "empty.txt: empty input"),
        (
            text,
            zst.clone(),
            "trunc.txt.zst: corrupt or truncated zstd stream",
        ),
        (
            text,
            gz.clone(),
            "corrupt.txt.gz: corrupt or truncated gzip stream",
        ),
    ];
    for (i, (format, input, expected)) in cases.into_iter().enumerate() {
        let (code, stderr) = tokenize_fail(&p(&format!("out{i}")), format, &[&input]);
        assert_eq!(code, 2, "{input:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{input:?}: expected {expected:?} in {stderr}"
        );
    }

    let (code, stderr) = run_fail(
        tokenize_into(
            &p("out-tok"),
            &["--format", "text", "--tokenizer", "nonexistent-tok"],
        )
        .arg(p("bad-utf8.txt")),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown tokenizer \"nonexistent-tok\""),
        "{stderr}"
    );
}

#[test]
fn out_naming_a_file_is_bad_input_said_once() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name);
    std::fs::write(p("docs.txt"), "one document\n").unwrap();
    std::fs::write(p("a-file"), "x").unwrap();
    let (code, stderr) = run_fail(
        tokenize_into(&p("a-file"), &["--format", "text", "--tokenizer", "gpt2"])
            .arg(p("docs.txt")),
    );
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "hashprep: error: {}: is a file, not a directory",
            p("a-file").display()
        )
    );
    assert_eq!(std::fs::read(p("a-file")).unwrap(), b"x");
}

#[test]
fn skip_policy_counts_bad_records_by_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("mixed.jsonl");
    std::fs::write(
        &input,
        b"{\"text\": \"one\"}\n{broken\n{\"text\": \"\"}\n{\"other\": 1}\n{\"text\": \"bad \xff\"}\n{\"text\": \"two\"}\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    let stdout = run_ok(
        tokenize_into(
            &out,
            &[
                "--format",
                "jsonl",
                "--tokenizer",
                "gpt2",
                "--on-error",
                "skip",
                "--json",
            ],
        )
        .arg(&input),
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["totals"]["documents"], 2);
    assert_eq!(
        summary["totals"]["skipped"],
        serde_json::json!({ "malformed_json": 1, "empty": 1, "missing_field": 1, "invalid_utf8": 1 })
    );
    let manifest = hashprep::Manifest::read(&out).unwrap();
    assert_eq!(manifest.totals.skipped["invalid_utf8"], 1);
}
