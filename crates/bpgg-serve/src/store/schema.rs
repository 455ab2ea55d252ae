//! The database schema, built by numbered migrations. `PRAGMA user_version` holds the number of
//! migrations applied; a data dir written by a newer bpgg (a larger number) is refused, an older
//! one is brought up to date in one transaction.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::{Error, Result};

/// Migration `i` takes a database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: projects and their images (bytes in blobs/, named by hash).
    "CREATE TABLE projects (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE images (
        id TEXT PRIMARY KEY NOT NULL,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('defect', 'normal')),
        blob TEXT NOT NULL,
        format TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        mask_blob TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX images_by_project ON images(project_id);",
    // 2: the fitted model of each project and its summary (JSON).
    "CREATE TABLE models (
        project_id TEXT PRIMARY KEY NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        blob TEXT NOT NULL,
        summary TEXT NOT NULL,
        fitted_at INTEGER NOT NULL
    );",
];

/// The schema version this build writes (the number of migrations).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Opens the database with the service's settings and brings its schema to
/// [`SCHEMA_VERSION`].
pub fn open_database(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::DataDir {
            path: path.to_path_buf(),
            problem: format!("cannot switch the database to WAL mode (it is in {mode} mode)"),
        });
    }
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    migrate(&mut conn, path, SCHEMA_VERSION)?;
    Ok(conn)
}

/// Applies the migrations from the database's version up to `target`, in one transaction.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, target: u32) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::DataDir {
            path: path.to_path_buf(),
            problem: format!(
                "written by a newer bpgg (schema version {version}; this bpgg reads versions up \
                 to {SCHEMA_VERSION}): upgrade bpgg, or use another --data-dir"
            ),
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(version as usize)
    {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_database_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn, &path, 1).unwrap();
            conn.execute(
                "INSERT INTO projects (id, name, created_at) VALUES ('p', 'kept', 0)",
                [],
            )
            .unwrap();
        }
        let conn = open_database(&path).unwrap();
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let name: String = conn
            .query_row("SELECT name FROM projects WHERE id = 'p'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(name, "kept");
        let models: i64 = conn
            .query_row("SELECT COUNT(*) FROM models", [], |r| r.get(0))
            .unwrap();
        assert_eq!(models, 0);
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = open_database(&path).unwrap_err().to_string();
        assert!(err.contains("newer bpgg"), "{err}");
        assert!(
            err.contains(&format!("schema version {}", SCHEMA_VERSION + 1)),
            "{err}"
        );
        let conn = Connection::open(&path).unwrap();
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0);
    }
}
