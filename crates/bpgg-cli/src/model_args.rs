//! Arguments of the commands that build or run a model (`fit`, `predict`, `eval`, `demo`), and
//! the one function that turns them into library configuration.

use std::path::PathBuf;

use anyhow::Context;
use bpgg::backbone::{BackboneConfig, BackboneKind};
use bpgg::guidance::ReverseMode;
use bpgg::model::{Encoder, ModelConfig, Scoring};
use bpgg::train::load_head;
use candle_core::Device;
use clap::{Args, ValueEnum};

/// How the model scores pixels.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScoringArg {
    /// hybrid with defect and normal images, bpgg with defect images only, knn with normal
    /// images only.
    Auto,
    /// Defect and normal prototypes from the supports (needs defect images with masks).
    Bpgg,
    /// Distance to the nearest normal-support feature (normal images only).
    Knn,
    /// Both, combined.
    Hybrid,
}

/// The reverse branch at inference.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReverseArg {
    Off,
    /// Mix each prototype with the query's own, weighted by how well the query prototypes
    /// segment the supports back.
    Refine,
    /// Add the query prototypes as extra prototypes when they segment the supports well.
    Augment,
}

/// Model settings shared by `fit`, `eval` and `demo`.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Feature extractor: efficientnet-lite0 (embedded), resnet18, wide-resnet50-2, vgg16.
    #[arg(long, default_value = "efficientnet-lite0", value_name = "NAME")]
    pub backbone: String,
    /// Weight file for the backbone (.pth or .safetensors, torchvision key names); not needed
    /// for the embedded efficientnet-lite0.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Feature layers, comma-separated (e.g. `layer2,layer3`, `blocks.4,blocks.10`);
    /// default: the backbone's stride-8 and stride-16 stages.
    #[arg(long, value_delimiter = ',', value_name = "L1,L2")]
    pub layers: Vec<String>,
    /// Images are resized to SIZE x SIZE (a multiple of 16).
    #[arg(long, default_value_t = bpgg::model::DEFAULT_IMAGE_SIZE, value_name = "SIZE")]
    pub size: u32,
    /// How pixels are scored.
    #[arg(long, value_enum, default_value = "auto")]
    pub scoring: ScoringArg,
    /// Temperature of the cosine similarities.
    #[arg(long, default_value_t = bpgg::guidance::DEFAULT_TAU)]
    pub tau: f32,
    /// Prototypes per class (k-means over the masked features when > 1).
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub prototypes: usize,
    /// Share of the normal prototype given to the normal images (the rest comes from the
    /// defect-free pixels of the defect images).
    #[arg(long, default_value_t = 0.5, value_name = "W")]
    pub normal_weight: f32,
    /// Reverse branch at inference.
    #[arg(long, value_enum, default_value = "off")]
    pub reverse: ReverseArg,
    /// Gaussian smoothing of the anomaly map, in pixels.
    #[arg(long, default_value_t = 4.0, value_name = "PX")]
    pub sigma: f32,
    /// Weight of the k-NN signal in `hybrid` scoring.
    #[arg(long, default_value_t = 0.5, value_name = "W")]
    pub hybrid_weight: f32,
    /// Seed for k-means and memory-bank subsampling.
    #[arg(long, default_value_t = 0)]
    pub model_seed: u64,
    /// A projection head trained by `bpgg train` (its best.safetensors or last.safetensors):
    /// features pass through it before prototypes and the memory bank are built. A model fitted
    /// with it stores the head, so `predict` needs no flag.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
}

impl ModelArgs {
    /// Loads the backbone of `config`, with the trained head of `--checkpoint` when given.
    pub fn encoder(&self, config: &ModelConfig, device: &Device) -> anyhow::Result<Encoder> {
        let head = self
            .checkpoint
            .as_deref()
            .map(|path| load_head(path, &config.backbone, config.image_size, device))
            .transpose()?;
        let encoder = Encoder::new(&config.backbone, config.image_size, device)
            .context("loading the backbone")?;
        Ok(encoder.with_head(head))
    }

    /// The library configuration, validated.
    pub fn to_config(&self) -> anyhow::Result<ModelConfig> {
        let mut config = ModelConfig {
            backbone: BackboneConfig {
                kind: self.backbone.parse::<BackboneKind>()?,
                weights: self.weights.clone(),
                layers: self.layers.clone(),
            },
            image_size: self.size,
            scoring: match self.scoring {
                ScoringArg::Auto => Scoring::Auto,
                ScoringArg::Bpgg => Scoring::Bpgg,
                ScoringArg::Knn => Scoring::Knn,
                ScoringArg::Hybrid => Scoring::Hybrid,
            },
            tau: self.tau,
            ..ModelConfig::default()
        };
        config.prototype.prototypes_per_class = self.prototypes;
        config.prototype.normal_source_weight = self.normal_weight;
        config.prototype.seed = self.model_seed;
        config.knn.seed = self.model_seed;
        config.reverse.mode = match self.reverse {
            ReverseArg::Off => ReverseMode::Off,
            ReverseArg::Refine => ReverseMode::Refine,
            ReverseArg::Augment => ReverseMode::Augment,
        };
        config.reverse.tau = self.tau;
        config.map.sigma_px = self.sigma;
        config.hybrid.weight = self.hybrid_weight;
        config.validate().context("model settings")?;
        Ok(config)
    }
}
