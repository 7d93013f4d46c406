//! Route handlers: each checks the caller's grant, then runs one store call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::error::{ApiError, ItemError};
use super::json::{ApiJson, ApiPath, ApiQuery};
use super::ApiState;
use crate::clock::rfc3339;
use crate::secret::SecretValue;
use crate::store::audit::Filter;
use crate::store::tokens::Access;
use crate::store::{NewSecret, SecretMeta, SecretName, VaultName};

type ApiResult = Result<Response, ApiError>;

pub(super) fn vault(name: &str) -> Result<VaultName, ApiError> {
    VaultName::parse(name).map_err(ApiError::bad_request)
}

fn secret_name(name: &str) -> Result<SecretName, ApiError> {
    SecretName::parse(name).map_err(ApiError::bad_request)
}

fn meta_json(meta: &SecretMeta) -> serde_json::Value {
    serde_json::json!(crate::wire::SecretMetaJson::from(meta))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretItem {
    name: String,
    secret: String,
    #[serde(default)]
    description: Option<String>,
    /// `APIKey`, `SSHKey`, `UsernamePassword` or `Other`.
    #[serde(default)]
    purpose: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSecretsBody {
    vault_name: String,
    secrets: Vec<SecretItem>,
}

/// `POST /api/vaults/secrets`: bulk, not atomic. 200 when all were set; 400
/// with the per-item `errors` (the others are set) when any failed, its
/// `error` RWX's text: `The following secrets could not be set:` and one
/// `  NAME: reason` line per failure.
pub async fn set_secrets(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<SetSecretsBody>,
) -> ApiResult {
    let vault = vault(&body.vault_name)?;
    caller.require(vault.as_str(), Access::Write)?;
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for item in body.secrets {
        let value = SecretValue::new(item.secret.into_bytes());
        let purpose = item
            .purpose
            .as_deref()
            .map(crate::store::names::Purpose::parse)
            .transpose();
        match SecretName::parse(&item.name).and_then(|name| {
            Ok(NewSecret::new(name, value, item.description, None)?.with_purpose(purpose?))
        }) {
            Ok(secret) => valid.push(secret),
            Err(e) => errors.push(ItemError {
                name: item.name,
                error: e.to_string(),
            }),
        }
    }
    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        state
            .write_secrets(caller.name(), vault.clone(), valid)
            .await?
    };
    let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
    let versions: BTreeMap<&str, u64> = outcomes
        .iter()
        .map(|o| (o.name.as_str(), o.version))
        .collect();
    if errors.is_empty() {
        return Ok(
            Json(serde_json::json!({ "set_secrets": names, "versions": versions })).into_response(),
        );
    }
    let body = serde_json::json!({
        "error": not_set_text(&errors),
        "errors": errors,
        "set_secrets": names,
        "versions": versions,
    });
    Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
}

/// RWX's text for the secrets a bulk set could not set, one line each
/// (the reason without the name it already starts with).
fn not_set_text(errors: &[ItemError]) -> String {
    let mut text = "The following secrets could not be set:".to_owned();
    for item in errors {
        let prefix = format!("secret `{}`: ", item.name);
        let reason = item.error.strip_prefix(&prefix).unwrap_or(&item.error);
        text.push_str(&format!("\n  {}: {reason}", item.name));
    }
    text
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarItem {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVarBody {
    vault_name: String,
    var: VarItem,
}

/// `POST /api/vaults/vars`.
pub async fn set_var(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<SetVarBody>,
) -> ApiResult {
    let vault = vault(&body.vault_name)?;
    caller.require(vault.as_str(), Access::Write)?;
    let name = SecretName::parse_var(&body.var.name).map_err(ApiError::bad_request)?;
    let value = body.var.value;
    state
        .with_store(caller.name(), move |store| {
            store.set_var(&vault, &name, &value)
        })
        .await?;
    Ok(Json(serde_json::json!({})).into_response())
}

/// `GET /api/vaults/{vault}/secrets`: metadata, never values.
pub async fn list_secrets(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    let vault = vault(&name)?;
    caller.require(vault.as_str(), Access::Read)?;
    let secrets = state
        .with_store(caller.name(), move |store| store.list_secrets(&vault))
        .await?;
    let items: Vec<_> = secrets.iter().map(meta_json).collect();
    Ok(Json(serde_json::json!({ "secrets": items })).into_response())
}

/// `GET|HEAD /api/vaults/{vault}/secrets/{name}`: one secret's metadata.
pub async fn secret_metadata(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath((vault_name, name)): ApiPath<(String, String)>,
) -> ApiResult {
    let vault = vault(&vault_name)?;
    let name = secret_name(&name)?;
    caller.require(vault.as_str(), Access::Read)?;
    let (v, n) = (vault.clone(), name.clone());
    match state
        .with_store(caller.name(), move |store| store.secret_meta(&v, &n))
        .await?
    {
        Some(meta) => Ok(Json(meta_json(&meta)).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("secret `{name}` not found in vault `{vault}`"),
        )),
    }
}

/// `DELETE /api/vaults/{vault}/secrets/{name}`.
pub async fn delete_secret(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath((vault_name, name)): ApiPath<(String, String)>,
) -> ApiResult {
    let vault = vault(&vault_name)?;
    let name = secret_name(&name)?;
    caller.require(vault.as_str(), Access::Write)?;
    state
        .with_store(caller.name(), move |store| {
            store.delete_secret(&vault, &name)
        })
        .await?;
    Ok(Json(serde_json::json!({ "deleted": true })).into_response())
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<u64>,
    vault: Option<String>,
    secret: Option<String>,
}

/// The largest `limit` of `GET /api/audit`.
pub const MAX_AUDIT_LIMIT: u64 = 1_000_000_000;

/// `GET /api/audit`: the records of the vaults the caller can read.
pub async fn audit(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult {
    if let Some(v) = &query.vault {
        caller.require(vault(v)?.as_str(), Access::Read)?;
    }
    if let Some(name) = &query.secret {
        secret_name(name)?;
    }
    if query.limit.is_some_and(|limit| limit > MAX_AUDIT_LIMIT) {
        return Err(ApiError::bad_request(format!(
            "query parameter `limit`: at most {MAX_AUDIT_LIMIT}"
        )));
    }
    let filter = Filter {
        vault: query.vault,
        secret: query.secret,
        limit: None,
    };
    let records = state
        .with_store(caller.name(), move |store| store.audit_records(&filter))
        .await?;
    let visible: Vec<_> = records
        .iter()
        .filter(|r| {
            r.vault
                .as_deref()
                .is_some_and(|v| caller.allows(v, Access::Read))
        })
        .collect();
    let skip = query
        .limit
        .map_or(0, |l| visible.len().saturating_sub(l as usize));
    let items: Vec<_> = visible[skip..]
        .iter()
        .map(|r| {
            serde_json::json!({
                "seq": r.seq, "ts": rfc3339(r.ts_ms), "actor": r.actor, "action": r.action,
                "vault": r.vault, "secret": r.secret, "version": r.version, "outcome": r.outcome,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "records": items })).into_response())
}

/// `GET /api/openapi.json` (no token needed): see `openapi`.
pub async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        super::openapi::document_text(),
    )
        .into_response()
}

/// Unknown routes: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// A known route asked with a method it does not take: a JSON 405.
pub async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this route does not take {method}"),
    )
}

