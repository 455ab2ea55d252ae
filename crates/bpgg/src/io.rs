//! File output shared by every stage: atomic writes.
//!
//! A file being written is named `.<name>.tmp-<pid>` (hidden, in the folder of its target) until
//! it is complete and renamed; a process killed mid-write leaves only such a temp file, which
//! [`remove_stale_temp_files`] cleans up on a resumed run.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a reader
/// (or a crash) never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}{TEMP_MARKER}{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// What separates a temp file's target name from the writer's process id.
const TEMP_MARKER: &str = ".tmp-";

/// Whether `name` is a temp file of [`write_atomic`] (`.<name>.tmp-<pid>`).
pub fn is_atomic_temp_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    rest.rsplit_once(TEMP_MARKER).is_some_and(|(target, pid)| {
        !target.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Removes the temp files that interrupted [`write_atomic`] calls left under `dir` (searched
/// recursively); returns how many were removed. Only one process may write to `dir` meanwhile.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if kind.is_dir() {
            removed += remove_stale_temp_files(&path)?;
        } else if kind.is_file() && is_atomic_temp_name(&entry.file_name()) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_cleaned() {
        assert!(is_atomic_temp_name(OsStr::new(".a.tiff.tmp-123")));
        assert!(!is_atomic_temp_name(OsStr::new("a.tiff.tmp-123")));
        assert!(!is_atomic_temp_name(OsStr::new(".a.tiff.tmp-")));
        assert!(!is_atomic_temp_name(OsStr::new(".hidden.png")));
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join(".x.png.tmp-42"), b"half").unwrap();
        write_atomic(&sub.join("x.png"), b"whole").unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()).unwrap(), 1);
        let names: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.png"]);
    }
}
