//! `shroud key rotate`: a new master key, every data key re-wrapped at once.
//!
//! With a key file, the new key replaces `master.key` and the old one is kept
//! as `master.key.old-<timestamp>`. With `$SHROUD_MASTER_KEY` shroud cannot
//! change the caller's environment, so it prints the new key on stdout (the
//! handle of what it created) and also leaves it in a 0600 file in the home.

use clap::Subcommand;

use super::{CliError, Context, EXIT_OK};
use crate::store::{Handoff, OpenMode};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a new master key and re-wrap every data key with it in one transaction.
    Rotate {
        /// Leave no handoff for other nodes of a PostgreSQL store (the new
        /// key sealed under the old one for 15 minutes): use it when the
        /// old key leaked, and give the other nodes the new key yourself.
        #[arg(long)]
        no_handoff: bool,
    },
}

pub fn run(ctx: &Context, command: KeyCommand) -> Result<u8, CliError> {
    match command {
        KeyCommand::Rotate { no_handoff } => {
            let mut store = ctx.open_store(OpenMode::Existing)?;
            let handoff = if no_handoff {
                Handoff::Withhold
            } else {
                Handoff::Offer
            };
            let rotation = store.rotate_master_key(handoff)?;
            let path_text =
                |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
            if ctx.out.is_json() {
                let mut object = serde_json::json!({
                    "rewrapped": rotation.rewrapped,
                    "old_key_file": path_text(&rotation.old_key_file),
                    "new_key_file": path_text(&rotation.new_key_file),
                });
                if let Some(text) = &rotation.new_key_text {
                    object["new_key"] = text.as_str().into();
                }
                ctx.out.json(&object)?;
            } else if let Some(text) = &rotation.new_key_text {
                ctx.out.line(text)?;
            }
            ctx.out.note(&format!(
                "re-wrapped {} data key(s) under a new master key",
                rotation.rewrapped
            ));
            if let Some(broken) = &rotation.audit_broken {
                ctx.out.warn(&format!(
                    "the audit log was already broken before this rotation re-keyed it: {} (kept in this rotation's own `key.rotate` record, outcome `error`)",
                    broken.reason
                ));
            }
            if let Some(old) = &rotation.old_key_file {
                ctx.out.note(&format!(
                    "the old key is kept at {}: delete it once no backup needs it",
                    old.display()
                ));
            }
            if let Some(file) = &rotation.new_key_file {
                ctx.out.note(&format!(
                    "set SHROUD_MASTER_KEY to the new key (printed on stdout; also in {}, delete that file once the key is stored)",
                    file.display()
                ));
            }
            Ok(EXIT_OK)
        }
    }
}
