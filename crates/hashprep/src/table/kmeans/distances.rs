//! Squared Euclidean distances from many points to a few centres as a matrix product,
//! `|x|^2 - 2 x.c + |c|^2`, block by block on all cores: the cost of every k-means step.

use std::ops::Range;

use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView1};
use rayon::prelude::*;

/// Rows per matrix product: a block and its distances to every centre stay in cache.
const BLOCK_ROWS: usize = 256;
/// Rows per parallel part. Parts depend on the number of rows only, and callers combine their
/// results in order, so a clustering does not depend on the number of threads.
const PART_ROWS: usize = 4096;

/// Row vectors (`[rows, dim]`, standard layout) with their squared norms.
pub(super) struct Points {
    rows: Array2<f32>,
    norms: Vec<f32>,
}

impl Points {
    pub(super) fn new(rows: Array2<f32>) -> Self {
        let rows = if rows.is_standard_layout() {
            rows
        } else {
            rows.as_standard_layout().into_owned()
        };
        let norms = rows.rows().into_iter().map(|r| r.dot(&r)).collect();
        Self { rows, norms }
    }

    /// The points at `indices`, in that order.
    pub(super) fn select(&self, indices: &[usize]) -> Self {
        Self {
            rows: self.rows.select(ndarray::Axis(0), indices),
            norms: indices.iter().map(|&i| self.norms[i]).collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.rows.nrows()
    }

    pub(super) fn row(&self, index: usize) -> ArrayView1<'_, f32> {
        self.rows.row(index)
    }

    pub(super) fn into_rows(self) -> Array2<f32> {
        self.rows
    }

    /// `work` on each part of the rows, in parallel; the results in row order.
    pub(super) fn map_parts<T: Send>(&self, work: impl Fn(Range<usize>) -> T + Sync) -> Vec<T> {
        let n = self.len();
        (0..n.div_ceil(PART_ROWS).max(1))
            .into_par_iter()
            .map(|p| work(p * PART_ROWS..((p + 1) * PART_ROWS).min(n)))
            .collect()
    }

    /// Calls `visit(row, squared distances from that row to every centre)` for each row of
    /// `range`, in order. Distances are clamped at 0 (the expansion can round below it).
    pub(super) fn for_each_distance_row(
        &self,
        range: Range<usize>,
        centres: &Points,
        mut visit: impl FnMut(usize, &[f32]),
    ) {
        let k = centres.len();
        let mut products = Array2::<f32>::zeros((BLOCK_ROWS, k));
        let mut distances = vec![0f32; k];
        for start in range.clone().step_by(BLOCK_ROWS) {
            let end = (start + BLOCK_ROWS).min(range.end);
            let mut block_products = products.slice_mut(s![..end - start, ..]);
            general_mat_mul(
                1.0,
                &self.rows.slice(s![start..end, ..]),
                &centres.rows.t(),
                0.0,
                &mut block_products,
            );
            for (offset, row_products) in block_products.rows().into_iter().enumerate() {
                let norm = self.norms[start + offset];
                for ((d, &p), &c) in distances.iter_mut().zip(row_products).zip(&centres.norms) {
                    *d = (norm - 2.0 * p + c).max(0.0);
                }
                visit(start + offset, &distances);
            }
        }
    }
}

/// The index and value of the smallest entry (the lowest index among equals).
pub(super) fn argmin<T: PartialOrd + Copy>(values: &[T]) -> (usize, T) {
    let mut best = (0, values[0]);
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v < best.1 {
            best = (i, v);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(a: ArrayView1<f32>, b: ArrayView1<f32>) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    #[test]
    fn the_matrix_product_gives_every_pairwise_squared_distance() {
        // More rows than a block and a part, so block and part edges are crossed.
        let n = PART_ROWS + BLOCK_ROWS + 17;
        let rows = Array2::from_shape_fn((n, 19), |(i, j)| ((i * 31 + j * 7) % 23) as f32 * 0.3);
        let points = Points::new(rows);
        let centres = points.select(&[0, 5, n - 1]);
        let mut seen = vec![false; n];
        for range in [0..PART_ROWS, PART_ROWS..n] {
            points.for_each_distance_row(range, &centres, |row, distances| {
                seen[row] = true;
                for (c, &d) in distances.iter().enumerate() {
                    let expected = direct(points.row(row), centres.row(c));
                    assert!(
                        (d - expected).abs() <= 1e-3 * expected.max(1.0),
                        "{row} {c}"
                    );
                }
            });
        }
        assert!(seen.iter().all(|&s| s), "every row visited");
    }

    #[test]
    fn parts_cover_the_rows_in_order() {
        let points = Points::new(Array2::zeros((2 * PART_ROWS + 1, 2)));
        let parts = points.map_parts(|range| range);
        assert_eq!(
            parts,
            vec![
                0..PART_ROWS,
                PART_ROWS..2 * PART_ROWS,
                2 * PART_ROWS..2 * PART_ROWS + 1
            ]
        );
    }

    #[test]
    fn argmin_takes_the_first_of_equal_minima() {
        assert_eq!(argmin(&[3.0, 1.0, 2.0, 1.0]), (1, 1.0));
    }
}
