//! `shroud exec`: run a program with only its granted secrets, masked.
//!
//! Everything is resolved before the program starts: the template, `--env`
//! pairs, each `--secret` grant (decrypted in one audited transaction), the
//! mask set and the terminal mode. Any failure there exits 125 with nothing
//! started; after that the exit code is the child's (see `supervisor`).

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{CliError, Context};
use crate::mask::MaskStyle;
use crate::sandbox::template::Template;
use crate::store::names::MIN_MASKABLE_BYTES;
use crate::store::{OpenMode, SecretName, Store};
use crate::supervisor::output::{Destination, OutputMode};
use crate::supervisor::plan::{self, CallerEnv, RunIo, RunSpec, StoreAccess};
use crate::supervisor::spawn::StdioMode;
use crate::supervisor::{self, Control, ExecPlan};
use crate::sys::term::{self as sys, WindowSize};

/// Exit code for shroud's own failures around a run.
pub const EXIT_SHROUD_FAILED: u8 = 125;

/// When the child gets a pseudo-terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TtyMode {
    /// When shroud's stdout is a terminal (and not with --json).
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    vault: super::VaultArg,
    /// Inject a secret: NAME (as $NAME), or ENV=NAME (secret NAME as $ENV). Repeatable.
    #[arg(long = "secret", value_name = "[ENV=]NAME")]
    secrets: Vec<String>,
    /// Inject every secret of the vault under its own name (masked).
    #[arg(long)]
    all: bool,
    /// Set K=V in the child's environment. Repeatable.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Add the variables of a dotenv file (not secrets: not masked); `--env` wins. Repeatable.
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Runtime template: its base environment (default: PATH, HOME, LANG, TERM).
    #[arg(long, value_name = "T")]
    template: Option<String>,
    /// Replacement: `label` writes <secret:name>, `stars` writes ********.
    #[arg(long, value_name = "label|stars", default_value = "label")]
    mask: MaskStyle,
    /// Stop the program after SECS seconds (SIGTERM, then SIGKILL after 10 s); exit 124.
    #[arg(long, value_name = "SECS")]
    timeout: Option<String>,
    /// Working directory of the program.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Give the program a pseudo-terminal.
    #[arg(long, value_enum, default_value = "auto")]
    tty: TtyMode,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<OsString>,
}

/// The longest `--timeout`: about three years (a longer one is a typo,
/// and would overflow the clock arithmetic of a deadline).
pub const MAX_TIMEOUT_SECS: f64 = 1e8;

pub fn parse_timeout(text: &str) -> Result<Duration, CliError> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= MAX_TIMEOUT_SECS => Ok(Duration::from_secs_f64(secs)),
        Ok(secs) if secs > MAX_TIMEOUT_SECS => Err(CliError::Usage(format!(
            "invalid --timeout {text:?}: too large (at most {MAX_TIMEOUT_SECS:.0} seconds)"
        ))),
        _ => Err(CliError::Usage(format!(
            "invalid --timeout {text:?}: expected a number of seconds greater than 0"
        ))),
    }
}

pub fn run(ctx: &Context, args: ExecArgs) -> Result<u8, CliError> {
    let plan = match prepare(ctx, args) {
        Ok(plan) => plan,
        Err(e) => {
            ctx.out.error(&e.to_string(), EXIT_SHROUD_FAILED);
            return Ok(EXIT_SHROUD_FAILED);
        }
    };
    report_run(ctx, supervisor::run(plan))
}

/// Maps a finished run to the exit code, telling the user about limits.
pub fn report_run(
    ctx: &Context,
    result: Result<supervisor::ExitReport, supervisor::SupervisorError>,
) -> Result<u8, CliError> {
    match result {
        Ok(report) => {
            if report.output_limit_reached {
                ctx.out.error(
                    "the output limit was reached; the command was killed",
                    report.code,
                );
            }
            Ok(report.code)
        }
        Err(e) => {
            ctx.out.error(&e.to_string(), e.exit_code());
            Ok(e.exit_code())
        }
    }
}

/// Resolves everything a run needs, before anything is started.
fn prepare(ctx: &Context, args: ExecArgs) -> Result<ExecPlan, CliError> {
    let vault = args.vault.parse()?;
    let mut grants = plan::parse_grants(&args.secrets)?;
    if args.all {
        let mut store = Store::open(ctx.store_config(), OpenMode::Existing)?;
        grants = plan::grants_with_all(&mut store, &vault, grants)?;
    }
    let extra_env = env_with_files(&args.env_files, &args.env)?;
    let timeout = args.timeout.as_deref().map(parse_timeout).transpose()?;
    if let Some(dir) = &args.cwd {
        if !dir.is_dir() {
            return Err(CliError::Usage(format!(
                "--cwd {}: not a directory",
                dir.display()
            )));
        }
    }
    let template = match &args.template {
        Some(name) => {
            Template::load(name, &ctx.home).map_err(|e| CliError::Usage(e.to_string()))?
        }
        None => Template::plain(),
    };
    let open = || Store::open(ctx.store_config(), OpenMode::Existing);
    let mut spec = RunSpec::new(args.command, CallerEnv::of_this_process(), vault);
    spec.cwd = args.cwd;
    spec.env_policy = template.env;
    spec.extra_env = extra_env;
    spec.grants = grants;
    spec.mask = args.mask;
    spec.timeout = timeout;
    let io = RunIo {
        stdio: stdio_mode(ctx, args.tty),
        input: None,
        output: output_mode(ctx),
        destination: Destination::Stdio,
        control: Control::Process,
        requests: None,
        on_started: None,
        // This thread runs the plan too.
        start_early: true,
        guessed_init: None,
    };
    let prepared = plan::prepare(StoreAccess::Lazy(&open), &ctx.binary(), spec, io)?;
    warn_unmasked(ctx, &prepared.unmasked);
    Ok(prepared.plan)
}

