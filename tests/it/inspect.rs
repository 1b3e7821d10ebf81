//! `hashprep inspect --json` on a small fixture, snapshotted (paths redacted).

use crate::common::*;

#[test]
fn inspect_reports_shards_vocabulary_and_frequent_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("tiny.txt");
    std::fs::write(&input, "the cat sat on the mat\nthe dog sat\n\nthe end\n").unwrap();
    let out = tmp.path().join("out");
    run_ok(tokenize_into(&out, &["--format", "text", "--tokenizer", "gpt2"]).arg(&input));
    let stdout = run_ok(
        hashprep()
            .arg("inspect")
            .arg(&out)
            .args(["--json", "--top", "4"]),
    );
    let value: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    insta::assert_json_snapshot!(value, { ".dir" => "[dir]" });
}
