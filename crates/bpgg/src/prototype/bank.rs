//! The prototype bank of an episode: defect and normal prototypes (`docs/ARCHITECTURE.md`, "The method").

use candle_core::{DType, Tensor};

use super::kmeans::{spherical_kmeans, KMeansConfig};
use super::masked_pool::{mask_to_grid, masked_average_pool_with, MaskPooling, MASK_EPS};
use crate::ops::{l2_normalize, pixel_rows};
use crate::{Error, Result};

/// Mixes the seed per class so defect and normal k-means draw different streams.
const NORMAL_SEED_SALT: u64 = 0x6E6F_726D_616C; // "normal"

/// How support features become prototypes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrototypeConfig {
    /// Prototypes per class; `1` is the paper (one masked average), more runs weighted
    /// spherical k-means over the masked pixels (ours). Default 1.
    pub prototypes_per_class: usize,
    /// Share of the normal prototype given to the normal supports; the rest goes to the
    /// non-defect pixels of the defect supports. Balanced per source, not per pixel, so many
    /// normal images do not drown the defect images' background. Default 0.5 (equal weight).
    /// When one source is empty the other gets everything.
    pub normal_source_weight: f32,
    /// Lloyd iterations of k-means (only when `prototypes_per_class > 1`). Default 20.
    pub kmeans_iters: usize,
    /// Seed of the k-means++ initialisation. Default 0.
    pub seed: u64,
    /// Where pooling happens for one prototype per class (k-means always works on the feature
    /// grid with area-averaged soft masks). Default [`MaskPooling::DownsampleMask`].
    pub pooling: MaskPooling,
}

impl Default for PrototypeConfig {
    fn default() -> Self {
        Self {
            prototypes_per_class: 1,
            normal_source_weight: 0.5,
            kmeans_iters: 20,
            seed: 0,
            pooling: MaskPooling::DownsampleMask,
        }
    }
}

impl PrototypeConfig {
    /// Checks `prototypes_per_class ≥ 1` and `normal_source_weight ∈ [0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if self.prototypes_per_class == 0 {
            return Err(Error::InvalidConfig(
                "prototypes per class must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.normal_source_weight) {
            return Err(Error::InvalidConfig(format!(
                "normal source weight must be in [0, 1], got {}",
                self.normal_source_weight
            )));
        }
        Ok(())
    }
}

/// Unit-norm prototypes of both classes. Both sets are non-empty and share the channel count
/// (guaranteed by [`PrototypeBank::new`] and [`build_prototypes`]); in normal-only episodes
/// (K = 0) there is no bank and scoring uses [`crate::baseline::MemoryBank`].
#[derive(Debug, Clone)]
pub struct PrototypeBank {
    /// `(kd, c)` defect prototypes, unit rows.
    pub defect: Tensor,
    /// `(kn, c)` normal prototypes, unit rows.
    pub normal: Tensor,
}

impl PrototypeBank {
    /// Checks shapes and L2-normalises the rows.
    ///
    /// # Shapes
    /// - `defect`: `(kd, c)`, `kd ≥ 1`; `normal`: `(kn, c)`, `kn ≥ 1`.
    pub fn new(defect: Tensor, normal: Tensor) -> Result<Self> {
        let (kd, cd) = defect.dims2()?;
        let (kn, cn) = normal.dims2()?;
        if kd == 0 || kn == 0 || cd != cn || cd == 0 {
            return Err(Error::ShapeMismatch(format!(
                "prototype bank: defect {:?} and normal {:?} must be (k ≥ 1, c) with the same c ≥ 1",
                defect.dims(),
                normal.dims()
            )));
        }
        Ok(Self {
            defect: l2_normalize(&defect.to_dtype(DType::F32)?, 1)?,
            normal: l2_normalize(&normal.to_dtype(DType::F32)?, 1)?,
        })
    }

    /// The feature dimension `c`.
    pub fn channels(&self) -> usize {
        self.defect.dims()[1]
    }
}

