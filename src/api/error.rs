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

/// Lets one log line through per second; counts the ones held back.
struct LogThrottle {
    /// Milliseconds since [`LogThrottle::epoch`] of the last line let through, plus one (0: none yet).
    last: std::sync::atomic::AtomicU64,
    held_back: std::sync::atomic::AtomicU64,
}

static UNAVAILABLE_LOG: LogThrottle = LogThrottle {
    last: std::sync::atomic::AtomicU64::new(0),
    held_back: std::sync::atomic::AtomicU64::new(0),
};

impl LogThrottle {
    const EVERY_MS: u64 = 1000;

    fn epoch() -> std::time::Instant {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(std::time::Instant::now)
    }

    /// `Some(lines held back since the last one)` when this line may be logged.
    fn admit(&self) -> Option<u64> {
        self.admit_at(Self::epoch().elapsed().as_millis() as u64 + 1)
    }

    /// [`Self::admit`] at `now` (milliseconds, from 1).
    fn admit_at(&self, now: u64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= Self::EVERY_MS;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Invalid(_) | StoreError::ReferenceTtl(_) => ApiError::bad_request(e),
            e if e.is_not_found() => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            StoreError::Unavailable { context, .. } => {
                // The details (host, driver message) go to the log only,
                // at most once a second: an outage under load is thousands
                // of refusals, and a log that floods its pipe stalls a server.
                if let Some(suppressed) = UNAVAILABLE_LOG.admit() {
                    tracing::warn!(error = %e, suppressed, "store unavailable");
                }
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

#[cfg(test)]
mod throttle_tests {
    use super::LogThrottle;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn one_line_a_second_and_a_count_of_the_rest() {
        let throttle = LogThrottle {
            last: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        };
        assert_eq!(throttle.admit_at(5), Some(0), "the first line goes through");
        assert_eq!(throttle.admit_at(6), None);
        assert_eq!(throttle.admit_at(1004), None);
        assert_eq!(
            throttle.admit_at(1005),
            Some(2),
            "says how many were held back"
        );
        assert_eq!(throttle.admit_at(1006), None);
        assert_eq!(throttle.held_back.load(Ordering::Relaxed), 1);
    }
}
