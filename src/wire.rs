//! JSON views shared by the CLI's `--json`, the HTTP API and the
//! supervisor's socket, so that one thing has one shape wherever it is
//! printed. Views borrow from the store's types and never hold a value.

use serde::Serialize;

use crate::clock::rfc3339;
use crate::store::SecretMeta;

/// A secret's metadata: `secret list --json`, `GET /api/vaults/{vault}/secrets`
/// and `GET /api/vaults/{vault}/secrets/{name}`.
#[derive(Debug, Serialize)]
pub struct SecretMetaJson<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub purpose: &'a str,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: Option<String>,
}

impl<'a> From<&'a SecretMeta> for SecretMetaJson<'a> {
    fn from(meta: &'a SecretMeta) -> Self {
        SecretMetaJson {
            name: &meta.name,
            description: meta.description.as_deref(),
            purpose: &meta.purpose,
            version: meta.version,
            created_at: rfc3339(meta.created_at_ms),
            updated_at: rfc3339(meta.updated_at_ms),
            expires_at: meta.expires_at_ms.map(rfc3339),
        }
    }
}
