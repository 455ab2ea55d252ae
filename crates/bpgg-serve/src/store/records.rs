//! What the store answers with: rows as plain serde data (the API's JSON).

use serde::{Deserialize, Serialize};

/// What an image is to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A defective part; needs a mask before a fit.
    Defect,
    /// A good part.
    Normal,
}

impl Role {
    /// The name in the database and the API.
    pub fn name(self) -> &'static str {
        match self {
            Role::Defect => "defect",
            Role::Normal => "normal",
        }
    }

    /// The role of a name, if it is one.
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "defect" => Some(Role::Defect),
            "normal" => Some(Role::Normal),
            _ => None,
        }
    }
}

/// A project as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectInfo {
    pub id: String,
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Images of either role.
    pub images: u64,
    pub defects: u64,
    pub normals: u64,
    /// Defect images with a mask.
    pub masked_defects: u64,
    /// The current model's summary; `null` before the first fit.
    pub model: Option<FitSummary>,
}

/// An image as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: String,
    pub role: Role,
    pub width: u32,
    pub height: u32,
    /// Size of the stored file.
    pub bytes: u64,
    /// `png`, `jpeg` or `tiff`.
    pub format: String,
    pub has_mask: bool,
    /// Unix seconds.
    pub created_at: i64,
}

/// An image with the hashes of its bytes (internal: hashes are not part of the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub project: String,
    pub info: ImageInfo,
    pub blob: String,
    pub mask_blob: Option<String>,
}

/// What a fit made: stored with the model, answered by the fit and by `GET .../model/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// The model's default pixel threshold.
    pub threshold: f32,
    /// How it was chosen (`support_f1` or `normal_max`).
    pub threshold_rule: String,
    /// The image score at or above which an image is judged defective.
    pub image_threshold: f32,
    /// The concrete scoring (`auto` resolved).
    pub scoring: String,
    /// Defect and normal images the model was fitted on.
    pub defects: usize,
    pub normals: usize,
    /// The ids of those images, in the order they were used.
    pub support_ids: Vec<String>,
    /// Wall time of the fit in milliseconds (decoding, encoding, prototypes, threshold).
    pub ms: u64,
    /// The trained head's checkpoint (a name under the data dir's `checkpoints/`), if any.
    pub checkpoint: Option<String>,
    /// The whole model configuration (the library's `ModelConfig` JSON).
    pub config: serde_json::Value,
    /// SHA-256 of the `.bpgg` file (`GET .../model`).
    pub model_sha256: String,
    pub model_bytes: u64,
    /// Unix seconds.
    pub fitted_at: i64,
}
