//! The manager: one actor that owns every long-lived run of a supervisor
//! (`shroud serve`): the instances of service deployments and agent runs.
//!
//! One thread owns all of it ([`Manager::start`]). The API, the socket and
//! the instances' own threads talk to it over one channel: requests carry a
//! oneshot reply; instances report `started(pid)`, `up` and `exited`. On
//! every tick the actor starts what is due (a replica after its backoff,
//! the next step of a rollout), looks at the store's change mark (the audit
//! chain's head: one row, every [`Timings::mark_check`]) and, when it moved,
//! reads the versions of the
//! granted secrets (metadata only, one query per vault; every
//! [`Timings::poll`] at the latest), and renews its leases. If the actor panics, every instance it held is killed (the
//! run handles are dropped) and the actor starts again from the store.
//!
//! **Rotation with no gap.** When a granted secret gets a new version (or
//! is deleted), or on `deploy restart`, the deployment rolls one instance
//! at a time: a new instance starts on the new values; once it is up
//! (alive for the readiness time, or `READY=1` on `$NOTIFY_SOCKET`) one old
//! instance gets SIGTERM (SIGKILL after the grace). A new instance that
//! exits or is not up within [`Timings::up_timeout`] is killed, the old
//! ones keep serving, and the failure is in the listing, the log and the
//! audit log. Listening sockets are bound once by the manager and handed
//! to every instance, so old and new accept from the same queue.
//!
//! Timings are injectable ([`Timings`]); the backoff and the rollout are
//! driven by the `now` each tick is given, so they are tested without
//! sleeping.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::deploy::{
    self, Definition, Desired, InstanceLog, LogFile, Mode, NotifySocket, Readiness,
};
use super::output::{Destination, OutputMode};
use super::plan::{self, CallerEnv, PlanError, RunIo, RunSpec, StoreAccess};
use super::sandboxes::SandboxHost;
use super::spawn::StdioMode;
use super::{Control, RunHandle, StartedHook};
use crate::clock::{now_ms, rfc3339};
use crate::secret::SecretValue;
use crate::store::audit::{Action, Outcome};
use crate::store::backend::RecordRow;
use crate::store::{OpenMode, Store, StoreConfig, VaultName, DEPLOYMENT_KIND, RUN_KIND};

/// The timings of the manager (tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// SIGTERM to SIGKILL when an instance is stopped.
    pub grace: Duration,
    /// The first backoff after an exit; doubled at each exit after it.
    pub backoff_first: Duration,
    pub backoff_max: Duration,
    /// An instance up this long resets the backoff.
    pub backoff_reset: Duration,
    /// How often the granted secrets' versions are read at the latest
    /// (sooner when the store's change mark moves).
    pub poll: Duration,
    /// How often the store's change mark is looked at (one row).
    pub mark_check: Duration,
    /// The actor's tick.
    pub tick: Duration,
    /// How long a lease lasts, and how often it is renewed.
    pub lease: Duration,
    pub lease_renew: Duration,
    /// How long a new instance of a rollout may take to come up, beyond
    /// its readiness time.
    pub up_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            grace: Duration::from_secs(10),
            backoff_first: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            backoff_reset: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            mark_check: Duration::from_millis(150),
            tick: Duration::from_millis(50),
            lease: Duration::from_secs(10),
            lease_renew: Duration::from_secs(3),
            up_timeout: Duration::from_secs(30),
        }
    }
}

/// The restart delay after exits: `first`, doubling to `max`; reset once an
/// instance stayed up long enough.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay before the next start; doubles the one after it.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// Why the manager refused a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManagerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Usage(String),
    /// Too many runs at once.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Failed(String),
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, ManagerError>>;

/// What the manager is asked to do to a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Stop,
    Start,
    Restart,
    Remove,
}

/// One agent run to start.
pub struct AgentRunRequest {
    pub slug: String,
    pub message: String,
    pub params: serde_json::Value,
    pub timeout: Option<Duration>,
    pub actor: String,
}

enum Message {
    Created {
        definition: Box<Definition>,
        sockets: Vec<OwnedFd>,
        reply: Reply<()>,
    },
    List {
        reply: Reply<Vec<serde_json::Value>>,
    },
    Control {
        slug: String,
        verb: Verb,
        reply: Reply<()>,
    },
    AgentRun {
        request: AgentRunRequest,
        reply: Reply<String>,
    },
    Event(Event),
    Shutdown {
        reply: Reply<()>,
    },
    BackgroundStart {
        start: Box<super::background::BackgroundStart>,
        reply: Reply<()>,
    },
    BackgroundList {
        sandbox: String,
        reply: Reply<Vec<serde_json::Value>>,
    },
    BackgroundStop {
        sandbox: String,
        process_id: u64,
        reply: Reply<bool>,
    },
    BackgroundEnded(super::background::Ended),
    /// A sandbox was deleted: its background commands are killed.
    SandboxGone {
        sandbox: String,
    },
}

enum Event {
    Started {
        slug: String,
        instance: u64,
        pid: u32,
    },
    Prepared {
        slug: String,
        instance: u64,
        versions: BTreeMap<String, u64>,
    },
    Ready {
        slug: String,
        instance: u64,
    },
    Exited {
        slug: String,
        instance: u64,
        code: u8,
        signal: Option<i32>,
        error: Option<String>,
    },
}

/// What the manager needs to run things.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub home: PathBuf,
    pub binary: PathBuf,
    pub store: StoreConfig,
    pub node: String,
    pub timings: Timings,
    pub caller_env: CallerEnv,
    /// Agent runs at once, at most (beyond: [`ManagerError::Busy`]).
    pub max_agent_runs: usize,
    /// Sandboxes running a command (the lifetime sweep leaves them).
    pub busy_sandboxes: Arc<crate::supervisor::sandbox_files::Busy>,
}

/// How often expired sandboxes are looked for.
const SANDBOX_SWEEP: Duration = Duration::from_secs(1);

/// Agent runs a supervisor runs at once by default.
pub const DEFAULT_MAX_AGENT_RUNS: usize = 32;
/// A run's log is kept in its record up to this size (the tail).
pub const RUN_LOG_CAP: usize = 1024 * 1024;

/// The handle the API holds: requests in, replies out.
pub struct Manager {
    sender: Mutex<mpsc::Sender<Message>>,
    config: Arc<ManagerConfig>,
}

/// How long a server's start waits for its manager's first steps.
const READY_WAIT: Duration = Duration::from_secs(10);

