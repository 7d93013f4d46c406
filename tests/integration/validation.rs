//! Bad input: a clear `error:` line, a non-zero exit, nothing changed, and
//! never a secret value in the output.

use crate::support::TestHome;

const VALUE: &str = "SUPERSECRET-canary-7f3a";

/// State that bad input must leave alone: names, versions, audit length and
/// the database bytes' view through the CLI.
fn snapshot(home: &TestHome) -> (String, String, usize) {
    (
        home.run(&["--json", "secret", "list"]).ok(),
        home.run(&["vault", "list"]).ok(),
        home.audit_count(),
    )
}

fn bad_input_is_refused_names_the_rule_and_changes_nothing() {
    let home = TestHome::new();
    home.set("EXISTING", "existing-value-1");
    let before = snapshot(&home);
    let long_description = "d".repeat(1025);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["secret", "set", "bad name", VALUE],
            "invalid secret name",
        ),
        (vec!["secret", "set", "1LEADING_DIGIT", VALUE], "must match"),
        (
            vec!["secret", "set", "X", VALUE, "--vault", "Bad_Vault"],
            "invalid vault name",
        ),
        (
            vec!["secret", "set", "X", VALUE, "--vault", ""],
            "invalid vault name",
        ),
        (vec!["secret", "set", "X", ""], "value is empty"),
        (
            vec!["secret", "set", "X", VALUE, "--ttl", "0"],
            "invalid TTL",
        ),
        (
            vec!["secret", "set", "X", VALUE, "--ttl", "-5"],
            "invalid TTL",
        ),
        (
            vec!["secret", "set", "X", VALUE, "--ttl", "soon"],
            "invalid TTL",
        ),
        (
            vec![
                "secret",
                "set",
                "X",
                VALUE,
                "--description",
                &long_description,
            ],
            "description is 1025 bytes",
        ),
        (vec!["secret", "reveal", "bad/name"], "invalid secret name"),
        (vec!["secret", "reveal", "MISSING"], "not found"),
        (
            vec!["secret", "reveal", "EXISTING", "--version", "9"],
            "version 9",
        ),
        (vec!["secret", "delete", "MISSING"], "not found"),
        (vec!["secret", "history", "MISSING"], "not found"),
        (vec!["var", "get", "missing"], "not found"),
        (vec!["var", "delete", "missing"], "not found"),
        (vec!["var", "set", "bad name", "v"], "invalid var name"),
        (vec!["audit", "--vault", "NOT VALID"], "invalid vault name"),
    ];
    for (args, expected) in cases {
        let out = home.run(&args);
        assert_ne!(out.code, 0, "{args:?} succeeded");
        let first = out.stderr.lines().next().unwrap_or_default();
        assert!(first.starts_with("error: "), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains(VALUE),
            "{args:?} leaked the value: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty() || !out.stdout_text().contains(VALUE));
        let (list, vaults, _) = snapshot(&home);
        assert_eq!(
            (list, vaults),
            (before.0.clone(), before.1.clone()),
            "{args:?} changed the store"
        );
    }
    // Failed lookups are audited (not_found), but nothing else was written.
    let json_audit = home.run(&["--json", "audit"]).ok();
    assert!(json_audit
        .lines()
        .all(|l| l.contains("\"ok\"") || l.contains("not_found")));
    assert!(!json_audit.contains("\"X\""), "a refused set was audited");
}

