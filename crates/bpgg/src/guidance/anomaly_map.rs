//! Map post-processing, the one place it lives (`docs/ARCHITECTURE.md`, "The method"): bilinear upsampling of the
//! defect probability to the image, Gaussian smoothing (σ = 4 px), thresholding.
//!
//! Upsampling and blurring are both separable linear operators, so they are folded into one
//! `(H, h)` and one `(W, w)` matrix and applied with two matmuls on the small map.

use candle_core::{DType, Tensor};

use crate::ops::reflect_index;
use crate::ops::resize::{apply_separable, ResampleMatrix};
use crate::{Error, Result};

/// How a probability map becomes an anomaly map.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyMapConfig {
    /// Standard deviation of the Gaussian smoothing in output pixels; `0` disables it.
    /// Default 4.0 (the value used by PatchCore-style pipelines).
    pub sigma_px: f32,
    /// Kernel radius in standard deviations: `radius = round(truncate · σ)` pixels (as
    /// `scipy.ndimage.gaussian_filter`). Default 4.0.
    pub truncate: f32,
}

impl Default for AnomalyMapConfig {
    fn default() -> Self {
        Self {
            sigma_px: 4.0,
            truncate: 4.0,
        }
    }
}

impl AnomalyMapConfig {
    /// Checks `sigma_px ≥ 0` and `truncate > 0`, both finite.
    pub fn validate(&self) -> Result<()> {
        if !(self.sigma_px.is_finite() && self.sigma_px >= 0.0) {
            return Err(Error::InvalidConfig(format!(
                "anomaly map sigma must be finite and ≥ 0, got {}",
                self.sigma_px
            )));
        }
        if !(self.truncate.is_finite() && self.truncate > 0.0) {
            return Err(Error::InvalidConfig(format!(
                "anomaly map truncate must be finite and > 0, got {}",
                self.truncate
            )));
        }
        Ok(())
    }
}