/// The variables of each `--env-file` in order, then the `--env` pairs
/// (a later one of the same name wins when the environment is built).
pub fn env_with_files(
    files: &[PathBuf],
    pairs: &[String],
) -> Result<Vec<(String, String)>, CliError> {
    let mut env = Vec::new();
    for file in files {
        env.extend(env_file_pairs(file)?);
    }
    env.extend(parse_env_pairs(pairs)?);
    Ok(env)
}

/// The `NAME=VALUE` entries of the dotenv file `file` (see `dotenv`). An
/// error names the file and the line or the name, never a value.
pub fn env_file_pairs(file: &std::path::Path) -> Result<Vec<(String, String)>, CliError> {
    let shown = file.display();
    let text =
        std::fs::read(file).map_err(|e| CliError::Usage(format!("--env-file {shown}: {e}")))?;
    let text = zeroize::Zeroizing::new(text);
    let text = std::str::from_utf8(&text)
        .map_err(|_| CliError::Usage(format!("--env-file {shown}: not UTF-8 text")))?;
    let entries = crate::dotenv::parse(text)
        .map_err(|e| CliError::Usage(format!("--env-file {shown}: {e}")))?;
    entries
        .into_iter()
        .map(|entry| {
            // A name that is not one may be a value (`KEY: value=...`).
            if crate::store::names::check_env_name(&entry.name).is_err() {
                return Err(CliError::Usage(format!(
                    "--env-file {shown}, line {}: the part before `=` is not a variable name (letters, digits and `_`, not starting with a digit; not shown, in case it is a value)",
                    entry.line
                )));
            }
            plan::check_env_pair(&entry.name, &entry.value).map_err(|e| {
                CliError::Usage(format!("--env-file {shown}, line {}: {e}", entry.line))
            })?;
            Ok((entry.name, entry.value.to_string()))
        })
        .collect()
}

/// Parses `--env K=V` pairs. An error says which `--env` (by its place)
/// and what rule it breaks, never what it holds: a value typed there, or
/// pasted where a pair was meant, may be a secret.
pub fn parse_env_pairs(pairs: &[String]) -> Result<Vec<(String, String)>, CliError> {
    let mut parsed = Vec::with_capacity(pairs.len());
    for (index, pair) in pairs.iter().enumerate() {
        let which = index + 1;
        let (name, value) = pair.split_once('=').ok_or_else(|| {
            CliError::Usage(format!(
                "--env #{which} is not K=V (it has no `=`; not shown, in case it is a value)"
            ))
        })?;
        if crate::store::names::check_env_name(name).is_err() {
            return Err(CliError::Usage(format!(
                "--env #{which}: the part before `=` is not a variable name (letters, digits and `_`, not starting with a digit; not shown)"
            )));
        }
        if value.contains('\0') {
            return Err(CliError::Usage(format!(
                "--env #{which} ({name}): the value contains a NUL byte"
            )));
        }
        parsed.push((name.to_owned(), value.to_owned()));
    }
    Ok(parsed)
}

/// Warns about granted secrets too short to be masked.
pub fn warn_unmasked(ctx: &Context, unmasked: &[SecretName]) {
    for name in unmasked {
        ctx.out.warn(&format!(
            "secret `{name}` is shorter than {MIN_MASKABLE_BYTES} bytes and is not masked"
        ));
    }
}

/// Pipes or a pseudo-terminal, from `--tty` and where shroud's stdout goes.
pub fn stdio_mode(ctx: &Context, tty: TtyMode) -> StdioMode {
    let use_pty = match tty {
        TtyMode::Always => true,
        TtyMode::Never => false,
        TtyMode::Auto => sys::is_terminal(std::io::stdout().as_fd()) && !ctx.out.is_json(),
    };
    if !use_pty {
        return StdioMode::Pipes;
    }
    let size = sys::window_size(std::io::stdout().as_fd()).unwrap_or(WindowSize::DEFAULT);
    StdioMode::Pty(Some(size))
}

/// [`stdio_mode`] for a sandboxed command: without a pty it is given
/// shroud's stdin only when that is a pipe; anything else (the caller's
/// terminal above all, or a file) is relayed through a pipe, so the
/// command never holds it.
pub fn sandbox_stdio_mode(ctx: &Context, tty: TtyMode) -> StdioMode {
    match stdio_mode(ctx, tty) {
        StdioMode::Pipes if !crate::sys::fd::is_pipe(std::io::stdin().as_fd()) => {
            StdioMode::RelayedInput
        }
        other => other,
    }
}

/// JSON lines with `--json`, else the two streams.
pub fn output_mode(ctx: &Context) -> OutputMode {
    if ctx.out.is_json() {
        OutputMode::JsonLines
    } else {
        OutputMode::Streams
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse() {
        assert_eq!(parse_timeout("1.5").unwrap(), Duration::from_millis(1500));
        for bad in ["0", "-1", "soon", "nan", ""] {
            assert!(parse_timeout(bad).is_err(), "{bad}");
        }
        let too_large = parse_timeout("1e12").unwrap_err().to_string();
        assert!(too_large.contains("too large"), "{too_large}");
    }

    #[test]
    fn env_errors_never_show_the_argument() {
        for bad in [
            "sk-live-no-equals-sign",
            "not valid=sk-live-1",
            "1X=sk-live-2",
        ] {
            let err = parse_env_pairs(&["OK=1".to_owned(), bad.to_owned()])
                .unwrap_err()
                .to_string();
            assert!(err.contains("--env #2"), "{err}");
            assert!(
                !err.contains("sk-live") && !err.contains("not valid") && !err.contains("1X"),
                "{err}"
            );
        }
    }
}