fn values_with_nul_or_over_64_kib_are_refused_from_stdin() {
    let home = TestHome::new();
    let mut with_nul = VALUE.as_bytes().to_vec();
    with_nul.extend_from_slice(b"\0tail");
    let out = home.run_stdin(&["secret", "set", "NUL"], &with_nul);
    out.fails_with(2);
    assert!(
        out.stderr.contains("NUL byte") && out.stderr.contains("`NUL`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(VALUE));

    let mut huge = VALUE.as_bytes().to_vec();
    huge.resize(64 * 1024 + 1, b'x');
    let out = home.run_stdin(&["secret", "set", "HUGE"], &huge);
    out.fails_with(2);
    assert!(out.stderr.contains("64 KiB"), "{}", out.stderr);
    assert!(!out.stderr.contains(VALUE));

    // Exactly 64 KiB (plus the dropped newline) is accepted.
    let mut max = vec![b'y'; 64 * 1024];
    max.push(b'\n');
    home.run_stdin(&["secret", "set", "MAX"], &max).ok();
    assert_eq!(home.reveal("MAX").len(), 64 * 1024);
    assert_eq!(home.list("default"), vec!["MAX"]);
}

#[test]
fn usage_errors_exit_2_without_echoing_values() {
    let home = TestHome::new();
    let out = home.run(&["secret", "set"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    let out = home.run(&["secret", "set", "A", VALUE, "--bogus-flag"]);
    assert_eq!(out.code, 2);
    assert!(!home.path().exists());
}

fn failing_commands_never_print_a_stored_value() {
    let home = TestHome::new();
    home.set("STORED", VALUE);
    let wrong_key = crate::support::random_key();
    let runs = vec![
        home.run(&["secret", "set", "STORED", ""]),
        home.run(&["secret", "reveal", "STORED", "--version", "7"]),
        home.run(&["secret", "reveal", "STORED", "--vault", "other"]),
        home.run(&["vault", "set-secrets", "BAD NAME=x", "STORED="]),
        home.run_with_key(&wrong_key, &["secret", "reveal", "STORED"]),
        home.run_with_key(&wrong_key, &["secret", "set", "STORED", "new-value"]),
        home.run_with_key("not-base64!", &["secret", "list"]),
    ];
    for run in runs {
        assert_ne!(run.code, 0, "{run:?}");
        assert!(!run.stderr.contains(VALUE), "{run:?}");
        assert!(!run.stdout_text().contains(VALUE), "{run:?}");
    }
    // Nothing a failing command did put the value anywhere in plaintext.
    for (place, bytes) in home.stored_bytes() {
        assert!(
            !crate::support::contains(&bytes, VALUE.as_bytes()),
            "{place}"
        );
    }
}

#[test]
fn stray_arguments_that_may_be_values_are_not_echoed() {
    let home = TestHome::new();
    // An unquoted value with a space, and a value that looks like short flags.
    for args in [
        vec!["secret", "set", "TOKEN", "first-half", "second-half-SECRET"],
        vec!["secret", "set", "TOKEN", "-dash-SECRET"],
    ] {
        let out = home.run(&args);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(
            out.stderr.starts_with("error: unexpected extra argument"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("SECRET"), "{}", out.stderr);
    }
    // A mistyped flag is still named, to help the user.
    let out = home.run(&["secret", "list", "--vaullt", "x"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--vaullt"), "{}", out.stderr);
    // A value after `--` is accepted even if it starts with '-'.
    home.run(&["secret", "set", "DASHED", "--", "-dash-value-ok"])
        .ok();
    assert_eq!(home.reveal("DASHED"), "-dash-value-ok");
    assert!(!home.list("default").contains(&"TOKEN".to_owned()));
}

#[test]
fn trace_logging_never_shows_values() {
    let home = TestHome::new();
    let run_traced = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = home.command(args);
        cmd.env("SHROUD_LOG", "trace");
        home.run_with(cmd, stdin)
    };
    let runs = vec![
        run_traced(&["secret", "set", "LOGGED", VALUE], None),
        run_traced(
            &["secret", "set", "PIPED"],
            Some(b"piped-SUPERSECRET-value\n"),
        ),
        run_traced(
            &["vault", "set-secrets", &format!("BULK={VALUE}-bulk")],
            None,
        ),
        run_traced(&["secret", "reveal", "LOGGED"], None),
        run_traced(&["secret", "get", "LOGGED"], None),
        run_traced(&["key", "rotate"], None),
        run_traced(&["secret", "reveal", "PIPED", "--version", "5"], None),
    ];
    // Logging really was on (names are logged), and no value was.
    assert!(
        runs[0].stderr.contains("DEBUG") && runs[0].stderr.contains("LOGGED"),
        "{}",
        runs[0].stderr
    );
    assert!(!runs[0].stderr.contains('\x1b'), "colour codes in a pipe");
    for run in &runs {
        assert!(
            !run.stderr.contains("SUPERSECRET"),
            "value in logs: {}",
            run.stderr
        );
    }
    assert_eq!(runs[3].stdout_text(), format!("{VALUE}\n"));
}

#[test]
fn env_errors_never_echo_the_argument() {
    let home = TestHome::new();
    for args in [
        &["exec", "--env", "sk-live-pasted-value-1", "--", "true"][..],
        &["exec", "--env", "sk live pasted=value", "--", "true"],
        &[
            "sandbox",
            "create",
            "--template",
            "bash",
            "--env",
            "sk-live-pasted-value-2",
        ],
    ] {
        let out = home.run(args);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(out.stderr.contains("error: --env #1"), "{out:?}");
        assert!(
            !out.stderr.contains("sk-live") && !out.stderr.contains("sk live"),
            "{out:?}"
        );
    }
}

#[test]
fn a_value_on_the_command_line_works_but_warns_and_points_to_stdin() {
    let home = TestHome::new();
    let out = home.run(&["secret", "set", "ARGV_KEY", "argv-value-1234"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("warning:")
            && out.stderr.contains("other local users")
            && out.stderr.contains("stdin"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("argv-value-1234"), "{}", out.stderr);
    let bulk = home.run(&["vault", "set-secrets", "--vault", "v", "A=bulk-value-1234"]);
    assert_eq!(bulk.code, 0, "{bulk:?}");
    assert!(bulk.stderr.contains("other local users"), "{}", bulk.stderr);
    // From stdin: no warning.
    let quiet = home.run_stdin(&["secret", "set", "STDIN_KEY"], b"stdin-value-1234\n");
    assert_eq!(quiet.code, 0);
    assert!(!quiet.stderr.contains("warning"), "{}", quiet.stderr);
    assert_eq!(home.reveal("ARGV_KEY"), "argv-value-1234");
}

#[test]
fn a_timeout_too_large_says_so() {
    let home = TestHome::new();
    let out = home.run(&["exec", "--timeout", "1e15", "--", "true"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("too large"), "{}", out.stderr);
}

crate::conformance!(
    bad_input_is_refused_names_the_rule_and_changes_nothing,
    values_with_nul_or_over_64_kib_are_refused_from_stdin,
    failing_commands_never_print_a_stored_value,
);

#[test]
fn completion_scripts_parse_in_their_shells_and_version_prints() {
    let home = crate::support::TestHome::new();
    for (shell, check) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = home.run(&["completions", shell]);
        assert_eq!(out.code, 0, "{out:?}");
        let script = out.stdout_text();
        assert!(
            script.contains("import") && script.contains("env-file"),
            "{shell}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("shroud.{shell}"));
        std::fs::write(&file, &script).unwrap();
        let flag = if shell == "fish" {
            "--no-execute"
        } else {
            "-n"
        };
        match std::process::Command::new(check)
            .arg(flag)
            .arg(&file)
            .output()
        {
            Ok(checked) => assert!(
                checked.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&checked.stderr)
            ),
            Err(_) if shell != "bash" => {
                eprintln!("SKIPPED: {shell} is not installed, its completion script is not parsed")
            }
            Err(e) => panic!("bash: {e}"),
        }
    }
    home.run(&["completions", "tcsh"]).fails_with(2);
    let version = home.run(&["--version"]).ok();
    assert_eq!(version, format!("shroud {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn with_json_every_error_is_one_json_object_on_stderr() {
    let home = crate::support::TestHome::new();
    home.set("API_KEY", "sk-json-errors-1234");
    let cases: &[(&[&str], i32)] = &[
        (&["--json", "secret", "reveal", "MISSING"], 1),
        (&["--json", "secret", "set"], 2),
        (&["secret", "list", "--json", "--no-such-flag"], 2),
        (
            &["--json", "secret", "set", "bad name", "sk-json-errors-1234"],
            2,
        ),
        (
            &["--json", "exec", "--secret", "MISSING", "--", "true"],
            125,
        ),
        (&["--json", "exec", "--timeout", "0", "--", "true"], 125),
        (&["--json", "redact", "--all"], 2),
        (&["--json", "completions", "bash"], 2),
        (&["--json", "sandbox", "rm", "no-such-sandbox"], 1),
        (&["--json", "restore", "/no/such/backup.db"], 1),
        (&["--json", "run", "/no/such/tasks.yml"], 2),
    ];
    for (args, code) in cases {
        let out = home.run(args);
        assert_eq!(out.code, *code, "{args:?}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {}", out.stderr);
        let error: serde_json::Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", out.stderr));
        assert_eq!(error["code"], *code, "{args:?}");
        assert!(
            error["error"]
                .as_str()
                .is_some_and(|t| !t.is_empty() && !t.starts_with("error:")),
            "{args:?}: {error}"
        );
        assert!(!out.stderr.contains("sk-json-errors-1234"));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // Without --json, the same errors stay `error: ...` lines.
    let out = home.run(&["secret", "reveal", "MISSING"]);
    assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
}

#[test]
fn a_new_user_is_told_where_the_secrets_are_and_sees_one_isolation_line() {
    let home = crate::support::TestHome::new();
    home.run(&[
        "secret",
        "set",
        "API_KEY",
        "sk-in-prod-1234",
        "--vault",
        "prod",
    ])
    .ok();
    let out = home.run(&["secret", "list"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("vault `default` holds no secrets") && out.stderr.contains("prod (1)"),
        "{}",
        out.stderr
    );
    // Not said when the vault has secrets, nor with --json.
    home.set("LOCAL", "sk-local-5678");
    assert!(home.run(&["secret", "list"]).stderr.is_empty());
    let created = home.run(&["sandbox", "create", "--template", "bash"]);
    assert_eq!(created.code, 0, "{created:?}");
    let report: Vec<&str> = created.stderr.lines().collect();
    assert_eq!(report.len(), 1, "{}", created.stderr);
    assert!(
        report[0].contains("isolation: ") && report[0].contains("-v"),
        "{}",
        report[0]
    );
    let verbose = home.run(&["sandbox", "create", "--template", "bash", "-v"]);
    assert!(verbose.stderr.lines().count() > 10, "{}", verbose.stderr);
    assert!(
        verbose.stderr.contains("pid_namespace: available"),
        "{}",
        verbose.stderr
    );
}
