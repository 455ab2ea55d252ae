//! Weight files: a safe importer for PyTorch checkpoints (legacy pickle and zip) and safetensors.
//!
//! Torch checkpoints are pickles, and unpickling a hostile file with Python runs arbitrary code.
//! Here a restricted interpreter reads only what a state dict needs (see `pickle.rs`), declared
//! sizes are checked against the file, strided tensors are gathered with bounds checks, and every
//! problem is an [`Error::InvalidWeights`](crate::Error::InvalidWeights) naming the file.
//!
//! ```no_run
//! use bpgg::backbone::weights::{is_efficientnet_lite0_trunk_key, load_state_dict};
//! # fn main() -> bpgg::Result<()> {
//! let sd = load_state_dict("efficientnet-lite0-57934424.pth".as_ref())?;
//! let trunk = sd.filter(is_efficientnet_lite0_trunk_key);
//! trunk.save_safetensors("efficientnet_lite0_trunk.safetensors".as_ref())?;
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod format;
mod import;
mod legacy;
mod pickle;
mod safetensors_file;
mod state_dict;
mod storage;
mod trunk;
mod zip_archive;

pub use format::{
    detect_format, load_state_dict, load_state_dict_with_format, state_dict_from_bytes,
    CheckpointFormat,
};
pub use import::{import_weights, ImportSummary};
pub use safetensors_file::{read_safetensors_with_metadata, safetensors_from_bytes_with_metadata};
pub use state_dict::StateDict;
pub use trunk::{is_efficientnet_lite0_trunk_key, EFFICIENTNET_LITE0_TRUNK_LAST_BLOCK};
