//! Shows the vault as a library: open a store in a temporary home, set a
//! secret twice, reveal it, list its history, and verify the audit chain.
//!
//! Run with: `cargo run --example store_api`

use shroud::secret::SecretValue;
use shroud::store::{NewSecret, OpenMode, SecretName, Store, StoreConfig, VaultName};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = StoreConfig {
        home: dir.path().join("home"),
        master_key_env: None,
        actor: "example".to_owned(),
        location: shroud::store::StoreLocation::Home,
    };
    let mut store = Store::open(config, OpenMode::Create)?;
    let vault = VaultName::parse("production")?;
    let name = SecretName::parse("DATABASE_URL")?;

    for value in [
        "postgres://app:first@db/app",
        "postgres://app:second@db/app",
    ] {
        let secret = NewSecret::new(
            name.clone(),
            SecretValue::from_slice(value.as_bytes()),
            None,
            None,
        )?;
        let outcome = store.set_secret(&vault, secret)?;
        println!("set {name} version {}", outcome.version);
    }

    let revealed = store.reveal_secret(&vault, &name, None)?;
    // Debug output is redacted; only expose() gives the bytes.
    println!("revealed {revealed:?}");
    println!("value length: {} bytes", revealed.value.len());

    for version in store.history(&vault, &name)? {
        println!("version {} current={}", version.version, version.current);
    }
    let report = store.verify_audit()?;
    println!(
        "audit: {} records, intact: {}",
        report.records,
        report.first_broken.is_none()
    );
    Ok(())
}
