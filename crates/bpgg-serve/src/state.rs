//! The service's shared state, handed to every handler as an `Arc`.

use std::sync::Arc;

use bpgg::model::FittedModel;

use crate::config::ServeConfig;
use crate::engine::{blocking, Admission, Engine};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::models::{Encoders, LoadedModel, ModelCache, ProjectLocks};
use crate::store::Store;
use crate::Result;

/// What the handlers share.
#[derive(Debug)]
pub struct Service {
    pub config: ServeConfig,
    pub store: Arc<Store>,
    pub engine: Engine,
    pub admission: Admission,
    pub encoders: Arc<Encoders>,
    pub models: ModelCache,
    pub locks: ProjectLocks,
    pub metrics: Arc<Metrics>,
    /// SHA-256 of the token, compared in constant time with the digest of the one sent.
    pub token_digest: Option<[u8; 32]>,
}

/// The state type of the router.
pub type AppState = Arc<Service>;

impl Service {
    /// Opens the data dir and starts the workers (the configuration must be validated).
    pub fn open(config: ServeConfig) -> Result<Self> {
        let (device, why) = config.device.open_explained()?;
        tracing::info!("{why}");
        let store = Arc::new(Store::open(&config.data_dir)?);
        let metrics = Arc::new(Metrics::default());
        Ok(Self {
            engine: Engine::start(config.workers, config.max_batch, Arc::clone(&metrics)),
            admission: Admission::new(config.queue_depth),
            encoders: Arc::new(Encoders::new(device)),
            models: ModelCache::new(config.model_cache),
            locks: ProjectLocks::default(),
            token_digest: config.token.as_deref().map(crate::auth::digest),
            metrics,
            store,
            config,
        })
    }

    /// Runs a store operation on a blocking thread.
    pub async fn store_op<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = Arc::clone(&self.store);
        Ok(blocking(None, move || f(&store)).await??)
    }

    /// The project's current model: from the cache, or loaded from the store (under the
    /// project's lock, so a load never races a fit or a deletion). `404` for an unknown project,
    /// `409` before the first fit.
    pub async fn current_model(&self, project: &str) -> Result<Arc<LoadedModel>, ApiError> {
        if let Some(m) = self.models.get(project) {
            return Ok(m);
        }
        let _lock = self.locks.lock(project).await;
        if let Some(m) = self.models.get(project) {
            return Ok(m);
        }
        let id = project.to_string();
        let store = Arc::clone(&self.store);
        let encoders = Arc::clone(&self.encoders);
        let loaded = blocking(None, move || -> Result<LoadedModel, ApiError> {
            if store.project(&id)?.is_none() {
                return Err(ApiError::unknown_project(&id));
            }
            let Some((sha256, summary)) = store.model(&id)? else {
                return Err(no_model(&id));
            };
            let bytes = store.read_blob(&sha256)?;
            let name = format!("model of project {id}");
            let model = FittedModel::from_bytes(name.as_ref(), &bytes, encoders.device())?;
            let encoder = encoders.get(&model.config.backbone, model.head.clone())?;
            Ok(LoadedModel {
                model,
                encoder,
                sha256,
                summary,
            })
        })
        .await??;
        let loaded = Arc::new(loaded);
        self.models.insert(project, Arc::clone(&loaded));
        Ok(loaded)
    }
}

/// `409` for a project without a model.
pub fn no_model(project: &str) -> ApiError {
    ApiError::conflict(format!(
        "project {project} has no model yet: fit it first (POST /v1/projects/{project}/fit)"
    ))
}
