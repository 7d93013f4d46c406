//! The sandbox routes: `POST /api/sandboxes`, `GET /api/sandboxes` (the
//! caller's own), `POST /api/sandboxes/{id}/exec` (a buffered JSON result,
//! or JSON lines as they happen) and `DELETE /api/sandboxes/{id}`.
//!
//! They are `shroud sandbox create|exec|rm` over HTTP, built on the same
//! `supervisor::sandboxes` code: the same environment from nothing, the same
//! masking and exit codes. What differs is who the run answers to: a run
//! started here is [`Control::Detached`] (no signal handler of the shared
//! server process is touched; the child reads the request's `stdin`, or
//! nothing) and ends when its client goes away: the cancel guard lives in the handler (buffered) or
//! in the response body (stream), and dropping either kills the group.
//!
//! Access: a sandbox belongs to a vault (`"vault"`, default `default`);
//! creating and using it needs the read grant there, and only the token that
//! created it can exec in it or remove it (others get 404, as if it did not
//! exist). The CLI, the operator on the host, can use any.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use super::json::{ApiJson, ApiPath, ApiQuery};
use super::ApiState;
use crate::mask::MaskStyle;
use crate::secret::SecretValue;
use crate::store::names::DEFAULT_VAULT;
use crate::store::tokens::Access;
use crate::store::{SandboxRow, StoreError};
use crate::supervisor::output::{Chunk, Destination, OutputMode};
use crate::supervisor::plan::{self, PlanError, StoreAccess};
use crate::supervisor::sandboxes::{self, CreateRequest, ExecRequest, SandboxConfig};
use crate::supervisor::spawn::StdioMode;
use crate::supervisor::{self, cancel_pair, Control};

/// Output kept for a buffered exec at most (both streams); beyond it the
/// command is killed, as with the template's `output_mb`.
pub const BUFFERED_OUTPUT_CAP: u64 = 16 * 1024 * 1024;
/// The longest `timeout_ms` of an exec: a day.
pub const MAX_EXEC_TIMEOUT_MS: u64 = 86_400_000;
/// Chunks of a streamed exec waiting for the client at most.
const STREAM_BACKLOG: usize = 64;

type ApiResult = Result<Response, ApiError>;

impl From<PlanError> for ApiError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Store(StoreError::SandboxNotFound(_)) => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            // A granted secret that is not there: the request names
            // something missing (404, naming it).
            PlanError::Store(ref store) if store.is_not_found() => {
                ApiError::new(StatusCode::NOT_FOUND, e.to_string())
            }
            PlanError::Missing(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            PlanError::Store(store) => ApiError::from(store),
            PlanError::Invalid(_) | PlanError::Usage(_) => ApiError::bad_request(e),
            PlanError::Refused(why) => {
                ApiError::new(StatusCode::BAD_REQUEST, format!("strict: {why}"))
            }
            PlanError::OnAnotherNode { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            PlanError::Io { .. } => ApiError::internal(e),
        }
    }
}

fn parse_env(env: BTreeMap<String, String>) -> Result<Vec<(String, String)>, ApiError> {
    env.into_iter()
        .map(|(name, value)| {
            plan::check_env_pair(&name, &value)?;
            Ok((name, value))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    template: String,
    /// `NAME` or `ENV=NAME`: secrets every command of the sandbox gets.
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    vault: Option<String>,
    /// Refuse to create it if the host cannot give everything asked for.
    #[serde(default)]
    strict: bool,
    /// Seconds after its last exec or file call at which it is deleted
    /// (default an hour).
    #[serde(default, deserialize_with = "super::json::whole_number")]
    timeout_s: Option<u64>,
}

/// `POST /api/sandboxes` → `{"id", "template", "network", "limits", "isolation"}`.
pub async fn create(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> ApiResult {
    let vault = super::handlers::vault(body.vault.as_deref().unwrap_or(DEFAULT_VAULT))?;
    caller.require(vault.as_str(), Access::Read)?;
    let timeout = super::sandbox_files::check_timeout(
        body.timeout_s
            .unwrap_or(crate::supervisor::sandbox_files::DEFAULT_TIMEOUT_SECS),
    )?;
    let request = CreateRequest {
        template: body.template,
        vault,
        grants: plan::parse_grants(&body.secrets)?,
        env: parse_env(body.env)?,
        strict: body.strict,
        owner: caller.name().to_owned(),
        caller_env: state.caller_env().clone(),
    };
    let host = state.sandbox_host();
    let created = state
        .with_store_as(caller.name(), move |store| host.create(store, request))
        .await?;
    let dir = created
        .workdir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    crate::supervisor::sandbox_files::set_timeout(&dir, Some(timeout))
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "id": created.id,
        "template": created.template,
        "network": created.network,
        "limits": created.limits,
        "isolation": created.features,
        "timeout_s": timeout,
        "expires_at": crate::supervisor::sandbox_files::expires_at_ms(&dir).map(crate::clock::rfc3339),
    }))
    .into_response())
}

