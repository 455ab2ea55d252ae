//! Everything a fitted model is configured by, validated once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::resolution::{InputSize, TileConfig};
use crate::backbone::BackboneConfig;
use crate::baseline::KnnConfig;
use crate::guidance::{AnomalyMapConfig, HybridConfig, ReverseConfig, DEFAULT_TAU};
use crate::prototype::{PrototypeConfig, SupportCellsConfig};

use super::image_score::ImageScoreConfig;
use crate::{Error, Result};

/// Checks a square model input side (training's `image_size`): a multiple of 16 (the deepest
/// stride the features use) in `32..=4096`.
pub fn validate_image_size(size: u32) -> Result<()> {
    if !(32..=4096).contains(&size) || !size.is_multiple_of(16) {
        return Err(Error::InvalidConfig(format!(
            "image size must be a multiple of 16 in 32..=4096, got {size}"
        )));
    }
    Ok(())
}

/// How query pixels are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// Chosen from the supports at fit time: `hybrid` with defect images and at least two
    /// normal images, `bpgg` with defect images only, `knn` with normal images only.
    Auto,
    /// BPGG: softmax over τ·cos to the defect and normal prototypes (needs defect supports).
    Bpgg,
    /// Normal-only: distance to the nearest normal-support feature (PatchCore-style); without
    /// normal images, to the nearest background feature of the defect images.
    Knn,
    /// Prototypes, the defect and normal memory banks and the k-NN distance combined (see
    /// [`crate::guidance::hybrid_score`]).
    Hybrid,
}

impl Scoring {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Bpgg => "bpgg",
            Self::Knn => "knn",
            Self::Hybrid => "hybrid",
        }
    }

    /// The concrete scoring for supports with (or without) defect images; concrete scorings
    /// are returned unchanged.
    pub fn resolve(self, has_defects: bool) -> Scoring {
        match self {
            Self::Auto if has_defects => Self::Hybrid,
            Self::Auto => Self::Knn,
            concrete => concrete,
        }
    }

    /// Whether this scoring uses the prototypes (and so needs defect supports).
    pub fn uses_prototypes(self) -> bool {
        matches!(self, Self::Bpgg | Self::Hybrid)
    }

    /// Whether this scoring uses the normal memory bank (and so needs normal pixels: normal
    /// supports, or the background of defect supports).
    pub fn uses_memory_bank(self) -> bool {
        matches!(self, Self::Knn | Self::Hybrid)
    }
}

impl fmt::Display for Scoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scoring {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "bpgg" => Ok(Self::Bpgg),
            "knn" => Ok(Self::Knn),
            "hybrid" => Ok(Self::Hybrid),
            _ => Err(Error::InvalidConfig(format!(
                "unknown scoring `{s}`; choose auto, bpgg, knn or hybrid"
            ))),
        }
    }
}

/// The configuration of a fitted model; stored inside the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Feature extractor and layers.
    pub backbone: BackboneConfig,

    // Resolution: how images become model inputs and how maps come back (`model::tiling`).
    /// The working size every image is resized to: its anomaly map is computed at this size,
    /// `eval` compares maps and ground truth at it, and predictions are brought back to the
    /// image's own size from it. JSON `256` (long side), `"640x480"`, `"native"`,
    /// `{"scale": 0.5}`.
    pub size: InputSize,
    /// Cut the working image into overlapping tiles, each encoded on its own, scores stitched
    /// back (memory bounded whatever the image size); `None` (JSON `null` or absent) encodes
    /// each working image whole.
    pub tile: Option<TileConfig>,

    /// Which signal scores the query pixels.
    pub scoring: Scoring,
    /// Prototype generation (prototypes per class, normal-source balance).
    pub prototype: PrototypeConfig,
    /// Temperature of the cosine similarities (τ, default 20).
    pub tau: f32,
    /// The reverse branch at inference (off by default; see the README for measurements).
    pub reverse: ReverseConfig,
    /// The normal memory bank.
    pub knn: KnnConfig,
    /// How `hybrid` mixes the two signals.
    pub hybrid: HybridConfig,
    /// Upsampling and smoothing of the maps.
    pub map: AnomalyMapConfig,

    // Scoring from the supports' pixels (defect memory bank, one-image calibration, the image
    // score); see `prototype::support_cells`, `baseline::leave_one_out`, `model::image_score`.
    /// Which cells of a defect support go to the defect bank and which to the normal bank.
    pub support_cells: SupportCellsConfig,
    /// Whether the supports are also encoded flipped left-right and upside-down, the pixels of
    /// these copies joining the memory banks (more views of few images; the prototypes keep
    /// the originals). Default true.
    pub flip_supports: bool,
    /// When a support image is scored as if it were a query (to calibrate distances and choose
    /// the thresholds) and no other image adds to a bank, it is compared with its own pixels
    /// farther than this many feature cells away. Default 3 (24 px at stride 8).
    pub self_exclusion_radius: usize,
    /// How an image's score is taken from its scores on the feature grid.
    pub image_score: ImageScoreConfig,
}

impl Default for ModelConfig {
    /// Embedded EfficientNet-Lite0, 256x256 px, whole images, automatic scoring (hybrid
    /// when defect images are given), τ = 20, one prototype per class, reverse branch off,
    /// σ = 4 px, image score the mean of the top 3 cells.
    fn default() -> Self {
        Self {
            backbone: BackboneConfig::default(),
            size: InputSize::default(),
            tile: None,
            scoring: Scoring::Auto,
            prototype: PrototypeConfig::default(),
            tau: DEFAULT_TAU,
            reverse: ReverseConfig::default(),
            knn: KnnConfig::default(),
            hybrid: HybridConfig::default(),
            map: AnomalyMapConfig::default(),
            support_cells: SupportCellsConfig::default(),
            flip_supports: true,
            self_exclusion_radius: 3,
            image_score: ImageScoreConfig::default(),
        }
    }
}

