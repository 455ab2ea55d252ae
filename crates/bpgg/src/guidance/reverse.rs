//! The reverse branch of BPGG (bidirectional guidance; PANet's prototype alignment): the
//! query's own prediction is pooled into *query prototypes*, which must segment the support
//! images back. In training that is the alignment loss (built by the training loop from
//! [`query_prototypes`] and [`super::class_logits`]); at inference the support reconstruction
//! quality decides how far the query prototypes may refine the forward prototypes.
//!
//! Exact inference formula (ours, behind [`ReverseMode`]):
//! 1. `q_d = MAP(f_q, P)`, `q_n = MAP(f_q, 1 − P)` with `P` the query's defect probability
//!    ("adaptive" soft masks, no threshold);
//! 2. the supports are segmented with `{q_n, q_d}`: `P_s = softmax(τ·cos)` defect entry;
//! 3. quality `Q = ½ (IoU_d + IoU_n)` with soft IoU
//!    `IoU(P, M) = Σ P·M / (Σ P + Σ M − Σ P·M + MASK_EPS)` on the feature grid
//!    (`M` = support masks area-averaged to the grid; normal class uses `1 − P`, `1 − M`);
//! 4. [`ReverseMode::Refine`]: every forward prototype of class `c` becomes
//!    `normalize((1 − β)·p_c + β·q_c)` with `β = α·Q`: a query prototype that reconstructs
//!    the supports well is trusted more; [`ReverseMode::Augment`]: when `Q ≥ min_quality`,
//!    `q_c` is appended to class `c` as an extra prototype (the best match per class wins).

use candle_core::Tensor;

use super::similarity::{defect_probability, validate_tau};
use crate::ops::l2_normalize;
use crate::prototype::{mask_to_grid, masked_average_pool, PrototypeBank, MASK_EPS};
use crate::{Error, Result};

/// What the reverse branch does at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReverseMode {
    /// Forward prototypes only (the plain guidance). Default.
    #[default]
    Off,
    /// Mix each forward prototype with the query prototype of its class, weight `α·Q`.
    Refine,
    /// Append the query prototypes as extra prototypes when `Q ≥ min_quality`.
    Augment,
}

/// Settings of the inference-time reverse branch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReverseConfig {
    /// Default [`ReverseMode::Off`].
    pub mode: ReverseMode,
    /// Largest share of the query prototype in [`ReverseMode::Refine`] (reached at perfect
    /// support reconstruction), in `[0, 1]`. Default 0.5.
    pub alpha: f32,
    /// Smallest reconstruction quality for [`ReverseMode::Augment`], in `[0, 1]`. Default 0.5.
    pub min_quality: f32,
}

impl Default for ReverseConfig {
    fn default() -> Self {
        Self {
            mode: ReverseMode::Off,
            alpha: 0.5,
            min_quality: 0.5,
        }
    }
}

impl ReverseConfig {
    /// Checks `alpha` and `min_quality` are in `[0, 1]`.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [("alpha", self.alpha), ("min_quality", self.min_quality)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::InvalidConfig(format!(
                    "reverse branch {name} must be in [0, 1], got {v}"
                )));
            }
        }
        Ok(())
    }
}

/// How well query prototypes segment the supports back (soft IoU per class, in `[0, 1]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupportReconstruction {
    pub defect_iou: f32,
    pub normal_iou: f32,
}

impl SupportReconstruction {
    /// `Q = ½ (IoU_d + IoU_n)`.
    pub fn quality(&self) -> f32 {
        0.5 * (self.defect_iou + self.normal_iou)
    }
}

/// The result of [`refine_prototypes`].
#[derive(Debug, Clone)]
pub struct ReverseOutcome {
    /// The bank to score the query with.
    pub bank: PrototypeBank,
    /// The support reconstruction of the query prototypes; `None` when the mode is
    /// [`ReverseMode::Off`] or the query prediction has no pixel of one class (then the bank is
    /// the forward bank).
    pub reconstruction: Option<SupportReconstruction>,
}

/// Query prototypes from the query's soft prediction: `q_d = MAP(f_q, P)`,
/// `q_n = MAP(f_q, 1 − P)`, pooled over the whole batch. `None` when the prediction gives one
/// class (almost) no mass, so that class has no query prototype.
///
/// # Shapes
/// - `query_feats`: `(b, c, h, w)`.
/// - `query_prob`: `(b, 1, h', w')`, defect probability in `[0, 1]` (any grid; area-resized).
/// - returns a bank of `(1, c)` and `(1, c)`.
pub fn query_prototypes(
    query_feats: &Tensor,
    query_prob: &Tensor,
) -> Result<Option<PrototypeBank>> {
    let (_, _, h, w) = query_feats.dims4()?;
    let prob = mask_to_grid(query_prob, h, w)?;
    let defect_mass = prob.sum_all()?.to_scalar::<f32>()? as f64;
    let total = prob.elem_count() as f64;
    if defect_mass <= MASK_EPS || total - defect_mass <= MASK_EPS {
        return Ok(None);
    }
    let defect = masked_average_pool(query_feats, &prob)?;
    let normal = masked_average_pool(query_feats, &(1.0 - &prob)?)?;
    Ok(Some(PrototypeBank::new(
        defect.unsqueeze(0)?,
        normal.unsqueeze(0)?,
    )?))
}

