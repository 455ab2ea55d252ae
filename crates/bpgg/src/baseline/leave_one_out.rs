//! Scoring the support images themselves, as if each were a query: every image is searched
//! against a bank built from the *other* images' rows, since an image is at distance zero from
//! its own pixels.
//!
//! This is how a fitted model calibrates itself on its supports (the k-NN distance scale of
//! `hybrid`, the default thresholds). With a single image in a bank there is no other image:
//! that image is then compared with its own rows outside a window around each pixel (a
//! neighbourhood excluded from the nearest-neighbour search), so one normal image, or one
//! defect image, is enough.

use candle_core::{DType, Tensor};

use super::knn::{KnnConfig, MemoryBank};
use crate::ops::{l2_normalize, pixel_rows};
use crate::{Error, Result};

/// Side, in grid cells, of the query tiles of the windowed self-search: each tile searches the
/// rows outside its windows' union through the memory-bank kernel and the few rows inside it
/// directly.
const SELF_SEARCH_TILE: usize = 16;

/// Distance given to a pixel that has nothing to be compared with (cosine −1): no other image
/// adds rows to the bank and its own image has none outside the excluded window.
pub const NO_NEIGHBOUR_DISTANCE: f32 = 2.0;

/// One support image's share of a memory bank: some of its pixels' features, and possibly
/// rows from other copies of the same image (flipped ones), which are left out together with
/// it.
#[derive(Debug, Clone)]
pub struct BankSource {
    /// `(m, c)` feature rows (normalised on use); `None` when the image adds nothing.
    pub rows: Option<Tensor>,
    /// The grid cell (`y · w + x` on the image's feature grid) of each row.
    pub cells: Vec<usize>,
    /// `(m', c)` rows of copies of the image (flipped), or `None`. They join the banks of the
    /// other images; an image alone is compared with `rows` only (a copy has no window).
    pub copies: Option<Tensor>,
}

impl BankSource {
    /// The rows of `feats` at `cells` (in that order).
    ///
    /// # Shapes
    /// - `feats`: `(1, c, h, w)`; every cell must be `< h · w`.
    pub fn from_cells(feats: &Tensor, cells: Vec<usize>) -> Result<Self> {
        let (b, _, h, w) = feats.dims4()?;
        if b != 1 {
            return Err(Error::ShapeMismatch(format!(
                "bank source: one image at a time, got a batch of {b}"
            )));
        }
        if let Some(&bad) = cells.iter().find(|&&c| c >= h * w) {
            return Err(Error::ShapeMismatch(format!(
                "bank source: cell {bad} outside the {h}x{w} grid"
            )));
        }
        Ok(Self {
            rows: gather_rows(feats, &cells)?,
            cells,
            copies: None,
        })
    }

    /// Adds the rows of a copy of the image (a flipped one) at `cells` of the copy's grid.
    ///
    /// # Shapes
    /// - `feats`: `(1, c, h, w)`, the copy's features.
    pub fn with_copy(mut self, feats: &Tensor, cells: &[usize]) -> Result<Self> {
        let (_, _, h, w) = feats.dims4()?;
        if let Some(&bad) = cells.iter().find(|&&c| c >= h * w) {
            return Err(Error::ShapeMismatch(format!(
                "bank source: cell {bad} outside the {h}x{w} grid"
            )));
        }
        if let Some(rows) = gather_rows(feats, cells)? {
            self.copies = Some(match self.copies {
                Some(c) => Tensor::cat(&[&c, &rows], 0)?,
                None => rows,
            });
        }
        Ok(self)
    }

    /// Every row this image adds to a bank (its own, then its copies').
    fn all_rows(&self) -> Vec<&Tensor> {
        self.rows.iter().chain(self.copies.iter()).collect()
    }

    /// Whether the image adds no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_none() && self.copies.is_none()
    }
}

