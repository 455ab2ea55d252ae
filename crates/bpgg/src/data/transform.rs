//! Image and mask transforms: resize, crop, conversion to tensors.
//!
//! Images are resized with a triangle (bilinear) filter that also averages when shrinking, as PIL
//! does; masks with nearest neighbour so they stay binary. Input normalisation (mean/std) belongs
//! to each backbone, which takes `0..=255` RGB.

use candle_core::{Device, Tensor};
use image::imageops::{self, FilterType};
use image::RgbImage;

use super::image_io::Mask;
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
}
