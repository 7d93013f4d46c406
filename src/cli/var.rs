//! `shroud var ...`: non-secret name/value pairs of a vault (never masked).

use clap::Subcommand;

use super::{CliError, Context, VaultArg, EXIT_OK};
use crate::clock::rfc3339;
use crate::store::{OpenMode, SecretName};

#[derive(Debug, Subcommand)]
pub enum VarCommand {
    /// Set a var.
    Set {
        /// Var name.
        name: String,
        /// Var value (not secret: stored and shown in plain text).
        value: String,
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Print a var's value.
    Get {
        /// Var name.
        name: String,
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Vars of the vault as NAME=VALUE lines, sorted.
    List {
        #[command(flatten)]
        vault: VaultArg,
    },
    /// Delete a var.
    Delete {
        /// Var name.
        name: String,
        #[command(flatten)]
        vault: VaultArg,
    },
}

pub fn run(ctx: &Context, command: VarCommand) -> Result<u8, CliError> {
    match command {
        VarCommand::Set { name, value, vault } => {
            let vault = vault.parse()?;
            let name = SecretName::parse_var(&name)?;
            crate::store::names::check_var_value(&name, &value)?;
            let mut store = ctx.open_store(OpenMode::Create)?;
            store.set_var(&vault, &name, &value)?;
            if ctx.out.is_json() {
                ctx.out.json(&serde_json::json!({
                    "vault": vault.as_str(), "name": name.as_str(), "value": value,
                }))?;
            }
            Ok(EXIT_OK)
        }
        VarCommand::Get { name, vault } => {
            let vault = vault.parse()?;
            let name = SecretName::parse_var(&name)?;
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let var = store.get_var(&vault, &name)?;
            if ctx.out.is_json() {
                ctx.out.json(&serde_json::json!({
                    "vault": vault.as_str(),
                    "name": var.name,
                    "value": var.value,
                    "updated_at": rfc3339(var.updated_at_ms),
                }))?;
            } else {
                ctx.out.line(&var.value)?;
            }
            Ok(EXIT_OK)
        }
        VarCommand::List { vault } => {
            let vault = vault.parse()?;
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let vars = store.list_vars(&vault)?;
            if ctx.out.is_json() {
                let items: Vec<_> = vars
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "name": v.name, "value": v.value, "updated_at": rfc3339(v.updated_at_ms),
                        })
                    })
                    .collect();
                ctx.out
                    .json(&serde_json::json!({ "vault": vault.as_str(), "vars": items }))?;
            } else {
                ctx.out
                    .lines(vars.iter().map(|v| format!("{}={}", v.name, v.value)))?;
            }
            Ok(EXIT_OK)
        }
        VarCommand::Delete { name, vault } => {
            let vault = vault.parse()?;
            let name = SecretName::parse_var(&name)?;
            let mut store = ctx.open_store(OpenMode::Existing)?;
            store.delete_var(&vault, &name)?;
            if ctx.out.is_json() {
                ctx.out.json(&serde_json::json!({
                    "vault": vault.as_str(), "name": name.as_str(), "deleted": true,
                }))?;
            }
            Ok(EXIT_OK)
        }
    }
}
