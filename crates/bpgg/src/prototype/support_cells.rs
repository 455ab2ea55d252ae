//! Which cells of a defect support's feature grid are defect and which are safely normal: the
//! rows a defect memory bank and a normal memory bank take from a defect image.
//!
//! A mask is brought to the grid by area averaging ([`super::mask_to_grid`]), so a cell holds the
//! share of its pixels that are defect. A cell that is mostly normal but touches a defect mixes
//! both appearances (the backbone's receptive field is wider than a cell), so neither bank takes
//! it: defect cells need a minimum share, normal cells keep a margin from every defect pixel.

use crate::{Error, Result};

/// How a defect support's cells are split between the defect and the normal bank.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SupportCellsConfig {
    /// A cell is a defect cell when at least this share of its pixels is defect; an image
    /// with no such cell gives its cells of largest share instead, so every defect support
    /// adds at least one row. In `(0, 1]`. Default 0.2 (measured on magnetic_tile: 0.01, 0.2
    /// and 0.5 give pixel AP within 0.01 of each other).
    pub min_defect_share: f32,
    /// A cell is a normal cell when no cell within this many cells (in x and y) holds any
    /// defect pixel. Default 1: the 3x3 neighbourhood of every defect cell is left out.
    pub background_margin: usize,
}

impl Default for SupportCellsConfig {
    fn default() -> Self {
        Self {
            min_defect_share: 0.2,
            background_margin: 1,
        }
    }
}

impl SupportCellsConfig {
    /// Checks `min_defect_share ∈ (0, 1]` and a margin below 64 cells.
    pub fn validate(&self) -> Result<()> {
        if !(self.min_defect_share > 0.0 && self.min_defect_share <= 1.0) {
            return Err(Error::InvalidConfig(format!(
                "min defect share must be in (0, 1], got {}",
                self.min_defect_share
            )));
        }
        if self.background_margin >= 64 {
            return Err(Error::InvalidConfig(format!(
                "background margin must be below 64 cells, got {}",
                self.background_margin
            )));
        }
        Ok(())
    }
}

/// The defect cells of one image: every cell whose defect share is at least `min_share`, or,
/// when none is, the cells of the largest share (empty only for a mask without defect pixel).
///
/// `grid_mask` holds the share of defect pixels of each cell, row-major.
pub fn defect_cells(grid_mask: &[f32], min_share: f32) -> Vec<usize> {
    let largest = grid_mask.iter().copied().fold(0.0f32, f32::max);
    if largest <= 0.0 {
        return Vec::new();
    }
    let cut = min_share.min(largest);
    grid_mask
        .iter()
        .enumerate()
        .filter(|(_, &m)| m >= cut)
        .map(|(i, _)| i)
        .collect()
}

/// The normal cells of one image on an `h x w` grid: those with no defect pixel in any cell
/// within `margin` cells (Chebyshev distance).
pub fn background_cells(grid_mask: &[f32], h: usize, w: usize, margin: usize) -> Vec<usize> {
    debug_assert_eq!(grid_mask.len(), h * w);
    // Dilate the "touches a defect" cells by `margin`, separably (rows, then columns).
    let touched: Vec<bool> = grid_mask.iter().map(|&m| m > 0.0).collect();
    let mut rows = vec![false; h * w];
    for y in 0..h {
        for x in 0..w {
            let (x0, x1) = (x.saturating_sub(margin), (x + margin).min(w - 1));
            rows[y * w + x] = (x0..=x1).any(|xx| touched[y * w + xx]);
        }
    }
    (0..h * w)
        .filter(|&i| {
            let (y, x) = (i / w, i % w);
            let (y0, y1) = (y.saturating_sub(margin), (y + margin).min(h - 1));
            !(y0..=y1).any(|yy| rows[yy * w + x])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defect_cells_take_the_share_or_the_largest() {
        let grid = [0.0, 0.1, 0.6, 0.3, 0.0, 0.05];
        assert_eq!(defect_cells(&grid, 0.2), vec![2, 3]);
        assert_eq!(defect_cells(&grid, 0.5), vec![2]);
        // A defect smaller than any cell's threshold share still gives its largest cells.
        let tiny = [0.0, 0.05, 0.0, 0.05];
        assert_eq!(defect_cells(&tiny, 0.2), vec![1, 3]);
        assert!(defect_cells(&[0.0; 4], 0.2).is_empty());
    }

    #[test]
    fn background_keeps_a_margin_around_any_defect_pixel() {
        // 5x5 grid, one touched cell at (1, 3) with a tiny share.
        let mut grid = vec![0.0f32; 25];
        grid[5 + 3] = 0.01;
        let bg = background_cells(&grid, 5, 5, 1);
        for i in 0..25usize {
            let (y, x) = (i / 5, i % 5);
            let near = y.abs_diff(1) <= 1 && x.abs_diff(3) <= 1;
            assert_eq!(bg.contains(&i), !near, "cell ({y}, {x})");
        }
        assert_eq!(background_cells(&grid, 5, 5, 0).len(), 24);
        assert_eq!(background_cells(&[0.0; 6], 2, 3, 2).len(), 6);
    }

    #[test]
    fn config_is_validated() {
        assert!(SupportCellsConfig::default().validate().is_ok());
        let bad = SupportCellsConfig {
            min_defect_share: 0.0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
