//! `hashprep tokenize --format reddit` on generated pushshift dumps.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use hashprep::shard::{Manifest, ShardReader};
use hashprep::tokenize::TextTokenizer;

use crate::common::*;
use crate::formats::compress;

/// Two "months": comments of a thread spread over both files, the submissions in the second,
/// written in shuffled order; one file zstd-compressed with a 2 GiB window.
fn dumps(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut first = Vec::new();
    let mut second = Vec::new();
    for t in 0..6 {
        second.push(format!(r#"{{"id":"s{t}","title":"Question {t} &amp; more","selftext":"[removed]","subreddit":"sub{t}","author":"op"}}"#));
        for c in 0..5 {
            let parent = if c == 0 {
                format!("t3_s{t}")
            } else {
                format!("t1_c{t}_{}", c - 1)
            };
            let body = if t == 1 && c == 2 {
                "[deleted]".to_owned()
            } else {
                format!("reply {c} in {t} &lt;ok&gt;")
            };
            let line = format!(
                r#"{{"id":"c{t}_{c}","parent_id":"{parent}","link_id":"t3_s{t}","body":"{body}","subreddit":"sub{t}","created_utc":{}}}"#,
                if c % 2 == 0 {
                    "1600000000".to_owned()
                } else {
                    "\"1600000001\"".to_owned()
                }
            );
            if c % 2 == 0 {
                second.push(line);
            } else {
                first.push(line);
            }
        }
    }
    first.reverse();
    std::fs::write(dir.join("RC_2020-01"), first.join("\n") + "\n").unwrap();
    let plain = dir.join("RC_2020-02");
    std::fs::write(&plain, second.join("\n") + "\n").unwrap();
    let zst = compress(&plain, "zst", second.join("\n").as_bytes());
    std::fs::remove_file(&plain).unwrap();
    vec![dir.join("RC_2020-01"), zst]
}

#[test]
fn reddit_examples_have_their_thread_as_context() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("dumps");
    std::fs::create_dir(&inputs).unwrap();
    dumps(&inputs);
    let out = tmp.path().join("out");
    let stdout = run_ok(
        tokenize_into(
            &out,
            &[
                "--format",
                "reddit",
                "--tokenizer",
                "gpt2",
                "--partitions",
                "3",
                "--max-context-turns",
                "3",
                "--json",
            ],
        )
        .arg(&inputs),
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        summary["totals"]["documents"], 29,
        "30 comments, one deleted"
    );
    assert_eq!(summary["totals"]["skipped"]["deleted"], 1);
    assert!(
        !out.join(".spill").exists(),
        "spill files are removed when complete"
    );

    let manifest = Manifest::read(&out).unwrap();
    let tok = TextTokenizer::load("gpt2").unwrap();
    let mut by_id: HashMap<String, (Vec<u32>, u32, String)> = HashMap::new();
    for info in &manifest.shards {
        let shard = ShardReader::open(&out.join(&info.file), Some(&info.checksum)).unwrap();
        let mut rows = shard.documents();
        for batch in shard.batches() {
            let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
            let subs = batch
                .column_by_name("subreddit")
                .unwrap()
                .as_string::<i32>();
            for r in 0..batch.num_rows() {
                let (tokens, prefix) = rows.next().unwrap();
                by_id.insert(
                    ids.value(r).to_owned(),
                    (tokens.to_vec(), prefix, subs.value(r).to_owned()),
                );
            }
        }
    }
    let eos = "<|endoftext|>";
    let check = |id: &str, context: &[&str], response: &str| {
        let (tokens, prefix, sub) = &by_id[id];
        let expected_context: String = context.iter().map(|t| format!("{t}{eos}")).collect();
        assert_eq!(
            tok.decode(&tokens[..*prefix as usize]),
            expected_context,
            "{id}"
        );
        assert_eq!(
            tok.decode(&tokens[*prefix as usize..]),
            format!("{response}{eos}"),
            "{id}"
        );
        assert_eq!(sub, &format!("sub{}", &id[1..2]));
    };
    // The submission opens the context (its removed self text left out); entities unescaped.
    check("c0_0", &["Question 0 & more"], "reply 0 in 0 <ok>");
    check(
        "c0_2",
        &[
            "Question 0 & more",
            "reply 0 in 0 <ok>",
            "reply 1 in 0 <ok>",
        ],
        "reply 2 in 0 <ok>",
    );
    // At most 3 turns, nearest kept.
    check(
        "c0_4",
        &[
            "reply 1 in 0 <ok>",
            "reply 2 in 0 <ok>",
            "reply 3 in 0 <ok>",
        ],
        "reply 4 in 0 <ok>",
    );
    // A deleted ancestor ends the context.
    check("c1_3", &[], "reply 3 in 1 <ok>");
    assert!(!by_id.contains_key("c1_2"));
}

#[test]
fn reddit_tasks_split_by_thread_and_merge_back() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("dumps");
    std::fs::create_dir(&inputs).unwrap();
    dumps(&inputs);
    let single = tmp.path().join("single");
    run_ok(tokenize_into(&single, &["--format", "reddit", "--tokenizer", "gpt2"]).arg(&inputs));
    let mut parts = Vec::new();
    for task in 0..2 {
        let out = tmp.path().join(format!("task{task}"));
        run_ok(
            tokenize_into(
                &out,
                &[
                    "--format",
                    "reddit",
                    "--tokenizer",
                    "gpt2",
                    "--num-tasks",
                    "2",
                    "--task-index",
                    &task.to_string(),
                ],
            )
            .arg(&inputs),
        );
        parts.push(out);
    }
    let merged = tmp.path().join("merged");
    run_ok(
        hashprep()
            .arg("merge")
            .args(&parts)
            .arg("--out")
            .arg(&merged),
    );
    let (a, b) = (
        Manifest::read(&single).unwrap(),
        Manifest::read(&merged).unwrap(),
    );
    assert_eq!(a.totals, b.totals);
    let mut rows_a = read_rows(&single);
    let mut rows_b = read_rows(&merged);
    rows_a.sort();
    rows_b.sort();
    assert_eq!(rows_a, rows_b);
}
