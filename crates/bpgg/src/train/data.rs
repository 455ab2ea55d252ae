//! The base data of meta-training, encoded once: the backbone is frozen, so every image's
//! features are computed a single time and episodes are drawn from memory.

use std::path::PathBuf;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::data::image_io::{load_mask, load_rgb, ImageLimits};
use crate::data::mvtec::{MvtecCategory, Sample};
use crate::data::transform::{mask_to_tensor, resize_image, resize_mask};
use crate::model::Encoder;
use crate::prototype::mask_to_grid;
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// Share of each base type's images held out for validation when no validation type is
/// given.
pub const HOLDOUT_FRACTION: f64 = 0.2;

/// One category used as base data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainSource {
    /// The category folder (MVTec layout).
    pub dir: PathBuf,
    /// Defect types episodes are drawn from; empty means every type not in `val_types`.
    pub base_types: Vec<String>,
    /// Defect types used only for validation; empty means a held-out share of each base type.
    pub val_types: Vec<String>,
}

/// One encoded image.
#[derive(Debug, Clone)]
pub struct EncodedImage {
    pub sample: Sample,
    /// `(1, C, h, w)`, unit-length along `C`.
    pub features: Tensor,
    /// Ground truth on the feature grid (area share of defect pixels), `(1, 1, h, w)`.
    pub grid_mask: Tensor,
    /// Ground truth at the model size `(1, 1, S, S)`, `0.0` / `1.0`.
    pub mask: Tensor,
}

/// The defect images of one type in one category, as indices into [`TrainSet::images`].
#[derive(Debug, Clone)]
pub struct DefectPool {
    /// `category/type`.
    pub name: String,
    pub images: Vec<usize>,
    /// Index into [`TrainSet::normals`]: the normal pool of the same category.
    pub normals: usize,
}

/// Everything an episode can be drawn from.
#[derive(Debug)]
pub struct TrainSet {
    pub images: Vec<EncodedImage>,
    /// Pools episodes are trained on.
    pub train: Vec<DefectPool>,
    /// Pools validation episodes come from.
    pub val: Vec<DefectPool>,
    /// Defect-free images (`train/good`) of each category, as indices into `images`.
    pub normals: Vec<Vec<usize>>,
}

impl TrainSet {
    /// Opens every source, splits base and validation pools and encodes all images once,
    /// each resized to `image_size x image_size`. `on_progress(done, total)` is called after
    /// each encoded batch.
    pub fn build(
        sources: &[TrainSource],
        encoder: &Encoder,
        image_size: u32,
        limits: ImageLimits,
        seed: u64,
        mut on_progress: impl FnMut(usize, usize),
    ) -> Result<Self> {
        if sources.is_empty() {
            return Err(Error::InvalidConfig("no base data to train on".into()));
        }
        let mut samples: Vec<Sample> = Vec::new();
        let mut train = Vec::new();
        let mut val = Vec::new();
        let mut normals = Vec::new();
        for source in sources {
            let category = MvtecCategory::open(&source.dir)?;
            let known = category.defect_types();
            for t in source.base_types.iter().chain(&source.val_types) {
                category.defects_of(t)?;
            }
            if let Some(t) = source
                .base_types
                .iter()
                .find(|t| source.val_types.contains(t))
            {
                return Err(Error::InvalidConfig(format!(
                    "defect type `{t}` of {} is both a base and a validation type",
                    source.dir.display()
                )));
            }
            let base: Vec<String> = if source.base_types.is_empty() {
                known
                    .iter()
                    .filter(|t| !source.val_types.iter().any(|v| v == *t))
                    .map(|t| t.to_string())
                    .collect()
            } else {
                source.base_types.clone()
            };
            if base.is_empty() {
                return Err(Error::InvalidConfig(format!(
                    "{} has no defect type left to train on",
                    source.dir.display()
                )));
            }
            if category.train_good.is_empty() {
                return Err(Error::invalid_data(
                    &category.dir,
                    "train/good is empty: training inserts normal images into every episode",
                ));
            }
            let normal_pool = normals.len();
            let first = samples.len();
            samples.extend(category.train_good.iter().cloned());
            normals.push((first..samples.len()).collect::<Vec<_>>());

            let mut add_pool = |t: &str, list: &[Sample], into: &mut Vec<DefectPool>| {
                let first = samples.len();
                samples.extend(list.iter().cloned());
                into.push(DefectPool {
                    name: format!("{}/{t}", category.name),
                    images: (first..samples.len()).collect(),
                    normals: normal_pool,
                });
            };
            for t in &base {
                let all = category.defects_of(t)?;
                if source.val_types.is_empty() {
                    let mut order: Vec<usize> = (0..all.len()).collect();
                    SplitMix64::with_label(seed, &format!("holdout {}/{t}", category.name))
                        .shuffle(&mut order);
                    let held = ((all.len() as f64) * HOLDOUT_FRACTION).round() as usize;
                    let pick = |idx: &[usize]| -> Vec<Sample> {
                        let mut v: Vec<usize> = idx.to_vec();
                        v.sort_unstable();
                        v.into_iter().map(|i| all[i].clone()).collect()
                    };
                    add_pool(t, &pick(&order[held..]), &mut train);
                    add_pool(t, &pick(&order[..held]), &mut val);
                } else {
                    add_pool(t, all, &mut train);
                }
            }
            for t in &source.val_types {
                add_pool(t, category.defects_of(t)?, &mut val);
            }
        }

        let size = image_size;
        let total = samples.len();
        let mut images = Vec::with_capacity(total);
        const BATCH: usize = 8;
        for chunk in samples.chunks(BATCH) {
            let rgb = chunk
                .iter()
                .map(|s| load_rgb(&s.image, limits))
                .collect::<Result<Vec<_>>>()?;
            let square: Vec<_> = rgb.iter().map(|i| resize_image(i, size, size)).collect();
            let feats = encoder.encode(&square)?;
            let (_, _, h, w) = feats.dims4()?;
            for (i, (s, image)) in chunk.iter().zip(&rgb).enumerate() {
                let mask = match &s.mask {
                    Some(p) => {
                        let m = resize_mask(
                            &load_mask(p, Some(image.dimensions()), limits)?,
                            size,
                            size,
                        );
                        if m.defect_pixels() == 0 {
                            return Err(Error::invalid_data(
                                p,
                                format!("defect mask is empty at {size}x{size}"),
                            ));
                        }
                        m
                    }
                    None => crate::data::image_io::Mask::empty(size, size),
                };
                let mask = mask_to_tensor(&mask, encoder.device())?.unsqueeze(0)?;
                images.push(EncodedImage {
                    sample: s.clone(),
                    features: feats.narrow(0, i, 1)?.contiguous()?,
                    grid_mask: mask_to_grid(&mask, h, w)?,
                    mask,
                });
            }
            on_progress(images.len(), total);
        }
        Ok(Self {
            images,
            train,
            val,
            normals,
        })
    }

