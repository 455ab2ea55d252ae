//! `bpgg score` on maps written by the test.

use bpgg::data::float_map::FloatMap;
use bpgg::data::image_io::{load_mask, ImageLimits};
use bpgg::data::MvtecCategory;
use bpgg::rng::SplitMix64;

use crate::util::{bpgg, s, small_dataset, stderr, stdout};

/// Writes one map per test image: the ground truth plus `noise` (uniform) everywhere.
fn write_maps(cat: &std::path::Path, pred: &std::path::Path, noise: f32, npy: bool) {
    let category = MvtecCategory::open(cat).unwrap();
    let mut rng = SplitMix64::new(5);
    for sample in category.test.values().flatten() {
        let img = image::open(&sample.image).unwrap();
        let (w, h) = (img.width(), img.height());
        let truth = match &sample.mask {
            Some(m) => {
                load_mask(m, Some((w, h)), ImageLimits::default())
                    .unwrap()
                    .pixels
            }
            None => vec![false; (w * h) as usize],
        };
        let data = truth
            .iter()
            .map(|&d| f32::from(u8::from(d)) + noise * rng.next_f32())
            .collect();
        let map = FloatMap {
            width: w as usize,
            height: h as usize,
            data,
        };
        let dir = pred.join("tile/test").join(&sample.defect_type);
        let ext = if npy { "npy" } else { "tiff" };
        let path = dir.join(format!("{}.{ext}", sample.stem));
        if npy {
            map.write_npy(&path).unwrap();
        } else {
            map.write_tiff(&path).unwrap();
        }
    }
}

#[test]
fn perfect_maps_score_one_and_json_has_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let pred = dir.path().join("pred");
    write_maps(&cat, &pred, 0.5, false);
    let json = dir.path().join("scores.json");
    let out = bpgg(&[
        "score",
        "--predictions",
        s(&pred),
        "--data",
        s(&dir.path().join("data")),
        "--category",
        "tile",
        "--json",
        s(&json),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("| overall |"), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for key in ["pixel_auroc", "aupro", "pixel_ap", "f1_max", "image_auroc"] {
        for group in [&v["overall"], &v["per_type"]["crack"], &v["mean"]] {
            let value = group[key].as_f64().unwrap();
            assert!((value - 1.0).abs() < 1e-9, "{key}: {v}");
        }
    }
}

#[test]
fn noisy_npy_maps_score_below_one() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let pred = dir.path().join("pred");
    write_maps(&cat, &pred, 3.0, true);
    let json = dir.path().join("scores.json");
    let out = bpgg(&[
        "score",
        "--predictions",
        s(&pred),
        "--data",
        s(&dir.path().join("data")),
        "--category",
        "tile",
        "--json",
        s(&json),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let auroc = v["overall"]["pixel_auroc"].as_f64().unwrap();
    assert!(auroc > 0.5 && auroc < 1.0, "{auroc}");
}

#[test]
fn missing_and_missized_predictions_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let pred = dir.path().join("pred");
    write_maps(&cat, &pred, 0.1, false);
    let data = dir.path().join("data");
    let victim = pred.join("tile/test/blob/001.tiff");
    FloatMap {
        width: 4,
        height: 4,
        data: vec![0.0; 16],
    }
    .write_tiff(&victim)
    .unwrap();
    let args = [
        "score",
        "--predictions",
        s(&pred),
        "--data",
        s(&data),
        "--category",
        "tile",
    ];
    let out = bpgg(&args);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("blob/001.tiff: map is 4x4 but the ground truth is 48x48"),
        "{err}"
    );
    std::fs::remove_file(&victim).unwrap();
    let out = bpgg(&args);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("missing prediction") && err.contains("blob/001"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
