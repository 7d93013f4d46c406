//! The library's `Store` API used in-process, as the HTTP API and the
//! supervisor use it, on both backends.

use shroud::secret::SecretValue;
use shroud::store::audit::{Action, Filter};
use shroud::store::{NewSecret, OpenMode, SecretName, Store, StoreError, VaultName};

use crate::support::TestHome;

fn open(home: &TestHome, actor: &str) -> Store {
    Store::open(home.store_config(actor), OpenMode::Create).expect("open store")
}

fn secret(name: &str, value: &str) -> NewSecret {
    NewSecret::new(
        SecretName::parse(name).unwrap(),
        SecretValue::from_slice(value.as_bytes()),
        None,
        None,
    )
    .unwrap()
}

fn references_resolve_only_for_their_owner_and_only_while_valid() {
    let home = TestHome::new();
    let vault = VaultName::parse("workspace").unwrap();
    let name = SecretName::parse("TOKEN").unwrap();
    let mut alice = open(&home, "alice");
    alice
        .set_secret(&vault, secret("TOKEN", "reference-value-1"))
        .unwrap();
    let reference = alice.create_reference(&vault, &name, 60).unwrap();
    assert!(reference.reference.starts_with("$secret:"));
    assert!(!format!("{reference:?}").contains(reference.reference.as_str()));

    let resolved = alice.resolve_reference(&reference.reference).unwrap();
    assert_eq!(resolved.name, "TOKEN");
    assert_eq!(resolved.secret.value.expose(), b"reference-value-1");

    // A new version is what the reference resolves to next.
    alice
        .set_secret(&vault, secret("TOKEN", "reference-value-2"))
        .unwrap();
    let resolved = alice.resolve_reference(&reference.reference).unwrap();
    assert_eq!(resolved.secret.value.expose(), b"reference-value-2");
    assert_eq!(resolved.secret.version, 2);

    let mut bob = open(&home, "bob");
    let foreign = bob.resolve_reference(&reference.reference);
    assert!(
        matches!(foreign, Err(StoreError::ReferenceNotFound)),
        "{foreign:?}"
    );
    for bogus in ["$secret:nope", "no-prefix", "$secret:"] {
        assert!(matches!(
            alice.resolve_reference(bogus),
            Err(StoreError::ReferenceNotFound)
        ));
    }

    let records = alice.audit_records(&Filter::default()).unwrap();
    let resolves: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r.action == Action::ReferenceResolve.as_str())
        .map(|r| (r.actor.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        resolves,
        vec![
            ("alice", "ok"),
            ("alice", "ok"),
            ("bob", "denied"),
            ("alice", "denied"),
            ("alice", "denied"),
            ("alice", "denied")
        ]
    );
}

fn references_expire() {
    let home = TestHome::new();
    let vault = VaultName::default_vault();
    let name = SecretName::parse("SHORT_LIVED").unwrap();
    let mut store = open(&home, "cli");
    store
        .set_secret(&vault, secret("SHORT_LIVED", "expiring-ref-value"))
        .unwrap();
    let reference = store.create_reference(&vault, &name, 1).unwrap();
    assert!(store.resolve_reference(&reference.reference).is_ok());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(matches!(
        store.resolve_reference(&reference.reference),
        Err(StoreError::ReferenceNotFound)
    ));
}

fn a_reference_to_a_deleted_secret_does_not_resolve() {
    let home = TestHome::new();
    let vault = VaultName::default_vault();
    let name = SecretName::parse("DOOMED").unwrap();
    let mut store = open(&home, "cli");
    store
        .set_secret(&vault, secret("DOOMED", "deleted-ref-value"))
        .unwrap();
    let reference = store.create_reference(&vault, &name, 60).unwrap();
    store.delete_secret(&vault, &name).unwrap();
    let result = store.resolve_reference(&reference.reference);
    assert!(
        matches!(result, Err(StoreError::SecretNotFound { .. })),
        "{result:?}"
    );
}

fn injection_reads_are_audited_under_their_own_action() {
    let home = TestHome::new();
    let vault = VaultName::default_vault();
    let name = SecretName::parse("INJECTED").unwrap();
    let mut store = open(&home, "runner");
    store
        .set_secret(&vault, secret("INJECTED", "injected-value-1"))
        .unwrap();
    let read = store
        .read_secret(Action::SecretInject, &vault, &name, None)
        .unwrap();
    assert_eq!(read.value.expose(), b"injected-value-1");
    assert!(!format!("{read:?}").contains("injected-value"));
    let last = store
        .audit_records(&Filter {
            limit: Some(1),
            ..Filter::default()
        })
        .unwrap();
    assert_eq!(last[0].action, "secret.inject");
    assert_eq!(last[0].actor, "runner");
    assert_eq!(last[0].version, Some(1));
}

crate::conformance!(
    references_resolve_only_for_their_owner_and_only_while_valid,
    references_expire,
    a_reference_to_a_deleted_secret_does_not_resolve,
    injection_reads_are_audited_under_their_own_action,
);
