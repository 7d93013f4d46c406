//! The HTTP API: the router with `oneshot` for every status code, and a real
//! `shroud serve` on 127.0.0.1 spoken to over TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use shroud::api::{router, ApiState};
use tower::ServiceExt;

use crate::support::TestHome;

const VALUE: &str = "api-secret-value-0x5eed";

/// A home with a token `ci` (ci:write, prod:read) and a revoked `old`.
pub(crate) fn setup() -> (TestHome, String, String) {
    let home = TestHome::new();
    let token = home.create_token("ci", &["--grant", "ci:write", "--grant", "prod:read"]);
    let old = home.create_token("old", &["--grant", "ci:write"]);
    home.run(&["token", "revoke", "old"]).ok();
    home.run(&[
        "secret",
        "set",
        "PROD_KEY",
        "prod-value-123",
        "--vault",
        "prod",
    ])
    .ok();
    (home, token, old)
}

pub(crate) fn request(
    method: &str,
    uri: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    match json {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
        None => builder.body(Body::empty()).unwrap(),
    }
}

pub(crate) async fn call(home: &TestHome, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    call_with(
        ApiState::on_store(home.path(), None, home.store_location()),
        req,
    )
    .await
}

/// [`call`] on a server whose fetch may reach 127.0.0.0/8 (where the test
/// targets listen), as `serve --fetch-allow 127.0.0.0/8` allows.
pub(crate) async fn call_fetch(
    home: &TestHome,
    req: Request<Body>,
) -> (StatusCode, serde_json::Value) {
    let state = ApiState::on_store(home.path(), None, home.store_location());
    state
        .configure_fetch(None, vec!["127.0.0.0/8".parse().unwrap()])
        .unwrap();
    call_with(state, req).await
}

