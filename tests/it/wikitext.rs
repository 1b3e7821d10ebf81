//! Real text: Wikitext-103 through the word-level and GPT-2 tokenizers.

use hashprep::Format;
use hashprep::Manifest;
use hashprep::TokenCounts;
use hashprep::{tokenize, RunOptions, TokenizeSettings};

use crate::common::*;

#[test]
fn word_level_gives_one_token_per_word_and_counts_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let tok = word_tokenizer(tmp.path(), 3);
    let out = tmp.path().join("out");
    let valid = wikitext("valid");
    run_ok(
        tokenize_into(
            &out,
            &["--format", "wikitext103", "--no-eos", "--tokenizer"],
        )
        .arg(&tok)
        .arg(&valid),
    );

    let docs = documents(&Format::Wikitext103, &valid);
    let rows = read_rows(&out);
    assert_eq!(rows.len(), docs.len());
    assert_eq!(docs.len(), 60, "Wikitext-103 validation has 60 articles");
    for (doc, (tokens, prefix)) in docs.iter().zip(&rows) {
        assert_eq!(tokens.len(), doc.split_whitespace().count());
        assert_eq!(*prefix, 0);
    }
    let words: usize = std::fs::read_to_string(&valid)
        .unwrap()
        .split_whitespace()
        .count();
    let manifest = Manifest::read(&out).unwrap();
    assert_eq!(manifest.totals.tokens as usize, words);

    let (counts, fingerprint) = TokenCounts::read(&out.join("counts.arrow")).unwrap();
    assert_eq!(
        fingerprint.as_deref(),
        Some(manifest.tokenizer.fingerprint.as_str())
    );
    assert_eq!(
        counts.as_slice().len(),
        manifest.tokenizer.vocab_size,
        "every id listed, zeros included"
    );
    let mut expected = TokenCounts::new(manifest.tokenizer.vocab_size);
    for (tokens, _) in &rows {
        expected.add(tokens);
    }
    assert_eq!(counts, expected);
    assert_eq!(counts.total() as usize, words);
}

#[test]
fn gpt2_ids_match_tiktoken_on_every_wikitext_article() {
    let tmp = tempfile::tempdir().unwrap();
    let valid = wikitext("valid");
    let settings = TokenizeSettings::new(Format::Wikitext103, "gpt2");
    tokenize(
        &settings,
        std::slice::from_ref(&valid),
        tmp.path(),
        &RunOptions::default(),
    )
    .unwrap();
    let reference = tiktoken_rs::r50k_base_singleton();
    let rows = read_rows(tmp.path());
    let docs = documents(&Format::Wikitext103, &valid);
    assert_eq!(rows.len(), docs.len());
    for (doc, (tokens, _)) in docs.iter().zip(&rows) {
        let mut expected = reference.encode_ordinary(doc);
        expected.push(50_256); // <|endoftext|> appended as end of document
        assert_eq!(tokens, &expected);
    }
    let manifest = Manifest::read(tmp.path()).unwrap();
    assert_eq!(manifest.token_type, hashprep::TokenWidth::Uint16);
    assert_eq!(manifest.tokenizer.eos_id, Some(50_256));
}

