//! `bpgg data inspect` / `bpgg data synth` and bad input.

use crate::util::{bpgg, s, small_dataset, stderr, stdout};

#[test]
fn synth_then_inspect_reports_counts_and_no_problems() {
    let dir = tempfile::tempdir().unwrap();
    let out = bpgg(&[
        "data",
        "synth",
        s(dir.path()),
        "--size",
        "40",
        "--per-type",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bpgg(&["data", "inspect", s(dir.path())]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("category synthetic_tile"), "{text}");
    for line in [
        "train/good               20",
        "test/crack                2",
        "test/good                 8",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    assert!(
        text.contains("40x40") && text.contains("no problems"),
        "{text}"
    );
}

#[test]
fn synth_writes_the_chosen_kinds_and_several_products() {
    let dir = tempfile::tempdir().unwrap();
    let out = bpgg(&[
        "data",
        "synth",
        s(dir.path()),
        "--category",
        "prod",
        "--categories",
        "2",
        "--texture",
        "random",
        "--kinds",
        "pits,fold",
        "--variety",
        "2",
        "--size",
        "32",
        "--train-good",
        "2",
        "--test-good",
        "1",
        "--per-type",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    for cat in ["prod_000", "prod_001"] {
        let cat = dir.path().join(cat);
        for f in [
            "test/pits/000.png",
            "ground_truth/pits/000_mask.png",
            "test/fold/000.png",
            "ground_truth/fold/000_mask.png",
            "train/good/001.png",
            "test/good/000.png",
        ] {
            assert!(cat.join(f).is_file(), "{f} missing in {}", cat.display());
        }
        assert!(!cat.join("test/blob").exists(), "only the chosen kinds");
    }
    // Each product has its own surface.
    let good = |c: &str| std::fs::read(dir.path().join(c).join("train/good/000.png")).unwrap();
    assert_ne!(good("prod_000"), good("prod_001"));

    for (flag, value, expect) in [
        ("--kinds", "blob,dent", "unknown defect kind `dent`"),
        ("--texture", "marble", "unknown texture `marble`"),
        ("--variety", "0.5", "variety must be in 1..=8"),
    ] {
        let out = bpgg(&["data", "synth", s(dir.path()), flag, value, "--size", "32"]);
        assert!(!out.status.success(), "{flag} {value} was accepted");
        assert!(stderr(&out).contains(expect), "{}", stderr(&out));
    }
}

#[test]
fn truncated_png_is_named_with_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(dir.path());
    let victim = cat.join("test/crack/001.png");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let out = bpgg(&["data", "inspect", s(&cat)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("1 problem(s)") && text.contains("test/crack/001.png"),
        "{text}"
    );
}

#[test]
fn wrong_size_mask_missing_mask_and_orphan_mask_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(dir.path());
    image::GrayImage::new(10, 10)
        .save(cat.join("ground_truth/blob/000_mask.png"))
        .unwrap();
    std::fs::remove_file(cat.join("ground_truth/scratch/002_mask.png")).unwrap();
    std::fs::copy(
        cat.join("ground_truth/stain/000_mask.png"),
        cat.join("ground_truth/stain/999_mask.png"),
    )
    .unwrap();
    let out = bpgg(&["data", "inspect", s(&cat)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("3 problem(s)"), "{text}");
    assert!(
        text.contains("blob/000_mask.png: mask is 10x10 but its image is 48x48"),
        "{text}"
    );
    assert!(
        text.contains("scratch/002.png: defect image has no mask"),
        "{text}"
    );
    assert!(
        text.contains("stain/999_mask.png: mask for an unknown image"),
        "{text}"
    );
}

#[test]
fn missing_dataset_is_a_one_line_error() {
    let out = bpgg(&["data", "inspect", "/nonexistent/bpgg-data"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: /nonexistent/bpgg-data"), "{err}");
}

#[test]
fn an_empty_good_folder_is_read_as_absent_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(dir.path());
    for f in std::fs::read_dir(cat.join("test/good")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let warning = format!(
        "warning: {}: folder has no images; treated as absent (no defect-free images from it)",
        s(&cat.join("test/good"))
    );
    let out = bpgg(&["data", "inspect", s(&cat)]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&warning) && text.contains("no problems"),
        "{text}"
    );

    // eval runs: pixel metrics, no image AUROC (no defect-free query).
    let out = bpgg(&[
        "eval",
        "--data",
        s(dir.path()),
        "--category",
        "tile",
        "--shots",
        "1",
        "--normal-shots",
        "2",
        "--seeds",
        "1",
        "--types",
        "blob",
        "--size",
        "48",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out).trim_end(), warning);
    let table = stdout(&out);
    let mean = table
        .lines()
        .find(|l| l.starts_with("| **mean**"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(mean.trim_end().ends_with("| - |"), "{mean}");
}