/// `GET /api/health` (no token needed): 200 with the version when the
/// store answers, 503 when it does not.
pub async fn health(State(state): State<Arc<ApiState>>) -> Response {
    let backend = state.backend_name();
    let version = env!("CARGO_PKG_VERSION");
    match state
        .with_store(crate::store::API_ACTOR, |store| store.change_mark())
        .await
    {
        Ok(_) => Json(serde_json::json!({
            "status": "ok",
            "version": version,
            "store": { "reachable": true, "backend": backend },
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            Json(serde_json::json!({
                "status": "unavailable",
                "version": version,
                "store": { "reachable": false, "backend": backend },
                "error": e.message,
                "errors": [],
            })),
        )
            .into_response(),
    }
}

/// One log line per request, at `info`: method, path, status, time in
/// milliseconds and the token's name (`-` when none authenticated). Never
/// a body, a header, a token or a query string (they can hold values).
pub async fn log_request(mut request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let slot = super::auth::CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let started = Instant::now();
    let response = next.run(request).await;
    let ms = (started.elapsed().as_micros() as f64 / 10.0).round() / 100.0;
    let token = slot.0.get().map_or("-", String::as_str);
    tracing::info!(%method, %path, status = response.status().as_u16(), ms, %token, "request");
    response
}

/// A panicking handler: 500 with no detail (it is logged).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("a handler panicked").into_response()
}

#[derive(Deserialize)]
pub struct RenderQuery {
    mode: Option<String>,
    #[serde(rename = "secret-name-filter")]
    filter: Option<String>,
    /// An alias of the vault in the path (a vault is also an environment).
    environment: Option<String>,
}

/// A preview that shows at most 3 characters, and only of a long value.
fn preview(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if text.chars().count() >= 12 => {
            let head: String = text.chars().take(3).collect();
            format!("{head}********")
        }
        _ => "********".to_owned(),
    }
}

