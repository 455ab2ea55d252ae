//! Separable resampling of feature maps and probability maps.
//!
//! Every resize here is a linear operator applied along the height and the width axis
//! independently, so it is written as two small interpolation matrices and two matmuls:
//! `y = R_h · x · R_wᵀ`. That is exact (no approximation of PyTorch's kernels), runs on any
//! candle device, and lets callers compose it with other separable operators (the anomaly-map
//! step folds its Gaussian blur into the same matrices).

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// A dense `(out_len, in_len)` resampling matrix, row-major, built on the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResampleMatrix {
    pub(crate) out_len: usize,
    pub(crate) in_len: usize,
    pub(crate) weights: Vec<f32>,
}

impl ResampleMatrix {
    /// The identity on `len` samples.
    pub(crate) fn identity(len: usize) -> Self {
        let mut weights = vec![0.0; len * len];
        for i in 0..len {
            weights[i * len + i] = 1.0;
        }
        Self {
            out_len: len,
            in_len: len,
            weights,
        }
    }

    /// Linear interpolation matching PyTorch `F.interpolate(mode="bilinear",
    /// align_corners=False)` along one axis (size given, no `scale_factor`):
    /// `src = (dst + 0.5) · in/out − 0.5`, clamped at 0, neighbours clamped at the border.
    pub(crate) fn bilinear(in_len: usize, out_len: usize) -> Self {
        let mut weights = vec![0.0; out_len * in_len];
        let scale = in_len as f64 / out_len as f64;
        for dst in 0..out_len {
            let src = ((dst as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_len - 1);
            let i1 = (i0 + 1).min(in_len - 1);
            let frac = (src - i0 as f64).clamp(0.0, 1.0);
            weights[dst * in_len + i0] += (1.0 - frac) as f32;
            weights[dst * in_len + i1] += frac as f32;
        }
        Self {
            out_len,
            in_len,
            weights,
        }
    }

    /// Box averaging matching PyTorch `F.adaptive_avg_pool2d` along one axis: output `i`
    /// averages input `floor(i·in/out) .. ceil((i+1)·in/out)`. For an integer factor this is
    /// exactly `avg_pool2d(factor)`.
    pub(crate) fn area(in_len: usize, out_len: usize) -> Self {
        let mut weights = vec![0.0; out_len * in_len];
        for dst in 0..out_len {
            let start = dst * in_len / out_len;
            let end = ((dst + 1) * in_len).div_ceil(out_len);
            let share = 1.0 / (end - start) as f32;
            for src in start..end {
                weights[dst * in_len + src] = share;
            }
        }
        Self {
            out_len,
            in_len,
            weights,
        }
    }

    /// The composition `self · inner` (apply `inner` first).
    #[cfg(test)]
    pub(crate) fn compose(&self, inner: &ResampleMatrix) -> Self {
        debug_assert_eq!(self.in_len, inner.out_len);
        let mut weights = vec![0.0; self.out_len * inner.in_len];
        for o in 0..self.out_len {
            for m in 0..self.in_len {
                let a = self.weights[o * self.in_len + m];
                if a == 0.0 {
                    continue;
                }
                for i in 0..inner.in_len {
                    weights[o * inner.in_len + i] += a * inner.weights[m * inner.in_len + i];
                }
            }
        }
        Self {
            out_len: self.out_len,
            in_len: inner.in_len,
            weights,
        }
    }

    /// The transposed matrix `(in_len, out_len)` as a tensor, ready to right-multiply rows.
    fn transposed_tensor(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let t = Tensor::from_slice(&self.weights, (self.out_len, self.in_len), &Device::Cpu)?
            .t()?
            .contiguous()?;
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }
}

/// Applies `rows` along the height axis and `cols` along the width axis of a 4-D tensor.
///
/// # Shapes
/// - `x`: `(b, c, h, w)` with `h == rows.in_len`, `w == cols.in_len`.
/// - returns `(b, c, rows.out_len, cols.out_len)`.
pub(crate) fn apply_separable(
    x: &Tensor,
    rows: &ResampleMatrix,
    cols: &ResampleMatrix,
) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if h != rows.in_len || w != cols.in_len {
        return Err(Error::ShapeMismatch(format!(
            "resample: input grid {h}x{w} does not match the operator's {}x{}",
            rows.in_len, cols.in_len
        )));
    }
    let (oh, ow) = (rows.out_len, cols.out_len);
    let x = x.contiguous()?.reshape((b * c, h, w))?;
    // Height axis first, `(oh, h) × (h, w)` per map, then the width axis on all rows at once,
    // `(b·c·oh, w) × (w, ow)`: no transposed copy of the (large) output is ever made.
    let rows_m = Tensor::from_slice(&rows.weights, (oh, h), &Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())?;
    let y = rows_m.broadcast_matmul(&x)?.reshape((b * c * oh, w))?;
    let cols_t = cols.transposed_tensor(x.dtype(), x.device())?;
    Ok(y.matmul(&cols_t)?.reshape((b, c, oh, ow))?)
}

