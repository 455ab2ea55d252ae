//! Frozen ImageNet-pretrained CNNs that turn images into named intermediate feature maps.
//!
//! Callers pass RGB pixels in `0..=255` as `f32`; each network applies the input normalisation
//! it was trained with. BatchNorm always uses its running statistics (eval mode).

mod combine;
pub mod efficientnet_lite;
mod features;
mod frozen_conv;
pub mod imagenet;
pub mod resnet;
mod select;
pub mod synthetic_weights;
pub mod vgg;
pub mod weights;

pub use combine::*;
pub use efficientnet_lite::LITE0_BATCH_NORM_EPS;
pub use efficientnet_lite::{EfficientNetLite0, EfficientNetLiteConfig};
pub use features::{FeatureExtractor, FeatureMap, FeatureMaps};
pub use frozen_conv::{fold_batch_norm, BatchNormParams, TORCHVISION_BATCH_NORM_EPS};
pub use resnet::{ResNet, ResNetConfig, ResNetVariant};
pub use select::{load_backbone, BackboneConfig, BackboneKind, EMBEDDED_EFFICIENTNET_LITE0};
pub use vgg::{Vgg16, Vgg16Config};