impl ModelConfig {
    /// The side, in pixels, of the squares the encoder is fed when that does not depend on
    /// the image: the tile side with tiles, else the long side (`N`, or the larger side of
    /// `WxH`); `None` for a scale without tiles. A trained head is checked against it.
    pub fn nominal_side(&self) -> Option<u32> {
        match (&self.tile, self.size) {
            (Some(t), _) => Some(t.size),
            (None, InputSize::LongSide(n)) => Some(n),
            (None, InputSize::Exact { width, height }) => Some(width.max(height)),
            (None, InputSize::Scale(_)) => None,
        }
    }

    /// The resolution in words: `long side 256 px`, `640x480 px`, `native resolution, tiles
    /// of 256 px (overlap 32)`, ...
    pub fn describe_resolution(&self) -> String {
        let size = match self.size {
            InputSize::LongSide(n) => format!("long side {n} px"),
            InputSize::Exact { width, height } => format!("{width}x{height} px"),
            InputSize::Scale(1.0) => "native resolution".to_string(),
            InputSize::Scale(s) => format!("{s}x native resolution"),
        };
        match &self.tile {
            Some(t) => format!("{size}, tiles of {} px (overlap {})", t.size, t.overlap),
            None => size,
        }
    }

    /// Checks every field once, at the boundary.
    pub fn validate(&self) -> Result<()> {
        self.size.validate()?;
        if let Some(tile) = &self.tile {
            tile.validate()?;
        }
        crate::guidance::validate_tau(self.tau)?;
        self.prototype.validate()?;
        self.reverse.validate()?;
        self.knn.validate()?;
        self.hybrid.validate()?;
        self.map.validate()?;
        self.support_cells.validate()?;
        if self.self_exclusion_radius >= 64 {
            return Err(Error::InvalidConfig(format!(
                "self-exclusion radius must be below 64 cells, got {}",
                self.self_exclusion_radius
            )));
        }
        self.image_score.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_takes_the_defaults() {
        let c: ModelConfig =
            serde_json::from_str(r#"{"scoring": "knn", "size": 128, "map": {"sigma_px": 2}}"#)
                .unwrap();
        let expected = ModelConfig {
            scoring: Scoring::Knn,
            size: InputSize::LongSide(128),
            map: AnomalyMapConfig {
                sigma_px: 2.0,
                ..AnomalyMapConfig::default()
            },
            ..ModelConfig::default()
        };
        assert_eq!(c, expected);
        c.validate().unwrap();
        assert_eq!(
            serde_json::from_str::<ModelConfig>("{}").unwrap(),
            ModelConfig::default()
        );
    }

    #[test]
    fn unknown_keys_are_refused_at_every_level() {
        for json in [
            r#"{"scorng": "knn"}"#,
            r#"{"map": {"sigma": 2}}"#,
            r#"{"backbone": {"kind": "resnet18", "weight": "x"}}"#,
        ] {
            let err = serde_json::from_str::<ModelConfig>(json).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{json}: {err}");
        }
    }

    #[test]
    fn resolution_reads_naturally_in_json() {
        let c: ModelConfig =
            serde_json::from_str(r#"{"size": "native", "tile": {"size": 512, "overlap": 64}}"#)
                .unwrap();
        assert_eq!(c.size, InputSize::NATIVE);
        assert_eq!(
            c.tile,
            Some(TileConfig {
                size: 512,
                overlap: 64
            })
        );
        let c: ModelConfig =
            serde_json::from_str(r#"{"size": "640x480", "tile": {"size": 128}}"#).unwrap();
        assert_eq!(
            c.size,
            InputSize::Exact {
                width: 640,
                height: 480
            }
        );
        assert_eq!(c.tile.unwrap().overlap, TileConfig::default().overlap);
        let json = serde_json::to_value(ModelConfig::default()).unwrap();
        assert_eq!(
            (json["size"].clone(), json["tile"].clone()),
            ("256x256".into(), serde_json::Value::Null)
        );
        for bad in [
            r#"{"size": "big"}"#,
            r#"{"tile": {"side": 64}}"#,
            r#"{"image_size": 64}"#,
        ] {
            assert!(serde_json::from_str::<ModelConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_checks_every_stage() {
        let bad = [
            ModelConfig {
                size: InputSize::LongSide(8000),
                ..ModelConfig::default()
            },
            ModelConfig {
                tile: Some(TileConfig {
                    size: 100,
                    overlap: 0,
                }),
                ..ModelConfig::default()
            },
            ModelConfig {
                tau: f32::NAN,
                ..ModelConfig::default()
            },
            ModelConfig {
                reverse: ReverseConfig {
                    alpha: 2.0,
                    ..ReverseConfig::default()
                },
                ..ModelConfig::default()
            },
            ModelConfig {
                hybrid: HybridConfig {
                    weight: -0.1,
                    ..HybridConfig::default()
                },
                ..ModelConfig::default()
            },
            ModelConfig {
                map: AnomalyMapConfig {
                    sigma_px: f32::INFINITY,
                    ..AnomalyMapConfig::default()
                },
                ..ModelConfig::default()
            },
            ModelConfig {
                knn: KnnConfig {
                    chunk_rows: 0,
                    ..KnnConfig::default()
                },
                ..ModelConfig::default()
            },
            ModelConfig {
                prototype: PrototypeConfig {
                    prototypes_per_class: 0,
                    ..PrototypeConfig::default()
                },
                ..ModelConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
