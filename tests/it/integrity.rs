//! Checksums written into the manifest are verified wherever the files are read: a counts file
//! or a tokenizer copy altered after `tokenize` is refused, naming the file.

use std::path::{Path, PathBuf};

use crate::common::*;

/// A small tokenize output and a balanced table built from it, both still intact.
fn data_and_table(tmp: &Path) -> (PathBuf, PathBuf) {
    let input = tmp.join("docs.txt");
    let text: String = (0..300)
        .map(|i| format!("document {i} says {} things about {}\n", i % 17, i % 5))
        .collect();
    std::fs::write(&input, text).unwrap();
    let data = tmp.join("data");
    run_ok(tokenize_into(&data, &["--format", "text", "--tokenizer", "gpt2"]).arg(&input));
    let table = tmp.join("balanced.arrow");
    run_ok(&mut build_table(&data, &table));
    (data, table)
}

fn build_table(data: &Path, out: &Path) -> std::process::Command {
    let mut cmd = hashprep();
    cmd.args([
        "build-table",
        "--method",
        "balanced",
        "--experts",
        "4",
        "--data",
    ])
    .arg(data)
    .arg("--out")
    .arg(out);
    cmd
}

/// Every command that reads `data` must refuse it with exit 2, naming `file`.
fn assert_every_reader_refuses(data: &Path, table: &Path, file: &str) {
    let tmp = data.parent().unwrap();
    let mut compare = hashprep();
    compare
        .args(["compare-tables", "--data"])
        .arg(data)
        .arg(table);
    let mut batches = hashprep();
    batches
        .args([
            "batches",
            "--batch-size",
            "2",
            "--seq-len",
            "16",
            "--steps",
            "1",
            "--data",
        ])
        .arg(data)
        .arg("--table")
        .arg(table);
    let mut inspect = hashprep();
    inspect.arg("inspect").arg(data);
    let mut merge = hashprep();
    merge
        .arg("merge")
        .arg(data)
        .arg("--out")
        .arg(tmp.join("merged"));
    let mut rebuild = build_table(data, &tmp.join("again.arrow"));
    for cmd in [
        &mut rebuild,
        &mut compare,
        &mut batches,
        &mut inspect,
        &mut merge,
    ] {
        let (code, stderr) = run_fail(cmd);
        assert_eq!(code, 2, "{cmd:?}: {stderr}");
        assert!(
            stderr.contains(file) && stderr.contains("checksum mismatch"),
            "{cmd:?}: {stderr}"
        );
    }
}

#[test]
fn a_counts_file_altered_after_tokenize_is_refused_by_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, table) = data_and_table(tmp.path());
    // One flipped byte in the middle of the count values still parses as Arrow.
    let counts = data.join("counts.arrow");
    let mut bytes = std::fs::read(&counts).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&counts, &bytes).unwrap();
    assert!(hashprep::TokenCounts::read(&counts).is_ok());
    assert_every_reader_refuses(&data, &table, "counts.arrow");
}

#[test]
fn a_tokenizer_copy_replaced_after_tokenize_is_refused_by_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, table) = data_and_table(tmp.path());
    let other = word_tokenizer(tmp.path(), 3);
    std::fs::copy(other, data.join("tokenizer.json")).unwrap();
    assert_every_reader_refuses(&data, &table, "tokenizer.json");
}

