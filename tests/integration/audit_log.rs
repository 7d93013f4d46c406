//! The audit log: a record for every sensitive action, never a value, a hash
//! chain that `audit verify` checks, and fail-closed writes.

use crate::support::TestHome;

fn audit_json(home: &TestHome, args: &[&str]) -> Vec<serde_json::Value> {
    let mut full = vec!["--json", "audit"];
    full.extend_from_slice(args);
    home.run(&full)
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn every_sensitive_action_is_recorded_without_values() {
    let home = TestHome::new();
    home.set("API", "audited-value-one");
    home.set("API", "audited-value-two");
    home.reveal("API");
    home.run(&["secret", "get", "API"]).ok();
    home.run(&["secret", "reveal", "NOPE"]).fails_with(1);
    home.run(&["vault", "set-secrets", "--vault", "ci", "B=bulk-value-1"])
        .ok();
    home.run(&["key", "rotate"]).ok();
    home.run(&["secret", "delete", "API"]).ok();
    let records = audit_json(&home, &[]);
    let summary: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["secret"].as_str().unwrap_or("-").to_owned(),
                r["version"].to_string(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("secret.set", "API", "1", "ok"),
        ("secret.set", "API", "2", "ok"),
        ("secret.reveal", "API", "2", "ok"),
        ("secret.reference", "API", "2", "ok"),
        ("secret.reveal", "NOPE", "null", "not_found"),
        ("secret.set", "B", "1", "ok"),
        ("key.rotate", "-", "3", "ok"),
        ("secret.delete", "API", "2", "ok"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(a, s, v, o)| (a.to_string(), s.to_string(), v.to_string(), o.to_string()))
        .collect();
    assert_eq!(summary, expected);
    for record in &records {
        assert_eq!(record["actor"], "cli");
        assert!(record["ts"].as_str().unwrap().ends_with('Z'));
    }
    let text = home.run(&["audit"]).ok();
    assert!(!text.contains("audited-value") && !text.contains("bulk-value"));
    // Not in the table either, in any column.
    let dump: String = home
        .sqlite()
        .prepare("SELECT quote(actor)||quote(action)||quote(vault)||quote(secret)||quote(outcome) FROM audit")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!dump.contains("audited-value"));
}

#[test]
fn filters_and_limit() {
    let home = TestHome::new();
    home.run(&["secret", "set", "A", "value-aaaa", "--vault", "one"])
        .ok();
    home.run(&["secret", "set", "B", "value-bbbb", "--vault", "two"])
        .ok();
    home.run(&["secret", "set", "A", "value-aaaa-2", "--vault", "two"])
        .ok();
    assert_eq!(audit_json(&home, &["--vault", "two"]).len(), 2);
    assert_eq!(audit_json(&home, &["--secret", "A"]).len(), 2);
    assert_eq!(
        audit_json(&home, &["--secret", "A", "--scope", "one"]).len(),
        1
    );
    let last = audit_json(&home, &["--limit", "1"]);
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["secret"], "A");
    assert_eq!(last[0]["vault"], "two");
}

fn populated() -> TestHome {
    let home = TestHome::new();
    for i in 0..5 {
        home.set(&format!("S{i}"), &format!("chain-value-{i}"));
    }
    home.run(&["audit", "verify"]).ok();
    home
}

#[test]
fn verify_passes_on_an_untouched_log() {
    let home = populated();
    let out = home.run(&["audit", "verify"]).ok();
    assert_eq!(out, "ok: 5 audit records verified\n");
    let json = home.run(&["--json", "audit", "verify"]).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["records"], 5);
}

#[test]
fn verify_names_an_edited_record() {
    let home = populated();
    home.sqlite()
        .execute("UPDATE audit SET outcome = 'denied' WHERE seq = 3", [])
        .unwrap();
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 3"), "{}", out.stderr);
    let json = home.run(&["--json", "audit", "verify"]);
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["first_broken"]["seq"], 3);
}

#[test]
fn verify_names_an_edited_hash() {
    let home = populated();
    home.sqlite()
        .execute("UPDATE audit SET hash = zeroblob(32) WHERE seq = 2", [])
        .unwrap();
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 2"), "{}", out.stderr);
}

#[test]
fn verify_names_a_removed_record() {
    let home = populated();
    home.sqlite()
        .execute("DELETE FROM audit WHERE seq = 2", [])
        .unwrap();
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 2"), "{}", out.stderr);
    assert!(out.stderr.contains("removed"), "{}", out.stderr);
}

#[test]
fn verify_detects_removed_newest_records() {
    let home = populated();
    home.sqlite()
        .execute("DELETE FROM audit WHERE seq >= 4", [])
        .unwrap();
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 4"), "{}", out.stderr);
}

#[test]
fn verify_detects_a_renumbered_chain() {
    let home = populated();
    // Remove the first record and shift the rest down: every link breaks.
    let conn = home.sqlite();
    conn.execute("DELETE FROM audit WHERE seq = 1", []).unwrap();
    conn.execute("UPDATE audit SET seq = seq - 1", []).unwrap();
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 1"), "{}", out.stderr);
}

#[test]
fn when_the_audit_record_cannot_be_written_nothing_happens() {
    let home = TestHome::new();
    home.set("GUARDED", "fail-closed-value");
    home.sqlite()
        .execute_batch(
            "CREATE TRIGGER block_audit BEFORE INSERT ON audit
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END;",
        )
        .unwrap();
    let reveal = home.run(&["secret", "reveal", "GUARDED"]);
    assert_ne!(reveal.code, 0);
    assert!(
        reveal.stdout.is_empty(),
        "a value was handed out: {reveal:?}"
    );
    assert!(!reveal.stderr.contains("fail-closed-value"));
    let set = home.run(&["secret", "set", "NEW", "never-stored-value"]);
    assert_ne!(set.code, 0);
    let delete = home.run(&["secret", "delete", "GUARDED"]);
    assert_ne!(delete.code, 0);
    home.run(&["secret", "get", "GUARDED"]);
    home.sqlite()
        .execute_batch("DROP TRIGGER block_audit")
        .unwrap();
    assert_eq!(home.list("default"), vec!["GUARDED"]);
    let refs: i64 = home
        .sqlite()
        .query_row("SELECT COUNT(*) FROM secret_refs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(refs, 0, "a reference was stored without its audit record");
    home.run(&["audit", "verify"]).ok();
}
