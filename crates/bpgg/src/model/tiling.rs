//! How an image becomes encoder inputs and how per-tile results come back as one grid.
//!
//! 1. The image is resized to its **working size** ([`InputSize`]).
//! 2. The working image is padded (mirror reflection) to a multiple of [`INPUT_MULTIPLE`].
//! 3. It is cut into tiles ([`TileConfig`]): overlapping `T x T` windows whose origins are
//!    multiples of the feature stride, spread evenly so that the first starts at 0 and the last
//!    ends at the padded border. Without tiles (or when one tile covers the image) the padded
//!    working image is the one tile.
//! 4. Every tile is encoded (and scored) on its own; the per-tile grids (stride 8) are stitched
//!    into the padded image's grid with linear blending across the overlaps ([`Stitcher`]).
//! 5. The anomaly map is computed once from the stitched grid at the padded size and cropped to
//!    the working size; [`super::Prediction`] brings it back to the image's own size.
//!
//! Memory: a tile batch's activations and one small grid per image (one value per 8 x 8
//! pixels); never the features of a whole large image.

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::resolution::{InputSize, TileConfig, INPUT_MULTIPLE, MAX_UNTILED_PIXELS};
use crate::backbone::DEFAULT_EMBED_STRIDE;
use crate::data::image_io::Mask;
use crate::data::transform::{
    crop_reflect, crop_reflect_mask, resize_image, resize_mask_keeping_defects,
};
use crate::ops::reflect_index;
use crate::{Error, Result};

/// The feature stride of the encoder's output, in pixels.
const STRIDE: u32 = DEFAULT_EMBED_STRIDE as u32;

/// Where one image's tiles lie, from its size and the model's resolution settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileLayout {
    /// The image's own `(width, height)`.
    pub image: (u32, u32),
    /// The working `(width, height)`: the size the anomaly map is computed at.
    pub work: (u32, u32),
    /// The working size padded to a multiple of [`INPUT_MULTIPLE`].
    pub padded: (u32, u32),
    /// The `(width, height)` of every tile (the padded size when there is one tile).
    pub tile: (u32, u32),
    /// Left columns of the tile columns.
    pub xs: Vec<u32>,
    /// Top rows of the tile rows.
    pub ys: Vec<u32>,
}

impl TileLayout {
    /// The layout of a `width x height` image. Fails when the image would be encoded whole
    /// at more than [`MAX_UNTILED_PIXELS`] (tiles are then needed).
    pub fn new(
        size: &InputSize,
        tile: Option<&TileConfig>,
        width: u32,
        height: u32,
    ) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidConfig(format!(
                "image of {width}x{height} pixels has nothing to encode"
            )));
        }
        let work = size.working_size(width, height);
        let padded = (
            work.0.next_multiple_of(INPUT_MULTIPLE),
            work.1.next_multiple_of(INPUT_MULTIPLE),
        );
        let (tile_side, overlap) = match tile {
            Some(t) => (t.size, t.overlap),
            None => {
                let pixels = u64::from(padded.0) * u64::from(padded.1);
                if pixels > MAX_UNTILED_PIXELS {
                    return Err(Error::InvalidConfig(format!(
                        "a {width}x{height} image at size {size} is {}x{} pixels, too large to \
                         encode whole (at most {MAX_UNTILED_PIXELS} pixels): use tiles or a \
                         smaller size",
                        work.0, work.1
                    )));
                }
                (padded.0.max(padded.1), 0)
            }
        };
        let tile = (tile_side.min(padded.0), tile_side.min(padded.1));
        Ok(Self {
            image: (width, height),
            work,
            padded,
            tile,
            xs: positions(padded.0, tile.0, overlap),
            ys: positions(padded.1, tile.1, overlap),
        })
    }

    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.xs.len() * self.ys.len()
    }

    /// Always false: a layout has at least one tile.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The origin `(x, y)` of tile `i` (raster order).
    pub fn origin(&self, i: usize) -> (u32, u32) {
        (self.xs[i % self.xs.len()], self.ys[i / self.xs.len()])
    }

    /// The feature grid `(height, width)` of the padded image.
    pub fn grid(&self) -> (usize, usize) {
        (
            (self.padded.1 / STRIDE) as usize,
            (self.padded.0 / STRIDE) as usize,
        )
    }

    /// The feature grid `(height, width)` of one tile.
    pub fn tile_grid(&self) -> (usize, usize) {
        (
            (self.tile.1 / STRIDE) as usize,
            (self.tile.0 / STRIDE) as usize,
        )
    }

    /// A mask of the image made ready to pair with the encoded image: brought to the working
    /// size without losing a defect pixel, then padded as the image is.
    pub fn prepare_mask(&self, mask: &Mask) -> Mask {
        let work = resize_mask_keeping_defects(mask, self.work.0, self.work.1);
        if self.padded == self.work {
            return work;
        }
        crop_reflect_mask(&work, 0, 0, self.padded.0, self.padded.1)
    }
}

