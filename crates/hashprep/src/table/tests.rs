//! Property tests of the table methods.

use proptest::prelude::*;

use super::*;
use crate::counts::TokenCounts;
use crate::util::splitmix64;

/// The rule of the issue, implemented the obvious way: O(V * K), no heap.
fn reference_balanced(counts: &[u64], k: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; k as usize];
    let mut assignment = vec![0u32; counts.len()];
    for token in order {
        let mut best = 0;
        for e in 1..k as usize {
            if load[e] < load[best] {
                best = e;
            }
        }
        assignment[token] = best as u32;
        load[best] += counts[token];
    }
    assignment
}

/// The optimal maximum load, by trying every assignment (small inputs only).
fn optimum(counts: &[u64], k: u32) -> u64 {
    let n = counts.len() as u32;
    let mut best = u64::MAX;
    for code in 0..u64::from(k).pow(n) {
        let mut load = vec![0u64; k as usize];
        let mut c = code;
        for &count in counts {
            load[(c % u64::from(k)) as usize] += count;
            c /= u64::from(k);
        }
        best = best.min(*load.iter().max().unwrap());
    }
    best
}

pub(super) fn inputs(counts: &TokenCounts) -> TableInputs<'_> {
    TableInputs {
        counts,
        tokenizer_fingerprint: "blake3:t".into(),
        counts_fingerprint: "blake3:c".into(),
        embeddings: None,
    }
}

pub(super) fn zipf_counts() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![3 => 0u64..5, 2 => 0u64..1000, 1 => 0u64..100_000],
        1..400,
    )
}

