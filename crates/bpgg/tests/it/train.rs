//! Meta-training on a small synthetic category: interrupt + resume equals an uninterrupted
//! run, runs never overwrite each other, and a trained head travels through fit → model file →
//! predict.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::Result;
use bpgg::data::image_io::{load_mask, load_rgb, ImageLimits};
use bpgg::data::{write_synthetic_dataset, MvtecCategory, SynthConfig};
use bpgg::model::load_head;
use bpgg::model::{fit, Encoder, FittedModel, InputSize, ModelConfig, SupportSet};
use bpgg::train::{
    load_checkpoint, train, EpisodeShape, TrainConfig, TrainSource, LAST_CHECKPOINT,
};
use candle_core::Device;

fn dataset(dir: &Path) -> Result<std::path::PathBuf> {
    Ok(write_synthetic_dataset(
        dir,
        &SynthConfig {
            size: 64,
            train_good: 6,
            test_good: 2,
            per_type: 5,
            ..SynthConfig::default()
        },
    )?)
}

fn config(category: &Path) -> TrainConfig {
    TrainConfig {
        sources: vec![TrainSource {
            dir: category.to_path_buf(),
            base_types: vec!["blob".into(), "crack".into()],
            val_types: vec!["scratch".into()],
        }],
        image_size: 64,
        head_hidden: 32,
        episode: EpisodeShape {
            shots: 2,
            normal_shots: 2,
            queries: 1,
            normal_queries: 1,
        },
        lr: 5e-3,
        episodes: 6,
        checkpoint_every: 3,
        val_every: 3,
        val_episodes: 2,
        ..TrainConfig::default()
    }
}

fn head_values(path: &Path) -> Result<Vec<Vec<f32>>> {
    let c = load_checkpoint(path, &Device::Cpu)?;
    Ok(c.head
        .tensors()
        .iter()
        .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect())
}

#[test]
fn an_interrupted_and_resumed_run_equals_an_uninterrupted_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let category = dataset(dir.path())?;
    let cfg = config(&category);
    let limits = ImageLimits::default();
    let dev = Device::Cpu;

    let whole = dir.path().join("whole");
    let a = train(&cfg, &whole, false, limits, &dev, |_| {
        ControlFlow::Continue(())
    })?;
    assert_eq!(a.state.episode, 6);
    assert!(!a.stopped);
    assert_eq!(a.state.history.len(), 2);
    assert!(a
        .state
        .history
        .iter()
        .all(|h| h.loss.is_finite() && h.val_ap > 0.0));

    let split = dir.path().join("split");
    let b = train(&cfg, &split, false, limits, &dev, |e| match e {
        bpgg::train::TrainEvent::Checkpoint { .. } => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    })?;
    assert!(b.stopped);
    assert_eq!(b.state.episode, 3);
    assert_eq!(
        load_checkpoint(&split.join(LAST_CHECKPOINT), &dev)?
            .state
            .episode,
        3
    );
    let c = train(&cfg, &split, true, limits, &dev, |_| {
        ControlFlow::Continue(())
    })?;
    assert_eq!(c.state.episode, 6);

    // Bit-identical head and history.
    let wa = head_values(&whole.join(LAST_CHECKPOINT))?;
    let wc = head_values(&split.join(LAST_CHECKPOINT))?;
    assert_eq!(wa, wc);
    assert_eq!(a.state.history, c.state.history);
    // Training moved the head away from the identity (W₂ starts at zero).
    assert!(wa[2].iter().any(|&v| v != 0.0));
    Ok(())
}

#[test]
fn runs_are_never_overwritten_and_resume_needs_the_same_settings() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let category = dataset(dir.path())?;
    let mut cfg = config(&category);
    cfg.episodes = 3;
    let limits = ImageLimits::default();
    let dev = Device::Cpu;
    let out = dir.path().join("run");

    let err = train(
        &cfg,
        &out,
        true,
        limits,
        &dev,
        |_| ControlFlow::Continue(()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("nothing to resume"), "{err}");

    train(&cfg, &out, false, limits, &dev, |_| {
        ControlFlow::Continue(())
    })?;
    let before = std::fs::read(out.join(LAST_CHECKPOINT))?;
    let err = train(&cfg, &out, false, limits, &dev, |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("already holds a training run"), "{err}");

    let mut other = cfg.clone();
    other.lr = 1e-2;
    let err = train(&other, &out, true, limits, &dev, |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("last.safetensors"), "{err}");
    assert!(err.contains("other settings (lr)"), "{err}");
    assert_eq!(before, std::fs::read(out.join(LAST_CHECKPOINT))?);
    Ok(())
}

