//! Content-addressed files: `blobs/<first two hex digits>/<sha256>`. A name is always a hash the
//! service computed; nothing a client sends ever becomes part of a path.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ids::hex;
use crate::{Error, Result};

/// The folder of the content-addressed files.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Opens (and creates) `dir` with its 256 shard folders, synced, so that a file written later
    /// only needs its own folder synced to survive a power cut.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut created = false;
        for shard in 0..=255u8 {
            let path = dir.join(hex(&[shard]));
            if !path.is_dir() {
                std::fs::create_dir(&path).map_err(|e| Error::io(&path, e))?;
                created = true;
            }
        }
        if created {
            sync_dir(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The SHA-256 of `bytes`, as 64 hex digits.
    pub fn hash(bytes: &[u8]) -> String {
        hex_digest(Sha256::new_with_prefix(bytes))
    }

    /// Writes `bytes` under their hash (atomically and durably; a file already there with the
    /// same length is kept) and returns the hash.
    pub fn put(&self, bytes: &[u8]) -> Result<String> {
        let hash = Self::hash(bytes);
        let path = self.path(&hash)?;
        let present = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !present {
            bpgg::io::write_atomic(&path, bytes)?;
        }
        Ok(hash)
    }

    /// The bytes stored under `hash`.
    pub fn read(&self, hash: &str) -> Result<Vec<u8>> {
        let path = self.path(hash)?;
        std::fs::read(&path).map_err(|e| Error::io(&path, e))
    }

    /// Removes the file of `hash` (no error if it is already gone).
    pub fn remove(&self, hash: &str) -> Result<()> {
        let path = self.path(hash)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Every hash with a file (temp files of interrupted writes are not hashes and are skipped).
    pub fn list(&self) -> Result<Vec<String>> {
        let mut hashes = Vec::new();
        for shard in 0..=255u8 {
            let dir = self.dir.join(hex(&[shard]));
            for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                if let Some(name) = entry.file_name().to_str() {
                    if is_hash(name) {
                        hashes.push(name.to_string());
                    }
                }
            }
        }
        Ok(hashes)
    }

    /// Removes the temp files that writes interrupted by a crash left behind.
    pub fn remove_stale_temp_files(&self) -> Result<usize> {
        Ok(bpgg::io::remove_stale_temp_files(&self.dir)?)
    }

    fn path(&self, hash: &str) -> Result<PathBuf> {
        if !is_hash(hash) {
            return Err(Error::DataDir {
                path: self.dir.clone(),
                problem: format!("`{hash}` is not a SHA-256 (the database is corrupt)"),
            });
        }
        Ok(self.dir.join(&hash[..2]).join(hash))
    }
}

/// The hex digest of a finished SHA-256.
pub(crate) fn hex_digest(hasher: Sha256) -> String {
    hex(&hasher.finalize())
}

/// 64 lowercase hex digits.
fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Makes the entries of `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_under_their_hash() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(&dir.path().join("blobs")).unwrap();
        let h = blobs.put(b"hello").unwrap();
        assert_eq!(
            h,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blobs.put(b"hello").unwrap(), h);
        assert_eq!(blobs.read(&h).unwrap(), b"hello");
        assert_eq!(blobs.list().unwrap(), vec![h.clone()]);
        blobs.remove(&h).unwrap();
        blobs.remove(&h).unwrap();
        assert!(blobs.list().unwrap().is_empty());
        assert!(blobs.read("../../etc/passwd").is_err());
    }
}
