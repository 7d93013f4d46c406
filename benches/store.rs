//! Store latency: `set` and `reveal` of one secret in-process (each a durable
//! SQLite transaction with its audit record), and listing a vault of 100,000
//! secrets, in-process and as a whole `shroud secret list` process.
//! Run with `cargo bench --bench store`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use shroud::secret::SecretValue;
use shroud::store::{NewSecret, OpenMode, SecretName, Store, StoreConfig, VaultName};

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        StoreConfig {
            home: dir.join("home"),
            master_key_env: None,
            actor: "bench".to_owned(),
            location: shroud::store::StoreLocation::Home,
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
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    let vault = VaultName::default_vault();
    let name = SecretName::parse("BENCH_SECRET").unwrap();
    let value = b"postgres://user:correct-horse-battery-staple@db.internal:5432/app";
    store
        .set_secret(&vault, new_secret("BENCH_SECRET", value))
        .unwrap();

    let mut group = c.benchmark_group("store");
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
    group.finish();
}

fn list_100k(c: &mut Criterion) {
    const COUNT: usize = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
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

    let mut group = c.benchmark_group("store list 100k");
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
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_shroud"))
                .arg("--home")
                .arg(&home)
                .args(["secret", "list", "--vault", "big"])
                .env_remove("SHROUD_MASTER_KEY")
                .output()
                .expect("run shroud");
            assert!(out.status.success());
            black_box(out.stdout.len())
        })
    });
    group.finish();
}

criterion_group!(benches, set_and_reveal, list_100k);
criterion_main!(benches);
