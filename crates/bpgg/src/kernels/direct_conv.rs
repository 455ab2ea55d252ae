//! A direct (implicit-gemm) dense convolution for AVX-512 CPUs: no im2col matrix.
//!
//! The im2col + gemm path ([`super::conv2d_fused`]) writes `c_in·k²` values per output pixel, which
//! the gemm then packs once more; for ResNet's 3x3 convolutions that data movement costs about
//! as much as the arithmetic. Here the input of each image is copied once into zero-padded
//! phase planes ([`super::PlaneGeometry`]), where the `k²` taps of 16 consecutive output pixels of a
//! row are 16 consecutive values each, whatever the stride. The micro-kernel keeps a tile of
//! [`TILE_CHANNELS`] output channels × [`TILE_VECTORS`] vectors of 16 output pixels in
//! registers and walks the `c_in·k²` taps: one load per pixel vector and one broadcast weight
//! per channel feed `TILE_CHANNELS · TILE_VECTORS` fused multiply-adds. The accumulators start
//! at the bias; the residual and the activation are applied when the tile is stored.
//!
//! The last vector of each output row is masked to the row's remaining pixels, so any output
//! width runs here. It applies when the output channels are a multiple of [`TILE_CHANNELS`]
//! (every ResNet and VGG convolution), with weights packed once ([`PackedConvWeight`]);
//! everything else takes the im2col path.

use std::cell::RefCell;

use candle_core::{CpuStorage, DType, Device, Storage, Tensor};
use rayon::prelude::*;

use super::{
    conv2d_candle, fill_phased, is_cpu_f32, with_cpu_f32, with_scratch, Activation, ConvShape,
    FusedConvParams, PlaneGeometry, RELU6_MAX,
};
use crate::Result;

/// Output channels of one register tile.
const TILE_CHANNELS: usize = 8;
/// Pixel vectors of one register tile (`TILE_CHANNELS · TILE_VECTORS` accumulators of the 32
/// vector registers).
const TILE_VECTORS: usize = 3;
/// `f32` lanes of an AVX-512 register.
const LANES: usize = 16;
/// Rayon tasks per pool thread: enough to balance uneven tiles and a busy core.
const TASKS_PER_THREAD: usize = 4;

/// A convolution weight `(c_out, c_in, k, k)` repacked for the micro-kernel: blocks of
/// [`TILE_CHANNELS`] output channels, each `(c_in·k², TILE_CHANNELS)`, so that one tap's weights
/// for the tile's channels are adjacent; with the weight itself for the candle-ops path.
#[derive(Debug, Clone)]
pub(crate) struct PackedConvWeight {
    data: Vec<f32>,
    /// The weight it was packed from (a shared handle, not a copy): what
    /// [`super::conv2d_candle`] takes when the input is not an `f32` CPU tensor.
    weight: Tensor,
    c_out: usize,
    c_in: usize,
    kernel: usize,
}

impl PackedConvWeight {
    /// Packs `weight` when this kernel can run it: a contiguous-able `f32` CPU tensor with a
    /// multiple of [`TILE_CHANNELS`] output channels, on a CPU with AVX-512F. `None` otherwise.
    ///
    /// # Shapes
    /// - `weight`: `(c_out, c_in, k, k)`.
    pub fn new(weight: &Tensor) -> Option<Self> {
        if !avx512_available() || !weight.device().is_cpu() || weight.dtype() != DType::F32 {
            return None;
        }
        let (c_out, c_in, k, k2) = weight.dims4().ok()?;
        if k != k2 || !c_out.is_multiple_of(TILE_CHANNELS) || c_out == 0 {
            return None;
        }
        let contiguous = weight.contiguous().ok()?;
        let (storage, layout) = contiguous.storage_and_layout();
        let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
            return None;
        };
        let (start, end) = layout.contiguous_offsets()?;
        let values = &values[start..end];
        let patch = c_in * k * k;
        let mut data = vec![0f32; values.len()];
        for (block, packed) in data.chunks_exact_mut(patch * TILE_CHANNELS).enumerate() {
            for (tap, lanes) in packed.chunks_exact_mut(TILE_CHANNELS).enumerate() {
                for (i, lane) in lanes.iter_mut().enumerate() {
                    *lane = values[(block * TILE_CHANNELS + i) * patch + tap];
                }
            }
        }
        Some(Self {
            data,
            weight: weight.clone(),
            c_out,
            c_in,
            kernel: k,
        })
    }

    /// Whether the kernel runs this weight on inputs of `c_in` channels and a `kernel` size.
    pub fn fits(&self, c_out: usize, c_in: usize, kernel: usize) -> bool {
        self.c_out == c_out && self.c_in == c_in && self.kernel == kernel
    }

    /// Whether [`conv2d_direct`] runs on `x`: an `f32` CPU tensor of this weight's input
    /// channels.
    pub fn accepts(&self, x: &Tensor) -> bool {
        is_cpu_f32(x) && x.dims4().is_ok_and(|(_, c_in, _, _)| c_in == self.c_in)
    }

    /// `(c_out, c_in, k, k)` of the weight this was packed from.
    fn weight_dims(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.kernel, self.kernel]
    }
}

