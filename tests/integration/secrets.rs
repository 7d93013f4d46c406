//! `secret set/list/exists/delete/get/reveal/history`: outputs and exit codes.

use std::os::unix::fs::PermissionsExt;

use crate::support::{contains, TestHome};

#[test]
fn set_then_reveal_round_trips_and_creates_a_private_home() {
    let home = TestHome::new();
    home.set("API_KEY", "sk-live-0123456789");
    assert_eq!(home.reveal("API_KEY"), "sk-live-0123456789");
    let mode = |p| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(home.path()), 0o700);
    assert_eq!(mode(home.key_path()), 0o600);
    assert_eq!(mode(home.db_path()), 0o600);
}

fn reading_commands_do_not_create_the_home() {
    let home = TestHome::new();
    assert_eq!(home.run(&["secret", "list"]).ok(), "");
    home.run(&["secret", "exists", "X"]);
    home.run(&["secret", "reveal", "X"]).fails_with(1);
    home.run(&["vault", "list"]).ok();
    home.run(&["audit"]).ok();
    assert!(!home.path().exists(), "a read created the home");
}

fn value_from_stdin_drops_exactly_one_trailing_newline() {
    let home = TestHome::new();
    home.run_stdin(&["secret", "set", "A"], b"line-one\n").ok();
    assert_eq!(home.reveal("A"), "line-one");
    home.run_stdin(&["secret", "set", "B", "-"], b"two-newlines\n\n")
        .ok();
    assert_eq!(home.reveal("B"), "two-newlines\n");
    home.run_stdin(&["secret", "set", "C"], b"multi\nline\r\nvalue")
        .ok();
    assert_eq!(home.reveal("C"), "multi\nline\r\nvalue");
}

fn binary_values_survive_and_json_reveal_uses_base64() {
    let home = TestHome::new();
    let value = b"\xff\xfe-not-utf8-\x01\x02";
    home.run_stdin(&["secret", "set", "BIN"], value).ok();
    let out = home.run(&["secret", "reveal", "BIN"]);
    assert_eq!(out.code, 0);
    assert_eq!(&out.stdout[..out.stdout.len() - 1], value);
    let json = home.run(&["--json", "secret", "reveal", "BIN"]).json();
    assert!(json.get("value").is_none());
    assert_eq!(json["value_base64"], "//4tbm90LXV0ZjgtAQI=");
}

