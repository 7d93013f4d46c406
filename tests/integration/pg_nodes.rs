//! PostgreSQL beyond the conformance suite: TLS, a database that is not
//! there or goes away, and several `shroud serve` nodes on one database.

use crate::pg::Cluster;
use crate::support::TestHome;

/// A home on `url` (a database of a cluster of the test's own).
fn home_on(url: &str) -> TestHome {
    TestHome::with_store(url)
}

#[test]
fn tls_is_spoken_and_the_server_certificate_checked() {
    let Some(cluster) = Cluster::start_with(&[], true) else {
        return;
    };
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls/ca.pem");
    // The server takes TLS connections only: this one works because it speaks TLS.
    let url = cluster.database_at(&format!(
        "postgres://postgres@localhost:{{port}}/{{db}}?sslmode=require&sslrootcert={}",
        ca.display()
    ));
    let home = home_on(&url);
    home.set("OVER_TLS", "value-sent-over-tls");
    assert_eq!(home.reveal("OVER_TLS"), "value-sent-over-tls");
    home.run(&["audit", "verify"]).ok();

    // Without sslmode, shroud does not speak TLS and the server refuses it.
    let plain =
        TestHome::with_store(&cluster.database_at("postgres://postgres@127.0.0.1:{port}/{db}"));
    let out = plain.run(&["secret", "set", "X", "never-stored-value"]);
    out.fails_with(125);
    assert!(
        out.stderr
            .contains("cannot connect to the database at 127.0.0.1:")
            && out.stderr.contains("no encryption"),
        "{}",
        out.stderr
    );

    // Encrypted but not verified is refused: the test CA is not a public root.
    let unverified = TestHome::with_store(
        &cluster.database_at("postgres://postgres@localhost:{port}/{db}?sslmode=require"),
    );
    let out = unverified.run(&["secret", "set", "X", "never-stored-value"]);
    out.fails_with(125);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);

    // A certificate for another name is refused too (the server listens on
    // 127.0.0.2 as well, which its certificate does not name).
    let misnamed = TestHome::with_store(&cluster.database_at(&format!(
        "postgres://postgres@127.0.0.2:{{port}}/{{db}}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    )));
    let out = misnamed.run(&["secret", "set", "X", "never-stored-value"]);
    out.fails_with(125);
    assert!(out.stderr.contains("certificate"), "{}", out.stderr);
    // None of the refused connections wrote anything.
    assert_eq!(home.list("default"), vec!["OVER_TLS"]);
    for refused in [&plain, &unverified, &misnamed] {
        assert!(
            !refused.path().exists(),
            "a refused connection made the home"
        );
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_database_fails_at_once_naming_the_host_never_the_password() {
    let port = closed_port();
    let url = format!("postgres://shroud:hunter2-db-password@127.0.0.1:{port}/vault");
    // From the environment and from the flag, for a command and for a server.
    let home = TestHome::with_store(&url);
    let mut runs = vec![
        home.run(&["secret", "set", "A", "never-stored-value"]),
        home.run(&["secret", "list"]),
    ];
    let mut serve = home.command(&["serve", "--listen", "127.0.0.1:0"]);
    runs.push(home.run_with(serve, None));
    serve = TestHome::new().command(&["--store", &url, "serve", "--listen", "127.0.0.1:0"]);
    runs.push(home.run_with(serve, None));
    // Each gives up at once: a refused connection is not retried or waited
    // on (connect_timeout bounds one that is never answered).
    for out in &runs {
        out.fails_with(125);
        assert!(
            out.stderr.contains(&format!("127.0.0.1:{port}/vault")),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    assert!(!home.path().exists());
}

#[test]
fn a_bad_store_url_is_a_usage_error_that_hides_the_password() {
    let home = TestHome::new();
    for url in [
        "mysql://root:hunter2-db-password@db/vault",
        "postgres://root:hunter2-db-password@db/vault?sslmode=sometimes",
        "postgres://root:hunter2-db-password@db:notaport/vault",
    ] {
        let out = home.run(&["--store", url, "secret", "list"]);
        out.fails_with(2);
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
        assert!(!out.stderr.contains("hunter2"), "{}", out.stderr);
    }
}

/// One `shroud serve` node: its home (its own key file and sandboxes), its
/// server and port.
struct Node {
    home: TestHome,
    name: &'static str,
    server: std::process::Child,
    port: u16,
    _log: crate::api::ServerLog,
}

impl Node {
    /// Starts node `name` on `home` (its store named by the home).
    fn start(home: TestHome, name: &'static str) -> Node {
        let (server, port, log) = crate::api::start_server_full(
            &home,
            &["--fetch-allow", "127.0.0.0/8"],
            &[("SHROUD_NODE", name)],
        );
        Node {
            home,
            name,
            server,
            port,
            _log: log,
        }
    }

    fn http(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, String) {
        crate::api::http(self.port, method, path, token, body)
    }

    /// A CLI command in this node's home, as this node.
    fn cli(&self, args: &[&str]) -> crate::support::Run {
        let mut command = self.home.command(args);
        command.env("SHROUD_NODE", self.name);
        self.home.run_with(command, None)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A second home on the same store as `first`, with the same master key in
/// a key file of its own (what an operator copies to a new node).
fn second_home(first: &TestHome) -> TestHome {
    let second = TestHome::with_store(first.store_url().expect("a PostgreSQL home"));
    std::fs::create_dir_all(second.path()).unwrap();
    std::fs::set_permissions(
        second.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::copy(first.key_path(), second.key_path()).unwrap();
    second
}

/// Two nodes on a fresh database of the shared cluster, and a token `agent`
/// (made with the CLI of the first) that may write `ci` and `workspace`.
fn two_nodes() -> Option<(Node, Node, String)> {
    let first = TestHome::postgres()?;
    let token = first.create_token(
        "agent",
        &["--grant", "ci:write", "--grant", "workspace:write"],
    );
    let second = second_home(&first);
    Some((
        Node::start(first, "node-a"),
        Node::start(second, "node-b"),
        token,
    ))
}

fn set_body(vault: &str, name: &str, value: &str) -> String {
    serde_json::json!({"vault_name": vault, "secrets": [{"name": name, "secret": value}]})
        .to_string()
}

#[test]
fn two_nodes_share_tokens_secrets_references_and_one_audit_chain() {
    let Some((a, b, token)) = two_nodes() else {
        return;
    };
    // A token made on A (its CLI) works on B; a secret set through B
    // reads through A.
    let (status, body) = b.http(
        "POST",
        "/api/vaults/secrets",
        &token,
        Some(&set_body("ci", "SHARED", "shared-value-9d1e")),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = a.http("GET", "/api/vaults/ci/rendered?mode=Full", &token, None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("shared-value-9d1e"), "{body}");

    // A reference made on A resolves on B (and reaches the target whole).
    let set = r#"{"name":"REFERRED","value":"referred-value-77ab","scope":"workspace"}"#;
    let (status, body) = a.http("POST", "/api/secrets/set", &token, Some(set));
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reference = json["ref"].as_str().unwrap().to_owned();
    let (target, received) = crate::api::echo_target();
    let fetch = serde_json::json!({
        "url": format!("http://127.0.0.1:{target}/"),
        "method": "GET",
        "headers": {"X-Token": reference},
    })
    .to_string();
    let (status, body) = b.http("POST", "/api/fetch", &token, Some(&fetch));
    assert_eq!(status, 200, "{body}");
    let request = received
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(request.contains("referred-value-77ab"), "{request}");
    assert!(
        !body.contains("referred-value-77ab"),
        "the response is masked: {body}"
    );

    // Revoked on A, refused by both at once (no cache outlives it).
    a.cli(&["token", "revoke", "agent"]).ok();
    for node in [&a, &b] {
        let (status, body) = node.http("GET", "/api/vaults/ci/secrets", &token, None);
        assert_eq!(status, 401, "{} after the revocation: {body}", node.name);
    }
    // One audit chain, whoever wrote it; both nodes' CLIs verify it.
    let verified = b.cli(&["--json", "audit", "verify"]).json();
    assert_eq!(verified["ok"], true, "{verified}");
    a.cli(&["audit", "verify"]).ok();
    let actions = a.cli(&["audit"]).ok();
    assert!(actions.contains("token.revoke"), "{actions}");
}

#[test]
fn a_thousand_concurrent_writes_over_two_nodes_all_succeed() {
    let Some((a, b, token)) = two_nodes() else {
        return;
    };
    let ports = [a.port, b.port];
    // 20 clients, each writing 50 secrets through alternate nodes: 500
    // distinct names, and 500 versions of one shared name.
    let clients: Vec<_> = (0..20)
        .map(|client| {
            let token = token.clone();
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for i in 0..50 {
                    let port = ports[(client + i) % 2];
                    let body = if i % 2 == 0 {
                        set_body(
                            "ci",
                            &format!("C{client}_{i}"),
                            &format!("value-{client}-{i}"),
                        )
                    } else {
                        set_body("ci", "CONTENDED", &format!("contended-{client}-{i}"))
                    };
                    let (status, answer) =
                        crate::api::http(port, "POST", "/api/vaults/secrets", &token, Some(&body));
                    if status != 200 {
                        failures.push((status, answer));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 1000 writes failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let names = a.cli(&["secret", "list", "--vault", "ci"]).ok();
    assert_eq!(names.lines().count(), 501, "500 names and CONTENDED");
    // Every version of the contended name was numbered once: 500 exactly.
    let meta = b
        .cli(&["--json", "secret", "history", "CONTENDED", "--vault", "ci"])
        .json();
    let kept: Vec<u64> = meta["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, (491..=500).collect::<Vec<_>>(), "the last ten kept");
    // Stored: ten sealed versions, no more (a batch prunes what it drops).
    let stored = a
        .home
        .count("SELECT COUNT(*) FROM secret_versions WHERE vault = 'ci' AND name = 'CONTENDED'");
    assert_eq!(stored, 10);
    // And the audit log is one chain of every write.
    let verified = b.cli(&["--json", "audit", "verify"]).json();
    assert_eq!(verified["ok"], true, "{verified}");
    let sets = a
        .home
        .count("SELECT COUNT(*) FROM audit WHERE action = 'secret.set'");
    assert_eq!(sets, 1000);
}

#[test]
fn a_sandbox_lives_on_the_node_that_made_it() {
    let Some((a, b, token)) = two_nodes() else {
        return;
    };
    let (status, body) = a.http(
        "POST",
        "/api/sandboxes",
        &token,
        Some(r#"{"template":"bash","vault":"ci"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let exec = format!("/api/sandboxes/{id}/exec");
    let command = r#"{"command":["sh","-c","echo made-here > here.txt; cat here.txt"]}"#;
    let (status, body) = a.http("POST", &exec, &token, Some(command));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("made-here"), "{body}");
    // Elsewhere: a 409 naming the node, for exec and delete; nothing ran.
    for (method, path, body) in [
        ("POST", exec.as_str(), Some(command)),
        ("DELETE", &format!("/api/sandboxes/{id}"), None),
    ] {
        let (status, answer) = b.http(method, path, &token, body);
        assert_eq!(status, 409, "{method} {path}: {answer}");
        assert!(answer.contains("node-a"), "{answer}");
    }
    let listed = b.cli(&["--json", "sandbox", "list"]).json();
    assert_eq!(listed["sandboxes"][0]["node"], "node-a", "{listed}");
    // The CLI of the other node says so too.
    let out = b.cli(&["sandbox", "exec", &id, "--", "true"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("node-a"), "{}", out.stderr);
    let (status, body) = a.http("DELETE", &format!("/api/sandboxes/{id}"), &token, None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_key_rotated_on_one_node_is_followed_by_every_other() {
    let Some((a, b, token)) = two_nodes() else {
        return;
    };
    let read = |node: &Node| node.http("GET", "/api/vaults/ci/rendered?mode=Full", &token, None);
    let (status, body) = a.http(
        "POST",
        "/api/vaults/secrets",
        &token,
        Some(&set_body("ci", "LIVE", "live-value-4f2a")),
    );
    assert_eq!(status, 200, "{body}");
    let b_key_before = std::fs::read_to_string(b.home.key_path()).unwrap();
    for round in 0..2 {
        a.cli(&["key", "rotate"]).ok();
        // B's server goes on, and keeps the new key in its own key file.
        let (status, body) = read(&b);
        assert_eq!(status, 200, "round {round}: {body}");
        assert!(body.contains("live-value-4f2a"), "{body}");
        assert_eq!(
            std::fs::read(b.home.key_path()).unwrap(),
            std::fs::read(a.home.key_path()).unwrap(),
            "round {round}"
        );
        let (status, body) = b.http(
            "POST",
            "/api/vaults/secrets",
            &token,
            Some(&set_body("ci", "AFTER", "written-after-rotation")),
        );
        assert_eq!(status, 200, "{body}");
    }
    // The key B had is kept beside the new one, as a rotation keeps it.
    let kept = std::fs::read_dir(b.home.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("master.key.old-")
        })
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>();
    assert!(kept.contains(&b_key_before), "{kept:?}");
    b.cli(&["audit", "verify"]).ok();

    // Rotated without a handoff (the old key leaked): B refuses to work
    // with the key it has, until it is given the new one.
    a.cli(&["key", "rotate", "--no-handoff"]).ok();
    let (status, _) = read(&b);
    assert_ne!(status, 200);
    let out = b.cli(&["secret", "reveal", "LIVE", "--vault", "ci"]);
    out.fails_with(2);
    assert!(!out.stdout_text().contains("live-value"));
    std::fs::copy(a.home.key_path(), b.home.key_path()).unwrap();
    let (status, body) = read(&b);
    assert_eq!(status, 200, "{body}");
    b.cli(&["audit", "verify"]).ok();
}

#[test]
fn postgres_restarted_under_load_gives_503s_then_recovers_losing_nothing_acknowledged() {
    // A cluster of the test's own, durable (synchronous commits), stopped
    // the hard way (immediate shutdown: crash recovery on the way back).
    let Some(cluster) = Cluster::start_with(&["synchronous_commit=on", "fsync=on"], false) else {
        return;
    };
    let first = TestHome::with_store(&cluster.database());
    let token = first.create_token("agent", &["--grant", "ci:write"]);
    let second = second_home(&first);
    let (a, b) = (Node::start(first, "node-a"), Node::start(second, "node-b"));
    let ports = [a.port, b.port];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let (token, stop) = (token.clone(), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut acknowledged, mut unavailable, mut other) = (Vec::new(), 0, Vec::new());
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let name = format!("W{writer}_{i}");
                    let body = set_body("ci", &name, &format!("value-{writer}-{i}"));
                    let (status, answer) = crate::api::http(
                        ports[i % 2],
                        "POST",
                        "/api/vaults/secrets",
                        &token,
                        Some(&body),
                    );
                    match status {
                        200 => acknowledged.push(name),
                        503 => {
                            unavailable += 1;
                            assert!(answer.contains("unavailable"), "{answer}");
                            std::thread::sleep(std::time::Duration::from_millis(20));
                        }
                        _ => other.push((status, answer)),
                    }
                    i += 1;
                }
                (acknowledged, unavailable, other)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(700));
    cluster.crash();
    // While it is down: a 503 that says so, on both nodes, for reads too.
    for port in ports {
        let (status, body) = crate::api::http(port, "GET", "/api/vaults/ci/secrets", &token, None);
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("unavailable") && !body.contains("internal"),
            "{body}"
        );
        assert!(
            !body.contains(&cluster.port.to_string()),
            "no host detail: {body}"
        );
        // The health route (no token) says the store is out of reach.
        let (status, body) = crate::api::http(port, "GET", "/api/health", "", None);
        assert_eq!(status, 503, "{body}");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health["status"], "unavailable", "{body}");
        assert_eq!(health["store"]["reachable"], false, "{body}");
        assert_eq!(health["store"]["backend"], "postgresql", "{body}");
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    cluster.run();
    // Back: the same servers (never restarted) answer again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for port in ports {
        loop {
            let (status, body) =
                crate::api::http(port, "GET", "/api/vaults/ci/secrets", &token, None);
            if status == 200 {
                break;
            }
            assert_eq!(status, 503, "{body}");
            assert!(std::time::Instant::now() < deadline, "no recovery: {body}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    for port in ports {
        let (status, body) = crate::api::http(port, "GET", "/api/health", "", None);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""reachable":true"#), "{body}");
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut acknowledged = Vec::new();
    let mut unavailable = 0;
    for writer in writers {
        let (names, refused, other) = writer.join().unwrap();
        assert!(other.is_empty(), "not a 200 or a 503: {other:?}");
        acknowledged.extend(names);
        unavailable += refused;
    }
    assert!(unavailable > 0, "the writers never saw the outage");
    // Nothing acknowledged was lost.
    let stored: std::collections::HashSet<String> = a
        .cli(&["secret", "list", "--vault", "ci"])
        .ok()
        .lines()
        .map(str::to_owned)
        .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
    b.cli(&["audit", "verify"]).ok();
}

#[test]
fn nodes_starting_at_once_on_an_empty_database_migrate_it_once() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let url = cluster.database();
    let key = crate::support::random_key();
    // Eight first commands at once, each from a home of its own, one key.
    let homes: Vec<TestHome> = (0..8).map(|_| TestHome::with_store(&url)).collect();
    let runs: Vec<_> = homes
        .iter()
        .enumerate()
        .map(|(i, home)| {
            let mut command =
                home.command(&["secret", "set", &format!("S{i}"), "first-writes-value"]);
            command.env("SHROUD_MASTER_KEY", &key);
            command
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        cluster
            .psql(
                &url,
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM shroud_schema"
            )
            .trim(),
        (1..=shroud::store::postgres::SCHEMA_VERSION)
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(","),
        "each migration ran once"
    );
    assert_eq!(
        homes[0]
            .run_with_key(&key, &["secret", "list"])
            .ok()
            .lines()
            .count(),
        8
    );
    homes[3].run_with_key(&key, &["audit", "verify"]).ok();
}

#[test]
fn a_database_that_answers_bytea_in_escape_form_works_the_same() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    // A DBA's setting shroud does not control.
    let url = cluster.database();
    let name = url.rsplit('/').next().unwrap().to_owned();
    cluster.psql(
        &url,
        &format!("ALTER DATABASE {name} SET bytea_output = 'escape'"),
    );
    let home = TestHome::with_store(&url);
    home.set("FIRST", "first-value-1234");
    home.set("FIRST", "second-value-1234");
    assert_eq!(home.reveal("FIRST"), "second-value-1234");
    let verified = home.run(&["--json", "audit", "verify"]).json();
    assert_eq!(verified["ok"], true, "{verified}");
}

/// The deployment `slug` as node `node` lists it over the API.
fn deployment_on(node: &Node, token: &str, slug: &str) -> serde_json::Value {
    let (status, body) = node.http("GET", "/api/deployments", token, None);
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    list["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["slug"] == slug)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn a_deployment_runs_on_one_node_follows_rotations_from_any_and_is_taken_over_when_its_node_dies() {
    let Some((a, b, token)) = two_nodes() else {
        return;
    };
    let (status, body) = a.http(
        "POST",
        "/api/vaults/secrets",
        &token,
        Some(&set_body("ci", "API_KEY", "sk-live-node-00001")),
    );
    assert_eq!(status, 200, "{body}");
    let create = serde_json::json!({
        "templateSlug": "bash",
        "apiSlug": "svc",
        "vault": "ci",
        "secrets": ["API_KEY"],
        "ready_after": 0.2,
        "command": ["bash", "-c", "echo \"key $API_KEY\"; exec sleep 1000"],
    })
    .to_string();
    let (status, body) = a.http("POST", "/api/deployments", &token, Some(&create));
    assert_eq!(status, 200, "{body}");
    crate::support::wait_until(
        std::time::Duration::from_secs(15),
        "svc running on node-a",
        || {
            let svc = deployment_on(&a, &token, "svc");
            svc["state"] == "running" && svc["node"] == "node-a"
        },
    );
    // Node b sees it, as node a last reported it.
    crate::support::wait_until(
        std::time::Duration::from_secs(5),
        "node-b to list it",
        || {
            let svc = deployment_on(&b, &token, "svc");
            svc["node"] == "node-a" && svc["state"] == "running"
        },
    );

    // A new version written through node b reaches the deployment on node a.
    let (status, body) = b.http(
        "POST",
        "/api/vaults/secrets",
        &token,
        Some(&set_body("ci", "API_KEY", "sk-live-node-00002")),
    );
    assert_eq!(status, 200, "{body}");
    let noticed = crate::support::wait_until(
        std::time::Duration::from_secs(10),
        "the rotation to start on node-a",
        || {
            deployment_on(&a, &token, "svc")["instances"]
                .as_array()
                .is_some_and(|i| i.iter().any(|i| i["secret_versions"]["API_KEY"] == 2))
        },
    );
    assert!(
        noticed < std::time::Duration::from_secs(2),
        "noticed after {noticed:?}"
    );

    // Node a dies: node b takes the deployment over within 15 s.
    let mut a = a;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.server.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = a.server.wait();
    let took = crate::support::wait_until(
        std::time::Duration::from_secs(20),
        "node-b to run svc",
        || {
            let svc = deployment_on(&b, &token, "svc");
            svc["node"] == "node-b" && svc["state"] == "running"
        },
    );
    assert!(
        took < std::time::Duration::from_secs(15),
        "taken over after {took:?}"
    );
    let svc = deployment_on(&b, &token, "svc");
    assert_eq!(
        svc["instances"][0]["secret_versions"]["API_KEY"], 2,
        "{svc}"
    );
    let (status, logs) = b.http("GET", "/api/deployments/svc/logs", &token, None);
    assert_eq!(status, 200);
    assert!(logs.contains("taken on by node `node-b`"), "{logs}");
    assert!(
        logs.contains("key <secret:api_key>") && !logs.contains("sk-live-node"),
        "{logs}"
    );
    eprintln!("rotation noticed across nodes in {noticed:?}; taken over in {took:?}");
}
