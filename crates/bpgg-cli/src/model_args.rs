//! Arguments of the commands that load a backbone or build a model, and the functions that turn
//! them into library configuration. Every default is the library's: clap shows and uses the value
//! of the library config's `Default`, so the CLI, the service and the Python package agree.

use std::path::PathBuf;

use anyhow::Context;
use bpgg::backbone::{BackboneConfig, BackboneKind};
use bpgg::guidance::ReverseMode;
use bpgg::model::{load_head, Encoder, InputSize, ModelConfig, Scoring, TileConfig};
use candle_core::Device;
use clap::{Args, ValueEnum};

/// How the model scores pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScoringArg {
    /// hybrid with defect images (normal images optional), knn with normal images only.
    Auto,
    /// Defect and normal prototypes from the supports (needs defect images with masks).
    Bpgg,
    /// Distance to the nearest normal-support feature (normal images only).
    Knn,
    /// Prototypes, defect and normal memory banks and the k-NN distance, combined.
    Hybrid,
}

impl From<Scoring> for ScoringArg {
    fn from(s: Scoring) -> Self {
        match s {
            Scoring::Auto => Self::Auto,
            Scoring::Bpgg => Self::Bpgg,
            Scoring::Knn => Self::Knn,
            Scoring::Hybrid => Self::Hybrid,
        }
    }
}

impl From<ScoringArg> for Scoring {
    fn from(s: ScoringArg) -> Self {
        match s {
            ScoringArg::Auto => Self::Auto,
            ScoringArg::Bpgg => Self::Bpgg,
            ScoringArg::Knn => Self::Knn,
            ScoringArg::Hybrid => Self::Hybrid,
        }
    }
}

/// The reverse branch at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReverseArg {
    Off,
    /// Mix each prototype with the query's own, weighted by how well the query prototypes
    /// segment the supports back.
    Refine,
    /// Add the query prototypes as extra prototypes when they segment the supports well.
    Augment,
}

impl From<ReverseMode> for ReverseArg {
    fn from(m: ReverseMode) -> Self {
        match m {
            ReverseMode::Off => Self::Off,
            ReverseMode::Refine => Self::Refine,
            ReverseMode::Augment => Self::Augment,
        }
    }
}

impl From<ReverseArg> for ReverseMode {
    fn from(m: ReverseArg) -> Self {
        match m {
            ReverseArg::Off => Self::Off,
            ReverseArg::Refine => Self::Refine,
            ReverseArg::Augment => Self::Augment,
        }
    }
}

/// The frozen feature extractor: the same flags on every command that loads one.
#[derive(Debug, Args, Clone)]
pub struct BackboneArgs {
    /// Feature extractor: efficientnet-lite0 (embedded), resnet18, wide-resnet50-2, vgg16.
    #[arg(long, default_value_t = BackboneConfig::default().kind, value_name = "NAME")]
    pub backbone: BackboneKind,
    /// Weight file for the backbone (.pth or .safetensors, torchvision key names); not needed
    /// for the embedded efficientnet-lite0.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Feature layers, comma-separated (e.g. `layer2,layer3`, `blocks.4,blocks.10`);
    /// default: the backbone's stride-8 and stride-16 stages.
    #[arg(long, value_delimiter = ',', value_name = "L1,L2")]
    pub layers: Vec<String>,
}

impl BackboneArgs {
    /// The library's backbone configuration.
    pub fn to_config(&self) -> BackboneConfig {
        BackboneConfig {
            kind: self.backbone,
            weights: self.weights.clone(),
            layers: self.layers.clone(),
        }
    }
}

