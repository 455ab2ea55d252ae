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
    if images.device().is_cpu() && images.dtype() == DType::F32 && dtype == DType::F32 {
        return normalize_cpu_f32(images, &scale, &offset);
    }
    let device = images.device();
    let scale = Tensor::from_vec(scale, (1, 3, 1, 1), device)?.to_dtype(dtype)?;
    let offset = Tensor::from_vec(offset, (1, 3, 1, 1), device)?.to_dtype(dtype)?;
    Ok(images
        .to_dtype(dtype)?
        .broadcast_mul(&scale)?
        .broadcast_sub(&offset)?)
}

/// The same `x * scale[c] - offset[c]` in `f32`, in one pass over contiguous CPU data (candle's
/// broadcast ops take two passes and an intermediate tensor).
///
/// # Shapes
/// - `images`: `(batch, 3, height, width)`; returns the same shape.
fn normalize_cpu_f32(images: &Tensor, scale: &[f64], offset: &[f64]) -> Result<Tensor> {
    let dims = images.dims().to_vec();
    let plane = dims[2] * dims[3];
    let images = images.contiguous()?;
    let values = images.flatten_all()?.to_vec1::<f32>()?;
    let mut values = values;
    if plane > 0 {
        for (i, chunk) in values.chunks_exact_mut(plane).enumerate() {
            let c = i % scale.len();
            let (scale, offset) = (scale[c] as f32, offset[c] as f32);
            chunk.iter_mut().for_each(|v| *v = *v * scale - offset);
        }
    }
    Ok(Tensor::from_vec(values, dims, &candle_core::Device::Cpu)?)
}
