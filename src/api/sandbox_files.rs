//! A sandbox's files and lifetime over HTTP: `PUT|GET|DELETE
//! /api/sandboxes/{id}/files?path=P` (`GET ...&list=true` lists a
//! directory), `GET /api/sandboxes/{id}` and `POST
//! /api/sandboxes/{id}/timeout`.
//!
//! Bodies are raw bytes, streamed: an upload goes chunk by chunk to a
//! blocking writer (`supervisor::sandbox_files`), a download comes back
//! through the masker chunk by chunk, so a 64 MiB file never sits in the
//! server's memory. Only the token that created the sandbox may use it
//! (others get 404), and every call renews its lifetime.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde::Deserialize;

use super::auth::Caller;
use super::error::ApiError;
use super::json::{ApiJson, ApiPath, ApiQuery};
use super::sandboxes::owned_sandbox;
use super::ApiState;
use crate::supervisor::sandbox_files::{self, MAX_TIMEOUT_SECS};
use crate::sys::beneath::{plain_relative, BeneathError};

type ApiResult = Result<Response, ApiError>;

/// Chunks waiting between the network and the disk, each way.
const CHUNKS_IN_FLIGHT: usize = 16;

impl From<BeneathError> for ApiError {
    fn from(e: BeneathError) -> Self {
        let status = match &e {
            BeneathError::Escapes(_)
            | BeneathError::NotADirectory(_)
            | BeneathError::IsADirectory(_) => StatusCode::BAD_REQUEST,
            BeneathError::NotFound(_) => StatusCode::NOT_FOUND,
            BeneathError::Cut(_) => StatusCode::BAD_REQUEST,
            BeneathError::NoSpace(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BeneathError::Os { .. } => return ApiError::internal(e),
        };
        ApiError::new(status, e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    path: String,
    #[serde(default)]
    list: Option<bool>,
}

/// The request body, as a blocking reader for the upload's thread: the
/// async side sends chunks, and the channel closing without
/// [`Piece::End`] means the client went away.
enum Piece {
    Data(Bytes),
    End,
}

struct BodyReader {
    pieces: tokio::sync::mpsc::Receiver<Piece>,
    current: Bytes,
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.pieces.blocking_recv() {
                Some(Piece::Data(bytes)) => self.current = bytes,
                Some(Piece::End) => return Ok(0),
                None => return Err(std::io::Error::other("the upload was cut short")),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The response body of a download, as a blocking writer for its thread.
struct BodyWriter(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl std::io::Write for BodyWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if !bytes.is_empty() {
            self.0
                .blocking_send(Ok(Bytes::copy_from_slice(bytes)))
                .map_err(|_| std::io::Error::other("the client went away"))?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `PUT /api/sandboxes/{id}/files?path=P`: the raw body becomes the file
/// (its directories made), atomically → `{"path", "size"}`.
pub async fn put(
    State(state): State<Arc<ApiState>>,
    caller: Result<Caller, ApiError>,
    path: Result<ApiPath<String>, ApiError>,
    query: Result<ApiQuery<FileQuery>, ApiError>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult {
    let mut body = body;
    let waits_for_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut read_from = false;
    // A refused token, id or query is answered after the body, too (an
    // unknown caller's only up to a few MiB).
    let (answer, drain_at_most) = match (caller, path, query) {
        (Ok(caller), Ok(ApiPath(id)), Ok(ApiQuery(query))) => (
            upload(state, caller, id, query, headers, &mut body, &mut read_from).await,
            DRAIN_AT_MOST,
        ),
        (Err(e), _, _) => (Err(e), DRAIN_UNKNOWN_CALLER_AT_MOST),
        (_, Err(e), _) | (_, _, Err(e)) => (Err(e), DRAIN_AT_MOST),
    };
    // A client waiting for `100 Continue` has sent nothing while the body
    // was not read (reading it is what sends the 100): it gets the answer
    // at once, and never sends a body that would be thrown away.
    if answer.is_err() && (read_from || !waits_for_continue) {
        drain_unread(&mut body, drain_at_most).await;
    }
    answer
}

/// How long, and how much, a refused upload is still read for.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(5);
const DRAIN_AT_MOST: usize = 256 << 20;
/// The same for a caller whose token was refused.
const DRAIN_UNKNOWN_CALLER_AT_MOST: usize = 8 << 20;

/// Reads and drops what is left of a refused upload's body (a bounded
/// "lingering close", as nginx does). Answering while the client still
/// sends would close a socket with unread bytes: the kernel then resets it,
/// and the client sees EPIPE or ECONNRESET instead of the 413 or 404 it was
/// sent.
async fn drain_unread(body: &mut Body, at_most: usize) {
    let _ = tokio::time::timeout(DRAIN_FOR, async {
        let mut drained = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                drained += data.len();
            }
            if drained > at_most {
                break;
            }
        }
    })
    .await;
}

async fn upload(
    state: Arc<ApiState>,
    caller: Caller,
    id: String,
    query: FileQuery,
    headers: axum::http::HeaderMap,
    body: &mut Body,
    read_from: &mut bool,
) -> ApiResult {
    let (_, config) = owned_sandbox(&state, &caller, id).await?;
    let path = plain_relative(&query.path)?;
    if path.as_os_str().is_empty() {
        return Err(ApiError::bad_request(
            "`path` names a file, not the working directory",
        ));
    }
    if query.list.is_some() {
        return Err(ApiError::bad_request("`list` is for GET"));
    }
    let dir = config.dir();
    let _ = sandbox_files::touch(&dir);
    let expected_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (sender, pieces) = tokio::sync::mpsc::channel::<Piece>(CHUNKS_IN_FLIGHT);
    let target = path.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let reader = BodyReader {
            pieces,
            current: Bytes::new(),
        };
        sandbox_files::upload(&config, &target, expected_len, reader)
    });
    let mut complete = true;
    *read_from = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            complete = false;
            break;
        };
        if let Ok(data) = frame.into_data() {
            if sender.send(Piece::Data(data)).await.is_err() {
                break; // the writer stopped: its error says why
            }
        }
    }
    if complete {
        let _ = sender.send(Piece::End).await;
    }
    drop(sender);
    let size = writer.await.map_err(ApiError::internal)??;
    // A long upload: the lifetime counts from its end.
    let _ = sandbox_files::touch(&dir);
    Ok(
        Json(serde_json::json!({ "path": path.display().to_string(), "size": size }))
            .into_response(),
    )
}

/// `GET /api/sandboxes/{id}/files?path=P`: the file's bytes, masked with
/// every secret ever granted to the sandbox; with `list=true`, the
/// directory's entries `{"path", "entries": [{"name", "type", "size"}]}`.
pub async fn get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<FileQuery>,
) -> ApiResult {
    let (row, config) = owned_sandbox(&state, &caller, id).await?;
    let path = plain_relative(&query.path)?;
    let _ = sandbox_files::touch(&config.dir());
    if query.list == Some(true) {
        let listed = path.clone();
        let entries =
            tokio::task::spawn_blocking(move || sandbox_files::workdir(&config)?.list(&listed))
                .await
                .map_err(ApiError::internal)??;
        let entries: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({ "name": e.name, "type": e.kind, "size": e.size }))
            .collect();
        return Ok(Json(
            serde_json::json!({ "path": path.display().to_string(), "entries": entries }),
        )
        .into_response());
    }
    let opened = path.clone();
    let file_config = config.clone();
    let (file, _) = tokio::task::spawn_blocking(move || {
        sandbox_files::workdir(&file_config)?.open_file(&opened)
    })
    .await
    .map_err(ApiError::internal)??;
    let mask = state
        .with_store_as(caller.name(), move |store| {
            sandbox_files::download_mask(store, &row, &config)
        })
        .await?;
    let (sender, chunks) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let errors = sender.clone();
        if let Err(e) = sandbox_files::download(file, mask, BodyWriter(sender)) {
            let _ = errors.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (chunk, chunks))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `DELETE /api/sandboxes/{id}/files?path=P`: a file, a link, or a
/// directory with everything in it → `{"path", "deleted": true}`.
pub async fn remove(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<FileQuery>,
) -> ApiResult {
    let (_, config) = owned_sandbox(&state, &caller, id).await?;
    let path = plain_relative(&query.path)?;
    if path.as_os_str().is_empty() {
        return Err(ApiError::bad_request(
            "the working directory itself cannot be removed",
        ));
    }
    if query.list.is_some() {
        return Err(ApiError::bad_request("`list` is for GET"));
    }
    let _ = sandbox_files::touch(&config.dir());
    let target = path.clone();
    tokio::task::spawn_blocking(move || sandbox_files::workdir(&config)?.remove(&target))
        .await
        .map_err(ApiError::internal)??;
    Ok(
        Json(serde_json::json!({ "path": path.display().to_string(), "deleted": true }))
            .into_response(),
    )
}

/// A sandbox as `GET /api/sandboxes/{id}` shows it: its listing, its
/// timeout and when it expires.
fn sandbox_view(
    row: &crate::store::SandboxRow,
    config: &crate::supervisor::sandboxes::SandboxConfig,
) -> serde_json::Value {
    let dir = config.dir();
    let mut view = crate::supervisor::sandboxes::listing_json(std::slice::from_ref(row))
        ["sandboxes"][0]
        .take();
    view["timeout_s"] = serde_json::json!(sandbox_files::timeout_of(&dir));
    view["expires_at"] =
        serde_json::json!(sandbox_files::expires_at_ms(&dir).map(crate::clock::rfc3339));
    view
}

/// `GET /api/sandboxes/{id}`.
pub async fn show(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let (row, config) = owned_sandbox(&state, &caller, id).await?;
    Ok(Json(sandbox_view(&row, &config)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutBody {
    #[serde(deserialize_with = "super::json::whole_number")]
    timeout_s: Option<u64>,
}

/// Checks a sandbox timeout: 1 s to a week.
pub fn check_timeout(secs: u64) -> Result<u64, ApiError> {
    if secs == 0 || secs > MAX_TIMEOUT_SECS {
        return Err(ApiError::bad_request(format!(
            "`timeout_s` is 1 to {MAX_TIMEOUT_SECS} (a week)"
        )));
    }
    Ok(secs)
}

/// `POST /api/sandboxes/{id}/timeout` `{"timeout_s"}`: a new lifetime,
/// counted from now → the sandbox.
pub async fn set_timeout(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<TimeoutBody>,
) -> ApiResult {
    let secs = check_timeout(
        body.timeout_s
            .ok_or_else(|| ApiError::bad_request("`timeout_s` is required"))?,
    )?;
    let (row, config) = owned_sandbox(&state, &caller, id).await?;
    sandbox_files::set_timeout(&config.dir(), Some(secs)).map_err(ApiError::internal)?;
    Ok(Json(sandbox_view(&row, &config)).into_response())
}
