//! Normal-only baselines (`docs/ARCHITECTURE.md`, "The method"): with no defect support (K = 0) each query pixel is
//! scored by its distance to the nearest normal support feature (PatchCore, Roth et al.,
//! CVPR 2022, without the coreset).

mod knn;

pub use knn::{leave_one_out_distances, KnnConfig, MemoryBank};
