//! Listening: bind, accept connections (at most `--max-connections` at once, each with a
//! header timeout), serve them with hyper, and stop gracefully: stop accepting, let the requests
//! in flight finish, let the workers finish their queue.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::ServeConfig;
use crate::routes::router;
use crate::state::{AppState, Service};
use crate::{Error, Result};

/// Extra time given to requests in flight at shutdown, beyond the request timeout.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// A bound, ready server: the data dir is open and the port is bound, so clients may connect
/// as soon as this exists (they are served once [`Server::run`] is polled).
#[derive(Debug)]
pub struct Server {
    listener: std::net::TcpListener,
    state: AppState,
}

impl Server {
    /// Validates the configuration, opens the data dir and binds the address.
    pub fn bind(config: ServeConfig) -> Result<Self> {
        config.validate()?;
        let addr = config.bind;
        let state = Arc::new(Service::open(config)?);
        let listener =
            std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Self { listener, state })
    }

    /// The address actually bound (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The service state (for tests and benchmarks that inspect it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains: no new connection, requests in flight
    /// answered (for at most the request timeout and a grace period), queued work finished.
    /// Must run inside a multi-threaded tokio runtime.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let addr = self.local_addr();
        let listener =
            TcpListener::from_std(self.listener).map_err(|source| Error::Bind { addr, source })?;
        let config = self.state.config.clone();
        let app = router(Arc::clone(&self.state));
        let graceful = GracefulShutdown::new();
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                _ = &mut shutdown => break,
                permit = Arc::clone(&connections).acquire_owned() => permit.expect("never closed"),
            };
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(config.header_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                let _ = connection.await;
                drop(permit);
            });
        }
        drop(listener);
        let drain = config.request_timeout + DRAIN_GRACE;
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests still running after {drain:?}; stopping anyway");
        }
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || state.engine.shutdown())
            .await
            .map_err(|e| Error::Config(format!("a worker failed at shutdown: {e}")))?;
        Ok(())
    }
}

/// Runs `bpgg serve`: binds, calls `ready` with the address, serves until SIGTERM or Ctrl-C,
/// drains, returns.
pub fn serve_until_signal(config: ServeConfig, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bpgg-serve")
        .build()
        .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let server = Server::bind(config)?;
        ready(server.local_addr());
        server.run(stop_signal()).await
    })
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

/// A server running on its own thread and runtime: what tests and benchmarks start.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl ServerHandle {
    /// Binds and starts serving in the background.
    pub fn spawn(config: ServeConfig) -> Result<Self> {
        let server = Server::bind(config)?;
        let addr = server.local_addr();
        let state = Arc::clone(server.state());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bpgg-serve".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))?;
                runtime.block_on(server.run(async {
                    let _ = stopped.await;
                }))
            })
            .map_err(|e| Error::Config(format!("cannot start the server thread: {e}")))?;
        Ok(Self {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The service state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops gracefully and waits for the server to finish.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| Error::Config("the server thread panicked".into()))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
