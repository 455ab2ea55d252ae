//! Weighted spherical k-means (cosine similarity, unit-norm centres) with seeded k-means++
//! initialisation (Arthur & Vassilvitskii 2007), used for several prototypes per class.

use candle_core::{DType, Device, Tensor};

use crate::ops::l2_normalize;
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// Settings of [`spherical_kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansConfig {
    /// Number of centres wanted (fewer are returned when the data has fewer distinct points).
    /// Default 2.
    pub k: usize,
    /// Maximum Lloyd iterations after initialisation; stops early when assignments settle.
    /// Default 20.
    pub iters: usize,
    /// Seed of the k-means++ sampling. Default 0.
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self {
            k: 2,
            iters: 20,
            seed: 0,
        }
    }
}

impl KMeansConfig {
    /// Checks `k ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::InvalidConfig("k-means: k must be at least 1".into()));
        }
        Ok(())
    }
}

/// Cosine distance below which a point counts as a copy of a chosen centre in k-means++.
const DUPLICATE_DISTANCE: f64 = 1e-6;

/// Weighted spherical k-means: points and centres are compared by cosine similarity, each centre
/// is the L2-normalised weighted sum of its points. Initialisation is k-means++ with a
/// SplitMix64 stream seeded by `cfg.seed`: the first centre is drawn with probability ∝ weight,
/// each next one ∝ `weight · (1 − cos)²` to the nearest chosen centre. Points of zero weight
/// are ignored. An emptied cluster keeps its previous centre.
///
/// # Shapes
/// - `points`: `(p, c)` (normalised internally).
/// - `weights`: `p` non-negative values.
/// - returns `(k', c)` unit rows, `1 ≤ k' ≤ k` (`k' < k` when fewer distinct points exist).
pub fn spherical_kmeans(points: &Tensor, weights: &[f32], cfg: &KMeansConfig) -> Result<Tensor> {
    cfg.validate()?;
    let (p, c) = points.dims2()?;
    if weights.len() != p {
        return Err(Error::ShapeMismatch(format!(
            "spherical_kmeans: {p} points but {} weights",
            weights.len()
        )));
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::InvalidConfig(
            "spherical_kmeans: weights must be finite and non-negative".into(),
        ));
    }
    let device = points.device().clone();
    // Keep only points that carry weight.
    let keep: Vec<u32> = (0..p as u32)
        .filter(|&i| weights[i as usize] > 0.0)
        .collect();
    if keep.is_empty() {
        return Err(Error::InvalidConfig(
            "spherical_kmeans: all weights are zero".into(),
        ));
    }
    let w: Vec<f32> = keep.iter().map(|&i| weights[i as usize]).collect();
    let idx = Tensor::from_slice(&keep, keep.len(), &device)?;
    let x = l2_normalize(&points.to_dtype(DType::F32)?.index_select(&idx, 0)?, 1)?;
    let n = keep.len();

    // k-means++ initialisation.
    let mut rng = SplitMix64::new(cfg.seed);
    let mut chosen = vec![sample(
        &w.iter().map(|&v| v as f64).collect::<Vec<_>>(),
        &mut rng,
    )];
    let mut nearest = distances_to(&x, chosen[0])?;
    while chosen.len() < cfg.k {
        let score: Vec<f64> = nearest
            .iter()
            .zip(&w)
            .map(|(&d, &wi)| {
                let d = if d < DUPLICATE_DISTANCE { 0.0 } else { d };
                wi as f64 * d * d
            })
            .collect();
        if score.iter().sum::<f64>() <= 0.0 {
            break;
        }
        let next = sample(&score, &mut rng);
        chosen.push(next);
        for (d, e) in nearest.iter_mut().zip(distances_to(&x, next)?) {
            *d = d.min(e);
        }
    }
    let sel = Tensor::from_slice(
        &chosen.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        chosen.len(),
        &device,
    )?;
    let mut centres = x.index_select(&sel, 0)?;
    let k = chosen.len();

    // Lloyd iterations.
    let mut assignment: Vec<u32> = vec![u32::MAX; n];
    for _ in 0..cfg.iters {
        let new_assignment = x
            .matmul(&centres.t()?)?
            .argmax(1)?
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?;
        if new_assignment == assignment {
            break;
        }
        assignment = new_assignment;
        let mut onehot = vec![0f32; k * n];
        let mut mass = vec![0f32; k];
        for (i, &a) in assignment.iter().enumerate() {
            onehot[a as usize * n + i] = w[i];
            mass[a as usize] += w[i];
        }
        let onehot = Tensor::from_vec(onehot, (k, n), &device)?;
        let sums = l2_normalize(&onehot.matmul(&x)?, 1)?;
        let keep_old: Vec<u8> = mass.iter().map(|&m| u8::from(m <= 0.0)).collect();
        let keep_old = Tensor::from_vec(keep_old, (k, 1), &device)?.broadcast_as((k, c))?;
        centres = keep_old.where_cond(&centres, &sums)?;
    }
    Ok(centres)
}

