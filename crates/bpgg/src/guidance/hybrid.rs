//! The hybrid score (ours; `docs/ARCHITECTURE.md`, "The method"): a defect probability mixed
//! with the k-NN distance to the normal pixels of the supports.
//!
//! The defect probability has two parts that use the defect supports differently:
//! - `P_proto`, the BPGG probability against the prototypes (masked averages: smooth, it covers
//!   whole defect regions);
//! - `P_bank = σ(τ·(d_n − d_d))`, the nearest-neighbour version: `d_d` is the distance to the
//!   nearest defect pixel of any defect support (the defect memory bank), `d_n` to the nearest
//!   normal pixel (normal supports and the defect supports' background). Every shot adds its
//!   own pixels, so more shots keep adding information where one averaged prototype saturates.
//!
//! `P = (1 − b)·P_proto + b·P_bank` with `b` the bank share (`P = P_proto` without a defect
//! bank). The distance lives on another scale (`[0, 2]`, with a product-dependent normal
//! level), so it is mapped to `d / (d + s)`, where `s` is a high quantile (default 0.99) of the
//! supports' own normal pixels' leave-one-out distances: a distance at the normal level maps to
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
    /// Share `b` of the defect memory bank's probability in the defect term, in `[0, 1]`; the
    /// rest is the prototypes'. 0 builds no defect bank. Default 0.5 (magnetic_tile, 5 + 5:
    /// pixel AP 0.52 with 0, 0.63 with 0.5, 0.61 with 1; AUPRO 0.83, 0.87, 0.83).
    pub bank_share: f32,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            weight: 0.5,
            normal_quantile: 0.99,
            bank_share: 0.5,
        }
    }
}

impl HybridConfig {
    /// Checks every field is in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("weight", self.weight),
            ("normal_quantile", self.normal_quantile),
            ("bank_share", self.bank_share),
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

/// The distance scale `s`: the `quantile` of the leave-one-out distances of the supports'
/// normal pixels (linear interpolation between order statistics, as numpy's default), at
/// least [`MIN_KNN_SCALE`].
pub fn knn_scale_from_normal(loo_distances: &[f32], quantile: f32) -> Result<f32> {
    if !(0.0..=1.0).contains(&quantile) {
        return Err(Error::InvalidConfig(format!(
            "quantile must be in [0, 1], got {quantile}"
        )));
    }
    let mut v = loo_distances.to_vec();
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

/// The defect memory bank's probability `σ(τ·(d_n − d_d))`: the softmax over {normal, defect}
/// of `τ·cos` to the nearest normal and the nearest defect pixel.
///
/// # Shapes
/// - `defect_dist`, `normal_dist`: `(b, 1, h, w)`, `1 − max cos` as
///   [`crate::baseline::MemoryBank::score`] returns; returns `(b, 1, h, w)` in `[0, 1]`.
pub fn bank_probability(defect_dist: &Tensor, normal_dist: &Tensor, tau: f32) -> Result<Tensor> {
    super::validate_tau(tau)?;
    if defect_dist.dims() != normal_dist.dims() {
        return Err(Error::ShapeMismatch(format!(
            "bank_probability: defect distance {:?} and normal distance {:?} differ",
            defect_dist.dims(),
            normal_dist.dims()
        )));
    }
    let margin =
        ((normal_dist.to_dtype(DType::F32)? - defect_dist.to_dtype(DType::F32)?)? * tau as f64)?;
    // exp(−margin) may overflow to +inf for a very normal pixel; 1/(1+inf) = 0 is the limit.
    Ok((margin.neg()?.exp()? + 1.0)?.recip()?)
}

/// The defect term `P = (1 − b)·P_proto + b·P_bank` (`P_proto` alone without a bank).
///
/// # Shapes
/// - both `(b, 1, h, w)`; returns `(b, 1, h, w)`.
pub fn defect_term(
    proto_prob: &Tensor,
    bank_prob: Option<&Tensor>,
    bank_share: f32,
) -> Result<Tensor> {
    let Some(bank) = bank_prob else {
        return Ok(proto_prob.clone());
    };
    if proto_prob.dims() != bank.dims() {
        return Err(Error::ShapeMismatch(format!(
            "defect_term: prototype probability {:?} and bank probability {:?} differ",
            proto_prob.dims(),
            bank.dims()
        )));
    }
    let b = f64::from(bank_share);
    Ok(((proto_prob * (1.0 - b))? + (bank * b)?)?)
}

/// `(1 − w)·P + w·d/(d + s)`.
///
/// # Shapes
/// - `defect_prob`: `(b, 1, h, w)`; `knn_dist`: `(b, 1, h, w)` (same grid; resize first).
/// - returns `(b, 1, h, w)` in `[0, 1]`.
pub fn hybrid_score(
    defect_prob: &Tensor,
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
    if defect_prob.dims() != knn_dist.dims() {
        return Err(Error::ShapeMismatch(format!(
            "hybrid_score: probability {:?} and distance {:?} differ",
            defect_prob.dims(),
            knn_dist.dims()
        )));
    }
    let d = knn_dist.to_dtype(DType::F32)?.maximum(0.0)?;
    let squashed = (&d / (&d + knn_scale as f64)?)?;
    let p = defect_prob.to_dtype(DType::F32)?;
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
        let s = knn_scale_from_normal(&[4.0, 0.0, 2.0, 1.0, 3.0], 0.9).unwrap();
        assert!((s - 3.6).abs() < 1e-6);
        assert_eq!(
            knn_scale_from_normal(&[0.0, 0.0], 0.5).unwrap(),
            MIN_KNN_SCALE
        );
        assert!(knn_scale_from_normal(&[], 0.5).is_err());
        assert!(knn_scale_from_normal(&[f32::NAN], 0.5).is_err());
    }

    #[test]
    fn bank_probability_is_the_softmax_of_the_nearest_similarities() {
        // cos to nearest defect 0.9 (d 0.1), to nearest normal 0.7 (d 0.3): σ(20·0.2).
        let p = bank_probability(&t(&[0.1, 0.3, 0.2]), &t(&[0.3, 0.1, 0.2]), 20.0).unwrap();
        let p = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let s = |x: f32| 1.0 / (1.0 + (-x).exp());
        for (g, e) in p.iter().zip([s(4.0), s(-4.0), 0.5]) {
            assert!((g - e).abs() < 1e-6, "{p:?}");
        }
        // A pixel with no defect neighbour at all (distance 2) is normal, without overflow.
        let far = bank_probability(&t(&[2.0]), &t(&[0.0]), 1000.0).unwrap();
        assert_eq!(far.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [0.0]);
        assert!(bank_probability(&t(&[0.1]), &t(&[0.1, 0.2]), 20.0).is_err());
    }

    #[test]
    fn defect_term_shares_prototypes_and_bank() {
        let proto = t(&[0.2, 1.0]);
        let bank = t(&[0.6, 0.0]);
        let mixed = defect_term(&proto, Some(&bank), 0.25).unwrap();
        let mixed = mixed.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (g, e) in mixed.iter().zip([0.3, 0.75]) {
            assert!((g - e).abs() < 1e-6, "{mixed:?}");
        }
        let alone = defect_term(&proto, None, 0.25).unwrap();
        assert_eq!(
            alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0.2, 1.0]
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
