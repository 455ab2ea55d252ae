//! Running the episode protocol over a category.

use std::collections::{BTreeMap, HashMap, HashSet};
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
use crate::model::{encode_flipped, flipped_stacks, stack_supports};
use crate::model::{
    fit_features, EncodedSupports, Encoder, FittedModel, ModelConfig, PreparedImage, TileLayout,
};
use crate::{Error, Result, Warning};

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
    /// At which size maps and ground truth are compared.
    pub compare_at: CompareAt,
}

/// At which size `eval` compares each anomaly map with its ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareAt {
    /// The image's own size: the map is brought back to it as a prediction is (bilinear), the
    /// ground truth is the mask file itself. The same pixels whatever the model's resolution,
    /// so settings of different resolutions compare fairly.
    Image,
    /// The model's working size (the usual MVTec protocol at 256 x 256): the ground truth is
    /// resized by nearest neighbour, as `bpgg score --size` does, so a defect smaller than a
    /// working pixel may vanish from it. Default: the protocol of the results table, and the
    /// image's own size anyway for a model at native resolution.
    #[default]
    Working,
}

impl Default for EvalConfig {
    /// The default model; 1 and 5 defect shots with 5 normal shots; seeds 0-4; every type;
    /// AUPRO to an FPR of [`bpgg_metrics::DEFAULT_FPR_LIMIT`]; unreadable images left out;
    /// maps compared at the working size.
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
            compare_at: CompareAt::default(),
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
    /// What was worked around: an empty `good` folder, defect supports left out because their
    /// masks have no defect pixel.
    pub warnings: Vec<Warning>,
}

/// Progress events for a caller's progress bar.
#[derive(Debug, Clone)]
pub enum EvalEvent {
    /// `total` episodes will run.
    Start { total: usize },
    /// An image (or its mask) could not be read; it is left out of every episode.
    Skipped(SkippedImage),
    /// Something was worked around (see [`EvalReport::warnings`]); each is sent once.
    Warning(Warning),
    /// One episode finished.
    Episode(EpisodeResult),
    /// One episode's maps, just before its [`EvalEvent::Episode`]: what reports draw from.
    /// Dropped unless the caller keeps it, so memory stays bounded by one episode.
    Scored(Box<EpisodeMaps>),
}

/// Everything one episode scored, each map with its ground truth at the size of
/// [`EvalConfig::compare_at`].
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

/// What one image became, computed once (every image is read and encoded up front).
struct Encoded {
    /// Features of the padded working image, `(1, C, gh, gw)`.
    features: Tensor,
    /// Where its tiles lie (working and padded sizes).
    layout: TileLayout,
    /// The ground truth at the size maps are compared at ([`CompareAt`]).
    truth: Mask,
    /// A defect image's mask as a support sees it: at the padded working size, no defect pixel
    /// lost (`None` for defect-free images).
    support_mask: Option<Mask>,
}

/// Every image of the category, encoded once.
struct Cache<'a> {
    encoder: &'a Encoder,
    model: &'a ModelConfig,
    compare_at: CompareAt,
    images: HashMap<PathBuf, Encoded>,
    limits: ImageLimits,
    /// Features of flipped copies of support images, aligned to the original's cells
    /// ([`encode_flipped`]; encoded when a support first needs them: support-side work, not
    /// counted in the per-query time).
    flipped: HashMap<(PathBuf, Flip), Tensor>,
    encode_seconds: f64,
    encoded: usize,
}

