//! Few-shot episodes: which images are supports and which are queries.
//!
//! An episode for defect type `t` with `K` defect shots and `N` normal shots is drawn as follows
//! (deterministic from the seed):
//! - the images of `test/t` are shuffled with a stream seeded by `(seed, t)`; the first `K` are the
//!   defect supports (with masks), the rest are queries;
//! - `train/good` is shuffled with a stream seeded by `(seed, "good")`; the first `N` are the
//!   normal supports;
//! - `test/good` is always added to the queries.
//!
//! No image is both support and query. With [`DefectSelection::AllTypes`] the `K` defect
//! supports are drawn from the pool of all defect types and the queries are every other test image.

use crate::data::mvtec::{MvtecCategory, Sample, GOOD};
use crate::rng::SplitMix64;
use crate::{Error, Result};

/// Which defect images an episode is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefectSelection {
    /// One defect type (`test/<type>`).
    Type(String),
    /// Every defect type of the category, pooled.
    AllTypes,
}

/// How an episode is drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeConfig {
    /// K: defect supports with masks (0 = normal-only).
    pub defect_shots: usize,
    /// N: normal supports from `train/good`.
    pub normal_shots: usize,
    /// Seed of the draw.
    pub seed: u64,
}

impl Default for EpisodeConfig {
    /// 5 defect shots, 5 normal shots, seed 0.
    fn default() -> Self {
        Self {
            defect_shots: 5,
            normal_shots: 5,
            seed: 0,
        }
    }
}

/// One drawn episode.
#[derive(Debug, Clone)]
pub struct Episode {
    /// What the episode is about (`crack`, or `all`).
    pub name: String,
    /// Defect supports (each has a mask).
    pub defect_support: Vec<Sample>,
    /// Normal supports.
    pub normal_support: Vec<Sample>,
    /// Images to localise: remaining defect images, then `test/good`.
    pub queries: Vec<Sample>,
}

/// Draws an episode from a category.
pub fn sample_episode(
    category: &MvtecCategory,
    selection: &DefectSelection,
    config: &EpisodeConfig,
) -> Result<Episode> {
    let (name, mut pool): (String, Vec<Sample>) = match selection {
        DefectSelection::Type(t) => (t.clone(), category.defects_of(t)?.to_vec()),
        DefectSelection::AllTypes => (
            "all".into(),
            category
                .test
                .iter()
                .filter(|(t, _)| t.as_str() != GOOD)
                .flat_map(|(_, s)| s.iter().cloned())
                .collect(),
        ),
    };
    if config.defect_shots >= pool.len() && config.defect_shots > 0 {
        return Err(Error::invalid_data(
            &category.dir,
            format!(
                "{} defect shots asked for '{name}', which has only {} images \
                 (at least one must remain as a query)",
                config.defect_shots,
                pool.len()
            ),
        ));
    }
    let mut good = category.train_good.clone();
    if config.normal_shots > good.len() {
        return Err(Error::invalid_data(
            category.dir.join("train").join(GOOD),
            format!(
                "{} normal shots asked for, but train/good has only {} images",
                config.normal_shots,
                good.len()
            ),
        ));
    }
    SplitMix64::with_label(config.seed, &name).shuffle(&mut pool);
    SplitMix64::with_label(config.seed, GOOD).shuffle(&mut good);
    let queries_defect = pool.split_off(config.defect_shots);
    good.truncate(config.normal_shots);
    let mut queries = queries_defect;
    queries.extend(category.test_good().iter().cloned());
    Ok(Episode {
        name,
        defect_support: pool,
        normal_support: good,
        queries,
    })
}
