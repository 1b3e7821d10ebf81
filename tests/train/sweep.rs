//! `hashtrain sweep`: trains every method on one budget and writes a results table computed
//! from the runs; a rerun finds the runs done and recomputes the same table.

use std::path::Path;
use std::process::Command;

use hashtrain::{read_records, Record};

use crate::common::repo;

/// The shipped small sweep, shrunk: a few documents, a few steps, five methods.
fn sweep(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hashtrain"));
    cmd.current_dir(repo())
        .args([
            "--no-progress",
            "sweep",
            "--config",
            "pipelines/paper-table3-small.toml",
            "--out",
        ])
        .arg(out);
    for set in [
        r#"data.train=[{path = "data/wikitext-103/wiki.valid.tokens", documents = [0, 12]}]"#,
        r#"data.valid=[{path = "data/wikitext-103/wiki.test.tokens", documents = [0, 3]}]"#,
        r#"data.test=[{path = "data/wikitext-103/wiki.test.tokens", documents = [3, 6]}]"#,
        "train.steps=4",
        "train.eval_every=2",
        "train.checkpoint_every=0",
        r#"sweep.methods=["dense", "balanced", "dispersed", "balanced-top2", "switch"]"#,
    ]
    .iter()
    .chain(extra)
    {
        cmd.args(["--set", set]);
    }
    cmd.output().unwrap()
}

/// [`sweep`], which must succeed.
fn sweep_ok(out: &Path, extra: &[&str]) {
    let result = sweep(out, extra);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn sweep_writes_a_results_table_recomputed_from_its_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("table3");
    // Threads unlike libtorch's default on 2-core machines, to tell the configured count from
    // the invocation's.
    let threads = "train.threads=3";
    let first = sweep(&out, &[threads]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let results = std::fs::read_to_string(out.join("results.md")).unwrap();
    let rows: Vec<&str> = results
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Model"))
        .collect();
    assert_eq!(rows.len(), 5, "{results}");
    for (row, (method, name)) in rows.iter().zip([
        ("dense", "Baseline Transformer"),
        ("balanced", "Hash Layer (balanced)"),
        ("dispersed", "Hash Layer (dispersed)"),
        ("balanced-top2", "Hash Layer (balanced, top-2)"),
        ("switch", "Switch Transformer"),
    ]) {
        assert!(row.starts_with(&format!("| {name} |")), "{row}");
        // The valid column is the run's last validation record, not a number written by hand.
        let records = read_records(&out.join("runs").join(method).join("metrics.jsonl")).unwrap();
        let last = records
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Valid { step, ppl, .. } => Some((*step, *ppl)),
                Record::Train { .. } => None,
            })
            .unwrap();
        assert_eq!(last.0, 4);
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[4], format!("{:.2}", last.1), "{row}");
        // Dense has no expert load; the others report one.
        assert_eq!(cells[6] == "-", method == "dense", "{row}");
    }
    assert!(
        out.join("tables/dispersed.arrow").exists(),
        "dispersed from the dense run's embeddings"
    );
    // Top-2 over 32 experts of half the width: the expert matrices of 1x16 top-1; only the
    // gate (32 x d) and 16 more output biases (16 x d) are added, d = 128.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let parameters = |method: &str| {
        let rows = json.as_array().unwrap();
        let row = rows.iter().find(|r| r["method"] == method).unwrap();
        row["parameters"].as_u64().unwrap()
    };
    assert!(
        rows[3].contains("modules=1x32, D=256, top-2 (sqrtsoftplus gate)"),
        "{}",
        rows[3]
    );
    assert_eq!(
        parameters("balanced-top2") - parameters("balanced"),
        48 * 128
    );
    assert!(out.join("curves.png").metadata().unwrap().len() > 1000);

    // A rerun trains nothing again and recomputes the same table.
    let metrics = std::fs::read(out.join("runs/balanced/metrics.jsonl")).unwrap();
    let second = sweep(&out, &[threads]);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        std::fs::read(out.join("runs/balanced/metrics.jsonl")).unwrap(),
        metrics
    );
    let again = std::fs::read_to_string(out.join("results.md")).unwrap();
    let table = |md: &str| {
        md.lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| {
                // Tokens/s is a timing; every other column must be identical.
                l.rsplitn(3, '|').nth(2).unwrap().to_owned()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(table(&again), table(&results));
    // The runs' configured threads, although this invocation trained nothing.
    assert!(again.contains("libtorch 3 threads)"), "{again}");

    // Changed data settings are refused rather than mixed with the old runs.
    let changed = sweep(&out, &["data.min_count=2"]);
    assert_eq!(changed.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&changed.stderr).contains("other [data] settings"));
}