/// Evenly spread tile origins along one axis: multiples of the stride, the first at 0, the
/// last at `padded − tile`, neighbours overlapping by at least `overlap`.
fn positions(padded: u32, tile: u32, overlap: u32) -> Vec<u32> {
    if tile >= padded {
        return vec![0];
    }
    let span = (padded - tile) / STRIDE;
    let step = (tile - overlap) / STRIDE;
    let gaps = span.div_ceil(step);
    (0..=gaps)
        .map(|i| {
            let cells = (u64::from(span) * u64::from(i) + u64::from(gaps) / 2) / u64::from(gaps);
            cells as u32 * STRIDE
        })
        .collect()
}

/// An image made ready for the model: resized to its working size (cheap; a loader thread can
/// do it while the previous batch is scored), with the layout of its tiles.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    /// The working image (not padded: tiles read its reflection past the border).
    pub(crate) input: RgbImage,
    /// Where its tiles lie.
    pub layout: TileLayout,
}

impl PreparedImage {
    /// Resizes `image` to its working size and lays out its tiles.
    pub fn new(image: &RgbImage, size: &InputSize, tile: Option<&TileConfig>) -> Result<Self> {
        let layout = TileLayout::new(size, tile, image.width(), image.height())?;
        Ok(Self {
            input: resize_image(image, layout.work.0, layout.work.1),
            layout,
        })
    }

    /// The image's own width.
    pub fn width(&self) -> u32 {
        self.layout.image.0
    }

    /// The image's own height.
    pub fn height(&self) -> u32 {
        self.layout.image.1
    }

    /// The pixels of tile `i`.
    pub fn tile(&self, i: usize) -> RgbImage {
        let (x, y) = self.layout.origin(i);
        let (w, h) = self.layout.tile;
        crop_reflect(&self.input, i64::from(x), i64::from(y), w, h)
    }
}

/// Accumulates per-tile grids into the padded image's grid, blending overlaps linearly.
///
/// In a tile, a cell's weight ramps from `0.5 / o` to 1 across each side that overlaps a
/// neighbour by `o` cells (sides at the image border keep weight 1), the weights of one axis
/// times those of the other. Each cell of the result is the weighted mean of the tiles that
/// cover it, so neighbouring ramps sum to 1 and a cell covered by one tile keeps its value.
#[derive(Debug)]
pub struct Stitcher {
    layout: TileLayout,
    channels: usize,
    sum: Vec<f32>,
    weight: Vec<f32>,
    /// The one tile's grid when the layout has a single tile (kept as it is: exact).
    single: Option<Tensor>,
}

impl Stitcher {
    /// An empty grid of `channels` channels for `layout`.
    pub fn new(layout: &TileLayout, channels: usize) -> Self {
        let (gh, gw) = layout.grid();
        let cells = if layout.len() == 1 { 0 } else { gh * gw };
        Self {
            layout: layout.clone(),
            channels,
            sum: vec![0.0; cells * channels],
            weight: vec![0.0; cells],
            single: None,
        }
    }

