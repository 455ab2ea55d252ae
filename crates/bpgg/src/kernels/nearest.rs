//! Exact nearest-neighbour search: for each query vector, the largest dot product (the largest
//! cosine, for unit vectors) or the smallest squared Euclidean distance to any vector of a bank.
//!
//! Both are one maximum over the bank: `max_j q·b_j`, and `min_j ‖q − b_j‖² = ‖q‖² −
//! max_j (2 q·b_j − ‖b_j‖²)`. On x86-64 CPUs with AVX2 and FMA a register-tiled kernel packs the
//! bank once per call into groups of [`BANK_GROUP`] vectors (coordinate-major, so one load
//! brings one coordinate of 8 bank vectors), keeps a tile of up to [`QUERY_GROUP`] queries ×
//! [`BANK_GROUP`] bank vectors in registers while it walks the coordinates, and folds the tile
//! into each query's running maximum right there: the `queries × bank` products never reach
//! memory (candle's `matmul` + `max` wrote them all, then read them back). Other CPUs use the
//! same blocking through `gemm` into a cache-sized tile. Blocks of queries are spread over the
//! rayon pool. The work is `2 · queries · bank · dim` flops: linear in the bank size.
//!
//! Other devices and dtypes take candle's ops ([`nearest_candle`]: a chunked matmul and a
//! running maximum), so callers stay device-agnostic. All paths compute the same sums; results differ only by `f32`
//! summation order.

use std::cell::RefCell;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::{is_cpu_f32, kernel_error, with_cpu_f32, with_scratch};
use crate::Result;

/// Queries per rayon task (the gemm path's tile rows).
const QUERY_BLOCK: usize = 96;
/// Bank vectors per tile of the gemm path (`QUERY_BLOCK × BANK_BLOCK` floats: 192 KiB, inside
/// L2).
const BANK_BLOCK: usize = 512;
/// Queries of one register tile of the AVX2 kernel (2 · 6 accumulators + 2 bank vectors + 1
/// broadcast of the 16 vector registers).
const QUERY_GROUP: usize = 6;
/// Bank vectors of one register tile of the AVX2 kernel (two vectors of 8 lanes).
const BANK_GROUP: usize = 16;

/// What a search returns for each query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nearest {
    /// The largest dot product `max_j q·b_j` (the largest cosine when all rows are unit).
    MaxDot,
    /// The smallest squared distance `min_j ‖q − b_j‖²` (clamped at 0 against rounding).
    MinSquaredDistance,
}

/// For each row of `queries`, the largest dot product with a row of `bank` or the smallest
/// squared distance to one ([`Nearest`]).
///
/// `fallback_block` bounds the candle fallback's blocks (`fallback_block²` floats at a time,
/// off the CPU); the CPU kernel works in cache-sized tiles whatever it is.
///
/// # Shapes
/// - `queries`: `(q, dim)`; `bank`: `(m, dim)` with `m ≥ 1`;
/// - returns `(q,)`.
pub(crate) fn nearest(
    queries: &Tensor,
    bank: &Tensor,
    kind: Nearest,
    fallback_block: usize,
) -> Result<Tensor> {
    let (q, dim) = queries.dims2()?;
    let (m, bank_dim) = bank.dims2()?;
    if bank_dim != dim || m == 0 || fallback_block == 0 {
        return Err(kernel_error(format!(
            "nearest: queries {:?} and bank {:?} do not fit (same width, a non-empty bank), \
             or block {fallback_block}",
            queries.shape(),
            bank.shape()
        )));
    }
    if is_cpu_f32(queries) && is_cpu_f32(bank) {
        let best = with_cpu_f32(queries, "nearest queries", |queries| {
            with_cpu_f32(bank, "nearest bank", |bank| {
                Ok(nearest_cpu(queries, bank, dim, kind))
            })
        })?;
        return Ok(Tensor::from_vec(best, q, &Device::Cpu)?);
    }
    nearest_candle(queries, bank, kind, fallback_block)
}

