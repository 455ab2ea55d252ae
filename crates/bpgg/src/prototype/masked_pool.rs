//! Masked average pooling (PANet eq. 1): `p = Σ_x f(x)·m(x) / (Σ_x m(x) + MASK_EPS)`.

use candle_core::Tensor;

use crate::ops::{resize_area, resize_bilinear};
use crate::{Error, Result};

/// Added to the mask mass so an empty mask gives a zero prototype instead of NaN (PANet's value).
pub const MASK_EPS: f64 = 1e-5;

/// Where masked average pooling happens.
///
/// The method (`docs/ARCHITECTURE.md`) resizes the features to the mask's resolution. Since both pooling and resizing
/// are linear, `Σ_X up(f)(X)·m(X) = Σ_x f(x)·(upᵀ m)(x)`: pooling on the feature grid with the
/// mask mapped down by the adjoint of the upsampling is *exactly* the same thing. The adjoint of
/// bilinear upsampling is, up to its slightly wider footprint at the borders of each cell, the
/// area average of the mask over each feature cell, so [`MaskPooling::DownsampleMask`] equals
/// [`MaskPooling::UpsampleFeatures`] up to interpolation detail, at `(H·W)/(h·w)` (64x at stride
/// 8) less memory and work. It is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskPooling {
    /// Area-average the mask onto the feature grid (a soft mask), pool there. Default.
    #[default]
    DownsampleMask,
    /// Bilinearly upsample the features to the mask's resolution and pool there (the paper's
    /// wording; 64x the work at stride 8).
    UpsampleFeatures,
}

fn check_pair(op: &str, features: &Tensor, masks: &Tensor) -> Result<(usize, usize, usize)> {
    let (b, _, h, w) = features.dims4()?;
    let (mb, mc, _, _) = masks.dims4()?;
    if mb != b || mc != 1 {
        return Err(Error::ShapeMismatch(format!(
            "{op}: features {:?} need masks (b={b}, 1, H, W), got {:?}",
            features.dims(),
            masks.dims()
        )));
    }
    Ok((b, h, w))
}

/// Brings masks to the feature grid by area averaging (a mask pixel's share of each cell).
///
/// # Shapes
/// - `masks`: `(b, 1, H, W)`, values in `[0, 1]`.
/// - returns `(b, 1, h, w)`.
pub fn mask_to_grid(masks: &Tensor, h: usize, w: usize) -> Result<Tensor> {
    let masks = masks.to_dtype(candle_core::DType::F32)?;
    resize_area(&masks, h, w)
}

/// Masked average pooling over all images of the batch together, with
/// [`MaskPooling::DownsampleMask`].
///
/// # Shapes
/// - `features`: `(b, c, h, w)`.
/// - `masks`: `(b, 1, H, W)`, `f32` in `[0, 1]` (soft masks allowed); any `H, W`.
/// - returns `(c)`: `Σ f·m / (Σ m + MASK_EPS)`, not normalised.
pub fn masked_average_pool(features: &Tensor, masks: &Tensor) -> Result<Tensor> {
    masked_average_pool_with(features, masks, MaskPooling::DownsampleMask)
}

