//! `shroud sandbox create|exec|list|rm|cp` (the init they run is `sandbox::run_internal`).
//!
//! The sandbox itself (what it remembers, how an exec is prepared) lives in
//! `supervisor::sandboxes`, shared with the API; this file parses flags,
//! prints, and runs the plan attached to shroud's terminal and signals.

use std::ffi::OsString;

use clap::{Args, Subcommand};

use super::exec::{self, TtyMode};
use super::{CliError, Context, EXIT_OK};
use crate::clock::rfc3339;
use crate::mask::MaskStyle;
use crate::sandbox::apply;
use crate::store::{OpenMode, Store};
use crate::supervisor::output::Destination;
use crate::supervisor::plan::{self, CallerEnv, PlanError, StoreAccess};
use crate::supervisor::sandboxes::{self, CreateRequest, ExecRequest, PreparedExec, SandboxHost};
use crate::supervisor::{self, Control};

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox from a template; prints its id.
    Create(CreateArgs),
    /// Run a command inside a sandbox.
    Exec(SandboxExecArgs),
    /// Sandboxes: id, template, created, last exit.
    List,
    /// Remove a sandbox and its files.
    Rm {
        /// The sandbox id.
        id: String,
    },
    /// Copy a file into or out of a sandbox: one side is ID:PATH (a path
    /// in its working directory), the other a local path or `-` (stdin,
    /// stdout). What comes out is masked with every secret ever granted
    /// to the sandbox.
    Cp {
        /// Where from: ID:PATH, a local file, or `-`.
        source: String,
        /// Where to: ID:PATH, a local file, or `-`.
        destination: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Template: bash, python-3, nodejs-20, or <home>/sandboxes-templates/NAME.toml.
    #[arg(long, value_name = "T")]
    template: String,
    #[command(flatten)]
    vault: super::VaultArg,
    /// A secret every command of the sandbox gets: NAME or ENV=NAME. Repeatable.
    #[arg(long = "secret", value_name = "[ENV=]NAME")]
    secrets: Vec<String>,
    /// K=V in every command's environment. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Fail if the host cannot give everything the template asks for.
    #[arg(long)]
    strict: bool,
    /// Print the isolation report in full, one line per feature (it is
    /// one summary line otherwise; `--json` has it all).
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Debug, Args)]
pub struct SandboxExecArgs {
    /// The sandbox id.
    id: String,
    /// An extra secret for this command: NAME or ENV=NAME. Repeatable.
    #[arg(long = "secret", value_name = "[ENV=]NAME")]
    secrets: Vec<String>,
    /// Inject every secret of the sandbox's vault under its own name (masked).
    #[arg(long)]
    all: bool,
    /// Extra K=V for this command. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Add the variables of a dotenv file (not secrets: not masked); `--env` wins. Repeatable.
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<std::path::PathBuf>,
    /// Stop the command after SECS seconds (default: the template's wall time).
    #[arg(long, value_name = "SECS")]
    timeout: Option<String>,
    /// Replacement: `label` writes <secret:name>, `stars` writes ********.
    #[arg(long, value_name = "label|stars", default_value = "label")]
    mask: MaskStyle,
    /// Give the command a pseudo-terminal.
    #[arg(long, value_enum, default_value = "auto")]
    tty: TtyMode,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<OsString>,
}

pub fn run(ctx: &Context, command: SandboxCommand) -> Result<u8, CliError> {
    match command {
        SandboxCommand::Create(args) => create(ctx, args),
        SandboxCommand::Exec(args) => match prepare_exec(ctx, args) {
            Ok((prepared, mut store)) => {
                let (id, plan) = (prepared.id, prepared.plan);
                let result = supervisor::run(plan);
                if let Ok(report) = &result {
                    let code = i64::from(report.code);
                    // The store opened for the run, or a new connection if
                    // that one was lost while the command ran.
                    if let Err(e) = store.record_sandbox_exit(&id, code) {
                        tracing::debug!(error = %e, "recording the exit again on a new connection");
                        if let Ok(mut store) = ctx.open_store(OpenMode::Existing) {
                            let _ = store.record_sandbox_exit(&id, code);
                        }
                    }
                }
                exec::report_run(ctx, result)
            }
            Err(e) => {
                ctx.out.error(&e.to_string(), exec::EXIT_SHROUD_FAILED);
                Ok(exec::EXIT_SHROUD_FAILED)
            }
        },
        SandboxCommand::List => list(ctx),
        SandboxCommand::Cp {
            source,
            destination,
        } => copy(ctx, &source, &destination),
        SandboxCommand::Rm { id } => {
            let mut store = ctx.open_store(OpenMode::Existing)?;
            host(ctx)?.remove(&mut store, &id)?;
            if ctx.out.is_json() {
                ctx.out
                    .json(&serde_json::json!({ "id": id, "removed": true }))?;
            } else {
                ctx.out.note(&format!("removed sandbox {id}"));
            }
            Ok(EXIT_OK)
        }
    }
}

