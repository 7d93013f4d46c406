//! `shroud run FILE.yml [--vault V] [--jobs N] [--mask label|stars]`: CI
//! tasks (SPEC §7; see `tasks`). This front door only resolves its flags;
//! the file is read, checked and run by `tasks::scheduler`, which prints
//! its own refusals and answers the exit code (0, 1, 2, 130).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, Context};
use crate::mask::MaskStyle;
use crate::store::{OpenMode, Store};
use crate::supervisor::plan::CallerEnv;
use crate::tasks::scheduler::{self, RunOptions};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task file (YAML).
    file: PathBuf,
    #[command(flatten)]
    vault: super::VaultArg,
    /// Tasks run at once at most (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
    /// Replacement: `label` writes <secret:name>, `stars` writes ********.
    #[arg(long, value_name = "label|stars", default_value = "label")]
    mask: MaskStyle,
}

pub fn run(ctx: &Context, args: RunArgs) -> Result<u8, CliError> {
    let vault = args.vault.parse()?;
    let jobs = match args.jobs {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let options = RunOptions {
        file: args.file,
        vault,
        jobs,
        mask: args.mask,
        json: ctx.out.is_json(),
        home: ctx.home.clone(),
        binary: ctx.binary(),
        caller_env: CallerEnv::of_this_process(),
    };
    let open = |mode: OpenMode| Store::open(ctx.store_config(), mode);
    Ok(scheduler::run(options, &open))
}
