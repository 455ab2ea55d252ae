//! The hybrid score (ours; `docs/ARCHITECTURE.md`, "The method"): the BPGG defect probability mixed with the k-NN
//! distance to the normal supports.
//!
//! The two signals live on different scales: the probability is in `[0, 1]` with its decision
//! boundary at 0.5, the distance is in `[0, 2]` with a product-dependent normal level. The
//! distance is therefore mapped to `d / (d + s)`, where `s` is a high quantile (default 0.99)
//! of the normal supports' own leave-one-out distances: a distance at the normal level maps to
//! 0.5, zero to 0, very large to 1. Then `score = (1 − w)·P + w·d/(d + s)`.

use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Smallest usable distance scale: guards identical normal images (all distances 0).
pub const MIN_KNN_SCALE: f32 = 1e-6;

/// Settings of the hybrid score.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HybridConfig {
    /// Weight of the k-NN term, in `[0, 1]`; 0 is pure BPGG, 1 pure k-NN. Default 0.5.
    pub weight: f32,
    /// Quantile of the normal leave-one-out distances that maps to 0.5, in `[0, 1]`.
    /// Default 0.99.
    pub normal_quantile: f32,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            weight: 0.5,
            normal_quantile: 0.99,
        }
    }
}

impl HybridConfig {
    /// Checks both fields are in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("weight", self.weight),
            ("normal_quantile", self.normal_quantile),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::InvalidConfig(format!(
                    "hybrid {name} must be in [0, 1], got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// The distance scale `s`: the `quantile` of the normal supports' leave-one-out distances
/// (linear interpolation between order statistics, as numpy's default), at least
/// [`MIN_KNN_SCALE`].
///
/// # Shapes
/// - `loo_distances`: any shape, typically `(n, 1, h, w)` from
///   [`crate::baseline::leave_one_out_distances`].
pub fn knn_scale_from_normal(loo_distances: &Tensor, quantile: f32) -> Result<f32> {
    if !(0.0..=1.0).contains(&quantile) {
        return Err(Error::InvalidConfig(format!(
            "quantile must be in [0, 1], got {quantile}"
        )));
    }
    let mut v = loo_distances
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return Err(Error::InvalidConfig(
            "normal distances must be non-empty and finite".into(),
        ));
    }
    v.sort_by(f32::total_cmp);
    let pos = quantile as f64 * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let q = v[lo] as f64 + (v[hi] as f64 - v[lo] as f64) * (pos - lo as f64);
    Ok((q as f32).max(MIN_KNN_SCALE))
}

/// `(1 − w)·P + w·d/(d + s)`.
///
/// # Shapes
/// - `bpgg_prob`: `(b, 1, h, w)`; `knn_dist`: `(b, 1, h, w)` (same grid; resize first).
/// - returns `(b, 1, h, w)` in `[0, 1]`.
pub fn hybrid_score(
    bpgg_prob: &Tensor,
    knn_dist: &Tensor,
    knn_scale: f32,
    weight: f32,
) -> Result<Tensor> {
    if !(0.0..=1.0).contains(&weight) {
        return Err(Error::InvalidConfig(format!(
            "hybrid weight must be in [0, 1], got {weight}"
        )));
    }
    if !(knn_scale.is_finite() && knn_scale > 0.0) {
        return Err(Error::InvalidConfig(format!(
            "k-NN distance scale must be positive, got {knn_scale}"
        )));
    }
    if bpgg_prob.dims() != knn_dist.dims() {
        return Err(Error::ShapeMismatch(format!(
            "hybrid_score: probability {:?} and distance {:?} differ",
            bpgg_prob.dims(),
            knn_dist.dims()
        )));
    }
    let d = knn_dist.to_dtype(DType::F32)?.maximum(0.0)?;
    let squashed = (&d / (&d + knn_scale as f64)?)?;
    let p = bpgg_prob.to_dtype(DType::F32)?;
    Ok(((p * (1.0 - weight as f64))? + (squashed * weight as f64)?)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, (1, 1, 1, v.len()), &Device::Cpu).unwrap()
    }

    #[test]
    fn scale_is_numpy_linear_quantile() {
        // numpy.quantile([0, 1, 2, 3, 4], 0.9) == 3.6
        let s = knn_scale_from_normal(&t(&[4.0, 0.0, 2.0, 1.0, 3.0]), 0.9).unwrap();
        assert!((s - 3.6).abs() < 1e-6);
        assert_eq!(
            knn_scale_from_normal(&t(&[0.0, 0.0]), 0.5).unwrap(),
            MIN_KNN_SCALE
        );
    }

    #[test]
    fn hybrid_mixes_the_normalised_signals() {
        let p = t(&[0.0, 1.0, 0.5]);
        let d = t(&[0.2, 0.0, 0.6]);
        let h = hybrid_score(&p, &d, 0.2, 0.5).unwrap();
        let h = h.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // d at the normal level (0.2) → 0.5; 0 → 0; 0.6 → 0.75.
        let e = [0.25, 0.5, 0.625];
        for (g, e) in h.iter().zip(e) {
            assert!((g - e).abs() < 1e-6, "{h:?}");
        }
        let pure = hybrid_score(&p, &d, 0.2, 0.0).unwrap();
        assert_eq!(
            pure.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0.0, 1.0, 0.5]
        );
        assert!(hybrid_score(&p, &t(&[0.0]), 0.2, 0.5).is_err());
    }
}
