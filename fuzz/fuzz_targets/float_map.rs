//! The float anomaly-map reader: the first byte picks the format (even: float32 TIFF, odd:
//! `.npy`), the rest is the file.
#![no_main]

use std::path::Path;

use bpgg::data::float_map::FloatMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let path = if selector % 2 == 0 {
        "fuzz.tiff"
    } else {
        "fuzz.npy"
    };
    if let Ok(map) = FloatMap::from_bytes(Path::new(path), bytes) {
        assert_eq!(map.data.len(), map.width * map.height);
    }
});
