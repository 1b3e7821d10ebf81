//! Generated fixtures for every format and compression, a 2 GiB-window zstd stream included.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common::*;

/// Deterministic documents of a few words each.
fn generated_documents(n: usize) -> Vec<String> {
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "café", "naïve",
    ];
    (0..n)
        .map(|i| {
            (0..(3 + i % 7))
                .map(|j| words[(i * 7 + j * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

pub(crate) fn compress(path: &Path, codec: &str, data: &[u8]) -> PathBuf {
    let target = path.with_file_name(format!(
        "{}.{codec}",
        path.file_name().unwrap().to_string_lossy()
    ));
    let file = std::fs::File::create(&target).unwrap();
    match codec {
        "zst" => {
            // pushshift style: a 2 GiB window (`zstd --long=31`), announced in the frame header.
            let mut enc = zstd::stream::Encoder::new(file, 3).unwrap();
            enc.window_log(31).unwrap();
            enc.long_distance_matching(true).unwrap();
            enc.write_all(data).unwrap();
            enc.finish().unwrap();
        }
        "xz" => {
            let mut enc = xz2::write::XzEncoder::new(file, 6);
            enc.write_all(data).unwrap();
            enc.finish().unwrap();
        }
        "bz2" => {
            let mut enc = bzip2::write::BzEncoder::new(file, bzip2::Compression::default());
            enc.write_all(data).unwrap();
            enc.finish().unwrap();
        }
        "gz" => {
            let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            enc.write_all(data).unwrap();
            enc.finish().unwrap();
        }
        other => panic!("unknown codec {other}"),
    }
    target
}

#[test]
fn long_window_zstd_needs_window_log_31_and_decodes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = generated_documents(2000).join("\n").into_bytes();
    let path = compress(&tmp.path().join("docs.txt"), "zst", &data);
    // A decoder with zstd's default window limit refuses this frame...
    let default = zstd::stream::read::Decoder::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut sink = Vec::new();
    assert!(std::io::Read::read_to_end(&mut { default }, &mut sink).is_err());
    // ...ours reads it: every line, in order.
    let format = hashprep::Format::Text {
        blank_line_separated: false,
    };
    let back: Vec<String> = hashprep::read_documents(&[path], &format, hashprep::OnError::Fail)
        .unwrap()
        .map(|example| example.unwrap().text)
        .collect();
    assert_eq!(back.join("\n").into_bytes(), data);
}

#[test]
fn every_format_and_compression_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = generated_documents(300);
    let dir = tmp.path().join("inputs");
    std::fs::create_dir(&dir).unwrap();

    // Each case: format arguments, file content, expected document texts.
    let jsonl: String = docs
        .iter()
        .map(|d| format!("{}\n", serde_json::json!({ "id": 1, "body": d })))
        .collect();
    let per_line = docs.join("\n") + "\n";
    let paragraphs: String = docs.chunks(3).map(|c| c.join("\n") + "\n\n").collect();
    let grouped: Vec<String> = docs.chunks(3).map(|c| c.join("\n")).collect();
    let cases: Vec<(Vec<&str>, String, Vec<String>)> = vec![
        (
            vec!["--format", "jsonl", "--text-field", "body"],
            jsonl,
            docs.clone(),
        ),
        (vec!["--format", "text"], per_line, docs.clone()),
        (
            vec!["--format", "cc100"],
            paragraphs.clone(),
            grouped.clone(),
        ),
        (
            vec!["--format", "text", "--blank-line-separated"],
            paragraphs,
            grouped,
        ),
    ];
    for (i, (args, content, expected)) in cases.into_iter().enumerate() {
        let case_dir = dir.join(format!("case{i}"));
        std::fs::create_dir(&case_dir).unwrap();
        let plain = case_dir.join("part0");
        std::fs::write(&plain, &content).unwrap();
        let mut inputs = vec![plain.clone()];
        for codec in ["zst", "xz", "bz2", "gz"] {
            inputs.push(compress(&case_dir.join("part"), codec, content.as_bytes()));
        }
        let out = tmp.path().join(format!("out{i}"));
        // The directory is given: every file in it is read, in sorted order.
        run_ok(
            tokenize_into(&out, &["--tokenizer", "gpt2"])
                .args(&args)
                .arg(&case_dir),
        );
        let rows = read_rows(&out);
        assert_eq!(rows.len(), expected.len() * inputs.len(), "case {args:?}");
        let tok = hashprep::TextTokenizer::load("gpt2").unwrap();
        for (row, text) in rows.iter().zip(expected.iter().cycle()) {
            let mut ids = tok.encode(text).unwrap();
            ids.push(50_256);
            assert_eq!(&row.0, &ids, "case {args:?}");
        }
    }
}

#[test]
fn globs_and_several_inputs_keep_a_stable_order() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("b.txt", "second doc\n"),
        ("a.txt", "first doc\n"),
        ("c.log", "ignored\n"),
    ] {
        std::fs::write(tmp.path().join(name), text).unwrap();
    }
    let out = tmp.path().join("out");
    let pattern = tmp.path().join("*.txt");
    run_ok(
        tokenize_into(
            &out,
            &["--format", "text", "--tokenizer", "gpt2", "--no-eos"],
        )
        .arg(&pattern),
    );
    let tok = hashprep::TextTokenizer::load("gpt2").unwrap();
    let texts: Vec<String> = read_rows(&out)
        .iter()
        .map(|(ids, _)| tok.decode(ids))
        .collect();
    assert_eq!(texts, ["first doc", "second doc"]);
}
