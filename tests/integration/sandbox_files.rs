//! Sandboxes the way agent platforms use them, against a real `shroud
//! serve`: files in and out (paths that try to leave, a link swapped in
//! during uploads, downloads masked with every secret ever granted, 64 MiB
//! with the server's memory bounded, `sandbox cp`), a lifetime (expiry
//! while idle, renewal, across a restart), and background commands (a
//! server reached by a later exec on the shared loopback, its log, stop,
//! the end of the sandbox).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest;

use crate::api::{http, start_server};
use crate::support::{netns_holder_is_running, process_is_running, TestHome};

const VALUE: &str = "files-secret-value-7e6d5c4b";
const OTHER_VALUE: &str = "per-exec-secret-value-1a2b3c";

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// One raw request: `body` sent as it is, the answer's status and body bytes.
fn raw(port: u16, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // A server that refuses early (a 413 before the body) may close while
    // the body is still going: the answer read so far is what counts.
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..head_end]).to_string();
    let status = head[9..12].parse().unwrap();
    let mut body = response[head_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

struct Served {
    home: TestHome,
    server: std::process::Child,
    log: crate::api::ServerLog,
    port: u16,
    token: String,
    other: String,
}

impl Served {
    fn start() -> Served {
        let home = TestHome::new();
        home.set("API_KEY", VALUE);
        home.set("EXTRA", OTHER_VALUE);
        let token = home.create_token("agent", &["--grant", "default:read"]);
        let other = home.create_token("other", &["--grant", "default:read"]);
        let (server, port, log) = start_server(&home);
        Served {
            home,
            server,
            log,
            port,
            token,
            other,
        }
    }

    fn create(&self, body: &str) -> String {
        let (status, created) = http(self.port, "POST", "/api/sandboxes", &self.token, Some(body));
        assert_eq!(status, 200, "{created}");
        json(&created)["id"].as_str().unwrap().to_owned()
    }

    /// A sandbox of a template whose disk holds 4 MiB.
    fn create_with_a_4_mib_disk(&self) -> String {
        let templates = self.home.path().join("sandbox-templates");
        std::fs::create_dir_all(&templates).unwrap();
        std::fs::write(
            templates.join("tiny.toml"),
            "[runtime]\ninterpreter = \"sh\"\n[limits]\ndisk_mb = 4\n",
        )
        .unwrap();
        self.create(r#"{"template":"tiny"}"#)
    }

    fn exec(&self, id: &str, body: &str) -> serde_json::Value {
        let (status, text) = http(
            self.port,
            "POST",
            &format!("/api/sandboxes/{id}/exec"),
            &self.token,
            Some(body),
        );
        assert_eq!(status, 200, "{text}");
        json(&text)
    }

    fn files(&self, method: &str, id: &str, query: &str, body: &[u8]) -> (u16, Vec<u8>) {
        raw(
            self.port,
            method,
            &format!("/api/sandboxes/{id}/files?{query}"),
            &self.token,
            body,
        )
    }

    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, text) = http(self.port, "GET", path, &self.token, None);
        (
            status,
            if text.is_empty() {
                serde_json::Value::Null
            } else {
                json(&text)
            },
        )
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        crate::support::unmount_below(&self.home.path());
    }
}

