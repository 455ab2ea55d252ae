//! The legacy (pre-zip, torch < 1.6) checkpoint layout, written by `torch.save(...,
//! _use_new_zipfile_serialization=False)`:
//!
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c`;
//! 2. a pickle of the protocol version (1001);
//! 3. a pickle of `sys_info` (`{'protocol_version', 'little_endian', 'type_sizes'}`);
//! 4. the main pickle, whose persistent ids are
//!    `('storage', storage_type, key, location, numel, view_metadata)`;
//! 5. a pickle of the list of storage keys;
//! 6. for each key in that order: the element count as 8 little-endian bytes, then the raw data.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use super::checkpoint::build_state_dict;
use super::pickle::{unpickle, Obj, PickleMode, Unpickled, Value};
use super::state_dict::StateDict;
use crate::{Error, Result};

/// The magic number torch pickles first in a legacy checkpoint.
pub(crate) const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
/// The only legacy protocol version torch ever wrote.
const LEGACY_PROTOCOL: i128 = 1001;

/// Reads a legacy torch checkpoint held in `data`.
pub(crate) fn load_legacy(path: &Path, data: &[u8]) -> Result<StateDict> {
    let bad = |problem: String| Error::invalid_weights(path, problem);
    let file_len = data.len() as u64;
    let mut pos = 0;
    let plain = |pos: &mut usize, what: &str| {
        unpickle(data, pos, PickleMode::Plain, 0)
            .map_err(|e| bad(format!("legacy torch {what}: {e}")))
    };

    let magic = plain(&mut pos, "magic number")?;
    if !matches!(magic.root, Value::Int(LEGACY_MAGIC)) {
        return Err(bad(
            "a pickle, but not a torch checkpoint (no torch magic number)".into(),
        ));
    }
    let protocol = plain(&mut pos, "protocol version")?;
    if !matches!(protocol.root, Value::Int(LEGACY_PROTOCOL)) {
        return Err(bad("unsupported legacy torch protocol version".into()));
    }
    let sys_info = plain(&mut pos, "sys_info")?;
    if is_big_endian(&sys_info) {
        return Err(bad(
            "checkpoint was written on a big-endian machine; not supported".into(),
        ));
    }

    let main = unpickle(data, &mut pos, PickleMode::StateDict, file_len)
        .map_err(|e| bad(format!("state dict: {e}")))?;
    let keys = plain(&mut pos, "storage key list")?;
    let keys = string_list(&keys)
        .ok_or_else(|| bad("storage key list is not a list of strings".into()))?;

    let mut storage_bytes: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    for key in keys {
        let declared = main
            .storages
            .iter()
            .find(|s| s.key == key)
            .ok_or_else(|| bad(format!("storage {key} is listed but never used")))?;
        let header_end = pos + 8;
        let header = data
            .get(pos..header_end)
            .ok_or_else(|| bad(format!("truncated before the data of storage {key}")))?;
        let numel = u64::from_le_bytes(header.try_into().expect("slice of 8 bytes"));
        if numel != declared.numel {
            return Err(bad(format!(
                "storage {key} holds {numel} elements but the state dict declares {}",
                declared.numel
            )));
        }
        // Fits: `declared.numel * element_size` was checked against the file size.
        let len = (numel * declared.dtype.element_size() as u64) as usize;
        let bytes = header_end
            .checked_add(len)
            .and_then(|end| data.get(header_end..end))
            .ok_or_else(|| bad(format!("truncated inside the data of storage {key}")))?;
        if storage_bytes
            .insert(key.clone(), Cow::Borrowed(bytes))
            .is_some()
        {
            return Err(bad(format!("storage {key} is listed twice")));
        }
        pos = header_end + len;
    }
    build_state_dict(path, &main, &storage_bytes)
}

fn is_big_endian(sys_info: &Unpickled) -> bool {
    let Value::Obj(id) = sys_info.root else {
        return false;
    };
    let Obj::Dict(items) = &sys_info.arena[id] else {
        return false;
    };
    items.iter().any(|(k, v)| {
        matches!(k, Value::Str(s) if &**s == "little_endian") && matches!(v, Value::Bool(false))
    })
}

fn string_list(unpickled: &Unpickled) -> Option<Vec<String>> {
    let Value::Obj(id) = unpickled.root else {
        return None;
    };
    let Obj::List(items) = &unpickled.arena[id] else {
        return None;
    };
    items
        .iter()
        .map(|v| match v {
            Value::Str(s) => Some(s.to_string()),
            _ => None,
        })
        .collect()
}
