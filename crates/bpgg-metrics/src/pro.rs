//! Per-region overlap (PRO) curve and the normalised area under it up to an FPR limit (AUPRO).
//!
//! Bergmann et al., "The MVTec Anomaly Detection Dataset" (IJCV 2021), and the reference
//! evaluation code of MVTec AD (`generic_util.py`: `compute_pro`, `trapezoid`):
//!
//! - ground-truth regions are the 8-connected components of each mask ([`connected_regions`]);
//! - for a threshold `t` (predict anomalous for `score >= t`), the PRO is the mean over *all*
//!   regions of all images of the fraction of the region's pixels predicted anomalous, and the
//!   FPR is the fraction of *all* normal pixels of all images (defect-free images included)
//!   predicted anomalous;
//! - one curve point per distinct score, plus `(0, 0)` before and `(1, 1)` after, both
//!   coordinates clipped to `1`;
//! - AUPRO is the trapezoid-rule area under `PRO(FPR)` for `FPR` in `[0, limit]`, the value at
//!   exactly `limit` linearly interpolated between its neighbours, divided by `limit`.
//!
//! All pixels are sorted by score once (see [`crate::rank`]); each pixel carries its region so
//! the sweep adds `1 / region size` to the overlap sum when the pixel turns positive.

use crate::error::{Error, Result};
use crate::map::MapRef;
use crate::rank::{self, RankedScores, NEGATIVE};
use crate::regions::connected_regions;

/// The FPR integration limit used by the MVTec AD benchmark: AUPRO integrates up to FPR 0.3.
pub const DEFAULT_FPR_LIMIT: f64 = 0.3;

/// A PRO curve: per-region overlap against the false-positive rate, by decreasing threshold.
///
/// The first point is `(0, 0)` with threshold `+inf`, then one point per distinct score, then
/// `(1, 1)` with threshold `-inf`, as the MVTec AD `compute_pro` returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProCurve {
    /// False-positive rate over all normal pixels, non-decreasing.
    pub fpr: Vec<f64>,
    /// Mean per-region overlap, non-decreasing.
    pub pro: Vec<f64>,
    /// Threshold of each point (predict anomalous for `score >= threshold`).
    pub thresholds: Vec<f32>,
}

/// All pixels of a set of maps ranked once, each positive pixel knowing its region.
#[derive(Debug, Clone)]
pub(crate) struct RankedRegions {
    /// Pixel ranking; the payload of a defect pixel is its global region index plus one.
    pub ranked: RankedScores,
    /// `region_weights[k]` is `1 / size` of global region `k`.
    region_weights: Vec<f64>,
}

impl RankedRegions {
    /// Labels the regions of every mask and ranks all pixels.
    ///
    /// # Errors
    /// [`Error::EmptyInput`] for no maps; shape errors of [`MapRef`]; [`Error::NanScore`] with
    /// the index of the NaN in the pooled (map after map) pixel order.
    pub(crate) fn new(maps: &[MapRef]) -> Result<Self> {
        if maps.is_empty() {
            return Err(Error::EmptyInput {
                what: "no anomaly maps".into(),
            });
        }
        let mut total_pixels = 0usize;
        for (index, map) in maps.iter().enumerate() {
            map.validate(index)?;
            rank::check_no_nan(map.scores, total_pixels)?;
            total_pixels += map.len();
        }
        let mut entries = Vec::with_capacity(total_pixels);
        let mut region_weights = Vec::new();
        for map in maps {
            let regions = connected_regions(map.mask, map.width, map.height)?;
            let base = region_weights.len() as u64;
            let count = base + regions.count() as u64;
            if count >= u64::from(u32::MAX) {
                return Err(Error::TooManyRegions { count });
            }
            let base = base as u32;
            region_weights.extend(regions.sizes.iter().map(|&size| 1.0 / size as f64));
            entries.extend(
                map.scores
                    .iter()
                    .zip(&regions.labels)
                    .map(|(&score, &label)| {
                        let payload = if label == NEGATIVE {
                            NEGATIVE
                        } else {
                            base + label
                        };
                        rank::pack(score, payload)
                    }),
            );
        }
        Ok(Self {
            ranked: RankedScores::from_entries(entries),
            region_weights,
        })
    }

    fn require_regions_and_normals(&self) -> Result<()> {
        if self.region_weights.is_empty() || self.ranked.negatives() == 0 {
            return Err(Error::SingleClass {
                what: format!(
                    "PRO needs defect regions and normal pixels, got {} regions and {} normal pixels",
                    self.region_weights.len(),
                    self.ranked.negatives()
                ),
            });
        }
        Ok(())
    }

