//! Choosing and loading a backbone: the embedded EfficientNet-Lite0 or a torchvision network
//! from the user's weight file.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::weights::load_state_dict;
use super::{
    EfficientNetLite0, EfficientNetLiteConfig, FeatureExtractor, ResNet, ResNetConfig,
    ResNetVariant, Vgg16, Vgg16Config,
};
use crate::{Error, Result};

/// The EfficientNet-Lite0 trunk (ImageNet, Apache-2.0; see `crates/bpgg/weights/NOTICE`),
/// up to the stride-16 blocks, as safetensors. Embedded so that bpgg needs no weight file.
pub static EMBEDDED_EFFICIENTNET_LITE0: &[u8] =
    include_bytes!("../../weights/efficientnet_lite0_trunk.safetensors");

/// The networks bpgg can extract features with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    /// EfficientNet-Lite0, embedded (the default).
    EfficientNetLite0,
    /// torchvision ResNet-18 (needs `--weights`).
    Resnet18,
    /// torchvision Wide-ResNet-50-2 (needs `--weights`).
    WideResnet50_2,
    /// torchvision VGG-16 (needs `--weights`).
    Vgg16,
}

impl BackboneKind {
    /// Every kind, for help texts.
    pub const ALL: [BackboneKind; 4] = [
        Self::EfficientNetLite0,
        Self::Resnet18,
        Self::WideResnet50_2,
        Self::Vgg16,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EfficientNetLite0 => "efficientnet-lite0",
            Self::Resnet18 => "resnet18",
            Self::WideResnet50_2 => "wide-resnet50-2",
            Self::Vgg16 => "vgg16",
        }
    }

    /// The layers used when none are given: strides 8 and 16.
    pub fn default_layers(self) -> Vec<String> {
        let names: &[&str] = match self {
            Self::EfficientNetLite0 => &["blocks.4", "blocks.10"],
            Self::Resnet18 | Self::WideResnet50_2 => &["layer2", "layer3"],
            Self::Vgg16 => &["features.22", "features.29"],
        };
        names.iter().map(|s| s.to_string()).collect()
    }
}

impl fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackboneKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "unknown backbone `{s}`; choose one of {}",
                    Self::ALL.map(|k| k.name()).join(", ")
                ))
            })
    }
}

/// Which backbone, which weights, which layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackboneConfig {
    pub kind: BackboneKind,
    /// A `.pth` (legacy or zip) or `.safetensors` file; `None` = the embedded weights
    /// (EfficientNet-Lite0 only).
    pub weights: Option<PathBuf>,
    /// Feature layers by the checkpoint's names; empty = [`BackboneKind::default_layers`].
    pub layers: Vec<String>,
}

impl Default for BackboneConfig {
    /// The embedded EfficientNet-Lite0, strides 8 and 16.
    fn default() -> Self {
        Self {
            kind: BackboneKind::EfficientNetLite0,
            weights: None,
            layers: Vec::new(),
        }
    }
}

impl BackboneConfig {
    /// The layers that will be extracted.
    pub fn effective_layers(&self) -> Vec<String> {
        if self.layers.is_empty() {
            self.kind.default_layers()
        } else {
            self.layers.clone()
        }
    }
}

/// Loads the configured backbone on `device`.
pub fn load_backbone(
    config: &BackboneConfig,
    device: &Device,
) -> Result<Box<dyn FeatureExtractor>> {
    let layers = config.effective_layers();
    let (vb, source) = match &config.weights {
        Some(path) => (
            load_state_dict(path)?.to_var_builder(DType::F32, device),
            Some(path.clone()),
        ),
        None if config.kind == BackboneKind::EfficientNetLite0 => {
            let tensors =
                candle_core::safetensors::load_buffer(EMBEDDED_EFFICIENTNET_LITE0, device)?;
            (VarBuilder::from_tensors(tensors, DType::F32, device), None)
        }
        None => {
            return Err(Error::InvalidConfig(format!(
                "backbone {} needs a weight file (torchvision .pth or .safetensors); \
                 only efficientnet-lite0 is embedded",
                config.kind
            )))
        }
    };
    let built: Result<Box<dyn FeatureExtractor>> = match config.kind {
        BackboneKind::EfficientNetLite0 => EfficientNetLite0::load(
            vb,
            &EfficientNetLiteConfig {
                layers,
                with_classifier: false,
            },
        )
        .map(|n| Box::new(n) as Box<dyn FeatureExtractor>),
        BackboneKind::Resnet18 | BackboneKind::WideResnet50_2 => {
            let variant = if config.kind == BackboneKind::Resnet18 {
                ResNetVariant::ResNet18
            } else {
                ResNetVariant::WideResNet50_2
            };
            ResNet::new(&ResNetConfig { variant, layers }, vb)
                .map(|n| Box::new(n) as Box<dyn FeatureExtractor>)
        }
        BackboneKind::Vgg16 => Vgg16::new(&Vgg16Config { layers }, vb)
            .map(|n| Box::new(n) as Box<dyn FeatureExtractor>),
    };
    // Name the weight file in errors about its contents (a missing or misshapen tensor).
    built.map_err(|e| match (&source, e) {
        (Some(path), e @ (Error::WeightTensor { .. } | Error::Tensor(_))) => {
            Error::invalid_weights(path, format!("not usable as {}: {e}", config.kind))
        }
        (_, e) => e,
    })
}