    /// The encoded images at `indices`, features and grid masks stacked.
    ///
    /// # Shapes
    /// - returns `(n, C, h, w)` and `(n, 1, h, w)`.
    pub fn stack(&self, indices: &[usize], flips: &[Flip]) -> Result<(Tensor, Tensor)> {
        let mut f = Vec::with_capacity(indices.len());
        let mut m = Vec::with_capacity(indices.len());
        for (k, &i) in indices.iter().enumerate() {
            let flip = flips.get(k).copied().unwrap_or_default();
            f.push(flip.apply(&self.images[i].features)?);
            m.push(flip.apply(&self.images[i].grid_mask)?);
        }
        Ok((Tensor::cat(&f, 0)?, Tensor::cat(&m, 0)?))
    }
}

/// A flip of an image and its mask (augmentation on the cached feature grid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flip {
    pub horizontal: bool,
    pub vertical: bool,
}

impl Flip {
    /// A random flip.
    pub fn random(rng: &mut SplitMix64) -> Self {
        Self {
            horizontal: rng.below(2) == 1,
            vertical: rng.below(2) == 1,
        }
    }

    /// Flips a `(b, c, h, w)` tensor.
    pub fn apply(self, t: &Tensor) -> Result<Tensor> {
        let mut out = t.clone();
        for (on, dim) in [(self.horizontal, 3), (self.vertical, 2)] {
            if on {
                let n = out.dim(dim)?;
                let idx: Vec<u32> = (0..n as u32).rev().collect();
                let idx = Tensor::from_vec(idx, n, out.device())?;
                out = out.index_select(&idx, dim)?;
            }
        }
        Ok(out)
    }
}

/// One drawn episode, as indices into [`TrainSet::images`].
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeDraw {
    pub pool: usize,
    pub defect_support: Vec<usize>,
    pub normal_support: Vec<usize>,
    pub queries: Vec<usize>,
    pub normal_queries: Vec<usize>,
}

/// How many images an episode holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpisodeShape {
    /// Defect supports K.
    pub shots: usize,
    /// Normal supports M (0 turns normal insertion off).
    pub normal_shots: usize,
    /// Defect queries.
    pub queries: usize,
    /// Normal queries (all-normal targets).
    pub normal_queries: usize,
}

impl TrainSet {
    /// Checks that every pool can fill an episode of `shape`.
    pub fn check(&self, shape: EpisodeShape) -> Result<()> {
        // Validation episodes take fewer queries when a held-out pool is small (at least one).
        let checks = [
            (&self.train, "base", shape.queries),
            (&self.val, "validation", 1),
        ];
        for (pools, what, min_queries) in checks {
            if pools.is_empty() {
                return Err(Error::InvalidConfig(format!("no {what} defect type")));
            }
            for pool in pools.iter() {
                let need = shape.shots + min_queries;
                if pool.images.len() < need {
                    return Err(Error::InvalidConfig(format!(
                        "{what} pool {} has {} images; an episode needs {need} ({} shots + \
                         {} queries)",
                        pool.name,
                        pool.images.len(),
                        shape.shots,
                        min_queries
                    )));
                }
                let n = self.normals[pool.normals].len();
                if n < shape.normal_shots + shape.normal_queries {
                    return Err(Error::InvalidConfig(format!(
                        "{} has {n} normal images; an episode needs {}",
                        pool.name,
                        shape.normal_shots + shape.normal_queries
                    )));
                }
            }
        }
        Ok(())
    }

    /// Draws an episode from `pools` (a pool uniformly, then images without replacement); a
    /// pool with fewer than `shots + queries` images gives the queries it has left.
    pub fn draw(
        &self,
        pools: &[DefectPool],
        shape: EpisodeShape,
        rng: &mut SplitMix64,
    ) -> EpisodeDraw {
        let pool_index = rng.below(pools.len());
        let pool = &pools[pool_index];
        let mut defects = pool.images.clone();
        rng.shuffle(&mut defects);
        let mut normals = self.normals[pool.normals].clone();
        rng.shuffle(&mut normals);
        let query_end = (shape.shots + shape.queries).min(defects.len());
        EpisodeDraw {
            pool: pool_index,
            defect_support: defects[..shape.shots].to_vec(),
            queries: defects[shape.shots..query_end].to_vec(),
            normal_support: normals[..shape.normal_shots].to_vec(),
            normal_queries: normals[shape.normal_shots..shape.normal_shots + shape.normal_queries]
                .to_vec(),
        }
    }
}
