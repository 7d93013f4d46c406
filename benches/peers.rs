//! shroud beside its peers, one group per row of the speed table in the
//! README, each measuring shroud and the peer in the same run:
//!
//! 1. `shroud sandbox exec ID -- true` (secret A injected, audited, masked)
//!    against `bwrap --unshare-all --ro-bind / / --tmpfs /tmp --proc /proc
//!    --dev /dev --die-with-parent true`;
//! 2. 200 of each, 8 at a time;
//! 3. `shroud redact --all` start-up over 1,000 and 10,000 secrets (a
//!    one-line input) against building the same patterns in the aho-corasick
//!    crate;
//! 4. `shroud exec` of `true` with 100 and 1,000 grants against `env -i
//!    true` and `shroud exec -- true` (the cost a grant adds);
//! 5. masking 64 MiB into a pipe with 100 secrets against a one-pattern
//!    `memchr::memmem` filter writing into the same kind of pipe;
//! 6. masking 64 MiB with 1 and 10 secrets (every variant), one match per
//!    KiB, against the aho-corasick crate replacing the raw values only;
//! 7. a child writing 1 GiB through `shroud exec` (two secrets masked)
//!    against the same child writing straight into a pipe.
//!
//! A peer that is missing (bubblewrap is the Debian package `bubblewrap`)
//! is skipped with a message. At the end the bench prints each row's
//! figures and ratio, from the mean time per iteration it measured.
//!
//! Run with `cargo bench --bench peers` (a row: `cargo bench --bench peers
//! -- "1 sandbox"`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput};
use shroud::mask::Masker;

mod common;

use common::{drain, log_text, mask_set, secrets};

type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Mean time per iteration of every benchmark run so far, by its name.
static MEANS: Mutex<BTreeMap<String, (Duration, u64)>> = Mutex::new(BTreeMap::new());

/// Benchmarks `routine` as `name`, keeping its mean for the report.
fn measure(group: &mut Group<'_>, name: &str, mut routine: impl FnMut()) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                routine();
            }
            let took = start.elapsed();
            let mut means = MEANS.lock().unwrap();
            let entry = means.entry(name.to_owned()).or_default();
            entry.0 += took;
            entry.1 += iters;
            took
        })
    });
}

fn mean(name: &str) -> Option<Duration> {
    let means = MEANS.lock().unwrap();
    means
        .get(name)
        .filter(|(_, iters)| *iters > 0)
        .map(|(total, iters)| *total / *iters as u32)
}

fn shroud(home: &Path) -> Command {
    let mut command = common::shroud(home);
    command.stdout(Stdio::null());
    command
}

fn succeeds(command: &mut Command) {
    let status = command.status().expect("spawn");
    assert!(status.success(), "{command:?}: {status}");
}

/// A home whose default vault holds `count` secrets `S0`, `S1`, ...
fn home_with(dir: &Path, count: usize) -> PathBuf {
    let named: Vec<(String, Vec<u8>)> = secrets(count, 42)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("S{i}"), v))
        .collect();
    common::home_with_secrets(dir, &named)
}

const BWRAP_ARGS: [&str; 12] = [
    "--unshare-all",
    "--ro-bind",
    "/",
    "/",
    "--tmpfs",
    "/tmp",
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--die-with-parent",
    "true",
];

/// `bwrap`, if it is installed and works here.
fn bwrap() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("bwrap"))
            .find(|candidate| candidate.is_file())
    });
    let Some(bwrap) = found else {
        eprintln!(
            "SKIPPED the bubblewrap peer: `bwrap` is not installed (apt-get install bubblewrap)"
        );
        return None;
    };
    let works = Command::new(&bwrap)
        .args(BWRAP_ARGS)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!(
            "SKIPPED the bubblewrap peer: `bwrap {}` fails on this host",
            BWRAP_ARGS.join(" ")
        );
        return None;
    }
    Some(bwrap)
}

