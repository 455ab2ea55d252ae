//! `bpgg data inspect`: what a data set holds and every problem in it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::image_io::{load_mask, load_rgb_with_channels, ImageLimits};
use super::mvtec::{list_categories, MvtecCategory, Sample};
use crate::Result;

/// Statistics of one folder (`train/good`, `test/crack`, ...).
#[derive(Debug, Clone, Default)]
pub struct FolderStats {
    /// `train/good`, `test/crack`, ...
    pub folder: String,
    /// Images that decoded.
    pub images: usize,
    /// Smallest and largest `(width, height)` seen.
    pub min_size: Option<(u32, u32)>,
    pub max_size: Option<(u32, u32)>,
    /// Channel counts stored in the files (1 gray, 3 RGB, ...).
    pub channels: BTreeSet<u8>,
    /// Share of defect pixels per mask (defect folders only).
    pub mask_coverage: Vec<f64>,
}

impl FolderStats {
    /// Median mask coverage, if the folder has masks.
    pub fn median_coverage(&self) -> Option<f64> {
        let mut v = self.mask_coverage.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(if v.len() % 2 == 1 {
            v[v.len() / 2]
        } else {
            (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
        })
    }
}

/// What `inspect` found in one category.
#[derive(Debug)]
pub struct CategoryReport {
    pub name: String,
    pub dir: PathBuf,
    pub folders: Vec<FolderStats>,
    /// Every problem, each naming its file.
    pub problems: Vec<crate::Error>,
    /// What reading works around (an empty `good` folder is read as absent).
    pub warnings: Vec<crate::Warning>,
}

/// Inspects a data-set root or one category folder: decodes every image and mask.
/// `progress` is called once per file checked.
pub fn inspect(
    path: &Path,
    limits: ImageLimits,
    mut progress: impl FnMut(),
) -> Result<Vec<CategoryReport>> {
    let mut reports = Vec::new();
    for dir in list_categories(path)? {
        let (category, mut problems) = MvtecCategory::scan(&dir)?;
        let mut folders = Vec::new();
        let groups = std::iter::once(("train/good".to_string(), &category.train_good))
            .chain(category.test.iter().map(|(t, s)| (format!("test/{t}"), s)));
        for (folder, samples) in groups {
            let mut stats = FolderStats {
                folder,
                ..Default::default()
            };
            for sample in samples {
                progress();
                inspect_sample(sample, limits, &mut stats, &mut problems);
            }
            folders.push(stats);
        }
        reports.push(CategoryReport {
            name: category.name,
            dir,
            folders,
            problems,
            warnings: category.warnings,
        });
    }
    Ok(reports)
}

/// Files `inspect` will check under `path` (for a progress bar).
pub fn count_files(path: &Path) -> Result<usize> {
    let mut n = 0;
    for dir in list_categories(path)? {
        let (c, _) = MvtecCategory::scan(&dir)?;
        n += c.train_good.len() + c.test.values().map(Vec::len).sum::<usize>();
    }
    Ok(n)
}

fn inspect_sample(
    sample: &Sample,
    limits: ImageLimits,
    stats: &mut FolderStats,
    problems: &mut Vec<crate::Error>,
) {
    let (img, channels) = match load_rgb_with_channels(&sample.image, limits) {
        Ok(x) => x,
        Err(e) => {
            problems.push(e);
            return;
        }
    };
    let size = img.dimensions();
    stats.images += 1;
    stats.channels.insert(channels);
    stats.min_size = Some(
        stats
            .min_size
            .map_or(size, |(w, h)| (w.min(size.0), h.min(size.1))),
    );
    stats.max_size = Some(
        stats
            .max_size
            .map_or(size, |(w, h)| (w.max(size.0), h.max(size.1))),
    );
    if let Some(mask_path) = &sample.mask {
        match load_mask(mask_path, Some(size), limits) {
            Ok(mask) if mask.defect_pixels() == 0 => problems.push(crate::Error::invalid_data(
                mask_path,
                "mask is empty (no pixel > 127) for a defect image",
            )),
            Ok(mask) => stats.mask_coverage.push(mask.coverage()),
            Err(e) => problems.push(e),
        }
    }
}
