//! Helpers shared by the benchmarks: a vault in a temporary home, and the
//! deterministic secrets and log text the masking benchmarks feed.

// Each benchmark compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use shroud::mask::{MaskSet, MaskStyle};
use shroud::secret::SecretValue;
use shroud::store::{NewSecret, OpenMode, SecretName, Store, StoreConfig, VaultName};

/// Creates a home under `dir` holding `secrets` (name, value) in the default vault.
pub fn home_with_secrets(
    dir: &std::path::Path,
    secrets: &[(String, Vec<u8>)],
) -> std::path::PathBuf {
    let home = dir.join("home");
    let mut store = Store::open(
        StoreConfig {
            home: home.clone(),
            master_key_env: None,
            actor: "bench".to_owned(),
            location: shroud::store::StoreLocation::Home,
        },
        OpenMode::Create,
    )
    .expect("open store");
    let batch = secrets
        .iter()
        .map(|(name, value)| {
            NewSecret::new(
                SecretName::parse(name).unwrap(),
                SecretValue::from_slice(value),
                None,
                None,
            )
            .unwrap()
        })
        .collect();
    store
        .set_secrets(&VaultName::default_vault(), batch)
        .expect("set secrets");
    home
}

/// A small deterministic generator (xorshift), so every run sees the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Random 24-byte secrets over letters, digits and a few symbols.
pub fn secrets(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/=.";
    let mut rng = Rng(seed);
    (0..count)
        .map(|_| (0..24).map(|_| *rng.pick(alphabet)).collect())
        .collect()
}

/// Log lines like a web service's, `len` bytes in all.
pub fn log_text(len: usize) -> Vec<u8> {
    let mut rng = Rng(0x5eed);
    let levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"];
    let paths = [
        "/api/v1/items",
        "/api/v1/users",
        "/healthz",
        "/api/v2/orders",
        "/static/app.js",
    ];
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut out = Vec::with_capacity(len + 256);
    while out.len() < len {
        let line = format!(
            "2026-11-24T05:{:02}:{:02}.{:03}Z {} request_id={:016x} method=GET path={}/{} status={} latency_ms={} user={} bytes={}\n",
            rng.next() % 60,
            rng.next() % 60,
            rng.next() % 1000,
            rng.pick(&levels),
            rng.next(),
            rng.pick(&paths),
            rng.next() % 100_000,
            rng.pick(&[200, 200, 200, 201, 204, 404, 500]),
            rng.next() % 900,
            rng.pick(&users),
            rng.next() % 1_000_000,
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.truncate(len);
    out
}

/// `shroud --home HOME` of this build, stdin from `/dev/null`, and no
/// master key from the bench's own environment.
pub fn shroud(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shroud"));
    command
        .arg("--home")
        .arg(home)
        .env_remove("SHROUD_MASTER_KEY")
        .stdin(Stdio::null());
    command
}

/// Runs `command`, drains its stdout, checks it succeeded; the bytes read.
pub fn drain(command: &mut Command) -> u64 {
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

/// The mask set of `values`, named `S0`, `S1`, ...
pub fn mask_set(values: &[Vec<u8>]) -> Arc<MaskSet> {
    let mut builder = MaskSet::builder(MaskStyle::Label);
    for (i, value) in values.iter().enumerate() {
        builder.add(&format!("S{i}"), &SecretValue::from_slice(value));
    }
    builder.build()
}
