//! Ground-truth regions: the 8-connected components of a binary mask.
//!
//! The MVTec AD evaluation labels each ground-truth mask with `scipy.ndimage.label` and a 3x3
//! structuring element of ones, i.e. pixels touching by an edge *or a corner* belong to the
//! same defect region. This module does the same with an explicit-stack flood fill, numbering
//! regions in raster order of their first pixel, as `scipy.ndimage.label` does.

use crate::error::{Error, Result};

/// Label of background (non-defect) pixels in [`Regions::labels`].
pub const BACKGROUND: u32 = 0;

/// The connected defect regions of one mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regions {
    /// Per pixel, row-major: [`BACKGROUND`] or the 1-based region number.
    pub labels: Vec<u32>,
    /// `sizes[k - 1]` is the pixel count of region `k`.
    pub sizes: Vec<u64>,
}

impl Regions {
    /// Number of regions.
    pub fn count(&self) -> usize {
        self.sizes.len()
    }
}

/// Labels the 8-connected components of `mask` (`width * height` values, row-major).
///
/// # Errors
/// [`Error::BadShape`] for a zero or overflowing size, [`Error::LengthMismatch`] if `mask` does
/// not hold `width * height` values, [`Error::TooManyRegions`] past `u32::MAX - 1` regions.
///
/// # Example
/// ```
/// // Two pixels touching by a corner form one region; the lone pixel is a second one.
/// let mask = [true, false, false,
///             false, true, false,
///             false, false, false,
///             true, false, false];
/// let regions = bpgg_metrics::connected_regions(&mask, 3, 4)?;
/// assert_eq!(regions.sizes, vec![2, 1]);
/// # Ok::<(), bpgg_metrics::Error>(())
/// ```
pub fn connected_regions(mask: &[bool], width: usize, height: usize) -> Result<Regions> {
    let pixels = width
        .checked_mul(height)
        .filter(|&pixels| pixels > 0)
        .ok_or_else(|| Error::BadShape {
            what: format!("mask is {width}x{height} (width x height)"),
        })?;
    if mask.len() != pixels {
        return Err(Error::LengthMismatch {
            what: format!(
                "mask has {} values but is {width}x{height} = {pixels} pixels",
                mask.len()
            ),
        });
    }
    let mut labels = vec![BACKGROUND; pixels];
    let mut sizes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..pixels {
        if !mask[start] || labels[start] != BACKGROUND {
            continue;
        }
        let label = u32::try_from(sizes.len() + 1)
            .ok()
            .filter(|&label| label < u32::MAX)
            .ok_or(Error::TooManyRegions {
                count: sizes.len() as u64 + 1,
            })?;
        labels[start] = label;
        stack.push(start);
        let mut size = 0u64;
        while let Some(pixel) = stack.pop() {
            size += 1;
            let (x, y) = (pixel % width, pixel / width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let neighbour = ny * width + nx;
                    if mask[neighbour] && labels[neighbour] == BACKGROUND {
                        labels[neighbour] = label;
                        stack.push(neighbour);
                    }
                }
            }
        }
        sizes.push(size);
    }
    Ok(Regions { labels, sizes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_regions_in_raster_order() {
        #[rustfmt::skip]
        let mask = [
            false, true,  true,  false, false,
            false, false, false, false, true,
            true,  false, false, true,  false,
        ];
        let regions = connected_regions(&mask, 5, 3).unwrap();
        #[rustfmt::skip]
        let expected = vec![
            0, 1, 1, 0, 0,
            0, 0, 0, 0, 2,
            3, 0, 0, 2, 0,
        ];
        assert_eq!(regions.labels, expected);
        assert_eq!(regions.sizes, vec![2, 2, 1]);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert!(matches!(
            connected_regions(&[], 0, 3),
            Err(Error::BadShape { .. })
        ));
        assert!(matches!(
            connected_regions(&[true; 5], 2, 3),
            Err(Error::LengthMismatch { .. })
        ));
    }
}
