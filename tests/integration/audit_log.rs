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
    // Not stored either, in any table or column.
    for (place, bytes) in home.stored_bytes() {
        for value in ["audited-value", "bulk-value"] {
            assert!(
                !crate::support::contains(&bytes, value.as_bytes()),
                "{value} in {place}"
            );
        }
    }
}

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

fn verify_passes_on_an_untouched_log() {
    let home = populated();
    let out = home.run(&["audit", "verify"]).ok();
    assert_eq!(out, "ok: 5 audit records verified\n");
    let json = home.run(&["--json", "audit", "verify"]).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["records"], 5);
}

fn verify_names_an_edited_record() {
    let home = populated();
    home.sql("UPDATE audit SET outcome = 'denied' WHERE seq = 3");
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 3"), "{}", out.stderr);
    let json = home.run(&["--json", "audit", "verify"]);
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["first_broken"]["seq"], 3);
}

fn verify_names_an_edited_hash() {
    let home = populated();
    home.sql(&format!(
        "UPDATE audit SET hash = {} WHERE seq = 2",
        home.blob_literal(&[0; 32])
    ));
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 2"), "{}", out.stderr);
}

fn verify_names_a_removed_record() {
    let home = populated();
    home.sql("DELETE FROM audit WHERE seq = 2");
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 2"), "{}", out.stderr);
    assert!(out.stderr.contains("removed"), "{}", out.stderr);
}

fn verify_detects_removed_newest_records() {
    let home = populated();
    home.sql("DELETE FROM audit WHERE seq >= 4");
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 4"), "{}", out.stderr);
}

fn verify_detects_a_renumbered_chain() {
    let home = populated();
    // Remove the first record and shift the rest down: every link breaks.
    home.sql("DELETE FROM audit WHERE seq = 1");
    // In two steps, so no row ever takes a number another still holds.
    home.sql("UPDATE audit SET seq = -seq");
    home.sql("UPDATE audit SET seq = -seq - 1");
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 1"), "{}", out.stderr);
}

fn when_the_audit_record_cannot_be_written_nothing_happens() {
    let home = TestHome::new();
    home.set("GUARDED", "fail-closed-value");
    if home.is_postgres() {
        home.sql(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'audit unavailable'; END $$;
             CREATE TRIGGER block_audit BEFORE INSERT ON audit
             FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
        );
    } else {
        home.sql(
            "CREATE TRIGGER block_audit BEFORE INSERT ON audit
             BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END;",
        );
    }
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
    home.sql(if home.is_postgres() {
        "DROP TRIGGER block_audit ON audit"
    } else {
        "DROP TRIGGER block_audit"
    });
    assert_eq!(home.list("default"), vec!["GUARDED"]);
    let refs = home.count("SELECT COUNT(*) FROM secret_refs");
    assert_eq!(refs, 0, "a reference was stored without its audit record");
    home.run(&["audit", "verify"]).ok();
}

/// One stored record, as the chain encodes it.
struct Row {
    seq: i64,
    ts: i64,
    actor: String,
    action: String,
    vault: Option<String>,
    secret: Option<String>,
    version: Option<i64>,
    outcome: String,
}