impl Cache<'_> {
    /// `(1, C, gh, gw)` features of a support's image seen in `flip`, aligned to its cells.
    fn flipped_features(&mut self, sample: &Sample, flip: Flip) -> Result<Tensor> {
        let key = (sample.image.clone(), flip);
        if let Some(t) = self.flipped.get(&key) {
            return Ok(t.clone());
        }
        let image = load_rgb(&sample.image, self.limits)?;
        let prepared = PreparedImage::new(&image, &self.model.size, self.model.tile.as_ref())?;
        let grid = encode_flipped(self.encoder, &prepared, flip)?;
        self.flipped.insert(key, grid.clone());
        Ok(grid)
    }

    /// Reads, prepares and encodes a chunk of samples. An image that cannot be read (or is too
    /// large for the model's settings) comes back as its error, the others are encoded; a
    /// failure of the encoder itself is returned as the error.
    fn encode_chunk(
        &mut self,
        samples: &[Sample],
        limits: ImageLimits,
    ) -> Result<Vec<(usize, Error)>> {
        let mut failed = Vec::new();
        let mut ready: Vec<(usize, PreparedImage, Mask, Option<Mask>)> = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            let read = (|| -> Result<(PreparedImage, Mask, Option<Mask>)> {
                let image = load_rgb(&s.image, limits)?;
                let prepared =
                    PreparedImage::new(&image, &self.model.size, self.model.tile.as_ref())
                        .map_err(|e| match e {
                            Error::InvalidConfig(problem) => Error::invalid_data(&s.image, problem),
                            e => e,
                        })?;
                let (w, h) = prepared.layout.work;
                let (cw, ch) = match self.compare_at {
                    CompareAt::Image => image.dimensions(),
                    CompareAt::Working => (w, h),
                };
                let (truth, support) = match &s.mask {
                    Some(p) => {
                        let mask = load_mask(p, Some(image.dimensions()), limits)?;
                        let support = prepared.layout.prepare_mask(&mask);
                        (resize_mask(&mask, cw, ch), Some(support))
                    }
                    None => (Mask::empty(cw, ch), None),
                };
                Ok((prepared, truth, support))
            })();
            match read {
                Ok((p, t, m)) => ready.push((i, p, t, m)),
                Err(e) => failed.push((i, e)),
            }
        }
        // Images encoded whole at one size share backbone batches; tiled ones go one by one.
        let start = Instant::now();
        let mut k = 0;
        while k < ready.len() {
            let single = |r: &(usize, PreparedImage, Mask, Option<Mask>)| {
                (r.1.layout.len() == 1).then_some(r.1.layout.tile)
            };
            let mut end = k + 1;
            if let Some(size) = single(&ready[k]) {
                while end < ready.len() && single(&ready[end]) == Some(size) {
                    end += 1;
                }
            }
            let feats = if end - k > 1 {
                let tiles: Vec<_> = ready[k..end].iter().map(|r| r.1.tile(0)).collect();
                self.encoder.encode(&tiles)?
            } else {
                self.encoder.encode_prepared(&ready[k].1)?
            };
            for (j, (i, prepared, truth, support_mask)) in ready[k..end].iter().enumerate() {
                self.images.insert(
                    samples[*i].image.clone(),
                    Encoded {
                        features: feats.narrow(0, j, 1)?,
                        layout: prepared.layout.clone(),
                        truth: truth.clone(),
                        support_mask: support_mask.clone(),
                    },
                );
                self.encoded += 1;
            }
            k = end;
        }
        self.encode_seconds += start.elapsed().as_secs_f64();
        Ok(failed)
    }

    fn get(&self, sample: &Sample) -> Result<&Encoded> {
        self.images.get(&sample.image).ok_or_else(|| {
            Error::invalid_data(
                &sample.image,
                "image was not encoded (it could not be read)",
            )
        })
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
        model: &config.model,
        compare_at: config.compare_at,
        images: HashMap::new(),
        limits: config.limits,
        flipped: HashMap::new(),
        encode_seconds: 0.0,
        encoded: 0,
    };
    let mut warnings = Warnings {
        list: category.warnings.clone(),
        left_out: HashSet::new(),
    };
    for w in &warnings.list {
        on_event(EvalEvent::Warning(w.clone()));
    }
    let (usable, skipped) = cache.encode_pool(category, &types, config, &mut on_event)?;

    on_event(EvalEvent::Start {
        total: config.shots.len() * types.len() * config.seeds.len(),
    });
    let mut episodes = Vec::new();
    for &shots in &config.shots {
        for t in &types {
            for &seed in &config.seeds {
                let draw = EpisodeDraw {
                    defect_type: t,
                    shots,
                    seed,
                };
                let (result, maps) = run_episode(
                    &mut cache,
                    &usable,
                    config,
                    draw,
                    &mut warnings,
                    &mut on_event,
                )?;
                on_event(EvalEvent::Scored(Box::new(maps)));
                on_event(EvalEvent::Episode(result.clone()));
                episodes.push(result);
            }
        }
    }
    let mut report = aggregate(&usable.name, episodes, &types, &config.seeds);
    report.skipped = skipped;
    report.warnings = warnings.list;
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
        let mut pool: Vec<Sample> = category.train_good.clone();
        pool.extend(category.test_good().iter().cloned());
        for t in types {
            pool.extend(category.defects_of(t)?.iter().cloned());
        }
        let mut skipped = Vec::new();
        for chunk in pool.chunks(QUERY_BATCH) {
            for (i, e) in self.encode_chunk(chunk, config.limits)? {
                if config.fail_fast {
                    return Err(e);
                }
                let skip = SkippedImage {
                    path: chunk[i].image.clone(),
                    error: e.to_string(),
                };
                on_event(EvalEvent::Skipped(skip.clone()));
                skipped.push(skip);
            }
        }
        let broken: HashSet<&PathBuf> = skipped.iter().map(|s| &s.path).collect();
        let mut usable = category.clone();
        usable.train_good.retain(|s| !broken.contains(&s.image));
        for samples in usable.test.values_mut() {
            samples.retain(|s| !broken.contains(&s.image));
        }
        Ok((usable, skipped))
    }
}