/// `GET /api/sandboxes` → `{"sandboxes": [{"id", "template", "vault",
/// "created_at", "last_exit", "last_exec_at"}]}`: the caller's own, oldest
/// first (to find and remove what a crashed client left behind).
pub async fn list(State(state): State<Arc<ApiState>>, caller: Caller) -> ApiResult {
    let host = state.sandbox_host();
    let owner = caller.name().to_owned();
    let rows = state
        .with_store_as(caller.name(), move |store| host.owned_by(store, &owner))
        .await?;
    Ok(Json(sandboxes::listing_json(&rows)).into_response())
}

/// The sandbox `id` if `caller` may use it: its owner, with read on its vault.
pub(super) async fn owned_sandbox(
    state: &Arc<ApiState>,
    caller: &Caller,
    id: String,
) -> Result<(SandboxRow, SandboxConfig), ApiError> {
    let host = state.sandbox_host();
    let lookup = id.clone();
    let (row, config) = state
        .with_store_as(caller.name(), move |store| host.load(store, &lookup))
        .await?;
    if !caller.is_local() && config.owner.as_deref() != Some(caller.name()) {
        return Err(PlanError::Store(StoreError::SandboxNotFound(id)).into());
    }
    caller.require(&row.vault, Access::Read)?;
    // Only its owner learns where it lives.
    crate::supervisor::sandboxes::SandboxHost::check_node(&row)?;
    Ok((row, config))
}

/// An exec's command: a program and its arguments, or one string that
/// `sh -c` runs (as E2B's `commands.run` takes it).
pub struct CommandLine(Vec<String>);

impl<'de> Deserialize<'de> for CommandLine {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CommandLine;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string (run by `sh -c`) or an array of strings")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<CommandLine, E> {
                // `--`: a text that starts with `-` or `+` is a command,
                // not options of sh.
                Ok(CommandLine(vec![
                    "sh".into(),
                    "-c".into(),
                    "--".into(),
                    text.to_owned(),
                ]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut items: A,
            ) -> Result<CommandLine, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = items.next_element::<String>()? {
                    argv.push(arg);
                }
                Ok(CommandLine(argv))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    /// The program and its arguments, or a string for `sh -c`.
    command: CommandLine,
    /// Where it starts: a folder of the working directory (default: its top).
    #[serde(default)]
    cwd: Option<String>,
    /// Secrets for this command only, beside the sandbox's own.
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "super::json::whole_number")]
    timeout_ms: Option<u64>,
    #[serde(default)]
    stream: bool,
    /// `label` (default) or `stars`.
    mask: Option<String>,
    /// What the command reads on stdin (default: nothing, end of file).
    stdin: Option<String>,
    /// Start it and answer `{"process_id"}` at once; it outlives the
    /// request (see `GET /api/sandboxes/{id}/processes`).
    #[serde(default)]
    background: bool,
}

