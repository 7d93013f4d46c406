//! Store latency on each backend, side by side: `set` and `reveal` of one
//! secret in-process (each a durable transaction with its audit record),
//! and listing a vault of 100,000 secrets, in-process and as a whole
//! `shroud secret list` process. SQLite is the home's file; PostgreSQL is a
//! throwaway cluster on 127.0.0.1 started for the run, durable (fsync and
//! synchronous commits on; the tests' own launcher; without PostgreSQL installed its rows are skipped, saying so).
//! Run with `cargo bench --bench store`.
//!
//! Throughput through `shroud serve` (two nodes on PostgreSQL, one on
//! SQLite) is measured by `scripts/load-api.sh`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use shroud::secret::SecretValue;
use shroud::store::{
    NewSecret, OpenMode, SecretName, Store, StoreConfig, StoreLocation, VaultName,
};

#[allow(dead_code)]
#[path = "../tests/integration/pg.rs"]
mod pg;

/// A backend to measure: its label and where its data goes.
struct Backend {
    label: &'static str,
    location: StoreLocation,
    url: Option<String>,
}

/// SQLite, and PostgreSQL when a cluster can be started (one per run).
fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend {
        label: "sqlite",
        location: StoreLocation::Home,
        url: None,
    }];
    // Durable, as a production database is (the tests' shared cluster is not).
    static DURABLE: std::sync::OnceLock<Option<pg::Cluster>> = std::sync::OnceLock::new();
    let cluster = DURABLE
        .get_or_init(|| pg::Cluster::start_with(&["synchronous_commit=on", "fsync=on"], false));
    if let Some(cluster) = cluster {
        let url = cluster.database();
        backends.push(Backend {
            label: "postgres",
            location: StoreLocation::parse(&url).expect("a cluster URL"),
            url: Some(url),
        });
    }
    backends
}

fn open(dir: &std::path::Path, location: &StoreLocation) -> Store {
    Store::open(
        StoreConfig {
            home: dir.join("home"),
            master_key_env: None,
            actor: "bench".to_owned(),
            location: location.clone(),
        },
        OpenMode::Create,
    )
    .expect("open store")
}

fn new_secret(name: &str, value: &[u8]) -> NewSecret {
    NewSecret::new(
        SecretName::parse(name).unwrap(),
        SecretValue::from_slice(value),
        None,
        None,
    )
    .unwrap()
}

fn set_and_reveal(c: &mut Criterion) {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), &backend.location);
        let vault = VaultName::default_vault();
        let name = SecretName::parse("BENCH_SECRET").unwrap();
        let value = b"postgres://user:correct-horse-battery-staple@db.internal:5432/app";
        store
            .set_secret(&vault, new_secret("BENCH_SECRET", value))
            .unwrap();

        let mut group = c.benchmark_group(format!("store {}", backend.label));
        group.bench_function("set (new version, durable commit + audit)", |b| {
            b.iter_batched(
                || new_secret("BENCH_SECRET", value),
                |secret| black_box(store.set_secret(&vault, secret).unwrap()),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("reveal (decrypt + durable audit record)", |b| {
            b.iter(|| black_box(store.reveal_secret(&vault, &name, None).unwrap()))
        });
        group.bench_function("metadata read (no audit record)", |b| {
            b.iter(|| black_box(store.secret_meta(&vault, &name).unwrap()))
        });
        group.finish();
    }
}

fn list_100k(c: &mut Criterion) {
    const COUNT: usize = 100_000;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path(), &backend.location);
        let vault = VaultName::parse("big").unwrap();
        for chunk in (0..COUNT).collect::<Vec<_>>().chunks(10_000) {
            let secrets = chunk
                .iter()
                .map(|i| {
                    new_secret(
                        &format!("SECRET_{i:06}"),
                        format!("value-{i:06}").as_bytes(),
                    )
                })
                .collect();
            store.set_secrets(&vault, secrets).unwrap();
        }
        assert_eq!(store.list_secret_names(&vault).unwrap().len(), COUNT);

        let mut group = c.benchmark_group(format!("store {} list 100k", backend.label));
        group.sample_size(20);
        group.bench_function("names", |b| {
            b.iter(|| black_box(store.list_secret_names(&vault).unwrap()))
        });
        group.bench_function("names + metadata", |b| {
            b.iter(|| black_box(store.list_secrets(&vault).unwrap()))
        });
        // The whole `shroud secret list` process: start, open, list, print.
        let home = dir.path().join("home");
        group.bench_function("`shroud secret list` process", |b| {
            b.iter(|| {
                let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shroud"));
                command
                    .arg("--home")
                    .arg(&home)
                    .args(["secret", "list", "--vault", "big"])
                    .env_remove("SHROUD_MASTER_KEY")
                    .env_remove("SHROUD_STORE");
                if let Some(url) = &backend.url {
                    command.env("SHROUD_STORE", url);
                }
                let out = command.output().expect("run shroud");
                assert!(out.status.success());
                black_box(out.stdout.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, set_and_reveal, list_100k);
criterion_main!(benches);
