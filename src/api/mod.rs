//! The HTTP API (`shroud serve`): axum on tokio, JSON in and out.
//!
//! [`router`] lists every route in one place and is testable with
//! `tower::ServiceExt::oneshot`; [`serve`] runs it on a listener until
//! SIGINT or SIGTERM, finishing requests in flight. Authentication is the
//! [`auth::Caller`] extractor; every failure is an [`error::ApiError`].
//!
//! The store is synchronous: each request borrows a store connection from a
//! small pool and runs on tokio's blocking threads, acting as the calling
//! token (its name is the actor of the audit records it writes). Secret
//! writes go through one group-commit writer thread. Sandbox commands run
//! on blocking threads too, at most `--max-runs` at once, each detached from
//! the server's process and killed when its client goes away or the server
//! shuts down (see `sandboxes`).

pub mod auth;
mod awsv4;
pub mod deployments;
pub mod destinations;
pub mod error;
mod fetch;
mod handlers;
mod json;
pub mod openapi;
mod sandbox_files;
mod sandboxes;
pub mod server;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use zeroize::Zeroizing;

use crate::store::{OpenMode, Store, StoreConfig, StoreError};
use error::ApiError;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What every request shares: where the vault is, and open connections to it.
pub struct ApiState {
    home: PathBuf,
    /// The shroud executable sandboxes run their init with.
    shroud_binary: PathBuf,
    master_key_env: Option<Zeroizing<String>>,
    /// Where the store's data is (the home's SQLite file, or PostgreSQL).
    location: crate::store::StoreLocation,
    pool: StorePool,
    fetch: std::sync::OnceLock<Fetcher>,
    writer: std::sync::OnceLock<std::sync::mpsc::Sender<WriteJob>>,
    /// Ends every running sandbox command when the server shuts down: the
    /// guard is dropped then, and each run watches a copy of the watch.
    shutdown: Mutex<Shutdown>,
    /// Sandbox commands running at once at most (429 beyond).
    runs: Arc<tokio::sync::Semaphore>,
    max_runs: std::sync::atomic::AtomicUsize,
    /// The environment the server was started with: API callers' runs take
    /// the template's pass-through names (PATH, LANG, ...) from it.
    caller_env: crate::supervisor::plan::CallerEnv,
    /// The deployment manager, when this server is the home's supervisor.
    manager: std::sync::OnceLock<Arc<crate::supervisor::manager::Manager>>,
    /// Sandboxes with a command running now (the lifetime sweep leaves them).
    busy_sandboxes: Arc<crate::supervisor::sandbox_files::Busy>,
    /// The last background command's id.
    process_ids: std::sync::atomic::AtomicU64,
}

/// Store connections a server keeps open at once by default (each request
/// holds one while it runs; more wait for one, up to [`DB_CONNECTION_WAIT`]).
pub const DEFAULT_DB_CONNECTIONS: usize = 16;

/// How long a request waits for a free store connection before a 503.
pub const DB_CONNECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The store connections of a server: at most `limit` open at once, idle
/// ones kept for the next request, broken ones (a database that restarted)
/// dropped so the next request opens a fresh one.
struct StorePool {
    state: Mutex<PoolState>,
    freed: std::sync::Condvar,
}

struct PoolState {
    idle: Vec<Store>,
    /// Connections open or being opened, idle ones included.
    open: usize,
    limit: usize,
}

/// A connection taken from the pool, or the right to open one.
enum Lease {
    Idle(Store),
    New,
}

impl StorePool {
    fn new(limit: usize) -> Self {
        StorePool {
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
                limit,
            }),
            freed: std::sync::Condvar::new(),
        }
    }

    fn set_limit(&self, limit: usize) {
        self.state.lock().expect("pool lock").limit = limit;
        self.freed.notify_all();
    }

    /// Waits (a blocking thread) for an idle connection or room for one;
    /// says why not when none frees up in time.
    fn take(&self) -> Result<Lease, String> {
        let deadline = std::time::Instant::now() + DB_CONNECTION_WAIT;
        let mut state = self.state.lock().expect("pool lock");
        loop {
            if let Some(store) = state.idle.pop() {
                return Ok(Lease::Idle(store));
            }
            if state.open < state.limit {
                state.open += 1;
                return Ok(Lease::New);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "all {} database connections of this server stayed busy for {} s",
                    state.limit,
                    DB_CONNECTION_WAIT.as_secs()
                ));
            }
            state = self.freed.wait_timeout(state, left).expect("pool lock").0;
        }
    }

    /// Gives a connection back (or, `None` or broken, its room).
    fn give_back(&self, store: Option<Store>) {
        let mut state = self.state.lock().expect("pool lock");
        match store {
            Some(store) if store.is_usable() && state.open <= state.limit => state.idle.push(store),
            _ => state.open -= 1,
        }
        drop(state);
        self.freed.notify_one();
    }
}

