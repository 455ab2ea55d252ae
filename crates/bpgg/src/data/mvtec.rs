//! The MVTec AD folder layout, bpgg's interchange format.
//!
//! ```text
//! <root>/<category>/train/good/*.png
//! <root>/<category>/test/good/*.png
//! <root>/<category>/test/<defect type>/*.png
//! <root>/<category>/ground_truth/<defect type>/<stem>_mask.png
//! ```
//!
//! Masks are matched to images **by stem**, never by sort order: `test/crack/007.png` takes
//! `ground_truth/crack/007_mask.png` (or `007.png`, with any supported image extension).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result, Warning};

/// The folder name of defect-free images.
pub const GOOD: &str = "good";

/// File extensions read as images (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp"];

/// One image of a data set, with its mask file when it is defective.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The image file.
    pub image: PathBuf,
    /// Its ground-truth mask; `None` for defect-free images.
    pub mask: Option<PathBuf>,
    /// `good` for defect-free images, else the defect type (folder name).
    pub defect_type: String,
    /// The file stem (`007` for `007.png`), the key masks and outputs are matched by.
    pub stem: String,
}

impl Sample {
    /// Defect-free samples (no mask) from `(stem, path)` pairs, with type `defect_type`.
    pub(crate) fn normals(images: Vec<(String, PathBuf)>, defect_type: &str) -> Vec<Sample> {
        images
            .into_iter()
            .map(|(stem, image)| Sample {
                image,
                mask: None,
                defect_type: defect_type.to_string(),
                stem,
            })
            .collect()
    }

    /// Whether this image is defective (has a mask).
    pub fn is_defect(&self) -> bool {
        self.mask.is_some()
    }
}

/// One category of an MVTec-layout data set.
#[derive(Debug, Clone)]
pub struct MvtecCategory {
    /// Category name (its folder name).
    pub name: String,
    /// The category folder.
    pub dir: PathBuf,
    /// `train/good`: the pool of normal support images.
    pub train_good: Vec<Sample>,
    /// `test/<type>` by type name, `good` included when present (and not empty).
    pub test: BTreeMap<String, Vec<Sample>>,
    /// What was worked around while reading: an empty `good` folder is treated as absent.
    pub warnings: Vec<Warning>,
}

impl MvtecCategory {
    /// Opens a category folder, failing on the first structural problem
    /// (missing mask, mask for an unknown image, empty category).
    pub fn open(dir: &Path) -> Result<Self> {
        let (category, mut problems) = Self::scan(dir)?;
        if problems.is_empty() {
            Ok(category)
        } else {
            Err(problems.swap_remove(0))
        }
    }

