//! Images to embedded features: backbone, combine stages at stride 8, L2-normalise, and the
//! trained projection head when there is one. How an image is sized and tiled for it is
//! [`super::tiling`]'s business; [`Encoder::encode_prepared`] runs that plan.

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::head::ProjectionHead;
use super::tiling::{PreparedImage, Stitcher};
use crate::backbone::{
    embed, load_backbone, BackboneConfig, FeatureExtractor, DEFAULT_EMBED_STRIDE,
};
use crate::data::transform::images_to_batch;
use crate::ops::l2_normalize;
use crate::{Error, Result};

/// Images (or tiles) encoded per backbone call.
pub(crate) const ENCODE_BATCH: usize = 8;

/// A loaded backbone (with the trained projection head, if any).
pub struct Encoder {
    extractor: Box<dyn FeatureExtractor>,
    device: Device,
    head: Option<ProjectionHead>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("backbone", &self.extractor.name())
            .field("layers", &self.extractor.layers())
            .field("head", &self.head.as_ref().map(|h| h.config()))
            .finish()
    }
}

impl Encoder {
    /// Loads the backbone.
    pub fn new(backbone: &BackboneConfig, device: &Device) -> Result<Self> {
        Ok(Self {
            extractor: load_backbone(backbone, device)?,
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

    /// The device features live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Encodes images as they are: all of one size, whose sides should be multiples of
    /// [`super::INPUT_MULTIPLE`] (then the grid is exactly an eighth of the image).
    ///
    /// # Shapes
    /// - returns `(n, C, height / 8, width / 8)`, unit-length along `C`.
    pub fn encode(&self, images: &[RgbImage]) -> Result<Tensor> {
        if let Some(odd) = images
            .iter()
            .find(|i| i.dimensions() != images[0].dimensions())
        {
            return Err(Error::ShapeMismatch(format!(
                "Encoder::encode: images of one batch must share a size, got {:?} and {:?}",
                images[0].dimensions(),
                odd.dimensions()
            )));
        }
        let mut chunks = Vec::new();
        for chunk in images.chunks(ENCODE_BATCH) {
            let batch = images_to_batch(chunk, &self.device)?;
            let maps = self.extractor.forward_features(&batch)?;
            let feats = embed(&maps, DEFAULT_EMBED_STRIDE)?;
            chunks.push(match &self.head {
                Some(head) => head.forward(&feats)?,
                None => feats,
            });
        }
        Ok(Tensor::cat(&chunks, 0)?)
    }

    /// The features of a prepared image's whole padded working image: its tiles are encoded
    /// in batches and stitched (overlaps blended, then each cell L2-normalised again). A
    /// one-tile image gives exactly [`Encoder::encode`] of that tile.
    ///
    /// Holds the features of the whole image: meant for supports and evaluation. Predictions
    /// score tile by tile instead ([`super::FittedModel::predict_prepared`]).
    ///
    /// # Shapes
    /// - returns `(1, C, padded height / 8, padded width / 8)`.
    pub fn encode_prepared(&self, image: &PreparedImage) -> Result<Tensor> {
        let layout = &image.layout;
        if layout.len() == 1 {
            return self.encode(&[image.tile(0)]);
        }
        let mut stitcher: Option<Stitcher> = None;
        let tiles: Vec<usize> = (0..layout.len()).collect();
        for chunk in tiles.chunks(ENCODE_BATCH) {
            let pixels: Vec<RgbImage> = chunk.iter().map(|&i| image.tile(i)).collect();
            let feats = self.encode(&pixels)?;
            let s = stitcher.get_or_insert_with(|| Stitcher::new(layout, feats.dims()[1]));
            for (j, &i) in chunk.iter().enumerate() {
                s.add(i, &feats.narrow(0, j, 1)?)?;
            }
        }
        let stitched = stitcher
            .expect("a layout has at least one tile")
            .finish(&self.device)?;
        l2_normalize(&stitched, 1)
    }
}
