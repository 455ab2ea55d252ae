//! One image's anomaly map with its ground-truth mask, borrowed.

use crate::error::{Error, Result};

/// One image's anomaly map and ground-truth defect mask, row-major, borrowed from the caller.
///
/// `scores[y * width + x]` is the anomaly score of pixel `(x, y)` (higher = more anomalous) and
/// `mask[y * width + x]` is `true` on defect pixels. Both slices hold `width * height` values;
/// the metrics check this ([`MapRef::new`] checks it up front).
#[derive(Debug, Clone, Copy)]
pub struct MapRef<'a> {
    /// Anomaly scores, row-major, `width * height` values.
    pub scores: &'a [f32],
    /// Ground-truth defect mask, row-major, `width * height` values.
    pub mask: &'a [bool],
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
}

impl<'a> MapRef<'a> {
    /// A checked map reference.
    ///
    /// # Errors
    /// [`Error::BadShape`] for a zero or overflowing size, [`Error::LengthMismatch`] if a slice
    /// does not hold `width * height` values.
    pub fn new(scores: &'a [f32], mask: &'a [bool], width: usize, height: usize) -> Result<Self> {
        let map = Self {
            scores,
            mask,
            width,
            height,
        };
        map.validate(0)?;
        Ok(map)
    }

    /// Number of pixels, `width * height`.
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    /// `true` if the map has no pixel (never for a validated map).
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Whether the mask has any defect pixel, i.e. the image is defective.
    pub fn is_defective(&self) -> bool {
        self.mask.iter().any(|&defect| defect)
    }

    /// Checks the shape; `index` names the map in error messages.
    pub(crate) fn validate(&self, index: usize) -> Result<()> {
        let pixels = self
            .width
            .checked_mul(self.height)
            .filter(|&pixels| pixels > 0)
            .ok_or_else(|| Error::BadShape {
                what: format!(
                    "map {index} is {}x{} (width x height)",
                    self.width, self.height
                ),
            })?;
        for (name, len) in [("scores", self.scores.len()), ("mask", self.mask.len())] {
            if len != pixels {
                return Err(Error::LengthMismatch {
                    what: format!(
                        "map {index}: {name} has {len} values but the map is {}x{} = {pixels} pixels",
                        self.width, self.height
                    ),
                });
            }
        }
        Ok(())
    }
}