/// Masked average pooling with an explicit [`MaskPooling`] strategy.
///
/// # Shapes
/// - `features`: `(b, c, h, w)`.
/// - `masks`: `(b, 1, H, W)`, `f32` in `[0, 1]`.
/// - returns `(c)`.
pub fn masked_average_pool_with(
    features: &Tensor,
    masks: &Tensor,
    pooling: MaskPooling,
) -> Result<Tensor> {
    let (_, h, w) = check_pair("masked_average_pool", features, masks)?;
    let masks = masks.to_dtype(features.dtype())?;
    let (f, m) = match pooling {
        MaskPooling::DownsampleMask => (features.clone(), resize_area(&masks, h, w)?),
        MaskPooling::UpsampleFeatures => {
            let (_, _, mh, mw) = masks.dims4()?;
            (resize_bilinear(features, mh, mw)?, masks)
        }
    };
    // Σ_x f(x)·m(x) per image as one matmul `(b, c, hw) × (b, hw, 1)`: no `f·m` product is
    // materialised and the gradient is a matmul too.
    let (b, c, fh, fw) = f.dims4()?;
    let num = f
        .contiguous()?
        .reshape((b, c, fh * fw))?
        .matmul(&m.contiguous()?.reshape((b, fh * fw, 1))?)?
        .sum(0)?
        .reshape(c)?;
    let den = (m.sum_all()? + MASK_EPS)?;
    Ok(num.broadcast_div(&den)?)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn uniform_features_give_the_feature() {
        let dev = Device::Cpu;
        let f = Tensor::from_vec(vec![1f32, 2.0, 3.0], (1, 3, 1, 1), &dev)
            .unwrap()
            .broadcast_as((2, 3, 4, 4))
            .unwrap()
            .contiguous()
            .unwrap();
        let m = Tensor::ones((2, 1, 32, 32), DType::F32, &dev).unwrap();
        for pooling in [MaskPooling::DownsampleMask, MaskPooling::UpsampleFeatures] {
            let p = masked_average_pool_with(&f, &m, pooling).unwrap();
            assert!(close(&p.to_vec1::<f32>().unwrap(), &[1.0, 2.0, 3.0], 1e-4));
        }
    }

    #[test]
    fn half_mask_averages_the_masked_half() {
        // Left half of the feature map is 1, right half 3; the mask covers the left half.
        let dev = Device::Cpu;
        let row = [1f32, 1.0, 3.0, 3.0];
        let f = Tensor::from_vec(row.repeat(4), (1, 1, 4, 4), &dev).unwrap();
        let mrow: Vec<f32> = (0..16).map(|x| if x < 8 { 1.0 } else { 0.0 }).collect();
        let m = Tensor::from_vec(mrow.repeat(16), (1, 1, 16, 16), &dev).unwrap();
        let p = masked_average_pool(&f, &m)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // Σ f·m = 1·(2·4 cells) = 8, Σ m on the grid = 8: p = 8 / (8 + 1e-5).
        assert!(close(&p, &[8.0 / (8.0 + 1e-5)], 1e-6));
        let inv = (1.0 - &m).unwrap();
        let q = masked_average_pool(&f, &inv)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(close(&q, &[3.0], 1e-4));
    }

    #[test]
    fn both_poolings_agree_up_to_interpolation() {
        // Ramp features f = x + y on an 8x8 grid, mask = left half at 64x64. Area-averaged
        // mask: mean of the 32 left cells = 5.0 exactly; upsampled features: 5.03125
        // (scripts/proto_golden.py `resize`, border clamping shifts the mean slightly).
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..64).map(|i| (i % 8 + i / 8) as f32).collect();
        let f = Tensor::from_vec(v, (1, 1, 8, 8), &dev).unwrap();
        let m: Vec<f32> = (0..64 * 64)
            .map(|i| if i % 64 < 32 { 1.0 } else { 0.0 })
            .collect();
        let m = Tensor::from_vec(m, (1, 1, 64, 64), &dev).unwrap();
        let down = masked_average_pool_with(&f, &m, MaskPooling::DownsampleMask).unwrap();
        let up = masked_average_pool_with(&f, &m, MaskPooling::UpsampleFeatures).unwrap();
        assert!(close(&down.to_vec1::<f32>().unwrap(), &[5.0], 1e-4));
        assert!(close(&up.to_vec1::<f32>().unwrap(), &[5.03125], 1e-4));
    }

    #[test]
    fn empty_mask_gives_zero() {
        let dev = Device::Cpu;
        let f = Tensor::ones((1, 2, 4, 4), DType::F32, &dev).unwrap();
        let m = Tensor::zeros((1, 1, 8, 8), DType::F32, &dev).unwrap();
        let p = masked_average_pool(&f, &m)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(p, [0.0, 0.0]);
    }

    #[test]
    fn mismatched_batch_is_a_shape_error() {
        let dev = Device::Cpu;
        let f = Tensor::ones((2, 2, 4, 4), DType::F32, &dev).unwrap();
        let m = Tensor::ones((1, 1, 8, 8), DType::F32, &dev).unwrap();
        assert!(matches!(
            masked_average_pool(&f, &m),
            Err(Error::ShapeMismatch(_))
        ));
    }
}
