//! The deployment, agent and run routes: `POST|GET /api/deployments`,
//! `GET /api/deployments/{slug}/logs`, `POST /api/deployments/{slug}/
//! stop|start|restart`, `DELETE /api/deployments/{slug}`, `POST
//! /api/agents/{slug}/runs`, `GET /api/runs/{id}` and `GET
//! /api/runs/{id}/log`.
//!
//! They hand everything to the supervisor's manager actor
//! (`supervisor::manager`); creating checks and stores the deployment here
//! first (`supervisor::deploy::create`), so a bad request changes nothing.
//!
//! Access: a deployment belongs to its vault. Creating one and starting an
//! agent run need read there; managing it (stop, start, restart, delete,
//! logs, its runs) needs write; a caller with no grant on that vault gets
//! 404, as if it did not exist. The same-user peer of the Unix socket may
//! do everything (it is the CLI).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use super::json::{ApiJson, ApiPath, ApiQuery};
use super::ApiState;
use crate::store::tokens::Access;
use crate::store::{VaultName, DEPLOYMENT_KIND, RUN_KIND};
use crate::supervisor::deploy::{self, Definition, Mode, Readiness};
use crate::supervisor::manager::{self, AgentRunRequest, Manager, ManagerError, Verb};
use crate::supervisor::plan;

type ApiResult = Result<Response, ApiError>;

impl From<ManagerError> for ApiError {
    fn from(e: ManagerError) -> Self {
        let status = match &e {
            ManagerError::NotFound(_) => StatusCode::NOT_FOUND,
            ManagerError::Usage(_) => StatusCode::BAD_REQUEST,
            ManagerError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ManagerError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

pub(super) fn manager(state: &ApiState) -> Result<Arc<Manager>, ApiError> {
    state.manager().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "this server does not supervise deployments (another `shroud serve` of this home does: use its socket or port)",
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBody {
    /// A folder under `<home>/runtimes/` copied into the working directory.
    #[serde(default)]
    runtime_slug: Option<String>,
    template_slug: String,
    api_slug: String,
    #[serde(default)]
    secrets: Vec<String>,
    command: Vec<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    vault: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "super::json::whole_number")]
    replicas: Option<u64>,
    #[serde(default)]
    sockets: Vec<String>,
    /// `READY=1` on `$NOTIFY_SOCKET` instead of alive `ready_after` seconds.
    #[serde(default)]
    notify: bool,
    #[serde(default, rename = "ready_after")]
    ready_after: Option<f64>,
    /// For the CLI: the directory copied in (the socket peer only).
    #[serde(default)]
    code: Option<PathBuf>,
}

/// Parses `ready_after` / `notify` into a readiness. `notify: true` wins
/// over a `ready_after` beside it (the CLI's flags exclude each other; the
/// API takes both, so that every body its schema allows is taken).
pub fn readiness(notify: bool, ready_after: Option<f64>) -> Result<Readiness, String> {
    match (notify, ready_after) {
        (true, _) => Ok(Readiness::Notify),
        (false, None) => Ok(Readiness::AliveFor(1000)),
        (false, Some(secs)) if (0.0..=3600.0).contains(&secs) => {
            Ok(Readiness::AliveFor((secs * 1000.0) as u64))
        }
        (false, Some(_)) => Err("`ready_after` is 0 to 3600 seconds".to_owned()),
    }
}

/// `POST /api/deployments` → `{"slug"}`.
pub async fn create(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult {
    let manager = manager(&state)?;
    let vault = VaultName::parse(body.vault.as_deref().unwrap_or("default"))
        .map_err(ApiError::bad_request)?;
    caller.require(vault.as_str(), Access::Read)?;
    let mode = match body.mode.as_deref() {
        None | Some("service") => Mode::Service,
        Some("agent") => Mode::Agent,
        Some(_) => return Err(ApiError::bad_request("`mode` is `service` or `agent`")),
    };
    let code =
        match (&body.runtime_slug, body.code) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "`runtimeSlug` and `code` exclude each other",
                ))
            }
            (Some(runtime), None) => {
                deploy::check_slug(runtime).map_err(ApiError::bad_request)?;
                Some(state.home().join("runtimes").join(runtime))
            }
            (None, Some(code)) if caller.is_local() => Some(code),
            (None, Some(_)) => return Err(ApiError::bad_request(
                "`code` is for the local CLI; name a folder of <home>/runtimes with `runtimeSlug`",
            )),
            (None, None) => None,
        };
    // A token's Unix sockets live under <home>/sockets/ (the supervisor
    // is root, perhaps: it must not make or replace sockets anywhere a
    // token names); the local CLI may name any path, as its user.
    let mut sockets = Vec::with_capacity(body.sockets.len());
    for address in body.sockets {
        match address.strip_prefix("unix:") {
            Some(name) if !caller.is_local() => {
                deploy::check_slug(name).map_err(|_| {
                    ApiError::bad_request(format!(
                        "socket {address:?}: over the API a Unix socket is `unix:NAME` (a-z, 0-9, `-`), made as <home>/sockets/NAME"
                    ))
                })?;
                let dir = state.home().join("sockets");
                crate::store::home::create_private_dir(&dir).map_err(ApiError::internal)?;
                sockets.push(format!("unix:{}", dir.join(name).display()));
            }
            _ => sockets.push(address),
        }
    }
    let mut env = Vec::new();
    for (name, value) in body.env {
        plan::check_env_pair(&name, &value)?;
        env.push((name, value));
    }
    let request = deploy::CreateRequest {
        slug: body.api_slug,
        template: body.template_slug,
        vault,
        grants: plan::parse_grants(&body.secrets)?,
        env,
        mode,
        command: body.command,
        code,
        runtime: body.runtime_slug,
        replicas: u32::try_from(body.replicas.unwrap_or(1)).unwrap_or(u32::MAX),
        sockets,
        readiness: readiness(body.notify, body.ready_after).map_err(ApiError::bad_request)?,
        owner: caller.name().to_owned(),
        caller_env: state.caller_env().clone(),
    };
    let host = state.sandbox_host();
    let (definition, sockets) = state
        .with_store_as(caller.name(), move |store| {
            deploy::create(&host, store, request)
        })
        .await?;
    let slug = definition.slug.clone();
    manager.created(definition, sockets).await?;
    Ok((StatusCode::OK, Json(serde_json::json!({ "slug": slug }))).into_response())
}

