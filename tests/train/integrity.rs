//! What real data and settings got wrong: data of another tokenizer, non-finite settings, a
//! diverging run, an output path that is a file.

use std::path::{Path, PathBuf};

use hashprep::Format;
use hashprep::{tokenize, RunOptions as TokenizeOptions, TokenizeSettings};
use hashtrain::RunConfig;
use hashtrain::{read_records, run, Record, RunOptions};

use crate::common::{config, fixture, repo};

/// Wikitext test text through the fixture's word vocabulary with two ids swapped: the same
/// vocabulary size, other ids.
fn permuted_vocabulary_data(dir: &Path) -> PathBuf {
    let tokenizer = fixture().train.join("tokenizer.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tokenizer).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object_mut().unwrap();
    let (the, of) = (vocab["the"].clone(), vocab["of"].clone());
    vocab.insert("the".into(), of);
    vocab.insert("of".into(), the);
    let path = dir.join("permuted.json");
    std::fs::write(&path, json.to_string()).unwrap();
    let mut settings = TokenizeSettings::new(Format::Wikitext103, path.to_string_lossy());
    settings.eos_token = Some("<eos>".into());
    let out = dir.join("permuted");
    tokenize(
        &settings,
        &[repo().join("data/wikitext-103/wiki.test.tokens")],
        &out,
        &TokenizeOptions::default(),
    )
    .unwrap();
    out
}

#[test]
fn validation_or_test_data_of_another_tokenizer_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let permuted = permuted_vocabulary_data(dir.path());
    let fingerprint = |data: &Path| {
        hashprep::Manifest::read(data)
            .unwrap()
            .tokenizer
            .fingerprint
    };
    let permuted_arg = permuted.display().to_string();
    for (setting, kind) in [("data.valid", "dense"), ("data.test", "switch")] {
        let sparse = if kind == "switch" {
            "[[model.sparse]]\nat = 2\nkind = \"switch\"\nexperts = 4\n"
        } else {
            ""
        };
        let cfg = config(sparse, &[&format!("{setting}=\"{permuted_arg}\"")]);
        let out = dir.path().join(setting);
        let err = run(&cfg, &out, &RunOptions::default()).unwrap_err();
        let message = err.to_string();
        assert!(err.is_bad_input(), "{message}");
        assert!(
            message.contains(&permuted_arg)
                && message.contains(&fingerprint(&permuted))
                && message.contains(&fingerprint(&fixture().train)),
            "{setting}: names the data and both fingerprints: {message}"
        );
        assert!(
            !out.join("metrics.jsonl").exists(),
            "refused before training"
        );
    }
}

#[test]
fn non_finite_settings_are_refused() {
    for (set, name) in [
        ("train.lr=nan", "train.lr = NaN"),
        ("train.lr=inf", "train.lr = inf"),
        ("train.clip=nan", "train.clip = NaN"),
        ("model.dropout=nan", "model.dropout = NaN"),
    ] {
        let err = RunConfig::parse(
            &config("", &[]).to_toml(),
            Path::new("run.toml"),
            &[set.to_owned()],
        )
        .unwrap_err();
        assert!(err.is_bad_input());
        assert!(
            err.to_string()
                .contains(&format!("{name} is not a finite number")),
            "{set}: {err}"
        );
    }
}

#[test]
fn a_run_with_an_infinite_perplexity_keeps_its_metrics_readable() {
    // lr 1000: the loss stays finite (millions of nats) but exp(loss) overflows.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("", &["train.lr=1000.0", "train.warmup=1", "train.steps=20"]);
    let summary = run(&cfg, dir.path(), &RunOptions::default()).unwrap();
    assert!(summary.valid_loss.is_finite() && summary.valid_ppl.is_infinite());
    let records = read_records(&dir.path().join("metrics.jsonl")).unwrap();
    assert!(records
        .iter()
        .any(|r| matches!(r, Record::Valid { ppl, .. } if ppl.is_nan())));
    assert!(dir.path().join("curves.png").is_file());
}

#[test]
fn a_diverging_run_stops_naming_the_step_and_stays_readable_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    // Weights of 1e30 after the first step: the second step's activations overflow.
    let cfg = config(
        "",
        &[
            "train.lr=1e30",
            "train.warmup=1",
            "train.steps=40",
            "train.log_every=1",
            "train.checkpoint_every=1",
            "train.keep_checkpoints=40",
        ],
    );
    let err = run(&cfg, dir.path(), &RunOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(err.is_bad_input(), "{message}");
    assert!(
        message.starts_with("training diverged at step "),
        "{message}"
    );
    let step: u64 = message["training diverged at step ".len()..]
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // metrics.jsonl stays readable (non-finite values as null, read back as NaN) and the
    // curves were drawn from the finite points.
    let records = read_records(&dir.path().join("metrics.jsonl")).unwrap();
    assert!(records.iter().any(
        |r| matches!(r, Record::Train { step: s, loss, .. } if *s == step && !loss.is_finite())
    ));
    assert!(dir.path().join("curves.png").is_file());
    // The checkpoints written before it hold finite weights; none was written after.
    let checkpoints = dir.path().join("checkpoints");
    let latest = std::fs::read_to_string(checkpoints.join("latest")).unwrap();
    assert_eq!(latest, format!("step-{:08}", step - 1));
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        let path = entry.unwrap().path().join("model.safetensors");
        if path.is_file() {
            for (name, tensor) in tch::Tensor::read_safetensors(&path).unwrap() {
                let finite = tensor.isfinite().all().to_kind(tch::Kind::Int64);
                assert_eq!(finite.int64_value(&[]), 1, "{}: {name}", path.display());
            }
        }
    }
    // --resume continues from the last good checkpoint (or starts over without one) and
    // stops the same way, instead of failing on its own metrics file.
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    let again = run(&cfg, dir.path(), &resume).unwrap_err();
    assert!(
        again.to_string().starts_with("training diverged at step "),
        "{again}"
    );
}
