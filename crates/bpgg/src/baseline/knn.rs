//! A PatchCore-style memory bank of pixel features (normal ones; defect ones for the defect
//! bank of `hybrid` scoring) and its nearest-neighbour distance.
//!
//! Distance: `1 − max_j cos(f_q, m_j)`, in `[0, 2]`. For unit vectors this is `½‖f_q − m_j‖²`,
//! so the nearest neighbour is the same as under L2 on normalised features, and it comes out
//! of a matrix product. The search is exact and blocked (`kernels::nearest`): on the CPU in
//! cache-sized tiles with a running maximum of the similarity; elsewhere in candle matmuls of
//! `chunk_rows²` values. Time grows linearly with the bank (the number of normal pixels).

use candle_core::{DType, Tensor};

use crate::kernels::{nearest, Nearest};
use crate::ops::l2_normalize;
use crate::ops::pixel_rows;
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// Settings of the memory bank.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnConfig {
    /// Keep at most this many bank features, drawn uniformly without replacement (seeded);
    /// `None` keeps all. Default `None`.
    pub max_bank: Option<usize>,
    /// Seed of the subsampling. Default 0.
    pub seed: u64,
    /// Rows per matmul block, for query and bank alike, on devices other than the CPU: a block
    /// holds `chunk_rows²` floats (4096 → 64 MiB). The CPU search works in cache-sized tiles.
    /// Default 4096.
    pub chunk_rows: usize,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self {
            max_bank: None,
            seed: 0,
            chunk_rows: 4096,
        }
    }
}

