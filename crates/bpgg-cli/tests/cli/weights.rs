//! `bpgg weights import` / `bpgg weights inspect` on the checkpoint fixtures of the library
//! (written by `scripts/make_weight_fixtures.py`; expected values are in its docstrings).

use std::path::{Path, PathBuf};

use bpgg::backbone::weights::{load_state_dict, StateDict};
use candle_core::{Device, Tensor};

use crate::util::{bpgg, s, stderr, stdout};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bpgg/tests/fixtures/weights")
        .join(name)
}

/// Asserts a failed run with exit code 1 and a single-line error naming `file`.
fn assert_one_line_error_naming(out: &std::process::Output, file: &Path) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(s(file)),
        "{err} does not name {}",
        file.display()
    );
}

#[test]
fn import_legacy_checkpoint_writes_contiguous_float_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("tiny.safetensors");
    let input = fixture("tiny_legacy.pth");
    let out = bpgg(&["weights", "import", s(&input), s(&output)]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    for expected in [
        "(legacy torch pickle): 6 tensors",
        "5 tensors, 23 parameters (float32)",
        "dropped 1 integer tensors",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in\n{text}");
    }
    let sd = load_state_dict(&output).unwrap();
    // safetensors stores tensors sorted by name.
    assert_eq!(
        sd.keys().collect::<Vec<_>>(),
        ["bn.weight", "conv.weight", "half.w", "shared.a", "shared.b"]
    );
    // A TensorFlow-strided view in the source: value[o, i, 0, w] = o + 2 i + 6 w.
    let conv = sd.get("conv.weight").unwrap();
    assert_eq!(conv.dims(), [2, 3, 1, 2]);
    let values = conv.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(values, [0., 6., 2., 8., 4., 10., 1., 7., 3., 9., 5., 11.]);
}

#[test]
fn import_zip_checkpoint_reports_its_format() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.safetensors");
    let out = bpgg(&["weights", "import", s(&fixture("tiny_zip.pth")), s(&output)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("(torch zip): 6 tensors"),
        "{}",
        stdout(&out)
    );
    assert_eq!(load_state_dict(&output).unwrap().len(), 5);
}

#[test]
fn import_trunk_keeps_only_stem_and_blocks_up_to_ten() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("effnet_like.safetensors");
    let names = [
        "_conv_stem.weight",
        "_bn0.weight",
        "_blocks.10._project_conv.weight",
        "_blocks.11._project_conv.weight",
        "_conv_head.weight",
        "_fc.bias",
    ];
    let tensors = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                Tensor::ones(2, candle_core::DType::F32, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    StateDict::new(tensors)
        .unwrap()
        .save_safetensors(&input)
        .unwrap();
    let output = dir.path().join("trunk.safetensors");
    let out = bpgg(&["weights", "import", s(&input), s(&output), "--trunk"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("3 tensors, 6 parameters"), "{text}");
    assert!(text.contains("left out 3 tensors"), "{text}");
    let mut kept: Vec<String> = load_state_dict(&output)
        .unwrap()
        .keys()
        .map(String::from)
        .collect();
    kept.sort();
    let mut expected = names[..3].to_vec();
    expected.sort();
    assert_eq!(kept, expected);
}

#[test]
fn import_trunk_of_a_foreign_checkpoint_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("trunk.safetensors");
    let input = fixture("tiny_legacy.pth");
    let out = bpgg(&["weights", "import", s(&input), s(&output), "--trunk"]);
    assert_one_line_error_naming(&out, &input);
    assert!(
        stderr(&out).contains("EfficientNet-Lite0"),
        "{}",
        stderr(&out)
    );
    assert!(!output.exists());
}

#[test]
fn hostile_pickles_are_refused_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "hostile_os_system.pth",
        "hostile_eval_stack_global.pth",
        "hostile_os_system_zip.pth",
    ] {
        let input = fixture(name);
        let output = dir.path().join(format!("{name}.safetensors"));
        let out = bpgg(&["weights", "import", s(&input), s(&output)]);
        assert_one_line_error_naming(&out, &input);
        assert!(!output.exists(), "{name}: wrote an output");
        let out = bpgg(&["weights", "inspect", s(&input)]);
        assert_one_line_error_naming(&out, &input);
    }
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(fixture("")).unwrap() {
        let input = entry.unwrap().path();
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("truncated_") {
            continue;
        }
        seen += 1;
        let output = dir.path().join(format!("{name}.safetensors"));
        let out = bpgg(&["weights", "import", s(&input), s(&output)]);
        assert_one_line_error_naming(&out, &input);
        assert!(!output.exists(), "{name}: wrote an output");
    }
    assert!(seen >= 5, "only {seen} truncated fixtures");
}

#[test]
fn missing_input_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("nope.pth");
    let out = bpgg(&[
        "weights",
        "import",
        s(&input),
        s(&dir.path().join("out.safetensors")),
    ]);
    assert_one_line_error_naming(&out, &input);
}

#[test]
fn inspect_lists_names_shapes_and_dtypes() {
    let input = fixture("tiny.safetensors");
    let out = bpgg(&["weights", "inspect", s(&input)]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("(safetensors): 3 tensors, 8 values"),
        "{text}"
    );
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["a", "[2,", "2]", "f32"],
            vec!["b", "[3]", "f32"],
            vec!["c", "[1]", "i64"],
        ]
    );

    let out = bpgg(&["weights", "inspect", s(&input), "-n", "1"]);
    let text = stdout(&out);
    assert!(text.contains("... 2 more (--all"), "{text}");
    let out = bpgg(&[
        "weights",
        "inspect",
        s(&fixture("tiny_legacy.pth")),
        "--all",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("conv.weight") && text.contains("[2, 3, 1, 2]"),
        "{text}"
    );
    assert!(
        text.contains("bn.num_batches_tracked") && text.contains("i64"),
        "{text}"
    );
}