/// Sandbox commands a server runs at once by default.
pub const DEFAULT_MAX_RUNS: usize = 64;

enum Shutdown {
    /// No command started yet.
    Idle,
    Running {
        _guard: crate::supervisor::CancelGuard,
        watch: crate::supervisor::CancelWatch,
    },
    ShuttingDown,
}

/// One request's secrets, queued for the writer thread.
struct WriteJob {
    actor: String,
    vault: crate::store::VaultName,
    secrets: Vec<crate::store::NewSecret>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<crate::store::SetOutcome>, ApiError>>,
}

/// Requests committed together at most.
const MAX_BATCH: usize = 256;

impl ApiState {
    /// State for a server run by this shroud binary, on the home's own store.
    pub fn new(home: PathBuf, master_key_env: Option<Zeroizing<String>>) -> Arc<Self> {
        Self::on_store(home, master_key_env, crate::store::StoreLocation::Home)
    }

    /// State for a server run by this shroud binary, on the store at `location`.
    pub fn on_store(
        home: PathBuf,
        master_key_env: Option<Zeroizing<String>>,
        location: crate::store::StoreLocation,
    ) -> Arc<Self> {
        let binary = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("shroud"));
        Self::with_shroud_binary(home, master_key_env, location, binary)
    }

    /// State whose sandboxes run `binary __sandbox-init` (an embedding
    /// program, or a test harness, is not itself shroud).
    pub fn with_shroud_binary(
        home: PathBuf,
        master_key_env: Option<Zeroizing<String>>,
        location: crate::store::StoreLocation,
        shroud_binary: PathBuf,
    ) -> Arc<Self> {
        Arc::new(ApiState {
            home,
            shroud_binary,
            master_key_env,
            location,
            pool: StorePool::new(DEFAULT_DB_CONNECTIONS),
            fetch: std::sync::OnceLock::new(),
            writer: std::sync::OnceLock::new(),
            shutdown: Mutex::new(Shutdown::Idle),
            runs: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_RUNS)),
            max_runs: std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_RUNS),
            caller_env: crate::supervisor::plan::CallerEnv::of_this_process(),
            manager: std::sync::OnceLock::new(),
            busy_sandboxes: Arc::default(),
            process_ids: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The client of `POST /api/fetch` and where it may connect (rustls;
    /// redirects are not followed, so a resolved value never travels to a
    /// host the caller did not name; public addresses only unless
    /// [`Self::configure_fetch`] opened ranges).
    pub fn fetcher(&self) -> &Fetcher {
        self.fetch.get_or_init(|| {
            Fetcher::new(Vec::new(), destinations::FetchPolicy::default())
                .expect("the HTTP client builds without extra roots")
        })
    }

    /// Configures `POST /api/fetch`: trust the certificates of `ca_pem` (one
    /// or more PEM certificates: a private CA) beside the bundled Mozilla
    /// roots, and allow the `allowed` ranges beside public addresses.
    /// Returns how many certificates were added. Call it before serving.
    pub fn configure_fetch(
        &self,
        ca_pem: Option<&[u8]>,
        allowed: Vec<ipnet::IpNet>,
    ) -> Result<usize, String> {
        let certificates = match ca_pem {
            None => Vec::new(),
            Some(pem) => {
                let certificates = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| format!("not PEM certificates: {e}"))?;
                if certificates.is_empty() {
                    return Err("no PEM certificate in it".to_owned());
                }
                certificates
            }
        };
        let count = certificates.len();
        let fetcher = Fetcher::new(certificates, destinations::FetchPolicy::allowing(allowed))
            .map_err(|e| e.to_string())?;
        self.fetch
            .set(fetcher)
            .map_err(|_| "the fetch client is already in use".to_owned())?;
        Ok(count)
    }

    /// Sets secrets through the writer thread, which commits every request
    /// waiting at that moment in one transaction: concurrent writers share
    /// one durable commit instead of queueing for one each.
    pub async fn write_secrets(
        self: &Arc<Self>,
        actor: &str,
        vault: crate::store::VaultName,
        secrets: Vec<crate::store::NewSecret>,
    ) -> Result<Vec<crate::store::SetOutcome>, ApiError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = WriteJob {
            actor: actor.to_owned(),
            vault,
            secrets,
            reply,
        };
        let sender = self.writer.get_or_init(|| self.start_writer());
        sender
            .send(job)
            .map_err(|_| ApiError::internal("the writer thread is gone"))?;
        answer.await.map_err(ApiError::internal)?
    }

    fn start_writer(self: &Arc<Self>) -> std::sync::mpsc::Sender<WriteJob> {
        let (sender, jobs) = std::sync::mpsc::channel::<WriteJob>();
        let state = Arc::clone(self);
        std::thread::Builder::new()
            .name("shroud-writer".to_owned())
            .spawn(move || {
                let mut store = None;
                while let Ok(first) = jobs.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    tracing::debug!(requests = batch.len(), "group commit");
                    let opened = match store.take() {
                        Some(s) => Ok(s),
                        None => state.open(),
                    };
                    let mut replies = Vec::with_capacity(batch.len());
                    let work: Vec<_> = batch
                        .into_iter()
                        .map(|job| {
                            replies.push(job.reply);
                            (job.actor, job.vault, job.secrets)
                        })
                        .collect();
                    let results = opened.and_then(|mut s| {
                        let r = s.set_secrets_batch(work);
                        // A broken connection is dropped: the next batch opens a fresh one.
                        if s.is_usable() {
                            store = Some(s);
                        }
                        r
                    });
                    match results {
                        Ok(results) => {
                            for (reply, outcomes) in replies.into_iter().zip(results) {
                                let _ = reply.send(Ok(outcomes));
                            }
                        }
                        Err(e) => {
                            let error = ApiError::from(e);
                            for reply in replies {
                                let _ = reply.send(Err(error.clone()));
                            }
                        }
                    }
                }
            })
            .expect("the writer thread starts");
        sender
    }

    /// Opens the store once, so that a bad home or key fails at start.
    pub fn check(self: &Arc<Self>) -> Result<(), StoreError> {
        let store = self.open()?;
        self.pool.state.lock().expect("pool lock").open += 1;
        self.pool.give_back(Some(store));
        Ok(())
    }

    /// Where the store is, for messages (never a password).
    fn location_text(&self) -> String {
        match &self.location {
            crate::store::StoreLocation::Home => self.home.display().to_string(),
            crate::store::StoreLocation::Postgres(target) => target.describe().to_owned(),
        }
    }

    /// `sqlite` or `postgresql`.
    pub fn backend_name(&self) -> &'static str {
        match &self.location {
            crate::store::StoreLocation::Home => "sqlite",
            crate::store::StoreLocation::Postgres(_) => "postgresql",
        }
    }

    /// Sets how many store connections the server keeps open at once.
    pub fn set_db_connections(&self, limit: usize) {
        self.pool.set_limit(limit.max(1));
    }

    fn open(&self) -> Result<Store, StoreError> {
        Store::open(
            StoreConfig {
                home: self.home.clone(),
                master_key_env: self.master_key_env.clone(),
                actor: crate::store::API_ACTOR.to_owned(),
                location: self.location.clone(),
            },
            OpenMode::Create,
        )
    }

    /// Runs `f` on a store acting as `actor`, on a blocking thread.
    pub async fn with_store<T, F>(self: &Arc<Self>, actor: &str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.with_store_as(actor, f).await
    }

    /// [`Self::with_store`] for work whose errors are not the store's.
    pub async fn with_store_as<T, E, F>(self: &Arc<Self>, actor: &str, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError> + From<StoreError> + Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, E> + Send + 'static,
    {
        let state = Arc::clone(self);
        let actor = actor.to_owned();
        tokio::task::spawn_blocking(move || state.store_blocking(&actor, f))
            .await
            .map_err(ApiError::internal)?
            .map_err(Into::into)
    }

    /// Runs `f` on a pooled store acting as `actor`, on this thread (a
    /// blocking one).
    pub fn store_blocking<T, E, F>(&self, actor: &str, f: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: FnOnce(&mut Store) -> Result<T, E>,
    {
        let lease = self.pool.take().map_err(|busy| {
            E::from(StoreError::Unavailable {
                context: "waiting for a free database connection",
                store: self.location_text(),
                message: busy,
            })
        })?;
        let mut store = match lease {
            Lease::Idle(store) => store,
            Lease::New => match self.open() {
                Ok(store) => store,
                Err(e) => {
                    self.pool.give_back(None);
                    return Err(e.into());
                }
            },
        };
        store.set_actor(actor);
        let result = f(&mut store);
        self.pool.give_back(Some(store));
        result
    }

    /// Sets how many sandbox commands may run at once (call it before
    /// serving: it counts on none running).
    pub fn set_max_runs(&self, max_runs: usize) {
        let before = self
            .max_runs
            .swap(max_runs, std::sync::atomic::Ordering::SeqCst);
        if max_runs > before {
            self.runs.add_permits(max_runs - before);
        } else {
            self.runs.forget_permits(before - max_runs);
        }
    }

    /// A slot for one sandbox command, if fewer than the maximum run.
    pub fn try_start_run(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        Arc::clone(&self.runs).try_acquire_owned().map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} sandbox commands are running, the most this server runs at once; try again when one ends",
                    self.max_runs.load(std::sync::atomic::Ordering::SeqCst)
                ),
            )
        })
    }

    /// A watch that fires when the server shuts down; `None` once it is.
    pub fn shutdown_watch(&self) -> std::io::Result<Option<crate::supervisor::CancelWatch>> {
        let mut shutdown = self.shutdown.lock().expect("shutdown lock");
        if let Shutdown::Idle = *shutdown {
            let (guard, watch) = crate::supervisor::cancel_pair()?;
            *shutdown = Shutdown::Running {
                _guard: guard,
                watch,
            };
        }
        match &*shutdown {
            Shutdown::Running { watch, .. } => watch.try_clone().map(Some),
            _ => Ok(None),
        }
    }

    /// Kills every running sandbox command (their clients get their exit)
    /// and refuses new ones.
    pub fn begin_shutdown(&self) {
        *self.shutdown.lock().expect("shutdown lock") = Shutdown::ShuttingDown;
    }

    /// A new background command id (1, 2, ... for this server).
    pub fn next_process_id(&self) -> u64 {
        self.process_ids
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
    }

    /// Marks the sandbox `id` busy while the guard lives.
    pub fn sandbox_busy(&self, id: &str) -> crate::supervisor::sandbox_files::BusyGuard {
        self.busy_sandboxes.enter(id)
    }

    /// The home directory.
    pub fn home(&self) -> &std::path::Path {
        &self.home
    }

    /// The deployment manager, if this server supervises deployments.
    pub fn manager(&self) -> Option<Arc<crate::supervisor::manager::Manager>> {
        self.manager.get().cloned()
    }

    /// Starts the deployment manager of this server (once).
    pub fn start_manager(
        &self,
        timings: crate::supervisor::manager::Timings,
        max_agent_runs: usize,
    ) -> Arc<crate::supervisor::manager::Manager> {
        Arc::clone(self.manager.get_or_init(|| {
            crate::supervisor::manager::Manager::start(crate::supervisor::manager::ManagerConfig {
                home: self.home.clone(),
                binary: self.shroud_binary.clone(),
                store: StoreConfig {
                    home: self.home.clone(),
                    master_key_env: self.master_key_env.clone(),
                    actor: crate::store::CLI_ACTOR.to_owned(),
                    location: self.location.clone(),
                },
                node: crate::store::this_node(),
                timings,
                caller_env: self.caller_env.clone(),
                max_agent_runs,
                busy_sandboxes: Arc::clone(&self.busy_sandboxes),
            })
        }))
    }

    /// The server's environment at its start (see `plan::CallerEnv`).
    pub fn caller_env(&self) -> &crate::supervisor::plan::CallerEnv {
        &self.caller_env
    }

    /// Where sandboxes live and what runs them.
    pub fn sandbox_host(&self) -> crate::supervisor::sandboxes::SandboxHost {
        crate::supervisor::sandboxes::SandboxHost {
            home: self.home.clone(),
            binary: self.shroud_binary.clone(),
        }
    }
}