/// `GET /api/deployments` → `{"deployments": [...]}`: those of the vaults
/// the caller has a grant on.
pub async fn list(State(state): State<Arc<ApiState>>, caller: Caller) -> ApiResult {
    let views = manager(&state)?.list().await?;
    let visible: Vec<_> = views
        .into_iter()
        .filter(|v| {
            v["vault"]
                .as_str()
                .is_some_and(|vault| caller.allows(vault, Access::Read))
        })
        .collect();
    Ok(Json(serde_json::json!({ "deployments": visible })).into_response())
}

/// The deployment `slug` if `caller` may manage it (write on its vault);
/// 404 without any grant there.
async fn managed(
    state: &Arc<ApiState>,
    caller: &Caller,
    slug: String,
    access: Access,
) -> Result<Definition, ApiError> {
    let lookup = slug.clone();
    let row = state
        .with_store(caller.name(), move |store| {
            store.record(DEPLOYMENT_KIND, &lookup)
        })
        .await?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("deployment `{slug}` not found"),
        )
    };
    let row = row.ok_or_else(not_found)?;
    let definition = Definition::from_row(&row)?;
    if !caller.allows(&definition.vault, Access::Read) {
        return Err(not_found());
    }
    caller.require(&definition.vault, access)?;
    Ok(definition)
}

/// `POST /api/deployments/{slug}/{stop|start|restart}` → `{"slug", "state"}`.
pub async fn control(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath((slug, verb)): ApiPath<(String, String)>,
) -> ApiResult {
    let verb = match verb.as_str() {
        "stop" => Verb::Stop,
        "start" => Verb::Start,
        "restart" => Verb::Restart,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no route /api/deployments/{slug}/{verb} (stop, start or restart)"),
            ))
        }
    };
    managed(&state, &caller, slug.clone(), Access::Write).await?;
    manager(&state)?.control(&slug, verb).await?;
    Ok(Json(serde_json::json!({ "slug": slug, "done": true })).into_response())
}