/// Cosine distances `1 − cos` of every (unit) row of `x` to row `i`, on the host.
fn distances_to(x: &Tensor, i: usize) -> Result<Vec<f64>> {
    let centre = x.narrow(0, i, 1)?;
    let sims = x
        .matmul(&centre.t()?)?
        .flatten_all()?
        .to_device(&Device::Cpu)?;
    Ok(sims
        .to_vec1::<f32>()?
        .into_iter()
        .map(|s| (1.0 - s as f64).max(0.0))
        .collect())
}

/// Draws an index with probability proportional to `score` (`Σ score > 0`).
fn sample(score: &[f64], rng: &mut SplitMix64) -> usize {
    let total: f64 = score.iter().sum();
    let mut target = rng.next_f64() * total;
    for (i, &s) in score.iter().enumerate() {
        if s > 0.0 {
            if target < s {
                return i;
            }
            target -= s;
        }
    }
    // Rounding left `target` just past the end: take the last point with weight.
    score.iter().rposition(|&s| s > 0.0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 points around e0 and 20 around e1 (in 3-D), slightly perturbed.
    fn two_clusters() -> Tensor {
        let mut v = Vec::new();
        for i in 0..40 {
            let eps = 0.05 * ((i % 7) as f32 - 3.0) / 3.0;
            if i % 2 == 0 {
                v.extend([1.0, eps, 0.02]);
            } else {
                v.extend([eps, 1.0, -0.02]);
            }
        }
        Tensor::from_vec(v, (40, 3), &Device::Cpu).unwrap()
    }

    #[test]
    fn finds_two_obvious_clusters() {
        let x = two_clusters();
        for seed in 0..5 {
            let cfg = KMeansConfig {
                k: 2,
                iters: 10,
                seed,
            };
            let c = spherical_kmeans(&x, &[1.0; 40], &cfg).unwrap();
            let rows = c.to_vec2::<f32>().unwrap();
            assert_eq!(rows.len(), 2);
            let mut firsts: Vec<f32> = rows.iter().map(|r| r[0]).collect();
            firsts.sort_by(f32::total_cmp);
            assert!(firsts[0] < 0.1 && firsts[1] > 0.99, "seed {seed}: {rows:?}");
        }
    }

    #[test]
    fn same_seed_same_result() {
        let x = two_clusters();
        let cfg = KMeansConfig::default();
        let a = spherical_kmeans(&x, &[1.0; 40], &cfg).unwrap();
        let b = spherical_kmeans(&x, &[1.0; 40], &cfg).unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    }

    #[test]
    fn fewer_distinct_points_give_fewer_centres() {
        let x = Tensor::from_vec(vec![1f32, 0.0, 2.0, 0.0], (2, 2), &Device::Cpu).unwrap();
        let cfg = KMeansConfig {
            k: 3,
            ..Default::default()
        };
        let c = spherical_kmeans(&x, &[1.0, 1.0], &cfg).unwrap();
        assert_eq!(c.dims2().unwrap(), (1, 2));
    }

    #[test]
    fn zero_weights_are_ignored() {
        let x = two_clusters();
        let w: Vec<f32> = (0..40)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let c = spherical_kmeans(&x, &w, &KMeansConfig::default()).unwrap();
        for r in c.to_vec2::<f32>().unwrap() {
            assert!(r[0] > 0.99);
        }
    }
}
