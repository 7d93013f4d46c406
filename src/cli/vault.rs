//! `shroud vault ...`: bulk `set-secrets` and `list`.
//!
//! `set-secrets` is deliberately not atomic: every item is validated on its
//! own, the valid ones are stored in one transaction, and each failure is
//! reported by name (never by value), with exit 1 if any failed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use clap::Subcommand;

use super::{CliError, Context, VaultArg, EXIT_FAILURE, EXIT_OK};
use crate::clock::rfc3339;
use crate::secret::SecretValue;
use crate::store::names::MIN_MASKABLE_BYTES;
use crate::store::{NewSecret, OpenMode, SecretName, VaultName};

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Set several secrets at once from NAME=VALUE arguments. Not atomic: each failure is
    /// reported by name, the others are set; exit 1 if any failed.
    SetSecrets {
        #[command(flatten)]
        vault: VaultArg,
        /// NAME=VALUE pairs.
        #[arg(value_name = "NAME=VALUE", required = true)]
        pairs: Vec<OsString>,
    },
    /// Vaults that hold (or held) secrets or vars.
    List,
}

/// One failed item of a bulk request.
#[derive(Debug, serde::Serialize)]
pub(super) struct ItemError {
    pub name: String,
    pub error: String,
}

pub fn run(ctx: &Context, command: VaultCommand) -> Result<u8, CliError> {
    match command {
        VaultCommand::SetSecrets { vault, pairs } => set_secrets(ctx, vault, pairs),
        VaultCommand::List => {
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let vaults = store.list_vaults()?;
            if ctx.out.is_json() {
                let items: Vec<_> = vaults
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "name": v.name,
                            "secrets": v.secrets,
                            "vars": v.vars,
                            "created_at": rfc3339(v.created_at),
                        })
                    })
                    .collect();
                ctx.out.json(&serde_json::json!({ "vaults": items }))?;
            } else {
                ctx.out.lines(vaults.iter().map(|v| &v.name))?;
            }
            Ok(EXIT_OK)
        }
    }
}

fn set_secrets(ctx: &Context, vault: VaultArg, pairs: Vec<OsString>) -> Result<u8, CliError> {
    let vault = vault.parse()?;
    if !pairs.is_empty() {
        ctx.out.warn(super::ARGV_WARNING);
    }
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for (index, pair) in pairs.into_iter().enumerate() {
        let bytes = pair.into_vec();
        let Some(eq) = bytes.iter().position(|&b| b == b'=') else {
            // Without '=' we cannot tell a name from a value: show neither.
            errors.push(ItemError {
                name: format!("#{}", index + 1),
                error: format!("argument {} is not NAME=VALUE", index + 1),
            });
            continue;
        };
        let name_text = String::from_utf8_lossy(&bytes[..eq]).into_owned();
        let value = SecretValue::from_slice(&bytes[eq + 1..]);
        let checked =
            SecretName::parse(&name_text).and_then(|name| NewSecret::new(name, value, None, None));
        drop(zeroize::Zeroizing::new(bytes));
        match checked {
            Ok(secret) => valid.push(secret),
            Err(e) => errors.push(ItemError {
                name: name_text,
                error: e.to_string(),
            }),
        }
    }
    store_and_report(ctx, &vault, valid, errors)
}

/// Stores the valid items of a bulk request in one transaction and reports
/// each failure by name (never by value): a note per failure, then the
/// count, or with `--json` `{"vault", "set_secrets", "versions", "errors"}`.
/// Exit 1 if any failed.
pub(super) fn store_and_report(
    ctx: &Context,
    vault: &VaultName,
    valid: Vec<NewSecret>,
    errors: Vec<ItemError>,
) -> Result<u8, CliError> {
    let short: Vec<String> = valid
        .iter()
        .filter(|s| s.value.len() < MIN_MASKABLE_BYTES)
        .map(|s| s.name.to_string())
        .collect();
    let outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        let mut store = ctx.open_store(OpenMode::Create)?;
        store.set_secrets(vault, valid)?
    };
    for name in &short {
        ctx.out.warn(&format!(
            "secret `{name}` is shorter than {MIN_MASKABLE_BYTES} bytes: it is stored, but it will not be masked in output"
        ));
    }
    // (With --json they are in the report's `errors`.)
    if !ctx.out.is_json() {
        for failure in &errors {
            ctx.out.note(&format!("error: {}", failure.error));
        }
    }
    if ctx.out.is_json() {
        let names: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
        let versions: BTreeMap<&str, u64> = outcomes
            .iter()
            .map(|o| (o.name.as_str(), o.version))
            .collect();
        ctx.out.json(&serde_json::json!({
            "vault": vault.as_str(),
            "set_secrets": names,
            "versions": versions,
            "errors": errors,
        }))?;
    } else if !outcomes.is_empty() {
        ctx.out.note(&format!(
            "set {} secret(s) in vault `{vault}`",
            outcomes.len()
        ));
    }
    Ok(if errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}
