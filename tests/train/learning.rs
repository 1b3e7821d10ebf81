//! The model learns, and routing information helps as the paper says it does.

use hashtrain::{run, RunOptions};

use crate::common::{config, fixture, table_layer, valid_ppl};

#[test]
fn a_small_model_lowers_validation_perplexity() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run(&config("", &[]), dir.path(), &RunOptions::default()).unwrap();
    let ppl = valid_ppl(dir.path());
    assert_eq!(ppl.iter().map(|p| p.0).collect::<Vec<_>>(), [20, 40]);
    assert!(ppl[1].1 < ppl[0].1, "perplexity did not fall: {ppl:?}");
    // An untrained model is near-uniform over ~7k ids; a few steps already beat that by far.
    assert!(
        summary.valid_ppl < 1500.0,
        "valid ppl {}",
        summary.valid_ppl
    );
    assert!(dir.path().join("curves.png").metadata().unwrap().len() > 1000);
}

/// Paper Table 3 sanity check: routing on the oracle next token gives a far lower perplexity
/// than the dense model with the same compute after the same steps.
#[test]
fn oracle_routing_beats_dense_by_far() {
    let steps = ["train.steps=80", "train.eval_every=0"];
    let dense_dir = tempfile::tempdir().unwrap();
    let dense = run(
        &config("", &steps),
        dense_dir.path(),
        &RunOptions::default(),
    )
    .unwrap();
    let oracle_dir = tempfile::tempdir().unwrap();
    let sparse = table_layer("hash", &fixture().oracle);
    let oracle = run(
        &config(&sparse, &steps),
        oracle_dir.path(),
        &RunOptions::default(),
    )
    .unwrap();
    assert!(
        oracle.valid_ppl < 0.5 * dense.valid_ppl,
        "oracle {} vs dense {}",
        oracle.valid_ppl,
        dense.valid_ppl
    );
}
