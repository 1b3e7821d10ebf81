//! The loader: routing invariants on real text, determinism across workers and resume, rank
//! sharding, and bad input refused before the first batch.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use hashprep::{Batch, Loader, LoaderConfig};
use hashprep::{RoutingTable, Rule};
use proptest::prelude::*;

use crate::common::*;

/// Wikitext validation through GPT-2 and a set of tables, built once per test binary.
fn fixture() -> &'static (tempfile::TempDir, PathBuf, Vec<PathBuf>) {
    static FIXTURE: std::sync::OnceLock<(tempfile::TempDir, PathBuf, Vec<PathBuf>)> =
        std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let data = gpt2_wikitext(tmp.path(), &["--shard-mib", "0.2"]);
        let mut tables = Vec::new();
        for (method, extra) in [
            ("balanced", "1"),
            ("random", "3"),
            ("previous", "1"),
            ("oracle", "1"),
            ("bigram", "2"),
            ("position", "1"),
        ] {
            let out = tmp.path().join(format!("{method}.arrow"));
            run_ok(
                hashprep()
                    .args([
                        "build-table",
                        "--data",
                        data.to_str().unwrap(),
                        "--method",
                        method,
                        "--experts",
                        "7",
                        "--hashes",
                        extra,
                        "--out",
                    ])
                    .arg(&out),
            );
            tables.push(out);
        }
        (tmp, data, tables)
    })
}

/// Checks every invariant of a batch against an independent recomputation.
fn check_batch(batch: &Batch, tables: &[RoutingTable]) {
    let (rows, t) = (batch.rows, batch.seq_len);
    assert_eq!(batch.input_ids.len(), rows * t);
    for r in 0..rows {
        for p in 0..t - 1 {
            if batch.loss_mask[r * t + p + 1] == 1 {
                assert_eq!(
                    batch.targets[r * t + p],
                    batch.input_ids[r * t + p + 1],
                    "targets are inputs shifted by one"
                );
            }
        }
    }
    let mut route = batch.routes.iter();
    for table in tables {
        for hash in 0..table.meta.hashes {
            let route = route.next().expect("a route per hash");
            let k = table.meta.experts;
            // `order` is a permutation grouping positions by expert, stably.
            let mut sorted = route.order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..(rows * t) as u32).collect::<Vec<_>>());
            let grouped: Vec<u32> = route
                .order
                .iter()
                .map(|&p| route.expert_ids[p as usize])
                .collect();
            assert!(
                grouped.windows(2).all(|w| w[0] <= w[1]),
                "expert_ids[order] is non-decreasing"
            );
            assert_eq!(route.offsets.len(), k as usize + 1);
            for e in 0..k as usize {
                let n = route.expert_ids.iter().filter(|&&x| x == e as u32).count() as u32;
                assert_eq!(route.offsets[e + 1] - route.offsets[e], n);
            }
            // The experts are the table applied to the right token.
            for r in 0..rows {
                for p in 0..t {
                    let i = r * t + p;
                    if batch.loss_mask[i] == 0 && batch.targets[i] == 0 && batch.input_ids[i] == 0 {
                        continue; // padding
                    }
                    let column = table.column(hash);
                    let x = batch.input_ids[i];
                    let expected = match table.meta.rule {
                        Rule::Token => column[x as usize],
                        Rule::Next => column[batch.targets[i] as usize],
                        Rule::Previous if p > 0 => column[batch.input_ids[i - 1] as usize],
                        Rule::Bigram if p > 0 => hashprep::bigram_expert(
                            table.stream_key(hash),
                            batch.input_ids[i - 1],
                            x,
                            k,
                        ),
                        Rule::Position => (p % k as usize) as u32,
                        Rule::Previous | Rule::Bigram => continue, // depends on the id before the row
                    };
                    assert_eq!(
                        route.expert_ids[i], expected,
                        "{:?} at row {r} position {p}",
                        table.meta.rule
                    );
                }
            }
        }
    }
}

fn tables(paths: &[PathBuf]) -> Vec<RoutingTable> {
    paths
        .iter()
        .map(|p| RoutingTable::read(p).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]
    #[test]
    fn batches_satisfy_the_routing_invariants(
        b in 1usize..6, t in 1usize..40, seed in any::<u64>(), packing in any::<bool>(), start in 0u64..50,
    ) {
        let (_, data, paths) = fixture();
        let config = LoaderConfig { packing, ..LoaderConfig::new(b, t, seed) };
        let loader = Loader::new(data, paths, config).unwrap();
        let tables = tables(paths);
        for index in start..start + 3 {
            check_batch(&loader.batch(index).unwrap(), &tables);
        }
    }
}

