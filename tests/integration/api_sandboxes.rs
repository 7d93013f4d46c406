//! The sandbox routes of the HTTP API: status codes through the router with
//! `oneshot`, and runs (buffered, streamed, cancelled by a client that goes
//! away) against a real `shroud serve` on 127.0.0.1 with real namespaces.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use http_body_util::BodyExt;
use shroud::api::{router, ApiState};
use tower::ServiceExt;

use super::api::{http, request, runtime, start_server, start_server_with};
use crate::support::{shroud_binary, TestHome};

const VALUE: &str = "sk-api-sandboxed-5a4b3c2d";
const EXTRA: &str = "extra-secret-value-77aa";

/// A home with secrets API_KEY and EXTRA (vault `default`), a token `agent`
/// and a token `other` (both `default:read`), and `writer` (`ci:write`).
struct Setup {
    home: TestHome,
    agent: String,
    other: String,
    writer: String,
}

fn setup() -> Setup {
    let home = TestHome::new();
    home.set("API_KEY", VALUE);
    home.set("EXTRA", EXTRA);
    let templates = home.path().join("sandbox-templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("exotic.toml"),
        "[runtime]\ninterpreter = \"no-such-interpreter-xyz\"\n",
    )
    .unwrap();
    let agent = home.create_token("agent", &["--grant", "default:read"]);
    let other = home.create_token("other", &["--grant", "default:read"]);
    let writer = home.create_token("writer", &["--grant", "ci:write"]);
    Setup {
        home,
        agent,
        other,
        writer,
    }
}

