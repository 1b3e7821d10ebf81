//! `clustered` and `dispersed`: k-means (linfa) on baseline token embeddings.

use linfa::prelude::{Fit, Predict};
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use linfa_nn::distance::Distance;
use ndarray::{Array2, ArrayView, Dimension};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

use crate::error::{Error, Result};

/// k-means settings (the same defaults as scikit-learn's `KMeans`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansParams {
    /// Maximum Lloyd iterations per run.
    pub max_iterations: u64,
    /// Convergence tolerance, as scikit-learn defines it: stop when the squared shift of the
    /// centroids is below `tolerance` times the mean variance of the features.
    pub tolerance: f64,
    /// Independent k-means++ initialisations; the best inertia wins.
    pub runs: usize,
}

impl Default for KMeansParams {
    fn default() -> Self {
        Self {
            max_iterations: 300,
            tolerance: 1e-4,
            runs: 1,
        }
    }
}

/// A k-means result.
pub(crate) struct Clusters {
    /// The cluster of each row.
    pub labels: Vec<u32>,
    /// `[clusters, dim]`.
    pub centroids: Array2<f32>,
}

/// The cluster of each row of `embeddings`, `clusters` clusters, seeded.
///
/// # Errors
/// More clusters than rows, or a failure inside linfa.
pub(crate) fn cluster(
    embeddings: &Array2<f64>,
    clusters: usize,
    seed: u64,
    params: KMeansParams,
) -> Result<Clusters> {
    if clusters > embeddings.nrows() {
        return Err(Error::BadInput(format!(
            "cannot make {clusters} clusters of {} embeddings",
            embeddings.nrows()
        )));
    }
    // f32 halves the memory traffic of the assignment step, which dominates the run time.
    let data: Array2<f32> = embeddings.mapv(|v| v as f32);
    let dataset = DatasetBase::from(data.clone());
    let model = KMeans::params_with(clusters, Xoshiro256Plus::seed_from_u64(seed), SquaredL2)
        .max_n_iterations(params.max_iterations)
        .tolerance(absolute_tolerance(embeddings, params.tolerance) as f32)
        .n_runs(params.runs.max(1))
        .fit(&dataset)
        .map_err(|e| Error::BadInput(format!("k-means failed: {e}")))?;
    let labels = model.predict(&data);
    Ok(Clusters {
        labels: labels.iter().map(|&l| l as u32).collect(),
        centroids: model.centroids().clone(),
    })
}

/// `clustered` with `top_k` experts per token: the clusters of the `top_k` nearest centroids,
/// nearest first (ties: lower cluster). `[V, top_k]` row-major.
pub(crate) fn nearest_centroids(
    embeddings: &Array2<f64>,
    centroids: &Array2<f32>,
    top_k: usize,
) -> Vec<u32> {
    let mut out = Vec::with_capacity(embeddings.nrows() * top_k);
    let mut row = vec![0f32; embeddings.ncols()];
    let mut by_distance: Vec<(f32, u32)> = Vec::with_capacity(centroids.nrows());
    for embedding in embeddings.rows() {
        for (r, &v) in row.iter_mut().zip(embedding) {
            *r = v as f32;
        }
        by_distance.clear();
        for (c, centroid) in centroids.rows().into_iter().enumerate() {
            let centroid = centroid.as_slice().expect("standard layout");
            by_distance.push((squared_distance(&row, centroid), c as u32));
        }
        by_distance
            .select_nth_unstable_by(top_k - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let nearest = &mut by_distance[..top_k];
        nearest.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out.extend(nearest.iter().map(|&(_, c)| c));
    }
    out
}

/// Euclidean distance with a kernel the compiler vectorizes: linfa's generic `L2Dist` goes
/// through ndarray iterators one element at a time, which made k-means several times slower
/// than scikit-learn. Same metric, same results up to float rounding.
#[derive(Debug, Clone, Copy)]
struct SquaredL2;

/// Squared distance of two equal-length slices, with 16 independent accumulators.
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

impl Distance<f32> for SquaredL2 {
    fn distance<D: Dimension>(&self, a: ArrayView<f32, D>, b: ArrayView<f32, D>) -> f32 {
        self.rdistance(a, b).sqrt()
    }

    fn rdistance<D: Dimension>(&self, a: ArrayView<f32, D>, b: ArrayView<f32, D>) -> f32 {
        assert_eq!(a.shape(), b.shape(), "points of different dimensions");
        match (a.as_slice(), b.as_slice()) {
            (Some(x), Some(y)) => squared_distance(x, y),
            _ => a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum(),
        }
    }

    fn rdist_to_dist(&self, rdist: f32) -> f32 {
        rdist.sqrt()
    }

    fn dist_to_rdist(&self, dist: f32) -> f32 {
        dist * dist
    }
}

/// linfa stops when the Euclidean distance between successive centroid matrices is below its
/// tolerance; scikit-learn's `tol` is relative to the data: the squared distance against
/// `tol * mean(var(X, axis=0))`. This converts the latter into the former.
fn absolute_tolerance(data: &Array2<f64>, relative: f64) -> f64 {
    let mean_variance = data.var_axis(ndarray::Axis(0), 0.0).mean().unwrap_or(0.0);
    (relative * mean_variance).sqrt()
}

/// `dispersed`: each cluster's tokens (most frequent first) are dealt round-robin over all
/// experts, continuing where the previous cluster stopped, so within every cluster the number
/// of tokens per expert differs by at most one. With `top_k`, a token is dealt `top_k`
/// consecutive experts (distinct since `top_k <= experts`). `[V, top_k]` row-major.
pub(crate) fn disperse(labels: &[u32], counts: &[u64], experts: u32, top_k: u32) -> Vec<u32> {
    let clusters = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); clusters];
    for (token, &label) in labels.iter().enumerate() {
        members[label as usize].push(token as u32);
    }
    let k = top_k as usize;
    let mut assignment = vec![0u32; labels.len() * k];
    let mut next = 0u32;
    for mut tokens in members {
        tokens.sort_by_key(|&t| (std::cmp::Reverse(counts[t as usize]), t));
        for token in tokens {
            for slot in &mut assignment[token as usize * k..(token as usize + 1) * k] {
                *slot = next;
                next = (next + 1) % experts;
            }
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_distance_matches_the_definition() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let expected: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!((squared_distance(&a, &b) - expected).abs() < 1e-4);
        let (va, vb) = (ndarray::aview1(&a), ndarray::aview1(&b));
        assert!((SquaredL2.distance(va, vb) - expected.sqrt()).abs() < 1e-4);
    }
}
