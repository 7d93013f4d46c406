//! Deployments and agent runs against the real supervisor: auto-started by
//! `deploy` commands or run as `shroud serve`, with real sandboxed
//! instances, real sockets, and rotations written by another process.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::api::{http, start_server_with, ServerLog};

/// An API request with a JSON body; the status and the JSON answer.
fn api(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&String>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = http(port, method, path, token.unwrap(), body.as_deref());
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}
use crate::support::{supervisor_pid, wait_until, TestHome};

/// The deployment `slug` as `deploy list --json` shows it.
fn deployment(home: &TestHome, slug: &str) -> serde_json::Value {
    let list = home.run(&["--json", "deploy", "list"]).json();
    list["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["slug"] == slug)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn log_text(home: &TestHome, slug: &str) -> String {
    home.run(&["deploy", "logs", slug]).ok()
}

/// A number no other test of this run uses (a marker to find processes by).
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos * 100 + NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 100
}

/// Pids of the processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if cmdline
                .windows(marker.len())
                .any(|w| w == marker.as_bytes())
            {
                found.push(pid);
            }
        }
    }
    found
}

crate::conformance!(
    a_service_runs_masked_restarts_with_backoff_and_comes_back_after_sigkill,
    agent_runs_over_the_cli_and_the_api_with_grants,
);

fn a_service_runs_masked_restarts_with_backoff_and_comes_back_after_sigkill() {
    let home = TestHome::new();
    home.set("TOKEN", "sk-live-deploy-0001");
    // Unique to this run: the instance is found by it in /proc.
    let marker = format!("1001.{}", unique());
    let script = format!("echo \"token=$TOKEN\"; exec sleep {marker}");
    // No supervisor yet: the command starts one.
    let created = home.run(&[
        "deploy",
        "create",
        "web",
        "--template",
        "bash",
        "--secret",
        "TOKEN",
        "--ready-after",
        "0.3",
        "--",
        "bash",
        "-c",
        &script,
    ]);
    assert_eq!(created.ok().trim(), "web");
    let first = supervisor_pid(&home.path()).expect("a supervisor was started");
    wait_until(Duration::from_secs(10), "web running", || {
        deployment(&home, "web")["state"] == "running"
    });
    let web = deployment(&home, "web");
    assert_eq!(web["instances"][0]["secret_versions"]["TOKEN"], 1, "{web}");
    let log = log_text(&home, "web");
    assert!(log.contains("token=<secret:token>"), "{log}");
    assert!(!log.contains("sk-live-deploy-0001"), "{log}");
    assert!(log.contains("event started (pid"), "{log}");
    // --follow streams what comes next; --tail N the last lines only.
    let tail = home.run(&["deploy", "logs", "web", "--tail", "1"]).ok();
    assert_eq!(tail.lines().count(), 1, "{tail}");
    let mut follow = home
        .command(&["--json", "deploy", "logs", "web", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut first_line = String::new();
    std::io::BufRead::read_line(&mut lines, &mut first_line).unwrap();
    assert!(
        first_line.contains("\"instance\":\"supervisor\""),
        "{first_line}"
    );
    home.set("TOKEN", "sk-live-deploy-0002");
    let mut seen = String::new();
    while !seen.contains("done: every instance replaced") {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut lines, &mut line).unwrap() > 0,
            "{seen}"
        );
        seen.push_str(&line);
    }
    assert!(seen.contains("rotating to version 2 of TOKEN"), "{seen}");
    assert!(!seen.contains("sk-live-deploy"), "{seen}");
    follow.kill().unwrap();
    follow.wait().unwrap();

    // A crashing program: restarts counted over a few seconds of backoff
    // (1 s, then 2 s: starts at 0, 1 and 3 s).
    home.run(&[
        "deploy",
        "create",
        "crash",
        "--template",
        "bash",
        "--",
        "bash",
        "-c",
        "exit 3",
    ])
    .ok();
    std::thread::sleep(Duration::from_millis(4200));
    let crash = deployment(&home, "crash");
    let restarts = crash["restarts"].as_u64().unwrap();
    assert!((2..=4).contains(&restarts), "{crash}");
    assert_eq!(crash["last_exit"]["code"], 3, "{crash}");
    assert_eq!(crash["state"], "backoff", "{crash}");
    // A program that is not found: backoff with 127 shown, the
    // supervisor unharmed.
    home.run(&[
        "deploy",
        "create",
        "nf",
        "--template",
        "bash",
        "--",
        "no-such-program-x",
    ])
    .ok();
    wait_until(Duration::from_secs(10), "nf in backoff with 127", || {
        deployment(&home, "nf")["last_exit"]["code"] == 127
    });
    let table = home.run(&["deploy", "list"]).ok();
    assert!(
        table.contains("SLUG") && table.contains("code 127"),
        "{table}"
    );

    // SIGKILL of the supervisor: no instance outlives it.
    assert!(!processes_with(&marker).is_empty());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(Duration::from_secs(5), "the instances to die", || {
        processes_with(&marker).is_empty()
    });
    // The next command starts a supervisor again, which brings back every
    // service that was running.
    wait_until(Duration::from_secs(15), "web running again", || {
        deployment(&home, "web")["state"] == "running"
    });
    let second = supervisor_pid(&home.path()).unwrap();
    assert_ne!(first, second);
    let web = deployment(&home, "web");
    assert_eq!(web["instances"][0]["secret_versions"]["TOKEN"], 2, "{web}");
    let sleeping = processes_with(&marker)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        })
        .count();
    assert_eq!(sleeping, 1, "one instance");
}

