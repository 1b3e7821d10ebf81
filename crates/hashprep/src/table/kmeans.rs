//! `clustered` and `dispersed`: k-means (linfa) on baseline token embeddings.

use linfa::prelude::{Fit, Predict};
use linfa::DatasetBase;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256Plus;

use crate::error::{Error, Result};

/// k-means settings (the same defaults as scikit-learn's `KMeans`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansParams {
    /// Maximum Lloyd iterations per run.
    pub max_iterations: u64,
    /// Convergence tolerance on centroid movement.
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

/// The cluster of each row of `embeddings`, `clusters` clusters, seeded.
///
/// # Errors
/// More clusters than rows, or a failure inside linfa.
pub fn cluster(
    embeddings: &Array2<f64>,
    clusters: usize,
    seed: u64,
    params: KMeansParams,
) -> Result<Vec<u32>> {
    if clusters > embeddings.nrows() {
        return Err(Error::BadInput(format!(
            "cannot make {clusters} clusters of {} embeddings",
            embeddings.nrows()
        )));
    }
    let dataset = DatasetBase::from(embeddings.clone());
    let model = KMeans::params_with_rng(clusters, Xoshiro256Plus::seed_from_u64(seed))
        .max_n_iterations(params.max_iterations)
        .tolerance(params.tolerance)
        .n_runs(params.runs.max(1))
        .fit(&dataset)
        .map_err(|e| Error::BadInput(format!("k-means failed: {e}")))?;
    let labels = model.predict(embeddings);
    Ok(labels.iter().map(|&l| l as u32).collect())
}

/// `dispersed`: each cluster's tokens (most frequent first) are dealt round-robin over all
/// experts, continuing where the previous cluster stopped, so within every cluster the number
/// of tokens per expert differs by at most one.
pub fn disperse(labels: &[u32], counts: &[u64], experts: u32) -> Vec<u32> {
    let clusters = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); clusters];
    for (token, &label) in labels.iter().enumerate() {
        members[label as usize].push(token as u32);
    }
    let mut assignment = vec![0u32; labels.len()];
    let mut next = 0u32;
    for mut tokens in members {
        tokens.sort_by_key(|&t| (std::cmp::Reverse(counts[t as usize]), t));
        for token in tokens {
            assignment[token as usize] = next;
            next = (next + 1) % experts;
        }
    }
    assignment
}
