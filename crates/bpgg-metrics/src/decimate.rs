//! Thinning long curves (millions of thresholds) to a few hundred points for plotting.

use crate::pr::PrCurve;
use crate::pro::ProCurve;
use crate::roc::RocCurve;

/// Indices of at most `max_points` points of the polyline `(x[i], y[i])` that keep its shape:
/// the first and last points, and in between a point whenever the path length (L1, `|dx| + |dy|`)
/// travelled since the last kept point reaches `1 / (max_points - 2)` of the whole length.
///
/// Returns every index when the curve already has at most `max_points` points; `max_points`
/// below 2 is treated as 2. Uses the shorter length if `x` and `y` differ.
///
/// # Example
/// ```
/// let x: Vec<f64> = (0..1000).map(|i| i as f64 / 999.0).collect();
/// let kept = bpgg_metrics::decimate(&x, &x, 11);
/// assert!(kept.len() <= 11);
/// assert_eq!((kept[0], *kept.last().unwrap()), (0, 999));
/// ```
pub fn decimate(x: &[f64], y: &[f64], max_points: usize) -> Vec<usize> {
    let len = x.len().min(y.len());
    let max_points = max_points.max(2);
    if len <= max_points {
        return (0..len).collect();
    }
    let step_length = |i: usize| (x[i] - x[i - 1]).abs() + (y[i] - y[i - 1]).abs();
    let total: f64 = (1..len).map(step_length).sum();
    let spacing = if max_points > 2 {
        total / (max_points - 2) as f64
    } else {
        f64::INFINITY
    };
    let mut kept = vec![0];
    let mut travelled = 0.0;
    for i in 1..len - 1 {
        travelled += step_length(i);
        if travelled >= spacing && spacing > 0.0 {
            kept.push(i);
            travelled = 0.0;
        }
    }
    // Rounding can let one interior point too many through; drop the one nearest the end.
    kept.truncate(max_points - 1);
    kept.push(len - 1);
    kept
}

fn pick<T: Copy>(values: &[T], indices: &[usize]) -> Vec<T> {
    indices.iter().map(|&i| values[i]).collect()
}

impl RocCurve {
    /// This curve thinned to at most `max_points` points with [`decimate`].
    pub fn decimated(&self, max_points: usize) -> RocCurve {
        let kept = decimate(&self.fpr, &self.tpr, max_points);
        RocCurve {
            fpr: pick(&self.fpr, &kept),
            tpr: pick(&self.tpr, &kept),
            thresholds: pick(&self.thresholds, &kept),
        }
    }
}

impl PrCurve {
    /// This curve thinned to at most `max_points` points with [`decimate`]; the final
    /// threshold-less point `(1, 0)` stays last.
    pub fn decimated(&self, max_points: usize) -> PrCurve {
        let kept = decimate(&self.recall, &self.precision, max_points);
        let with_threshold: Vec<usize> = kept
            .iter()
            .copied()
            .filter(|&i| i < self.thresholds.len())
            .collect();
        PrCurve {
            precision: pick(&self.precision, &kept),
            recall: pick(&self.recall, &kept),
            thresholds: pick(&self.thresholds, &with_threshold),
        }
    }
}

impl ProCurve {
    /// This curve thinned to at most `max_points` points with [`decimate`].
    pub fn decimated(&self, max_points: usize) -> ProCurve {
        let kept = decimate(&self.fpr, &self.pro, max_points);
        ProCurve {
            fpr: pick(&self.fpr, &kept),
            pro: pick(&self.pro, &kept),
            thresholds: pick(&self.thresholds, &kept),
        }
    }
}
