//! Fitting: encode the supports once and keep what scoring needs.

use candle_core::{DType, Tensor};
use image::RgbImage;

use super::config::{ModelConfig, Scoring};
use super::encoder::Encoder;
use super::fitted::{BankDistances, FittedModel, ThresholdRule};
use super::image_score::{image_threshold, top_mean};
use super::tiling::{max_hw, stack_reflect, PreparedImage};
use crate::baseline::{bank_of, leave_one_out_distances, BankSource};
use crate::data::image_io::{load_mask, load_rgb, ImageLimits, Mask};
use crate::data::transform::{crop_reflect, mask_to_tensor};
use crate::data::{Flip, Sample};
use crate::guidance::knn_scale_from_normal;
use crate::prototype::{background_cells, build_prototypes, defect_cells, mask_to_grid};
use crate::{Error, Result, Warning};

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
    /// each mask against its image. Defect samples without a mask are refused; a defect sample
    /// whose mask has no defect pixel is left out with a warning (see
    /// [`SupportSet::remove_empty_masks`]).
    pub fn load(
        defects: &[Sample],
        normals: &[Sample],
        limits: ImageLimits,
    ) -> Result<(Self, Vec<Warning>)> {
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
        let warnings = set.remove_empty_masks();
        Ok((set, warnings))
    }

    /// Leaves out the defect supports whose mask has no defect pixel (nothing to learn a defect
    /// from), with one warning naming each.
    pub fn remove_empty_masks(&mut self) -> Vec<Warning> {
        let mut warnings = Vec::new();
        self.defects.retain(|(name, _, mask)| {
            let keep = mask.defect_pixels() > 0;
            if !keep {
                warnings.push(Warning::new(
                    name,
                    "defect support left out: its mask has no defect pixel (none > 127)",
                ));
            }
            keep
        });
        warnings
    }
}

