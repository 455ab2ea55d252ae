//! CPU compute kernels of the frozen backbones, and the pieces they share.
//!
//! Every kernel runs on contiguous `f32` CPU tensors. Its entry point checks where its operands
//! are and sends anything else (a CUDA tensor, another dtype) to the same computation written
//! with candle's ops (`*_candle`: [`conv2d_candle`], `depthwise_conv2d_candle`,
//! `max_pool2d_candle`, `nearest_candle`), so callers stay device-agnostic and a model gives the
//! same maps on the CPU and on a GPU. The tests compare each kernel with its candle-ops path on
//! the same CPU tensors, and on a GPU in CUDA builds:
//! - [`conv2d_fused`]: dense convolution through im2col + gemm, with bias, residual and
//!   activation fused (any shape);
//! - [`conv2d_direct`]: a direct (implicit-gemm) dense convolution on weights packed once
//!   ([`PackedConvWeight`]), for the shapes and CPUs it runs on;
//! - [`depthwise_conv2d`]: a direct depthwise convolution;
//! - [`max_pool2d`]: a max pool with implicit `-inf` padding;
//! - [`nearest`]: exact nearest-neighbour search (largest dot product or smallest squared
//!   distance of each query vector to a bank), register-tiled with AVX2 + FMA, else blocked
//!   through gemm.
//!
//! Kernel files depend only on what this module defines or re-exports (activation, padding,
//! convolution and plane geometry, scratch buffers, errors, CPU data access), never on each
//! other; which kernel a layer runs is the layer's choice (`backbone::frozen_conv`).
//! Shapes in the kernels' docs follow the tensors (NCHW feature maps, row-major matrices).

mod conv;
mod depthwise;
mod direct_conv;
mod max_pool;
mod nearest;
mod phased;

use std::cell::RefCell;
use std::thread::LocalKey;

use candle_core::{CpuStorage, DType, Storage, Tensor};

use crate::Result;

pub(crate) use conv::conv2d_fused;
pub(crate) use depthwise::depthwise_conv2d;
pub(crate) use direct_conv::{conv2d_direct, PackedConvWeight};
pub(crate) use max_pool::max_pool2d;
pub(crate) use nearest::{nearest, Nearest};
pub(crate) use phased::{fill_phased, PlaneGeometry};

/// Zero padding of the two spatial axes: `(top, bottom, left, right)`.
pub(crate) type Padding2d = (usize, usize, usize, usize);

/// The elementwise function a fused kernel applies to its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    Identity,
    Relu,
    /// `min(max(x, 0), 6)` (MobileNet / EfficientNet-Lite).
    Relu6,
}

/// ReLU6's upper clamp.
pub(crate) const RELU6_MAX: f32 = 6.0;

impl Activation {
    /// Applies the activation in place.
    pub(crate) fn apply_in_place(self, values: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Relu6 => values.iter_mut().for_each(|v| *v = v.clamp(0.0, RELU6_MAX)),
        }
    }

    /// The activation through candle ops (any device, any float dtype).
    pub(crate) fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Identity => x.clone(),
            Activation::Relu => x.relu()?,
            Activation::Relu6 => x.clamp(0f64, f64::from(RELU6_MAX))?,
        })
    }
}

/// Stride, padding and activation of a fused dense convolution (the kernel size comes from
/// the weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FusedConvParams {
    pub stride: usize,
    pub padding: Padding2d,
    pub activation: Activation,
}

/// The checked sizes of one dense convolution (groups = 1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvShape {
    pub batch: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding2d,
    pub out_h: usize,
    pub out_w: usize,
}

impl ConvShape {
    /// Checks that input `x`, a weight of `weight_dims` `(c_out, c_in, k, k)`, `bias` and the
    /// optional `residual` fit together and that the padded input holds one kernel.
    ///
    /// # Shapes
    /// - `x`: `(batch, c_in, h, w)`; `bias`: `(c_out,)`; `residual`: the output's shape.
    pub fn new(
        x: &Tensor,
        weight_dims: [usize; 4],
        bias: &Tensor,
        residual: Option<&Tensor>,
        params: &FusedConvParams,
    ) -> Result<Self> {
        let (batch, c_in, h, w) = x.dims4()?;
        let [c_out, w_in, k, k2] = weight_dims;
        let (top, bottom, left, right) = params.padding;
        let (padded_h, padded_w) = (h + top + bottom, w + left + right);
        let s = params.stride;
        if w_in != c_in || k != k2 || bias.dims1()? != c_out {
            return Err(kernel_error(format!(
                "conv2d_fused: input {:?}, weight {weight_dims:?}, bias {:?} do not fit",
                x.shape(),
                bias.shape()
            )));
        }
        if s == 0 || k == 0 || padded_h < k || padded_w < k {
            return Err(kernel_error(format!(
                "conv2d_fused: stride {s}, kernel {k} on {h}x{w} + padding {:?}",
                params.padding
            )));
        }
        let shape = Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kernel: k,
            stride: s,
            padding: params.padding,
            out_h: (padded_h - k) / s + 1,
            out_w: (padded_w - k) / s + 1,
        };
        if let Some(r) = residual {
            if r.dims() != shape.output_dims() {
                return Err(candle_core::Error::ShapeMismatchBinaryOp {
                    lhs: shape.output_dims().as_slice().into(),
                    rhs: r.shape().clone(),
                    op: "conv2d_fused residual",
                }
                .into());
            }
        }
        Ok(shape)
    }

    /// `(batch, c_out, out_h, out_w)`.
    pub fn output_dims(&self) -> [usize; 4] {
        [self.batch, self.c_out, self.out_h, self.out_w]
    }

    /// Output pixels per image and channel.
    pub fn out_pixels(&self) -> usize {
        self.out_h * self.out_w
    }

    /// The convolution as seen from one input plane.
    pub fn plane(&self) -> PlaneGeometry {
        PlaneGeometry {
            h: self.h,
            w: self.w,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            out_h: self.out_h,
            out_w: self.out_w,
        }
    }
}

