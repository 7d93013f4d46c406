//! The panic hook of shroud's binaries: a panic's message and place, never
//! a value, as one `error: internal error: ...` line and the internal exit
//! code; a panic off the main thread (a server's worker) is logged and that
//! thread alone ends.

use std::io::Write;

/// A panic on the main thread prints one `error:` line and exits `exit_code`. On any
/// other thread (the server's workers and blocking threads) it is logged and
/// unwinds, so the server answers that one request with a bare 500 (its
/// `CatchPanicLayer`, or a failed join) and keeps serving. No code path
/// formats a plaintext value (`SecretValue` has no `Display` and a redacted
/// `Debug`), so the payload is safe to show.
pub fn install_hook(exit_code: u8) {
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let on_main = thread.name() == Some("main");
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if !on_main {
            let name = thread.name().unwrap_or("unnamed");
            tracing::error!(thread = name, "panic: {payload}{location}");
            return;
        }
        let _ = writeln!(
            std::io::stderr(),
            "error: internal error: {payload}{location}"
        );
        std::process::exit(i32::from(exit_code));
    }));
}
