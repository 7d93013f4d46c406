//! Bearer-token authentication, as an extractor.
//!
//! No `Authorization` header: 403. A header that is not `Bearer <token>`, or
//! a token that is unknown or revoked: 401. A handler then asks the [`Caller`]
//! for the grant it needs on a vault; beyond the grant: 403.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::error::ApiError;
use super::ApiState;
use crate::store::tokens::{Access, TokenInfo};

/// The authenticated token making a request.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenInfo);

impl Caller {
    /// Requires `access` on `vault`.
    pub fn require(&self, vault: &str, access: Access) -> Result<(), ApiError> {
        if self.0.allows(vault, access) {
            Ok(())
        } else {
            let what = match access {
                Access::Read => "read",
                Access::Write => "write",
            };
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "token `{}` has no {what} grant on vault `{vault}`",
                    self.0.name
                ),
            ))
        }
    }

    /// The token's name: the actor of its audit records.
    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing Authorization header",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| zeroize::Zeroizing::new(t.trim().to_owned()))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "expected `Authorization: Bearer <token>`",
                )
            })?;
        let info = state
            .with_store(crate::store::API_ACTOR, move |store| {
                store.authenticate(&token)
            })
            .await?;
        info.map(Caller)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked token"))
    }
}
