//! Where CPU-bound work runs: never on the async threads.
//!
//! - **Admission**: a request with CPU work (decode, fit, predict) first takes a permit of a
//!   semaphore of `--queue` permits, without waiting; when none is left it is answered `503` with
//!   `Retry-After`, so the backlog is bounded. The permit travels with the work and is released
//!   when the work is done, even if the client has gone.
//! - **Decoding** runs on tokio's blocking threads ([`blocking`]); a decoded image goes to the
//!   engine while the next one decodes, as `bpgg predict`'s loader thread does.
//! - **The engine**: `--workers` threads take jobs from one queue. A worker that takes a predict
//!   also takes every other predict of the same model (and threshold) waiting in the queue, up
//!   to `--max-batch`, and scores them in one forward pass: under load, requests batch
//!   themselves, and a lone request waits for nobody.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bpgg::model::{Prediction, PreparedImage};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::models::LoadedModel;

/// Seconds a client is told to wait when the queue is full.
const RETRY_AFTER_S: u32 = 1;

/// The bounded admission of CPU work.
#[derive(Debug)]
pub struct Admission {
    permits: Arc<Semaphore>,
    depth: usize,
}

impl Admission {
    pub fn new(depth: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(depth)),
            depth,
        }
    }

    /// A permit, or `503` when `depth` requests already hold one.
    pub fn admit(&self, metrics: &Metrics) -> Result<OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            metrics.rejected_busy();
            ApiError::busy(
                format!(
                    "the server is busy ({} requests queued or running, the limit of --queue); \
                     retry shortly",
                    self.depth
                ),
                RETRY_AFTER_S,
            )
        })
    }

    /// Permits held now.
    pub fn admitted(&self) -> usize {
        self.depth - self.permits.available_permits()
    }
}

/// Runs `f` on a blocking thread, holding `permit` until it returns (a panic becomes a 500).
pub async fn blocking<T: Send + 'static>(
    permit: Option<OwnedSemaphorePermit>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || {
        let out = f();
        drop(permit);
        out
    })
    .await
    .map_err(|e| ApiError::internal(format!("a worker failed: {e}")))
}

/// A predict waiting for its forward pass.
struct PredictJob {
    model: Arc<LoadedModel>,
    image: PreparedImage,
    threshold: Option<f32>,
    reply: oneshot::Sender<Result<Prediction, ApiError>>,
    _permit: OwnedSemaphorePermit,
}

enum Job {
    Predict(PredictJob),
    Task(Box<dyn FnOnce() + Send>),
}

struct Queue {
    jobs: VecDeque<Job>,
    stopping: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    max_batch: usize,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The worker threads and their queue.
pub struct Engine {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("queued", &self.shared.lock().jobs.len())
            .field("max_batch", &self.shared.max_batch)
            .finish()
    }
}

impl Engine {
    /// Starts `workers` threads.
    pub fn start(workers: usize, max_batch: usize, metrics: Arc<Metrics>) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                stopping: false,
            }),
            ready: Condvar::new(),
            max_batch: max_batch.max(1),
            metrics,
        });
        let workers = (0..workers.max(1))
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("bpgg-worker-{i}"))
                    .spawn(move || work(&shared))
                    .expect("a worker thread starts")
            })
            .collect();
        Self {
            shared,
            workers: Mutex::new(workers),
        }
    }

    fn push(&self, job: Job) -> Result<(), ApiError> {
        let mut queue = self.shared.lock();
        if queue.stopping {
            return Err(ApiError::busy("the server is stopping", RETRY_AFTER_S));
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Scores one prepared image with `model` (batched with other waiting predicts of it).
    pub async fn predict(
        &self,
        model: Arc<LoadedModel>,
        image: PreparedImage,
        threshold: Option<f32>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Prediction, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.push(Job::Predict(PredictJob {
            model,
            image,
            threshold,
            reply,
            _permit: permit,
        }))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the worker dropped the request"))?
    }

    /// Runs `f` on a worker thread (a fit), holding `permit` until it returns.
    pub async fn run<T: Send + 'static>(
        &self,
        permit: OwnedSemaphorePermit,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.push(Job::Task(Box::new(move || {
            let out = catch_unwind(AssertUnwindSafe(f))
                .map_err(|_| ApiError::internal("the work panicked; see the server log"));
            drop(permit);
            let _ = reply.send(out);
        })))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the worker dropped the request"))?
    }

    /// Jobs waiting for a worker.
    pub fn queued(&self) -> usize {
        self.shared.lock().jobs.len()
    }

    /// Refuses new jobs, lets the workers finish the queued ones, and joins them.
    pub fn shutdown(&self) {
        self.shared.lock().stopping = true;
        self.shared.ready.notify_all();
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in workers {
            let _ = w.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A worker's loop: take a job (and the predicts that batch with it), run it, repeat until the
/// engine stops and the queue is empty.
fn work(shared: &Shared) {
    loop {
        let mut queue = shared.lock();
        let job = loop {
            if let Some(job) = queue.jobs.pop_front() {
                break job;
            }
            if queue.stopping {
                return;
            }
            queue = shared.ready.wait(queue).unwrap_or_else(|p| p.into_inner());
        };
        match job {
            Job::Task(task) => {
                drop(queue);
                task();
            }
            Job::Predict(first) => {
                let mut batch = vec![first];
                let mut i = 0;
                while i < queue.jobs.len() && batch.len() < shared.max_batch {
                    let joins = matches!(&queue.jobs[i], Job::Predict(p)
                        if Arc::ptr_eq(&p.model, &batch[0].model)
                            && p.threshold.map(f32::to_bits) == batch[0].threshold.map(f32::to_bits));
                    if joins {
                        if let Some(Job::Predict(p)) = queue.jobs.remove(i) {
                            batch.push(p);
                        }
                    } else {
                        i += 1;
                    }
                }
                drop(queue);
                score(shared, batch);
            }
        }
    }
}

/// One forward pass for a batch of predicts of one model; each gets its own answer. The permits
/// are released once the answers are sent.
fn score(shared: &Shared, batch: Vec<PredictJob>) {
    let loaded = Arc::clone(&batch[0].model);
    let threshold = batch[0].threshold;
    let mut images = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        images.push(job.image);
        replies.push((job.reply, job._permit));
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        loaded
            .model
            .predict_prepared(&loaded.encoder, &images, threshold)
    }));
    shared.metrics.predict_batch(images.len());
    let answers: Vec<Result<Prediction, ApiError>> = match outcome {
        Ok(Ok(predictions)) => predictions.into_iter().map(Ok).collect(),
        Ok(Err(e)) => vec![Err(ApiError::from(e)); replies.len()],
        Err(_) => {
            tracing::error!("a forward pass panicked");
            let e = ApiError::internal("the forward pass panicked; see the server log");
            vec![Err(e); replies.len()]
        }
    };
    for ((reply, _permit), answer) in replies.into_iter().zip(answers) {
        let _ = reply.send(answer);
    }
}
