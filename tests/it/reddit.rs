//! `hashprep tokenize --format reddit` on generated pushshift dumps.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use hashprep::TextTokenizer;
use hashprep::{Manifest, ShardReader};

use crate::common::*;
use crate::formats::compress;

/// Two "months": comments of a thread spread over both files, the submissions in the second,
/// written in shuffled order; one file zstd-compressed with a 2 GiB window. Written into a new
/// folder `dumps` under `tmp`, which is returned.
fn dumps(tmp: &Path) -> std::path::PathBuf {
    let dir = tmp.join("dumps");
    std::fs::create_dir(&dir).unwrap();
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
    compress(&plain, "zst", second.join("\n").as_bytes());
    std::fs::remove_file(&plain).unwrap();
    dir
}

#[test]
fn reddit_examples_have_their_thread_as_context() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = dumps(tmp.path());
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
    let inputs = dumps(tmp.path());
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
    let (single, merged) = assert_merge_matches(&single, &parts, &tmp.path().join("merged"));
    // Every task read both files: the merged manifest still lists each once.
    assert_eq!(merged.inputs, single.inputs);
}

#[test]
fn filters_and_orphans_are_counted_by_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("RC_2021-01");
    let lines = [
        r#"{"id":"s1","title":"Root post","selftext":"","subreddit":"keep"}"#,
        r#"{"id":"a","parent_id":"t3_s1","link_id":"t3_s1","body":"a normal reply here","author":"alice","subreddit":"keep"}"#,
        r#"{"id":"b","parent_id":"t1_a","link_id":"t3_s1","body":"visit https://example.com now","author":"bob","subreddit":"keep"}"#,
        r#"{"id":"c","parent_id":"t1_a","link_id":"t3_s1","body":"I am a helpful bot reply","author":"HelperBot","subreddit":"keep"}"#,
        r#"{"id":"d","parent_id":"t1_a","link_id":"t3_s1","body":"ok","author":"dan","subreddit":"keep"}"#,
        r#"{"id":"e","parent_id":"t1_a","link_id":"t3_s1","body":"one two three four five six seven eight nine ten","author":"eve","subreddit":"keep"}"#,
        r#"{"id":"f","parent_id":"t1_gone","link_id":"t3_s1","body":"reply to a missing parent","author":"fay","subreddit":"keep"}"#,
        r#"{"id":"g","parent_id":"t3_s2","link_id":"t3_s2","body":"in a denied subreddit","author":"gus","subreddit":"Drop"}"#,
        r#"{"broken json"#,
    ];
    std::fs::write(&dump, lines.join("\n") + "\n").unwrap();
    let out = tmp.path().join("out");
    let args = [
        "--format",
        "reddit",
        "--tokenizer",
        "gpt2",
        "--filter",
        "recipe",
        "--max-response-tokens",
        "8",
        "--exclude-subreddits",
        "drop",
        "--on-error",
        "skip",
        "--json",
    ];
    let stdout = run_ok(tokenize_into(&out, &args).arg(&dump));
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["totals"]["documents"], 2, "{summary}"); // a and f
    assert_eq!(
        summary["totals"]["skipped"],
        serde_json::json!({
            "filter_url": 1, "filter_bot_author": 1, "filter_too_short": 1, "filter_long_response": 1,
            "filter_subreddit": 1, "malformed_json": 1
        })
    );
    assert_eq!(
        summary["totals"]["notices"],
        serde_json::json!({ "orphan_context": 1 })
    );
    // Without --on-error skip the broken line is an error naming file and line.
    let (code, stderr) =
        run_fail(tokenize_into(&tmp.path().join("strict"), &args[..args.len() - 3]).arg(&dump));
    assert_eq!(code, 2);
    assert!(stderr.contains("RC_2021-01:9: malformed_json"), "{stderr}");
}