/// [`nearest`] through candle's ops, in blocks of `block` rows: its path off the CPU, on any
/// device and float dtype.
///
/// # Shapes
/// As [`nearest`] (sizes checked there).
pub(crate) fn nearest_candle(
    queries: &Tensor,
    bank: &Tensor,
    kind: Nearest,
    block: usize,
) -> Result<Tensor> {
    let (q, _) = queries.dims2()?;
    let m = bank.dim(0)?;
    let bank_sq = match kind {
        Nearest::MaxDot => None,
        Nearest::MinSquaredDistance => Some(bank.sqr()?.sum(1)?.unsqueeze(0)?),
    };
    let mut out = Vec::with_capacity(q.div_ceil(block));
    for q0 in (0..q).step_by(block) {
        let rows = queries.narrow(0, q0, block.min(q - q0))?;
        let mut best: Option<Tensor> = None;
        for m0 in (0..m).step_by(block) {
            let len = block.min(m - m0);
            let block = bank.narrow(0, m0, len)?;
            let dots = rows.matmul(&block.t()?)?;
            let block_best = match &bank_sq {
                None => dots.max(1)?,
                Some(sq) => sq
                    .narrow(1, m0, len)?
                    .broadcast_sub(&(dots * 2.0)?)?
                    .min(1)?,
            };
            best = Some(match (best, kind) {
                (None, _) => block_best,
                (Some(b), Nearest::MaxDot) => b.maximum(&block_best)?,
                (Some(b), Nearest::MinSquaredDistance) => b.minimum(&block_best)?,
            });
        }
        let best = best.expect("the bank is never empty");
        out.push(match kind {
            Nearest::MaxDot => best,
            Nearest::MinSquaredDistance => (rows.sqr()?.sum(1)? + best)?.maximum(0.0)?,
        });
    }
    Ok(Tensor::cat(&out, 0)?)
}

thread_local! {
    /// Each thread's product tile, reused from call to call.
    static TILE_BUFFER: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// The search on contiguous row-major `f32` data: `queries` `(q, dim)`, `bank` `(m, dim)`,
/// `m ≥ 1`; the AVX2 kernel where the CPU has it, the gemm path elsewhere.
fn nearest_cpu(queries: &[f32], bank: &[f32], dim: usize, kind: Nearest) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if avx2_fma_available() {
        return nearest_avx2(queries, bank, dim, kind);
    }
    nearest_gemm(queries, bank, dim, kind)
}

/// [`nearest_cpu`] through the AVX2 register-tiled kernel. Callers check
/// [`avx2_fma_available`].
#[cfg(target_arch = "x86_64")]
fn nearest_avx2(queries: &[f32], bank: &[f32], dim: usize, kind: Nearest) -> Vec<f32> {
    assert!(avx2_fma_available(), "the AVX2 search needs AVX2 and FMA");
    let mut best = vec![0f32; queries.len() / dim.max(1)];
    if best.is_empty() || dim == 0 {
        // No queries, or empty vectors: every product and every distance is 0.
        return best;
    }
    let packed = PackedBank::new(bank, dim, kind);
    best.par_chunks_mut(QUERY_BLOCK)
        .zip(queries.par_chunks(QUERY_BLOCK * dim))
        .for_each(|(best, queries)| packed.query_block(queries, best));
    finish(best, queries, dim, kind)
}

/// [`nearest_cpu`] through `gemm` products into a cache-sized tile.
fn nearest_gemm(queries: &[f32], bank: &[f32], dim: usize, kind: Nearest) -> Vec<f32> {
    let mut best = vec![0f32; queries.len() / dim.max(1)];
    if best.is_empty() || dim == 0 {
        return best;
    }
    let m = bank.len() / dim;
    let bank_sq: Vec<f32> = match kind {
        Nearest::MaxDot => Vec::new(),
        Nearest::MinSquaredDistance => bank.chunks_exact(dim).map(squared_norm).collect(),
    };
    best.par_chunks_mut(QUERY_BLOCK)
        .zip(queries.par_chunks(QUERY_BLOCK * dim))
        .for_each(|(best, queries)| {
            with_scratch(&TILE_BUFFER, QUERY_BLOCK * BANK_BLOCK, |tile| {
                query_block(queries, bank, &bank_sq, dim, m, kind, tile, best)
            })
        });
    if kind == Nearest::MinSquaredDistance {
        for (b, row) in best.iter_mut().zip(queries.chunks_exact(dim)) {
            *b = (squared_norm(row) + *b).max(0.0);
        }
    }
    best
}

