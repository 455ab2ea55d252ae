//! Data: MVTec-layout and plain-folder data sets, episodes, transforms, synthetic data, and the
//! float anomaly-map files that `bpgg predict` writes and `bpgg score` reads.

pub mod episode;
pub mod flip;
pub mod float_map;
pub mod folder;
pub mod image_io;
pub mod inspect;
pub mod mvtec;
pub mod synth;
pub mod transform;

pub use episode::{sample_episode, DefectSelection, Episode, EpisodeConfig};
pub use flip::Flip;
pub use folder::FolderDataset;
pub use image_io::{load_mask, load_rgb, ImageLimits, Mask};
pub use mvtec::{list_categories, MvtecCategory, Sample, GOOD};
pub use synth::{write_synthetic_dataset, DefectKind, SynthConfig};