fn rows(home: &TestHome) -> Vec<Row> {
    let conn = home.sqlite();
    let mut stmt = conn
        .prepare("SELECT seq, ts_ms, actor, action, vault, secret, version, outcome FROM audit ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            seq: r.get(0)?,
            ts: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            vault: r.get(4)?,
            secret: r.get(5)?,
            version: r.get(6)?,
            outcome: r.get(7)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The canonical bytes of a record after `prev` (the same encoding the
/// store uses; only the key is missing).
fn canonical(prev: &[u8], row: &Row) -> Vec<u8> {
    let mut out = prev.to_vec();
    out.extend_from_slice(&(row.seq as u64).to_be_bytes());
    out.extend_from_slice(&row.ts.to_be_bytes());
    let mut field = |f: Option<&[u8]>| match f {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    };
    field(Some(row.actor.as_bytes()));
    field(Some(row.action.as_bytes()));
    field(row.vault.as_deref().map(str::as_bytes));
    field(row.secret.as_deref().map(str::as_bytes));
    let version = row.version.map(|v| (v as u64).to_be_bytes());
    field(version.as_ref().map(|v| v.as_slice()));
    field(Some(row.outcome.as_bytes()));
    out
}

/// Rewrites the whole chain with `mac` (prefix + canonical bytes → 32
/// bytes), as a forger who can write the database would, after removing
/// the record `remove` and renumbering the rest so there is no gap.
fn forge(home: &TestHome, remove: i64, mac: &dyn Fn(&[u8]) -> [u8; 32], head_len: usize) {
    let conn = home.sqlite();
    conn.execute("DELETE FROM audit WHERE seq = ?1", [remove])
        .unwrap();
    conn.execute("UPDATE audit SET seq = seq - 1 WHERE seq > ?1", [remove])
        .unwrap();
    let mut prev = vec![0u8; 32];
    let all = rows(home);
    for row in &all {
        let hash = mac(&canonical(&prev, row));
        conn.execute(
            "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
            rusqlite::params![row.seq, prev, hash.as_slice()],
        )
        .unwrap();
        prev = hash.to_vec();
    }
    let mut head = (all.last().unwrap().seq as u64).to_be_bytes().to_vec();
    head.extend_from_slice(&prev);
    head.extend_from_slice(&mac(&head.clone())[..head_len - 40]);
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'audit_head'",
        [head],
    )
    .unwrap();
}

/// The older, unkeyed chain's hash: SHA-256 over the same encoding.
fn unkeyed_hash(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"shroud-audit-v1");
    h.update(bytes);
    h.finalize().into()
}

fn populated_with_a_reveal() -> (TestHome, i64) {
    let home = populated();
    home.reveal("S2");
    home.set("S9", "after-the-reveal");
    let seq = rows(&home)
        .iter()
        .find(|r| r.action == "secret.reveal")
        .unwrap()
        .seq;
    (home, seq)
}

#[test]
fn a_forger_who_recomputes_every_hash_is_caught() {
    use sha2::Sha256;
    // The old, unkeyed chain: SHA-256 over the same encoding.
    let (home, reveal) = populated_with_a_reveal();
    forge(&home, reveal, &unkeyed_hash, 40);
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 1"), "{}", out.stderr);
    // A keyed chain under a key the forger made up.
    use hmac::Mac;
    let (home, reveal) = populated_with_a_reveal();
    let key = crate::support::random_key();
    forge(
        &home,
        reveal,
        &|bytes| {
            let mut m = hmac::Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
            m.update(b"shroud-audit-v2");
            m.update(bytes);
            m.finalize().into_bytes().into()
        },
        72,
    );
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 1"), "{}", out.stderr);
    let json = home.run(&["--json", "audit", "verify"]).json();
    assert_eq!(json["first_broken"]["seq"], 1);
}

#[test]
fn a_record_whose_fields_no_longer_decode_is_reported_as_changed() {
    let home = populated();
    home.sqlite()
        .execute(
            "UPDATE audit SET version = 'two', ts_ms = x'00' WHERE seq = 2",
            [],
        )
        .unwrap();
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(
        out.stderr.contains("record 2") && out.stderr.contains("changed"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("database error"), "{}", out.stderr);
    // The log still lists.
    assert_eq!(home.audit_count(), 5);
}

#[test]
fn rotation_re_keys_the_chain() {
    let home = populated();
    let before = std::fs::read_to_string(home.key_path()).unwrap();
    home.run(&["key", "rotate"]).ok();
    home.run(&["audit", "verify"]).ok();
    home.set("AFTER", "after-the-rotation");
    assert!(home
        .run(&["audit", "verify"])
        .ok()
        .contains("7 audit records"));
    let rotated = audit_json(&home, &["--limit", "2"]);
    assert_eq!(rotated[0]["action"], "key.rotate");
    assert_eq!(rotated[0]["outcome"], "ok");
    // The old key's chain is gone: the MACs are not what the old key gives.
    assert_ne!(before, std::fs::read_to_string(home.key_path()).unwrap());
}

#[test]
fn a_chain_broken_before_a_rotation_stays_visible_in_its_record() {
    let home = populated();
    home.sql("DELETE FROM audit WHERE seq = 2");
    let out = home.run(&["key", "rotate"]);
    assert_eq!(
        out.code, 0,
        "a key one fears is compromised must be replaceable: {out:?}"
    );
    assert!(out.stderr.contains("already broken"), "{}", out.stderr);
    let last = audit_json(&home, &["--limit", "1"]);
    assert_eq!(last[0]["action"], "key.rotate");
    assert_eq!(last[0]["outcome"], "error");
    assert_eq!(last[0]["version"], 2, "names the first broken record");
}

#[test]
fn an_unkeyed_chain_of_an_older_store_is_converted_once_and_its_breaks_kept() {
    let old = unkeyed_hash;
    // An older shroud's store: the same records, chained by SHA-256, no
    // format marker.
    let make_legacy = |break_it: bool| {
        let home = populated();
        let conn = home.sqlite();
        conn.execute("DELETE FROM meta WHERE key = 'audit_chain'", [])
            .unwrap();
        let mut prev = vec![0u8; 32];
        let all = rows(&home);
        for row in &all {
            let hash = old(&canonical(&prev, row));
            conn.execute(
                "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE seq = ?1",
                rusqlite::params![row.seq, prev, hash.as_slice()],
            )
            .unwrap();
            prev = hash.to_vec();
        }
        let mut head = (all.last().unwrap().seq as u64).to_be_bytes().to_vec();
        head.extend_from_slice(&prev);
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'audit_head'",
            [head],
        )
        .unwrap();
        if break_it {
            conn.execute("UPDATE audit SET outcome = 'denied' WHERE seq = 3", [])
                .unwrap();
        }
        // An older store's key check (written with the key, as it was).
        let key_text = std::fs::read_to_string(home.key_path()).unwrap();
        let key = shroud::store::home::decode_key(&key_text).unwrap();
        let check = shroud::store::crypto::seal_key_check_v1(&key).unwrap();
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'key_check'",
            [check],
        )
        .unwrap();
        home
    };
    let home = make_legacy(false);
    assert!(home
        .run(&["audit", "verify"])
        .ok()
        .contains("6 audit records"));
    let last = audit_json(&home, &["--limit", "1"]);
    assert_eq!(last[0]["action"], "audit.upgrade");
    assert_eq!(last[0]["outcome"], "ok");
    // Converting a broken chain does not launder it: the conversion's own
    // record says where it was broken.
    let home = make_legacy(true);
    home.run(&["audit", "verify"]).ok();
    let last = audit_json(&home, &["--limit", "1"]);
    assert_eq!(last[0]["action"], "audit.upgrade");
    assert_eq!(last[0]["outcome"], "error");
    assert_eq!(last[0]["version"], 3);
}