/// Builds the defect and normal prototypes of an episode.
///
/// - defect: masked average of the defect pixels of the defect supports;
/// - normal: `w · mean(normal supports) + (1 − w) · MAP(defect supports, 1 − mask)` with
///   `w = cfg.normal_source_weight` (a source without pixels hands its share to the other);
/// - with `prototypes_per_class > 1`: weighted spherical k-means over the pixels on the feature
///   grid, each pixel weighted by its soft (area-averaged) mask value divided by its source's
///   mask mass, times the source share — so a single centre would be the prototype above.
///
/// All prototypes are L2-normalised. K = 0 (no defect support, or masks without any defect
/// pixel) is an [`Error::InvalidConfig`]: BPGG scoring needs a defect prototype; use
/// [`crate::baseline::MemoryBank`] for normal-only episodes.
///
/// # Shapes
/// - `defect_feats`: `(k, c, h, w)`; `defect_masks`: `(k, 1, H, W)`, `f32` in `[0, 1]`.
/// - `normal_feats`: `(n, c, h, w)` or `None` when the episode has no normal support.
/// - returns a bank of `(kd, c)` and `(kn, c)` prototypes, `kd, kn ≤ prototypes_per_class`.
pub fn build_prototypes(
    defect_feats: &Tensor,
    defect_masks: &Tensor,
    normal_feats: Option<&Tensor>,
    cfg: &PrototypeConfig,
) -> Result<PrototypeBank> {
    cfg.validate()?;
    let (k, c, h, w) = defect_feats.dims4()?;
    let (mk, mc, _, _) = defect_masks.dims4()?;
    if k == 0 {
        return Err(Error::InvalidConfig(
            "BPGG prototypes need at least one defect support image (K ≥ 1); \
             use the k-NN memory bank for normal-only episodes"
                .into(),
        ));
    }
    if mk != k || mc != 1 {
        return Err(Error::ShapeMismatch(format!(
            "build_prototypes: defect features {:?} need masks (k={k}, 1, H, W), got {:?}",
            defect_feats.dims(),
            defect_masks.dims()
        )));
    }
    let normal_feats = match normal_feats {
        Some(n) if n.dims4()?.0 > 0 => {
            let (_, nc, nh, nw) = n.dims4()?;
            if (nc, nh, nw) != (c, h, w) {
                return Err(Error::ShapeMismatch(format!(
                    "build_prototypes: normal features {:?} do not match defect features {:?}",
                    n.dims(),
                    defect_feats.dims()
                )));
            }
            Some(n)
        }
        _ => None,
    };

    let grid_mask = mask_to_grid(defect_masks, h, w)?;
    let defect_mass = grid_mask.sum_all()?.to_scalar::<f32>()? as f64;
    if defect_mass <= MASK_EPS {
        return Err(Error::InvalidConfig(
            "the defect support masks contain no defect pixel: cannot build a defect prototype"
                .into(),
        ));
    }
    let background = (1.0 - &grid_mask)?;
    let background_mass = background.sum_all()?.to_scalar::<f32>()? as f64;
    let (share_normal, share_background) = source_shares(
        cfg.normal_source_weight,
        normal_feats.is_some(),
        background_mass,
    )?;

    if cfg.prototypes_per_class == 1 {
        let defect = masked_average_pool_with(defect_feats, defect_masks, cfg.pooling)?;
        let mut normal: Option<Tensor> = None;
        if share_background > 0.0 {
            let inverse = (1.0 - defect_masks.to_dtype(defect_feats.dtype())?)?;
            let p = masked_average_pool_with(defect_feats, &inverse, cfg.pooling)?;
            normal = Some(p.affine(share_background, 0.0)?);
        }
        if let Some(n) = normal_feats {
            // The mean over images and pixels, reducing the contiguous pixel axis first.
            let (nn, nc, nh, nw) = n.dims4()?;
            let p = n
                .contiguous()?
                .reshape((nn, nc, nh * nw))?
                .sum(2)?
                .sum(0)?
                .affine(share_normal / (nn * nh * nw) as f64, 0.0)?;
            normal = Some(match normal {
                Some(q) => (q + p)?,
                None => p,
            });
        }
        let normal = normal.expect("source_shares guarantees one source");
        return PrototypeBank::new(defect.unsqueeze(0)?, normal.unsqueeze(0)?);
    }

    // Several prototypes per class: weighted spherical k-means on the feature grid.
    let kmeans = |seed: u64| KMeansConfig {
        k: cfg.prototypes_per_class,
        iters: cfg.kmeans_iters,
        seed,
    };
    let rows = pixel_rows(defect_feats)?;
    let mask_values = grid_mask.flatten_all()?.to_vec1::<f32>()?;
    let defect_weights: Vec<f32> = mask_values
        .iter()
        .map(|&m| (m as f64 / defect_mass) as f32)
        .collect();
    let defect = spherical_kmeans(&rows, &defect_weights, &kmeans(cfg.seed))?;

    let mut normal_rows = Vec::new();
    let mut normal_weights = Vec::new();
    if share_background > 0.0 {
        normal_rows.push(rows.clone());
        normal_weights.extend(
            mask_values
                .iter()
                .map(|&m| ((1.0 - m as f64) * share_background / background_mass) as f32),
        );
    }
    if let Some(n) = normal_feats {
        let r = pixel_rows(n)?;
        let count = r.dims2()?.0;
        normal_rows.push(r);
        normal_weights.extend(std::iter::repeat_n(
            (share_normal / count as f64) as f32,
            count,
        ));
    }
    let normal_rows = Tensor::cat(&normal_rows, 0)?;
    let normal = spherical_kmeans(
        &normal_rows,
        &normal_weights,
        &kmeans(cfg.seed ^ NORMAL_SEED_SALT),
    )?;
    PrototypeBank::new(defect, normal)
}

