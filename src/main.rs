//! The `shroud` binary: parse arguments, start logging, run, map the result to
//! an exit code. Everything else lives in the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use shroud::cli::{self, Cli, EXIT_INTERNAL};

fn main() -> ExitCode {
    // Before any secret is read: no core dumps, no ptrace by same-user peers.
    let hardened = shroud::sys::proc::disable_core_dumps();
    shroud::sys::panic::install_hook(EXIT_INTERNAL);
    if cli::is_internal_invocation() {
        return ExitCode::from(shroud::sandbox::run_internal(std::env::args_os().skip(1)));
    }
    // Before parsing: a usage error with --json is JSON too.
    let json = std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, json),
    };
    let json = cli.json;
    init_tracing(cli.log_settings());
    if let Err(e) = hardened {
        tracing::warn!(error = %e, "could not disable core dumps");
    }
    finish(cli::run(cli), json)
}

/// The exit code of a command's result, its error printed (as JSON with
/// `--json`).
fn finish(result: Result<u8, cli::CliError>, json: bool) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            cli::print_error(json, &e.to_string(), e.exit_code());
            ExitCode::from(e.exit_code())
        }
    }
}

/// Reports a command-line parse error. clap quotes the offending argument;
/// when that argument is not a flag it may be (part of) a secret value typed
/// on the command line, so it is not shown.
fn usage_error(error: clap::Error, json: bool) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let shown = matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let stray = match (error.kind(), error.get(ContextKind::InvalidArg)) {
        (ErrorKind::UnknownArgument, Some(ContextValue::String(arg))) => Some(arg.clone()),
        _ => None,
    };
    let looks_like_flag = |arg: &str| {
        arg.strip_prefix("--").is_some_and(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    if json && !shown {
        let text = match stray {
            Some(arg) if !looks_like_flag(&arg) => {
                "unexpected extra argument (not shown: it may be a secret value)".to_owned()
            }
            _ => {
                // The message up to the usage: its first paragraph, on one line.
                let rendered = error.render().to_string();
                let message: Vec<&str> = rendered
                    .lines()
                    .take_while(|line| !line.trim().is_empty())
                    .map(str::trim)
                    .collect();
                let message = message.join(" ");
                message
                    .strip_prefix("error: ")
                    .unwrap_or(&message)
                    .to_owned()
            }
        };
        cli::print_error(true, &text, cli::EXIT_USAGE);
        return ExitCode::from(cli::EXIT_USAGE);
    }
    match stray {
        Some(arg) if !looks_like_flag(&arg) => {
            let usage = error
                .get(ContextKind::Usage)
                .map(|u| format!("\n\n{u}"))
                .unwrap_or_default();
            let _ = writeln!(
                std::io::stderr(),
                "error: unexpected extra argument (not shown: it may be a secret value); quote a value that contains spaces, put one that starts with '-' after `--`, or pass it on stdin{usage}\n\nFor more information, try '--help'."
            );
            ExitCode::from(cli::EXIT_USAGE)
        }
        _ => {
            let _ = error.print();
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(cli::EXIT_USAGE))
        }
    }
}

/// Logs go to stderr, filtered by `SHROUD_LOG` (default: the command's own
/// level, warnings for all but `serve`; the default skips parsing a
/// filter, which every short command would pay), as text or JSON lines.
fn init_tracing(settings: cli::LogSettings) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(!settings.json && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let filter = match std::env::var("SHROUD_LOG") {
        Ok(directives) if !directives.is_empty() => {
            Some(tracing_subscriber::EnvFilter::new(directives))
        }
        _ => None,
    };
    match (settings.json, filter) {
        (true, Some(filter)) => builder.json().with_env_filter(filter).init(),
        (true, None) => builder.json().with_max_level(settings.default_level).init(),
        (false, Some(filter)) => builder.with_env_filter(filter).init(),
        (false, None) => builder.with_max_level(settings.default_level).init(),
    }
}
