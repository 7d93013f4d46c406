//! `shroud audit [--secret N] [--vault V] [--limit N]` and `shroud audit verify`.
//!
//! Listing prints records oldest first (with `--limit`, the newest N), one per
//! line: time, actor, action, vault, secret, version, outcome. `verify` walks
//! the hash chain and names the first record that breaks it (exit 1).

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{CliError, Context, EXIT_FAILURE, EXIT_OK};
use crate::clock::rfc3339;
use crate::store::audit::{Filter, Record};
use crate::store::{OpenMode, SecretName, VaultName};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Only records about this secret.
    #[arg(long, value_name = "NAME")]
    secret: Option<String>,
    /// Only records in this vault.
    #[arg(long, visible_alias = "scope", value_name = "VAULT")]
    vault: Option<String>,
    /// Only the newest N records.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain; names the first changed or removed record.
    Verify,
}

/// An audit record as JSON.
#[derive(Debug, Serialize)]
pub struct RecordJson<'a> {
    pub seq: u64,
    pub ts: String,
    pub actor: &'a str,
    pub action: &'a str,
    pub vault: Option<&'a str>,
    pub secret: Option<&'a str>,
    pub version: Option<u64>,
    pub outcome: &'a str,
}

impl<'a> From<&'a Record> for RecordJson<'a> {
    fn from(r: &'a Record) -> Self {
        RecordJson {
            seq: r.seq,
            ts: rfc3339(r.ts_ms),
            actor: &r.actor,
            action: &r.action,
            vault: r.vault.as_deref(),
            secret: r.secret.as_deref(),
            version: r.version,
            outcome: &r.outcome,
        }
    }
}

pub fn run(ctx: &Context, args: AuditArgs) -> Result<u8, CliError> {
    let mut store = ctx.open_store(OpenMode::Existing)?;
    if let Some(AuditCommand::Verify) = args.command {
        let report = store.verify_audit()?;
        if ctx.out.is_json() {
            ctx.out.json(&serde_json::json!({
                "ok": report.first_broken.is_none(),
                "records": report.records,
                "first_broken": report.first_broken,
            }))?;
        }
        return Ok(match report.first_broken {
            None => {
                if !ctx.out.is_json() {
                    ctx.out
                        .line(&format!("ok: {} audit records verified", report.records))?;
                }
                EXIT_OK
            }
            Some(broken) => {
                ctx.out.error(
                    &format!(
                        "audit chain broken at record {}: {}",
                        broken.seq, broken.reason
                    ),
                    EXIT_FAILURE,
                );
                EXIT_FAILURE
            }
        });
    }
    let filter = Filter {
        vault: args
            .vault
            .as_deref()
            .map(VaultName::parse)
            .transpose()?
            .map(|v| v.as_str().to_owned()),
        secret: args
            .secret
            .as_deref()
            .map(SecretName::parse)
            .transpose()?
            .map(|s| s.as_str().to_owned()),
        limit: args.limit,
    };
    let records = store.audit_records(&filter)?;
    if ctx.out.is_json() {
        let mut lines = Vec::with_capacity(records.len());
        for record in &records {
            lines.push(
                serde_json::to_string(&RecordJson::from(record)).map_err(|e| CliError::Io {
                    context: "encode JSON",
                    source: std::io::Error::other(e),
                })?,
            );
        }
        ctx.out.lines(lines)?;
    } else {
        ctx.out.lines(records.iter().map(|r| {
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                rfc3339(r.ts_ms),
                r.actor,
                r.action,
                r.vault.as_deref().unwrap_or("-"),
                r.secret.as_deref().unwrap_or("-"),
                r.version.map_or("-".to_owned(), |v| format!("v{v}")),
                r.outcome
            )
        }))?;
    }
    Ok(EXIT_OK)
}
