//! A fused dense convolution for frozen backbones: `act(conv(x, w) + bias [+ residual])`.
//!
//! candle 0.11's CPU `conv2d` spends most of its time in its im2col gather (a profile of a
//! batch-8 3x3 convolution: 72% gather, 14% gemm), then needs separate passes for the bias,
//! the residual sum and the activation. On the CPU with contiguous `f32` data this module
//! instead
//! - builds the im2col matrix `(c_in·k·k, out_h·out_w)` of one image in the row order of the
//!   NCHW input, so that every matrix row is a run of copies of input rows (zero padding,
//!   symmetric or TensorFlow's asymmetric "SAME", is written by index bounds, never by a padded
//!   copy of the input), into a buffer that each thread reuses from call to call;
//! - skips im2col for 1x1 stride-1 convolutions, whose input already is that matrix;
//! - runs one `gemm` per tile of output rows straight into the NCHW output, which is never
//!   zeroed first (the gemm overwrites it);
//! - adds the bias (and the residual) and applies ReLU / ReLU6 in one pass while the tile is
//!   still in cache.
//!
//! Images are spread over the rayon pool when the batch has at least as many images as the
//! pool has threads; otherwise the gemm (and the im2col) of each image use the whole pool.
//!
//! Other devices and dtypes take candle's own ops ([`super::conv2d_candle`]: pad, `conv2d`, add,
//! activation), so callers stay device-agnostic. Both paths compute the same sums; results
//! differ only by `f32` summation order.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{
    conv2d_candle, is_cpu_f32, with_cpu_f32, with_scratch, Activation, ConvShape, FusedConvParams,
};
use crate::Result;

/// `act(conv(x_pad, weight) + bias [+ residual])` with groups = 1.
///
/// # Shapes
/// - `x`: `(batch, c_in, h, w)`;
/// - `weight`: `(c_out, c_in, k, k)`; `bias`: `(c_out,)`;
/// - `residual` (optional): the output's shape;
/// - returns `(batch, c_out, (h + top + bottom − k) / s + 1, (w + left + right − k) / s + 1)`.
pub(crate) fn conv2d_fused(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    params: &FusedConvParams,
) -> Result<Tensor> {
    let weight_dims = weight.dims4()?;
    let weight_dims = [weight_dims.0, weight_dims.1, weight_dims.2, weight_dims.3];
    let geometry = ConvShape::new(x, weight_dims, bias, residual, params)?;
    if is_cpu_f32(x) && is_cpu_f32(weight) && is_cpu_f32(bias) && residual.is_none_or(is_cpu_f32) {
        return conv2d_fused_cpu(x, weight, bias, residual, params, &geometry);
    }
    conv2d_candle(x, weight, bias, residual, params)
}

/// The im2col matrix's sizes.
impl ConvShape {
    /// Rows of the im2col matrix (the gemm's inner dimension).
    fn patch_len(&self) -> usize {
        self.c_in * self.kernel * self.kernel
    }

    /// A 1x1 stride-1 unpadded convolution reads its input as the im2col matrix.
    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == (0, 0, 0, 0)
    }
}

fn conv2d_fused_cpu(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    params: &FusedConvParams,
    geometry: &ConvShape,
) -> Result<Tensor> {
    let out = with_cpu_f32(x, "conv2d_fused input", |x| {
        with_cpu_f32(weight, "conv2d_fused weight", |weight| {
            with_cpu_f32(bias, "conv2d_fused bias", |bias| match residual {
                Some(r) => with_cpu_f32(r, "conv2d_fused residual", |r| {
                    Ok(conv_forward(x, weight, bias, Some(r), params, geometry))
                }),
                None => Ok(conv_forward(x, weight, bias, None, params, geometry)),
            })
        })
    })?;
    let dims = geometry.output_dims();
    Ok(Tensor::from_vec(out, dims.as_slice(), &Device::Cpu)?)
}