/// `ID:PATH` (an id is a UUID), split; anything else is a local path.
fn sandbox_side(text: &str) -> Option<(&str, &str)> {
    let (id, path) = text.split_once(':')?;
    uuid::Uuid::parse_str(id).is_ok().then_some((id, path))
}

/// `sandbox cp`: a file into or out of a sandbox's working directory, with
/// the same path rules and masking as the API's files routes.
fn copy(ctx: &Context, source: &str, destination: &str) -> Result<u8, CliError> {
    use crate::supervisor::sandbox_files;
    let (id, inner, local, upload) = match (sandbox_side(source), sandbox_side(destination)) {
        (Some(_), Some(_)) => {
            return Err(CliError::Usage(
                "copy between a sandbox and a local path: only one side is ID:PATH".to_owned(),
            ))
        }
        (None, None) => {
            return Err(CliError::Usage(
                "one side of `sandbox cp` is ID:PATH (a sandbox and a path in it)".to_owned(),
            ))
        }
        (Some((id, path)), None) => (id, path, destination, false),
        (None, Some((id, path))) => (id, path, source, true),
    };
    let path =
        crate::sys::beneath::plain_relative(inner).map_err(|e| CliError::Usage(e.to_string()))?;
    if path.as_os_str().is_empty() {
        return Err(CliError::Usage(format!(
            "{id}:{inner} is the working directory; name a file in it"
        )));
    }
    if ctx.out.is_json() && !upload && local == "-" {
        return Err(CliError::Usage(
            "--json: a file copied to stdout is written as it is; copy it to a file for the JSON report".to_owned(),
        ));
    }
    let mut store = ctx.open_store(OpenMode::Existing)?;
    let (row, config) = host(ctx)?.load(&mut store, id)?;
    SandboxHost::check_node(&row)?;
    let _ = sandbox_files::touch(&config.dir());
    let failed = |e: crate::sys::beneath::BeneathError| CliError::Reported(e.to_string());
    let io = |context| move |source| CliError::Io { context, source };
    let size = if upload {
        if local == "-" {
            sandbox_files::upload(&config, &path, None, std::io::stdin().lock()).map_err(failed)?
        } else {
            let file = std::fs::File::open(local).map_err(io("open the file to copy"))?;
            let len = file.metadata().ok().map(|m| m.len());
            sandbox_files::upload(&config, &path, len, file).map_err(failed)?
        }
    } else {
        let (file, size) = sandbox_files::workdir(&config)
            .and_then(|dir| dir.open_file(&path))
            .map_err(failed)?;
        let mask = sandbox_files::download_mask(&mut store, &row, &config)?;
        if local == "-" {
            sandbox_files::download(file, mask, std::io::stdout().lock())
                .map_err(io("write to stdout"))?;
        } else {
            let out = std::fs::File::create(local).map_err(io("create the copy"))?;
            sandbox_files::download(file, mask, std::io::BufWriter::new(out))
                .map_err(io("write the copy"))?;
        }
        size
    };
    // (Nothing after a download to stdout: it holds the file.)
    if ctx.out.is_json() && (upload || local != "-") {
        ctx.out.json(&serde_json::json!({
            "source": source, "destination": destination, "size": size,
        }))?;
    }
    Ok(EXIT_OK)
}

fn host(ctx: &Context) -> Result<SandboxHost, CliError> {
    Ok(SandboxHost {
        home: ctx.home.clone(),
        binary: std::env::current_exe().map_err(|source| CliError::Io {
            context: "find the shroud binary",
            source,
        })?,
    })
}

