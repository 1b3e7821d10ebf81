//! k-means as a whole: fixed points, seeding quality, thread independence, degenerate data.

use ndarray::Array2;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256Plus;

use super::{cluster, KMeansParams};

/// `blobs` clusters of `per` points in `dim` dimensions: centres spread over [-spread, spread],
/// points within +-0.5 of their centre. Row `i` belongs to blob `i % blobs`.
fn blobs(blobs: usize, per: usize, dim: usize, spread: f64, seed: u64) -> Array2<f64> {
    let mut rng = Xoshiro256Plus::seed_from_u64(seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    let centres = Array2::from_shape_fn((blobs, dim), |_| 2.0 * spread * uniform());
    Array2::from_shape_fn((blobs * per, dim), |(i, d)| {
        centres[[i % blobs, d]] + uniform()
    })
}

fn squared(a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f32>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, &y)| (x - f64::from(y)).powi(2))
        .sum()
}

#[test]
fn labels_are_the_nearest_centroids_and_centroids_the_means_of_their_clusters() {
    // Overlapping blobs, so Lloyd's iterations have work to do; tolerance 0 runs them until no
    // label changes.
    let data = blobs(6, 60, 5, 1.5, 7);
    let params = KMeansParams {
        tolerance: 0.0,
        ..KMeansParams::default()
    };
    let result = cluster(&data, 6, 3, params).unwrap();
    let k = result.centroids.nrows();
    for (row, &label) in data.rows().into_iter().zip(&result.labels) {
        let own = squared(row, result.centroids.row(label as usize));
        for c in 0..k {
            assert!(
                own <= squared(row, result.centroids.row(c)) + 1e-4,
                "{label} vs {c}"
            );
        }
    }
    for c in 0..k {
        let members: Vec<usize> = (0..data.nrows())
            .filter(|&i| result.labels[i] == c as u32)
            .collect();
        assert!(!members.is_empty(), "cluster {c} is empty");
        for d in 0..data.ncols() {
            let mean = members.iter().map(|&i| data[[i, d]]).sum::<f64>() / members.len() as f64;
            assert!(
                (mean - f64::from(result.centroids[[c, d]])).abs() < 1e-4,
                "cluster {c}"
            );
        }
    }
}

#[test]
fn every_separated_blob_becomes_one_cluster() {
    // 24 blobs far apart: a clustering that misses one merges two blobs and splits another.
    let data = blobs(24, 20, 16, 50.0, 11);
    for seed in 0..8 {
        let labels = cluster(&data, 24, seed, KMeansParams::default())
            .unwrap()
            .labels;
        let mut cluster_of_blob = vec![None; 24];
        for (row, &label) in labels.iter().enumerate() {
            let known = cluster_of_blob[row % 24].get_or_insert(label);
            assert_eq!(*known, label, "seed {seed}: blob {} split", row % 24);
        }
        let mut distinct: Vec<u32> = cluster_of_blob.into_iter().flatten().collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 24, "seed {seed}: blobs merged");
    }
}

#[test]
fn the_clustering_does_not_depend_on_the_number_of_threads() {
    // More rows than one parallel part, so the parts' sums are combined.
    let data = blobs(10, 1000, 8, 2.0, 5);
    let params = KMeansParams {
        runs: 2,
        ..KMeansParams::default()
    };
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let result = pool.install(|| cluster(&data, 10, 42, params).unwrap());
        (result.labels, result.centroids)
    };
    let one = on(1);
    assert_eq!(one, on(3));
    assert_eq!(one.0.len(), data.nrows());
}

#[test]
fn fewer_distinct_points_than_clusters_give_each_point_its_own_cluster() {
    // Three distinct points, four copies each, five clusters: seeding draws duplicates and
    // clusters run empty; every distinct point still ends in a cluster centred on it.
    let distinct = [[0.0, 1.0], [5.0, 5.0], [-3.0, 2.0]];
    let data = Array2::from_shape_fn((12, 2), |(i, d)| distinct[i % 3][d]);
    let result = cluster(&data, 5, 1, KMeansParams::default()).unwrap();
    for (row, &label) in data.rows().into_iter().zip(&result.labels) {
        assert!(label < 5);
        assert!(squared(row, result.centroids.row(label as usize)) < 1e-9);
    }
    assert!(result.centroids.iter().all(|c| c.is_finite()));
}

#[test]
fn more_clusters_than_rows_are_refused() {
    let data = Array2::zeros((3, 2));
    let err = cluster(&data, 4, 0, KMeansParams::default()).err().unwrap();
    assert!(
        err.to_string()
            .contains("cannot make 4 clusters of 3 embeddings"),
        "{err}"
    );
}
