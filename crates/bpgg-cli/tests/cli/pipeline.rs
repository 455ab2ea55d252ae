//! `bpgg fit` → `bpgg predict` → `bpgg score`, and `bpgg demo`.

use crate::util::{bpgg, s, small_dataset, stderr, stdout};

#[test]
fn fit_predict_score_round_trip_from_folders() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cat = small_dataset(&data);
    let model = dir.path().join("model.bpgg");
    // Folder layout: defect images of one type with their masks, normal images.
    let out = bpgg(&[
        "fit",
        "--defects",
        s(&cat.join("test/blob")),
        "--masks",
        s(&cat.join("ground_truth/blob")),
        "--normal",
        s(&cat.join("train/good")),
        "--size",
        "64",
        "-o",
        s(&model),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("3 defect and 4 normal"),
        "{}",
        stdout(&out)
    );

    let pred = dir.path().join("pred/tile/test");
    let out = bpgg(&[
        "predict",
        "--model",
        s(&model),
        s(&cat.join("test")),
        "-o",
        s(&pred),
        "--report",
        s(&dir.path().join("gallery")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The gallery page: one panel per image (15 < its limit), highest score first.
    let page = std::fs::read_to_string(dir.path().join("gallery/index.html")).unwrap();
    assert_eq!(page.matches("class=\"panel\"").count(), 15);
    for f in [
        "blob/000.tiff",
        "blob/000_mask.png",
        "blob/000_overlay.png",
        "good/002.tiff",
    ] {
        assert!(pred.join(f).is_file(), "{f} missing");
    }
    let lines = std::fs::read_to_string(pred.join("results.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 15);
    let first: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert!(first["image_score"].as_f64().is_some() && first["threshold"].as_f64().is_some());
    // The verdict is the image score against the image threshold chosen at fit time, on every
    // line; blob images (the supports' type) are found defective, good ones mostly not.
    let records: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut verdicts = (0, 0);
    for r in &records {
        let (score, cut) = (
            r["image_score"].as_f64().unwrap(),
            r["image_threshold"].as_f64().unwrap(),
        );
        assert_eq!(r["defective"].as_bool(), Some(score >= cut), "{r}");
        if r["image"].as_str().unwrap().contains("blob") {
            verdicts.0 += usize::from(score >= cut);
        } else if r["image"].as_str().unwrap().contains("good") {
            verdicts.1 += usize::from(score < cut);
        }
    }
    assert!(verdicts.0 >= 2 && verdicts.1 >= 2, "{verdicts:?}");
    // --image-threshold overrides it.
    let high = dir.path().join("pred-high");
    let out = bpgg(&[
        "predict",
        "--model",
        s(&model),
        s(&cat.join("test/blob")),
        "-o",
        s(&high),
        "--image-threshold",
        "1e9",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = std::fs::read_to_string(high.join("results.jsonl")).unwrap();
    for l in lines.lines() {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(r["defective"].as_bool(), Some(false), "{r}");
        assert_eq!(r["image_threshold"].as_f64(), Some(1e9));
    }

    // Maps have their image's size, so `score` reads them as they are.
    let out = bpgg(&[
        "score",
        "--predictions",
        s(&dir.path().join("pred")),
        "--data",
        s(&data),
        "--category",
        "tile",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    // --resume skips what is done.
    let out = bpgg(&[
        "predict",
        "--model",
        s(&model),
        s(&cat.join("test")),
        "-o",
        s(&pred),
        "--resume",
    ]);
    assert!(
        stdout(&out).contains("0 image(s) predicted, 15 already done"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_broken_query_is_skipped_with_an_error_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let model = dir.path().join("model.bpgg");
    let out = bpgg(&[
        "fit",
        "--normal",
        s(&cat.join("train/good")),
        "--scoring",
        "knn",
        "--size",
        "32",
        "-o",
        s(&model),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(cat.join("test/good/001.png"), b"\x89PNG\r\n\x1a\n garbage").unwrap();
    let pred = dir.path().join("pred");
    let out = bpgg(&[
        "predict",
        "--model",
        s(&model),
        s(&cat.join("test/good")),
        "-o",
        s(&pred),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("001.png"), "{}", stderr(&out));
    assert!(pred.join("000.tiff").is_file() && pred.join("002.tiff").is_file());
    assert!(!pred.join("001.tiff").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&pred)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn bpgg_scoring_without_defect_images_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let out = bpgg(&[
        "fit",
        "--normal",
        s(&cat.join("train/good")),
        "--scoring",
        "bpgg",
        "-o",
        s(&dir.path().join("m.bpgg")),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--scoring knn"), "{}", stderr(&out));
    let out = bpgg(&[
        "predict",
        "--model",
        s(&cat.join("train/good/000.png")),
        s(&cat),
        "-o",
        s(dir.path()),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("000.png: not a bpgg model file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = bpgg(&["demo", "-o", s(dir.path())]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("4/4") && text.contains("| **mean** |"),
        "{text}"
    );
    assert!(dir.path().join("model.bpgg").is_file());
    assert!(dir
        .path()
        .join("predictions/synthetic_tile/test/crack/000_overlay.png")
        .is_file());
}
