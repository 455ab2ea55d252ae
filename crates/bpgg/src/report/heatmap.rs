//! Anomaly maps as pictures: a perceptual colormap and overlays on the input image.

use image::{GrayImage, Rgb, RgbImage};

use crate::data::float_map::FloatMap;
use crate::data::image_io::Mask;

/// Control points of the "inferno" colormap (matplotlib, CC0), evenly spaced on `[0, 1]`.
const INFERNO: [[u8; 3]; 9] = [
    [0, 0, 4],
    [31, 12, 72],
    [85, 15, 109],
    [136, 34, 106],
    [186, 54, 85],
    [227, 89, 51],
    [249, 140, 10],
    [249, 201, 50],
    [252, 255, 164],
];

/// The inferno colour of `t` in `[0, 1]` (clamped), linearly interpolated between control points.
pub fn inferno(t: f32) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (INFERNO.len() - 1) as f32;
    let i = (x.floor() as usize).min(INFERNO.len() - 2);
    let f = x - i as f32;
    let (a, b) = (INFERNO[i], INFERNO[i + 1]);
    [0, 1, 2].map(|c| (f32::from(a[c]) * (1.0 - f) + f32::from(b[c]) * f).round() as u8)
}

/// The image with the map blended in (colour scale: 0 → dark, `threshold` → mid, `2·threshold`
/// and above → bright) and the predicted mask's outline in cyan. Map and image must have the
/// same size.
pub fn overlay(image: &RgbImage, map: &FloatMap, threshold: f32) -> RgbImage {
    let scale = if threshold > 0.0 {
        0.5 / threshold
    } else {
        1.0
    };
    let mask = map.threshold(threshold);
    let edge = outline(&mask);
    RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let i = (y * image.width() + x) as usize;
        if edge.as_raw()[i] > 0 {
            return Rgb([0, 255, 255]);
        }
        let heat = inferno(map.data[i] * scale);
        let px = image.get_pixel(x, y).0;
        Rgb([0, 1, 2].map(|c| ((u16::from(px[c]) + u16::from(heat[c])) / 2) as u8))
    })
}

/// Pixels of the mask that touch a non-mask pixel (4-neighbourhood): 255, else 0.
pub fn outline(mask: &Mask) -> GrayImage {
    let (w, h) = (mask.width as i64, mask.height as i64);
    let at =
        |x: i64, y: i64| x >= 0 && y >= 0 && x < w && y < h && mask.pixels[(y * w + x) as usize];
    GrayImage::from_fn(mask.width, mask.height, |x, y| {
        let (x, y) = (x as i64, y as i64);
        let inside = at(x, y);
        let border = inside && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1));
        image::Luma([if border { 255 } else { 0 }])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colormap_ends_and_resize_of_constant() {
        assert_eq!(inferno(0.0), INFERNO[0]);
        assert_eq!(inferno(1.0), INFERNO[8]);
        assert_eq!(inferno(f32::NAN), INFERNO[0]);
        let m = FloatMap {
            width: 2,
            height: 2,
            data: vec![0.25; 4],
        };
        let r = m.resized(5, 3);
        assert!(r.data.iter().all(|&v| (v - 0.25).abs() < 1e-6));
        let mut mask = Mask::empty(5, 5);
        for y in 1..4 {
            for x in 1..4 {
                mask.pixels[y * 5 + x] = true;
            }
        }
        // A 3x3 square: 8 border pixels, the centre is interior.
        assert_eq!(
            outline(&mask).as_raw().iter().filter(|&&v| v > 0).count(),
            8
        );
    }
}