thread_local! {
    /// Each thread's im2col buffer, grown to the largest matrix it has built and reused.
    static IM2COL_BUFFER: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Values of one im2col tile (`patch_len × tile pixels`): 512 KiB of `f32`, so that the tile
/// the gemm reads and the output tile it writes stay in cache after im2col wrote them
/// (measured on ResNet-18 batch 8: slightly faster than 2 MiB tiles, never slower).
const TILE_VALUES: usize = 128 * 1024;

/// The fused convolution of a whole batch on contiguous NCHW `f32` data.
fn conv_forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    params: &FusedConvParams,
    g: &ConvShape,
) -> Vec<f32> {
    let in_len = g.c_in * g.h * g.w;
    let out_len = g.c_out * g.out_pixels();
    let total = g.batch * out_len;
    let mut out: Vec<f32> = Vec::with_capacity(total);
    let threads = rayon::current_num_threads();
    let image = |(n, out_image): (usize, &mut [MaybeUninit<f32>]), inner_threads: usize| {
        let image = ImageConv {
            x: &x[n * in_len..(n + 1) * in_len],
            weight,
            bias,
            residual: residual.map(|r| &r[n * out_len..(n + 1) * out_len]),
            activation: params.activation,
            g,
        };
        image.run(out_image, inner_threads);
    };
    let spare = &mut out.spare_capacity_mut()[..total];
    if g.batch >= threads && threads > 1 {
        spare
            .par_chunks_exact_mut(out_len)
            .enumerate()
            .for_each(|item| image(item, 1));
    } else {
        spare
            .chunks_exact_mut(out_len)
            .enumerate()
            .for_each(|item| image(item, threads));
    }
    // SAFETY: the capacity is `total` and every element below it has been written:
    // `ImageConv::run` writes every element of its image (its tiles cover all output rows,
    // and the gemm of a tile overwrites all `c_out` channels of those rows).
    unsafe { out.set_len(total) };
    out
}

/// The operands of one image's convolution.
struct ImageConv<'a> {
    x: &'a [f32],
    weight: &'a [f32],
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    activation: Activation,
    g: &'a ConvShape,
}

impl ImageConv<'_> {
    /// `out = act(bias [+ residual] + weight · im2col(x))`, in tiles of whole output rows.
    ///
    /// Writes every element of `out` (`c_out · out_h · out_w`).
    fn run(&self, out: &mut [MaybeUninit<f32>], threads: usize) {
        assert_eq!(
            out.len(),
            self.g.c_out * self.g.out_pixels(),
            "image output size"
        );
        let g = self.g;
        let rows_per_tile = (TILE_VALUES / (g.patch_len() * g.out_w)).clamp(1, g.out_h);
        if g.is_pointwise() {
            for first_row in (0..g.out_h).step_by(rows_per_tile) {
                let rows = first_row..(first_row + rows_per_tile).min(g.out_h);
                self.tile(out, rows, None, threads);
            }
            return;
        }
        let tile_len = g.patch_len() * rows_per_tile * g.out_w;
        with_scratch(&IM2COL_BUFFER, tile_len, |columns| {
            for first_row in (0..g.out_h).step_by(rows_per_tile) {
                let rows = first_row..(first_row + rows_per_tile).min(g.out_h);
                let tile_pixels = rows.len() * g.out_w;
                let columns = &mut columns[..g.patch_len() * tile_pixels];
                im2col(self.x, columns, rows.clone(), g, threads);
                self.tile(out, rows, Some(columns), threads);
            }
        });
    }

    /// The output rows `rows` of every channel; `columns` is their im2col tile, or `None` for
    /// a pointwise convolution (the input is its own im2col matrix). Writes every element of
    /// those rows.
    fn tile(
        &self,
        out: &mut [MaybeUninit<f32>],
        rows: std::ops::Range<usize>,
        columns: Option<&[f32]>,
        threads: usize,
    ) {
        let g = self.g;
        let pixels = g.out_pixels();
        let (first, tile_pixels) = (rows.start * g.out_w, rows.len() * g.out_w);
        let (rhs, rhs_row_stride) = match columns {
            Some(columns) => (columns, tile_pixels),
            None => (&self.x[first..], pixels),
        };
        let product = GemmShape {
            m: g.c_out,
            n: tile_pixels,
            k: g.patch_len(),
            rhs_row_stride,
            dst_row_stride: pixels,
        };
        gemm_overwrite(self.weight, rhs, &mut out[first..], &product, threads);
        for c in 0..g.c_out {
            let range = c * pixels + first..c * pixels + first + tile_pixels;
            // SAFETY: the gemm above has written every element of this channel's run of the
            // tile (row `c` of its `(c_out, tile_pixels)` destination), so the run is
            // initialised; it lies inside `out`, which this call borrows exclusively, and
            // the slice lives only for this iteration.
            let dst = unsafe { &mut *(std::ptr::from_mut(&mut out[range.clone()]) as *mut [f32]) };
            let residual = self.residual.map(|r| &r[range]);
            bias_residual_activation(dst, self.bias[c], residual, self.activation);
        }
    }
}

