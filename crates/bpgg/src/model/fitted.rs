//! A fitted model: prototypes, memory bank, threshold and the configuration they came from.

use candle_core::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::config::{ModelConfig, Scoring};
use super::encoder::Encoder;
use super::head::ProjectionHead;
use super::image_score::image_scores;
use crate::baseline::MemoryBank;
use crate::data::float_map::FloatMap;
use crate::guidance::{
    bank_probability, defect_probability, defect_term, hybrid_score, refine_prototypes,
    to_anomaly_map, ReverseMode,
};
use crate::prototype::PrototypeBank;
use crate::{Error, Result};

/// How the default threshold was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdRule {
    /// F1-max over the model's maps of its own supports.
    SupportF1,
    /// The largest value of the normal supports' maps (no defect support).
    NormalMax,
    /// Given by the user.
    User,
}

/// What [`super::fit`] produces and `bpgg predict` loads.
///
/// Scoring gives two signals on the feature grid: the *pixel signal*, which becomes the anomaly
/// map (upsampled and smoothed), and the *image signal*, whose top cells give the image score
/// ([`super::image_score`]). They are the same except for `hybrid`, whose image signal leaves
/// the prototypes out.
#[derive(Debug, Clone)]
pub struct FittedModel {
    pub config: ModelConfig,
    /// Defect and normal prototypes (`bpgg` and `hybrid` scoring).
    pub prototypes: Option<PrototypeBank>,
    /// Normal memory bank (`knn` and `hybrid` scoring): the normal supports' pixels, with
    /// `hybrid` also the background of the defect supports (only that, without normal images).
    pub memory: Option<MemoryBank>,
    /// Defect memory bank (`hybrid` with a bank share above 0): the defect pixels of every
    /// defect support.
    pub defect_bank: Option<MemoryBank>,
    /// Scale of k-NN distances for `hybrid` (a high quantile of the leave-one-out distances of
    /// the supports' normal pixels).
    pub knn_scale: Option<f32>,
    /// Support features `(s, C, h, w)` and masks `(s, 1, S, S)` for the reverse branch.
    pub reverse_supports: Option<(Tensor, Tensor)>,
    /// Map value at or above which a pixel is defect.
    pub threshold: f32,
    pub threshold_rule: ThresholdRule,
    /// Image score at or above which an image is judged defective (chosen from the supports'
    /// leave-one-out image scores, see [`super::image_score::image_threshold`]).
    pub image_threshold: f32,
    /// The trained projection head the supports were encoded with (`bpgg train`), if any.
    pub head: Option<ProjectionHead>,
}

/// Anomaly maps with their image scores.
#[derive(Debug, Clone)]
pub struct ScoredMaps {
    /// `(b, 1, 8h, 8w)` anomaly maps at the size of the input the features came from.
    pub maps: Tensor,
    /// One image score per map.
    pub image_scores: Vec<f32>,
}

/// The two signals of a batch on the feature grid, `(b, 1, h, w)` each.
#[derive(Debug, Clone)]
pub(crate) struct Signals {
    pub pixel: Tensor,
    pub image: Tensor,
}

/// Distances that replace the memory-bank searches when the supports score themselves
/// (leave-one-out), `(b, 1, h, w)` each.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BankDistances<'a> {
    pub normal: Option<&'a Tensor>,
    pub defect: Option<&'a Tensor>,
}

impl FittedModel {
    /// Loads the backbone this model was fitted with.
    pub fn encoder(&self, device: &candle_core::Device) -> Result<Encoder> {
        Ok(Encoder::new(&self.config.backbone, device)?.with_head(self.head.clone()))
    }

    /// Anomaly maps of images of any size, each at its working size (see
    /// [`ModelConfig::size`]); [`FittedModel::predict_images`] brings them to the images' own
    /// sizes.
    pub fn predict(&self, encoder: &Encoder, images: &[RgbImage]) -> Result<Vec<FloatMap>> {
        Ok(self
            .predict_scored(encoder, images)?
            .into_iter()
            .map(|(map, _)| map)
            .collect())
    }

    /// Anomaly maps of images of any size, each at its working size, with its image score.
    pub fn predict_scored(
        &self,
        encoder: &Encoder,
        images: &[RgbImage],
    ) -> Result<Vec<(FloatMap, f32)>> {
        let prepared = images
            .iter()
            .map(|i| self.prepare(i))
            .collect::<Result<Vec<_>>>()?;
        self.working_scored(encoder, &prepared)
    }

    /// Anomaly maps from encoded features, at the size of the input they were encoded from.
    ///
    /// # Shapes
    /// - `feats`: `(b, C, h, w)` from [`Encoder::encode`]; returns `(b, 1, 8h, 8w)`.
    pub fn score_features(&self, feats: &Tensor) -> Result<Tensor> {
        Ok(self.score(feats)?.maps)
    }

