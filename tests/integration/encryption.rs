//! Encryption at rest: no plaintext in any file, and ciphertexts that are
//! moved between rows or altered are refused, never turned into another value.

use crate::support::{contains, from_hex, TestHome};

fn no_plaintext_value_in_any_file_of_the_home() {
    let home = TestHome::new();
    let values = [
        "alpha-plaintext-marker-0001",
        "bravo-plaintext-marker-0002",
        "charlie-plaintext-marker-3",
    ];
    home.set("A", values[0]);
    home.run_stdin(
        &["secret", "set", "B", "--vault", "ci"],
        values[1].as_bytes(),
    )
    .ok();
    home.run(&["vault", "set-secrets", &format!("C={}", values[2])])
        .ok();
    // Exercise every path that touches values: reveal, references, rotation, versions.
    home.reveal("A");
    home.run(&["secret", "get", "A"]).ok();
    home.set("A", "alpha-second-version-0001");
    home.run(&["key", "rotate"]).ok();
    home.reveal("C");
    // Keep a connection open so the WAL file is still there to be checked too.
    let holder = (!home.is_postgres()).then(|| home.sqlite());
    if let Some(holder) = &holder {
        holder
            .query_row("SELECT COUNT(*) FROM secrets", [], |r| r.get::<_, i64>(0))
            .unwrap();
    }
    home.set("D", "delta-plaintext-marker-0004");
    let stored = home.stored_bytes();
    let database = if home.is_postgres() {
        "pg_dump"
    } else {
        "shroud.db"
    };
    assert!(stored.iter().any(|(place, _)| place.ends_with(database)));
    for (place, bytes) in &stored {
        for value in values
            .iter()
            .chain(&["alpha-second-version-0001", "delta-plaintext-marker-0004"])
        {
            assert!(
                !contains(bytes, value.as_bytes()),
                "{value} in plaintext in {place}"
            );
        }
    }
    drop(holder);
}

/// (wrapped_key, sealed_value) of the one version `filter` selects.
fn blobs_where(home: &TestHome, filter: &str) -> (Vec<u8>, Vec<u8>) {
    let rows = home.text_rows(&format!(
        "SELECT {{hex:wrapped_key}}, {{hex:sealed_value}} FROM secret_versions WHERE {filter}"
    ));
    assert_eq!(rows.len(), 1, "{filter}");
    (from_hex(&rows[0][0]), from_hex(&rows[0][1]))
}

fn blobs(home: &TestHome, name: &str, version: i64) -> (Vec<u8>, Vec<u8>) {
    blobs_where(home, &format!("name = '{name}' AND version = {version}"))
}

fn put_blobs_where(home: &TestHome, filter: &str, blobs: &(Vec<u8>, Vec<u8>)) {
    home.sql(&format!(
        "UPDATE secret_versions SET wrapped_key = {}, sealed_value = {} WHERE {filter}",
        home.blob_literal(&blobs.0),
        home.blob_literal(&blobs.1),
    ));
    assert_eq!(&blobs_where(home, filter), blobs);
}

fn put_blobs(home: &TestHome, name: &str, version: i64, blobs: &(Vec<u8>, Vec<u8>)) {
    put_blobs_where(
        home,
        &format!("name = '{name}' AND version = {version}"),
        blobs,
    );
}

fn ciphertexts_swapped_between_rows_are_refused() {
    let home = TestHome::new();
    home.set("FIRST", "first-secret-value");
    home.set("SECOND", "second-secret-value");
    let first = blobs(&home, "FIRST", 1);
    let second = blobs(&home, "SECOND", 1);
    put_blobs(&home, "FIRST", 1, &second);
    put_blobs(&home, "SECOND", 1, &first);
    for name in ["FIRST", "SECOND"] {
        let out = home.run(&["secret", "reveal", name]);
        out.fails_with(1);
        assert!(out.stderr.contains("cannot be opened"), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{out:?}");
        assert!(!out.stderr.contains("secret-value"));
    }
    // Only the value half swapped (each row keeps its own wrapped key): still refused.
    put_blobs(&home, "FIRST", 1, &(first.0.clone(), second.1.clone()));
    home.run(&["secret", "reveal", "FIRST"]).fails_with(1);
    // Restored, it opens again: the refusal came from the move, nothing else.
    put_blobs(&home, "FIRST", 1, &first);
    assert_eq!(home.reveal("FIRST"), "first-secret-value");
}

fn a_ciphertext_moved_to_another_version_or_vault_is_refused() {
    let home = TestHome::new();
    home.set("ROT", "version-one-value");
    home.set("ROT", "version-two-value");
    let v1 = blobs(&home, "ROT", 1);
    put_blobs(&home, "ROT", 2, &v1);
    home.run(&["secret", "reveal", "ROT"]).fails_with(1);

    home.run(&["secret", "set", "SAME", "in-vault-a", "--vault", "a"])
        .ok();
    home.run(&["secret", "set", "SAME", "in-vault-b", "--vault", "b"])
        .ok();
    let a = blobs_where(&home, "vault = 'a'");
    put_blobs_where(&home, "vault = 'b'", &a);
    let out = home.run(&["secret", "reveal", "SAME", "--vault", "b"]);
    out.fails_with(1);
    assert!(!out.stdout_text().contains("in-vault-a"));
}

fn a_flipped_byte_anywhere_is_refused() {
    let home = TestHome::new();
    home.set("FLIP", "flip-target-value");
    let original = blobs(&home, "FLIP", 1);
    let positions = |len: usize| [0, 1, 5, 13, len / 2, len - 17, len - 1];
    for field in 0..2 {
        let len = if field == 0 {
            original.0.len()
        } else {
            original.1.len()
        };
        for pos in positions(len) {
            let mut broken = original.clone();
            let target = if field == 0 {
                &mut broken.0
            } else {
                &mut broken.1
            };
            target[pos] ^= 0x40;
            put_blobs(&home, "FLIP", 1, &broken);
            let out = home.run(&["secret", "reveal", "FLIP"]);
            out.fails_with(1);
            assert!(out.stdout.is_empty(), "field {field} byte {pos}: {out:?}");
        }
    }
    put_blobs(&home, "FLIP", 1, &original);
    assert_eq!(home.reveal("FLIP"), "flip-target-value");
    // Every refusal was audited as an error.
    let audit = home.run(&["--json", "audit", "--secret", "FLIP"]).ok();
    assert_eq!(audit.matches("\"error\"").count(), 14, "{audit}");
}

crate::conformance!(
    no_plaintext_value_in_any_file_of_the_home,
    ciphertexts_swapped_between_rows_are_refused,
    a_ciphertext_moved_to_another_version_or_vault_is_refused,
    a_flipped_byte_anywhere_is_refused,
);
