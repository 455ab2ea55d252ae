//! One picture per image that reads at a glance: side by side, the image, its ground truth
//! outlined in green (when known), the anomaly map in the inferno colormap with a legend bar, and
//! the predicted mask outlined in cyan.
//!
//! The heat map uses a fixed scale tied to the threshold, so panels compare across images:
//! `0` is black, the threshold is the middle of the scale and `2·threshold` (and above) is the
//! brightest colour. The legend bar beside it carries ticks at `0`, the threshold and
//! `2·threshold` (bottom, middle, top); the HTML report prints the numbers.

use image::{Rgb, RgbImage};

use super::heatmap::{inferno, outline};
use crate::data::float_map::FloatMap;
use crate::data::image_io::Mask;
use crate::data::transform::resize_mask;

/// Ground-truth outline colour.
pub const GROUND_TRUTH_COLOUR: [u8; 3] = [40, 230, 60];
/// Predicted-mask outline colour.
pub const PREDICTION_COLOUR: [u8; 3] = [0, 235, 255];
/// Pixels between the cells of a panel.
const GAP: u32 = 4;
/// Panel background (between cells, around the legend).
const BACKGROUND: [u8; 3] = [24, 24, 28];

/// The panel of one image.
///
/// Cells: `[image | image + ground truth (green) | heat map + legend | image + prediction (cyan)]`;
/// without `ground_truth` the second cell is left out. `map` and `ground_truth` are resized to
/// the image (bilinear and nearest), so they may come at the model's size.
pub fn panel(
    image: &RgbImage,
    map: &FloatMap,
    threshold: f32,
    ground_truth: Option<&Mask>,
) -> RgbImage {
    let (w, h) = image.dimensions();
    let map = map.resized(w as usize, h as usize);
    let thickness = outline_thickness(w, h);
    let legend_w = legend_width(w);
    let cells = if ground_truth.is_some() { 4 } else { 3 };
    let total_w = cells * w + (cells - 1) * GAP + legend_w + GAP;
    let mut out = RgbImage::from_pixel(total_w, h, Rgb(BACKGROUND));
    let mut x = 0;
    blit(&mut out, image, x);
    x += w + GAP;
    if let Some(gt) = ground_truth {
        let gt = resize_mask(gt, w, h);
        blit(
            &mut out,
            &outlined(image, &gt, GROUND_TRUTH_COLOUR, thickness),
            x,
        );
        x += w + GAP;
    }
    blit(&mut out, &heat(&map, threshold), x);
    x += w + GAP / 2;
    blit(&mut out, &legend(legend_w, h), x);
    x += legend_w + GAP / 2 + GAP;
    let predicted = map.threshold(threshold);
    blit(
        &mut out,
        &outlined(image, &predicted, PREDICTION_COLOUR, thickness),
        x,
    );
    out
}

/// The map in the inferno colormap on the panel's scale (see the module docs).
pub fn heat(map: &FloatMap, threshold: f32) -> RgbImage {
    let scale = heat_scale(map, threshold);
    RgbImage::from_fn(map.width as u32, map.height as u32, |x, y| {
        Rgb(inferno(
            map.data[y as usize * map.width + x as usize] * scale,
        ))
    })
}

/// `1 / (2·threshold)`; for a non-positive threshold, `1 / max` of the map.
fn heat_scale(map: &FloatMap, threshold: f32) -> f32 {
    if threshold > 0.0 && threshold.is_finite() {
        return 0.5 / threshold;
    }
    let max = map.data.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        1.0 / max
    } else {
        1.0
    }
}

/// The image with the mask's outline drawn `thickness` pixels wide in `colour`.
pub fn outlined(image: &RgbImage, mask: &Mask, colour: [u8; 3], thickness: u32) -> RgbImage {
    let edge = outline(mask);
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    let r = thickness.saturating_sub(1) as i64;
    for (x, y, v) in edge.enumerate_pixels() {
        if v.0[0] == 0 {
            continue;
        }
        // Thicken inwards and outwards alike.
        for dy in -r..=r {
            for dx in -r..=r {
                let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                if xx >= 0 && yy >= 0 && xx < w as i64 && yy < h as i64 {
                    out.put_pixel(xx as u32, yy as u32, Rgb(colour));
                }
            }
        }
    }
    out
}