/// A socket-activated HTTP server: answers each request with its identity,
/// and appends `start <ns>` / `stop <ns>` lines to `events` in the working
/// directory; with `FAIL_ON` equal to its token, it exits at once.
const SERVER: &str = r#"
import os, socket, signal, sys, time
assert os.environ["LISTEN_FDS"] == "1" and os.environ["LISTEN_PID"] == str(os.getpid())
token = os.environ["TOKEN"]
if token == os.environ.get("FAIL_ON"):
    sys.exit(9)
me = f"{os.getpid()}-{time.time_ns()}"
def note(what):
    with open("events", "a") as f:
        f.write(f"{what} {time.time_ns()} {me}\n")
note("start")
s = socket.socket(fileno=3)
s.settimeout(0.1)
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
if os.environ.get("NOTIFY_SOCKET"):
    time.sleep(0.3)
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
print("serving", flush=True)
while not stop:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(5)
    c.recv(1024)
    body = (me + " " + token[-4:]).encode()
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    c.close()
note("stop")
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16) -> Result<String, String> {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    answer
        .split("\r\n\r\n")
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| format!("no body in {answer:?}"))
}

fn python_available(home: &TestHome) -> bool {
    let found = std::process::Command::new("python3")
        .arg("-c")
        .arg("1")
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIP: python3 is not installed");
    }
    let _ = home;
    found
}

fn code_dir() -> tempfile::TempDir {
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("server.py"), SERVER).unwrap();
    code
}

