//! Tests of top-k tables: k distinct experts per token.

use proptest::prelude::*;

use super::tests::{build_with_embeddings, inputs, planted, zipf_counts};
use super::*;
use crate::counts::TokenCounts;

/// The top-k greedy rule the obvious way: per token (count descending, id ascending), the k
/// experts of smallest (load, index), least loaded first.
fn reference_greedy(counts: &[u64], experts: u32, k: usize) -> Vec<u32> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; experts as usize];
    let mut assignment = vec![0u32; counts.len() * k];
    for token in order {
        let mut by_load: Vec<usize> = (0..experts as usize).collect();
        by_load.sort_by_key(|&e| (load[e], e));
        for (slot, &e) in by_load[..k].iter().enumerate() {
            assignment[token * k + slot] = e as u32;
            load[e] += counts[token];
        }
    }
    assignment
}

fn rows_are_distinct(column: &[u32], k: usize) -> bool {
    column.chunks_exact(k).all(|row| {
        let mut sorted = row.to_vec();
        sorted.sort_unstable();
        sorted.windows(2).all(|w| w[0] != w[1])
    })
}

fn spec(method: Method, experts: u32, top_k: u32) -> TableSpec {
    TableSpec {
        top_k,
        ..TableSpec::new(method, experts)
    }
}

proptest! {
    #[test]
    fn every_token_gets_k_distinct_experts_and_each_count_loads_k_experts(
        counts in zipf_counts(), experts in 1u32..24, k_share in 0.0f64..1.0, layers in 1u32..3,
        seed in any::<u64>(), method in prop::sample::select(vec![Method::Random, Method::Balanced]),
    ) {
        prop_assume!(experts as usize <= counts.len());
        let k = 1 + (k_share * f64::from(experts)) as u32 % experts;
        let counts = TokenCounts::from_vec(counts);
        let spec = TableSpec { layers, seed, ..spec(method, experts, k) };
        let table = build_table(&spec, &inputs(&counts)).unwrap();
        prop_assert_eq!(table.meta.top_k, k);
        for s in 0..table.streams() {
            let column = table.column(s);
            prop_assert_eq!(column.len(), counts.as_slice().len() * k as usize);
            prop_assert!(column.iter().all(|&e| e < experts));
            prop_assert!(rows_are_distinct(column, k as usize));
            let loads = loads(counts.as_slice(), column, experts);
            prop_assert_eq!(loads.iter().sum::<u64>(), u64::from(k) * counts.total());
        }
        // Statistics bound the load by max(k * total / K, largest count).
        let stats = &table.token_stats(&counts).unwrap()[0];
        let largest = counts.as_slice().iter().copied().max().unwrap_or(0) as f64;
        let bound = (f64::from(k) * counts.total() as f64 / f64::from(experts)).max(largest);
        prop_assert!((stats.lower_bound - bound).abs() < 1e-9);
        prop_assert!(counts.total() == 0 || stats.max_load as f64 >= bound - 1e-9);
    }

    #[test]
    fn top_k_greedy_equals_the_reference_rule(counts in zipf_counts(), experts in 1u32..24, k in 1usize..24) {
        prop_assume!(k <= experts as usize);
        prop_assert_eq!(balanced::greedy(&counts, experts, k as u32, 0), reference_greedy(&counts, experts, k));
    }

    #[test]
    fn refinement_keeps_rows_distinct_and_never_raises_the_maximum(
        counts in zipf_counts(), experts in 2u32..24, k in 2usize..6,
    ) {
        prop_assume!(k <= experts as usize);
        let mut assignment = balanced::greedy(&counts, experts, k as u32, 0);
        let before = *loads(&counts, &assignment, experts).iter().max().unwrap();
        refine(&counts, &mut assignment, experts, 10_000);
        let after = loads(&counts, &assignment, experts);
        prop_assert!(rows_are_distinct(&assignment, k));
        prop_assert!(*after.iter().max().unwrap() <= before);
        prop_assert_eq!(after.iter().sum::<u64>(), k as u64 * counts.iter().sum::<u64>());
    }

    #[test]
    fn top_k_tables_survive_arrow_and_npy(counts in zipf_counts(), k in 2u32..5, layers in 1u32..3) {
        prop_assume!(counts.len() >= 8);
        let counts = TokenCounts::from_vec(counts);
        let table = build_table(&TableSpec { layers, ..spec(Method::Random, 8, k) }, &inputs(&counts)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, format) in [("t.arrow", TableFormat::Arrow), ("t.npy", TableFormat::Npy)] {
            let path = dir.path().join(name);
            table.write(&path, format).unwrap();
            prop_assert_eq!(&RoutingTable::read(&path).unwrap(), &table);
        }
    }
}

#[test]
fn greedy_top_2_on_a_hand_example() {
    // counts t0=5, t1=9, t2=2 over 3 experts, 2 each: t1 -> e0,e1 (9,9,0); t0 -> e2,e0 (14,9,5);
    // t2 -> e2,e1 (14,11,7).
    assert_eq!(
        balanced::greedy(&[5, 9, 2], 3, 2, 0),
        vec![2, 0, 0, 1, 2, 1]
    );
}

#[test]
fn refinement_respects_distinctness_where_a_move_would_break_it() {
    // Two tokens, 2 of 3 experts each, counts 10 and 1. The greedy gives t0 -> e0,e1 and
    // t1 -> e2,e0: loads 11, 10, 1. Moving t1's pair from e0 to e2 would give a maximum of 10,
    // but t1 already has e2; every allowed exchange leaves 11 (the optimum with distinct rows).
    let counts = [10, 1];
    let mut assignment = balanced::greedy(&counts, 3, 2, 0);
    assert_eq!(assignment, vec![0, 1, 2, 0]);
    refine(&counts, &mut assignment, 3, 100);
    assert!(rows_are_distinct(&assignment, 2));
    assert_eq!(*loads(&counts, &assignment, 3).iter().max().unwrap(), 11);
}

