//! Running the episode protocol over a category.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;

use super::stats::MetricStats;
use super::summary::{summarize, MetricValues, ScoredImage};
use super::table::{markdown_table, METRIC_COLUMNS};
use crate::data::image_io::{load_mask, load_rgb, Mask};
use crate::data::transform::{mask_to_tensor, resize_mask};
use crate::data::Flip;
use crate::data::{
    sample_episode, DefectSelection, EpisodeConfig, ImageLimits, MvtecCategory, Sample,
};
use crate::model::{fit_features, EncodedSupports, Encoder, ModelConfig};
use crate::{Error, Result};

/// Queries scored per call.
const QUERY_BATCH: usize = 16;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalConfig {
    /// The model every episode fits.
    pub model: ModelConfig,
    /// Defect shots K to evaluate (one table each).
    pub shots: Vec<usize>,
    /// Normal shots N.
    pub normal_shots: usize,
    /// Seeds; each gives one episode per defect type.
    pub seeds: Vec<u64>,
    /// Defect types to evaluate; empty = all.
    pub types: Vec<String>,
    /// FPR limit of AUPRO.
    pub fpr_limit: f64,
    /// Decompression-bomb limit for every image read.
    pub limits: ImageLimits,
    /// Stop at the first image that cannot be read instead of leaving it out.
    pub fail_fast: bool,
}

impl Default for EvalConfig {
    /// The default model; 1 and 5 defect shots with 5 normal shots; seeds 0-4; every type;
    /// AUPRO to an FPR of [`bpgg_metrics::DEFAULT_FPR_LIMIT`]; unreadable images left out.
    fn default() -> Self {
        Self {
            model: ModelConfig::default(),
            shots: vec![1, 5],
            normal_shots: 5,
            seeds: (0..5).collect(),
            types: Vec::new(),
            fpr_limit: bpgg_metrics::DEFAULT_FPR_LIMIT,
            limits: ImageLimits::default(),
            fail_fast: false,
        }
    }
}

/// An image left out of the evaluation because it (or its mask) could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedImage {
    pub path: PathBuf,
    pub error: String,
}

/// One episode's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeResult {
    pub shots: usize,
    pub defect_type: String,
    pub seed: u64,
    pub metrics: MetricValues,
    /// Milliseconds per query image: its share of encoding plus scoring.
    pub ms_per_query: f64,
}

/// Aggregated results.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub category: String,
    pub episodes: Vec<EpisodeResult>,
    /// `shots → type → metrics over seeds`.
    pub per_type: BTreeMap<usize, BTreeMap<String, MetricStats>>,
    /// `shots → mean over types (per seed), then over seeds`.
    pub overall: BTreeMap<usize, MetricStats>,
    /// `shots → mean ms per query image`.
    pub ms_per_query: BTreeMap<usize, f64>,
    /// Images left out because they could not be read (never with `fail_fast`).
    pub skipped: Vec<SkippedImage>,
}

/// Progress events for a caller's progress bar.
#[derive(Debug, Clone)]
pub enum EvalEvent {
    /// `total` episodes will run.
    Start { total: usize },
    /// An image (or its mask) could not be read; it is left out of every episode.
    Skipped(SkippedImage),
    /// One episode finished.
    Episode(EpisodeResult),
    /// One episode's maps, just before its [`EvalEvent::Episode`]: what reports draw from.
    /// Dropped unless the caller keeps it, so memory stays bounded by one episode.
    Scored(Box<EpisodeMaps>),
}

/// Everything one episode scored, at the model's image size.
#[derive(Debug, Clone)]
pub struct EpisodeMaps {
    pub shots: usize,
    /// The defect type the episode's supports come from.
    pub defect_type: String,
    pub seed: u64,
    pub defect_support: Vec<Sample>,
    pub normal_support: Vec<Sample>,
    /// The queries, in the order of `maps`.
    pub queries: Vec<Sample>,
    /// One anomaly map with its ground truth per query.
    pub maps: Vec<ScoredImage>,
    /// The defect threshold the fitted model chose from its supports.
    pub threshold: f32,
}

/// Features and resized masks, computed once per image.
struct Cache<'a> {
    encoder: &'a Encoder,
    limits: ImageLimits,
    features: HashMap<PathBuf, Tensor>,
    /// Features of flipped copies of support images (encoded when a support first needs them;
    /// support-side work, not counted in the per-query time).
    flipped: HashMap<(PathBuf, Flip), Tensor>,
    masks: HashMap<PathBuf, Tensor>,
    /// Ground truth at the model size, decoded once per image (queries recur across seeds).
    truths: HashMap<PathBuf, Mask>,
    encode_seconds: f64,
    encoded: usize,
}