fn create(ctx: &Context, args: CreateArgs) -> Result<u8, CliError> {
    let vault = args.vault.parse()?;
    let grants = plan::parse_grants(&args.secrets)?;
    let env = exec::parse_env_pairs(&args.env)?;
    let mut store = ctx.open_store(OpenMode::Create)?;
    let created = host(ctx)?
        .create(
            &mut store,
            CreateRequest {
                template: args.template,
                vault,
                grants,
                env,
                strict: args.strict,
                owner: crate::store::CLI_ACTOR.to_owned(),
                caller_env: CallerEnv::of_this_process(),
            },
        )
        .map_err(|e| match e {
            PlanError::Refused(why) => CliError::Reported(format!("--strict: {why}")),
            other => other.into(),
        })?;
    if ctx.out.is_json() {
        ctx.out.json(&serde_json::json!({
            "id": created.id,
            "template": created.template,
            "workdir": created.workdir,
            "network": created.network,
            "limits": created.limits,
            "isolation": created.features,
        }))?;
    } else {
        ctx.out.line(&created.id)?;
    }
    if args.verbose {
        for feature in &created.features {
            if feature.available {
                ctx.out
                    .note(&format!("  {}: {}", feature.name, feature.detail));
            } else {
                ctx.out
                    .warn(&format!("{}: {}", feature.name, feature.detail));
            }
        }
    } else if !ctx.out.is_json() {
        ctx.out.note(&isolation_summary(&created.features));
    }
    Ok(EXIT_OK)
}

/// The isolation report on one line: how many features the host gives,
/// and by name those it does not (never silently dropped).
fn isolation_summary(features: &[apply::Feature]) -> String {
    let missing: Vec<&str> = features
        .iter()
        .filter(|f| !f.available)
        .map(|f| f.name.as_str())
        .collect();
    let given = features.len() - missing.len();
    if missing.is_empty() {
        format!(
            "isolation: all {} features (the report: -v or --json)",
            features.len()
        )
    } else {
        format!(
            "warning: isolation: {given} of {} features; not available here: {} (why: -v or --json)",
            features.len(),
            missing.join(", ")
        )
    }
}

/// The run, and the store it was prepared with (one connection for the
/// sandbox's row, its secrets and, after the run, its exit).
fn prepare_exec(ctx: &Context, args: SandboxExecArgs) -> Result<(PreparedExec, Store), CliError> {
    let host = host(ctx)?;
    let mut grants = plan::parse_grants(&args.secrets)?;
    let stdio = exec::sandbox_stdio_mode(ctx, args.tty);
    // The init sets the sandbox up while the store opens and is read, on
    // the policy the last exec ran under; run only if it is still the one.
    let guessed_init = host.start_on_cached_policy(&args.id, &args.command, stdio);
    let mut store = ctx.open_store(OpenMode::Existing)?;
    let (row, config) = host.load(&mut store, &args.id)?;
    SandboxHost::check_node(&row)?;
    if args.all {
        let vault = crate::store::VaultName::parse(&row.vault)?;
        grants = plan::grants_with_all(&mut store, &vault, grants)?;
    }
    let timeout = args
        .timeout
        .as_deref()
        .map(exec::parse_timeout)
        .transpose()?;
    let prepared = host.prepare_exec(
        StoreAccess::Open(&mut store),
        row,
        config,
        ExecRequest {
            grants,
            env: exec::env_with_files(&args.env_files, &args.env)?,
            command: args.command,
            cwd: None,
            timeout,
            mask: args.mask,
            stdio,
            input: None,
            output: exec::output_mode(ctx),
            destination: Destination::Stdio,
            control: Control::Process,
            output_cap: None,
            caller_env: CallerEnv::of_this_process(),
            requests: None,
            // This thread runs the plan too.
            start_early: true,
            guessed_init,
        },
    )?;
    exec::warn_unmasked(ctx, &prepared.unmasked);
    Ok((prepared, store))
}

fn list(ctx: &Context) -> Result<u8, CliError> {
    let mut store = ctx.open_store(OpenMode::Existing)?;
    let rows = store.list_sandboxes()?;
    if ctx.out.is_json() {
        ctx.out.json(&sandboxes::listing_json(&rows))?;
    } else {
        ctx.out.lines(rows.iter().map(|r| {
            let last = r.last_exit.map_or("-".to_owned(), |c| c.to_string());
            format!(
                "{}\t{}\t{}\t{}",
                r.id,
                r.template,
                rfc3339(r.created_at),
                last
            )
        }))?;
    }
    Ok(EXIT_OK)
}
