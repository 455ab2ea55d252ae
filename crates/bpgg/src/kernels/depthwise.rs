//! A direct depthwise convolution with bias, explicit (possibly asymmetric) zero padding and a
//! fused activation.
//!
//! candle 0.11 runs a grouped convolution as one convolution per group, so a depthwise layer of
//! 1152 channels becomes 1152 tiny im2col + matmul calls. On the CPU (contiguous `f32`) this
//! kernel instead walks each channel's plane once per kernel tap, with the zero padding handled
//! by index bounds (no padded copy), the planes spread over the rayon pool and the activation
//! applied while the plane is in cache. Other devices and dtypes fall back to candle's grouped
//! `conv2d` on an explicitly padded input ([`depthwise_conv2d_candle`]), so callers stay
//! device-agnostic.

use std::mem::MaybeUninit;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{
    fill_phased, is_cpu_f32, kernel_error, with_cpu_f32, Activation, Padding2d, PlaneGeometry,
};
use crate::Result;

/// Output values per rayon task: enough work to pay for the task, enough tasks to balance.
const MIN_VALUES_PER_TASK: usize = 16 * 1024;

/// `y[n, c] = act(bias[c] + Σ_ij weight[c, 0, i, j] · x_pad[n, c, s·oy + i, s·ox + j])`.
///
/// # Shapes
/// - `x`: `(batch, channels, h, w)`;
/// - `weight`: `(channels, 1, k, k)`; `bias`: `(channels,)`;
/// - returns `(batch, channels, (h + top + bottom − k) / s + 1, (w + left + right − k) / s + 1)`.
pub(crate) fn depthwise_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: Padding2d,
    activation: Activation,
) -> Result<Tensor> {
    let (batch, channels, h, w) = x.dims4()?;
    let (w_channels, one, k, k2) = weight.dims4()?;
    if w_channels != channels || one != 1 || k != k2 || bias.dims1()? != channels {
        return Err(kernel_error(format!(
            "depthwise_conv2d: input {:?}, weight {:?}, bias {:?} do not fit",
            x.shape(),
            weight.shape(),
            bias.shape()
        )));
    }
    let (top, bottom, left, right) = padding;
    let (padded_h, padded_w) = (h + top + bottom, w + left + right);
    if stride == 0 || k == 0 || padded_h < k || padded_w < k {
        return Err(kernel_error(format!(
            "depthwise_conv2d: stride {stride}, kernel {k} on {h}x{w} + padding {padding:?}"
        )));
    }
    if is_cpu_f32(x) && is_cpu_f32(weight) && is_cpu_f32(bias) {
        let geometry = DepthwiseShape {
            channels,
            h,
            w,
            kernel: k,
            stride,
            padding,
            out_h: (padded_h - k) / stride + 1,
            out_w: (padded_w - k) / stride + 1,
        };
        let out = with_cpu_f32(x, "depthwise_conv2d input", |x| {
            with_cpu_f32(weight, "depthwise_conv2d weight", |weight| {
                with_cpu_f32(bias, "depthwise_conv2d bias", |bias| {
                    Ok(depthwise_forward(x, weight, bias, activation, &geometry))
                })
            })
        })?;
        let dims = (batch, channels, geometry.out_h, geometry.out_w);
        return Ok(Tensor::from_vec(out, dims, &Device::Cpu)?);
    }
    depthwise_conv2d_candle(x, weight, bias, stride, padding, activation)
}

/// [`depthwise_conv2d`] through candle's ops (zero pad, grouped `conv2d`, bias, activation):
/// its path off the CPU, on any device and float dtype.
///
/// # Shapes
/// As [`depthwise_conv2d`].
pub(crate) fn depthwise_conv2d_candle(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: Padding2d,
    activation: Activation,
) -> Result<Tensor> {
    let channels = weight.dim(0)?;
    let (top, bottom, left, right) = padding;
    let x = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    let y = x.conv2d(weight, 0, stride, 1, channels)?;
    activation.apply(&y.broadcast_add(&bias.reshape((1, channels, 1, 1))?)?)
}

/// The checked sizes of one depthwise convolution.
#[derive(Debug, Clone, Copy)]
struct DepthwiseShape {
    channels: usize,
    h: usize,
    w: usize,
    kernel: usize,
    stride: usize,
    padding: Padding2d,
    out_h: usize,
    out_w: usize,
}