/// `POST /api/sandboxes/{id}/exec`: the command's masked output and exit
/// code, as one JSON object or as JSON lines while it runs.
pub async fn exec(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(mut body): ApiJson<ExecBody>,
) -> ApiResult {
    let (timeout, mask) = check_exec_body(&body)?;
    let grants = plan::parse_grants(&body.secrets)?;
    let env = parse_env(std::mem::take(&mut body.env))?;
    let (row, config) = owned_sandbox(&state, &caller, id).await?;
    if body.background {
        return start_background(state, caller, row, config, body, grants, env, timeout, mask)
            .await;
    }

    let slot = state.try_start_run()?;
    let (guard, watch) = cancel_pair().map_err(ApiError::internal)?;
    let shutdown = state
        .shutdown_watch()
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            )
        })?;
    let (destination, output, receiver) = if body.stream {
        let (sender, receiver) = tokio::sync::mpsc::channel(STREAM_BACKLOG);
        (
            Destination::Channel(sender),
            OutputMode::JsonLines,
            Some(receiver),
        )
    } else {
        (Destination::Capture, OutputMode::Streams, None)
    };
    let request = ExecRequest {
        grants,
        env,
        command: body.command.0.into_iter().map(OsString::from).collect(),
        cwd: body.cwd.map(std::path::PathBuf::from),
        timeout,
        mask,
        stdio: StdioMode::GivenInput,
        // The client's input may hold its own secrets: kept zeroizing and
        // out of Debug output like a value.
        input: body.stdin.map(|text| SecretValue::new(text.into_bytes())),
        output,
        destination,
        control: Control::Detached(vec![watch, shutdown]),
        output_cap: (!body.stream).then_some(BUFFERED_OUTPUT_CAP),
        caller_env: state.caller_env().clone(),
        requests: None,
        // Prepared on the store's thread, run on another.
        start_early: false,
        guessed_init: None,
    };
    let host = state.sandbox_host();
    let prepared = state
        .with_store_as(caller.name(), move |store| {
            host.prepare_exec(StoreAccess::Open(store), row, config, request)
        })
        .await?;
    let unmasked: Vec<String> = prepared.unmasked.iter().map(|n| n.to_string()).collect();
    let id = prepared.id;
    let actor = caller.name().to_owned();
    let runner = Arc::clone(&state);
    let run = move |error_lines: Option<tokio::sync::mpsc::Sender<Chunk>>| {
        let _slot = slot; // held until the command has ended
        let busy = runner.sandbox_busy(&id);
        let result = supervisor::run(prepared.plan);
        // A long command: the lifetime counts from its end.
        let _ = crate::supervisor::sandbox_files::touch(&runner.home().join("sandboxes").join(&id));
        drop(busy);
        match &result {
            Ok(report) => {
                let code = i64::from(report.code);
                let recorded =
                    runner.store_blocking(&actor, |store| store.record_sandbox_exit(&id, code));
                if let Err(e) = recorded {
                    tracing::warn!(sandbox = %id, error = %e, "cannot record the exit");
                }
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, error = %e, "sandbox exec failed");
                if let Some(lines) = error_lines {
                    let _ = lines.blocking_send(error_line(e));
                }
            }
        }
        result
    };

    match receiver {
        None => {
            let result = tokio::task::spawn_blocking(move || run(None))
                .await
                .map_err(ApiError::internal)?;
            drop(guard);
            let report = result.map_err(ApiError::internal)?;
            Ok(Json(buffered_result(&report, &unmasked)).into_response())
        }
        Some(receiver) => {
            // The error line needs a sender of its own: the run's is moved
            // into the plan.
            let (error_sender, error_receiver) = tokio::sync::mpsc::channel(1);
            tokio::task::spawn_blocking(move || run(Some(error_sender)));
            let body = stream_body(receiver, error_receiver, guard);
            Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
        }
    }
}