/// `best` (each query's `max_j (scale · q·b_j + offset_j)` of [`PackedBank`]) turned into the
/// result: as is for dot products, `‖q‖² − best` (clamped at 0) for squared distances.
#[cfg(target_arch = "x86_64")]
fn finish(mut best: Vec<f32>, queries: &[f32], dim: usize, kind: Nearest) -> Vec<f32> {
    if kind == Nearest::MinSquaredDistance {
        for (b, row) in best.iter_mut().zip(queries.chunks_exact(dim)) {
            *b = (squared_norm(row) - *b).max(0.0);
        }
    }
    best
}

#[cfg(target_arch = "x86_64")]
fn avx2_fma_available() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// A bank packed for the AVX2 kernel: groups of [`BANK_GROUP`] vectors, each group stored
/// coordinate-major (`(dim, BANK_GROUP)`), the last group padded with zero vectors. Every bank
/// vector `j` scores `scale · q·b_j + offset_j` and each query keeps the maximum: `scale = 1`,
/// `offset = 0` for dot products; `scale = 2`, `offset = −‖b_j‖²` for squared distances; a
/// padding vector has `offset = −∞`, so it never wins.
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
struct PackedBank {
    data: Vec<f32>,
    offsets: Vec<f32>,
    scale: f32,
    dim: usize,
    groups: usize,
}

#[cfg(target_arch = "x86_64")]
impl PackedBank {
    /// Packs `bank` `(m, dim)`, row-major, `dim ≥ 1`.
    fn new(bank: &[f32], dim: usize, kind: Nearest) -> Self {
        let m = bank.len() / dim;
        let groups = m.div_ceil(BANK_GROUP);
        let mut data = vec![0f32; groups * dim * BANK_GROUP];
        let mut offsets = vec![f32::NEG_INFINITY; groups * BANK_GROUP];
        for (j, row) in bank.chunks_exact(dim).enumerate() {
            let group = &mut data[j / BANK_GROUP * dim * BANK_GROUP..][..dim * BANK_GROUP];
            let lane = j % BANK_GROUP;
            for (k, &v) in row.iter().enumerate() {
                group[k * BANK_GROUP + lane] = v;
            }
            offsets[j] = match kind {
                Nearest::MaxDot => 0.0,
                Nearest::MinSquaredDistance => -squared_norm(row),
            };
        }
        let scale = match kind {
            Nearest::MaxDot => 1.0,
            Nearest::MinSquaredDistance => 2.0,
        };
        Self {
            data,
            offsets,
            scale,
            dim,
            groups,
        }
    }

    /// `best[i]` ← `max_j (scale · q_i·b_j + offset_j)` for the rows `q_i` of `queries`
    /// (`(best.len(), dim)`, row-major).
    fn query_block(&self, queries: &[f32], best: &mut [f32]) {
        let dim = self.dim;
        assert_eq!(queries.len(), best.len() * dim, "query block out of shape");
        let mut lanes = vec![[f32::NEG_INFINITY; 8]; best.len()];
        for group in 0..self.groups {
            let packed = &self.data[group * dim * BANK_GROUP..][..dim * BANK_GROUP];
            let offsets = &self.offsets[group * BANK_GROUP..][..BANK_GROUP];
            for (rows, lanes) in queries
                .chunks(QUERY_GROUP * dim)
                .zip(lanes.chunks_mut(QUERY_GROUP))
            {
                let tile = RegisterTile {
                    queries: rows,
                    dim,
                    packed,
                    offsets,
                    scale: self.scale,
                };
                // SAFETY: the CPU has AVX2 and FMA (`PackedBank` is only built after
                // `avx2_fma_available`), and the tile's slices have the lengths
                // `RegisterTile::run` requires: `rows` holds `lanes.len()` (1 to QUERY_GROUP)
                // rows of `dim`, `packed` `dim · BANK_GROUP` values, `offsets` BANK_GROUP.
                unsafe {
                    match lanes.len() {
                        6 => tile.run::<6>(lanes),
                        5 => tile.run::<5>(lanes),
                        4 => tile.run::<4>(lanes),
                        3 => tile.run::<3>(lanes),
                        2 => tile.run::<2>(lanes),
                        _ => tile.run::<1>(lanes),
                    }
                }
            }
        }
        for (b, lanes) in best.iter_mut().zip(&lanes) {
            *b = lanes.iter().fold(f32::NEG_INFINITY, |a, &x| larger(a, x));
        }
    }
}