/// All planes of a batch, spread over the rayon pool.
fn depthwise_forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    activation: Activation,
    g: &DepthwiseShape,
) -> Vec<f32> {
    let out_plane_len = g.out_h * g.out_w;
    let planes = x.len() / (g.h * g.w);
    let total = planes * out_plane_len;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let k2 = g.kernel * g.kernel;
    out.spare_capacity_mut()[..total]
        .par_chunks_exact_mut(out_plane_len)
        .zip(x.par_chunks_exact(g.h * g.w))
        .enumerate()
        .with_min_len(MIN_VALUES_PER_TASK.div_ceil(out_plane_len.max(1)))
        .for_each_init(
            PlaneScratch::default,
            |scratch, (plane_index, (out_plane, in_plane))| {
                let c = plane_index % g.channels;
                let taps = &weight[c * k2..(c + 1) * k2];
                depthwise_plane(in_plane, out_plane, taps, bias[c], activation, scratch, g);
            },
        );
    // SAFETY: the capacity is `total`, and every element below it has been written:
    // `depthwise_plane` writes every value of its `out_h · out_w` plane, and the planes cover
    // the buffer.
    unsafe { out.set_len(total) };
    out
}

/// The input plane as zero-padded phase planes ([`PlaneGeometry`]), as [`depthwise_plane`]
/// reads it.
#[derive(Debug)]
struct PhasedPlane<'a> {
    data: &'a [f32],
    geometry: PlaneGeometry,
    phase_w: usize,
}

impl PhasedPlane<'_> {
    /// The run of `len` values that tap `(ky, kx)` contributes to the wide output grid.
    fn tap_run(&self, ky: usize, kx: usize, len: usize) -> &[f32] {
        let start = self.geometry.tap_offset(ky, kx);
        &self.data[start..start + len]
    }
}

/// Copies `in_plane` into `scratch` as a [`PhasedPlane`] covering every tap of every output.
fn phased_plane<'a>(
    in_plane: &[f32],
    scratch: &'a mut Vec<f32>,
    g: &DepthwiseShape,
) -> PhasedPlane<'a> {
    let geometry = PlaneGeometry {
        h: g.h,
        w: g.w,
        kernel: g.kernel,
        stride: g.stride,
        padding: g.padding,
        out_h: g.out_h,
        out_w: g.out_w,
    };
    scratch.resize(geometry.phased_len(), 0.0);
    fill_phased(in_plane, scratch, &geometry);
    PhasedPlane {
        data: scratch,
        geometry,
        phase_w: geometry.phase_w(),
    }
}

/// Scratch buffers of one rayon task, reused across the planes it handles.
#[derive(Debug, Default)]
struct PlaneScratch {
    phased: Vec<f32>,
    wide: Vec<f32>,
}

/// One channel of one image: `out_plane` ← `act(bias + Σ taps)`, every value written.
fn depthwise_plane(
    in_plane: &[f32],
    out_plane: &mut [MaybeUninit<f32>],
    taps: &[f32],
    bias: f32,
    activation: Activation,
    scratch: &mut PlaneScratch,
    g: &DepthwiseShape,
) {
    let plane = phased_plane(in_plane, &mut scratch.phased, g);
    let wide = &mut scratch.wide;
    wide.clear();
    wide.resize(g.out_h * plane.phase_w, bias);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (detected just above), the function's only
        // requirement.
        unsafe { accumulate_taps_avx2_fma(&plane, wide, taps, g.kernel) };
    } else {
        accumulate_taps::<false>(&plane, wide, taps, g.kernel);
    }
    #[cfg(not(target_arch = "x86_64"))]
    accumulate_taps::<false>(&plane, wide, taps, g.kernel);
    activation.apply_in_place(wide);
    for (out_row, wide_row) in out_plane
        .chunks_exact_mut(g.out_w)
        .zip(wide.chunks_exact(plane.phase_w))
    {
        for (o, &v) in out_row.iter_mut().zip(&wide_row[..g.out_w]) {
            o.write(v);
        }
    }
}

/// [`accumulate_taps`] compiled for AVX2 + FMA (8 lanes and fused multiply-adds).
///
/// # Safety
/// The CPU must have AVX2 and FMA (the only unsafety: the body is safe, bounds-checked code).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_taps_avx2_fma(
    plane: &PhasedPlane,
    wide: &mut [f32],
    taps: &[f32],
    kernel: usize,
) {
    accumulate_taps::<true>(plane, wide, taps, kernel);
}