/// `act(conv(x_pad, weight) + bias [+ residual])` with groups = 1, on the weight packed as
/// `packed`: the direct kernel when every operand is an `f32` CPU tensor, else candle's ops
/// ([`super::conv2d_candle`] on the weight `packed` was made from).
///
/// # Shapes
/// - `x`: `(batch, c_in, h, w)`; `bias`: `(c_out,)`; `residual` (optional): the output's shape;
/// - returns `(batch, c_out, (h + top + bottom − k) / s + 1, (w + left + right − k) / s + 1)`.
pub(crate) fn conv2d_direct(
    x: &Tensor,
    packed: &PackedConvWeight,
    bias: &Tensor,
    residual: Option<&Tensor>,
    params: &FusedConvParams,
) -> Result<Tensor> {
    let g = ConvShape::new(x, packed.weight_dims(), bias, residual, params)?;
    if !packed.accepts(x) || !is_cpu_f32(bias) || !residual.is_none_or(is_cpu_f32) {
        return conv2d_candle(x, &packed.weight, bias, residual, params);
    }
    let out = with_cpu_f32(x, "conv2d_direct input", |x| {
        with_cpu_f32(bias, "conv2d_direct bias", |bias| {
            let conv = |residual: Option<&[f32]>| -> Vec<f32> {
                DirectConv {
                    x,
                    weight: packed,
                    bias,
                    residual,
                    activation: params.activation,
                    batch: g.batch,
                    plane: g.plane(),
                }
                .run()
            };
            match residual {
                Some(r) => with_cpu_f32(r, "conv2d_direct residual", |r| Ok(conv(Some(r)))),
                None => Ok(conv(None)),
            }
        })
    })?;
    Ok(Tensor::from_vec(
        out,
        g.output_dims().as_slice(),
        &Device::Cpu,
    )?)
}

fn avx512_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

thread_local! {
    /// The calling thread's phased-input buffer, reused from call to call.
    static PHASED_BUFFER: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The operands of one convolution, on contiguous NCHW `f32` data.
struct DirectConv<'a> {
    pub x: &'a [f32],
    pub weight: &'a PackedConvWeight,
    pub bias: &'a [f32],
    pub residual: Option<&'a [f32]>,
    pub activation: Activation,
    pub batch: usize,
    pub plane: PlaneGeometry,
}

/// A raw output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the pointer is only written through, by `micro_tile`, and every task writes a
// disjoint set of output elements (its own channel blocks × pixel vectors of its own image), so
// moving the pointer to another thread creates no data race; `DirectConv::run` owns the buffer
// and neither reads, moves nor frees it until every parallel loop has joined.
unsafe impl Send for SharedOut {}
// SAFETY: as for `Send`: shared references only hand out the pointer value, and the elements
// written through it are disjoint per task.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// How the output of one image is cut into register tiles.
#[derive(Debug, Clone, Copy)]
struct TileGrid {
    vectors_per_row: usize,
    vectors: usize,
    phase_w: usize,
    out_w: usize,
    /// Weight bytes exceed one image's phased input: loop over channel blocks outside, so
    /// that one block's weights stay in cache while the pixel tiles pass.
    channels_outside: bool,
}

impl TileGrid {
    /// Pixel blocks per image: blocks of [`TILE_VECTORS`] vectors; a remainder of one vector
    /// (every power-of-two grid of 4^n vectors has one) is merged with the last full block into
    /// two blocks of two, which use the registers better than a block of one.
    fn blocks(&self) -> usize {
        self.vectors.div_ceil(TILE_VECTORS)
    }

