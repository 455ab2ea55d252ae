//! Feature combination (`docs/ARCHITECTURE.md`, "The method"): several backbone stages are brought to one stride,
//! concatenated along channels and L2-normalised per pixel, giving the embedding that
//! prototypes and query pixels are compared in.

use candle_core::{DType, Tensor};

use super::FeatureMaps;
use crate::ops::{l2_normalize, resize_area, resize_bilinear};
use crate::{Error, Result};

/// The stride of the combined embedding used by BPGG (input pixels per embedding pixel).
pub const DEFAULT_EMBED_STRIDE: usize = 8;

/// Resizes every map of `maps` to the grid of stride `target_stride`, concatenates them along
/// channels (in the order of `maps`) and L2-normalises each pixel's vector.
///
/// Coarser maps (stride > target) are upsampled bilinearly (PyTorch `align_corners=False`);
/// finer maps are area-averaged (`adaptive_avg_pool2d`, i.e. `avg_pool2d(target/stride)` when
/// the grid divides evenly). The target grid is taken from a map that already has stride
/// `target_stride`, else it is `ceil(h·stride / target_stride)` of the finest map. Pick the
/// stages beforehand (the extractor returns only the selected layers).
///
/// # Shapes
/// - `maps`: stages `(b, c_l, H/s_l, W/s_l)`, same `b`.
/// - returns `(b, Σ c_l, H/target_stride, W/target_stride)`, `f32`.
pub fn embed(maps: &FeatureMaps, target_stride: usize) -> Result<Tensor> {
    if target_stride == 0 {
        return Err(Error::InvalidConfig(
            "embed: target stride must be positive".into(),
        ));
    }
    let finest = maps
        .maps
        .iter()
        .min_by_key(|m| m.stride)
        .ok_or_else(|| Error::InvalidConfig("embed: no feature map to combine".into()))?;
    let (th, tw) = match maps.maps.iter().find(|m| m.stride == target_stride) {
        Some(m) => {
            let (_, _, h, w) = m.tensor.dims4()?;
            (h, w)
        }
        None => {
            let (_, _, h, w) = finest.tensor.dims4()?;
            (
                (h * finest.stride).div_ceil(target_stride),
                (w * finest.stride).div_ceil(target_stride),
            )
        }
    };
    let batch = finest.tensor.dims4()?.0;
    let mut parts = Vec::with_capacity(maps.maps.len());
    for map in &maps.maps {
        let (b, _, _, _) = map.tensor.dims4()?;
        if b != batch {
            return Err(Error::ShapeMismatch(format!(
                "embed: stage `{}` has batch {b}, expected {batch}",
                map.name
            )));
        }
        if map.stride == 0 {
            return Err(Error::InvalidConfig(format!(
                "embed: stage `{}` has stride 0",
                map.name
            )));
        }
        let t = map.tensor.to_dtype(DType::F32)?;
        let resized = if map.stride > target_stride {
            resize_bilinear(&t, th, tw)?
        } else {
            resize_area(&t, th, tw)?
        };
        parts.push(resized);
    }
    let cat = Tensor::cat(&parts, 1)?;
    l2_normalize(&cat, 1)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::backbone::FeatureMap;

    fn map(name: &str, stride: usize, c: usize, h: usize, w: usize, value: f32) -> FeatureMap {
        FeatureMap {
            name: name.into(),
            stride,
            tensor: Tensor::full(value, (2, c, h, w), &Device::Cpu).unwrap(),
        }
    }

    #[test]
    fn embed_brings_stages_to_stride_8_and_normalises() {
        let maps = FeatureMaps {
            maps: vec![
                map("s4", 4, 2, 16, 16, 1.0),
                map("s8", 8, 3, 8, 8, 1.0),
                map("s16", 16, 4, 4, 4, 1.0),
            ],
        };
        let e = embed(&maps, DEFAULT_EMBED_STRIDE).unwrap();
        assert_eq!(e.dims4().unwrap(), (2, 9, 8, 8));
        let norms = e.sqr().unwrap().sum(1).unwrap().flatten_all().unwrap();
        for n in norms.to_vec1::<f32>().unwrap() {
            assert!((n - 1.0).abs() < 1e-5);
        }
        // Constant inputs stay constant: every component equals 1/3.
        let v = e.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|x| (x - 1.0 / 3.0).abs() < 1e-5));
    }

    #[test]
    fn embed_without_target_stage_uses_finest_grid() {
        let maps = FeatureMaps {
            maps: vec![map("s4", 4, 1, 15, 9, 1.0), map("s16", 16, 1, 4, 3, 2.0)],
        };
        let e = embed(&maps, 8).unwrap();
        assert_eq!(e.dims4().unwrap(), (2, 2, 8, 5));
    }

    #[test]
    fn empty_maps_are_an_error() {
        assert!(embed(&FeatureMaps::default(), 8).is_err());
    }
}
