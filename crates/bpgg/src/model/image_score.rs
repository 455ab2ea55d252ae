//! The image-level score and verdict, the one place they are defined: `bpgg eval` ranks images
//! by this score for image AUROC, and every prediction (`bpgg predict`, the service, Python)
//! reports it with the verdict `image_score ≥ image_threshold`.
//!
//! The score is the mean of the `top_cells` largest values of the model's *image signal* on the
//! feature grid (see [`super::FittedModel`]): a few cells rather than one, so that a single
//! noisy cell does not decide, and cells rather than map pixels, so that it covers the same
//! area of the image whatever the working size. For `hybrid` scoring the image signal is the
//! hybrid score with the defect term taken from the defect memory bank alone: the prototypes
//! (averages) are what covers whole defect regions in the map, but they also respond to normal
//! structures that resemble the average defect; whether an image holds a defect at all is
//! better told by nearest neighbours (magnetic_tile, 5 + 5: image AUROC 0.87 with the map's
//! signal, 0.90 without the prototypes).

use crate::{Error, Result};
use candle_core::Tensor;

/// How an image's score is taken from its image signal.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ImageScoreConfig {
    /// The score is the mean of this many largest cells of the image signal (at the model's
    /// stride: 3 cells of 8x8 pixels). At least 1; 1 is the maximum. Default 3.
    pub top_cells: usize,
}

impl Default for ImageScoreConfig {
    fn default() -> Self {
        Self { top_cells: 3 }
    }
}

impl ImageScoreConfig {
    /// Checks `top_cells ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        if self.top_cells == 0 {
            return Err(Error::InvalidConfig(
                "image score needs at least one top cell".into(),
            ));
        }
        Ok(())
    }
}

/// The mean of the `top` largest values (all of them when there are fewer); NaN if a value is
/// NaN, so that a later ranking reports it.
pub fn top_mean(values: &[f32], top: usize) -> f32 {
    if values.iter().any(|v| v.is_nan()) {
        return f32::NAN;
    }
    if values.is_empty() {
        return f32::NEG_INFINITY;
    }
    let k = top.clamp(1, values.len());
    let mut v = values.to_vec();
    v.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    v[..k].iter().sum::<f32>() / k as f32
}

/// The image-level anomaly score of one image: the mean of the `top_cells` largest values of
/// its image signal on the feature grid (row-major `h · w` values, see
/// [`super::FittedModel::score`]). NaN if the signal holds a NaN.
pub fn image_score(signal: &[f32], cfg: &ImageScoreConfig) -> f32 {
    top_mean(signal, cfg.top_cells)
}

/// [`image_score`] of each image of a batch of image signals.
///
/// # Shapes
/// - `signal`: `(b, 1, h, w)`; returns `b` scores.
pub fn image_scores(signal: &Tensor, cfg: &ImageScoreConfig) -> Result<Vec<f32>> {
    let (b, _, _, _) = signal.dims4()?;
    let flat = signal.flatten_all()?.to_vec1::<f32>()?;
    let per = flat.len() / b.max(1);
    Ok((0..b)
        .map(|i| image_score(&flat[i * per..(i + 1) * per], cfg))
        .collect())
}

/// The image threshold from the supports' own (leave-one-out) image scores: with both kinds,
/// the cut that best separates defective from normal (highest balanced accuracy; among equals
/// the middle of the widest gap); with normal scores only, the largest of them; with defective
/// scores only, the smallest of them.
pub fn image_threshold(defective: &[f32], normal: &[f32]) -> Result<f32> {
    if defective.iter().chain(normal).any(|v| !v.is_finite()) {
        return Err(Error::InvalidConfig(
            "support image scores must be finite".into(),
        ));
    }
    let max = |v: &[f32]| v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = |v: &[f32]| v.iter().copied().fold(f32::INFINITY, f32::min);
    match (defective.is_empty(), normal.is_empty()) {
        (true, true) => Err(Error::InvalidConfig(
            "no support image score to choose an image threshold from".into(),
        )),
        (true, false) => Ok(max(normal)),
        (false, true) => Ok(min(defective)),
        (false, false) => {
            // Candidate cuts: midpoints between consecutive distinct values of both kinds.
            let mut all: Vec<f32> = defective.iter().chain(normal).copied().collect();
            all.sort_by(f32::total_cmp);
            all.dedup();
            let mut best = (f64::NEG_INFINITY, f32::NEG_INFINITY, f32::NAN);
            let cuts = all
                .windows(2)
                .map(|w| (w[0] + (w[1] - w[0]) / 2.0, w[1] - w[0]));
            for (cut, gap) in cuts.chain([(all[0], 0.0), (all[all.len() - 1] + 1.0, 0.0)]) {
                let tpr =
                    defective.iter().filter(|&&v| v >= cut).count() as f64 / defective.len() as f64;
                let tnr = normal.iter().filter(|&&v| v < cut).count() as f64 / normal.len() as f64;
                let acc = tpr + tnr;
                if acc > best.0 || (acc == best.0 && gap > best.1) {
                    best = (acc, gap, cut);
                }
            }
            Ok(best.2)
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn top_mean_of_cells() {
        assert_eq!(top_mean(&[0.1, 0.9, 0.5, 0.7], 1), 0.9);
        assert!((top_mean(&[0.1, 0.9, 0.5, 0.7], 3) - 0.7).abs() < 1e-6);
        assert!((top_mean(&[0.2, 0.4], 5) - 0.3).abs() < 1e-6);
        assert!(top_mean(&[0.2, f32::NAN], 1).is_nan());
        let t = Tensor::from_vec(
            vec![0.0f32, 1.0, 2.0, 3.0, 9.0, 8.0, 7.0, 6.0],
            (2, 1, 2, 2),
            &Device::Cpu,
        )
        .unwrap();
        let s = image_scores(&t, &ImageScoreConfig { top_cells: 2 }).unwrap();
        assert_eq!(s, vec![2.5, 8.5]);
    }

    #[test]
    fn threshold_separates_the_supports() {
        // Separable: the middle of the gap between 0.4 and 0.7.
        let t = image_threshold(&[0.7, 0.9], &[0.1, 0.4]).unwrap();
        assert!((t - 0.55).abs() < 1e-6);
        // One normal above one defective: the best balanced accuracy is 3 of 4 right...
        let t = image_threshold(&[0.5, 0.9], &[0.1, 0.6]).unwrap();
        let tpr = [0.5f32, 0.9].iter().filter(|&&v| v >= t).count();
        let tnr = [0.1f32, 0.6].iter().filter(|&&v| v < t).count();
        assert_eq!(tpr + tnr, 3, "threshold {t}");
        // One kind only.
        assert_eq!(image_threshold(&[], &[0.1, 0.4]).unwrap(), 0.4);
        assert_eq!(image_threshold(&[0.3, 0.8], &[]).unwrap(), 0.3);
        assert!(image_threshold(&[], &[]).is_err());
        assert!(image_threshold(&[f32::NAN], &[0.1]).is_err());
    }
}