#[test]
fn files_go_in_and_out_and_no_path_leaves_the_working_directory() {
    let s = Served::start();
    let id = s.create(r#"{"template":"bash"}"#);
    // Binary bytes, a nested path: they come back as they went.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let (status, answer) = s.files("PUT", &id, "path=src/deep/data.bin", &bytes);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    assert_eq!(json(&String::from_utf8_lossy(&answer))["size"], 70_000);
    assert_eq!(
        s.files("GET", &id, "path=src/deep/data.bin", b""),
        (200, bytes.clone())
    );
    let ran = s.exec(
        &id,
        r#"{"command":"cat src/deep/data.bin | wc -c; id -u; stat -c %u src/deep/data.bin"}"#,
    );
    let lines: Vec<&str> = ran["stdout"].as_str().unwrap().lines().collect();
    assert_eq!(lines[0], "70000");
    assert_eq!(
        lines[1], lines[2],
        "the file is the sandbox's own: {lines:?}"
    );
    // Overwritten whole, listed, removed.
    assert_eq!(
        s.files("PUT", &id, "path=src/deep/data.bin", b"short").0,
        200
    );
    assert_eq!(
        s.files("GET", &id, "path=./src/deep/data.bin", b"").1,
        b"short"
    );
    let (status, listed) = s.files("GET", &id, "path=src&list=true", b"");
    assert_eq!(status, 200);
    let listed = json(&String::from_utf8_lossy(&listed));
    assert_eq!(
        listed["entries"],
        serde_json::json!([{ "name": "deep", "type": "directory", "size": listed["entries"][0]["size"] }])
    );
    assert_eq!(s.files("DELETE", &id, "path=src", b"").0, 200);
    assert_eq!(s.files("GET", &id, "path=src/deep/data.bin", b"").0, 404);

    // Paths that leave: 400, and nothing is touched outside.
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("written");
    s.exec(&id, &serde_json::json!({ "command": format!("ln -s / root && ln -s {} out && ln -s ../.. up", outside.path().display()) }).to_string());
    std::fs::write(outside.path().join("secret.txt"), "host file").unwrap();
    for path in [
        "../x",
        "/etc/passwd",
        "root/etc/passwd",
        "out/secret.txt",
        "up/x",
        "a/../../x",
        "root",
    ] {
        let query = format!("path={}", url_encoded(path));
        let (status, body) = s.files("GET", &id, &query, b"");
        assert_eq!(
            status,
            400,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(!String::from_utf8_lossy(&body).contains("host file"));
        let (status, _) = s.files(
            "PUT",
            &id,
            &format!("path={}", url_encoded(&format!("{path}/written"))),
            b"x",
        );
        assert_eq!(status, 400, "PUT {path}");
        let (status, _) = s.files("DELETE", &id, &query, b"");
        assert!(status == 400 || path == "root", "DELETE {path}: {status}");
    }
    assert!(!marker.exists() && outside.path().join("secret.txt").exists());
    // Removing a link removes the link, never what it points to.
    assert_eq!(s.files("DELETE", &id, "path=out", b"").0, 200);
    assert!(outside.path().join("secret.txt").exists());
    // Another token: as if the sandbox did not exist.
    let (status, _) = raw(
        s.port,
        "GET",
        &format!("/api/sandboxes/{id}/files?path=.&list=true"),
        &s.other,
        b"",
    );
    assert_eq!(status, 404);
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn a_link_swapped_in_during_uploads_gains_nothing() {
    let s = Served::start();
    let id = s.create(r#"{"template":"bash"}"#);
    let outside = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    s.exec(&id, &serde_json::json!({ "command": format!("mkdir real && ln -s {} link", outside.path().display()) }).to_string());
    let (status, started) = http(
        s.port,
        "POST",
        &format!("/api/sandboxes/{id}/exec"),
        &s.token,
        Some(
            r#"{"command":"while true; do mv -T real d; mv -T d real; mv -T link d; mv -T d link; done","background":true}"#,
        ),
    );
    assert_eq!(status, 200, "{started}");
    let mut landed = 0;
    for i in 0..60 {
        let (status, _) = s.files("PUT", &id, &format!("path=d/f{i}"), b"payload");
        if status == 200 {
            landed += 1;
        }
    }
    let outside_files: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(
        outside_files.is_empty(),
        "an upload went through the link: {outside_files:?}"
    );
    eprintln!("{landed} of 60 uploads landed inside, none outside");
}

#[test]
fn downloads_are_masked_with_every_secret_ever_granted() {
    let s = Served::start();
    let id = s.create(r#"{"template":"bash","secrets":["API_KEY"]}"#);
    // EXTRA is granted to one exec only; both end up in files.
    s.exec(&id, r#"{"command":"printf '%s\n' \"$API_KEY\" \"$EXTRA\" > both.txt; printf %s \"$EXTRA\" | base64 > encoded.txt","secrets":["EXTRA"]}"#);
    let (status, body) = s.files("GET", &id, "path=both.txt", b"");
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "<secret:api_key>\n<secret:extra>\n"
    );
    let (_, body) = s.files("GET", &id, "path=encoded.txt", b"");
    let encoded = base64::engine::general_purpose::STANDARD.encode(OTHER_VALUE);
    assert!(
        !String::from_utf8_lossy(&body).contains(&encoded),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // The reads that masked are audited.
    let audit = s.home.run(&["audit"]).ok();
    assert!(
        audit.contains("\tagent\tsecret.mask\tdefault\tEXTRA\t"),
        "{audit}"
    );
    // `sandbox cp` out masks the same way; in, it writes the sandbox's file.
    let local = s.home.path().join("copy.txt");
    s.home
        .run(&[
            "sandbox",
            "cp",
            &format!("{id}:both.txt"),
            local.to_str().unwrap(),
        ])
        .ok();
    assert_eq!(
        std::fs::read_to_string(&local).unwrap(),
        "<secret:api_key>\n<secret:extra>\n"
    );
    let out = s
        .home
        .run(&["sandbox", "cp", &format!("{id}:both.txt"), "-"])
        .ok();
    assert!(
        !out.contains(VALUE) && out.contains("<secret:api_key>"),
        "{out}"
    );
    std::fs::write(&local, "from the host\n").unwrap();
    s.home
        .run(&[
            "sandbox",
            "cp",
            local.to_str().unwrap(),
            &format!("{id}:in/host.txt"),
        ])
        .ok();
    assert_eq!(
        s.exec(&id, r#"{"command":"cat in/host.txt"}"#)["stdout"],
        "from the host\n"
    );
    s.home
        .run(&[
            "sandbox",
            "cp",
            local.to_str().unwrap(),
            &format!("{id}:../x"),
        ])
        .fails_with(2);
    s.home.run(&["sandbox", "cp", "a", "b"]).fails_with(2);
}

/// The server's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn sixty_four_mib_go_up_and_down_with_the_servers_memory_bounded() {
    let s = Served::start();
    let id = s.create(r#"{"template":"bash"}"#);
    let before = peak_rss_kib(s.server.id());
    let size = 64 * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 4096) as u8).collect();
    let digest = sha2::Sha256::digest(&data);
    let (status, answer) = s.files("PUT", &id, "path=big.bin", &data);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let (status, back) = s.files("GET", &id, "path=big.bin", b"");
    assert_eq!(status, 200);
    assert_eq!(back.len(), size);
    assert_eq!(sha2::Sha256::digest(&back), digest);
    let grown = peak_rss_kib(s.server.id()).saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "the server's peak memory grew by {grown} KiB moving 64 MiB"
    );
}

#[test]
fn a_sandbox_expires_when_idle_is_renewed_by_use_and_expires_across_a_restart() {
    let mut s = Served::start();
    // Renewed by every call: alive after more than its timeout of use.
    let kept = s.create(r#"{"template":"bash","timeout_s":3}"#);
    let (_, first) = s.get(&format!("/api/sandboxes/{kept}"));
    let first_expiry = first["expires_at"].as_str().unwrap().to_owned();
    assert_eq!(first["timeout_s"], 3);
    let idle = s.create(r#"{"template":"bash","timeout_s":2}"#);
    s.exec(&idle, r#"{"command":"touch work-file"}"#);
    let idle_dir = s.home.path().join("sandboxes").join(&idle);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        s.exec(&kept, r#"{"command":"true"}"#);
        std::thread::sleep(Duration::from_millis(700));
    }
    let (status, later) = s.get(&format!("/api/sandboxes/{kept}"));
    assert_eq!(status, 200, "{later}");
    assert!(
        later["expires_at"].as_str().unwrap() > first_expiry.as_str(),
        "{later}"
    );
    // The idle one is gone, files and all, within seconds of expiring.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = s.get(&format!("/api/sandboxes/{idle}"));
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "the idle sandbox never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!idle_dir.exists(), "its files are gone");
    // A longer timeout, set later, keeps it.
    let (status, text) = http(
        s.port,
        "POST",
        &format!("/api/sandboxes/{kept}/timeout"),
        &s.token,
        Some(r#"{"timeout_s":600}"#),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["timeout_s"], 600);
    let (status, _) = http(
        s.port,
        "POST",
        &format!("/api/sandboxes/{kept}/timeout"),
        &s.token,
        Some(r#"{"timeout_s":0}"#),
    );
    assert_eq!(status, 400);
    // Across a restart: it expires while no server runs; the next one deletes it.
    let short = s.create(r#"{"template":"bash","timeout_s":1}"#);
    let _ = s.server.kill();
    let _ = s.server.wait();
    std::thread::sleep(Duration::from_millis(2500));
    let (server, port, log) = start_server(&s.home);
    s.server = server;
    s.log = log;
    s.port = port;
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.get(&format!("/api/sandboxes/{short}")).0 != 404 {
        assert!(
            Instant::now() < deadline,
            "an expired sandbox survived the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        s.get(&format!("/api/sandboxes/{kept}")).0,
        200,
        "the renewed one is still there"
    );
}

#[test]
fn a_background_server_is_reached_by_later_commands_and_ends_with_its_sandbox() {
    let mut s = Served::start();
    let id = s.create(r#"{"template":"bash","secrets":["API_KEY"]}"#);
    let server = r#"import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(os.environ["API_KEY"].encode())
    def log_message(self, *args): print("served", flush=True)
print("listening", flush=True)
http.server.HTTPServer(("127.0.0.1", 8765), Handler).serve_forever()
"#;
    assert_eq!(
        s.files("PUT", &id, "path=server.py", server.as_bytes()).0,
        200
    );
    let (status, started) = http(
        s.port,
        "POST",
        &format!("/api/sandboxes/{id}/exec"),
        &s.token,
        Some(r#"{"command":["/usr/bin/python3","server.py","bg-marker-4242"],"background":true}"#),
    );
    assert_eq!(status, 200, "{started}");
    let pid = json(&started)["process_id"].as_u64().unwrap();
    // A later command of the same sandbox (network off) reaches it on the
    // shared loopback; what the server sends holds the value, masked.
    let fetch = r#"{"command":["/usr/bin/python3","-c","import time, urllib.request\nfor _ in range(50):\n    try:\n        print(urllib.request.urlopen('http://127.0.0.1:8765/').read().decode()); break\n    except OSError: time.sleep(0.1)"]}"#;
    let fetched = s.exec(&id, fetch);
    assert_eq!(fetched["stdout"], "<secret:api_key>\n", "{fetched}");
    // Listed, its log followed (masked lines), stopped.
    let (_, listed) = s.get(&format!("/api/sandboxes/{id}/processes"));
    assert_eq!(listed["processes"][0]["process_id"], pid);
    assert_eq!(listed["processes"][0]["status"], "running");
    let (status, log) = raw(
        s.port,
        "GET",
        &format!("/api/sandboxes/{id}/processes/{pid}/log"),
        &s.token,
        b"",
    );
    assert_eq!(status, 200);
    let log = String::from_utf8_lossy(&log).to_string();
    assert!(
        log.contains(r#""data":"listening""#) && log.contains(r#""data":"served""#),
        "{log}"
    );
    let (status, text) = http(
        s.port,
        "DELETE",
        &format!("/api/sandboxes/{id}/processes/{pid}"),
        &s.token,
        None,
    );
    assert_eq!(status, 200, "{text}");
    let (status, log) = raw(
        s.port,
        "GET",
        &format!("/api/sandboxes/{id}/processes/{pid}/log?follow=true"),
        &s.token,
        b"",
    );
    assert_eq!(status, 200);
    let last = String::from_utf8_lossy(&log)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        last.contains(r#""event":"exit""#) && last.contains(r#""exit_code":143"#),
        "{last}"
    );
    let (_, listed) = s.get(&format!("/api/sandboxes/{id}/processes"));
    assert_eq!(listed["processes"][0]["status"], "stopped");
    assert!(!process_is_running("bg-marker-4242"));
    // Another token sees none of it.
    let (status, _) = http(
        s.port,
        "GET",
        &format!("/api/sandboxes/{id}/processes"),
        &s.other,
        None,
    );
    assert_eq!(status, 404);
    // A background command ends with its sandbox.
    let (status, _) = http(
        s.port,
        "POST",
        &format!("/api/sandboxes/{id}/exec"),
        &s.token,
        Some(r#"{"command":["sh","-c","sleep 300; echo bg-marker-5151"],"background":true}"#),
    );
    assert_eq!(status, 200);
    crate::support::wait_until(Duration::from_secs(10), "the background sleep", || {
        process_is_running("bg-marker-5151")
    });
    let (status, answer) = http(
        s.port,
        "DELETE",
        &format!("/api/sandboxes/{id}"),
        &s.token,
        None,
    );
    if status != 200 {
        let _ = s.server.kill();
        let _ = s.server.wait();
        panic!(
            "DELETE: {status} {answer}; the server's log: {}",
            s.log.rest()
        );
    }
    crate::support::wait_until(
        Duration::from_secs(10),
        "the background sleep to end",
        || !process_is_running("bg-marker-5151"),
    );
    crate::support::wait_until(
        Duration::from_secs(5),
        "the sandbox's network namespace holder to end with it",
        || !netns_holder_is_running(&id),
    );
    // Two sandboxes share nothing: another one does not reach a server of the first.
    let first = s.create(r#"{"template":"bash"}"#);
    let second = s.create(r#"{"template":"bash"}"#);
    assert_eq!(
        s.files("PUT", &first, "path=server.py", server.as_bytes())
            .0,
        200
    );
    http(
        s.port,
        "POST",
        &format!("/api/sandboxes/{first}/exec"),
        &s.token,
        Some(
            r#"{"command":["/usr/bin/python3","server.py"],"background":true,"secrets":["API_KEY"]}"#,
        ),
    );
    assert_eq!(s.exec(&first, fetch)["stdout"], "<secret:api_key>\n");
    let from_second = s.exec(&second, fetch);
    assert_eq!(from_second["stdout"], "", "{from_second}");
}

#[test]
fn an_upload_beyond_disk_mb_is_a_413_and_leaves_nothing() {
    let s = Served::start();
    let id = s.create_with_a_4_mib_disk();
    let big = vec![7u8; 6 * 1024 * 1024];
    let (status, body) = s.files("PUT", &id, "path=big.bin", &big);
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let (_, listed) = s.files("GET", &id, "path=.&list=true", b"");
    let listed = String::from_utf8_lossy(&listed).to_string();
    assert!(
        !listed.contains("big.bin") && !listed.contains("shroud-upload"),
        "{listed}"
    );
    // What fits still goes in.
    assert_eq!(
        s.files("PUT", &id, "path=small.bin", &big[..1024 * 1024]).0,
        200
    );
}

/// Reads one answer with a `Content-Length` off a kept-alive connection.
fn read_answer(stream: &mut std::net::TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the answer's head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("the answer's body");
    (
        head[9..12].parse().unwrap(),
        String::from_utf8_lossy(&body).into(),
    )
}

#[test]
fn a_refused_upload_is_read_to_its_end_so_the_client_sees_the_413() {
    // The server used to answer 413 as soon as the disk was full and close
    // with the rest of the body unread: the kernel reset the connection,
    // and a client still sending saw EPIPE instead of the answer (the
    // TypeScript SDK's test, now and then).
    let s = Served::start();
    let id = s.create_with_a_4_mib_disk();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let big = vec![7u8; 48 << 20];
    let request = |stream: &mut std::net::TcpStream, token: &str, path: &str, body: &[u8]| {
        write!(
            stream,
            "PUT /api/sandboxes/{id}/files?path={path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        stream.write_all(body)
    };
    request(&mut stream, &s.token, "big.bin", &big).expect("the whole body is taken");
    let (status, answer) = read_answer(&mut stream);
    assert_eq!(status, 413, "{answer}");
    // So is one refused before it is read: a bad path, an unknown token
    // (whose body is read up to 8 MiB only).
    request(&mut stream, "not-a-token", "big.bin", &big[..4 << 20])
        .expect("the whole body is taken");
    assert_eq!(read_answer(&mut stream).0, 401);
    request(&mut stream, &s.token, "../out", &big).expect("the whole body is taken");
    assert_eq!(read_answer(&mut stream).0, 400);
    // A client that waits for `100 Continue` before its body is answered
    // at once, and is never asked for a body that would be thrown away.
    for (token, path, status) in [
        ("not-a-token", "big.bin", 401),
        (s.token.as_str(), "../out", 400),
    ] {
        let mut waiting = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        waiting
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            waiting,
            "PUT /api/sandboxes/{id}/files?path={path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            big.len()
        )
        .unwrap();
        assert_eq!(read_answer(&mut waiting).0, status, "{path}");
    }
    // The connection lives on for the next request.
    request(&mut stream, &s.token, "small.bin", b"fits").unwrap();
    let (status, answer) = read_answer(&mut stream);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(json(&answer)["size"], 4);
}

#[test]
fn a_follower_that_joins_while_the_log_grows_loses_no_line() {
    // A follower's first read used to take its offset from the file's size
    // after reading it: a line appended in between was never sent (the
    // TypeScript SDK's `wait()` once came back with no stderr).
    let s = Served::start();
    let id = s.create(r#"{"template":"bash"}"#);
    let started = s.exec(
        &id,
        r#"{"command":["sh","-c","i=0; while [ $i -lt 3000 ]; do echo $i; i=$((i+1)); done"],"background":true}"#,
    );
    let pid = started["process_id"].as_u64().unwrap();
    // One event a line, each line's text without its newline.
    let expected: Vec<String> = (0..3000).map(|i| i.to_string()).collect();
    let followers: Vec<_> = (0..8)
        .map(|k| {
            let (port, token) = (s.port, s.token.clone());
            let route = format!("/api/sandboxes/{id}/processes/{pid}/log?follow=true");
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(3 * k));
                let (status, log) = raw(port, "GET", &route, &token, b"");
                assert_eq!(status, 200);
                let mut stdout = Vec::new();
                let mut exits = 0;
                for line in String::from_utf8_lossy(&log).lines() {
                    let event = json(line);
                    if event["stream"] == "stdout" {
                        stdout.push(event["data"].as_str().unwrap().to_owned());
                    } else if event["event"] == "exit" {
                        exits += 1;
                    }
                }
                (stdout, exits)
            })
        })
        .collect();
    for (k, follower) in followers.into_iter().enumerate() {
        let (stdout, exits) = follower.join().unwrap();
        assert_eq!(exits, 1, "follower {k}");
        assert!(
            stdout == expected,
            "follower {k} got {} of {} lines",
            stdout.len(),
            expected.len()
        );
    }
}

#[test]
fn a_sandbox_deleted_right_after_create_goes_while_the_sweep_runs() {
    // The expiry sweep mounts each sandbox's disk every second to read its
    // lifetime; a removal racing it used to find the disk mounted again
    // and answer 500 (EBUSY), about once in 40.
    let s = Served::start();
    for round in 0..30 {
        let id = s.create(r#"{"template":"bash"}"#);
        let (status, answer) = http(
            s.port,
            "DELETE",
            &format!("/api/sandboxes/{id}"),
            &s.token,
            None,
        );
        assert_eq!(status, 200, "round {round}: {answer}");
        assert!(!s.home.path().join("sandboxes").join(&id).exists());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&s.home.path().display().to_string()),
        "a disk is still mounted: {mounts}"
    );
}
