//! Mirror images of the supports: more views of the few support images for the memory banks.
//!
//! A flipped image, encoded, gives the features of the mirrored surface; its feature grid is
//! the original's mirrored, so a cell's mask share (and whether it is a defect or a background
//! cell) is the mirrored cell's.

use image::imageops;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// A mirror of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flip {
    /// Left-right.
    Horizontal,
    /// Upside-down.
    Vertical,
}

impl Flip {
    /// Both mirrors.
    pub const BOTH: [Flip; 2] = [Flip::Horizontal, Flip::Vertical];

    /// The flipped image.
    pub fn image(self, image: &RgbImage) -> RgbImage {
        match self {
            Self::Horizontal => imageops::flip_horizontal(image),
            Self::Vertical => imageops::flip_vertical(image),
        }
    }

    /// Where cell `y · w + x` of an `h x w` grid lands in the flipped grid (a flip is its own
    /// inverse, so this also says where a flipped cell came from).
    pub fn cell(self, cell: usize, h: usize, w: usize) -> usize {
        let (y, x) = (cell / w, cell % w);
        match self {
            Self::Horizontal => y * w + (w - 1 - x),
            Self::Vertical => (h - 1 - y) * w + x,
        }
    }

    /// The cells of `cells` in the flipped grid, in the same order.
    pub fn cells(self, cells: &[usize], h: usize, w: usize) -> Vec<usize> {
        cells.iter().map(|&c| self.cell(c, h, w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flipped_cells_follow_the_flipped_image() {
        // A 3x2 image whose pixel value is its cell index: after a flip, the pixel at a cell's
        // new place holds that cell's value.
        let img = RgbImage::from_fn(3, 2, |x, y| image::Rgb([(y * 3 + x) as u8, 0, 0]));
        for flip in Flip::BOTH {
            let f = flip.image(&img);
            for cell in 0..6 {
                let to = flip.cell(cell, 2, 3);
                let px = f.get_pixel((to % 3) as u32, (to / 3) as u32);
                assert_eq!(px.0[0] as usize, cell, "{flip:?} cell {cell}");
                assert_eq!(flip.cell(to, 2, 3), cell, "a flip is its own inverse");
            }
        }
        assert_eq!(Flip::Horizontal.cells(&[0, 4], 2, 3), vec![2, 4]);
        assert_eq!(Flip::Vertical.cells(&[0, 4], 2, 3), vec![3, 1]);
    }
}
