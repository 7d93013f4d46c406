//! `shroud exec` as whole processes:
//!
//! - overhead: `shroud exec --secret A --secret B -- true` against
//!   `/usr/bin/env -i true` (start, open the vault, decrypt and audit two
//!   secrets, build the masker, spawn, wait, exit);
//! - throughput: a child writing 256 MiB of log lines through `shroud exec`
//!   (masking two secrets) against the same child piped to `cat`.
//!
//! - isolation: `shroud sandbox exec ID -- true` against `shroud exec -- true`
//!   (namespaces, mounts, the init process and its fork);
//! - the API: `POST /api/sandboxes/{id}/exec` of `true` (with a secret) to a
//!   running `shroud serve`, one connection per request, against the CLI's
//!   `sandbox exec` (which pays for starting shroud and opening the vault).
//!
//! Run with `cargo bench --bench exec`.

use std::hint::black_box;
use std::io::Read;
use std::process::{Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;

use common::{drain, shroud};

const OUTPUT_BYTES: u64 = 256 << 20;

fn prepare_home(dir: &std::path::Path) -> std::path::PathBuf {
    let secrets = [
        ("A", "sk-live-4f9a8b7c6d5e3f2a"),
        ("B", "postgres://u:correct-horse@db/x"),
    ];
    common::home_with_secrets(
        dir,
        &secrets.map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec())),
    )
}

fn overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = prepare_home(dir.path());
    let mut group = c.benchmark_group("exec overhead");
    group.bench_function("env -i true", |b| {
        b.iter(|| {
            black_box(
                Command::new("/usr/bin/env")
                    .args(["-i", "true"])
                    .status()
                    .unwrap(),
            )
        })
    });
    group.bench_function("shroud exec --secret A --secret B -- true", |b| {
        b.iter(|| {
            let status = shroud(&home)
                .args(["exec", "--secret", "A", "--secret", "B", "--", "true"])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            black_box(status)
        })
    });
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = prepare_home(dir.path());
    let producer = format!(
        "yes '2026-11-24T05:53:41.550Z INFO request_id=6f1c2a path=/api/v1/items status=200 latency_ms=12 user=alice' | head -c {OUTPUT_BYTES}"
    );
    let mut group = c.benchmark_group("exec 256 MiB of output");
    group.throughput(Throughput::Bytes(OUTPUT_BYTES));
    group.sample_size(10);
    group.bench_function("child | cat", |b| {
        b.iter(|| {
            black_box(drain(
                Command::new("sh").args(["-c", &format!("{producer} | cat")]),
            ))
        })
    });
    group.bench_function("shroud exec --secret A --secret B -- child", |b| {
        b.iter(|| {
            black_box(drain(shroud(&home).args([
                "exec", "--tty", "never", "--secret", "A", "--secret", "B", "--", "sh", "-c",
                &producer,
            ])))
        })
    });
    group.finish();
}

/// `shroud sandbox create --template bash FLAGS...`; returns the id.
fn create_sandbox(home: &std::path::Path, flags: &[&str]) -> String {
    let created = shroud(home)
        .args(["sandbox", "create", "--template", "bash"])
        .args(flags)
        .output()
        .unwrap();
    assert!(created.status.success());
    String::from_utf8(created.stdout).unwrap().trim().to_owned()
}

/// Benchmarks `shroud sandbox exec ID -- true` as `name`.
fn bench_sandbox_exec(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    home: &std::path::Path,
    id: &str,
) {
    group.bench_function(name, |b| {
        b.iter(|| {
            let status = shroud(home)
                .args(["sandbox", "exec", id, "--", "true"])
                .status()
                .unwrap();
            assert!(status.success());
            black_box(status)
        })
    });
}

fn sandbox_overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = prepare_home(dir.path());
    let id = create_sandbox(&home, &[]);
    let mut group = c.benchmark_group("sandbox overhead");
    group.bench_function("shroud exec -- true", |b| {
        b.iter(|| black_box(shroud(&home).args(["exec", "--", "true"]).status().unwrap()))
    });
    bench_sandbox_exec(&mut group, "shroud sandbox exec ID -- true", &home, &id);
    group.finish();
}

/// `shroud serve` on a free port of 127.0.0.1, killed on drop.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(home: &std::path::Path) -> Server {
    use std::io::BufRead;
    let mut child = shroud(home)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    Server { child, port }
}

/// One request on its own connection; the response body.
fn post(port: u16, path: &str, token: &str, body: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split_once("\r\n\r\n").unwrap().1.to_owned()
}

fn api_sandbox_exec(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = prepare_home(dir.path());
    let token = shroud(&home)
        .args(["token", "create", "bench", "--grant", "default:read"])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    let server = start_server(&home);
    let created = post(
        server.port,
        "/api/sandboxes",
        &token,
        r#"{"template":"bash","secrets":["A"]}"#,
    );
    let id = created.split('"').nth(3).unwrap().to_owned();
    let cli_id = create_sandbox(&home, &["--secret", "A"]);
    let mut group = c.benchmark_group("api sandbox exec");
    bench_sandbox_exec(
        &mut group,
        "shroud sandbox exec ID -- true (CLI, secret A)",
        &home,
        &cli_id,
    );
    let path = format!("/api/sandboxes/{id}/exec");
    group.bench_function("POST /api/sandboxes/ID/exec true (secret A)", |b| {
        b.iter(|| black_box(post(server.port, &path, &token, r#"{"command":["true"]}"#)))
    });
    group.finish();
}

criterion_group!(
    benches,
    overhead,
    throughput,
    sandbox_overhead,
    api_sandbox_exec
);
criterion_main!(benches);
