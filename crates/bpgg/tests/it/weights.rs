//! Weight-file import: valid torch (legacy and zip) and safetensors fixtures, hostile files, and
//! (when `BPGG_EFFNET_PTH` names it) the real EfficientNet-Lite0 checkpoint.
//!
//! Fixtures and their expected values come from `scripts/make_weight_fixtures.py` (written without
//! torch; the values are documented in its `tiny_state_dict` and `good_safetensors_bytes`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use bpgg::backbone::weights::{
    import_weights, is_efficientnet_lite0_trunk_key, load_state_dict, load_state_dict_with_format,
    CheckpointFormat, StateDict,
};
use bpgg::Error;
use candle_core::{DType, Device, Tensor};

use crate::pickles::legacy_checkpoint;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/weights")
        .join(name)
}

fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?)
}

/// The problem text of an `InvalidWeights` error (fails the test on any other outcome).
fn weights_problem<T: std::fmt::Debug>(result: bpgg::Result<T>, path: &Path) -> String {
    match result {
        Err(Error::InvalidWeights { path: p, problem }) => {
            assert_eq!(p, path, "the error must name the file");
            problem
        }
        other => panic!("{}: expected InvalidWeights, got {other:?}", path.display()),
    }
}

/// Values from `tiny_state_dict` in scripts/make_weight_fixtures.py.
fn check_tiny(sd: &StateDict) -> Result<()> {
    let keys: Vec<&str> = sd.keys().collect();
    assert_eq!(
        keys,
        [
            "conv.weight",
            "shared.a",
            "shared.b",
            "half.w",
            "bn.num_batches_tracked",
            "bn.weight"
        ]
    );
    let conv = sd.get("conv.weight").expect("conv.weight");
    assert_eq!(conv.dims(), [2, 3, 1, 2]);
    assert!(conv.is_contiguous());
    let mut expected = Vec::new();
    for o in 0..2 {
        for i in 0..3 {
            for w in 0..2 {
                expected.push((o + 2 * i + 6 * w) as f32);
            }
        }
    }
    assert_eq!(values(conv)?, expected);
    assert_eq!(values(sd.get("shared.a").expect("shared.a"))?, [11.0, 12.0]);
    let b = sd.get("shared.b").expect("shared.b");
    assert_eq!(b.dims(), [2, 2]);
    assert_eq!(values(b)?, [11.0, 12.0, 13.0, 14.0]);
    let half = sd.get("half.w").expect("half.w");
    assert_eq!(half.dtype(), DType::F32);
    assert_eq!(values(half)?, [0.5, -1.25, 2048.0]);
    let count = sd.get("bn.num_batches_tracked").expect("counter");
    assert_eq!(count.dtype(), DType::I64);
    assert_eq!(count.dims(), [] as [usize; 0]);
    assert_eq!(count.to_scalar::<i64>()?, 7);
    assert_eq!(
        values(sd.get("bn.weight").expect("bn.weight"))?,
        [1.5, -2.5]
    );
    Ok(())
}

#[test]
fn legacy_checkpoint_honours_strides_offsets_and_shared_storages() -> Result<()> {
    let (format, sd) = load_state_dict_with_format(&fixture("tiny_legacy.pth"))?;
    assert_eq!(format, CheckpointFormat::TorchLegacy);
    check_tiny(&sd)
}

#[test]
fn zip_checkpoint_with_any_archive_name_loads() -> Result<()> {
    let (format, sd) = load_state_dict_with_format(&fixture("tiny_zip.pth"))?;
    assert_eq!(format, CheckpointFormat::TorchZip);
    check_tiny(&sd)
}

