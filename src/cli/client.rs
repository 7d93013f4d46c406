//! The CLI's side of the supervisor's socket: HTTP/1.1 over
//! `<home>/shroud.sock`, and starting a supervisor in the background when
//! none answers there.
//!
//! `deploy` and `agent` commands go through [`Supervisor::connect`]: it
//! connects to the socket, and when nothing listens there it starts
//! `shroud serve --no-listen` detached (a session of its own, stdin from
//! /dev/null, its output appended to `<home>/supervisor.log`), then waits
//! for the socket to answer. Two commands racing each start one, and the
//! supervisor's lock lets exactly one of them stay (the other exits at
//! once); both commands then talk to the one that stayed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::body::Body;
use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::serve::SOCKET_FILE;
use super::{CliError, Context};

/// How long a started supervisor may take to answer.
const START_WAIT: Duration = Duration::from_secs(20);

/// A connection point to the home's supervisor.
pub struct Supervisor {
    socket: PathBuf,
    runtime: tokio::runtime::Runtime,
}

/// A reply that is not a success: its status and JSON `error` text.
pub struct Refusal {
    pub status: StatusCode,
    pub error: String,
}

impl Supervisor {
    /// Connects to the home's supervisor, starting one if none runs.
    pub fn connect(ctx: &Context) -> Result<Supervisor, CliError> {
        let io = |context| move |source| CliError::Io { context, source };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io("start the async runtime"))?;
        let socket = ctx.home.join(SOCKET_FILE);
        let supervisor = Supervisor { socket, runtime };
        if supervisor.answers() {
            return Ok(supervisor);
        }
        start_in_background(ctx)?;
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            if supervisor.answers() {
                return Ok(supervisor);
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(CliError::Reported(format!(
            "the supervisor did not answer on {} within {} s; see {}",
            supervisor.socket.display(),
            START_WAIT.as_secs(),
            ctx.home.join(SUPERVISOR_LOG).display()
        )))
    }

    fn answers(&self) -> bool {
        std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CliError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| CliError::Io {
                context: "connect to the supervisor",
                source,
            })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| CliError::Reported(format!("the supervisor's socket: {e}")))?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "shroud");
        let body = match body {
            Some(json) => {
                request = request.header("content-type", "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| CliError::Reported(format!("a request to the supervisor: {e}")))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| CliError::Reported(format!("the supervisor did not answer: {e}")))
    }

    /// Sends one request; answers the JSON body of a success, or the
    /// refusal.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Result<serde_json::Value, Refusal>, CliError> {
        self.runtime.block_on(async {
            let response = self.send(method, path, body.as_ref()).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| CliError::Reported(format!("reading the supervisor's answer: {e}")))?
                .to_bytes();
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            if status.is_success() {
                Ok(Ok(value))
            } else {
                Ok(Err(Refusal {
                    status,
                    error: value["error"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| format!("the supervisor answered {status}")),
                }))
            }
        })
    }

    /// Sends one request and hands each line of the (streamed) answer to
    /// `on_line` as it comes, until it returns false or the stream ends.
    pub fn stream(
        &self,
        path: &str,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<Result<(), Refusal>, CliError> {
        self.runtime.block_on(async {
            let response = self.send(Method::GET, path, None).await?;
            let status = response.status();
            let mut body = response.into_body();
            if !status.is_success() {
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let value: serde_json::Value =
                    serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                return Ok(Err(Refusal {
                    status,
                    error: value["error"].as_str().unwrap_or("refused").to_owned(),
                }));
            }
            let mut pending: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    CliError::Reported(format!("reading the supervisor's stream: {e}"))
                })?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                    if !on_line(&text) {
                        return Ok(Ok(()));
                    }
                }
            }
            Ok(Ok(()))
        })
    }
}

/// The background supervisor's log, in the home.
pub const SUPERVISOR_LOG: &str = "supervisor.log";

/// Starts `shroud serve --no-listen` detached from this command.
fn start_in_background(ctx: &Context) -> Result<(), CliError> {
    use std::os::unix::process::CommandExt;
    let io = |context| move |source| CliError::Io { context, source };
    crate::store::home::create_private_dir(&ctx.home).map_err(io("create the home"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ctx.home.join(SUPERVISOR_LOG))
        .map_err(io("open the supervisor's log"))?;
    let mut command = std::process::Command::new(ctx.binary());
    command
        .arg("--home")
        .arg(&ctx.home)
        .args(["serve", "--no-listen"])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(io("open the supervisor's log"))?)
        .stderr(log);
    // The store's URL may hold a password: the environment, never argv.
    if !ctx.store_text.is_empty() {
        command.env("SHROUD_STORE", &ctx.store_text);
    }
    // SAFETY: setsid and close_range/fcntl are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            crate::sys::pty::become_session_leader()?;
            // Nothing of this command's (a make jobserver, a CI pipe) stays
            // open for the life of the supervisor.
            crate::sys::fd::cloexec_all_but(None)
        });
    }
    let mut child = command
        .spawn()
        .map_err(io("start a supervisor in the background"))?;
    // Reaped by a thread of its own if it exits while this command runs
    // (a second supervisor that found the lock taken).
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(())
}

/// Turns a refusal into the error a command ends with (404 → exit 1, bad
/// input → 2, the rest → 125).
pub fn refused(refusal: Refusal) -> CliError {
    match refusal.status {
        StatusCode::NOT_FOUND | StatusCode::TOO_MANY_REQUESTS | StatusCode::CONFLICT => {
            CliError::Reported(refusal.error)
        }
        status if status.is_client_error() => CliError::Usage(refusal.error),
        _ => CliError::Io {
            context: "ask the supervisor",
            source: std::io::Error::other(refusal.error),
        },
    }
}
