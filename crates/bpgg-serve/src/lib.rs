//! # bpgg-serve: the HTTP service of the inspection line
//!
//! `bpgg serve` keeps projects (defect images with masks, normal images, fitted models) in a
//! data dir (SQLite and content-addressed files, see [`store`]) and answers over HTTP: upload
//! supports, fit, predict. The library does the work; this crate schedules it ([`engine`]: a
//! bounded queue, CPU work off the async threads, batching of concurrent predicts) and turns
//! the library's typed errors into status codes in one place ([`error`]). The routes, and the
//! OpenAPI document describing them, come from one table ([`routes`]).
//!
//! # Example
//!
//! ```no_run
//! use bpgg_serve::{client::Client, ServeConfig, ServerHandle};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = ServerHandle::spawn(ServeConfig {
//!     data_dir: "bpgg-data".into(),
//!     bind: "127.0.0.1:0".parse()?,
//!     ..ServeConfig::default()
//! })?;
//! let mut client = Client::new(server.addr());
//! let project = client.json("POST", "/v1/projects", &serde_json::json!({"name": "tiles"}))?;
//! assert_eq!(project.status, 201);
//! server.stop()?;
//! # Ok(())
//! # }
//! ```

pub mod assets;
pub mod auth;
pub mod client;
pub mod config;
pub mod engine;
pub mod error;
mod extract;
pub mod handlers;
mod layers;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;

pub use config::ServeConfig;
pub use error::{ApiError, Error, Result};
pub use server::{serve_until_signal, Server, ServerHandle};
