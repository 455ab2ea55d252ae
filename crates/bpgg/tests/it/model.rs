//! The fit → model file → predict pipeline on synthetic data with the embedded backbone.

use anyhow::Result;
use bpgg::data::image_io::{load_mask, load_rgb, ImageLimits};
use bpgg::data::{write_synthetic_dataset, MvtecCategory, SynthConfig};
use bpgg::model::{fit, Encoder, FittedModel, InputSize, ModelConfig, Scoring, SupportSet};
use bpgg::Error;
use candle_core::Device;

/// A small synthetic category at 64 px and the supports of one episode.
pub(crate) fn setup(dir: &std::path::Path) -> Result<(MvtecCategory, SupportSet)> {
    let cat_dir = write_synthetic_dataset(
        dir,
        &SynthConfig {
            size: 64,
            train_good: 4,
            test_good: 3,
            per_type: 4,
            kinds: vec![bpgg::data::DefectKind::Blob],
            ..SynthConfig::default()
        },
    )?;
    let category = MvtecCategory::open(&cat_dir)?;
    let limits = ImageLimits::default();
    let mut supports = SupportSet::default();
    for s in &category.test["blob"][..2] {
        let img = load_rgb(&s.image, limits)?;
        let mask = load_mask(s.mask.as_ref().unwrap(), Some(img.dimensions()), limits)?;
        supports.defects.push((s.stem.clone(), img, mask));
    }
    for s in &category.train_good {
        supports
            .normals
            .push((s.stem.clone(), load_rgb(&s.image, limits)?));
    }
    Ok((category, supports))
}

pub(crate) fn config(scoring: Scoring) -> ModelConfig {
    ModelConfig {
        size: InputSize::LongSide(64),
        scoring,
        ..ModelConfig::default()
    }
}

/// Pixel AUROC of the model's maps on the unseen blob images and the good test images.
fn auroc_on_queries(
    model: &FittedModel,
    encoder: &Encoder,
    category: &MvtecCategory,
) -> Result<f64> {
    let limits = ImageLimits::default();
    let queries: Vec<_> = category.test["blob"][2..]
        .iter()
        .chain(category.test_good())
        .collect();
    let images = queries
        .iter()
        .map(|s| load_rgb(&s.image, limits))
        .collect::<bpgg::Result<Vec<_>>>()?;
    let maps = model.predict(encoder, &images)?;
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for (s, map) in queries.iter().zip(&maps) {
        assert_eq!((map.width, map.height), (64, 64));
        scores.extend_from_slice(&map.data);
        match &s.mask {
            Some(m) => labels.extend(load_mask(m, Some((64, 64)), limits)?.pixels),
            None => labels.extend(std::iter::repeat_n(false, 64 * 64)),
        }
    }
    Ok(bpgg_metrics::roc_auc(&scores, &labels)?)
}

#[test]
fn every_scoring_localizes_synthetic_blobs_and_survives_a_round_trip() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (category, supports) = setup(dir.path())?;
    let encoder = Encoder::new(&Default::default(), &Device::Cpu)?;
    for scoring in [Scoring::Bpgg, Scoring::Knn, Scoring::Hybrid] {
        let model = fit(&encoder, &supports, &config(scoring))?;
        let auroc = auroc_on_queries(&model, &encoder, &category)?;
        assert!(auroc > 0.9, "{scoring}: pixel AUROC {auroc}");
        assert!(model.threshold.is_finite());

        let path = dir.path().join(format!("{scoring}.bpgg"));
        model.save(&path)?;
        let loaded = FittedModel::load(&path, &Device::Cpu)?;
        assert_eq!(loaded.config, model.config);
        assert_eq!(loaded.threshold, model.threshold);
        let img = load_rgb(&category.test["blob"][3].image, ImageLimits::default())?;
        let a = model.predict(&encoder, std::slice::from_ref(&img))?;
        let b = loaded.predict(&encoder, &[img])?;
        // The bank is re-normalised on load: equal up to float rounding.
        let worst = a[0]
            .data
            .iter()
            .zip(&b[0].data)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-5,
            "{scoring}: maps differ by {worst} after save/load"
        );
    }
    Ok(())
}

