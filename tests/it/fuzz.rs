//! Random and mutated bytes through every reader: the corpus formats (plain and compressed),
//! the Reddit partitioner and thread rebuild, and the shard, counts and table readers. Each
//! case must end in a result or a clear error: never a panic, and never an endless stream.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hashprep::RoutingTable;
use hashprep::ShardReader;
use hashprep::TokenCounts;
use hashprep::{Format, OnError, RedditOptions};
use hashprep::{Loader, LoaderConfig};
use proptest::prelude::*;

use crate::common::*;
use crate::formats::compress;

/// A small valid output and table whose bytes the mutations start from.
struct Valid {
    _dir: tempfile::TempDir,
    shard: Vec<u8>,
    counts: Vec<u8>,
    table: Vec<u8>,
    data: PathBuf,
}

fn valid() -> &'static Valid {
    static VALID: OnceLock<Valid> = OnceLock::new();
    VALID.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("docs.txt");
        let text: String = (0..40)
            .map(|i| {
                format!(
                    "document {i}: café naïve 日本語 {}\n",
                    "word ".repeat(i % 7)
                )
            })
            .collect();
        std::fs::write(&input, text).unwrap();
        let data = dir.path().join("data");
        run_ok(tokenize_into(&data, &["--format", "text", "--tokenizer", "gpt2"]).arg(&input));
        let table = dir.path().join("table.arrow");
        run_ok(
            hashprep()
                .args([
                    "build-table",
                    "--method",
                    "random",
                    "--experts",
                    "4",
                    "--data",
                ])
                .arg(&data)
                .arg("--out")
                .arg(&table),
        );
        Valid {
            shard: std::fs::read(data.join("shard-00000.arrow")).unwrap(),
            counts: std::fs::read(data.join("counts.arrow")).unwrap(),
            table: std::fs::read(&table).unwrap(),
            data,
            _dir: dir,
        }
    })
}

/// Up to 8 byte edits and an optional cut, applied to a valid file.
fn mutation() -> impl Strategy<Value = (Vec<(usize, u8)>, Option<usize>)> {
    (
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        prop::option::of(any::<usize>()),
    )
}

fn mutate(bytes: &[u8], (edits, cut): &(Vec<(usize, u8)>, Option<usize>)) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
    if bytes.is_empty() {
        return bytes;
    }
    for &(at, value) in edits {
        let at = at % bytes.len();
        bytes[at] = value;
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

/// Lines that look like the inputs: JSON records (comments, submissions, documents), text,
/// Wikitext headings, blank lines.
fn corpus_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        (0u8..6, 0u8..6, "[a-z &;<>]{0,20}").prop_map(|(id, parent, body)| format!(
            r#"{{"id":"c{id}","parent_id":"t1_c{parent}","link_id":"t3_s{}","body":"{body}","text":"{body}"}}"#,
            id % 2
        )),
        (0u8..2, "[a-zA-Z ]{0,20}").prop_map(|(id, title)| format!(
            r#"{{"id":"s{id}","title":"{title}","selftext":"[deleted]"}}"#
        )),
        "[a-z =.\\[\\]{}\"]{0,30}",
        Just(" = Heading = ".to_owned()),
        Just(String::new()),
    ];
    prop::collection::vec(line, 0..30).prop_map(|lines| lines.join("\n"))
}

/// Reads `path` as every line-based format, to the end; no panic, a bounded number of items.
fn read_all_formats(path: &Path, size: usize) {
    let formats = [
        Format::from_cli("text", "text", false).unwrap(),
        Format::from_cli("text", "text", true).unwrap(),
        Format::Cc100,
        Format::Wikitext103,
        Format::from_cli("jsonl", "text", false).unwrap(),
    ];
    for format in formats {
        for policy in [OnError::Skip, OnError::Fail] {
            let Ok(documents) = hashprep::read_documents(&[path.to_path_buf()], &format, policy)
            else {
                continue;
            };
            let mut items = 0usize;
            for document in documents {
                items += 1;
                // Finite: a damaged stream can decode to more lines than its own bytes (deflate
                // expands up to ~1000x), never to an endless stream.
                assert!(
                    items <= 1_000 * size + 1_000,
                    "{format:?}: an endless stream"
                );
                if let Err(e) = document {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
}

/// Partitions and rebuilds `path` as Reddit dumps (3 partitions), under both policies: to the
/// end or to the first error.
fn read_reddit(path: &Path) {
    let format = Format::Reddit(RedditOptions {
        partitions: 3,
        ..RedditOptions::default()
    });
    for policy in [OnError::Skip, OnError::Fail] {
        let documents = hashprep::read_documents(&[path.to_path_buf()], &format, policy).unwrap();
        // The first error ends the stream.
        let errors = documents.filter(Result::is_err).count();
        assert!(errors <= 1, "{policy:?}: {errors} errors");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn corpus_readers_survive_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input");
        std::fs::write(&path, &bytes).unwrap();
        read_all_formats(&path, bytes.len());
        read_reddit(&path);
    }

    #[test]
    fn corpus_readers_survive_mutated_compressed_streams(
        text in corpus_text(),
        codec in prop::sample::select(vec!["zst", "xz", "bz2", "gz", "plain"]),
        edits in mutation(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("RC_input");
        std::fs::write(&plain, text.as_bytes()).unwrap();
        let path = if codec == "plain" { plain } else { compress(&plain, codec, text.as_bytes()) };
        let bytes = mutate(&std::fs::read(&path).unwrap(), &edits);
        std::fs::write(&path, &bytes).unwrap();
        read_all_formats(&path, text.len().max(bytes.len()));
        read_reddit(&path);
    }

    #[test]
    fn shard_counts_and_table_readers_survive_mutated_files(edits in mutation()) {
        let valid = valid();
        let dir = tempfile::tempdir().unwrap();

        let shard = dir.path().join("shard.arrow");
        std::fs::write(&shard, mutate(&valid.shard, &edits)).unwrap();
        if let Ok(reader) = ShardReader::open(&shard, None) {
            for (tokens, _) in reader.documents() {
                let _ = tokens.to_vec();
            }
        }

        let counts = dir.path().join("counts.arrow");
        std::fs::write(&counts, mutate(&valid.counts, &edits)).unwrap();
        let _ = TokenCounts::read(&counts);

        let table = dir.path().join("table.arrow");
        std::fs::write(&table, mutate(&valid.table, &edits)).unwrap();
        if RoutingTable::read(&table).is_ok() {
            // A table that still reads must be refused or routed cleanly by the loader.
            if let Ok(loader) = Loader::new(&valid.data, &[table], LoaderConfig::new(2, 8, 0)) {
                loader.batch(0).unwrap();
            }
        }
    }
}
