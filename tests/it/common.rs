//! Helpers shared by the end-to-end tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use hashprep::Format;
use hashprep::Manifest;
use hashprep::{train_tokenizer, TokenizerKind, TrainOptions};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A Wikitext-103 split shipped in the repository (`valid` or `test`).
pub(crate) fn wikitext(split: &str) -> PathBuf {
    let shipped = repo().join(format!("data/wikitext-103/wiki.{split}.tokens"));
    if shipped.exists() {
        return shipped;
    }
    repo().join(format!("../shared/data/wikitext-103/wiki.{split}.tokens"))
}

/// The `hashprep` binary, progress bars off.
pub(crate) fn hashprep() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hashprep"));
    cmd.arg("--no-progress");
    cmd
}

/// `hashprep tokenize --out OUT ARGS...`, progress bars off.
pub(crate) fn tokenize_into(out: &Path, args: &[&str]) -> Command {
    let mut cmd = hashprep();
    cmd.arg("tokenize").arg("--out").arg(out).args(args);
    cmd
}

/// Runs and asserts success; returns stdout.
pub(crate) fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and asserts failure; returns the exit code and stderr.
pub(crate) fn run_fail(cmd: &mut Command) -> (i32, String) {
    let Output { status, stderr, .. } = cmd.output().unwrap();
    assert!(!status.success(), "{cmd:?} should have failed");
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stderr).unwrap(),
    )
}

/// Every file of a directory with its bytes.
pub(crate) fn dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

/// The documents of a file as the library reads them.
pub(crate) fn documents(format: &Format, path: &Path) -> Vec<String> {
    hashprep::read_documents(&[path.to_path_buf()], format, hashprep::OnError::Fail)
        .unwrap()
        .map(|r| r.unwrap().text)
        .collect()
}

/// A word-level tokenizer trained on Wikitext-103 validation text, written to `dir`.
pub(crate) fn word_tokenizer(dir: &Path, min_count: u64) -> PathBuf {
    let docs = documents(&Format::Wikitext103, &wikitext("valid"));
    let tok = train_tokenizer(
        &TrainOptions::new(TokenizerKind::Word { min_count }),
        docs.into_iter(),
    )
    .unwrap();
    let path = dir.join(format!("word-{min_count}.json"));
    std::fs::write(&path, tok.json()).unwrap();
    path
}

/// The Python interpreter with pyarrow, tokenizers, jsonschema and numpy (the project's `.venv`), if present.
/// Under CI it must be present: `make test` installs it.
pub(crate) fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("HASHPREP_PYTHON")
        .map_or_else(|| repo().join(".venv/bin/python"), PathBuf::from);
    let ok = Command::new(&candidate)
        .args(["-c", "import pyarrow, tokenizers, jsonschema, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(candidate);
    }
    assert!(
        std::env::var("CI").is_err(),
        "CI=true but {} lacks the packages of requirements-dev.txt: run the tests through `make test`",
        candidate.display()
    );
    eprintln!(
        "skipping the Python interop check: no {} with pyarrow, tokenizers, jsonschema and numpy",
        candidate.display()
    );
    None
}

/// Reads every row of a tokenize output: (tokens, `prefix_len`).
pub(crate) fn read_rows(dir: &Path) -> Vec<(Vec<u32>, u32)> {
    let manifest = Manifest::read(dir).unwrap();
    let mut rows = Vec::new();
    for info in &manifest.shards {
        let shard =
            hashprep::ShardReader::open(&dir.join(&info.file), Some(&info.checksum)).unwrap();
        rows.extend(
            shard
                .documents()
                .map(|(doc, prefix)| (doc.to_vec(), prefix)),
        );
    }
    rows
}

/// Wikitext-103 validation text tokenized with GPT-2 into `dir/data` (`extra` tokenize options).
pub(crate) fn gpt2_wikitext(dir: &Path, extra: &[&str]) -> PathBuf {
    let data = dir.join("data");
    run_ok(
        tokenize_into(&data, &["--format", "wikitext103", "--tokenizer", "gpt2"])
            .args(extra)
            .arg(wikitext("valid")),
    );
    data
}

/// Merges task outputs into `merged` and checks they hold what `single` holds (same totals,
/// same rows in any order); returns both manifests.
pub(crate) fn assert_merge_matches(
    single: &Path,
    parts: &[PathBuf],
    merged: &Path,
) -> (Manifest, Manifest) {
    run_ok(hashprep().arg("merge").args(parts).arg("--out").arg(merged));
    let (a, b) = (
        Manifest::read(single).unwrap(),
        Manifest::read(merged).unwrap(),
    );
    assert_eq!(a.totals, b.totals);
    let mut rows_a = read_rows(single);
    let mut rows_b = read_rows(merged);
    rows_a.sort();
    rows_b.sort();
    assert_eq!(rows_a, rows_b);
    (a, b)
}
