//! What Python users do with the outputs: pyarrow memory-maps a shard without copying,
//! reads the Parquet export, the manifest follows its JSON Schema, and `tokenizers` loads a trained tokenizer.json.

use std::process::Command;

use crate::common::*;

#[test]
fn pyarrow_maps_shards_without_copying_and_reads_the_parquet_export() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let out = gpt2_wikitext(tmp.path(), &["--shard-mib", "0.2"]);
    let parquet = tmp.path().join("parquet");
    run_ok(
        hashprep()
            .arg("export")
            .arg(&out)
            .args(["--to", "parquet"])
            .arg(&parquet),
    );
    let script = r#"
import json, sys, jsonschema, pyarrow as pa, pyarrow.ipc, pyarrow.parquet as pq
out, parquet, schema = sys.argv[1], sys.argv[2], sys.argv[3]
manifest = json.load(open(f"{out}/manifest.json"))
jsonschema.validate(manifest, json.load(open(schema)))
rows = tokens = 0
for shard in manifest["shards"]:
    before = pa.total_allocated_bytes()
    table = pa.ipc.open_file(pa.memory_map(f"{out}/{shard['file']}")).read_all()
    assert pa.total_allocated_bytes() == before, "reading a shard allocated memory"
    assert table.schema.field("tokens").type == pa.list_(pa.field("item", pa.uint16(), nullable=False))
    n = sum(len(x) for x in table.column("tokens").to_pylist())
    assert (table.num_rows, n) == (shard["rows"], shard["tokens"])
    back = pq.read_table(f"{parquet}/{shard['file'].replace('.arrow', '.parquet')}")
    assert back.column("tokens").to_pylist() == table.column("tokens").to_pylist()
    rows += table.num_rows; tokens += n
print(rows, tokens)
"#;
    let stdout = run_ok(
        Command::new(python)
            .arg("-c")
            .arg(script)
            .arg(&out)
            .arg(&parquet)
            .arg(repo().join("schemas/manifest.schema.json")),
    );
    let manifest = hashprep::Manifest::read(&out).unwrap();
    assert!(manifest.shards.len() > 1);
    assert_eq!(
        stdout.trim(),
        format!("{} {}", manifest.totals.documents, manifest.totals.tokens)
    );
}

#[test]
fn trained_tokenizers_load_in_python_and_encode_the_same_ids() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sample = "The Valkyria Chronicles III was released in Japan @-@ only , <unk> 's sequel .";
    for (kind, extra) in [
        ("bpe", ["--vocab-size", "8008"]),
        ("word", ["--min-count", "2"]),
    ] {
        let path = tmp.path().join(format!("{kind}.json"));
        run_ok(
            hashprep()
                .args(["train-tokenizer", "--format", "wikitext103", "--kind", kind])
                .args(extra)
                .arg("--out")
                .arg(&path)
                .arg(wikitext("valid")),
        );
        let ours = hashprep::TextTokenizer::load(path.to_str().unwrap()).unwrap();
        if kind == "bpe" {
            assert_eq!(ours.vocab_size(), 8008);
        }
        let script = "import sys, tokenizers; t = tokenizers.Tokenizer.from_file(sys.argv[1]); \
                      print(' '.join(map(str, t.encode(sys.argv[2], add_special_tokens=False).ids)))";
        let stdout = run_ok(
            Command::new(&python)
                .args(["-c", script])
                .arg(&path)
                .arg(sample),
        );
        let theirs: Vec<u32> = stdout
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(theirs, ours.encode(sample).unwrap(), "{kind}");
    }
}