/// Image AUROC of the model's own image scores on the unseen blob images against the good ones.
fn image_auroc_on_queries(
    model: &FittedModel,
    encoder: &Encoder,
    category: &MvtecCategory,
) -> Result<f64> {
    let limits = ImageLimits::default();
    let queries: Vec<_> = category.test["blob"][2..]
        .iter()
        .chain(category.test_good())
        .collect();
    let images = queries
        .iter()
        .map(|s| load_rgb(&s.image, limits))
        .collect::<bpgg::Result<Vec<_>>>()?;
    let scored = model.predict_scored(encoder, &images)?;
    let scores: Vec<f32> = scored.iter().map(|(_, s)| *s).collect();
    let labels: Vec<bool> = queries.iter().map(|s| s.is_defect()).collect();
    Ok(bpgg_metrics::image_auroc(&scores, &labels)?)
}

#[test]
fn every_scoring_works_from_one_normal_image() -> Result<()> {
    // N = 1 (and K = 1): no scoring may refuse it, and each still localizes and detects.
    let dir = tempfile::tempdir()?;
    let (category, mut supports) = setup(dir.path())?;
    supports.defects.truncate(1);
    supports.normals.truncate(1);
    let encoder = Encoder::new(&Default::default(), &Device::Cpu)?;
    for scoring in [Scoring::Bpgg, Scoring::Knn, Scoring::Hybrid, Scoring::Auto] {
        let model = fit(&encoder, &supports, &config(scoring))?;
        let auroc = auroc_on_queries(&model, &encoder, &category)?;
        assert!(auroc > 0.9, "{scoring}: pixel AUROC {auroc}");
        let image = image_auroc_on_queries(&model, &encoder, &category)?;
        assert!(image > 0.8, "{scoring}: image AUROC {image}");
        assert!(model.threshold.is_finite() && model.image_threshold.is_finite());
        if scoring == Scoring::Auto {
            assert_eq!(model.config.scoring, Scoring::Hybrid);
        }
    }
    // Normal images only (K = 0, N = 1): k-NN, calibrated on the one image itself.
    let normal_only = SupportSet {
        defects: Vec::new(),
        normals: supports.normals.clone(),
    };
    let model = fit(&encoder, &normal_only, &config(Scoring::Auto))?;
    assert_eq!(model.config.scoring, Scoring::Knn);
    assert!(auroc_on_queries(&model, &encoder, &category)? > 0.9);
    // Defect images only (K = 1, N = 0): hybrid's normal side is the defect image's background.
    let defect_only = SupportSet {
        defects: supports.defects.clone(),
        normals: Vec::new(),
    };
    for scoring in [Scoring::Auto, Scoring::Knn, Scoring::Bpgg] {
        let model = fit(&encoder, &defect_only, &config(scoring))?;
        let auroc = auroc_on_queries(&model, &encoder, &category)?;
        assert!(
            auroc > 0.9,
            "{scoring} without normal images: pixel AUROC {auroc}"
        );
    }
    Ok(())
}

#[test]
fn image_scores_are_the_models_and_judge_the_supports_apart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (category, supports) = setup(dir.path())?;
    let encoder = Encoder::new(&Default::default(), &Device::Cpu)?;
    let model = fit(&encoder, &supports, &config(Scoring::Auto))?;
    let limits = ImageLimits::default();
    let images = [&category.test["blob"][3], &category.test_good()[0]]
        .iter()
        .map(|s| load_rgb(&s.image, limits))
        .collect::<bpgg::Result<Vec<_>>>()?;
    let scored = model.predict_scored(&encoder, &images)?;
    let direct = model.score(&encoder.encode(&images)?)?;
    for (i, (map, score)) in scored.iter().enumerate() {
        assert_eq!(*score, direct.image_scores[i]);
        // The image score is not the map's maximum: it comes from the image signal's top cells.
        assert!(score.is_finite() && map.data.iter().all(|v| v.is_finite()));
    }
    // The verdicts on an unseen defect image and an unseen good image.
    assert!(
        scored[0].1 >= model.image_threshold,
        "{} vs {}",
        scored[0].1,
        model.image_threshold
    );
    assert!(
        scored[1].1 < model.image_threshold,
        "{} vs {}",
        scored[1].1,
        model.image_threshold
    );
    assert!(image_auroc_on_queries(&model, &encoder, &category)? > 0.9);

    // The image threshold survives a round trip.
    let path = dir.path().join("m.bpgg");
    model.save(&path)?;
    let loaded = FittedModel::load(&path, &Device::Cpu)?;
    assert_eq!(loaded.image_threshold, model.image_threshold);
    assert!(loaded.defect_bank.is_some());
    Ok(())
}

