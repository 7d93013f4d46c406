//! `shroud token create|list|revoke`: bearer tokens for `shroud serve`.
//!
//! `create` prints only the token (shown this once; the store keeps its
//! hash), so that `TOKEN=$(shroud token create ci --grant ci:write)` works.

use clap::Subcommand;

use super::{CliError, Context, EXIT_OK};
use crate::clock::rfc3339;
use crate::store::tokens::Grant;
use crate::store::OpenMode;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; prints it (it is not shown again).
    Create {
        /// A name for the token (shown in the audit log as the actor).
        name: String,
        /// A vault the token may use: VAULT:read or VAULT:write. Repeatable.
        #[arg(long = "grant", value_name = "VAULT:read|write")]
        grants: Vec<String>,
        /// The user whose `user`-scoped secrets the token may use.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
        /// Seconds after which the token no longer authenticates (401).
        #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
        ttl: Option<String>,
    },
    /// Tokens with their grants (never the tokens themselves).
    List,
    /// Revoke a token: it no longer authenticates.
    Revoke {
        /// The token's name.
        name: String,
    },
}

pub fn run(ctx: &Context, command: TokenCommand) -> Result<u8, CliError> {
    match command {
        TokenCommand::Create {
            name,
            grants,
            user,
            ttl,
        } => {
            let grants = grants
                .iter()
                .map(|g| Grant::parse(g).map_err(|e| CliError::Usage(e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            let ttl = ttl
                .as_deref()
                .map(crate::store::names::parse_ttl)
                .transpose()?;
            let mut store = ctx.open_store(OpenMode::Create)?;
            let created = store.create_token(&name, &grants, user.as_deref(), ttl)?;
            if ctx.out.is_json() {
                let grants: Vec<String> = grants.iter().map(Grant::to_string).collect();
                ctx.out.json(&serde_json::json!({
                    "name": name, "token": created.token.as_str(), "grants": grants, "user": user,
                    "expires_at": created.expires_at_ms.map(rfc3339),
                }))?;
            } else {
                ctx.out.line(&created.token)?;
            }
            if grants.is_empty() {
                ctx.out.warn(&format!(
                    "token `{name}` has no grants: it can use no vault"
                ));
            }
            Ok(EXIT_OK)
        }
        TokenCommand::List => {
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let tokens = store.list_tokens()?;
            if ctx.out.is_json() {
                let items: Vec<_> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "name": t.name,
                            "grants": t.grants.iter().map(Grant::to_string).collect::<Vec<_>>(),
                            "user": t.user,
                            "created_at": rfc3339(t.created_at_ms),
                            "revoked_at": t.revoked_at_ms.map(rfc3339),
                            "expires_at": t.expires_at_ms.map(rfc3339),
                            "state": match (t.revoked_at_ms, t.expires_at_ms) {
                                (Some(_), _) => "revoked",
                                (None, Some(at)) if at <= crate::clock::now_ms() => "expired",
                                _ => "active",
                            },
                        })
                    })
                    .collect();
                ctx.out.json(&serde_json::json!({ "tokens": items }))?;
            } else {
                ctx.out.lines(tokens.iter().map(|t| {
                    let grants: Vec<String> = t.grants.iter().map(Grant::to_string).collect();
                    let now = crate::clock::now_ms();
                    let state = match (t.revoked_at_ms, t.expires_at_ms) {
                        (Some(at), _) => format!("revoked {}", rfc3339(at)),
                        (None, Some(at)) if at <= now => format!("expired {}", rfc3339(at)),
                        (None, Some(at)) => format!("active until {}", rfc3339(at)),
                        (None, None) => "active".to_owned(),
                    };
                    format!(
                        "{}\t{}\t{}\t{}\t{state}",
                        t.name,
                        if grants.is_empty() {
                            "-".to_owned()
                        } else {
                            grants.join(",")
                        },
                        t.user.as_deref().unwrap_or("-"),
                        rfc3339(t.created_at_ms)
                    )
                }))?;
            }
            Ok(EXIT_OK)
        }
        TokenCommand::Revoke { name } => {
            let mut store = ctx.open_store(OpenMode::Existing)?;
            store.revoke_token(&name)?;
            if ctx.out.is_json() {
                ctx.out
                    .json(&serde_json::json!({ "name": name, "revoked": true }))?;
            } else {
                ctx.out.note(&format!("revoked token `{name}`"));
            }
            Ok(EXIT_OK)
        }
    }
}
