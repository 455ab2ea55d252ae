//! Hostile and broken input through the `bpgg` binary: a batch goes on past every bad file,
//! names it on stderr and exits 1; a killed `predict` leaves only whole files and `--resume`
//! finishes the job. (Library-level cases: `crates/bpgg/tests/it/bad_input.rs`.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bpgg::data::float_map::FloatMap;
use bpgg::data::image_io::DEFAULT_MAX_PIXELS;
use bpgg::data::{write_synthetic_dataset, SynthConfig};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

use crate::util::{bpgg, s, small_dataset, stderr, stdout};

/// A little-endian TIFF whose only IFD declares `w x h` 8-bit gray pixels: 122 bytes.
fn tiff_declaring(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    out.extend_from_slice(&8u32.to_le_bytes());
    // (tag, type, value) with type 3 = SHORT, 4 = LONG: width, height, bits per sample,
    // no compression, black-is-zero, strip offset, samples per pixel, rows per strip, strip bytes.
    let entries: [(u16, u16, u32); 9] = [
        (256, 4, w),
        (257, 4, h),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 122),
        (277, 3, 1),
        (278, 4, h),
        (279, 4, 4),
    ];
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&[0; 8]);
    out
}

/// Fits a k-NN model at 32 px on the good training images of `cat`.
fn knn_model(cat: &Path, model: &Path) {
    let out = bpgg(&[
        "fit",
        "--normal",
        s(&cat.join("train/good")),
        "--scoring",
        "knn",
        "--size",
        "32",
        "-o",
        s(model),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn max_pixels_is_documented_on_every_command_that_reads_images() {
    for command in [
        &["predict", "--help"][..],
        &["fit", "--help"],
        &["eval", "--help"],
        &["score", "--help"],
        &["data", "inspect", "--help"],
    ] {
        let out = bpgg(command);
        let text = stdout(&out);
        assert!(out.status.success(), "{command:?}");
        assert!(
            text.contains("--max-pixels <PIXELS>")
                && text.contains("decompression bombs")
                && text.contains(&format!("[default: {DEFAULT_MAX_PIXELS}]")),
            "{command:?}:\n{text}"
        );
    }
}

#[cfg(unix)] // non-UTF-8 file names among the queries
#[test]
fn predict_skips_every_broken_query_names_it_and_keeps_the_good_ones() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let model = dir.path().join("model.bpgg");
    knn_model(&cat, &model);

    let q = dir.path().join("q");
    std::fs::create_dir_all(&q).unwrap();
    let good = cat.join("test/good/000.png");
    std::fs::copy(&good, q.join("good.png")).unwrap();
    std::fs::write(q.join("bomb.tiff"), tiff_declaring(100_000, 100_000)).unwrap();
    std::fs::write(q.join("empty.jpg"), b"").unwrap();
    let tiff = {
        let mut buf = std::io::Cursor::new(Vec::new());
        RgbImage::new(40, 40)
            .write_to(&mut buf, image::ImageFormat::Tiff)
            .unwrap();
        buf.into_inner()
    };
    std::fs::write(q.join("cut.tiff"), &tiff[..tiff.len() / 2]).unwrap();
    std::fs::write(
        q.join(OsStr::from_bytes(b"bad\xff.png")),
        b"\x89PNG\r\n\x1a\nxx",
    )
    .unwrap();
    std::fs::copy(&good, q.join(OsStr::from_bytes(b"ok\xfe.png"))).unwrap();
    RgbImage::from_pixel(1, 1, Rgb([90, 90, 90]))
        .save(q.join("one.png"))
        .unwrap();
    // A good image at the end of a ~3000-byte path (outputs mirror it under the output folder).
    let mut deep = q.clone();
    for i in 0..14 {
        deep.push(format!("{i:02}{}", "d".repeat(198)));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::copy(&good, deep.join("deep.png")).unwrap();

    let pred = dir.path().join("pred");
    let out = bpgg(&["-q", "predict", "--model", s(&model), s(&q), "-o", s(&pred)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let bad = |name: &str, problem: &str| format!("error: {}/{name}: {problem} (skipped)", s(&q));
    let expected = [
        bad(
            "bomb.tiff",
            &format!(
                "image declares 100000x100000 = 10000000000 pixels, more than the limit of \
                 {DEFAULT_MAX_PIXELS} (raise it with --max-pixels if the file is genuine)"
            ),
        ),
        bad("empty.jpg", "file is empty (0 bytes)"),
        bad(
            "cut.tiff",
            "cannot decode image: the file is truncated (it ends inside the image data)",
        ),
    ];
    for line in &expected {
        assert!(err.lines().any(|l| l == line), "missing `{line}` in\n{err}");
    }
    let lossy = format!("error: {}/bad\u{fffd}.png: cannot decode image: ", s(&q));
    assert!(err.lines().any(|l| l.starts_with(&lossy)), "{err}");
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(
        stdout(&out).contains("4 image(s) predicted, 0 already done, 4 failed"),
        "{}",
        stdout(&out)
    );

    // The good ones, the 1x1 image, the non-UTF-8 name and the deep path, all have outputs.
    let deep_out = pred.join(deep.strip_prefix(&q).unwrap()).join("deep.tiff");
    for map in [
        pred.join("good.tiff"),
        pred.join("one.tiff"),
        pred.join(OsStr::from_bytes(b"ok\xfe.tiff")),
        deep_out.clone(),
    ] {
        assert!(map.is_file(), "{}", map.display());
    }
    assert_eq!(FloatMap::read(&pred.join("one.tiff")).unwrap().width, 1);
    let lines = std::fs::read_to_string(pred.join("results.jsonl")).unwrap();
    let maps: HashSet<String> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["map"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(maps.len(), 4, "{lines}");
    assert!(maps.contains(s(&deep_out)), "{lines}");
    assert!(
        maps.contains(&format!("{}/ok\u{fffd}.tiff", s(&pred))),
        "{lines}"
    );

    // --max-pixels is honoured: a limit below 48 x 48 refuses the good image.
    let out = bpgg(&[
        "-q",
        "predict",
        "--model",
        s(&model),
        s(&q.join("good.png")),
        "-o",
        s(&dir.path().join("pred2")),
        "--max-pixels",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "{}/good.png: image declares 48x48 = 2304 pixels, more than the limit of 100",
            s(&q)
        )),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fit_skips_empty_defect_masks_refuses_orphans_and_reads_16_bit_masks() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let defects = dir.path().join("defects");
    let masks = dir.path().join("masks");
    std::fs::create_dir_all(&defects).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    std::fs::copy(cat.join("test/blob/000.png"), defects.join("a.png")).unwrap();
    let fit = |size: &str| {
        bpgg(&[
            "fit",
            "--defects",
            s(&defects),
            "--masks",
            s(&masks),
            "--normal",
            s(&cat.join("train/good")),
            "--size",
            size,
            "-o",
            s(&dir.path().join("m.bpgg")),
        ])
    };

    // All zero: the support is left out with a warning naming it; the normal images remain.
    GrayImage::new(48, 48).save(masks.join("a.png")).unwrap();
    let out = fit("32");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "warning: {}: defect support left out: its mask has no defect pixel (none > 127)",
            s(&masks.join("a.png"))
        )
    );
    assert!(
        stdout(&out).starts_with("fitted knn scoring on 0 defect and 4 normal image(s)"),
        "{}",
        stdout(&out)
    );

    // Another stem.
    std::fs::rename(masks.join("a.png"), masks.join("b.png")).unwrap();
    let out = fit("32");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: {}: defect image has no mask named a.png in {}",
            s(&defects.join("a.png")),
            s(&masks)
        )
    );

    // A 16-bit label mask (values 0/1) works.
    std::fs::remove_file(masks.join("b.png")).unwrap();
    let labels: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_fn(48, 48, |x, y| {
        Luma([u16::from((16..32).contains(&x) && (16..32).contains(&y))])
    });
    labels.save(masks.join("a_mask.png")).unwrap();
    let out = fit("32");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn predict_with_a_broken_model_file_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let model = dir.path().join("model.bpgg");
    knn_model(&cat, &model);
    let bytes = std::fs::read(&model).unwrap();
    let predict = || {
        bpgg(&[
            "predict",
            "--model",
            s(&model),
            s(&cat.join("test/good")),
            "-o",
            s(&dir.path().join("pred")),
        ])
    };
    std::fs::write(&model, &bytes[..bytes.len() - 10]).unwrap();
    let out = predict();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: {}: not a bpgg model file (invalid safetensors header: \
             MetadataIncompleteBuffer)",
            s(&model)
        )
    );
    let version = bpgg::model::MODEL_VERSION;
    let needle = format!("\"bpgg_version\":\"{version}\"");
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap();
    // Same length, so the header stays well-formed: every digit of the version becomes 9.
    let foreign = "9".repeat(version.to_string().len());
    let mut other = bytes.clone();
    other[at..at + needle.len()]
        .copy_from_slice(format!("\"bpgg_version\":\"{foreign}\"").as_bytes());
    std::fs::write(&model, &other).unwrap();
    let out = predict();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: {}: model file version {foreign}, this bpgg reads versions 1 to {version}; \
             refit it",
            s(&model)
        )
    );
}

