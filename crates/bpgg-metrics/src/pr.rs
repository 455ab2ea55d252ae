//! Precision-recall: the curve, average precision (AP) and the best F1 over thresholds.
//!
//! Semantics of scikit-learn's `precision_recall_curve` / `average_precision_score` and of
//! anomalib's `F1Max`: one point per distinct score (predict positive for `score >= t`).

use crate::error::Result;
use crate::rank::{RankedScores, Step, SweepMetric};

/// A precision-recall curve in scikit-learn's `precision_recall_curve` order: thresholds
/// *increasing*, and one extra final point `(precision 1, recall 0)` without a threshold.
///
/// `precision[i]` and `recall[i]` belong to `score >= thresholds[i]` for `i < thresholds.len()`;
/// `precision.len() == recall.len() == thresholds.len() + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct PrCurve {
    /// Precision `TP / (TP + FP)`.
    pub precision: Vec<f64>,
    /// Recall `TP / P`.
    pub recall: Vec<f64>,
    /// Distinct scores, strictly increasing.
    pub thresholds: Vec<f32>,
}

/// The best F1 score over all thresholds and the threshold that attains it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F1Max {
    /// `max_t 2·P(t)·R(t) / (P(t) + R(t))` over the distinct scores `t`.
    pub f1: f64,
    /// The threshold `t` attaining it (predict positive for `score >= t`); on ties the lowest
    /// such threshold, as `argmax` over scikit-learn's increasing thresholds picks it.
    pub threshold: f32,
}

/// Accumulates average precision over the threshold sweep: precision weighted by the recall
/// gained at each threshold.
#[derive(Debug, Default)]
pub(crate) struct ApSweep {
    weighted_precision: f64,
    prev_tp: u64,
}

impl SweepMetric for ApSweep {
    fn visit(&mut self, step: &Step<'_>) {
        if step.tp > self.prev_tp {
            let precision = step.tp as f64 / (step.tp + step.fp) as f64;
            self.weighted_precision += (step.tp - self.prev_tp) as f64 * precision;
            self.prev_tp = step.tp;
        }
    }
}

impl ApSweep {
    /// AP after the whole sweep of `ranked` (which has positives).
    pub(crate) fn finish(&self, ranked: &RankedScores) -> f64 {
        self.weighted_precision / ranked.positives() as f64
    }
}

/// Tracks the best F1 over the threshold sweep.
///
/// `F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P)`, compared as exact fractions so that ties
/// resolve deterministically: to the lowest threshold, which is visited last.
#[derive(Debug)]
pub(crate) struct F1Sweep {
    positives: u64,
    best_num: u64,
    best_den: u64,
    best_threshold: f32,
}

impl F1Sweep {
    pub(crate) fn new(positives: u64) -> Self {
        Self {
            positives,
            best_num: 0,
            best_den: 1,
            best_threshold: f32::INFINITY,
        }
    }

    pub(crate) fn finish(&self) -> F1Max {
        F1Max {
            f1: self.best_num as f64 / self.best_den as f64,
            threshold: self.best_threshold,
        }
    }
}

impl SweepMetric for F1Sweep {
    fn visit(&mut self, step: &Step<'_>) {
        let num = 2 * step.tp;
        let den = step.tp + step.fp + self.positives;
        if u128::from(num) * u128::from(self.best_den)
            >= u128::from(self.best_num) * u128::from(den)
        {
            (self.best_num, self.best_den, self.best_threshold) = (num, den, step.threshold);
        }
    }
}

impl RankedScores {
    /// Average precision; see [`average_precision`].
    ///
    /// # Errors
    /// [`Error::SingleClass`](crate::Error::SingleClass) if there is no positive sample.
    pub fn average_precision(&self) -> Result<f64> {
        self.require_positives("average precision")?;
        let mut ap = ApSweep::default();
        self.sweep(&mut ap);
        Ok(ap.finish(self))
    }

    /// The precision-recall curve; see [`pr_curve`].
    ///
    /// # Errors
    /// [`Error::SingleClass`](crate::Error::SingleClass) if there is no positive sample.
    pub fn pr_curve(&self) -> Result<PrCurve> {
        self.require_positives("precision-recall curve")?;
        let positives = self.positives() as f64;
        let mut curve = PrCurve {
            precision: Vec::new(),
            recall: Vec::new(),
            thresholds: Vec::new(),
        };
        for step in self.steps() {
            curve
                .precision
                .push(step.tp as f64 / (step.tp + step.fp) as f64);
            curve.recall.push(step.tp as f64 / positives);
            curve.thresholds.push(step.threshold);
        }
        curve.precision.reverse();
        curve.recall.reverse();
        curve.thresholds.reverse();
        curve.precision.push(1.0);
        curve.recall.push(0.0);
        Ok(curve)
    }

    /// The best F1 over thresholds; see [`f1_max`].
    ///
    /// # Errors
    /// [`Error::SingleClass`](crate::Error::SingleClass) if there is no positive sample.
    pub fn f1_max(&self) -> Result<F1Max> {
        self.require_positives("F1-max")?;
        let mut f1 = F1Sweep::new(self.positives());
        self.sweep(&mut f1);
        Ok(f1.finish())
    }
}

/// Average precision of `scores` against `labels` (`true` = positive / anomalous).
///
/// Definition (scikit-learn's `average_precision_score`, no interpolation):
/// `AP = Σ_k (R_k − R_{k−1}) · P_k` over the distinct scores `t_k` in decreasing order, where
/// `P_k`, `R_k` are precision and recall of `score >= t_k` and `R_0 = 0`.
///
/// # Errors
/// [`Error::LengthMismatch`](crate::Error::LengthMismatch),
/// [`Error::EmptyInput`](crate::Error::EmptyInput), [`Error::NanScore`](crate::Error::NanScore),
/// and [`Error::SingleClass`](crate::Error::SingleClass) if no label is positive.
///
/// # Example
/// ```
/// // Ranks 1 and 3 are positive: AP = (1/2)·1 + (1/2)·(2/3).
/// let ap = bpgg_metrics::average_precision(&[0.9, 0.8, 0.7], &[true, false, true])?;
/// assert!((ap - 5.0 / 6.0).abs() < 1e-12);
/// # Ok::<(), bpgg_metrics::Error>(())
/// ```
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Result<f64> {
    RankedScores::new(scores, labels)?.average_precision()
}

/// The precision-recall curve of `scores` against `labels`, in scikit-learn's order (see
/// [`PrCurve`]).
///
/// # Errors
/// As [`average_precision`].
pub fn pr_curve(scores: &[f32], labels: &[bool]) -> Result<PrCurve> {
    RankedScores::new(scores, labels)?.pr_curve()
}

/// The maximum F1 score over the thresholds of the precision-recall curve and its threshold,
/// as anomalib's `F1Max` (which builds on the same curve as scikit-learn's
/// `precision_recall_curve`). F1 is `2·P·R / (P + R) = 2·TP / (2·TP + FP + FN)`.
///
/// # Errors
/// As [`average_precision`].
pub fn f1_max(scores: &[f32], labels: &[bool]) -> Result<F1Max> {
    RankedScores::new(scores, labels)?.f1_max()
}