#[test]
fn a_parent_in_another_thread_is_an_orphan_whatever_the_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("RC_2022-03");
    let mut lines = Vec::new();
    for t in 0..12 {
        lines.push(format!(
            r#"{{"id":"s{t}","title":"Thread {t}","selftext":"","subreddit":"r"}}"#
        ));
        lines.push(format!(r#"{{"id":"a{t}","parent_id":"t3_s{t}","link_id":"t3_s{t}","body":"first in {t}","subreddit":"r"}}"#));
        // Thread t's second comment names the first comment of thread t+1 as its parent.
        let next = (t + 1) % 12;
        lines.push(format!(r#"{{"id":"b{t}","parent_id":"t1_a{next}","link_id":"t3_s{t}","body":"crossed in {t}","subreddit":"r"}}"#));
    }
    std::fs::write(&dump, lines.join("\n") + "\n").unwrap();
    let mut outputs = Vec::new();
    for partitions in ["1", "3", "16"] {
        let out = tmp.path().join(format!("p{partitions}"));
        let stdout = run_ok(
            tokenize_into(
                &out,
                &[
                    "--format",
                    "reddit",
                    "--tokenizer",
                    "gpt2",
                    "--json",
                    "--partitions",
                    partitions,
                ],
            )
            .arg(&dump),
        );
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            summary["totals"]["notices"]["orphan_context"], 12,
            "{partitions}"
        );
        let mut rows = read_rows(&out);
        rows.sort();
        outputs.push((rows, std::fs::read(out.join("counts.arrow")).unwrap()));
    }
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
    // The crossed comments have an empty context.
    let tok = TextTokenizer::load("gpt2").unwrap();
    let crossed: Vec<_> = outputs[0]
        .0
        .iter()
        .filter(|(tokens, _)| tok.decode(tokens).starts_with("crossed"))
        .collect();
    assert_eq!(crossed.len(), 12);
    assert!(crossed.iter().all(|(_, prefix)| *prefix == 0));
}

#[test]
fn a_truncated_dump_keeps_the_records_before_the_damage_as_jsonl_does() {
    let tmp = tempfile::tempdir().unwrap();
    let text: String = (0..20_000)
        .map(|i| {
            format!(
                r#"{{"id":"c{i}","parent_id":"t3_s{t}","link_id":"t3_s{t}","body":"comment {i} of a dump","subreddit":"r"}}"#,
                t = i % 50
            ) + "\n"
        })
        .collect();
    let zst = compress(&tmp.path().join("RC_2023-01"), "zst", text.as_bytes());
    let bytes = std::fs::read(&zst).unwrap();
    std::fs::write(&zst, &bytes[..bytes.len() / 2]).unwrap();

    let summary = |format: &[&str], name: &str| -> serde_json::Value {
        let out = tmp.path().join(name);
        let stdout = run_ok(
            tokenize_into(
                &out,
                &["--tokenizer", "gpt2", "--on-error", "skip", "--json"],
            )
            .args(format)
            .arg(&zst),
        );
        serde_json::from_str(&stdout).unwrap()
    };
    let jsonl = summary(&["--format", "jsonl", "--text-field", "body"], "jsonl");
    let reddit = summary(&["--format", "reddit"], "reddit");
    let kept = jsonl["totals"]["documents"].as_u64().unwrap();
    assert!(kept > 1000 && kept < 20_000, "{jsonl}");
    assert_eq!(reddit["totals"]["documents"], kept, "{reddit}");
    assert_eq!(reddit["totals"]["skipped"]["corrupt_stream"], 1);
    assert_eq!(jsonl["totals"]["skipped"]["corrupt_stream"], 1);

    // Under the default policy: an error with the offset and line, as for jsonl.
    let (code, stderr) = run_fail(
        tokenize_into(
            &tmp.path().join("strict"),
            &["--tokenizer", "gpt2", "--format", "reddit"],
        )
        .arg(&zst),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("RC_2023-01.zst: corrupt or truncated zstd stream after ")
            && stderr.contains(&format!("(line {kept})")),
        "{stderr}"
    );
}

#[test]
fn a_tokenizer_trains_on_reddit_dumps_without_waiting_on_itself() {
    // The BPE trainer reads its texts from rayon's pool; the dumps' partitions are rebuilt on a
    // pool of their own (on the global one, every worker waited for the iterator: a hang).
    let tmp = tempfile::tempdir().unwrap();
    let inputs = dumps(tmp.path());
    let out = tmp.path().join("bpe.json");
    for threads in ["1", "2", "8"] {
        let mut child = hashprep()
            .env("RAYON_NUM_THREADS", threads)
            .args(["train-tokenizer", "--format", "reddit", "--kind", "bpe"])
            .args(["--vocab-size", "300", "--out"])
            .arg(&out)
            .arg(&inputs)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > std::time::Duration::from_secs(120) {
                child.kill().unwrap();
                panic!("train-tokenizer with {threads} rayon threads hung");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert!(status.success(), "{threads} threads: {status}");
        let tokenizer = TextTokenizer::load(&out.to_string_lossy()).unwrap();
        assert!(tokenizer.vocab_size() > 256, "{threads} threads");
        std::fs::remove_file(&out).unwrap();
    }
}
