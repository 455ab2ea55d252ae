//! The bidirectional episode loss (`docs/ARCHITECTURE.md`, "The method"; PANet's prototype alignment):
//! `L = CE(query | support prototypes) + λ · CE(support | query prototypes)`.
//!
//! The prototypes and logits come from the same functions inference uses
//! ([`build_prototypes`], [`class_logits`], [`query_prototypes`]); they are built from
//! differentiable tensor operations, so gradients reach the projection head through them.
//! Targets are the masks on the feature grid (the area share of defect pixels per cell, a soft
//! target).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use crate::guidance::class_logits;
use crate::guidance::query_prototypes;
use crate::model::ProjectionHead;
use crate::prototype::{build_prototypes, PrototypeBank, PrototypeConfig, MASK_EPS};
use crate::Result;

/// How the loss is weighted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossConfig {
    /// Temperature τ of the cosine logits.
    pub tau: f32,
    /// λ, the weight of the reverse (support-from-query) term; 0 turns it off.
    pub reverse_weight: f32,
    /// Weight the defect and normal pixels of each term equally (defect pixels are rare)
    /// instead of per pixel.
    pub class_balance: bool,
}

/// An episode's tensors on the feature grid, before the head.
///
/// # Shapes
/// - `defect_feats` `(k, C, h, w)`, `defect_masks` `(k, 1, h, w)`;
/// - `normal_feats` `(n, C, h, w)`, `n` may be 0 (no normal insertion);
/// - `query_feats` `(q, C, h, w)`, `query_masks` `(q, 1, h, w)`; the first `defect_queries`
///   queries are defect images (they feed the reverse term), the rest are normal.
#[derive(Debug, Clone)]
pub struct EpisodeTensors {
    pub defect_feats: Tensor,
    pub defect_masks: Tensor,
    pub normal_feats: Option<Tensor>,
    pub query_feats: Tensor,
    pub query_masks: Tensor,
    pub defect_queries: usize,
}

/// The loss and its parts.
#[derive(Debug)]
pub struct LossParts {
    /// The scalar to differentiate.
    pub total: Tensor,
    pub query: f32,
    /// `None` when no query prediction had both classes (nothing to align).
    pub reverse: Option<f32>,
}

/// Binary cross-entropy of the defect logit margin `z` against soft targets `t`.
///
/// `softplus(z) = ln(1 + eˣ)` is computed directly: `|z| ≤ 2τ`, so `eᶻ` stays finite in `f32`
/// for any valid τ (≤ 40).
///
/// # Shapes
/// - `z`, `t`: the same shape; returns a scalar.
pub fn binary_cross_entropy(z: &Tensor, t: &Tensor, class_balance: bool) -> Result<Tensor> {
    let softplus = |x: &Tensor| -> Result<Tensor> { Ok((x.exp()? + 1.0)?.log()?) };
    let pos = (t * softplus(&z.neg()?)?)?.sum_all()?;
    let not_t = (1.0 - t)?;
    let neg = (&not_t * softplus(z)?)?.sum_all()?;
    if class_balance {
        let tp = (t.sum_all()? + MASK_EPS)?;
        let tn = (not_t.sum_all()? + MASK_EPS)?;
        Ok((((pos / tp)? + (neg / tn)?)? * 0.5)?)
    } else {
        Ok(((pos + neg)? / t.elem_count() as f64)?)
    }
}

/// The defect-minus-normal logit margins `τ·(cos(f, p̂_d) − cos(f, p̂_n))` of unit-length
/// features against several one-prototype banks at once.
///
/// The head's output is unit-length, so each cosine is a dot product and the two fold into one
/// with the difference of the unit prototypes: one matmul gives what [`class_logits`] gives
/// (with one prototype per class) without normalising the features again. The gradient reaching
/// the head is the same, since the head's own normalisation already removes the radial part.
///
/// # Shapes
/// - `feats`: `(b, c, h, w)`, unit-length along `c`; returns `(b, k, h, w)` for `k` banks.
fn unit_margins(feats: &Tensor, banks: &[PrototypeBank], tau: f32) -> Result<Tensor> {
    let (b, c, h, w) = feats.dims4()?;
    let directions = banks
        .iter()
        .map(|bank| Ok((&bank.defect - &bank.normal)?))
        .collect::<Result<Vec<Tensor>>>()?;
    let directions = (Tensor::cat(&directions, 0)? * tau as f64)?;
    let k = directions.dim(0)?;
    Ok(directions
        .broadcast_matmul(&feats.reshape((b, c, h * w))?)?
        .reshape((b, k, h, w))?)
}

