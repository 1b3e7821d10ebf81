//! Reddit on many machines: `tokenize --phase spill` on N tasks, `--phase rebuild` on M tasks,
//! `merge` give what one machine gives.

use std::path::{Path, PathBuf};
use std::process::Command;

use hashprep::Manifest;

use crate::common::*;
use crate::formats::compress;

/// Generated months: 60 threads whose comments are shuffled over three plain files (one with a
/// malformed line) and one zstd file holding the submissions, so that phase 1 cuts files into
/// byte ranges and parents lie in other files.
fn generated(tmp: &Path) -> Vec<PathBuf> {
    let dir = tmp.join("dumps");
    std::fs::create_dir(&dir).unwrap();
    let mut months: Vec<Vec<String>> = vec![Vec::new(); 3];
    let mut submissions = Vec::new();
    for t in 0..60u64 {
        submissions.push(format!(
            r#"{{"id":"s{t}","title":"Topic {t} &amp; more","selftext":"","subreddit":"r{}"}}"#,
            t % 5
        ));
        for c in 0..(3 + t % 9) {
            let parent = match c {
                0 => format!("t3_s{t}"),
                _ => format!("t1_c{t}_{}", hashprep::util::splitmix64(t * 31 + c) % c),
            };
            let body = if (t + c) % 13 == 0 {
                "[deleted]".to_owned()
            } else {
                format!(
                    "reply {c} in {t} &lt;{}&gt;",
                    "words ".repeat((c % 5) as usize)
                )
            };
            let month = hashprep::util::splitmix64(t * 100 + c) % 3;
            months[month as usize].push(format!(
                r#"{{"id":"c{t}_{c}","parent_id":"{parent}","link_id":"t3_s{t}","body":"{body}","subreddit":"r{}"}}"#,
                t % 5
            ));
        }
    }
    months[1].insert(17, "{not json".to_owned());
    let mut paths = Vec::new();
    for (m, lines) in months.iter().enumerate() {
        let path = dir.join(format!("RC_2020-0{}", m + 1));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        paths.push(path);
    }
    let plain = dir.join("RS_2020-01");
    paths.push(compress(
        &plain,
        "zst",
        (submissions.join("\n") + "\n").as_bytes(),
    ));
    paths
}

/// The options every run of a test shares.
const REDDIT: [&str; 8] = [
    "--format",
    "reddit",
    "--tokenizer",
    "gpt2",
    "--on-error",
    "skip",
    "--partitions",
    "5",
];

/// `tokenize --phase spill` of task `index` of `tasks` into `spill`.
fn spill_task(spill: &Path, inputs: &[PathBuf], (index, tasks): (usize, usize)) -> Command {
    let mut cmd = hashprep();
    cmd.arg("tokenize")
        .args(REDDIT)
        .args(["--phase", "spill", "--spill-dir"])
        .arg(spill)
        .args(["--num-tasks", &tasks.to_string()])
        .args(["--task-index", &index.to_string()])
        .args(inputs);
    cmd
}

/// `tokenize --phase rebuild` of task `index` of `tasks` from `spill` into `out`.
fn rebuild_task(
    out: &Path,
    spill: &Path,
    inputs: &[PathBuf],
    (index, tasks): (usize, usize),
) -> Command {
    let mut cmd = tokenize_into(out, &REDDIT);
    cmd.args(["--phase", "rebuild", "--spill-dir"])
        .arg(spill)
        .args(["--num-tasks", &tasks.to_string()])
        .args(["--task-index", &index.to_string()])
        .args(inputs);
    cmd
}

/// Phase 1 on `n` tasks, phase 2 on `m`, merged into `tmp/merged-n-m` (the spill removed by
/// the merge); returns the merged directory.
fn two_phases(tmp: &Path, inputs: &[PathBuf], n: usize, m: usize) -> PathBuf {
    let spill = tmp.join(format!("spill-{n}-{m}"));
    for i in 0..n {
        run_ok(&mut spill_task(&spill, inputs, (i, n)));
    }
    let mut parts = Vec::new();
    for j in 0..m {
        let out = tmp.join(format!("rebuilt-{n}-{m}-{j}"));
        run_ok(&mut rebuild_task(&out, &spill, inputs, (j, m)));
        parts.push(out);
    }
    let merged = tmp.join(format!("merged-{n}-{m}"));
    run_ok(
        hashprep()
            .arg("merge")
            .args(&parts)
            .arg("--out")
            .arg(&merged)
            .arg("--remove-spill")
            .arg(&spill),
    );
    assert!(!spill.exists(), "the merge removed the spill");
    merged
}

/// The merged output holds the single run's examples (as a set), totals and counts.
fn assert_same_output(single: &Path, merged: &Path) {
    let (a, b) = (
        Manifest::read(single).unwrap(),
        Manifest::read(merged).unwrap(),
    );
    assert_eq!(a.totals, b.totals, "{}", merged.display());
    assert_eq!(
        a.read_counts(single).unwrap().as_slice(),
        b.read_counts(merged).unwrap().as_slice()
    );
    let (mut rows_a, mut rows_b) = (read_rows(single), read_rows(merged));
    rows_a.sort();
    rows_b.sort();
    assert_eq!(rows_a, rows_b, "{}", merged.display());
}