/// Model settings shared by `fit` and `eval`.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    #[command(flatten)]
    pub backbone: BackboneArgs,
    /// The working size: N (long side N px, aspect kept), WxH (exactly W x H) or native.
    /// Maps are computed (and `eval` compares) at it.
    #[arg(long, value_name = "N|WxH", help = size_help(), conflicts_with = "scale")]
    pub size: Option<InputSize>,
    /// Work at the image's own size times S (1 = native resolution) instead of --size.
    #[arg(long, value_name = "S")]
    pub scale: Option<f32>,
    /// Cut the working image into overlapping N x N tiles (N a multiple of 16), scored one by
    /// one and stitched back; without --size or --scale, at native resolution. `none`: whole
    /// images.
    #[arg(long, value_name = "N|none", help = tile_help())]
    pub tile: Option<TileArg>,
    /// Least overlap of neighbouring tiles in pixels (a multiple of 8); scores are blended
    /// across it.
    #[arg(long, value_name = "PX", default_value_t = TileConfig::default().overlap)]
    pub tile_overlap: u32,
    /// How pixels are scored.
    #[arg(long, value_enum, default_value_t = ModelConfig::default().scoring.into())]
    pub scoring: ScoringArg,
    /// Temperature of the cosine similarities.
    #[arg(long, default_value_t = ModelConfig::default().tau)]
    pub tau: f32,
    /// Prototypes per class (k-means over the masked features when > 1).
    #[arg(
        long,
        default_value_t = ModelConfig::default().prototype.prototypes_per_class,
        value_name = "K"
    )]
    pub prototypes: usize,
    /// Share of the normal prototype given to the normal images (the rest comes from the
    /// defect-free pixels of the defect images).
    #[arg(
        long,
        default_value_t = ModelConfig::default().prototype.normal_source_weight,
        value_name = "W"
    )]
    pub normal_weight: f32,
    /// Reverse branch at inference.
    #[arg(long, value_enum, default_value_t = ModelConfig::default().reverse.mode.into())]
    pub reverse: ReverseArg,
    /// Gaussian smoothing of the anomaly map, in pixels.
    #[arg(long, default_value_t = ModelConfig::default().map.sigma_px, value_name = "PX")]
    pub sigma: f32,
    /// Weight of the k-NN signal in `hybrid` scoring.
    #[arg(long, default_value_t = ModelConfig::default().hybrid.weight, value_name = "W")]
    pub hybrid_weight: f32,
    /// Share of the defect memory bank in the defect term of `hybrid` scoring (the rest: the
    /// prototypes; 0: no defect bank).
    #[arg(long, default_value_t = ModelConfig::default().hybrid.bank_share, value_name = "B")]
    pub bank_share: f32,
    /// Do not add flipped copies of the supports to the memory banks.
    #[arg(long)]
    pub no_flips: bool,
    /// Keep at most N features in each memory bank, drawn at random (seeded by --model-seed):
    /// the nearest-neighbour search, most of the time of large images, shrinks in proportion.
    /// Default: every feature (exact).
    #[arg(long, value_name = "N")]
    pub max_bank: Option<usize>,
    /// The image score is the mean of this many top cells of the image signal.
    #[arg(long, default_value_t = ModelConfig::default().image_score.top_cells, value_name = "N")]
    pub image_top_cells: usize,
    /// Seed for k-means and memory-bank subsampling.
    #[arg(long, default_value_t = ModelConfig::default().prototype.seed)]
    pub model_seed: u64,
    /// A projection head trained by `bpgg train` (its best.safetensors or last.safetensors):
    /// features pass through it before prototypes and the memory bank are built. A model fitted
    /// with it stores the head, so `predict` needs no flag. `none` (the default): no head, the
    /// training-free model (`./none` names a file called none).
    #[arg(long, value_name = "FILE|none")]
    pub checkpoint: Option<PathBuf>,
}

/// The `--checkpoint` value that asks for no projection head.
const NO_CHECKPOINT: &str = "none";

impl ModelArgs {
    /// Loads the backbone of `config`, with the trained head of `--checkpoint` when given.
    pub fn encoder(&self, config: &ModelConfig, device: &Device) -> anyhow::Result<Encoder> {
        let head = self
            .checkpoint
            .as_deref()
            .filter(|path| path.as_os_str() != NO_CHECKPOINT)
            .map(|path| load_head(path, &config.backbone, config.nominal_side(), device))
            .transpose()
            .context(
                "set --backbone, --layers and --size (or --tile) to what the head was trained for",
            )?;
        let encoder = Encoder::new(&config.backbone, device).context("loading the backbone")?;
        Ok(encoder.with_head(head))
    }

    /// The library configuration, validated.
    pub fn to_config(&self) -> anyhow::Result<ModelConfig> {
        let defaults = ModelConfig::default();
        let tile = match self.tile {
            None => defaults.tile,
            Some(TileArg::None) => None,
            Some(TileArg::Size(size)) => Some(TileConfig {
                size,
                overlap: self.tile_overlap,
            }),
        };
        let tile = tile.map(|t| TileConfig {
            overlap: self.tile_overlap,
            ..t
        });
        let size = match (self.size, self.scale) {
            (Some(size), _) => size,
            (None, Some(scale)) => InputSize::Scale(scale),
            (None, None) if matches!(self.tile, Some(TileArg::Size(_))) => InputSize::NATIVE,
            (None, None) => defaults.size,
        };
        let mut config = ModelConfig {
            backbone: self.backbone.to_config(),
            size,
            tile,
            scoring: self.scoring.into(),
            tau: self.tau,
            ..defaults
        };
        config.prototype.prototypes_per_class = self.prototypes;
        config.prototype.normal_source_weight = self.normal_weight;
        config.prototype.seed = self.model_seed;
        config.knn.seed = self.model_seed;
        config.knn.max_bank = self.max_bank.or(config.knn.max_bank);
        config.reverse.mode = self.reverse.into();
        config.map.sigma_px = self.sigma;
        config.hybrid.weight = self.hybrid_weight;
        config.hybrid.bank_share = self.bank_share;
        config.flip_supports = !self.no_flips;
        config.image_score.top_cells = self.image_top_cells;
        config.validate().context("model settings")?;
        Ok(config)
    }
}