    /// First vector and vector count of pixel block `block`.
    fn span(&self, block: usize) -> (usize, usize) {
        let full = self.vectors / TILE_VECTORS;
        let split_tail = self.vectors % TILE_VECTORS == 1 && full > 0 && TILE_VECTORS == 3;
        match (split_tail, block + 1 >= full) {
            (true, true) => {
                let first = (full - 1) * TILE_VECTORS + 2 * (block + 1 - full);
                (first, 2)
            }
            _ => {
                let first = block * TILE_VECTORS;
                (first, TILE_VECTORS.min(self.vectors - first))
            }
        }
    }

    /// Vector count, phased-grid starts, output pixels and lane masks (the last vector of a
    /// row covers only the row's remaining pixels) of the vectors of pixel block `block`.
    fn block(
        &self,
        block: usize,
    ) -> (
        usize,
        [usize; TILE_VECTORS],
        [usize; TILE_VECTORS],
        [u16; TILE_VECTORS],
    ) {
        let (first_vector, count) = self.span(block);
        let mut bases = [0usize; TILE_VECTORS];
        let mut outs = [0usize; TILE_VECTORS];
        let mut masks = [0u16; TILE_VECTORS];
        for v in 0..count {
            let vector = first_vector + v;
            let (oy, ox) = (
                vector / self.vectors_per_row,
                vector % self.vectors_per_row * LANES,
            );
            bases[v] = oy * self.phase_w + ox;
            outs[v] = oy * self.out_w + ox;
            let lanes = LANES.min(self.out_w - ox);
            masks[v] = ((1u32 << lanes) - 1) as u16;
        }
        (count, bases, outs, masks)
    }
}