    /// The anomaly map of a pixel signal on the feature grid: upsampled to the input size (the
    /// grid times the stride) and smoothed.
    ///
    /// # Shapes
    /// - `raw`: `(b, 1, h, w)`; returns `(b, 1, 8h, 8w)`.
    pub(crate) fn map_from_raw(&self, raw: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = raw.dims4()?;
        let stride = crate::backbone::DEFAULT_EMBED_STRIDE;
        to_anomaly_map(raw, h * stride, w * stride, &self.config.map)
    }

    /// Anomaly maps and image scores from encoded features.
    ///
    /// # Shapes
    /// - `feats`: `(b, C, h, w)` from [`Encoder::encode`]; maps are `(b, 1, 8h, 8w)`.
    pub fn score(&self, feats: &Tensor) -> Result<ScoredMaps> {
        let signals = self.signals(feats, None)?;
        self.finish(&signals)
    }

    /// Maps (upsampled and smoothed pixel signal) and image scores of computed signals.
    pub(crate) fn finish(&self, signals: &Signals) -> Result<ScoredMaps> {
        Ok(ScoredMaps {
            maps: self.map_from_raw(&signals.pixel)?,
            image_scores: image_scores(&signals.image, &self.config.image_score)?,
        })
    }

    /// The pixel and image signals on the feature grid. `given` replaces the memory-bank
    /// searches (the supports' leave-one-out distances when the model scores its own supports).
    ///
    /// # Shapes
    /// - `feats`: `(b, C, h, w)`; both signals are `(b, 1, h, w)`.
    pub(crate) fn signals(&self, feats: &Tensor, given: Option<BankDistances>) -> Result<Signals> {
        let given = given.unwrap_or(BankDistances {
            normal: None,
            defect: None,
        });
        let normal_distance = || -> Result<Tensor> {
            match given.normal {
                Some(d) => Ok(d.clone()),
                None => self.memory()?.score(feats),
            }
        };
        let same = |t: Tensor| Signals {
            pixel: t.clone(),
            image: t,
        };
        match self.config.scoring {
            Scoring::Auto => Err(Error::State(
                "scoring `auto` is resolved when the model is fitted".into(),
            )),
            Scoring::Bpgg => Ok(same(self.defect_probability(feats)?)),
            Scoring::Knn => Ok(same(normal_distance()?)),
            Scoring::Hybrid => {
                let scale = self
                    .knn_scale
                    .ok_or_else(|| Error::State("hybrid model has no k-NN scale".into()))?;
                let weight = self.config.hybrid.weight;
                let normal = normal_distance()?;
                let proto = self.defect_probability(feats)?;
                let bank = match &self.defect_bank {
                    Some(bank) => {
                        let defect = match given.defect {
                            Some(d) => d.clone(),
                            None => bank.score(feats)?,
                        };
                        Some(bank_probability(&defect, &normal, self.config.tau)?)
                    }
                    None => None,
                };
                let p = defect_term(&proto, bank.as_ref(), self.config.hybrid.bank_share)?;
                let pixel = hybrid_score(&p, &normal, scale, weight)?;
                let image = hybrid_score(bank.as_ref().unwrap_or(&proto), &normal, scale, weight)?;
                Ok(Signals { pixel, image })
            }
        }
    }

    fn memory(&self) -> Result<&MemoryBank> {
        self.memory
            .as_ref()
            .ok_or_else(|| Error::State("model has no normal memory bank".into()))
    }

    /// The BPGG defect probability, with the reverse branch when it is on.
    fn defect_probability(&self, feats: &Tensor) -> Result<Tensor> {
        let bank = self.prototypes.as_ref().ok_or_else(|| {
            Error::State("model has no prototypes (fitted without defect supports)".into())
        })?;
        let tau = self.config.tau;
        let prob = defect_probability(feats, bank, tau)?;
        let (Some((sf, sm)), true) = (
            &self.reverse_supports,
            self.config.reverse.mode != ReverseMode::Off,
        ) else {
            return Ok(prob);
        };
        let (b, _, _, _) = feats.dims4()?;
        let mut refined = Vec::with_capacity(b);
        for i in 0..b {
            let q = feats.narrow(0, i, 1)?;
            let p = prob.narrow(0, i, 1)?;
            let outcome = refine_prototypes(bank, &q, &p, sf, sm, &self.config.reverse, tau)?;
            refined.push(defect_probability(&q, &outcome.bank, tau)?);
        }
        Ok(Tensor::cat(&refined, 0)?)
    }
}