/// The colour legend: inferno from bottom (`0`) to top (`2·threshold`), with white ticks at the
/// bottom, middle and top on both sides.
fn legend(width: u32, height: u32) -> RgbImage {
    let tick = (width / 3).max(2);
    let mut bar = RgbImage::from_fn(width, height, |_, y| {
        let t = 1.0 - y as f32 / (height.max(2) - 1) as f32;
        Rgb(inferno(t))
    });
    for y in [0, height / 2, height.saturating_sub(1)] {
        for dy in 0..2u32 {
            let yy = (y + dy).min(height.saturating_sub(1));
            for x in (0..tick).chain(width.saturating_sub(tick)..width) {
                bar.put_pixel(x, yy, Rgb([255, 255, 255]));
            }
        }
    }
    bar
}

fn legend_width(cell_width: u32) -> u32 {
    (cell_width / 14).max(8)
}

/// 1 px up to 127 px images, then one more per 128 px, so outlines stay visible when shrunk.
fn outline_thickness(w: u32, h: u32) -> u32 {
    1 + w.min(h) / 128
}

fn blit(dst: &mut RgbImage, src: &RgbImage, x0: u32) {
    for (x, y, p) in src.enumerate_pixels() {
        if x0 + x < dst.width() && y < dst.height() {
            dst.put_pixel(x0 + x, y, *p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square_mask(size: u32, from: u32, to: u32) -> Mask {
        let mut m = Mask::empty(size, size);
        for y in from..to {
            for x in from..to {
                m.pixels[(y * size + x) as usize] = true;
            }
        }
        m
    }

    #[test]
    fn panel_has_its_cells_and_colours_where_expected() {
        let size = 32u32;
        let image = RgbImage::from_pixel(size, size, Rgb([128, 128, 128]));
        // Map: 1.0 inside [8, 24), 0 elsewhere, given at half size (resized by the panel).
        let mut map = FloatMap {
            width: 16,
            height: 16,
            data: vec![0.0; 256],
        };
        for y in 4..12 {
            for x in 4..12 {
                map.data[y * 16 + x] = 1.0;
            }
        }
        let gt = square_mask(size, 8, 24);
        let p = panel(&image, &map, 0.5, Some(&gt));
        let legend_w = legend_width(size);
        assert_eq!(p.width(), 4 * size + 3 * GAP + legend_w + GAP);
        assert_eq!(p.height(), size);
        // Cell 1 is the image; cell 2 has the green outline at the square's corner.
        assert_eq!(p.get_pixel(0, 0).0, [128, 128, 128]);
        assert_eq!(p.get_pixel(size + GAP + 8, 8).0, GROUND_TRUTH_COLOUR);
        // Cell 3: inside the square the map is 2·threshold → brightest; outside → black.
        let x3 = 2 * (size + GAP);
        assert_eq!(p.get_pixel(x3 + 16, 16).0, inferno(1.0));
        assert_eq!(p.get_pixel(x3 + 1, 1).0, inferno(0.0));
        // Cell 4 has the cyan outline of the predicted mask and grey far from it.
        let x4 = x3 + size + GAP / 2 + legend_w + GAP / 2 + GAP;
        let row: Vec<[u8; 3]> = (0..size).map(|x| p.get_pixel(x4 + x, 16).0).collect();
        assert!(row.contains(&PREDICTION_COLOUR), "{row:?}");
        assert_eq!(p.get_pixel(x4 + 1, 1).0, [128, 128, 128]);
        // Without ground truth the panel has three cells.
        let q = panel(&image, &map, 0.5, None);
        assert_eq!(q.width(), 3 * size + 2 * GAP + legend_w + GAP);
    }

    #[test]
    fn heat_scale_falls_back_to_the_maximum() {
        let map = FloatMap {
            width: 2,
            height: 1,
            data: vec![0.0, 4.0],
        };
        assert_eq!(heat(&map, 0.0).get_pixel(1, 0).0, inferno(1.0));
        assert_eq!(heat(&map, 1.0).get_pixel(1, 0).0, inferno(1.0));
        assert_eq!(heat(&map, 8.0).get_pixel(1, 0).0, inferno(0.25));
    }
}