/// The client `POST /api/fetch` sends with, and the policy its resolver
/// applies.
pub struct Fetcher {
    pub client: reqwest::Client,
    pub policy: Arc<destinations::FetchPolicy>,
}

impl Fetcher {
    /// rustls with the bundled roots plus `extra`, no redirects, no proxy
    /// (a proxy would connect for us, to addresses we never checked), and a
    /// resolver that keeps only the addresses `policy` allows.
    fn new(
        extra: Vec<reqwest::Certificate>,
        policy: destinations::FetchPolicy,
    ) -> reqwest::Result<Fetcher> {
        let policy = Arc::new(policy);
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(destinations::GuardedResolver {
                policy: Arc::clone(&policy),
            }));
        for certificate in extra {
            builder = builder.add_root_certificate(certificate);
        }
        Ok(Fetcher {
            client: builder.build()?,
            policy,
        })
    }
}

/// Every route of the API.
pub fn router(state: Arc<ApiState>) -> Router {
    let routes = Router::new()
        .route("/api/vaults/secrets", post(handlers::set_secrets))
        .route("/api/vaults/vars", post(handlers::set_var))
        .route("/api/vaults/{vault}/secrets", get(handlers::list_secrets))
        .route(
            "/api/vaults/{vault}/secrets/{name}",
            get(handlers::secret_metadata).delete(handlers::delete_secret),
        )
        .route("/api/vaults/{vault}/rendered", get(handlers::rendered))
        .route("/api/secrets/set", post(handlers::scoped_set))
        .route("/api/secrets/get", post(handlers::scoped_get))
        .route("/api/secrets/delete", post(handlers::scoped_delete))
        .route("/api/fetch", post(fetch::fetch))
        .route(
            "/api/sandboxes",
            post(sandboxes::create).get(sandboxes::list),
        )
        .route(
            "/api/sandboxes/{id}",
            get(sandbox_files::show).delete(sandboxes::remove),
        )
        .route(
            "/api/sandboxes/{id}/files",
            get(sandbox_files::get)
                .put(sandbox_files::put)
                .delete(sandbox_files::remove),
        )
        .route(
            "/api/sandboxes/{id}/timeout",
            post(sandbox_files::set_timeout),
        )
        .route("/api/sandboxes/{id}/processes", get(sandboxes::processes))
        .route(
            "/api/sandboxes/{id}/processes/{pid}",
            delete(sandboxes::stop_process),
        )
        .route(
            "/api/sandboxes/{id}/processes/{pid}/log",
            get(sandboxes::process_log),
        )
        .route("/api/sandboxes/{id}/exec", post(sandboxes::exec))
        .route(
            "/api/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route("/api/deployments/{slug}", delete(deployments::remove))
        .route("/api/deployments/{slug}/logs", get(deployments::logs))
        .route("/api/deployments/{slug}/{verb}", post(deployments::control))
        .route(
            "/api/agents/{slug}/runs",
            post(deployments::start_run).get(deployments::list_runs),
        )
        .route("/api/runs/{id}", get(deployments::run))
        .route("/api/runs/{id}/log", get(deployments::run_log))
        .route("/api/audit", get(handlers::audit))
        .route("/api/openapi.json", get(handlers::openapi))
        .route("/api/health", get(handlers::health))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed);
    with_layers(routes).with_state(state)
}

