//! JSON views shared by the CLI's `--json`, the HTTP API and the
//! supervisor's socket, so that one thing has one shape wherever it is
//! printed. Views borrow from the store's types and never hold a value.

use serde::Serialize;
use zeroize::Zeroizing;

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

/// A secret's value given as any JSON value (`POST /api/secrets/set`,
/// `secret import --format json`): a string as it is, `null` as no value,
/// anything else as its compact JSON text, exactly as sent (key order,
/// duplicate keys and every digit of a number kept). `None` for a string
/// that does not decode.
pub fn value_from_json(raw: &serde_json::value::RawValue) -> Option<Zeroizing<Vec<u8>>> {
    let text = raw.get();
    if text == "null" {
        return Some(Zeroizing::new(Vec::new()));
    }
    if text.starts_with('"') {
        let decoded = serde_json::from_str::<String>(text).ok()?;
        return Some(Zeroizing::new(decoded.into_bytes()));
    }
    Some(Zeroizing::new(compact_json(text).into_bytes()))
}

/// `text` (valid JSON) without the whitespace between its tokens; strings
/// and numbers are kept byte for byte.
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if !c.is_ascii_whitespace() {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}
