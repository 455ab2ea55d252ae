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

/// Runs `forward` on `images` in sub-batches of one image per thread of the rayon pool when
/// the batch is larger than the pool and on the CPU, and concatenates the maps: the
/// activations of a whole batch may spill out of the last-level cache where those of a
/// sub-batch stay in it. Elsewhere it runs the whole batch at once.
///
/// # Shapes
/// - `images`: `(batch, 3, h, w)`; `forward` and the result as
///   [`FeatureExtractor::forward_features`].
pub(crate) fn forward_in_sub_batches(
    images: &Tensor,
    forward: impl Fn(&Tensor) -> Result<FeatureMaps>,
) -> Result<FeatureMaps> {
    let batch = images.dim(0)?;
    let sub_batch = rayon::current_num_threads().max(1);
    if !images.device().is_cpu() || batch <= sub_batch {
        return forward(images);
    }
    let parts = (0..batch)
        .step_by(sub_batch)
        .map(|first| forward(&images.narrow(0, first, sub_batch.min(batch - first))?))
        .collect::<Result<Vec<_>>>()?;
    let mut maps = FeatureMaps::default();
    for (i, first) in parts[0].maps.iter().enumerate() {
        let tensors: Vec<&Tensor> = parts.iter().map(|p| &p.maps[i].tensor).collect();
        maps.maps.push(FeatureMap {
            name: first.name.clone(),
            stride: first.stride,
            tensor: Tensor::cat(&tensors, 0)?,
        });
    }
    Ok(maps)
}
