//! What a fitted model says about one image, at the image's own size: the anomaly map, the image
//! score and verdict, the defect mask and its connected regions. Every door (`bpgg predict`, the
//! service, the Python package) reports these numbers, so they are computed here, once; the
//! image score itself comes from [`super::image_score`], the rule `bpgg eval` ranks images by.

use candle_core::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::encoder::{Encoder, ENCODE_BATCH};
use super::fitted::FittedModel;
use super::image_score::image_scores;
use super::tiling::{PreparedImage, Stitcher, TileLayout};
use crate::data::float_map::FloatMap;
use crate::data::image_io::Mask;
use crate::Result;

/// One connected defect region (8-connected pixels at or above the threshold), in image
/// pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Left column of the bounding box.
    pub x: u32,
    /// Top row of the bounding box.
    pub y: u32,
    /// Bounding-box width.
    pub w: u32,
    /// Bounding-box height.
    pub h: u32,
    /// Pixels in the region.
    pub area_px: u64,
    /// The largest map value inside the region.
    pub max_score: f32,
}

/// A fitted model's answer for one image.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The anomaly map at the image's own size.
    pub map: FloatMap,
    /// The image-level anomaly score (see [`super::image_score`]).
    pub image_score: f32,
    /// The pixel threshold the mask and regions were taken at.
    pub threshold: f32,
    /// The image score at or above which the image is judged defective.
    pub image_threshold: f32,
    /// Whether the image is judged defective (`image_score >= image_threshold`).
    pub defective: bool,
    /// `map >= threshold`.
    pub mask: Mask,
    /// The mask's connected regions, in raster order of their first pixel.
    pub regions: Vec<Region>,
}

/// The two thresholds a prediction is taken at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// On the anomaly map: a pixel at or above it is defect.
    pub pixel: f32,
    /// On the image score: an image at or above it is defective.
    pub image: f32,
}

impl Prediction {
    /// Builds the prediction from the model's map at its working size and the image's score
    /// ([`FittedModel::score`]), for an image of `width x height` pixels.
    pub fn from_model_map(
        model_map: FloatMap,
        image_score: f32,
        width: u32,
        height: u32,
        thresholds: Thresholds,
    ) -> Self {
        let map = if (model_map.width, model_map.height) == (width as usize, height as usize) {
            model_map
        } else {
            model_map.resized(width as usize, height as usize)
        };
        let mask = map.threshold(thresholds.pixel);
        let regions = regions(&map, &mask);
        Self {
            map,
            image_score,
            threshold: thresholds.pixel,
            image_threshold: thresholds.image,
            defective: image_score >= thresholds.image,
            mask,
            regions,
        }
    }

    /// Pixels at or above the threshold.
    pub fn defect_area_px(&self) -> usize {
        self.mask.defect_pixels()
    }

    /// The share of the image at or above the threshold.
    pub fn defect_area_fraction(&self) -> f64 {
        self.mask.coverage()
    }
}

/// The 8-connected regions of `mask` with their bounding boxes and largest map value.
fn regions(map: &FloatMap, mask: &Mask) -> Vec<Region> {
    let (w, h) = (mask.width as usize, mask.height as usize);
    // Only fails for a zero-sized mask or more than u32::MAX regions, neither of which a map
    // of a decoded image can have.
    let Ok(labels) = bpgg_metrics::connected_regions(&mask.pixels, w, h) else {
        return Vec::new();
    };
    let mut regions: Vec<Region> = labels
        .sizes
        .iter()
        .map(|&area_px| Region {
            x: u32::MAX,
            y: u32::MAX,
            w: 0,
            h: 0,
            area_px,
            max_score: f32::NEG_INFINITY,
        })
        .collect();
    // (x1, y1) inclusive corners, turned into w and h at the end.
    let mut far = vec![(0u32, 0u32); regions.len()];
    for (i, &label) in labels.labels.iter().enumerate() {
        if label == bpgg_metrics::BACKGROUND {
            continue;
        }
        let k = label as usize - 1;
        let (x, y) = ((i % w) as u32, (i / w) as u32);
        let r = &mut regions[k];
        r.x = r.x.min(x);
        r.y = r.y.min(y);
        far[k] = (far[k].0.max(x), far[k].1.max(y));
        r.max_score = r.max_score.max(map.data[i]);
    }
    for (r, (x1, y1)) in regions.iter_mut().zip(far) {
        r.w = x1 - r.x + 1;
        r.h = y1 - r.y + 1;
    }
    regions
}

