//! The input normalisation of torchvision's ImageNet models.
//!
//! torchvision's ImageNet weights expect `(x / 255 - mean) / std` per RGB channel with the
//! constants below (`torchvision.transforms.Normalize` in its reference training recipes).

use candle_core::{DType, Tensor};

use crate::Result;

/// Largest pixel value of the `0..=255` input range.
pub const PIXEL_MAX: f64 = 255.0;
/// Per-channel RGB mean of ImageNet, in `0..=1` pixel units.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// Per-channel RGB standard deviation of ImageNet, in `0..=1` pixel units.
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Applies `(x / 255 - mean) / std` per channel and casts to `dtype`.
///
/// Computed as one multiply-add, `x * (1 / (255 std)) - mean / std`, with the constants
/// rounded from `f64`.
///
/// # Shapes
/// - `images`: `(batch, 3, height, width)`, RGB in `0..=255`.
/// - returns the same shape, in `dtype`.
pub fn normalize_imagenet(images: &Tensor, dtype: DType) -> Result<Tensor> {
    let (_, channels, _, _) = images.dims4()?;
    if channels != IMAGENET_MEAN.len() {
        return Err(candle_core::Error::Msg(format!(
            "expected RGB images of shape (batch, 3, height, width), got {:?}",
            images.dims()
        ))
        .into());
    }
    let scale: Vec<f64> = IMAGENET_STD.iter().map(|s| 1.0 / (PIXEL_MAX * s)).collect();
    let offset: Vec<f64> = IMAGENET_MEAN
        .iter()
        .zip(IMAGENET_STD)
        .map(|(m, s)| m / s)
        .collect();
    let device = images.device();
    let scale = Tensor::from_vec(scale, (1, 3, 1, 1), device)?.to_dtype(dtype)?;
    let offset = Tensor::from_vec(offset, (1, 3, 1, 1), device)?.to_dtype(dtype)?;
    Ok(images
        .to_dtype(dtype)?
        .broadcast_mul(&scale)?
        .broadcast_sub(&offset)?)
}
