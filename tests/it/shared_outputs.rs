//! Outputs other people can use: files get the mode the umask gives new files (not a temporary
//! file's 0600), and two runs never write one output directory at once.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// `hashprep ARGS` under umask 022.
fn under_umask_022(args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$0\" --no-progress \"$@\"")
        .arg(env!("CARGO_BIN_EXE_hashprep"))
        .args(args);
    cmd
}

/// Every file under `dir`, with its permission bits.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        found.push((entry.file_name().to_string_lossy().into_owned(), mode));
    }
    found.sort();
    found
}

#[test]
fn outputs_get_the_mode_of_new_files_under_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let data = out.join("data");
    let (data_s, out_s) = (data.to_str().unwrap(), out.to_str().unwrap());
    let wiki = wikitext("valid");
    let table = format!("{out_s}/t.arrow");
    for args in [
        vec![
            "tokenize",
            "--format",
            "wikitext103",
            "--tokenizer",
            "gpt2",
            "--out",
            data_s,
            wiki.to_str().unwrap(),
        ],
        vec![
            "build-table",
            "--data",
            data_s,
            "--method",
            "balanced",
            "--experts",
            "8",
            "--top-k",
            "2",
            "--out",
            &table,
        ],
        vec![
            "build-table",
            "--data",
            data_s,
            "--method",
            "random",
            "--experts",
            "8",
            "--format",
            "npy",
            "--out",
            &format!("{out_s}/t.npy"),
        ],
        vec![
            "export-table",
            &table,
            "--to",
            "hf-deepseek-v4",
            "--layers",
            "0",
            "--vocab-size",
            "50304",
            "--top-k",
            "2",
            "--out",
            &format!("{out_s}/tid2eid.safetensors"),
        ],
        vec![
            "export",
            "--to",
            "parquet",
            data_s,
            &format!("{out_s}/parquet"),
        ],
        vec!["merge", data_s, "--out", &format!("{out_s}/merged")],
    ] {
        run_ok(&mut under_umask_022(&args));
    }
    for dir in [&out, &data, &out.join("parquet"), &out.join("merged")] {
        for (name, mode) in modes(dir) {
            let want = if dir.join(&name).is_dir() {
                0o755
            } else {
                0o644
            };
            assert_eq!(mode, want, "{}/{name}: {mode:o}", dir.display());
        }
    }
}

#[test]
fn a_second_run_into_a_directory_being_written_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    std::fs::create_dir(&out).unwrap();
    // This test process is the run writing `out`.
    let lock = hashprep::OutputLock::acquire(&out, "tokenize").unwrap();
    let (code, stderr) = run_fail(
        tokenize_into(&out, &["--format", "wikitext103", "--tokenizer", "gpt2"])
            .arg(wikitext("valid")),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("another run is writing this directory")
            && stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert!(
        !out.join("manifest.json").exists() && !out.join("journal.jsonl").exists(),
        "the refused run wrote nothing"
    );
    drop(lock);
    run_ok(
        tokenize_into(&out, &["--format", "wikitext103", "--tokenizer", "gpt2"])
            .arg(wikitext("valid")),
    );
    assert!(out.join("manifest.json").exists());
    assert!(
        !out.join(".hashprep.lock").exists(),
        "the lock goes when its run ends"
    );
}
