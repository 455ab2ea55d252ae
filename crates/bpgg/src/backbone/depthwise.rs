//! A direct depthwise convolution with bias, explicit (possibly asymmetric) zero padding and a
//! fused activation.
//!
//! candle 0.11 runs a grouped convolution as one convolution per group, so a depthwise layer of
//! 1152 channels becomes 1152 tiny im2col + matmul calls. On the CPU (contiguous `f32`) this
//! kernel instead walks each channel's plane once per kernel tap, with the zero padding handled
//! by index bounds (no padded copy), the planes spread over the rayon pool and the activation
//! applied while the plane is in cache. Other devices fall back to candle's grouped `conv2d` on
//! an explicitly padded input, so callers stay device-agnostic.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::conv::{kernel_error, valid_outputs, with_cpu_f32, Activation, Padding2d};
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
    let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == candle_core::DType::F32;
    if cpu_f32(x) && cpu_f32(weight) && cpu_f32(bias) {
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
    let mut out = vec![0f32; x.len() / (g.h * g.w) * out_plane_len];
    let k2 = g.kernel * g.kernel;
    out.par_chunks_exact_mut(out_plane_len)
        .zip(x.par_chunks_exact(g.h * g.w))
        .enumerate()
        .with_min_len(MIN_VALUES_PER_TASK.div_ceil(out_plane_len.max(1)))
        .for_each(|(plane_index, (out_plane, in_plane))| {
            let c = plane_index % g.channels;
            let taps = &weight[c * k2..(c + 1) * k2];
            depthwise_plane(in_plane, out_plane, taps, bias[c], g);
            activation.apply_in_place(out_plane);
        });
    out
}

/// One channel of one image: the plane is walked once per kernel tap, with the zero padding
/// handled by index bounds (no padded copy).
fn depthwise_plane(
    in_plane: &[f32],
    out_plane: &mut [f32],
    taps: &[f32],
    bias: f32,
    g: &DepthwiseShape,
) {
    let (top, _, left, _) = g.padding;
    let (s, k, w) = (g.stride, g.kernel, g.w);
    out_plane.fill(bias);
    for ky in 0..k {
        for oy in valid_outputs(g.h, g.out_h, ky, top, s) {
            let in_row = &in_plane[(oy * s + ky - top) * w..][..w];
            let out_row = &mut out_plane[oy * g.out_w..][..g.out_w];
            for kx in 0..k {
                let tap = taps[ky * k + kx];
                let cols = valid_outputs(w, g.out_w, kx, left, s);
                if cols.is_empty() {
                    continue;
                }
                let first_in = cols.start * s + kx - left;
                let out_cols = &mut out_row[cols];
                if s == 1 {
                    let in_cols = &in_row[first_in..first_in + out_cols.len()];
                    for (o, &i) in out_cols.iter_mut().zip(in_cols) {
                        *o += tap * i;
                    }
                } else {
                    let in_cols = in_row[first_in..].iter().step_by(s);
                    for (o, &i) in out_cols.iter_mut().zip(in_cols) {
                        *o += tap * i;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// The direct kernel against candle's grouped convolution on a padded input.
    fn check(h: usize, w: usize, k: usize, stride: usize, padding: Padding2d) -> Result<()> {
        let dev = Device::Cpu;
        let channels = 5;
        let x = Tensor::randn(0f32, 1f32, (2, channels, h, w), &dev)?;
        let weight = Tensor::randn(0f32, 1f32, (channels, 1, k, k), &dev)?;
        let bias = Tensor::randn(0f32, 1f32, channels, &dev)?;
        let fast = depthwise_conv2d(&x, &weight, &bias, stride, padding, Activation::Identity)?;
        let (top, bottom, left, right) = padding;
        let padded = x
            .pad_with_zeros(2, top, bottom)?
            .pad_with_zeros(3, left, right)?;
        let slow = padded
            .conv2d(&weight, 0, stride, 1, channels)?
            .broadcast_add(&bias.reshape((1, channels, 1, 1))?)?;
        assert_eq!(fast.dims(), slow.dims());
        let diff = (fast - slow)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{h}x{w} k{k} s{stride} {padding:?}: {diff}");
        Ok(())
    }

    /// EfficientNet-Lite sizes: many planes (several rayon tasks) and a fused ReLU6.
    #[test]
    fn wide_layer_with_relu6_matches_grouped_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        let (batch, channels, size) = (2, 96, 32);
        for (k, stride, padding) in [(3, 1, (1, 1, 1, 1)), (5, 2, (1, 2, 1, 2))] {
            let x = Tensor::randn(0f32, 1f32, (batch, channels, size, size), &dev)?;
            let weight = Tensor::randn(0f32, 1f32, (channels, 1, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1f32, channels, &dev)?;
            let fast = depthwise_conv2d(&x, &weight, &bias, stride, padding, Activation::Relu6)?;
            let (top, bottom, left, right) = padding;
            let slow = x
                .pad_with_zeros(2, top, bottom)?
                .pad_with_zeros(3, left, right)?
                .conv2d(&weight, 0, stride, 1, channels)?
                .broadcast_add(&bias.reshape((1, channels, 1, 1))?)?
                .clamp(0f32, 6f32)?;
            assert_eq!(fast.dims(), slow.dims());
            let diff = (fast - slow)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-5, "k{k} s{stride}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn matches_grouped_conv2d() -> Result<()> {
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
                        check(h, w, k, stride, padding)?;
                    }
                }
            }
        }
        Ok(())
    }
}