/// `DELETE /api/deployments/{slug}` → `{"slug", "deleted": true}`.
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult {
    managed(&state, &caller, slug.clone(), Access::Write).await?;
    manager(&state)?.control(&slug, Verb::Remove).await?;
    Ok(Json(serde_json::json!({ "slug": slug, "deleted": true })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    #[serde(default)]
    follow: Option<bool>,
    #[serde(default)]
    tail: Option<usize>,
}

/// `GET /api/deployments/{slug}/logs[?follow=true&tail=N]`: JSON lines.
pub async fn logs(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> ApiResult {
    let definition = managed(&state, &caller, slug, Access::Write).await?;
    let path = definition.dir(state.home()).join("log.jsonl");
    Ok(lines_response(
        path,
        query.tail,
        query.follow.unwrap_or(false),
        false,
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    timeout_s: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    #[serde(default)]
    wait: Option<bool>,
}

/// `POST /api/agents/{slug}/runs` → `{"run_id"}` (with `?wait=true`, when
/// it ended, as `GET /api/runs/{id}`).
pub async fn start_run(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(body): ApiJson<RunBody>,
) -> ApiResult {
    let definition = managed(&state, &caller, slug.clone(), Access::Read).await?;
    let timeout = match body.timeout_s {
        Some(secs) if secs > 0.0 && secs <= 1e8 => Some(Duration::from_secs_f64(secs)),
        Some(_) => return Err(ApiError::bad_request("`timeout_s` must be greater than 0")),
        None => None,
    };
    let run_id = manager(&state)?
        .agent_run(AgentRunRequest {
            slug: definition.slug,
            message: body.message,
            params: serde_json::Value::Object(body.params),
            timeout,
            actor: caller.name().to_owned(),
        })
        .await?;
    if query.wait.unwrap_or(false) {
        // The caller started this run: it sees how it ended (read access).
        loop {
            let view = run_view(&state, &caller, run_id.clone(), Access::Read).await?;
            if view["status"] != "running" {
                return Ok(Json(view).into_response());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(Json(serde_json::json!({ "run_id": run_id })).into_response())
}

/// A run as `GET /api/runs/{id}` shows it (404 unless the caller may
/// manage its deployment).
async fn run_view(
    state: &Arc<ApiState>,
    caller: &Caller,
    id: String,
    access: Access,
) -> Result<serde_json::Value, ApiError> {
    let lookup = id.clone();
    let row = state
        .with_store(caller.name(), move |store| store.record(RUN_KIND, &lookup))
        .await?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("run `{id}` not found"));
    let row = row.ok_or_else(not_found)?;
    let mut view: serde_json::Value =
        serde_json::from_str(&row.data).map_err(ApiError::internal)?;
    let vault = view["vault"].as_str().unwrap_or_default().to_owned();
    if !caller.allows(&vault, Access::Read) {
        return Err(not_found());
    }
    caller.require(&vault, access)?;
    if view["status"] == "running" {
        let path = manager::run_log_path(state.home(), &id);
        view["log"] = serde_json::json!(manager::run_log_text(&path));
    }
    Ok(view)
}

/// `GET /api/agents/{slug}/runs` → `{"runs": [...]}`, oldest first (logs
/// left out: `GET /api/runs/{id}` has them).
pub async fn list_runs(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult {
    let definition = managed(&state, &caller, slug.clone(), Access::Write).await?;
    let rows = state
        .with_store(caller.name(), move |store| {
            store.list_records(RUN_KIND, Some(&slug))
        })
        .await?;
    let runs: Vec<serde_json::Value> = rows
        .iter()
        .filter_map(|row| serde_json::from_str::<serde_json::Value>(&row.data).ok())
        // Runs of an older deployment of that slug in another vault stay
        // that vault's.
        .filter(|run| run["vault"] == definition.vault.as_str())
        .map(|mut run| {
            if let Some(map) = run.as_object_mut() {
                map.remove("log");
            }
            run
        })
        .collect();
    Ok(Json(serde_json::json!({ "runs": runs })).into_response())
}

/// `GET /api/runs/{id}`.
pub async fn run(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    Ok(Json(run_view(&state, &caller, id, Access::Write).await?).into_response())
}

/// `GET /api/runs/{id}/log[?follow=true]`: JSON lines, the last one
/// `{"event": "exit", "code", "status"}` once the run has ended.
pub async fn run_log(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<LogQuery>,
) -> ApiResult {
    run_view(&state, &caller, id.clone(), Access::Write).await?;
    let path = manager::run_log_path(state.home(), &id);
    Ok(lines_response(
        path,
        query.tail,
        query.follow.unwrap_or(false),
        true,
    ))
}

/// Streams the JSON lines of a log file: the last `tail` (all without),
/// then, with `follow`, every new one as it is written; `until_exit` ends
/// the stream after an `"event": "exit"` line (a run's end). When the cap
/// moves the file aside (it becomes `<name>.1`), the rest of the old file
/// is read there first, so that following loses no line. New lines are
/// looked for every 5 ms while they come, backing off to 100 ms when the
/// log is quiet.
pub(super) fn lines_response(
    path: PathBuf,
    tail: Option<usize>,
    follow: bool,
    until_exit: bool,
) -> Response {
    struct Reader {
        path: PathBuf,
        offset: u64,
        inode: Option<u64>,
        first: bool,
        tail: Option<usize>,
        follow: bool,
        until_exit: bool,
        done: bool,
        partial: Vec<u8>,
        idle: Duration,
    }
    fn inode_of(path: &std::path::Path) -> Option<u64> {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).ok()?).into()
    }
    /// `path` opened, with the inode of what was opened (not of what the
    /// path names a moment later).
    fn open_with_inode(path: &std::path::Path) -> Option<(std::fs::File, Option<u64>)> {
        let file = std::fs::File::open(path).ok()?;
        let inode = file
            .metadata()
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        Some((file, inode))
    }
    /// Reads `path` from `offset` on; the new offset.
    fn read_from(path: &std::path::Path, offset: u64, into: &mut Vec<u8>) -> u64 {
        use std::io::{Read, Seek};
        let Ok(mut file) = std::fs::File::open(path) else {
            return offset;
        };
        if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
            return offset;
        }
        let before = into.len();
        let _ = file.read_to_end(into);
        offset + (into.len() - before) as u64
    }
    let reader = Reader {
        path,
        offset: 0,
        inode: None,
        first: true,
        tail,
        follow,
        until_exit,
        done: false,
        partial: Vec::new(),
        idle: Duration::ZERO,
    };
    let stream = futures_util::stream::unfold(reader, |mut r| async move {
        loop {
            if r.done {
                return None;
            }
            let mut out = Vec::new();
            if r.first {
                r.first = false;
                // What is kept: the older part, then the current file,
                // whose offset is what was read of it (a line appended
                // after the read comes with the next look, none is lost)
                // and whose last line, still being written, waits for
                // its end.
                use std::io::Read;
                let mut current = Vec::new();
                if let Some((mut file, inode)) = open_with_inode(&r.path) {
                    r.inode = inode;
                    let _ = file.read_to_end(&mut current);
                }
                r.offset = current.len() as u64;
                let whole = current
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |end| end + 1);
                r.partial = current.split_off(whole);
                let older_path = deploy::LogFile::older_path(&r.path);
                // One open of the older part, its inode from that handle:
                // the file read above, moved aside since, is not read twice.
                let mut older = Vec::new();
                if let Some((mut file, inode)) = open_with_inode(&older_path) {
                    if r.inode.is_none() || inode != r.inode {
                        let _ = file.read_to_end(&mut older);
                    }
                }
                let lines: Vec<&[u8]> = older
                    .split(|&b| b == b'\n')
                    .chain(current.split(|&b| b == b'\n'))
                    .filter(|line| !line.is_empty())
                    .collect();
                let skip = r.tail.map_or(0, |n| lines.len().saturating_sub(n));
                for line in &lines[skip..] {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                    if r.until_exit && is_exit_line(line) {
                        r.done = true;
                    }
                }
                if !r.follow {
                    r.done = true;
                }
            } else {
                let inode = inode_of(&r.path);
                if inode != r.inode {
                    // Moved aside: the end of the old file, then the new one.
                    if r.inode.is_some() {
                        let older = deploy::LogFile::older_path(&r.path);
                        if inode_of(&older) == r.inode {
                            read_from(&older, r.offset, &mut r.partial);
                        }
                    }
                    r.inode = inode;
                    r.offset = 0;
                }
                r.offset = read_from(&r.path, r.offset, &mut r.partial);
                if let Some(end) = r.partial.iter().rposition(|&b| b == b'\n') {
                    let complete: Vec<u8> = r.partial.drain(..=end).collect();
                    if r.until_exit && is_exit_line(&complete) {
                        r.done = true;
                    }
                    out = complete;
                }
            }
            if !out.is_empty() {
                r.idle = Duration::ZERO;
                return Some((Ok::<_, std::convert::Infallible>(out), r));
            }
            if r.done {
                return None;
            }
            let wait = if r.idle < Duration::from_secs(1) {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(100)
            };
            r.idle += wait;
            tokio::time::sleep(wait).await;
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// True when `bytes` hold a run's last line (`"event":"exit"`).
fn is_exit_line(bytes: &[u8]) -> bool {
    const EXIT: &[u8] = b"\"event\":\"exit\"";
    bytes.windows(EXIT.len()).any(|w| w == EXIT)
}