#[test]
fn same_batches_for_any_worker_count_and_after_resume() {
    let (_, data, paths) = fixture();
    let config = LoaderConfig::new(4, 64, 11);
    let straight: Vec<Batch> = Loader::new(data, paths, config.clone())
        .unwrap()
        .take(8, 1, 2)
        .collect::<Result<_, _>>()
        .unwrap();
    let four: Vec<Batch> = Loader::new(data, paths, config.clone())
        .unwrap()
        .take(8, 4, 3)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(straight, four);
    let mut first = Loader::new(data, paths, config.clone()).unwrap();
    let head: Vec<Batch> = first.take(3, 2, 2).collect::<Result<_, _>>().unwrap();
    let state = first.state();
    assert_eq!(state.next_batch, 3);
    let mut second = Loader::new(data, paths, config.clone()).unwrap();
    second.resume(&state).unwrap();
    let tail: Vec<Batch> = second.take(5, 3, 2).collect::<Result<_, _>>().unwrap();
    assert_eq!([head, tail].concat(), straight);
    // A state of another configuration is refused.
    let mut other = Loader::new(data, paths, LoaderConfig::new(4, 64, 12)).unwrap();
    assert!(other.resume(&state).is_err());
}

#[test]
fn ranks_see_disjoint_samples_and_epochs_reshuffle() {
    let (_, data, paths) = fixture();
    let mut seen: HashSet<Vec<u32>> = HashSet::new();
    let mut rows = 0;
    for rank in 0..3 {
        let config = LoaderConfig {
            rank,
            world_size: 3,
            ..LoaderConfig::new(8, 32, 5)
        };
        let mut loader = Loader::new(data, &paths[..1], config).unwrap();
        let per_epoch = loader.batches_per_epoch();
        for batch in loader.take(per_epoch, 2, 2) {
            let batch = batch.unwrap();
            for r in 0..batch.rows {
                rows += 1;
                assert!(
                    seen.insert(batch.input_ids[r * 32..(r + 1) * 32].to_vec()),
                    "rank {rank} repeats a sample"
                );
            }
        }
    }
    let manifest = hashprep::Manifest::read(data).unwrap();
    let windows = ((manifest.totals.tokens - 1) / 32) as usize;
    assert!(
        rows <= windows && rows + 3 * 8 > windows,
        "{rows} rows for {windows} windows"
    );
    let loader = Loader::new(data, &paths[..1], LoaderConfig::new(8, 32, 5)).unwrap();
    let per_epoch = loader.batches_per_epoch();
    assert_ne!(
        loader.batch(0).unwrap().input_ids,
        loader.batch(per_epoch).unwrap().input_ids,
        "epoch 1 reshuffles"
    );
}

#[test]
fn peer_counts_are_the_expert_loads_of_each_rank_of_the_group() {
    let (_, data, paths) = fixture();
    let config = |rank, expert_parallel| LoaderConfig {
        rank,
        world_size: 4,
        expert_parallel,
        ..LoaderConfig::new(4, 32, 9)
    };
    // Each rank's own loads, from its own loader with no expert parallelism.
    let own_loads = |rank: usize, index: u64| -> Vec<Vec<u32>> {
        let loader = Loader::new(data, &paths[..2], config(rank, 1)).unwrap();
        let batch = loader.batch(index).unwrap();
        batch.routes.iter().map(|r| r.peer_counts.clone()).collect()
    };
    for index in [0, 5] {
        let loads: Vec<Vec<Vec<u32>>> = (0..4).map(|rank| own_loads(rank, index)).collect();
        for (rank, routes) in loads.iter().enumerate() {
            let loader = Loader::new(data, &paths[..2], config(rank, 1)).unwrap();
            let batch = loader.batch(index).unwrap();
            for (route, counts) in batch.routes.iter().zip(routes) {
                let from_offsets: Vec<u32> =
                    route.offsets.windows(2).map(|w| w[1] - w[0]).collect();
                assert_eq!(&from_offsets, counts, "E = 1: the rank's own loads");
            }
        }
        for rank in 0..4 {
            let loader = Loader::new(data, &paths[..2], config(rank, 2)).unwrap();
            let batch = loader.batch(index).unwrap();
            let group = rank - rank % 2;
            // 1 balanced route + 3 random hashes, each [2, 7].
            assert_eq!(batch.routes.len(), 4);
            for (i, route) in batch.routes.iter().enumerate() {
                let expected: Vec<u32> = (group..group + 2)
                    .flat_map(|peer| loads[peer][i].clone())
                    .collect();
                assert_eq!(route.peer_counts, expected, "rank {rank}, route {i}");
            }
        }
        assert_ne!(loads[0], loads[1], "ranks have different batches");
    }
    let err = Loader::new(data, &paths[..1], config(0, 3)).err().unwrap();
    assert!(
        err.to_string()
            .contains("`expert_parallel` 3 must divide `world_size` 4"),
        "{err}"
    );
}