/// The operands of one register tile: up to [`QUERY_GROUP`] queries × one bank group.
#[cfg(target_arch = "x86_64")]
struct RegisterTile<'a> {
    /// `(MR, dim)` query rows, row-major.
    queries: &'a [f32],
    dim: usize,
    /// The group, `(dim, BANK_GROUP)`.
    packed: &'a [f32],
    /// `(BANK_GROUP,)`.
    offsets: &'a [f32],
    scale: f32,
}

#[cfg(target_arch = "x86_64")]
impl RegisterTile<'_> {
    /// `lanes[i]` ← lane-wise `max(lanes[i], scale · q_i·b_j + offset_j)` over the group's
    /// `BANK_GROUP` vectors `j`, folded onto 8 lanes.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `lanes.len() == MR`, `queries.len() == MR · dim`,
    /// `packed.len() == dim · BANK_GROUP` and `offsets.len() == BANK_GROUP`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run<const MR: usize>(&self, lanes: &mut [[f32; 8]]) {
        use std::arch::x86_64::*;
        debug_assert!(
            lanes.len() == MR
                && self.queries.len() == MR * self.dim
                && self.packed.len() == self.dim * BANK_GROUP
                && self.offsets.len() == BANK_GROUP
        );
        let (q, b, dim) = (self.queries.as_ptr(), self.packed.as_ptr(), self.dim);
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for k in 0..dim {
            // SAFETY: `k < dim`, so `k · BANK_GROUP + 8 + 8 ≤ dim · BANK_GROUP` values of
            // `packed` and `i · dim + k < MR · dim` values of `queries` are read (the
            // function's contract).
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(k * BANK_GROUP));
                let b1 = _mm256_loadu_ps(b.add(k * BANK_GROUP + 8));
                for (i, acc) in acc.iter_mut().enumerate() {
                    let a = _mm256_set1_ps(*q.add(i * dim + k));
                    acc[0] = _mm256_fmadd_ps(a, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(a, b1, acc[1]);
                }
            }
        }
        let scale = _mm256_set1_ps(self.scale);
        // SAFETY: `offsets` holds BANK_GROUP = 16 values and each `lanes[i]` 8 (the contract).
        unsafe {
            let o0 = _mm256_loadu_ps(self.offsets.as_ptr());
            let o1 = _mm256_loadu_ps(self.offsets.as_ptr().add(8));
            for (acc, lane) in acc.iter().zip(lanes.iter_mut()) {
                let v = _mm256_max_ps(
                    _mm256_fmadd_ps(scale, acc[0], o0),
                    _mm256_fmadd_ps(scale, acc[1], o1),
                );
                let best = _mm256_loadu_ps(lane.as_ptr());
                _mm256_storeu_ps(lane.as_mut_ptr(), _mm256_max_ps(best, v));
            }
        }
    }
}

/// One block of queries against the whole bank: `best[i]` ← the best of row `i` (for squared
/// distances, without the query's own `‖q‖²`).
#[allow(clippy::too_many_arguments)]
fn query_block(
    queries: &[f32],
    bank: &[f32],
    bank_sq: &[f32],
    dim: usize,
    m: usize,
    kind: Nearest,
    tile: &mut [f32],
    best: &mut [f32],
) {
    let rows = best.len();
    let initial = match kind {
        Nearest::MaxDot => f32::NEG_INFINITY,
        Nearest::MinSquaredDistance => f32::INFINITY,
    };
    best.fill(initial);
    for m0 in (0..m).step_by(BANK_BLOCK) {
        let cols = BANK_BLOCK.min(m - m0);
        let tile = &mut tile[..rows * cols];
        let block = &bank[m0 * dim..(m0 + cols) * dim];
        let (scale, accumulate) = match kind {
            Nearest::MaxDot => (1.0, false),
            Nearest::MinSquaredDistance => {
                for row in tile.chunks_exact_mut(cols) {
                    row.copy_from_slice(&bank_sq[m0..m0 + cols]);
                }
                (-2.0, true)
            }
        };
        products(queries, block, dim, tile, scale, accumulate);
        for (b, row) in best.iter_mut().zip(tile.chunks_exact(cols)) {
            *b = match kind {
                Nearest::MaxDot => larger(*b, row_max(row)),
                Nearest::MinSquaredDistance => smaller(*b, row_min(row)),
            };
        }
    }
}

