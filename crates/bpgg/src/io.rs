//! File output shared by every stage: atomic writes.
//!
//! A file being written is named `.<name>.tmp-<pid>-<n>` (hidden, in the folder of its target,
//! `n` counting the writes of this process so that threads writing one target never share a temp
//! file) until it is complete, synced and renamed, and the folder is synced after the rename: a
//! process killed mid-write leaves only such a temp file, which [`remove_stale_temp_files`] cleans
//! up on a resumed run, and a file whose write returned survives a crash of the machine.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}{TEMP_MARKER}{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// What separates a temp file's target name from the writer's process id.
const TEMP_MARKER: &str = ".tmp-";

/// Makes a rename in `dir` durable (a no-op where folders cannot be opened for syncing).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Whether `name` is a temp file of [`write_atomic`] (`.<name>.tmp-<pid>-<n>`, or
/// `.<name>.tmp-<pid>` as earlier versions wrote them).
pub fn is_atomic_temp_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    rest.rsplit_once(TEMP_MARKER)
        .is_some_and(|(target, suffix)| {
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            let numbered = match suffix.split_once('-') {
                Some((pid, n)) => digits(pid) && digits(n),
                None => digits(suffix),
            };
            !target.is_empty() && numbered
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
        assert!(is_atomic_temp_name(OsStr::new(".a.tiff.tmp-123-7")));
        assert!(!is_atomic_temp_name(OsStr::new("a.tiff.tmp-123")));
        assert!(!is_atomic_temp_name(OsStr::new(".a.tiff.tmp-")));
        assert!(!is_atomic_temp_name(OsStr::new(".a.tiff.tmp-123-")));
        assert!(!is_atomic_temp_name(OsStr::new(".a.tiff.tmp-12x")));
        assert!(!is_atomic_temp_name(OsStr::new(".hidden.png")));
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join(".x.png.tmp-42"), b"half").unwrap();
        std::fs::write(sub.join(".x.png.tmp-42-3"), b"half").unwrap();
        write_atomic(&sub.join("x.png"), b"whole").unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()).unwrap(), 2);
        let names: Vec<_> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["x.png"]);
    }

    #[test]
    fn threads_writing_one_target_each_leave_a_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("shared.bin");
        std::thread::scope(|scope| {
            for i in 0..8u8 {
                let target = &target;
                scope.spawn(move || write_atomic(target, &[i; 4096]).unwrap());
            }
        });
        let bytes = std::fs::read(&target).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|&b| b == bytes[0]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
