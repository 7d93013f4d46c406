//! `shroud redact`: stdin to stdout through the masker, as a real process.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::TestHome;

fn home_with_secrets() -> TestHome {
    let home = TestHome::new();
    home.set("DB_PASS", "hunter2-secret");
    home.set("API_TOKEN", "tok_0123456789abcdef");
    home.run(&[
        "secret",
        "set",
        "OTHER",
        "other-vault-value",
        "--vault",
        "ci",
    ])
    .ok();
    home
}

fn masks_named_secrets_only() {
    let home = home_with_secrets();
    let input = b"pass=hunter2-secret token=tok_0123456789abcdef\n";
    let out = home.run_stdin(&["redact", "--secret", "DB_PASS"], input);
    assert_eq!(
        out.ok(),
        "pass=<secret:db_pass> token=tok_0123456789abcdef\n"
    );
}

fn all_masks_every_secret_of_the_vault_and_stars_are_eight() {
    let home = home_with_secrets();
    let input = b"hunter2-secret|tok_0123456789abcdef|other-vault-value";
    let out = home.run_stdin(&["redact", "--all", "--mask", "stars"], input);
    assert_eq!(out.ok(), "********|********|other-vault-value");
    let ci = home.run_stdin(&["redact", "--all", "--vault", "ci"], input);
    assert_eq!(
        ci.ok(),
        "hunter2-secret|tok_0123456789abcdef|<secret:other>"
    );
}

fn encoded_forms_are_masked() {
    let home = home_with_secrets();
    // printf '%s\n' "$DB_PASS" | base64  →  aHVudGVyMi1zZWNyZXQK
    let out = home.run_stdin(
        &["redact", "--all"],
        b"b64=aHVudGVyMi1zZWNyZXQK url=hunter2%2Dsecret\n",
    );
    let text = out.ok();
    assert!(text.starts_with("b64=<secret:db_pass>"), "{text}");
    assert!(!text.contains("aHVudGVyMi1zZWNyZXQ"), "{text}");
}

fn binary_input_passes_through_byte_for_byte() {
    let home = home_with_secrets();
    let mut input: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
    input.extend_from_slice(b"\r\n\xffhunter2-secret\x00\r\n");
    let out = home.run_stdin(&["redact", "--all"], &input);
    assert_eq!(out.code, 0);
    let mut expected: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
    expected.extend_from_slice(b"\r\n\xff<secret:db_pass>\x00\r\n");
    assert_eq!(out.stdout, expected);
}

fn a_prompt_is_forwarded_before_input_ends() {
    let home = home_with_secrets();
    let mut child = home
        .command(&["redact", "--all"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // A prompt with no newline, then a secret split across two writes.
    stdin.write_all(b"Password: ").unwrap();
    stdin.flush().unwrap();
    let mut buf = [0u8; 64];
    let n = stdout.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"Password: ", "the prompt waited");
    stdin.write_all(b"hunter2-se").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    stdin.write_all(b"cret\n").unwrap();
    stdin.flush().unwrap();
    let started = Instant::now();
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "redact closed its output early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"<secret:db_pass>\n");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

fn decrypting_for_masking_is_audited() {
    let home = home_with_secrets();
    home.run_stdin(
        &["redact", "--secret", "DB_PASS", "--secret", "API_TOKEN"],
        b"x",
    )
    .ok();
    let audit = home.run(&["audit", "--limit", "2"]).ok();
    assert!(audit.contains("secret.mask\tdefault\tDB_PASS"), "{audit}");
    assert!(audit.contains("secret.mask\tdefault\tAPI_TOKEN"), "{audit}");
}

fn bad_requests_are_refused_before_reading_input() {
    let home = home_with_secrets();
    let none = home.run_stdin(&["redact"], b"hunter2-secret");
    none.fails_with(2);
    assert!(none.stdout.is_empty());
    let missing = home.run_stdin(&["redact", "--secret", "NOPE"], b"hunter2-secret");
    missing.fails_with(1);
    assert!(
        missing.stdout.is_empty(),
        "input was passed through unmasked"
    );
    let style = home.run_stdin(&["redact", "--all", "--mask", "dots"], b"x");
    assert_eq!(style.code, 2);
    let short = {
        home.set("PIN", "123");
        home.run_stdin(&["redact", "--secret", "PIN"], b"pin 123")
    };
    assert_eq!(short.ok(), "pin 123");
    assert!(
        short.stderr.contains("warning:") && short.stderr.contains("PIN"),
        "{}",
        short.stderr
    );
}

crate::conformance!(
    masks_named_secrets_only,
    all_masks_every_secret_of_the_vault_and_stars_are_eight,
    encoded_forms_are_masked,
    binary_input_passes_through_byte_for_byte,
    a_prompt_is_forwarded_before_input_ends,
    decrypting_for_masking_is_audited,
    bad_requests_are_refused_before_reading_input,
);