async fn call(
    home: &TestHome,
    method: &str,
    uri: &str,
    token: &str,
    json: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let state = ApiState::with_shroud_binary(
        home.path(),
        None,
        home.store_location(),
        shroud_binary().into(),
    );
    let response = router(state)
        .oneshot(request(method, uri, Some(token), json))
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Polls `check` every 50 ms until it gives a value; panics after `limit`
/// (a bound on a hang, not a timing assertion).
fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let give_up = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < give_up, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn last_exit(home: &TestHome, id: &str) -> Option<i64> {
    let listed = home.run(&["--json", "sandbox", "list"]).json();
    listed["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .and_then(|s| s["last_exit"].as_i64())
}

fn workdir(home: &TestHome, id: &str) -> std::path::PathBuf {
    home.path().join("sandboxes").join(id).join("work")
}

/// A real server and a sandbox created through it by `agent` with `body`.
fn serve_with_sandbox(
    s: &Setup,
    body: &str,
) -> (std::process::Child, u16, crate::api::ServerLog, String) {
    let (server, port, log) = start_server(&s.home);
    let (status, created) = http(port, "POST", "/api/sandboxes", &s.agent, Some(body));
    assert_eq!(status, 200, "{created}");
    let id = json(&created)["id"].as_str().unwrap().to_owned();
    (server, port, log, id)
}

/// A buffered exec by `agent`: the JSON result.
fn exec_buffered(port: u16, s: &Setup, id: &str, body: &str) -> serde_json::Value {
    let (status, text) = http(
        port,
        "POST",
        &format!("/api/sandboxes/{id}/exec"),
        &s.agent,
        Some(body),
    );
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains(VALUE) && !text.contains(EXTRA), "{text}");
    json(&text)
}

fn create_exec_and_delete_answer_with_the_right_status_codes() {
    let s = setup();
    runtime().block_on(async {
        let home = &s.home;
        // Create: read on the vault needed; bad input is a 400 naming it.
        let (status, body) = call(
            home,
            "POST",
            "/api/sandboxes",
            &s.writer,
            Some(r#"{"template":"bash"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        // What the request names and is not there: 404, naming it.
        for (missing, names) in [
            (r#"{"template":"no-such-template"}"#, "no-such-template"),
            (r#"{"template":"bash","secrets":["MISSING"]}"#, "MISSING"),
        ] {
            let (status, body) =
                call(home, "POST", "/api/sandboxes", &s.agent, Some(missing)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {body}");
            assert!(body["error"].as_str().unwrap().contains(names), "{body}");
        }
        for (bad, names) in [
            (r#"{"template":"bash","secrets":["1X=API_KEY"]}"#, "1X"),
            (r#"{"template":"bash","env":{"BAD NAME":"v"}}"#, "BAD NAME"),
            (r#"{"template":"bash","vault":"../etc"}"#, "vault"),
            // What the host cannot give, with `strict`: refused, naming it.
            (
                r#"{"template":"exotic","strict":true}"#,
                "strict: this host cannot give",
            ),
        ] {
            let (status, body) = call(home, "POST", "/api/sandboxes", &s.agent, Some(bad)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(names), "{bad}: {error}");
        }
        assert!(
            home.run(&["sandbox", "list"]).ok().is_empty(),
            "nothing created"
        );
        let left = std::fs::read_dir(home.path().join("sandboxes"))
            .map(|dir| dir.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "no working directory left behind");

        let (status, created) = call(
            home,
            "POST",
            "/api/sandboxes",
            &s.agent,
            Some(r#"{"template":"bash","secrets":["API_KEY"]}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["template"], "bash");
        assert!(created["isolation"].as_array().unwrap().len() >= 5);

        // Listing: each token sees its own.
        let (status, listed) = call(home, "GET", "/api/sandboxes", &s.agent, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed["sandboxes"].as_array().unwrap().len(), 1, "{listed}");
        assert_eq!(listed["sandboxes"][0]["id"], id.as_str());
        assert_eq!(listed["sandboxes"][0]["last_exit"], serde_json::Value::Null);
        let (_, listed) = call(home, "GET", "/api/sandboxes", &s.other, None).await;
        assert_eq!(listed["sandboxes"], serde_json::json!([]));

        // Exec: only the owner; bad requests are 400 with nothing run.
        let exec = format!("/api/sandboxes/{id}/exec");
        let (status, _) = call(
            home,
            "POST",
            &exec,
            &s.other,
            Some(r#"{"command":["true"]}"#),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "another token's sandbox");
        let (status, _) = call(
            home,
            "POST",
            "/api/sandboxes/00000000-0000-0000-0000-000000000000/exec",
            &s.agent,
            Some(r#"{"command":["true"]}"#),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        for bad in [
            r#"{"command":[]}"#,
            r#"{"command":[""]}"#,
            r#"{"command":["true"],"timeout_ms":0}"#,
            r#"{"command":["true"],"mask":"blur"}"#,
            r#"{"command":""}"#,
        ] {
            let (status, body) = call(home, "POST", &exec, &s.agent, Some(bad)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
        // A granted secret that is not there: 404, naming it.
        let (status, body) = call(
            home,
            "POST",
            &exec,
            &s.agent,
            Some(r#"{"command":["true"],"secrets":["NOPE"]}"#),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body["error"].as_str().unwrap().contains("NOPE"), "{body}");
        assert_eq!(last_exit(home, &id), None, "nothing ran");

        // A run through the router itself, buffered.
        let (status, ran) = call(
            home,
            "POST",
            &exec,
            &s.agent,
            Some(r#"{"command":["sh","-c","echo $API_KEY; exit 7"]}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{ran}");
        assert_eq!(ran["exit_code"], 7);
        assert_eq!(ran["stdout"], "<secret:api_key>\n");

        // Delete: only the owner; then it is gone with its files.
        let path = format!("/api/sandboxes/{id}");
        let (status, _) = call(home, "DELETE", &path, &s.other, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(workdir(home, &id).is_dir());
        let (status, body) = call(home, "DELETE", &path, &s.agent, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["deleted"], true);
        assert!(!home.path().join("sandboxes").join(&id).exists());
        let deleted: Vec<(String, String)> = home.query_pairs(&format!(
            "SELECT action, actor FROM audit WHERE secret = '{id}' AND action = 'sandbox.delete'"
        ));
        assert_eq!(deleted, [("sandbox.delete".to_owned(), "agent".to_owned())]);
        let (status, _) = call(home, "DELETE", &path, &s.agent, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(
            home,
            "POST",
            &exec,
            &s.agent,
            Some(r#"{"command":["true"]}"#),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    });
}

#[test]
fn a_server_shutting_down_refuses_new_commands_with_503() {
    let s = setup();
    runtime().block_on(async {
        let (status, created) = call(
            &s.home,
            "POST",
            "/api/sandboxes",
            &s.agent,
            Some(r#"{"template":"bash"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let id = created["id"].as_str().unwrap();
        let state = ApiState::with_shroud_binary(
            s.home.path(),
            None,
            s.home.store_location(),
            shroud_binary().into(),
        );
        state.begin_shutdown();
        let response = router(state)
            .oneshot(request(
                "POST",
                &format!("/api/sandboxes/{id}/exec"),
                Some(&s.agent),
                Some(r#"{"command":["true"]}"#),
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(last_exit(&s.home, id), None, "nothing ran");
    });
}

#[test]
fn a_panicking_handler_is_a_bare_500_and_the_router_goes_on() {
    runtime().block_on(async {
        async fn boom() -> &'static str {
            panic!("internal detail: /secret/path line 42");
        }
        async fn fine() -> &'static str {
            "fine"
        }
        let app = shroud::api::with_layers(
            axum::Router::new()
                .route("/boom", axum::routing::get(boom))
                .route("/fine", axum::routing::get(fine)),
        );
        let get = |uri: &str| {
            axum::http::Request::builder()
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let response = app.clone().oneshot(get("/boom")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("detail") && !text.contains("42"), "{text}");
        assert_eq!(json(&text)["error"], "internal error");
        let response = app.oneshot(get("/fine")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    });
}

fn a_real_server_runs_sandbox_commands_masked_with_the_cli_exit_codes() {
    let s = setup();
    let (mut server, port, mut log, id) = serve_with_sandbox(
        &s,
        r#"{"template":"bash","secrets":["API_KEY"],"env":{"MODE":"api"}}"#,
    );
    let exec = |body: &str| exec_buffered(port, &s, &id, body);

    let ran = exec(
        r#"{"command":["sh","-c","echo $MODE $API_KEY; echo err $EXTRA_KEY >&2; exit 3"],"secrets":["EXTRA_KEY=EXTRA"],"env":{"MODE":"per-exec"}}"#,
    );
    assert_eq!(ran["exit_code"], 3);
    assert_eq!(ran["stdout"], "per-exec <secret:api_key>\n");
    assert_eq!(ran["stderr"], "err <secret:extra>\n");
    assert!(ran["duration_ms"].as_u64().is_some());
    assert_eq!(ran["timed_out"], false);

    let starred = exec(r#"{"command":["sh","-c","echo $API_KEY"],"mask":"stars"}"#);
    assert_eq!(starred["stdout"], "********\n");
    let missing = exec(r#"{"command":["no-such-program-xyz"]}"#);
    assert_eq!(missing["exit_code"], 127, "{missing}");
    let killed = exec(r#"{"command":["sh","-c","kill -TERM $$"]}"#);
    assert_eq!(killed["exit_code"], 128 + 15, "{killed}");
    assert_eq!(killed["signal"], 15, "{killed}");
    let timed = exec(r#"{"command":["sleep","30"],"timeout_ms":300}"#);
    assert_eq!(timed["exit_code"], 124, "{timed}");
    assert_eq!(timed["timed_out"], true);
    // The caller's environment shapes the command only, never shroud's own
    // init (root until it drops to the sandbox's uid): the loader names a
    // missing LD_PRELOAD once per process it starts, here `true` alone.
    let preload =
        exec(r#"{"command":["true"],"env":{"LD_PRELOAD":"/nonexistent/preload-xyz.so"}}"#);
    let stderr = preload["stderr"].as_str().unwrap();
    assert_eq!(stderr.matches("preload-xyz.so").count(), 1, "{stderr}");
    // stdin: what the request gives, then end of file (nothing without it);
    // 600 KB (over a pipe's buffer) arrives whole, and a command that does
    // not read it still ends.
    let fed = exec(r#"{"command":["sh","-c","wc -l; echo $API_KEY"],"stdin":"one\ntwo\nthree\n"}"#);
    assert_eq!(fed["stdout"], "3\n<secret:api_key>\n", "{fed}");
    assert_eq!(exec(r#"{"command":["wc","-c"]}"#)["stdout"], "0\n");
    let big = "x".repeat(600_000);
    let counted = exec(&format!(r#"{{"command":["wc","-c"],"stdin":"{big}"}}"#));
    assert_eq!(counted["stdout"], "600000\n", "{}", counted["stderr"]);
    let ignored = exec(&format!(r#"{{"command":["true"],"stdin":"{big}"}}"#));
    assert_eq!(ignored["exit_code"], 0);
    // Output that is not UTF-8 comes whole as base64 too; text does not.
    let binary = exec(r#"{"command":["printf","\\377\\376ok"]}"#);
    assert_eq!(binary["stdout_base64"], "//5vaw==", "{binary}");
    assert!(binary.get("stderr_base64").is_none(), "{binary}");
    assert!(ran.get("stdout_base64").is_none());
    // Files persist between execs, as with the CLI.
    exec(r#"{"command":["sh","-c","echo kept > note.txt"]}"#);
    assert_eq!(
        exec(r#"{"command":["cat","note.txt"]}"#)["stdout"],
        "kept\n"
    );
    assert_eq!(last_exit(&s.home, &id), Some(0));

    // Every injection is audited under the token's name.
    let injected: Vec<(String, String)> = s
        .home
        .query_pairs("SELECT actor, secret FROM audit WHERE action = 'secret.inject'");
    assert!(injected.len() >= 8, "{injected:?}");
    assert!(injected.iter().all(|(actor, _)| actor == "agent"));
    assert!(injected.iter().any(|(_, secret)| secret == "EXTRA"));
    let events: Vec<(String, String)> = s.home.query_pairs(&format!(
        "SELECT action, actor FROM audit WHERE secret = '{id}' ORDER BY seq"
    ));
    assert_eq!(events[0], ("sandbox.create".to_owned(), "agent".to_owned()));
    assert_eq!(
        events.len(),
        1 + 13,
        "one sandbox.exec per command: {events:?}"
    );
    assert!(events[1..]
        .iter()
        .all(|(action, actor)| action == "sandbox.exec" && actor == "agent"));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.wait().unwrap().success());
    let rest = log.rest();
    assert!(
        !rest.contains(VALUE) && !rest.contains(EXTRA) && !rest.contains(&s.agent),
        "a value or token in the server log: {rest}"
    );
}

/// POSTs `body` and returns the streaming response.
async fn post_stream(port: u16, path: &str, token: &str, body: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// Reads the response up to the next full line.
async fn next_line(response: &mut reqwest::Response, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            return Some(String::from_utf8(line).unwrap());
        }
        match response.chunk().await.unwrap() {
            Some(bytes) => pending.extend_from_slice(&bytes),
            None => return None,
        }
    }
}

#[test]
fn a_streamed_exec_sends_json_lines_while_the_command_runs() {
    let s = setup();
    let (mut server, port, _log, id) =
        serve_with_sandbox(&s, r#"{"template":"bash","secrets":["API_KEY"]}"#);
    let go = workdir(&s.home, &id).join("go");
    runtime().block_on(async {
        // The command waits for a file the test writes only after it has
        // read the first line: the line must come while the command runs.
        let command = r#"{"stream":true,"command":["sh","-c","echo ready; while [ ! -f go ]; do sleep 0.02; done; echo $API_KEY; echo warn >&2; exit 4"]}"#;
        let mut response =
            post_stream(port, &format!("/api/sandboxes/{id}/exec"), &s.agent, command).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "application/x-ndjson"
        );
        let mut pending = Vec::new();
        let first = json(&next_line(&mut response, &mut pending).await.unwrap());
        assert_eq!(first["stream"], "stdout");
        assert_eq!(first["data"], "ready\n");
        assert!(first["ts"].as_str().unwrap().ends_with('Z'));
        std::fs::write(&go, "").unwrap();
        let mut lines = Vec::new();
        while let Some(line) = next_line(&mut response, &mut pending).await {
            assert!(!line.contains(VALUE), "{line}");
            lines.push(json(&line));
        }
        let exit = lines.pop().expect("an exit event");
        assert_eq!(exit["event"], "exit");
        assert_eq!(exit["code"], 4);
        assert!(exit["duration_ms"].as_u64().is_some());
        let text = |stream: &str| -> String {
            lines
                .iter()
                .filter(|l| l["stream"] == stream)
                .map(|l| l["data"].as_str().unwrap())
                .collect()
        };
        assert_eq!(text("stdout"), "<secret:api_key>\n");
        assert_eq!(text("stderr"), "warn\n");
    });
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_client_that_goes_away_kills_its_command() {
    let s = setup();
    let (mut server, port, _log, id) = serve_with_sandbox(&s, r#"{"template":"bash"}"#);
    let exec = format!("/api/sandboxes/{id}/exec");

    // Streamed: drop the response after the first line.
    runtime().block_on(async {
        let command = r#"{"stream":true,"command":["sh","-c","echo started; sleep 120"]}"#;
        let mut response = post_stream(port, &exec, &s.agent, command).await;
        let mut pending = Vec::new();
        let first = next_line(&mut response, &mut pending).await.unwrap();
        assert!(first.contains("started"), "{first}");
        drop(response);
    });
    // Killed (SIGKILL: 137), long before its 120 s.
    let code = eventually(Duration::from_secs(30), "the streamed run to end", || {
        last_exit(&s.home, &id)
    });
    assert_eq!(code, 128 + 9);

    // Buffered: close the connection while the command runs.
    let (_, body) = http(
        port,
        "POST",
        &exec,
        &s.agent,
        Some(r#"{"command":["true"]}"#),
    );
    assert_eq!(json(&body)["exit_code"], 0);
    assert_eq!(last_exit(&s.home, &id), Some(0));
    let started = workdir(&s.home, &id).join("started");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = r#"{"command":["sh","-c","touch started; sleep 120; exit 3"]}"#;
    write!(
        stream,
        "POST {exec} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.agent,
        body.len()
    )
    .unwrap();
    eventually(Duration::from_secs(30), "the buffered run to start", || {
        started.exists().then_some(())
    });
    drop(stream);
    let code = eventually(Duration::from_secs(30), "the buffered run to end", || {
        last_exit(&s.home, &id).filter(|&code| code != 0)
    });
    assert_eq!(code, 128 + 9, "killed, not finished with 3");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn shutting_down_the_server_ends_running_commands_and_answers_their_clients() {
    let s = setup();
    let (mut server, port, _log, id) = serve_with_sandbox(&s, r#"{"template":"bash"}"#);
    let started = workdir(&s.home, &id).join("started");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = r#"{"command":["sh","-c","touch started; sleep 120"]}"#;
    write!(
        stream,
        "POST /api/sandboxes/{id}/exec HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.agent,
        body.len()
    )
    .unwrap();
    eventually(Duration::from_secs(30), "the command to start", || {
        started.exists().then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // The client still gets its answer (a read timeout bounds a hang).
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let result = json(response.split_once("\r\n\r\n").unwrap().1);
    assert_eq!(result["exit_code"], 128 + 9, "{result}");
    assert_eq!(result["cancelled"], true);
    assert!(server.wait().unwrap().success(), "a clean shutdown");
}

#[test]
fn commands_beyond_max_runs_get_429_until_one_ends() {
    let s = setup();
    let (mut server, port, _log) = start_server_with(&s.home, &["--max-runs", "1"]);
    let (status, created) = http(
        port,
        "POST",
        "/api/sandboxes",
        &s.agent,
        Some(r#"{"template":"bash"}"#),
    );
    assert_eq!(status, 200, "{created}");
    let id = json(&created)["id"].as_str().unwrap().to_owned();
    let exec = format!("/api/sandboxes/{id}/exec");
    runtime().block_on(async {
        let long = r#"{"stream":true,"command":["sh","-c","echo started; sleep 120"]}"#;
        let mut running = post_stream(port, &exec, &s.agent, long).await;
        let mut pending = Vec::new();
        assert!(next_line(&mut running, &mut pending)
            .await
            .unwrap()
            .contains("started"));
        let refused = post_stream(port, &exec, &s.agent, r#"{"command":["true"]}"#).await;
        assert_eq!(refused.status(), 429);
        let error: serde_json::Value = refused.json().await.unwrap();
        assert!(error["error"]
            .as_str()
            .unwrap()
            .contains("1 sandbox commands are running"));
        drop(running); // the client goes away: its command is killed, its slot freed
    });
    let done = eventually(Duration::from_secs(30), "a free slot", || {
        let (status, body) = http(
            port,
            "POST",
            &exec,
            &s.agent,
            Some(r#"{"command":["true"]}"#),
        );
        (status == 200).then_some(body)
    });
    assert_eq!(json(&done)["exit_code"], 0);
    let bad = s
        .home
        .run(&["serve", "--listen", "127.0.0.1:0", "--max-runs", "0"]);
    bad.fails_with(2);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn concurrent_execs_each_get_their_own_output_and_exit_code() {
    let s = setup();
    let (mut server, port, _log, id) =
        serve_with_sandbox(&s, r#"{"template":"bash","secrets":["API_KEY"]}"#);
    let results: Vec<(usize, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|n| {
                let (s, id) = (&s, &id);
                scope.spawn(move || {
                    let body = format!(
                        r#"{{"command":["sh","-c","echo run-{n} $API_KEY; echo err-{n} >&2; exit {}"]}}"#,
                        n % 5
                    );
                    (n, exec_buffered(port, s, id, &body))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (n, result) in results {
        assert_eq!(result["stdout"], format!("run-{n} <secret:api_key>\n"));
        assert_eq!(result["stderr"], format!("err-{n}\n"));
        assert_eq!(result["exit_code"], n % 5);
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

crate::conformance!(
    create_exec_and_delete_answer_with_the_right_status_codes,
    a_real_server_runs_sandbox_commands_masked_with_the_cli_exit_codes,
);
