//! Fitting: encode the supports once and keep what scoring needs.

use candle_core::{DType, Tensor};
use image::RgbImage;

use super::config::ModelConfig;
use super::encoder::Encoder;
use super::fitted::{FittedModel, ThresholdRule};
use crate::baseline::{leave_one_out_distances, MemoryBank};
use crate::data::image_io::{load_mask, load_rgb, ImageLimits, Mask};
use crate::data::transform::{mask_to_tensor, resize_mask};
use crate::data::Sample;
use crate::guidance::{knn_scale_from_normal, to_anomaly_map};
use crate::prototype::build_prototypes;
use crate::{Error, Result};

/// The support set of an episode: defect images with masks and normal images.
#[derive(Debug, Clone, Default)]
pub struct SupportSet {
    /// `(name, image, mask)`: the name (usually the file path) is used in error messages.
    pub defects: Vec<(String, RgbImage, Mask)>,
    /// `(name, image)`.
    pub normals: Vec<(String, RgbImage)>,
}

impl SupportSet {
    /// Reads the images (and the defect images' masks) of samples from a data set, checking
    /// each mask against its image. Defect samples without a mask are refused.
    pub fn load(defects: &[Sample], normals: &[Sample], limits: ImageLimits) -> Result<Self> {
        let mut set = SupportSet::default();
        for s in defects {
            let image = load_rgb(&s.image, limits)?;
            let mask_path = s.mask.as_ref().ok_or_else(|| {
                Error::invalid_data(
                    &s.image,
                    "a defect support needs a mask, and none was found",
                )
            })?;
            let mask = load_mask(mask_path, Some(image.dimensions()), limits)?;
            set.defects
                .push((mask_path.display().to_string(), image, mask));
        }
        for s in normals {
            set.normals
                .push((s.image.display().to_string(), load_rgb(&s.image, limits)?));
        }
        Ok(set)
    }
}

/// Encodes the supports and builds the model.
///
/// The default threshold is chosen from the supports themselves:
/// - with defect supports, it is the threshold that maximises pixel F1 over the model's own
///   maps of the supports (defect supports with their masks, normal supports all normal);
/// - without, it is the largest value of the normal supports' maps.
///
/// Maps of normal supports under `knn`/`hybrid` scoring are computed leave-one-out (each
/// normal image against the others), since an image is at distance zero from itself.
pub fn fit(encoder: &Encoder, supports: &SupportSet, config: &ModelConfig) -> Result<FittedModel> {
    config.validate()?;
    if encoder.image_size() != config.image_size {
        return Err(Error::InvalidConfig(format!(
            "encoder image size {} differs from the model's {}",
            encoder.image_size(),
            config.image_size
        )));
    }
    let (k, n) = (supports.defects.len(), supports.normals.len());
    let config = &ModelConfig {
        scoring: config.scoring.resolve(k > 0, n),
        ..config.clone()
    };
    if config.scoring.uses_prototypes() && k == 0 {
        return Err(Error::MissingSupports {
            scoring: config.scoring,
            needs: "at least one defect image with its mask (with normal images only, knn \
                    scoring works)"
                .into(),
            defects: true,
        });
    }
    if config.scoring.uses_memory_bank() && n < 2 {
        return Err(Error::MissingSupports {
            scoring: config.scoring,
            needs: format!("at least 2 normal images, got {n}"),
            defects: false,
        });
    }
    if k == 0 && n == 0 {
        return Err(Error::InvalidConfig("no support images".into()));
    }
    let size = config.image_size;
    let device = encoder.device();

    let mut defect_masks = Vec::with_capacity(k);
    for (name, image, mask) in &supports.defects {
        if (mask.width, mask.height) != image.dimensions() {
            return Err(Error::invalid_data(
                name,
                format!(
                    "mask is {}x{} but its image is {}x{}",
                    mask.width,
                    mask.height,
                    image.width(),
                    image.height()
                ),
            ));
        }
        if mask.defect_pixels() == 0 {
            return Err(Error::invalid_data(
                name,
                "mask of a defect support is empty (no pixel > 127)",
            ));
        }
        let resized = resize_mask(mask, size, size);
        // A defect smaller than one resized pixel would vanish: keep it at nearest's mercy
        // only if something survives, else refuse rather than learn nothing.
        if resized.defect_pixels() == 0 {
            return Err(Error::invalid_data(
                name,
                format!(
                    "the defect vanishes when the mask is resized to {size}x{size}; use a larger \
                     image size"
                ),
            ));
        }
        defect_masks.push(mask_to_tensor(&resized, device)?);
    }
    let defect_feats = if k > 0 {
        let images: Vec<RgbImage> = supports.defects.iter().map(|(_, i, _)| i.clone()).collect();
        Some((encoder.encode(&images)?, Tensor::stack(&defect_masks, 0)?))
    } else {
        None
    };
    let normal_feats = if n > 0 {
        let images: Vec<RgbImage> = supports.normals.iter().map(|(_, i)| i.clone()).collect();
        Some(encoder.encode(&images)?)
    } else {
        None
    };
    let mut model = fit_features(
        config,
        defect_feats.as_ref().map(|(f, m)| (f, m)),
        normal_feats.as_ref(),
    )?;
    model.head = encoder.head().cloned();
    Ok(model)
}

