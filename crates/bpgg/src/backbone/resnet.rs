//! torchvision ResNet-18 and Wide-ResNet-50-2 as frozen feature extractors.
//!
//! ResNet: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
//! Wide ResNet: Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016; torchvision's
//! `wide_resnet50_2` is ResNet-50 (v1.5: the stride sits on the 3x3 convolution of a
//! bottleneck) with twice the bottleneck width (`width_per_group = 128`).
//!
//! Weights are read with torchvision's own key names (`conv1`, `bn1`, `layer1.0.conv1`,
//! `layer1.0.bn1`, `layer1.0.downsample.0`, `layer1.0.downsample.1`, ...); the classifier
//! (`fc.*`) is never read. Every BatchNorm is folded into the convolution before it at load
//! time (exact up to `f32` rounding). Only the stages up to the deepest requested layer are
//! loaded and run, so a state dict may lack the deeper stages if they are not requested.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::frozen_conv::{ConvGeometry, FrozenConv2d};
use super::imagenet::normalize_imagenet;
use super::{FeatureExtractor, FeatureMap, FeatureMaps};
use crate::kernels::{max_pool2d, Activation};
use crate::{Error, Result};

/// The selectable layers: the outputs of torchvision's `layer1` .. `layer4` stages.
pub const RESNET_LAYERS: [&str; 4] = ["layer1", "layer2", "layer3", "layer4"];
/// Input pixels per feature pixel of each entry of [`RESNET_LAYERS`].
pub const RESNET_STRIDES: [usize; 4] = [4, 8, 16, 32];
/// Channels of the stem (`conv1`) and base planes of the first stage.
const STEM_CHANNELS: usize = 64;
/// torchvision's max pool after the stem: kernel, stride, padding.
const STEM_POOL: (usize, usize, usize) = (3, 2, 1);
/// Output channels of a bottleneck block relative to its planes.
const BOTTLENECK_EXPANSION: usize = 4;
/// torchvision's default bottleneck width per group, the reference for `width_per_group`.
const BASE_WIDTH: usize = 64;

/// The ResNet architectures this module builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResNetVariant {
    /// torchvision `resnet18`: basic blocks `[2, 2, 2, 2]`; stage channels 64/128/256/512.
    ResNet18,
    /// torchvision `wide_resnet50_2`: bottleneck blocks `[3, 4, 6, 3]`, width per group 128;
    /// stage channels 256/512/1024/2048.
    WideResNet50_2,
}

impl ResNetVariant {
    /// torchvision's constructor name (`resnet18`, `wide_resnet50_2`).
    pub fn name(self) -> &'static str {
        match self {
            ResNetVariant::ResNet18 => "resnet18",
            ResNetVariant::WideResNet50_2 => "wide_resnet50_2",
        }
    }

    /// Output channels of `layer1` .. `layer4`.
    pub fn stage_channels(self) -> [usize; 4] {
        let expansion = match self {
            ResNetVariant::ResNet18 => 1,
            ResNetVariant::WideResNet50_2 => BOTTLENECK_EXPANSION,
        };
        [64, 128, 256, 512].map(|planes| planes * expansion)
    }

    fn blocks_per_stage(self) -> [usize; 4] {
        match self {
            ResNetVariant::ResNet18 => [2, 2, 2, 2],
            ResNetVariant::WideResNet50_2 => [3, 4, 6, 3],
        }
    }
}

/// Which ResNet to build and which stage outputs it returns.
///
/// `Default`: ResNet-18 returning `layer2` and `layer3` (strides 8 and 16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResNetConfig {
    pub variant: ResNetVariant,
    /// Names from [`RESNET_LAYERS`], any order, no duplicates, at least one.
    pub layers: Vec<String>,
}

impl ResNetConfig {
    /// The given variant with the default layers `layer2`, `layer3`.
    pub fn new(variant: ResNetVariant) -> Self {
        Self {
            variant,
            layers: vec!["layer2".into(), "layer3".into()],
        }
    }

