//! `shroud secret ...`: set, list, exists, delete, get, reveal, history
//! (import and export are in `secret_files`).
//!
//! Names are validated before anything is read or opened; a value comes from
//! argv or stdin (bounded read, one trailing newline dropped; hidden prompt
//! when stdin is a terminal) straight into a zeroizing `SecretValue`.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;

use clap::Subcommand;
use serde::Serialize;

use super::{CliError, Context, VaultArg, EXIT_FAILURE, EXIT_OK};
use crate::clock::rfc3339;
use crate::secret::SecretValue;
use crate::store::names::{self, MAX_VALUE_BYTES, MIN_MASKABLE_BYTES};
use crate::store::{NewSecret, OpenMode, SecretName, DEFAULT_REFERENCE_TTL_SECS};
use crate::sys::term as sys;
use crate::wire::SecretMetaJson;

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a new version of a secret. Without VALUE (or with "-") the value is read from
    /// stdin and one trailing newline is dropped.
    Set {
        /// Secret name.
        name: String,
        /// The value; omit it or pass "-" to read stdin (keeps it out of the process list).
        value: Option<OsString>,
        #[command(flatten)]
        vault: VaultArg,
        /// What the secret is for (at most 1 KiB); kept by a new version
        /// without it, cleared by an empty one.
        #[arg(long, value_name = "TEXT")]
        description: Option<String>,
        /// Seconds after which the secret reads as not found.
        #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
        ttl: Option<String>,
        /// What kind of secret it is (shown in listings); kept when not given.
        #[arg(long, value_name = "APIKey|SSHKey|UsernamePassword|Other", value_parser = parse_purpose)]
        purpose: Option<names::Purpose>,
    },
    /// Names of the vault's secrets, sorted, one per line.
    List {
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Print true (exit 0) or false (exit 1).
    Exists {
        /// Secret name.
        name: String,
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Delete a secret and all its versions.
    Delete {
        /// Secret name.
        name: String,
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Print an opaque `$secret:` reference to the secret (not its value).
    Get {
        /// Secret name.
        name: String,
        #[command(flatten)]
        vault: VaultArg,
        /// Seconds the reference stays valid (default 300).
        #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
        ttl: Option<String>,
    },
    /// Print the secret's value (audited).
    Reveal {
        /// Secret name.
        name: String,
        #[command(flatten)]
        vault: VaultArg,
        /// A kept earlier version instead of the current one.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// Kept versions and when they were set; never values.
    History {
        /// Secret name.
        name: String,
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Set every NAME=VALUE of a dotenv file (or a JSON object). Not atomic: each failure is
    /// reported by name, the others are set; exit 1 if any failed.
    Import(super::secret_files::ImportArgs),
    /// Print every secret of the vault as dotenv, JSON or shell lines (each audited as a
    /// reveal); refuses a terminal without --force.
    Export(super::secret_files::ExportArgs),
}

/// `secret reveal --json`: the value as text, or base64 when it is not UTF-8.
#[derive(Serialize)]
struct RevealJson<'a> {
    vault: &'a str,
    name: &'a str,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<&'a str>,
}

fn parse_purpose(text: &str) -> Result<names::Purpose, String> {
    names::Purpose::parse(text).map_err(|e| e.to_string())
}

pub fn run(ctx: &Context, command: SecretCommand) -> Result<u8, CliError> {
    match command {
        SecretCommand::Import(args) => super::secret_files::import(ctx, args),
        SecretCommand::Export(args) => super::secret_files::export(ctx, args),
        SecretCommand::Set {
            name,
            value,
            vault,
            description,
            ttl,
            purpose,
        } => {
            let vault = vault.parse()?;
            let name = SecretName::parse(&name)?;
            let ttl = ttl.as_deref().map(names::parse_ttl).transpose()?;
            if let Some(text) = &description {
                names::check_description(&name, text)?;
            }
            let mut warnings = Vec::new();
            let value = match value {
                Some(v) if v != "-" => {
                    warnings.push(super::ARGV_WARNING.to_owned());
                    SecretValue::new(v.into_vec())
                }
                _ => read_value_from_stdin(ctx, &name)?,
            };
            let secret = NewSecret::new(name, value, description, ttl)?.with_purpose(purpose);
            let short = secret.value.len() < MIN_MASKABLE_BYTES;
            let name = secret.name.clone();
            let mut store = ctx.open_store(OpenMode::Create)?;
            let outcome = store.set_secret(&vault, secret)?;
            if short {
                warnings.push(format!(
                    "secret `{name}` is shorter than {MIN_MASKABLE_BYTES} bytes: it is stored, but it will not be masked in output"
                ));
            }
            for warning in &warnings {
                ctx.out.warn(warning);
            }
            if ctx.out.is_json() {
                ctx.out.json(&serde_json::json!({
                    "vault": vault.as_str(),
                    "name": name.as_str(),
                    "version": outcome.version,
                    "created": outcome.created,
                    "warnings": warnings,
                }))?;
            } else {
                ctx.out.note(&format!(
                    "set secret `{name}` in vault `{vault}` (version {})",
                    outcome.version
                ));
            }
            Ok(EXIT_OK)
        }
        SecretCommand::List { vault } => {
            let vault = vault.parse()?;
            let mut store = ctx.open_store(OpenMode::Existing)?;
            if ctx.out.is_json() {
                let secrets = store.list_secrets(&vault)?;
                let items: Vec<SecretMetaJson> = secrets.iter().map(SecretMetaJson::from).collect();
                ctx.out
                    .json(&serde_json::json!({ "vault": vault.as_str(), "secrets": items }))?;
            } else {
                let names = store.list_secret_names(&vault)?;
                if names.is_empty() {
                    // An empty default vault beside full ones is usually a
                    // forgotten --vault.
                    let others: Vec<String> = store
                        .list_vaults()?
                        .into_iter()
                        .filter(|v| v.secrets > 0 && v.name != vault.as_str())
                        .map(|v| format!("{} ({})", v.name, v.secrets))
                        .collect();
                    if !others.is_empty() {
                        ctx.out.note(&format!(
                            "vault `{vault}` holds no secrets; other vaults do: {} (use --vault NAME)",
                            others.join(", ")
                        ));
                    }
                }
                ctx.out.lines(names)?;
            }
            Ok(EXIT_OK)
        }
        SecretCommand::Exists { name, vault } => {
            let vault = vault.parse()?;
            let name = SecretName::parse(&name)?;
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let exists = store.secret_meta(&vault, &name)?.is_some();
            if ctx.out.is_json() {
                ctx.out.json(&serde_json::json!({
                    "vault": vault.as_str(), "name": name.as_str(), "exists": exists,
                }))?;
            } else {
                ctx.out.line(if exists { "true" } else { "false" })?;
            }
            Ok(if exists { EXIT_OK } else { EXIT_FAILURE })
        }
        SecretCommand::Delete { name, vault } => {
            let vault = vault.parse()?;
            let name = SecretName::parse(&name)?;
            let mut store = ctx.open_store(OpenMode::Existing)?;
            store.delete_secret(&vault, &name)?;
            if ctx.out.is_json() {
                ctx.out.json(&serde_json::json!({
                    "vault": vault.as_str(), "name": name.as_str(), "deleted": true,
                }))?;
            } else {
                ctx.out
                    .note(&format!("deleted secret `{name}` from vault `{vault}`"));
            }
            Ok(EXIT_OK)
        }
        SecretCommand::Get { name, vault, ttl } => {
            let vault = vault.parse()?;
            let name = SecretName::parse(&name)?;
            let ttl = match ttl.as_deref() {
                Some(text) => names::parse_ttl(text)?,
                None => DEFAULT_REFERENCE_TTL_SECS,
            };
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let reference = store.create_reference(&vault, &name, ttl)?;
            if ctx.out.is_json() {
                ctx.out.json(&serde_json::json!({
                    "vault": vault.as_str(),
                    "name": name.as_str(),
                    "ref": reference.reference.as_str(),
                    "expires_at": rfc3339(reference.expires_at_ms),
                }))?;
            } else {
                ctx.out.line(&reference.reference)?;
            }
            Ok(EXIT_OK)
        }
        SecretCommand::Reveal {
            name,
            vault,
            version,
        } => {
            let vault = vault.parse()?;
            let name = SecretName::parse(&name)?;
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let revealed = store.reveal_secret(&vault, &name, version)?;
            if ctx.out.is_json() {
                let value = revealed.value.expose();
                let encoded;
                let (text, base64) = match std::str::from_utf8(value) {
                    Ok(text) => (Some(text), None),
                    Err(_) => {
                        use base64::Engine as _;
                        encoded = zeroize::Zeroizing::new(
                            base64::engine::general_purpose::STANDARD.encode(value),
                        );
                        (None, Some(encoded.as_str()))
                    }
                };
                let body = RevealJson {
                    vault: vault.as_str(),
                    name: name.as_str(),
                    version: revealed.version,
                    value: text,
                    value_base64: base64,
                };
                // Sized up front so serialization never reallocates and leaves
                // an unzeroized copy of the value behind.
                let mut line = zeroize::Zeroizing::new(Vec::with_capacity(value.len() * 6 + 512));
                serde_json::to_writer(&mut *line, &body).map_err(|e| CliError::Io {
                    context: "encode JSON",
                    source: std::io::Error::other(e),
                })?;
                line.push(b'\n');
                ctx.out.bytes(&line)?;
            } else {
                let mut text =
                    zeroize::Zeroizing::new(Vec::with_capacity(revealed.value.len() + 1));
                text.extend_from_slice(revealed.value.expose());
                text.push(b'\n');
                ctx.out.bytes(&text)?;
            }
            Ok(EXIT_OK)
        }
        SecretCommand::History { name, vault } => {
            let vault = vault.parse()?;
            let name = SecretName::parse(&name)?;
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let versions = store.history(&vault, &name)?;
            if ctx.out.is_json() {
                let items: Vec<_> = versions
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "version": v.version,
                            "created_at": rfc3339(v.created_at_ms),
                            "current": v.current,
                        })
                    })
                    .collect();
                ctx.out.json(&serde_json::json!({
                    "vault": vault.as_str(), "name": name.as_str(), "versions": items,
                }))?;
            } else {
                ctx.out.lines(versions.iter().rev().map(|v| {
                    let current = if v.current { "  current" } else { "" };
                    format!("{}\t{}{current}", v.version, rfc3339(v.created_at_ms))
                }))?;
            }
            Ok(EXIT_OK)
        }
    }
}

/// Reads a value from stdin: a hidden prompt on a terminal, else a bounded
/// read of the whole input with one trailing newline dropped.
fn read_value_from_stdin(ctx: &Context, name: &SecretName) -> Result<SecretValue, CliError> {
    let io_error = |source| CliError::Io {
        context: "read the value from standard input",
        source,
    };
    if sys::stdin_is_terminal() {
        ctx.out
            .note(&format!("value for secret `{name}` (input hidden):"));
        let mut line = sys::read_line_without_echo().map_err(io_error)?;
        return Ok(SecretValue::new(std::mem::take(&mut *line)));
    }
    // Read one byte past the limit (plus a newline) so oversize input is
    // detected without reading an unbounded stream into memory.
    let mut bytes = Vec::with_capacity(MAX_VALUE_BYTES + 2);
    std::io::stdin()
        .lock()
        .take(MAX_VALUE_BYTES as u64 + 2)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(SecretValue::new(bytes))
}