#[test]
fn unknown_methods_and_documents_past_the_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never");
    let result = sweep(&out, &[r#"sweep.methods=["dense", "hashy"]"#]);
    assert_eq!(result.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&result.stderr).contains("unknown method `hashy`"));
    assert!(!out.exists());

    // A document range past the end of its file names the file and how many it holds.
    let result = sweep(
        &out,
        &[r#"data.test=[{path = "data/wikitext-103/wiki.test.tokens", documents = [3, 999]}]"#],
    );
    assert_eq!(result.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("wiki.test.tokens: documents [3, 999) asked for, but the file holds 62"),
        "{stderr}"
    );
}

/// The last validation perplexity of a run of the sweep in `out`.
fn last_valid_ppl(out: &Path, run: &str) -> f64 {
    read_records(&out.join("runs").join(run).join("metrics.jsonl"))
        .unwrap()
        .iter()
        .rev()
        .find_map(|r| match r {
            Record::Valid { ppl, .. } => Some(*ppl),
            Record::Train { .. } => None,
        })
        .unwrap()
}

#[test]
fn seeds_give_one_run_each_and_rows_of_mean_and_deviation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seeds");
    let methods = r#"sweep.methods=["dense", "balanced"]"#;
    sweep_ok(&out, &[methods, "sweep.seeds=[1, 2]"]);
    for run in [
        "dense-seed1",
        "dense-seed2",
        "balanced-seed1",
        "balanced-seed2",
    ] {
        assert!(
            out.join("runs").join(run).join("summary.json").exists(),
            "{run}"
        );
    }
    assert!(out.join("tables/balanced-seed2.arrow").exists());
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Model"))
        .collect();
    assert_eq!(rows.len(), 2, "{md}");
    for (row, method) in rows.iter().zip(["dense", "balanced"]) {
        let a = last_valid_ppl(&out, &format!("{method}-seed1"));
        let b = last_valid_ppl(&out, &format!("{method}-seed2"));
        assert_ne!(a, b, "the seed changes the run");
        let (mean, std) = (f64::midpoint(a, b), (a - b).abs() / 2f64.sqrt());
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[4], format!("{mean:.2} ± {std:.2}"), "{row}");
    }
    assert!(md.contains("mean ± sample standard deviation over seeds 1, 2"));

    let repeated = sweep(&dir.path().join("never"), &[methods, "sweep.seeds=[3, 3]"]);
    assert_eq!(repeated.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&repeated.stderr).contains("sweep.seeds: 3 is listed twice"));
}