/// `GET /api/vaults/{vault}/rendered?mode=Full|PreviewOnly&secret-name-filter=a,b&environment=V`:
/// masked previews (the default), or the values in full with `mode=Full`.
/// `environment`, when given, is an alias of the vault and wins over the
/// path's. Needs the read grant; every value read is audited
/// (`secret.render`) before it is returned.
pub async fn rendered(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiPath(vault_name): ApiPath<String>,
    ApiQuery(query): ApiQuery<RenderQuery>,
) -> ApiResult {
    let path_vault = vault(&vault_name)?;
    // The seed's clients name the vault as an environment: when given, it
    // is the vault rendered (the grant is checked on it).
    let vault = match &query.environment {
        Some(environment) => self::vault(environment)?,
        None => path_vault,
    };
    caller.require(vault.as_str(), Access::Read)?;
    let full = match query.mode.as_deref() {
        Some("Full") => true,
        None | Some("PreviewOnly") => false,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid mode {other:?}: expected Full or PreviewOnly"),
            ))
        }
    };
    let wanted: Option<Vec<SecretName>> = match &query.filter {
        Some(list) => Some(
            list.split(',')
                .map(|name| {
                    secret_name(name).map_err(|e| {
                        ApiError::bad_request(format!(
                            "query parameter `secret-name-filter`: {}",
                            e.message
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        None => None,
    };
    let v = vault.clone();
    let rendered = state
        .with_store(caller.name(), move |store| {
            let names = match wanted {
                Some(names) => names,
                None => store
                    .list_secret_names(&v)?
                    .iter()
                    .filter_map(|n| SecretName::parse(n).ok())
                    .collect(),
            };
            let values =
                store.read_secrets(crate::store::audit::Action::SecretRender, &v, &names)?;
            Ok(names.into_iter().zip(values).collect::<Vec<_>>())
        })
        .await?;
    let items: Vec<_> = rendered
        .iter()
        .map(|(name, revealed)| {
            let mut item =
                serde_json::json!({ "name": name.as_str(), "version": revealed.version });
            let value = revealed.value.expose();
            if !full {
                item["preview"] = preview(value).into();
            } else if let Ok(text) = std::str::from_utf8(value) {
                item["value"] = text.into();
            } else {
                use base64::Engine as _;
                item["value_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(value)
                    .into();
            }
            item
        })
        .collect();
    Ok(Json(serde_json::json!({ "vault": vault.as_str(), "mode": if full { "Full" } else { "PreviewOnly" }, "secrets": items })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedBody {
    name: String,
    /// Any JSON value: a string is stored as it is, anything else as its
    /// compact JSON text, exactly as sent (key order, duplicate keys and
    /// every digit of a number kept; only the whitespace between tokens
    /// dropped).
    #[serde(default)]
    value: Option<Box<serde_json::value::RawValue>>,
    scope: String,
    #[serde(default, deserialize_with = "super::json::whole_number")]
    ttl: Option<u64>,
}

/// The vault of a scope: `workspace` (needs a grant on it) or the caller's
/// own `user.<name>` vault (needs a token with a user).
fn scope_vault(caller: &Caller, scope: &str, access: Access) -> Result<VaultName, ApiError> {
    match scope {
        "workspace" => {
            caller.require("workspace", access)?;
            vault("workspace")
        }
        "user" => match &caller.0.user {
            Some(user) => vault(&format!("user.{}", user.to_lowercase())),
            None => Err(ApiError::new(StatusCode::BAD_REQUEST, "user_required")),
        },
        other => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid scope {other:?}: expected workspace or user"),
        )),
    }
}

/// The scoped routes answer a missing secret with `{"error": "not_found"}`.
fn scoped_not_found(e: ApiError) -> ApiError {
    if e.status == StatusCode::NOT_FOUND {
        ApiError::new(StatusCode::NOT_FOUND, "not_found")
    } else {
        e
    }
}

fn reference_json(reference: &crate::store::SecretReference) -> Response {
    Json(serde_json::json!({
        "ref": reference.reference.as_str(),
        "expires_at": rfc3339(reference.expires_at_ms),
    }))
    .into_response()
}

/// `POST /api/secrets/set`: stores the value, returns a reference to it.
pub async fn scoped_set(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ScopedBody>,
) -> ApiResult {
    let vault = scope_vault(&caller, &body.scope, Access::Write)?;
    let name = secret_name(&body.name)?;
    let value = SecretValue::new(match &body.value {
        None => Vec::new(),
        Some(raw) => std::mem::take(
            &mut *crate::wire::value_from_json(raw)
                .ok_or_else(|| ApiError::bad_request("`value` is not a valid JSON string"))?,
        ),
    });
    let secret =
        NewSecret::new(name.clone(), value, None, body.ttl).map_err(ApiError::bad_request)?;
    let reference = state
        .with_store(caller.name(), move |store| {
            store.set_secret(&vault, secret)?;
            store.create_reference(&vault, &name, crate::store::DEFAULT_REFERENCE_TTL_SECS)
        })
        .await?;
    Ok(reference_json(&reference))
}

/// `POST /api/secrets/get`: a reference to the secret (never its value).
pub async fn scoped_get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ScopedBody>,
) -> ApiResult {
    let vault = scope_vault(&caller, &body.scope, Access::Read)?;
    let name = secret_name(&body.name)?;
    if body.value.is_some() {
        return Err(ApiError::bad_request(
            "get takes `name`, `scope` and `ttl`, never a value",
        ));
    }
    let ttl = body.ttl.unwrap_or(crate::store::DEFAULT_REFERENCE_TTL_SECS);
    let reference = state
        .with_store(caller.name(), move |store| {
            store.create_reference(&vault, &name, ttl)
        })
        .await
        .map_err(scoped_not_found)?;
    Ok(reference_json(&reference))
}

/// `POST /api/secrets/delete`.
pub async fn scoped_delete(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ScopedBody>,
) -> ApiResult {
    let vault = scope_vault(&caller, &body.scope, Access::Write)?;
    let name = secret_name(&body.name)?;
    if body.ttl.is_some() || body.value.is_some() {
        return Err(ApiError::bad_request(
            "delete takes only `name` and `scope`",
        ));
    }
    state
        .with_store(caller.name(), move |store| {
            store.delete_secret(&vault, &name)
        })
        .await
        .map_err(scoped_not_found)?;
    Ok(Json(serde_json::json!({ "deleted": true })).into_response())
}