fn list_is_sorted_names_only() {
    let home = TestHome::new();
    for name in ["zeta", "Alpha", "_under", "beta.2", "beta-1"] {
        home.set(name, "value-of-some-length");
    }
    let out = home.run(&["secret", "list"]).ok();
    assert_eq!(out, "Alpha\n_under\nbeta-1\nbeta.2\nzeta\n");
    assert!(!out.contains("value-of"));
    let json = home.run(&["--json", "secret", "list"]).json();
    let secrets = json["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 5);
    assert_eq!(secrets[0]["name"], "Alpha");
    assert_eq!(secrets[0]["version"], 1);
    assert!(secrets[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(!json.to_string().contains("value-of"));
}

fn exists_prints_true_or_false_with_exit_code() {
    let home = TestHome::new();
    home.set("THERE", "value-1234");
    let yes = home.run(&["secret", "exists", "THERE"]);
    assert_eq!((yes.code, yes.stdout_text().as_str()), (0, "true\n"));
    let no = home.run(&["secret", "exists", "MISSING"]);
    assert_eq!((no.code, no.stdout_text().as_str()), (1, "false\n"));
    let json = home.run(&["--json", "secret", "exists", "MISSING"]);
    assert_eq!(json.code, 1);
    assert_eq!(json.json()["exists"], false);
}

fn delete_removes_and_a_missing_secret_is_exit_1() {
    let home = TestHome::new();
    home.set("GONE", "value-1234");
    home.run(&["secret", "delete", "GONE"]).ok();
    assert!(home.list("default").is_empty());
    let again = home.run(&["secret", "delete", "GONE"]);
    again.fails_with(1);
    assert!(
        again.stderr.contains("`GONE` not found"),
        "{}",
        again.stderr
    );
    // A new secret under the deleted name starts over at version 1.
    home.set("GONE", "again-1234");
    let json = home.run(&["--json", "secret", "list"]).json();
    assert_eq!(json["secrets"][0]["version"], 1);
}

fn versions_count_up_and_history_keeps_the_last_ten() {
    let home = TestHome::new();
    for i in 1..=12 {
        let json = home
            .run(&[
                "--json",
                "secret",
                "set",
                "ROT",
                &format!("value-number-{i}"),
            ])
            .json();
        assert_eq!(json["version"], i);
    }
    let history = home.run(&["--json", "secret", "history", "ROT"]).json();
    let versions: Vec<u64> = history["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (3..=12).collect::<Vec<_>>());
    assert_eq!(history["versions"][9]["current"], true);
    assert_eq!(history["versions"][0]["current"], false);
    assert!(!history.to_string().contains("value-number"));
    let text = home.run(&["secret", "history", "ROT"]).ok();
    assert!(text.starts_with("12\t"), "{text}");
    assert!(!text.contains("value-number"));

    assert_eq!(home.reveal("ROT"), "value-number-12");
    let old = home
        .run(&["secret", "reveal", "ROT", "--version", "3"])
        .ok();
    assert_eq!(old, "value-number-3\n");
    let pruned = home.run(&["secret", "reveal", "ROT", "--version", "2"]);
    pruned.fails_with(1);
    assert!(pruned.stderr.contains("version 2"), "{}", pruned.stderr);
    // Pruned versions are really gone from the database.
    let kept = home.count("SELECT COUNT(*) FROM secret_versions WHERE name = 'ROT'");
    assert_eq!(kept, 10);
}

fn an_expired_secret_reads_as_not_found_everywhere() {
    let home = TestHome::new();
    home.run(&["secret", "set", "TEMP", "short-lived-value", "--ttl", "1"])
        .ok();
    home.set("KEEP", "long-lived-value");
    let json = home.run(&["--json", "secret", "list"]).json();
    assert!(json["secrets"][1]["expires_at"].is_string());
    std::thread::sleep(std::time::Duration::from_millis(1300));
    assert_eq!(home.list("default"), vec!["KEEP"]);
    assert_eq!(home.run(&["secret", "exists", "TEMP"]).code, 1);
    home.run(&["secret", "reveal", "TEMP"]).fails_with(1);
    home.run(&["secret", "history", "TEMP"]).fails_with(1);
    home.run(&["secret", "get", "TEMP"]).fails_with(1);
    home.run(&["secret", "delete", "TEMP"]).fails_with(1);
    let vaults = home.run(&["--json", "vault", "list"]).json();
    assert_eq!(vaults["vaults"][0]["secrets"], 1);
    // Setting it again starts a new secret at version 1.
    let again = home
        .run(&["--json", "secret", "set", "TEMP", "new-value-1"])
        .json();
    assert_eq!(again["version"], 1);
    assert_eq!(home.reveal("TEMP"), "new-value-1");
}

fn get_prints_an_opaque_reference_stored_only_as_a_hash() {
    let home = TestHome::new();
    home.set("TOKEN", "reference-target-value");
    let reference = home.run(&["secret", "get", "TOKEN"]).ok();
    let reference = reference.trim_end();
    assert!(reference.starts_with("$secret:"), "{reference}");
    assert!(reference.len() > "$secret:".len() + 40, "{reference}");
    assert!(!reference.contains("reference-target"));
    let second = home.run(&["secret", "get", "TOKEN"]).ok();
    assert_ne!(second.trim_end(), reference, "references are random");
    let token = reference.trim_start_matches("$secret:");
    for (place, bytes) in home.stored_bytes() {
        assert!(
            !contains(&bytes, token.as_bytes()),
            "token stored in {place}"
        );
    }
    let json = home
        .run(&["--json", "secret", "get", "TOKEN", "--ttl", "60"])
        .json();
    assert!(json["ref"].as_str().unwrap().starts_with("$secret:"));
    let expires = json["expires_at"].as_str().unwrap();
    assert!(expires.ends_with('Z'), "{expires}");
    let stored = home.count("SELECT COUNT(*) FROM secret_refs");
    assert_eq!(stored, 3);
    home.run(&["secret", "get", "NOPE"]).fails_with(1);
    home.run(&["secret", "get", "TOKEN", "--ttl", "0"])
        .fails_with(2);
    home.run(&["secret", "get", "TOKEN", "--ttl", "999999"])
        .fails_with(2);
}

fn short_values_are_stored_with_a_warning() {
    let home = TestHome::new();
    let out = home.run(&["secret", "set", "PIN", "123"]);
    assert_eq!(out.code, 0);
    assert!(
        out.stderr.contains("warning:") && out.stderr.contains("masked"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("123"), "{}", out.stderr);
    let json = home
        .run_stdin(&["--json", "secret", "set", "PIN"], b"abc")
        .json();
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{json}");
    assert!(warnings[0].as_str().unwrap().contains("masked"), "{json}");
    assert_eq!(home.reveal("PIN"), "abc");
}

fn vault_flag_and_scope_alias_separate_namespaces() {
    let home = TestHome::new();
    home.run(&["secret", "set", "K", "prod-value", "--vault", "production"])
        .ok();
    home.run(&["secret", "set", "K", "test-value", "--scope", "test"])
        .ok();
    let prod = home
        .run(&["secret", "reveal", "K", "--scope", "production"])
        .ok();
    assert_eq!(prod, "prod-value\n");
    let test = home.run(&["secret", "reveal", "K", "--vault", "test"]).ok();
    assert_eq!(test, "test-value\n");
    home.run(&["secret", "reveal", "K"]).fails_with(1);
}

fn description_is_kept_as_metadata() {
    let home = TestHome::new();
    home.run(&[
        "secret",
        "set",
        "D",
        "value-1234",
        "--description",
        "the db password",
    ])
    .ok();
    let json = home.run(&["--json", "secret", "list"]).json();
    assert_eq!(json["secrets"][0]["description"], "the db password");
}

crate::conformance!(
    reading_commands_do_not_create_the_home,
    value_from_stdin_drops_exactly_one_trailing_newline,
    binary_values_survive_and_json_reveal_uses_base64,
    list_is_sorted_names_only,
    exists_prints_true_or_false_with_exit_code,
    delete_removes_and_a_missing_secret_is_exit_1,
    an_expired_secret_reads_as_not_found_everywhere,
    short_values_are_stored_with_a_warning,
    vault_flag_and_scope_alias_separate_namespaces,
    description_is_kept_as_metadata,
    versions_count_up_and_history_keeps_the_last_ten,
    get_prints_an_opaque_reference_stored_only_as_a_hash,
);
