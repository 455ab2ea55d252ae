//! Image and mask decoding (PNG, JPEG, TIFF) from arbitrary bytes: errors, never panics, and the
//! pixel limit holds whatever size the header declares.
#![no_main]

use std::path::Path;

use bpgg::data::image_io::{decode_image_bytes, decode_mask_bytes, ImageLimits};
use libfuzzer_sys::fuzz_target;

/// Small enough to keep each run fast, large enough for every decoder path.
const FUZZ_MAX_PIXELS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let limits = ImageLimits {
        max_pixels: FUZZ_MAX_PIXELS,
    };
    let path = Path::new("fuzz.img");
    if let Ok(img) = decode_image_bytes(path, data, limits) {
        assert!(u64::from(img.width()) * u64::from(img.height()) <= FUZZ_MAX_PIXELS);
    }
    if let Ok(mask) = decode_mask_bytes(path, data, None, limits) {
        assert_eq!(
            mask.pixels.len(),
            mask.width as usize * mask.height as usize
        );
    }
});
