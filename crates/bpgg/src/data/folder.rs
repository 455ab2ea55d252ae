//! The generic folder layout for a user's own data.
//!
//! ```text
//! defects/  part_017.png ...        defective images
//! masks/    part_017.png ...        their masks, same stem (`part_017_mask.png` works too)
//! normal/   ok_001.png ...          defect-free images
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use super::mvtec::{list_images, Sample, GOOD};
use crate::{Error, Result};

/// The defect type given to samples read from a plain folder.
pub const FOLDER_DEFECT_TYPE: &str = "defect";

/// Defective images with masks and normal images read from plain folders.
#[derive(Debug, Clone, Default)]
pub struct FolderDataset {
    /// Defective images, each with its mask.
    pub defects: Vec<Sample>,
    /// Defect-free images.
    pub normals: Vec<Sample>,
    /// What reading worked around (an empty normal folder is read as absent).
    pub warnings: Vec<crate::Warning>,
}

impl FolderDataset {
    /// Reads the folders. `masks` is required when `defects` is given. Every defect image needs a
    /// mask with the same stem, and every mask an image.
    pub fn open(
        defects: Option<&Path>,
        masks: Option<&Path>,
        normal: Option<&Path>,
    ) -> Result<Self> {
        let mut out = Self::default();
        if let Some(dir) = defects {
            let masks_dir = masks.ok_or_else(|| {
                Error::invalid_data(dir, "defect images need a masks folder (--masks)")
            })?;
            let masks: BTreeMap<String, std::path::PathBuf> = list_images(masks_dir)?
                .into_iter()
                .map(|(stem, p)| (stem.strip_suffix("_mask").unwrap_or(&stem).to_string(), p))
                .collect();
            let images = list_images(dir)?;
            if images.is_empty() {
                return Err(Error::invalid_data(dir, "folder has no images"));
            }
            for (stem, image) in images {
                let mask = masks.get(&stem).cloned().ok_or_else(|| {
                    Error::invalid_data(
                        &image,
                        format!(
                            "defect image has no mask named {stem}.png in {}",
                            masks_dir.display()
                        ),
                    )
                })?;
                out.defects.push(Sample {
                    image,
                    mask: Some(mask),
                    defect_type: FOLDER_DEFECT_TYPE.into(),
                    stem,
                });
            }
            for (stem, path) in &masks {
                if !out.defects.iter().any(|s| &s.stem == stem) {
                    return Err(Error::invalid_data(
                        path,
                        format!(
                            "mask for an unknown image (no {stem}.* in {})",
                            dir.display()
                        ),
                    ));
                }
            }
        }
        if let Some(dir) = normal {
            let images = list_images(dir)?;
            if images.is_empty() {
                out.warnings.push(crate::Warning::new(
                    dir,
                    "folder has no images; treated as absent (no normal images)",
                ));
            }
            out.normals = Sample::normals(images, GOOD);
        }
        Ok(out)
    }
}