/// The rows of `feats` `(1, c, h, w)` at `cells`, or `None` for no cell.
fn gather_rows(feats: &Tensor, cells: &[usize]) -> Result<Option<Tensor>> {
    if cells.is_empty() {
        return Ok(None);
    }
    let idx: Vec<u32> = cells.iter().map(|&c| c as u32).collect();
    let idx = Tensor::from_vec(idx, cells.len(), feats.device())?;
    Ok(Some(pixel_rows(feats)?.index_select(&idx, 0)?))
}

/// The bank of every source's rows together, or `None` when no source has any.
pub fn bank_of(sources: &[BankSource], cfg: &KnnConfig) -> Result<Option<MemoryBank>> {
    let rows: Vec<&Tensor> = sources.iter().flat_map(|s| s.all_rows()).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(MemoryBank::from_rows(&Tensor::cat(&rows, 0)?, cfg)?))
}

/// For each support image `i`, the distance `1 − max cos` of every pixel of `feats[i]` to a
/// bank of the rows of every *other* source (`sources[j]`, `j ≠ i`). When the other sources
/// have no row, image `i`'s own rows are used instead, except those within `exclusion_radius`
/// grid cells (Chebyshev distance) of the pixel; a pixel left with no row gets
/// [`NO_NEIGHBOUR_DISTANCE`]. `sources` is empty-handed when no image has rows: every pixel
/// gets [`NO_NEIGHBOUR_DISTANCE`].
///
/// # Shapes
/// - `feats[i]`: `(1, c, h_i, w_i)`; `sources[i]` is image `i`'s share (same length as
///   `feats`, cells on image `i`'s grid).
/// - returns one `(1, 1, h_i, w_i)` map per image.
pub fn leave_one_out_distances(
    feats: &[Tensor],
    sources: &[BankSource],
    cfg: &KnnConfig,
    exclusion_radius: usize,
) -> Result<Vec<Tensor>> {
    cfg.validate()?;
    if feats.len() != sources.len() {
        return Err(Error::ShapeMismatch(format!(
            "leave-one-out: {} images but {} bank sources",
            feats.len(),
            sources.len()
        )));
    }
    let contributing = sources.iter().filter(|s| !s.is_empty()).count();
    let mut out = Vec::with_capacity(feats.len());
    for (i, f) in feats.iter().enumerate() {
        let (_, _, h, w) = f.dims4()?;
        let own = &sources[i];
        let others = contributing - usize::from(!own.is_empty());
        let map = if others > 0 {
            let rows: Vec<&Tensor> = sources
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, s)| s.all_rows())
                .collect();
            MemoryBank::from_rows(&Tensor::cat(&rows, 0)?, cfg)?.score(f)?
        } else if let Some(rows) = &own.rows {
            let d = windowed_self_distances(f, rows, &own.cells, exclusion_radius, cfg)?;
            Tensor::from_vec(d, (1, 1, h, w), f.device())?
        } else {
            Tensor::full(NO_NEIGHBOUR_DISTANCE, (1, 1, h, w), f.device())?
        };
        out.push(map);
    }
    Ok(out)
}