#[test]
fn a_trained_head_goes_through_fit_the_model_file_and_predict() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let category_dir = dataset(dir.path())?;
    let mut cfg = config(&category_dir);
    cfg.episodes = 3;
    let dev = Device::Cpu;
    let out = dir.path().join("run");
    train(&cfg, &out, false, ImageLimits::default(), &dev, |_| {
        ControlFlow::Continue(())
    })?;

    let model_config = ModelConfig {
        size: InputSize::Exact {
            width: 64,
            height: 64,
        },
        ..ModelConfig::default()
    };
    // A head trained at 64 px does not fit a 128 px model.
    let err = load_head(
        &out.join(LAST_CHECKPOINT),
        &model_config.backbone,
        Some(128),
        &dev,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("at 64 px, not"), "{err}");
    let head = load_head(
        &out.join(LAST_CHECKPOINT),
        &model_config.backbone,
        model_config.nominal_side(),
        &dev,
    )?;
    let encoder = Encoder::new(&model_config.backbone, &dev)?.with_head(Some(head));

    let category = MvtecCategory::open(&category_dir)?;
    let limits = ImageLimits::default();
    let mut supports = SupportSet::default();
    for s in &category.test["stain"][..2] {
        let img = load_rgb(&s.image, limits)?;
        let mask = load_mask(s.mask.as_ref().unwrap(), Some(img.dimensions()), limits)?;
        supports.defects.push((s.stem.clone(), img, mask));
    }
    for s in &category.train_good[..3] {
        supports
            .normals
            .push((s.stem.clone(), load_rgb(&s.image, limits)?));
    }
    let model = fit(&encoder, &supports, &model_config)?;
    assert!(model.head.is_some());
    let path = dir.path().join("model.safetensors");
    model.save(&path)?;
    let loaded = FittedModel::load(&path, &dev)?;
    let query = vec![load_rgb(&category.test["stain"][3].image, limits)?];
    let direct = model.predict(&encoder, &query)?;
    let reloaded = loaded.predict(&loaded.encoder(&dev)?, &query)?;
    // The bank is re-normalised on load: equal up to float rounding.
    let worst = max_difference(&direct[0].data, &reloaded[0].data);
    assert!(worst < 1e-5, "maps differ by {worst} after save/load");
    // Without the head the maps differ: the head is really applied.
    let plain = model.predict(&Encoder::new(&model_config.backbone, &dev)?, &query)?;
    let moved = max_difference(&plain[0].data, &direct[0].data);
    assert!(moved > 1e-3, "the head changed the map by only {moved}");
    Ok(())
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn several_categories_combine_into_one_base_set() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = dataset(dir.path())?;
    let second = write_synthetic_dataset(
        dir.path(),
        &SynthConfig {
            category: "other_tile".into(),
            size: 64,
            train_good: 3,
            test_good: 1,
            per_type: 5,
            kinds: vec![bpgg::data::DefectKind::Stain],
            seed: 1,
            ..SynthConfig::default()
        },
    )?;
    let sources = vec![
        TrainSource {
            dir: first,
            base_types: vec!["blob".into()],
            val_types: vec![],
        },
        TrainSource {
            dir: second,
            base_types: vec![],
            val_types: vec![],
        },
    ];
    let encoder = Encoder::new(&Default::default(), &Device::Cpu)?;
    let set =
        bpgg::train::TrainSet::build(&sources, &encoder, 64, ImageLimits::default(), 0, |_, _| {})?;
    let names: Vec<&str> = set.train.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["synthetic_tile/blob", "other_tile/stain"]);
    // 20% of 5 images held out for validation, per type; each category keeps its own normals.
    assert_eq!(set.train[0].images.len(), 4);
    assert_eq!(set.val[0].images.len(), 1);
    assert_eq!(set.normals.len(), 2);
    assert_eq!(set.normals[set.train[1].normals].len(), 3);
    let normal_type = &set.images[set.normals[1][0]].sample.defect_type;
    assert_eq!(normal_type, "good");
    Ok(())
}

#[test]
fn broken_checkpoints_are_named_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let category = dataset(dir.path())?;
    let mut cfg = config(&category);
    cfg.episodes = 2;
    cfg.checkpoint_every = 2;
    cfg.val_every = 2;
    let out = dir.path().join("run");
    train(
        &cfg,
        &out,
        false,
        ImageLimits::default(),
        &Device::Cpu,
        |_| ControlFlow::Continue(()),
    )?;
    let good = std::fs::read(out.join(LAST_CHECKPOINT))?;
    let load = |name: &str, bytes: &[u8]| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = load_checkpoint(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains(name), "{err}");
        err
    };
    for cut in [0, 7, good.len() / 2, good.len() - 1] {
        let err = load("cut.safetensors", &good[..cut]);
        assert!(
            err.contains("not a bpgg training checkpoint"),
            "cut at {cut}: {err}"
        );
    }
    let patch = |from: &[u8], to: &[u8]| -> Vec<u8> {
        let at = good.windows(from.len()).position(|w| w == from).unwrap();
        let mut b = good.clone();
        b[at..at + to.len()].copy_from_slice(to);
        b
    };
    let err = load(
        "v7.safetensors",
        &patch(b"\"bpgg_version\":\"1\"", b"\"bpgg_version\":\"7\""),
    );
    assert!(err.contains("checkpoint version 7"), "{err}");
    let err = load(
        "fmt.safetensors",
        &patch(b"bpgg-checkpoint", b"bpgg-checkpoinX"),
    );
    assert!(
        err.contains("not a bpgg training checkpoint (no header)"),
        "{err}"
    );
    let err = load(
        "width.safetensors",
        &patch(b"\\\"head_hidden\\\":32", b"\\\"head_hidden\\\":31"),
    );
    assert!(
        err.contains("head width 32 differs from the configured 31"),
        "{err}"
    );
    Ok(())
}
