//! `shroud run FILE.yml` as whole processes:
//!
//! - scheduler overhead: 100 trivial tasks (`true`) as a fan-out (all
//!   independent, `--jobs 2`) and as a chain (each uses the one before),
//!   per task, against one `shroud exec -- true` (what a task would cost
//!   run on its own);
//! - checking: a 1,000-task file (a chain, each task naming a secret) with
//!   one bad field at its end: parsed, checked against the store, refused,
//!   nothing run.
//!
//! Run with `cargo bench --bench tasks`; criterion's time for a file is
//! divided by 100 in the README to give the per-task figure.

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};

use criterion::{criterion_group, criterion_main, Criterion};

mod common;

fn shroud(home: &Path) -> Command {
    let mut command = common::shroud(home);
    command.stdout(Stdio::null()).stderr(Stdio::null());
    command
}

fn file(dir: &Path, name: &str, tasks: usize, chain: bool, bad_end: bool) -> String {
    let mut text = String::from("tasks:\n");
    for i in 0..tasks {
        text.push_str(&format!("  - key: t{i}\n    run: \"true\"\n"));
        if chain && i > 0 {
            text.push_str(&format!("    use: [t{}]\n", i - 1));
        }
        if bad_end {
            text.push_str("    env:\n      TOKEN: ${{ secrets.TOKEN }}\n");
        }
    }
    if bad_end {
        text.push_str("  - key: last\n    run: \"true\"\n    colour: red\n");
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn scheduler(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let home = common::home_with_secrets(
        dir.path(),
        &[("TOKEN".to_owned(), b"sk-live-bench-task-01".to_vec())],
    );
    let fan_out = file(dir.path(), "fan.yml", 100, false, false);
    let chain = file(dir.path(), "chain.yml", 100, true, false);
    let big = file(dir.path(), "big.yml", 1000, true, true);
    let mut group = c.benchmark_group("tasks");
    group.sample_size(10);
    group.bench_function("exec -- true (one task's worth)", |b| {
        b.iter(|| {
            let status = shroud(&home).args(["exec", "--", "true"]).status().unwrap();
            assert!(status.success());
            black_box(status)
        })
    });
    for (name, path, jobs) in [
        ("run 100 tasks, fan-out, --jobs 2", &fan_out, "2"),
        ("run 100 tasks, chain", &chain, "2"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let status = shroud(&home)
                    .args(["run", path, "--jobs", jobs])
                    .status()
                    .unwrap();
                assert!(status.success());
                black_box(status)
            })
        });
    }
    group.bench_function("check a 1,000-task file (refused)", |b| {
        b.iter(|| {
            let status = shroud(&home).args(["run", &big]).status().unwrap();
            assert_eq!(status.code(), Some(2));
            black_box(status)
        })
    });
    group.finish();
}

criterion_group!(benches, scheduler);
criterion_main!(benches);
