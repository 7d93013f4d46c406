//! `POST /api/fetch` as an attacker would use it: inner destinations
//! (SSRF), references that would rewrite the URL or a header, and bodies a
//! masker might not see.

use std::io::{Read, Write};

use axum::http::StatusCode;
use base64::Engine as _;

use crate::api::{call, call_fetch, echo_target, request, runtime};
use crate::support::TestHome;

const VALUE: &str = "fetch-guarded-value-8c7b6a";

/// A home with a token and a reference to a secret holding `value`.
fn with_reference(value: &str) -> (TestHome, String, String) {
    let home = TestHome::new();
    let token = home.create_token("agent", &["--grant", "workspace:write"]);
    let set = format!(
        r#"{{"name":"GUARDED","value":{},"scope":"workspace"}}"#,
        serde_json::json!(value)
    );
    let (status, json) = runtime().block_on(call(
        &home,
        request("POST", "/api/secrets/set", Some(&token), Some(&set)),
    ));
    assert_eq!(status, StatusCode::OK, "{json}");
    let reference = json["ref"].as_str().unwrap().to_owned();
    (home, token, reference)
}

/// `POST /api/fetch` with `body`, on a server that allows 127.0.0.0/8
/// (`loopback`) or only public addresses.
fn fetch(
    home: &TestHome,
    token: &str,
    body: serde_json::Value,
    loopback: bool,
) -> (StatusCode, serde_json::Value) {
    let req = request("POST", "/api/fetch", Some(token), Some(&body.to_string()));
    if loopback {
        runtime().block_on(call_fetch(home, req))
    } else {
        runtime().block_on(call(home, req))
    }
}

/// A listener on 127.0.0.1 that must see no connection.
fn quiet_listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn inner_destinations_are_refused_with_403_and_nothing_is_sent() {
    let (home, token, reference) = with_reference(VALUE);
    let (listener, port) = quiet_listener();
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://224.0.0.1/".to_owned(),
    ] {
        let body = serde_json::json!({ "url": url, "headers": { "X-Key": reference } });
        let (status, json) = fetch(&home, &token, body, false);
        assert_eq!(status, StatusCode::FORBIDDEN, "{url}: {json}");
        assert!(
            json["error"].as_str().unwrap().contains("nothing was sent"),
            "{json}"
        );
        assert!(!json.to_string().contains(VALUE), "{json}");
    }
    assert!(
        listener.accept().is_err(),
        "a request reached a loopback target"
    );
    // `--fetch-allow` opens a range: the same kind of target now answers.
    let (target, received) = echo_target();
    let body = serde_json::json!({ "url": format!("http://localhost:{target}/ok") });
    let (status, json) = fetch(&home, &token, body, true);
    assert_eq!(status, StatusCode::OK, "{json}");
    received
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
}

#[test]
fn serve_takes_fetch_allow_and_refuses_a_bad_range() {
    let home = TestHome::new();
    let out = home.run(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--fetch-allow",
        "10.0.0.0/33",
    ]);
    out.fails_with(2);
    assert!(out.stderr.contains("--fetch-allow"), "{}", out.stderr);
}

#[test]
fn a_reference_in_the_host_is_refused_and_one_in_the_path_is_encoded() {
    // A value with the characters that would rewrite a URL.
    let tricky = "a/b?c=d&e#f g";
    let (home, token, reference) = with_reference(tricky);
    for url in [
        format!("http://{reference}.example.com/"),
        format!("http://127.0.0.1:{reference}/"),
    ] {
        let (status, json) = fetch(&home, &token, serde_json::json!({ "url": url }), true);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {json}");
        assert!(json["error"].as_str().unwrap().contains("host"), "{json}");
    }
    let (target, received) = echo_target();
    let url = format!("http://127.0.0.1:{target}/v1/{reference}/items?q={reference}&x=1");
    let (status, json) = fetch(&home, &token, serde_json::json!({ "url": url }), true);
    assert_eq!(status, StatusCode::OK, "{json}");
    let sent = received
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        sent.lines().next().unwrap(),
        "GET /v1/a%2Fb%3Fc%3Dd%26e%23f%20g/items?q=a%2Fb%3Fc%3Dd%26e%23f%20g&x=1 HTTP/1.1",
        "{sent}"
    );
}

#[test]
fn a_line_break_in_a_resolved_header_is_a_400_naming_it() {
    let (home, token, reference) = with_reference("first-line\r\nX-Injected: yes");
    let (listener, port) = quiet_listener();
    let url = format!("http://127.0.0.1:{port}/");
    let header = serde_json::json!({ "url": url, "headers": { "X-Token": reference } });
    let (status, json) = fetch(&home, &token, header, true);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("header X-Token"),
        "{json}"
    );
    let bearer =
        serde_json::json!({ "url": url, "auth": { "type": "bearer", "token": reference } });
    let (status, json) = fetch(&home, &token, bearer, true);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert!(!json.to_string().contains("first-line"), "{json}");
    assert!(listener.accept().is_err(), "a request was sent");
}

/// A one-shot target that answers with `body` (raw bytes) and returns the
/// request it got.
fn raw_target(body: Vec<u8>) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8192];
        let n = stream.read(&mut buf).unwrap_or(0);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
        let _ = sent.send(String::from_utf8_lossy(&buf[..n]).into_owned());
    });
    (port, received)
}

#[test]
fn a_binary_body_comes_back_as_base64_masked_and_identity_is_asked_for() {
    let (home, token, reference) = with_reference(VALUE);
    let mut payload = vec![0xff, 0xfe, 0x00, 0x80];
    payload.extend_from_slice(VALUE.as_bytes());
    payload.extend_from_slice(&[0xc3, 0x28, 0x00]);
    let (target, received) = raw_target(payload);
    let body = serde_json::json!({
        "url": format!("http://127.0.0.1:{target}/bin"),
        "headers": { "Accept-Encoding": "gzip, br", "X-Key": reference },
    });
    let (status, json) = fetch(&home, &token, body, true);
    assert_eq!(status, StatusCode::OK, "{json}");
    let sent = received
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    let lower = sent.to_ascii_lowercase();
    assert!(lower.contains("accept-encoding: identity"), "{sent}");
    assert!(!lower.contains("gzip"), "{sent}");
    assert!(json.get("body").is_none(), "{json}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(json["body_base64"].as_str().unwrap())
        .unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(VALUE), "{text}");
    assert!(text.contains("<secret:guarded>"), "{text}");
    assert_eq!(&bytes[..4], &[0xff, 0xfe, 0x00, 0x80]);
}
