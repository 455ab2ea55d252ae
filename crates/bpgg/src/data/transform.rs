//! Image and mask transforms: resize, crop, conversion to tensors.
//!
//! Images are resized with a triangle (bilinear) filter that also averages when shrinking, as PIL
//! does. Masks stay binary: [`resize_mask`] (nearest neighbour) is how ground truth is compared
//! at another size, [`resize_mask_keeping_defects`] (max pooling when shrinking) is how a
//! support's mask reaches the model's working size without losing a defect pixel. Padding and
//! tiles read outside the image by mirror reflection ([`crop_reflect`]). Input normalisation
//! (mean/std) belongs to each backbone, which takes `0..=255` RGB.

use candle_core::{Device, Tensor};
use image::imageops::{self, FilterType};
use image::RgbImage;

use super::image_io::Mask;
use crate::ops::reflect_index;
use crate::Result;

/// Resizes an RGB image to `width x height` (bilinear).
pub fn resize_image(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    imageops::resize(image, width, height, FilterType::Triangle)
}

/// Resizes a mask to `width x height` (nearest neighbour, stays binary).
pub fn resize_mask(mask: &Mask, width: u32, height: u32) -> Mask {
    if (mask.width, mask.height) == (width, height) {
        return mask.clone();
    }
    Mask::from_gray(&imageops::resize(
        &mask.to_gray(),
        width,
        height,
        FilterType::Nearest,
    ))
}

/// Resizes a mask so that no defect is lost: nearest neighbour ([`resize_mask`]), which keeps
/// a defect's extent, plus the max-pooled footprint ([`max_pool_mask`]) of every defect region
/// that nearest neighbour lost entirely (a crack thinner than the sampling step, a defect of a
/// few pixels in a large image). Where nothing is lost the result is exactly [`resize_mask`];
/// a non-empty mask stays non-empty at any size.
pub fn resize_mask_keeping_defects(mask: &Mask, width: u32, height: u32) -> Mask {
    if (mask.width, mask.height) == (width, height) {
        return mask.clone();
    }
    let mut out = resize_mask(mask, width, height);
    let pooled = max_pool_mask(mask, width, height);
    // Only fails for a zero-sized mask, which a decoded image's mask is not.
    let Ok(regions) =
        bpgg_metrics::connected_regions(&pooled.pixels, width as usize, height as usize)
    else {
        return pooled;
    };
    let mut kept = vec![false; regions.sizes.len()];
    for (&label, &near) in regions.labels.iter().zip(&out.pixels) {
        if label != bpgg_metrics::BACKGROUND && near {
            kept[label as usize - 1] = true;
        }
    }
    for (&label, pixel) in regions.labels.iter().zip(out.pixels.iter_mut()) {
        if label != bpgg_metrics::BACKGROUND && !kept[label as usize - 1] {
            *pixel = true;
        }
    }
    out
}

/// Max pooling of a mask: along an axis that shrinks, an output pixel is defect when any source
/// pixel under it is (the source box `floor(i·in/out) .. ceil((i+1)·in/out)`); along an axis that
/// grows or keeps its length, each output pixel copies its nearest source pixel. At an integer
/// zoom the result is exact.
pub fn max_pool_mask(mask: &Mask, width: u32, height: u32) -> Mask {
    if (mask.width, mask.height) == (width, height) {
        return mask.clone();
    }
    let xs = source_ranges(mask.width as usize, width as usize);
    let ys = source_ranges(mask.height as usize, height as usize);
    let (w_in, w_out) = (mask.width as usize, width as usize);
    // Rows first (each source row pooled along x), then columns.
    let mut rows = vec![false; mask.height as usize * w_out];
    for y in 0..mask.height as usize {
        let src = &mask.pixels[y * w_in..(y + 1) * w_in];
        for (x, r) in xs.iter().enumerate() {
            rows[y * w_out + x] = src[r.clone()].iter().any(|&d| d);
        }
    }
    let mut pixels = vec![false; w_out * height as usize];
    for (y, r) in ys.iter().enumerate() {
        for sy in r.clone() {
            let src = &rows[sy * w_out..(sy + 1) * w_out];
            for (d, &s) in pixels[y * w_out..(y + 1) * w_out].iter_mut().zip(src) {
                *d |= s;
            }
        }
    }
    Mask {
        width,
        height,
        pixels,
    }
}

/// The source pixels each output pixel reads along one axis: a box when shrinking, the
/// nearest pixel otherwise.
fn source_ranges(len_in: usize, len_out: usize) -> Vec<std::ops::Range<usize>> {
    (0..len_out)
        .map(|i| {
            if len_out > len_in {
                let s = ((2 * i + 1) * len_in / (2 * len_out)).min(len_in - 1);
                s..s + 1
            } else {
                let start = i * len_in / len_out;
                let end = ((i + 1) * len_in).div_ceil(len_out).min(len_in);
                start..end.max(start + 1)
            }
        })
        .collect()
}