fn events(home: &TestHome, slug: &str) -> Vec<(String, u128, String)> {
    let path = home
        .path()
        .join("deployments")
        .join(slug)
        .join("work/events");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().parse().unwrap(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_rotation_under_continuous_load_through_the_socket_refuses_nothing_and_has_no_gap() {
    let home = TestHome::new();
    if !python_available(&home) {
        return;
    }
    home.set("TOKEN", "sk-live-rotate-0001");
    let code = code_dir();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    home.run(&[
        "deploy",
        "create",
        "api",
        "--template",
        "python-3",
        "--code",
        code.path().to_str().unwrap(),
        "--socket",
        &address,
        "--secret",
        "TOKEN",
        "--replicas",
        "2",
        // Up once it says so (READY=1 after it set up): the timeline below
        // is then exact, however slowly python starts on a loaded machine.
        "--notify",
        "--",
        "python3",
        "server.py",
    ])
    .ok();
    wait_until(Duration::from_secs(15), "two instances up", || {
        deployment(&home, "api")["state"] == "running"
    });
    assert!(get(port).unwrap().ends_with("0001"));

    // Continuous requests while another process writes a new version.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut ok, mut failed, mut new_seen) = (0u32, Vec::new(), 0u32);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match get(port) {
                    Ok(body) => {
                        ok += 1;
                        if body.ends_with("0002") {
                            new_seen += 1;
                        }
                    }
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed, new_seen)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let written = Instant::now();
    home.set("TOKEN", "sk-live-rotate-0002");
    wait_until(
        Duration::from_secs(20),
        "both instances on version 2",
        || {
            let api = deployment(&home, "api");
            let instances = api["instances"].as_array().cloned().unwrap_or_default();
            api["rotation"]["status"] == "succeeded"
                && instances.len() == 2
                && instances
                    .iter()
                    .all(|i| i["secret_versions"]["TOKEN"] == 2 && i["state"] == "running")
        },
    );
    let rolled_in = written.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ok, failed, new_seen) = load.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} refused of {}: {failed:?}",
        failed.len(),
        ok
    );
    assert!(ok > 20 && new_seen > 0, "ok={ok} new={new_seen}");
    eprintln!("rotation: {ok} requests, none refused, rolled in {rolled_in:?}");

    // No gap: each old instance stopped only after a new one had started,
    // and at every moment at least one instance was running.
    let events = events(&home, "api");
    let starts: Vec<_> = events.iter().filter(|e| e.0 == "start").collect();
    let stops: Vec<_> = events.iter().filter(|e| e.0 == "stop").collect();
    assert_eq!((starts.len(), stops.len()), (4, 2), "{events:?}");
    let mut running = 0i32;
    let mut timeline: Vec<(u128, i32)> = events
        .iter()
        .map(|e| (e.1, if e.0 == "start" { 1 } else { -1 }))
        .collect();
    timeline.sort();
    for (at, change) in timeline {
        running += change;
        assert!(
            running >= 1,
            "a moment at {at} with no instance: {events:?}"
        );
    }
    // The k-th stop comes after the k-th replacement started.
    let mut stop_times: Vec<u128> = stops.iter().map(|s| s.1).collect();
    stop_times.sort();
    for (k, at) in stop_times.iter().enumerate() {
        let started_before = starts.iter().filter(|s| s.1 < *at).count();
        assert!(
            started_before > 2 + k,
            "stop {k} came before its replacement: {events:?}"
        );
    }
    let log = log_text(&home, "api");
    assert!(log.contains("rotating to version 2 of TOKEN"), "{log}");
    assert!(!log.contains("sk-live-rotate"), "{log}");
    home.run(&["deploy", "rm", "api"]).ok();
    wait_until(Duration::from_secs(5), "the port to be free", || {
        get(port).is_err()
    });
}

#[test]
fn a_rotation_that_cannot_come_up_keeps_the_old_instance_and_restart_rolls() {
    let home = TestHome::new();
    if !python_available(&home) {
        return;
    }
    home.set("TOKEN", "sk-live-fails-0001");
    let code = code_dir();
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    home.run(&[
        "deploy",
        "create",
        "api",
        "--template",
        "python-3",
        "--code",
        code.path().to_str().unwrap(),
        "--socket",
        &address,
        "--secret",
        "TOKEN",
        "--env",
        "FAIL_ON=sk-live-fails-0002",
        "--notify",
        "--",
        "python3",
        "server.py",
    ])
    .ok();
    wait_until(Duration::from_secs(15), "up through READY=1", || {
        deployment(&home, "api")["state"] == "running"
    });
    assert!(log_text(&home, "api").contains("up (READY=1)"));
    let before = get(port).unwrap();
    home.set("TOKEN", "sk-live-fails-0002");
    wait_until(Duration::from_secs(15), "the rotation to fail", || {
        deployment(&home, "api")["rotation"]["status"] == "failed"
    });
    let api = deployment(&home, "api");
    assert_eq!(api["instances"].as_array().unwrap().len(), 1, "{api}");
    assert_eq!(api["instances"][0]["secret_versions"]["TOKEN"], 1, "{api}");
    assert_eq!(get(port).unwrap(), before, "the old instance keeps serving");
    assert!(home
        .run(&["deploy", "list"])
        .ok()
        .contains("rotation failed"));
    assert!(log_text(&home, "api").contains("failed: the new instance exited before it was up"));
    let audit = home.run(&["--json", "audit"]).ok();
    assert!(
        audit.contains("deployment.rotate") && audit.contains("error"),
        "{audit}"
    );
    // Not retried on the same versions; `deploy restart` after a fix rolls.
    home.set("TOKEN", "sk-live-fails-0003");
    wait_until(
        Duration::from_secs(15),
        "the next version to roll in",
        || get(port).is_ok_and(|body| body.ends_with("0003")),
    );
    let first = get(port).unwrap();
    home.run(&["deploy", "restart", "api"]).ok();
    wait_until(Duration::from_secs(15), "a restarted instance", || {
        get(port).is_ok_and(|body| body != first)
    });
    // Stop and start.
    home.run(&["deploy", "stop", "api"]).ok();
    wait_until(Duration::from_secs(15), "stopped", || {
        let api = deployment(&home, "api");
        api["state"] == "stopped" && api["instances"].as_array().unwrap().is_empty()
    });
    home.run(&["deploy", "start", "api"]).ok();
    wait_until(Duration::from_secs(15), "running again", || {
        deployment(&home, "api")["state"] == "running"
    });
}

