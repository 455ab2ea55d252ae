//! Intersection over union of a thresholded prediction with the ground truth.

use crate::error::Result;
use crate::rank::check_scores_and_labels;

/// Intersection over union of the prediction `score >= threshold` with `labels`:
/// `|pred ∧ label| / |pred ∨ label|`.
///
/// When both the prediction and the ground truth are empty the prediction is exactly right and
/// the IoU is defined as `1`. A NaN `threshold` predicts nothing.
///
/// # Errors
/// [`Error::LengthMismatch`], [`Error::EmptyInput`], [`Error::NanScore`].
///
/// # Example
/// ```
/// let iou = bpgg_metrics::iou_at(&[0.9, 0.6, 0.2, 0.7], &[true, true, false, false], 0.5)?;
/// assert_eq!(iou, 2.0 / 3.0);
/// # Ok::<(), bpgg_metrics::Error>(())
/// ```
pub fn iou_at(scores: &[f32], labels: &[bool], threshold: f32) -> Result<f64> {
    check_scores_and_labels(scores, labels)?;
    let (mut intersection, mut union) = (0u64, 0u64);
    for (&score, &label) in scores.iter().zip(labels) {
        let predicted = score >= threshold;
        intersection += u64::from(predicted && label);
        union += u64::from(predicted || label);
    }
    Ok(if union == 0 {
        1.0
    } else {
        intersection as f64 / union as f64
    })
}