/// Distance of each pixel of one image to the nearest of `rows` (taken from the same image at
/// `cells`) that lies more than `radius` cells away in x or y.
///
/// The search is exact and goes through [`MemoryBank`] (the fast nearest-neighbour kernel) for
/// most rows: the queries are taken in tiles of [`SELF_SEARCH_TILE`]² cells, every row outside
/// the union of a tile's windows is allowed for all its queries and searched through a bank;
/// the rows inside that union (a border of `radius` cells around the tile) are compared with
/// each query directly and kept when outside the query's own window.
///
/// # Shapes
/// - `feats`: `(1, c, h, w)`; `rows`: `(m, c)`; returns `h · w` distances.
fn windowed_self_distances(
    feats: &Tensor,
    rows: &Tensor,
    cells: &[usize],
    radius: usize,
    cfg: &KnnConfig,
) -> Result<Vec<f32>> {
    let (_, _, h, w) = feats.dims4()?;
    let queries = l2_normalize(&pixel_rows(&feats.to_dtype(DType::F32)?)?, 1)?;
    let bank = l2_normalize(&rows.to_dtype(DType::F32)?, 1)?;
    // The whole bank is one image's rows: no subsampling.
    let whole = KnnConfig {
        max_bank: None,
        ..cfg.clone()
    };
    let device = feats.device();
    let index = |idx: &[usize]| -> Result<Tensor> {
        let idx: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
        let len = idx.len();
        Ok(Tensor::from_vec(idx, len, device)?)
    };
    let mut best = vec![f32::NEG_INFINITY; h * w];
    for ty in (0..h).step_by(SELF_SEARCH_TILE) {
        for tx in (0..w).step_by(SELF_SEARCH_TILE) {
            let (ty1, tx1) = (
                (ty + SELF_SEARCH_TILE).min(h),
                (tx + SELF_SEARCH_TILE).min(w),
            );
            let tile: Vec<usize> = (ty..ty1)
                .flat_map(|y| (tx..tx1).map(move |x| y * w + x))
                .collect();
            // The union of the tile's windows.
            let (uy0, uy1) = (ty.saturating_sub(radius), ty1 - 1 + radius);
            let (ux0, ux1) = (tx.saturating_sub(radius), tx1 - 1 + radius);
            let inside =
                |c: usize| (uy0..=uy1).contains(&(c / w)) && (ux0..=ux1).contains(&(c % w));
            let (near, far): (Vec<usize>, Vec<usize>) =
                (0..cells.len()).partition(|&j| inside(cells[j]));
            let tile_rows = queries.index_select(&index(&tile)?, 0)?;
            if !far.is_empty() {
                let far_bank =
                    MemoryBank::from_rows(&bank.index_select(&index(&far)?, 0)?, &whole)?;
                let d = far_bank.score_rows(&tile_rows)?.to_vec1::<f32>()?;
                for (&q, d) in tile.iter().zip(d) {
                    best[q] = best[q].max(1.0 - d);
                }
            }
            if !near.is_empty() {
                let near_rows = bank.index_select(&index(&near)?, 0)?;
                let sims = tile_rows.matmul(&near_rows.t()?)?.to_vec2::<f32>()?;
                for (&q, row) in tile.iter().zip(&sims) {
                    let (y, x) = (q / w, q % w);
                    for (&j, &sim) in near.iter().zip(row) {
                        let c = cells[j];
                        if (c / w).abs_diff(y) > radius || (c % w).abs_diff(x) > radius {
                            best[q] = best[q].max(sim);
                        }
                    }
                }
            }
        }
    }
    Ok(best
        .into_iter()
        .map(|b| {
            if b.is_finite() {
                (1.0 - b).max(0.0)
            } else {
                NO_NEIGHBOUR_DISTANCE
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::rng::SplitMix64;

    fn feats(seed: u64, h: usize, w: usize) -> Tensor {
        let mut rng = SplitMix64::new(seed);
        let v: Vec<f32> = (0..4 * h * w)
            .map(|_| rng.next_f64() as f32 - 0.5)
            .collect();
        Tensor::from_vec(v, (1, 4, h, w), &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn all_cells(h: usize, w: usize) -> Vec<usize> {
        (0..h * w).collect()
    }

    #[test]
    fn each_image_is_scored_against_the_others() {
        let (a, b) = (feats(1, 3, 4), feats(2, 3, 4));
        let sources = vec![
            BankSource::from_cells(&a, all_cells(3, 4)).unwrap(),
            BankSource::from_cells(&b, all_cells(3, 4)).unwrap(),
        ];
        let cfg = KnnConfig::default();
        let d = leave_one_out_distances(&[a.clone(), b.clone()], &sources, &cfg, 1).unwrap();
        let expect_a = MemoryBank::new(&b, &cfg).unwrap().score(&a).unwrap();
        let expect_b = MemoryBank::new(&a, &cfg).unwrap().score(&b).unwrap();
        assert_eq!(values(&d[0]), values(&expect_a));
        assert_eq!(values(&d[1]), values(&expect_b));
        // Never zero: an image is not compared with itself.
        assert!(values(&d[0]).iter().all(|v| *v > 1e-4));
    }

    #[test]
    fn an_image_without_rows_is_scored_against_all_rows() {
        // Image 1 adds nothing (a normal image to a defect bank): it meets every row of 0 and 2.
        let (a, b, c) = (feats(1, 2, 3), feats(2, 2, 3), feats(3, 2, 3));
        let sources = vec![
            BankSource::from_cells(&a, vec![0, 4]).unwrap(),
            BankSource::from_cells(&b, vec![]).unwrap(),
            BankSource::from_cells(&c, vec![5]).unwrap(),
        ];
        let cfg = KnnConfig::default();
        let d =
            leave_one_out_distances(&[a.clone(), b.clone(), c.clone()], &sources, &cfg, 1).unwrap();
        let bank = bank_of(&sources, &cfg).unwrap().unwrap();
        assert_eq!(bank.len(), 3);
        assert_eq!(values(&d[1]), values(&bank.score(&b).unwrap()));
        // Image 0 only meets c's one row.
        let only_c = MemoryBank::from_rows(sources[2].rows.as_ref().unwrap(), &cfg).unwrap();
        assert_eq!(values(&d[0]), values(&only_c.score(&a).unwrap()));
    }

    #[test]
    fn a_lone_image_is_compared_with_itself_outside_a_window() {
        // A 1x5 image whose pixels are e0, e1, e0, e1, e0 (4 channels, the last two zero). With
        // radius 1 every pixel finds its own twin two cells away: distance 0 everywhere.
        let v = [
            1f32, 0., 1., 0., 1., // channel 0
            0., 1., 0., 1., 0., // channel 1
            0., 0., 0., 0., 0., 0., 0., 0., 0., 0.,
        ];
        let f = Tensor::from_vec(v.to_vec(), (1, 4, 1, 5), &Device::Cpu).unwrap();
        let src = vec![BankSource::from_cells(&f, all_cells(1, 5)).unwrap()];
        let cfg = KnnConfig::default();
        let d1 =
            values(&leave_one_out_distances(std::slice::from_ref(&f), &src, &cfg, 1).unwrap()[0]);
        assert!(d1.iter().all(|v| v.abs() < 1e-6), "{d1:?}");
        let d2 =
            values(&leave_one_out_distances(std::slice::from_ref(&f), &src, &cfg, 2).unwrap()[0]);
        // Pixel 0 (e0): cells 3 (e1) and 4 (e0) are outside → 0. Pixel 2 (e0): nothing is
        // more than 2 cells away → no neighbour.
        assert!(d2[0].abs() < 1e-6 && (d2[1] - 1.0).abs() < 1e-6, "{d2:?}");
        assert_eq!(d2[2], NO_NEIGHBOUR_DISTANCE);
        // Small chunks give the same answer.
        let small = KnnConfig {
            chunk_rows: 2,
            ..Default::default()
        };
        let d3 =
            values(&leave_one_out_distances(std::slice::from_ref(&f), &src, &small, 2).unwrap()[0]);
        assert_eq!(d2, d3);
    }

    /// The windowed self-search by brute force: every pair, cosine, window excluded.
    fn brute_force_windowed(f: &Tensor, cells: &[usize], radius: usize) -> Vec<f32> {
        let (_, c, h, w) = f.dims4().unwrap();
        let v = values(f);
        let unit = |p: usize| -> Vec<f32> {
            let x: Vec<f32> = (0..c).map(|k| v[k * h * w + p]).collect();
            let n = x.iter().map(|a| a * a).sum::<f32>().sqrt();
            x.iter().map(|a| a / n).collect()
        };
        (0..h * w)
            .map(|q| {
                let (y, x) = (q / w, q % w);
                let uq = unit(q);
                cells
                    .iter()
                    .filter(|&&cell| {
                        (cell / w).abs_diff(y) > radius || (cell % w).abs_diff(x) > radius
                    })
                    .map(|&cell| uq.iter().zip(unit(cell)).map(|(a, b)| a * b).sum::<f32>())
                    .fold(None, |best: Option<f32>, s| {
                        Some(best.map_or(s, |b| b.max(s)))
                    })
                    .map_or(NO_NEIGHBOUR_DISTANCE, |b| (1.0 - b).max(0.0))
            })
            .collect()
    }

    #[test]
    fn the_tiled_windowed_search_is_exact_across_tiles() {
        // A grid larger than one search tile in both directions, a subset of cells as rows, and
        // radii from none to wider than a tile.
        let (h, w) = (SELF_SEARCH_TILE + 5, 2 * SELF_SEARCH_TILE + 3);
        let f = feats(7, h, w);
        let cells: Vec<usize> = (0..h * w).filter(|c| c % 3 != 1).collect();
        for radius in [0, 1, 3, SELF_SEARCH_TILE + 2] {
            let src = vec![BankSource::from_cells(&f, cells.clone()).unwrap()];
            let got = values(
                &leave_one_out_distances(
                    std::slice::from_ref(&f),
                    &src,
                    &KnnConfig::default(),
                    radius,
                )
                .unwrap()[0],
            );
            let want = brute_force_windowed(&f, &cells, radius);
            for (q, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() < 1e-5,
                    "radius {radius}, cell {q}: {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn copies_join_the_bank_and_leave_with_their_image() {
        let (a, b) = (feats(1, 2, 3), feats(2, 2, 3));
        // A copy of `a` that equals `b`: in the bank, but never used to score `a` itself.
        let sources = vec![
            BankSource::from_cells(&a, vec![0])
                .unwrap()
                .with_copy(&b, &all_cells(2, 3))
                .unwrap(),
            BankSource::from_cells(&b, vec![1]).unwrap(),
        ];
        let cfg = KnnConfig::default();
        assert_eq!(bank_of(&sources, &cfg).unwrap().unwrap().len(), 8);
        let d = leave_one_out_distances(&[a.clone(), b.clone()], &sources, &cfg, 0).unwrap();
        // `b` meets `a`'s copy (itself): distance 0; `a` meets only b's one row.
        assert!(values(&d[1]).iter().all(|v| v.abs() < 1e-5));
        let only_b1 = MemoryBank::from_rows(sources[1].rows.as_ref().unwrap(), &cfg).unwrap();
        assert_eq!(values(&d[0]), values(&only_b1.score(&a).unwrap()));
        // Alone, an image is compared with its own rows only, not with its copies.
        let alone = vec![sources[0].clone()];
        let d = leave_one_out_distances(std::slice::from_ref(&a), &alone, &cfg, 0).unwrap();
        let own = values(&d[0]);
        assert_eq!(own[0], NO_NEIGHBOUR_DISTANCE); // its one row is itself, excluded
        assert!(own[1..].iter().all(|v| *v < NO_NEIGHBOUR_DISTANCE));
    }

    #[test]
    fn nothing_to_compare_with_is_the_largest_distance() {
        let a = feats(1, 2, 2);
        let src = vec![BankSource::from_cells(&a, vec![]).unwrap()];
        let d = leave_one_out_distances(&[a], &src, &KnnConfig::default(), 1).unwrap();
        assert!(values(&d[0]).iter().all(|v| *v == NO_NEIGHBOUR_DISTANCE));
        assert!(bank_of(&src, &KnnConfig::default()).unwrap().is_none());
    }

    #[test]
    fn bad_shapes_are_errors() {
        let a = feats(1, 2, 2);
        assert!(BankSource::from_cells(&a, vec![4]).is_err());
        let src = vec![BankSource::from_cells(&a, vec![0]).unwrap()];
        assert!(leave_one_out_distances(&[], &src, &KnnConfig::default(), 1).is_err());
    }
}
