//! Loaded things shared by requests: backbones (loaded once per backbone, size and head), the
//! current model of each project, and the per-project locks that serialise fits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bpgg::backbone::BackboneConfig;
use bpgg::model::{Encoder, FittedModel, ProjectionHead};
use candle_core::Device;
use sha2::{Digest, Sha256};

use crate::store::FitSummary;

/// Backbones kept loaded beyond those in use.
const SPARE_ENCODERS: usize = 4;

/// A project's fitted model, ready to score: what a predict holds for its whole forward pass,
/// so that a fit replacing the model never changes it under the predict.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: FittedModel,
    pub encoder: Arc<Encoder>,
    /// SHA-256 of the model file.
    pub sha256: String,
    pub summary: FitSummary,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Loaded backbones, by (backbone, image size, projection head), on the service's device.
#[derive(Debug)]
pub struct Encoders {
    device: Device,
    loaded: Mutex<HashMap<String, Arc<Encoder>>>,
}

impl Encoders {
    /// No backbone loaded yet; every one will live on `device`.
    pub fn new(device: Device) -> Self {
        Self {
            device,
            loaded: Mutex::default(),
        }
    }

    /// Where the backbones, heads and models compute.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The encoder for `backbone` with `head`, loaded on first use (an encoder serves every
    /// resolution: images are sized and tiled by the model). Blocks (it
    /// may read weights): call it from a worker or blocking thread.
    pub fn get(
        &self,
        backbone: &BackboneConfig,
        head: Option<ProjectionHead>,
    ) -> bpgg::Result<Arc<Encoder>> {
        let key = encoder_key(backbone, head.as_ref())?;
        let mut loaded = lock(&self.loaded);
        if let Some(e) = loaded.get(&key) {
            return Ok(Arc::clone(e));
        }
        let encoder = Arc::new(Encoder::new(backbone, &self.device)?.with_head(head));
        if loaded.len() >= SPARE_ENCODERS {
            loaded.retain(|_, e| Arc::strong_count(e) > 1);
        }
        loaded.insert(key, Arc::clone(&encoder));
        Ok(encoder)
    }
}

/// What makes two encoders the same: the backbone configuration and the head's values.
fn encoder_key(backbone: &BackboneConfig, head: Option<&ProjectionHead>) -> bpgg::Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(backbone).expect("a backbone config serialises"));
    if let Some(head) = head {
        for t in head.tensors() {
            for v in t.flatten_all()?.to_vec1::<f32>()? {
                hasher.update(v.to_le_bytes());
            }
        }
    }
    Ok(crate::store::hex_digest(hasher))
}

/// The current model of each project, least recently used dropped beyond `capacity` (they are
/// reloaded from the store when asked for again).
#[derive(Debug)]
pub struct ModelCache {
    models: Mutex<HashMap<String, (Arc<LoadedModel>, u64)>>,
    clock: AtomicU64,
    capacity: usize,
}

impl ModelCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            models: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            capacity: capacity.max(1),
        }
    }

    /// The project's model, if loaded.
    pub fn get(&self, project: &str) -> Option<Arc<LoadedModel>> {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        lock(&self.models).get_mut(project).map(|(m, used)| {
            *used = now;
            Arc::clone(m)
        })
    }

    /// Makes `model` the project's model: predicts that start from now on use it; those already
    /// running keep the one they hold.
    pub fn insert(&self, project: &str, model: Arc<LoadedModel>) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut models = lock(&self.models);
        models.insert(project.to_string(), (model, now));
        while models.len() > self.capacity {
            let oldest = models
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => models.remove(&k),
                None => break,
            };
        }
    }

    /// Forgets the project's model.
    pub fn remove(&self, project: &str) {
        lock(&self.models).remove(project);
    }
}

/// One async lock per project: fits, deletions and loads of a project's model take it, so two
/// fits of one project run one after the other.
#[derive(Debug, Default)]
pub struct ProjectLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ProjectLocks {
    /// Waits for the project's lock.
    pub async fn lock(&self, project: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let l = Arc::clone(lock(&self.locks).entry(project.to_string()).or_default());
        l.lock_owned().await
    }

    /// Drops the lock of a deleted project (holders keep theirs until they release it).
    pub fn forget(&self, project: &str) {
        lock(&self.locks).remove(project);
    }
}
