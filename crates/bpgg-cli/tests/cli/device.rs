//! `--device`: on every command that computes, `cpu` by default, a one-line error when a GPU
//! cannot be had, `auto` saying which device it took, and `bench parity` comparing a device
//! with the CPU.

use crate::util::{bpgg, s, small_dataset, stderr, stdout};

/// Every command that computes, by its arguments before `--help`.
const COMPUTING: [&[&str]; 12] = [
    &["fit"],
    &["predict"],
    &["eval"],
    &["demo"],
    &["train"],
    &["bench", "backbone"],
    &["bench", "predict"],
    &["bench", "train"],
    &["bench", "knn"],
    &["bench", "parity"],
    &["serve"],
    &["bench", "serve"],
];

#[test]
fn device_is_documented_on_every_command_that_computes() {
    for command in COMPUTING {
        let out = bpgg(&[command, &["--help"]].concat());
        let text = stdout(&out);
        assert!(out.status.success(), "{command:?}");
        assert!(
            text.contains("--device <DEVICE>")
                && text.contains("cuda:N")
                && text.contains("[default: cpu]"),
            "{command:?}:\n{text}"
        );
    }
}

#[test]
fn a_device_name_that_does_not_exist_is_a_usage_error() {
    let out = bpgg(&["bench", "knn", "--device", "tpu", "--reference", "none"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`tpu`: expected cpu, cuda, cuda:N"), "{err}");
}

/// Without the `cuda` feature a GPU asked for by number stops the command before it writes
/// anything, with one line that says how to get a CUDA build.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_in_a_cpu_build_is_one_line_that_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(dir.path());
    let model = dir.path().join("m.bpgg");
    for device in ["cuda", "cuda:1"] {
        let out = bpgg(&[
            "fit",
            "--device",
            device,
            "--normal",
            s(&cat.join("train/good")),
            "--size",
            "48",
            "-o",
            s(&model),
        ]);
        assert_eq!(out.status.code(), Some(1), "{device}");
        let err = stderr(&out);
        let ordinal = if device == "cuda" { "0" } else { "1" };
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "error: device cuda:{ordinal}: this bpgg was built without CUDA support"
            )) && err.contains("scripts/build_cuda.sh"),
            "{err}"
        );
        assert!(!model.exists(), "{device}: wrote a model");
    }
}

/// `auto` computes (on the CPU here, or on GPU 0 where a CUDA build finds one) and says which
/// device it took with `-v`; the model it writes predicts on the CPU.
#[test]
fn auto_says_which_device_it_took() {
    let dir = tempfile::tempdir().unwrap();
    let cat = small_dataset(dir.path());
    let model = dir.path().join("m.bpgg");
    let out = bpgg(&[
        "-v",
        "fit",
        "--device",
        "auto",
        "--normal",
        s(&cat.join("train/good")),
        "--size",
        "48",
        "-o",
        s(&model),
    ]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("device auto: "), "{err}");
    if !cfg!(feature = "cuda") {
        assert!(
            err.contains("device auto: cpu (device cuda:0: this bpgg was built without"),
            "{err}"
        );
    }
    let pred = dir.path().join("pred");
    let out = bpgg(&[
        "-q",
        "predict",
        "--device",
        "cpu",
        "--model",
        s(&model),
        s(&cat.join("test/good")),
        "-o",
        s(&pred),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(pred.join("results.jsonl").is_file());
}

/// `bench parity` on the CPU compares the CPU with itself: every criterion met, written as JSON.
#[test]
fn bench_parity_on_the_cpu_meets_every_criterion() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("parity.json");
    let out = bpgg(&[
        "bench",
        "parity",
        "--device",
        "cpu",
        "--size",
        "64",
        "--queries",
        "4",
        "--batch",
        "2",
        "--episodes",
        "2",
        "--backbones",
        "efficientnet-lite0",
        "--json",
        s(&json),
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("parity: every criterion met"), "{text}");
    for line in [
        "features efficientnet-lite0 blocks.4",
        "model bpgg",
        "model knn",
        "model hybrid",
        "training 2 episodes",
    ] {
        assert!(text.contains(line), "no `{line}` in\n{text}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    assert_eq!(report["device"], "cpu");
    assert_eq!(report["models"].as_array().unwrap().len(), 9);
    assert_eq!(
        report["training"]["cpu_losses"].as_array().unwrap().len(),
        2
    );
}