fn sandbox_with_secret(home: &Path) -> String {
    let created = shroud(home)
        .args(["sandbox", "create", "--template", "bash", "--secret", "S0"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(created.status.success());
    String::from_utf8(created.stdout).unwrap().trim().to_owned()
}

const SANDBOX: &str = "shroud sandbox exec ID -- true";
const BWRAP: &str = "bwrap --unshare-all ... true";

fn row1_sandbox_exec(c: &mut Criterion, home: &Path, id: &str, bwrap: Option<&Path>) {
    let mut group = c.benchmark_group("1 sandbox exec of true");
    measure(&mut group, SANDBOX, || {
        succeeds(shroud(home).args(["sandbox", "exec", id, "--", "true"]))
    });
    if let Some(bwrap) = bwrap {
        measure(&mut group, BWRAP, || {
            succeeds(Command::new(bwrap).args(BWRAP_ARGS))
        });
    }
    group.finish();
}

const BATCH: usize = 200;
const AT_ONCE: usize = 8;
const SANDBOX_BATCH: &str = "200 shroud sandbox execs, 8 at a time";
const BWRAP_BATCH: &str = "200 bwrap runs, 8 at a time";

/// Runs `BATCH` commands made by `make`, `AT_ONCE` at a time.
fn batch(make: &(dyn Fn() -> Command + Sync)) {
    std::thread::scope(|scope| {
        for _ in 0..AT_ONCE {
            scope.spawn(|| {
                for _ in 0..BATCH / AT_ONCE {
                    succeeds(&mut make());
                }
            });
        }
    });
}

fn row2_parallel(c: &mut Criterion, home: &Path, id: &str, bwrap: Option<&Path>) {
    let mut group = c.benchmark_group("2 sandbox execs in parallel");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BATCH as u64));
    measure(&mut group, SANDBOX_BATCH, || {
        batch(&|| {
            let mut command = shroud(home);
            command.args(["sandbox", "exec", id, "--", "true"]);
            command
        })
    });
    if let Some(bwrap) = bwrap {
        measure(&mut group, BWRAP_BATCH, || {
            batch(&|| {
                let mut command = Command::new(bwrap);
                command.args(BWRAP_ARGS);
                command
            })
        });
    }
    group.finish();
}

fn redact_name(count: usize) -> String {
    format!("shroud redact --all start-up, {count} secrets")
}

fn peer_build_name(count: usize) -> String {
    format!("aho-corasick build of the same patterns, {count} secrets")
}

fn row3_redact_start_up(c: &mut Criterion, dir: &Path) {
    let mut group = c.benchmark_group("3 redact start-up");
    group.sample_size(10);
    let line = dir.join("line.txt");
    std::fs::write(&line, "one line of output\n").unwrap();
    for count in [1_000, 10_000] {
        let home = home_with(&dir.join(format!("redact-{count}")), count);
        measure(&mut group, &redact_name(count), || {
            succeeds(
                shroud(&home)
                    .args(["redact", "--all"])
                    .stdin(std::fs::File::open(&line).unwrap()),
            )
        });
        let set = mask_set(&secrets(count, 42));
        let patterns: Vec<&[u8]> = set.patterns().map(|(p, _)| p).collect();
        eprintln!("{count} secrets: {} patterns", patterns.len());
        measure(&mut group, &peer_build_name(count), || {
            black_box(aho_corasick::AhoCorasick::new(&patterns).unwrap());
        });
    }
    group.finish();
}

fn grants_name(count: usize) -> String {
    format!("shroud exec with {count} grants -- true")
}

const ENV_TRUE: &str = "env -i true";
const EXEC_TRUE: &str = "shroud exec -- true";