    /// The stage indices (0-based) of the requested layers, shallowest first.
    fn stage_indices(&self) -> Result<Vec<usize>> {
        if self.layers.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "{}: no layers requested; choose from {RESNET_LAYERS:?}",
                self.variant.name()
            )));
        }
        let mut indices = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let index = RESNET_LAYERS
                .iter()
                .position(|l| l == layer)
                .ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "{}: unknown layer `{layer}`; choose from {RESNET_LAYERS:?}",
                        self.variant.name()
                    ))
                })?;
            if indices.contains(&index) {
                return Err(Error::InvalidConfig(format!(
                    "{}: layer `{layer}` requested twice",
                    self.variant.name()
                )));
            }
            indices.push(index);
        }
        indices.sort_unstable();
        Ok(indices)
    }
}

impl Default for ResNetConfig {
    fn default() -> Self {
        Self::new(ResNetVariant::ResNet18)
    }
}

/// A residual block: convolutions with ReLU between them, the shortcut (identity or the
/// `downsample` projection) added to the last one, then ReLU. Two 3x3 convolutions make a
/// basic block; 1x1, 3x3, 1x1 make a bottleneck.
#[derive(Debug, Clone)]
struct ResidualBlock {
    convs: Vec<FrozenConv2d>,
    downsample: Option<FrozenConv2d>,
}

impl ResidualBlock {
    /// Loads block `prefix` (`layer2.0`) whose convolutions have the given geometries, named
    /// `conv1`, `conv2`, ... with BatchNorms `bn1`, `bn2`, ...
    fn load(
        vb: &VarBuilder,
        prefix: &str,
        geometries: &[ConvGeometry],
        downsample: Option<ConvGeometry>,
    ) -> Result<Self> {
        let convs = geometries
            .iter()
            .enumerate()
            .map(|(i, &g)| {
                FrozenConv2d::load_with_batch_norm(
                    vb,
                    &format!("{prefix}.conv{}", i + 1),
                    &format!("{prefix}.bn{}", i + 1),
                    g,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let downsample = downsample
            .map(|g| {
                FrozenConv2d::load_with_batch_norm(
                    vb,
                    &format!("{prefix}.downsample.0"),
                    &format!("{prefix}.downsample.1"),
                    g,
                )
            })
            .transpose()?;
        Ok(Self { convs, downsample })
    }

    /// # Shapes
    /// - `x`: `(batch, c_in, h, w)`; returns `(batch, c_out, h / stride, w / stride)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let shortcut = match &self.downsample {
            Some(projection) => projection.forward(x)?,
            None => x.clone(),
        };
        let (last, inner) = self.convs.split_last().expect("a block has convolutions");
        let mut y = x.clone();
        for conv in inner {
            y = conv.forward_fused(&y, None, Activation::Relu)?;
        }
        // The shortcut sum and the final ReLU are fused into the last convolution.
        last.forward_fused(&y, Some(&shortcut), Activation::Relu)
    }
}

/// A torchvision ResNet truncated after its deepest requested stage.
#[derive(Debug, Clone)]
pub struct ResNet {
    variant: ResNetVariant,
    stem: FrozenConv2d,
    /// `stages[s]` holds the blocks of `layer{s + 1}`; only up to the deepest requested stage.
    stages: Vec<Vec<ResidualBlock>>,
    /// Requested stage indices, shallowest first.
    selected: Vec<usize>,
    dtype: DType,
}

impl ResNet {
    /// Builds the network from a state dict with torchvision key names.
    ///
    /// The weights keep `vb`'s dtype and device. Errors: an invalid layer list
    /// ([`Error::InvalidConfig`]); a missing or misshapen tensor ([`Error::WeightTensor`]
    /// naming its key).
    pub fn new(config: &ResNetConfig, vb: VarBuilder) -> Result<Self> {
        let selected = config.stage_indices()?;
        let deepest = *selected.last().expect("stage_indices is never empty");
        let variant = config.variant;
        let stem = FrozenConv2d::load_with_batch_norm(
            &vb,
            "conv1",
            "bn1",
            ConvGeometry {
                in_channels: 3,
                out_channels: STEM_CHANNELS,
                kernel: 7,
                stride: 2,
                padding: 3,
            },
        )?;
        let mut in_channels = STEM_CHANNELS;
        let mut stages = Vec::with_capacity(deepest + 1);
        for (s, &num_blocks) in variant.blocks_per_stage()[..=deepest].iter().enumerate() {
            let planes = STEM_CHANNELS << s;
            let out_channels = variant.stage_channels()[s];
            let mut blocks = Vec::with_capacity(num_blocks);
            for b in 0..num_blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                let geometries = block_geometries(variant, in_channels, planes, stride);
                let downsample =
                    (stride != 1 || in_channels != out_channels).then_some(ConvGeometry {
                        in_channels,
                        out_channels,
                        kernel: 1,
                        stride,
                        padding: 0,
                    });
                let prefix = format!("{}.{b}", RESNET_LAYERS[s]);
                blocks.push(ResidualBlock::load(&vb, &prefix, &geometries, downsample)?);
                in_channels = out_channels;
            }
            stages.push(blocks);
        }
        Ok(Self {
            variant,
            stem,
            stages,
            selected,
            dtype: vb.dtype(),
        })
    }