#[test]
fn bad_input_is_refused_before_anything_starts() {
    let home = TestHome::new();
    home.set("TOKEN", "sk-live-bad-input-01");
    // Flag errors are found before any supervisor is started.
    for (args, needle) in [
        (vec!["Bad_Slug"], "invalid slug"),
        (vec!["ok", "--socket", "8080"], "invalid --socket"),
        (vec!["ok", "--code", "/nonexistent-dir-x"], "--code"),
        (vec!["ok", "--ready-after=-1"], "--ready-after"),
    ] {
        let mut full = vec!["deploy", "create"];
        full.extend(args.iter().copied());
        full.extend(["--template", "bash", "--", "true"]);
        let run = home.run(&full);
        run.fails_with(2);
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    assert!(supervisor_pid(&home.path()).is_none());
    // What only the store or the host can tell.
    let taken = free_port();
    let _holder = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
    let taken = format!("127.0.0.1:{taken}");
    for (args, needle, code) in [
        (
            vec!["--template", "no-such-template"],
            "no-such-template",
            2,
        ),
        (
            vec!["--template", "bash", "--secret", "MISSING"],
            "MISSING",
            2,
        ),
        (
            vec!["--template", "bash", "--socket", taken.as_str()],
            taken.as_str(),
            2,
        ),
    ] {
        let mut full = vec!["deploy", "create", "ok"];
        full.extend(args.iter().copied());
        full.extend(["--", "true"]);
        let run = home.run(&full);
        run.fails_with(code);
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    let list = home.run(&["--json", "deploy", "list"]).json();
    assert_eq!(list["deployments"], serde_json::json!([]));
    home.run(&[
        "deploy",
        "create",
        "once",
        "--template",
        "bash",
        "--",
        "sleep",
        "30",
    ])
    .ok();
    let again = home.run(&[
        "deploy",
        "create",
        "once",
        "--template",
        "bash",
        "--",
        "true",
    ]);
    again.fails_with(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    home.run(&["deploy", "stop", "nope"]).fails_with(1);
}

#[test]
fn commands_racing_to_start_a_supervisor_start_exactly_one() {
    let home = TestHome::new();
    home.set("TOKEN", "sk-live-race-000001");
    let racers: Vec<_> = (0..4)
        .map(|_| {
            home.command(&["deploy", "list"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for racer in racers {
        let out = racer.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let marker = home.path().display().to_string();
    wait_until(Duration::from_secs(5), "the losers to exit", || {
        processes_with(&marker)
            .iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(11).any(|w| w == b"--no-listen"))
            })
            .count()
            == 1
    });
    let socket = home.path().join("shroud.sock");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

/// `shroud serve` as the supervisor, its TCP port for the API.
fn serve(home: &TestHome, flags: &[&str]) -> (std::process::Child, u16, ServerLog) {
    start_server_with(home, flags)
}

fn agent_runs_over_the_cli_and_the_api_with_grants() {
    let home = TestHome::new();
    home.set("TOKEN", "sk-live-agent-00001");
    let (mut server, port, _log) = serve(&home, &["--max-agent-runs", "2"]);
    let writer = home.create_token("writer", &["--grant", "default:write"]);
    let reader = home.create_token("reader", &["--grant", "default:read"]);
    let stranger = home.create_token("stranger", &["--grant", "other:write"]);
    let tag = format!("agent-{}", unique());
    let script = format!("read -r line; echo \"in: $line\"; echo \"tok: $TOKEN\"; echo \"id: $SHROUD_RUN_ID\"; echo warn >&2; : {tag}; exit ${{CODE:-0}}");
    // Created over the API by a token with read on the vault.
    let created = api(
        port,
        "POST",
        "/api/deployments",
        Some(&reader),
        Some(serde_json::json!({
            "templateSlug": "bash",
            "apiSlug": "bot",
            "mode": "agent",
            "secrets": ["TOKEN"],
            "env": {"CODE": "5"},
            "command": ["bash", "-c", &script],
        })),
    );
    assert_eq!(created.0, 200, "{:?}", created.1);
    assert_eq!(created.1["slug"], "bot");
    // No process until a run.
    assert!(processes_with(&tag).is_empty());

    // Over the CLI (the socket): the output streams, the code is the run's.
    let run = home.run(&[
        "agent",
        "run",
        "bot",
        "--message",
        "hello",
        "--param",
        "k=v",
    ]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let out = run.stdout_text();
    assert!(
        out.contains("\"message\":\"hello\"") && out.contains("\"k\":\"v\""),
        "{out}"
    );
    assert!(out.contains("tok: <secret:token>"), "{out}");
    assert!(!out.contains("sk-live-agent"), "{out}");
    assert!(run.stderr.contains("warn"), "{}", run.stderr);
    let runs = home.run(&["--json", "agent", "runs", "bot"]).json();
    let run_id = runs["runs"][0]["run_id"].as_str().unwrap().to_owned();
    assert!(out.contains(&format!("id: {run_id}")), "{out}");
    assert_eq!(runs["runs"][0]["status"], "failed");
    let log = home.run(&["agent", "log", &run_id]).ok();
    assert!(log.contains("tok: <secret:token>"), "{log}");

    // Over the API: ?wait=true answers with the ended run.
    let waited = api(
        port,
        "POST",
        "/api/agents/bot/runs?wait=true",
        Some(&reader),
        Some(serde_json::json!({"message": "m2", "params": {"x": 1}})),
    );
    assert_eq!(waited.0, 200, "{:?}", waited.1);
    assert_eq!(waited.1["status"], "failed");
    assert_eq!(waited.1["exit_code"], 5);
    assert!(waited.1["log"].as_str().unwrap().contains("in: {"));
    let id = waited.1["run_id"].as_str().unwrap().to_owned();
    // Reading runs needs write on the vault; a token with no grant there
    // does not learn the run or the deployment exist.
    assert_eq!(
        api(port, "GET", &format!("/api/runs/{id}"), Some(&writer), None).0,
        200
    );
    assert_eq!(
        api(port, "GET", &format!("/api/runs/{id}"), Some(&reader), None).0,
        403
    );
    assert_eq!(
        api(
            port,
            "GET",
            &format!("/api/runs/{id}"),
            Some(&stranger),
            None
        )
        .0,
        404
    );
    assert_eq!(
        api(
            port,
            "POST",
            "/api/agents/bot/runs",
            Some(&stranger),
            Some(serde_json::json!({}))
        )
        .0,
        404
    );
    assert_eq!(
        api(
            port,
            "POST",
            "/api/deployments/bot/stop",
            Some(&reader),
            None
        )
        .0,
        403
    );
    let listed = api(port, "GET", "/api/deployments", Some(&stranger), None);
    assert_eq!(listed.1["deployments"], serde_json::json!([]));

    // Code from <home>/runtimes/<runtimeSlug>; a slug that walks out is refused.
    std::fs::create_dir_all(home.path().join("runtimes/rt1")).unwrap();
    std::fs::write(
        home.path().join("runtimes/rt1/hello.txt"),
        "from the runtime",
    )
    .unwrap();
    let created = api(
        port,
        "POST",
        "/api/deployments",
        Some(&writer),
        Some(serde_json::json!({
            "runtimeSlug": "rt1",
            "templateSlug": "bash",
            "apiSlug": "reader-bot",
            "mode": "agent",
            "command": ["cat", "hello.txt"],
        })),
    );
    assert_eq!(created.0, 200, "{:?}", created.1);
    let waited = api(
        port,
        "POST",
        "/api/agents/reader-bot/runs?wait=true",
        Some(&writer),
        Some(serde_json::json!({})),
    );
    assert_eq!(waited.1["status"], "succeeded", "{:?}", waited.1);
    assert!(waited.1["log"]
        .as_str()
        .unwrap()
        .contains("from the runtime"));
    for bad in ["../rt1", "/etc", "rt1/../../x"] {
        let refused = api(
            port,
            "POST",
            "/api/deployments",
            Some(&writer),
            Some(serde_json::json!({
                "runtimeSlug": bad,
                "templateSlug": "bash",
                "apiSlug": "evil",
                "command": ["true"],
            })),
        );
        assert_eq!(refused.0, 400, "{bad}: {:?}", refused.1);
    }
    // A token names no Unix socket path of the host: `unix:NAME` only,
    // made under <home>/sockets/.
    let planted = tempfile::tempdir().unwrap();
    let path = planted.path().join("planted.sock");
    let refused = api(
        port,
        "POST",
        "/api/deployments",
        Some(&writer),
        Some(serde_json::json!({
            "templateSlug": "bash",
            "apiSlug": "sock",
            "sockets": [format!("unix:{}", path.display())],
            "command": ["sleep", "1000"],
        })),
    );
    assert_eq!(refused.0, 400, "{:?}", refused.1);
    assert!(!path.exists());
    let named = api(
        port,
        "POST",
        "/api/deployments",
        Some(&writer),
        Some(serde_json::json!({
            "templateSlug": "bash",
            "apiSlug": "sock",
            "sockets": ["unix:web-sock"],
            "command": ["sleep", "1000"],
        })),
    );
    assert_eq!(named.0, 200, "{:?}", named.1);
    assert!(home.path().join("sockets/web-sock").exists());
    // `code` (a path of the host) is for the local CLI only.
    let refused = api(
        port,
        "POST",
        "/api/deployments",
        Some(&writer),
        Some(serde_json::json!({
            "code": "/etc",
            "templateSlug": "bash",
            "apiSlug": "evil",
            "command": ["true"],
        })),
    );
    assert_eq!(refused.0, 400, "{:?}", refused.1);

    // A timeout, and the bound on parallel runs (429 beyond).
    let marker = format!("30.{}", unique());
    home.run(&[
        "deploy",
        "create",
        "slow",
        "--template",
        "bash",
        "--mode",
        "agent",
        "--",
        "sleep",
        &marker,
    ])
    .ok();
    let timed = home.run(&["agent", "run", "slow", "--timeout", "0.5"]);
    assert_eq!(timed.code, 124, "{}", timed.stderr);
    let runs = home.run(&["--json", "agent", "runs", "slow"]).json();
    assert_eq!(runs["runs"][0]["status"], "timed_out");
    let started: Vec<_> = (0..2)
        .map(|_| {
            api(
                port,
                "POST",
                "/api/agents/slow/runs",
                Some(&writer),
                Some(serde_json::json!({})),
            )
        })
        .collect();
    assert!(started.iter().all(|r| r.0 == 200), "{started:?}");
    let third = api(
        port,
        "POST",
        "/api/agents/slow/runs",
        Some(&writer),
        Some(serde_json::json!({})),
    );
    assert_eq!(third.0, 429, "{:?}", third.1);
    // Runs go with their supervisor.
    server.kill().unwrap();
    server.wait().unwrap();
    wait_until(Duration::from_secs(5), "the runs to die", || {
        processes_with(&marker).is_empty()
    });
}

#[test]
fn the_socket_refuses_other_users() {
    let home = TestHome::new();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root to connect as another user");
        return;
    }
    let (_server, _port, _log) = serve(&home, &[]);
    let socket = home.path().join("shroud.sock");
    wait_until(Duration::from_secs(5), "the socket", || socket.exists());
    // Even with the file's mode opened up, another uid is dropped at accept.
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "python3", "-c"])
        .arg(format!(
            "import socket; s=socket.socket(socket.AF_UNIX); s.connect({:?}); s.sendall(b'GET /api/deployments HTTP/1.0\\r\\n\\r\\n'); print(repr(s.recv(100)))",
            socket.display().to_string()
        ))
        .output();
    let Ok(out) = out else {
        eprintln!("SKIP: setpriv or python3 missing");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("200"), "another user got an answer: {text}");
    let _ = Path::new("");
}

#[test]
fn an_instance_cannot_make_the_supervisor_chown_through_a_link_in_its_directory() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: as a user, the supervisor chowns nothing (sandboxes run as that user)");
        return;
    }
    let home = TestHome::new();
    let victim = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        victim.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // The first instance swaps .shroud (where $NOTIFY_SOCKET is made) for
    // a link to a host directory; the next one would be made there.
    let script = format!(
        "if [ ! -e once ]; then touch once; rm -rf .shroud; ln -s {} .shroud; exit 1; fi; sleep 1000",
        victim.path().display()
    );
    home.run(&[
        "deploy",
        "create",
        "esc",
        "--template",
        "bash",
        "--notify",
        "--",
        "bash",
        "-c",
        &script,
    ])
    .ok();
    // The second instance gets a `.shroud` of its own again (the link is
    // removed, never followed) and comes up.
    wait_until(Duration::from_secs(10), "a second start", || {
        deployment(&home, "esc")["restarts"].as_u64().unwrap_or(0) >= 1
    });
    // (The restart is counted when it is scheduled; the instance comes up
    // after its backoff, later on a loaded machine.)
    let work = home.path().join("deployments/esc/work/.shroud");
    wait_until(
        Duration::from_secs(20),
        "the second instance to start",
        || std::fs::symlink_metadata(&work).is_ok_and(|m| m.file_type().is_dir()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let meta = std::fs::metadata(victim.path()).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        0,
        "the host directory was given away"
    );
    assert_eq!(
        std::fs::read_dir(victim.path()).unwrap().count(),
        0,
        "a socket was made there"
    );
    let kind = std::fs::symlink_metadata(&work).unwrap().file_type();
    assert!(
        kind.is_dir(),
        "the link was replaced by a directory of its own"
    );
}

#[test]
fn two_creates_of_one_slug_at_once_leave_the_winner_whole() {
    let home = TestHome::new();
    home.set("TOKEN", "sk-live-race-create-1");
    let code = tempfile::tempdir().unwrap();
    std::fs::write(code.path().join("app.txt"), "the app").unwrap();
    // A supervisor first, so both creates reach the same one at once.
    home.run(&["deploy", "list"]).ok();
    let racers: Vec<_> = (0..2)
        .map(|_| {
            home.command(&[
                "deploy",
                "create",
                "race",
                "--template",
                "bash",
                "--code",
                code.path().to_str().unwrap(),
                "--",
                "bash",
                "-c",
                "cat app.txt; echo; exec sleep 1000",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outcomes: Vec<_> = racers
        .into_iter()
        .map(|r| r.wait_with_output().unwrap())
        .collect();
    let won = outcomes.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "{outcomes:?}");
    let lost = outcomes.iter().find(|o| !o.status.success()).unwrap();
    assert!(String::from_utf8_lossy(&lost.stderr).contains("already exists"));
    assert!(home.path().join("deployments/race/work/app.txt").is_file());
    wait_until(Duration::from_secs(10), "the app's output", || {
        log_text(&home, "race").contains("the app")
    });
}

#[test]
fn runs_cut_short_by_a_dead_supervisor_end_cancelled_and_slots_are_given_back() {
    let home = TestHome::new();
    let marker = format!("40.{}", unique());
    home.run(&[
        "deploy",
        "create",
        "bot",
        "--template",
        "bash",
        "--mode",
        "agent",
        "--",
        "sleep",
        &marker,
    ])
    .ok();
    let mut run = home
        .command(&["agent", "run", "bot"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), "the run to start", || {
        !processes_with(&marker).is_empty()
    });
    let pid = supervisor_pid(&home.path()).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The CLI following the run does not hang: it says the stream ended.
    let status = run.wait().unwrap();
    assert!(!status.success());
    wait_until(Duration::from_secs(5), "the run's process to die", || {
        processes_with(&marker).is_empty()
    });
    // The next supervisor ends the run as cancelled.
    let runs = home.run(&["--json", "agent", "runs", "bot"]).json();
    assert_eq!(runs["runs"][0]["status"], "cancelled", "{runs}");
    let id = runs["runs"][0]["run_id"].as_str().unwrap().to_owned();
    let log = home.run(&["agent", "log", &id]);
    assert!(log.stderr.contains("cancelled"), "{}", log.stderr);
    // A removed deployment's running run gives its slot back and stays removed.
    let (mut server, port, _log) = {
        let pid = supervisor_pid(&home.path()).unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        wait_until(Duration::from_secs(15), "the supervisor to stop", || {
            supervisor_pid(&home.path()).is_none()
        });
        serve(&home, &["--max-agent-runs", "1"])
    };
    let token = home.create_token("ops", &["--grant", "default:write"]);
    let started = api(
        port,
        "POST",
        "/api/agents/bot/runs",
        Some(&token),
        Some(serde_json::json!({})),
    );
    assert_eq!(started.0, 200, "{:?}", started.1);
    let removed = api(port, "DELETE", "/api/deployments/bot", Some(&token), None);
    assert_eq!(removed.0, 200, "{:?}", removed.1);
    home.run(&[
        "deploy",
        "create",
        "bot2",
        "--template",
        "bash",
        "--mode",
        "agent",
        "--",
        "true",
    ])
    .ok();
    wait_until(Duration::from_secs(20), "the slot to be given back", || {
        home.run(&["agent", "run", "bot2"]).code == 0
    });
    let runs = home.run(&["--json", "agent", "runs", "bot2"]).json();
    assert!(runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["slug"] == "bot2"));
    let gone = api(
        port,
        "GET",
        &format!("/api/runs/{}", started.1["run_id"].as_str().unwrap()),
        Some(&token),
        None,
    );
    assert_eq!(gone.0, 404, "{:?}", gone.1);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn the_background_supervisor_keeps_no_descriptor_of_the_command_that_started_it() {
    let home = TestHome::new();
    let (read, write) = nix::unistd::pipe().unwrap();
    // An inheritable descriptor (no close-on-exec), as a make jobserver's.
    let mut command = home.command(&["deploy", "list"]);
    let write_fd = std::os::fd::AsRawFd::as_raw_fd(&write);
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            nix::unistd::dup2(write_fd, 7)
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let out = home.run_with(command, None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(supervisor_pid(&home.path()).is_some());
    drop(write);
    // Every write end is closed: the read end sees end of file at once.
    let mut file = std::fs::File::from(read);
    let mut buf = Vec::new();
    let reader = std::thread::spawn(move || file.read_to_end(&mut buf).map(|_| ()));
    wait_until(Duration::from_secs(5), "end of file on the pipe", || {
        reader.is_finished()
    });
}

#[test]
fn deleting_the_pid_file_does_not_let_a_second_supervisor_in() {
    let home = TestHome::new();
    home.run(&["deploy", "list"]).ok();
    let first = supervisor_pid(&home.path()).unwrap();
    std::fs::remove_file(home.path().join("supervisor.lock")).unwrap();
    let second = home.run(&["serve", "--no-listen"]);
    assert_eq!(second.code, 0);
    assert!(second.stderr.contains("already runs"), "{}", second.stderr);
    assert!(Path::new(&format!("/proc/{first}")).exists());
    assert!(home.path().join("shroud.sock").exists());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    );
}
