//! Memory banks of support pixel features and their nearest-neighbour distance (PatchCore, Roth
//! et al., CVPR 2022, without the coreset; `docs/ARCHITECTURE.md`, "The method"). With no defect
//! support (K = 0) each query pixel is scored by its distance to the nearest normal feature; the
//! same search serves the defect bank of `hybrid` scoring and the leave-one-out scoring of the
//! supports.

mod knn;
mod leave_one_out;

pub use knn::{KnnConfig, MemoryBank};
pub use leave_one_out::{bank_of, leave_one_out_distances, BankSource, NO_NEIGHBOUR_DISTANCE};
