//! The API as its seed systems define it: secret purposes, any-valued
//! scoped secrets, `rendered` previews by default and its `environment`
//! alias, string commands and `cwd` in sandbox exec, one set of exit field
//! names, the health route, and AWS Signature Version 4 checked against
//! botocore's own signer.

use std::io::{Read, Write};

use axum::http::StatusCode;

use crate::api::{call, call_fetch, http, request, runtime, start_server};
use crate::support::TestHome;

const VALUE: &str = "seed-secret-value-4f3e2d1c";

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn secrets_have_a_purpose_set_by_cli_and_api_and_kept_across_versions() {
    let home = TestHome::new();
    let token = home.create_token("ci", &["--grant", "ci:write"]);
    home.run_stdin(
        &[
            "secret",
            "set",
            "DEPLOY_KEY",
            "--vault",
            "ci",
            "--purpose",
            "sshkey",
            "--description",
            "the deploy key",
        ],
        VALUE.as_bytes(),
    )
    .ok();
    home.run(&["secret", "set", "X", "v", "--purpose", "Password"])
        .fails_with(2);
    runtime().block_on(async {
        let body = format!(
            r#"{{"vault_name":"ci","secrets":[{{"name":"STRIPE","secret":"{VALUE}","purpose":"APIKey"}},{{"name":"PLAIN","secret":"{VALUE}"}},{{"name":"ODD","secret":"{VALUE}","purpose":"Token"}}]}}"#
        );
        let (status, json) = call(&home, request("POST", "/api/vaults/secrets", Some(&token), Some(&body))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert_eq!(json["errors"][0]["name"], "ODD");
        assert!(json["errors"][0]["error"].as_str().unwrap().contains("invalid purpose"), "{json}");
        assert_eq!(json["set_secrets"], serde_json::json!(["STRIPE", "PLAIN"]));
        let (_, listed) = call(&home, request("GET", "/api/vaults/ci/secrets", Some(&token), None)).await;
        let purposes: Vec<(String, String)> = listed["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap().to_owned(), s["purpose"].as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(
            purposes,
            [("DEPLOY_KEY", "SSHKey"), ("PLAIN", "Other"), ("STRIPE", "APIKey")]
                .map(|(n, p)| (n.to_owned(), p.to_owned()))
        );
    });
    // A new version without --purpose keeps it; one with --purpose changes it.
    home.run_stdin(
        &["secret", "set", "DEPLOY_KEY", "--vault", "ci"],
        b"second-value-123",
    )
    .ok();
    let listed = home
        .run(&["--json", "secret", "list", "--vault", "ci"])
        .json();
    let deploy_key = &listed["secrets"][0];
    assert_eq!(
        (
            deploy_key["name"].as_str(),
            deploy_key["purpose"].as_str(),
            deploy_key["version"].as_u64()
        ),
        (Some("DEPLOY_KEY"), Some("SSHKey"), Some(2))
    );
    home.run_stdin(
        &[
            "secret",
            "set",
            "DEPLOY_KEY",
            "--vault",
            "ci",
            "--purpose",
            "UsernamePassword",
        ],
        b"third-value-1234",
    )
    .ok();
    let (_, meta) = runtime().block_on(call(
        &home,
        request(
            "GET",
            "/api/vaults/ci/secrets/DEPLOY_KEY",
            Some(&token),
            None,
        ),
    ));
    assert_eq!(meta["purpose"], "UsernamePassword");
    assert_eq!(meta["version"], 3);
    // The description too is kept by a version that does not set one, and
    // cleared by an empty one.
    assert_eq!(meta["description"], "the deploy key");
    home.run_stdin(
        &[
            "secret",
            "set",
            "DEPLOY_KEY",
            "--vault",
            "ci",
            "--description",
            "",
        ],
        b"fourth-value-1234",
    )
    .ok();
    let (_, meta) = runtime().block_on(call(
        &home,
        request(
            "GET",
            "/api/vaults/ci/secrets/DEPLOY_KEY",
            Some(&token),
            None,
        ),
    ));
    assert!(meta["description"].is_null(), "{meta}");
    assert_eq!(meta["purpose"], "UsernamePassword");
}

#[test]
fn a_scoped_secret_takes_any_json_value_as_its_compact_text() {
    let home = TestHome::new();
    let token = home.create_token("agent", &["--grant", "workspace:write"]);
    for (name, value, stored) in [
        ("TEXT", r#""plain text""#, "plain text"),
        ("NUMBER", "42.5", "42.5"),
        ("FLAG", "true", "true"),
        ("LIST", r#"[1, "two", null]"#, r#"[1,"two",null]"#),
        // As sent: key order, every digit; only the whitespace dropped.
        (
            "CONFIG",
            r#"{ "user": "app", "password": "p\"w \\ x" }"#,
            r#"{"user":"app","password":"p\"w \\ x"}"#,
        ),
        (
            "BIG",
            "[12345678901234567890123, 1E2, -0.0]",
            "[12345678901234567890123,1E2,-0.0]",
        ),
    ] {
        let body = format!(r#"{{"name":"{name}","scope":"workspace","value":{value}}}"#);
        let (status, json) = runtime().block_on(call(
            &home,
            request("POST", "/api/secrets/set", Some(&token), Some(&body)),
        ));
        assert_eq!(status, StatusCode::OK, "{name}: {json}");
        assert!(
            json["ref"].as_str().unwrap().starts_with("$secret:"),
            "{json}"
        );
        assert_eq!(
            home.run(&["secret", "reveal", name, "--vault", "workspace"])
                .ok(),
            format!("{stored}\n"),
            "{name}"
        );
    }
    // Null and the empty string are no value.
    for value in ["null", r#""""#] {
        let body = format!(r#"{{"name":"EMPTY","scope":"workspace","value":{value}}}"#);
        let (status, _) = runtime().block_on(call(
            &home,
            request("POST", "/api/secrets/set", Some(&token), Some(&body)),
        ));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
    }
}

#[test]
fn rendered_shows_previews_unless_full_is_asked_for_and_takes_environment_as_the_vault() {
    let home = TestHome::new();
    let token = home.create_token(
        "reader",
        &["--grant", "default:read", "--grant", "production:read"],
    );
    home.set("DEFAULT_KEY", VALUE);
    home.run_stdin(
        &["secret", "set", "PROD_KEY", "--vault", "production"],
        b"production-value-987654",
    )
    .ok();
    home.run_stdin(
        &["secret", "set", "HIDDEN", "--vault", "staging"],
        b"staging-value-123456789",
    )
    .ok();
    runtime().block_on(async {
        let (status, json) = call(
            &home,
            request("GET", "/api/vaults/default/rendered", Some(&token), None),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["mode"], "PreviewOnly");
        assert_eq!(json["secrets"][0]["preview"], "see********");
        assert!(
            !json.to_string().contains(VALUE),
            "a value without mode=Full: {json}"
        );
        let (_, full) = call(
            &home,
            request(
                "GET",
                "/api/vaults/default/rendered?mode=Full",
                Some(&token),
                None,
            ),
        )
        .await;
        assert_eq!(full["secrets"][0]["value"], VALUE);
        // `environment` names the vault.
        let (status, json) = call(
            &home,
            request(
                "GET",
                "/api/vaults/default/rendered?environment=production&mode=Full",
                Some(&token),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["vault"], "production");
        assert_eq!(json["secrets"][0]["name"], "PROD_KEY");
        // ...and the grant is checked on it.
        let (status, json) = call(
            &home,
            request(
                "GET",
                "/api/vaults/default/rendered?environment=staging",
                Some(&token),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
        assert!(!json.to_string().contains("staging-value"), "{json}");
        let (status, _) = call(
            &home,
            request(
                "GET",
                "/api/vaults/default/rendered?environment=..%2Fetc",
                Some(&token),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    });
}

#[test]
fn health_answers_without_a_token_with_the_version_and_the_store() {
    let home = TestHome::new();
    let (status, json) = runtime().block_on(call(&home, request("GET", "/api/health", None, None)));
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["status"], "ok");
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        json["store"],
        serde_json::json!({ "reachable": true, "backend": "sqlite" })
    );
}

/// A server, a sandbox of `bash` with API_KEY, and the token that made it.
fn served_sandbox(
    home: &TestHome,
) -> (
    std::process::Child,
    u16,
    crate::api::ServerLog,
    String,
    String,
) {
    home.set("API_KEY", VALUE);
    let token = home.create_token("agent", &["--grant", "default:read"]);
    let (server, port, log) = start_server(home);
    let (status, created) = http(
        port,
        "POST",
        "/api/sandboxes",
        &token,
        Some(r#"{"template":"bash","secrets":["API_KEY"]}"#),
    );
    assert_eq!(status, 200, "{created}");
    let id = json(&created)["id"].as_str().unwrap().to_owned();
    (server, port, log, token, id)
}

#[test]
fn exec_takes_a_shell_string_and_a_cwd_that_stays_inside() {
    let home = TestHome::new();
    let (mut server, port, _log, token, id) = served_sandbox(&home);
    let exec = |body: &str| {
        let (status, text) = http(
            port,
            "POST",
            &format!("/api/sandboxes/{id}/exec"),
            &token,
            Some(body),
        );
        (status, json(&text))
    };
    // A string runs through `sh -c`: pipes, variables, quoting.
    let (status, ran) = exec(
        r#"{"command":"mkdir -p app/src && ln -s / app/root && echo \"$API_KEY\" | wc -c && echo 'a b' | tr a-z A-Z"}"#,
    );
    assert_eq!(status, 200, "{ran}");
    assert_eq!(ran["stdout"], format!("{}\nA B\n", VALUE.len() + 1));
    assert_eq!(ran["exit_code"], 0);
    let (status, ran) = exec(r#"{"command":"pwd; echo $API_KEY","cwd":"app/src"}"#);
    assert_eq!(status, 200, "{ran}");
    let stdout = ran["stdout"].as_str().unwrap();
    assert!(
        stdout.ends_with("/work/app/src\n<secret:api_key>\n"),
        "{stdout}"
    );
    let (status, ran) = exec(r#"{"command":["sh","-c","pwd"],"cwd":"./app"}"#);
    assert_eq!(status, 200, "{ran}");
    assert!(
        ran["stdout"].as_str().unwrap().ends_with("/work/app\n"),
        "{ran}"
    );
    // Out of the working directory, or not a directory: 400, nothing runs.
    for cwd in [
        "../",
        "app/../../x",
        "/etc",
        "app/root",
        "missing",
        "app/src/../..",
    ] {
        let body = serde_json::json!({ "command": "touch RAN", "cwd": cwd }).to_string();
        let (status, answer) = exec(&body);
        assert_eq!(status, 400, "{cwd}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("cwd"),
            "{cwd}: {answer}"
        );
    }
    let (_, listed) = exec(r#"{"command":"ls RAN 2>&1 || echo none"}"#);
    assert!(
        listed["stdout"].as_str().unwrap().contains("none"),
        "{listed}"
    );
    // A link swapped in while commands start: the kernel resolves `cwd`
    // beneath the working directory at the start, so none starts outside.
    exec(r#"{"command":"mkdir -p dir/root && ln -s / sym"}"#);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            exec(r#"{"command":"for i in $(seq 400); do mv -T dir a; mv -T a dir; mv -T sym a; mv -T a sym; done","timeout_ms":20000}"#)
        });
        for _ in 0..40 {
            let (status, ran) = exec(r#"{"command":"pwd","cwd":"a/root"}"#);
            if status == 200 && ran["exit_code"] == 0 {
                let pwd = ran["stdout"].as_str().unwrap();
                // Inside, wherever the loop has moved the folder since.
                let inside = pwd.ends_with("/work/a/root\n") || pwd.ends_with("/work/dir/root\n");
                assert!(inside, "started outside: {pwd}");
            }
        }
    });
    // The wrong type: a 422 naming the field.
    let (status, answer) = exec(r#"{"command":42}"#);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(
        answer["error"],
        "command: expected a string (run by `sh -c`) or an array of strings"
    );
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn the_buffered_result_and_the_streams_exit_event_have_the_same_fields() {
    let home = TestHome::new();
    let (mut server, port, _log, token, id) = served_sandbox(&home);
    let path = format!("/api/sandboxes/{id}/exec");
    let (_, text) = http(
        port,
        "POST",
        &path,
        &token,
        Some(r#"{"command":"echo out; exit 3"}"#),
    );
    let buffered = json(&text);
    let (_, text) = http(
        port,
        "POST",
        &path,
        &token,
        Some(r#"{"command":"echo out; exit 3","stream":true}"#),
    );
    // (Chunked: each JSON line is a chunk of its own.)
    let exit = text
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(json)
        .find(|line| line["event"] == "exit")
        .unwrap_or_else(|| panic!("no exit event: {text}"));
    for field in [
        "exit_code",
        "signal",
        "timed_out",
        "output_limit_reached",
        "cancelled",
    ] {
        assert_eq!(exit[field], buffered[field], "{field}: {exit} / {buffered}");
        assert!(!exit[field].is_null() || field == "signal", "{field}");
    }
    assert!(exit["duration_ms"].is_u64() && buffered["duration_ms"].is_u64());
    assert_eq!(exit["exit_code"], 3);
    assert_eq!(exit["code"], 3, "the JSON lines' own field stays");
    let _ = server.kill();
    let _ = server.wait();
}

/// A one-shot HTTP server on 127.0.0.1 that answers 200 and returns the
/// whole request it got (head and body).
fn capture_target() -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = stream.read(&mut buf).unwrap_or(0);
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if request.len() >= end + 4 + length || n == 0 {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let _ = sent.send(request);
    });
    (port, received)
}

/// The Python that has botocore: `$SHROUD_TEST_PYTHON`, else `python3`.
fn botocore_python() -> Option<String> {
    let python = std::env::var("SHROUD_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let found = std::process::Command::new(&python)
        .args(["-c", "import botocore.auth"])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(python);
    }
    assert!(
        std::env::var_os("SHROUD_REQUIRE_BOTOCORE").is_none(),
        "SHROUD_REQUIRE_BOTOCORE is set but {python} has no botocore"
    );
    None
}

/// What botocore's SigV4 signer (S3's for `s3`) makes of the captured
/// request: its `Authorization` header.
fn botocore_authorization(
    python: &str,
    captured: &[u8],
    port: u16,
    secret_key: &str,
    service: &str,
) -> String {
    // botocore canonicalizes the query itself (from the decoded pairs),
    // hashes the body itself, and signs at the request's own x-amz-date.
    let script = r#"
import sys, json, hashlib
from urllib.parse import unquote
from botocore.auth import SigV4Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
raw = sys.stdin.buffer.read()
head, _, body = raw.partition(b"\r\n\r\n")
lines = head.decode("latin-1").split("\r\n")
method, target, _ = lines[0].split(" ")
headers = {}
for line in lines[1:]:
    name, _, value = line.partition(":")
    headers.setdefault(name.strip().lower(), []).append(value.strip())
auth = headers["authorization"][0]
signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
assert headers["x-amz-content-sha256"][0] == hashlib.sha256(body).hexdigest(), "payload hash"
access_key, secret_key, token, region, service, port = sys.argv[1:7]
path, _, query = target.partition("?")
params = [(unquote(k), unquote(v)) for k, _, v in (p.partition("=") for p in query.split("&") if p)]
request = AWSRequest(method=method, url="http://127.0.0.1:" + port + path, data=body, params=params,
                     headers={name: ",".join(headers[name]) for name in signed if name != "host"})
request.context["timestamp"] = headers["x-amz-date"][0]
signer_class = S3SigV4Auth if service == "s3" else SigV4Auth
signer = signer_class(Credentials(access_key, secret_key, token), service, region)
canonical = signer.canonical_request(request)
signature = signer.signature(signer.string_to_sign(request, canonical), request)
theirs = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (
    signer.scope(request), signer.signed_headers(signer.headers_to_sign(request)), signature)
print(json.dumps({"ours": auth, "botocore": theirs}))
"#;
    let mut child = std::process::Command::new(python)
        .args([
            "-c",
            script,
            "AKIDEXAMPLE",
            secret_key,
            "session-token-xyz",
            "eu-west-3",
            service,
            &port.to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(captured).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer = json(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(answer["ours"], answer["botocore"], "signatures differ");
    answer["ours"].as_str().unwrap().to_owned()
}

#[test]
fn awsv4_signs_requests_as_botocore_does() {
    let Some(python) = botocore_python() else {
        eprintln!("SKIPPED awsv4_signs_requests_as_botocore_does: no botocore (pip install botocore; or set SHROUD_TEST_PYTHON)");
        return;
    };
    let home = TestHome::new();
    let token = home.create_token("agent", &["--grant", "workspace:write"]);
    let secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    let set =
        serde_json::json!({ "name": "AWS_SECRET", "scope": "workspace", "value": secret_key })
            .to_string();
    let (status, reference) = runtime().block_on(call(
        &home,
        request("POST", "/api/secrets/set", Some(&token), Some(&set)),
    ));
    assert_eq!(status, StatusCode::OK, "{reference}");
    let reference = reference["ref"].as_str().unwrap().to_owned();
    for (service, method, body) in [
        (
            "s3",
            "PUT",
            Some("a body, with the secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        ),
        ("execute-api", "GET", None),
        (
            "sqs",
            "POST",
            Some("Action=SendMessage&MessageBody=hello%20world"),
        ),
    ] {
        let (port, captured) = capture_target();
        let mut fetch = serde_json::json!({
            "url": format!("http://127.0.0.1:{port}/bucket/a key~(1)!/obj%2Fx?b=2&a=x y&a=1&empty"),
            "method": method,
            "headers": { "Content-Type": "text/plain", "X-Custom": "  two   spaces  " },
            "query": { "extra": "$&=" },
            "auth": {
                "type": "awsv4",
                "access_key_id": "AKIDEXAMPLE",
                "secret_access_key": reference,
                "session_token": "session-token-xyz",
                "region": "eu-west-3",
                "service": service,
            },
        });
        if let Some(body) = body {
            fetch["body"] = body.into();
        }
        let (status, answer) = runtime().block_on(call_fetch(
            &home,
            request("POST", "/api/fetch", Some(&token), Some(&fetch.to_string())),
        ));
        assert_eq!(status, StatusCode::OK, "{service}: {answer}");
        let captured = captured
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let text = String::from_utf8_lossy(&captured).to_ascii_lowercase();
        assert!(
            text.contains("\r\nx-amz-date: ") && text.contains("\r\nx-amz-content-sha256: "),
            "{text}"
        );
        assert!(
            text.contains("\r\nx-amz-security-token: session-token-xyz\r\n"),
            "{text}"
        );
        assert!(
            !text.contains("wjalrxutnfemi/k7mdeng+bpxrficyexamplekey\r\n"),
            "the secret key is never sent"
        );
        let authorization = botocore_authorization(&python, &captured, port, secret_key, service);
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{authorization}"
        );
        assert!(
            authorization.contains(&format!(
                "/eu-west-3/{service}/aws4_request, SignedHeaders="
            )),
            "{authorization}"
        );
    }
}