/// `wide[oy, ox] += Σ_{ky,kx} taps[ky, kx] · x_pad[s·oy + ky, s·ox + kx]` on the wide output
/// grid (`phase_w` columns per row), one long contiguous run per tap. `FUSED` uses fused
/// multiply-adds (only where the CPU has them: elsewhere `mul_add` is a slow library call).
#[inline(always)]
fn accumulate_taps<const FUSED: bool>(
    plane: &PhasedPlane,
    wide: &mut [f32],
    taps: &[f32],
    kernel: usize,
) {
    for ky in 0..kernel {
        for kx in 0..kernel {
            let tap = taps[ky * kernel + kx];
            let run = plane.tap_run(ky, kx, wide.len());
            if FUSED {
                for (o, &v) in wide.iter_mut().zip(run) {
                    *o = tap.mul_add(v, *o);
                }
            } else {
                for (o, &v) in wide.iter_mut().zip(run) {
                    *o += tap * v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::super::test_support::max_abs_diff;
    use super::*;

    /// Candle's grouped convolution on the zero-padded input, plus bias: the reference.
    fn grouped_reference(
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        padding: Padding2d,
    ) -> Result<Tensor> {
        let channels = weight.dim(0)?;
        let (top, bottom, left, right) = padding;
        Ok(x.pad_with_zeros(2, top, bottom)?
            .pad_with_zeros(3, left, right)?
            .conv2d(weight, 0, stride, 1, channels)?
            .broadcast_add(&bias.reshape((1, channels, 1, 1))?)?)
    }

    /// The CPU kernel, the entry point on `device` and the candle-ops path on `device`, each
    /// against candle's grouped convolution on a padded input computed on the CPU.
    #[allow(clippy::too_many_arguments)]
    fn check_on(
        device: &Device,
        (batch, channels): (usize, usize),
        (h, w): (usize, usize),
        k: usize,
        stride: usize,
        padding: Padding2d,
        activation: Activation,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1f32, (batch, channels, h, w), &dev)?;
        let weight = Tensor::randn(0f32, 1f32, (channels, 1, k, k), &dev)?;
        let bias = Tensor::randn(0f32, 1f32, channels, &dev)?;
        let expected =
            activation.apply(&grouped_reference(&x, &weight, &bias, stride, padding)?)?;
        let fast = depthwise_conv2d(&x, &weight, &bias, stride, padding, activation)?;
        let (xd, wd, bd) = (
            x.to_device(device)?,
            weight.to_device(device)?,
            bias.to_device(device)?,
        );
        let entry = depthwise_conv2d(&xd, &wd, &bd, stride, padding, activation)?;
        assert!(entry.device().same_device(device), "output left {device:?}");
        let candle = depthwise_conv2d_candle(&xd, &wd, &bd, stride, padding, activation)?;
        for (path, y) in [
            ("cpu kernel", &fast),
            ("entry", &entry),
            ("candle ops", &candle),
        ] {
            let diff = max_abs_diff(y, &expected)?;
            assert!(
                diff < 1e-5,
                "{path} on {device:?}: {h}x{w} k{k} s{stride} {padding:?}: {diff}"
            );
        }
        Ok(())
    }

    fn check(
        device: &Device,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
        padding: Padding2d,
    ) -> Result<()> {
        check_on(
            device,
            (2, 5),
            (h, w),
            k,
            stride,
            padding,
            Activation::Identity,
        )
    }

    /// EfficientNet-Lite sizes: many planes (several rayon tasks) and a fused ReLU6.
    fn wide_layer_with_relu6_matches_grouped_conv2d(device: &Device) -> Result<()> {
        for (k, stride, padding) in [(3, 1, (1, 1, 1, 1)), (5, 2, (1, 2, 1, 2))] {
            check_on(
                device,
                (2, 96),
                (32, 32),
                k,
                stride,
                padding,
                Activation::Relu6,
            )?;
        }
        Ok(())
    }
    crate::test_device!(
        wide_layer_with_relu6_matches_grouped_conv2d,
        wide_layer_with_relu6_matches_grouped_conv2d_cpu,
        wide_layer_with_relu6_matches_grouped_conv2d_cuda
    );

    fn matches_grouped_conv2d(device: &Device) -> Result<()> {
        for (h, w) in [(8, 8), (7, 9), (1, 1), (2, 3)] {
            for (k, stride) in [(3, 1), (3, 2), (5, 1), (5, 2)] {
                for padding in [
                    (0, 1, 0, 1),
                    (1, 1, 1, 1),
                    (1, 2, 1, 2),
                    (2, 2, 2, 2),
                    (2, 1, 0, 3),
                ] {
                    let (t, b, l, r) = padding;
                    if h + t + b >= k && w + l + r >= k {
                        check(device, h, w, k, stride, padding)?;
                    }
                }
            }
        }
        Ok(())
    }
    crate::test_device!(
        matches_grouped_conv2d,
        matches_grouped_conv2d_cpu,
        matches_grouped_conv2d_cuda
    );
}
