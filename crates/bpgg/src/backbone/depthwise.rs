//! A direct depthwise convolution with bias and explicit (possibly asymmetric) zero padding.
//!
//! candle 0.11 runs a grouped convolution as one convolution per group, so a depthwise layer of
//! 1152 channels becomes 1152 tiny im2col + matmul calls. On the CPU this kernel instead walks
//! each channel's plane once per kernel tap, with the zero padding handled by index bounds (no
//! padded copy). Other devices fall back to candle's grouped `conv2d` on an explicitly padded
//! input, so callers stay device-agnostic.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::Result;

/// Zero padding of the two spatial axes: `(top, bottom, left, right)`.
pub(crate) type Padding2d = (usize, usize, usize, usize);

/// `y[n, c] = bias[c] + Σ_ij weight[c, 0, i, j] · x_pad[n, c, s·oy + i, s·ox + j]`.
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
) -> Result<Tensor> {
    let (_, channels, _, _) = x.dims4()?;
    let (top, bottom, left, right) = padding;
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        let op = DepthwiseConv2d { stride, padding };
        let (x, weight, bias) = (x.contiguous()?, weight.contiguous()?, bias.contiguous()?);
        return Ok(x.apply_op3_no_bwd(&weight, &bias, &op)?);
    }
    let x = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    let y = x.conv2d(weight, 0, stride, 1, channels)?;
    Ok(y.broadcast_add(&bias.reshape((1, channels, 1, 1))?)?)
}

/// The CPU kernel behind [`depthwise_conv2d`].
#[derive(Debug, Clone, Copy)]
struct DepthwiseConv2d {
    stride: usize,
    padding: Padding2d,
}

/// A contiguous f32 slice of a storage, or an error naming the operand.
fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!(
            "depthwise_conv2d: {what} must be f32, got {:?}",
            storage.dtype()
        )
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("depthwise_conv2d: {what} must be contiguous"),
    }
}

/// The output positions `o` in `0..out_len` whose input `o·stride + tap − pad_before` lies in
/// `0..in_len`.
fn valid_outputs(
    in_len: usize,
    out_len: usize,
    tap: usize,
    pad_before: usize,
    stride: usize,
) -> std::ops::Range<usize> {
    // o·s + tap ≥ pad_before  ⇔  o ≥ ⌈(pad_before − tap) / s⌉
    let first = pad_before.saturating_sub(tap).div_ceil(stride);
    // o·s + tap − pad_before ≤ in_len − 1  ⇔  o ≤ ⌊(in_len − 1 + pad_before − tap) / s⌋
    let end = match (in_len + pad_before).checked_sub(tap + 1) {
        Some(last_reach) => (last_reach / stride + 1).min(out_len),
        None => 0,
    };
    first..end.max(first)
}

impl CustomOp3 for DepthwiseConv2d {
    fn name(&self) -> &'static str {
        "bpgg-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (batch, channels, h, w) = xl.shape().dims4()?;
        let (w_channels, one, k, k2) = wl.shape().dims4()?;
        if w_channels != channels || one != 1 || k != k2 || bl.shape().dims1()? != channels {
            candle_core::bail!(
                "depthwise_conv2d: input {:?}, weight {:?}, bias {:?} do not fit",
                xl.shape(),
                wl.shape(),
                bl.shape()
            )
        }
        let (x, weight, bias) = (
            contiguous_f32(xs, xl, "input")?,
            contiguous_f32(ws, wl, "weight")?,
            contiguous_f32(bs, bl, "bias")?,
        );
        let (top, bottom, left, right) = self.padding;
        let s = self.stride;
        let (padded_h, padded_w) = (h + top + bottom, w + left + right);
        if s == 0 || padded_h < k || padded_w < k {
            candle_core::bail!("depthwise_conv2d: stride {s}, kernel {k} on {h}x{w} + padding")
        }
        let (out_h, out_w) = ((padded_h - k) / s + 1, (padded_w - k) / s + 1);
        let mut out = vec![0f32; batch * channels * out_h * out_w];
        let planes = out
            .chunks_exact_mut(out_h * out_w)
            .zip(x.chunks_exact(h * w));
        for (plane_index, (out_plane, in_plane)) in planes.enumerate() {
            let c = plane_index % channels;
            out_plane.fill(bias[c]);
            let taps = &weight[c * k * k..(c + 1) * k * k];
            for ky in 0..k {
                for oy in valid_outputs(h, out_h, ky, top, s) {
                    let in_row = &in_plane[(oy * s + ky - top) * w..][..w];
                    let out_row = &mut out_plane[oy * out_w..][..out_w];
                    for kx in 0..k {
                        let tap = taps[ky * k + kx];
                        let cols = valid_outputs(w, out_w, kx, left, s);
                        if cols.is_empty() {
                            continue;
                        }
                        let Some(first_in) = (cols.start * s + kx).checked_sub(left) else {
                            continue;
                        };
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
        Ok((
            CpuStorage::F32(out),
            Shape::from((batch, channels, out_h, out_w)),
        ))
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
        let fast = depthwise_conv2d(&x, &weight, &bias, stride, padding)?;
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
