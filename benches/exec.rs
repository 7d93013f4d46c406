//! `shroud exec` as whole processes:
//!
//! - overhead: `shroud exec --secret A --secret B -- true` against
//!   `/usr/bin/env -i true` (start, open the vault, decrypt and audit two
//!   secrets, build the masker, spawn, wait, exit);
//! - throughput: a child writing 256 MiB of log lines through `shroud exec`
//!   (masking two secrets) against the same child piped to `cat`.
//!
//! - isolation: `shroud sandbox exec ID -- true` against `shroud exec -- true`
//!   (namespaces, mounts, the init process and its fork).
//!
//! Run with `cargo bench --bench exec`.

use std::hint::black_box;
use std::io::Read;
use std::process::{Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

mod common;

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

fn shroud(home: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shroud"));
    command
        .arg("--home")
        .arg(home)
        .env_remove("SHROUD_MASTER_KEY");
    command
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

/// Runs `command`, drains its stdout, returns the bytes read.
fn drain(command: &mut Command) -> u64 {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        match out.read(&mut buf).unwrap() {
            0 => break,
            n => total += n as u64,
        }
    }
    assert!(child.wait().unwrap().success());
    total
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

fn sandbox_overhead(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = prepare_home(dir.path());
    let created = shroud(&home)
        .args(["sandbox", "create", "--template", "bash"])
        .output()
        .unwrap();
    assert!(created.status.success());
    let id = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let mut group = c.benchmark_group("sandbox overhead");
    group.bench_function("shroud exec -- true", |b| {
        b.iter(|| black_box(shroud(&home).args(["exec", "--", "true"]).status().unwrap()))
    });
    group.bench_function("shroud sandbox exec ID -- true", |b| {
        b.iter(|| {
            let status = shroud(&home)
                .args(["sandbox", "exec", &id, "--", "true"])
                .status()
                .unwrap();
            assert!(status.success());
            black_box(status)
        })
    });
    group.finish();
}

criterion_group!(benches, overhead, throughput, sandbox_overhead);
criterion_main!(benches);
