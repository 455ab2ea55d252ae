//! A direct 2-D max pool with implicit `-inf` padding (torchvision's `nn.MaxPool2d`).
//!
//! candle 0.11 has no padded max pool: ResNet's 3x3/2 pool with padding 1 took a zero-padded
//! copy of the stem output (the largest feature map of the network) and then candle's pool, two
//! passes and a large allocation. On the CPU (contiguous `f32`) this kernel reads each plane once,
//! the padding handled by window bounds, the planes spread over the rayon pool. Other devices
//! and dtypes take candle's ops on a `-inf`-padded copy ([`max_pool2d_candle`]), so callers stay
//! device-agnostic.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{is_cpu_f32, kernel_error, with_cpu_f32};
use crate::Result;

/// Output values per rayon task: enough work to pay for the task, enough tasks to balance.
const MIN_VALUES_PER_TASK: usize = 16 * 1024;

/// `y[n, c, oy, ox] = max` of `x[n, c]` over the `kernel × kernel` window at
/// `(oy·stride − padding, ox·stride − padding)`, ignoring positions outside the input.
///
/// # Shapes
/// - `x`: `(batch, channels, h, w)`;
/// - returns `(batch, channels, (h + 2p − k) / s + 1, (w + 2p − k) / s + 1)`.
pub(crate) fn max_pool2d(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (batch, channels, h, w) = x.dims4()?;
    if kernel == 0
        || stride == 0
        || padding >= kernel
        || h + 2 * padding < kernel
        || w + 2 * padding < kernel
    {
        return Err(kernel_error(format!(
            "max_pool2d: kernel {kernel}, stride {stride}, padding {padding} on {h}x{w}"
        )));
    }
    let out_h = (h + 2 * padding - kernel) / stride + 1;
    let out_w = (w + 2 * padding - kernel) / stride + 1;
    if !is_cpu_f32(x) {
        return max_pool2d_candle(x, kernel, stride, padding);
    }
    let pool = PoolShape {
        h,
        w,
        kernel,
        stride,
        padding,
        out_w,
    };
    let out = with_cpu_f32(x, "max_pool2d input", |x| {
        let out_plane = out_h * out_w;
        let mut out = vec![0f32; batch * channels * out_plane];
        out.par_chunks_exact_mut(out_plane)
            .zip(x.par_chunks_exact(h * w))
            .with_min_len(MIN_VALUES_PER_TASK.div_ceil(out_plane.max(1)))
            .for_each_init(PoolScratch::default, |scratch, (out_plane, in_plane)| {
                pool.plane(in_plane, out_plane, scratch)
            });
        Ok(out)
    })?;
    Ok(Tensor::from_vec(
        out,
        (batch, channels, out_h, out_w),
        &Device::Cpu,
    )?)
}

/// [`max_pool2d`] through candle's ops (a `-inf`-padded copy, then candle's pool): its path off
/// the CPU, on any device and float dtype.
///
/// # Shapes
/// As [`max_pool2d`] (sizes checked there).
pub(crate) fn max_pool2d_candle(
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    Ok(pad_neg_inf(x, padding)?.max_pool2d_with_stride(kernel, stride)?)
}

/// `x` with `padding` rows and columns of `-inf` on every side (candle ops, any device).
///
/// # Shapes
/// - `x`: `(batch, channels, h, w)`; returns `(batch, channels, h + 2p, w + 2p)`.
fn pad_neg_inf(x: &Tensor, padding: usize) -> Result<Tensor> {
    if padding == 0 {
        return Ok(x.clone());
    }
    let mut x = x.clone();
    for dim in [2, 3] {
        let mut shape = x.dims().to_vec();
        shape[dim] = padding;
        let border = Tensor::full(f32::NEG_INFINITY, shape, x.device())?.to_dtype(x.dtype())?;
        x = Tensor::cat(&[&border, &x, &border], dim)?;
    }
    Ok(x)
}

/// The checked sizes of one pool.
#[derive(Debug, Clone, Copy)]
struct PoolShape {
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    out_w: usize,
}