impl FittedModel {
    /// Makes an image ready for [`FittedModel::predict_prepared`]: resized to its working size,
    /// its tiles laid out. Fails for an image too large to encode whole without tiles.
    pub fn prepare(&self, image: &RgbImage) -> Result<PreparedImage> {
        PreparedImage::new(image, &self.config.size, self.config.tile.as_ref())
    }

    /// Predicts prepared images; `threshold` overrides the model's own pixel threshold (the
    /// image verdict always takes [`FittedModel::image_threshold`]).
    pub fn predict_prepared(
        &self,
        encoder: &Encoder,
        images: &[PreparedImage],
        threshold: Option<f32>,
    ) -> Result<Vec<Prediction>> {
        let thresholds = Thresholds {
            pixel: threshold.unwrap_or(self.threshold),
            image: self.image_threshold,
        };
        let scored = self.working_scored(encoder, images)?;
        Ok(images
            .iter()
            .zip(scored)
            .map(|(p, (map, score))| {
                Prediction::from_model_map(map, score, p.width(), p.height(), thresholds)
            })
            .collect())
    }

    /// The anomaly maps of prepared images at their working sizes, with their image scores.
    /// Tiles (of all the images) are encoded and scored in batches of equally sized tiles and
    /// their two signals (pixel and image) stitched per image, so memory holds one batch of tile
    /// features, never a whole image's.
    pub(crate) fn working_scored(
        &self,
        encoder: &Encoder,
        images: &[PreparedImage],
    ) -> Result<Vec<(FloatMap, f32)>> {
        let jobs: Vec<(usize, usize)> = images
            .iter()
            .enumerate()
            .flat_map(|(i, p)| (0..p.layout.len()).map(move |t| (i, t)))
            .collect();
        let mut stitchers: Vec<Stitcher> =
            images.iter().map(|p| Stitcher::new(&p.layout, 2)).collect();
        let mut start = 0;
        while start < jobs.len() {
            let tile_size = images[jobs[start].0].layout.tile;
            let mut end = start + 1;
            while end < jobs.len()
                && end - start < ENCODE_BATCH
                && images[jobs[end].0].layout.tile == tile_size
            {
                end += 1;
            }
            let tiles: Vec<RgbImage> = jobs[start..end]
                .iter()
                .map(|&(i, t)| images[i].tile(t))
                .collect();
            let signals = self.signals(&encoder.encode(&tiles)?, None)?;
            let both = Tensor::cat(&[&signals.pixel, &signals.image], 1)?;
            for (j, &(i, t)) in jobs[start..end].iter().enumerate() {
                stitchers[i].add(t, &both.narrow(0, j, 1)?)?;
            }
            start = end;
        }
        images
            .iter()
            .zip(stitchers)
            .map(|(p, s)| {
                let both = s.finish(encoder.device())?;
                self.working_scored_grid(&both.narrow(1, 0, 1)?, &both.narrow(1, 1, 1)?, &p.layout)
            })
            .collect()
    }

