//! Frozen ImageNet-pretrained CNNs that turn images into named intermediate feature maps.
//!
//! Callers pass RGB pixels in `0..=255` as `f32`; each network applies the input normalisation
//! it was trained with. BatchNorm always uses its running statistics (eval mode).

mod combine;
mod features;
pub(crate) mod resize;
pub mod weights;

pub use combine::*;
pub use features::{FeatureExtractor, FeatureMap, FeatureMaps};
pub use resize::{resize_area, resize_bilinear};