fn row4_grants(c: &mut Criterion, dir: &Path) {
    let home = home_with(&dir.join("grants"), 1_000);
    let mut group = c.benchmark_group("4 exec with many grants");
    group.sample_size(20);
    measure(&mut group, ENV_TRUE, || {
        succeeds(Command::new("/usr/bin/env").args(["-i", "true"]))
    });
    measure(&mut group, EXEC_TRUE, || {
        succeeds(shroud(&home).args(["exec", "--", "true"]))
    });
    for count in [100, 1_000] {
        let flags: Vec<String> = (0..count)
            .flat_map(|i| ["--secret".to_owned(), format!("S{i}")])
            .collect();
        measure(&mut group, &grants_name(count), || {
            succeeds(shroud(&home).arg("exec").args(&flags).args(["--", "true"]))
        });
    }
    group.finish();
}

const INPUT_BYTES: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

/// Feeds `input` in chunks through `filter`, writing what it returns into
/// a pipe (1 MiB, as shroud sizes its own) that a second thread drains;
/// returns the bytes drained. The filter gets an empty chunk at the end.
fn into_pipe(input: &[u8], mut filter: impl FnMut(&[u8], &mut Vec<u8>)) -> usize {
    use std::os::fd::AsRawFd;
    let (mut reader, mut writer) = std::io::pipe().unwrap();
    nix::fcntl::fcntl(
        writer.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20),
    )
    .unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            match reader.read(&mut buf).unwrap() {
                0 => return total,
                n => total += n,
            }
        }
    });
    let mut out = Vec::with_capacity(2 * CHUNK);
    for chunk in input.chunks(CHUNK) {
        out.clear();
        filter(chunk, &mut out);
        writer.write_all(&out).unwrap();
    }
    out.clear();
    filter(&[], &mut out);
    writer.write_all(&out).unwrap();
    drop(writer);
    drain.join().unwrap()
}

const MASK_PIPE: &str = "shroud masker, 100 secrets, into a pipe";
const MEMMEM_PIPE: &str = "memchr::memmem, one pattern, into a pipe";

fn row5_mask_into_pipe(c: &mut Criterion, text: &[u8]) {
    let mut group = c.benchmark_group("5 masking into a pipe");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(INPUT_BYTES as u64));
    let values = secrets(100, 42);
    let set = mask_set(&values);
    measure(&mut group, MASK_PIPE, || {
        let mut masker = Masker::new(Arc::clone(&set));
        let mut finished = false;
        black_box(into_pipe(text, |chunk, out| {
            if chunk.is_empty() && !finished {
                masker.finish(out);
                finished = true;
            } else {
                masker.push(chunk, out);
            }
        }));
    });
    // The peer: a streaming filter for one pattern, found with memmem; a
    // chunk's last pattern-length-minus-one bytes wait for the next one.
    let needle = values[0].clone();
    let finder = memchr::memmem::Finder::new(&needle);
    measure(&mut group, MEMMEM_PIPE, || {
        let mut tail: Vec<u8> = Vec::new();
        let mut joined: Vec<u8> = Vec::with_capacity(CHUNK + needle.len());
        black_box(into_pipe(text, |chunk, out| {
            joined.clear();
            joined.extend_from_slice(&tail);
            joined.extend_from_slice(chunk);
            let keep = if chunk.is_empty() {
                0
            } else {
                needle.len() - 1
            };
            let mut at = 0;
            while let Some(found) = finder.find(&joined[at..]) {
                out.extend_from_slice(&joined[at..at + found]);
                out.extend_from_slice(b"********");
                at += found + needle.len();
            }
            let safe = joined.len().saturating_sub(keep).max(at);
            out.extend_from_slice(&joined[at..safe]);
            tail.clear();
            tail.extend_from_slice(&joined[safe..]);
        }));
    });
    group.finish();
}

fn few_name(count: usize) -> String {
    format!("shroud masker, {count} secrets with every variant")
}

fn few_peer_name(count: usize) -> String {
    format!("aho-corasick replace_all, the {count} raw values")
}

fn few_finder_name(count: usize) -> String {
    format!("aho-corasick find_iter (no output), the {count} raw values")
}

