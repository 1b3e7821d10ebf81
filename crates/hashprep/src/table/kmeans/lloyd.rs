//! Lloyd's iterations with scikit-learn's stopping rules: stop when no label changes, or when
//! the centres moved less than the tolerance (total squared shift); then label every point
//! by the final centres.

use ndarray::{Array2, Zip};

use super::distances::{argmin, Points};

/// One k-means run's result.
pub(super) struct Fit {
    pub labels: Vec<u32>,
    /// `[clusters, dim]`, in the coordinates of the points.
    pub centres: Array2<f32>,
    /// The sum of squared distances from each point to its centre.
    pub inertia: f64,
}

/// k-means from the given initial `centres`.
pub(super) fn lloyd(
    points: &Points,
    mut centres: Array2<f32>,
    max_iterations: u64,
    tolerance: f64,
) -> Fit {
    let mut previous_labels: Option<Vec<u32>> = None;
    for _ in 0..max_iterations {
        let mut assignment = assign(points, &centres);
        let (updated, shift) = update(points, &centres, &mut assignment);
        centres = updated;
        if previous_labels.as_ref() == Some(&assignment.labels) || shift <= tolerance {
            break;
        }
        previous_labels = Some(assignment.labels);
    }
    let last = assign(points, &centres);
    Fit {
        inertia: last.distances.iter().copied().map(f64::from).sum(),
        labels: last.labels,
        centres,
    }
}

/// Each point's nearest centre, and the sums and sizes of the clusters that makes.
struct Assignment {
    labels: Vec<u32>,
    /// Squared distance of each point to its centre.
    distances: Vec<f32>,
    /// `[clusters, dim]`: the sum of each cluster's points.
    sums: Array2<f64>,
    sizes: Vec<u64>,
}

impl Assignment {
    fn empty(clusters: usize, dim: usize, points: usize) -> Self {
        Self {
            labels: Vec::with_capacity(points),
            distances: Vec::with_capacity(points),
            sums: Array2::zeros((clusters, dim)),
            sizes: vec![0; clusters],
        }
    }

    fn add(&mut self, cluster: usize, point: ndarray::ArrayView1<f32>, sign: f64) {
        for (s, &x) in self.sums.row_mut(cluster).iter_mut().zip(point) {
            *s += sign * f64::from(x);
        }
    }
}

fn assign(points: &Points, centres: &Array2<f32>) -> Assignment {
    let (clusters, dim) = centres.dim();
    let centre_points = Points::new(centres.clone());
    let parts = points.map_parts(|range| {
        let mut part = Assignment::empty(clusters, dim, range.len());
        points.for_each_distance_row(range, &centre_points, |row, distances| {
            let (cluster, distance) = argmin(distances);
            part.labels.push(cluster as u32);
            part.distances.push(distance);
            part.sizes[cluster] += 1;
            part.add(cluster, points.row(row), 1.0);
        });
        part
    });
    let mut whole = Assignment::empty(clusters, dim, points.len());
    for part in parts {
        whole.labels.extend(part.labels);
        whole.distances.extend(part.distances);
        whole.sums += &part.sums;
        Zip::from(&mut whole.sizes[..])
            .and(&part.sizes[..])
            .for_each(|w, &p| *w += p);
    }
    whole
}

/// The new centres (each cluster's mean) and the total squared shift from `old`.
fn update(points: &Points, old: &Array2<f32>, assignment: &mut Assignment) -> (Array2<f32>, f64) {
    relocate_empty_clusters(points, assignment);
    let mut centres = old.clone();
    for (cluster, mut centre) in centres.rows_mut().into_iter().enumerate() {
        let size = assignment.sizes[cluster];
        if size > 0 {
            let sum = assignment.sums.row(cluster);
            centre.zip_mut_with(&sum, |c, &s| *c = (s / size as f64) as f32);
        }
    }
    let shift = Zip::from(&centres)
        .and(old)
        .fold(0.0f64, |acc, &new, &was| acc + f64::from(new - was).powi(2));
    (centres, shift)
}

/// An empty cluster takes the point farthest from its centre (among clusters of two points or
/// more), as scikit-learn relocates them: no centre is left where no point is.
fn relocate_empty_clusters(points: &Points, assignment: &mut Assignment) {
    let empty: Vec<usize> = (0..assignment.sizes.len())
        .filter(|&c| assignment.sizes[c] == 0)
        .collect();
    if empty.is_empty() {
        return;
    }
    let mut farthest_first: Vec<usize> = (0..points.len()).collect();
    farthest_first.sort_by(|&a, &b| {
        assignment.distances[b]
            .total_cmp(&assignment.distances[a])
            .then(a.cmp(&b))
    });
    let mut donors = farthest_first.into_iter();
    for cluster in empty {
        let Some(point) = donors.find(|&p| assignment.sizes[assignment.labels[p] as usize] > 1)
        else {
            return;
        };
        let from = assignment.labels[point] as usize;
        assignment.add(from, points.row(point), -1.0);
        assignment.sizes[from] -= 1;
        assignment.add(cluster, points.row(point), 1.0);
        assignment.sizes[cluster] = 1;
        assignment.labels[point] = cluster as u32;
        assignment.distances[point] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_cluster_takes_the_farthest_point_of_a_cluster_with_several() {
        let points = Points::new(ndarray::array![[0.0f32], [1.0], [9.0], [10.0], [30.0]]);
        // Cluster 1 holds only the farthest point (30): it keeps it, and cluster 2 takes the
        // next farthest, 10 (36 from its centre 4), from cluster 0.
        let centres = ndarray::array![[4.0f32], [30.0], [100.0]];
        let mut assignment = assign(&points, &centres);
        assert_eq!(assignment.labels, vec![0, 0, 0, 0, 1]);
        assert_eq!(assignment.sizes, vec![4, 1, 0]);
        relocate_empty_clusters(&points, &mut assignment);
        assert_eq!(assignment.labels, vec![0, 0, 0, 2, 1]);
        assert_eq!(assignment.sizes, vec![3, 1, 1]);
        assert_eq!(assignment.sums.column(0).to_vec(), vec![10.0, 30.0, 10.0]);
        let (centres, _) = update(&points, &centres, &mut assignment);
        assert_eq!(centres.column(0).to_vec(), vec![10.0 / 3.0, 30.0, 10.0]);
    }
}
