//! The feature-extractor trait shared by every backbone.

use candle_core::Tensor;

use crate::Result;

/// One named intermediate feature map.
#[derive(Debug, Clone)]
pub struct FeatureMap {
    /// The layer name in the checkpoint's own naming (`layer2`, `blocks.5`, ...).
    pub name: String,
    /// Input pixels per feature pixel (4, 8, 16, ...).
    pub stride: usize,
    /// `(batch, channels, height / stride, width / stride)`.
    pub tensor: Tensor,
}

/// The feature maps a backbone returns for one batch, shallowest first.
#[derive(Debug, Clone, Default)]
pub struct FeatureMaps {
    pub maps: Vec<FeatureMap>,
}

impl FeatureMaps {
    /// The map of the given layer name, if the backbone returned it.
    pub fn get(&self, name: &str) -> Option<&FeatureMap> {
        self.maps.iter().find(|m| m.name == name)
    }
}

/// A frozen CNN that returns named intermediate feature maps.
pub trait FeatureExtractor: Send + Sync {
    /// A short name (`efficientnet-lite0`, `resnet18`, ...).
    fn name(&self) -> &str;

    /// The layers this extractor returns, shallowest first.
    fn layers(&self) -> Vec<String>;

    /// Runs the network on a batch.
    ///
    /// # Shapes
    /// - `images`: `(batch, 3, height, width)`, `f32` RGB in `0..=255` on the extractor's device.
    /// - returns one [`FeatureMap`] per selected layer, `(batch, c_l, height / s_l, width / s_l)`.
    fn forward_features(&self, images: &Tensor) -> Result<FeatureMaps>;
}