/// Asserts that every file a reader can see under `pred` is whole: maps decode as 64x64
/// float TIFFs, PNGs decode, results.jsonl holds complete JSON lines only; hidden files are
/// atomic-write temp files. Returns the number of maps.
fn assert_only_whole_files(pred: &Path) -> usize {
    let mut maps = 0;
    for path in files_under(pred) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') {
            assert!(
                bpgg::io::is_atomic_temp_name(path.file_name().unwrap()),
                "{}",
                path.display()
            );
        } else if name.ends_with(".tiff") {
            let map = FloatMap::read(&path).unwrap();
            assert_eq!((map.width, map.height), (64, 64), "{}", path.display());
            maps += 1;
        } else if name.ends_with(".png") {
            let img = image::open(&path).unwrap();
            assert_eq!((img.width(), img.height()), (64, 64), "{}", path.display());
        } else {
            assert_eq!(name, "results.jsonl");
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "partial last line");
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
    }
    maps
}

#[cfg(unix)] // SIGKILL
#[test]
fn kill_9_mid_predict_leaves_only_whole_files_and_resume_finishes() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig {
        category: "tile".into(),
        size: 64,
        train_good: 4,
        test_good: 0,
        per_type: 40,
        ..SynthConfig::default()
    };
    let cat = write_synthetic_dataset(&dir.path().join("data"), &config).unwrap();
    let model = dir.path().join("model.bpgg");
    knn_model(&cat, &model);
    let total = files_under(&cat.join("test")).len();
    assert_eq!(total, 160);

    let pred = dir.path().join("pred");
    let args = |resume: bool| {
        let mut a = vec![
            "-q".to_string(),
            "predict".into(),
            "--model".into(),
            s(&model).into(),
            s(&cat.join("test")).into(),
            "-o".into(),
            s(&pred).into(),
            "--batch".into(),
            "1".into(),
        ];
        if resume {
            a.push("--resume".into());
        }
        a
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_bpgg"))
        .args(args(false))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as the first result line is out: the run is then busy writing the next
    // image's files.
    let jsonl = pred.join("results.jsonl");
    let start = Instant::now();
    while std::fs::metadata(&jsonl).map_or(0, |m| m.len()) == 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "no output");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the run ended before the kill");

    let done = assert_only_whole_files(&pred);
    assert!(done < total, "{done} of {total} done before the kill");

    let out = Command::new(env!("CARGO_BIN_EXE_bpgg"))
        .args(args(true))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let summary = text.split(" image(s) predicted, ").collect::<Vec<_>>();
    let predicted: usize = summary[0].trim().parse().unwrap();
    let skipped: usize = summary[1].split(' ').next().unwrap().parse().unwrap();
    assert_eq!(predicted + skipped, total, "{text}");
    assert!(skipped >= 1, "{text}");

    assert_eq!(assert_only_whole_files(&pred), total);
    let temp: Vec<_> = files_under(&pred)
        .into_iter()
        .filter(|p| p.file_name().unwrap().as_encoded_bytes().starts_with(b"."))
        .collect();
    assert!(temp.is_empty(), "{temp:?}");
    let lines = std::fs::read_to_string(&jsonl).unwrap();
    let maps: HashSet<String> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["map"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(lines.lines().count(), total);
    assert_eq!(maps.len(), total);
}