/// Starts a background command: prepared like any exec, its output to
/// the sandbox's process log, its handle given to the manager.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one exec body, checked"
)]
async fn start_background(
    state: Arc<ApiState>,
    caller: Caller,
    row: SandboxRow,
    config: SandboxConfig,
    body: ExecBody,
    grants: Vec<crate::supervisor::plan::SecretGrant>,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    mask: MaskStyle,
) -> ApiResult {
    if body.stream {
        return Err(ApiError::bad_request(
            "`background` and `stream` exclude each other",
        ));
    }
    let manager = super::deployments::manager(&state)?;
    let process_id = state.next_process_id();
    let dir = config.dir();
    let logs = dir.join("processes");
    std::fs::create_dir_all(&logs).map_err(ApiError::internal)?;
    let log = Arc::new(crate::supervisor::deploy::LogFile::new(
        logs.join(format!("{process_id}.jsonl")),
        crate::supervisor::background::LOG_CAP_BYTES,
    ));
    let sink =
        crate::supervisor::deploy::InstanceLog::new(Arc::clone(&log), process_id.to_string());
    let (handle, requests) = crate::supervisor::run_handle().map_err(ApiError::internal)?;
    let command: Vec<String> = body.command.0.clone();
    let request = ExecRequest {
        grants,
        env,
        command: body.command.0.into_iter().map(OsString::from).collect(),
        cwd: body.cwd.map(std::path::PathBuf::from),
        // A background command runs until it ends, is stopped, or its
        // sandbox goes; `timeout_ms` still bounds it when given.
        timeout: timeout.or(Some(Duration::from_secs(u32::MAX as u64))),
        mask,
        stdio: StdioMode::GivenInput,
        input: body.stdin.map(|text| SecretValue::new(text.into_bytes())),
        output: OutputMode::Streams,
        destination: Destination::Sink(Box::new(sink)),
        control: Control::Detached(Vec::new()),
        output_cap: None,
        caller_env: state.caller_env().clone(),
        requests: Some(requests),
        start_early: false,
        guessed_init: None,
    };
    let host = state.sandbox_host();
    let sandbox = row.id.clone();
    let prepared = state
        .with_store_as(caller.name(), move |store| {
            host.prepare_exec(StoreAccess::Open(store), row, config, request)
        })
        .await?;
    manager
        .background_start(crate::supervisor::background::BackgroundStart {
            sandbox,
            process_id,
            command,
            plan: prepared.plan,
            handle,
            log,
        })
        .await?;
    Ok(Json(serde_json::json!({ "process_id": process_id })).into_response())
}

/// `GET /api/sandboxes/{id}/processes` → `{"processes": [...]}`.
pub async fn processes(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let (row, config) = owned_sandbox(&state, &caller, id).await?;
    let _ = crate::supervisor::sandbox_files::touch(&config.dir());
    let listed = super::deployments::manager(&state)?
        .background_list(&row.id)
        .await?;
    Ok(Json(serde_json::json!({ "processes": listed })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessLogQuery {
    #[serde(default)]
    follow: Option<bool>,
    #[serde(default)]
    tail: Option<usize>,
}

/// `GET /api/sandboxes/{id}/processes/{pid}/log[?follow=true&tail=N]`:
/// JSON lines, ending with the exit event once it ended.
pub async fn process_log(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath((id, process_id)): ApiPath<(String, u64)>,
    ApiQuery(query): ApiQuery<ProcessLogQuery>,
) -> ApiResult {
    let (row, config) = owned_sandbox(&state, &caller, id).await?;
    let listed = super::deployments::manager(&state)?
        .background_list(&row.id)
        .await?;
    if !listed.iter().any(|p| p["process_id"] == process_id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no background command {process_id} in this sandbox"),
        ));
    }
    let path = config
        .dir()
        .join("processes")
        .join(format!("{process_id}.jsonl"));
    Ok(super::deployments::lines_response(
        path,
        query.tail,
        query.follow.unwrap_or(false),
        true,
    ))
}

/// `DELETE /api/sandboxes/{id}/processes/{pid}`: SIGTERM, then SIGKILL
/// after 10 s → `{"process_id", "stopped": true}`.
pub async fn stop_process(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath((id, process_id)): ApiPath<(String, u64)>,
) -> ApiResult {
    let (row, _) = owned_sandbox(&state, &caller, id).await?;
    if !super::deployments::manager(&state)?
        .background_stop(&row.id, process_id)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no background command {process_id} in this sandbox"),
        ));
    }
    Ok(Json(serde_json::json!({ "process_id": process_id, "stopped": true })).into_response())
}

