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
    let started = std::time::Instant::now();
    let mut serve = home.command(&["serve", "--listen", "127.0.0.1:0"]);
    runs.push(home.run_with(serve, None));
    serve = TestHome::new().command(&["--store", &url, "serve", "--listen", "127.0.0.1:0"]);
    runs.push(home.run_with(serve, None));
    // Each gives up at once (a refused connection is not waited on).
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
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