fn row6_few_secrets(c: &mut Criterion, text: &[u8]) {
    let mut group = c.benchmark_group("6 masking a few secrets");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(INPUT_BYTES as u64));
    for count in [1, 10] {
        let values = secrets(count, 42);
        let mut dense = text.to_vec();
        for (i, at) in (0..dense.len() - 64).step_by(1024).enumerate() {
            let value = &values[i % values.len()];
            dense[at + 100..at + 100 + value.len()].copy_from_slice(value);
        }
        let set = mask_set(&values);
        let masked = set.mask_all(&dense);
        assert_eq!(
            masked.windows(4).filter(|w| w == b"<sec").count(),
            INPUT_BYTES / 1024,
            "every planted occurrence is masked"
        );
        let mut out = Vec::with_capacity(2 * CHUNK);
        measure(&mut group, &few_name(count), || {
            let mut masker = Masker::new(Arc::clone(&set));
            for chunk in dense.chunks(CHUNK) {
                out.clear();
                masker.push(chunk, &mut out);
            }
            out.clear();
            masker.finish(&mut out);
            black_box(out.len());
        });
        let peer = aho_corasick::AhoCorasick::new(&values).unwrap();
        // Its best case, as the issue measured it: finding, writing nothing.
        measure(&mut group, &few_finder_name(count), || {
            black_box(peer.find_iter(&dense).count());
        });
        let labels: Vec<&[u8]> = vec![b"********"; count];
        measure(&mut group, &few_peer_name(count), || {
            let mut out = Vec::with_capacity(dense.len());
            peer.replace_all_with_bytes(&dense, &mut out, |m, _, dst| {
                dst.extend_from_slice(labels[m.pattern().as_usize()]);
                true
            });
            black_box(out.len());
        });
    }
    group.finish();
}

const CHILD_BYTES: u64 = 1 << 30;
const THROUGH_EXEC: &str = "child's 1 GiB through shroud exec (2 secrets)";
const PLAIN_PIPE: &str = "child's 1 GiB through a plain pipe";