#[test]
fn a_store_made_to_look_older_is_not_converted_and_its_forgery_shows() {
    // The forger removes the keyed chain's marker and rewrites the whole log
    // as an older store's unkeyed chain, leaving out the injections: the
    // key check (sealed, version 2) still says the chain is keyed, so the
    // store is not "converted" and verify names the first record.
    let (home, _) = populated_with_a_reveal();
    home.sqlite()
        .execute("DELETE FROM meta WHERE key = 'audit_chain'", [])
        .unwrap();
    let reveal = rows(&home)
        .iter()
        .find(|r| r.action == "secret.reveal")
        .unwrap()
        .seq;
    forge(&home, reveal, &unkeyed_hash, 40);
    let out = home.run(&["audit", "verify"]);
    out.fails_with(1);
    assert!(out.stderr.contains("record 1"), "{}", out.stderr);
    assert!(
        !audit_json(&home, &[])
            .iter()
            .any(|r| r["action"] == "audit.upgrade"),
        "the forged history was converted"
    );
}

crate::conformance!(
    every_sensitive_action_is_recorded_without_values,
    filters_and_limit,
    verify_passes_on_an_untouched_log,
    verify_names_an_edited_record,
    verify_names_an_edited_hash,
    verify_names_a_removed_record,
    verify_detects_removed_newest_records,
    verify_detects_a_renumbered_chain,
    when_the_audit_record_cannot_be_written_nothing_happens,
);

#[test]
fn a_schema_8_store_loses_its_unused_audit_index_and_keeps_its_chain() {
    let home = populated();
    let db = home.sqlite();
    db.execute_batch(
        "CREATE INDEX audit_by_secret ON audit (vault, secret); PRAGMA user_version = 8;",
    )
    .unwrap();
    drop(db);
    // The next command migrates: the filter still finds the records.
    assert_eq!(audit_json(&home, &["--secret", "S3"]).len(), 1);
    let db = home.sqlite();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, shroud::store::sqlite::SCHEMA_VERSION);
    assert_eq!(version, 9);
    let indexes: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'audit_by_secret'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 0);
    drop(db);
    home.run(&["audit", "verify"]).ok();
}