/// GPT-2's vocabulary behind Llama-3's split pattern (a `Split` step on the fast path).
fn split_pattern_tokenizer(dir: &std::path::Path) -> String {
    let gpt2 = hashprep::TextTokenizer::load("gpt2").unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(gpt2.json()).unwrap();
    json["pre_tokenizer"] = serde_json::json!({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "behavior": "Isolated", "invert": false, "pattern": {"Regex":
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"}},
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
    ]});
    let path = dir.join("split-pattern.json");
    std::fs::write(&path, json.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn output_bytes_do_not_depend_on_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = [wikitext("valid"), wikitext("test")];
    for tokenizer in ["gpt2".to_owned(), split_pattern_tokenizer(tmp.path())] {
        let mut settings = TokenizeSettings::new(Format::Wikitext103, tokenizer.as_str());
        settings.shard_bytes = 100_000; // several shards
        let mut outputs = Vec::new();
        for (threads, chunk_bytes) in [(1, 1 << 20), (2, 1 << 20), (2, 5_000)] {
            let out = tmp
                .path()
                .join(format!("t{threads}-{chunk_bytes}-{}", tokenizer.len()));
            let options = RunOptions {
                threads,
                chunk_bytes,
                ..RunOptions::default()
            };
            tokenize(&settings, &inputs, &out, &options).unwrap();
            outputs.push(dir_bytes(&out));
        }
        assert!(
            outputs[0]
                .keys()
                .filter(|k| k.starts_with("shard-"))
                .count()
                > 3
        );
        assert_eq!(outputs[0], outputs[1], "{tokenizer}");
        assert_eq!(outputs[0], outputs[2], "{tokenizer}");
        let manifest = Manifest::read(&tmp.path().join(format!(
            "t1-{}-{}",
            1 << 20,
            tokenizer.len()
        )));
        assert_eq!(
            manifest.unwrap().tokenizer.encoder,
            Some(hashprep::Encoder::FastPath)
        );
    }
}

#[test]
fn document_ranges_tokenize_exactly_those_articles() {
    let tmp = tempfile::tempdir().unwrap();
    let file = wikitext("test");
    let settings = TokenizeSettings::new(Format::Wikitext103, "gpt2");
    let quiet = RunOptions::default();
    let whole = tmp.path().join("whole");
    tokenize(&settings, std::slice::from_ref(&file), &whole, &quiet).unwrap();
    let articles = documents(&Format::Wikitext103, &file).len();
    assert!(articles > 20, "{articles} articles");

    // Two halves and a second read of the first few articles, as one output.
    let half = articles / 2;
    let range = |documents: [usize; 2]| hashprep::InputRange {
        path: file.clone(),
        documents: Some(documents),
    };
    let parts = tmp.path().join("parts");
    let inputs = [range([0, half]), range([half, articles]), range([0, 3])];
    let summary = hashprep::tokenize_ranges(&settings, &inputs, &parts, &quiet).unwrap();
    assert_eq!(summary.totals.documents as usize, articles + 3);
    let rows = |dir: &std::path::Path| {
        let data = hashprep::TokenDataset::open(dir).unwrap();
        (0..data.len())
            .map(|i| data.tokens(i).to_vec())
            .collect::<Vec<_>>()
    };
    let (all, split) = (rows(&whole), rows(&parts));
    assert_eq!(split[..articles], all[..]);
    assert_eq!(split[articles..], all[..3]);
    let recorded: Vec<Option<[usize; 2]>> = Manifest::read(&parts)
        .unwrap()
        .inputs
        .iter()
        .map(|f| f.documents)
        .collect();
    assert_eq!(
        recorded,
        [Some([0, half]), Some([half, articles]), Some([0, 3])]
    );

    // A range past the end names the file and what it holds; a range on a directory or of
    // Reddit dumps is refused.
    let past = [range([half, articles + 5])];
    let err = hashprep::tokenize_ranges(&settings, &past, &tmp.path().join("past"), &quiet)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "documents [{half}, {}) asked for, but the file holds {articles}",
            articles + 5
        )),
        "{err}"
    );
    assert!(err.contains("wiki.test.tokens"), "{err}");
    let dir = hashprep::InputRange {
        path: tmp.path().join("whole"),
        documents: Some([0, 1]),
    };
    let err = hashprep::tokenize_ranges(&settings, &[dir], &tmp.path().join("d"), &quiet)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not of a directory"), "{err}");
    let reddit = TokenizeSettings::new(Format::Reddit(hashprep::RedditOptions::default()), "gpt2");
    let err = hashprep::tokenize_ranges(&reddit, &[range([0, 1])], &tmp.path().join("r"), &quiet)
        .unwrap_err()
        .to_string();
    assert!(err.contains("give whole dumps"), "{err}");
}