    /// Reads a category folder and lists every structural problem instead of stopping at the
    /// first. Samples with a problem (a defect image without a mask) are left out.
    /// Fails only when `dir` cannot be read at all or is not a category folder.
    pub fn scan(dir: &Path) -> Result<(Self, Vec<Error>)> {
        if !dir.is_dir() {
            return Err(Error::invalid_data(dir, "not a folder"));
        }
        let train = dir.join("train");
        let test_dir = dir.join("test");
        if !train.is_dir() && !test_dir.is_dir() {
            return Err(Error::invalid_data(
                dir,
                "not an MVTec-layout category: it has neither train/ nor test/",
            ));
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let mut problems = Vec::new();
        let mut warnings = Vec::new();

        let train_good = if train.join(GOOD).is_dir() {
            let images = list_images(&train.join(GOOD))?;
            if images.is_empty() {
                warnings.push(empty_good_folder(&train.join(GOOD)));
            }
            Sample::normals(images, GOOD)
        } else {
            Vec::new()
        };

        let mut test = BTreeMap::new();
        if test_dir.is_dir() {
            for type_dir in list_dirs(&test_dir)? {
                let ty = file_name(&type_dir);
                let images = list_images(&type_dir)?;
                if images.is_empty() && ty == GOOD {
                    warnings.push(empty_good_folder(&type_dir));
                    continue;
                }
                if images.is_empty() {
                    problems.push(Error::invalid_data(&type_dir, "folder has no images"));
                }
                let samples = if ty == GOOD {
                    Sample::normals(images, &ty)
                } else {
                    let gt_dir = dir.join("ground_truth").join(&ty);
                    match_masks(&ty, images, &gt_dir, &mut problems)?
                };
                test.insert(ty, samples);
            }
        }

        let category = Self {
            name,
            dir: dir.to_path_buf(),
            train_good,
            test,
            warnings,
        };
        if category.train_good.is_empty() && category.test.values().all(Vec::is_empty) {
            problems.insert(0, Error::invalid_data(dir, "category has no images"));
        }
        Ok((category, problems))
    }

    /// The defect types (test folders other than `good`), sorted.
    pub fn defect_types(&self) -> Vec<&str> {
        self.test
            .keys()
            .map(String::as_str)
            .filter(|t| *t != GOOD)
            .collect()
    }

    /// `test/good`, empty when absent.
    pub fn test_good(&self) -> &[Sample] {
        self.test.get(GOOD).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The test images of one defect type.
    pub fn defects_of(&self, defect_type: &str) -> Result<&[Sample]> {
        match self.test.get(defect_type) {
            Some(s) if defect_type != GOOD => Ok(s),
            _ => Err(Error::invalid_data(
                &self.dir,
                format!(
                    "no defect type '{defect_type}' (known: {})",
                    self.defect_types().join(", ")
                ),
            )),
        }
    }
}

/// The warning for a `good` folder without images, which is read as if it were absent.
fn empty_good_folder(dir: &Path) -> Warning {
    Warning::new(
        dir,
        "folder has no images; treated as absent (no defect-free images from it)",
    )
}

/// The category folders under a data-set root (folders that have `train/` or `test/`), sorted.
/// A root that is itself a category folder is returned alone.
pub fn list_categories(root: &Path) -> Result<Vec<PathBuf>> {
    if root.join("train").is_dir() || root.join("test").is_dir() {
        return Ok(vec![root.to_path_buf()]);
    }
    if !root.is_dir() {
        return Err(Error::invalid_data(root, "no such folder"));
    }
    let cats: Vec<PathBuf> = list_dirs(root)?
        .into_iter()
        .filter(|d| d.join("train").is_dir() || d.join("test").is_dir())
        .collect();
    if cats.is_empty() {
        return Err(Error::invalid_data(
            root,
            "no MVTec-layout category here (expected <category>/train/good and <category>/test/)",
        ));
    }
    Ok(cats)
}

fn match_masks(
    ty: &str,
    images: Vec<(String, PathBuf)>,
    gt_dir: &Path,
    problems: &mut Vec<Error>,
) -> Result<Vec<Sample>> {
    let masks: BTreeMap<String, PathBuf> = if gt_dir.is_dir() {
        list_images(gt_dir)?
            .into_iter()
            .map(|(stem, path)| {
                let key = stem.strip_suffix("_mask").unwrap_or(&stem).to_string();
                (key, path)
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut used = std::collections::BTreeSet::new();
    let mut samples = Vec::with_capacity(images.len());
    for (stem, image) in images {
        match masks.get(&stem) {
            Some(mask) => {
                used.insert(stem.clone());
                samples.push(Sample {
                    image,
                    mask: Some(mask.clone()),
                    defect_type: ty.to_string(),
                    stem,
                });
            }
            None => problems.push(Error::invalid_data(
                &image,
                format!(
                    "defect image has no mask (expected {})",
                    gt_dir.join(format!("{stem}_mask.png")).display()
                ),
            )),
        }
    }
    for (stem, mask) in &masks {
        if !used.contains(stem) {
            problems.push(Error::invalid_data(
                mask,
                format!("mask for an unknown image (no test/{ty}/{stem}.*)"),
            ));
        }
    }
    Ok(samples)
}

/// `(stem, path)` of the image files in a folder, sorted by file name.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if !path.is_file() || !is_image_path(&path) {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((stem, path));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn list_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a path has one of the [`IMAGE_EXTENSIONS`].
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