/// The shares `(normal supports, defect-support background)` of the normal prototype.
fn source_shares(weight: f32, has_normal: bool, background_mass: f64) -> Result<(f64, f64)> {
    let has_background = background_mass > MASK_EPS;
    match (has_normal, has_background) {
        (true, true) => Ok((weight as f64, 1.0 - weight as f64)),
        (true, false) => Ok((1.0, 0.0)),
        (false, true) => Ok((0.0, 1.0)),
        (false, false) => Err(Error::InvalidConfig(
            "no normal pixel in the support (masks cover everything and no normal image): \
             cannot build a normal prototype"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Features that are e0 where `defect` is set and `background` elsewhere, on an 8x8 grid,
    /// with a 32x32 mask whose left half is defect.
    fn support(background: [f32; 3]) -> (Tensor, Tensor) {
        let dev = Device::Cpu;
        let mut f = vec![0f32; 3 * 64];
        for y in 0..8 {
            for x in 0..8 {
                let v = if x < 4 { [1.0, 0.0, 0.0] } else { background };
                for ch in 0..3 {
                    f[ch * 64 + y * 8 + x] = v[ch];
                }
            }
        }
        let feats = Tensor::from_vec(f, (1, 3, 8, 8), &dev).unwrap();
        let m: Vec<f32> = (0..32 * 32)
            .map(|i| if i % 32 < 16 { 1.0 } else { 0.0 })
            .collect();
        (feats, Tensor::from_vec(m, (1, 1, 32, 32), &dev).unwrap())
    }

    fn normal_images(v: [f32; 3]) -> Tensor {
        Tensor::from_vec(v.to_vec(), (1, 3, 1, 1), &Device::Cpu)
            .unwrap()
            .broadcast_as((2, 3, 8, 8))
            .unwrap()
            .contiguous()
            .unwrap()
    }

    fn row(t: &Tensor) -> Vec<f32> {
        t.to_vec2::<f32>().unwrap().remove(0)
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4)
    }

    #[test]
    fn one_prototype_per_class() {
        let (f, m) = support([0.0, 1.0, 0.0]);
        let bank = build_prototypes(&f, &m, None, &PrototypeConfig::default()).unwrap();
        assert!(close(&row(&bank.defect), &[1.0, 0.0, 0.0]));
        assert!(close(&row(&bank.normal), &[0.0, 1.0, 0.0]));
    }

    #[test]
    fn normal_source_weight_balances_sources() {
        // Defect-support background is e1, normal supports are e2 (2 images, 128 pixels vs
        // 32 background pixels: per-pixel pooling would give 0.8/0.2, per source it is w).
        let (f, m) = support([0.0, 1.0, 0.0]);
        let n = normal_images([0.0, 0.0, 1.0]);
        for (w, expected) in [(0.5f32, [0.0, 0.5f32, 0.5]), (0.8, [0.0, 0.2, 0.8])] {
            let cfg = PrototypeConfig {
                normal_source_weight: w,
                ..Default::default()
            };
            let bank = build_prototypes(&f, &m, Some(&n), &cfg).unwrap();
            let norm = (expected[1].powi(2) + expected[2].powi(2)).sqrt();
            let e: Vec<f32> = expected.iter().map(|v| v / norm).collect();
            assert!(
                close(&row(&bank.normal), &e),
                "w={w}: {:?}",
                row(&bank.normal)
            );
        }
    }

    #[test]
    fn kmeans_prototypes_split_a_two_mode_background() {
        // Background alternates e1 / e2 by row: two normal prototypes find both.
        let (f, m) = support([0.0, 1.0, 0.0]);
        let mut flat = f.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for y in (0..8).step_by(2) {
            for x in 4..8 {
                flat[64 + y * 8 + x] = 0.0;
                flat[2 * 64 + y * 8 + x] = 1.0;
            }
        }
        let f = Tensor::from_vec(flat, (1, 3, 8, 8), &Device::Cpu).unwrap();
        let cfg = PrototypeConfig {
            prototypes_per_class: 2,
            ..Default::default()
        };
        let bank = build_prototypes(&f, &m, None, &cfg).unwrap();
        assert_eq!(bank.defect.dims2().unwrap(), (1, 3)); // one distinct defect feature
        let mut normals = bank.normal.to_vec2::<f32>().unwrap();
        normals.sort_by(|a, b| a[1].total_cmp(&b[1]));
        assert!(close(&normals[0], &[0.0, 0.0, 1.0]) && close(&normals[1], &[0.0, 1.0, 0.0]));
    }

    #[test]
    fn no_defect_support_is_a_config_error() {
        let f = Tensor::zeros((0, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let m = Tensor::zeros((0, 1, 32, 32), DType::F32, &Device::Cpu).unwrap();
        let r = build_prototypes(&f, &m, None, &PrototypeConfig::default());
        assert!(matches!(r, Err(Error::InvalidConfig(_))));
        let (f, m) = support([0.0, 1.0, 0.0]);
        let empty = m.zeros_like().unwrap();
        let r = build_prototypes(&f, &empty, None, &PrototypeConfig::default());
        assert!(matches!(r, Err(Error::InvalidConfig(_))));
    }

    #[test]
    fn invalid_config_is_rejected() {
        let cfg = PrototypeConfig {
            normal_source_weight: 1.5,
            ..Default::default()
        };
        assert!(cfg.validate().is_err());
    }
}
