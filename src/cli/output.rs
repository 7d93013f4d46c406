//! How commands print: results on stdout, notes and warnings on stderr.
//!
//! Text mode prints plain lines; `--json` prints one JSON object per result.
//! Writes go through a buffer and report I/O errors (a closed pipe ends the
//! command quietly instead of panicking as `println!` would).

use std::io::{self, Write};

use serde::Serialize;

use super::CliError;

/// The output mode of this run.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

fn write_error(source: io::Error) -> CliError {
    CliError::Io {
        context: "write to standard output",
        source,
    }
}

impl Output {
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// True with `--json`.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Writes raw bytes to stdout.
    pub fn bytes(&self, bytes: &[u8]) -> Result<(), CliError> {
        let mut stdout = io::stdout().lock();
        stdout.write_all(bytes).map_err(write_error)?;
        stdout.flush().map_err(write_error)
    }

    /// Writes each item as one line to stdout, buffered.
    pub fn lines<I, S>(&self, lines: I) -> Result<(), CliError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut stdout = io::BufWriter::with_capacity(64 * 1024, io::stdout().lock());
        for line in lines {
            stdout
                .write_all(line.as_ref().as_bytes())
                .map_err(write_error)?;
            stdout.write_all(b"\n").map_err(write_error)?;
        }
        stdout.flush().map_err(write_error)
    }

    /// Writes one line to stdout.
    pub fn line(&self, line: &str) -> Result<(), CliError> {
        self.lines([line])
    }

    /// Writes one JSON object as a line to stdout.
    pub fn json<T: Serialize>(&self, value: &T) -> Result<(), CliError> {
        let mut text = serde_json::to_vec(value).map_err(|e| write_error(io::Error::other(e)))?;
        text.push(b'\n');
        self.bytes(&text)
    }

    /// A note for the person at the terminal (stderr); never machine output.
    pub fn note(&self, text: &str) {
        let _ = writeln!(io::stderr().lock(), "{text}");
    }

    /// A warning on stderr, prefixed `warning: `.
    pub fn warn(&self, text: &str) {
        self.note(&format!("warning: {text}"));
    }

    /// The error that ends the command, on stderr: `error: TEXT`, or with
    /// `--json` one object `{"error": TEXT, "code": N}` (N: the exit code).
    pub fn error(&self, text: &str, code: u8) {
        print_error(self.json, text, code);
    }
}

/// [`Output::error`] for a caller that has no `Output` yet (argument
/// parsing, the internal entry points).
pub fn print_error(json: bool, text: &str, code: u8) {
    let line = if json {
        serde_json::json!({ "error": text, "code": code }).to_string()
    } else {
        format!("error: {text}")
    };
    let _ = writeln!(io::stderr().lock(), "{line}");
}