    /// Adds tile `i`'s grid.
    ///
    /// # Shapes
    /// - `grid`: `(1, channels, th, tw)` with `(th, tw)` = [`TileLayout::tile_grid`].
    pub fn add(&mut self, i: usize, grid: &Tensor) -> Result<()> {
        let (th, tw) = self.layout.tile_grid();
        let (b, c, h, w) = grid.dims4()?;
        if (b, c, h, w) != (1, self.channels, th, tw) {
            return Err(Error::ShapeMismatch(format!(
                "Stitcher::add: tile grid {:?}, expected (1, {}, {th}, {tw})",
                grid.dims(),
                self.channels
            )));
        }
        if self.layout.len() == 1 {
            self.single = Some(grid.clone());
            return Ok(());
        }
        let values = grid.flatten_all()?.to_vec1::<f32>()?;
        let (x0, y0) = self.layout.origin(i);
        let (cx, cy) = ((x0 / STRIDE) as usize, (y0 / STRIDE) as usize);
        let wx = ramp(&self.layout.xs, x0, tw);
        let wy = ramp(&self.layout.ys, y0, th);
        let (_, gw) = self.layout.grid();
        let plane = self.weight.len();
        for ty in 0..th {
            for tx in 0..tw {
                let wgt = wy[ty] * wx[tx];
                let cell = (cy + ty) * gw + cx + tx;
                self.weight[cell] += wgt;
                for ch in 0..c {
                    self.sum[ch * plane + cell] += wgt * values[(ch * th + ty) * tw + tx];
                }
            }
        }
        Ok(())
    }

    /// The stitched grid.
    ///
    /// # Shapes
    /// - returns `(1, channels, gh, gw)` with `(gh, gw)` = [`TileLayout::grid`].
    pub fn finish(self, device: &Device) -> Result<Tensor> {
        if let Some(t) = self.single {
            return Ok(t);
        }
        let (gh, gw) = self.layout.grid();
        let plane = self.weight.len();
        let mut sum = self.sum;
        for ch in 0..self.channels {
            for (v, w) in sum[ch * plane..(ch + 1) * plane]
                .iter_mut()
                .zip(&self.weight)
            {
                if *w <= 0.0 {
                    return Err(Error::ShapeMismatch(
                        "Stitcher::finish: a cell of the image is covered by no tile".into(),
                    ));
                }
                *v /= w;
            }
        }
        Ok(Tensor::from_vec(sum, (1, self.channels, gh, gw), device)?)
    }
}

/// Blending weights along one axis of the tile starting at `origin` (one per grid cell).
fn ramp(origins: &[u32], origin: u32, cells: usize) -> Vec<f32> {
    let tile = cells as u32 * STRIDE;
    let k = origins
        .iter()
        .position(|&o| o == origin)
        .expect("origin belongs to the layout");
    // Overlap with the previous and the next tile, in cells.
    let before = k
        .checked_sub(1)
        .map(|p| ((origins[p] + tile).saturating_sub(origin) / STRIDE) as usize)
        .unwrap_or(0);
    let after = origins
        .get(k + 1)
        .map(|&n| ((origin + tile).saturating_sub(n) / STRIDE) as usize)
        .unwrap_or(0);
    (0..cells)
        .map(|c| {
            let mut w = 1.0f32;
            if before > 0 {
                w = w.min((c as f32 + 0.5) / before as f32);
            }
            if after > 0 {
                w = w.min(((cells - c) as f32 - 0.5) / after as f32);
            }
            w
        })
        .collect()
}

/// Stacks tensors of different sizes into one batch by mirror-padding each on its bottom and
/// right to `height x width`: what [`super::fit`] and `eval` do with supports whose working
/// sizes differ (features on the grid, masks at 8x the grid: the two reflections agree).
///
/// # Shapes
/// - `grids`: `(1, C, h_i, w_i)` each with `h_i ≤ height`, `w_i ≤ width`; returns
///   `(n, C, height, width)`.
pub fn stack_reflect(grids: &[Tensor], height: usize, width: usize) -> Result<Tensor> {
    let padded = grids
        .iter()
        .map(|g| pad_reflect(g, height, width))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&padded, 0)?)
}

/// The largest height and width of a list of 4-D tensors (`(0, 0)` for none).
pub fn max_hw(grids: &[Tensor]) -> Result<(usize, usize)> {
    let mut hw = (0, 0);
    for g in grids {
        let (_, _, h, w) = g.dims4()?;
        hw = (hw.0.max(h), hw.1.max(w));
    }
    Ok(hw)
}