    /// The architecture this network was built as.
    pub fn variant(&self) -> ResNetVariant {
        self.variant
    }
}

/// The convolutions of one block, in order.
fn block_geometries(
    variant: ResNetVariant,
    in_channels: usize,
    planes: usize,
    stride: usize,
) -> Vec<ConvGeometry> {
    let conv = |in_channels, out_channels, kernel, stride| ConvGeometry {
        in_channels,
        out_channels,
        kernel,
        stride,
        padding: kernel / 2,
    };
    match variant {
        ResNetVariant::ResNet18 => vec![
            conv(in_channels, planes, 3, stride),
            conv(planes, planes, 3, 1),
        ],
        ResNetVariant::WideResNet50_2 => {
            const WIDTH_PER_GROUP: usize = 128;
            let width = planes * WIDTH_PER_GROUP / BASE_WIDTH;
            vec![
                conv(in_channels, width, 1, 1),
                conv(width, width, 3, stride),
                conv(width, planes * BOTTLENECK_EXPANSION, 1, 1),
            ]
        }
    }
}

impl FeatureExtractor for ResNet {
    fn name(&self) -> &str {
        self.variant.name()
    }

    fn layers(&self) -> Vec<String> {
        self.selected
            .iter()
            .map(|&s| RESNET_LAYERS[s].to_string())
            .collect()
    }

    /// # Shapes
    /// - `images`: `(batch, 3, height, width)`, RGB in `0..=255`.
    /// - `layer{k}`: `(batch, c_k, ⌈height / s_k⌉, ⌈width / s_k⌉)` with `s_k` from
    ///   [`RESNET_STRIDES`] (exact division when the size is a multiple of 32).
    fn forward_features(&self, images: &Tensor) -> Result<FeatureMaps> {
        let x = normalize_imagenet(images, self.dtype)?;
        let x = self.stem.forward_fused(&x, None, Activation::Relu)?;
        let mut x = max_pool2d(&x, STEM_POOL.0, STEM_POOL.1, STEM_POOL.2)?;
        let mut maps = Vec::with_capacity(self.selected.len());
        for (s, blocks) in self.stages.iter().enumerate() {
            for block in blocks {
                x = block.forward(&x)?;
            }
            if self.selected.contains(&s) {
                maps.push(FeatureMap {
                    name: RESNET_LAYERS[s].to_string(),
                    stride: RESNET_STRIDES[s],
                    tensor: x.clone(),
                });
            }
        }
        Ok(FeatureMaps { maps })
    }
}
