//! `vault set-secrets`, `vault list` and `var ...`.

use crate::support::TestHome;

fn set_secrets_is_not_atomic_and_names_each_failure() {
    let home = TestHome::new();
    let out = home.run(&[
        "vault",
        "set-secrets",
        "--vault",
        "ci",
        "GOOD_ONE=value-one-1",
        "EMPTY=",
        "bad name=value-hidden-2",
        "GOOD_TWO=value=with=equals",
        "no-equals-sign-value-hidden-3",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("`EMPTY`"), "{}", out.stderr);
    assert!(out.stderr.contains("\"bad name\""), "{}", out.stderr);
    assert!(
        out.stderr.contains("argument 5 is not NAME=VALUE"),
        "{}",
        out.stderr
    );
    for hidden in ["value-hidden-2", "value-hidden-3", "value-one-1"] {
        assert!(!out.stderr.contains(hidden), "{}", out.stderr);
    }
    assert_eq!(home.list("ci"), vec!["GOOD_ONE", "GOOD_TWO"]);
    let two = home
        .run(&["secret", "reveal", "GOOD_TWO", "--vault", "ci"])
        .ok();
    assert_eq!(two, "value=with=equals\n");
}

fn set_secrets_json_reports_versions_and_errors() {
    let home = TestHome::new();
    home.run(&["vault", "set-secrets", "--vault", "ci", "A=aaaa-1"])
        .ok();
    let out = home.run(&[
        "--json",
        "vault",
        "set-secrets",
        "--vault",
        "ci",
        "A=aaaa-2",
        "B=bbbb-1",
        "C=",
    ]);
    assert_eq!(out.code, 1);
    let json = out.json();
    assert_eq!(json["set_secrets"], serde_json::json!(["A", "B"]));
    assert_eq!(json["versions"], serde_json::json!({"A": 2, "B": 1}));
    assert_eq!(json["errors"][0]["name"], "C");
    assert!(json["errors"][0]["error"]
        .as_str()
        .unwrap()
        .contains("empty"));
    let all_ok = home.run(&[
        "--json",
        "vault",
        "set-secrets",
        "--vault",
        "ci",
        "D=dddd-1",
    ]);
    assert_eq!(all_ok.code, 0);
    assert_eq!(all_ok.json()["errors"], serde_json::json!([]));
}

fn vault_list_shows_written_vaults_with_counts() {
    let home = TestHome::new();
    home.run(&["secret", "set", "A", "value-aaaa", "--vault", "production"])
        .ok();
    home.run(&["var", "set", "region", "eu-west-1", "--vault", "staging"])
        .ok();
    home.set("B", "value-bbbb");
    assert_eq!(
        home.run(&["vault", "list"]).ok(),
        "default\nproduction\nstaging\n"
    );
    let json = home.run(&["--json", "vault", "list"]).json();
    assert_eq!(json["vaults"][2]["name"], "staging");
    assert_eq!(json["vaults"][2]["vars"], 1);
    assert_eq!(json["vaults"][2]["secrets"], 0);
    assert_eq!(json["vaults"][1]["secrets"], 1);
}

fn vars_set_get_list_delete() {
    let home = TestHome::new();
    home.run(&["var", "set", "region", "eu-west-1"]).ok();
    home.run(&["var", "set", "tier", "gold", "--vault", "prod"])
        .ok();
    home.run(&["var", "set", "region", "us-east-2"]).ok();
    assert_eq!(home.run(&["var", "get", "region"]).ok(), "us-east-2\n");
    assert_eq!(home.run(&["var", "list"]).ok(), "region=us-east-2\n");
    assert_eq!(
        home.run(&["var", "list", "--vault", "prod"]).ok(),
        "tier=gold\n"
    );
    let json = home
        .run(&["--json", "var", "get", "tier", "--vault", "prod"])
        .json();
    assert_eq!(json["value"], "gold");
    home.run(&["var", "delete", "region"]).ok();
    home.run(&["var", "get", "region"]).fails_with(1);
    assert_eq!(home.run(&["var", "list"]).ok(), "");
    // Vars are not secrets: they are not in the secret list.
    assert!(home.list("prod").is_empty());
}

crate::conformance!(
    set_secrets_is_not_atomic_and_names_each_failure,
    set_secrets_json_reports_versions_and_errors,
    vault_list_shows_written_vaults_with_counts,
    vars_set_get_list_delete,
);
