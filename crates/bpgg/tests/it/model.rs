//! The fit → model file → predict pipeline on synthetic data with the embedded backbone.

use anyhow::Result;
use bpgg::data::image_io::{load_mask, load_rgb, ImageLimits};
use bpgg::data::{write_synthetic_dataset, MvtecCategory, SynthConfig};
use bpgg::model::{fit, Encoder, FittedModel, ModelConfig, Scoring, SupportSet};
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
        image_size: 64,
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
    let encoder = Encoder::new(&Default::default(), 64, &Device::Cpu)?;
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

#[test]
fn bpgg_scoring_without_defects_and_broken_model_files_are_clear_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, mut supports) = setup(dir.path())?;
    let encoder = Encoder::new(&Default::default(), 64, &Device::Cpu)?;

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
    let needle = b"\"bpgg_version\":\"1\"";
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
