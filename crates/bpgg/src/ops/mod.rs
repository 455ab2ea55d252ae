//! Tensor operations that several pipeline stages share: per-pixel L2 normalisation, separable
//! resampling of feature and probability maps, and feature maps as pixel rows.
//!
//! They sit below every stage (see `docs/ARCHITECTURE.md`): `backbone`, `prototype`,
//! `baseline`, `guidance`, `model` and `train` import them, and they import no stage.

mod normalize;
pub(crate) mod resize;
mod rows;

pub use normalize::{l2_normalize, NORM_EPS};
pub use resize::{reflect_index, resize_area, resize_bilinear};
pub use rows::pixel_rows;
