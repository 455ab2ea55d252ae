//! What a running service is configured by, validated once before anything is bound or opened.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bpgg::data::image_io::DEFAULT_MAX_PIXELS;
use bpgg::device::DeviceChoice;

use crate::{Error, Result};

/// The data dir used when none is given.
pub const DEFAULT_DATA_DIR: &str = "bpgg-data";
/// The address bound when none is given: loopback only.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";
/// Largest request body (64 MiB); a larger one is answered `413`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;
/// Requests whose CPU work (decode, fit, predict) may be admitted at once, queued or running;
/// one more is answered `503` with `Retry-After`.
pub const DEFAULT_QUEUE_DEPTH: usize = 64;
/// Longest time a request may take from its headers to its answer.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest time a client may take to send a request's headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections served at once; further ones wait in the kernel's accept queue.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Images of one model scored in one forward pass, at most.
pub const DEFAULT_MAX_BATCH: usize = 8;
/// Threads running forward passes and fits (each pass already uses every core).
pub const DEFAULT_WORKERS: usize = 1;
/// Fitted models kept loaded (least recently used are dropped, and reloaded from the store when
/// asked for again).
pub const DEFAULT_MODEL_CACHE: usize = 16;

/// The configuration of `bpgg serve`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Folder of the SQLite database and the content-addressed files.
    pub data_dir: PathBuf,
    /// Address to listen on (port 0: a free port, printed at start).
    pub bind: SocketAddr,
    /// Bearer token every `/v1` route and `/metrics` require; `None`: no authentication, which
    /// is refused for a non-loopback `bind`.
    pub token: Option<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Largest image (`width * height`) decoded; larger declared sizes are refused.
    pub max_pixels: u64,
    /// Requests with CPU work admitted at once (see [`DEFAULT_QUEUE_DEPTH`]).
    pub queue_depth: usize,
    /// Longest time from a request's headers to its answer.
    pub request_timeout: Duration,
    /// Longest time for a client to send a request's headers.
    pub header_timeout: Duration,
    /// Open connections served at once.
    pub max_connections: usize,
    /// Largest predict batch.
    pub max_batch: usize,
    /// Threads running forward passes and fits.
    pub workers: usize,
    /// Fitted models kept loaded.
    pub model_cache: usize,
    /// Where fits and forward passes compute (opened once at start; a GPU that cannot be had
    /// is an error then, `auto` falls back to the CPU).
    pub device: DeviceChoice,
}

impl Default for ServeConfig {
    /// `./bpgg-data`, `127.0.0.1:8080`, no token, 64 MiB bodies, the CLI's pixel limit, a queue of
    /// 64, 120 s per request, one worker, batches of up to 8, the CPU.
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            bind: DEFAULT_BIND.parse().expect("a valid default address"),
            token: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_batch: DEFAULT_MAX_BATCH,
            workers: DEFAULT_WORKERS,
            model_cache: DEFAULT_MODEL_CACHE,
            device: DeviceChoice::Cpu,
        }
    }
}

impl ServeConfig {
    /// Checks every field once: a non-loopback address needs a token, limits must be positive.
    pub fn validate(&self) -> Result<()> {
        if let Some(token) = &self.token {
            if token.len() < 8 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::Config(
                    "the token must be at least 8 characters, without spaces or control characters"
                        .into(),
                ));
            }
        }
        if !self.bind.ip().is_loopback() && self.token.is_none() {
            return Err(Error::InsecureBind(self.bind));
        }
        let positive = [
            ("max body", self.max_body_bytes as u64),
            ("max pixels", self.max_pixels),
            ("queue depth", self.queue_depth as u64),
            ("max connections", self.max_connections as u64),
            ("max batch", self.max_batch as u64),
            ("workers", self.workers as u64),
            ("model cache", self.model_cache as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        if self.request_timeout.is_zero() || self.header_timeout.is_zero() {
            return Err(Error::Config("timeouts must be positive".into()));
        }
        Ok(())
    }

    /// The decoding limits of every image and mask the service reads.
    pub fn image_limits(&self) -> bpgg::data::ImageLimits {
        bpgg::data::ImageLimits {
            max_pixels: self.max_pixels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_address_needs_a_token() {
        let open = ServeConfig {
            bind: "0.0.0.0:8080".parse().unwrap(),
            ..ServeConfig::default()
        };
        let err = open.validate().unwrap_err().to_string();
        assert!(
            err.contains("0.0.0.0:8080") && err.contains("token"),
            "{err}"
        );
        let with_token = ServeConfig {
            token: Some("a-long-secret".into()),
            ..open
        };
        with_token.validate().unwrap();
        ServeConfig::default().validate().unwrap();
        let ipv6_loopback = ServeConfig {
            bind: "[::1]:0".parse().unwrap(),
            ..ServeConfig::default()
        };
        ipv6_loopback.validate().unwrap();
    }

    #[test]
    fn limits_must_be_positive_and_tokens_sensible() {
        let bad = [
            ServeConfig {
                queue_depth: 0,
                ..ServeConfig::default()
            },
            ServeConfig {
                max_body_bytes: 0,
                ..ServeConfig::default()
            },
            ServeConfig {
                token: Some("short".into()),
                ..ServeConfig::default()
            },
            ServeConfig {
                token: Some("has a space".into()),
                ..ServeConfig::default()
            },
            ServeConfig {
                request_timeout: Duration::ZERO,
                ..ServeConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
