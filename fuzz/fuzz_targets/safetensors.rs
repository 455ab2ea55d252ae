//! The safetensors weight reader with its metadata.
#![no_main]

use std::path::Path;

use bpgg::backbone::weights::safetensors_from_bytes_with_metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = safetensors_from_bytes_with_metadata(Path::new("fuzz.safetensors"), data);
});