/// `dst ← act(dst + bias [+ residual])`, one pass.
fn bias_residual_activation(
    dst: &mut [f32],
    bias: f32,
    residual: Option<&[f32]>,
    activation: Activation,
) {
    match residual {
        Some(r) => dst.iter_mut().zip(r).for_each(|(o, &r)| *o += bias + r),
        None => dst.iter_mut().for_each(|o| *o += bias),
    }
    activation.apply_in_place(dst);
}

/// `dst (m, n) = lhs (m, k) · rhs (k, n)`: all row-major, `lhs` contiguous, `rhs` and `dst`
/// with the given row strides.
#[derive(Debug, Clone, Copy)]
struct GemmShape {
    m: usize,
    n: usize,
    k: usize,
    rhs_row_stride: usize,
    dst_row_stride: usize,
}

/// Runs the product described by `shape` with the `gemm` crate (its AVX-512 kernels where the
/// CPU has them), on `threads` rayon threads. `dst` is only written (never read), so it may be
/// uninitialised; afterwards its `m` rows of `n` values are.
fn gemm_overwrite(
    lhs: &[f32],
    rhs: &[f32],
    dst: &mut [MaybeUninit<f32>],
    shape: &GemmShape,
    threads: usize,
) {
    let GemmShape {
        m,
        n,
        k,
        rhs_row_stride,
        dst_row_stride,
    } = *shape;
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        lhs.len() >= m * k
            && rhs.len() >= (k.max(1) - 1) * rhs_row_stride + n
            && dst.len() >= (m - 1) * dst_row_stride + n,
        "gemm operands out of bounds"
    );
    if k == 0 {
        // An empty sum: every product is zero.
        for row in 0..m {
            dst[row * dst_row_stride..][..n].fill(MaybeUninit::new(0.0));
        }
        return;
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three matrices are row-major with the strides given and lie inside their
    // slices (checked above); `dst` is exclusively borrowed and overlaps neither input; with
    // `read_dst = false` the gemm only writes `dst` (it never reads the uninitialised values),
    // every one of its `m × n` elements (k ≥ 1 here).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            dst_row_stride as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            rhs_row_stride as isize,
            0f32,
            1f32,
            false,
            false,
            false,
            parallelism,
        );
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
    let first = pad_before.saturating_sub(tap).div_ceil(stride).min(out_len);
    // o·s + tap − pad_before ≤ in_len − 1  ⇔  o ≤ ⌊(in_len − 1 + pad_before − tap) / s⌋
    let end = match (in_len + pad_before).checked_sub(tap + 1) {
        Some(last_reach) => (last_reach / stride + 1).min(out_len),
        None => 0,
    };
    first..end.max(first)
}

/// Fills `columns` `(c_in·k·k, rows.len()·out_w)`: row `(c, ky, kx)` holds, for every output
/// pixel `(oy, ox)` with `oy` in `rows`, the input `x[c, oy·s + ky − top, ox·s + kx − left]`, or
/// 0 in the padding.
fn im2col(
    x: &[f32],
    columns: &mut [f32],
    rows: std::ops::Range<usize>,
    g: &ConvShape,
    threads: usize,
) {
    let k = g.kernel;
    let tile_pixels = rows.len() * g.out_w;
    let row = |(r, column_row): (usize, &mut [f32])| {
        let (c, ky, kx) = (r / (k * k), r / k % k, r % k);
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        im2col_row(plane, column_row, rows.clone(), ky, kx, g);
    };
    if threads > 1 {
        columns
            .par_chunks_exact_mut(tile_pixels)
            .enumerate()
            .with_min_len(k * k)
            .for_each(row);
    } else {
        columns
            .chunks_exact_mut(tile_pixels)
            .enumerate()
            .for_each(row);
    }
}

