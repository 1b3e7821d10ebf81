//! `clustered` and `dispersed`: k-means on baseline token embeddings.
//!
//! scikit-learn's `KMeans` algorithm ("lloyd"): greedy k-means++ seeding, Lloyd's iterations
//! with the assignment step as a matrix product, the same tolerance and stopping rules.
//! linfa's `KMeans` was the driver before; it computes one distance per (point, centre) pair
//! through its `Distance` trait, so its assignment step cannot be a matrix product, and its
//! k-means++ draws one candidate per centre: it ran at 0.24x-0.60x scikit-learn's speed with
//! 1.2x its inertia. With both replaced, nothing of it was left to drive.

mod distances;
mod lloyd;
mod seeding;

use ndarray::{Array2, Axis};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

use crate::error::{Error, Result};
use distances::Points;
use lloyd::{lloyd, Fit};
use seeding::greedy_kmeans_plus_plus;

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
    /// `[clusters, dim]`, in the embeddings' coordinates (what tests check the clustering by).
    #[cfg(test)]
    pub centroids: Array2<f32>,
    /// The rows and the centroids as the clustering measured them (centred, f32).
    points: Points,
    centres: Array2<f32>,
}

impl Clusters {
    /// `clustered` with `top_k` experts per token: the clusters of each row's `top_k` nearest
    /// centroids, nearest first (ties: lower cluster), by the distances that chose the labels,
    /// so slot 0 is the row's own cluster. `[rows, top_k]` row-major.
    pub(crate) fn nearest(&self, top_k: usize) -> Vec<u32> {
        let centres = Points::new(self.centres.clone());
        let by_order = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let parts = self.points.map_parts(|range| {
            let mut out = Vec::with_capacity(range.len() * top_k);
            let mut by_distance: Vec<(f32, u32)> = Vec::with_capacity(centres.len());
            self.points
                .for_each_distance_row(range, &centres, |_, distances| {
                    by_distance.clear();
                    by_distance.extend((0u32..).zip(distances).map(|(c, &d)| (d, c)));
                    by_distance.select_nth_unstable_by(top_k - 1, by_order);
                    let nearest = &mut by_distance[..top_k];
                    nearest.sort_unstable_by(by_order);
                    out.extend(nearest.iter().map(|&(_, c)| c));
                });
            out
        });
        parts.concat()
    }
}

/// The cluster of each row of `embeddings`, `clusters` clusters, seeded. The same result
/// whatever the number of threads.
///
/// # Errors
/// More clusters than rows.
pub(crate) fn cluster(
    embeddings: &Array2<f64>,
    clusters: usize,
    seed: u64,
    params: KMeansParams,
) -> Result<Clusters> {
    if clusters == 0 || clusters > embeddings.nrows() {
        return Err(Error::table(crate::error::TableProblem::TooFewEmbeddings {
            clusters,
            rows: embeddings.nrows(),
        }));
    }
    // Centred, as scikit-learn does: |x|^2 - 2 x.c + |c|^2 in f32 rounds less near the origin.
    let mean = embeddings.mean_axis(Axis(0)).expect("at least one row");
    let points = Points::new((embeddings - &mean).mapv(|v| v as f32));
    let tolerance = params.tolerance * embeddings.var_axis(Axis(0), 0.0).mean().unwrap_or(0.0);
    let mut rng = Xoshiro256Plus::seed_from_u64(seed);
    let mut best: Option<Fit> = None;
    for _ in 0..params.runs.max(1) {
        let seeds = greedy_kmeans_plus_plus(&points, clusters, &mut rng);
        let fit = lloyd(
            &points,
            points.select(&seeds).into_rows(),
            params.max_iterations,
            tolerance,
        );
        if best.as_ref().is_none_or(|b| fit.inertia < b.inertia) {
            best = Some(fit);
        }
    }
    let best = best.expect("at least one run");
    Ok(Clusters {
        labels: best.labels,
        #[cfg(test)]
        centroids: &best.centres + &mean.mapv(|v| v as f32),
        points,
        centres: best.centres,
    })
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
mod cluster_tests;
