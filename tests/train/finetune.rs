//! Fine-tuning (`--init-from` with `train.freeze`, the paper's Table 8): a run starts from
//! another run's weights with a fresh optimizer, keeps its frozen weights bit-identical,
//! resumes exactly, and refuses a checkpoint of another model or table.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hashtrain::{read_checkpoint_state, resolve_checkpoint, run, RunOptions};
use tch::Tensor;

use crate::common::{config, fixture, table_layer};

fn weights(run_dir: &Path) -> BTreeMap<String, Tensor> {
    let dir = resolve_checkpoint(run_dir).unwrap();
    Tensor::read_safetensors(dir.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn init_from(source: &Path) -> RunOptions {
    RunOptions {
        init_from: Some(source.to_owned()),
        ..RunOptions::default()
    }
}

/// The names whose tensors are bit-identical in both weight sets.
fn unchanged(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>) -> Vec<String> {
    a.iter()
        .filter(|(name, t)| t.equal(&b[*name]))
        .map(|(name, _)| name.clone())
        .collect()
}

const SWITCH: &str = "[[model.sparse]]\nat = 2\nkind = \"switch\"\nexperts = 4\n";

#[test]
fn fine_tuning_starts_from_the_checkpoint_and_keeps_frozen_weights_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let pretrained = dir.path().join("pretrained");
    run(
        &config(SWITCH, &["train.steps=8"]),
        &pretrained,
        &RunOptions::default(),
    )
    .unwrap();
    let before = weights(&pretrained);

    // Switch weights frozen, load balancing changed at fine-tune time.
    let tuned = |freeze: &str, steps: &str| {
        config(
            SWITCH,
            &[
                steps,
                freeze,
                "model.sparse.0.load_bal=0.0",
                "train.checkpoint_every=3",
            ],
        )
    };
    let experts = r#"train.freeze=["experts"]"#;
    let straight = dir.path().join("experts");
    run(
        &tuned(experts, "train.steps=6"),
        &straight,
        &init_from(&pretrained),
    )
    .unwrap();
    let after = weights(&straight);
    let kept = unchanged(&before, &after);
    let experts_of_layer_2: Vec<&String> = before
        .keys()
        .filter(|n| n.starts_with("layers.2.ffn.experts."))
        .collect();
    assert_eq!(experts_of_layer_2.len(), 16);
    assert_eq!(
        kept.iter().collect::<Vec<_>>(),
        experts_of_layer_2,
        "only the experts stay"
    );
    let state = read_checkpoint_state(&resolve_checkpoint(&straight).unwrap()).unwrap();
    let source = state.init_from.expect("the source is recorded");
    assert_eq!(source.checkpoint, resolve_checkpoint(&pretrained).unwrap());
    assert_eq!(source.step, 8);
    assert_eq!(state.optimizer_steps, 6, "a fresh optimizer");

    // Stopped at step 3 and resumed without --init-from: the same weights as the straight run,
    // and the source still recorded.
    let resumed = dir.path().join("resumed");
    run(
        &tuned(experts, "train.steps=3"),
        &resumed,
        &init_from(&pretrained),
    )
    .unwrap();
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    run(&tuned(experts, "train.steps=6"), &resumed, &resume).unwrap();
    assert_eq!(unchanged(&after, &weights(&resumed)).len(), after.len());
    let state = read_checkpoint_state(&resolve_checkpoint(&resumed).unwrap()).unwrap();
    assert_eq!(state.init_from.map(|s| s.step), Some(8));

    // All layers but the last frozen: everything before layer 2 is the pretrained model's
    // (so it was loaded, not drawn afresh); the last layer and the final norm train.
    let last = dir.path().join("all-but-last");
    let freeze = r#"train.freeze=["all-but-last"]"#;
    run(
        &tuned(freeze, "train.steps=2"),
        &last,
        &init_from(&pretrained),
    )
    .unwrap();
    let kept = unchanged(&before, &weights(&last));
    for name in before.keys() {
        let trains = name.starts_with("layers.2.") || name.starts_with("ln_final.");
        assert_eq!(kept.contains(name), !trains, "{name}");
    }
}

#[test]
fn a_checkpoint_of_another_model_or_table_is_refused() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let pretrained = dir.path().join("hash");
    let hash = table_layer("hash", &f.balanced);
    run(
        &config(&hash, &["train.steps=2"]),
        &pretrained,
        &RunOptions::default(),
    )
    .unwrap();

    let err = run(
        &config(&table_layer("hash", &f.oracle), &["train.steps=2"]),
        &dir.path().join("other-table"),
        &init_from(&pretrained),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cannot start from this checkpoint: model.sparse[0] (layer 2) routes by")
            && err.contains("oracle.arrow"),
        "{err}"
    );
    let err = run(
        &config(&hash, &["train.steps=2", "model.d_ff=96"]),
        &dir.path().join("other-model"),
        &init_from(&pretrained),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("its weight `layers.1.ffn.a.bias` has shape [128], this model's [96]"),
        "{err}"
    );
    let err = run(
        &config(&hash, &["train.steps=2", r#"train.freeze=["router"]"#]),
        &dir.path().join("no-router"),
        &init_from(&pretrained),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("train.freeze[0] = \"router\" names none"),
        "{err}"
    );

    // The command line's flag, and its exit code for bad input.
    let config_file = dir.path().join("dense.toml");
    std::fs::write(&config_file, config("", &["train.steps=2"]).to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hashtrain"))
        .args(["--no-progress", "run", "--config"])
        .arg(&config_file)
        .arg("--out")
        .arg(dir.path().join("dense"))
        .arg("--init-from")
        .arg(&pretrained)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("it has no weight `layers.2.ffn.a.bias` of this model"),
        "{stderr}"
    );
}