/// Checks what an exec body can get wrong before anything is looked up;
/// returns its timeout and mask style.
fn check_exec_body(body: &ExecBody) -> Result<(Option<Duration>, MaskStyle), ApiError> {
    if body
        .command
        .0
        .first()
        .is_none_or(|program| program.is_empty())
    {
        return Err(ApiError::bad_request("`command` needs a program"));
    }
    if body.command.0.get(..3) == Some(&["sh".to_owned(), "-c".to_owned(), "--".to_owned()][..])
        && body.command.0.get(3).is_some_and(|text| text.is_empty())
    {
        return Err(ApiError::bad_request("`command` is an empty string"));
    }
    if body.cwd.as_deref().is_some_and(|cwd| cwd.contains('\0')) {
        return Err(ApiError::bad_request("`cwd` contains a NUL byte"));
    }
    if body.command.0.iter().any(|arg| arg.contains('\0')) {
        return Err(ApiError::bad_request("`command` contains a NUL byte"));
    }
    let timeout = match body.timeout_ms {
        Some(0) => return Err(ApiError::bad_request("`timeout_ms` must be greater than 0")),
        Some(ms) if ms > MAX_EXEC_TIMEOUT_MS => {
            return Err(ApiError::bad_request(format!(
                "`timeout_ms` is at most {MAX_EXEC_TIMEOUT_MS} (a day)"
            )))
        }
        Some(ms) => Some(Duration::from_millis(ms)),
        None => None,
    };
    let mask = match body.mask.as_deref() {
        None | Some("label") => MaskStyle::Label,
        Some("stars") => MaskStyle::Stars,
        Some(_) => return Err(ApiError::bad_request("`mask` is `label` or `stars`")),
    };
    Ok((timeout, mask))
}

/// The JSON answer of a buffered exec.
fn buffered_result(report: &supervisor::ExitReport, unmasked: &[String]) -> serde_json::Value {
    let mut body = serde_json::json!({
        "exit_code": report.code,
        "stdout": String::from_utf8_lossy(&report.captured.stdout),
        "stderr": String::from_utf8_lossy(&report.captured.stderr),
        "duration_ms": report.duration.as_millis() as u64,
        "signal": report.signal,
        "timed_out": report.timed_out,
        "output_limit_reached": report.output_limit_reached,
        "cancelled": report.cancelled,
    });
    // Output that is not UTF-8 (an image, a tarball) also comes whole, as
    // base64, beside its lossy text.
    for (field, bytes) in [
        ("stdout_base64", &report.captured.stdout),
        ("stderr_base64", &report.captured.stderr),
    ] {
        if std::str::from_utf8(bytes).is_err() {
            body[field] =
                serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
    }
    if !unmasked.is_empty() {
        body["unmasked_secrets"] = serde_json::json!(unmasked);
    }
    body
}

/// The last line of a stream whose run failed inside shroud.
fn error_line(e: &supervisor::SupervisorError) -> Chunk {
    let line = crate::supervisor::output::ExitEvent::failed(e.exit_code());
    Chunk {
        stream: None,
        bytes: format!("{line}\n").into_bytes(),
    }
}

/// The response body of a streamed exec: the run's JSON lines, then an
/// error line if it failed. It owns the cancel guard, so a client that goes
/// away (hyper drops the body) kills the run.
fn stream_body(
    lines: tokio::sync::mpsc::Receiver<Chunk>,
    error: tokio::sync::mpsc::Receiver<Chunk>,
    guard: supervisor::CancelGuard,
) -> Body {
    struct Streaming {
        lines: tokio::sync::mpsc::Receiver<Chunk>,
        error: tokio::sync::mpsc::Receiver<Chunk>,
        _guard: supervisor::CancelGuard,
    }
    let state = Streaming {
        lines,
        error,
        _guard: guard,
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let chunk = match state.lines.recv().await {
            Some(chunk) => chunk,
            None => state.error.recv().await?,
        };
        Some((Ok::<_, std::convert::Infallible>(chunk.bytes), state))
    });
    Body::from_stream(stream)
}

/// `DELETE /api/sandboxes/{id}` → `{"id", "deleted": true}`.
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let (row, _) = owned_sandbox(&state, &caller, id).await?;
    // Its background commands first (their handles dropped: killed).
    if let Some(manager) = state.manager() {
        manager.sandbox_gone(&row.id);
    }
    let host = state.sandbox_host();
    let removed = row.id.clone();
    state
        .with_store_as(caller.name(), move |store| host.remove(store, &removed))
        .await?;
    Ok(Json(serde_json::json!({ "id": row.id, "deleted": true })).into_response())
}