fn check_target(op: &str, out_h: usize, out_w: usize) -> Result<()> {
    if out_h == 0 || out_w == 0 {
        return Err(Error::InvalidConfig(format!(
            "{op}: target size {out_h}x{out_w} must be positive"
        )));
    }
    Ok(())
}

/// Bilinear resize, equal to PyTorch
/// `F.interpolate(x, size=(out_h, out_w), mode="bilinear", align_corners=False)`
/// (without antialiasing, also when shrinking).
///
/// # Shapes
/// - `x`: `(b, c, h, w)`, any float dtype.
/// - returns `(b, c, out_h, out_w)`.
pub fn resize_bilinear(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    check_target("resize_bilinear", out_h, out_w)?;
    let (_, _, h, w) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    apply_separable(
        x,
        &ResampleMatrix::bilinear(h, out_h),
        &ResampleMatrix::bilinear(w, out_w),
    )
}

/// Area (box) resize, equal to PyTorch `F.adaptive_avg_pool2d(x, (out_h, out_w))`; meant for
/// shrinking (average pooling of finer feature maps, soft downsampling of masks).
///
/// # Shapes
/// - `x`: `(b, c, h, w)`, any float dtype.
/// - returns `(b, c, out_h, out_w)`.
pub fn resize_area(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    check_target("resize_area", out_h, out_w)?;
    let (_, _, h, w) = x.dims4()?;
    if (h, w) == (out_h, out_w) {
        return Ok(x.clone());
    }
    apply_separable(
        x,
        &ResampleMatrix::area(h, out_h),
        &ResampleMatrix::area(w, out_w),
    )
}

/// Index of the sample that position `i` reads under half-sample symmetric reflection
/// (`… c b a | a b c … x y z | z y x …`: numpy's `symmetric` padding, `scipy.ndimage` mode
/// `reflect`), for any `i`: image padding, border tiles and map smoothing all read it.
pub fn reflect_index(i: i64, len: usize) -> usize {
    let period = 2 * len as i64;
    let m = i.rem_euclid(period);
    if m < len as i64 {
        m as usize
    } else {
        (period - 1 - m) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(h: usize, w: usize) -> Tensor {
        let v: Vec<f32> = (0..h * w).map(|i| i as f32).collect();
        Tensor::from_vec(v, (1, 1, h, w), &Device::Cpu).unwrap()
    }

    // Expected values: PyTorch F.interpolate(torch.arange(6.).view(1,1,2,3), size=(3,5),
    // mode="bilinear", align_corners=False), reproduced by scripts/proto_golden.py (pure Python,
    // same source-index formula) and checked by hand: rows map to src 0, 0.5, 1 and columns
    // to src 0, 0.4, 1.0, 1.6, 2.
    #[test]
    fn bilinear_matches_pytorch_align_corners_false() {
        let y = resize_bilinear(&grid(2, 3), 3, 5).unwrap();
        let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let expected = [
            0.0, 0.4, 1.0, 1.6, 2.0, //
            1.5, 1.9, 2.5, 3.1, 3.5, //
            3.0, 3.4, 4.0, 4.6, 5.0,
        ];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn bilinear_shrink_matches_pytorch() {
        // 4 -> 2 without antialias: src = 0.5 and 2.5, i.e. means of neighbouring pairs.
        let y = resize_bilinear(&grid(1, 4), 1, 2).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [0.5, 2.5]
        );
    }

    #[test]
    fn area_equals_avg_pool_for_integer_factor() {
        let x = grid(4, 6);
        let a = resize_area(&x, 2, 3).unwrap();
        let p = x.avg_pool2d(2).unwrap();
        let diff = (a - p).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }

    #[test]
    fn zero_target_is_an_error() {
        assert!(matches!(
            resize_bilinear(&grid(2, 2), 0, 3),
            Err(Error::InvalidConfig(_))
        ));
    }
}
