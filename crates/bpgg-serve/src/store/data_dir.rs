//! [`Store`]: the data dir as one object. Its methods block (file and database I/O with fsync):
//! the service calls them from blocking threads, never from the async ones.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::blobs::BlobStore;
use super::ids::new_id;
use super::records::{FitSummary, ImageInfo, ImageRecord, ProjectInfo, Role};
use super::schema::open_database;
use crate::{Error, Result};

/// The database file in the data dir.
pub const DATABASE_FILE: &str = "bpgg.sqlite3";
/// The lock file that keeps a second server off the same data dir.
const LOCK_FILE: &str = "lock";

/// How much the store holds (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub projects: u64,
    pub images: u64,
    pub masks: u64,
    pub models: u64,
}

/// The data dir: database, content-addressed files, and the lock that makes this process its
/// only user.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    conn: Mutex<Connection>,
    blobs: BlobStore,
    /// Writers of new rows hold it shared from writing their bytes to their commit; removing
    /// unreferenced files holds it exclusively, so a file is never removed between an upload
    /// finding it present and its row committing.
    files: RwLock<()>,
    _lock: File,
}

const IMAGE_COLUMNS: &str =
    "id, role, width, height, bytes, format, mask_blob, created_at, blob, project_id";

impl Store {
    /// Opens (or creates) the data dir: takes its lock, opens and migrates the database, removes
    /// the temp files of interrupted writes and the files no row refers to.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        if lock.try_lock().is_err() {
            return Err(Error::DataDir {
                path: dir.to_path_buf(),
                problem: "another bpgg serve is using this data dir".into(),
            });
        }
        let conn = open_database(&dir.join(DATABASE_FILE))?;
        let blobs = BlobStore::open(&dir.join("blobs"))?;
        let store = Self {
            dir: dir.to_path_buf(),
            conn: Mutex::new(conn),
            blobs,
            files: RwLock::new(()),
            _lock: lock,
        };
        store.blobs.remove_stale_temp_files()?;
        store.remove_unreferenced(None)?;
        Ok(store)
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection cannot leave a transaction half-applied (SQLite
        // rolls back an uncommitted one), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new, empty project.
    pub fn create_project(&self, name: &str) -> Result<ProjectInfo> {
        let id = new_id();
        let now = unix_now();
        self.conn().execute(
            "INSERT INTO projects (id, name, created_at) VALUES (?1, ?2, ?3)",
            params![id, name, now],
        )?;
        Ok(ProjectInfo {
            id,
            name: name.to_string(),
            created_at: now,
            images: 0,
            defects: 0,
            normals: 0,
            masked_defects: 0,
            model: None,
        })
    }

    /// Every project, oldest first.
    pub fn projects(&self) -> Result<Vec<ProjectInfo>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{PROJECT_QUERY} ORDER BY p.rowid"))?;
        let rows = stmt.query_map([], project_from_row)?;
        rows.map(|r| r.map_err(Error::from).and_then(|r| r))
            .collect()
    }

    /// One project.
    pub fn project(&self, id: &str) -> Result<Option<ProjectInfo>> {
        let conn = self.conn();
        conn.query_row(
            &format!("{PROJECT_QUERY} WHERE p.id = ?1"),
            [id],
            project_from_row,
        )
        .optional()?
        .transpose()
    }

    /// Renames a project; `None` if there is none with this id.
    pub fn rename_project(&self, id: &str, name: &str) -> Result<Option<ProjectInfo>> {
        let changed = self.conn().execute(
            "UPDATE projects SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.project(id)
    }

    /// Deletes a project with its images, masks and model; `false` if there was none.
    pub fn delete_project(&self, id: &str) -> Result<bool> {
        let candidates = {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let mut hashes: Vec<String> = Vec::new();
            {
                let mut stmt =
                    tx.prepare("SELECT blob, mask_blob FROM images WHERE project_id = ?1")?;
                let rows = stmt.query_map([id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })?;
                for row in rows {
                    let (blob, mask) = row?;
                    hashes.push(blob);
                    hashes.extend(mask);
                }
                let model: Option<String> = tx
                    .query_row("SELECT blob FROM models WHERE project_id = ?1", [id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                hashes.extend(model);
            }
            let deleted = tx.execute("DELETE FROM projects WHERE id = ?1", [id])?;
            tx.commit()?;
            if deleted == 0 {
                return Ok(false);
            }
            hashes
        };
        self.remove_unreferenced(Some(&candidates))?;
        Ok(true)
    }

    /// Stores an image's bytes, then its row; `None` if the project does not exist.
    pub fn add_image(
        &self,
        project: &str,
        role: Role,
        bytes: &[u8],
        format: &str,
        (width, height): (u32, u32),
    ) -> Result<Option<ImageInfo>> {
        let _files = self.files.read().unwrap_or_else(|p| p.into_inner());
        if !self.project_exists(project)? {
            return Ok(None);
        }
        let blob = self.blobs.put(bytes)?;
        let info = ImageInfo {
            id: new_id(),
            role,
            width,
            height,
            bytes: bytes.len() as u64,
            format: format.to_string(),
            has_mask: false,
            created_at: unix_now(),
        };
        let inserted = self.conn().execute(
            "INSERT INTO images (id, project_id, role, blob, format, width, height, bytes, \
             created_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 \
             WHERE EXISTS (SELECT 1 FROM projects WHERE id = ?2)",
            params![
                info.id,
                project,
                role.name(),
                blob,
                info.format,
                width,
                height,
                info.bytes,
                info.created_at
            ],
        )?;
        Ok((inserted == 1).then_some(info))
    }

    /// The images of a project in upload order; `None` if the project does not exist.
    pub fn images(&self, project: &str) -> Result<Option<Vec<ImageRecord>>> {
        if !self.project_exists(project)? {
            return Ok(None);
        }
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE project_id = ?1 ORDER BY rowid"
        ))?;
        let rows = stmt.query_map([project], image_from_row)?;
        let images = rows
            .map(|r| r.map_err(Error::from).and_then(|r| r))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(images))
    }

    /// One image of a project.
    pub fn image(&self, project: &str, image: &str) -> Result<Option<ImageRecord>> {
        self.conn()
            .query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE project_id = ?1 AND id = ?2"),
                [project, image],
                image_from_row,
            )
            .optional()?
            .transpose()
    }

    /// Sets (`Some`, already validated PNG bytes) or removes (`None`) an image's mask.
    pub fn set_mask(
        &self,
        project: &str,
        image: &str,
        png: Option<&[u8]>,
    ) -> Result<Option<ImageRecord>> {
        let old = {
            let _files = self.files.read().unwrap_or_else(|p| p.into_inner());
            let Some(old) = self.image(project, image)? else {
                return Ok(None);
            };
            let blob = png.map(|b| self.blobs.put(b)).transpose()?;
            let changed = self.conn().execute(
                "UPDATE images SET mask_blob = ?3 WHERE project_id = ?1 AND id = ?2",
                params![project, image, blob],
            )?;
            if changed == 0 {
                return Ok(None);
            }
            old
        };
        if let Some(previous) = old.mask_blob {
            self.remove_unreferenced(Some(&[previous]))?;
        }
        self.image(project, image)
    }

    /// Changes an image's role.
    pub fn set_role(&self, project: &str, image: &str, role: Role) -> Result<Option<ImageRecord>> {
        let changed = self.conn().execute(
            "UPDATE images SET role = ?3 WHERE project_id = ?1 AND id = ?2",
            params![project, image, role.name()],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.image(project, image)
    }

    /// Deletes an image and its mask; `false` if there was none.
    pub fn delete_image(&self, project: &str, image: &str) -> Result<bool> {
        let Some(old) = self.image(project, image)? else {
            return Ok(false);
        };
        let deleted = self.conn().execute(
            "DELETE FROM images WHERE project_id = ?1 AND id = ?2",
            [project, image],
        )?;
        if deleted == 0 {
            return Ok(false);
        }
        let mut candidates = vec![old.blob];
        candidates.extend(old.mask_blob);
        self.remove_unreferenced(Some(&candidates))?;
        Ok(true)
    }

    /// The bytes stored under `hash`.
    pub fn read_blob(&self, hash: &str) -> Result<Vec<u8>> {
        self.blobs.read(hash)
    }

    /// Stores a fitted model's bytes, then makes it the project's model (replacing the previous
    /// one in the same commit); `false` if the project no longer exists.
    pub fn set_model(&self, project: &str, bytes: &[u8], summary: &FitSummary) -> Result<bool> {
        let summary_json = serde_json::to_string(summary).expect("a summary serialises");
        let previous = {
            let _files = self.files.read().unwrap_or_else(|p| p.into_inner());
            let blob = self.blobs.put(bytes)?;
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let previous: Option<String> = tx
                .query_row(
                    "SELECT blob FROM models WHERE project_id = ?1",
                    [project],
                    |r| r.get(0),
                )
                .optional()?;
            let changed = tx.execute(
                "INSERT INTO models (project_id, blob, summary, fitted_at) \
                 SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM projects WHERE id = ?1) \
                 ON CONFLICT (project_id) DO UPDATE SET blob = excluded.blob, \
                 summary = excluded.summary, fitted_at = excluded.fitted_at",
                params![project, blob, summary_json, summary.fitted_at],
            )?;
            tx.commit()?;
            if changed == 0 {
                return Ok(false);
            }
            previous
        };
        if let Some(previous) = previous {
            self.remove_unreferenced(Some(&[previous]))?;
        }
        Ok(true)
    }

    /// The project's model: its file's hash and summary.
    pub fn model(&self, project: &str) -> Result<Option<(String, FitSummary)>> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT blob, summary FROM models WHERE project_id = ?1",
                [project],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(blob, summary)| Ok((blob, parse_summary(&summary)?)))
            .transpose()
    }

    /// Rows of each kind.
    pub fn counts(&self) -> Result<Counts> {
        Ok(self.conn().query_row(
            "SELECT (SELECT COUNT(*) FROM projects), (SELECT COUNT(*) FROM images), \
             (SELECT COUNT(*) FROM images WHERE mask_blob IS NOT NULL), \
             (SELECT COUNT(*) FROM models)",
            [],
            |r| {
                Ok(Counts {
                    projects: r.get(0)?,
                    images: r.get(1)?,
                    masks: r.get(2)?,
                    models: r.get(3)?,
                })
            },
        )?)
    }

    /// `PRAGMA integrity_check`: `ok`, or what is wrong.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    fn project_exists(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .query_row("SELECT 1 FROM projects WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Removes the files of `candidates` (all files when `None`) that no row refers to.
    fn remove_unreferenced(&self, candidates: Option<&[String]>) -> Result<()> {
        let _files = self.files.write().unwrap_or_else(|p| p.into_inner());
        let all;
        let candidates = match candidates {
            Some(c) => c,
            None => {
                all = self.blobs.list()?;
                &all
            }
        };
        let conn = self.conn();
        let mut referenced = conn.prepare(
            "SELECT EXISTS (SELECT 1 FROM images WHERE blob = ?1 OR mask_blob = ?1) \
             OR EXISTS (SELECT 1 FROM models WHERE blob = ?1)",
        )?;
        for hash in candidates {
            if !referenced.query_row([hash], |r| r.get::<_, bool>(0))? {
                self.blobs.remove(hash)?;
            }
        }
        Ok(())
    }
}