impl DirectConv<'_> {
    /// `act(conv(x) + bias [+ residual])`, `(batch, c_out, out_h, out_w)` flattened.
    ///
    /// With at least as many images as pool threads, each task phases and convolves whole
    /// images (its data stays in its core's cache); otherwise the batch is phased first and
    /// the tiles of each image are spread over the pool.
    ///
    /// Callers check [`PackedConvWeight::fits`] first.
    pub fn run(&self) -> Vec<f32> {
        let g = &self.plane;
        let (c_in, c_out, k) = (self.weight.c_in, self.weight.c_out, self.weight.kernel);
        assert!(
            self.weight.fits(c_out, c_in, k) && g.kernel == k && avx512_available(),
            "direct convolution called on a shape it does not run"
        );
        let pixels = g.out_h * g.out_w;
        // Every element is written exactly once by the tiles below (each channel block of
        // each pixel vector of each image), so the buffer is not zeroed first.
        let out_len = self.batch * c_out * pixels;
        let mut out: Vec<f32> = Vec::with_capacity(out_len);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let phased_len = g.phased_len();
        let image_phased_len = c_in * phased_len;
        let in_plane = g.h * g.w;
        // The offset of every tap (c, ky, kx) in one image's phased input, in weight order.
        let offsets: Vec<usize> = (0..c_in)
            .flat_map(|c| (0..k * k).map(move |t| (c, t / k, t % k)))
            .map(|(c, ky, kx)| c * phased_len + g.tap_offset(ky, kx))
            .collect();
        let grid = TileGrid {
            vectors_per_row: g.out_w.div_ceil(LANES),
            vectors: g.out_h * g.out_w.div_ceil(LANES),
            phase_w: g.phase_w(),
            out_w: g.out_w,
            channels_outside: self.weight.data.len() > image_phased_len,
        };
        let channel_blocks = c_out / TILE_CHANNELS;
        let threads = rayon::current_num_threads();
        if self.batch >= threads {
            (0..self.batch).into_par_iter().for_each(|n| {
                with_scratch(&PHASED_BUFFER, image_phased_len, |phased| {
                    let x = &self.x[n * c_in * in_plane..(n + 1) * c_in * in_plane];
                    for (dst, src) in phased
                        .chunks_exact_mut(phased_len)
                        .zip(x.chunks_exact(in_plane))
                    {
                        fill_phased(src, dst, g);
                    }
                    let image = self.image(n, phased, &offsets, out_ptr);
                    self.run_tiles(&image, &grid, 0..grid.blocks(), 0..channel_blocks);
                })
            });
        } else {
            with_scratch(&PHASED_BUFFER, self.batch * image_phased_len, |phased| {
                phased
                    .par_chunks_exact_mut(phased_len)
                    .zip(self.x.par_chunks_exact(in_plane))
                    .with_min_len(8)
                    .for_each(|(dst, src)| fill_phased(src, dst, g));
                let phased = &*phased;
                let blocks = grid.blocks();
                let target_tasks = TASKS_PER_THREAD * threads;
                let channel_groups = target_tasks.div_ceil(blocks).clamp(1, channel_blocks);
                let block_ranges = target_tasks.div_ceil(channel_groups).clamp(1, blocks);
                let blocks_per_range = blocks.div_ceil(block_ranges);
                let blocks_per_group = channel_blocks.div_ceil(channel_groups);
                let tasks = self.batch * block_ranges * channel_groups;
                (0..tasks).into_par_iter().for_each(|task| {
                    let n = task / (block_ranges * channel_groups);
                    let range = task / channel_groups % block_ranges;
                    let group = task % channel_groups;
                    let first_group_block = group * blocks_per_group;
                    let channel_range = first_group_block
                        ..(first_group_block + blocks_per_group).min(channel_blocks);
                    let first_block = range * blocks_per_range;
                    let block_range = first_block..(first_block + blocks_per_range).min(blocks);
                    let phased = &phased[n * image_phased_len..][..image_phased_len];
                    let image = self.image(n, phased, &offsets, out_ptr);
                    self.run_tiles(&image, &grid, block_range, channel_range);
                });
            });
        }
        // SAFETY: `out` has capacity `out_len` (allocated above) and every element below it has
        // been initialised: the tasks cover every image × channel block × pixel block once
        // (`TileGrid::span` covers each vector exactly once, see its test), and a tile stores
        // every valid lane of its vectors, which together cover each output row's `out_w`
        // pixels, for all `TILE_CHANNELS` channels of its block.
        unsafe { out.set_len(out_len) };
        out
    }

    /// The operands of image `n`, whose phased input is `phased`.
    fn image<'a>(
        &'a self,
        n: usize,
        phased: &'a [f32],
        offsets: &'a [usize],
        out: SharedOut,
    ) -> ImageOperands<'a> {
        let pixels = self.plane.out_h * self.plane.out_w;
        let image_len = self.weight.c_out * pixels;
        ImageOperands {
            phased,
            offsets,
            bias: self.bias,
            residual: self
                .residual
                .map(|r| &r[n * image_len..(n + 1) * image_len]),
            // SAFETY: `n < batch` and the output buffer has capacity `batch · image_len`, so
            // the offset pointer stays inside the same allocation, as `add` requires.
            out: unsafe { out.get().add(n * image_len) },
            pixels,
            activation: self.activation,
        }
    }

    /// The register tiles of pixel blocks `blocks` × channel blocks `channel_blocks` of one
    /// image.
    fn run_tiles(
        &self,
        image: &ImageOperands,
        grid: &TileGrid,
        blocks: std::ops::Range<usize>,
        channel_blocks: std::ops::Range<usize>,
    ) {
        let patch = image.offsets.len();
        let tile = |block: usize, channel_block: usize| {
            let (count, bases, outs, masks) = grid.block(block);
            let tile = Tile {
                channel_block,
                weights: &self.weight.data[channel_block * patch * TILE_CHANNELS..]
                    [..patch * TILE_CHANNELS],
                bases,
                outs,
                masks,
            };
            // SAFETY: `micro_tile`'s contract holds: AVX-512F is present (asserted at the top
            // of `run`); every load `bases[v] + offsets[t] + lane` of a valid lane stays inside
            // the phased image (`PlaneGeometry::phased_len` reserves every tap of every output
            // of the wide grid, and masked lanes are not loaded); the stores are the valid
            // lanes of this tile's channels and pixel vectors, which no other task writes.
            unsafe {
                match count {
                    3 => micro_tile::<3>(image, &tile),
                    2 => micro_tile::<2>(image, &tile),
                    _ => micro_tile::<1>(image, &tile),
                }
            }
        };
        if grid.channels_outside {
            for channel_block in channel_blocks {
                blocks.clone().for_each(|block| tile(block, channel_block));
            }
        } else {
            for block in blocks {
                channel_blocks.clone().for_each(|cb| tile(block, cb));
            }
        }
    }
}