/// Segments the supports with `bank` and scores the result against their masks.
///
/// # Shapes
/// - `support_feats`: `(k, c, h, w)`; `support_masks`: `(k, 1, H, W)` in `[0, 1]`, with at
///   least one defect pixel (normal supports may be included with all-zero masks).
pub fn support_reconstruction(
    bank: &PrototypeBank,
    support_feats: &Tensor,
    support_masks: &Tensor,
    tau: f32,
) -> Result<SupportReconstruction> {
    let (k, _, h, w) = support_feats.dims4()?;
    let (mk, mc, _, _) = support_masks.dims4()?;
    if mk != k || mc != 1 {
        return Err(Error::ShapeMismatch(format!(
            "support_reconstruction: support features {:?} need masks (k={k}, 1, H, W), got {:?}",
            support_feats.dims(),
            support_masks.dims()
        )));
    }
    let mask = mask_to_grid(support_masks, h, w)?;
    let pred = defect_probability(support_feats, bank, tau)?;
    Ok(SupportReconstruction {
        defect_iou: soft_iou(&pred, &mask)?,
        normal_iou: soft_iou(&(1.0 - &pred)?, &(1.0 - &mask)?)?,
    })
}

fn soft_iou(pred: &Tensor, mask: &Tensor) -> Result<f32> {
    let inter = (pred * mask)?.sum_all()?.to_scalar::<f32>()? as f64;
    let p = pred.sum_all()?.to_scalar::<f32>()? as f64;
    let m = mask.sum_all()?.to_scalar::<f32>()? as f64;
    Ok((inter / (p + m - inter + MASK_EPS)) as f32)
}

