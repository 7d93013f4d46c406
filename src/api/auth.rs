//! Who is calling, as an extractor: a bearer token, or a same-user peer on
//! the supervisor's Unix socket.
//!
//! Over TCP: no `Authorization` header: 403. A header that is not `Bearer
//! <token>`, or a token that is unknown or revoked: 401. A handler then asks
//! the [`Caller`] for the grant it needs on a vault; beyond the grant: 403.
//! Over `<home>/shroud.sock` (mode 0600, and every peer's uid checked with
//! SO_PEERCRED when it connects) the caller is the person who runs shroud:
//! it acts as the CLI (actor `cli`), with every grant.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::error::ApiError;
use super::ApiState;
use crate::store::tokens::{Access, TokenInfo};

/// The authenticated token making a request (for a local peer: a token
/// named `cli` that allows everything).
#[derive(Debug, Clone)]
pub struct Caller(pub TokenInfo, bool);

/// Marks the requests that came over the supervisor's Unix socket (a
/// layer of that listener's router adds it).
#[derive(Debug, Clone, Copy)]
pub struct LocalPeer;

/// Where the caller's name goes for the request's log line (the log layer
/// puts an empty one in each request; authentication fills it).
#[derive(Debug, Clone, Default)]
pub struct CallerSlot(pub Arc<std::sync::OnceLock<String>>);

impl Caller {
    /// The same-user peer of the Unix socket.
    pub fn local_peer() -> Caller {
        Caller(
            TokenInfo {
                name: crate::store::CLI_ACTOR.to_owned(),
                grants: Vec::new(),
                user: None,
                created_at_ms: 0,
                revoked_at_ms: None,
                expires_at_ms: None,
            },
            true,
        )
    }

    /// True for the same-user peer of the Unix socket.
    pub fn is_local(&self) -> bool {
        self.1
    }

    /// True when the caller may use `vault` with `access`.
    pub fn allows(&self, vault: &str, access: Access) -> bool {
        self.1 || self.0.allows(vault, access)
    }

    /// Requires `access` on `vault`.
    pub fn require(&self, vault: &str, access: Access) -> Result<(), ApiError> {
        if self.allows(vault, access) {
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
        let slot = parts.extensions.get::<CallerSlot>().cloned();
        let named = |caller: Caller| {
            if let Some(slot) = &slot {
                let _ = slot.0.set(caller.0.name.clone());
            }
            caller
        };
        if parts.extensions.get::<LocalPeer>().is_some() {
            return Ok(named(Caller::local_peer()));
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing Authorization header",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                // The scheme is case-insensitive (RFC 9110).
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
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
        info.map(|info| named(Caller(info, false))).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unknown, revoked or expired token",
            )
        })
    }
}
