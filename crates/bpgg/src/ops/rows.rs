//! Feature maps as one row per pixel (what memory banks and k-means work on).

use candle_core::Tensor;

use crate::Result;

/// The features as one row per pixel.
///
/// # Shapes
/// - `features`: `(b, c, h, w)`.
/// - returns `(b·h·w, c)`, rows in `(b, y, x)` order (the order of `mask.flatten_all()` for a
///   `(b, 1, h, w)` mask).
pub fn pixel_rows(features: &Tensor) -> Result<Tensor> {
    let (b, c, h, w) = features.dims4()?;
    Ok(features
        .permute((0, 2, 3, 1))?
        .contiguous()?
        .reshape((b * h * w, c))?)
}