impl Manager {
    /// Starts the actor thread, and returns once it has taken up what this
    /// node runs and ended the runs its last supervisor left (or after
    /// [`READY_WAIT`]): the server answers nothing before, so a caller
    /// listing runs right after a crash never sees one still `running`.
    pub fn start(config: ManagerConfig) -> Arc<Manager> {
        let config = Arc::new(config);
        let (sender, receiver) = mpsc::channel();
        let manager = Arc::new(Manager {
            sender: Mutex::new(sender.clone()),
            config: Arc::clone(&config),
        });
        let (ready, started) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("shroud-manager".to_owned())
            .spawn(move || supervise_actor(config, sender, receiver, ready))
            .expect("the manager thread starts");
        // A panic before it is ready drops `ready`: no wait then.
        let _ = started.recv_timeout(READY_WAIT);
        manager
    }

    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    fn send(&self, message: Message) -> Result<(), ManagerError> {
        self.sender
            .lock()
            .expect("manager lock")
            .send(message)
            .map_err(|_| ManagerError::Failed("the supervisor's manager is gone".to_owned()))
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Message) -> Result<T, ManagerError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(make(reply))?;
        answer.await.map_err(|_| {
            ManagerError::Failed("the supervisor's manager restarted; try again".to_owned())
        })?
    }

    /// Hands a created deployment (stored, sockets bound) to the actor.
    pub async fn created(
        &self,
        definition: Definition,
        sockets: Vec<OwnedFd>,
    ) -> Result<(), ManagerError> {
        self.ask(|reply| Message::Created {
            definition: Box::new(definition),
            sockets,
            reply,
        })
        .await
    }

    /// Every deployment, as `GET /api/deployments` shows it.
    pub async fn list(&self) -> Result<Vec<serde_json::Value>, ManagerError> {
        self.ask(|reply| Message::List { reply }).await
    }

    pub async fn control(&self, slug: &str, verb: Verb) -> Result<(), ManagerError> {
        let slug = slug.to_owned();
        self.ask(|reply| Message::Control { slug, verb, reply })
            .await
    }

    /// Starts an agent run; answers its id.
    pub async fn agent_run(&self, request: AgentRunRequest) -> Result<String, ManagerError> {
        self.ask(|reply| Message::AgentRun { request, reply }).await
    }

    /// Starts a sandbox's background command (see `background`).
    pub async fn background_start(
        &self,
        start: super::background::BackgroundStart,
    ) -> Result<(), ManagerError> {
        self.ask(|reply| Message::BackgroundStart {
            start: Box::new(start),
            reply,
        })
        .await
    }

    /// A sandbox's background commands.
    pub async fn background_list(
        &self,
        sandbox: &str,
    ) -> Result<Vec<serde_json::Value>, ManagerError> {
        let sandbox = sandbox.to_owned();
        self.ask(|reply| Message::BackgroundList { sandbox, reply })
            .await
    }

    /// Stops a background command; false when there is no such one.
    pub async fn background_stop(
        &self,
        sandbox: &str,
        process_id: u64,
    ) -> Result<bool, ManagerError> {
        let sandbox = sandbox.to_owned();
        self.ask(|reply| Message::BackgroundStop {
            sandbox,
            process_id,
            reply,
        })
        .await
    }

    /// Says that a sandbox was deleted (its background commands end).
    pub fn sandbox_gone(&self, sandbox: &str) {
        let _ = self.send(Message::SandboxGone {
            sandbox: sandbox.to_owned(),
        });
    }

    /// Stops every instance (SIGTERM, SIGKILL after the grace) and answers
    /// once they are gone.
    pub async fn shutdown(&self) -> Result<(), ManagerError> {
        self.ask(|reply| Message::Shutdown { reply }).await
    }
}

