//! The GPU-facing settings, checked on the CPU: bfloat16 training with float32 masters, and
//! the grouped expert GEMM against the per-expert loop.

use std::path::Path;

use hashtrain::{read_records, run, Record, RunOptions};
use tch::{Kind, Tensor};

use crate::common::{config, fixture, stop_at_20_and_resume_to_30, table_layer, valid_ppl};

fn train_losses(run_dir: &Path) -> Vec<f64> {
    read_records(&run_dir.join("metrics.jsonl"))
        .unwrap()
        .into_iter()
        .filter_map(|r| match r {
            Record::Train { loss, .. } => Some(loss),
            Record::Valid { .. } => None,
        })
        .collect()
}

fn tensors(path: &Path) -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(path).unwrap()
}

#[test]
fn bf16_runs_keep_float32_masters_learn_like_float32_and_resume_exactly() {
    let sparse = table_layer("hash", &fixture().balanced);
    let with = |overrides: &[&str]| {
        let mut all = vec!["train.steps=30", "train.checkpoint_every=10"];
        all.extend_from_slice(overrides);
        config(&sparse, &all)
    };
    let fp32 = tempfile::tempdir().unwrap();
    run(&with(&[]), fp32.path(), &RunOptions::default()).unwrap();
    let bf16 = tempfile::tempdir().unwrap();
    run(
        &with(&["train.precision=bf16"]),
        bf16.path(),
        &RunOptions::default(),
    )
    .unwrap();

    // Weights are bfloat16; the optimizer holds a float32 master of each, whose rounding is
    // the weight, and float32 moments.
    let checkpoint = bf16.path().join("checkpoints/step-00000030");
    let weights = tensors(&checkpoint.join("model.safetensors"));
    let optimizer: std::collections::BTreeMap<String, Tensor> =
        tensors(&checkpoint.join("optimizer.safetensors"))
            .into_iter()
            .collect();
    assert!(weights.len() > 10);
    for (name, weight) in &weights {
        assert_eq!(weight.kind(), Kind::BFloat16, "{name}");
        let master = &optimizer[&format!("master.{name}")];
        assert_eq!(master.kind(), Kind::Float, "{name}");
        assert!(
            master.to_kind(Kind::BFloat16).equal(weight),
            "{name}: weight = rounded master"
        );
        assert_eq!(optimizer[&format!("exp_avg.{name}")].kind(), Kind::Float);
    }
    // The masters carry what bfloat16 weights alone would round away.
    let moved_off_grid = weights.iter().any(|(name, weight)| {
        let master = &optimizer[&format!("master.{name}")];
        !master.equal(&weight.to_kind(Kind::Float))
    });
    assert!(moved_off_grid);

    // Same data and initialization: the curves agree to bfloat16's precision.
    let (a, b) = (valid_ppl(fp32.path()), valid_ppl(bf16.path()));
    assert_eq!(a.len(), b.len());
    let (start, end) = (
        train_losses(bf16.path())[0],
        *train_losses(bf16.path()).last().unwrap(),
    );
    assert!(end < start - 0.5, "bf16 learns: loss {start} -> {end}");
    for ((_, x), (_, y)) in a.iter().zip(&b) {
        assert!((x / y - 1.0).abs() < 0.03, "valid ppl fp32 {x} vs bf16 {y}");
    }

    // Stopped at 20 and resumed: the masters come back, so the run continues exactly.
    let stopped = tempfile::tempdir().unwrap();
    stop_at_20_and_resume_to_30(
        |steps| with(&["train.precision=bf16", steps]),
        stopped.path(),
    );
    assert_eq!(
        valid_ppl(stopped.path()).last(),
        valid_ppl(bf16.path()).last()
    );
}

#[test]
fn grouped_expert_gemm_trains_like_the_per_expert_loop() {
    let f = fixture();
    for sparse in [
        table_layer("hash", &f.balanced),
        table_layer("multihash", &f.multihash),
        table_layer("hash", &f.top2),
        "[[model.sparse]]\nat = 2\nkind = \"switch\"\nexperts = 8\n".to_owned(),
    ] {
        let runs = ["loop", "grouped"].map(|matmul| {
            let dir = tempfile::tempdir().unwrap();
            let overrides = [
                "train.steps=20".to_owned(),
                format!("train.expert_matmul={matmul}"),
            ];
            let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
            run(
                &config(&sparse, &overrides),
                dir.path(),
                &RunOptions::default(),
            )
            .unwrap();
            (train_losses(dir.path()), valid_ppl(dir.path()))
        });
        let [(loop_losses, loop_ppl), (grouped_losses, grouped_ppl)] = &runs;
        assert_eq!(loop_losses.len(), grouped_losses.len());
        for (x, y) in loop_losses.iter().zip(grouped_losses) {
            assert!((x - y).abs() < 1e-3, "{sparse}: train loss {x} vs {y}");
        }
        for ((_, x), (_, y)) in loop_ppl.iter().zip(grouped_ppl) {
            assert!((x / y - 1.0).abs() < 1e-3, "{sparse}: valid ppl {x} vs {y}");
        }
    }
}

#[test]
fn every_sparse_kind_trains_in_bf16() {
    let f = fixture();
    for sparse in [
        table_layer("multihash", &f.multihash),
        table_layer("hash", &f.top2),
        "[[model.sparse]]\nat = 2\nkind = \"switch\"\nexperts = 8\ncapacity_factor = 1.0\n"
            .to_owned(),
        "[[model.sparse]]\nat = 2\nkind = \"token-switch\"\nexperts = 8\n".to_owned(),
        "[[model.sparse]]\nat = 2\nkind = \"base\"\nexperts = 8\n".to_owned(),
    ] {
        for matmul in ["loop", "grouped"] {
            let dir = tempfile::tempdir().unwrap();
            let matmul = format!("train.expert_matmul={matmul}");
            let overrides = ["train.steps=10", "train.precision=bf16", matmul.as_str()];
            let summary = run(
                &config(&sparse, &overrides),
                dir.path(),
                &RunOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{sparse} {matmul}: {e}"));
            let losses = train_losses(dir.path());
            assert!(losses.iter().all(|l| l.is_finite()), "{sparse}: {losses:?}");
            assert!(summary.valid_ppl.is_finite() && summary.valid_ppl > 1.0);
        }
    }
}