#[test]
fn safetensors_loads_in_file_order_with_f16_widened() -> Result<()> {
    let (format, sd) = load_state_dict_with_format(&fixture("tiny.safetensors"))?;
    assert_eq!(format, CheckpointFormat::Safetensors);
    assert_eq!(sd.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(values(sd.get("a").expect("a"))?, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(sd.get("a").expect("a").dims(), [2, 2]);
    assert_eq!(values(sd.get("b").expect("b"))?, [0.5, 1.0, -2.0]);
    assert_eq!(sd.get("c").expect("c").to_vec1::<i64>()?, [5]);
    Ok(())
}

#[test]
fn format_is_detected_from_contents_not_extension() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let renamed = dir.path().join("weights.safetensors");
    std::fs::copy(fixture("tiny_zip.pth"), &renamed)?;
    let (format, sd) = load_state_dict_with_format(&renamed)?;
    assert_eq!(format, CheckpointFormat::TorchZip);
    check_tiny(&sd)
}

#[test]
fn hostile_globals_are_refused_by_name() {
    for (file, global) in [
        ("hostile_os_system.pth", "os.system"),
        ("hostile_os_system_zip.pth", "os.system"),
        ("hostile_eval_stack_global.pth", "builtins.eval"),
    ] {
        let path = fixture(file);
        let problem = weights_problem(load_state_dict(&path), &path);
        assert!(
            problem.contains(&format!(
                "refusing pickle global {global}: a state dict never needs it"
            )),
            "{file}: {problem}"
        );
    }
}

#[test]
fn committed_truncated_files_are_errors() {
    for file in [
        "truncated_legacy_10.pth",
        "truncated_legacy_40.pth",
        "truncated_legacy_492.pth",
        "truncated_legacy_981.pth",
        "truncated_zip.pth",
    ] {
        let path = fixture(file);
        let problem = weights_problem(load_state_dict(&path), &path);
        assert!(!problem.is_empty());
    }
}

#[test]
fn every_truncation_of_valid_files_is_an_error_not_a_panic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for file in ["tiny_legacy.pth", "tiny_zip.pth", "tiny.safetensors"] {
        let data = std::fs::read(fixture(file))?;
        let path = dir.path().join(file);
        for cut in 0..data.len() {
            std::fs::write(&path, &data[..cut])?;
            weights_problem(load_state_dict(&path), &path);
        }
    }
    Ok(())
}

#[test]
fn flipped_bytes_never_panic() -> Result<()> {
    // Every single-byte corruption must give Ok or a typed error; reaching the end is the test.
    let dir = tempfile::tempdir()?;
    let data = std::fs::read(fixture("tiny_legacy.pth"))?;
    let path = dir.path().join("flipped.pth");
    let mut errors = 0;
    for i in 0..data.len() {
        let mut bad = data.clone();
        bad[i] ^= 0xff;
        std::fs::write(&path, &bad)?;
        if load_state_dict(&path).is_err() {
            errors += 1;
        }
    }
    assert!(
        errors > data.len() / 2,
        "only {errors} of {} corruptions detected",
        data.len()
    );
    Ok(())
}

#[test]
fn out_of_bounds_views_and_huge_sizes_are_refused() {
    let path = fixture("offset_out_of_bounds.pth");
    let problem = weights_problem(load_state_dict(&path), &path);
    assert!(
        problem.contains("reaches element 4 of a storage of 4 elements"),
        "{problem}"
    );

    let path = fixture("huge_numel.pth");
    let problem = weights_problem(load_state_dict(&path), &path);
    assert!(
        problem.contains("declares 1152921504606846976 elements"),
        "{problem}"
    );
}

#[test]
fn bad_safetensors_header_and_garbage_are_refused() {
    let path = fixture("bad_offsets.safetensors");
    let problem = weights_problem(load_state_dict(&path), &path);
    assert!(problem.contains("safetensors"), "{problem}");

    let path = fixture("garbage.bin");
    let problem = weights_problem(load_state_dict(&path), &path);
    assert!(problem.contains("unrecognised format"), "{problem}");
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let path = fixture("does_not_exist.pth");
    match load_state_dict(&path) {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Io error, got {other:?}"),
    }
}

#[test]
fn import_round_trips_through_safetensors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("out.safetensors");
    let keep = |name: &str| name != "shared.b";
    let summary = import_weights(&fixture("tiny_legacy.pth"), &out, Some(&keep))?;
    assert_eq!(summary.format, CheckpointFormat::TorchLegacy);
    assert_eq!(summary.tensors_read, 6);
    assert_eq!(summary.tensors_filtered_out, 1);
    assert_eq!(summary.integer_tensors_dropped, 1);
    assert_eq!(summary.tensors_written, 4);
    assert_eq!(summary.parameters_written, 12 + 2 + 3 + 2);
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 1);

    let back = load_state_dict(&out)?;
    let original = load_state_dict(&fixture("tiny_legacy.pth"))?;
    assert_eq!(back.len(), 4);
    for (name, tensor) in back.iter() {
        let want = original.get(name).expect("same names");
        assert_eq!(tensor.dims(), want.dims(), "{name}");
        assert_eq!(values(tensor)?, values(want)?, "{name}");
    }
    Ok(())
}