/// Builds the model from already encoded supports (what `eval` uses to encode each image once).
/// The returned model has no projection head; set [`FittedModel::head`] to the one the features
/// were encoded with before saving it.
///
/// # Shapes
/// - `defects`: features `(k, C, h, w)` and masks `(k, 1, S, S)` with `S = config.image_size`;
/// - `normals`: `(n, C, h, w)`.
pub fn fit_features(
    config: &ModelConfig,
    defects: Option<(&Tensor, &Tensor)>,
    normals: Option<&Tensor>,
) -> Result<FittedModel> {
    let normal_count = normals.map(|n| n.dims()[0]).unwrap_or(0);
    let config = &ModelConfig {
        scoring: config.scoring.resolve(defects.is_some(), normal_count),
        ..config.clone()
    };
    let prototypes = match (config.scoring.uses_prototypes(), defects) {
        (true, Some((f, m))) => Some(build_prototypes(f, m, normals, &config.prototype)?),
        (true, None) => {
            return Err(Error::MissingSupports {
                scoring: config.scoring,
                needs: "defect supports".into(),
                defects: true,
            })
        }
        (false, _) => None,
    };
    let (memory, loo) = match (config.scoring.uses_memory_bank(), normals) {
        (true, Some(nf)) => (
            Some(MemoryBank::new(nf, &config.knn)?),
            Some(leave_one_out_distances(nf, &config.knn)?),
        ),
        (true, None) => {
            return Err(Error::MissingSupports {
                scoring: config.scoring,
                needs: "normal supports".into(),
                defects: false,
            })
        }
        (false, _) => (None, None),
    };
    let knn_scale = match (&loo, config.scoring) {
        (Some(l), super::Scoring::Hybrid) => {
            Some(knn_scale_from_normal(l, config.hybrid.normal_quantile)?)
        }
        _ => None,
    };
    let reverse_supports = if config.reverse.mode != crate::guidance::ReverseMode::Off {
        defects.map(|(f, m)| -> Result<(Tensor, Tensor)> {
            match normals {
                Some(nf) => {
                    let (n, _, _, _) = nf.dims4()?;
                    let (_, _, sh, sw) = m.dims4()?;
                    let zeros = Tensor::zeros((n, 1, sh, sw), DType::F32, m.device())?;
                    Ok((Tensor::cat(&[f, nf], 0)?, Tensor::cat(&[m, &zeros], 0)?))
                }
                None => Ok((f.clone(), m.clone())),
            }
        })
    } else {
        None
    }
    .transpose()?;

    let mut model = FittedModel {
        config: config.clone(),
        prototypes,
        memory,
        knn_scale,
        reverse_supports,
        threshold: 0.5,
        threshold_rule: ThresholdRule::SupportF1,
        head: None,
    };

    // The default threshold, from the supports' own maps.
    let size = config.image_size as usize;
    let mut scores: Vec<f32> = Vec::new();
    let mut labels: Vec<bool> = Vec::new();
    if let Some((f, m)) = defects {
        let maps = model.score_features(f)?;
        scores.extend(maps.flatten_all()?.to_vec1::<f32>()?);
        labels.extend(
            m.flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(|v| v > 0.5),
        );
    }
    if let Some(nf) = normals {
        let raw = model.raw_scores(nf, loo.as_ref())?;
        let maps = to_anomaly_map(&raw, size, size, &config.map)?;
        let values = maps.flatten_all()?.to_vec1::<f32>()?;
        labels.extend(std::iter::repeat_n(false, values.len()));
        scores.extend(values);
    }
    if labels.iter().any(|&l| l) {
        model.threshold = bpgg_metrics::f1_max(&scores, &labels)?.threshold;
        model.threshold_rule = ThresholdRule::SupportF1;
    } else {
        model.threshold = scores.iter().copied().fold(f32::MIN, f32::max);
        model.threshold_rule = ThresholdRule::NormalMax;
    }
    Ok(model)
}
