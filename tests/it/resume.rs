//! A run stopped after some shards resumes and ends with exactly the output of a straight run.

use std::process::Command;

use crate::common::*;

fn tokenize_cmd(out: &std::path::Path) -> Command {
    let mut cmd = tokenize_into(
        out,
        &[
            "--format",
            "wikitext103",
            "--tokenizer",
            "gpt2",
            "--shard-mib",
            "0.1",
        ],
    );
    cmd.arg(wikitext("valid")).arg(wikitext("test"));
    cmd
}

#[test]
fn interrupted_run_resumes_to_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    run_ok(&mut tokenize_cmd(&straight));

    let resumed = tmp.path().join("resumed");
    let (code, _) = run_fail(tokenize_cmd(&resumed).args(["--halt-after-shards", "3"]));
    assert_eq!(code, 2);
    assert!(!resumed.join("manifest.json").exists());
    let journal = std::fs::read_to_string(resumed.join("journal.jsonl")).unwrap();
    assert_eq!(
        journal.lines().count(),
        1 + 3,
        "header + 3 completed shards"
    );
    // The shard being written when the run stopped never got its name (its temporary file
    // went with the writer). A killed process leaves one behind: the resume removes it.
    assert!(!resumed.join("shard-00003.arrow").exists());
    let leftover = resumed.join(".shard-00003.arrow.a1b2c3.tmp");
    std::fs::write(&leftover, b"half a shard").unwrap();

    // Damage the last completed shard as a crash during its rename might: it is redone.
    std::fs::write(resumed.join("shard-00002.arrow"), b"garbage").unwrap();

    let stdout = run_ok(tokenize_cmd(&resumed).arg("--json"));
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(summary["resumed_items"].as_u64().unwrap() > 0, "{summary}");
    assert!(!leftover.exists());
    assert_eq!(dir_bytes(&straight), dir_bytes(&resumed));

    // Once complete, a rerun does nothing; other settings are refused without --force.
    let stdout = run_ok(tokenize_cmd(&resumed).arg("--json"));
    assert!(stdout.contains("\"already_complete\": true"));
    let (code, stderr) = run_fail(tokenize_cmd(&resumed).arg("--no-eos"));
    assert_eq!(code, 2);
    assert!(stderr.contains("--force"), "{stderr}");
    run_ok(tokenize_cmd(&resumed).args(["--no-eos", "--force"]));
    assert_ne!(dir_bytes(&straight), dir_bytes(&resumed));
}

#[test]
fn killed_process_resumes_to_identical_output() {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    run_ok(tokenize_cmd(&straight).args(["--threads", "1"]));

    let killed = tmp.path().join("killed");
    let mut child = tokenize_cmd(&killed)
        .args(["--threads", "1"])
        .spawn()
        .unwrap();
    // Kill it as soon as the first shard is journaled (or whenever it ends, if it is faster).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let lines =
            std::fs::read_to_string(killed.join("journal.jsonl")).map_or(0, |j| j.lines().count());
        if lines >= 2 || child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    run_ok(&mut tokenize_cmd(&killed));
    assert_eq!(dir_bytes(&straight), dir_bytes(&killed));
}
