//! Guidance (`docs/ARCHITECTURE.md`, "The method"): query pixels are scored against the prototypes, the
//! defect probability becomes an anomaly map, the reverse branch checks the query's
//! prediction against the supports, and the hybrid mixes in the k-NN distance.

mod anomaly_map;
mod hybrid;
mod reverse;
mod similarity;

pub use anomaly_map::{gaussian_blur, threshold, to_anomaly_map, AnomalyMapConfig};
pub use hybrid::{
    bank_probability, defect_term, hybrid_score, knn_scale_from_normal, HybridConfig, MIN_KNN_SCALE,
};
pub use reverse::{
    query_prototypes, refine_prototypes, support_reconstruction, ReverseConfig, ReverseMode,
    ReverseOutcome, SupportReconstruction,
};
pub use similarity::{
    class_logits, cosine_similarity_map, defect_probability, validate_tau, DEFAULT_TAU,
};