    /// The curve points `(threshold, fpr, pro)` of the distinct scores, without the
    /// `(0, 0)` and `(1, 1)` end points.
    fn points(&self) -> impl Iterator<Item = (f32, f64, f64)> + '_ {
        let normals = self.ranked.negatives() as f64;
        let regions = self.region_weights.len() as f64;
        let mut overlap_sum = 0.0;
        self.ranked.steps().map(move |step| {
            overlap_sum += step
                .group
                .iter()
                .map(|&entry| rank::payload(entry))
                .filter(|&payload| payload != NEGATIVE)
                .map(|payload| self.region_weights[payload as usize - 1])
                .sum::<f64>();
            let fpr = (step.fp as f64 / normals).min(1.0);
            let pro = (overlap_sum / regions).min(1.0);
            (step.threshold, fpr, pro)
        })
    }

    /// Area under the PRO curve up to `fpr_limit`, divided by `fpr_limit`; see [`aupro`].
    pub(crate) fn aupro(&self, fpr_limit: f64) -> Result<f64> {
        if !(fpr_limit > 0.0 && fpr_limit <= 1.0) {
            return Err(Error::BadFprLimit { limit: fpr_limit });
        }
        self.require_regions_and_normals()?;
        let mut area = 0.0;
        let (mut x0, mut y0) = (0.0, 0.0);
        let curve = self
            .points()
            .map(|(_, fpr, pro)| (fpr, pro))
            .chain(std::iter::once((1.0, 1.0)));
        for (x1, y1) in curve {
            if x1 <= fpr_limit {
                area += 0.5 * (y0 + y1) * (x1 - x0);
            } else {
                // First point past the limit: close with the interpolated value at the limit
                // (unless the previous point sits exactly on it) and stop.
                if x0 < fpr_limit {
                    let y_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0);
                    area += 0.5 * (y0 + y_limit) * (fpr_limit - x0);
                }
                break;
            }
            (x0, y0) = (x1, y1);
        }
        Ok(area / fpr_limit)
    }

    /// The full PRO curve; see [`pro_curve`].
    pub(crate) fn pro_curve(&self) -> Result<ProCurve> {
        self.require_regions_and_normals()?;
        let mut curve = ProCurve {
            fpr: vec![0.0],
            pro: vec![0.0],
            thresholds: vec![f32::INFINITY],
        };
        for (threshold, fpr, pro) in self.points() {
            curve.fpr.push(fpr);
            curve.pro.push(pro);
            curve.thresholds.push(threshold);
        }
        curve.fpr.push(1.0);
        curve.pro.push(1.0);
        curve.thresholds.push(f32::NEG_INFINITY);
        Ok(curve)
    }
}

/// Area under the per-region-overlap curve up to `fpr_limit`, normalised by `fpr_limit`
/// (1 is perfect), following the MVTec AD reference evaluation (`compute_pro` and `trapezoid`): 8-connected
/// ground-truth regions, PRO = mean per-region overlap, FPR over all normal pixels of all maps,
/// trapezoid rule up to `fpr_limit` with the value at `fpr_limit` interpolated.
/// Use [`DEFAULT_FPR_LIMIT`] (0.3) for numbers comparable with the literature.
///
/// # Errors
/// [`Error::EmptyInput`] for no maps, [`Error::BadShape`] / [`Error::LengthMismatch`] for a
/// malformed map, [`Error::NanScore`], [`Error::BadFprLimit`] unless `0 < fpr_limit <= 1`, and
/// [`Error::SingleClass`] if there is no defect region or no normal pixel.
///
/// # Example
/// ```
/// use bpgg_metrics::{aupro, MapRef, DEFAULT_FPR_LIMIT};
/// // A 2x2 defect in a 4x4 image, scored above every normal pixel: PRO reaches 1 at FPR 0.
/// let mask: Vec<bool> = (0..16).map(|i| i % 4 < 2 && i / 4 < 2).collect();
/// let scores: Vec<f32> = mask.iter().map(|&d| if d { 0.9 } else { 0.1 }).collect();
/// let map = MapRef::new(&scores, &mask, 4, 4)?;
/// assert_eq!(aupro(&[map], DEFAULT_FPR_LIMIT)?, 1.0);
/// # Ok::<(), bpgg_metrics::Error>(())
/// ```
pub fn aupro(maps: &[MapRef], fpr_limit: f64) -> Result<f64> {
    if !(fpr_limit > 0.0 && fpr_limit <= 1.0) {
        return Err(Error::BadFprLimit { limit: fpr_limit });
    }
    RankedRegions::new(maps)?.aupro(fpr_limit)
}

/// The PRO curve of a set of maps (see [`ProCurve`]); [`decimate`](crate::decimate) thins it for
/// plotting.
///
/// # Errors
/// As [`aupro`], except for the limit.
pub fn pro_curve(maps: &[MapRef]) -> Result<ProCurve> {
    RankedRegions::new(maps)?.pro_curve()
}