/// The `width x height` window of `image` at `(x, y)`, reading mirror reflections of the image
/// where the window leaves it (padding and border tiles).
pub fn crop_reflect(image: &RgbImage, x: i64, y: i64, width: u32, height: u32) -> RgbImage {
    let (iw, ih) = (image.width() as usize, image.height() as usize);
    if x >= 0 && y >= 0 && x as usize + width as usize <= iw && y as usize + height as usize <= ih {
        return imageops::crop_imm(image, x as u32, y as u32, width, height).to_image();
    }
    let cols: Vec<usize> = (0..i64::from(width))
        .map(|dx| reflect_index(x + dx, iw))
        .collect();
    let src = image.as_raw();
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    for dy in 0..i64::from(height) {
        let row = reflect_index(y + dy, ih) * iw * 3;
        for &c in &cols {
            out.extend_from_slice(&src[row + c * 3..row + c * 3 + 3]);
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer matches the window")
}

/// [`crop_reflect`] for a mask.
pub fn crop_reflect_mask(mask: &Mask, x: i64, y: i64, width: u32, height: u32) -> Mask {
    let (mw, mh) = (mask.width as usize, mask.height as usize);
    let cols: Vec<usize> = (0..i64::from(width))
        .map(|dx| reflect_index(x + dx, mw))
        .collect();
    let mut pixels = Vec::with_capacity(width as usize * height as usize);
    for dy in 0..i64::from(height) {
        let row = reflect_index(y + dy, mh) * mw;
        pixels.extend(cols.iter().map(|&c| mask.pixels[row + c]));
    }
    Mask {
        width,
        height,
        pixels,
    }
}

/// Crops the centre `width x height` of an image (clamped to the image).
pub fn center_crop(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let w = width.min(image.width());
    let h = height.min(image.height());
    let x = (image.width() - w) / 2;
    let y = (image.height() - h) / 2;
    imageops::crop_imm(image, x, y, w, h).to_image()
}

/// An RGB image as a `f32` tensor of `0..=255` values.
///
/// # Shapes
/// - returns `(3, height, width)`.
pub fn image_to_tensor(image: &RgbImage, device: &Device) -> Result<Tensor> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let hwc = Tensor::from_vec(
        image
            .as_raw()
            .iter()
            .map(|&v| f32::from(v))
            .collect::<Vec<f32>>(),
        (h, w, 3),
        device,
    )?;
    Ok(hwc.permute((2, 0, 1))?.contiguous()?)
}

/// A stack of equally sized RGB images as one batch.
///
/// # Shapes
/// - returns `(n, 3, height, width)`.
pub fn images_to_batch(images: &[RgbImage], device: &Device) -> Result<Tensor> {
    let tensors = images
        .iter()
        .map(|i| image_to_tensor(i, device))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&tensors, 0)?)
}

/// A mask as a `f32` tensor of 0 / 1.
///
/// # Shapes
/// - returns `(1, height, width)`.
pub fn mask_to_tensor(mask: &Mask, device: &Device) -> Result<Tensor> {
    let data: Vec<f32> = mask
        .pixels
        .iter()
        .map(|&d| f32::from(u8::from(d)))
        .collect();
    Ok(Tensor::from_vec(
        data,
        (1, mask.height as usize, mask.width as usize),
        device,
    )?)
}