/// What every tile of one image shares.
struct ImageOperands<'a> {
    phased: &'a [f32],
    offsets: &'a [usize],
    bias: &'a [f32],
    residual: Option<&'a [f32]>,
    out: *mut f32,
    pixels: usize,
    activation: Activation,
}

/// One register tile: a block of output channels × up to [`TILE_VECTORS`] pixel vectors.
struct Tile<'a> {
    channel_block: usize,
    /// The channel block's packed weights `(c_in·k², TILE_CHANNELS)`.
    weights: &'a [f32],
    /// Phased-grid index of each vector's first pixel.
    bases: [usize; TILE_VECTORS],
    /// Output pixel index of each vector's first pixel.
    outs: [usize; TILE_VECTORS],
    /// Valid lanes of each vector.
    masks: [u16; TILE_VECTORS],
}

/// The register tile `tile` of `NV` pixel vectors.
///
/// # Safety
/// The CPU has AVX-512F; `phased[bases[v] + offsets[t] + l]` is in bounds for every tap `t`,
/// vector `v < NV` and lane `l` set in `masks[v]`; the output elements of the tile's valid
/// lanes lie inside `image.out`'s buffer and no other thread writes them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn micro_tile<const NV: usize>(image: &ImageOperands, tile: &Tile) {
    // SAFETY: the caller upholds this function's contract (CPU features, load bounds,
    // exclusive output elements), which is all the intrinsics and pointer accesses below need.
    unsafe {
        use std::arch::x86_64::*;
        let first_channel = tile.channel_block * TILE_CHANNELS;
        let mut acc = [[_mm512_setzero_ps(); NV]; TILE_CHANNELS];
        for (i, row) in acc.iter_mut().enumerate() {
            let b = _mm512_set1_ps(image.bias[first_channel + i]);
            row.iter_mut().for_each(|a| *a = b);
        }
        let input = image.phased.as_ptr();
        let mut w = tile.weights.as_ptr();
        for &offset in image.offsets {
            let mut xs = [_mm512_setzero_ps(); NV];
            for (v, x) in xs.iter_mut().enumerate() {
                *x = _mm512_maskz_loadu_ps(tile.masks[v], input.add(tile.bases[v] + offset));
            }
            for row in acc.iter_mut() {
                let wi = _mm512_set1_ps(*w);
                w = w.add(1);
                for (a, &x) in row.iter_mut().zip(&xs) {
                    *a = _mm512_fmadd_ps(wi, x, *a);
                }
            }
        }
        let zero = _mm512_setzero_ps();
        let six = _mm512_set1_ps(RELU6_MAX);
        for (i, row) in acc.iter().enumerate() {
            let channel_start = (first_channel + i) * image.pixels;
            for (v, &a) in row.iter().enumerate() {
                let (at, mask) = (channel_start + tile.outs[v], tile.masks[v]);
                let mut y = a;
                if let Some(r) = image.residual {
                    y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, r.as_ptr().add(at)));
                }
                y = match image.activation {
                    Activation::Identity => y,
                    Activation::Relu => _mm512_max_ps(y, zero),
                    Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(y, zero), six),
                };
                _mm512_mask_storeu_ps(image.out.add(at), mask, y);
            }
        }
    }
}