/// `act(conv(x_pad, weight) + bias [+ residual])` through candle's ops (pad, `conv2d`, add,
/// activation): the path of [`conv2d_fused`] and [`conv2d_direct`] off the CPU, on any device
/// and float dtype. The padding common to all four sides goes to candle's `conv2d`, the rest
/// (TensorFlow's asymmetric "SAME") to an explicit zero pad.
///
/// # Shapes
/// - `x`: `(batch, c_in, h, w)`; `weight`: `(c_out, c_in, k, k)`; `bias`: `(c_out,)`;
/// - `residual` (optional): the output's shape;
/// - returns `(batch, c_out, (h + top + bottom − k) / s + 1, (w + left + right − k) / s + 1)`.
pub(crate) fn conv2d_candle(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    params: &FusedConvParams,
) -> Result<Tensor> {
    let (top, bottom, left, right) = params.padding;
    let common = top.min(bottom).min(left).min(right);
    let x = x
        .pad_with_zeros(2, top - common, bottom - common)?
        .pad_with_zeros(3, left - common, right - common)?;
    let y = x.conv2d(weight, common, params.stride, 1, 1)?;
    let c_out = weight.dim(0)?;
    let mut y = y.broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
    if let Some(r) = residual {
        y = (y + r)?;
    }
    params.activation.apply(&y)
}

/// Whether a tensor is one the CPU kernels run on: `f32` on the CPU.
pub(crate) fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// A shape or storage error of a kernel, as candle reports its own.
pub(crate) fn kernel_error(message: String) -> crate::Error {
    candle_core::Error::Msg(message).into()
}

/// Runs `f` on the contiguous `f32` data of a CPU tensor.
pub(crate) fn with_cpu_f32<R>(
    t: &Tensor,
    what: &str,
    f: impl FnOnce(&[f32]) -> Result<R>,
) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        return Err(kernel_error(format!(
            "{what} must be an f32 CPU tensor, got {:?} on {:?}",
            t.dtype(),
            t.device().location()
        )));
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        return Err(kernel_error(format!("{what} must be contiguous")));
    };
    f(&data[start..end])
}

/// A thread's reusable scratch buffer (declare one per use with `thread_local!`).
pub(crate) type ScratchSlot = LocalKey<RefCell<Vec<f32>>>;

/// Runs `f` with this thread's buffer in `slot`, grown to at least `len` values (contents
/// unspecified) and reused from call to call.
///
/// The buffer is taken out of its slot for the duration of `f`: a rayon thread waiting inside
/// a parallel loop may pick up another kernel call that uses the same slot, which then simply
/// gets a fresh buffer instead of finding this one borrowed.
pub(crate) fn with_scratch<R>(
    slot: &'static ScratchSlot,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buffer = slot.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
    if buffer.len() < len {
        buffer.resize(len, 0.0);
    }
    let result = f(&mut buffer[..len]);
    slot.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.len() < buffer.len() {
            *slot = buffer;
        }
    });
    result
}

#[cfg(test)]
pub(crate) mod test_support {
    //! References the kernel tests share.

    use candle_core::Tensor;

    use super::FusedConvParams;
    use crate::Result;

    /// The largest absolute difference between two tensors of the same shape.
    pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        assert_eq!(a.dims(), b.dims());
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    /// Candle's plain ops: pad, conv2d, bias, residual, activation.
    pub fn conv_reference(
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        residual: Option<&Tensor>,
        params: &FusedConvParams,
    ) -> Result<Tensor> {
        let (top, bottom, left, right) = params.padding;
        let c_out = weight.dim(0)?;
        let y = x
            .pad_with_zeros(2, top, bottom)?
            .pad_with_zeros(3, left, right)?
            .conv2d(weight, 0, params.stride, 1, 1)?
            .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
        let y = match residual {
            Some(r) => (y + r)?,
            None => y,
        };
        params.activation.apply(&y)
    }
}
