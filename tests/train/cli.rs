//! The `hashtrain` binary: run, eval and export-embeddings, and how bad input is reported.

use std::path::Path;
use std::process::Command;

use hashprep::{build_table_files, BuildTableRequest};
use hashprep::{Method, TableSpec};

use crate::common::{config, fixture, table_layer, valid_ppl};

fn hashtrain() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hashtrain"));
    cmd.arg("--no-progress");
    cmd
}

fn output(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn write_config(dir: &Path, sparse: &str) -> std::path::PathBuf {
    let path = dir.join("run.toml");
    std::fs::write(&path, config(sparse, &[]).to_toml()).unwrap();
    path
}

#[test]
fn run_then_eval_reproduces_the_last_validation_and_exports_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &table_layer("hash", &fixture().balanced));
    let run_dir = dir.path().join("run");
    let (code, stdout, stderr) = output(
        hashtrain()
            .args(["run", "--config"])
            .arg(&cfg)
            .args([
                "--set",
                "train.steps=12",
                "--set",
                "train.eval_every=0",
                "--out",
            ])
            .arg(&run_dir),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("12 steps"), "{stdout}");
    assert!(stdout.contains("layer 2 (hash)"), "{stdout}");
    let last = valid_ppl(&run_dir).last().copied().unwrap();
    assert_eq!(last.0, 12);

    // Same batches (eval_batches = 12) from the checkpoint: the same perplexity.
    let (code, stdout, stderr) = output(
        hashtrain()
            .args(["eval", "--json", "--batches", "12", "--checkpoint"])
            .arg(&run_dir)
            .arg("--data")
            .arg(&fixture().valid),
    );
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ppl = json["ppl"].as_f64().unwrap();
    assert!(
        (ppl - last.1).abs() < 1e-6 * last.1,
        "eval {ppl} vs training's {}",
        last.1
    );
    assert_eq!(json["step"], 12);

    // The embeddings feed build-table --method clustered.
    let npy = dir.path().join("emb.npy");
    let (code, _, stderr) = output(
        hashtrain()
            .args(["export-embeddings", "--checkpoint"])
            .arg(&run_dir)
            .arg("--out")
            .arg(&npy),
    );
    assert_eq!(code, 0, "{stderr}");
    let mut spec = TableSpec::new(Method::Clustered, 16);
    spec.kmeans.max_iterations = 5;
    let mut request =
        BuildTableRequest::from_data(spec, &fixture().train, &dir.path().join("clustered.arrow"));
    request.embeddings = Some(npy);
    let report = build_table_files(&request).unwrap();
    assert_eq!(report.experts, 16);
    let manifest = hashprep::Manifest::read(&fixture().train).unwrap();
    assert_eq!(report.vocab_size, manifest.tokenizer.vocab_size);

    // The folder now holds a run: a plain rerun is refused, naming the way out.
    let (code, _, stderr) = output(
        hashtrain()
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&run_dir),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("--resume"), "{stderr}");
}

#[test]
fn bad_configs_are_refused_with_the_file_and_setting_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let cases: [(&[&str], &str); 8] = [
        (&["train.stepz=3"], "stepz"),
        (
            &["model.sparse.3.kind=hash"],
            "--set model.sparse.3.kind=hash: no element 3",
        ),
        (
            &["model.sparse=[{at = 9, kind = \"hash\", table = \"t.arrow\"}]"],
            "layers count from 1",
        ),
        (&["model.d_model=65"], "multiple of model.heads"),
        (&["train.device=cuda:7"], "CUDA"),
        // Sizes beyond any real run are refused before anything is allocated.
        (
            &["train.prefetch=1099511627776"],
            "train.prefetch 1099511627776 is above the limit of 1024",
        ),
        (
            &["model.sparse=[{at = 2, kind = \"switch\", experts = 1000000}]"],
            "model.sparse[0].experts 1000000 is above the limit of 65536",
        ),
        (
            &["model.d_model=65536", "model.heads=1", "model.d_ff=65536"],
            "more than this machine's",
        ),
    ];
    for (sets, needle) in cases {
        let mut cmd = hashtrain();
        cmd.args(["run", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(dir.path().join("never"));
        for s in sets {
            cmd.args(["--set", s]);
        }
        let (code, _, stderr) = output(&mut cmd);
        assert_eq!(code, 2, "{sets:?}: {stderr}");
        assert!(stderr.contains(needle), "{sets:?}: {stderr}");
    }
    let (code, _, stderr) = output(
        hashtrain()
            .args(["eval", "--checkpoint"])
            .arg(dir.path())
            .args(["--data"])
            .arg(&fixture().valid),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("neither a checkpoint"), "{stderr}");
}

#[test]
fn out_naming_a_file_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (code, _, stderr) = output(
        hashtrain()
            .args(["run", "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&file),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("a-file: is a file, not a directory"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn run_files_are_shareable_and_an_altered_checkpoint_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &table_layer("hash", &fixture().balanced));
    let run_dir = dir.path().join("run");
    // Under umask 022, every file 0644 and every folder 0755 (not a temporary file's 0600).
    let (code, _, stderr) = output(
        Command::new("sh")
            .arg("-c")
            .arg("umask 022 && exec \"$0\" --no-progress \"$@\"")
            .arg(env!("CARGO_BIN_EXE_hashtrain"))
            .args(["run", "--config"])
            .arg(&cfg)
            .args([
                "--set",
                "train.steps=4",
                "--set",
                "train.eval_every=0",
                "--out",
            ])
            .arg(&run_dir),
    );
    assert_eq!(code, 0, "{stderr}");
    let mut seen = 0;
    let mut folders = vec![run_dir.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            if path.is_dir() {
                assert_eq!(mode, 0o755, "{}: {mode:o}", path.display());
                folders.push(path);
            } else {
                assert_eq!(mode, 0o644, "{}: {mode:o}", path.display());
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 8,
        "metrics, config, summary, curves and a checkpoint's files"
    );

    // One flipped byte inside the weights: resume and eval refuse the checkpoint by name.
    let checkpoint = hashtrain::resolve_checkpoint(&run_dir).unwrap();
    let weights = checkpoint.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&weights, &bytes).unwrap();
    let mut resume = hashtrain();
    resume
        .args(["run", "--resume", "--config"])
        .arg(&cfg)
        .args([
            "--set",
            "train.steps=6",
            "--set",
            "train.eval_every=0",
            "--out",
        ])
        .arg(&run_dir);
    let mut eval = hashtrain();
    eval.args(["eval", "--checkpoint"])
        .arg(&run_dir)
        .arg("--data")
        .arg(&fixture().valid);
    for cmd in [&mut resume, &mut eval] {
        let (code, _, stderr) = output(cmd);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("model.safetensors: checksum mismatch"),
            "{stderr}"
        );
    }
}