/// Never called: [`PackedConvWeight::new`] returns `None` off x86-64.
///
/// # Safety
/// None needed (it only panics); `unsafe` keeps the signature of the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn micro_tile<const NV: usize>(_image: &ImageOperands, _tile: &Tile) {
    unreachable!("the direct convolution needs AVX-512")
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// Every vector of the grid lies in exactly one block, whatever the remainder.
    #[test]
    fn blocks_cover_each_vector_once() {
        for vectors in 1..40 {
            let grid = TileGrid {
                vectors_per_row: 1,
                vectors,
                phase_w: 1,
                out_w: LANES,
                channels_outside: false,
            };
            let mut seen = vec![0; vectors];
            for block in 0..grid.blocks() {
                let (first, count) = grid.span(block);
                assert!((1..=TILE_VECTORS).contains(&count));
                seen[first..first + count].iter_mut().for_each(|s| *s += 1);
            }
            assert!(seen.iter().all(|&s| s == 1), "{vectors}: {seen:?}");
        }
    }
    use super::super::test_support::{conv_reference, max_abs_diff};
    use super::super::Padding2d;

    /// The direct kernel, and the candle-ops path layers take off the CPU
    /// ([`super::super::conv2d_candle`]), against candle's plain ops (pad, conv2d, bias,
    /// residual, activation).
    fn check(
        c_in: usize,
        c_out: usize,
        size: usize,
        kernel: usize,
        stride: usize,
        padding: Padding2d,
        activation: Activation,
    ) -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1f32, (3, c_in, size, size), &dev)?;
        let weight = Tensor::randn(0f32, 1f32, (c_out, c_in, kernel, kernel), &dev)?;
        let bias = Tensor::randn(0f32, 1f32, c_out, &dev)?;
        let params = FusedConvParams {
            stride,
            padding,
            activation,
        };
        let plain = conv_reference(&x, &weight, &bias, None, &params)?;
        let residual = Tensor::randn(0f32, 1f32, plain.dims(), &dev)?;
        let expected = conv_reference(&x, &weight, &bias, Some(&residual), &params)?;
        let tolerance = 1e-5 * (c_in * kernel * kernel) as f32;
        let candle = conv2d_candle(&x, &weight, &bias, Some(&residual), &params)?;
        let diff = max_abs_diff(&candle, &expected)?;
        assert!(
            diff <= tolerance,
            "candle ops {c_in} {size} k{kernel}: {diff}"
        );
        let Some(packed) = PackedConvWeight::new(&weight) else {
            eprintln!("no AVX-512: the direct convolution is not used on this CPU");
            return Ok(());
        };
        assert!(packed.fits(c_out, c_in, kernel));
        for batch in [1, 3] {
            let x = x.narrow(0, 0, batch)?;
            let residual = residual.narrow(0, 0, batch)?;
            let fast = conv2d_direct(&x, &packed, &bias, Some(&residual), &params)?;
            let diff = max_abs_diff(&fast, &expected.narrow(0, 0, batch)?)?;
            assert!(
                diff <= tolerance,
                "b{batch} {c_in} {size} k{kernel} s{stride} {padding:?}: {diff}"
            );
        }
        Ok(())
    }

    /// ResNet's shapes (7x7/2 stem, 3x3/1, 3x3/2, 1x1/2), a 5x5 with asymmetric padding,
    /// outputs of 1 and 2 pixel vectors per row, and weights larger than the image (channel
    /// blocks in the outer loop). Batches 1 (tiles spread over the pool) and 3 (whole images
    /// per task).
    #[test]
    fn matches_candle_conv2d() -> Result<()> {
        use Activation::*;
        let c_out = 2 * TILE_CHANNELS;
        check(3, c_out, 32, 7, 2, (3, 3, 3, 3), Relu)?;
        check(8, c_out, 16, 3, 1, (1, 1, 1, 1), Relu)?;
        check(8, c_out, 32, 3, 1, (1, 1, 1, 1), Identity)?;
        check(8, c_out, 64, 3, 2, (1, 1, 1, 1), Relu6)?;
        check(8, c_out, 32, 1, 2, (0, 0, 0, 0), Identity)?;
        check(4, c_out, 34, 5, 1, (1, 1, 0, 2), Relu)?;
        let wide = 8 * TILE_CHANNELS;
        assert!(
            wide * 8 * 9 > 8 * (16 + 3) * 18,
            "weights not larger than the image"
        );
        check(8, wide, 16, 3, 1, (1, 1, 1, 1), Relu)?;
        // Widths that are not a multiple of 16: masked last vectors, rows narrower than one.
        check(8, c_out, 24, 3, 1, (1, 1, 1, 1), Relu)?;
        check(3, c_out, 20, 7, 2, (3, 3, 3, 3), Relu)?;
        check(8, c_out, 9, 3, 1, (1, 1, 1, 1), Identity)?;
        check(8, c_out, 13, 1, 2, (0, 0, 0, 0), Identity)?;
        check(4, c_out, 37, 5, 2, (1, 2, 1, 2), Relu6)?;
        Ok(())
    }

    #[test]
    fn packs_only_whole_channel_blocks() -> Result<()> {
        let dev = Device::Cpu;
        let odd = Tensor::zeros((TILE_CHANNELS + 1, 3, 3, 3), DType::F32, &dev)?;
        assert!(PackedConvWeight::new(&odd).is_none());
        let f64_weight = Tensor::zeros((TILE_CHANNELS, 3, 3, 3), DType::F64, &dev)?;
        assert!(PackedConvWeight::new(&f64_weight).is_none());
        Ok(())
    }
}
