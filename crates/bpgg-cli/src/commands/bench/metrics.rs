//! `bpgg bench metrics`: [`bpgg_metrics::evaluate`] against `scripts/metrics_reference.py bench`
//! on the same seeded random test set, written to a temporary folder in the reference's input
//! format (see that script's docstring).

use std::path::Path;

use anyhow::{ensure, Context};
use bpgg::rng::SplitMix64;
use bpgg_metrics::{evaluate, MapRef, Metrics, DEFAULT_FPR_LIMIT};

use super::{json_f64, time_runs, BenchMetricsArgs};

/// Score added to defect pixels on top of uniform `[0, 1)` noise: classes overlap, so every
/// threshold sweep has real work to do.
const DEFECT_SIGNAL: f32 = 0.5;
/// Defect blobs per defective map: `1..=MAX_BLOBS`.
const MAX_BLOBS: usize = 3;
/// Blob radii are at most `size / BLOB_RADIUS_DIVISOR` pixels.
const BLOB_RADIUS_DIVISOR: usize = 8;
/// Smallest map side with room for a blob.
const MIN_SIZE: usize = 8;
/// Milliseconds per second.
const MS: f64 = 1e3;

/// A random test set: maps, masks, side length.
struct TestSet {
    maps: Vec<Vec<f32>>,
    masks: Vec<Vec<bool>>,
    size: usize,
}

pub fn run(args: &BenchMetricsArgs) -> anyhow::Result<()> {
    ensure!(
        args.maps >= 2,
        "--maps must be at least 2 (one defective, one normal)"
    );
    ensure!(args.size >= MIN_SIZE, "--size must be at least {MIN_SIZE}");
    let set = random_test_set(args.maps, args.size, args.seed);
    let defective = set.masks.iter().filter(|m| m.iter().any(|&d| d)).count();
    let (n, size, seed) = (args.maps, args.size, args.seed);
    println!(
        "{n} random maps {size}x{size} ({} pixels, {defective} defective maps), seed {seed}; \
         median of {} evaluations (pixel AUROC, AUPRO@{DEFAULT_FPR_LIMIT}, pixel AP, F1-max, \
         image AUROC)",
        n * size * size,
        args.repeats.max(1),
    );
    let refs = set
        .maps
        .iter()
        .zip(&set.masks)
        .map(|(map, mask)| MapRef::new(map, mask, set.size, set.size))
        .collect::<Result<Vec<_>, _>>()?;
    let mut metrics = None;
    let bpgg = time_runs(1, args.repeats, || {
        metrics = Some(evaluate(&refs, &[], DEFAULT_FPR_LIMIT)?);
        Ok(())
    })?;
    let metrics = metrics.expect("evaluated at least once");

    let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
    write_reference_input(dir.path(), &set)?;
    let reference = args.reference.run_script(
        "metrics_reference.py",
        &[
            "bench".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--repeats".into(),
            args.repeats.max(1).to_string(),
        ],
        &candle_core::Device::Cpu,
    );
    let head = format!(
        "metrics {} maps {1}x{1}: bpgg {2:.1} ms (min {3:.1})",
        args.maps,
        args.size,
        bpgg.median_s * MS,
        bpgg.min_s * MS
    );
    match reference {
        Ok(json) => {
            let python_s = json_f64(&json, "median_s")?;
            println!(
                "{head}, python {:.1} ms, ratio {:.2}",
                python_s * MS,
                bpgg.median_s / python_s
            );
            let expected = json
                .get("metrics")
                .context("reference output has no `metrics`")?;
            println!(
                "results agree: max |bpgg - python| = {:.1e} over the five metrics",
                max_difference(&metrics, expected)?
            );
        }
        Err(reason) => println!("{head}, python reference skipped ({reason})"),
    }
    Ok(())
}

/// `n` maps of `size x size`: half of them (at random, at least one of each kind) with
/// elliptic defect blobs; scores are uniform noise plus [`DEFECT_SIGNAL`] on defect pixels.
fn random_test_set(n: usize, size: usize, seed: u64) -> TestSet {
    let mut rng = SplitMix64::new(seed);
    let max_radius = (size / BLOB_RADIUS_DIVISOR).max(1);
    let mut maps = Vec::with_capacity(n);
    let mut masks = Vec::with_capacity(n);
    for i in 0..n {
        let defective = match i {
            0 => true,
            1 => false,
            _ => rng.below(2) == 0,
        };
        let mut mask = vec![false; size * size];
        if defective {
            for _ in 0..1 + rng.below(MAX_BLOBS) {
                let (cx, cy) = (rng.below(size) as f32, rng.below(size) as f32);
                let rx = (1 + rng.below(max_radius)) as f32;
                let ry = (1 + rng.below(max_radius)) as f32;
                for (index, m) in mask.iter_mut().enumerate() {
                    let dx = ((index % size) as f32 - cx) / rx;
                    let dy = ((index / size) as f32 - cy) / ry;
                    *m |= dx * dx + dy * dy <= 1.0;
                }
            }
        }
        let map = mask
            .iter()
            .map(|&d| rng.next_f32() + if d { DEFECT_SIGNAL } else { 0.0 })
            .collect();
        maps.push(map);
        masks.push(mask);
    }
    TestSet { maps, masks, size }
}

/// `shape.json`, `maps.f32` and `masks.u8` as `metrics_reference.py bench` reads them (image
/// labels are derived from the masks, as `evaluate` does with no labels).
fn write_reference_input(dir: &Path, set: &TestSet) -> anyhow::Result<()> {
    let shape = serde_json::json!({"n": set.maps.len(), "height": set.size, "width": set.size});
    let maps: Vec<u8> = set
        .maps
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let masks: Vec<u8> = set.masks.iter().flatten().map(|&d| u8::from(d)).collect();
    for (name, bytes) in [
        ("shape.json", shape.to_string().into_bytes()),
        ("maps.f32", maps),
        ("masks.u8", masks),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Largest absolute difference between bpgg's metrics and the reference's `metrics` object.
fn max_difference(metrics: &Metrics, expected: &serde_json::Value) -> anyhow::Result<f64> {
    let mut pairs = vec![
        (metrics.pixel_auroc, json_f64(expected, "pixel_auroc")?),
        (metrics.aupro, json_f64(expected, "aupro")?),
        (metrics.pixel_ap, json_f64(expected, "pixel_ap")?),
        (metrics.f1_max, json_f64(expected, "f1_max")?),
    ];
    if let Some(image_auroc) = metrics.image_auroc {
        pairs.push((image_auroc, json_f64(expected, "image_auroc")?));
    }
    Ok(pairs.iter().map(|(a, b)| (a - b).abs()).fold(0.0, f64::max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_set_is_seeded_and_has_both_kinds() {
        let a = random_test_set(6, 16, 3);
        let b = random_test_set(6, 16, 3);
        assert_eq!(a.maps, b.maps);
        assert!(a.masks[0].iter().any(|&d| d));
        assert!(a.masks[1].iter().all(|&d| !d));
        assert_ne!(random_test_set(6, 16, 4).maps, a.maps);
    }
}