/// Mirror-pads a `(b, C, h, w)` tensor on its bottom and right to `(b, C, height, width)`.
pub(crate) fn pad_reflect(t: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (_, _, h, w) = t.dims4()?;
    if (h, w) == (height, width) {
        return Ok(t.clone());
    }
    if h > height || w > width {
        return Err(Error::ShapeMismatch(format!(
            "pad_reflect: {:?} is larger than {height}x{width}",
            t.dims()
        )));
    }
    let index = |len: usize, to: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..to as i64)
            .map(|i| reflect_index(i, len) as u32)
            .collect();
        Ok(Tensor::from_vec(idx, to, t.device())?)
    };
    let t = t.index_select(&index(h, height)?, 2)?;
    Ok(t.index_select(&index(w, width)?, 3)?.contiguous()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiles(size: u32, overlap: u32) -> Option<TileConfig> {
        Some(TileConfig { size, overlap })
    }

    #[test]
    fn tiles_cover_the_padded_image_with_the_overlap() {
        let l = TileLayout::new(&InputSize::NATIVE, tiles(256, 32).as_ref(), 4096, 250).unwrap();
        assert_eq!(
            (l.work, l.padded, l.tile),
            ((4096, 250), (4096, 256), (256, 256))
        );
        assert_eq!(l.ys, [0]);
        assert_eq!(*l.xs.first().unwrap(), 0);
        assert_eq!(*l.xs.last().unwrap(), 4096 - 256);
        for pair in l.xs.windows(2) {
            assert!(
                pair[1] > pair[0] && pair[0] + 256 >= pair[1] + 32,
                "{:?}",
                l.xs
            );
            assert_eq!(pair[1] % 8, 0);
        }
        // A small image is one tile of its own padded size: the untiled input.
        let small = TileLayout::new(&InputSize::NATIVE, tiles(256, 32).as_ref(), 100, 37).unwrap();
        let whole = TileLayout::new(&InputSize::NATIVE, None, 100, 37).unwrap();
        assert_eq!(small, whole);
        assert_eq!((small.len(), small.tile), (1, (112, 48)));
        // Too large to encode whole.
        assert!(TileLayout::new(&InputSize::NATIVE, None, 10000, 10000).is_err());
        let big =
            TileLayout::new(&InputSize::NATIVE, tiles(512, 64).as_ref(), 10000, 10000).unwrap();
        assert_eq!(big.grid(), (1250, 1250));
    }

    #[test]
    fn ramps_sum_to_one_across_every_overlap() {
        for (padded, tile, overlap) in [(4096, 256, 32), (1000 / 8 * 8 + 8, 256, 64), (520, 512, 0)]
        {
            let xs = positions(padded, tile, overlap);
            let cells = (tile / STRIDE) as usize;
            let mut total = vec![0f32; (padded / STRIDE) as usize];
            for &x in &xs {
                for (c, w) in ramp(&xs, x, cells).into_iter().enumerate() {
                    assert!(w > 0.0 && w <= 1.0);
                    total[(x / STRIDE) as usize + c] += w;
                }
            }
            assert!(
                total.iter().all(|t| (t - 1.0).abs() < 1e-5),
                "{padded} {tile}: {total:?}"
            );
        }
    }

    #[test]
    fn stitching_constant_tiles_gives_the_constant_and_pads_reflect() {
        let dev = Device::Cpu;
        let l = TileLayout::new(&InputSize::NATIVE, tiles(64, 16).as_ref(), 200, 120).unwrap();
        let mut s = Stitcher::new(&l, 2);
        let (th, tw) = l.tile_grid();
        for i in 0..l.len() {
            let t = Tensor::from_vec(
                [vec![3f32; th * tw], vec![-1f32; th * tw]].concat(),
                (1, 2, th, tw),
                &dev,
            )
            .unwrap();
            s.add(i, &t).unwrap();
        }
        let g = s.finish(&dev).unwrap();
        assert_eq!(g.dims4().unwrap(), (1, 2, 16, 26));
        let v = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v[..16 * 26].iter().all(|x| (x - 3.0).abs() < 1e-5));
        assert!(v[16 * 26..].iter().all(|x| (x + 1.0).abs() < 1e-5));

        let small = Tensor::arange(0f32, 6.0, &dev)
            .unwrap()
            .reshape((1, 1, 2, 3))
            .unwrap();
        let big = Tensor::ones((1, 1, 3, 4), candle_core::DType::F32, &dev).unwrap();
        let grids = [small, big];
        let (h, w) = max_hw(&grids).unwrap();
        let stacked = stack_reflect(&grids, h, w).unwrap();
        assert_eq!(stacked.dims4().unwrap(), (2, 1, 3, 4));
        let first = stacked
            .get(0)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(first, [0., 1., 2., 2., 3., 4., 5., 5., 3., 4., 5., 5.]);
    }
}
