//! `hashprep build-table` through the CLI: statistics, table files, Python loading, bad input.

use std::path::{Path, PathBuf};

use hashprep::RoutingTable;
use hashprep::TokenCounts;

use crate::common::*;

/// A small counts file with a Zipf-like shape and a known fingerprint.
fn fixture_counts(dir: &Path) -> PathBuf {
    let counts: Vec<u64> = (1..=40u64).map(|r| 2520 / r).chain([0, 0]).collect();
    let path = dir.join("counts.arrow");
    TokenCounts::from_vec(counts)
        .write(&path, "blake3:fixture-tokenizer")
        .unwrap();
    path
}

fn build(args: &[&str]) -> serde_json::Value {
    let stdout = run_ok(hashprep().arg("build-table").args(args).arg("--json"));
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn statistics_of_a_small_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let counts = fixture_counts(tmp.path());
    let out = tmp.path().join("t.arrow");
    let report = build(&[
        "--counts",
        counts.to_str().unwrap(),
        "--method",
        "balanced",
        "--experts",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    insta::assert_json_snapshot!(report, { ".files" => "[files]" });
}

#[test]
fn balanced_on_wikitext_reaches_the_bound_better_than_random() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gpt2_wikitext(tmp.path(), &[]);
    let ratio = |report: &serde_json::Value, key: &str| {
        report["streams"][0][key]["ratio_to_bound"]
            .as_f64()
            .unwrap()
    };
    let mut reports = Vec::new();
    for method in ["balanced", "random"] {
        let out = tmp.path().join(format!("{method}.arrow"));
        reports.push(build(&[
            "--data",
            data.to_str().unwrap(),
            "--method",
            method,
            "--experts",
            "64",
            "--out",
            out.to_str().unwrap(),
        ]));
    }
    let (balanced, random) = (&reports[0], &reports[1]);
    assert!(ratio(balanced, "stats") >= 1.0);
    assert!(ratio(balanced, "stats") <= ratio(balanced, "greedy_only"));
    assert!(ratio(balanced, "stats") < 1.01, "{balanced}");
    assert!(ratio(random, "stats") > 1.3, "{random}");
    // The table is tied to the data it was built for.
    let table = RoutingTable::read(&tmp.path().join("balanced.arrow")).unwrap();
    let manifest = hashprep::Manifest::read(&data).unwrap();
    table
        .check_data(
            &manifest.tokenizer.fingerprint,
            manifest.tokenizer.vocab_size,
        )
        .unwrap();
    let err = table
        .check_data("blake3:other", manifest.tokenizer.vocab_size)
        .unwrap_err();
    assert!(
        err.is_bad_input() && err.to_string().contains("blake3:other"),
        "{err}"
    );
}

#[test]
fn arrow_and_npy_tables_hold_the_same_assignment_and_python_reads_both() {
    let tmp = tempfile::tempdir().unwrap();
    let counts = fixture_counts(tmp.path());
    let arrow = tmp.path().join("t.arrow");
    let npy = tmp.path().join("t.npy");
    for (out, format) in [(&arrow, "arrow"), (&npy, "npy")] {
        build(&[
            "--counts",
            counts.to_str().unwrap(),
            "--method",
            "random",
            "--experts",
            "5",
            "--hashes",
            "2",
            "--layers",
            "3",
            "--seed",
            "7",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    let (a, b) = (
        RoutingTable::read(&arrow).unwrap(),
        RoutingTable::read(&npy).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(a.streams(), 6);
    let Some(python) = python() else { return };
    let script = "import sys, json, numpy as np, pyarrow as pa, pyarrow.ipc\n\
                  t = pa.ipc.open_file(pa.memory_map(sys.argv[1])).read_all()\n\
                  n = np.load(sys.argv[2])\n\
                  meta = json.loads(t.schema.metadata[b'hashprep.table'])\n\
                  assert meta['experts'] == 5 and n.shape == (42, 6), (meta, n.shape)\n\
                  cols = [c for c in t.column_names if c != 'token_id']\n\
                  assert cols[:2] == ['layer0_expert_0', 'layer0_expert_1'], cols\n\
                  assert (np.stack([t.column(c).to_numpy() for c in cols], axis=1) == n).all()\n\
                  print('ok')";
    let stdout = run_ok(
        std::process::Command::new(python)
            .args(["-c", script])
            .arg(&arrow)
            .arg(&npy),
    );
    assert_eq!(stdout.trim(), "ok");
}

#[test]
fn bad_table_requests_fail_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let counts = fixture_counts(tmp.path());
    let nan = tmp.path().join("nan.npy");
    let mut bytes = npy_header("<f4", "(42, 1)");
    for i in 0..42 {
        bytes.extend(if i == 17 { f32::NAN } else { i as f32 }.to_le_bytes());
    }
    std::fs::write(&nan, bytes).unwrap();
    let c = counts.to_str().unwrap();
    let out = tmp.path().join("t.arrow");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--method", "fancy", "--experts", "4"],
            "invalid value 'fancy'",
        ),
        (
            vec!["--method", "random", "--experts", "0"],
            "--experts must be at least 1",
        ),
        (
            vec!["--method", "random", "--experts", "43"],
            "larger than the vocabulary (42 ids)",
        ),
        (
            vec!["--method", "clustered", "--experts", "4"],
            "needs --embeddings",
        ),
        (
            vec![
                "--method",
                "dispersed",
                "--experts",
                "4",
                "--embeddings",
                nan.to_str().unwrap(),
            ],
            "embedding row 17 holds NaN",
        ),
        (
            vec!["--method", "position", "--experts", "4", "--format", "npy"],
            "write it as Arrow",
        ),
    ];
    for (args, expected) in cases {
        let (code, stderr) = run_fail(
            hashprep()
                .arg("build-table")
                .args(["--counts", c, "--out", o])
                .args(&args),
        );
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
        assert!(!out.exists(), "{args:?} left a table behind");
    }
}

#[test]
fn plots_and_side_by_side_comparison() {
    let tmp = tempfile::tempdir().unwrap();
    let data = gpt2_wikitext(tmp.path(), &[]);
    let d = data.to_str().unwrap();
    let mut tables = Vec::new();
    for method in ["balanced", "random", "bigram", "position"] {
        let out = tmp.path().join(format!("{method}.arrow"));
        let plot = tmp.path().join(format!("{method}.svg"));
        let mut args = vec![
            "--data",
            d,
            "--method",
            method,
            "--experts",
            "8",
            "--out",
            out.to_str().unwrap(),
        ];
        if method == "position" {
            let (code, stderr) = run_fail(
                hashprep()
                    .arg("build-table")
                    .args(&args)
                    .args(["--plot", plot.to_str().unwrap()]),
            );
            assert_eq!(code, 2);
            assert!(stderr.contains("no load statistics to plot"), "{stderr}");
            run_ok(hashprep().arg("build-table").args(&args));
        } else {
            args.extend(["--plot", plot.to_str().unwrap()]);
            run_ok(hashprep().arg("build-table").args(&args));
            let svg = std::fs::read_to_string(&plot).unwrap();
            assert!(
                svg.starts_with("<svg") && svg.contains(method),
                "{method} plot"
            );
        }
        tables.push(out);
    }
    let png = tmp.path().join("compare.png");
    let stdout = run_ok(
        hashprep()
            .args(["compare-tables", "--json", "--data", d])
            .args(&tables)
            .arg("--plot")
            .arg(&png),
    );
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let methods: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["balanced", "random", "bigram", "position"]);
    assert!(
        rows[0]["stats"]["max_over_mean"].as_f64().unwrap()
            < rows[1]["stats"]["max_over_mean"].as_f64().unwrap()
    );
    assert!(rows[3]["stats"].is_null());
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));

    // A table of another tokenizer is refused by name.
    let counts = fixture_counts(tmp.path());
    let foreign = tmp.path().join("foreign.arrow");
    build(&[
        "--counts",
        counts.to_str().unwrap(),
        "--method",
        "random",
        "--experts",
        "4",
        "--out",
        foreign.to_str().unwrap(),
    ]);
    let (code, stderr) = run_fail(
        hashprep()
            .args(["compare-tables", "--data", d])
            .arg(&foreign),
    );
    assert_eq!(code, 2);
    assert!(
        stderr
            .contains("foreign.arrow: the table was built for tokenizer blake3:fixture-tokenizer"),
        "{stderr}"
    );
}

/// A `.npy` version 1.0 header (padded to 64 bytes, as numpy writes it).
fn npy_header(descr: &str, shape: &str) -> Vec<u8> {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.into_bytes());
    bytes
}
