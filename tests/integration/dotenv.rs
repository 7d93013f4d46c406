//! `secret import` and `secret export`: dotenv, JSON and shell, round trips
//! on values that trip up quoting, per-name errors, and what is refused.

use std::io::Read;
use std::process::Stdio;

use crate::support::TestHome;

/// Values that break naive quoting, by name.
const TRICKY: &[(&str, &str)] = &[
    ("SINGLE", "it's a 'quote'"),
    ("DOUBLE", "say \"hi\""),
    ("BOTH", "'\"' mixed \"'\""),
    ("HASH", "value # not a comment"),
    ("HASH_TIGHT", "a#b"),
    ("EQUALS", "a=b==c="),
    ("NEWLINES", "line one\nline two\n\nline four"),
    ("CRLF", "windows\r\nline"),
    ("UNICODE", "ünïcødé ✓ 日本語 🔑"),
    ("PADDED", "   leading and trailing   "),
    ("TABS", "\tindented\t"),
    ("BACKSLASH", "C:\\path\\to\\file \\n not a newline"),
    ("DOLLAR", "$HOME ${PATH} $(date) `date`"),
    ("ENDS_BACKSLASH", "trailing\\"),
    ("EXPORT_WORD", "export NOT=this"),
    ("BACKTICKS", "it's `touch /tmp/shroud-pwned` $(id)"),
];

fn reveal_all(home: &TestHome) -> Vec<(String, String)> {
    let names = home.run(&["secret", "list"]).ok();
    names
        .lines()
        .map(|name| (name.to_owned(), home.reveal(name)))
        .collect()
}

fn sorted(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    pairs.sort();
    pairs
}

fn tricky() -> Vec<(String, String)> {
    sorted(
        TRICKY
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

fn set_tricky(home: &TestHome) {
    for (name, value) in TRICKY {
        home.run_stdin(&["secret", "set", name], value.as_bytes())
            .ok();
    }
}

fn export(home: &TestHome, format: &str) -> Vec<u8> {
    let out = home.run(&["secret", "export", "--format", format]);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout
}

#[test]
fn dotenv_and_json_round_trip_every_tricky_value() {
    // Values with a trailing newline cannot come through `secret set` on
    // stdin (one is dropped); all of these can.
    let first = TestHome::new();
    set_tricky(&first);
    for format in ["dotenv", "json"] {
        let exported = export(&first, format);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(format!("secrets.{format}"));
        std::fs::write(&file, &exported).unwrap();
        // import → export → import: the same values, and the same file.
        let second = TestHome::new();
        let out = second.run(&["secret", "import", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{format}: {out:?}");
        assert_eq!(sorted(reveal_all(&second)), tricky(), "{format}");
        assert_eq!(export(&second, format), exported, "{format}");
        let third = TestHome::new();
        third
            .run_stdin(&["secret", "import", "-", "--format", format], &exported)
            .ok();
        assert_eq!(
            sorted(reveal_all(&third)),
            tricky(),
            "{format} through stdin"
        );
    }
}

#[test]
fn shell_export_is_read_back_by_sh() {
    let home = TestHome::new();
    set_tricky(&home);
    let exported = export(&home, "shell");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("env.sh");
    std::fs::write(&file, &exported).unwrap();
    for (name, value) in TRICKY {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(". \"$0\"; printf %s \"${name}\""))
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), *value, "{name}");
    }
}

#[test]
fn a_hand_written_dotenv_file_reads_as_loaders_read_it() {
    let home = TestHome::new();
    let file = "# a comment line\n\
                \n\
                export DATABASE_URL=\"postgres://app:s3cr#t@db/app\"  # the db\n\
                API_KEY = sk-live-1234 # a comment after a space\n\
                TOKEN=abc#def\n\
                PEM=\"-----BEGIN KEY-----\nMIIB\n-----END KEY-----\"\n\
                LITERAL='no $expansion \\n here'\n\
                API_KEY=sk-live-5678\n";
    let out = home.run_stdin(&["secret", "import", "-"], file.as_bytes());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("`API_KEY` is given more than once"),
        "{}",
        out.stderr
    );
    assert_eq!(
        sorted(reveal_all(&home)),
        sorted(vec![
            ("API_KEY".into(), "sk-live-5678".into()),
            ("DATABASE_URL".into(), "postgres://app:s3cr#t@db/app".into()),
            ("LITERAL".into(), "no $expansion \\n here".into()),
            (
                "PEM".into(),
                "-----BEGIN KEY-----\nMIIB\n-----END KEY-----".into()
            ),
            ("TOKEN".into(), "abc#def".into()),
        ])
    );
}

