//! `ApiJson<T>`: a JSON body extractor whose rejections are JSON errors
//! (415 without `Content-Type: application/json`, 413 over the body limit,
//! 400 for malformed JSON), not axum's plain-text ones.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::Json;
use serde::de::DeserializeOwned;

use super::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(rejection_error(rejection)),
        }
    }
}

fn rejection_error(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a body with `Content-Type: application/json`".to_owned()
        }
        _ if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            format!(
                "request body is larger than {} bytes",
                super::MAX_BODY_BYTES
            )
        }
        // serde's type errors quote the value they got (a secret, perhaps):
        // say only what kind of error it is.
        JsonRejection::JsonDataError(_) => {
            "invalid JSON body: a field is missing, unknown, or of the wrong type".to_owned()
        }
        // Syntax errors give a line and column, no input.
        other => format!("invalid JSON body: {}", other.body_text()),
    };
    ApiError::new(status, message)
}
