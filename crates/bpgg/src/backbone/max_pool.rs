//! A direct 2-D max pool with implicit `-inf` padding (torchvision's `nn.MaxPool2d`).
//!
//! candle 0.11 has no padded max pool: ResNet's 3x3/2 pool with padding 1 took a zero-padded
//! copy of the stem output (the largest feature map of the network) and then candle's pool, two
//! passes and a large allocation. On the CPU (contiguous `f32`) this kernel reads each plane once,
//! the padding handled by window bounds, the planes spread over the rayon pool. Other devices
//! and dtypes take candle's ops on a `-inf`-padded copy, so callers stay device-agnostic.

use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;

use super::conv::{kernel_error, valid_outputs, with_cpu_f32};
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
    if !(x.device().is_cpu() && x.dtype() == DType::F32) {
        let x = pad_neg_inf(x, padding)?;
        return Ok(x.max_pool2d_with_stride(kernel, stride)?);
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
            .for_each(|(out_plane, in_plane)| pool.plane(in_plane, out_plane));
        Ok(out)
    })?;
    Ok(Tensor::from_vec(
        out,
        (batch, channels, out_h, out_w),
        &Device::Cpu,
    )?)
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
    /// One plane: the row maximum of each window row, then the maximum over the window's rows.
    fn plane(&self, in_plane: &[f32], out_plane: &mut [f32]) {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        for (oy, out_row) in out_plane.chunks_exact_mut(self.out_w).enumerate() {
            out_row.fill(f32::NEG_INFINITY);
            for ky in 0..k {
                let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&iy| iy < self.h) else {
                    continue;
                };
                let in_row = &in_plane[iy * self.w..(iy + 1) * self.w];
                for kx in 0..k {
                    let cols = valid_outputs(self.w, self.out_w, kx, p, s);
                    let first_x = cols.start * s + kx - p;
                    for (o, &v) in out_row[cols]
                        .iter_mut()
                        .zip(in_row[first_x..].iter().step_by(s))
                    {
                        *o = o.max(v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against candle's pool on an explicitly `-inf`-padded input.
    #[test]
    fn matches_padded_candle_pool() -> Result<()> {
        let dev = Device::Cpu;
        for (size, kernel, stride, padding) in [
            ((16, 16), 3, 2, 1),
            ((9, 13), 3, 2, 1),
            ((8, 8), 2, 2, 0),
            ((7, 5), 3, 1, 1),
        ] {
            let x = Tensor::randn(0f32, 1f32, (2, 3, size.0, size.1), &dev)?;
            let fast = max_pool2d(&x, kernel, stride, padding)?;
            let padded = pad_neg_inf(&x, padding)?;
            let slow = padded.max_pool2d_with_stride(kernel, stride)?;
            assert_eq!(fast.dims(), slow.dims());
            let diff = (fast - slow)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert_eq!(diff, 0.0, "{size:?} k{kernel} s{stride} p{padding}");
        }
        Ok(())
    }

    #[test]
    fn rejects_padding_as_large_as_the_kernel() -> Result<()> {
        let x = Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu)?;
        assert!(max_pool2d(&x, 2, 2, 2).is_err());
        Ok(())
    }
}