/// Runs the actor; when it panics, starts it again (the instances it held
/// are killed as their handles drop).
fn supervise_actor(
    config: Arc<ManagerConfig>,
    sender: mpsc::Sender<Message>,
    receiver: mpsc::Receiver<Message>,
    ready: mpsc::SyncSender<()>,
) {
    let mut ready = Some(ready);
    loop {
        let mut actor = Actor::new(Arc::clone(&config), sender.clone());
        let first = ready.take();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| actor.run(&receiver, first)));
        match outcome {
            Ok(()) => return,
            Err(_) => {
                tracing::error!("the deployment manager failed; starting it again");
                drop(actor);
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

struct Instance {
    id: u64,
    handle: RunHandle,
    pid: Option<u32>,
    started: Instant,
    started_ms: i64,
    up: bool,
    versions: Option<BTreeMap<String, u64>>,
    retiring: bool,
    ended: Arc<AtomicBool>,
    run_id: Option<String>,
}

struct Rollout {
    /// Instances numbered below this are the ones to replace.
    before: u64,
    candidate: Option<u64>,
    deadline: Instant,
    reason: String,
    target: BTreeMap<String, Option<u64>>,
}

struct Live {
    def: Definition,
    sockets: Vec<OwnedFd>,
    log: Arc<LogFile>,
    instances: Vec<Instance>,
    next_instance: u64,
    restarts: u64,
    last_exit: Option<serde_json::Value>,
    backoff: Backoff,
    restart_at: Option<Instant>,
    rollout: Option<Rollout>,
    rotation: Option<serde_json::Value>,
    failed_target: Option<BTreeMap<String, Option<u64>>>,
    current: BTreeMap<String, Option<u64>>,
    socket_error: Option<String>,
    /// A `deploy restart` asked for while another rollout went on.
    restart_pending: bool,
}

/// The rollout of a `deploy restart`: every instance there is now.
fn restart_rollout(live: &Live) -> Rollout {
    Rollout {
        before: live.next_instance,
        candidate: None,
        deadline: Instant::now(),
        reason: "restart".to_owned(),
        target: live.current.clone(),
    }
}

impl Live {
    fn new(def: Definition, sockets: Vec<OwnedFd>, config: &ManagerConfig) -> Live {
        let dir = def.dir(&config.home);
        let log = Arc::new(LogFile::new(dir.join("log.jsonl"), deploy::LOG_CAP_BYTES));
        Live {
            def,
            sockets,
            log,
            instances: Vec::new(),
            next_instance: 1,
            restarts: 0,
            last_exit: None,
            backoff: Backoff::new(config.timings.backoff_first, config.timings.backoff_max),
            restart_at: None,
            rollout: None,
            rotation: None,
            failed_target: None,
            current: BTreeMap::new(),
            socket_error: None,
            restart_pending: false,
        }
    }

    fn serving(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(|i| !i.retiring && i.run_id.is_none())
    }

    fn state(&self) -> &'static str {
        if self.def.desired == Desired::Stopped {
            return "stopped";
        }
        if self.def.mode == Mode::Agent {
            return "running";
        }
        let serving = self.serving().count();
        let up = self.serving().filter(|i| i.up).count();
        if self.restart_at.is_some() || (serving == 0 && self.socket_error.is_some()) {
            "backoff"
        } else if up >= self.def.replicas as usize {
            "running"
        } else {
            "starting"
        }
    }

    fn view(&self, node: &str) -> serde_json::Value {
        let instances: Vec<_> = self
            .instances
            .iter()
            .filter(|i| i.run_id.is_none())
            .map(|i| {
                serde_json::json!({
                    "id": i.id,
                    "pid": i.pid,
                    "state": if i.retiring { "stopping" } else if i.up { "running" } else { "starting" },
                    "started_at": rfc3339(i.started_ms),
                    "secret_versions": i.versions,
                })
            })
            .collect();
        let mut view = definition_view(&self.def);
        let extra = serde_json::json!({
            "state": self.state(),
            "node": node,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "rotation": self.rotation,
            "instances": instances,
            "secret_versions": self.current,
            "error": self.socket_error,
        });
        merge(&mut view, extra);
        view
    }
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

/// The stored part of a deployment's listing.
pub fn definition_view(def: &Definition) -> serde_json::Value {
    serde_json::json!({
        "slug": def.slug,
        "mode": def.mode,
        "vault": def.vault,
        "template": def.template,
        "command": def.command,
        "secrets": def.grants,
        "replicas": def.replicas,
        "sockets": def.sockets,
        "created_at": rfc3339(def.created_at),
    })
}

struct Actor {
    config: Arc<ManagerConfig>,
    sender: mpsc::Sender<Message>,
    store: Option<Store>,
    live: HashMap<String, Live>,
    /// Agent runs going on; each run's thread gives its slot back itself
    /// (whatever becomes of its deployment meanwhile).
    agent_runs: Arc<std::sync::atomic::AtomicUsize>,
    last_poll: Option<Instant>,
    /// The store's change mark at the last look (see `Store::change_mark`).
    mark: Option<Vec<u8>>,
    last_mark_check: Option<Instant>,
    last_lease: Option<Instant>,
    last_sweep: Option<Instant>,
    background: super::background::Table,
    dirty: bool,
    last_status: Instant,
    shutting_down: Option<Reply<()>>,
}

impl Actor {
    fn new(config: Arc<ManagerConfig>, sender: mpsc::Sender<Message>) -> Actor {
        Actor {
            config,
            sender,
            store: None,
            live: HashMap::new(),
            agent_runs: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            last_poll: None,
            mark: None,
            last_mark_check: None,
            last_lease: None,
            last_sweep: None,
            background: Default::default(),
            dirty: false,
            last_status: Instant::now(),
            shutting_down: None,
        }
    }

    /// Deletes the sandboxes whose lifetime is over (their files, their
    /// background commands, their record), but none running a command.
    fn sweep_sandboxes(&mut self) {
        let config = Arc::clone(&self.config);
        let Some(store) = self.store() else {
            return;
        };
        let rows = match store.list_sandboxes() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "the sandbox sweep cannot list sandboxes");
                return;
            }
        };
        let host = crate::supervisor::sandboxes::SandboxHost {
            home: config.home.clone(),
            binary: config.binary.clone(),
        };
        for id in crate::supervisor::sandbox_files::expired(&config.home, &rows, now_ms()) {
            if config.busy_sandboxes.is_busy(&id) {
                continue;
            }
            self.background.forget(&id);
            let Some(store) = self.store() else {
                return;
            };
            match host.remove(store, &id) {
                Ok(()) => tracing::info!(sandbox = %id, "sandbox expired: deleted"),
                Err(e) => {
                    tracing::warn!(sandbox = %id, error = %e, "cannot delete an expired sandbox")
                }
            }
        }
    }

    fn store(&mut self) -> Option<&mut Store> {
        if self.store.as_ref().is_some_and(|s| !s.is_usable()) {
            self.store = None;
        }
        if self.store.is_none() {
            match Store::open(self.config.store.clone(), OpenMode::Existing) {
                Ok(store) => self.store = Some(store),
                Err(e) => {
                    tracing::warn!(error = %e, "the manager cannot open the store");
                    return None;
                }
            }
        }
        self.store.as_mut()
    }

    fn run(&mut self, receiver: &mpsc::Receiver<Message>, ready: Option<mpsc::SyncSender<()>>) {
        // What this node runs, before the first request is answered.
        self.last_lease = Some(Instant::now());
        self.renew_leases();
        self.end_orphaned_runs();
        if let Some(ready) = ready {
            let _ = ready.send(());
        }
        loop {
            // Something due soon (a readiness, a restart, a rollout): the
            // short tick; otherwise wake for the next look at the change
            // mark only.
            let busy = self.live.values().any(|l| {
                l.rollout.is_some()
                    || l.restart_at.is_some()
                    || l.instances.iter().any(|i| !i.up && i.run_id.is_none())
            });
            let wait = if busy {
                self.config.timings.tick
            } else {
                self.config.timings.mark_check
            };
            match receiver.recv_timeout(wait) {
                Ok(message) => self.handle(message),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            // Everything queued first, then one tick.
            while let Ok(message) = receiver.try_recv() {
                self.handle(message);
            }
            self.tick(Instant::now());
            if self.shutting_down.is_some() && self.live.values().all(|l| l.instances.is_empty()) {
                if let Some(reply) = self.shutting_down.take() {
                    let _ = reply.send(Ok(()));
                }
                return;
            }
        }
    }

    /// Agent runs this node had started when its last supervisor died:
    /// their processes died with it, so they end as `cancelled`.
    fn end_orphaned_runs(&mut self) {
        let node = self.config.node.clone();
        let home = self.config.home.clone();
        let Some(store) = self.store() else { return };
        let Ok(rows) = store.list_records(RUN_KIND, None) else {
            return;
        };
        for row in rows {
            let Ok(mut run) = serde_json::from_str::<serde_json::Value>(&row.data) else {
                continue;
            };
            if run["status"] != "running" || run["node"] != node.as_str() {
                continue;
            }
            let path = run_log_path(&home, &row.id);
            merge(
                &mut run,
                serde_json::json!({
                    "status": "cancelled",
                    "ended_at": rfc3339(now_ms()),
                    "log": tail_of(run_log_text(&path)),
                }),
            );
            if store
                .update_record(&run_row(&row.id, &row.parent, &run))
                .is_ok_and(|updated| updated)
            {
                LogFile::new(path, deploy::LOG_CAP_BYTES).append(&serde_json::json!({
                    "ts": rfc3339(now_ms()),
                    "event": "exit",
                    "code": null,
                    "status": "cancelled",
                }));
            }
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Created {
                definition,
                sockets,
                reply,
            } => {
                let slug = definition.slug.clone();
                // A lease renewal may have found the new record first: if
                // it could start it (no socket of its own to bind), keep
                // that one; otherwise this one, with the sockets bound.
                let started = self
                    .live
                    .get(&slug)
                    .is_some_and(|l| l.socket_error.is_none());
                if !started {
                    let live = Live::new(*definition, sockets, &self.config);
                    live.log.event("supervisor", "created");
                    self.live.insert(slug, live);
                }
                self.dirty = true;
                let _ = reply.send(Ok(()));
            }
            Message::List { reply } => {
                let _ = reply.send(Ok(self.list()));
            }
            Message::Control { slug, verb, reply } => {
                let _ = reply.send(self.control(&slug, verb));
            }
            Message::AgentRun { request, reply } => {
                let _ = reply.send(self.agent_run(request));
            }
            Message::Event(event) => self.event(event),
            Message::BackgroundStart { start, reply } => {
                let sender = self.sender.clone();
                self.background.start(*start, move |ended| {
                    let _ = sender.send(Message::BackgroundEnded(ended));
                });
                let _ = reply.send(Ok(()));
            }
            Message::BackgroundList { sandbox, reply } => {
                let _ = reply.send(Ok(self.background.list(&sandbox)));
            }
            Message::BackgroundStop {
                sandbox,
                process_id,
                reply,
            } => {
                let _ = reply.send(Ok(self.background.stop(&sandbox, process_id)));
            }
            Message::BackgroundEnded(ended) => self.background.ended(ended),
            Message::SandboxGone { sandbox } => self.background.forget(&sandbox),
            Message::Shutdown { reply } => {
                self.background.stop_all();
                let grace = self.config.timings.grace;
                for live in self.live.values_mut() {
                    for instance in &mut live.instances {
                        instance.retiring = true;
                        instance.handle.stop(grace);
                    }
                }
                let node = self.config.node.clone();
                let slugs: Vec<String> = self.live.keys().cloned().collect();
                if let Some(store) = self.store() {
                    for slug in slugs {
                        let _ = store.release_record(DEPLOYMENT_KIND, &slug, &node);
                    }
                }
                self.shutting_down = Some(reply);
            }
        }
    }

    fn list(&mut self) -> Vec<serde_json::Value> {
        let node = self.config.node.clone();
        let mut views: BTreeMap<String, serde_json::Value> = self
            .live
            .iter()
            .map(|(slug, live)| (slug.clone(), live.view(&node)))
            .collect();
        // Deployments this node does not run: as their node last said.
        if let Some(store) = self.store() {
            if let Ok(rows) = store.list_records(DEPLOYMENT_KIND, None) {
                for row in rows {
                    if views.contains_key(&row.id) {
                        continue;
                    }
                    if let Ok(def) = Definition::from_row(&row) {
                        let mut view = definition_view(&def);
                        let status = def.status.clone().unwrap_or_else(
                            || serde_json::json!({ "state": "starting", "instances": [] }),
                        );
                        merge(&mut view, status);
                        if def.desired == Desired::Stopped {
                            merge(&mut view, serde_json::json!({ "state": "stopped" }));
                        }
                        merge(&mut view, serde_json::json!({ "node": row.node }));
                        views.insert(row.id, view);
                    }
                }
            }
        }
        views.into_values().collect()
    }

    /// The definition of `slug`, from this node's state or the store.
    fn load(&mut self, slug: &str) -> Result<Option<Definition>, ManagerError> {
        if let Some(live) = self.live.get(slug) {
            return Ok(Some(live.def.clone()));
        }
        let store = self
            .store()
            .ok_or_else(|| ManagerError::Failed("the store cannot be opened".to_owned()))?;
        let row = store
            .record(DEPLOYMENT_KIND, slug)
            .map_err(|e| ManagerError::Failed(e.to_string()))?;
        row.map(|row| Definition::from_row(&row).map_err(|e| ManagerError::Failed(e.to_string())))
            .transpose()
    }

    fn save(&mut self, def: &Definition) -> Result<(), ManagerError> {
        let store = self
            .store()
            .ok_or_else(|| ManagerError::Failed("the store cannot be opened".to_owned()))?;
        store
            .update_record(&def.to_row())
            .map(drop)
            .map_err(|e| ManagerError::Failed(e.to_string()))
    }

    fn control(&mut self, slug: &str, verb: Verb) -> Result<(), ManagerError> {
        let Some(mut def) = self.load(slug)? else {
            return Err(ManagerError::NotFound(format!(
                "deployment `{slug}` not found"
            )));
        };
        let grace = self.config.timings.grace;
        match verb {
            Verb::Stop => {
                def.desired = Desired::Stopped;
                self.save(&def)?;
                if let Some(live) = self.live.get_mut(slug) {
                    live.def.desired = Desired::Stopped;
                    live.rollout = None;
                    live.restart_at = None;
                    for instance in live.instances.iter_mut().filter(|i| i.run_id.is_none()) {
                        instance.retiring = true;
                        instance.handle.stop(grace);
                    }
                    live.log.event("supervisor", "stopping (deploy stop)");
                }
            }
            Verb::Start => {
                def.desired = Desired::Running;
                self.save(&def)?;
                if let Some(live) = self.live.get_mut(slug) {
                    live.def.desired = Desired::Running;
                    live.backoff.reset();
                    live.restart_at = None;
                    live.log.event("supervisor", "starting (deploy start)");
                }
            }
            Verb::Restart => {
                let Some(live) = self.live.get_mut(slug) else {
                    return Err(ManagerError::Usage(format!(
                        "deployment `{slug}` does not run on this node"
                    )));
                };
                if live.def.mode == Mode::Agent || live.def.desired == Desired::Stopped {
                    return Err(ManagerError::Usage(format!(
                        "deployment `{slug}` has no running instances to restart"
                    )));
                }
                if live.rollout.is_none() {
                    live.log
                        .event("supervisor", "rolling restart (deploy restart)");
                    live.rollout = Some(restart_rollout(live));
                } else {
                    // After the rollout going on: the restart replaces its
                    // instances too.
                    live.log
                        .event("supervisor", "rolling restart after the rollout going on");
                    live.restart_pending = true;
                }
            }
            Verb::Remove => {
                if let Some(mut live) = self.live.remove(slug) {
                    for instance in &mut live.instances {
                        instance.retiring = true;
                        instance.handle.stop(grace);
                    }
                    // The instances are killed when their handles go with
                    // `live` after the grace: keep them until they exit.
                    let holder = live.instances;
                    std::thread::spawn(move || {
                        std::thread::sleep(grace);
                        drop(holder);
                    });
                }
                let store = self
                    .store()
                    .ok_or_else(|| ManagerError::Failed("the store cannot be opened".to_owned()))?;
                store
                    .delete_record(
                        DEPLOYMENT_KIND,
                        slug,
                        Some(RUN_KIND),
                        Some((Action::DeploymentDelete, def.vault.as_str(), slug)),
                    )
                    .map_err(|e| ManagerError::Failed(e.to_string()))?;
                let dir = def.dir(&self.config.home);
                let _ = crate::sandbox::disk::remove(&dir);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        self.dirty = true;
        Ok(())
    }

    fn agent_run(&mut self, request: AgentRunRequest) -> Result<String, ManagerError> {
        let slug = request.slug.clone();
        let Some(def) = self.load(&slug)? else {
            return Err(ManagerError::NotFound(format!(
                "deployment `{slug}` not found"
            )));
        };
        if def.mode != Mode::Agent {
            return Err(ManagerError::Usage(format!(
                "deployment `{slug}` is a service, not an agent (create it with --mode agent)"
            )));
        }
        if def.desired == Desired::Stopped {
            return Err(ManagerError::Usage(format!(
                "deployment `{slug}` is stopped (deploy start {slug})"
            )));
        }
        let running = self.agent_runs.load(Ordering::SeqCst);
        if running >= self.config.max_agent_runs {
            return Err(ManagerError::Busy(format!(
                "{running} agent runs are running, the most this supervisor runs at once; try again when one ends"
            )));
        }
        let run_id = uuid::Uuid::new_v4().to_string();
        let record = serde_json::json!({
            "run_id": run_id,
            "slug": slug,
            "vault": def.vault,
            "status": "running",
            "exit_code": null,
            "started_at": rfc3339(now_ms()),
            "ended_at": null,
            "node": self.config.node,
        });
        let row = run_row(&run_id, &slug, &record);
        let store = self
            .store()
            .ok_or_else(|| ManagerError::Failed("the store cannot be opened".to_owned()))?;
        store.set_actor(&request.actor);
        let stored = store
            .create_record(
                &row,
                Some((Action::AgentRun, def.vault.as_str(), run_id.as_str())),
            )
            .map_err(|e| ManagerError::Failed(e.to_string()));
        store.set_actor(crate::store::CLI_ACTOR);
        stored?;
        let input = serde_json::json!({
            "run_id": run_id,
            "message": request.message,
            "params": request.params,
        });
        let config = Arc::clone(&self.config);
        if !self.live.contains_key(&slug) {
            self.live
                .insert(slug.clone(), Live::new(def, Vec::new(), &config));
        }
        let sender = self.sender.clone();
        let live = self.live.get_mut(&slug).expect("inserted above");
        let agent = AgentLaunch {
            run_id: run_id.clone(),
            input: SecretValue::new(input.to_string().into_bytes()),
            timeout: request.timeout,
            actor: request.actor,
            record,
            _slot: RunSlot::take(&self.agent_runs),
        };
        launch(&config, &sender, live, Some(agent));
        Ok(run_id)
    }

    fn event(&mut self, event: Event) {
        let now = Instant::now();
        let timings = self.config.timings;
        self.dirty = true;
        match event {
            Event::Started {
                slug,
                instance,
                pid,
            } => {
                if let Some(live) = self.live.get_mut(&slug) {
                    if let Some(i) = live.instances.iter_mut().find(|i| i.id == instance) {
                        i.pid = Some(pid);
                    }
                    live.log
                        .event(&instance.to_string(), &format!("started (pid {pid})"));
                }
            }
            Event::Prepared {
                slug,
                instance,
                versions,
            } => {
                if let Some(i) = self
                    .live
                    .get_mut(&slug)
                    .and_then(|l| l.instances.iter_mut().find(|i| i.id == instance))
                {
                    i.versions = Some(versions);
                }
            }
            Event::Ready { slug, instance } => {
                if let Some(live) = self.live.get_mut(&slug) {
                    if let Some(i) = live.instances.iter_mut().find(|i| i.id == instance) {
                        if !i.up {
                            i.up = true;
                            live.log.event(&instance.to_string(), "up (READY=1)");
                        }
                    }
                }
            }
            Event::Exited {
                slug,
                instance,
                code,
                signal,
                error,
            } => {
                let Some(live) = self.live.get_mut(&slug) else {
                    return;
                };
                let Some(index) = live.instances.iter().position(|i| i.id == instance) else {
                    return;
                };
                let ended = live.instances.remove(index);
                ended.ended.store(true, Ordering::SeqCst);
                let name = instance.to_string();
                if let Some(error) = &error {
                    live.log.event(&name, &format!("error: {error}"));
                }
                let how = match signal {
                    Some(signal) => format!("exited on signal {signal}"),
                    None => format!("exited with code {code}"),
                };
                if ended.run_id.is_some() {
                    return;
                }
                if ended.retiring {
                    live.log.event(&name, &format!("stopped ({how})"));
                    return;
                }
                live.last_exit = Some(serde_json::json!({
                    "instance": instance,
                    "code": code,
                    "signal": signal,
                    "at": rfc3339(now_ms()),
                    "error": error,
                }));
                if live.def.desired == Desired::Running
                    && live.rollout.as_ref().and_then(|r| r.candidate) != Some(instance)
                {
                    live.restarts += 1;
                    if now.duration_since(ended.started) >= timings.backoff_reset {
                        live.backoff.reset();
                    }
                    let delay = live.backoff.next_delay();
                    live.restart_at = Some(now + delay);
                    live.log.event(
                        &name,
                        &format!("{how}; starting again in {:.1} s", delay.as_secs_f64()),
                    );
                } else {
                    live.log.event(&name, &how);
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        let timings = self.config.timings;
        if self.shutting_down.is_some() {
            return;
        }
        if self
            .last_lease
            .is_none_or(|at| now.duration_since(at) >= timings.lease_renew)
        {
            self.last_lease = Some(now);
            self.renew_leases();
        }
        if self
            .last_sweep
            .is_none_or(|at| now.duration_since(at) >= SANDBOX_SWEEP)
        {
            self.last_sweep = Some(now);
            self.sweep_sandboxes();
        }
        // The versions are read when the change mark moved (checked every
        // tick: one row), and every `poll` at the latest.
        let due = self
            .last_poll
            .is_none_or(|at| now.duration_since(at) >= timings.poll);
        let look = self
            .last_mark_check
            .is_none_or(|at| now.duration_since(at) >= timings.mark_check);
        if look {
            self.last_mark_check = Some(now);
        }
        if due || (look && self.mark_moved()) {
            self.last_poll = Some(now);
            self.poll_versions();
        }
        let config = Arc::clone(&self.config);
        let sender = self.sender.clone();
        let mut audits = Vec::new();
        for live in self.live.values_mut() {
            step(&config, &sender, live, now, &mut audits);
        }
        if !audits.is_empty() {
            self.dirty = true;
        }
        for (vault, slug, outcome) in audits {
            if let Some(store) = self.store() {
                if let Err(e) = store.audit_event(Action::DeploymentRotate, &vault, &slug, outcome)
                {
                    tracing::warn!(error = %e, slug, "cannot record a rotation");
                }
            }
        }
        if self.dirty && now.duration_since(self.last_status) >= Duration::from_secs(1) {
            self.dirty = false;
            self.last_status = now;
            self.save_status();
        }
    }

    /// Writes what each deployment of this node looks like into its
    /// record, for listings on other nodes.
    fn save_status(&mut self) {
        let node = self.config.node.clone();
        let views: Vec<(String, serde_json::Value)> = self
            .live
            .iter()
            .filter(|(_, l)| l.def.mode == Mode::Service)
            .map(|(slug, live)| (slug.clone(), live.view(&node)))
            .collect();
        let Some(store) = self.store() else { return };
        for (slug, view) in views {
            let Ok(Some(row)) = store.record(DEPLOYMENT_KIND, &slug) else {
                continue;
            };
            if let Ok(mut def) = Definition::from_row(&row) {
                def.status = Some(serde_json::json!({
                    "state": view["state"],
                    "restarts": view["restarts"],
                    "last_exit": view["last_exit"],
                    "rotation": view["rotation"],
                    "instances": view["instances"],
                    "secret_versions": view["secret_versions"],
                }));
                let _ = store.update_record(&def.to_row());
            }
        }
    }

    /// Takes the deployments whose lease ran out, renews this node's, and
    /// lets go of those another node holds now.
    fn renew_leases(&mut self) {
        let node = self.config.node.clone();
        let lease = self.config.timings.lease;
        let now = now_ms();
        let Some(store) = self.store() else { return };
        let held = match store.claim_records(
            DEPLOYMENT_KIND,
            &node,
            now,
            now + lease.as_millis() as i64,
        ) {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the deployments' leases");
                return;
            }
        };
        let held: std::collections::HashSet<&String> = held.iter().collect();
        // One query for every definition, whatever their number.
        let definitions: Vec<Definition> = match store.list_records(DEPLOYMENT_KIND, None) {
            Ok(rows) => rows
                .iter()
                .filter(|row| held.contains(&row.id))
                .filter_map(|row| Definition::from_row(row).ok())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the deployments");
                return;
            }
        };
        let lost: Vec<String> = self
            .live
            .iter()
            .filter(|(slug, live)| live.def.mode == Mode::Service && !held.contains(slug))
            .map(|(slug, _)| slug.clone())
            .collect();
        for slug in lost {
            if let Some(live) = self.live.remove(&slug) {
                live.log
                    .event("supervisor", "another node holds the deployment now");
                // Dropping the handles kills the instances.
            }
        }
        for def in definitions {
            match self.live.get_mut(&def.slug) {
                Some(live) => {
                    // A stop or start through another node.
                    if live.def.desired != def.desired {
                        live.def.desired = def.desired;
                        if def.desired == Desired::Stopped {
                            let grace = self.config.timings.grace;
                            for i in live.instances.iter_mut().filter(|i| i.run_id.is_none()) {
                                i.retiring = true;
                                i.handle.stop(grace);
                            }
                        }
                    }
                }
                None => {
                    let host = SandboxHost {
                        home: self.config.home.clone(),
                        binary: self.config.binary.clone(),
                    };
                    let caller_env = self.config.caller_env.clone();
                    let (def, warning) = match self
                        .store()
                        .ok_or_else(|| PlanError::Usage("the store cannot be opened".to_owned()))
                        .and_then(|store| deploy::provision_here(&host, store, def, &caller_env))
                    {
                        Ok(made) => made,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot take a deployment on");
                            continue;
                        }
                    };
                    let mut socket_error = None;
                    let sockets = if def.mode == Mode::Service {
                        match def
                            .sockets
                            .iter()
                            .map(|a| deploy::bind_socket(a))
                            .collect::<Result<Vec<_>, _>>()
                        {
                            Ok(sockets) => sockets,
                            Err(e) => {
                                socket_error = Some(e.to_string());
                                Vec::new()
                            }
                        }
                    } else {
                        Vec::new()
                    };
                    let slug = def.slug.clone();
                    let mut live = Live::new(def, sockets, &self.config);
                    if let Some(warning) = &warning {
                        live.log.event("supervisor", &format!("warning: {warning}"));
                    }
                    if let Some(error) = &socket_error {
                        live.log.event("supervisor", &format!("error: {error}"));
                    } else {
                        live.log
                            .event("supervisor", &format!("taken on by node `{node}`"));
                    }
                    live.socket_error = socket_error;
                    self.live.insert(slug, live);
                }
            }
        }
    }

    /// True when the store's change mark moved since the last look (and
    /// there is a running service to tell).
    fn mark_moved(&mut self) -> bool {
        let watching = self
            .live
            .values()
            .any(|l| l.def.mode == Mode::Service && l.def.desired == Desired::Running);
        if !watching {
            return false;
        }
        let Some(store) = self.store() else {
            return false;
        };
        match store.change_mark() {
            Ok(mark) if mark != self.mark => {
                self.mark = mark;
                true
            }
            _ => false,
        }
    }

    /// Reads the versions of every granted secret (metadata only: no value
    /// is decrypted, nothing is audited), one query per vault.
    fn poll_versions(&mut self) {
        let vaults: std::collections::BTreeSet<String> = self
            .live
            .values()
            .filter(|l| l.def.mode == Mode::Service && l.def.desired == Desired::Running)
            .map(|l| l.def.vault.clone())
            .collect();
        if vaults.is_empty() {
            return;
        }
        let Some(store) = self.store() else { return };
        let mut versions: HashMap<String, HashMap<String, u64>> = HashMap::new();
        for vault in vaults {
            let Ok(name) = VaultName::parse(&vault) else {
                continue;
            };
            match store.list_secrets(&name) {
                Ok(list) => {
                    versions.insert(
                        vault,
                        list.into_iter().map(|m| (m.name, m.version)).collect(),
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, vault, "cannot read secret versions");
                }
            }
        }
        for live in self.live.values_mut() {
            let Some(in_vault) = versions.get(&live.def.vault) else {
                continue;
            };
            let mut current = BTreeMap::new();
            for grant in &live.def.grants {
                if let Ok(grant) = plan::SecretGrant::parse(grant) {
                    let name = grant.secret.to_string();
                    let version = in_vault.get(&name).copied();
                    current.insert(name, version);
                }
            }
            live.current = current;
        }
    }
}

/// One deployment's share of a tick: restarts after backoff, replicas,
/// readiness, rollouts. Failed or finished rotations are pushed to
/// `audits` (vault, slug, outcome).
fn step(
    config: &Arc<ManagerConfig>,
    sender: &mpsc::Sender<Message>,
    live: &mut Live,
    now: Instant,
    audits: &mut Vec<(String, String, Outcome)>,
) {
    let timings = config.timings;
    if let Readiness::AliveFor(ms) = live.def.readiness {
        for instance in live.instances.iter_mut().filter(|i| i.run_id.is_none()) {
            if !instance.up
                && instance.pid.is_some()
                && now.duration_since(instance.started) >= Duration::from_millis(ms)
            {
                instance.up = true;
                live.log.event(&instance.id.to_string(), "up");
            }
        }
    }
    if live.def.mode != Mode::Service || live.def.desired != Desired::Running {
        return;
    }
    if live.socket_error.is_some() {
        return;
    }
    // A new version under the running instances: roll.
    if live.rollout.is_none() && !live.current.is_empty() {
        let stale = live.serving().any(|i| {
            i.versions.as_ref().is_some_and(|v| {
                live.current
                    .iter()
                    .any(|(name, version)| v.get(name).copied() != *version)
            })
        });
        let failed_before = live.failed_target.as_ref() == Some(&live.current);
        if stale && !failed_before && live.serving().all(|i| i.up) && live.restart_at.is_none() {
            let changes: Vec<String> = live
                .current
                .iter()
                .map(|(name, version)| match version {
                    Some(v) => format!("version {v} of {name}"),
                    None => format!("{name} deleted"),
                })
                .collect();
            let reason = format!("rotating to {}", changes.join(", "));
            live.log.event("supervisor", &reason);
            live.rollout = Some(Rollout {
                before: live.next_instance,
                candidate: None,
                deadline: now,
                reason,
                target: live.current.clone(),
            });
        }
    }
    if let Some(rollout) = &mut live.rollout {
        let up_within = timings.up_timeout
            + match live.def.readiness {
                Readiness::AliveFor(ms) => Duration::from_millis(ms),
                Readiness::Notify => Duration::ZERO,
            };
        let mut failure = None;
        match rollout.candidate {
            None => {
                let old = live
                    .instances
                    .iter()
                    .any(|i| i.id < rollout.before && !i.retiring && i.run_id.is_none());
                if !old {
                    live.log.event(
                        "supervisor",
                        &format!("{} done: every instance replaced", rollout.reason),
                    );
                    live.rotation = Some(serde_json::json!({
                        "status": "succeeded",
                        "reason": rollout.reason,
                        "at": rfc3339(now_ms()),
                    }));
                    if rollout.reason != "restart" {
                        audits.push((live.def.vault.clone(), live.def.slug.clone(), Outcome::Ok));
                    }
                    live.failed_target = None;
                    live.rollout = None;
                    if std::mem::take(&mut live.restart_pending) {
                        live.log
                            .event("supervisor", "rolling restart (deploy restart)");
                        live.rollout = Some(restart_rollout(live));
                    }
                } else {
                    let id = launch(config, sender, live, None);
                    let rollout = live.rollout.as_mut().expect("still rolling");
                    rollout.candidate = Some(id);
                    rollout.deadline = now + up_within;
                }
            }
            Some(candidate) => {
                let state = live.instances.iter().find(|i| i.id == candidate);
                match state {
                    None => failure = Some("the new instance exited before it was up".to_owned()),
                    Some(i) if i.up => {
                        // Up: one old instance goes.
                        if let Some(old) = live
                            .instances
                            .iter_mut()
                            .find(|i| i.id < rollout.before && !i.retiring && i.run_id.is_none())
                        {
                            old.retiring = true;
                            old.handle.stop(timings.grace);
                            live.log.event(
                                &old.id.to_string(),
                                &format!("replaced by instance {candidate}: SIGTERM"),
                            );
                        }
                        rollout.candidate = None;
                    }
                    Some(_) if now >= rollout.deadline => {
                        failure = Some(format!(
                            "the new instance was not up within {:.0} s",
                            up_within.as_secs_f64()
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(why) = failure {
            let rollout = live.rollout.take().expect("rolling");
            if let Some(candidate) = rollout.candidate {
                if let Some(i) = live.instances.iter_mut().find(|i| i.id == candidate) {
                    i.retiring = true;
                    i.handle.stop(Duration::ZERO);
                }
            }
            let message = format!(
                "{} failed: {why}; the old instances keep serving",
                rollout.reason
            );
            live.log.event("supervisor", &message);
            live.rotation = Some(serde_json::json!({
                "status": "failed",
                "reason": rollout.reason,
                "error": why,
                "at": rfc3339(now_ms()),
            }));
            live.restart_pending = false;
            live.failed_target = Some(rollout.target);
            audits.push((
                live.def.vault.clone(),
                live.def.slug.clone(),
                Outcome::Error,
            ));
        }
        return;
    }
    // Replicas: start what is missing, after the backoff.
    if live.restart_at.is_some_and(|at| now < at) {
        return;
    }
    live.restart_at = None;
    let serving = live.serving().count();
    for _ in serving..live.def.replicas as usize {
        launch(config, sender, live, None);
    }
}

/// An agent run's part of a launch.
struct AgentLaunch {
    run_id: String,
    input: SecretValue,
    timeout: Option<Duration>,
    actor: String,
    record: serde_json::Value,
    /// Held until the run has ended and is recorded.
    _slot: RunSlot,
}

/// One of the supervisor's agent-run slots, given back when dropped.
struct RunSlot(Arc<std::sync::atomic::AtomicUsize>);

impl RunSlot {
    fn take(count: &Arc<std::sync::atomic::AtomicUsize>) -> RunSlot {
        count.fetch_add(1, Ordering::SeqCst);
        RunSlot(Arc::clone(count))
    }
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn run_row(run_id: &str, slug: &str, record: &serde_json::Value) -> RecordRow {
    RecordRow {
        kind: RUN_KIND.to_owned(),
        id: run_id.to_owned(),
        parent: slug.to_owned(),
        data: record.to_string(),
        node: String::new(),
        lease_until: 0,
        updated_at: now_ms(),
    }
}

/// Where an agent run's live log is.
pub fn run_log_path(home: &std::path::Path, run_id: &str) -> PathBuf {
    home.join("runs").join(format!("{run_id}.jsonl"))
}

/// Starts one instance of `live` on a thread of its own (prepare, then the
/// run loop); returns its number.
fn launch(
    config: &Arc<ManagerConfig>,
    sender: &mpsc::Sender<Message>,
    live: &mut Live,
    agent: Option<AgentLaunch>,
) -> u64 {
    let id = live.next_instance;
    live.next_instance += 1;
    let slug = live.def.slug.clone();
    let def = &live.def;
    let host = SandboxHost {
        home: config.home.clone(),
        binary: config.binary.clone(),
    };
    let mut policy = def.policy.clone();
    policy.hide = host.hidden_dirs(&config.caller_env);
    let home_dir = policy.workdir.parent().map(|p| p.join("home"));
    let mut env = Vec::new();
    if let Some(home) = &home_dir {
        let _ = std::fs::create_dir_all(home);
        if let Some((uid, gid)) = policy.run_as {
            let _ = std::os::unix::fs::chown(home, Some(uid), Some(gid));
        }
        env.push(("HOME".to_owned(), home.display().to_string()));
        policy.home_dir = Some(home.clone());
    }
    env.extend(def.env.iter().cloned());
    let mut pass_fds = Vec::new();
    if agent.is_none() && !live.sockets.is_empty() {
        for socket in &live.sockets {
            if let Ok(copy) = socket.try_clone() {
                pass_fds.push(copy);
            }
        }
        env.push(("LISTEN_FDS".to_owned(), pass_fds.len().to_string()));
        let names: Vec<String> = (0..pass_fds.len()).map(|n| format!("socket{n}")).collect();
        env.push(("LISTEN_FDNAMES".to_owned(), names.join(":")));
    }
    let ended = Arc::new(AtomicBool::new(false));
    let mut notify = None;
    if agent.is_none() && def.readiness == Readiness::Notify {
        match NotifySocket::bind(&policy.workdir, &id.to_string(), policy.run_as) {
            Ok(socket) => {
                env.push((
                    "NOTIFY_SOCKET".to_owned(),
                    socket.path.display().to_string(),
                ));
                notify = Some(socket);
            }
            Err(e) => live.log.event(
                &id.to_string(),
                &format!("error: cannot bind $NOTIFY_SOCKET: {e}"),
            ),
        }
    }
    if let Some(agent) = &agent {
        env.push(("SHROUD_RUN_ID".to_owned(), agent.run_id.clone()));
    }
    let command: Vec<OsString> = def.command.iter().map(OsString::from).collect();
    let vault = VaultName::parse(&def.vault).unwrap_or_else(|_| VaultName::default_vault());
    let mut spec = RunSpec::new(command, config.caller_env.clone(), vault);
    spec.env_policy = def.env_policy.clone();
    spec.extra_env = env;
    spec.grants = plan::parse_grants(&def.grants).unwrap_or_default();
    spec.sandbox = Some(policy);
    spec.pass_fds = pass_fds;
    spec.timeout = agent.as_ref().and_then(|a| a.timeout);
    let (handle, requests) = match super::run_handle() {
        Ok(pair) => pair,
        Err(e) => {
            live.log.event(&id.to_string(), &format!("error: {e}"));
            return id;
        }
    };
    let instance = Instance {
        id,
        handle,
        pid: None,
        started: Instant::now(),
        started_ms: now_ms(),
        up: false,
        versions: None,
        retiring: false,
        ended: Arc::clone(&ended),
        run_id: agent.as_ref().map(|a| a.run_id.clone()),
    };
    live.instances.push(instance);
    let log_sink: Box<dyn super::output::OutputSink> = match &agent {
        Some(a) => {
            let _ = std::fs::create_dir_all(config.home.join("runs"));
            Box::new(InstanceLog::new(
                Arc::new(LogFile::new(
                    run_log_path(&config.home, &a.run_id),
                    deploy::LOG_CAP_BYTES,
                )),
                id.to_string(),
            ))
        }
        None => Box::new(InstanceLog::new(Arc::clone(&live.log), id.to_string())),
    };
    let started_sender = sender.clone();
    let started_slug = slug.clone();
    let on_started = StartedHook(Box::new(move |pid| {
        let _ = started_sender.send(Message::Event(Event::Started {
            slug: started_slug,
            instance: id,
            pid,
        }));
    }));
    let mut io = RunIo::detached(Destination::Sink(log_sink), Control::Detached(Vec::new()));
    io.output = OutputMode::Streams;
    io.stdio = StdioMode::GivenInput;
    io.requests = Some(requests);
    io.on_started = Some(on_started);
    if let Some(a) = &agent {
        io.input = Some(SecretValue::new(a.input.expose().to_vec()));
    }
    if let Some(socket) = notify {
        let sender = sender.clone();
        let slug = slug.clone();
        let ended = Arc::clone(&ended);
        let _ = std::thread::Builder::new()
            .name("shroud-notify".to_owned())
            .spawn(move || {
                if socket.wait_ready(|| !ended.load(Ordering::SeqCst)) {
                    let _ = sender.send(Message::Event(Event::Ready { slug, instance: id }));
                }
            });
    }
    let config = Arc::clone(config);
    let sender = sender.clone();
    let log = Arc::clone(&live.log);
    // Service instances inject as whoever created the deployment.
    let owner = live.def.owner.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("shroud-{slug}-{id}"))
        .spawn(move || {
            let mut store_config = config.store.clone();
            store_config.actor = match &agent {
                Some(a) => a.actor.clone(),
                None => owner,
            };
            let open = || Store::open(store_config.clone(), OpenMode::Existing);
            let (code, signal, error, timed_out) =
                match plan::prepare(StoreAccess::Lazy(&open), &config.binary, spec, io) {
                    Err(e) => (125u8, None, Some(e.to_string()), false),
                    Ok(prepared) => {
                        let versions = prepared
                            .versions
                            .iter()
                            .map(|(name, version)| (name.to_string(), *version))
                            .collect();
                        let _ = sender.send(Message::Event(Event::Prepared {
                            slug: slug.clone(),
                            instance: id,
                            versions,
                        }));
                        match super::run(prepared.plan) {
                            Ok(report) => (report.code, report.signal, None, report.timed_out),
                            Err(e) => (e.exit_code(), None, Some(e.to_string()), false),
                        }
                    }
                };
            if let Some(agent) = agent {
                finish_run(&config, &open, agent, code, error.as_deref(), timed_out);
            } else if error.is_some() && code == 125 {
                log.event(&id.to_string(), "could not start");
            }
            let _ = sender.send(Message::Event(Event::Exited {
                slug,
                instance: id,
                code,
                signal,
                error,
            }));
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start an instance thread");
    }
    id
}

/// Records how an agent run ended, with its masked log (the tail, up to
/// [`RUN_LOG_CAP`]).
fn finish_run(
    config: &ManagerConfig,
    open: &dyn Fn() -> Result<Store, crate::store::StoreError>,
    agent: AgentLaunch,
    code: u8,
    error: Option<&str>,
    timed_out: bool,
) {
    let path = run_log_path(&config.home, &agent.run_id);
    if let Some(error) = error {
        LogFile::new(path.clone(), deploy::LOG_CAP_BYTES)
            .event("supervisor", &format!("error: {error}"));
    }
    let status = if timed_out {
        "timed_out"
    } else if code == 0 {
        "succeeded"
    } else {
        "failed"
    };
    let log = tail_of(run_log_text(&path));
    let mut record = agent.record;
    merge(
        &mut record,
        serde_json::json!({
            "status": status,
            "exit_code": code,
            "ended_at": rfc3339(now_ms()),
            "log": log,
        }),
    );
    let slug = record["slug"].as_str().unwrap_or_default().to_owned();
    match open() {
        // A run whose deployment was removed meanwhile stays removed.
        Ok(mut store) => {
            if let Err(e) = store.update_record(&run_row(&agent.run_id, &slug, &record)) {
                tracing::warn!(error = %e, "cannot record how an agent run ended");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot record how an agent run ended"),
    }
    // The live log's end: readers following it stop here.
    LogFile::new(path, deploy::LOG_CAP_BYTES).append(&serde_json::json!({
        "ts": rfc3339(now_ms()),
        "event": "exit",
        "code": code,
        "status": status,
    }));
}

/// The last [`RUN_LOG_CAP`] bytes of a run's log text.
fn tail_of(mut log: String) -> String {
    if log.len() > RUN_LOG_CAP {
        let mut cut = log.len() - RUN_LOG_CAP;
        while !log.is_char_boundary(cut) {
            cut += 1;
        }
        log = log.split_off(cut);
    }
    log
}

/// The masked text of a run's log (its output lines, in order).
pub fn run_log_text(path: &std::path::Path) -> String {
    let mut text = String::new();
    for line in LogFile::read_lines(path) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(data) = value["data"].as_str() {
                text.push_str(data);
                text.push('\n');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(desired: Desired) -> Definition {
        Definition {
            slug: "web".to_owned(),
            vault: "default".to_owned(),
            template: "bash".to_owned(),
            mode: Mode::Service,
            command: vec!["true".to_owned()],
            grants: Vec::new(),
            env: Vec::new(),
            env_policy: Default::default(),
            policy: crate::sandbox::apply::SandboxPolicy {
                isolation: Default::default(),
                network: false,
                limits: Default::default(),
                workdir: PathBuf::from("/nonexistent/work"),
                home_dir: None,
                hide: Vec::new(),
                private_devpts: true,
                run_as: None,
                die_with: None,
                passed_fds: 0,
                cwd: None,
                shared_network: None,
            },
            features: Vec::new(),
            replicas: 1,
            sockets: Vec::new(),
            readiness: Readiness::AliveFor(1000),
            desired,
            created_at: 0,
            owner: "cli".to_owned(),
            code: None,
            runtime: None,
            status: None,
        }
    }

    fn config(home: &std::path::Path) -> Arc<ManagerConfig> {
        Arc::new(ManagerConfig {
            home: home.to_owned(),
            binary: PathBuf::from("shroud"),
            store: StoreConfig::in_home(home.to_owned(), None, "cli"),
            node: "test".to_owned(),
            timings: Timings::default(),
            caller_env: CallerEnv::default(),
            max_agent_runs: 1,
            busy_sandboxes: Arc::default(),
        })
    }

    fn instance(started: Instant) -> Instance {
        let (handle, _requests) = super::super::run_handle().unwrap();
        Instance {
            id: 1,
            handle,
            pid: Some(4242),
            started,
            started_ms: 0,
            up: false,
            versions: None,
            retiring: false,
            ended: Arc::new(AtomicBool::new(false)),
            run_id: None,
        }
    }

    #[test]
    fn readiness_and_backoff_follow_the_clock_given_not_the_wall() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let (sender, _receiver) = mpsc::channel();
        let t0 = Instant::now();
        let mut live = Live::new(definition(Desired::Stopped), Vec::new(), &config);
        live.instances.push(instance(t0));
        let mut audits = Vec::new();
        // Alive 0.9 s of the 1 s asked: not up; at 1.1 s: up.
        step(
            &config,
            &sender,
            &mut live,
            t0 + Duration::from_millis(900),
            &mut audits,
        );
        assert!(!live.instances[0].up);
        step(
            &config,
            &sender,
            &mut live,
            t0 + Duration::from_millis(1100),
            &mut audits,
        );
        assert!(live.instances[0].up);
        assert_eq!(live.state(), "stopped");

        // Running, no instance, a restart due in 2 s: nothing starts before.
        let mut live = Live::new(definition(Desired::Running), Vec::new(), &config);
        live.restart_at = Some(t0 + Duration::from_secs(2));
        step(
            &config,
            &sender,
            &mut live,
            t0 + Duration::from_secs(1),
            &mut audits,
        );
        assert!(live.instances.is_empty());
        assert_eq!(live.state(), "backoff");
        // Up to its replicas: running.
        let mut live = Live::new(definition(Desired::Running), Vec::new(), &config);
        let mut up = instance(t0);
        up.up = true;
        live.instances.push(up);
        step(
            &config,
            &sender,
            &mut live,
            t0 + Duration::from_secs(1),
            &mut audits,
        );
        assert_eq!(live.instances.len(), 1, "no extra instance");
        assert_eq!(live.state(), "running");
        assert!(audits.is_empty());
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (0..8).map(|_| backoff.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }
}
