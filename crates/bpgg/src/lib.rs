//! # bpgg — few-shot anomaly localization
//!
//! bpgg implements the BPGG network (Zhang, Zhuang, Xu, Ma, He, "BPGG: Bidirectional Prototype
//! Generation and Guidance Network for Few-Shot Anomaly Localization", ICANN 2022): a handful of
//! defective images with pixel masks and a few normal images are turned into prototypes of
//! defect and normal appearance, and every new image is segmented against them pixel by pixel.
//!
//! The modules follow the pipeline:
//! [`data`] → [`backbone`] → [`prototype`] → [`guidance`] → anomaly map → [`bpgg_metrics`] →
//! [`report`].
//!
//! # Example
//!
//! Fit on two synthetic defect images with masks and four normal images, then localize a new
//! image (the [`model`] API mirrors `bpgg fit` and `bpgg predict`):
//!
//! ```
//! use bpgg::data::image_io::{load_mask, load_rgb, ImageLimits};
//! use bpgg::data::{write_synthetic_dataset, MvtecCategory, SynthConfig};
//! use bpgg::model::{fit, Encoder, InputSize, ModelConfig, SupportSet};
//! use candle_core::Device;
//!
//! # fn main() -> bpgg::Result<()> {
//! let dir = std::env::temp_dir().join(format!("bpgg-doc-{}", std::process::id()));
//! let synth = SynthConfig { size: 64, train_good: 4, test_good: 1, per_type: 3, ..Default::default() };
//! let category = MvtecCategory::open(&write_synthetic_dataset(&dir, &synth)?)?;
//!
//! let limits = ImageLimits::default();
//! let mut supports = SupportSet::default();
//! for s in &category.test["blob"][..2] {
//!     let image = load_rgb(&s.image, limits)?;
//!     let mask = load_mask(s.mask.as_ref().unwrap(), Some(image.dimensions()), limits)?;
//!     supports.defects.push((s.stem.clone(), image, mask));
//! }
//! for s in &category.train_good {
//!     supports.normals.push((s.stem.clone(), load_rgb(&s.image, limits)?));
//! }
//!
//! let config = ModelConfig { size: InputSize::LongSide(64), ..ModelConfig::default() };
//! let encoder = Encoder::new(&config.backbone, &Device::Cpu)?;
//! let model = fit(&encoder, &supports, &config)?;
//!
//! let query = load_rgb(&category.test["blob"][2].image, limits)?;
//! let map = &model.predict(&encoder, &[query])?[0];
//! assert_eq!((map.width, map.height), (64, 64));
//! let defect_pixels = map.data.iter().filter(|&&v| v >= model.threshold).count();
//! println!("{defect_pixels} pixels above the threshold {}", model.threshold);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

pub mod backbone;
pub mod baseline;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod guidance;
pub mod io;
pub(crate) mod kernels;
pub mod model;
pub mod ops;
pub mod prototype;
pub mod report;
pub mod rng;
#[doc(hidden)]
pub mod test_utils;
pub mod train;

pub use error::{Error, Result, Warning};