/// `--tile`: a tile side or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileArg {
    /// Whole images.
    None,
    /// Tiles of this side.
    Size(u32),
}

impl std::str::FromStr for TileArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("none") {
            return Ok(Self::None);
        }
        s.parse()
            .map(Self::Size)
            .map_err(|_| format!("`{s}`: expected a tile side in pixels or none"))
    }
}

/// Help of `--size`, with the library's default.
fn size_help() -> String {
    format!(
        "The working size: N (long side N px, aspect kept), WxH (exactly W x H) or native; maps \
         are computed (and eval compares) at it [default: {}]",
        ModelConfig::default().size
    )
}

/// Help of `--tile`, with the library's default.
fn tile_help() -> String {
    format!(
        "Cut the working image into overlapping N x N tiles (N a multiple of 16), scored one by \
         one and stitched back; without --size or --scale, at native resolution; none: whole \
         images [default: {}]",
        ModelConfig::default()
            .tile
            .map_or("none".to_string(), |t| t.size.to_string())
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Probe {
        #[command(flatten)]
        model: ModelArgs,
    }

    #[test]
    fn no_flags_give_the_library_default() {
        let probe = Probe::try_parse_from(["probe"]).unwrap();
        assert_eq!(probe.model.to_config().unwrap(), ModelConfig::default());
    }

    #[test]
    fn every_flag_reaches_the_config() {
        let probe = Probe::try_parse_from([
            "probe",
            "--backbone",
            "resnet18",
            "--layers",
            "layer2,layer3",
            "--size",
            "128",
            "--scoring",
            "knn",
            "--tau",
            "10",
            "--prototypes",
            "3",
            "--normal-weight",
            "0.25",
            "--reverse",
            "refine",
            "--sigma",
            "2",
            "--hybrid-weight",
            "0.75",
            "--model-seed",
            "9",
            "--max-bank",
            "4096",
        ])
        .unwrap();
        let c = probe.model.to_config().unwrap();
        assert_eq!(c.backbone.kind, BackboneKind::Resnet18);
        assert_eq!(c.backbone.layers, ["layer2", "layer3"]);
        assert_eq!(
            (c.size, c.scoring, c.tau),
            (InputSize::LongSide(128), Scoring::Knn, 10.0)
        );
        assert_eq!(c.prototype.prototypes_per_class, 3);
        assert_eq!(c.prototype.normal_source_weight, 0.25);
        assert_eq!(c.reverse.mode, ReverseMode::Refine);
        assert_eq!((c.map.sigma_px, c.hybrid.weight), (2.0, 0.75));
        assert_eq!((c.prototype.seed, c.knn.seed), (9, 9));
        assert_eq!(c.knn.max_bank, Some(4096));
    }

    #[test]
    fn resolution_flags_become_size_and_tiles() {
        let config = |args: &[&str]| {
            let mut argv = vec!["probe"];
            argv.extend_from_slice(args);
            Probe::try_parse_from(argv).unwrap().model.to_config()
        };
        let c = config(&["--size", "640x480"]).unwrap();
        assert_eq!(
            c.size,
            InputSize::Exact {
                width: 640,
                height: 480
            }
        );
        // --tile alone works at native resolution; --scale or --size set another size.
        let c = config(&["--tile", "256", "--tile-overlap", "64"]).unwrap();
        assert_eq!(
            (c.size, c.tile),
            (
                InputSize::NATIVE,
                Some(TileConfig {
                    size: 256,
                    overlap: 64
                })
            )
        );
        let c = config(&["--tile", "512", "--scale", "0.5"]).unwrap();
        assert_eq!((c.size, c.tile.unwrap().size), (InputSize::Scale(0.5), 512));
        let c = config(&["--tile", "none", "--size", "native"]).unwrap();
        assert_eq!((c.size, c.tile), (InputSize::NATIVE, None));
        assert!(config(&["--tile", "100"]).is_err());
        assert!(Probe::try_parse_from(["probe", "--size", "12x"]).is_err());
        assert!(Probe::try_parse_from(["probe", "--size", "256", "--scale", "2"]).is_err());
    }
}
