//! Deployments and agent runs, against the real supervisor (started in the
//! background by the first `deploy` command, as a user would):
//!
//! - agent run: `shroud agent run bot` of `true` (a request over the
//!   socket, a run record, a sandboxed instance, the streamed log, the
//!   exit) against `shroud sandbox exec ID -- true` of the same template;
//! - rotation: from `secret set` returning to the supervisor starting the
//!   rollout (detection), and to the new instance being up (readiness
//!   `--ready-after 0`), read from the deployment's log as it is written.
//!
//! The supervisor's CPU and memory with many idle deployments is
//! `scripts/idle-deployments.sh` (a whole-process measurement over time).
//!
//! Run with `cargo bench --bench deploy`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

use common::shroud;

fn run_ok(home: &Path, args: &[&str]) -> String {
    let out = shroud(home).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Kills the home's supervisor when the bench is done with it.
struct Supervisor(PathBuf);

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("supervisor.lock")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn agent_run(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = common::home_with_secrets(
        dir.path(),
        &[("TOKEN".to_owned(), b"sk-live-bench-000001".to_vec())],
    );
    let _supervisor = Supervisor(home.clone());
    run_ok(
        &home,
        &[
            "deploy",
            "create",
            "bot",
            "--template",
            "bash",
            "--mode",
            "agent",
            "--secret",
            "TOKEN",
            "--",
            "true",
        ],
    );
    let id = run_ok(
        &home,
        &[
            "sandbox",
            "create",
            "--template",
            "bash",
            "--secret",
            "TOKEN",
        ],
    );
    let mut group = c.benchmark_group("agent run vs sandbox exec");
    group.bench_function("sandbox exec ID -- true", |b| {
        b.iter(|| {
            let status = shroud(&home)
                .args(["sandbox", "exec", &id, "--", "true"])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            black_box(status)
        })
    });
    group.bench_function("agent run bot (true)", |b| {
        b.iter(|| {
            let status = shroud(&home)
                .args(["agent", "run", "bot"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            black_box(status)
        })
    });
    group.finish();
}

/// Lines of the deployment's log that hold `needle`.
fn count_in_log(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(needle))
        .count()
}

fn wait_for_count(log: &Path, needle: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_in_log(log, needle) < count {
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn rotation(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = common::home_with_secrets(
        dir.path(),
        &[("TOKEN".to_owned(), b"sk-live-bench-rotate-0".to_vec())],
    );
    let _supervisor = Supervisor(home.clone());
    run_ok(
        &home,
        &[
            "deploy",
            "create",
            "web",
            "--template",
            "bash",
            "--secret",
            "TOKEN",
            "--ready-after",
            "0",
            "--",
            "sleep",
            "100000",
        ],
    );
    let log = home.join("deployments/web/log.jsonl");
    wait_for_count(&log, "\"event\":\"up\"", 1);
    let mut version = 0u64;
    let mut set_secret = |home: &Path| {
        version += 1;
        let mut child = shroud(home)
            .args(["secret", "set", "TOKEN"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("sk-live-bench-rotate-{version}").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    };
    let mut group = c.benchmark_group("rotation");
    group.sample_size(10);
    group.bench_function("secret set -> rollout starts (detection)", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let done = count_in_log(&log, "done: every instance replaced");
                let before = count_in_log(&log, "rotating to");
                set_secret(&home);
                let start = Instant::now();
                wait_for_count(&log, "rotating to", before + 1);
                total += start.elapsed();
                wait_for_count(&log, "done: every instance replaced", done + 1);
            }
            total
        })
    });
    group.bench_function("secret set -> new instance up (--ready-after 0)", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let ups = count_in_log(&log, "\"event\":\"up\"");
                let done = count_in_log(&log, "done: every instance replaced");
                set_secret(&home);
                let start = Instant::now();
                wait_for_count(&log, "\"event\":\"up\"", ups + 1);
                total += start.elapsed();
                wait_for_count(&log, "done: every instance replaced", done + 1);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, agent_run, rotation);
criterion_main!(benches);
