//! Prototype guidance (PANet eq. 2-3): `s_c(x) = τ · max_j cos(f_q(x), p_{c,j})`, softmax over
//! {normal, defect}.

use candle_core::{DType, Tensor};

use crate::ops::l2_normalize;
use crate::prototype::PrototypeBank;
use crate::{Error, Result};

/// The cosine scale τ of PANet and BPGG.
pub const DEFAULT_TAU: f32 = 20.0;

/// Checks that τ is finite and positive.
pub fn validate_tau(tau: f32) -> Result<()> {
    if !(tau.is_finite() && tau > 0.0) {
        return Err(Error::InvalidConfig(format!(
            "similarity scale tau must be positive and finite, got {tau}"
        )));
    }
    Ok(())
}

/// Cosine similarity of every query pixel with every prototype.
///
/// # Shapes
/// - `query_feats`: `(b, c, h, w)`.
/// - `prototypes`: `(k, c)`.
/// - returns `(b, k, h, w)`, values in `[-1, 1]`.
pub fn cosine_similarity_map(query_feats: &Tensor, prototypes: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = query_feats.dims4()?;
    let (k, pc) = prototypes.dims2()?;
    if pc != c {
        return Err(Error::ShapeMismatch(format!(
            "cosine_similarity_map: query has {c} channels, prototypes {:?}",
            prototypes.dims()
        )));
    }
    let q = l2_normalize(&query_feats.to_dtype(DType::F32)?, 1)?.reshape((b, c, h * w))?;
    let p = l2_normalize(&prototypes.to_dtype(DType::F32)?, 1)?;
    Ok(p.broadcast_matmul(&q)?.reshape((b, k, h, w))?)
}

/// The two class logits, normal first: `τ · max_j cos(f_q, p_{c,j})` (the best prototype of
/// each class). A softmax over dim 1 gives the class probabilities; training takes the
/// cross-entropy of these logits.
///
/// # Shapes
/// - `query_feats`: `(b, c, h, w)`.
/// - returns `(b, 2, h, w)`: channel 0 normal, channel 1 defect.
pub fn class_logits(query_feats: &Tensor, bank: &PrototypeBank, tau: f32) -> Result<Tensor> {
    validate_tau(tau)?;
    // One matmul for both classes: rows 0..kn are normal, kn.. defect.
    let kn = bank.normal.dims2()?.0;
    let kd = bank.defect.dims2()?.0;
    let all = Tensor::cat(&[&bank.normal, &bank.defect], 0)?;
    let sims = cosine_similarity_map(query_feats, &all)?;
    let normal = sims.narrow(1, 0, kn)?.max_keepdim(1)?;
    let defect = sims.narrow(1, kn, kd)?.max_keepdim(1)?;
    Ok((Tensor::cat(&[normal, defect], 1)? * tau as f64)?)
}

/// Probability of the defect class per query pixel: the defect entry of the softmax over
/// {normal, defect} logits, computed as the equal and overflow-free
/// `sigmoid(s_defect − s_normal)`.
///
/// # Shapes
/// - `query_feats`: `(b, c, h, w)`.
/// - returns `(b, 1, h, w)`, values in `[0, 1]`.
pub fn defect_probability(query_feats: &Tensor, bank: &PrototypeBank, tau: f32) -> Result<Tensor> {
    let logits = class_logits(query_feats, bank, tau)?;
    let margin = (logits.narrow(1, 1, 1)? - logits.narrow(1, 0, 1)?)?;
    // exp(−margin) may overflow to +inf for a very normal pixel; 1/(1+inf) = 0 is the limit.
    Ok((margin.neg()?.exp()? + 1.0)?.recip()?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn bank() -> PrototypeBank {
        let dev = Device::Cpu;
        PrototypeBank::new(
            Tensor::from_vec(vec![1f32, 0.0], (1, 2), &dev).unwrap(),
            Tensor::from_vec(vec![0f32, 1.0], (1, 2), &dev).unwrap(),
        )
        .unwrap()
    }

    /// A 1x4 query: pixels e0, e1, (1,1)/√2·2 (scaled), (1, 0.5).
    fn query() -> Tensor {
        let v = vec![1f32, 0.0, 2.0, 1.0, /* ch1 */ 0.0, 1.0, 2.0, 0.5];
        Tensor::from_vec(v, (1, 2, 1, 4), &Device::Cpu).unwrap()
    }

    #[test]
    fn cosine_values() {
        let b = bank();
        let s = cosine_similarity_map(&query(), &b.defect).unwrap();
        let s = s.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let e = [
            1.0,
            0.0,
            std::f32::consts::FRAC_1_SQRT_2,
            1.0 / 1.25f32.sqrt(),
        ];
        for (g, e) in s.iter().zip(e) {
            assert!((g - e).abs() < 1e-5, "{s:?}");
        }
    }

    #[test]
    fn probability_is_softmax_of_scaled_cosines() {
        let p = defect_probability(&query(), &bank(), DEFAULT_TAU).unwrap();
        let p = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let softmax = |sd: f32, sn: f32| {
            let (ed, en) = ((20.0 * sd).exp(), (20.0 * sn).exp());
            ed / (ed + en)
        };
        let c1 = 1.0 / 1.25f32.sqrt();
        let e = [
            softmax(1.0, 0.0),
            softmax(0.0, 1.0),
            0.5,
            softmax(c1, 0.5 * c1),
        ];
        for (g, e) in p.iter().zip(e) {
            assert!((g - e).abs() < 1e-6, "{p:?} vs {e:?}");
        }
    }

    #[test]
    fn best_prototype_per_class_counts() {
        let dev = Device::Cpu;
        let bank = PrototypeBank::new(
            Tensor::from_vec(vec![1f32, 0.0, 0.0, 0.0, 0.0, 1.0], (2, 3), &dev).unwrap(),
            Tensor::from_vec(vec![0f32, 1.0, 0.0], (1, 3), &dev).unwrap(),
        )
        .unwrap();
        let q = Tensor::from_vec(vec![0f32, 0.0, 1.0], (1, 3, 1, 1), &dev).unwrap();
        let l = class_logits(&q, &bank, 10.0).unwrap();
        assert_eq!(
            l.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0.0, 10.0]
        );
    }

    #[test]
    fn left_half_matching_defect_is_defect() {
        // 4x6 query, left 3 columns ≈ defect prototype, right 3 ≈ normal prototype.
        let dev = Device::Cpu;
        let mut v = vec![0f32; 2 * 24];
        for y in 0..4 {
            for x in 0..6 {
                let (a, b) = if x < 3 { (0.9, 0.2) } else { (0.1, 0.8) };
                v[y * 6 + x] = a;
                v[24 + y * 6 + x] = b;
            }
        }
        let q = Tensor::from_vec(v, (1, 2, 4, 6), &dev).unwrap();
        let p = defect_probability(&q, &bank(), DEFAULT_TAU).unwrap();
        let p = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (i, v) in p.iter().enumerate() {
            assert_eq!(*v > 0.5, i % 6 < 3, "pixel {i}: {v}");
        }
    }

    #[test]
    fn bad_tau_and_channels_are_errors() {
        assert!(defect_probability(&query(), &bank(), 0.0).is_err());
        let dev = Device::Cpu;
        let p = Tensor::ones((1, 3), DType::F32, &dev).unwrap();
        assert!(matches!(
            cosine_similarity_map(&query(), &p),
            Err(Error::ShapeMismatch(_))
        ));
    }
}