#[test]
fn per_example_rows_are_padded_and_masked() {
    let (_, data, paths) = fixture();
    let lengths: HashSet<usize> = hashprep::TokenDataset::open(data)
        .unwrap()
        .lengths()
        .iter()
        .map(|&l| l as usize)
        .collect();
    let t = lengths.iter().copied().max().unwrap() - 1; // only the longest article fills a row
    let config = LoaderConfig {
        packing: false,
        ..LoaderConfig::new(4, t, 2)
    };
    let loader = Loader::new(data, &paths[..1], config).unwrap();
    let mut padded_rows = 0;
    for index in 0..loader.batches_per_epoch() {
        let batch = loader.batch(index).unwrap();
        check_batch(&batch, &tables(&paths[..1]));
        for r in 0..batch.rows {
            let row = r * t..(r + 1) * t;
            let real = batch.loss_mask[row.clone()]
                .iter()
                .take_while(|&&m| m == 1)
                .count();
            assert!(
                real == t || lengths.contains(&(real + 1)),
                "a row holds one whole example"
            );
            for i in row.start + real..row.end {
                assert_eq!(
                    (batch.loss_mask[i], batch.input_ids[i], batch.targets[i]),
                    (0, 0, 0)
                );
                assert!(
                    batch.routes.iter().all(|route| route.expert_ids[i] == 0),
                    "padding routes to expert 0"
                );
            }
            padded_rows += usize::from(real < t);
        }
    }
    assert!(padded_rows > 50, "{padded_rows}");
}

/// A tokenize output whose examples are dialogues: the first half of each line is context.
fn dialogue_data(dir: &Path) -> PathBuf {
    let text: String = (0..40)
        .map(|i| format!("question number {i} about hash layers ? answer {i} is here .\n"))
        .collect();
    std::fs::write(dir.join("dialogue.txt"), text).unwrap();
    let data = dir.join("dialogue");
    run_ok(
        tokenize_into(&data, &["--format", "text", "--tokenizer", "gpt2"])
            .arg(dir.join("dialogue.txt")),
    );
    // Rewrite the shard with prefix_len = ids up to and including "?" (what the Reddit reader writes).
    let mut manifest = hashprep::Manifest::read(&data).unwrap();
    let question_mark = hashprep::TextTokenizer::load("gpt2")
        .unwrap()
        .encode(" ?")
        .unwrap()[0];
    let rows = read_rows(&data);
    let path = data.join(&manifest.shards[0].file);
    let mut writer =
        hashprep::ShardWriter::create(&path, manifest.token_type, &manifest.tokenizer.fingerprint)
            .unwrap();
    for (tokens, _) in &rows {
        let prefix = tokens.iter().position(|&t| t == question_mark).unwrap() + 1;
        writer.push(tokens, prefix as u32).unwrap();
    }
    manifest.shards[0] = writer.finish().unwrap();
    manifest.write(&data).unwrap();
    data
}

#[test]
fn dialogue_loss_covers_only_the_response() {
    let (tmp, _, _) = fixture();
    let scratch = tempfile::tempdir_in(tmp.path()).unwrap();
    let data = dialogue_data(scratch.path());
    let tok = hashprep::TextTokenizer::load("gpt2").unwrap();
    let (question, eos) = (tok.encode(" ?").unwrap()[0], 50_256);
    let longest = hashprep::TokenDataset::open(&data)
        .unwrap()
        .lengths()
        .iter()
        .copied()
        .max()
        .unwrap() as usize;
    for packing in [false, true] {
        let t = if packing { 16 } else { longest - 1 };
        let loader = Loader::new(
            &data,
            &[],
            LoaderConfig {
                packing,
                ..LoaderConfig::new(4, t, 9)
            },
        )
        .unwrap();
        let mut checked = 0;
        for index in 0..loader.batches_per_epoch() {
            let batch = loader.batch(index).unwrap();
            for row in 0..batch.rows {
                // Per example, a row starts in the context; packed, wherever the window falls.
                let mut in_response: Option<bool> = if packing { None } else { Some(false) };
                for i in row * t..(row + 1) * t {
                    let target = batch.targets[i];
                    if !packing && batch.loss_mask[i] == 0 && target == 0 {
                        break; // padding
                    }
                    let expected = if target == question {
                        Some(false)
                    } else {
                        in_response
                    };
                    if let Some(expected) = expected {
                        assert_eq!(
                            batch.loss_mask[i] == 1,
                            expected,
                            "packing {packing}, row {row}, position {}",
                            i % t
                        );
                        checked += 1;
                    }
                    if target == question {
                        in_response = Some(true);
                    } else if target == eos {
                        in_response = Some(false);
                    }
                }
            }
        }
        assert!(checked > 200, "{checked}");
    }
}