fn row7_child_output(c: &mut Criterion, home: &Path) {
    let producer = format!(
        "yes '2026-11-24T05:53:41.550Z INFO request_id=6f1c2a path=/api/v1/items status=200 latency_ms=12 user=alice' | head -c {CHILD_BYTES}"
    );
    let mut group = c.benchmark_group("7 a child's output");
    group.throughput(Throughput::Bytes(CHILD_BYTES));
    group.sample_size(10);
    measure(&mut group, PLAIN_PIPE, || {
        assert_eq!(
            drain(Command::new("sh").args(["-c", &producer])),
            CHILD_BYTES
        );
    });
    measure(&mut group, THROUGH_EXEC, || {
        let drained = drain(shroud(home).args([
            "exec", "--tty", "never", "--secret", "S0", "--secret", "S1", "--", "sh", "-c",
            &producer,
        ]));
        assert_eq!(drained, CHILD_BYTES);
    });
    group.finish();
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn rate(bytes: u64, d: Duration) -> String {
    format!(
        "{:.0} MiB/s",
        bytes as f64 / d.as_secs_f64() / (1 << 20) as f64
    )
}

/// The figures and ratios of every row that ran.
fn report() {
    let line = |row: &str, text: String| println!("{row:<44} {text}");
    println!("\nshroud and its peers (mean per iteration, this run):");
    if let (Some(s), Some(b)) = (mean(SANDBOX), mean(BWRAP)) {
        let ratio = s.as_secs_f64() / b.as_secs_f64();
        line(
            "1 sandbox exec of true",
            format!(
                "{} vs bwrap {}: {ratio:.2}x bwrap (goal <= 1.0)",
                ms(s),
                ms(b)
            ),
        );
    }
    if let (Some(s), Some(b)) = (mean(SANDBOX_BATCH), mean(BWRAP_BATCH)) {
        let per_second = |d: Duration| BATCH as f64 / d.as_secs_f64();
        line(
            "2 200 sandbox execs, 8 at a time",
            format!(
                "{:.0}/s vs bwrap {:.0}/s: {:.2}x (goal >= 1.0)",
                per_second(s),
                per_second(b),
                b.as_secs_f64() / s.as_secs_f64()
            ),
        );
    }
    if let (Some(small), Some(large)) = (mean(&redact_name(1_000)), mean(&redact_name(10_000))) {
        let peer = mean(&peer_build_name(10_000))
            .map_or(String::new(), |p| format!(", aho-corasick build {}", ms(p)));
        line(
            "3 redact --all start-up",
            format!(
                "1,000: {}, 10,000: {} ({:.1}x for 10x{peer}; goal <= 250 ms, linear)",
                ms(small),
                ms(large),
                large.as_secs_f64() / small.as_secs_f64()
            ),
        );
    }
    if let (Some(env), Some(base)) = (mean(ENV_TRUE), mean(EXEC_TRUE)) {
        for count in [100, 1_000] {
            if let Some(t) = mean(&grants_name(count)) {
                let per_grant = t.saturating_sub(base).as_secs_f64() * 1e6 / count as f64;
                line(
                    &format!("4 exec with {count} grants"),
                    format!(
                        "{} (env -i true {}, no grant {}): {per_grant:.1} us a grant (goal <= 15)",
                        ms(t),
                        ms(env),
                        ms(base)
                    ),
                );
            }
        }
    }
    let bytes = INPUT_BYTES as u64;
    if let (Some(s), Some(p)) = (mean(MASK_PIPE), mean(MEMMEM_PIPE)) {
        line(
            "5 masking into a pipe, 100 secrets",
            format!(
                "{} vs memmem {}: {:.0} % (goal >= 85 %)",
                rate(bytes, s),
                rate(bytes, p),
                100.0 * p.as_secs_f64() / s.as_secs_f64()
            ),
        );
    }
    for count in [1, 10] {
        if let (Some(s), Some(p), Some(f)) = (
            mean(&few_name(count)),
            mean(&few_peer_name(count)),
            mean(&few_finder_name(count)),
        ) {
            line(
                &format!("6 masking {count} secret(s), a match per KiB"),
                format!(
                    "{} vs aho-corasick replacing {} ({:.2}x), finding only {} ({:.2}x) (goal >= 1.0)",
                    rate(bytes, s),
                    rate(bytes, p),
                    p.as_secs_f64() / s.as_secs_f64(),
                    rate(bytes, f),
                    f.as_secs_f64() / s.as_secs_f64()
                ),
            );
        }
    }
    if let (Some(s), Some(p)) = (mean(THROUGH_EXEC), mean(PLAIN_PIPE)) {
        line(
            "7 a child's 1 GiB through exec",
            format!(
                "{} vs plain pipe {}: {:.0} % (goal >= 90 %)",
                rate(CHILD_BYTES, s),
                rate(CHILD_BYTES, p),
                100.0 * p.as_secs_f64() / s.as_secs_f64()
            ),
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let dir = tempfile::tempdir().unwrap();
    let home = home_with(&dir.path().join("main"), 2);
    let bwrap = bwrap();
    let id = sandbox_with_secret(&home);
    row1_sandbox_exec(&mut c, &home, &id, bwrap.as_deref());
    row2_parallel(&mut c, &home, &id, bwrap.as_deref());
    row3_redact_start_up(&mut c, dir.path());
    row4_grants(&mut c, dir.path());
    let text = log_text(INPUT_BYTES);
    row5_mask_into_pipe(&mut c, &text);
    row6_few_secrets(&mut c, &text);
    row7_child_output(&mut c, &home);
    succeeds(shroud(&home).args(["sandbox", "rm", &id]));
    c.final_summary();
    report();
}