/// One im2col row: tap `(ky, kx)` of one input plane `(h, w)` for the output rows `rows`.
fn im2col_row(
    plane: &[f32],
    column_row: &mut [f32],
    rows: std::ops::Range<usize>,
    ky: usize,
    kx: usize,
    g: &ConvShape,
) {
    let (top, _, left, _) = g.padding;
    let s = g.stride;
    let valid_rows = valid_outputs(g.h, g.out_h, ky, top, s);
    let cols = valid_outputs(g.w, g.out_w, kx, left, s);
    for (oy, out_row) in rows.zip(column_row.chunks_exact_mut(g.out_w)) {
        if !valid_rows.contains(&oy) || cols.is_empty() {
            out_row.fill(0.0);
            continue;
        }
        let in_row = &plane[(oy * s + ky - top) * g.w..][..g.w];
        out_row[..cols.start].fill(0.0);
        out_row[cols.end..].fill(0.0);
        let first_in = cols.start * s + kx - left;
        let dst = &mut out_row[cols.clone()];
        if s == 1 {
            dst.copy_from_slice(&in_row[first_in..first_in + dst.len()]);
        } else {
            dst.iter_mut()
                .zip(in_row[first_in..].iter().step_by(s))
                .for_each(|(d, &v)| *d = v);
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::DType;

    use super::super::test_support::{conv_reference as reference, max_abs_diff};
    use super::super::Padding2d;
    use super::*;

    struct Case {
        batch: usize,
        c_in: usize,
        c_out: usize,
        size: (usize, usize),
        kernel: usize,
        stride: usize,
        padding: Padding2d,
        activation: Activation,
        with_residual: bool,
    }

    /// The CPU kernel, the entry point on `device` and the candle-ops path on `device`, each
    /// against the reference computed on the CPU.
    fn check(case: &Case, device: &Device) -> Result<()> {
        let dev = Device::Cpu;
        let (h, w) = case.size;
        let x = Tensor::randn(0f32, 1f32, (case.batch, case.c_in, h, w), &dev)?;
        let k = case.kernel;
        let weight = Tensor::randn(0f32, 1f32, (case.c_out, case.c_in, k, k), &dev)?;
        let bias = Tensor::randn(0f32, 1f32, case.c_out, &dev)?;
        let params = FusedConvParams {
            stride: case.stride,
            padding: case.padding,
            activation: case.activation,
        };
        let plain = reference(&x, &weight, &bias, None, &params)?;
        let residual = if case.with_residual {
            Some(Tensor::randn(0f32, 1f32, plain.dims(), &dev)?)
        } else {
            None
        };
        let expected = reference(&x, &weight, &bias, residual.as_ref(), &params)?;
        let fast = conv2d_fused(&x, &weight, &bias, residual.as_ref(), &params)?;
        let on = |t: &Tensor| t.to_device(device);
        let (xd, wd, bd) = (on(&x)?, on(&weight)?, on(&bias)?);
        let rd = residual.as_ref().map(on).transpose()?;
        let entry = conv2d_fused(&xd, &wd, &bd, rd.as_ref(), &params)?;
        assert!(entry.device().same_device(device), "output left {device:?}");
        let candle = conv2d_candle(&xd, &wd, &bd, rd.as_ref(), &params)?;
        // Sums of c_in·k·k products of N(0, 1) values: allow for f32 reordering.
        let tolerance = 1e-5 * (case.c_in * k * k) as f32;
        for (path, y) in [
            ("cpu kernel", &fast),
            ("entry", &entry),
            ("candle ops", &candle),
        ] {
            let diff = max_abs_diff(y, &expected)?;
            assert!(
                diff <= tolerance,
                "{path} on {device:?}: b{} {}->{} {h}x{w} k{k} s{} {:?} {:?}: {diff}",
                case.batch,
                case.c_in,
                case.c_out,
                case.stride,
                case.padding,
                case.activation
            );
        }
        Ok(())
    }

    /// The shapes the backbones use, scaled down: ResNet (7x7/2 stem, 3x3/1 and 3x3/2, 1x1/2
    /// downsample, residual + ReLU), EfficientNet-Lite (3x3/2 SAME stem, 1x1 pointwise with
    /// ReLU6 and residual), VGG (3x3/1); odd sizes and batches of 1 and 3.
    fn matches_candle_conv2d(device: &Device) -> Result<()> {
        use Activation::*;
        #[rustfmt::skip]
        let cases = [
            (3, 16, 7, 2, (3, 3, 3, 3), Relu, false),
            (3, 8, 3, 2, (0, 1, 0, 1), Relu6, false),
            (3, 8, 3, 2, (1, 1, 1, 1), Relu6, false),
            (8, 8, 3, 1, (1, 1, 1, 1), Relu, false),
            (8, 8, 3, 1, (1, 1, 1, 1), Relu, true),
            (8, 16, 3, 2, (1, 1, 1, 1), Relu, false),
            (8, 16, 1, 2, (0, 0, 0, 0), Identity, false),
            (8, 24, 1, 1, (0, 0, 0, 0), Relu6, false),
            (24, 8, 1, 1, (0, 0, 0, 0), Identity, true),
            (4, 6, 5, 1, (2, 2, 2, 2), Identity, false),
            (4, 6, 5, 2, (1, 2, 1, 2), Relu, true),
            (2, 3, 3, 1, (0, 0, 0, 0), Identity, false),
            (2, 3, 3, 1, (2, 0, 1, 3), Relu, false),
        ];
        for (c_in, c_out, kernel, stride, padding, activation, with_residual) in cases {
            for batch in [1, 3] {
                for size in [(16, 16), (9, 13)] {
                    check(
                        &Case {
                            batch,
                            c_in,
                            c_out,
                            size,
                            kernel,
                            stride,
                            padding,
                            activation,
                            with_residual,
                        },
                        device,
                    )?;
                }
            }
        }
        Ok(())
    }
    crate::test_device!(
        matches_candle_conv2d,
        matches_candle_conv2d_cpu,
        matches_candle_conv2d_cuda
    );

    /// Inputs large enough to be split into several tiles of output rows ([`TILE_VALUES`]),
    /// with im2col and for a pointwise convolution, batch 1 (threads inside the image) and 2.
    fn several_tiles_match_candle_conv2d(device: &Device) -> Result<()> {
        #[rustfmt::skip]
        let cases = [
            (64, 3, 2, (64, 64), (1, 1, 1, 1)),
            (64, 3, 1, (40, 64), (1, 1, 1, 1)),
            (256, 1, 1, (3, 2048), (0, 0, 0, 0)),
        ];
        for (c_in, kernel, stride, size, padding) in cases {
            let patch_row = c_in * kernel * kernel * size.1 / stride;
            assert!(
                patch_row * size.0 / stride > TILE_VALUES,
                "not several tiles"
            );
            for batch in [1, 2] {
                check(
                    &Case {
                        batch,
                        c_in,
                        c_out: 5,
                        size,
                        kernel,
                        stride,
                        padding,
                        activation: Activation::Relu,
                        with_residual: true,
                    },
                    device,
                )?;
            }
        }
        Ok(())
    }
    crate::test_device!(
        several_tiles_match_candle_conv2d,
        several_tiles_match_candle_conv2d_cpu,
        several_tiles_match_candle_conv2d_cuda
    );

    /// Tiny inputs where whole kernel rows or columns fall into the padding.
    fn padding_larger_than_input(device: &Device) -> Result<()> {
        for (size, kernel, stride, padding) in [
            ((1, 1), 3, 1, (1, 1, 1, 1)),
            ((1, 2), 5, 2, (2, 2, 2, 2)),
            ((2, 1), 7, 2, (3, 3, 3, 3)),
        ] {
            check(
                &Case {
                    batch: 2,
                    c_in: 3,
                    c_out: 4,
                    size,
                    kernel,
                    stride,
                    padding,
                    activation: Activation::Identity,
                    with_residual: false,
                },
                device,
            )?;
        }
        Ok(())
    }
    crate::test_device!(
        padding_larger_than_input,
        padding_larger_than_input_cpu,
        padding_larger_than_input_cuda
    );

    #[test]
    fn rejects_mismatched_shapes() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &dev)?;
        let weight = Tensor::zeros((4, 2, 3, 3), DType::F32, &dev)?;
        let bias = Tensor::zeros(4, DType::F32, &dev)?;
        let params = FusedConvParams {
            stride: 1,
            padding: (1, 1, 1, 1),
            activation: Activation::Identity,
        };
        assert!(conv2d_fused(&x, &weight, &bias, None, &params).is_err());
        let weight = Tensor::zeros((4, 3, 3, 3), DType::F32, &dev)?;
        let residual = Tensor::zeros((1, 4, 7, 8), DType::F32, &dev)?;
        assert!(conv2d_fused(&x, &weight, &bias, Some(&residual), &params).is_err());
        Ok(())
    }
}