#[test]
fn an_id_outside_the_vocabulary_is_named_by_shard_and_row() {
    use hashprep::{Manifest, ShardReader, ShardWriter};
    let tmp = tempfile::tempdir().unwrap();
    let (data, table) = data_and_table(tmp.path());
    // A shard rewritten with a foreign id in row 5, its manifest entry updated to match, as a
    // shard of another tokenizer copied in would be.
    let mut manifest = Manifest::read(&data).unwrap();
    let path = data.join(&manifest.shards[0].file);
    let rows = read_rows(&data);
    let shard = ShardReader::open(&path, None).unwrap();
    let width = shard.width();
    drop(shard);
    std::fs::remove_file(&path).unwrap();
    let mut writer = ShardWriter::create(&path, width, &manifest.tokenizer.fingerprint).unwrap();
    for (row, (tokens, prefix)) in rows.iter().enumerate() {
        let mut tokens = tokens.clone();
        if row == 5 {
            tokens[2] = 60_000;
        }
        writer.push(&tokens, *prefix).unwrap();
    }
    manifest.shards[0] = writer.finish().unwrap();
    manifest.write(&data).unwrap();

    for workers in ["1", "2"] {
        let (code, stderr) = run_fail(
            hashprep()
                .args([
                    "batches",
                    "--batch-size",
                    "4",
                    "--seq-len",
                    "16",
                    "--steps",
                    "400",
                ])
                .args(["--workers", workers, "--data"])
                .arg(&data)
                .arg("--table")
                .arg(&table),
        );
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("shard-00000.arrow: row 5: id 60000 at position 2 is outside the vocabulary of 50257 ids"),
            "{stderr}"
        );
    }
}

#[test]
fn a_table_altered_after_build_table_is_refused_by_every_reader() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, table) = data_and_table(tmp.path());
    // An expert id flipped to another valid expert: only the table's checksum can tell. The
    // column is found by a stretch of it where the experts vary (most ids are unseen: expert 0).
    let experts = hashprep::RoutingTable::read(&table)
        .unwrap()
        .column(0)
        .to_vec();
    let first = experts.iter().position(|&e| e != 0).unwrap();
    let start = first.saturating_sub(8);
    let window: Vec<u8> = experts[start..start + 48]
        .iter()
        .flat_map(|&e| (e as u16).to_le_bytes())
        .collect();
    let mut bytes = std::fs::read(&table).unwrap();
    let at = bytes
        .windows(window.len())
        .position(|w| w == window.as_slice())
        .expect("the expert column");
    bytes[at + 2 * (first - start)] ^= 0x01; // expert e becomes e ^ 1, still below K = 4
    std::fs::write(&table, &bytes).unwrap();
    match hashprep::RoutingTable::read(&table) {
        Ok(_) => panic!("an altered table was read"),
        Err(e) => assert!(e.to_string().contains("checksum mismatch"), "{e}"),
    }
    for args in [
        vec!["compare-tables", "--data"],
        vec!["batches", "--batch-size", "2", "--seq-len", "16", "--data"],
    ] {
        let mut cmd = hashprep();
        cmd.args(&args).arg(&data);
        if args[0] == "batches" {
            cmd.arg("--table");
        }
        let (code, stderr) = run_fail(cmd.arg(&table));
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("balanced.arrow") && stderr.contains("checksum mismatch"),
            "{stderr}"
        );
    }
}

#[test]
fn merge_checks_shard_sizes_and_verify_or_any_later_reader_checks_their_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = data_and_table(tmp.path());
    let shard = data.join("shard-00000.arrow");
    let mut bytes = std::fs::read(&shard).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&shard, &bytes).unwrap();
    let merge = |out: &str, verify: bool| {
        let mut cmd = hashprep();
        cmd.arg("merge")
            .arg(&data)
            .arg("--out")
            .arg(tmp.path().join(out));
        if verify {
            cmd.arg("--verify");
        }
        cmd
    };
    let (code, stderr) = run_fail(&mut merge("verified", true));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("shard-00000.arrow: checksum mismatch"),
        "{stderr}"
    );
    // Without --verify the bytes are not read; the merged copy keeps the checksum, and the
    // first reader of the merged output refuses it.
    run_ok(&mut merge("merged", false));
    let (code, stderr) = run_fail(hashprep().arg("inspect").arg(tmp.path().join("merged")));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("shard-00000.arrow: checksum mismatch"),
        "{stderr}"
    );
    // A truncated shard is refused either way.
    std::fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    let (code, stderr) = run_fail(&mut merge("truncated", false));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("shard-00000.arrow") && stderr.contains("the manifest recorded"),
        "{stderr}"
    );
}