#[test]
fn a_second_defect_shot_adds_what_the_first_did_not_show() -> Result<()> {
    // Supports: a blob (K = 1), then also a scratch (K = 2). Scratch queries must be found
    // better with the second shot: the defect side keeps every shot's pixels.
    let dir = tempfile::tempdir()?;
    let cat_dir = write_synthetic_dataset(
        dir.path(),
        &SynthConfig {
            size: 64,
            train_good: 2,
            test_good: 2,
            per_type: 5,
            kinds: vec![
                bpgg::data::DefectKind::Blob,
                bpgg::data::DefectKind::Scratch,
            ],
            ..SynthConfig::default()
        },
    )?;
    let category = MvtecCategory::open(&cat_dir)?;
    let limits = ImageLimits::default();
    let support = |s: &bpgg::data::Sample| -> Result<(String, image::RgbImage, bpgg::data::Mask)> {
        let img = load_rgb(&s.image, limits)?;
        let mask = load_mask(s.mask.as_ref().unwrap(), Some(img.dimensions()), limits)?;
        Ok((s.stem.clone(), img, mask))
    };
    let normals = category
        .train_good
        .iter()
        .map(|s| Ok((s.stem.clone(), load_rgb(&s.image, limits)?)))
        .collect::<Result<Vec<_>>>()?;
    let queries = &category.test["scratch"][1..];
    let images = queries
        .iter()
        .map(|s| load_rgb(&s.image, limits))
        .collect::<bpgg::Result<Vec<_>>>()?;
    let mut truth = Vec::new();
    for s in queries {
        truth.extend(load_mask(s.mask.as_ref().unwrap(), Some((64, 64)), limits)?.pixels);
    }
    let encoder = Encoder::new(&Default::default(), &Device::Cpu)?;
    let mut ap = Vec::new();
    for defects in [
        vec![support(&category.test["blob"][0])?],
        vec![
            support(&category.test["blob"][0])?,
            support(&category.test["scratch"][0])?,
        ],
    ] {
        let supports = SupportSet {
            defects,
            normals: normals.clone(),
        };
        let model = fit(&encoder, &supports, &config(Scoring::Auto))?;
        let maps = model.predict(&encoder, &images)?;
        let scores: Vec<f32> = maps.iter().flat_map(|m| m.data.iter().copied()).collect();
        ap.push(bpgg_metrics::average_precision(&scores, &truth)?);
    }
    assert!(
        ap[1] > ap[0] + 0.05,
        "pixel AP on scratches, 1 vs 2 shots: {ap:?}"
    );
    Ok(())
}

#[test]
fn bpgg_scoring_without_defects_and_broken_model_files_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, mut supports) = setup(dir.path())?;
    let encoder = Encoder::new(&Default::default(), &Device::Cpu)?;

    let mut empty = supports.clone();
    empty.defects[0]
        .2
        .pixels
        .iter_mut()
        .for_each(|p| *p = false);
    let err = fit(&encoder, &empty, &config(Scoring::Bpgg))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mask of a defect support is empty"), "{err}");

    let model = fit(&encoder, &supports, &config(Scoring::Bpgg))?;
    supports.defects.clear();
    let err = fit(&encoder, &supports, &config(Scoring::Bpgg))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("scoring `bpgg` needs at least one defect image"),
        "{err}"
    );

    let path = dir.path().join("m.bpgg");
    model.save(&path)?;
    let bytes = std::fs::read(&path)?;
    std::fs::write(&path, &bytes[..bytes.len() / 2])?;
    let err = FittedModel::load(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, Error::InvalidData { .. }), "{err}");
    assert!(
        err.to_string().contains("m.bpgg: not a bpgg model file"),
        "{err}"
    );

    // A safetensors file that is not a model (a weight file).
    let weights = dir.path().join("w.safetensors");
    std::fs::write(&weights, bpgg::backbone::EMBEDDED_EFFICIENTNET_LITE0)?;
    let err = FittedModel::load(&weights, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no bpgg-model header"), "{err}");

    // Another version.
    let needle = b"\"bpgg_version\":\"3\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("version in the header");
    let mut other = bytes.clone();
    other[at + needle.len() - 2] = b'9';
    std::fs::write(&path, &other)?;
    let err = FittedModel::load(&path, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("version 9"), "{err}");
    Ok(())
}
