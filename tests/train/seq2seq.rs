//! The sequence-to-sequence model (`model.kind = "seq2seq"`, the paper's dialogue model) on
//! generated Reddit threads: contexts fill the encoder and responses the decoder, each stream
//! routed by its own ids; no decoder position sees a later response id and no position sees
//! the encoder's padding; every sparse kind trains, in either stack; resume is exact.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hashprep::{build_table_files, tokenize, BuildTableRequest, Format, RedditOptions};
use hashprep::{train_tokenizer, Method, TableSpec, TokenDataset, TokenizeSettings};
use hashprep::{Loader, LoaderConfig, RoutingTable, TokenizerKind, TrainOptions};
use hashtrain::config::LayerId;
use hashtrain::RunOptions;
use hashtrain::{evaluate, read_records, run, DeviceBatch, LanguageModel, Record, RunConfig};
use tch::{Device, Kind, Tensor};

use crate::common::{comparable, repo};

/// Tokenized Reddit threads (training and validation months) and tables over them.
struct Dialogue {
    _dir: tempfile::TempDir,
    train: PathBuf,
    valid: PathBuf,
    balanced: PathBuf,
    top2: PathBuf,
    multihash: PathBuf,
}

/// Threads of comments, each replying to the one before, their bodies Wikitext lines; the
/// first comment of a thread answers a submission that is not in the dump (no context).
fn write_dump(path: &Path, threads: std::ops::Range<usize>, lines: &[&str]) {
    let mut records = Vec::new();
    for t in threads {
        for c in 0..5 {
            let parent = if c == 0 {
                format!("t3_s{t}")
            } else {
                format!("t1_c{t}x{}", c - 1)
            };
            let body = lines[(t * 5 + c) % lines.len()].replace('"', "'");
            records.push(format!(
                r#"{{"id":"c{t}x{c}","parent_id":"{parent}","link_id":"t3_s{t}","body":"{body}","subreddit":"s","created_utc":1600000000}}"#
            ));
        }
    }
    std::fs::write(path, records.join("\n") + "\n").unwrap();
}

fn dialogue() -> &'static Dialogue {
    static FIXTURE: OnceLock<Dialogue> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let text =
            std::fs::read_to_string(repo().join("data/wikitext-103/wiki.valid.tokens")).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('='))
            .map(|l| l.get(..l.len().min(120)).unwrap_or(l))
            .collect();
        let (train_dump, valid_dump) = (dir.path().join("RC_train"), dir.path().join("RC_valid"));
        write_dump(&train_dump, 0..120, &lines);
        write_dump(&valid_dump, 120..140, &lines);
        let texts = lines.iter().take(700).map(|l| (*l).to_owned());
        let tokenizer = train_tokenizer(
            &TrainOptions::new(TokenizerKind::Word { min_count: 2 }),
            texts,
        )
        .unwrap();
        let tokenizer_path = dir.path().join("word.json");
        std::fs::write(&tokenizer_path, tokenizer.json()).unwrap();
        let mut settings = TokenizeSettings::new(
            Format::Reddit(RedditOptions::default()),
            tokenizer_path.to_string_lossy(),
        );
        settings.eos_token = Some("<eos>".into());
        let options = hashprep::RunOptions {
            progress: false,
            ..hashprep::RunOptions::default()
        };
        let (train, valid) = (dir.path().join("train"), dir.path().join("valid"));
        tokenize(&settings, &[train_dump], &train, &options).unwrap();
        tokenize(&settings, &[valid_dump], &valid, &options).unwrap();
        let table = |name: &str, experts: u32, hashes: u32, top_k: u32| {
            let mut spec = TableSpec::new(Method::Balanced, experts);
            spec.hashes = hashes;
            spec.top_k = top_k;
            let out = dir.path().join(name);
            build_table_files(&BuildTableRequest::from_data(spec, &train, &out)).unwrap();
            out
        };
        Dialogue {
            balanced: table("balanced.arrow", 4, 1, 1),
            top2: table("top2.arrow", 8, 1, 2),
            multihash: table("multihash.arrow", 4, 2, 1),
            train,
            valid,
            _dir: dir,
        }
    })
}

