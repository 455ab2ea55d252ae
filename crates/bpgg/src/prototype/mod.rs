//! Prototype generation, the forward branch of BPGG (Zhang et al., ICANN 2022; PANet, Wang et
//! al., ICCV 2019): masked average pooling of support features into defect and normal
//! prototypes, optionally several per class by seeded spherical k-means.

mod bank;
mod kmeans;
mod masked_pool;
mod support_cells;

pub use bank::{build_prototypes, PrototypeBank, PrototypeConfig};
pub use kmeans::{spherical_kmeans, KMeansConfig};
pub use masked_pool::{
    mask_to_grid, masked_average_pool, masked_average_pool_with, MaskPooling, MASK_EPS,
};
pub use support_cells::{background_cells, defect_cells, SupportCellsConfig};