proptest! {
    #[test]
    fn every_token_gets_exactly_one_expert_per_stream_and_loads_add_up(
        counts in zipf_counts(), k in 1u32..40, hashes in 1u32..4, layers in 1u32..3, seed in any::<u64>(),
        method in prop::sample::select(vec![Method::Random, Method::Balanced, Method::Previous, Method::Oracle]),
    ) {
        prop_assume!(k as usize <= counts.len());
        let counts = TokenCounts::from_vec(counts);
        let spec = TableSpec { hashes, layers, seed, ..TableSpec::new(method, k) };
        let table = build_table(&spec, &inputs(&counts)).unwrap();
        prop_assert_eq!(table.streams(), hashes * layers);
        for stats in table.token_stats(&counts).unwrap() {
            let total: f64 = stats.shares.iter().sum();
            prop_assert!(counts.total() == 0 || (total - 1.0).abs() < 1e-9);
        }
        for s in 0..table.streams() {
            let column = table.column(s);
            prop_assert_eq!(column.len(), counts.as_slice().len());
            prop_assert!(column.iter().all(|&e| e < k));
            prop_assert_eq!(loads(counts.as_slice(), column, k).iter().sum::<u64>(), counts.total());
        }
    }

    #[test]
    fn greedy_equals_the_reference_rule(counts in zipf_counts(), k in 1u32..40) {
        prop_assert_eq!(greedy(&counts, k, 1, 0), reference_balanced(&counts, k));
    }

    #[test]
    fn balanced_is_within_the_greedy_guarantee_and_refinement_only_helps(
        counts in prop::collection::vec(0u64..50, 1..8), k in 1u32..4,
    ) {
        let assignment = greedy(&counts, k, 1, 0);
        let greedy_max = *loads(&counts, &assignment, k).iter().max().unwrap();
        let opt = optimum(&counts, k);
        let lower = (counts.iter().sum::<u64>() as f64 / f64::from(k)).max(*counts.iter().max().unwrap() as f64);
        prop_assert!(greedy_max as f64 >= lower);
        prop_assert!(3 * greedy_max <= 4 * opt, "greedy {} vs optimum {}", greedy_max, opt);
        let mut refined = assignment.clone();
        refine(&counts, &mut refined, k, 10_000);
        let refined_max = *loads(&counts, &refined, k).iter().max().unwrap();
        prop_assert!(refined_max <= greedy_max && refined_max >= opt);
    }

    #[test]
    fn tables_are_deterministic_for_a_seed(counts in zipf_counts(), seed in any::<u64>()) {
        let counts = TokenCounts::from_vec(counts);
        for method in [Method::Random, Method::Balanced] {
            let spec = TableSpec { seed, hashes: 2, ..TableSpec::new(method, 1) };
            let a = build_table(&spec, &inputs(&counts)).unwrap();
            let b = build_table(&spec, &inputs(&counts)).unwrap();
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn random_seeds_and_hashes_give_different_assignments() {
    let counts = TokenCounts::from_vec(vec![1; 1000]);
    let table = |seed, hashes| {
        build_table(
            &TableSpec {
                hashes,
                seed,
                ..TableSpec::new(Method::Random, 8)
            },
            &inputs(&counts),
        )
        .unwrap()
    };
    let two = table(1, 2);
    assert_ne!(two.column(0), two.column(1));
    assert_ne!(table(1, 1).column(0), table(2, 1).column(0));
    assert_eq!(table(1, 1).column(0), table(1, 1).column(0));
}

/// `clusters` well-separated blobs in 8 dimensions, `per` points each; token t is in blob t % clusters.
pub(super) fn planted(clusters: usize, per: usize) -> (ndarray::Array2<f64>, Vec<usize>) {
    let n = clusters * per;
    let mut data = ndarray::Array2::zeros((n, 8));
    let mut truth = Vec::with_capacity(n);
    for t in 0..n {
        let blob = t % clusters;
        truth.push(blob);
        for d in 0..8 {
            let centre = ((blob * 31 + d * 7) % 17) as f64 * 10.0;
            let noise = (splitmix64((t * 8 + d) as u64) % 1000) as f64 / 1000.0 - 0.5;
            data[[t, d]] = centre + noise;
        }
    }
    (data, truth)
}

pub(super) fn build_with_embeddings(
    spec: &TableSpec,
    counts: &TokenCounts,
    data: &ndarray::Array2<f64>,
) -> RoutingTable {
    build_table(
        spec,
        &TableInputs {
            embeddings: Some(data),
            ..inputs(counts)
        },
    )
    .unwrap()
}

#[test]
fn clustered_recovers_planted_clusters() {
    let (data, truth) = planted(6, 40);
    let counts = TokenCounts::from_vec(vec![1; truth.len()]);
    let mut spec = TableSpec::new(Method::Clustered, 6);
    spec.kmeans.runs = 4;
    let table = build_with_embeddings(&spec, &counts, &data);
    let labels = table.column(0);
    // The same partition: tokens share a label exactly when they share a blob.
    for a in 0..truth.len() {
        for b in (a + 1)..truth.len() {
            assert_eq!(
                labels[a] == labels[b],
                truth[a] == truth[b],
                "tokens {a} and {b}"
            );
        }
    }
}

#[test]
fn dispersed_spreads_each_planted_cluster_evenly() {
    let (data, truth) = planted(5, 37);
    let counts = TokenCounts::from_vec((0..truth.len() as u64).map(|i| i % 13 + 1).collect());
    let mut spec = TableSpec::new(Method::Dispersed, 8);
    spec.kmeans.runs = 4;
    let table = build_with_embeddings(&spec, &counts, &data);
    let experts = table.column(0);
    let check = |groups: &dyn Fn(usize) -> usize, n_groups: usize, assignment: &[u32]| {
        for g in 0..n_groups {
            let mut per_expert = [0usize; 8];
            (0..truth.len())
                .filter(|&t| groups(t) == g)
                .for_each(|t| per_expert[assignment[t] as usize] += 1);
            let (lo, hi) = (
                per_expert.iter().min().unwrap(),
                per_expert.iter().max().unwrap(),
            );
            assert!(hi - lo <= 1, "group {g}: {per_expert:?}");
        }
    };
    // Each k-means cluster of the table (K = 8 splits some blobs) is spread evenly...
    let kmeans_labels = cluster(&data, 8, stream_key(0, 0), spec.kmeans)
        .unwrap()
        .labels;
    check(&|t| kmeans_labels[t] as usize, 8, experts);
    // ...and so is each planted blob when it is the clustering.
    let planted_labels: Vec<u32> = truth.iter().map(|&b| b as u32).collect();
    check(
        &|t| truth[t],
        5,
        &disperse(&planted_labels, counts.as_slice(), 8, 1),
    );
}

#[test]
fn bad_specs_are_refused_with_clear_errors() {
    let counts = TokenCounts::from_vec(vec![3; 10]);
    let err = |spec: TableSpec, embeddings: Option<&ndarray::Array2<f64>>| {
        build_table(
            &spec,
            &TableInputs {
                embeddings,
                ..inputs(&counts)
            },
        )
        .unwrap_err()
        .to_string()
    };
    assert!(err(TableSpec::new(Method::Random, 0), None).contains("at least 1"));
    assert!(err(TableSpec::new(Method::Balanced, 11), None)
        .contains("larger than the vocabulary (10 ids)"));
    assert!(err(TableSpec::new(Method::Clustered, 2), None).contains("needs `embeddings`"));
    let wrong_rows = ndarray::Array2::zeros((9, 4));
    assert!(err(TableSpec::new(Method::Dispersed, 2), Some(&wrong_rows))
        .contains("9 rows but the vocabulary has 10 ids"));
    let spec = TableSpec {
        base: Method::Bigram,
        ..TableSpec::new(Method::Oracle, 2)
    };
    assert!(err(spec, None).contains("not a per-token method"));
    // Settings are named as typed errors, for callers to map onto their own option names.
    let counts = TokenCounts::from_vec(vec![1; 10]);
    let setting = |spec: TableSpec| match build_table(&spec, &inputs(&counts)) {
        Err(Error::Setting { name, .. }) => name,
        other => panic!("{other:?}"),
    };
    assert_eq!(setting(TableSpec::new(Method::Random, 0)), "experts");
    assert_eq!(
        setting(TableSpec {
            hashes: 0,
            ..TableSpec::new(Method::Random, 2)
        }),
        "hashes"
    );
    assert_eq!(
        setting(TableSpec {
            layers: 0,
            ..TableSpec::new(Method::Random, 2)
        }),
        "layers"
    );
}
