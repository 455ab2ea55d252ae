//! torchvision VGG-16 (without BatchNorm) as a frozen feature extractor.
//!
//! Simonyan, Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
//! ICLR 2015, configuration D. torchvision keeps the convolutional part in one
//! `nn.Sequential` called `features`, so the modules are numbered `features.0` ..
//! `features.30`: each convolution `features.N` (keys `features.N.weight`,
//! `features.N.bias`) is followed by its ReLU `features.N+1`, and each of the five stages ends
//! in a 2x2 max pool (`features.4`, `.9`, `.16`, `.23`, `.30`). The classifier is never read.
//!
//! # Layer names
//! Any module output can be requested by its torchvision name `features.N` (the output of
//! module `N`). The stage aliases name the ReLU output just *before* each stage's pool, the
//! deepest and still full-resolution map of that stage:
//!
//! | alias | module | stride | channels |
//! |---|---|---|---|
//! | `stage1` | `features.3`  | 1  | 64  |
//! | `stage2` | `features.8`  | 2  | 128 |
//! | `stage3` | `features.15` | 4  | 256 |
//! | `stage4` | `features.22` | 8  | 512 |
//! | `stage5` | `features.29` | 16 | 512 |
//!
//! Aliases are resolved to `features.N` at construction; returned maps carry that name.
//! Only the modules up to the deepest requested one are loaded and run.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::frozen_conv::{ConvGeometry, FrozenConv2d};
use super::imagenet::normalize_imagenet;
use super::{FeatureExtractor, FeatureMap, FeatureMaps};
use crate::kernels::{max_pool2d, Activation};
use crate::{Error, Result};

/// Output channels of VGG-16's convolutions, `None` for a max pool (configuration D).
const VGG16_PLAN: [Option<usize>; 18] = [
    Some(64),
    Some(64),
    None,
    Some(128),
    Some(128),
    None,
    Some(256),
    Some(256),
    Some(256),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
    Some(512),
    Some(512),
    Some(512),
    None,
];

/// The stage aliases and the `features` index each stands for (see the module docs).
pub const VGG16_STAGE_ALIASES: [(&str, usize); 5] = [
    ("stage1", 3),
    ("stage2", 8),
    ("stage3", 15),
    ("stage4", 22),
    ("stage5", 29),
];

/// Name prefix of the convolutional part in torchvision's checkpoint.
const FEATURES: &str = "features";
/// Kernel and stride of torchvision VGG's max pools (no padding; odd sizes are floored).
const POOL: usize = 2;

/// One module of `features`.
#[derive(Debug, Clone)]
enum VggModule {
    Conv(FrozenConv2d),
    Relu,
    MaxPool,
}

/// Which layers [`Vgg16`] returns.
///
/// `Default`: `features.22` and `features.29` (the `stage4` and `stage5` ReLU outputs,
/// strides 8 and 16, 512 channels each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vgg16Config {
    /// `features.N` (`N` in `0..=30`) or a stage alias `stage1` .. `stage5`; any order, no
    /// duplicates, at least one.
    pub layers: Vec<String>,
}

impl Default for Vgg16Config {
    fn default() -> Self {
        Self {
            layers: vec!["features.22".into(), "features.29".into()],
        }
    }
}

impl Vgg16Config {
    /// The `features` indices of the requested layers, shallowest first.
    fn module_indices(&self) -> Result<Vec<usize>> {
        let num_modules = module_count();
        if self.layers.is_empty() {
            return Err(Error::InvalidConfig(
                "vgg16: no layers requested; use `features.N` or `stage1`..`stage5`".into(),
            ));
        }
        let mut indices = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let alias = VGG16_STAGE_ALIASES
                .iter()
                .find(|(name, _)| name == layer)
                .map(|&(_, index)| index);
            let index = alias
                .or_else(|| {
                    layer
                        .strip_prefix("features.")
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| n < num_modules)
                })
                .ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "vgg16: unknown layer `{layer}`; use `features.N` with N in 0..={} \
                         or `stage1`..`stage5`",
                        num_modules - 1
                    ))
                })?;
            if indices.contains(&index) {
                return Err(Error::InvalidConfig(format!(
                    "vgg16: layer `{layer}` (features.{index}) requested twice"
                )));
            }
            indices.push(index);
        }
        indices.sort_unstable();
        Ok(indices)
    }
}

