//! The bpgg model file reader (safetensors with bpgg_format/bpgg_version metadata and a JSON
//! config): every field checked, never a panic.
#![no_main]

use std::path::Path;

use bpgg::model::FittedModel;
use candle_core::Device;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = FittedModel::from_bytes(Path::new("fuzz.bpgg"), data, &Device::Cpu);
});
