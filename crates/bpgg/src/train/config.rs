//! Everything a training run is configured by; stored in every checkpoint so `--resume` can
//! refuse a run that would not continue the same training.

use serde::{Deserialize, Serialize};

use super::data::{EpisodeShape, TrainSource};
use super::loss::LossConfig;
use super::optim::OptimizerKind;
use crate::backbone::BackboneConfig;
use crate::guidance::{validate_tau, DEFAULT_TAU};
use crate::model::DEFAULT_HEAD_HIDDEN;
use crate::model::{validate_image_size, DEFAULT_IMAGE_SIZE};
use crate::{Error, Result};

/// Share of the episodes spent warming the learning rate up linearly; the rest follow a cosine
/// decay to zero.
pub const WARMUP_FRACTION: f64 = 0.05;

/// A training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Base (and validation) data.
    pub sources: Vec<TrainSource>,
    /// The frozen feature extractor.
    pub backbone: BackboneConfig,
    /// Square side images are resized to.
    pub image_size: u32,
    /// Hidden width of the projection head.
    pub head_hidden: usize,
    /// Images per episode.
    pub episode: EpisodeShape,
    pub loss: LossConfig,
    pub optimizer: OptimizerKind,
    /// Peak learning rate.
    pub lr: f64,
    pub weight_decay: f64,
    /// Training episodes (one optimiser step each).
    pub episodes: usize,
    /// Random flips of every episode image (on the cached feature grid).
    pub augment: bool,
    /// Seeds the head's initialisation, the holdout split and every episode.
    pub seed: u64,
    /// Write `last.safetensors` every this many episodes (and at the end).
    pub checkpoint_every: usize,
    /// Validate (and keep `best.safetensors`) every this many episodes (and at the end).
    pub val_every: usize,
    /// Validation episodes (the same ones at every validation).
    pub val_episodes: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            backbone: BackboneConfig::default(),
            image_size: DEFAULT_IMAGE_SIZE,
            head_hidden: DEFAULT_HEAD_HIDDEN,
            episode: EpisodeShape {
                shots: 5,
                normal_shots: 5,
                queries: 2,
                normal_queries: 1,
            },
            loss: LossConfig {
                tau: DEFAULT_TAU,
                reverse_weight: 1.0,
                class_balance: true,
            },
            optimizer: OptimizerKind::AdamW,
            lr: 1e-3,
            weight_decay: 1e-4,
            episodes: 1000,
            augment: true,
            seed: 0,
            checkpoint_every: 100,
            val_every: 100,
            val_episodes: 20,
        }
    }
}

impl TrainConfig {
    /// Checks every field once.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::InvalidConfig(m));
        validate_image_size(self.image_size)?;
        validate_tau(self.loss.tau)?;
        if !(self.loss.reverse_weight.is_finite() && self.loss.reverse_weight >= 0.0) {
            return fail(format!(
                "reverse weight must be ≥ 0, got {}",
                self.loss.reverse_weight
            ));
        }
        if !(1..=4096).contains(&self.head_hidden) {
            return fail(format!(
                "head width must be in 1..=4096, got {}",
                self.head_hidden
            ));
        }
        let e = self.episode;
        if e.shots == 0 || e.queries == 0 {
            return fail("an episode needs at least 1 shot and 1 defect query".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr < 10.0) {
            return fail(format!("learning rate must be in (0, 10), got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return fail(format!(
                "weight decay must be ≥ 0, got {}",
                self.weight_decay
            ));
        }
        if self.episodes == 0 || self.checkpoint_every == 0 || self.val_every == 0 {
            return fail("episodes, checkpoint and validation intervals must be ≥ 1".into());
        }
        if self.val_episodes == 0 {
            return fail("at least one validation episode is needed".into());
        }
        Ok(())
    }

    /// The learning rate of episode `i` (0-based): linear warm-up, then cosine decay.
    pub fn lr_at(&self, i: usize) -> f64 {
        let total = self.episodes as f64;
        let warmup = (total * WARMUP_FRACTION).max(1.0);
        let t = i as f64;
        if t < warmup {
            return self.lr * (t + 1.0) / warmup;
        }
        let progress = ((t - warmup) / (total - warmup).max(1.0)).min(1.0);
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// The top-level fields in which `other` differs from `self` (for `--resume`).
    pub fn differences(&self, other: &TrainConfig) -> Vec<String> {
        let a = serde_json::to_value(self).unwrap_or_default();
        let b = serde_json::to_value(other).unwrap_or_default();
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => a
                .iter()
                .filter(|(k, v)| b.get(*k) != Some(v))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => vec!["(configuration)".into()],
        }
    }
}
