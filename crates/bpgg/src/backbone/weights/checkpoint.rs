//! From an unpickled torch object to a [`StateDict`]: flatten nested dicts into dotted names and
//! materialise every tensor from its storage bytes.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::pickle::{Obj, ObjId, Unpickled, Value};
use super::state_dict::StateDict;
use super::storage::materialise;
use crate::{Error, Result};

/// Deepest nesting of dicts accepted (`{"state_dict": {"model": {...}}}` is depth 3).
const MAX_DICT_NESTING: usize = 32;
/// A checkpoint may materialise at most this many times the elements of its storages: shared
/// storages (tied weights) legitimately repeat data, but a hostile file could point thousands of
/// tensors at one large storage.
const MAX_MATERIALISED_PER_STORED: u64 = 4;

/// Turns the main pickle of a torch checkpoint into a state dict.
///
/// The root must be a dict; nested dicts are flattened with `.` (`{"model": {"fc.weight": t}}`
/// gives `model.fc.weight`). Leaves that are not tensors (epoch counters, hyper-parameters, ...)
/// are skipped. `storage_bytes` maps storage keys to their raw little-endian bytes.
pub(crate) fn build_state_dict(
    path: &Path,
    unpickled: &Unpickled,
    storage_bytes: &HashMap<String, Cow<'_, [u8]>>,
) -> Result<StateDict> {
    let bad = |problem: String| Error::invalid_weights(path, problem);
    let root = match unpickled.root {
        Value::Obj(id) if matches!(unpickled.arena[id], Obj::Dict(_)) => id,
        Value::Tensor(_) => {
            return Err(bad(
                "the checkpoint holds a single tensor, not a state dict".into(),
            ))
        }
        _ => return Err(bad("the checkpoint's top-level object is not a dict".into())),
    };
    let mut leaves = Vec::new();
    let mut visited = HashSet::new();
    flatten(unpickled, root, "", 0, &mut visited, &mut leaves).map_err(bad)?;

    let stored: u64 = unpickled.storages.iter().map(|s| s.numel).sum();
    let mut materialised: u64 = 0;
    let mut seen_names = HashSet::new();
    let mut tensors = Vec::with_capacity(leaves.len());
    for (name, index) in leaves {
        if !seen_names.insert(name.clone()) {
            return Err(bad(format!("tensor name {name} appears twice")));
        }
        let spec = &unpickled.tensors[index];
        let numel = spec.size.iter().try_fold(1u64, |a, &s| a.checked_mul(s));
        materialised = numel
            .and_then(|n| materialised.checked_add(n))
            .ok_or_else(|| bad(format!("{name}: tensor size overflows")))?;
        if materialised
            > stored
                .saturating_mul(MAX_MATERIALISED_PER_STORED)
                .max(1 << 20)
        {
            return Err(bad(format!(
                "tensors claim {materialised} elements from storages holding only {stored}"
            )));
        }
        let storage = &unpickled.storages[spec.storage];
        let es = storage.dtype.element_size() as u64;
        let bytes = storage_bytes
            .get(&storage.key)
            .ok_or_else(|| bad(format!("{name}: storage {} has no data", storage.key)))?;
        if bytes.len() as u64 != storage.numel * es {
            return Err(bad(format!(
                "storage {} has {} bytes but declares {} elements of {}",
                storage.key,
                bytes.len(),
                storage.numel,
                storage.dtype.torch_name()
            )));
        }
        let bytes: &[u8] = match storage.view {
            None => bytes,
            // Bounds were checked against `numel` when the persistent id was read.
            Some((offset, size)) => &bytes[(offset * es) as usize..((offset + size) * es) as usize],
        };
        let tensor = materialise(bytes, storage.dtype, spec)
            .map_err(|problem| bad(format!("{name}: {problem}")))?;
        tensors.push((name, tensor));
    }
    Ok(StateDict::from_vec_unchecked(tensors))
}

fn flatten(
    unpickled: &Unpickled,
    dict: ObjId,
    prefix: &str,
    depth: usize,
    visited: &mut HashSet<ObjId>,
    leaves: &mut Vec<(String, usize)>,
) -> std::result::Result<(), String> {
    if depth >= MAX_DICT_NESTING {
        return Err(format!(
            "dicts nested deeper than {MAX_DICT_NESTING} levels"
        ));
    }
    if !visited.insert(dict) {
        return Err("the same dict appears twice in the checkpoint".into());
    }
    let Obj::Dict(items) = &unpickled.arena[dict] else {
        return Err("expected a dict".into());
    };
    for (key, value) in items {
        let key = match key {
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            _ => continue,
        };
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Tensor(index) => leaves.push((name, *index)),
            Value::Obj(id) if matches!(unpickled.arena[*id], Obj::Dict(_)) => {
                flatten(unpickled, *id, &name, depth + 1, visited, leaves)?;
            }
            _ => {}
        }
    }
    Ok(())
}