const PROJECT_QUERY: &str = "SELECT p.id, p.name, p.created_at, \
     (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id), \
     (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id AND i.role = 'defect'), \
     (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id AND i.role = 'defect' \
        AND i.mask_blob IS NOT NULL), \
     (SELECT summary FROM models m WHERE m.project_id = p.id) \
     FROM projects p";

fn project_from_row(r: &Row<'_>) -> rusqlite::Result<Result<ProjectInfo>> {
    let images: u64 = r.get(3)?;
    let defects: u64 = r.get(4)?;
    let summary: Option<String> = r.get(6)?;
    let info = |model| ProjectInfo {
        id: r.get(0).unwrap_or_default(),
        name: r.get(1).unwrap_or_default(),
        created_at: r.get(2).unwrap_or_default(),
        images,
        defects,
        normals: images - defects,
        masked_defects: r.get(5).unwrap_or_default(),
        model,
    };
    Ok(match summary.as_deref().map(parse_summary).transpose() {
        Ok(model) => Ok(info(model)),
        Err(e) => Err(e),
    })
}

fn image_from_row(r: &Row<'_>) -> rusqlite::Result<Result<ImageRecord>> {
    let role: String = r.get(1)?;
    let Some(role) = Role::parse(&role) else {
        return Ok(Err(Error::DataDir {
            path: PathBuf::from(DATABASE_FILE),
            problem: format!("image role `{role}` (the database is corrupt)"),
        }));
    };
    let mask_blob: Option<String> = r.get(6)?;
    Ok(Ok(ImageRecord {
        project: r.get(9)?,
        info: ImageInfo {
            id: r.get(0)?,
            role,
            width: r.get(2)?,
            height: r.get(3)?,
            bytes: r.get(4)?,
            format: r.get(5)?,
            has_mask: mask_blob.is_some(),
            created_at: r.get(7)?,
        },
        blob: r.get(8)?,
        mask_blob,
    }))
}