#[test]
fn a_grid_of_experts_and_layers_trains_every_layout_and_draws_figure_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grid");
    sweep_ok(
        &out,
        &[
            r#"sweep.methods=["dense", "balanced"]"#,
            "sweep.experts=[4, 8]",
            "sweep.layer=[3, [2, 4]]",
            r#"sweep.dense=[{name = "wider", d_model = 256}]"#,
        ],
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let rows = json.as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["run"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "dense",
            "dense-wider",
            "balanced-K4-L3",
            "balanced-K4-L2+4",
            "balanced-K8-L3",
            "balanced-K8-L2+4",
        ]
    );
    let row = |run: &str| rows.iter().find(|r| r["run"] == run).unwrap();
    let parameters = |run: &str| row(run)["parameters"].as_u64().unwrap();
    // One expert FFN of d = 128, D = 512: two matrices and two biases.
    let expert = 2 * 128 * 512 + 512 + 128;
    assert_eq!(
        parameters("balanced-K8-L3") - parameters("balanced-K4-L3"),
        4 * expert
    );
    assert_eq!(
        parameters("balanced-K8-L2+4") - parameters("balanced-K8-L3"),
        7 * expert,
        "layer 2's FFN becomes 8 experts"
    );
    assert!(parameters("dense-wider") > parameters("dense"));
    assert_eq!(
        row("balanced-K8-L2+4")["sparse_layers"],
        serde_json::json!([2, 4])
    );

    // Both sparse layers of a two-layer hash model route by their own layer of one table.
    let config = std::fs::read_to_string(out.join("runs/balanced-K8-L2+4/config.toml")).unwrap();
    let config: toml::Value = toml::from_str(&config).unwrap();
    let sparse = config["model"]["sparse"].as_array().unwrap();
    let layout: Vec<(i64, i64)> = sparse
        .iter()
        .map(|s| {
            (
                s["at"].as_integer().unwrap(),
                s["table_layer"].as_integer().unwrap(),
            )
        })
        .collect();
    assert_eq!(layout, [(2, 0), (4, 1)]);
    let table = hashprep::RoutingTable::read(&out.join("tables/balanced-K8-L2+4.arrow")).unwrap();
    assert_eq!((table.meta.experts, table.meta.layers), (8, 2));
    assert_ne!(
        table.column(0),
        table.column(1),
        "each layer hashes on its own"
    );

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("| Hash Layer (balanced) | layers=4, modules=2x8 at layers 2, 4 |"),
        "{md}"
    );
    assert!(
        md.contains("| Wider Transformer (more compute) | layers=4, d=256, D=512 |"),
        "{md}"
    );
    assert!(out.join("grid.png").metadata().unwrap().len() > 1000);

    let bad = sweep(&dir.path().join("never"), &["sweep.layer=[3, 5]"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("layer 5 is not a layer of the 4-layer model"));
}

#[test]
fn a_list_of_load_balancing_coefficients_trains_switch_once_per_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("table9");
    let methods = r#"sweep.methods=["balanced", "switch"]"#;
    sweep_ok(&out, &[methods, "sweep.load_bal=[0.0, 0.5]"]);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let runs: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run"].as_str().unwrap())
        .collect();
    assert_eq!(runs, ["balanced", "switch-lb0", "switch-lb0.5"]);
    let aux_losses = |run: &str| -> Vec<f64> {
        read_records(&out.join("runs").join(run).join("metrics.jsonl"))
            .unwrap()
            .into_iter()
            .filter_map(|r| match r {
                Record::Train { aux_loss, .. } => Some(aux_loss),
                Record::Valid { .. } => None,
            })
            .collect()
    };
    assert!(aux_losses("switch-lb0").iter().all(|&a| a == 0.0));
    assert!(aux_losses("switch-lb0.5").iter().all(|&a| a > 0.0));
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for load_bal in ["load_bal=0 |", "load_bal=0.5 |"] {
        assert!(md.contains(&format!("modules=1x16, {load_bal}")), "{md}");
    }

    let repeated = sweep(
        &dir.path().join("never"),
        &[methods, "sweep.load_bal=[0.1, 0.1]"],
    );
    assert_eq!(repeated.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&repeated.stderr).contains("sweep.load_bal: 0.1 is listed twice")
    );
}