impl Cache<'_> {
    /// `(n, C, h, w)` for the samples, encoding those not seen yet in batches.
    fn features(&mut self, samples: &[Sample]) -> Result<Tensor> {
        let missing: Vec<&Sample> = samples
            .iter()
            .filter(|s| !self.features.contains_key(&s.image))
            .collect();
        for chunk in missing.chunks(QUERY_BATCH) {
            let images = chunk
                .iter()
                .map(|s| load_rgb(&s.image, self.limits))
                .collect::<Result<Vec<_>>>()?;
            let start = Instant::now();
            let feats = self.encoder.encode(&images)?;
            self.encode_seconds += start.elapsed().as_secs_f64();
            self.encoded += chunk.len();
            for (i, s) in chunk.iter().enumerate() {
                self.features
                    .insert(s.image.clone(), feats.narrow(0, i, 1)?);
            }
        }
        let parts: Vec<Tensor> = samples
            .iter()
            .map(|s| self.features[&s.image].clone())
            .collect();
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// `(n, C, h, w)` features of the samples' images flipped by `flip`.
    fn flipped_features(&mut self, samples: &[Sample], flip: Flip) -> Result<Tensor> {
        let missing: Vec<&Sample> = samples
            .iter()
            .filter(|s| !self.flipped.contains_key(&(s.image.clone(), flip)))
            .collect();
        for chunk in missing.chunks(QUERY_BATCH) {
            let images = chunk
                .iter()
                .map(|s| Ok(flip.image(&load_rgb(&s.image, self.limits)?)))
                .collect::<Result<Vec<_>>>()?;
            let feats = self.encoder.encode(&images)?;
            for (i, s) in chunk.iter().enumerate() {
                self.flipped
                    .insert((s.image.clone(), flip), feats.narrow(0, i, 1)?);
            }
        }
        let parts: Vec<Tensor> = samples
            .iter()
            .map(|s| self.flipped[&(s.image.clone(), flip)].clone())
            .collect();
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Encodes already decoded images of `samples` (one batch) into the cache.
    fn insert_encoded(&mut self, samples: &[&Sample], images: &[image::RgbImage]) -> Result<()> {
        if samples.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        let feats = self.encoder.encode(images)?;
        self.encode_seconds += start.elapsed().as_secs_f64();
        self.encoded += samples.len();
        for (i, s) in samples.iter().enumerate() {
            self.features
                .insert(s.image.clone(), feats.narrow(0, i, 1)?);
        }
        Ok(())
    }

    /// The ground truth of a sample at `size x size`.
    fn mask(&mut self, sample: &Sample, size: u32) -> Result<Mask> {
        if let Some(m) = self.truths.get(&sample.image) {
            return Ok(m.clone());
        }
        let (w, h) = crate::data::image_io::image_dimensions(&sample.image)?;
        let mask = match &sample.mask {
            Some(p) => load_mask(p, Some((w, h)), self.limits)?,
            None => Mask::empty(w, h),
        };
        let mask = resize_mask(&mask, size, size);
        self.truths.insert(sample.image.clone(), mask.clone());
        Ok(mask)
    }

    /// `(k, 1, size, size)` masks of defect supports.
    fn support_masks(&mut self, samples: &[Sample], size: u32) -> Result<Tensor> {
        let mut parts = Vec::with_capacity(samples.len());
        for s in samples {
            if !self.masks.contains_key(&s.image) {
                let m = self.mask(s, size)?;
                if m.defect_pixels() == 0 {
                    return Err(Error::invalid_data(
                        s.mask.as_ref().unwrap_or(&s.image),
                        format!("defect support mask is empty at {size}x{size}"),
                    ));
                }
                let t = mask_to_tensor(&m, self.encoder.device())?;
                self.masks.insert(s.image.clone(), t);
            }
            parts.push(self.masks[&s.image].clone());
        }
        Ok(Tensor::stack(&parts, 0)?)
    }
}

/// Runs every episode (shots × types × seeds) and aggregates: the types to evaluate, the pool
/// of images encoded once, one episode after another, then statistics over seeds.
pub fn evaluate_category(
    category: &MvtecCategory,
    encoder: &Encoder,
    config: &EvalConfig,
    mut on_event: impl FnMut(EvalEvent),
) -> Result<EvalReport> {
    config.model.validate()?;
    if config.shots.is_empty() || config.seeds.is_empty() {
        return Err(Error::InvalidConfig(
            "eval needs at least one shot count and one seed".into(),
        ));
    }
    let types = types_to_evaluate(category, config)?;
    let mut cache = Cache {
        encoder,
        limits: config.limits,
        features: HashMap::new(),
        flipped: HashMap::new(),
        masks: HashMap::new(),
        truths: HashMap::new(),
        encode_seconds: 0.0,
        encoded: 0,
    };
    let (usable, skipped) = cache.encode_pool(category, &types, config, &mut on_event)?;

    on_event(EvalEvent::Start {
        total: config.shots.len() * types.len() * config.seeds.len(),
    });
    let mut episodes = Vec::new();
    for &shots in &config.shots {
        for t in &types {
            for &seed in &config.seeds {
                let (result, maps) = run_episode(&mut cache, &usable, config, t, shots, seed)?;
                on_event(EvalEvent::Scored(Box::new(maps)));
                on_event(EvalEvent::Episode(result.clone()));
                episodes.push(result);
            }
        }
    }
    let mut report = aggregate(&usable.name, episodes, &types, &config.seeds);
    report.skipped = skipped;
    Ok(report)
}

/// The defect types of the run: the configured ones (each checked to exist), else all.
fn types_to_evaluate(category: &MvtecCategory, config: &EvalConfig) -> Result<Vec<String>> {
    let types: Vec<String> = if config.types.is_empty() {
        category
            .defect_types()
            .iter()
            .map(|t| t.to_string())
            .collect()
    } else {
        for t in &config.types {
            category.defects_of(t)?;
        }
        config.types.clone()
    };
    if types.is_empty() {
        return Err(Error::invalid_data(
            &category.dir,
            "category has no defect types to evaluate",
        ));
    }
    Ok(types)
}

impl Cache<'_> {
    /// Reads and encodes every image the episodes can draw, once, up front: a broken one is
    /// left out of the category (and reported) before any episode is sampled, so one bad file
    /// never stops the run nor shifts what the other episodes see. Returns the category without
    /// the unreadable images, and those images.
    fn encode_pool(
        &mut self,
        category: &MvtecCategory,
        types: &[String],
        config: &EvalConfig,
        on_event: &mut impl FnMut(EvalEvent),
    ) -> Result<(MvtecCategory, Vec<SkippedImage>)> {
        let size = config.model.image_size;
        let mut pool: Vec<Sample> = category.train_good.clone();
        pool.extend(category.test_good().iter().cloned());
        for t in types {
            pool.extend(category.defects_of(t)?.iter().cloned());
        }
        let mut skipped = Vec::new();
        for chunk in pool.chunks(QUERY_BATCH) {
            let mut readable = Vec::with_capacity(chunk.len());
            let mut images = Vec::with_capacity(chunk.len());
            for s in chunk {
                let read = load_rgb(&s.image, config.limits).and_then(|img| {
                    self.mask(s, size)?;
                    Ok(img)
                });
                match read {
                    Ok(img) => {
                        readable.push(s);
                        images.push(img);
                    }
                    Err(e) if !config.fail_fast => {
                        let skip = SkippedImage {
                            path: s.image.clone(),
                            error: e.to_string(),
                        };
                        on_event(EvalEvent::Skipped(skip.clone()));
                        skipped.push(skip);
                    }
                    Err(e) => return Err(e),
                }
            }
            self.insert_encoded(&readable, &images)?;
        }
        let broken: std::collections::HashSet<&PathBuf> = skipped.iter().map(|s| &s.path).collect();
        let mut usable = category.clone();
        usable.train_good.retain(|s| !broken.contains(&s.image));
        for samples in usable.test.values_mut() {
            samples.retain(|s| !broken.contains(&s.image));
        }
        Ok((usable, skipped))
    }
}