fn parse_summary(json: &str) -> Result<FitSummary> {
    serde_json::from_str(json).map_err(|e| Error::DataDir {
        path: PathBuf::from(DATABASE_FILE),
        problem: format!("a model summary is not valid JSON ({e}; the database is corrupt)"),
    })
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_files_come_and_go_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = store.create_project("tiles").unwrap();
        let a = store
            .add_image(&p.id, Role::Defect, b"image-a", "png", (4, 3))
            .unwrap()
            .unwrap();
        // The same bytes twice: two rows, one file.
        let b = store
            .add_image(&p.id, Role::Normal, b"image-a", "png", (4, 3))
            .unwrap()
            .unwrap();
        assert_eq!(store.blobs.list().unwrap().len(), 1);
        store
            .set_mask(&p.id, &a.id, Some(b"mask"))
            .unwrap()
            .unwrap();
        let info = store.project(&p.id).unwrap().unwrap();
        assert_eq!(
            (info.images, info.defects, info.normals, info.masked_defects),
            (2, 1, 1, 1)
        );
        assert!(store.delete_image(&p.id, &a.id).unwrap());
        // The mask's file went with it; the image file is still used by `b`.
        assert_eq!(store.blobs.list().unwrap().len(), 1);
        assert!(!store.delete_image(&p.id, &a.id).unwrap());
        assert!(store
            .add_image("nope", Role::Normal, b"x", "png", (1, 1))
            .unwrap()
            .is_none());
        assert!(store.image(&p.id, &b.id).unwrap().is_some());
        assert!(store.delete_project(&p.id).unwrap());
        assert!(store.blobs.list().unwrap().is_empty());
        assert_eq!(store.counts().unwrap(), Counts::default());
    }

    #[test]
    fn a_second_store_on_one_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("another bpgg serve"), "{err}");
    }
}
