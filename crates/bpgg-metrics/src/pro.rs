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
use crate::rank::{self, RankedScores, Step, SweepMetric};
use crate::regions::{connected_regions, BACKGROUND};

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
        let (mut total_pixels, mut defect_pixels) = (0usize, 0usize);
        for (index, map) in maps.iter().enumerate() {
            map.validate(index)?;
            rank::check_no_nan(map.scores, total_pixels)?;
            total_pixels += map.len();
            defect_pixels += map.mask.iter().filter(|&&defect| defect).count();
        }
        let mut normals = Vec::with_capacity(total_pixels - defect_pixels);
        let mut defects = Vec::with_capacity(defect_pixels);
        let mut region_weights = Vec::new();
        for map in maps {
            let regions = connected_regions(map.mask, map.width, map.height)?;
            // Region `k` of this map is global region `base + k - 1`, with payload `base + k`.
            let base = region_weights.len() as u64;
            let count = base + regions.count() as u64;
            if count >= u64::from(u32::MAX) {
                return Err(Error::TooManyRegions { count });
            }
            let base = base as u32;
            region_weights.extend(regions.sizes.iter().map(|&size| 1.0 / size as f64));
            for (&score, &label) in map.scores.iter().zip(&regions.labels) {
                if label == BACKGROUND {
                    normals.push(rank::descending_key(score));
                } else {
                    defects.push(rank::pack_positive(score, base + label));
                }
            }
        }
        Ok(Self {
            ranked: RankedScores::from_parts(normals, defects),
            region_weights,
        })
    }

    pub(crate) fn require_regions_and_normals(&self) -> Result<()> {
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

    /// A fresh PRO tracker for a sweep of [`RankedRegions::ranked`].
    fn tracker(&self) -> ProTracker<'_> {
        ProTracker {
            region_weights: &self.region_weights,
            normals: self.ranked.negatives() as f64,
            regions: self.region_weights.len() as f64,
            overlap_sum: 0.0,
        }
    }

    /// An AUPRO accumulator for a sweep of [`RankedRegions::ranked`]; the caller has checked
    /// the limit and that regions and normal pixels exist.
    pub(crate) fn aupro_sweep(&self, fpr_limit: f64) -> AuproSweep<'_> {
        AuproSweep {
            tracker: self.tracker(),
            fpr_limit,
            area: 0.0,
            last: (0.0, 0.0),
            done: false,
        }
    }

    /// Area under the PRO curve up to `fpr_limit`, divided by `fpr_limit`; see [`aupro`].
    pub(crate) fn aupro(&self, fpr_limit: f64) -> Result<f64> {
        check_fpr_limit(fpr_limit)?;
        self.require_regions_and_normals()?;
        let mut aupro = self.aupro_sweep(fpr_limit);
        self.ranked.sweep(&mut aupro);
        Ok(aupro.finish())
    }

    /// The full PRO curve; see [`pro_curve`].
    pub(crate) fn pro_curve(&self) -> Result<ProCurve> {
        self.require_regions_and_normals()?;
        let mut curve = ProCurve {
            fpr: vec![0.0],
            pro: vec![0.0],
            thresholds: vec![f32::INFINITY],
        };
        let mut tracker = self.tracker();
        for step in self.ranked.steps() {
            let (fpr, pro) = tracker.point(&step);
            curve.fpr.push(fpr);
            curve.pro.push(pro);
            curve.thresholds.push(step.threshold);
        }
        curve.fpr.push(1.0);
        curve.pro.push(1.0);
        curve.thresholds.push(f32::NEG_INFINITY);
        Ok(curve)
    }
}

/// [`Error::BadFprLimit`] unless `0 < fpr_limit <= 1`.
pub(crate) fn check_fpr_limit(fpr_limit: f64) -> Result<()> {
    if fpr_limit > 0.0 && fpr_limit <= 1.0 {
        Ok(())
    } else {
        Err(Error::BadFprLimit { limit: fpr_limit })
    }
}

/// Turns sweep steps into PRO curve points: accumulates `1 / region size` for every defect
/// pixel that turns positive.
#[derive(Debug)]
struct ProTracker<'a> {
    region_weights: &'a [f64],
    normals: f64,
    regions: f64,
    overlap_sum: f64,
}

impl ProTracker<'_> {
    /// The `(fpr, pro)` point of `step`, both clipped to 1 as in the reference.
    fn point(&mut self, step: &Step<'_>) -> (f64, f64) {
        for &entry in step.new_positives {
            self.overlap_sum += self.region_weights[rank::payload(entry) as usize - 1];
        }
        let fpr = (step.fp as f64 / self.normals).min(1.0);
        let pro = (self.overlap_sum / self.regions).min(1.0);
        (fpr, pro)
    }
}

/// Integrates the PRO curve up to the FPR limit during the threshold sweep.
#[derive(Debug)]
pub(crate) struct AuproSweep<'a> {
    tracker: ProTracker<'a>,
    fpr_limit: f64,
    area: f64,
    /// The last curve point taken into the area.
    last: (f64, f64),
    /// Set once the limit is reached.
    done: bool,
}

impl AuproSweep<'_> {
    /// Adds the segment from the last point to `(x1, y1)`, stopping at the limit.
    fn add_point(&mut self, (x1, y1): (f64, f64)) {
        let (x0, y0) = self.last;
        if x1 <= self.fpr_limit {
            self.area += 0.5 * (y0 + y1) * (x1 - x0);
            self.last = (x1, y1);
            return;
        }
        // First point past the limit: close with the value interpolated at the limit (unless
        // the previous point lies exactly on it) and stop.
        if x0 < self.fpr_limit {
            let y_limit = y0 + (y1 - y0) * (self.fpr_limit - x0) / (x1 - x0);
            self.area += 0.5 * (y0 + y_limit) * (self.fpr_limit - x0);
        }
        self.done = true;
    }

    /// AUPRO after the whole sweep: closes the curve at `(1, 1)` and normalises by the limit.
    pub(crate) fn finish(mut self) -> f64 {
        if !self.done {
            self.add_point((1.0, 1.0));
        }
        self.area / self.fpr_limit
    }
}

impl SweepMetric for AuproSweep<'_> {
    fn visit(&mut self, step: &Step<'_>) {
        if !self.done {
            let point = self.tracker.point(step);
            self.add_point(point);
        }
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
    check_fpr_limit(fpr_limit)?;
    RankedRegions::new(maps)?.aupro(fpr_limit)
}

/// The PRO curve of a set of maps (see [`ProCurve`]); [`decimate`](crate::decimate()) thins it for
/// plotting.
///
/// # Errors
/// As [`aupro`], except for the limit.
pub fn pro_curve(maps: &[MapRef]) -> Result<ProCurve> {
    RankedRegions::new(maps)?.pro_curve()
}