fn truncated_copy(data: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(data).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let shard = copy.join("shard-00001.arrow");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 100]).unwrap();
    copy
}

#[test]
fn bad_input_is_refused_before_the_first_batch() {
    let (tmp, data, paths) = fixture();
    let err = |data: &Path, tables: &[PathBuf], config: LoaderConfig| {
        Loader::new(data, tables, config).err().unwrap().to_string()
    };
    let scratch = tempfile::tempdir_in(tmp.path()).unwrap();
    let truncated = truncated_copy(data, scratch.path());
    assert!(err(&truncated, paths, LoaderConfig::new(2, 8, 0))
        .contains("shard-00001.arrow: checksum mismatch"));

    let counts = scratch.path().join("counts.arrow");
    hashprep::TokenCounts::from_vec(vec![1; 50])
        .write(&counts, "blake3:other")
        .unwrap();
    let foreign = scratch.path().join("foreign.arrow");
    run_ok(
        hashprep()
            .args([
                "build-table",
                "--counts",
                counts.to_str().unwrap(),
                "--method",
                "random",
                "--experts",
                "2",
                "--out",
            ])
            .arg(&foreign),
    );
    assert!(err(data, &[foreign], LoaderConfig::new(2, 8, 0))
        .contains("foreign.arrow: the table was built for tokenizer blake3:other"));

    let config = LoaderConfig {
        packing: false,
        ..LoaderConfig::new(2, 1_000_000, 0)
    };
    assert!(err(data, paths, config).contains("longer than every example"));
    assert!(err(data, paths, LoaderConfig::new(1 << 20, 1 << 13, 0))
        .contains("more than the limit of 268435456"));
    // Sizes a user gives are refused by name before anything is allocated.
    let caps = hashprep::check_prefetch(2, 1 << 40)
        .unwrap_err()
        .to_string();
    assert!(
        caps.contains("`prefetch` 1099511627776 is above the limit of 1024"),
        "{caps}"
    );
    let caps = hashprep::check_prefetch(100_000, 4)
        .unwrap_err()
        .to_string();
    assert!(
        caps.contains("`workers` 100000 is above the limit of 256"),
        "{caps}"
    );

    let (code, stderr) = run_fail(
        hashprep()
            .args(["batches", "--batch-size", "2", "--seq-len", "8", "--data"])
            .arg(&truncated),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
}

#[test]
fn routes_are_named_and_found_by_their_handles() {
    let (_tmp, data, tables) = fixture();
    let dir = tempfile::tempdir().unwrap();
    // The 3-hash random table again under another name: the same bytes share their routes.
    let copy = dir.path().join("copy-of-random.arrow");
    std::fs::copy(&tables[1], &copy).unwrap();
    let mut paths = tables.clone();
    paths.push(copy.clone());
    let set = hashprep::TableSet::open(&paths).unwrap();
    let fingerprints: Vec<&str> = set.fingerprints().collect();
    assert_eq!(fingerprints[1], fingerprints[paths.len() - 1]);
    assert_ne!(fingerprints[0], fingerprints[1]);

    let loader = Loader::with_tables(data, &set, LoaderConfig::new(4, 16, 0)).unwrap();
    let routes = loader.routes();
    assert_eq!(
        routes.len(),
        1 + 3 + 1 + 1 + 2 + 1,
        "one per (table, layer, hash); the copy adds none"
    );
    for (i, route) in routes.iter().enumerate() {
        assert_eq!(route.handle.index(), i);
        assert_eq!(route.experts, 7);
    }
    let random = loader.route_handles(&tables[1], 0).unwrap();
    assert_eq!(random, loader.route_handles(&copy, 0).unwrap());
    let named: Vec<(hashprep::Method, u32)> = random
        .iter()
        .map(|h| (routes[h.index()].method, routes[h.index()].hash))
        .collect();
    let random_method = hashprep::Method::Random;
    assert_eq!(
        named,
        [(random_method, 0), (random_method, 1), (random_method, 2)]
    );

    // A handle reads its route: the balanced table's expert of every input id.
    let [balanced] = loader.route_handles(&tables[0], 0).unwrap()[..] else {
        panic!("one hash, one route");
    };
    let column = set.table(&tables[0]).unwrap().column(0).to_vec();
    let batch = loader.batch(0).unwrap();
    let route = batch.route(balanced);
    assert_eq!(route.offsets.len(), 7 + 1);
    for (i, &id) in batch.input_ids.iter().enumerate() {
        assert_eq!(route.expert_ids[i], column[id as usize], "position {i}");
    }
    // Handles hold for a second loader over the same tables.
    let other = Loader::with_tables(data, &set, LoaderConfig::new(4, 16, 9)).unwrap();
    assert_eq!(other.route_handles(&tables[1], 0).unwrap(), random);

    let err = loader.route_handles(&tables[0], 1).unwrap_err().to_string();
    assert!(err.contains("has no layer 1"), "{err}");
    let err = loader
        .route_handles(Path::new("elsewhere.arrow"), 0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not one of the loader's tables"), "{err}");
}

/// A top-k table routes every position to its k experts: `order` and `slots` list each
/// (position, slot) pair once, grouped by expert, and the offsets count pairs.
#[test]
fn top_k_tables_route_every_position_to_its_k_experts() {
    let (tmp, data, _) = fixture();
    let mut paths = Vec::new();
    for (method, top_k, layers) in [("random", "3", "1"), ("balanced", "2", "2")] {
        let out = tmp.path().join(format!("{method}-top{top_k}.arrow"));
        run_ok(
            hashprep()
                .args(["build-table", "--data", data.to_str().unwrap()])
                .args(["--method", method, "--experts", "7", "--top-k", top_k])
                .args(["--layers", layers, "--out"])
                .arg(&out),
        );
        paths.push(out);
    }
    let tables = tables(&paths);
    for packing in [true, false] {
        let config = LoaderConfig {
            packing,
            world_size: 2,
            expert_parallel: 2,
            ..LoaderConfig::new(3, 16, 4)
        };
        let batch = Loader::new(data, &paths, config).unwrap().batch(1).unwrap();
        let streams = [(&tables[0], 0), (&tables[1], 0), (&tables[1], 1)];
        assert_eq!(batch.routes.len(), streams.len());
        let n = batch.rows * batch.seq_len;
        for (route, (table, stream)) in batch.routes.iter().zip(streams) {
            let k = table.meta.top_k as usize;
            assert_eq!(route.top_k as usize, k);
            assert_eq!(route.expert_ids.len(), n * k);
            for p in 0..n {
                let padding = batch.loss_mask[p] == 0 && batch.input_ids[p] == 0;
                let expected: Vec<u32> = if padding {
                    (0..k as u32).collect()
                } else {
                    table.experts_of(stream, batch.input_ids[p]).to_vec()
                };
                assert_eq!(
                    &route.expert_ids[p * k..(p + 1) * k],
                    expected,
                    "position {p}"
                );
            }
            let pairs: Vec<(u32, u32)> = route
                .order
                .iter()
                .copied()
                .zip(route.slots.iter().copied())
                .collect();
            let mut sorted = pairs.clone();
            sorted.sort_unstable();
            let all: Vec<(u32, u32)> = (0..n as u32)
                .flat_map(|p| (0..k as u32).map(move |j| (p, j)))
                .collect();
            assert_eq!(sorted, all, "each (position, slot) pair once");
            for e in 0..7usize {
                let group = &pairs[route.offsets[e] as usize..route.offsets[e + 1] as usize];
                assert!(group
                    .iter()
                    .all(|&(p, j)| route.expert_ids[p as usize * k + j as usize] == e as u32));
                assert!(
                    group.windows(2).all(|w| w[0].0 < w[1].0),
                    "positions ascend within expert {e}"
                );
            }
            assert_eq!(route.peer_counts.len(), 2 * 7);
            for peer in route.peer_counts.chunks(7) {
                assert_eq!(peer.iter().sum::<u32>() as usize, n * k);
            }
        }
    }
}
