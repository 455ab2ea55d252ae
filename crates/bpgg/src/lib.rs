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

pub mod backbone;
pub mod baseline;
pub mod data;
pub mod error;
pub mod eval;
pub mod guidance;
pub mod model;
pub mod prototype;
pub mod report;
pub mod rng;

pub use error::{Error, Result};