#[test]
fn state_dict_helpers_and_var_builder() -> Result<()> {
    let sd = load_state_dict(&fixture("tiny_zip.pth"))?;
    assert_eq!(sd.len(), 6);
    assert_eq!(
        sd.filter_prefix("shared.").keys().collect::<Vec<_>>(),
        ["shared.a", "shared.b"]
    );
    assert_eq!(
        sd.strip_prefix("bn.").keys().collect::<Vec<_>>(),
        ["num_batches_tracked", "weight"]
    );
    let renamed = sd.clone().rename(|k| format!("model.{k}"))?;
    assert!(renamed.get("model.conv.weight").is_some());
    assert!(sd.clone().rename(|_| "same".to_string()).is_err());

    let vb = sd.to_var_builder(DType::F32, &Device::Cpu);
    let w = vb.pp("bn").get(2, "weight")?;
    assert_eq!(values(&w)?, [1.5, -2.5]);
    assert!(
        vb.pp("bn").get(3, "weight").is_err(),
        "shape mismatch must be an error"
    );
    Ok(())
}

#[test]
fn efficientnet_trunk_filter() {
    for name in [
        "_conv_stem.weight",
        "_bn0.running_var",
        "_blocks.0._bn1.bias",
        "_blocks.10._project_conv.weight",
    ] {
        assert!(is_efficientnet_lite0_trunk_key(name), "{name}");
    }
    for name in [
        "_blocks.11._expand_conv.weight",
        "_conv_head.weight",
        "_bn1.weight",
        "_fc.bias",
        "_blocks.x.y",
    ] {
        assert!(!is_efficientnet_lite0_trunk_key(name), "{name}");
    }
}

/// Checksums of the real EfficientNet-Lite0 checkpoint, from `scripts/effnet_weight_checksums.py`
/// (an independent numpy reader built on /work/shared/reference/legacy_torch_reader.py's
/// unpickler, honouring the stored strides): `(name, shape, sum, sum of value * (flat index % 7 + 1),
/// first contiguous value)`.
const EFFNET_CHECKSUMS: &[(&str, &[usize], f64, f64, f32)] = &include!("effnet_checksums.in");

#[test]
fn real_efficientnet_lite0_checkpoint_matches_reference() -> Result<()> {
    let Some(path) = std::env::var_os("BPGG_EFFNET_PTH") else {
        eprintln!(
            "skipping: set BPGG_EFFNET_PTH to efficientnet-lite0-57934424.pth \
             (scripts/fetch_efficientnet_lite0.sh downloads it) to run this check"
        );
        return Ok(());
    };
    let (format, sd) = load_state_dict_with_format(Path::new(&path))?;
    assert_eq!(format, CheckpointFormat::TorchLegacy);
    assert_eq!(sd.len(), 296);
    for &(name, shape, sum, weighted, first) in EFFNET_CHECKSUMS {
        let t = sd.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(t.dims(), shape, "{name}");
        let v: Vec<f64> = values(t)?.into_iter().map(f64::from).collect();
        let got_sum: f64 = v.iter().sum();
        let got_weighted: f64 = v
            .iter()
            .enumerate()
            .map(|(i, x)| x * ((i % 7) + 1) as f64)
            .sum();
        let tol = 1e-6 * v.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
        assert!(
            (got_sum - sum).abs() <= tol,
            "{name}: sum {got_sum} vs {sum}"
        );
        assert!(
            (got_weighted - weighted).abs() <= 8.0 * tol,
            "{name}: weighted sum {got_weighted} vs {weighted} (layout scrambled?)"
        );
        assert_eq!(v[0] as f32, first, "{name}: first value");
    }
    Ok(())
}

/// Writes [`legacy_checkpoint`] around `main` to a temp file.
fn legacy_with_main_pickle(dir: &Path, name: &str, main: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, legacy_checkpoint(main))?;
    Ok(path)
}

#[test]
fn hostile_pickle_structures_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cases: [(&str, &[u8], &str); 5] = [
        // d = {}; d["a"] = d; d["b"] = d: a self-referencing dict (cycles, exponential blow-up).
        (
            "cycle",
            b"\x80\x02}q\x00(X\x01\x00\x00\x00ah\x00X\x01\x00\x00\x00bh\x00u.",
            "the same dict appears twice",
        ),
        // INST opcode: instantiates classes, never needed.
        (
            "inst",
            b"\x80\x02(iposix\nsystem\n.",
            "unsupported pickle opcode 0x69",
        ),
        // An allow-listed module with a name outside the list.
        (
            "torch_load",
            b"\x80\x02ctorch\nload\nq\x00.",
            "refusing pickle global torch.load",
        ),
        // SETITEM on an empty stack.
        ("underflow", b"\x80\x02s.", "empty stack"),
        // A string that claims 4 GiB.
        ("long_string", b"\x80\x02X\xff\xff\xff\xffabc.", "truncated"),
    ];
    for (name, pickle, expected) in cases {
        let path = legacy_with_main_pickle(dir.path(), name, pickle)?;
        let problem = weights_problem(load_state_dict(&path), &path);
        assert!(problem.contains(expected), "{name}: {problem}");
    }
    Ok(())
}