#[test]
fn fail_fast_and_missing_files_are_one_line_without_repeated_causes() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(&dir.path().join("data"));
    let model = dir.path().join("model.bpgg");
    knn_model(&cat, &model);
    let jpeg = {
        let mut buf = std::io::Cursor::new(Vec::new());
        RgbImage::new(40, 40)
            .write_to(&mut buf, image::ImageFormat::Jpeg)
            .unwrap();
        buf.into_inner()
    };
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &jpeg[..jpeg.len() / 2]).unwrap();
    let pred = dir.path().join("pred");
    let out = bpgg(&[
        "-q",
        "predict",
        "--model",
        s(&model),
        s(&cut),
        "-o",
        s(&pred),
        "--fail-fast",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    let prefix = format!(
        "error: {}: cannot decode image: Format error decoding Jpeg: ",
        s(&cut)
    );
    assert!(err.starts_with(&prefix), "{err}");
    // The decoder's message appears once, not once per link of the error chain.
    let detail = err.trim_end().strip_prefix(&prefix).unwrap();
    assert_eq!(err.matches(detail).count(), 1, "{err}");

    let missing = dir.path().join("missing.bpgg");
    let out = bpgg(&["predict", "--model", s(&missing), s(&cut), "-o", s(&pred)]);
    assert_eq!(
        stderr(&out),
        format!(
            "error: {}: No such file or directory (os error 2)\n",
            s(&missing)
        )
    );
}

#[test]
fn eval_leaves_a_broken_image_out_names_it_and_fails_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cat = small_dataset(&data);
    // A query that cannot be decoded (cut in the middle) and a normal image that is empty.
    let cut = cat.join("test/blob/001.png");
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(cat.join("test/good/000.png"), b"").unwrap();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "-q",
            "eval",
            "--data",
            s(&data),
            "--category",
            "tile",
            "--types",
            "blob",
            "--shots",
            "1",
            "--normal-shots",
            "2",
            "--seeds",
            "2",
            "--size",
            "64",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        bpgg(&a)
    };
    let out = run(args(&[]));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("001.png") && err.contains("(skipped)"),
        "{err}"
    );
    assert!(
        err.contains("000.png: file is empty (0 bytes) (skipped)"),
        "{err}"
    );
    assert!(err.contains("2 image(s) could not be read"), "{err}");
    // The other images were evaluated: the table is there.
    assert!(stdout(&out).contains("| blob |"), "{}", stdout(&out));

    let out = run(args(&["--fail-fast"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(!stdout(&out).contains("| blob |"));
    assert!(stderr(&out).contains(".png"), "{}", stderr(&out));
}
