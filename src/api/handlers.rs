//! Route handlers: each checks the caller's grant, then runs one store call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::auth::Caller;
use super::error::{ApiError, ItemError};
use super::json::ApiJson;
use super::ApiState;
use crate::clock::rfc3339;
use crate::secret::SecretValue;
use crate::store::audit::Filter;
use crate::store::tokens::Access;
use crate::store::{NewSecret, SecretMeta, SecretName, VaultName};

type ApiResult = Result<Response, ApiError>;

fn vault(name: &str) -> Result<VaultName, ApiError> {
    VaultName::parse(name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn secret_name(name: &str) -> Result<SecretName, ApiError> {
    SecretName::parse(name).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
}

fn meta_json(meta: &SecretMeta) -> serde_json::Value {
    serde_json::json!({
        "name": meta.name,
        "description": meta.description,
        "version": meta.version,
        "created_at": rfc3339(meta.created_at_ms),
        "updated_at": rfc3339(meta.updated_at_ms),
        "expires_at": meta.expires_at_ms.map(rfc3339),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretItem {
    name: String,
    secret: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetSecretsBody {
    vault_name: String,
    secrets: Vec<SecretItem>,
}

/// `POST /api/vaults/secrets`: bulk, not atomic. 200 when all were set; 400
/// with the per-item `errors` (the others are set) when any failed.
pub async fn set_secrets(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    ApiJson(body): ApiJson<SetSecretsBody>,
) -> ApiResult {
    let vault = vault(&body.vault_name)?;
    caller.require(vault.as_str(), Access::Write)?;
    let total = body.secrets.len();
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for item in body.secrets {
        let value = SecretValue::new(item.secret.into_bytes());
        match SecretName::parse(&item.name)
            .and_then(|name| NewSecret::new(name, value, item.description, None))
        {
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
        let vault = vault.clone();
        state
            .with_store(caller.name(), move |store| store.set_secrets(&vault, valid))
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
        "error": format!("{} of {total} secrets could not be set", errors.len()),
        "errors": errors,
        "set_secrets": names,
        "versions": versions,
    });
    Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
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
    let name = SecretName::parse_var(&body.var.name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
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
    Path(name): Path<String>,
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
    Path((vault_name, name)): Path<(String, String)>,
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
    Path((vault_name, name)): Path<(String, String)>,
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

/// `GET /api/audit`: the records of the vaults the caller can read.
pub async fn audit(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult {
    if let Some(v) = &query.vault {
        caller.require(vault(v)?.as_str(), Access::Read)?;
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
                .is_some_and(|v| caller.0.allows(v, Access::Read))
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

/// Unknown routes: a JSON 404.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// One log line per request: method, path, status, time. Never a body,
/// a header or a query string (they can hold values and tokens).
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64, "request");
    response
}

/// A panicking handler: 500 with no detail (it is logged).
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("a handler panicked").into_response()
}