#[test]
fn fine_tuning_starts_each_run_from_its_trained_model_and_tabulates_table_8() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("table8");
    let finetune = r#"finetune={steps = 2, train = [{path = "data/wikitext-103/wiki.valid.tokens", documents = [12, 16]}], valid = [{path = "data/wikitext-103/wiki.test.tokens", documents = [6, 8]}], runs = [{from = "dense"}, {from = "switch", load_bal = 0.0}, {from = "balanced", freeze = ["experts"]}]}"#;
    let methods = r#"sweep.methods=["dense", "balanced", "switch"]"#;
    sweep_ok(&out, &[methods, finetune]);
    let runs = out.join("runs");
    let state = |run: &str| {
        let checkpoint = hashtrain::resolve_checkpoint(&runs.join(run)).unwrap();
        (
            hashtrain::read_checkpoint_state(&checkpoint).unwrap(),
            checkpoint,
        )
    };
    let (tuned, tuned_dir) = state("ft-balanced-freeze-experts");
    let (trained, trained_dir) = state("balanced");
    assert_eq!(tuned.init_from.unwrap().checkpoint, trained_dir);
    assert_eq!(tuned.config.data.train, out.join("data/finetune-train"));
    let weights = |dir: &Path| -> Vec<(String, tch::Tensor)> {
        tch::Tensor::read_safetensors(dir.join("model.safetensors")).unwrap()
    };
    let before = weights(&trained_dir);
    let after = weights(&tuned_dir);
    for (name, tensor) in &before {
        let (_, tuned) = after.iter().find(|(n, _)| n == name).unwrap();
        let expert = name.starts_with("layers.3.ffn.experts.");
        assert_eq!(tensor.equal(tuned), expert, "{name}");
    }
    let (switch, _) = state("ft-switch-lb0");
    assert_eq!(switch.config.model.sparse[0].load_bal, 0.0);
    assert_eq!(trained.config.model.sparse[0].load_bal, 0.1);

    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    let table = md
        .split("## Fine-tuning (Table 8)")
        .nth(1)
        .expect("the table");
    for row in [
        "| Baseline Transformer | No weights frozen |",
        "| Switch Transformer | No weights frozen, load_bal=0 |",
        "| Hash Layer (balanced) | Hash weights frozen |",
    ] {
        assert!(table.contains(row), "{row}: {md}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("finetune.json")).unwrap()).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);

    let bad = sweep(
        &dir.path().join("never"),
        &[
            methods,
            &finetune.replace(r#"from = "dense""#, r#"from = "oracle""#),
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("finetune.runs[0].from = `oracle` is none of the sweep's models"));
}

#[test]
fn equal_parameters_widen_the_experts_of_fewer_layers_and_the_curves_are_tabled() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("figure2");
    sweep_ok(
        &out,
        &[
            r#"sweep.methods=["balanced"]"#,
            "sweep.layer=[3, [2, 4]]",
            "sweep.equal_parameters=true",
            "sweep.curve_table=true",
        ],
    );
    let width = |run: &str| {
        let text = std::fs::read_to_string(out.join("runs").join(run).join("config.toml")).unwrap();
        let config: toml::Value = toml::from_str(&text).unwrap();
        let sparse = config["model"]["sparse"].as_array().unwrap().clone();
        sparse
            .iter()
            .map(|s| s.get("d_ff").and_then(toml::Value::as_integer))
            .collect::<Vec<_>>()
    };
    // One layer of experts twice as wide as each of the two layers': the same expert weights.
    assert_eq!(width("balanced-L3"), [Some(1024)]);
    assert_eq!(width("balanced-L2+4"), [None, None]);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("modules=1x16 at layer 3, D=1024 |"), "{md}");
    let curves = md
        .split("## Validation perplexity over training")
        .nth(1)
        .expect("the curve table");
    assert!(
        curves.contains("| Model | Configuration | 2 | 4 |"),
        "{curves}"
    );
    assert_eq!(
        curves
            .lines()
            .filter(|l| l.starts_with("| Hash Layer"))
            .count(),
        2
    );
}
