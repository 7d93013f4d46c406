//! `shroud exec`: real children, real signals, real pipes and terminals.
//!
//! Time bounds here only tell a hang from a return (a 60 s sleep against a
//! 20 s bound); speed is measured in `benches/exec.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::TestHome;

const VALUE: &str = "sk-live-4f9a8b7c6d5e";
const OTHER: &str = "other-secret-2b3c4d";

fn home() -> TestHome {
    let home = TestHome::new();
    home.set("API_KEY", VALUE);
    home.set("DB_PASS", OTHER);
    home
}

/// Starts `shroud exec -- sh -c script`, waits for its first line (`ready`),
/// and returns the process with a reader on the rest of its stdout.
fn spawn_ready(
    home: &TestHome,
    script: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = home
        .command(&["exec", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, lines)
}

/// Sends `signal` to a process.
fn send(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// The next line of output.
fn next_line(lines: &mut BufReader<std::process::ChildStdout>) -> String {
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    line
}

fn exec(home: &TestHome, args: &[&str]) -> crate::support::Run {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    home.run(&full)
}

#[test]
fn the_environment_is_built_from_nothing() {
    let home = home();
    let mut cmd = home.command(&[
        "exec",
        "--secret",
        "API_KEY",
        "--secret",
        "DATABASE_PASSWORD=DB_PASS",
        "--env",
        "MODE=test",
        "--",
        "printenv",
    ]);
    cmd.env("HOME", "/home/tester")
        .env("LANG", "C.UTF-8")
        .env("LEAKY", "should-not-pass")
        .env("SHROUD_MASTER_KEY", "")
        .env("SHROUD_OTHER", "x");
    let out = home.run_with(cmd, None);
    let text = out.ok();
    let mut names: Vec<&str> = text.lines().map(|l| l.split('=').next().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "API_KEY",
            "DATABASE_PASSWORD",
            "HOME",
            "LANG",
            "MODE",
            "PATH"
        ]
    );
    assert!(text.contains("API_KEY=<secret:api_key>\n"), "{text}");
    assert!(
        text.contains("DATABASE_PASSWORD=<secret:db_pass>\n"),
        "{text}"
    );
    assert!(
        text.contains("HOME=/home/tester\n") && text.contains("MODE=test\n"),
        "{text}"
    );
    assert!(!text.contains(VALUE) && !text.contains(OTHER));
}

#[test]
fn secrets_reach_the_child_and_are_masked_on_both_streams() {
    let home = home();
    let out = exec(
        &home,
        &[
            "--secret",
            "API_KEY",
            "--",
            "sh",
            "-c",
            "echo out=$API_KEY; echo err=$API_KEY >&2",
        ],
    );
    // The child sees the real value (it compares it with one passed by --env).
    let compare = exec(
        &home,
        &[
            "--secret",
            "API_KEY",
            "--env",
            &format!("EXPECTED={VALUE}"),
            "--",
            "sh",
            "-c",
            "test \"$API_KEY\" = \"$EXPECTED\" && echo same",
        ],
    );
    assert_eq!(compare.ok(), "same\n");
    assert_eq!(out.ok(), "out=<secret:api_key>\n");
    assert_eq!(out.stderr, "err=<secret:api_key>\n");
}

#[test]
fn a_secret_written_byte_by_byte_with_pauses_is_masked() {
    let home = home();
    let script = r#"
        i=0
        while [ $i -lt ${#API_KEY} ]; do
            c=$(printf %s "$API_KEY" | cut -c $((i + 1)))
            printf %s "$c"; printf %s "$c" >&2
            sleep 0.02
            i=$((i + 1))
        done
        echo; echo >&2
    "#;
    let out = exec(
        &home,
        &[
            "--secret", "API_KEY", "--mask", "stars", "--", "sh", "-c", script,
        ],
    );
    assert_eq!(out.ok(), "********\n");
    assert_eq!(out.stderr, "********\n");
}

#[test]
fn a_secret_cut_by_base64_line_wrapping_is_still_masked() {
    let home = home();
    // `base64` wraps at 76 columns; the padding moves the value's encoding
    // across every position of a line end (without the wrapped forms, 19 of
    // these 61 encodings leaked).
    let script = r#"for n in $(seq 0 60); do printf '%*s%s and more text after it\n' "$n" '' "$API_KEY" | base64; echo; done"#;
    let out = exec(&home, &["--secret", "API_KEY", "--", "sh", "-c", script]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = out.stdout_text();
    assert_eq!(
        text.matches("<secret:api_key>").count(),
        61,
        "one mask per encoding:\n{text}"
    );
}

#[test]
fn exit_codes_follow_the_child() {
    let home = home();
    assert_eq!(exec(&home, &["--", "sh", "-c", "exit 3"]).code, 3);
    assert_eq!(exec(&home, &["--", "true"]).code, 0);
    assert_eq!(exec(&home, &["--", "sh", "-c", "kill -9 $$"]).code, 137);
    assert_eq!(exec(&home, &["--", "sh", "-c", "kill -TERM $$"]).code, 143);
    let missing = exec(&home, &["--", "no-such-program-xyz"]);
    assert_eq!(missing.code, 127);
    assert!(
        missing
            .stderr
            .contains("error: program `no-such-program-xyz` not found"),
        "{}",
        missing.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let denied = exec(&home, &["--", script.to_str().unwrap()]);
    assert_eq!(denied.code, 126, "{denied:?}");
    assert!(denied.stderr.starts_with("error: "), "{}", denied.stderr);
}

/// With SIGCHLD blocked in the signal mask shroud inherits, no exit is ever
/// signalled to it: the run still ends with its child, whether the child's
/// exit closes its outputs or it closed them long before.
#[test]
fn a_run_ends_with_its_child_even_when_sigchld_is_blocked() {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
    let home = home();
    for (script, code) in [("exit 3", 3), ("exec >&- 2>&-; sleep 0.3; exit 4", 4)] {
        let mut command = home.command(&["exec", "--", "sh", "-c", script]);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: between fork and exec only sigprocmask runs, which is
        // async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                let mut blocked = SigSet::empty();
                blocked.add(Signal::SIGCHLD);
                sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("`{script}`: shroud did not notice that its child exited");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(code), "{script}");
    }
}

#[test]
fn shroud_failures_before_start_are_125_and_start_nothing() {
    let home = home();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let touch = format!("touch {}", marker.display());
    for args in [
        vec!["--secret", "MISSING", "--", "sh", "-c", &touch],
        vec!["--secret", "api.key", "--", "sh", "-c", &touch],
        vec!["--env", "NOT VALID=1", "--", "sh", "-c", &touch],
        vec!["--timeout", "soon", "--", "sh", "-c", &touch],
        vec!["--template", "no-such-template", "--", "sh", "-c", &touch],
        vec!["--cwd", "/no/such/dir", "--", "sh", "-c", &touch],
    ] {
        let out = exec(&home, &args);
        assert_eq!(out.code, 125, "{args:?}: {out:?}");
        assert!(
            out.stderr.starts_with("error: "),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!marker.exists(), "{args:?} started the program");
    }
    let missing = exec(&home, &["--secret", "MISSING", "--", "true"]);
    assert!(
        missing.stderr.contains("`MISSING` not found"),
        "{}",
        missing.stderr
    );
}

fn each_injection_is_audited() {
    let home = home();
    exec(
        &home,
        &[
            "--secret",
            "API_KEY",
            "--secret",
            "PW=DB_PASS",
            "--",
            "true",
        ],
    )
    .ok();
    let audit = home.run(&["audit", "--limit", "2"]).ok();
    assert!(
        audit.contains("secret.inject\tdefault\tAPI_KEY\tv1\tok"),
        "{audit}"
    );
    assert!(
        audit.contains("secret.inject\tdefault\tDB_PASS\tv1\tok"),
        "{audit}"
    );
}

#[test]
fn timeout_ends_the_run_with_124() {
    let home = home();
    let started = Instant::now();
    let out = exec(&home, &["--timeout", "0.3", "--", "sleep", "60"]);
    assert_eq!(out.code, 124, "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the timeout did not stop the run"
    );
}

#[test]
fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
    let home = home();
    let started = Instant::now();
    let out = exec(
        &home,
        &[
            "--timeout",
            "0.2",
            "--",
            "sh",
            "-c",
            "trap '' TERM; echo ready; sleep 60; sleep 60",
        ],
    );
    assert_eq!(out.code, 124, "{out:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(10),
        "killed before the 10 s grace: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(40),
        "not killed after the grace: {elapsed:?}"
    );
    assert_eq!(out.stdout_text(), "ready\n");
}

#[test]
fn background_children_do_not_keep_shroud_waiting() {
    let home = home();
    let started = Instant::now();
    let out = exec(&home, &["--", "sh", "-c", "sleep 60 & echo hi"]);
    assert_eq!(out.ok(), "hi\n");
    // One that left the process group (setsid) and holds stdout open.
    let escaped = exec(&home, &["--", "sh", "-c", "setsid sleep 60 & echo bye"]);
    assert_eq!(escaped.ok(), "bye\n");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited on a background child"
    );
}

#[test]
fn sigterm_and_sighup_to_shroud_reach_the_childs_trap() {
    use nix::sys::signal::Signal;
    let home = home();
    for (signal, name, code) in [(Signal::SIGTERM, "TERM", 7), (Signal::SIGHUP, "HUP", 9)] {
        let script = format!(
            "trap 'echo got-{name}; exit {code}' {name}; echo ready; while :; do sleep 0.05; done"
        );
        let (mut child, mut lines) = spawn_ready(&home, &script);
        send(&child, signal);
        assert_eq!(next_line(&mut lines), format!("got-{name}\n"));
        assert_eq!(child.wait().unwrap().code(), Some(code));
    }
}

#[test]
fn a_second_sigint_kills_the_group() {
    let home = home();
    let (mut child, mut lines) = spawn_ready(
        &home,
        "trap 'echo got-int' INT; echo ready; while :; do sleep 0.05; done",
    );
    send(&child, nix::sys::signal::Signal::SIGINT);
    assert_eq!(
        next_line(&mut lines),
        "got-int\n",
        "the first SIGINT is forwarded"
    );
    send(&child, nix::sys::signal::Signal::SIGINT);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(137),
        "the second SIGINT kills"
    );
}

#[test]
fn stdin_reaches_the_child_with_its_eof() {
    let home = home();
    let input = format!("hello {VALUE}\nline two\n");
    let out = home.run_stdin(
        &["exec", "--secret", "API_KEY", "--", "cat"],
        input.as_bytes(),
    );
    assert_eq!(out.ok(), "hello <secret:api_key>\nline two\n");
    let count = home.run_stdin(&["exec", "--", "wc", "-l"], b"a\nb\nc\n");
    assert_eq!(count.ok().trim(), "3");
}

#[test]
fn json_lines_parse_and_end_with_the_exit_event() {
    let home = home();
    let out = home.run(&[
        "--json",
        "exec",
        "--secret",
        "API_KEY",
        "--",
        "sh",
        "-c",
        "echo out $API_KEY; echo err >&2; printf 'caf\\303'; printf '\\251\\n'; exit 5",
    ]);
    assert_eq!(out.code, 5);
    let events: Vec<serde_json::Value> = out
        .stdout_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "exit");
    assert_eq!(last["code"], 5);
    assert!(last["signal"].is_null());
    assert!(last["duration_ms"].is_u64());
    let text = |stream: &str| -> String {
        events
            .iter()
            .filter(|e| e["stream"] == stream)
            .map(|e| {
                assert!(e["ts"].as_str().unwrap().ends_with('Z'));
                e["data"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(
        text("stdout"),
        "out <secret:api_key>\ncafé\n",
        "a character split across writes stays whole"
    );
    assert_eq!(text("stderr"), "err\n");
    assert!(!out.stdout_text().contains(VALUE));
    let killed = home.run(&["--json", "exec", "--", "sh", "-c", "kill -9 $$"]);
    let last: serde_json::Value =
        serde_json::from_str(killed.stdout_text().lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["code"].as_u64(), last["signal"].as_i64()),
        (Some(137), Some(9))
    );
}

#[test]
fn tty_always_gives_a_terminal_and_never_gives_pipes() {
    let home = home();
    let check =
        "if test -t 1; then echo tty; else echo pipe; fi; if test -t 0; then echo in-tty; fi";
    let with = exec(&home, &["--tty", "always", "--", "sh", "-c", check]);
    assert_eq!(with.ok().replace('\r', ""), "tty\nin-tty\n");
    let without = exec(&home, &["--tty", "never", "--", "sh", "-c", check]);
    assert_eq!(without.ok(), "pipe\n");
    // Piped stdout with --tty auto: pipes.
    assert_eq!(exec(&home, &["--", "sh", "-c", check]).ok(), "pipe\n");
}

/// Runs shroud with its stdout and stdin on a pseudo-terminal opened here,
/// as a user at a terminal would; returns everything it printed.
fn run_on_terminal(home: &TestHome, args: &[&str], rows: u16, cols: u16) -> String {
    let size = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let mut child = home
        .command(args)
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "{status:?}: {}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).replace('\r', "")
}

#[test]
fn at_a_terminal_the_child_gets_one_sized_like_it_and_colours_survive() {
    let home = home();
    let out = run_on_terminal(
        &home,
        &[
            "exec",
            "--secret",
            "API_KEY",
            "--",
            "sh",
            "-c",
            "test -t 1 && echo tty; stty size; printf '\\033[31mred %s\\033[0m\\n' \"$API_KEY\"",
        ],
        33,
        77,
    );
    assert!(out.contains("tty\n"), "{out:?}");
    assert!(out.contains("33 77\n"), "{out:?}");
    assert!(
        out.contains("\x1b[31mred <secret:api_key>\x1b[0m"),
        "{out:?}"
    );
    assert!(!out.contains(VALUE));
}

#[test]
fn a_20_mb_burst_is_forwarded_whole_and_masked_with_bounded_memory() {
    let home = home();
    // 20 MB of lines, each carrying the secret.
    let script = r#"yes "line $API_KEY end" | head -c 20000000"#;
    let mut child = home
        .command(&["exec", "--secret", "API_KEY", "--", "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut total = 0usize;
    let mut masked_lines = 0usize;
    let mut peak_rss_kib = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut tail = Vec::new();
    loop {
        // A slow reader: shroud must wait for it, not buffer the burst.
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) {
                let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
                peak_rss_kib = peak_rss_kib.max(kib);
            }
        }
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        tail.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&tail).into_owned();
        assert!(!text.contains(VALUE), "the secret leaked");
        masked_lines += text.matches("<secret:api_key>").count();
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        tail.drain(..keep.min(tail.len()));
        if total < 2_000_000 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    assert!(child.wait().unwrap().success());
    let line_len = "line sk-live-4f9a8b7c6d5e end\n".len();
    let full_lines = 20_000_000 / line_len;
    assert!(
        masked_lines >= full_lines,
        "{masked_lines} of {full_lines} lines"
    );
    let masked_line_len = "line <secret:api_key> end\n".len();
    assert!(
        total >= full_lines * masked_line_len,
        "output was cut: {total} bytes"
    );
    assert!(
        peak_rss_kib > 0 && peak_rss_kib < 48 * 1024,
        "shroud used {peak_rss_kib} KiB"
    );
}

#[test]
fn output_still_in_the_pipe_when_the_child_exits_reaches_a_slow_reader() {
    // The child is gone with a megabyte still unread; the reader takes a
    // second to drain it. Nothing is lost: shroud waits while output keeps
    // coming (it stops waiting only on a pipe that stays silent).
    let home = home();
    let mut child = home
        .command(&[
            "exec",
            "--",
            "sh",
            "-c",
            "head -c 2000000 /dev/zero | tr '\\0' x",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        total += n;
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(total, 2_000_000);
}

/// Reads from a pty master until `needle` has appeared; returns all read.
fn read_until(master: &mut std::fs::File, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(needle) {
        let n = master.read(&mut buf).expect("read terminal");
        assert!(
            n > 0,
            "terminal closed before {needle:?}: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).replace('\r', "")
}

#[test]
fn at_a_terminal_typed_input_and_resizes_reach_the_child() {
    let home = home();
    let size = nix::pty::Winsize {
        ws_row: 20,
        ws_col: 60,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let script = "trap 'stty size' WINCH; printf 'name? '; read name; echo \"hi $name $API_KEY\"; \
                  echo ready; while :; do sleep 0.05; done";
    let mut child = home
        .command(&["exec", "--secret", "API_KEY", "--", "sh", "-c", script])
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    // The prompt has no newline and still shows.
    read_until(&mut master, "name? ");
    master.write_all(b"ada\r").unwrap();
    let out = read_until(&mut master, "ready");
    assert!(out.contains("hi ada <secret:api_key>"), "{out:?}");
    // The user's terminal is resized: shroud gets SIGWINCH, the child sees the new size.
    let bigger = nix::pty::Winsize {
        ws_row: 50,
        ws_col: 132,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    nix::ioctl_write_ptr_bad!(set_size, nix::libc::TIOCSWINSZ, nix::pty::Winsize);
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    unsafe { set_size(std::os::fd::AsRawFd::as_raw_fd(&master.as_fd()), &bigger) }.unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGWINCH).unwrap();
    read_until(&mut master, "50 132");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143));
}

#[test]
fn piped_stdin_and_its_end_reach_a_child_on_a_pty() {
    let home = home();
    let out = home.run_stdin(
        &[
            "exec",
            "--tty",
            "always",
            "--",
            "sh",
            "-c",
            "cat; echo done",
        ],
        b"one\ntwo\n",
    );
    let text = out.ok().replace('\r', "");
    assert!(text.ends_with("one\ntwo\ndone\n"), "{text:?}");
    let partial = home.run_stdin(
        &[
            "exec",
            "--tty",
            "always",
            "--",
            "sh",
            "-c",
            "cat; echo; echo done",
        ],
        b"no-newline",
    );
    assert!(
        partial.ok().replace('\r', "").contains("no-newline"),
        "{partial:?}"
    );
}

#[test]
fn an_expired_secret_is_refused_before_start() {
    let home = home();
    home.run(&["secret", "set", "BRIEF", "brief-secret-value", "--ttl", "1"])
        .ok();
    assert_eq!(exec(&home, &["--secret", "BRIEF", "--", "true"]).code, 0);
    std::thread::sleep(Duration::from_millis(1200));
    let out = exec(&home, &["--secret", "BRIEF", "--", "echo", "started"]);
    assert_eq!(out.code, 125);
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn core_dumps_are_off_for_the_child_and_values_stay_out_of_logs() {
    let home = home();
    let mut cmd = home.command(&[
        "exec",
        "--secret",
        "API_KEY",
        "--",
        "sh",
        "-c",
        "ulimit -c; echo $API_KEY",
    ]);
    cmd.env("SHROUD_LOG", "trace");
    let out = home.run_with(cmd, None);
    assert_eq!(out.ok(), "0\n<secret:api_key>\n");
    assert!(
        out.stderr.contains("API_KEY"),
        "names are logged: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains(VALUE),
        "a value was logged: {}",
        out.stderr
    );
}

#[test]
fn with_pipes_the_child_can_still_read_the_terminal() {
    // shroud gets a pseudo-terminal as its controlling terminal, as under a
    // user's shell; with --tty never its child (in a process group of its
    // own) must become the terminal's foreground job, or reading the
    // terminal would stop it (SIGTTIN).
    let home = home();
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut command = home.command(&[
        "exec",
        "--tty",
        "never",
        "--",
        "sh",
        "-c",
        "read x; echo got=$x",
    ]);
    command
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::null());
    crate::support::with_controlling_terminal(&mut command);
    let mut child = command.spawn().unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"abc\n").unwrap();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(read_until(&mut master, "got=abc"));
    });
    let seen = result
        .recv_timeout(Duration::from_secs(20))
        .expect("the child never read the terminal (stopped by SIGTTIN?)");
    assert!(seen.contains("got=abc"), "{seen:?}");
    assert!(child.wait().unwrap().success());
}

crate::conformance!(each_injection_is_audited,);

#[test]
fn all_grants_the_whole_vault_masked_and_env_files_add_plain_variables() {
    let home = TestHome::new();
    home.set("API_KEY", "sk-all-grant-1111");
    home.set("DB_PASSWORD", "pw-all-grant-2222");
    home.run(&[
        "secret",
        "set",
        "OTHER_VAULT",
        "sk-not-this-vault",
        "--vault",
        "elsewhere",
    ])
    .ok();
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("app.env");
    std::fs::write(
        &env_file,
        "# plain settings\nexport REGION=eu-west-1\nGREETING='hello # world'\nLEVEL=debug\n",
    )
    .unwrap();
    let out = home.run(&[
        "exec",
        "--all",
        "--env-file",
        env_file.to_str().unwrap(),
        "--env",
        "LEVEL=info",
        "--",
        "sh",
        "-c",
        "echo \"$API_KEY $DB_PASSWORD [$OTHER_VAULT] $REGION $GREETING $LEVEL\"",
    ]);
    assert_eq!(
        out.ok(),
        "<secret:api_key> <secret:db_password> [] eu-west-1 hello # world info\n"
    );
    // Each injection audited, as for --secret.
    let audit = home.run(&["audit", "--limit", "2"]).ok();
    assert_eq!(audit.matches("\tsecret.inject\t").count(), 2, "{audit}");
    // A secret whose name is no variable name stops --all before anything
    // runs, unless it is granted under another name.
    home.set("dotted.name", "sk-dotted-3333");
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let out = home.run(&["exec", "--all", "--", "sh", "-c", &touch]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(
        out.stderr.contains("--all") && out.stderr.contains("dotted.name"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists());
    let out = home.run(&[
        "exec",
        "--secret",
        "DOTTED=dotted.name",
        "--all",
        "--",
        "sh",
        "-c",
        "echo $DOTTED",
    ]);
    assert_eq!(out.ok(), "<secret:dotted.name>\n");
    // A bad env file names its line, never a value, and runs nothing.
    std::fs::write(&env_file, "GOOD=1\nNOT-A-NAME=secret-looking-value\n").unwrap();
    let out = home.run(&[
        "exec",
        "--env-file",
        env_file.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &touch,
    ]);
    assert_eq!(out.code, 125, "{out:?}");
    assert!(
        out.stderr.contains("line 2") && !out.stderr.contains("secret-looking-value"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists());
}

#[test]
fn sandbox_exec_all_grants_the_sandboxes_vault() {
    let home = TestHome::new();
    home.run(&[
        "secret",
        "set",
        "API_KEY",
        "sk-sandbox-all-1111",
        "--vault",
        "app",
    ])
    .ok();
    home.run(&[
        "secret",
        "set",
        "TOKEN",
        "tk-sandbox-all-2222",
        "--vault",
        "app",
    ])
    .ok();
    home.set("DEFAULT_ONLY", "sk-default-vault-3333");
    let id = home
        .run(&[
            "sandbox",
            "create",
            "--template",
            "bash",
            "--vault",
            "app",
            "--secret",
            "API_KEY",
        ])
        .ok()
        .trim()
        .to_owned();
    let out = home.run(&[
        "sandbox",
        "exec",
        &id,
        "--all",
        "--",
        "sh",
        "-c",
        "echo \"$API_KEY $TOKEN [$DEFAULT_ONLY]\"",
    ]);
    assert_eq!(out.ok(), "<secret:api_key> <secret:token> []\n");
}

/// With enough grants the mask set compiles on a thread beside the start of
/// the run (2,048 patterns or more): the command's first bytes, written at
/// once, wait for it and come out masked, every value and its base64.
#[test]
fn output_written_at_once_waits_for_a_mask_set_compiling_in_the_background() {
    let home = TestHome::new();
    let mut file = String::new();
    let values: Vec<String> = (0..60)
        .map(|i| format!("bg-compile-{i:02}-Zq8vN3xW7pL2"))
        .collect();
    for (i, value) in values.iter().enumerate() {
        file.push_str(&format!("BG{i:02}={value}\n"));
    }
    home.run_stdin(&["secret", "import", "-"], file.as_bytes())
        .ok();
    let mut args: Vec<String> = vec!["exec".into()];
    for i in 0..values.len() {
        args.push("--secret".into());
        args.push(format!("BG{i:02}"));
    }
    let script = "for v in $(env | grep '^BG' | cut -d= -f2); do echo \"$v\"; printf %s \"$v\" | base64; done";
    args.extend(["--".into(), "sh".into(), "-c".into(), script.into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for _ in 0..3 {
        let out = home.run(&args);
        let text = out.ok();
        assert_eq!(text.lines().count(), 2 * values.len(), "{text}");
        for value in &values {
            assert!(!text.contains(value.as_str()), "a value leaked: {text}");
            let encoded = base64_of(value);
            assert!(!text.contains(&encoded), "a base64 form leaked: {text}");
        }
        assert!(text.lines().all(|l| l.starts_with("<secret:bg")), "{text}");
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The URL encoders that keep some reserved characters (Python's
/// `urllib.parse.quote` keeps `/`, JavaScript's `encodeURI` keeps all of
/// them), run for real on values holding both kinds: masked like the
/// encoders that escape everything.
#[test]
fn values_partly_percent_encoded_by_real_encoders_are_masked() {
    let home = TestHome::new();
    let values = [
        "ab/c d",
        "ab/c@d+x",
        "p@ss w/rd+\"q\\x&y=1",
        "user:pa ss/k?z",
    ];
    for (i, value) in values.iter().enumerate() {
        home.run_stdin(&["secret", "set", &format!("U{i}")], value.as_bytes())
            .ok();
    }
    let grants: Vec<String> = (0..values.len())
        .flat_map(|i| ["--secret".to_owned(), format!("U{i}")])
        .collect();
    let run = |program: &[&str]| {
        let mut args: Vec<&str> = vec!["exec"];
        args.extend(grants.iter().map(String::as_str));
        args.push("--");
        args.extend_from_slice(program);
        home.run(&args)
    };
    let mut checked = 0;
    let python = "import os, urllib.parse as u\nfor k in sorted(os.environ):\n    if k.startswith('U'):\n        v = os.environ[k]\n        print(u.quote(v)); print(u.quote(v, safe='')); print(u.quote_plus(v))";
    let node = "for (const [k, v] of Object.entries(process.env)) if (k.startsWith('U')) { console.log(encodeURI(v)); console.log(encodeURIComponent(v)); }";
    for (program, script, lines) in [("python3", python, 3), ("node", node, 2)] {
        let found = std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("SKIPPED the {program} encoders: `{program}` is not installed");
            continue;
        }
        let flag = if program == "node" { "-e" } else { "-c" };
        let out = run(&[program, flag, script]);
        let text = out.ok();
        assert_eq!(text.lines().count(), lines * values.len(), "{text}");
        assert!(
            text.lines().all(|l| l.starts_with("<secret:u")),
            "{program}: {text}"
        );
        checked += 1;
    }
    assert!(checked > 0, "neither python3 nor node to check against");
}
