//! `shroud token create|list|revoke` and token authentication.

use shroud::store::tokens::Access;
use shroud::store::{OpenMode, Store};

use crate::support::{contains, TestHome};

fn store(home: &TestHome) -> Store {
    Store::open(home.store_config("test"), OpenMode::Existing).unwrap()
}

fn a_token_is_printed_once_stored_hashed_and_authenticates() {
    let home = TestHome::new();
    let out = home.run(&[
        "token",
        "create",
        "ci",
        "--grant",
        "ci:write",
        "--grant",
        "prod:read",
        "--user",
        "alice",
    ]);
    let token = out.ok().trim().to_owned();
    assert!(token.starts_with("shr_") && token.len() > 40, "{token}");
    for (place, bytes) in home.stored_bytes() {
        assert!(
            !contains(&bytes, token.as_bytes()),
            "token stored in {place}"
        );
    }
    let listed = home.run(&["token", "list"]).ok();
    assert!(
        listed.starts_with("ci\tci:write,prod:read\talice\t"),
        "{listed}"
    );
    assert!(listed.trim_end().ends_with("active") && !listed.contains(&token));

    let info = store(&home)
        .authenticate(&token)
        .unwrap()
        .expect("authenticates");
    assert_eq!(info.name, "ci");
    assert_eq!(info.user.as_deref(), Some("alice"));
    assert!(info.allows("ci", Access::Write) && info.allows("prod", Access::Read));
    assert!(!info.allows("prod", Access::Write) && !info.allows("other", Access::Read));
    assert!(store(&home)
        .authenticate("shr_not-a-real-token")
        .unwrap()
        .is_none());
    let mut altered = token.clone();
    altered.pop();
    assert!(store(&home).authenticate(&altered).unwrap().is_none());
}

fn a_revoked_token_no_longer_authenticates() {
    let home = TestHome::new();
    let token = home.create_token("deploy", &["--grant", "prod:write"]);
    home.run(&["token", "revoke", "deploy"]).ok();
    assert!(store(&home).authenticate(&token).unwrap().is_none());
    let json = home.run(&["--json", "token", "list"]).json();
    assert!(json["tokens"][0]["revoked_at"].is_string());
    home.run(&["token", "revoke", "deploy"]).fails_with(1);
    home.run(&["token", "revoke", "never-existed"])
        .fails_with(1);
    let audit = home.run(&["audit"]).ok();
    assert!(
        audit.contains("token.create\t-\tdeploy") && audit.contains("token.revoke\t-\tdeploy"),
        "{audit}"
    );
    assert!(!audit.contains(&token));
}

fn bad_token_requests_are_refused() {
    let home = TestHome::new();
    home.run(&["token", "create", "ci", "--grant", "ci:admin"])
        .fails_with(2);
    home.run(&["token", "create", "ci", "--grant", "Bad Vault:read"])
        .fails_with(2);
    home.run(&["token", "create", "bad name"]).fails_with(2);
    // shroud's own actors: a token named so would pass for the CLI in the
    // audit log and own the CLI's sandboxes.
    for reserved in ["cli", "api"] {
        let out = home.run(&["token", "create", reserved, "--grant", "ci:read"]);
        out.fails_with(2);
        assert!(out.stderr.contains("reserved"), "{}", out.stderr);
    }
    home.run(&["token", "create", "ci", "--user", "bad user"])
        .fails_with(2);
    home.run(&["token", "create", "ci", "--grant", "ci:read"])
        .ok();
    let again = home.run(&["token", "create", "ci", "--grant", "ci:read"]);
    again.fails_with(1);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(home.run(&["token", "list"]).ok().lines().count(), 1);
    let ungranted = home.run(&["token", "create", "nothing"]);
    assert!(
        ungranted.stderr.contains("no grants"),
        "{}",
        ungranted.stderr
    );
}

fn a_token_with_a_ttl_stops_authenticating_when_it_expires() {
    let home = TestHome::new();
    let out = home.run(&[
        "--json", "token", "create", "brief", "--grant", "ci:read", "--ttl", "1",
    ]);
    let created = out.json();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(created["expires_at"].is_string(), "{created}");
    let lasting = home.create_token("lasting", &["--grant", "ci:read", "--ttl", "3600"]);
    assert!(store(&home).authenticate(&token).unwrap().is_some());
    crate::support::wait_until(
        std::time::Duration::from_secs(10),
        "the token to expire",
        || store(&home).authenticate(&token).unwrap().is_none(),
    );
    assert!(store(&home).authenticate(&lasting).unwrap().is_some());
    let listed = home.run(&["token", "list"]).ok();
    let brief = listed.lines().find(|l| l.starts_with("brief\t")).unwrap();
    assert!(brief.contains("expired "), "{listed}");
    let lasting = listed.lines().find(|l| l.starts_with("lasting\t")).unwrap();
    assert!(lasting.contains("active until "), "{listed}");
    for bad in ["0", "-5", "soon", "999999999999"] {
        let out = home.run(&["token", "create", "bad", "--ttl", bad]);
        assert_eq!(out.code, 2, "{bad}: {out:?}");
    }
    assert!(!home.run(&["token", "list"]).ok().contains("bad\t"));
}

crate::conformance!(
    a_token_is_printed_once_stored_hashed_and_authenticates,
    a_revoked_token_no_longer_authenticates,
    a_token_with_a_ttl_stops_authenticating_when_it_expires,
    bad_token_requests_are_refused,
);
