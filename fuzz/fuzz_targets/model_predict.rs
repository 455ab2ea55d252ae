//! A model file that loads must also predict without panicking: the loaded model scores one
//! small image (models asking for more than 64 px are skipped to keep runs fast).
#![no_main]

use std::path::Path;

use bpgg::model::FittedModel;
use candle_core::Device;
use image::RgbImage;
use libfuzzer_sys::fuzz_target;

/// Largest `image_size` a fuzzed model may ask for.
const MAX_FUZZ_IMAGE_SIZE: u32 = 64;

fuzz_target!(|data: &[u8]| {
    let device = Device::Cpu;
    let Ok(model) = FittedModel::from_bytes(Path::new("fuzz.bpgg"), data, &device) else {
        return;
    };
    if model.config.image_size > MAX_FUZZ_IMAGE_SIZE {
        return;
    }
    let Ok(encoder) = model.encoder(&device) else {
        return;
    };
    let image = RgbImage::from_fn(40, 24, |x, y| image::Rgb([x as u8 * 6, y as u8 * 10, 128]));
    if let Ok(maps) = model.predict(&encoder, &[image]) {
        assert_eq!(maps.len(), 1);
    }
});