pub(crate) async fn call_with(
    state: Arc<ApiState>,
    req: Request<Body>,
) -> (StatusCode, serde_json::Value) {
    let response = router(Arc::clone(&state)).oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, json)
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn authentication_and_grants() {
    let (home, token, old) = setup();
    runtime().block_on(async {
        let (status, body) =
            call(&home, request("GET", "/api/vaults/ci/secrets", None, None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "missing header");
        assert!(body["error"].as_str().unwrap().contains("Authorization"));
        let (status, _) = call(
            &home,
            request("GET", "/api/vaults/ci/secrets", Some("shr_unknown"), None),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "unknown token");
        let (status, _) = call(
            &home,
            request("GET", "/api/vaults/ci/secrets", Some(&old), None),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked token");
        let basic = Request::builder()
            .uri("/api/vaults/ci/secrets")
            .header("authorization", "Basic abc")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&home, basic).await.0, StatusCode::UNAUTHORIZED);
        let (status, _) = call(
            &home,
            request("GET", "/api/vaults/ci/secrets", Some(&token), None),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = call(
            &home,
            request("GET", "/api/vaults/other/secrets", Some(&token), None),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "no grant on the vault");
        assert!(body["error"].as_str().unwrap().contains("no read grant"));
        let write_prod = r#"{"vault_name":"prod","secrets":[{"name":"X","secret":"xxxx-1"}]}"#;
        let (status, _) = call(
            &home,
            request(
                "POST",
                "/api/vaults/secrets",
                Some(&token),
                Some(write_prod),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "read grant only");
        let (status, _) = call(
            &home,
            request(
                "DELETE",
                "/api/vaults/prod/secrets/PROD_KEY",
                Some(&token),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(home.list("prod"), vec!["PROD_KEY"], "nothing changed");
    });
}

fn bulk_set_is_not_atomic_and_names_each_failure() {
    let (home, token, _) = setup();
    runtime().block_on(async {
        let body = format!(
            r#"{{"vault_name":"ci","secrets":[{{"name":"GOOD","secret":"{VALUE}","description":"d"}},{{"name":"EMPTY","secret":""}},{{"name":"bad name","secret":"{VALUE}"}}]}}"#
        );
        let (status, json) = call(&home, request("POST", "/api/vaults/secrets", Some(&token), Some(&body))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // RWX's text: a header line, then `  NAME: reason` per failure.
        let text = json["error"].as_str().unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "The following secrets could not be set:", "{text}");
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].starts_with("  EMPTY: value is empty"), "{text}");
        assert!(lines[2].starts_with("  bad name: "), "{text}");
        let errors = json["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0]["name"], "EMPTY");
        assert_eq!(errors[1]["name"], "bad name");
        assert_eq!(json["set_secrets"], serde_json::json!(["GOOD"]));
        assert_eq!(json["versions"], serde_json::json!({"GOOD": 1}));
        assert!(!json.to_string().contains(VALUE), "a value in an error body");
        let ok = format!(r#"{{"vault_name":"ci","secrets":[{{"name":"GOOD","secret":"{VALUE}-2"}}]}}"#);
        let (status, json) = call(&home, request("POST", "/api/vaults/secrets", Some(&token), Some(&ok))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["versions"]["GOOD"], 2);
    });
    assert_eq!(
        home.run(&["secret", "reveal", "GOOD", "--vault", "ci"])
            .ok(),
        format!("{VALUE}-2\n")
    );
    let audit = home.run(&["audit", "--secret", "GOOD"]).ok();
    assert!(
        audit.contains("\tci\tsecret.set\tci\tGOOD"),
        "the actor is the token: {audit}"
    );
}

#[test]
fn bodies_must_be_json_small_and_well_formed() {
    let (home, token, _) = setup();
    runtime().block_on(async {
        let plain = Request::builder()
            .method("POST")
            .uri("/api/vaults/secrets")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from("{}"))
            .unwrap();
        let (status, json) = call(&home, plain).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            json["error"].as_str().unwrap().contains("application/json"),
            "a JSON error body"
        );
        let huge = format!(
            r#"{{"vault_name":"ci","var":{{"name":"V","value":"{}"}}}}"#,
            "x".repeat(2 << 20)
        );
        let (status, json) = call(
            &home,
            request("POST", "/api/vaults/vars", Some(&token), Some(&huge)),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(json["error"].is_string());
        let (status, _) = call(
            &home,
            request("POST", "/api/vaults/vars", Some(&token), Some("{not json")),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // A wrong type must not echo the value it got.
        let wrong = format!(r#"{{"vault_name":"ci","secrets":"{VALUE}"}}"#);
        let (status, json) = call(
            &home,
            request("POST", "/api/vaults/secrets", Some(&token), Some(&wrong)),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!json.to_string().contains(VALUE), "{json}");
        let (status, _) = call(&home, request("GET", "/api/nowhere", Some(&token), None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    });
}

fn vars_metadata_head_delete_and_audit() {
    let (home, token, _) = setup();
    runtime().block_on(async {
        let var = r#"{"vault_name":"ci","var":{"name":"region","value":"eu-west-1"}}"#;
        let (status, json) = call(
            &home,
            request("POST", "/api/vaults/vars", Some(&token), Some(var)),
        )
        .await;
        assert_eq!((status, json), (StatusCode::OK, serde_json::json!({})));
        let set = format!(r#"{{"vault_name":"ci","secrets":[{{"name":"K","secret":"{VALUE}"}}]}}"#);
        call(
            &home,
            request("POST", "/api/vaults/secrets", Some(&token), Some(&set)),
        )
        .await;
        let (status, json) = call(
            &home,
            request("GET", "/api/vaults/ci/secrets/K", Some(&token), None),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (json["name"].as_str(), json["version"].as_u64()),
            (Some("K"), Some(1))
        );
        assert!(!json.to_string().contains(VALUE), "metadata only");
        let (status, json) = call(
            &home,
            request("GET", "/api/vaults/ci/secrets", Some(&token), None),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["secrets"][0]["name"], "K");
        assert_eq!(
            call(
                &home,
                request("HEAD", "/api/vaults/ci/secrets/K", Some(&token), None)
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(
            call(
                &home,
                request("HEAD", "/api/vaults/ci/secrets/NOPE", Some(&token), None)
            )
            .await
            .0,
            StatusCode::NOT_FOUND
        );
        let (status, json) = call(
            &home,
            request("DELETE", "/api/vaults/ci/secrets/K", Some(&token), None),
        )
        .await;
        assert_eq!(
            (status, json),
            (StatusCode::OK, serde_json::json!({"deleted": true}))
        );
        let (status, _) = call(
            &home,
            request("DELETE", "/api/vaults/ci/secrets/K", Some(&token), None),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, json) = call(&home, request("GET", "/api/audit", Some(&token), None)).await;
        assert_eq!(status, StatusCode::OK);
        let actions: Vec<&str> = json["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect();
        assert!(
            actions.contains(&"secret.set")
                && actions.contains(&"secret.delete")
                && actions.contains(&"var.set"),
            "{actions:?}"
        );
        assert!(json["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["vault"] == "ci" || r["vault"] == "prod"));
        assert!(!json.to_string().contains(VALUE));
    });
    assert_eq!(
        home.run(&["var", "get", "region", "--vault", "ci"]).ok(),
        "eu-west-1\n"
    );
}

/// Starts `shroud serve` on a free port of 127.0.0.1; returns the process,
/// the port, and the rest of its log.
pub(crate) fn start_server(home: &TestHome) -> (std::process::Child, u16, ServerLog) {
    start_server_with(home, &[])
}

/// [`start_server`] with more `shroud serve` flags.
pub(crate) fn start_server_with(
    home: &TestHome,
    flags: &[&str],
) -> (std::process::Child, u16, ServerLog) {
    start_server_full(home, flags, &[])
}

/// [`start_server`] with environment variables of its own.
pub(crate) fn start_server_with_env(
    home: &TestHome,
    env: &[(&str, &str)],
) -> (std::process::Child, u16, ServerLog) {
    start_server_full(home, &[], env)
}

pub(crate) fn start_server_full(
    home: &TestHome,
    flags: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Child, u16, ServerLog) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    let mut command = home.command(&args);
    command.envs(env.iter().copied());
    let mut server = command
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    // The address line (a log line may come before it).
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            panic!("shroud serve ended without listening");
        }
    }
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{line}"));
    (server, port, ServerLog::drain(stderr))
}

/// A server's stderr, read as it comes by a thread of its own: a log nobody
/// reads would fill its pipe and stop the server at its next log line.
pub(crate) struct ServerLog {
    reader: Option<std::thread::JoinHandle<String>>,
}

impl ServerLog {
    fn drain(mut stderr: BufReader<std::process::ChildStderr>) -> ServerLog {
        let reader = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        ServerLog {
            reader: Some(reader),
        }
    }

    /// Everything the server logged after its first line; call it once the
    /// server has exited.
    pub(crate) fn rest(&mut self) -> String {
        self.reader
            .take()
            .expect("the log is read once")
            .join()
            .expect("the log reader")
    }
}

/// How long a test waits for one answer: a server that hangs fails the
/// test instead of stalling the run.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);

/// A minimal HTTP/1.1 client: one request per connection.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    stream.set_write_timeout(Some(ANSWER_WITHIN)).unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .unwrap_or_else(|e| panic!("no answer to {method} {path} within {ANSWER_WITHIN:?}: {e}"));
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn a_real_server_serves_and_stops_on_sigterm() {
    let (home, token, _) = setup();
    let (mut server, port, mut stderr) = start_server(&home);
    let set = format!(r#"{{"vault_name":"ci","secrets":[{{"name":"LIVE","secret":"{VALUE}"}}]}}"#);
    let (status, body) = http(port, "POST", "/api/vaults/secrets", &token, Some(&set));
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(port, "GET", "/api/vaults/ci/secrets/LIVE", &token, None);
    assert_eq!(status, 200);
    assert!(
        body.contains("\"version\":1") && !body.contains(VALUE),
        "{body}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        server.wait().unwrap().success(),
        "graceful shutdown exits 0"
    );
    let rest = stderr.rest();
    assert!(
        !rest.contains(VALUE) && !rest.contains(&token),
        "a value or token in the server log: {rest}"
    );
}

fn serve_refuses_to_start_with_the_wrong_key() {
    let (home, _, _) = setup();
    let out = home.run_with_key(
        &crate::support::random_key(),
        &["serve", "--listen", "127.0.0.1:0"],
    );
    out.fails_with(2);
}

fn rendered_gives_values_or_previews_and_is_audited() {
    let (home, token, _) = setup();
    home.run(&[
        "secret",
        "set",
        "LONG",
        "sk-live-0123456789abcdef",
        "--vault",
        "prod",
    ])
    .ok();
    home.run(&["secret", "set", "SHORT", "abcd1234", "--vault", "prod"])
        .ok();
    runtime().block_on(async {
        let (status, json) = call(
            &home,
            request(
                "GET",
                "/api/vaults/prod/rendered?mode=Full",
                Some(&token),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let secrets = json["secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), 3);
        assert_eq!(secrets[0]["name"], "LONG");
        assert_eq!(secrets[0]["value"], "sk-live-0123456789abcdef");
        let uri = "/api/vaults/prod/rendered?mode=PreviewOnly&secret-name-filter=LONG,SHORT";
        let (status, json) = call(&home, request("GET", uri, Some(&token), None)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["secrets"][0]["preview"], "sk-********");
        assert_eq!(
            json["secrets"][1]["preview"], "********",
            "short values show nothing"
        );
        assert!(!json.to_string().contains("0123456789") && !json.to_string().contains("abcd"));
        let (status, _) = call(
            &home,
            request(
                "GET",
                "/api/vaults/prod/rendered?secret-name-filter=NOPE",
                Some(&token),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(
            &home,
            request("GET", "/api/vaults/other/rendered", Some(&token), None),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = call(
            &home,
            request(
                "GET",
                "/api/vaults/prod/rendered?mode=Everything",
                Some(&token),
                None,
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    });
    let audit = home.run(&["audit", "--vault", "prod"]).ok();
    assert!(audit.contains("\tci\tsecret.render\tprod\tLONG"), "{audit}");
}

fn scoped_secrets_give_references_per_workspace_and_user() {
    let home = TestHome::new();
    let alice = home.create_token("alice", &["--grant", "workspace:write", "--user", "Alice"]);
    let nouser = home.create_token("robot", &["--grant", "workspace:read"]);
    runtime().block_on(async {
        let set = format!(r#"{{"name":"TOKEN","value":"{VALUE}","scope":"workspace"}}"#);
        let (status, json) = call(
            &home,
            request("POST", "/api/secrets/set", Some(&alice), Some(&set)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let reference = json["ref"].as_str().unwrap().to_owned();
        assert!(reference.starts_with("$secret:") && !json.to_string().contains(VALUE));
        let get = r#"{"name":"TOKEN","scope":"workspace","ttl":60}"#;
        let (status, json) = call(
            &home,
            request("POST", "/api/secrets/get", Some(&nouser), Some(get)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "a read grant may get references");
        assert!(json["ref"].as_str().unwrap().starts_with("$secret:"));
        let (status, json) = call(
            &home,
            request("POST", "/api/secrets/set", Some(&nouser), Some(&set)),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
        let missing = r#"{"name":"NOPE","scope":"workspace"}"#;
        let (status, json) = call(
            &home,
            request("POST", "/api/secrets/get", Some(&alice), Some(missing)),
        )
        .await;
        assert_eq!(
            (status, json["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        let user_set = format!(r#"{{"name":"MINE","value":"{VALUE}-user","scope":"user"}}"#);
        let (status, json) = call(
            &home,
            request("POST", "/api/secrets/set", Some(&nouser), Some(&user_set)),
        )
        .await;
        assert_eq!(
            (status, json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("user_required"))
        );
        let (status, _) = call(
            &home,
            request("POST", "/api/secrets/set", Some(&alice), Some(&user_set)),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let delete = r#"{"name":"TOKEN","scope":"workspace"}"#;
        let (status, json) = call(
            &home,
            request("POST", "/api/secrets/delete", Some(&alice), Some(delete)),
        )
        .await;
        assert_eq!(
            (status, json),
            (StatusCode::OK, serde_json::json!({"deleted": true}))
        );
        let (status, json) = call(
            &home,
            request("POST", "/api/secrets/delete", Some(&alice), Some(delete)),
        )
        .await;
        assert_eq!(
            (status, json["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        // The reference resolves for the token that made it, and only for it.
        // (On a thread of its own: the store is synchronous, and this one
        // drives async tasks.)
        let resolve_as = |actor: &str| {
            std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        let mut store = shroud::store::Store::open(
                            home.store_config(actor),
                            shroud::store::OpenMode::Existing,
                        )
                        .unwrap();
                        store.resolve_reference(&reference).map(|r| r.name)
                    })
                    .join()
                    .unwrap()
            })
        };
        assert!(resolve_as("robot").is_err(), "another token's reference");
        // (deleted above, so even its owner now finds no secret behind it)
        assert!(resolve_as("alice").is_err());
    });
    assert_eq!(home.list("user.alice"), vec!["MINE"]);
}

/// A one-shot HTTP target on 127.0.0.1: records the raw request it gets and
/// answers with it as the body (and a header echoing its Authorization).
pub(crate) fn echo_target() -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        sent.send(answer_with_echo(stream)).unwrap();
    });
    (port, received)
}

/// The same target behind TLS, with the test certificate of `localhost`
/// and 127.0.0.1 (tests/fixtures/tls, signed by the test CA `ca.pem`).
fn tls_echo_target() -> (u16, std::sync::mpsc::Receiver<String>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let chain = vec![CertificateDer::from_pem_file(fixtures.join("server.pem")).unwrap()];
    let key = PrivateKeyDer::from_pem_file(fixtures.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // A refused handshake (an untrusted certificate) closes the
        // connection; keep accepting until a request comes through.
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let connection = rustls::ServerConnection::new(Arc::new(config.clone())).unwrap();
            let request = answer_with_echo(rustls::StreamOwned::new(connection, stream));
            if !request.is_empty() {
                sent.send(request).unwrap();
                return;
            }
        }
    });
    (port, received)
}

/// Reads one request from `stream`, answers with it as the body, and
/// returns it (empty when nothing readable came).
fn answer_with_echo(mut stream: impl Read + Write) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap_or(0);
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    let request = String::from_utf8_lossy(&raw).into_owned();
    if request.is_empty() {
        return request;
    }
    let auth = request
        .lines()
        .find_map(|l| {
            l.strip_prefix("authorization: ")
                .or_else(|| l.strip_prefix("Authorization: "))
        })
        .unwrap_or("")
        .to_owned();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Echo: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{request}",
        request.len()
    );
    stream.write_all(response.as_bytes()).unwrap();
    stream.flush().unwrap();
    request
}

#[test]
fn fetch_bounds_the_wait_and_the_response_size_with_clear_errors() {
    let home = TestHome::new();
    let token = home.create_token("agent", &["--grant", "workspace:write"]);
    // A target that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (stream, _) = silent.accept().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(20));
        drop(stream);
    });
    // A target that answers with 11 MiB.
    let large = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let large_port = large.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut stream, _) = large.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf);
        let size = 11 * 1024 * 1024;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..size / block.len() {
            if stream.write_all(&block).is_err() {
                break;
            }
        }
    });
    runtime().block_on(async {
        let wait = serde_json::json!({
            "url": format!("http://127.0.0.1:{silent_port}/"),
            "timeout_ms": 300,
        })
        .to_string();
        let (status, json) = call_fetch(
            &home,
            request("POST", "/api/fetch", Some(&token), Some(&wait)),
        )
        .await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{json}");
        assert_eq!(json["error"], "the request timed out");
        let big =
            serde_json::json!({ "url": format!("http://127.0.0.1:{large_port}/") }).to_string();
        let (status, json) = call_fetch(
            &home,
            request("POST", "/api/fetch", Some(&token), Some(&big)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{json}");
        assert_eq!(
            json["error"],
            format!("the response is larger than {} bytes", 10 * 1024 * 1024)
        );
    });
}

#[test]
fn fetch_speaks_tls_and_trusts_only_known_roots() {
    let home = TestHome::new();
    let token = home.create_token("agent", &["--grant", "workspace:write"]);
    let value = "tls-carried-secret-424242";
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
    // A file that is missing, or holds no certificate, stops the server at start.
    let not_pem = home.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for bad in ["/nonexistent/ca.pem", not_pem.to_str().unwrap()] {
        let out = home.run(&["serve", "--listen", "127.0.0.1:0", "--ca-file", bad]);
        out.fails_with(2);
        assert!(out.stderr.contains("error: --ca-file"), "{}", out.stderr);
    }
    let (mut server, port, _log) = start_server_with(
        &home,
        &[
            "--ca-file",
            ca.to_str().unwrap(),
            "--fetch-allow",
            "127.0.0.0/8",
        ],
    );
    let set = format!(r#"{{"name":"TLS_KEY","value":"{value}","scope":"workspace"}}"#);
    let (status, body) = http(port, "POST", "/api/secrets/set", &token, Some(&set));
    assert_eq!(status, 200, "{body}");
    let reference: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reference = reference["ref"].as_str().unwrap().to_owned();

    // Trusted through --ca-file: the value crosses TLS, and comes back masked.
    let (target, received) = tls_echo_target();
    let fetch = serde_json::json!({
        "url": format!("https://localhost:{target}/tls"),
        "headers": { "X-Key": reference },
    })
    .to_string();
    let (status, body) = http(port, "POST", "/api/fetch", &token, Some(&fetch));
    assert_eq!(status, 200, "{body}");
    let sent = received
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(sent.contains(value), "{sent}");
    assert!(!body.contains(value), "{body}");
    assert!(body.contains("<secret:tls_key>"), "{body}");

    // Without that root (the router's default client): the certificate is
    // refused, a 502, and nothing readable reaches the target.
    let (target, received) = tls_echo_target();
    let fetch = serde_json::json!({
        "url": format!("https://localhost:{target}/tls"),
        "headers": { "X-Key": reference },
    })
    .to_string();
    runtime().block_on(async {
        let (status, json) = call_fetch(
            &home,
            request("POST", "/api/fetch", Some(&token), Some(&fetch)),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{json}");
    });
    assert!(received
        .recv_timeout(std::time::Duration::from_millis(500))
        .is_err());
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn fetch_resolves_references_in_every_field_and_masks_the_response() {
    let home = TestHome::new();
    let token = home.create_token("agent", &["--grant", "workspace:write"]);
    let other = home.create_token("other", &["--grant", "workspace:write"]);
    let values = [
        ("API_TOKEN", "tok-abcdef-123456"),
        ("DB_PASS", "pw-zyxwvu-987654"),
        ("QUERY_KEY", "qk-55555-44444"),
        ("URL_PART", "segment-777-888"),
    ];
    runtime().block_on(async {
        let mut refs = std::collections::HashMap::new();
        for (name, value) in values {
            let set = format!(r#"{{"name":"{name}","value":"{value}","scope":"workspace"}}"#);
            let (status, json) = call(&home, request("POST", "/api/secrets/set", Some(&token), Some(&set))).await;
            assert_eq!(status, StatusCode::OK);
            refs.insert(name, json["ref"].as_str().unwrap().to_owned());
        }
        let (port, received) = echo_target();
        let fetch = serde_json::json!({
            "url": format!("http://127.0.0.1:{port}/v1/{}/items", refs["URL_PART"]),
            "method": "POST",
            "headers": { "X-Db": format!("pass={}", refs["DB_PASS"]) },
            "query": { "key": refs["QUERY_KEY"] },
            "body": format!("{{\"token\":\"{}\"}}", refs["API_TOKEN"]),
            "auth": { "type": "bearer", "token": refs["API_TOKEN"] },
        })
        .to_string();
        let (status, json) = call_fetch(&home, request("POST", "/api/fetch", Some(&token), Some(&fetch))).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let sent = received.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        for (_, value) in values {
            assert!(sent.contains(value), "the target did not get {value}: {sent}");
        }
        assert!(!sent.contains("$secret:"), "an unresolved reference was sent");
        assert_eq!(json["status"], 200);
        let reply = json.to_string();
        for (_, value) in values {
            assert!(!reply.contains(value), "{value} came back unmasked: {reply}");
        }
        assert!(json["headers"]["x-echo"].as_str().unwrap().contains("<secret:api_token>"), "{reply}");
        assert!(json["body"].as_str().unwrap().contains("<secret:db_pass>"), "{reply}");
        assert!(json["body"].as_str().unwrap().contains("/v1/<secret:url_part>/items?key=<secret:query_key>"), "{reply}");

        // Another token's reference: 400, and nothing is sent.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let quiet_port = listener.local_addr().unwrap().port();
        let foreign = serde_json::json!({
            "url": format!("http://127.0.0.1:{quiet_port}/"),
            "headers": { "X-Key": refs["DB_PASS"] },
        })
        .to_string();
        let (status, json) = call_fetch(&home, request("POST", "/api/fetch", Some(&other), Some(&foreign))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
        assert!(json["error"].as_str().unwrap().contains("nothing was sent"));
        assert!(listener.accept().is_err(), "a request was sent with a foreign reference");
        // An unknown reference: the same.
        let unknown = serde_json::json!({ "url": format!("http://127.0.0.1:{quiet_port}/?k=$secret:{}", "A".repeat(43)) }).to_string();
        assert_eq!(call_fetch(&home, request("POST", "/api/fetch", Some(&token), Some(&unknown))).await.0, StatusCode::BAD_REQUEST);
        // A target that is not there: 502, and the error does not echo the URL's value.
        let closed = serde_json::json!({ "url": format!("http://127.0.0.1:1/{}", refs["URL_PART"]) }).to_string();
        let (status, json) = call_fetch(&home, request("POST", "/api/fetch", Some(&token), Some(&closed))).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{json}");
        assert!(!json.to_string().contains("segment-777"), "{json}");
    });
    let audit = home.run(&["audit"]).ok();
    assert!(
        audit.contains("\tagent\treference.resolve\tworkspace\tAPI_TOKEN\t"),
        "{audit}"
    );
    assert!(
        audit.contains("\tother\treference.resolve\t-\t-\t-\tdenied"),
        "{audit}"
    );
}

#[test]
fn the_openapi_document_is_served_and_lists_every_route() {
    let home = TestHome::new();
    let (status, doc) =
        runtime().block_on(call(&home, request("GET", "/api/openapi.json", None, None)));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/api/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc, on_disk,
        "the served document is the one in the repository"
    );
    // Every route the router lists is documented (and nothing else).
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs")).unwrap();
    let mut routed: Vec<String> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix(".route(\""))
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    routed.extend(
        source
            .lines()
            .filter(|l| l.trim_start().starts_with("\"/api/"))
            .map(|l| l.trim().trim_matches(|c| c == '"' || c == ',').to_owned()),
    );
    routed.sort();
    let mut documented: Vec<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    documented.sort();
    assert_eq!(routed, documented);
    // Typed: every operation's successful answer has a schema (HEAD has
    // no body), every POST a request body schema, every error the Error one.
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let content = &response["content"];
                if status.starts_with('2') {
                    if method != "head" {
                        let schemas: Vec<_> = content.as_object().unwrap().values().collect();
                        assert!(
                            schemas.iter().all(|c| c["schema"].is_object()),
                            "{method} {path} {status}: no schema"
                        );
                    }
                } else {
                    assert_eq!(
                        content["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
                        "{method} {path} {status}"
                    );
                }
            }
            if method == "post" && !path.contains("{verb}") {
                assert!(
                    op["requestBody"]["content"]["application/json"]["schema"].is_object(),
                    "{method} {path}: no request schema"
                );
            }
        }
    }
    // Every documented method of every path is routed: without a token it
    // gets the 403 of authentication (health and the document: a 200),
    // never the fallback's 404 or a 405. Every other method is a JSON 405
    // (HEAD is answered wherever GET is, as HTTP says).
    runtime().block_on(async {
        for (path, methods) in doc["paths"].as_object().unwrap() {
            let uri = path
                .replace("{vault}", "ci")
                .replace("{name}", "X")
                .replace("{id}", "00000000-0000-0000-0000-000000000000")
                .replace("{slug}", "web")
                .replace("{verb}", "stop")
                .replace("{pid}", "1");
            let methods = methods.as_object().unwrap();
            for method in ["get", "post", "put", "patch", "delete"] {
                let (status, body) = call(
                    &home,
                    request(&method.to_uppercase(), &uri, None, Some("{}")),
                )
                .await;
                if !methods.contains_key(method) {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                    assert!(body["error"].as_str().is_some(), "{method} {path}: {body}");
                    continue;
                }
                let open = path == "/api/openapi.json" || path == "/api/health";
                let expected = if open {
                    StatusCode::OK
                } else {
                    StatusCode::FORBIDDEN
                };
                assert_eq!(status, expected, "{method} {path}");
            }
        }
    });
}

#[test]
fn every_error_body_is_json_even_the_extractors_rejections() {
    let (home, token, _) = setup();
    runtime().block_on(async {
        let cases: [(&str, &str, Option<&str>, StatusCode); 6] = [
            ("GET", "/api/audit?limit=", None, StatusCode::BAD_REQUEST),
            ("GET", "/api/audit?limit=-3", None, StatusCode::BAD_REQUEST),
            ("GET", "/api/vaults/ci/rendered?mode=Everything", None, StatusCode::BAD_REQUEST),
            ("PUT", "/api/vaults/secrets", Some("{}"), StatusCode::METHOD_NOT_ALLOWED),
            ("GET", "/api/nowhere", None, StatusCode::NOT_FOUND),
            ("POST", "/api/vaults/secrets", Some("{\"vault_name\": "), StatusCode::BAD_REQUEST),
        ];
        for (method, uri, body, expected) in cases {
            let (status, json) = call(&home, request(method, uri, Some(&token), body)).await;
            assert_eq!(status, expected, "{method} {uri}: {json}");
            assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {uri}: {json}");
        }
        // A field of the wrong type: a 422 naming its path, never its value.
        let body = format!(
            r#"{{"vault_name":"ci","secrets":[{{"name":"A","secret":"{VALUE}"}},{{"name":"B","secret":98765432123}}]}}"#
        );
        let (status, json) = call(&home, request("POST", "/api/vaults/secrets", Some(&token), Some(&body))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
        assert_eq!(json["error"], "secrets[1].secret: expected a string");
        assert!(!json.to_string().contains("98765432123"), "{json}");
        assert!(home.list("ci").is_empty(), "nothing was set");
        let (status, json) = call(&home, request("POST", "/api/secrets/set", Some(&token), Some(r#"{"name":"N","scope":"workspace","value":"v","ttl":"soon"}"#))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{json}");
        assert!(json["error"].as_str().unwrap().starts_with("ttl: expected a whole number"), "{json}");
    });
}

fn two_thousand_concurrent_writes_over_16_connections_lose_nothing() {
    let (home, token, _) = setup();
    let (mut server, port, _stderr) = start_server(&home);
    std::thread::scope(|scope| {
        for connection in 0..16 {
            let token = &token;
            scope.spawn(move || {
                for i in 0..125 {
                    let body = format!(r#"{{"vault_name":"ci","secrets":[{{"name":"C{connection}_{i}","secret":"value-{connection}-{i}"}}]}}"#);
                    let (status, reply) = http(port, "POST", "/api/vaults/secrets", token, Some(&body));
                    assert_eq!(status, 200, "{reply}");
                }
            });
        }
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(server.wait().unwrap().success());
    assert_eq!(home.list("ci").len(), 2000);
    assert_eq!(
        home.run(&["secret", "reveal", "C7_99", "--vault", "ci"])
            .ok(),
        "value-7-99\n"
    );
    let verified = home.run(&["--json", "audit", "verify"]).json();
    assert_eq!(verified["ok"], true);
    let sets = home
        .run(&["audit", "--vault", "ci"])
        .ok()
        .lines()
        .filter(|l| l.contains("secret.set"))
        .count();
    assert_eq!(sets, 2000, "one audit record per write");
}

#[test]
fn slow_clients_cannot_hold_the_server() {
    // Half-sent requests (the headers never end) hold every connection a
    // server allows; the next client waits to be accepted, and gets its
    // answer as soon as one of them goes, and the half-sent ones are cut
    // once their headers are overdue.
    let home = TestHome::new();
    let token = home.create_token("reader", &["--grant", "default:read"]);
    let (mut server, port, _log) = start_server_with(&home, &["--max-connections", "4"]);
    let half_sent: Vec<std::net::TcpStream> = (0..4)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .write_all(b"GET /api/vaults/default/secrets HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            stream
        })
        .collect();
    // Give the server the time to accept the four.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (answers, answered) = std::sync::mpsc::channel();
    let waiting_token = token.clone();
    std::thread::spawn(move || {
        let _ = answers.send(http(
            port,
            "GET",
            "/api/vaults/default/secrets",
            &waiting_token,
            None,
        ));
    });
    assert!(
        answered
            .recv_timeout(std::time::Duration::from_millis(700))
            .is_err(),
        "a fifth connection was served beyond --max-connections 4"
    );
    let mut half_sent = half_sent.into_iter();
    drop(half_sent.next());
    let (status, body) = answered
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the waiting client is served once a slot frees");
    assert_eq!(status, 200, "{body}");
    // The server closes the rest once their headers are overdue (10 s).
    for mut stream in half_sent {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream
            .read(&mut buf)
            .expect("closed by the server, not timed out here");
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || reply.starts_with("HTTP/1.1 408"), "{reply}");
    }
    // And it still serves.
    assert_eq!(
        http(port, "GET", "/api/vaults/default/secrets", &token, None).0,
        200
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

crate::conformance!(
    authentication_and_grants,
    bulk_set_is_not_atomic_and_names_each_failure,
    vars_metadata_head_delete_and_audit,
    a_real_server_serves_and_stops_on_sigterm,
    serve_refuses_to_start_with_the_wrong_key,
    rendered_gives_values_or_previews_and_is_audited,
    scoped_secrets_give_references_per_workspace_and_user,
    two_thousand_concurrent_writes_over_16_connections_lose_nothing,
);

#[test]
fn serve_logs_each_request_at_info_without_values_tokens_or_queries() {
    for format in ["text", "json"] {
        let (home, token, _) = setup();
        let (mut server, port, mut log) = start_server_full(&home, &["--log-format", format], &[]);
        http(port, "GET", "/api/health", "", None);
        http(
            port,
            "GET",
            &format!("/api/vaults/prod/rendered?mode=Full&probe={token}"),
            &token,
            None,
        );
        http(
            port,
            "GET",
            "/api/vaults/ci/secrets",
            "not-a-real-token",
            None,
        );
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        server.wait().unwrap();
        let text = log.rest();
        let requests: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("path=") || l.contains("\"path\""))
            .collect();
        assert_eq!(requests.len(), 3, "{format}: {text}");
        for forbidden in [
            token.as_str(),
            "prod-value-123",
            "probe=",
            "mode=Full",
            "not-a-real-token",
        ] {
            assert!(!text.contains(forbidden), "{format}: {forbidden} in {text}");
        }
        if format == "text" {
            assert!(
                requests[1].contains("INFO")
                    && requests[1].contains("method=GET")
                    && requests[1].contains("path=/api/vaults/prod/rendered")
                    && requests[1].contains("status=200")
                    && requests[1].contains("ms=")
                    && requests[1].contains("token=ci"),
                "{}",
                requests[1]
            );
            assert!(requests[2].contains("status=401") && requests[2].contains("token=-"));
        } else {
            let line: serde_json::Value = serde_json::from_str(requests[1]).unwrap();
            let fields = &line["fields"];
            assert_eq!(line["level"], "INFO");
            assert_eq!(fields["path"], "/api/vaults/prod/rendered");
            assert_eq!(fields["status"], 200);
            assert_eq!(fields["token"], "ci");
            assert!(fields["ms"].as_f64().is_some());
        }
    }
}

#[test]
fn serve_listens_on_a_host_name_and_names_an_address_in_use() {
    let home = TestHome::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = home.run(&["serve", "--listen", &format!("localhost:{port}")]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!("localhost:{port}")) && out.stderr.contains("in use"),
        "{}",
        out.stderr
    );
    // `localhost` resolves: the server comes up on it.
    drop(taken);
    let mut command = home.command(&["serve", "--listen", &format!("localhost:{port}")]);
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(
        first.contains(&format!("listening on http://127.0.0.1:{port}")),
        "{first}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_example_systemd_unit_verifies_and_its_command_serves() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/shroud.service"
    ))
    .unwrap();
    let exec_start = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let mut words = exec_start.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/shroud"));
    let args: Vec<&str> = words.collect();
    assert_eq!(args[..2], ["serve", "--listen"]);
    let dir = tempfile::tempdir().unwrap();
    let binary = crate::support::shroud_binary();
    match std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    {
        Ok(_) => {
            let copy = dir.path().join("shroud.service");
            std::fs::write(&copy, unit.replace("/usr/local/bin/shroud", binary)).unwrap();
            let out = std::process::Command::new("systemd-analyze")
                .arg("verify")
                .arg(&copy)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "systemd-analyze verify: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => eprintln!("SKIPPED: no systemd-analyze, the unit file is not verified"),
    }
    // Its command line, on a free port and a temporary home, serves.
    let home = TestHome::new();
    let mut flags: Vec<&str> = args[1..].to_vec();
    flags[1] = "127.0.0.1:0";
    let (mut server, port, _log) = start_server_full(&home, &flags[2..], &[]);
    let (status, _) = http(port, "GET", "/api/health", "", None);
    assert_eq!(status, 200);
    let _ = server.kill();
    let _ = server.wait();
}
