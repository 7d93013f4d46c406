//! API tokens: bearer credentials for `shroud serve`, with grants per vault.
//!
//! A token is `shr_` followed by 256 random bits (base64url). It is shown once,
//! when created, and stored only as its SHA-256; authentication hashes the
//! presented token, finds the row by that hash and compares the hashes again
//! in constant time. Each token carries grants (`vault:read` or
//! `vault:write`; write implies read) and optionally a user, whose
//! `user`-scoped secrets it may use. Revoked tokens stay listed.

use std::fmt;

use serde::Serialize;

use super::names::{ValidationError, VaultName};

/// Prefix of every token, so that a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "shr_";

/// What a grant allows in its vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

/// One vault a token may use, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub vault: String,
    pub access: Access,
}

impl Grant {
    /// Parses `VAULT:read` or `VAULT:write`.
    pub fn parse(text: &str) -> Result<Self, GrantError> {
        let (vault, access) = text
            .rsplit_once(':')
            .ok_or_else(|| GrantError::Syntax(text.to_owned()))?;
        let vault = VaultName::parse(vault).map_err(GrantError::Vault)?;
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            _ => return Err(GrantError::Syntax(text.to_owned())),
        };
        Ok(Grant {
            vault: vault.as_str().to_owned(),
            access,
        })
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = match self.access {
            Access::Read => "read",
            Access::Write => "write",
        };
        write!(f, "{}:{access}", self.vault)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("invalid grant {0:?}: expected VAULT:read or VAULT:write")]
    Syntax(String),
    #[error(transparent)]
    Vault(ValidationError),
}

/// A token just made: its text (shown this once) and when it expires.
pub struct CreatedToken {
    pub token: zeroize::Zeroizing<String>,
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("token", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A token as the store knows it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub grants: Vec<Grant>,
    pub user: Option<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

impl TokenInfo {
    /// True when the token may use `vault` with `access`.
    pub fn allows(&self, vault: &str, access: Access) -> bool {
        self.revoked_at_ms.is_none()
            && self
                .grants
                .iter()
                .any(|g| g.vault == vault && g.access >= access)
    }
}

/// Encodes grants for the `tokens.grants` column.
pub(crate) fn encode_grants(grants: &[Grant]) -> String {
    grants
        .iter()
        .map(Grant::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Decodes the `tokens.grants` column.
pub(crate) fn decode_grants(text: &str) -> Vec<Grant> {
    text.split(',')
        .filter(|g| !g.is_empty())
        .filter_map(|g| Grant::parse(g).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_and_write_implies_read() {
        let grant = Grant::parse("ci:write").unwrap();
        assert_eq!(grant.to_string(), "ci:write");
        let info = TokenInfo {
            name: "t".into(),
            grants: vec![grant, Grant::parse("prod:read").unwrap()],
            user: None,
            created_at_ms: 0,
            revoked_at_ms: None,
            expires_at_ms: None,
        };
        assert!(info.allows("ci", Access::Read) && info.allows("ci", Access::Write));
        assert!(info.allows("prod", Access::Read) && !info.allows("prod", Access::Write));
        assert!(!info.allows("other", Access::Read));
        for bad in ["ci", "ci:admin", "Bad:read", ":read"] {
            assert!(Grant::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(decode_grants(&encode_grants(&info.grants)), info.grants);
    }
}
