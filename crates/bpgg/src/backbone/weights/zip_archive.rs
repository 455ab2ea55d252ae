//! The zip checkpoint layout written by `torch.save` since torch 1.6:
//! `<archive>/data.pkl` (the main pickle, persistent ids `('storage', type, key, location,
//! numel)`), `<archive>/data/<key>` (raw little-endian storage bytes), and small text entries
//! (`version`, `byteorder`). The top folder name varies with the writer.
//!
//! torch writes every entry uncompressed; compressed entries are refused, which also rules out
//! decompression bombs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use zip::{CompressionMethod, ZipArchive};

use super::checkpoint::build_state_dict;
use super::pickle::{unpickle, PickleMode};
use super::state_dict::StateDict;
use crate::{Error, Result};

/// Reads a zip torch checkpoint held in `data`.
pub(crate) fn load_zip(path: &Path, data: &[u8]) -> Result<StateDict> {
    let bad = |problem: String| Error::invalid_weights(path, problem);
    let file_len = data.len() as u64;
    let mut archive =
        ZipArchive::new(Cursor::new(data)).map_err(|e| bad(format!("not a valid zip: {e}")))?;

    let pickles: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .collect();
    let pickle_name = match pickles.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(bad(
                "zip has no <archive>/data.pkl: not a torch checkpoint".into()
            ))
        }
        _ => return Err(bad("zip has several <archive>/data.pkl entries".into())),
    };
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();

    if let Ok(order) = read_entry(&mut archive, &format!("{prefix}byteorder"), 16) {
        if order.trim_ascii() != b"little" {
            return Err(bad(
                "checkpoint was written big-endian; not supported".into()
            ));
        }
    }
    let pickle = read_entry(&mut archive, &pickle_name, file_len).map_err(bad)?;
    let mut pos = 0;
    let main = unpickle(&pickle, &mut pos, PickleMode::StateDict, file_len)
        .map_err(|e| bad(format!("{pickle_name}: {e}")))?;

    let mut storage_bytes: HashMap<String, Cow<'_, [u8]>> = HashMap::new();
    for storage in &main.storages {
        if storage_bytes.contains_key(&storage.key) {
            continue;
        }
        let name = format!("{prefix}data/{}", storage.key);
        // `numel * element_size` was checked against the file size while unpickling.
        let len = storage.numel * storage.dtype.element_size() as u64;
        let mut bytes = read_entry(&mut archive, &name, len).map_err(bad)?;
        if (bytes.len() as u64) < len {
            return Err(bad(format!(
                "{name} has {} bytes but its storage declares {} elements of {}",
                bytes.len(),
                storage.numel,
                storage.dtype.torch_name()
            )));
        }
        bytes.truncate(len as usize);
        storage_bytes.insert(storage.key.clone(), Cow::Owned(bytes));
    }
    build_state_dict(path, &main, &storage_bytes)
}

/// Reads at most `limit` bytes of the stored (uncompressed) entry `name`.
fn read_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
) -> std::result::Result<Vec<u8>, String> {
    let entry = archive
        .by_name(name)
        .map_err(|e| format!("zip entry {name}: {e}"))?;
    if entry.compression() != CompressionMethod::Stored {
        return Err(format!(
            "zip entry {name} is compressed ({:?}); torch checkpoints store entries uncompressed",
            entry.compression()
        ));
    }
    let take = entry.size().min(limit);
    let mut out = Vec::with_capacity(take as usize);
    entry
        .take(take)
        .read_to_end(&mut out)
        .map_err(|e| format!("zip entry {name}: {e}"))?;
    Ok(out)
}