/// One episode: draw supports and queries, fit on the cached support features, score the
/// queries and compute the episode's metrics on its defect type.
fn run_episode(
    cache: &mut Cache<'_>,
    category: &MvtecCategory,
    config: &EvalConfig,
    defect_type: &str,
    shots: usize,
    seed: u64,
) -> Result<(EpisodeResult, EpisodeMaps)> {
    let size = config.model.image_size;
    let episode = sample_episode(
        category,
        &DefectSelection::Type(defect_type.to_string()),
        &EpisodeConfig {
            defect_shots: shots,
            normal_shots: config.normal_shots,
            seed,
        },
    )?;
    let defects = if shots > 0 {
        let f = cache.features(&episode.defect_support)?;
        let m = cache.support_masks(&episode.defect_support, size)?;
        Some((f, m))
    } else {
        None
    };
    let normals = if config.normal_shots > 0 {
        Some(cache.features(&episode.normal_support)?)
    } else {
        None
    };
    let flipped = if config.model.flip_supports {
        let supports: Vec<Sample> = episode
            .defect_support
            .iter()
            .chain(&episode.normal_support)
            .cloned()
            .collect();
        Flip::BOTH
            .iter()
            .map(|&flip| Ok((flip, cache.flipped_features(&supports, flip)?)))
            .collect::<Result<Vec<_>>>()?
    } else {
        Vec::new()
    };
    let model = fit_features(
        &config.model,
        &EncodedSupports {
            defects,
            normals,
            flipped,
        },
    )?;
    let mut scored = Vec::with_capacity(episode.queries.len());
    let mut score_seconds = 0.0;
    for chunk in episode.queries.chunks(QUERY_BATCH) {
        let feats = cache.features(chunk)?;
        let start = Instant::now();
        let out = model.score(&feats)?;
        let flat = out.maps.flatten_all()?.to_vec1::<f32>()?;
        score_seconds += start.elapsed().as_secs_f64();
        let n = (size * size) as usize;
        for (i, s) in chunk.iter().enumerate() {
            scored.push(ScoredImage {
                defect_type: s.defect_type.clone(),
                width: size as usize,
                height: size as usize,
                map: flat[i * n..(i + 1) * n].to_vec(),
                mask: cache.mask(s, size)?.pixels,
                image_score: out.image_scores[i],
            });
        }
    }
    let summary = summarize(&scored, config.fpr_limit)?;
    let metrics = summary.per_type.get(defect_type).copied().ok_or_else(|| {
        Error::invalid_data(
            &category.dir,
            format!("no query of type {defect_type} left"),
        )
    })?;
    let encode_per_image = cache.encode_seconds / cache.encoded.max(1) as f64;
    let result = EpisodeResult {
        shots,
        defect_type: defect_type.to_string(),
        seed,
        metrics,
        ms_per_query: 1000.0 * (encode_per_image + score_seconds / scored.len() as f64),
    };
    let maps = EpisodeMaps {
        shots,
        defect_type: defect_type.to_string(),
        seed,
        defect_support: episode.defect_support,
        normal_support: episode.normal_support,
        queries: episode.queries,
        maps: scored,
        threshold: model.threshold,
    };
    Ok((result, maps))
}

