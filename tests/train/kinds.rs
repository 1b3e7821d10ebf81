//! Every sparse kind trains and reports per-expert loads that account for every token.

use hashtrain::{read_records, run, Record, RunOptions};

use crate::common::{config, fixture, table_layer};

/// Trains `sparse` for a few steps; returns the validation loads of layer 2.
fn loads_of(sparse: &str) -> (String, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        sparse,
        &[
            "train.steps=6",
            "train.eval_every=0",
            "train.eval_batches=4",
        ],
    );
    let summary = run(&cfg, dir.path(), &RunOptions::default()).unwrap();
    assert!(summary.valid_loss.is_finite());
    assert_eq!(summary.valid_loads.len(), 1);
    let load = &summary.valid_loads[0];
    assert_eq!(load.layer, hashtrain::config::LayerId::decoder(2));
    (load.kind.clone(), load.counts.clone())
}

/// Tokens in 4 validation batches of 8 x 32.
const TOKENS: u64 = 4 * 8 * 32;

#[test]
fn hash_layer_counts_every_token_once() {
    let (kind, counts) = loads_of(&table_layer("hash", &fixture().balanced));
    assert_eq!(kind, "hash");
    assert_eq!(counts.len(), 16);
    assert_eq!(counts.iter().sum::<u64>(), TOKENS);
}

#[test]
fn multihash_counts_one_segment_per_hash() {
    let (kind, counts) = loads_of(&table_layer("multihash", &fixture().multihash));
    assert_eq!(kind, "multihash");
    assert_eq!(counts.len(), 16);
    assert_eq!(counts.iter().sum::<u64>(), 2 * TOKENS);
}

#[test]
fn top_k_hash_layer_counts_each_token_once_per_expert_for_every_scoring() {
    for scoring in ["softmax", "sigmoid", "sqrtsoftplus", "uniform"] {
        let sparse = format!(
            "{}d_ff = 64\nscoring = \"{scoring}\"\n",
            table_layer("hash", &fixture().top2)
        );
        let (kind, counts) = loads_of(&sparse);
        assert_eq!(kind, "hash");
        assert_eq!(counts.len(), 32);
        assert_eq!(counts.iter().sum::<u64>(), 2 * TOKENS, "{scoring}");
    }
}

#[test]
fn top_k_settings_that_do_not_fit_the_table_are_refused() {
    let refused = |sparse: String| {
        let dir = tempfile::tempdir().unwrap();
        let err = run(&config(&sparse, &[]), dir.path(), &RunOptions::default()).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        err.to_string()
    };
    let f = fixture();
    let wrong_k = format!("{}top_k = 3\n", table_layer("hash", &f.top2));
    assert!(refused(wrong_k).contains("top_k = 3 but the table gives each token 2 expert(s)"));
    let top1_scored = format!(
        "{}scoring = \"softmax\"\n",
        table_layer("hash", &f.balanced)
    );
    assert!(refused(top1_scored).contains("this table is top-1"));
}

#[test]
fn switch_and_token_switch_route_every_token_or_drop_it() {
    for kind in ["switch", "token-switch"] {
        let sparse = format!(
            "[[model.sparse]]\nat = 2\nkind = \"{kind}\"\nexperts = 4\ncapacity_factor = 1.0\n"
        );
        let (name, counts) = loads_of(&sparse);
        assert_eq!(name, kind);
        assert_eq!(counts.len(), 5, "4 experts and the dropped bucket");
        assert_eq!(counts.iter().sum::<u64>(), TOKENS);
        // Capacity 1.0: no expert runs more than a quarter of a batch's 256 tokens per batch.
        assert!(counts[..4].iter().all(|&c| c <= 4 * 64), "{counts:?}");
    }
}

#[test]
fn base_layers_train_exactly_balanced_and_evaluate_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        "[[model.sparse]]\nat = 2\nkind = \"base\"\nexperts = 4\n",
        &[
            "train.steps=6",
            "train.eval_every=0",
            "train.eval_batches=4",
        ],
    );
    let summary = run(&cfg, dir.path(), &RunOptions::default()).unwrap();
    assert_eq!(summary.valid_loads[0].kind, "base");
    assert_eq!(summary.valid_loads[0].counts.iter().sum::<u64>(), TOKENS);
    let records = read_records(&dir.path().join("metrics.jsonl")).unwrap();
    let mut train_records = 0;
    for record in records {
        if let Record::Train { loads, .. } = record {
            // Batches of 8 x 32 tokens over 4 experts: 64 each per step, exactly.
            let counts = &loads[0].counts;
            assert!(counts[0] > 0 && counts[0] % 64 == 0, "{counts:?}");
            assert!(counts.iter().all(|&c| c == counts[0]), "{counts:?}");
            train_records += 1;
        }
    }
    assert!(train_records > 0);
}

#[test]
fn a_table_that_does_not_fit_its_layer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&table_layer("hash", &fixture().multihash), &[]);
    let err = run(&cfg, dir.path(), &RunOptions::default()).unwrap_err();
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("multihash"), "{err}");
}