    /// The anomaly map at the working size and the image score, from the pixel and image
    /// signals of the padded image's grid. The image score is taken over the cells that cover
    /// the working image (not the mirrored padding).
    ///
    /// # Shapes
    /// - `pixel`, `image`: `(1, 1, gh, gw)` with `(gh, gw)` = [`TileLayout::grid`].
    pub(crate) fn working_scored_grid(
        &self,
        pixel: &Tensor,
        image: &Tensor,
        layout: &TileLayout,
    ) -> Result<(FloatMap, f32)> {
        let map = self.working_map(pixel, layout)?;
        let (_, _, gh, gw) = image.dims4()?;
        let stride = crate::backbone::DEFAULT_EMBED_STRIDE;
        let cells_h = (layout.work.1 as usize).div_ceil(stride).clamp(1, gh);
        let cells_w = (layout.work.0 as usize).div_ceil(stride).clamp(1, gw);
        let inside = image.narrow(2, 0, cells_h)?.narrow(3, 0, cells_w)?;
        let score = image_scores(&inside, &self.config.image_score)?[0];
        Ok((map, score))
    }

    /// The anomaly map at the working size from the pixel signal of the padded image's grid.
    ///
    /// # Shapes
    /// - `raw`: `(1, 1, gh, gw)` with `(gh, gw)` = [`TileLayout::grid`].
    pub(crate) fn working_map(&self, raw: &Tensor, layout: &TileLayout) -> Result<FloatMap> {
        let map = self.map_from_raw(raw)?;
        let (w, h) = (layout.work.0 as usize, layout.work.1 as usize);
        let map = if layout.padded == layout.work {
            map
        } else {
            map.narrow(2, 0, h)?.narrow(3, 0, w)?
        };
        Ok(FloatMap {
            width: w,
            height: h,
            data: map.flatten_all()?.to_vec1::<f32>()?,
        })
    }

    /// Predicts images of any size; `threshold` overrides the model's own pixel threshold.
    pub fn predict_images(
        &self,
        encoder: &Encoder,
        images: &[RgbImage],
        threshold: Option<f32>,
    ) -> Result<Vec<Prediction>> {
        let prepared = images
            .iter()
            .map(|i| self.prepare(i))
            .collect::<Result<Vec<_>>>()?;
        self.predict_prepared(encoder, &prepared, threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_have_boxes_areas_and_maxima() {
        // Two regions: an L of three pixels (top left) and one pixel (bottom right).
        let map = FloatMap {
            width: 4,
            height: 3,
            data: vec![
                0.9, 0.6, 0.0, 0.0, //
                0.7, 0.1, 0.0, 0.0, //
                0.0, 0.0, 0.0, 0.8,
            ],
        };
        let thresholds = Thresholds {
            pixel: 0.5,
            image: 0.3,
        };
        let p = Prediction::from_model_map(map, 0.35, 4, 3, thresholds);
        assert_eq!(p.image_score, 0.35);
        assert!(p.defective, "the verdict takes the image threshold");
        assert_eq!(p.defect_area_px(), 4);
        assert_eq!(
            p.regions,
            vec![
                Region {
                    x: 0,
                    y: 0,
                    w: 2,
                    h: 2,
                    area_px: 3,
                    max_score: 0.9
                },
                Region {
                    x: 3,
                    y: 2,
                    w: 1,
                    h: 1,
                    area_px: 1,
                    max_score: 0.8
                },
            ]
        );
    }

    #[test]
    fn the_image_threshold_decides_the_verdict() {
        let map = FloatMap {
            width: 2,
            height: 2,
            data: vec![0.1, 0.2, 0.3, 0.4],
        };
        let thresholds = Thresholds {
            pixel: 0.5,
            image: 0.6,
        };
        let p = Prediction::from_model_map(map.clone(), 0.55, 6, 4, thresholds);
        assert!(
            !p.defective,
            "image score 0.55 is below the image threshold 0.6"
        );
        assert!(p.regions.is_empty());
        assert_eq!((p.map.width, p.map.height), (6, 4));
        // Whatever the map, the image threshold decides the verdict.
        let p = Prediction::from_model_map(map, 0.65, 6, 4, thresholds);
        assert!(p.defective && p.regions.is_empty());
    }
}