/// The layers every route runs under: the body limit (413), request logs,
/// and a panic turned into a bare 500. Public so that a test can put a
/// route of its own under exactly these.
pub fn with_layers<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(handlers::log_request))
        .layer(CatchPanicLayer::custom(handlers::panic_response))
}

/// Serves the API on `listener` until SIGINT or SIGTERM, within `options`
/// (see [`server`]). Requests in flight finish; sandbox commands still
/// running are killed first, so that their clients get an answer and
/// shutdown does not wait for a command's whole wall time.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    options: server::ServeOptions,
) -> std::io::Result<()> {
    serve_all(Some(listener), None, state, options).await
}

/// Serves the API on the TCP listener and the supervisor's Unix socket
/// (either may be absent) until SIGINT or SIGTERM. On the socket, the
/// same routes answer with the peer acting as the CLI (see `auth`). At
/// shutdown the deployments' instances are stopped (SIGTERM, then SIGKILL
/// after their grace) before the server returns.
pub async fn serve_all(
    tcp: Option<tokio::net::TcpListener>,
    unix: Option<tokio::net::UnixListener>,
    state: Arc<ApiState>,
    options: server::ServeOptions,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait_for = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let tcp_server = tcp.map(|listener| {
        let app = router(Arc::clone(&state));
        tokio::spawn(server::serve_on(
            listener,
            app,
            options,
            wait_for(stopped.clone()),
        ))
    });
    let unix_server = unix.map(|listener| {
        let app = router(Arc::clone(&state)).layer(axum::Extension(auth::LocalPeer));
        let listener = server::PeerCheckedUnixListener::new(listener);
        tokio::spawn(server::serve_on(
            listener,
            app,
            options,
            wait_for(stopped.clone()),
        ))
    });
    shutdown_signal().await;
    state.begin_shutdown();
    if let Some(manager) = state.manager() {
        if let Err(e) = manager.shutdown().await {
            tracing::warn!(error = %e, "stopping the deployments");
        }
    }
    let _ = stop.send(true);
    for server in [tcp_server, unix_server].into_iter().flatten() {
        let _ = server.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = interrupt => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
