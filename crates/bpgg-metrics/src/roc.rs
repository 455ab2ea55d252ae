//! Receiver operating characteristic: the curve and the area under it (AUROC).
//!
//! Semantics of scikit-learn's `roc_curve` / `roc_auc_score`: one ROC point per distinct
//! score, so tied scores form one diagonal step, and the area is the trapezoid rule over those
//! points. Equivalently, AUROC is the probability that a random positive outscores a random
//! negative, counting ties as one half.

use crate::error::Result;
use crate::rank::{RankedScores, Step, SweepMetric};

/// A ROC curve, ordered by decreasing threshold as scikit-learn's
/// `roc_curve(..., drop_intermediate=False)` returns it.
///
/// Point `i` is the rate of negatives (`fpr`) and positives (`tpr`) with
/// `score >= thresholds[i]`. The first point is `(0, 0)` with threshold `+inf`; the last is
/// `(1, 1)` at the lowest score.
#[derive(Debug, Clone, PartialEq)]
pub struct RocCurve {
    /// False-positive rate `FP / N` per threshold.
    pub fpr: Vec<f64>,
    /// True-positive rate (recall) `TP / P` per threshold.
    pub tpr: Vec<f64>,
    /// The thresholds, strictly decreasing, starting at `+inf`.
    pub thresholds: Vec<f32>,
}

/// Accumulates the ROC area over the threshold sweep.
///
/// Twice the trapezoid area in units of (1 negative) x (1 positive) is an integer, so it is
/// summed exactly and the only rounding is the final division.
#[derive(Debug, Default)]
pub(crate) struct AurocSweep {
    twice_area: u128,
    prev_tp: u64,
    prev_fp: u64,
}

impl SweepMetric for AurocSweep {
    fn visit(&mut self, step: &Step<'_>) {
        self.twice_area += u128::from(step.fp - self.prev_fp) * u128::from(step.tp + self.prev_tp);
        self.prev_tp = step.tp;
        self.prev_fp = step.fp;
    }
}

impl AurocSweep {
    /// The area after the whole sweep of `ranked` (which has both classes).
    pub(crate) fn finish(&self, ranked: &RankedScores) -> f64 {
        let cells = 2.0 * ranked.positives() as f64 * ranked.negatives() as f64;
        self.twice_area as f64 / cells
    }
}

impl RankedScores {
    /// Area under the ROC curve; see [`roc_auc`].
    ///
    /// # Errors
    /// [`Error::SingleClass`](crate::Error::SingleClass) unless both classes are present.
    pub fn roc_auc(&self) -> Result<f64> {
        self.require_both_classes("ROC AUC")?;
        let mut auroc = AurocSweep::default();
        self.sweep(&mut auroc);
        Ok(auroc.finish(self))
    }

    /// The ROC curve; see [`roc_curve`].
    ///
    /// # Errors
    /// [`Error::SingleClass`](crate::Error::SingleClass) unless both classes are present.
    pub fn roc_curve(&self) -> Result<RocCurve> {
        self.require_both_classes("ROC curve")?;
        let (positives, negatives) = (self.positives() as f64, self.negatives() as f64);
        let mut curve = RocCurve {
            fpr: vec![0.0],
            tpr: vec![0.0],
            thresholds: vec![f32::INFINITY],
        };
        for step in self.steps() {
            curve.fpr.push(step.fp as f64 / negatives);
            curve.tpr.push(step.tp as f64 / positives);
            curve.thresholds.push(step.threshold);
        }
        Ok(curve)
    }
}

/// Area under the ROC curve of `scores` against `labels` (`true` = positive / anomalous).
///
/// Definition: with one ROC point `(FP(t)/N, TP(t)/P)` per distinct score `t` (predicting
/// positive for `score >= t`) plus `(0, 0)`, the trapezoid-rule area under the polyline, as
/// scikit-learn's `roc_auc_score`. Ties therefore count one half.
///
/// # Errors
/// [`Error::LengthMismatch`](crate::Error::LengthMismatch),
/// [`Error::EmptyInput`](crate::Error::EmptyInput), [`Error::NanScore`](crate::Error::NanScore),
/// and [`Error::SingleClass`](crate::Error::SingleClass) if only one class is present.
///
/// # Example
/// ```
/// let auc = bpgg_metrics::roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])?;
/// assert_eq!(auc, 0.75);
/// # Ok::<(), bpgg_metrics::Error>(())
/// ```
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Result<f64> {
    RankedScores::new(scores, labels)?.roc_auc()
}

/// The ROC curve of `scores` against `labels`: one point per distinct score, decreasing
/// threshold, starting at `(0, 0)` (threshold `+inf`). See [`RocCurve`] and
/// [`decimate`](crate::decimate()) to thin it for plotting.
///
/// # Errors
/// As [`roc_auc`].
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Result<RocCurve> {
    RankedScores::new(scores, labels)?.roc_curve()
}

/// Image-level AUROC: [`roc_auc`] of one score per image (usually [`image_score`](crate::image_score),
/// the maximum of the anomaly map) against one label per image (`true` = defective).
///
/// # Errors
/// As [`roc_auc`].
pub fn image_auroc(image_scores: &[f32], image_labels: &[bool]) -> Result<f64> {
    roc_auc(image_scores, image_labels)
}