/// Normalises `0..=255` pixels per channel: `(x / 255 - mean) / std` (ImageNet statistics for
/// torchvision networks).
///
/// # Shapes
/// - `images`: `(b, 3, h, w)`; returns the same shape.
pub fn normalize(images: &Tensor, mean: [f32; 3], std: [f32; 3]) -> Result<Tensor> {
    let device = images.device();
    let mean = Tensor::from_vec(mean.map(|m| m * 255.0).to_vec(), (1, 3, 1, 1), device)?;
    let std = Tensor::from_vec(std.map(|s| s * 255.0).to_vec(), (1, 3, 1, 1), device)?;
    Ok(images.broadcast_sub(&mean)?.broadcast_div(&std)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_resize_stays_binary_and_tensor_layout_is_chw() {
        let mut m = Mask::empty(4, 4);
        m.pixels[5] = true; // (x=1, y=1)
        let r = resize_mask(&m, 8, 8);
        assert_eq!(r.defect_pixels(), 4);
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8, 10, 20]));
        let t = image_to_tensor(&img, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[3, 1, 2]);
        assert_eq!(
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 1., 10., 10., 20., 20.]
        );
        let c = center_crop(&RgbImage::new(10, 6), 4, 4);
        assert_eq!(c.dimensions(), (4, 4));
    }

    /// A mask with defect pixels at the given `(x, y)`.
    fn mask_with(width: u32, height: u32, defects: &[(u32, u32)]) -> Mask {
        let mut m = Mask::empty(width, height);
        for &(x, y) in defects {
            m.pixels[(y * width + x) as usize] = true;
        }
        m
    }

    #[test]
    fn shrinking_a_mask_never_loses_a_defect_pixel() {
        // One defect pixel anywhere in a 4096 x 256 mask survives 256 x 16 (nearest would keep
        // only one pixel in 256 of them).
        for (x, y) in [(0, 0), (4095, 255), (1234, 77), (17, 3)] {
            let m = mask_with(4096, 256, &[(x, y)]);
            let r = resize_mask_keeping_defects(&m, 256, 16);
            assert_eq!(r.defect_pixels(), 1, "({x}, {y})");
            assert!(r.pixels[(y / 16 * 256 + x / 16) as usize]);
        }
        // Non-integer factors: every source pixel falls in at least one output box.
        for (w, h, ow, oh) in [(7, 5, 3, 2), (100, 33, 9, 7), (5, 5, 4, 4)] {
            for x in 0..w {
                for y in 0..h {
                    let r = resize_mask_keeping_defects(&mask_with(w, h, &[(x, y)]), ow, oh);
                    assert!(r.defect_pixels() >= 1, "{w}x{h}→{ow}x{oh} at ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn shrinking_keeps_nearest_extent_and_adds_only_lost_regions() {
        // A 6 px wide block survives nearest neighbour at 1/3: the result is nearest's, not
        // max pooling's wider footprint.
        let mut m = Mask::empty(96, 96);
        for y in 30..60 {
            for x in 31..37 {
                m.pixels[y * 96 + x] = true;
            }
        }
        let near = resize_mask(&m, 32, 32);
        assert!(near.defect_pixels() > 0);
        assert!(max_pool_mask(&m, 32, 32).defect_pixels() > near.defect_pixels());
        assert_eq!(resize_mask_keeping_defects(&m, 32, 32), near);
        // Add a one-pixel-wide line that nearest skips: it comes back, the block stays as is.
        let mut with_line = m.clone();
        for y in 10..20 {
            with_line.pixels[y * 96 + 69] = true;
        }
        let r = resize_mask_keeping_defects(&with_line, 32, 32);
        let lost = (10..20).all(|y| !resize_mask(&with_line, 32, 32).pixels[y / 3 * 32 + 23]);
        assert!(lost, "nearest neighbour is expected to miss the line");
        assert!((10..20).all(|y| r.pixels[y / 3 * 32 + 23]));
        let block: Vec<bool> = r
            .pixels
            .iter()
            .enumerate()
            .map(|(i, &p)| p && i % 32 < 20)
            .collect();
        assert_eq!(block, near.pixels);
    }

    #[test]
    fn growing_a_mask_replicates_pixels() {
        let m = mask_with(4, 3, &[(1, 2), (3, 0)]);
        let r = resize_mask_keeping_defects(&m, 8, 6);
        assert_eq!(r, resize_mask(&m, 8, 6));
        assert_eq!(r.defect_pixels(), 8);
        // Mixed: wider and shorter.
        let r = resize_mask_keeping_defects(&mask_with(4, 8, &[(2, 7)]), 8, 2);
        assert_eq!(r.defect_pixels(), 2);
        assert!(r.pixels[8 + 4] && r.pixels[8 + 5]);
    }

    #[test]
    fn reflection_mirrors_at_both_ends() {
        let got: Vec<usize> = (-3..8).map(|i| reflect_index(i, 3)).collect();
        assert_eq!(got, [2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]);
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let padded = crop_reflect(&img, 0, 0, 5, 4);
        let xs: Vec<u8> = (0..5).map(|x| padded.get_pixel(x, 0)[0]).collect();
        let ys: Vec<u8> = (0..4).map(|y| padded.get_pixel(0, y)[1]).collect();
        assert_eq!((xs, ys), (vec![0, 1, 2, 2, 1], vec![0, 1, 1, 0]));
        assert_eq!(
            crop_reflect(&img, 1, 0, 2, 2),
            imageops::crop_imm(&img, 1, 0, 2, 2).to_image()
        );
        let m = crop_reflect_mask(&mask_with(3, 2, &[(2, 1)]), 0, 0, 5, 4);
        assert_eq!(m.defect_pixels(), 4);
    }
}
