//! Images to embedded features: resize, backbone, combine stages at stride 8, L2-normalise,
//! and the trained projection head when there is one.

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::head::ProjectionHead;
use crate::backbone::{
    embed, load_backbone, BackboneConfig, FeatureExtractor, DEFAULT_EMBED_STRIDE,
};
use crate::data::transform::{images_to_batch, resize_image};
use crate::Result;

/// Images encoded per backbone call.
const ENCODE_BATCH: usize = 8;

/// A loaded backbone with the input size it is fed.
pub struct Encoder {
    extractor: Box<dyn FeatureExtractor>,
    image_size: u32,
    device: Device,
    head: Option<ProjectionHead>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("backbone", &self.extractor.name())
            .field("layers", &self.extractor.layers())
            .field("image_size", &self.image_size)
            .field("head", &self.head.as_ref().map(|h| h.config()))
            .finish()
    }
}

impl Encoder {
    /// Loads the backbone.
    pub fn new(backbone: &BackboneConfig, image_size: u32, device: &Device) -> Result<Self> {
        Ok(Self {
            extractor: load_backbone(backbone, device)?,
            image_size,
            device: device.clone(),
            head: None,
        })
    }

    /// Applies a trained projection head after the backbone (see [`crate::train`]).
    pub fn with_head(mut self, head: Option<ProjectionHead>) -> Self {
        self.head = head;
        self
    }

    /// The trained projection head, if any.
    pub fn head(&self) -> Option<&ProjectionHead> {
        self.head.as_ref()
    }

    /// The square side images are resized to.
    pub fn image_size(&self) -> u32 {
        self.image_size
    }

    /// The device features live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes images of any size (each is resized to `image_size` first).
    ///
    /// # Shapes
    /// - returns `(n, C, image_size / 8, image_size / 8)`, unit-length along `C`.
    pub fn encode(&self, images: &[RgbImage]) -> Result<Tensor> {
        let mut chunks = Vec::new();
        for chunk in images.chunks(ENCODE_BATCH) {
            let resized: Vec<RgbImage> = chunk
                .iter()
                .map(|i| resize_image(i, self.image_size, self.image_size))
                .collect();
            let batch = images_to_batch(&resized, &self.device)?;
            let maps = self.extractor.forward_features(&batch)?;
            let feats = embed(&maps, DEFAULT_EMBED_STRIDE)?;
            chunks.push(match &self.head {
                Some(head) => head.forward(&feats)?,
                None => feats,
            });
        }
        Ok(Tensor::cat(&chunks, 0)?)
    }
}