#[test]
fn random_top_k_extends_the_top_1_table_and_spreads_evenly() {
    let counts = TokenCounts::from_vec(vec![1; 20_000]);
    let one = build_table(&spec(Method::Random, 16, 1), &inputs(&counts)).unwrap();
    let four = build_table(&spec(Method::Random, 16, 4), &inputs(&counts)).unwrap();
    // Slot 0 is the top-1 table.
    let first: Vec<u32> = four.column(0).chunks_exact(4).map(|r| r[0]).collect();
    assert_eq!(first, one.column(0));
    // Every slot is uniform: 20,000 / 16 = 1,250 per expert, within 15 %.
    for slot in 0..4 {
        let mut per_expert = [0u32; 16];
        for row in four.column(0).chunks_exact(4) {
            per_expert[row[slot] as usize] += 1;
        }
        assert!(
            per_expert.iter().all(|&n| (1_060..1_440).contains(&n)),
            "slot {slot}: {per_expert:?}"
        );
    }
    // k = K gives every token a permutation of all experts.
    let all = build_table(&spec(Method::Random, 16, 16), &inputs(&counts)).unwrap();
    assert!(rows_are_distinct(all.column(0), 16));
}

#[test]
fn balanced_top_k_is_near_the_bound_on_zipf_counts() {
    let counts = TokenCounts::from_vec((1..=5_000u64).map(|r| 1_000_000 / r).collect());
    let table = build_table(&spec(Method::Balanced, 64, 6), &inputs(&counts)).unwrap();
    let stats = &table.token_stats(&counts).unwrap()[0];
    assert!(stats.ratio_to_bound < 1.001, "{stats:?}");
}

#[test]
fn clustered_top_k_takes_the_nearest_centroids_in_order() {
    let (data, _) = planted(6, 30);
    let counts = TokenCounts::from_vec(vec![1; data.nrows()]);
    let one = build_with_embeddings(&spec(Method::Clustered, 6, 1), &counts, &data);
    let three = build_with_embeddings(&spec(Method::Clustered, 6, 3), &counts, &data);
    let clusters = cluster(&data, 6, stream_key(0, 0), KMeansParams::default()).unwrap();
    for (token, row) in three.column(0).chunks_exact(3).enumerate() {
        assert_eq!(
            row[0],
            one.column(0)[token],
            "slot 0 is the token's own cluster"
        );
        let distance = |c: u32| -> f64 {
            (0..data.ncols())
                .map(|d| {
                    (data[[token, d]] - f64::from(clusters.centroids[[c as usize, d]])).powi(2)
                })
                .sum()
        };
        assert!(distance(row[0]) <= distance(row[1]) && distance(row[1]) <= distance(row[2]));
        let farther = (0..6u32).filter(|c| !row.contains(c)).map(distance);
        assert!(
            farther.into_iter().all(|d| d >= distance(row[2])),
            "token {token}"
        );
    }
}

#[test]
fn dispersed_top_k_spreads_each_cluster_evenly_over_all_slots() {
    let (_, truth) = planted(5, 37);
    let labels: Vec<u32> = truth.iter().map(|&b| b as u32).collect();
    let counts: Vec<u64> = (0..truth.len() as u64).map(|i| i % 13 + 1).collect();
    let k = 3;
    let assignment = disperse(&labels, &counts, 8, k);
    assert!(rows_are_distinct(&assignment, k as usize));
    for blob in 0..5 {
        let mut per_expert = [0usize; 8];
        for token in (0..truth.len()).filter(|&t| truth[t] == blob) {
            for &e in &assignment[token * 3..token * 3 + 3] {
                per_expert[e as usize] += 1;
            }
        }
        let (lo, hi) = (
            per_expert.iter().min().unwrap(),
            per_expert.iter().max().unwrap(),
        );
        assert!(hi - lo <= 1, "blob {blob}: {per_expert:?}");
    }
}

#[test]
fn bad_top_k_settings_are_refused_by_name_and_value() {
    let counts = TokenCounts::from_vec(vec![3; 10]);
    let err = |spec: TableSpec| build_table(&spec, &inputs(&counts)).unwrap_err();
    let message = |spec: TableSpec| err(spec).to_string();
    assert!(
        matches!(err(spec(Method::Random, 4, 0)), Error::Setting { name, .. } if name == "top_k")
    );
    assert!(message(spec(Method::Random, 4, 0)).contains("0: must be at least 1"));
    assert!(message(spec(Method::Balanced, 4, 5)).contains("5 is more than the 4 experts"));
    assert!(message(spec(Method::Bigram, 4, 2)).contains("2 needs a per-token method"));
    let multihash = TableSpec {
        hashes: 2,
        ..spec(Method::Random, 4, 2)
    };
    assert!(message(multihash).contains("MultiHash tables are top-1"));
}

#[test]
fn a_file_with_a_repeated_expert_in_a_row_is_refused() {
    let counts = TokenCounts::from_vec(vec![1; 4]);
    let table = build_table(&spec(Method::Random, 4, 2), &inputs(&counts)).unwrap();
    let mut column = table.column(0).to_vec();
    column[3] = column[2];
    let err = RoutingTable::new(table.meta.clone(), vec![column]).unwrap_err();
    assert!(
        err.to_string()
            .contains("token 1 has the same expert twice"),
        "{err}"
    );
}
