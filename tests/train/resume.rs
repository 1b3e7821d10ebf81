//! A run stopped and resumed writes the same metrics as a run that never stopped.

use hashtrain::{run, Record, RunOptions};

use crate::common::{comparable, config, fixture, stop_at_20_and_resume_to_30, table_layer};

fn resume() -> RunOptions {
    RunOptions {
        resume: true,
        ..RunOptions::default()
    }
}

#[test]
fn resume_after_a_stop_gives_the_same_metrics_as_a_straight_run() {
    // A hash layer, so the restored tables and loader position matter too.
    let sparse = table_layer("hash", &fixture().balanced);
    let every = [
        "train.eval_every=10",
        "train.checkpoint_every=10",
        "train.log_every=3",
    ];
    let with = |steps: &str| {
        let mut o = every.to_vec();
        o.push(steps);
        config(&sparse, &o)
    };
    let straight = tempfile::tempdir().unwrap();
    run(
        &with("train.steps=30"),
        straight.path(),
        &RunOptions::default(),
    )
    .unwrap();

    // Stopped at step 20 (mid metrics window: log_every = 3), then resumed to 30.
    let stopped = tempfile::tempdir().unwrap();
    stop_at_20_and_resume_to_30(with, stopped.path());
    let resume = resume();

    // Killed after step 30's metrics but with step 30's checkpoint lost: resumes from 20.
    let crashed = tempfile::tempdir().unwrap();
    run(
        &with("train.steps=30"),
        crashed.path(),
        &RunOptions::default(),
    )
    .unwrap();
    let checkpoints = crashed.path().join("checkpoints");
    std::fs::remove_dir_all(checkpoints.join("step-00000030")).unwrap();
    std::fs::write(checkpoints.join("latest"), "step-00000020").unwrap();
    run(&with("train.steps=30"), crashed.path(), &resume).unwrap();

    let want = comparable(straight.path());
    assert!(
        want.iter()
            .filter(|r| matches!(r, Record::Valid { .. }))
            .count()
            == 3
    );
    // The stopped run also logged its partial window and evaluation at step 20: drop the
    // extra train record at 20 (20 is not a multiple of log_every).
    let stopped_records: Vec<Record> = comparable(stopped.path())
        .into_iter()
        .filter(|r| !matches!(r, Record::Train { step: 20, .. }))
        .collect();
    assert_eq!(stopped_records, want);
    assert_eq!(comparable(crashed.path()), want);
}

#[test]
fn resume_refuses_another_config() {
    let dir = tempfile::tempdir().unwrap();
    run(
        &config("", &["train.steps=4"]),
        dir.path(),
        &RunOptions::default(),
    )
    .unwrap();
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    let err = run(
        &config("", &["train.steps=8", "train.lr=0.01"]),
        dir.path(),
        &resume,
    )
    .unwrap_err();
    assert!(err.is_bad_input());
    assert!(
        err.to_string()
            .contains("other settings: train.lr (0.003 in the checkpoint, 0.01 now)"),
        "the refusal names the setting: {err}"
    );
    // And a new run does not silently overwrite it.
    let err = run(
        &config("", &["train.steps=8"]),
        dir.path(),
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("`resume` continues it"), "{err}");
}

#[test]
fn resume_of_a_finished_run_leaves_it_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config("", &["train.steps=4"]);
    let first = run(&cfg, dir.path(), &RunOptions::default()).unwrap();
    let files =
        ["summary.json", "metrics.jsonl"].map(|f| std::fs::read(dir.path().join(f)).unwrap());
    let again = run(&cfg, dir.path(), &resume()).unwrap();
    // The summary of the finished run (JSON's float parsing may differ by one ulp).
    assert!(again.tokens_per_s > 0.0);
    assert!((again.tokens_per_s - first.tokens_per_s).abs() <= 1e-9 * first.tokens_per_s);
    assert_eq!(again.steps, 4);
    let after =
        ["summary.json", "metrics.jsonl"].map(|f| std::fs::read(dir.path().join(f)).unwrap());
    assert_eq!(files, after, "summary.json and metrics.jsonl untouched");
}

#[test]
fn resume_after_a_kill_during_the_first_checkpoint_starts_over() {
    let cfg = config("", &["train.steps=6", "train.log_every=2"]);
    let straight = tempfile::tempdir().unwrap();
    run(&cfg, straight.path(), &RunOptions::default()).unwrap();

    // What a kill inside the first checkpoint leaves: metrics, a half-written checkpoint
    // under its temporary name, no `latest`.
    let killed = tempfile::tempdir().unwrap();
    run(&cfg, killed.path(), &RunOptions::default()).unwrap();
    let checkpoints = killed.path().join("checkpoints");
    std::fs::remove_dir_all(&checkpoints).unwrap();
    std::fs::create_dir_all(checkpoints.join(".step-00000006.tmp/tables")).unwrap();
    std::fs::remove_file(killed.path().join("summary.json")).unwrap();

    let err = run(&cfg, killed.path(), &RunOptions::default()).unwrap_err();
    assert!(err.to_string().contains("`resume` continues it"), "{err}");
    run(&cfg, killed.path(), &resume()).unwrap();
    assert_eq!(comparable(killed.path()), comparable(straight.path()));
    assert!(killed.path().join("checkpoints/latest").is_file());
}