/// The Gaussian kernel of `sigma` truncated at `round(truncate · σ)`, normalised to sum 1,
/// with its radius.
fn gaussian_kernel(sigma: f32, truncate: f32) -> (Vec<f64>, isize) {
    let sigma = sigma as f64;
    let radius = (truncate as f64 * sigma + 0.5) as isize;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|d| (-(d * d) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    (kernel.into_iter().map(|k| k / total).collect(), radius)
}

/// `gaussian_matrix(out_len) · ResampleMatrix::bilinear(in_len, out_len)` built directly, in
/// `O(out_len · taps)` time and without the `(out_len, out_len)` Gaussian matrix (400 MB for a
/// 10000-pixel side).
fn blurred_bilinear(in_len: usize, out_len: usize, sigma: f32, truncate: f32) -> ResampleMatrix {
    let up = |o: usize| -> [(usize, f64); 2] {
        let scale = in_len as f64 / out_len as f64;
        let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(in_len - 1);
        let i1 = (i0 + 1).min(in_len - 1);
        let frac = (src - i0 as f64).clamp(0.0, 1.0);
        [(i0, 1.0 - frac), (i1, frac)]
    };
    let mut weights = vec![0f32; out_len * in_len];
    if sigma <= 0.0 {
        for o in 0..out_len {
            for (i, w) in up(o) {
                weights[o * in_len + i] += w as f32;
            }
        }
    } else {
        let (kernel, radius) = gaussian_kernel(sigma, truncate);
        let mut row = vec![0f64; in_len];
        for o in 0..out_len {
            row.iter_mut().for_each(|v| *v = 0.0);
            for (j, k) in kernel.iter().enumerate() {
                let src = reflect_index((o + j) as i64 - radius as i64, out_len);
                for (i, w) in up(src) {
                    row[i] += k * w;
                }
            }
            for (dst, v) in weights[o * in_len..(o + 1) * in_len].iter_mut().zip(&row) {
                *dst = *v as f32;
            }
        }
    }
    ResampleMatrix {
        out_len,
        in_len,
        weights,
    }
}

/// The `(len, len)` Gaussian smoothing matrix with reflected borders.
///
/// With half-sample reflection the matrix is symmetric and each row sums to 1, so the blur
/// keeps constant maps constant *and* keeps the sum of a map (its columns sum to 1 as well).
fn gaussian_matrix(len: usize, sigma: f32, truncate: f32) -> ResampleMatrix {
    if sigma <= 0.0 {
        return ResampleMatrix::identity(len);
    }
    let (kernel, radius) = gaussian_kernel(sigma, truncate);
    let mut weights = vec![0f32; len * len];
    for i in 0..len {
        for (j, k) in kernel.iter().enumerate() {
            let src = reflect_index((i + j) as i64 - radius as i64, len);
            weights[i * len + src] += *k as f32;
        }
    }
    ResampleMatrix {
        out_len: len,
        in_len: len,
        weights,
    }
}

/// Gaussian blur with reflected borders (scipy "reflect"), separable, radius
/// `round(truncate · σ)`.
///
/// # Shapes
/// - `map`: `(b, c, h, w)`.
/// - returns `(b, c, h, w)`.
pub fn gaussian_blur(map: &Tensor, sigma_px: f32, truncate: f32) -> Result<Tensor> {
    AnomalyMapConfig { sigma_px, truncate }.validate()?;
    let (_, _, h, w) = map.dims4()?;
    apply_separable(
        map,
        &gaussian_matrix(h, sigma_px, truncate),
        &gaussian_matrix(w, sigma_px, truncate),
    )
}

/// The anomaly map: the defect probability upsampled bilinearly (`align_corners=False`) to
/// `out_h × out_w`, then smoothed by a Gaussian of `cfg.sigma_px` output pixels.
///
/// # Shapes
/// - `prob`: `(b, 1, h, w)` (any channel count works).
/// - returns `(b, 1, out_h, out_w)`, `f32`.
pub fn to_anomaly_map(
    prob: &Tensor,
    out_h: usize,
    out_w: usize,
    cfg: &AnomalyMapConfig,
) -> Result<Tensor> {
    cfg.validate()?;
    if out_h == 0 || out_w == 0 {
        return Err(Error::InvalidConfig(format!(
            "anomaly map size {out_h}x{out_w} must be positive"
        )));
    }
    let (_, _, h, w) = prob.dims4()?;
    let rows = blurred_bilinear(h, out_h, cfg.sigma_px, cfg.truncate);
    let cols = blurred_bilinear(w, out_w, cfg.sigma_px, cfg.truncate);
    apply_separable(&prob.to_dtype(DType::F32)?, &rows, &cols)
}

/// The defect mask: `1.0` where `map ≥ t`, else `0.0`.
///
/// # Shapes
/// - `map`: any shape, typically `(b, 1, H, W)`.
/// - returns the same shape, `f32`.
pub fn threshold(map: &Tensor, t: f32) -> Result<Tensor> {
    if !t.is_finite() {
        return Err(Error::InvalidConfig(format!(
            "threshold must be finite, got {t}"
        )));
    }
    Ok(map.ge(t as f64)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::ops::resize_bilinear;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn blur_keeps_constants_and_sums() {
        let dev = Device::Cpu;
        let c = Tensor::full(0.3f32, (1, 1, 20, 13), &dev).unwrap();
        let b = gaussian_blur(&c, 4.0, 4.0).unwrap();
        assert!(values(&b).iter().all(|v| (v - 0.3).abs() < 1e-5));
        // A map with structure near the border (radius 16 > size: several reflections).
        let v: Vec<f32> = (0..20 * 13).map(|i| ((i * 37) % 11) as f32).collect();
        let x = Tensor::from_vec(v, (1, 1, 20, 13), &dev).unwrap();
        let y = gaussian_blur(&x, 4.0, 4.0).unwrap();
        let (sx, sy) = (
            values(&x).iter().sum::<f32>(),
            values(&y).iter().sum::<f32>(),
        );
        assert!((sx - sy).abs() / sx < 1e-5, "{sx} vs {sy}");
    }

    #[test]
    fn blur_of_an_impulse_is_the_normalised_kernel() {
        // Analytic case: far from the border the response is exp(-d²/2σ²)/Σ, per axis.
        let dev = Device::Cpu;
        let mut v = vec![0f32; 41];
        v[20] = 1.0;
        let x = Tensor::from_vec(v, (1, 1, 1, 41), &dev).unwrap();
        let y = values(
            &gaussian_blur(&x, 2.0, 4.0)
                .unwrap()
                .narrow(3, 20, 9)
                .unwrap(),
        );
        let k: Vec<f64> = (-8..=8)
            .map(|d: i32| (-(d * d) as f64 / 8.0).exp())
            .collect();
        let total: f64 = k.iter().sum();
        for (d, g) in y.iter().enumerate() {
            // Height 1: the vertical pass reflects the row onto itself (weights sum to 1).
            assert!((*g as f64 - k[8 + d] / total).abs() < 1e-6);
        }
    }

    #[test]
    fn anomaly_map_is_upsample_then_blur() {
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..16).map(|i| (i % 5) as f32 / 4.0).collect();
        let p = Tensor::from_vec(v, (1, 1, 4, 4), &dev).unwrap();
        let cfg = AnomalyMapConfig::default();
        let fused = to_anomaly_map(&p, 32, 24, &cfg).unwrap();
        let step = gaussian_blur(&resize_bilinear(&p, 32, 24).unwrap(), 4.0, 4.0).unwrap();
        assert_eq!(fused.dims4().unwrap(), (1, 1, 32, 24));
        let diff = (fused - step).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
        let no_blur = AnomalyMapConfig {
            sigma_px: 0.0,
            ..cfg
        };
        let plain = to_anomaly_map(&p, 32, 24, &no_blur).unwrap();
        let up = resize_bilinear(&p, 32, 24).unwrap();
        assert_eq!(values(&plain), values(&up));
    }

    #[test]
    fn the_fused_operator_is_the_blur_matrix_times_the_upsampling() {
        for (in_len, out_len, sigma) in [(4, 32, 4.0), (32, 256, 4.0), (5, 7, 0.0), (3, 40, 1.5)] {
            let fused = blurred_bilinear(in_len, out_len, sigma, 4.0);
            let composed = gaussian_matrix(out_len, sigma, 4.0)
                .compose(&ResampleMatrix::bilinear(in_len, out_len));
            for (a, b) in fused.weights.iter().zip(&composed.weights) {
                assert!((a - b).abs() < 1e-6, "{in_len}->{out_len}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn threshold_makes_a_binary_mask() {
        let dev = Device::Cpu;
        let m = Tensor::from_vec(vec![0.1f32, 0.5, 0.9], (1, 1, 1, 3), &dev).unwrap();
        assert_eq!(values(&threshold(&m, 0.5).unwrap()), [0.0, 1.0, 1.0]);
        assert!(threshold(&m, f32::NAN).is_err());
    }
}