impl KnnConfig {
    /// Checks `max_bank ≥ 1` when set and `chunk_rows ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        if self.max_bank == Some(0) {
            return Err(Error::InvalidConfig(
                "k-NN memory bank size must be at least 1".into(),
            ));
        }
        if self.chunk_rows == 0 {
            return Err(Error::InvalidConfig(
                "k-NN chunk size must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Unit-norm pixel features to compare query pixels with.
#[derive(Debug, Clone)]
pub struct MemoryBank {
    features: Tensor,
    chunk_rows: usize,
}

impl MemoryBank {
    /// A bank of every pixel of the normal supports (or a seeded random subset of
    /// `cfg.max_bank` of them).
    ///
    /// # Shapes
    /// - `normal_feats`: `(n, c, h, w)`, `n ≥ 1`.
    pub fn new(normal_feats: &Tensor, cfg: &KnnConfig) -> Result<Self> {
        cfg.validate()?;
        let (n, _, _, _) = normal_feats.dims4()?;
        if n == 0 {
            return Err(Error::InvalidConfig(
                "the k-NN memory bank needs at least one normal support image".into(),
            ));
        }
        Self::from_rows(&pixel_rows(normal_feats)?, cfg)
    }

    /// A bank from feature rows.
    ///
    /// # Shapes
    /// - `rows`: `(m, c)`, `m ≥ 1`.
    pub fn from_rows(rows: &Tensor, cfg: &KnnConfig) -> Result<Self> {
        cfg.validate()?;
        let (m, c) = rows.dims2()?;
        if m == 0 || c == 0 {
            return Err(Error::ShapeMismatch(format!(
                "memory bank rows must be (m ≥ 1, c ≥ 1), got {:?}",
                rows.dims()
            )));
        }
        let rows = match cfg.max_bank {
            Some(keep) if keep < m => {
                let idx = sample_without_replacement(m, keep, cfg.seed);
                let idx = Tensor::from_vec(idx, keep, rows.device())?;
                rows.index_select(&idx, 0)?
            }
            _ => rows.clone(),
        };
        Ok(Self {
            features: l2_normalize(&rows.to_dtype(DType::F32)?, 1)?,
            chunk_rows: cfg.chunk_rows,
        })
    }

    /// Number of bank features.
    pub fn len(&self) -> usize {
        self.features.dims()[0]
    }

    /// Always false: a bank holds at least one feature.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bank, unit rows.
    ///
    /// # Shapes
    /// - returns `(m, c)`.
    pub fn features(&self) -> &Tensor {
        &self.features
    }

    /// Distance of every query pixel to its nearest bank feature, `1 − max cos`.
    ///
    /// # Shapes
    /// - `query_feats`: `(b, c, h, w)`.
    /// - returns `(b, 1, h, w)`, values in `[0, 2]`.
    pub fn score(&self, query_feats: &Tensor) -> Result<Tensor> {
        let (b, _, h, w) = query_feats.dims4()?;
        Ok(self
            .score_rows(&pixel_rows(query_feats)?)?
            .reshape((b, 1, h, w))?)
    }

    /// Distance of every feature row to its nearest bank feature, `1 − max cos` (rows need not
    /// be unit).
    ///
    /// # Shapes
    /// - `rows`: `(r, c)`; returns `(r)`, values in `[0, 2]`.
    pub fn score_rows(&self, rows: &Tensor) -> Result<Tensor> {
        let (_, c) = rows.dims2()?;
        let bank_c = self.features.dims()[1];
        if c != bank_c {
            return Err(Error::ShapeMismatch(format!(
                "k-NN score: query has {c} channels, the bank {bank_c}"
            )));
        }
        let rows = l2_normalize(&rows.to_dtype(DType::F32)?, 1)?;
        let best = self.max_similarity(&rows)?;
        Ok((1.0 - best)?.maximum(0.0)?)
    }

    /// The largest cosine similarity of each (unit) row with the bank.
    ///
    /// # Shapes
    /// - `rows`: `(r, c)`; returns `(r)`.
    fn max_similarity(&self, rows: &Tensor) -> Result<Tensor> {
        nearest(rows, &self.features, Nearest::MaxDot, self.chunk_rows)
    }
}

/// `keep` distinct indices of `0..m`, sorted (partial Fisher–Yates on a SplitMix64 stream).
fn sample_without_replacement(m: usize, keep: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    let mut idx: Vec<u32> = (0..m as u32).collect();
    for i in 0..keep {
        let j = i + rng.below(m - i);
        idx.swap(i, j);
    }
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn feats(seed: u64, n: usize) -> Tensor {
        let mut rng = SplitMix64::new(seed);
        let v: Vec<f32> = (0..n * 4 * 3 * 5)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        Tensor::from_vec(v, (n, 4, 3, 5), &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn distance_is_zero_on_bank_members() {
        let f = feats(1, 2);
        // Small chunks so several query and bank blocks are combined.
        let cfg = KnnConfig {
            chunk_rows: 7,
            ..Default::default()
        };
        let bank = MemoryBank::new(&f, &cfg).unwrap();
        assert_eq!(bank.len(), 30);
        let d = bank.score(&f.narrow(0, 1, 1).unwrap()).unwrap();
        assert_eq!(d.dims4().unwrap(), (1, 1, 3, 5));
        assert!(values(&d).iter().all(|v| v.abs() < 1e-5));
    }

    #[test]
    fn chunked_equals_brute_force() {
        let bank_f = feats(2, 3);
        let q = feats(3, 2);
        let small = MemoryBank::new(
            &bank_f,
            &KnnConfig {
                chunk_rows: 5,
                ..Default::default()
            },
        )
        .unwrap()
        .score(&q)
        .unwrap();
        let whole = MemoryBank::new(&bank_f, &KnnConfig::default())
            .unwrap()
            .score(&q)
            .unwrap();
        // Brute force on the host.
        let b = l2_normalize(&pixel_rows(&bank_f).unwrap(), 1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let r = l2_normalize(&pixel_rows(&q).unwrap(), 1)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let brute: Vec<f32> = r
            .iter()
            .map(|x| {
                let best = b
                    .iter()
                    .map(|y| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>())
                    .fold(f32::MIN, f32::max);
                (1.0 - best).max(0.0)
            })
            .collect();
        for ((s, w), e) in values(&small).iter().zip(values(&whole)).zip(brute) {
            assert!((s - e).abs() < 1e-5 && (w - e).abs() < 1e-5);
        }
    }

    #[test]
    fn subsampling_is_seeded_and_bounded() {
        let f = feats(4, 3);
        let cfg = KnnConfig {
            max_bank: Some(10),
            seed: 9,
            ..Default::default()
        };
        let a = MemoryBank::new(&f, &cfg).unwrap();
        let b = MemoryBank::new(&f, &cfg).unwrap();
        assert_eq!(a.len(), 10);
        assert_eq!(values(a.features()), values(b.features()));
        let idx = sample_without_replacement(45, 10, 9);
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
    }
}
