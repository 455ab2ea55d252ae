//! A fitted model: prototypes, memory bank, threshold and the configuration they came from.

use candle_core::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::config::{ModelConfig, Scoring};
use super::encoder::Encoder;
use super::head::ProjectionHead;
use crate::baseline::MemoryBank;
use crate::data::float_map::FloatMap;
use crate::guidance::{
    defect_probability, hybrid_score, refine_prototypes, to_anomaly_map, ReverseMode,
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
#[derive(Debug, Clone)]
pub struct FittedModel {
    pub config: ModelConfig,
    /// Defect and normal prototypes (`bpgg` and `hybrid` scoring).
    pub prototypes: Option<PrototypeBank>,
    /// Normal memory bank (`knn` and `hybrid` scoring).
    pub memory: Option<MemoryBank>,
    /// Scale of k-NN distances for `hybrid` (a high quantile of the normal supports'
    /// leave-one-out distances).
    pub knn_scale: Option<f32>,
    /// Support features `(s, C, h, w)` and masks `(s, 1, S, S)` for the reverse branch.
    pub reverse_supports: Option<(Tensor, Tensor)>,
    /// Map value at or above which a pixel is defect.
    pub threshold: f32,
    pub threshold_rule: ThresholdRule,
    /// The trained projection head the supports were encoded with (`bpgg train`), if any.
    pub head: Option<ProjectionHead>,
}

impl FittedModel {
    /// Loads the backbone this model was fitted with.
    pub fn encoder(&self, device: &candle_core::Device) -> Result<Encoder> {
        Ok(
            Encoder::new(&self.config.backbone, self.config.image_size, device)?
                .with_head(self.head.clone()),
        )
    }

    /// Anomaly maps of images of any size, at `image_size x image_size`.
    pub fn predict(&self, encoder: &Encoder, images: &[RgbImage]) -> Result<Vec<FloatMap>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let maps = self.score_features(&encoder.encode(images)?)?;
        let (b, _, h, w) = maps.dims4()?;
        let flat = maps.flatten_all()?.to_vec1::<f32>()?;
        Ok((0..b)
            .map(|i| FloatMap {
                width: w,
                height: h,
                data: flat[i * h * w..(i + 1) * h * w].to_vec(),
            })
            .collect())
    }

    /// Anomaly maps from encoded features.
    ///
    /// # Shapes
    /// - `feats`: `(b, C, h, w)` from [`Encoder::encode`]; returns `(b, 1, S, S)`.
    pub fn score_features(&self, feats: &Tensor) -> Result<Tensor> {
        let raw = self.raw_scores(feats, None)?;
        let size = self.config.image_size as usize;
        to_anomaly_map(&raw, size, size, &self.config.map)
    }

    /// Scores on the feature grid before upsampling and smoothing. `knn_dist` replaces the
    /// memory-bank distances when given (leave-one-out distances of the supports).
    ///
    /// # Shapes
    /// - `feats`: `(b, C, h, w)`; returns `(b, 1, h, w)`.
    pub(crate) fn raw_scores(&self, feats: &Tensor, knn_dist: Option<&Tensor>) -> Result<Tensor> {
        let dist = || -> Result<Tensor> {
            match knn_dist {
                Some(d) => Ok(d.clone()),
                None => self.memory()?.score(feats),
            }
        };
        match self.config.scoring {
            Scoring::Auto => Err(Error::State(
                "scoring `auto` is resolved when the model is fitted".into(),
            )),
            Scoring::Bpgg => self.defect_probability(feats),
            Scoring::Knn => dist(),
            Scoring::Hybrid => {
                let scale = self
                    .knn_scale
                    .ok_or_else(|| Error::State("hybrid model has no k-NN scale".into()))?;
                hybrid_score(
                    &self.defect_probability(feats)?,
                    &dist()?,
                    scale,
                    self.config.hybrid.weight,
                )
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
