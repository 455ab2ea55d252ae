//! Anomaly-localization metrics on plain `f32` slices: pixel and image AUROC, AUPRO, average
//! precision, F1-max and IoU, with the curves behind them.
//!
//! Definitions follow the references the anomaly-detection literature reports against:
//! scikit-learn's `roc_auc_score`, `average_precision_score` and `precision_recall_curve`
//! (ties handled by taking each distinct score as one threshold), anomalib's `F1Max`, and the
//! MVTec AD evaluation code for AUPRO (8-connected ground-truth regions, FPR over all normal
//! pixels, trapezoid up to an FPR limit divided by that limit). Every threshold metric ranks the
//! scores once, in `O(n log n)` (a radix sort on the score bits), and sweeps the distinct
//! thresholds; [`RankedScores`] and [`evaluate`] share one ranking between several metrics.
//!
//! Scores: higher means more anomalous; a prediction is `score >= threshold`. NaN scores are
//! rejected with [`Error::NanScore`].
//!
//! # Example
//! ```
//! use bpgg_metrics::{evaluate, roc_auc, MapRef, DEFAULT_FPR_LIMIT};
//!
//! // Pooled pixels (or image scores) with labels.
//! let auc = roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])?;
//! assert_eq!(auc, 0.75);
//!
//! // A test set of two 3x2 maps: one with a defect region, one defect-free.
//! let mask = [false, true, true, false, false, false];
//! let defective = [0.2_f32, 0.9, 0.7, 0.1, 0.3, 0.2];
//! let normal = [0.1_f32, 0.2, 0.3, 0.2, 0.1, 0.6];
//! let maps = [
//!     MapRef::new(&defective, &mask, 3, 2)?,
//!     MapRef::new(&normal, &[false; 6], 3, 2)?,
//! ];
//! let metrics = evaluate(&maps, &[], DEFAULT_FPR_LIMIT)?;
//! assert_eq!(metrics.pixel_auroc, 1.0);
//! assert_eq!(metrics.f1_max, 1.0);
//! assert_eq!(metrics.f1_threshold, 0.7);
//! assert_eq!(metrics.image_auroc, Some(1.0));
//! # Ok::<(), bpgg_metrics::Error>(())
//! ```

mod aggregate;
mod decimate;
mod error;
mod iou;
mod map;
mod pr;
mod pro;
mod rank;
mod regions;
mod roc;

pub use aggregate::{evaluate, evaluate_with_image_scores, image_score, Metrics};
pub use decimate::decimate;
pub use error::{Error, Result};
pub use iou::iou_at;
pub use map::MapRef;
pub use pr::{average_precision, f1_max, pr_curve, F1Max, PrCurve};
pub use pro::{aupro, pro_curve, ProCurve, DEFAULT_FPR_LIMIT};
pub use rank::RankedScores;
pub use regions::{connected_regions, Regions, BACKGROUND};
pub use roc::{image_auroc, roc_auc, roc_curve, RocCurve};
