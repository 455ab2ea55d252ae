//! The PyTorch checkpoint importer (legacy pickle, zip, safetensors; format detected from the
//! bytes): a restricted unpickler that must refuse, never panic or allocate without bound.
#![no_main]

use std::path::Path;

use bpgg::backbone::weights::state_dict_from_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = state_dict_from_bytes(Path::new("fuzz.pth"), data);
});
