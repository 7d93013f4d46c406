//! `ApiError`: every failure of the HTTP API, as a status and a JSON body.
//!
//! Bodies are `{"error": "<human text>", "errors": [{"name", "error"}]}`.
//! Internal failures are logged (names, never values) and answered with a
//! plain "internal error", so no detail of the host leaks to a client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::store::StoreError;

/// One failed item of a bulk request.
#[derive(Debug, Clone, Serialize)]
pub struct ItemError {
    pub name: String,
    pub error: String,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<ItemError>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// A 400 whose message is `e` (a validation error: it names the thing,
    /// never a value).
    pub fn bad_request(e: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Invalid(_) | StoreError::ReferenceTtl(_) => ApiError::bad_request(e),
            e if e.is_not_found() => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Unavailable { context, .. } => {
                // The details (host, driver message) go to the log only.
                tracing::warn!(error = %e, "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the vault's database is unavailable (while {context}); try again shortly"
                    ),
                )
            }
            _ => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "errors": self.errors });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}