#[test]
fn import_reports_each_bad_entry_by_name_and_sets_the_rest() {
    let home = TestHome::new();
    let file = "GOOD_ONE=value-number-one\n\
                bad name=secret-in-a-bad-entry\n\
                EMPTY=\n\
                GOOD_TWO='value number two'\n";
    let out = home.run_stdin(&["--json", "secret", "import", "-"], file.as_bytes());
    assert_eq!(out.code, 1, "{out:?}");
    let report = out.json();
    assert_eq!(
        report["set_secrets"],
        serde_json::json!(["GOOD_ONE", "GOOD_TWO"])
    );
    let failed: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    // The bad name is not shown (a `KEY: value=` line would make a value
    // of it): only where it is.
    assert_eq!(failed, vec!["line 2", "EMPTY"]);
    assert!(
        !out.stderr.contains("secret-in-a-bad-entry")
            && !out.stdout_text().contains("secret-in-a-bad-entry")
    );
    assert_eq!(home.reveal("GOOD_TWO"), "value number two");
    // A syntax error refuses the whole file: nothing is set, the line is
    // named, the value is not shown.
    let broken = TestHome::new();
    let out = broken.run_stdin(
        &["secret", "import", "-"],
        b"FIRST=fine\nSECOND=\"unclosed-secret-value\nTHIRD=x\n",
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("line 2") && !out.stderr.contains("unclosed-secret-value"),
        "{}",
        out.stderr
    );
    assert!(broken.run(&["secret", "list"]).ok().is_empty());
    // A JSON file: non-string values are stored as their JSON text.
    let json = TestHome::new();
    json.run_stdin(
        &["secret", "import", "-", "--format", "json"],
        br#"{"OBJ": {"b": 1, "a": [true, null]}, "NUM": 12345678901234567890123, "STR": "plain"}"#,
    )
    .ok();
    assert_eq!(json.reveal("OBJ"), r#"{"b":1,"a":[true,null]}"#);
    assert_eq!(json.reveal("NUM"), "12345678901234567890123");
    assert_eq!(json.reveal("STR"), "plain");
    let out = json.run_stdin(&["secret", "import", "-", "--format", "json"], b"[1, 2]");
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn export_is_audited_and_refuses_a_terminal() {
    let home = TestHome::new();
    home.set("API_KEY", "sk-export-audited-1234");
    home.set("OTHER", "sk-export-audited-5678");
    let before = home.audit_count();
    export(&home, "dotenv");
    let audit = home.run(&["audit", "--limit", "2"]).ok();
    assert_eq!(home.audit_count(), before + 2);
    assert_eq!(audit.matches("\tsecret.reveal\t").count(), 2, "{audit}");
    // To a terminal: refused unless forced, and nothing is revealed.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut master = std::fs::File::from(pty.master);
    let at_terminal = |extra: &[&str]| {
        let mut args = vec!["secret", "export"];
        args.extend_from_slice(extra);
        let mut command = home.command(&args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::piped());
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = at_terminal(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("terminal") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(home.audit_count(), before + 2, "nothing revealed");
    let (code, stderr) = at_terminal(&["--force"]);
    assert_eq!(code, Some(0), "{stderr}");
    let mut seen = vec![0u8; 4096];
    let n = master.read(&mut seen).unwrap();
    assert!(String::from_utf8_lossy(&seen[..n]).contains("sk-export-audited-1234"));
    // A value that is not text cannot be written as dotenv or JSON.
    home.run_stdin(&["secret", "set", "BINARY"], &[0xff, 0xfe, 0x01, 0x02])
        .ok();
    let out = home.run(&["secret", "export"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("BINARY") && out.stderr.contains("UTF-8"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}
