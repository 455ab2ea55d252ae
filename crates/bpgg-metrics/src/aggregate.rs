//! All localization metrics of a test set at once, from one ranking of its pixels.

use crate::error::{Error, Result};
use crate::map::MapRef;
use crate::pr::{ApSweep, F1Sweep};
use crate::pro::{check_fpr_limit, RankedRegions};
use crate::roc::{image_auroc, AurocSweep};

/// The metrics of a test set, as [`evaluate`] computes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// ROC AUC of all pixels of all maps pooled ([`roc_auc`](crate::roc_auc)).
    pub pixel_auroc: f64,
    /// Normalised area under the PRO curve up to the FPR limit ([`aupro`](crate::aupro)).
    pub aupro: f64,
    /// Average precision of all pixels pooled ([`average_precision`](crate::average_precision)).
    pub pixel_ap: f64,
    /// Best pixel F1 over thresholds ([`f1_max`](crate::f1_max)).
    pub f1_max: f64,
    /// Threshold attaining [`Metrics::f1_max`] (predict defect for `score >= f1_threshold`).
    pub f1_threshold: f32,
    /// Image ROC AUC with image score = max of the map ([`image_score`]); `None` when all images
    /// have the same label.
    pub image_auroc: Option<f64>,
}

/// The image-level anomaly score of a map: its maximum. `-inf` for an empty map; NaN if the map
/// holds a NaN (so that a later ranking reports it).
pub fn image_score(map: &[f32]) -> f32 {
    if map.iter().any(|score| score.is_nan()) {
        return f32::NAN;
    }
    map.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Evaluates a test set: pixel AUROC, AUPRO up to `fpr_limit`, pixel AP and F1-max on all pixels
/// pooled (sorted once, shared by all four), and image AUROC.
///
/// `image_labels` gives one label per map (`true` = defective); pass `&[]` to derive it from
/// the masks (defective = any defect pixel).
///
/// # Errors
/// [`Error::EmptyInput`] for no maps, shape errors of [`MapRef`],
/// [`Error::LengthMismatch`] if `image_labels` is neither empty nor one per map,
/// [`Error::NanScore`] (index in the pooled pixel order), [`Error::BadFprLimit`], and
/// [`Error::SingleClass`] if the pooled pixels lack defect or normal pixels.
///
/// # Example
/// ```
/// use bpgg_metrics::{evaluate, MapRef, DEFAULT_FPR_LIMIT};
/// let mask = [false, true, false, false];
/// let defective = [0.1_f32, 0.8, 0.3, 0.2];
/// let normal = [0.2_f32, 0.1, 0.4, 0.3];
/// let maps = [
///     MapRef::new(&defective, &mask, 2, 2)?,
///     MapRef::new(&normal, &[false; 4], 2, 2)?,
/// ];
/// let metrics = evaluate(&maps, &[], DEFAULT_FPR_LIMIT)?;
/// assert_eq!(metrics.pixel_auroc, 1.0);
/// assert_eq!(metrics.aupro, 1.0);
/// assert_eq!(metrics.image_auroc, Some(1.0));
/// # Ok::<(), bpgg_metrics::Error>(())
/// ```
pub fn evaluate(maps: &[MapRef], image_labels: &[bool], fpr_limit: f64) -> Result<Metrics> {
    let image_scores: Vec<f32> = maps.iter().map(|map| image_score(map.scores)).collect();
    evaluate_with_image_scores(maps, image_labels, &image_scores, fpr_limit)
}

/// [`evaluate`] with the image scores given (one per map) instead of taken as the maximum of
/// each map: for a model whose image score is its own (bpgg's is the mean of the top cells of
/// an image signal), image AUROC ranks images by that score.
///
/// # Errors
/// Those of [`evaluate`], and [`Error::LengthMismatch`] unless there is one score per map.
pub fn evaluate_with_image_scores(
    maps: &[MapRef],
    image_labels: &[bool],
    image_scores: &[f32],
    fpr_limit: f64,
) -> Result<Metrics> {
    check_fpr_limit(fpr_limit)?;
    if image_scores.len() != maps.len() {
        return Err(Error::LengthMismatch {
            what: format!(
                "{} image scores for {} maps",
                image_scores.len(),
                maps.len()
            ),
        });
    }
    if !image_labels.is_empty() && image_labels.len() != maps.len() {
        return Err(Error::LengthMismatch {
            what: format!(
                "{} image labels for {} maps",
                image_labels.len(),
                maps.len()
            ),
        });
    }
    let pixels = RankedRegions::new(maps)?;
    let ranked = &pixels.ranked;
    ranked.require_both_classes("pixel metrics")?;
    pixels.require_regions_and_normals()?;
    // All pixel metrics in one pass over the thresholds.
    let mut sweeps = (
        AurocSweep::default(),
        (
            ApSweep::default(),
            (
                F1Sweep::new(ranked.positives()),
                pixels.aupro_sweep(fpr_limit),
            ),
        ),
    );
    ranked.sweep(&mut sweeps);
    let (auroc, (ap, (f1, aupro))) = sweeps;
    let f1 = f1.finish();
    let derived_labels: Vec<bool>;
    let image_labels = if image_labels.is_empty() {
        derived_labels = maps.iter().map(MapRef::is_defective).collect();
        &derived_labels
    } else {
        image_labels
    };
    let both_image_classes =
        image_labels.iter().any(|&label| label) && image_labels.iter().any(|&label| !label);
    Ok(Metrics {
        pixel_auroc: auroc.finish(ranked),
        aupro: aupro.finish(),
        pixel_ap: ap.finish(ranked),
        f1_max: f1.f1,
        f1_threshold: f1.threshold,
        image_auroc: if both_image_classes {
            Some(image_auroc(image_scores, image_labels)?)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_image_scores_rank_the_images() {
        let mask = [false, true, false, false];
        let defective = [0.1_f32, 0.8, 0.3, 0.2];
        let normal = [0.2_f32, 0.1, 0.9, 0.3];
        let maps = [
            MapRef::new(&defective, &mask, 2, 2).unwrap(),
            MapRef::new(&normal, &[false; 4], 2, 2).unwrap(),
        ];
        // By the maximum the normal map (0.9) outranks the defective one (0.8).
        let by_max = evaluate(&maps, &[], 0.3).unwrap();
        assert_eq!(by_max.image_auroc, Some(0.0));
        let given = evaluate_with_image_scores(&maps, &[], &[0.7, 0.2], 0.3).unwrap();
        assert_eq!(given.image_auroc, Some(1.0));
        // Pixel metrics do not depend on the image scores.
        assert_eq!(given.pixel_auroc, by_max.pixel_auroc);
        assert_eq!(given.aupro, by_max.aupro);
        assert_eq!(given.pixel_ap, by_max.pixel_ap);
        assert!(matches!(
            evaluate_with_image_scores(&maps, &[], &[0.7], 0.3),
            Err(Error::LengthMismatch { .. })
        ));
    }
}
