//! The data dir: a SQLite database (projects, images, roles, masks, fitted models) and the bytes
//! of images, masks and models as files named by their SHA-256.
//!
//! Durability: bytes are written (temp file, fsync, rename, fsync of the folder) before the
//! database row that names them commits, and the database runs in WAL mode with
//! `synchronous=FULL`; so whatever a `2xx` answer reported survives a `kill -9` or a power cut.

mod blobs;
mod data_dir;
mod ids;
mod records;
mod schema;

pub(crate) use blobs::hex_digest;
pub use blobs::BlobStore;
pub use data_dir::{Counts, Store, DATABASE_FILE};
pub use ids::{is_id, new_id};
pub use records::{FitSummary, ImageInfo, ImageRecord, ProjectInfo, Role};
pub use schema::SCHEMA_VERSION;
