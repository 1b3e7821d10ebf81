//! `--num-tasks/--task-index` split the inputs; `merge` joins the parts into the same data as
//! one run.

use hashprep::Manifest;
use hashprep::TokenCounts;

use crate::common::*;

#[test]
fn tasks_partition_inputs_and_merge_matches_a_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..5 {
        let text: String = (0..50)
            .map(|j| format!("file {i} document {j} with words\n"))
            .collect();
        std::fs::write(inputs.join(format!("part{i}.txt")), text).unwrap();
    }
    let tokenize = |out: &std::path::Path, extra: &[&str]| {
        run_ok(
            tokenize_into(out, &["--format", "text", "--tokenizer", "gpt2"])
                .args(extra)
                .arg(&inputs),
        )
    };
    let single = tmp.path().join("single");
    tokenize(&single, &[]);
    let mut parts = Vec::new();
    for index in 0..3 {
        let out = tmp.path().join(format!("task{index}"));
        tokenize(
            &out,
            &["--num-tasks", "3", "--task-index", &index.to_string()],
        );
        parts.push(out);
    }
    // Every input file went to exactly one task.
    let mut files: Vec<_> = parts
        .iter()
        .flat_map(|p| Manifest::read(p).unwrap().inputs)
        .map(|f| f.path)
        .collect();
    files.sort();
    assert_eq!(
        files,
        Manifest::read(&single)
            .unwrap()
            .inputs
            .into_iter()
            .map(|f| f.path)
            .collect::<Vec<_>>()
    );

    let (code, stderr) = run_fail(
        hashprep()
            .arg("merge")
            .args(&parts[..2])
            .arg("--out")
            .arg(tmp.path().join("partial")),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("tasks [2] of 3 are missing"), "{stderr}");

    let merged = tmp.path().join("merged");
    let (_, b) = assert_merge_matches(&single, &parts, &merged);
    assert_eq!(b.tasks, vec![[0, 3], [1, 3], [2, 3]]);
    let counts = |d: &std::path::Path| TokenCounts::read(&d.join("counts.arrow")).unwrap().0;
    assert_eq!(counts(&single), counts(&merged));
    // The merged directory is a complete output that inspect verifies.
    run_ok(hashprep().arg("inspect").arg(&merged));
}