/// Number of modules in `features` (conv and ReLU per conv entry, one per pool).
fn module_count() -> usize {
    VGG16_PLAN
        .iter()
        .map(|entry| if entry.is_some() { 2 } else { 1 })
        .sum()
}

/// torchvision VGG-16 truncated after its deepest requested module.
#[derive(Debug, Clone)]
pub struct Vgg16 {
    /// `features.0` .. `features.{deepest}`.
    modules: Vec<VggModule>,
    /// Requested module indices, shallowest first.
    selected: Vec<usize>,
    dtype: DType,
}

impl Vgg16 {
    /// Builds the network from a state dict with torchvision key names.
    ///
    /// The weights keep `vb`'s dtype and device. Errors: an invalid layer list
    /// ([`Error::InvalidConfig`]); a missing or misshapen tensor ([`Error::WeightTensor`]
    /// naming its key).
    pub fn new(config: &Vgg16Config, vb: VarBuilder) -> Result<Self> {
        let selected = config.module_indices()?;
        let deepest = *selected.last().expect("module_indices is never empty");
        let mut modules = Vec::with_capacity(deepest + 1);
        let mut in_channels = 3;
        for entry in VGG16_PLAN {
            if modules.len() > deepest {
                break;
            }
            match entry {
                Some(out_channels) => {
                    let key = format!("{FEATURES}.{}", modules.len());
                    let geometry = ConvGeometry {
                        in_channels,
                        out_channels,
                        kernel: 3,
                        stride: 1,
                        padding: 1,
                    };
                    modules.push(VggModule::Conv(FrozenConv2d::load(&vb, &key, geometry)?));
                    modules.push(VggModule::Relu);
                    in_channels = out_channels;
                }
                None => modules.push(VggModule::MaxPool),
            }
        }
        modules.truncate(deepest + 1);
        Ok(Self {
            modules,
            selected,
            dtype: vb.dtype(),
        })
    }
}

impl FeatureExtractor for Vgg16 {
    fn name(&self) -> &str {
        "vgg16"
    }

    fn layers(&self) -> Vec<String> {
        self.selected
            .iter()
            .map(|i| format!("{FEATURES}.{i}"))
            .collect()
    }

    /// # Shapes
    /// - `images`: `(batch, 3, height, width)`, RGB in `0..=255`.
    /// - `features.N`: `(batch, c, height / s, width / s)` with `s = 2^(pools up to N)`
    ///   (pools floor odd sizes, as torchvision's do).
    fn forward_features(&self, images: &Tensor) -> Result<FeatureMaps> {
        let mut x = normalize_imagenet(images, self.dtype)?;
        let mut stride = 1;
        let mut maps = Vec::with_capacity(self.selected.len());
        // A ReLU right after a convolution whose own output is not requested runs inside it.
        let mut relu_done = false;
        for (index, module) in self.modules.iter().enumerate() {
            x = match module {
                VggModule::Conv(conv) => {
                    let next_is_relu = matches!(self.modules.get(index + 1), Some(VggModule::Relu));
                    relu_done = next_is_relu && !self.selected.contains(&index);
                    let activation = if relu_done {
                        Activation::Relu
                    } else {
                        Activation::Identity
                    };
                    conv.forward_fused(&x, None, activation)?
                }
                VggModule::Relu if relu_done => {
                    relu_done = false;
                    x
                }
                VggModule::Relu => x.relu()?,
                VggModule::MaxPool => {
                    stride *= 2;
                    max_pool2d(&x, POOL, POOL, 0)?
                }
            };
            if self.selected.contains(&index) {
                maps.push(FeatureMap {
                    name: format!("{FEATURES}.{index}"),
                    stride,
                    tensor: x.clone(),
                });
            }
        }
        Ok(FeatureMaps { maps })
    }
}