/// A tiny sequence-to-sequence config over the fixture; `sparse` is TOML for its
/// `[[model.sparse]]` entries.
fn config(sparse: &str, overrides: &[&str]) -> RunConfig {
    let f = dialogue();
    let text = format!(
        r#"
[data]
train = "{}"
valid = "{}"

[model]
kind = "seq2seq"
encoder_layers = 1
encoder_context = 24
layers = 2
d_model = 32
d_ff = 64
heads = 2
dropout = 0.1
context = 16
{sparse}

[train]
steps = 10
batch_size = 8
lr = 0.003
warmup = 4
eval_every = 5
eval_batches = 4
log_every = 2
threads = 1
"#,
        f.train.display(),
        f.valid.display()
    );
    let overrides: Vec<String> = overrides.iter().map(|s| (*s).to_owned()).collect();
    RunConfig::parse(&text, Path::new("seq2seq.toml"), &overrides).unwrap()
}

fn hash_layer(stack: &str, at: usize, kind: &str, table: &Path) -> String {
    format!(
        "[[model.sparse]]\nat = {at}\nstack = \"{stack}\"\nkind = \"{kind}\"\ntable = \"{}\"\n",
        table.display()
    )
}

#[test]
fn contexts_fill_the_encoder_responses_the_decoder_and_each_stream_is_routed_by_its_ids() {
    let f = dialogue();
    let data = TokenDataset::open(&f.train).unwrap();
    let examples: Vec<(Vec<u32>, usize)> = (0..data.len())
        .map(|i| (data.tokens(i).to_vec(), data.prefix_len(i) as usize))
        .collect();
    assert!(examples.iter().any(|(_, p)| *p == 0) && examples.iter().any(|(_, p)| *p > 24));
    let (s, t) = (24, 16);
    let config = LoaderConfig {
        packing: false,
        encoder_len: Some(s),
        ..LoaderConfig::new(8, t, 3)
    };
    let loader = Loader::new(&f.train, std::slice::from_ref(&f.balanced), config).unwrap();
    let table = RoutingTable::read(&f.balanced).unwrap();
    let mut rows_seen = 0;
    for index in 0..loader.batches_per_epoch() {
        let batch = loader.batch(index).unwrap();
        let encoder = batch
            .encoder
            .as_ref()
            .expect("a sequence-to-sequence batch");
        for row in 0..batch.rows {
            let length = encoder.lengths[row] as usize;
            let context = &encoder.input_ids[row * s..row * s + length];
            let decoder = |v: &[u32]| v[row * t..(row + 1) * t].to_vec();
            let (inputs, targets) = (decoder(&batch.input_ids), decoder(&batch.targets));
            let mask = &batch.loss_mask[row * t..(row + 1) * t];
            let real: usize = mask.iter().map(|&m| usize::from(m)).sum();
            // The example this row is: its context's last S ids, then its response.
            let found = examples.iter().any(|(ids, prefix)| {
                let start = prefix.saturating_sub(s);
                let first = prefix.saturating_sub(1);
                let response = &ids[first + 1..ids.len().min(first + 1 + t)];
                ids.get(start..*prefix) == Some(context)
                    && ids.get(first..first + real) == Some(&inputs[..real])
                    && targets[..real] == *response
                    && real == response.len()
            });
            assert!(found, "batch {index} row {row} is no example");
            assert!(encoder.input_ids[row * s + length..(row + 1) * s]
                .iter()
                .all(|&id| id == 0));
            rows_seen += 1;
        }
        // Each stream's route is the table's expert of each real position's own id.
        for (route, ids, lengths, width) in [
            (&batch.routes[0], &batch.input_ids, batch_lengths(&batch), t),
            (
                &encoder.routes[0],
                &encoder.input_ids,
                encoder.lengths.clone(),
                s,
            ),
        ] {
            for (position, &id) in ids.iter().enumerate() {
                if position % width < lengths[position / width] as usize {
                    assert_eq!(route.expert_ids[position], table.experts_of(0, id)[0]);
                }
            }
            let counts: u32 = route.offsets.windows(2).map(|w| w[1] - w[0]).sum();
            assert_eq!(counts as usize, ids.len(), "every position grouped once");
        }
    }
    assert_eq!(rows_seen, examples.len());
}

/// Real positions of each decoder row (those the loss counts).
fn batch_lengths(batch: &hashprep::Batch) -> Vec<u32> {
    batch
        .loss_mask
        .chunks(batch.seq_len)
        .map(|row| row.iter().map(|&m| u32::from(m)).sum())
        .collect()
}

