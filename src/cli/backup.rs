//! `shroud backup FILE` and `shroud restore FILE [--force]`: a consistent
//! copy of the store that never holds the master key, and putting one back
//! (see `store::backup`).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, Context, EXIT_OK};
use crate::store::backup::{self, Contents};
use crate::store::home::KEY_FILE;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The file to write (it must not exist).
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A file written by `shroud backup`.
    file: PathBuf,
    /// Replace what the home holds.
    #[arg(long)]
    force: bool,
}

fn report(
    ctx: &Context,
    verb: &str,
    file: &std::path::Path,
    contents: &Contents,
) -> Result<(), CliError> {
    if ctx.out.is_json() {
        ctx.out.json(&serde_json::json!({
            verb: file.display().to_string(),
            "vaults": contents.vaults,
            "secrets": contents.secrets,
            "vars": contents.vars,
            "tokens": contents.tokens,
            "sandboxes": contents.sandboxes,
        }))?;
    }
    Ok(())
}

pub fn run_backup(ctx: &Context, args: BackupArgs) -> Result<u8, CliError> {
    let contents = backup::backup(&ctx.store_config(), &args.file)?;
    report(ctx, "backup", &args.file, &contents)?;
    ctx.out.note(&format!(
        "backed up {} to {}; the master key is not in it: keep {} (or your $SHROUD_MASTER_KEY) apart from the backup, since one is useless without the other",
        contents.describe(),
        args.file.display(),
        ctx.home.join(KEY_FILE).display()
    ));
    Ok(EXIT_OK)
}

pub fn run_restore(ctx: &Context, args: RestoreArgs) -> Result<u8, CliError> {
    let contents = backup::restore(&ctx.store_config(), &args.file, args.force)?;
    report(ctx, "restored", &args.file, &contents)?;
    ctx.out.note(&format!(
        "restored {} into {}",
        contents.describe(),
        ctx.home.display()
    ));
    Ok(EXIT_OK)
}