fn aggregate(
    name: &str,
    episodes: Vec<EpisodeResult>,
    types: &[String],
    seeds: &[u64],
) -> EvalReport {
    let mut per_type = BTreeMap::new();
    let mut overall = BTreeMap::new();
    let mut ms_per_query = BTreeMap::new();
    let shots: std::collections::BTreeSet<usize> = episodes.iter().map(|e| e.shots).collect();
    for k in shots {
        let of_k: Vec<&EpisodeResult> = episodes.iter().filter(|e| e.shots == k).collect();
        let mut by_type = BTreeMap::new();
        for t in types {
            let values: Vec<MetricValues> = of_k
                .iter()
                .filter(|e| &e.defect_type == t)
                .map(|e| e.metrics)
                .collect();
            if let Some(stats) = MetricStats::of(&values) {
                by_type.insert(t.clone(), stats);
            }
        }
        // Per seed: the mean over types; then statistics over seeds.
        let per_seed: Vec<MetricValues> = seeds
            .iter()
            .filter_map(|&seed| {
                let of_seed: Vec<&MetricValues> = of_k
                    .iter()
                    .filter(|e| e.seed == seed)
                    .map(|e| &e.metrics)
                    .collect();
                MetricValues::mean(&of_seed, of_seed.iter().map(|m| m.images).sum())
            })
            .collect();
        if let Some(stats) = MetricStats::of(&per_seed) {
            overall.insert(k, stats);
        }
        ms_per_query.insert(
            k,
            of_k.iter().map(|e| e.ms_per_query).sum::<f64>() / of_k.len().max(1) as f64,
        );
        per_type.insert(k, by_type);
    }
    EvalReport {
        category: name.to_string(),
        episodes,
        per_type,
        overall,
        ms_per_query,
        skipped: Vec::new(),
    }
}

impl EvalReport {
    /// One markdown table per shot count: rows per type, then the mean over types, each
    /// `mean ± std` over seeds.
    pub fn markdown(&self) -> String {
        let ms = |v: super::MeanStd| format!("{:.3} ± {:.3}", v.mean, v.std);
        let row = |name: &str, m: &MetricStats| {
            vec![
                name.to_string(),
                ms(m.pixel_auroc),
                ms(m.aupro),
                ms(m.pixel_ap),
                ms(m.f1_max),
                m.image_auroc.map_or("-".into(), ms),
            ]
        };
        let mut header = vec!["type"];
        header.extend(METRIC_COLUMNS);
        let mut out = String::new();
        for (k, by_type) in &self.per_type {
            out.push_str(&format!(
                "\n{} — {k} defect shot(s), {:.1} ms per query image\n\n",
                self.category,
                self.ms_per_query.get(k).copied().unwrap_or(f64::NAN)
            ));
            let mut rows: Vec<Vec<String>> = by_type.iter().map(|(t, m)| row(t, m)).collect();
            if let Some(m) = self.overall.get(k) {
                rows.push(row("**mean**", m));
            }
            out.push_str(&markdown_table(&header, &rows));
        }
        out
    }
}