/// Both phases on one machine, for comparison.
fn single(tmp: &Path, inputs: &[PathBuf]) -> PathBuf {
    let out = tmp.join("single");
    run_ok(tokenize_into(&out, &REDDIT).args(inputs));
    out
}

#[test]
fn n_spill_tasks_then_m_rebuild_tasks_give_the_single_machine_output() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = generated(tmp.path());
    let single = single(tmp.path(), &inputs);
    let totals = Manifest::read(&single).unwrap().totals;
    assert_eq!(totals.skipped.get("malformed_json"), Some(&1));
    assert!(totals.documents > 300, "{totals:?}");
    for (n, m) in [(1, 1), (1, 3), (3, 1), (3, 3)] {
        let merged = two_phases(tmp.path(), &inputs, n, m);
        assert_same_output(&single, &merged);
    }
}

/// The real pushshift months of `../shared/data` (not shipped with the project), when present.
fn real_months() -> Option<Vec<PathBuf>> {
    let dir = std::env::var_os("HASHPREP_PUSHSHIFT_DIR").map_or_else(
        || repo().join("../shared/data/pushshift-2005-2006"),
        PathBuf::from,
    );
    let months = ["RC_2005-12.zst", "RC_2006-01.zst"].map(|m| dir.join(m));
    months.iter().all(|m| m.is_file()).then(|| months.to_vec())
}

#[test]
fn the_real_months_on_three_tasks_give_the_single_machine_output() {
    let Some(months) = real_months() else {
        eprintln!("the real pushshift months are not here (../shared/data): not tested");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // One month as pushshift ships it (read whole by one task), one decompressed (cut into
    // byte ranges of real lines).
    let plain = tmp.path().join("RC_2006-01");
    let mut decoder =
        zstd::stream::read::Decoder::new(std::fs::File::open(&months[1]).unwrap()).unwrap();
    decoder.window_log_max(31).unwrap();
    std::io::copy(&mut decoder, &mut std::fs::File::create(&plain).unwrap()).unwrap();
    let inputs = vec![months[0].clone(), plain];
    let single = single(tmp.path(), &inputs);
    assert_eq!(Manifest::read(&single).unwrap().totals.documents, 4092);
    for (n, m) in [(3, 1), (3, 3)] {
        let merged = two_phases(tmp.path(), &inputs, n, m);
        assert_same_output(&single, &merged);
    }
}

#[test]
fn a_rebuild_refuses_an_unfinished_spill_and_resumes_after_a_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = generated(tmp.path());
    let spill = tmp.path().join("spill");
    let rebuild = |out: &Path, extra: &[&str]| {
        let mut cmd = rebuild_task(out, &spill, &inputs, (0, 2));
        cmd.args(["--shard-mib", "0.001"]).args(extra);
        cmd
    };
    run_ok(&mut spill_task(&spill, &inputs, (1, 3)));
    let out = tmp.path().join("rebuilt");
    let (code, err) = run_fail(&mut rebuild(&out, &[]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("spill tasks [0, 2] of 3 have not finished") && err.contains("--phase spill"),
        "{err}"
    );
    run_ok(&mut spill_task(&spill, &inputs, (0, 3)));
    run_ok(&mut spill_task(&spill, &inputs, (2, 3)));
    let again = run_ok(&mut spill_task(&spill, &inputs, (2, 3)));
    assert!(again.contains("already complete"), "{again}");
    // Rebuild task 0 stops after one shard as if killed, then resumes.
    run_fail(&mut rebuild(&out, &["--halt-after-shards", "1"]));
    let resumed = run_ok(&mut rebuild(&out, &[]));
    assert!(resumed.contains("resumed after"), "{resumed}");
    let straight = tmp.path().join("straight");
    run_ok(&mut rebuild(&straight, &[]));
    assert_eq!(read_rows(&out), read_rows(&straight));
    // Outputs of another spill of the same inputs (by one task) do not merge with it.
    let other_spill = tmp.path().join("other-spill");
    run_ok(&mut spill_task(&other_spill, &inputs, (0, 1)));
    let other = tmp.path().join("other");
    run_ok(&mut rebuild_task(&other, &other_spill, &inputs, (1, 2)));
    let (_, err) = run_fail(
        hashprep()
            .arg("merge")
            .arg(&out)
            .arg(&other)
            .arg("--out")
            .arg(tmp.path().join("mixed")),
    );
    assert!(err.contains("different settings"), "{err}");
}

#[test]
fn a_bad_line_in_a_byte_range_is_named_by_its_line_in_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dump = tmp.path().join("RC_2021-01");
    let lines: Vec<String> = (1..=400)
        .map(|i| match i {
            371 => "{broken".to_owned(),
            _ => format!(r#"{{"id":"c{i}","parent_id":"t3_s","link_id":"t3_s","body":"b {i}"}}"#),
        })
        .collect();
    std::fs::write(&dump, lines.join("\n") + "\n").unwrap();
    let (code, err) = run_fail(
        hashprep()
            .args(["tokenize", "--format", "reddit", "--tokenizer", "gpt2"])
            .args(["--phase", "spill", "--num-tasks", "4", "--task-index", "3"])
            .arg("--spill-dir")
            .arg(tmp.path().join("spill"))
            .arg(&dump),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("RC_2021-01:371: malformed_json"), "{err}");
}