/// Which episode to run.
#[derive(Clone, Copy)]
struct EpisodeDraw<'a> {
    defect_type: &'a str,
    shots: usize,
    seed: u64,
}

/// The run's warnings, and the defect supports already warned about (each is named once).
struct Warnings {
    list: Vec<Warning>,
    left_out: HashSet<PathBuf>,
}

/// One episode: draw supports and queries, fit on the cached support features (a defect
/// support whose mask has no defect pixel left is left out with a warning), score the queries
/// and compute the episode's metrics on its defect type.
fn run_episode(
    cache: &mut Cache<'_>,
    category: &MvtecCategory,
    config: &EvalConfig,
    draw: EpisodeDraw<'_>,
    warnings: &mut Warnings,
    on_event: &mut impl FnMut(EvalEvent),
) -> Result<(EpisodeResult, EpisodeMaps)> {
    let EpisodeDraw {
        defect_type,
        shots,
        seed,
    } = draw;
    let episode = sample_episode(
        category,
        &DefectSelection::Type(defect_type.to_string()),
        &EpisodeConfig {
            defect_shots: shots,
            normal_shots: config.normal_shots,
            seed,
        },
    )?;
    let mut defect_feats = Vec::with_capacity(shots);
    let mut defect_masks = Vec::with_capacity(shots);
    for s in &episode.defect_support {
        let encoded = cache.get(s)?;
        let mask = encoded
            .support_mask
            .as_ref()
            .filter(|m| m.defect_pixels() > 0);
        let Some(mask) = mask else {
            if warnings.left_out.insert(s.image.clone()) {
                let w = Warning::new(
                    s.mask.as_ref().unwrap_or(&s.image),
                    "defect support left out: its mask has no defect pixel",
                );
                on_event(EvalEvent::Warning(w.clone()));
                warnings.list.push(w);
            }
            continue;
        };
        defect_feats.push(encoded.features.clone());
        defect_masks.push(mask_to_tensor(mask, cache.encoder.device())?.unsqueeze(0)?);
    }
    let normal_feats = episode
        .normal_support
        .iter()
        .map(|s| Ok(cache.get(s)?.features.clone()))
        .collect::<Result<Vec<_>>>()?;
    let (defects, normals) = stack_supports(&defect_feats, &defect_masks, &normal_feats)?;
    let flipped = if config.model.flip_supports {
        let used: Vec<Sample> = episode
            .defect_support
            .iter()
            .filter(|s| !warnings.left_out.contains(&s.image))
            .chain(&episode.normal_support)
            .cloned()
            .collect();
        flipped_stacks(
            &used,
            |s, flip| cache.flipped_features(s, flip),
            &defect_feats,
            &normal_feats,
        )?
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
    let (scored, score_seconds) = score_queries(cache, &model, &episode.queries)?;
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

/// Scores the queries (those of one padded size together), each map brought to its ground
/// truth's size ([`CompareAt`]). Returns the maps and the seconds spent scoring.
fn score_queries(
    cache: &Cache<'_>,
    model: &FittedModel,
    queries: &[Sample],
) -> Result<(Vec<ScoredImage>, f64)> {
    let mut scored = Vec::with_capacity(queries.len());
    let mut score_seconds = 0.0;
    let mut q = 0;
    while q < queries.len() {
        let padded = cache.get(&queries[q])?.layout.padded;
        let mut end = q + 1;
        while end < queries.len()
            && end - q < QUERY_BATCH
            && cache.get(&queries[end])?.layout.padded == padded
        {
            end += 1;
        }
        let chunk = &queries[q..end];
        let feats = chunk
            .iter()
            .map(|s| Ok(cache.get(s)?.features.clone()))
            .collect::<Result<Vec<_>>>()?;
        let start = Instant::now();
        let signals = model.signals(&Tensor::cat(&feats, 0)?, None)?;
        let mut maps = Vec::with_capacity(chunk.len());
        for (i, s) in chunk.iter().enumerate() {
            maps.push(model.working_scored_grid(
                &signals.pixel.narrow(0, i, 1)?,
                &signals.image.narrow(0, i, 1)?,
                &cache.get(s)?.layout,
            )?);
        }
        score_seconds += start.elapsed().as_secs_f64();
        for (s, (map, image_score)) in chunk.iter().zip(maps) {
            let truth = &cache.get(s)?.truth;
            let (w, h) = (truth.width as usize, truth.height as usize);
            let map = if (map.width, map.height) == (w, h) {
                map
            } else {
                map.resized(w, h)
            };
            scored.push(ScoredImage {
                defect_type: s.defect_type.clone(),
                width: map.width,
                height: map.height,
                map: map.data,
                mask: truth.pixels.clone(),
                image_score,
            });
        }
        q = end;
    }
    Ok((scored, score_seconds))
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
        warnings: Vec::new(),
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
