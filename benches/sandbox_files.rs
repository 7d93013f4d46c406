//! A sandbox's files over HTTP, against a real `shroud serve` on 127.0.0.1:
//! a 64 MiB upload (`PUT /api/sandboxes/{id}/files`: streamed to the
//! sandbox's disk, renamed into place) and its download (`GET`: streamed
//! back through the masker, with a granted secret in the mask set),
//! beside the same 64 MiB through a plain loopback socket (the peer: what
//! the network path alone costs). Throughput is criterion's `Bytes`
//! figure; the server's peak memory (VmHWM) after the runs is printed.
//!
//! Run with `cargo bench --bench sandbox_files`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;

use common::shroud;

const SIZE: usize = 64 * 1024 * 1024;

/// Sends one request with `body` and reads the whole answer; returns the
/// body's length (the answer is discarded as it comes).
fn request(port: u16, head: &str, body: &[u8]) -> usize {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) => panic!("{e}"),
        }
    }
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn files(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = common::home_with_secrets(
        dir.path(),
        &[("TOKEN".to_owned(), b"sk-live-bench-file-000001".to_vec())],
    );
    let token = String::from_utf8(
        shroud(&home)
            .args(["token", "create", "bench", "--grant", "default:read"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let mut server = shroud(&home)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let create = r#"{"template":"bash","secrets":["TOKEN"]}"#;
    let mut created = Vec::new();
    {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(stream, "POST /api/sandboxes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{create}", create.len()).unwrap();
        stream.read_to_end(&mut created).unwrap();
    }
    let created = String::from_utf8_lossy(&created);
    let id = created
        .split("\"id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    let put_head = format!("PUT /api/sandboxes/{id}/files?path=big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {SIZE}\r\nConnection: close\r\n\r\n");
    let get_head = format!("GET /api/sandboxes/{id}/files?path=big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");

    let mut group = c.benchmark_group("sandbox files, 64 MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("upload (PUT)", |b| {
        b.iter(|| request(port, &put_head, &data));
    });
    group.bench_function("download (GET, masked)", |b| {
        b.iter(|| assert!(request(port, &get_head, b"") >= SIZE));
    });
    // The peer: the same bytes through a plain loopback socket.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = vec![0u8; 1 << 20];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    group.bench_function("plain loopback socket (peer)", |b| {
        b.iter(|| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", sink_port)).unwrap();
            stream.write_all(&data).unwrap();
        });
    });
    group.finish();
    eprintln!(
        "the server's peak memory (VmHWM) after the runs: {} MiB",
        peak_rss_kib(server.id()) / 1024
    );
    let _ = server.kill();
    let _ = server.wait();
    for line in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        if let Some(point) = line.split(' ').nth(4) {
            if point.starts_with(&home.display().to_string()) {
                let _ = Command::new("umount").args(["-l", point]).status();
            }
        }
    }
}

criterion_group!(benches, files);
criterion_main!(benches);
