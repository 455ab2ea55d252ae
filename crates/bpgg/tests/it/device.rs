//! One fitted model on the CPU and on another device (CUDA GPU 0 in builds with the `cuda`
//! feature and a GPU; the CPU again otherwise): the same maps, the same ranking of image scores,
//! and a model file that loads onto either device. Every test body runs once per device
//! (`bpgg::test_device!`).

use anyhow::Result;
use bpgg::backbone::{load_backbone, BackboneConfig};
use bpgg::data::image_io::{load_rgb, ImageLimits};
use bpgg::data::transform::images_to_batch;
use bpgg::model::{fit, Encoder, FittedModel, Scoring};
use bpgg::test_utils::max_abs_diff;
use candle_core::Device;

use crate::model::{config, setup};

/// Largest absolute difference of two maps allowed between devices (maps are probabilities in
/// 0..=1; the devices differ only in the order of `f32` sums).
const MAP_TOLERANCE: f32 = 1e-3;

/// Whether `b` orders every pair that `a` separates by more than `tie` the same way (a pair
/// closer than that may swap between devices without the ranking changing meaningfully).
fn same_ranking(a: &[f32], b: &[f32], tie: f32) -> bool {
    (0..a.len()).all(|i| (0..a.len()).all(|j| a[i] - a[j] <= tie || b[i] > b[j]))
}

/// The embedded backbone's feature maps on the device against the CPU's.
fn backbone_features_match_the_cpu(device: &bpgg::test_utils::Device) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (category, _) = setup(dir.path())?;
    let images = category
        .test_good()
        .iter()
        .map(|s| load_rgb(&s.image, ImageLimits::default()))
        .collect::<bpgg::Result<Vec<_>>>()?;
    let batch = images_to_batch(&images, &Device::Cpu)?;
    let config = BackboneConfig::default();
    let on_cpu = load_backbone(&config, &Device::Cpu)?.forward_features(&batch)?;
    let on_device = load_backbone(&config, device)?.forward_features(&batch.to_device(device)?)?;
    assert_eq!(on_cpu.maps.len(), on_device.maps.len());
    for (a, b) in on_cpu.maps.iter().zip(&on_device.maps) {
        assert!(b.tensor.device().same_device(device));
        let scale = max_abs_diff(&a.tensor, &a.tensor.zeros_like()?)?;
        let diff = max_abs_diff(&a.tensor, &b.tensor)?;
        assert!(scale > 0.0, "{}: all-zero features", a.name);
        assert!(diff <= 1e-4 * scale, "{}: {diff} of {scale}", a.name);
    }
    Ok(())
}
bpgg::test_device!(
    backbone_features_match_the_cpu,
    backbone_features_match_the_cpu_cpu,
    backbone_features_match_the_cpu_cuda
);

/// For every scoring: a model fitted on the CPU and one fitted on the device, each also read
/// back from its file onto the other device, give the CPU model's maps within
/// [`MAP_TOLERANCE`] and rank the images alike.
fn fitted_models_give_the_same_maps_on_the_device(device: &bpgg::test_utils::Device) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (category, supports) = setup(dir.path())?;
    let images = category.test["blob"][2..]
        .iter()
        .chain(category.test_good())
        .map(|s| load_rgb(&s.image, ImageLimits::default()))
        .collect::<bpgg::Result<Vec<_>>>()?;
    let cpu = Device::Cpu;
    let backbone = Default::default();
    let (cpu_encoder, encoder) = (
        Encoder::new(&backbone, &cpu)?,
        Encoder::new(&backbone, device)?,
    );
    for scoring in [Scoring::Bpgg, Scoring::Knn, Scoring::Hybrid] {
        let reference = fit(&cpu_encoder, &supports, &config(scoring))?;
        let (expected, expected_scores): (Vec<_>, Vec<f32>) = reference
            .predict_scored(&cpu_encoder, &images)?
            .into_iter()
            .unzip();
        let fitted_here = fit(&encoder, &supports, &config(scoring))?;
        let path = dir.path().join(format!("{scoring}.bpgg"));
        let from_cpu_file = FittedModel::from_bytes(&path, &reference.to_bytes()?, device)?;
        let from_device_file = FittedModel::from_bytes(&path, &fitted_here.to_bytes()?, &cpu)?;
        assert_eq!(fitted_here.config, reference.config);
        let threshold_gap = (fitted_here.threshold - reference.threshold).abs();
        assert!(
            threshold_gap <= MAP_TOLERANCE,
            "{scoring}: thresholds {threshold_gap} apart"
        );
        let image_gap = (fitted_here.image_threshold - reference.image_threshold).abs();
        assert!(
            image_gap <= MAP_TOLERANCE,
            "{scoring}: image thresholds {image_gap} apart"
        );
        for (what, model, on) in [
            ("fitted on the device", &fitted_here, &encoder),
            (
                "CPU model file read onto the device",
                &from_cpu_file,
                &encoder,
            ),
            (
                "device model file read onto the CPU",
                &from_device_file,
                &cpu_encoder,
            ),
        ] {
            let (maps, scores): (Vec<_>, Vec<f32>) =
                model.predict_scored(on, &images)?.into_iter().unzip();
            let mut worst = 0f32;
            for (a, b) in expected.iter().zip(&maps) {
                assert_eq!((a.width, a.height), (b.width, b.height));
                let diff = a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs());
                worst = diff.fold(
                    worst,
                    |w, d| if d.is_nan() { f32::INFINITY } else { w.max(d) },
                );
            }
            assert!(
                worst <= MAP_TOLERANCE,
                "{scoring}, {what} on {device:?}: maps {worst} apart"
            );
            assert!(
                same_ranking(&expected_scores, &scores, MAP_TOLERANCE),
                "{scoring}, {what}: image scores {scores:?} rank unlike the CPU's {expected_scores:?}"
            );
        }
    }
    Ok(())
}
bpgg::test_device!(
    fitted_models_give_the_same_maps_on_the_device,
    fitted_models_give_the_same_maps_on_the_device_cpu,
    fitted_models_give_the_same_maps_on_the_device_cuda
);

#[test]
fn same_ranking_ignores_only_near_ties() {
    assert!(same_ranking(&[0.1, 0.5, 0.9], &[0.2, 0.6, 0.7], 1e-3));
    assert!(!same_ranking(&[0.1, 0.5, 0.9], &[0.2, 0.8, 0.7], 1e-3));
    assert!(same_ranking(&[0.5, 0.5004], &[0.5004, 0.5], 1e-3));
    assert!(!same_ranking(&[0.5, 0.51], &[0.51, 0.5], 1e-3));
}