impl PoolShape {
    /// One plane. Per output row and window row: the input row with `-inf` borders, its
    /// running maximum over `kernel` consecutive values (contiguous, vectorised), then every
    /// `stride`-th of those into the output row.
    fn plane(&self, in_plane: &[f32], out_plane: &mut [f32], scratch: &mut PoolScratch) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        // Window starts of one output row in padded coordinates: 0, s, .., (out_w − 1)·s.
        let starts = (self.out_w - 1) * s + 1;
        let padded_len = starts + k - 1;
        scratch.padded.clear();
        scratch.padded.resize(padded_len, f32::NEG_INFINITY);
        scratch.window.resize(starts, f32::NEG_INFINITY);
        let copy_len = self.w.min(padded_len - p);
        for (oy, out_row) in out_plane.chunks_exact_mut(self.out_w).enumerate() {
            out_row.fill(f32::NEG_INFINITY);
            for ky in 0..k {
                let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < self.h) else {
                    continue;
                };
                let in_row = &in_plane[iy * self.w..iy * self.w + copy_len];
                scratch.padded[p..p + copy_len].copy_from_slice(in_row);
                let window = &mut scratch.window;
                window.copy_from_slice(&scratch.padded[..starts]);
                for kx in 1..k {
                    for (m, &v) in window.iter_mut().zip(&scratch.padded[kx..kx + starts]) {
                        *m = larger(*m, v);
                    }
                }
                for (o, &m) in out_row.iter_mut().zip(window.iter().step_by(s)) {
                    *o = larger(*o, m);
                }
            }
        }
    }
}

/// `max(a, b)` as one compare-and-select (vectorises to `maxps`; a NaN in `b` is dropped).
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

/// Row buffers of one rayon task, reused across its planes.
#[derive(Debug, Default)]
struct PoolScratch {
    padded: Vec<f32>,
    window: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::super::test_support::max_abs_diff;
    use super::*;

    /// Every window's maximum, by brute force on the host: the reference.
    fn brute_force(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let values = x.flatten_all()?.to_vec1::<f32>()?;
        let out_h = (h + 2 * padding - kernel) / stride + 1;
        let out_w = (w + 2 * padding - kernel) / stride + 1;
        let mut out = Vec::with_capacity(n * c * out_h * out_w);
        for plane in values.chunks_exact(h * w) {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let mut best = f32::NEG_INFINITY;
                    for i in 0..kernel {
                        for j in 0..kernel {
                            let (y, x) = (oy * stride + i, ox * stride + j);
                            if (padding..padding + h).contains(&y)
                                && (padding..padding + w).contains(&x)
                            {
                                best = best.max(plane[(y - padding) * w + x - padding]);
                            }
                        }
                    }
                    out.push(best);
                }
            }
        }
        Ok(Tensor::from_vec(out, (n, c, out_h, out_w), &Device::Cpu)?)
    }

    /// The CPU kernel, the entry point on `device` and the candle-ops path on `device` against
    /// the brute-force maximum: equal to the bit (a maximum does not round).
    fn matches_brute_force_and_candle_pool(device: &Device) -> Result<()> {
        for (size, kernel, stride, padding) in [
            ((16, 16), 3, 2, 1),
            ((9, 13), 3, 2, 1),
            ((8, 8), 2, 2, 0),
            ((7, 5), 3, 1, 1),
        ] {
            let x = Tensor::randn(0f32, 1f32, (2, 3, size.0, size.1), &Device::Cpu)?;
            let expected = brute_force(&x, kernel, stride, padding)?;
            let fast = max_pool2d(&x, kernel, stride, padding)?;
            let xd = x.to_device(device)?;
            let entry = max_pool2d(&xd, kernel, stride, padding)?;
            assert!(entry.device().same_device(device), "output left {device:?}");
            let candle = max_pool2d_candle(&xd, kernel, stride, padding)?;
            for (path, y) in [
                ("cpu kernel", &fast),
                ("entry", &entry),
                ("candle ops", &candle),
            ] {
                let diff = max_abs_diff(y, &expected)?;
                assert_eq!(
                    diff, 0.0,
                    "{path} on {device:?}: {size:?} k{kernel} s{stride} p{padding}"
                );
            }
        }
        Ok(())
    }
    crate::test_device!(
        matches_brute_force_and_candle_pool,
        matches_brute_force_and_candle_pool_cpu,
        matches_brute_force_and_candle_pool_cuda
    );

    #[test]
    fn rejects_padding_as_large_as_the_kernel() -> Result<()> {
        let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu)?;
        assert!(max_pool2d(&x, 2, 2, 2).is_err());
        Ok(())
    }
}
