//! Helpers shared by the benchmarks: a vault in a temporary home.

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