/// Encodes the supports and builds the model (see [`fit_features`] for what is built and how
/// the thresholds are chosen).
pub fn fit(encoder: &Encoder, supports: &SupportSet, config: &ModelConfig) -> Result<FittedModel> {
    config.validate()?;
    let (k, n) = (supports.defects.len(), supports.normals.len());
    let config = &ModelConfig {
        scoring: config.scoring.resolve(k > 0),
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
    if k == 0 && n == 0 {
        return Err(Error::InvalidConfig("no support images".into()));
    }
    let mut defect_feats = Vec::with_capacity(k);
    let mut defect_masks = Vec::with_capacity(k);
    let mut defect_prepared = Vec::with_capacity(k);
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
                "mask of a defect support is empty (no pixel > 127); leave it out \
                 (SupportSet::remove_empty_masks)",
            ));
        }
        let prepared = PreparedImage::new(image, &config.size, config.tile.as_ref())?;
        defect_feats.push(encoder.encode_prepared(&prepared)?);
        let m = prepared.layout.prepare_mask(mask);
        defect_masks.push(mask_to_tensor(&m, encoder.device())?.unsqueeze(0)?);
        defect_prepared.push(prepared);
    }
    let normal_prepared = supports
        .normals
        .iter()
        .map(|(_, image)| PreparedImage::new(image, &config.size, config.tile.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let normal_feats = normal_prepared
        .iter()
        .map(|p| encoder.encode_prepared(p))
        .collect::<Result<Vec<_>>>()?;
    let (defects, normals) = stack_supports(&defect_feats, &defect_masks, &normal_feats)?;
    let flipped = if config.flip_supports {
        let all: Vec<&PreparedImage> = defect_prepared.iter().chain(&normal_prepared).collect();
        flipped_stacks(
            &all,
            |p, flip| encode_flipped(encoder, p, flip),
            &defect_feats,
            &normal_feats,
        )?
    } else {
        Vec::new()
    };
    let encoded = EncodedSupports {
        defects,
        normals,
        flipped,
    };
    let mut model = fit_features(config, &encoded)?;
    model.head = encoder.head().cloned();
    Ok(model)
}

/// Supports already encoded: what [`fit_features`] builds a model from (`eval` encodes each
/// image once and assembles these per episode).
#[derive(Debug, Clone, Default)]
pub struct EncodedSupports {
    /// Defect supports: features `(k, C, h, w)` and masks `(k, 1, 8h, 8w)` (the padded
    /// working size, [`super::TileLayout::prepare_mask`]).
    pub defects: Option<(Tensor, Tensor)>,
    /// Normal supports: features `(n, C, h, w)`.
    pub normals: Option<Tensor>,
    /// Features of flipped copies of the supports, one `(k + n, C, h, w)` tensor per flip, the
    /// defect supports first ([`encode_flipped`], [`stack_flipped`]); their pixels join the memory banks. Empty:
    /// no copies.
    pub flipped: Vec<(Flip, Tensor)>,
}

/// The features of a prepared support seen in a mirror, brought back to the original's cells:
/// the padded working image is flipped and encoded (so its grid is exactly the original's,
/// mirrored), then the grid is flipped back. Cell `(y, x)` of the result is the mirrored view
/// of cell `(y, x)` of the original.
///
/// # Shapes
/// - returns `(1, C, gh, gw)`, the original's grid.
pub(crate) fn encode_flipped(
    encoder: &Encoder,
    image: &PreparedImage,
    flip: Flip,
) -> Result<Tensor> {
    let (pw, ph) = image.layout.padded;
    let padded = crop_reflect(&image.input, 0, 0, pw, ph);
    let mirrored = PreparedImage {
        input: flip.image(&padded),
        layout: super::TileLayout {
            work: image.layout.padded,
            ..image.layout.clone()
        },
    };
    flip_grid(&encoder.encode_prepared(&mirrored)?, flip)
}

/// Flips a `(b, C, h, w)` grid left-right or upside-down.
pub(crate) fn flip_grid(grid: &Tensor, flip: Flip) -> Result<Tensor> {
    let dim = match flip {
        Flip::Horizontal => 3,
        Flip::Vertical => 2,
    };
    let n = grid.dim(dim)?;
    let index = Tensor::from_vec((0..n as u32).rev().collect::<Vec<u32>>(), n, grid.device())?;
    Ok(grid.index_select(&index, dim)?.contiguous()?)
}

/// The flipped supports' stacks, one per [`Flip`]: `flipped_grid` gives each support's grid of
/// features flipped (`supports` in the order of `defect_feats` then `normal_feats`), which
/// [`stack_flipped`] pads as the originals were. `fit` encodes the grids, `eval` reads them from
/// its cache.
pub(crate) fn flipped_stacks<S>(
    supports: &[S],
    mut flipped_grid: impl FnMut(&S, Flip) -> Result<Tensor>,
    defect_feats: &[Tensor],
    normal_feats: &[Tensor],
) -> Result<Vec<(Flip, Tensor)>> {
    Flip::BOTH
        .iter()
        .map(|&flip| {
            let grids = supports
                .iter()
                .map(|s| flipped_grid(s, flip))
                .collect::<Result<Vec<_>>>()?;
            Ok((
                flip,
                stack_flipped(&grids, flip, defect_feats, normal_feats)?,
            ))
        })
        .collect()
}

/// The flipped copies of every support as [`EncodedSupports::flipped`] wants them: the
/// aligned grids of [`encode_flipped`] (defect supports first) padded like the originals
/// ([`stack_supports`]) and flipped as one, so that [`Flip::cells`] over the stacked grid
/// finds the mirror of every cell.
///
/// # Shapes
/// - `grids[i]`: `(1, C, h_i, w_i)`, one per support, as the originals `defect_feats` then
///   `normal_feats`; returns `(k + n, C, H, W)` with `(H, W)` the originals' stacked grid.
pub(crate) fn stack_flipped(
    grids: &[Tensor],
    flip: Flip,
    defect_feats: &[Tensor],
    normal_feats: &[Tensor],
) -> Result<Tensor> {
    let all: Vec<Tensor> = defect_feats.iter().chain(normal_feats).cloned().collect();
    let (h, w) = max_hw(&all)?;
    flip_grid(&stack_reflect(grids, h, w)?, flip)
}

/// Stacks encoded supports into the batches [`fit_features`] takes, mirror-padding them to
/// the largest grid among them when their working sizes differ (an empty list gives `None`).
///
/// # Shapes
/// - `defect_feats[i]`: `(1, C, h_i, w_i)`, `defect_masks[i]`: `(1, 1, 8h_i, 8w_i)`;
///   `normal_feats[j]`: `(1, C, h_j, w_j)`.
/// - returns `((k, C, H, W), (k, 1, 8H, 8W))` and `(n, C, H, W)`.
#[allow(clippy::type_complexity)]
pub(crate) fn stack_supports(
    defect_feats: &[Tensor],
    defect_masks: &[Tensor],
    normal_feats: &[Tensor],
) -> Result<(Option<(Tensor, Tensor)>, Option<Tensor>)> {
    let all: Vec<Tensor> = defect_feats.iter().chain(normal_feats).cloned().collect();
    let (h, w) = max_hw(&all)?;
    let stride = crate::backbone::DEFAULT_EMBED_STRIDE;
    let defects = if defect_feats.is_empty() {
        None
    } else {
        Some((
            stack_reflect(defect_feats, h, w)?,
            stack_reflect(defect_masks, h * stride, w * stride)?,
        ))
    };
    let normals = if normal_feats.is_empty() {
        None
    } else {
        Some(stack_reflect(normal_feats, h, w)?)
    };
    Ok((defects, normals))
}

/// Builds the model from already encoded supports (what `eval` uses to encode each image once).
/// The returned model has no projection head; set [`FittedModel::head`] to the one the features
/// were encoded with before saving it.
///
/// What is built depends on the (resolved) scoring:
/// - prototypes (`bpgg`, `hybrid`): see [`build_prototypes`];
/// - the normal memory bank (`knn`, `hybrid`): every pixel of the normal supports; with `hybrid`
///   (or without normal images) also the background cells of the defect supports
///   ([`background_cells`]);
/// - the defect memory bank (`hybrid` with a bank share above 0): the defect cells of every
///   defect support ([`defect_cells`]);
/// - both banks also hold the same cells of the supports' flipped copies, when given.
///
/// Then every support image is scored as if it were a query, each against banks without its
/// own pixels ([`leave_one_out_distances`]; one image alone is compared with itself outside a
/// window): the `hybrid` distance scale is a high quantile of these distances at the normal
/// cells, and the thresholds come from these maps and scores:
/// - pixel threshold: with defect supports, the one that maximises pixel F1 over the supports'
///   maps (defect supports with their masks, normal supports all normal); without, the largest
///   value of the normal supports' maps;
/// - image threshold: the cut that best separates the defect supports' image scores from those
///   of the normal supports and of the defect supports' background alone
///   ([`super::image_score::image_threshold`]).
///
/// # Shapes
/// See [`EncodedSupports`].
pub fn fit_features(config: &ModelConfig, supports: &EncodedSupports) -> Result<FittedModel> {
    config.validate()?;
    let defects = supports
        .defects
        .as_ref()
        .map(|(f, m)| (f, m))
        .filter(|(f, _)| f.dims().first().is_some_and(|&k| k > 0));
    let normals = supports
        .normals
        .as_ref()
        .filter(|f| f.dims().first().is_some_and(|&n| n > 0));
    let k = defects.map(|(f, _)| f.dims()[0]).unwrap_or(0);
    let n = normals.map(|f| f.dims()[0]).unwrap_or(0);
    let config = &ModelConfig {
        scoring: config.scoring.resolve(k > 0),
        ..config.clone()
    };
    let scoring = config.scoring;
    if k == 0 && n == 0 {
        return Err(Error::InvalidConfig("no support images".into()));
    }
    if scoring.uses_prototypes() && k == 0 {
        return Err(Error::MissingSupports {
            scoring,
            needs: "defect supports".into(),
            defects: true,
        });
    }
    let (_, _, h, w) = match (defects, normals) {
        (Some((f, _)), _) => f.dims4()?,
        (None, Some(f)) => f.dims4()?,
        (None, None) => unreachable!("checked above"),
    };

    // Every support image, defect supports first, with its mask's share of each grid cell.
    let mut images: Vec<Tensor> = Vec::with_capacity(k + n);
    let mut grids: Vec<Vec<f32>> = Vec::with_capacity(k + n);
    if let Some((f, m)) = defects {
        let (mk, mc, _, _) = m.dims4()?;
        if mk != k || mc != 1 {
            return Err(Error::ShapeMismatch(format!(
                "defect features {:?} need masks (k={k}, 1, S, S), got {:?}",
                f.dims(),
                m.dims()
            )));
        }
        let grid = mask_to_grid(m, h, w)?.flatten_all()?.to_vec1::<f32>()?;
        for i in 0..k {
            images.push(f.narrow(0, i, 1)?);
            grids.push(grid[i * h * w..(i + 1) * h * w].to_vec());
        }
    }
    if let Some(f) = normals {
        let (_, _, nh, nw) = f.dims4()?;
        if (nh, nw) != (h, w) {
            return Err(Error::ShapeMismatch(format!(
                "normal features {:?} and defect features differ in grid size ({h}x{w})",
                f.dims()
            )));
        }
        for i in 0..n {
            images.push(f.narrow(0, i, 1)?);
            grids.push(vec![0.0; h * w]);
        }
    }

    // The banks, as each image's share.
    let cells = &config.support_cells;
    let background = scoring == Scoring::Hybrid || n == 0;
    for (flip, f) in &supports.flipped {
        let (fb, _, fh, fw) = f.dims4()?;
        if (fb, fh, fw) != (k + n, h, w) {
            return Err(Error::ShapeMismatch(format!(
                "{flip:?} copies {:?} must be ({}, C, {h}, {w}): one per support",
                f.dims(),
                k + n
            )));
        }
    }
    // An image's share of a bank: its chosen cells, and the same cells of its flipped copies.
    let source = |i: usize, chosen: Vec<usize>| -> Result<BankSource> {
        let mut s = BankSource::from_cells(&images[i], chosen)?;
        for (flip, f) in &supports.flipped {
            let mirrored = flip.cells(&s.cells, h, w);
            s = s.with_copy(&f.narrow(0, i, 1)?, &mirrored)?;
        }
        Ok(s)
    };
    let normal_sources = (0..k + n)
        .map(|i| {
            let chosen = if i >= k {
                (0..h * w).collect()
            } else if background {
                background_cells(&grids[i], h, w, cells.background_margin)
            } else {
                Vec::new()
            };
            source(i, chosen)
        })
        .collect::<Result<Vec<_>>>()?;
    let with_defect_bank = scoring == Scoring::Hybrid && config.hybrid.bank_share > 0.0;
    let defect_sources = if with_defect_bank {
        (0..k + n)
            .map(|i| {
                let chosen = if i < k {
                    defect_cells(&grids[i], cells.min_defect_share)
                } else {
                    Vec::new()
                };
                source(i, chosen)
            })
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let memory = if scoring.uses_memory_bank() {
        Some(bank_of(&normal_sources, &config.knn)?.ok_or_else(|| {
            Error::MissingSupports {
                scoring,
                needs: "normal pixels: a normal image, or defect masks that leave some \
                        background"
                    .into(),
                defects: false,
            }
        })?)
    } else {
        None
    };
    let defect_bank =
        if with_defect_bank {
            Some(bank_of(&defect_sources, &config.knn)?.ok_or_else(|| {
                Error::InvalidConfig("the defect masks hold no defect cell".into())
            })?)
        } else {
            None
        };
    let prototypes = match defects {
        Some((f, m)) if scoring.uses_prototypes() => {
            Some(build_prototypes(f, m, normals, &config.prototype)?)
        }
        _ => None,
    };

    // Every support scored as if it were a query.
    let radius = config.self_exclusion_radius;
    let cat = |maps: Vec<Tensor>| -> Result<Tensor> { Ok(Tensor::cat(&maps, 0)?) };
    let normal_loo = match &memory {
        Some(_) => Some(cat(leave_one_out_distances(
            &images,
            &normal_sources,
            &config.knn,
            radius,
        )?)?),
        None => None,
    };
    let defect_loo = match &defect_bank {
        Some(_) => Some(cat(leave_one_out_distances(
            &images,
            &defect_sources,
            &config.knn,
            radius,
        )?)?),
        None => None,
    };
    let knn_scale = match (&normal_loo, scoring) {
        (Some(loo), Scoring::Hybrid) => {
            let values = loo.flatten_all()?.to_vec1::<f32>()?;
            let at_normal_cells: Vec<f32> = normal_sources
                .iter()
                .enumerate()
                .flat_map(|(i, s)| s.cells.iter().map(move |&c| (i, c)))
                .map(|(i, c)| values[i * h * w + c])
                .collect();
            Some(knn_scale_from_normal(
                &at_normal_cells,
                config.hybrid.normal_quantile,
            )?)
        }
        _ => None,
    };
    let reverse_supports = if config.reverse.mode != crate::guidance::ReverseMode::Off {
        defects.map(|(f, m)| -> Result<(Tensor, Tensor)> {
            match normals {
                Some(nf) => {
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
        defect_bank,
        knn_scale,
        reverse_supports,
        threshold: 0.5,
        threshold_rule: ThresholdRule::SupportF1,
        image_threshold: 0.5,
        head: None,
    };
    let all = Tensor::cat(&images, 0)?;
    let signals = model.signals(
        &all,
        Some(BankDistances {
            normal: normal_loo.as_ref(),
            defect: defect_loo.as_ref(),
        }),
    )?;
    let scored = model.finish(&signals)?;

    // The pixel threshold, from the supports' maps (at the padded working size the masks
    // have).
    let maps = scored.maps.flatten_all()?.to_vec1::<f32>()?;
    let mut labels: Vec<bool> = Vec::with_capacity(maps.len());
    if let Some((_, m)) = defects {
        labels.extend(
            m.flatten_all()?
                .to_vec1::<f32>()?
                .into_iter()
                .map(|v| v > 0.5),
        );
    }
    labels.resize(maps.len(), false);
    if k > 0 {
        model.threshold = bpgg_metrics::f1_max(&maps, &labels)?.threshold;
        model.threshold_rule = ThresholdRule::SupportF1;
    } else {
        model.threshold = maps.iter().copied().fold(f32::MIN, f32::max);
        model.threshold_rule = ThresholdRule::NormalMax;
    }
    debug_assert_eq!(maps.len(), (k + n) * h * w * 64);

    // The image threshold, from the supports' image scores: each defect support's whole image
    // (defective), each normal support and each defect support's background alone (normal).
    let image = signals.image.flatten_all()?.to_vec1::<f32>()?;
    let top = config.image_score.top_cells;
    let mut normal_scores: Vec<f32> = scored.image_scores[k..].to_vec();
    for (i, g) in grids.iter().enumerate().take(k) {
        let bg = background_cells(g, h, w, cells.background_margin);
        if !bg.is_empty() {
            let values: Vec<f32> = bg.iter().map(|&c| image[i * h * w + c]).collect();
            normal_scores.push(top_mean(&values, top));
        }
    }
    model.image_threshold = image_threshold(&scored.image_scores[..k], &normal_scores)?;
    Ok(model)
}
