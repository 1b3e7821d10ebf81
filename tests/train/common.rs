//! Shared fixtures: tokenized Wikitext and routing tables, built once per test binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hashprep::{build_table_files, tokenize, BuildTableRequest, RunOptions, TokenizeSettings};
use hashprep::{train_tokenizer, TokenizerKind, TrainOptions};
use hashprep::{Format, OnError};
use hashprep::{Method, TableSpec};
use hashtrain::RunConfig;
use hashtrain::{read_records, Record};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn wikitext(split: &str) -> PathBuf {
    repo().join(format!("data/wikitext-103/wiki.{split}.tokens"))
}

/// Tokenized data and tables shared by the tests.
pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub train: PathBuf,
    pub valid: PathBuf,
    pub balanced: PathBuf,
    pub oracle: PathBuf,
    pub multihash: PathBuf,
    /// Balanced, 32 experts, 2 per token.
    pub top2: PathBuf,
}

/// Builds the fixture on first use.
pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let docs =
            hashprep::read_documents(&[wikitext("valid")], &Format::Wikitext103, OnError::Fail)
                .unwrap()
                .map(|r| r.unwrap().text);
        let tokenizer = train_tokenizer(
            &TrainOptions::new(TokenizerKind::Word { min_count: 3 }),
            docs,
        )
        .unwrap();
        let tokenizer_path = dir.path().join("word.json");
        std::fs::write(&tokenizer_path, tokenizer.json()).unwrap();
        let mut settings =
            TokenizeSettings::new(Format::Wikitext103, tokenizer_path.to_string_lossy());
        settings.eos_token = Some("<eos>".into());
        let options = RunOptions {
            progress: false,
            ..RunOptions::default()
        };
        let train = dir.path().join("train");
        let valid = dir.path().join("valid");
        tokenize(&settings, &[wikitext("valid")], &train, &options).unwrap();
        tokenize(&settings, &[wikitext("test")], &valid, &options).unwrap();
        let table = |method: Method, hashes: u32, name: &str| {
            let mut spec = TableSpec::new(method, 16);
            spec.hashes = hashes;
            if name.starts_with("top2") {
                spec.experts = 32;
                spec.top_k = 2;
            }
            let out = dir.path().join(name);
            build_table_files(&BuildTableRequest::from_data(spec, &train, &out)).unwrap();
            out
        };
        Fixture {
            balanced: table(Method::Balanced, 1, "balanced.arrow"),
            oracle: table(Method::Oracle, 1, "oracle.arrow"),
            multihash: table(Method::Balanced, 2, "multihash.arrow"),
            top2: table(Method::Balanced, 1, "top2.arrow"),
            train,
            valid,
            _dir: dir,
        }
    })
}

/// A tiny model config over the fixture; `sparse` is TOML for `[[model.sparse]]` (or empty).
pub(crate) fn config(sparse: &str, overrides: &[&str]) -> RunConfig {
    let f = fixture();
    let text = format!(
        r#"
[data]
train = "{}"
valid = "{}"

[model]
layers = 2
d_model = 64
d_ff = 128
heads = 2
dropout = 0.1
context = 32
{sparse}

[train]
steps = 40
batch_size = 8
lr = 0.003
warmup = 10
eval_every = 20
eval_batches = 12
log_every = 5
threads = 1
"#,
        f.train.display(),
        f.valid.display()
    );
    let overrides: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
    RunConfig::parse(&text, Path::new("test.toml"), &overrides).unwrap()
}

/// `[[model.sparse]]` of a table-routed layer 2.
pub(crate) fn table_layer(kind: &str, table: &Path) -> String {
    format!(
        "[[model.sparse]]\nat = 2\nkind = \"{kind}\"\ntable = \"{}\"\n",
        table.display()
    )
}

/// The validation perplexities of a run, by step.
pub(crate) fn valid_ppl(run: &Path) -> Vec<(u64, f64)> {
    read_records(&run.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Valid { step, ppl, .. } => Some((step, ppl)),
            Record::Train { .. } => None,
        })
        .collect()
}

/// Trains `config_with("train.steps=20")` into `dir`, then resumes it with
/// `config_with("train.steps=30")`.
pub(crate) fn stop_at_20_and_resume_to_30(config_with: impl Fn(&str) -> RunConfig, dir: &Path) {
    use hashtrain::{run, RunOptions};
    run(&config_with("train.steps=20"), dir, &RunOptions::default()).unwrap();
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    run(&config_with("train.steps=30"), dir, &resume).unwrap();
}

/// Records without their timings (which differ between any two runs).
pub(crate) fn comparable(run_dir: &Path) -> Vec<Record> {
    read_records(&run_dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .map(|mut r| {
            if let Record::Train {
                tokens_per_s,
                loader_wait,
                ..
            } = &mut r
            {
                *tokens_per_s = 0.0;
                *loader_wait = 0.0;
            }
            r
        })
        .collect()
}