/// `tile (r, c) = [tile +] scale · a (r, dim) · bᵀ` for row-major `a` `(r, dim)` and `b`
/// `(c, dim)`, on the calling thread.
fn products(a: &[f32], b: &[f32], dim: usize, tile: &mut [f32], scale: f32, accumulate: bool) {
    let (r, c) = (a.len() / dim, b.len() / dim);
    assert!(
        r * dim == a.len() && c * dim == b.len() && tile.len() == r * c,
        "product operands out of shape"
    );
    if r == 0 || c == 0 {
        return;
    }
    // SAFETY: `a` is `(r, dim)` row-major (row stride `dim`, column stride 1); `bᵀ` is read
    // from the row-major `(c, dim)` `b` with row stride 1 and column stride `dim`; `tile` is
    // `(r, c)` row-major. All three lie inside their slices (checked above), and `tile` is
    // exclusively borrowed, so it overlaps neither input.
    unsafe {
        gemm::gemm(
            r,
            c,
            dim,
            tile.as_mut_ptr(),
            1,
            c as isize,
            accumulate,
            a.as_ptr(),
            1,
            dim as isize,
            b.as_ptr(),
            dim as isize,
            1,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Lanes of the vectorised reductions.
const LANES: usize = 8;

/// `Σ v²`.
fn squared_norm(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a += x * x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().map(|x| x * x).sum::<f32>()
}

/// The largest value of a non-empty row (NaN values are skipped).
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = larger(*a, x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| larger(a, x));
    acc.iter().fold(tail, |a, &x| larger(a, x))
}

/// The smallest value of a non-empty row (NaN values are skipped).
fn row_min(row: &[f32]) -> f32 {
    let mut acc = [f32::INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = smaller(*a, x);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::INFINITY, |a, &x| smaller(a, x));
    acc.iter().fold(tail, |a, &x| smaller(a, x))
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

/// `min(a, b)` as one compare-and-select (a NaN in `b` is dropped).
#[inline(always)]
fn smaller(a: f32, b: f32) -> f32 {
    if b < a {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// `n` rows of `dim` values in `[-0.5, 0.5)`.
    fn rows(seed: u64, n: usize, dim: usize) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..n * dim).map(|_| rng.next_f64() as f32 - 0.5).collect()
    }

    /// The plain reference: every pair, in `f64`.
    fn brute_force(queries: &[f32], bank: &[f32], dim: usize, kind: Nearest) -> Vec<f64> {
        queries
            .chunks_exact(dim)
            .map(|q| {
                let values = bank.chunks_exact(dim).map(|b| match kind {
                    Nearest::MaxDot => q.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum(),
                    Nearest::MinSquaredDistance => q
                        .iter()
                        .zip(b)
                        .map(|(x, y)| f64::from(x - y).powi(2))
                        .sum::<f64>(),
                });
                match kind {
                    Nearest::MaxDot => values.fold(f64::NEG_INFINITY, f64::max),
                    Nearest::MinSquaredDistance => values.fold(f64::INFINITY, f64::min),
                }
            })
            .collect()
    }

    /// Several query and bank blocks with ragged ends, one bank row, a row narrower than one
    /// reduction vector, all-negative dot products (with one bank row, the padding of the
    /// AVX2 kernel's last group must not win); both kinds; every path against brute force: the
    /// CPU kernel, its gemm and AVX2 variants, and on `device` the entry point and the
    /// candle-ops path.
    fn matches_brute_force(device: &Device) -> Result<()> {
        let dev = Device::Cpu;
        for (q, m, dim) in [
            (1, 1, 3),
            (5, 7, 5),
            (QUERY_BLOCK + 3, BANK_BLOCK + 9, 19),
            (2 * QUERY_BLOCK, 2 * BANK_BLOCK, 152),
            // Every register-tile height (1..=6 queries) and a ragged last bank group.
            (QUERY_GROUP * 3 + 5, BANK_GROUP * 2 + 3, 7),
        ] {
            let queries = rows(1, q, dim);
            let bank = rows(2, m, dim);
            let qt = Tensor::from_vec(queries.clone(), (q, dim), &dev)?;
            let bt = Tensor::from_vec(bank.clone(), (m, dim), &dev)?;
            let (qd, bd) = (qt.to_device(device)?, bt.to_device(device)?);
            let host = |t: Tensor| -> Result<Vec<f32>> {
                assert!(t.device().same_device(device), "output left {device:?}");
                Ok(t.to_device(&dev)?.to_vec1::<f32>()?)
            };
            for kind in [Nearest::MaxDot, Nearest::MinSquaredDistance] {
                let expected = brute_force(&queries, &bank, dim, kind);
                let fast = nearest(&qt, &bt, kind, 64)?.to_vec1::<f32>()?;
                let entry = host(nearest(&qd, &bd, kind, 64)?)?;
                // Blocks of 50 rows: several query and bank blocks on the fallback too.
                let fallback = host(nearest_candle(&qd, &bd, kind, 50)?)?;
                let gemm = nearest_gemm(&queries, &bank, dim, kind);
                #[cfg(target_arch = "x86_64")]
                let avx2 = if avx2_fma_available() {
                    nearest_avx2(&queries, &bank, dim, kind)
                } else {
                    eprintln!("no AVX2/FMA: the register-tiled search is not used on this CPU");
                    gemm.clone()
                };
                #[cfg(not(target_arch = "x86_64"))]
                let avx2 = gemm.clone();
                for (i, e) in expected.iter().enumerate() {
                    let tolerance = 1e-5 * dim as f64;
                    for (name, got) in [
                        ("kernel", fast[i]),
                        ("entry", entry[i]),
                        ("fallback", fallback[i]),
                        ("gemm", gemm[i]),
                        ("avx2", avx2[i]),
                    ] {
                        assert!(
                            (f64::from(got) - e).abs() <= tolerance,
                            "{name} on {device:?} {kind:?} q{q} m{m} d{dim} row {i}: {got} vs {e}"
                        );
                    }
                }
            }
        }
        Ok(())
    }
    crate::test_device!(
        matches_brute_force,
        matches_brute_force_cpu,
        matches_brute_force_cuda
    );

    /// A query equal to a bank row is at distance 0 (not a small negative number) and its
    /// largest dot product is its own squared norm.
    #[test]
    fn members_are_at_distance_zero() -> Result<()> {
        let dev = Device::Cpu;
        let dim = 24;
        let bank = rows(3, 40, dim);
        let queries = bank[7 * dim..10 * dim].to_vec();
        let bt = Tensor::from_vec(bank, (40, dim), &dev)?;
        let qt = Tensor::from_vec(queries.clone(), (3, dim), &dev)?;
        let d = nearest(&qt, &bt, Nearest::MinSquaredDistance, 64)?.to_vec1::<f32>()?;
        assert!(d.iter().all(|&v| (0.0..1e-5).contains(&v)), "{d:?}");
        let dots = nearest(&qt, &bt, Nearest::MaxDot, 64)?.to_vec1::<f32>()?;
        for (dot, q) in dots.iter().zip(queries.chunks_exact(dim)) {
            assert!(*dot >= squared_norm(q) - 1e-5);
        }
        // A bank of one row (15 padding vectors in the AVX2 kernel's group) and its negation
        // as the query: the largest dot product is −‖b‖², not the padding's 0.
        let row = &queries[..dim];
        let bt = Tensor::from_vec(row.to_vec(), (1, dim), &dev)?;
        let negated: Vec<f32> = row.iter().map(|v| -v).collect();
        let qt = Tensor::from_vec(negated, (1, dim), &dev)?;
        let dot = nearest(&qt, &bt, Nearest::MaxDot, 64)?.to_vec1::<f32>()?[0];
        assert!((dot + squared_norm(row)).abs() < 1e-5, "{dot}");
        Ok(())
    }

    #[test]
    fn rejects_mismatched_widths_and_an_empty_bank() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::zeros((2, 4), candle_core::DType::F32, &dev)?;
        let b = Tensor::zeros((3, 5), candle_core::DType::F32, &dev)?;
        assert!(nearest(&q, &b, Nearest::MaxDot, 64).is_err());
        let empty = Tensor::zeros((0, 4), candle_core::DType::F32, &dev)?;
        assert!(nearest(&q, &empty, Nearest::MaxDot, 64).is_err());
        let b = Tensor::zeros((3, 4), candle_core::DType::F32, &dev)?;
        assert!(nearest(&q, &b, Nearest::MaxDot, 0).is_err());
        Ok(())
    }
}
