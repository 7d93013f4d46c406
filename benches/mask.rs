//! Masker throughput on 64 MiB of log-like text (secrets counted with their
//! variants: each 24-byte secret adds its base64, percent and JSON forms):
//!
//! - no matches, 100 and 10,000 secrets, beside the aho-corasick crate
//!   searching the same patterns (the peer);
//! - one match per KiB, 100 secrets;
//! - end to end: `shroud redact --all` with 100 secrets against `cat`, each
//!   reading the same file and writing into a pipe drained by the bench.
//!
//! Run with `cargo bench --bench mask`.

use std::hint::black_box;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shroud::mask::{MaskSet, Masker};

mod common;

use common::{log_text, mask_set, secrets};

const INPUT_BYTES: usize = 64 << 20;
const CHUNK: usize = 64 << 10;

fn run_masker(set: &Arc<MaskSet>, input: &[u8], out: &mut Vec<u8>) -> usize {
    let mut masker = Masker::new(Arc::clone(set));
    let mut total = 0;
    for chunk in input.chunks(CHUNK) {
        out.clear();
        masker.push(chunk, out);
        total += out.len();
    }
    out.clear();
    masker.finish(out);
    total + out.len()
}

fn in_process(c: &mut Criterion) {
    let text = log_text(INPUT_BYTES);
    let mut group = c.benchmark_group("mask 64 MiB");
    group.throughput(Throughput::Bytes(INPUT_BYTES as u64));
    group.sample_size(10);
    let mut out = Vec::with_capacity(2 * CHUNK);

    for count in [100, 10_000] {
        let set = mask_set(&secrets(count, 42));
        eprintln!("{count} secrets: {} patterns, {set:?}", set.pattern_count());
        group.bench_function(format!("no matches, {count} secrets"), |b| {
            b.iter(|| black_box(run_masker(&set, &text, &mut out)))
        });
        // The peer, given exactly the same patterns: the aho-corasick crate
        // (its own choice of engine, leftmost-longest, whole buffer at once;
        // it cannot stream overlapping occurrences, so this is its best case).
        let patterns: Vec<&[u8]> = set.patterns().map(|(p, _)| p).collect();
        let peer = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .unwrap();
        group.bench_function(format!("aho-corasick, no matches, {count} secrets"), |b| {
            b.iter(|| black_box(peer.find_iter(&text).count()))
        });
    }

    // One occurrence per KiB: a secret (or one of its encoded forms would do)
    // written over the text every 1024 bytes.
    let values = secrets(100, 42);
    let set = mask_set(&values);
    let mut dense = text.clone();
    for (i, at) in (0..dense.len() - 64).step_by(1024).enumerate() {
        let value = &values[i % values.len()];
        dense[at + 100..at + 100 + value.len()].copy_from_slice(value);
    }
    let masked = set.mask_all(&dense);
    assert_eq!(
        masked.windows(9).filter(|w| w == b"<secret:s").count(),
        INPUT_BYTES / 1024,
        "every planted occurrence is masked"
    );
    group.bench_function("one match per KiB, 100 secrets", |b| {
        b.iter(|| black_box(run_masker(&set, &dense, &mut out)))
    });
    group.finish();
}

/// Runs `command` with stdin from `input` and drains its stdout; returns bytes read.
fn pipe_through(command: &mut Command, input: &std::path::Path) -> usize {
    let mut child = command
        .stdin(std::fs::File::open(input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match stdout.read(&mut buf).unwrap() {
            0 => break,
            n => total += n,
        }
    }
    assert!(child.wait().unwrap().success());
    total
}

fn end_to_end(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.log");
    std::fs::write(&input, log_text(INPUT_BYTES)).unwrap();
    let named: Vec<(String, Vec<u8>)> = secrets(100, 42)
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("S{i}"), v))
        .collect();
    let home = common::home_with_secrets(dir.path(), &named);
    let mut group = c.benchmark_group("pipe 64 MiB");
    group.throughput(Throughput::Bytes(INPUT_BYTES as u64));
    group.sample_size(10);
    group.bench_function("cat", |b| {
        b.iter(|| black_box(pipe_through(&mut Command::new("cat"), &input)))
    });
    group.bench_function("shroud redact --all (100 secrets)", |b| {
        b.iter(|| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_shroud"));
            command
                .arg("--home")
                .arg(&home)
                .args(["redact", "--all"])
                .env_remove("SHROUD_MASTER_KEY");
            black_box(pipe_through(&mut command, &input))
        })
    });
    group.finish();
}

criterion_group!(benches, in_process, end_to_end);
criterion_main!(benches);