/// The loss of one episode under `head`.
pub fn episode_loss(
    head: &ProjectionHead,
    episode: &EpisodeTensors,
    config: &LossConfig,
) -> Result<LossParts> {
    let k = episode.defect_feats.dim(0)?;
    let n = episode
        .normal_feats
        .as_ref()
        .map(|t| t.dim(0))
        .transpose()?
        .unwrap_or(0);
    let q = episode.query_feats.dim(0)?;
    // One pass of the head over every image of the episode.
    let mut all = vec![&episode.defect_feats];
    if let Some(nf) = &episode.normal_feats {
        all.push(nf);
    }
    all.push(&episode.query_feats);
    let projected = head.forward(&Tensor::cat(&all, 0)?)?;
    let support = projected.narrow(0, 0, k)?;
    let normal = (n > 0).then(|| projected.narrow(0, k, n)).transpose()?;
    let query = projected.narrow(0, k + n, q)?;

    // Forward branch: prototypes from the supports (normal images inserted), query segmented.
    let bank = build_prototypes(
        &support,
        &episode.defect_masks,
        normal.as_ref(),
        &PrototypeConfig::default(),
    )?;
    let z = unit_margins(&query, std::slice::from_ref(&bank), config.tau)?;
    let query_loss = binary_cross_entropy(&z, &episode.query_masks, config.class_balance)?;

    // Reverse branch: each defect query's soft prediction becomes prototypes that must
    // segment the supports back (normal supports with all-zero targets).
    let mut total = query_loss.clone();
    let mut reverse_value = None;
    if config.reverse_weight > 0.0 && episode.defect_queries > 0 {
        let (targets_feats, targets_masks) = match &normal {
            Some(nf) => {
                let zeros = episode
                    .normal_feats
                    .as_ref()
                    .expect("normal features exist when projected ones do")
                    .narrow(1, 0, 1)?
                    .zeros_like()?;
                (
                    Tensor::cat(&[&support, nf], 0)?,
                    Tensor::cat(&[&episode.defect_masks, &zeros], 0)?,
                )
            }
            None => (support.clone(), episode.defect_masks.clone()),
        };
        let prob = ((z.neg()?.exp()? + 1.0)?.recip())?;
        let mut banks = Vec::new();
        for i in 0..episode.defect_queries {
            let qi = query.narrow(0, i, 1)?;
            let pi = prob.narrow(0, i, 1)?;
            if let Some(qbank) = query_prototypes(&qi, &pi)? {
                banks.push(qbank);
            }
        }
        let mut terms = Vec::with_capacity(banks.len());
        if !banks.is_empty() {
            // Every query's prototypes segment the supports in one matmul.
            let zs = unit_margins(&targets_feats, &banks, config.tau)?;
            for i in 0..banks.len() {
                terms.push(binary_cross_entropy(
                    &zs.narrow(1, i, 1)?,
                    &targets_masks,
                    config.class_balance,
                )?);
            }
        }
        if !terms.is_empty() {
            let count = terms.len() as f64;
            let reverse = (Tensor::stack(&terms, 0)?.sum_all()? / count)?;
            reverse_value = Some(reverse.to_scalar::<f32>()?);
            total = (total + (reverse * config.reverse_weight as f64)?)?;
        }
    }
    Ok(LossParts {
        query: query_loss.to_scalar::<f32>()?,
        reverse: reverse_value,
        total,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::model::HeadConfig;
    use crate::ops::l2_normalize;

    #[test]
    fn unit_margins_equal_the_class_logit_margin() {
        let dev = Device::Cpu;
        let f = l2_normalize(&Tensor::randn(0f32, 1.0, (2, 5, 3, 4), &dev).unwrap(), 1).unwrap();
        let bank = |seed: f32| {
            let d = Tensor::randn(seed, 1.0, (1, 5), &dev).unwrap();
            let n = Tensor::randn(-seed, 1.0, (1, 5), &dev).unwrap();
            PrototypeBank::new(d, n).unwrap()
        };
        let banks = [bank(0.5), bank(-1.0)];
        let z = unit_margins(&f, &banks, 20.0).unwrap();
        assert_eq!(z.dims(), [2, 2, 3, 4]);
        for (i, b) in banks.iter().enumerate() {
            let l = crate::guidance::class_logits(&f, b, 20.0).unwrap();
            let expect = (l.narrow(1, 1, 1).unwrap() - l.narrow(1, 0, 1).unwrap()).unwrap();
            let got = z.narrow(1, i, 1).unwrap();
            let diff = (got - expect).unwrap().abs().unwrap().max_all().unwrap();
            assert!(diff.to_scalar::<f32>().unwrap() < 1e-4);
        }
    }

    #[test]
    fn cross_entropy_matches_the_formula() {
        let dev = Device::Cpu;
        let z = Tensor::new(&[2f32, -1.0, 0.0, 3.0], &dev).unwrap();
        let t = Tensor::new(&[1f32, 0.0, 0.5, 0.0], &dev).unwrap();
        let sp = |x: f32| (1.0 + x.exp()).ln();
        let terms = [sp(-2.0), sp(-1.0), 0.5 * sp(0.0) + 0.5 * sp(0.0), sp(3.0)];
        let plain = binary_cross_entropy(&z, &t, false).unwrap();
        let expect = terms.iter().sum::<f32>() / 4.0;
        assert!((plain.to_scalar::<f32>().unwrap() - expect).abs() < 1e-5);
        let balanced = binary_cross_entropy(&z, &t, true).unwrap();
        let pos = sp(-2.0) + 0.5 * sp(0.0);
        let neg = sp(-1.0) + 0.5 * sp(0.0) + sp(3.0);
        let expect = 0.5 * (pos / 1.5 + neg / 2.5);
        assert!((balanced.to_scalar::<f32>().unwrap() - expect).abs() < 1e-4);
    }

    /// A few gradient steps on one episode lower its loss, and both terms get gradients.
    #[test]
    fn gradient_steps_lower_the_episode_loss() {
        let dev = Device::Cpu;
        let feats = |n: usize| {
            let t = Tensor::randn(0f32, 1.0, (n, 8, 6, 6), &dev).unwrap();
            l2_normalize(&t, 1).unwrap()
        };
        let mut mask = [0f32; 36];
        for i in [7, 8, 13, 14] {
            mask[i] = 1.0;
        }
        let masks = |n: usize| Tensor::from_vec(mask.repeat(n), (n, 1, 6, 6), &dev).unwrap();
        let mut qmask = masks(2).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        qmask.extend(vec![0f32; 36]);
        let episode = EpisodeTensors {
            defect_feats: feats(2),
            defect_masks: masks(2),
            normal_feats: Some(feats(2)),
            query_feats: feats(3),
            query_masks: Tensor::from_vec(qmask, (3, 1, 6, 6), &dev).unwrap(),
            defect_queries: 2,
        };
        let init = ProjectionHead::init(
            HeadConfig {
                channels: 8,
                hidden: 16,
            },
            1,
            &dev,
        )
        .unwrap();
        let vars = init.to_vars().unwrap();
        let cfg = LossConfig {
            tau: 20.0,
            reverse_weight: 1.0,
            class_balance: true,
        };
        let mut opt = super::super::optim::Optimizer::new(
            super::super::optim::OptimizerKind::AdamW,
            0.0,
            &vars,
        )
        .unwrap();
        let first = episode_loss(&ProjectionHead::from_vars(&vars), &episode, &cfg).unwrap();
        assert!(first.reverse.is_some());
        let start = first.total.to_scalar::<f32>().unwrap();
        for _ in 0..30 {
            let loss = episode_loss(&ProjectionHead::from_vars(&vars), &episode, &cfg).unwrap();
            let grads = loss.total.backward().unwrap();
            assert!(
                grads.get(vars[2].as_tensor()).is_some(),
                "W2 gets a gradient"
            );
            opt.step(&vars, &grads, 0.01).unwrap();
        }
        let end = episode_loss(&ProjectionHead::from_vars(&vars), &episode, &cfg)
            .unwrap()
            .total
            .to_scalar::<f32>()
            .unwrap();
        assert!(end < 0.8 * start, "loss {start} -> {end}");
    }
}