/// Logits `[B * T, V]` of the model on `batch` in evaluation mode.
fn logits(model: &LanguageModel, batch: &DeviceBatch) -> Tensor {
    tch::no_grad(|| {
        model
            .forward(
                &batch.input_ids,
                &batch.routes,
                batch.encoder.as_ref(),
                false,
            )
            .logits
    })
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn no_decoder_position_sees_a_later_response_id_or_the_encoders_padding() {
    // Switch in the encoder, Token-Switch in the decoder: routes of their own, no table.
    let sparse = "[[model.sparse]]\nat = 1\nstack = \"encoder\"\nkind = \"switch\"\nexperts = 2\n\
                  [[model.sparse]]\nat = 2\nkind = \"token-switch\"\nexperts = 2\n";
    // Trained a step and restored (`run` and `restore` hold libtorch's generator, which other
    // tests' runs draw from).
    let dir = tempfile::tempdir().unwrap();
    run(
        &config(sparse, &["train.steps=1"]),
        dir.path(),
        &RunOptions::default(),
    )
    .unwrap();
    let (restored, loader) = hashtrain::restore(dir.path(), Device::Cpu, None).unwrap();
    let model = &restored.model;
    let batch = DeviceBatch::new(&loader.batch(0).unwrap(), Device::Cpu);
    let encoder = batch.encoder.as_ref().unwrap();
    let lengths = Vec::<i64>::try_from(
        encoder
            .keys
            .attend
            .sum_dim_intlist(-1, false, Kind::Int64)
            .view([-1]),
    )
    .unwrap();
    let t = batch.input_ids.size()[1];
    let vocab = model.embedding().size()[0];
    let before = logits(model, &batch);
    assert!(
        before.isfinite().all().int64_value(&[]) == 1,
        "rows without context too"
    );

    // A later decoder id changed: the positions before it keep their outputs.
    let (row, at) = (1, 9);
    let changed = batch.input_ids.copy();
    let _ = changed
        .get(row)
        .get(at)
        .fill_((changed.int64_value(&[row, at]) + 1) % vocab);
    let altered = DeviceBatch {
        input_ids: changed,
        ..clone_batch(&batch)
    };
    let after = logits(model, &altered);
    let row_logits = |l: &Tensor, range: std::ops::Range<i64>| {
        l.narrow(0, row * t + range.start, range.end - range.start)
    };
    assert_eq!(
        max_difference(&row_logits(&before, 0..at), &row_logits(&after, 0..at)),
        0.0
    );
    assert!(max_difference(&row_logits(&before, at..t), &row_logits(&after, at..t)) > 0.0);

    // Padding of the encoder changed: nothing changes; a real context id changed: the
    // decoder sees it.
    let padded_row = (0i64..)
        .zip(&lengths)
        .find(|(_, &l)| l > 1 && l < 24)
        .expect("a padded row")
        .0;
    let s = encoder.input_ids.size()[1];
    let mut ids = encoder.input_ids.copy();
    let _ = ids.get(padded_row).narrow(0, s - 1, 1).fill_(5);
    let after = logits(model, &with_encoder_ids(&batch, &ids));
    assert_eq!(max_difference(&before, &after), 0.0);
    let full_row = (0i64..)
        .zip(&lengths)
        .find(|(_, &l)| l > 1)
        .expect("a context")
        .0;
    ids = encoder.input_ids.copy();
    let _ = ids
        .get(full_row)
        .get(0)
        .fill_((ids.int64_value(&[full_row, 0]) + 1) % vocab);
    let after = logits(model, &with_encoder_ids(&batch, &ids));
    let decoder_row = |l: &Tensor| l.narrow(0, full_row * t, t);
    assert!(max_difference(&decoder_row(&before), &decoder_row(&after)) > 0.0);
}

fn clone_batch(batch: &DeviceBatch) -> DeviceBatch {
    DeviceBatch {
        input_ids: batch.input_ids.shallow_clone(),
        targets: batch.targets.shallow_clone(),
        mask: batch.mask.shallow_clone(),
        routes: Vec::new(),
        tokens: batch.tokens,
        encoder: batch.encoder.as_ref().map(|e| hashtrain::EncoderInput {
            input_ids: e.input_ids.shallow_clone(),
            keys: hashtrain::KeyMask {
                attend: e.keys.attend.shallow_clone(),
                has_keys: e.keys.has_keys.shallow_clone(),
            },
            routes: Vec::new(),
        }),
    }
}

fn with_encoder_ids(batch: &DeviceBatch, ids: &Tensor) -> DeviceBatch {
    let mut altered = clone_batch(batch);
    if let Some(encoder) = &mut altered.encoder {
        encoder.input_ids = ids.shallow_clone();
    }
    altered
}

#[test]
fn hash_layers_in_both_stacks_train_evaluate_the_responses_and_resume_exactly() {
    let f = dialogue();
    let sparse = hash_layer("encoder", 1, "hash", &f.balanced)
        + &hash_layer("decoder", 2, "hash", &f.balanced);
    let with = |steps: &str| config(&sparse, &[steps, "train.checkpoint_every=5"]);
    let dir = tempfile::tempdir().unwrap();
    let straight = dir.path().join("straight");
    let summary = run(&with("train.steps=10"), &straight, &RunOptions::default()).unwrap();
    let stopped = dir.path().join("stopped");
    run(&with("train.steps=5"), &stopped, &RunOptions::default()).unwrap();
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    run(&with("train.steps=10"), &stopped, &resume).unwrap();
    // The stopped run also logged its partial window at step 5 (log_every = 2).
    let stopped_records: Vec<Record> = comparable(&stopped)
        .into_iter()
        .filter(|r| !matches!(r, Record::Train { step: 5, .. }))
        .collect();
    assert_eq!(comparable(&straight), stopped_records);

    // Both stacks report their loads; the encoder's under its own name.
    let layers: Vec<LayerId> = summary.valid_loads.iter().map(|l| l.layer).collect();
    assert_eq!(layers, [LayerId::encoder(1), LayerId::decoder(2)]);
    // The whole validation data: the loss is over the response ids alone.
    let (restored, mut loader) = hashtrain::restore(&straight, Device::Cpu, None).unwrap();
    let evaluation = evaluate(
        &restored.model,
        &mut loader,
        Device::Cpu,
        0,
        &restored.layers,
    )
    .unwrap();
    let data = TokenDataset::open(&f.valid).unwrap();
    let responses: usize = (0..data.len())
        .map(|i| {
            let (n, prefix) = (data.lengths()[i] as usize, data.prefix_len(i) as usize);
            let first = prefix.saturating_sub(1);
            (n - first - 1).min(16)
        })
        .sum();
    assert_eq!(evaluation.tokens as usize, responses);
    assert!(evaluation.ppl.is_finite());
}

#[test]
fn every_sparse_kind_trains_in_a_sequence_to_sequence_model() {
    let f = dialogue();
    let dir = tempfile::tempdir().unwrap();
    let kinds = [
        ("top2", hash_layer("decoder", 2, "hash", &f.top2)),
        (
            "multihash",
            hash_layer("encoder", 1, "multihash", &f.multihash),
        ),
        (
            "switch",
            "[[model.sparse]]\nat = 2\nkind = \"switch\"\nexperts = 4\n".to_owned(),
        ),
        (
            "base",
            "[[model.sparse]]\nat = 1\nstack = \"encoder\"\nkind = \"base\"\nexperts = 4\n\
             [[model.sparse]]\nat = 1\nkind = \"base\"\nexperts = 4\n"
                .to_owned(),
        ),
    ];
    for (name, sparse) in kinds {
        let summary = run(
            &config(&sparse, &["train.steps=4", "train.eval_every=0"]),
            &dir.path().join(name),
            &RunOptions::default(),
        )
        .unwrap();
        assert!(summary.valid_loss.is_finite(), "{name}");
        for load in &summary.valid_loads {
            let routed: u64 = load.counts.iter().sum();
            assert!(routed > 0, "{name}: {load:?}");
        }
        let records = read_records(&dir.path().join(name).join("metrics.jsonl")).unwrap();
        let losses: Vec<f64> = records
            .iter()
            .filter_map(|r| match r {
                Record::Train { loss, .. } => Some(*loss),
                Record::Valid { .. } => None,
            })
            .collect();
        assert!(losses.iter().all(|l| l.is_finite()), "{name}: {losses:?}");
    }
}