/// The inference-time reverse branch for one query image (see the module docs for the
/// formula). Loop over queries for a batch: each query refines the bank on its own. `tau` is
/// the model's cosine scale, used to segment the supports.
///
/// # Shapes
/// - `query_feats`: `(1, c, h, w)`; `query_prob`: `(1, 1, h', w')` (from the forward bank).
/// - `support_feats`: `(k, c, h, w)`; `support_masks`: `(k, 1, H, W)`, with defect pixels.
/// - returns a bank with the forward bank's prototype counts (`Refine`) or one more per class
///   (`Augment`, when trusted).
pub fn refine_prototypes(
    bank: &PrototypeBank,
    query_feats: &Tensor,
    query_prob: &Tensor,
    support_feats: &Tensor,
    support_masks: &Tensor,
    cfg: &ReverseConfig,
    tau: f32,
) -> Result<ReverseOutcome> {
    cfg.validate()?;
    validate_tau(tau)?;
    let unchanged = ReverseOutcome {
        bank: bank.clone(),
        reconstruction: None,
    };
    if cfg.mode == ReverseMode::Off {
        return Ok(unchanged);
    }
    let (b, _, _, _) = query_feats.dims4()?;
    let (pb, _, _, _) = query_prob.dims4()?;
    if b != 1 || pb != 1 {
        return Err(Error::ShapeMismatch(format!(
            "refine_prototypes works on one query image; got features {:?}, probability {:?}",
            query_feats.dims(),
            query_prob.dims()
        )));
    }
    let Some(query_bank) = query_prototypes(query_feats, query_prob)? else {
        return Ok(unchanged);
    };
    let reconstruction = support_reconstruction(&query_bank, support_feats, support_masks, tau)?;
    let quality = reconstruction.quality();
    let bank = match cfg.mode {
        ReverseMode::Refine => {
            let beta = (cfg.alpha * quality) as f64;
            let mix = |forward: &Tensor, query: &Tensor| -> Result<Tensor> {
                let m = ((forward * (1.0 - beta))?.broadcast_add(&(query * beta)?))?;
                l2_normalize(&m, 1)
            };
            PrototypeBank::new(
                mix(&bank.defect, &query_bank.defect)?,
                mix(&bank.normal, &query_bank.normal)?,
            )?
        }
        ReverseMode::Augment if quality >= cfg.min_quality => PrototypeBank::new(
            Tensor::cat(&[&bank.defect, &query_bank.defect], 0)?,
            Tensor::cat(&[&bank.normal, &query_bank.normal], 0)?,
        )?,
        ReverseMode::Augment | ReverseMode::Off => bank.clone(),
    };
    Ok(ReverseOutcome {
        bank,
        reconstruction: Some(reconstruction),
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::guidance::DEFAULT_TAU;

    /// Features e0 on the left half, e1 on the right (plus a small e2 tilt), 4x8 grid; masks
    /// mark the left half at 16x32.
    fn scene(tilt: f32) -> (Tensor, Tensor) {
        let dev = Device::Cpu;
        let mut f = vec![0f32; 3 * 32];
        for y in 0..4 {
            for x in 0..8 {
                let i = y * 8 + x;
                f[if x < 4 { i } else { 32 + i }] = 1.0;
                f[64 + i] = tilt;
            }
        }
        let m: Vec<f32> = (0..16 * 32)
            .map(|i| if i % 32 < 16 { 1.0 } else { 0.0 })
            .collect();
        (
            Tensor::from_vec(f, (1, 3, 4, 8), &dev).unwrap(),
            Tensor::from_vec(m, (1, 1, 16, 32), &dev).unwrap(),
        )
    }

    fn bank() -> PrototypeBank {
        let dev = Device::Cpu;
        PrototypeBank::new(
            Tensor::from_vec(vec![1f32, 0.0, 0.0], (1, 3), &dev).unwrap(),
            Tensor::from_vec(vec![0f32, 1.0, 0.0], (1, 3), &dev).unwrap(),
        )
        .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn perfect_prediction_keeps_prototypes_stable() {
        let (f, m) = scene(0.0);
        let bank = bank();
        let prob = defect_probability(&f, &bank, DEFAULT_TAU).unwrap();
        let cfg = ReverseConfig {
            mode: ReverseMode::Refine,
            ..Default::default()
        };
        let out = refine_prototypes(&bank, &f, &prob, &f, &m, &cfg, DEFAULT_TAU).unwrap();
        let rec = out.reconstruction.unwrap();
        assert!(rec.quality() > 0.999, "{rec:?}");
        assert!(max_diff(&out.bank.defect, &bank.defect) < 1e-4);
        assert!(max_diff(&out.bank.normal, &bank.normal) < 1e-4);
    }

    #[test]
    fn refine_pulls_towards_a_trusted_query_prototype() {
        // Query and supports share a tilt the forward bank lacks; the query prototypes carry
        // it, reconstruct the supports perfectly, and move the bank half-way (α = 0.5).
        let (f, m) = scene(0.5);
        let bank = bank();
        let prob = defect_probability(&f, &bank, DEFAULT_TAU).unwrap();
        let cfg = ReverseConfig {
            mode: ReverseMode::Refine,
            ..Default::default()
        };
        let out = refine_prototypes(&bank, &f, &prob, &f, &m, &cfg, DEFAULT_TAU).unwrap();
        let d = out.bank.defect.to_vec2::<f32>().unwrap().remove(0);
        // q_d = normalize(1, 0, 0.5); mix 0.5·e0 + 0.5·q_d, normalised.
        let q = [1.0 / 1.25f32.sqrt(), 0.0, 0.5 / 1.25f32.sqrt()];
        let mix = [0.5 + 0.5 * q[0], 0.0, 0.5 * q[2]];
        let n = (mix[0] * mix[0] + mix[2] * mix[2]).sqrt();
        assert!(
            (d[0] - mix[0] / n).abs() < 1e-3 && (d[2] - mix[2] / n).abs() < 1e-3,
            "{d:?}"
        );
    }

    #[test]
    fn wrong_prediction_is_not_trusted() {
        let (f, m) = scene(0.0);
        let bank = bank();
        let prob = (1.0 - defect_probability(&f, &bank, DEFAULT_TAU).unwrap()).unwrap();
        let cfg = ReverseConfig {
            mode: ReverseMode::Augment,
            ..Default::default()
        };
        let out = refine_prototypes(&bank, &f, &prob, &f, &m, &cfg, DEFAULT_TAU).unwrap();
        assert!(out.reconstruction.unwrap().quality() < 0.01);
        assert_eq!(out.bank.defect.dims2().unwrap(), (1, 3));
    }

    #[test]
    fn off_and_batched_queries() {
        let (f, m) = scene(0.0);
        let bank = bank();
        let prob = defect_probability(&f, &bank, DEFAULT_TAU).unwrap();
        let out = refine_prototypes(
            &bank,
            &f,
            &prob,
            &f,
            &m,
            &ReverseConfig::default(),
            DEFAULT_TAU,
        )
        .unwrap();
        assert!(out.reconstruction.is_none());
        let f2 = Tensor::cat(&[&f, &f], 0).unwrap();
        let p2 = Tensor::cat(&[&prob, &prob], 0).unwrap();
        let cfg = ReverseConfig {
            mode: ReverseMode::Refine,
            ..Default::default()
        };
        assert!(matches!(
            refine_prototypes(&bank, &f2, &p2, &f, &m, &cfg, DEFAULT_TAU),
            Err(Error::ShapeMismatch(_))
        ));
    }
}
