//! The vault: shroud's encrypted store of secrets, vars, references and audit.
//!
//! [`Store`] is the one API every front door uses. It opens the home (see
//! [`home`]), checks the master key against the home's key-check record, and
//! runs each operation as one SQLite transaction that writes its audit record
//! alongside the change ([`audit`]); values are sealed and opened only in
//! [`crypto`], rows are read and written only in [`sqlite`], and names are
//! validated by [`names`] before they get here.
//!
//! Reads of values ([`Store::read_secret`]) write their audit record and
//! commit it *before* the value is returned: if the record cannot be written,
//! no value leaves the store (fail closed).
//!
//! The store is plain synchronous code; a server wraps it in a blocking task.
//!
//! ```
//! use shroud::secret::SecretValue;
//! use shroud::store::{NewSecret, OpenMode, SecretName, Store, StoreConfig, VaultName};
//!
//! let dir = tempfile::tempdir()?;
//! let config = StoreConfig {
//!     home: dir.path().join("home"),
//!     master_key_env: None,
//!     actor: "docs".to_owned(),
//! };
//! let mut store = Store::open(config, OpenMode::Create)?;
//! let vault = VaultName::parse("ci")?;
//! let name = SecretName::parse("API_KEY")?;
//! let secret = NewSecret::new(name.clone(), SecretValue::from_slice(b"sk-live-1234"), None, None)?;
//! assert_eq!(store.set_secret(&vault, secret)?.version, 1);
//! let revealed = store.reveal_secret(&vault, &name, None)?; // audited first
//! assert_eq!(revealed.value.expose(), b"sk-live-1234");
//! assert_eq!(store.list_secret_names(&vault)?, ["API_KEY"]);
//! assert!(store.verify_audit()?.first_broken.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod audit;
pub mod crypto;
pub mod home;
pub mod names;
pub mod sqlite;
pub mod tokens;

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::clock::{self, now_ms};
use crate::secret::SecretValue;
use audit::{Action, Entry, Outcome};
use crypto::{AuditKey, CryptoError, Key, RecordId};
use home::KeySource;
pub use names::{SecretName, ValidationError, VaultName};

/// The audit actor of the command line.
pub const CLI_ACTOR: &str = "cli";
/// The audit actor of the server's own work (authenticating a token).
pub const API_ACTOR: &str = "api";
/// Actor names shroud itself uses: no token may take one.
pub const RESERVED_ACTORS: &[&str] = &[CLI_ACTOR, API_ACTOR];

/// Prefix of an opaque secret reference.
pub const REFERENCE_PREFIX: &str = "$secret:";
/// Default lifetime of a secret reference, in seconds.
pub const DEFAULT_REFERENCE_TTL_SECS: u64 = 300;
/// Longest lifetime of a secret reference, in seconds (one day).
pub const MAX_REFERENCE_TTL_SECS: u64 = 24 * 3600;
const KEY_CHECK: &str = "key_check";

/// Everything that can go wrong in the store. Messages name things, never values.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("secret `{name}` not found in vault `{vault}`")]
    SecretNotFound { vault: String, name: String },
    #[error("version {version} of secret `{name}` in vault `{vault}` not found (the last 10 versions are kept)")]
    VersionNotFound {
        vault: String,
        name: String,
        version: u64,
    },
    #[error("var `{name}` not found in vault `{vault}`")]
    VarNotFound { vault: String, name: String },
    #[error("sandbox `{0}` not found (it was removed, or never created)")]
    SandboxNotFound(String),
    #[error("token `{0}` not found (or already revoked)")]
    TokenNotFound(String),
    #[error("a token named `{0}` already exists; pick another name")]
    TokenExists(String),
    #[error("secret reference not found, expired, or not yours")]
    ReferenceNotFound,
    #[error("invalid reference TTL {0}: must be from 1 to {MAX_REFERENCE_TTL_SECS} seconds")]
    ReferenceTtl(u64),
    #[error("the master key from {key_source} does not open the data in {home}: it was written under another key")]
    WrongMasterKey {
        key_source: KeySource,
        home: PathBuf,
    },
    #[error("no master key: {key_file} is missing but {home} holds data sealed under a key; set SHROUD_MASTER_KEY or restore the key file")]
    MissingMasterKey { key_file: PathBuf, home: PathBuf },
    #[error("the master key from {key_source} is unusable: {reason}")]
    BadMasterKey {
        key_source: KeySource,
        reason: &'static str,
    },
    #[error("cannot rotate the master key: there is no home at {0} yet")]
    NoHome(PathBuf),
    #[error("secret `{name}` version {version} in vault `{vault}` cannot be opened: {source}")]
    Decrypt {
        vault: String,
        name: String,
        version: u64,
        #[source]
        source: CryptoError,
    },
    #[error("cannot encrypt: {0}")]
    Encrypt(#[source] CryptoError),
    #[error("the store in {home} was written by a newer shroud (schema {found}; this build knows {known})")]
    SchemaTooNew {
        home: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("database error while {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// True for errors about the master key (the CLI maps them to exit 2).
    pub fn is_key_error(&self) -> bool {
        matches!(
            self,
            StoreError::WrongMasterKey { .. }
                | StoreError::MissingMasterKey { .. }
                | StoreError::BadMasterKey { .. }
        )
    }

    /// True for "no such thing" errors.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::SecretNotFound { .. }
                | StoreError::VersionNotFound { .. }
                | StoreError::VarNotFound { .. }
                | StoreError::SandboxNotFound(_)
                | StoreError::TokenNotFound(_)
                | StoreError::ReferenceNotFound
        )
    }
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Adds a description of the step to a database error.
trait DbContext<T> {
    fn db(self, context: &'static str) -> Result<T>;
}

impl<T> DbContext<T> for rusqlite::Result<T> {
    fn db(self, context: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Database { context, source })
    }
}

fn io_error<'a>(
    context: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        context,
        path: path.to_owned(),
        source,
    }
}

/// How to open a store.
#[derive(Debug)]
pub struct StoreConfig {
    /// The home directory.
    pub home: PathBuf,
    /// The text of `$SHROUD_MASTER_KEY`, when set.
    pub master_key_env: Option<Zeroizing<String>>,
    /// Who acts, as written to the audit log (`cli` or a token name).
    pub actor: String,
}

/// Whether opening may create the home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the home, database and key file when missing (writing commands).
    Create,
    /// Never create anything: a missing home reads as an empty store.
    Existing,
}

/// A secret to store, already validated.
#[derive(Debug)]
pub struct NewSecret {
    pub name: SecretName,
    pub value: SecretValue,
    pub description: Option<String>,
    pub ttl_secs: Option<u64>,
}

impl NewSecret {
    /// Validates the value and description for `name`.
    pub fn new(
        name: SecretName,
        value: SecretValue,
        description: Option<String>,
        ttl_secs: Option<u64>,
    ) -> Result<Self, ValidationError> {
        names::check_secret_value(&name, value.expose())?;
        if let Some(text) = &description {
            names::check_description(&name, text)?;
        }
        if let Some(ttl) = ttl_secs {
            if ttl == 0 || ttl > names::MAX_TTL_SECS {
                return Err(ValidationError::Ttl {
                    given: ttl.to_string(),
                });
            }
        }
        Ok(NewSecret {
            name,
            value,
            description,
            ttl_secs,
        })
    }
}

/// The result of setting a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    pub name: String,
    pub version: u64,
    /// True when this set created the secret (version 1).
    pub created: bool,
}

/// A secret's metadata, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub name: String,
    pub description: Option<String>,
    pub version: u64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

impl SecretMeta {
    fn from_row(name: String, row: sqlite::SecretRow) -> Self {
        SecretMeta {
            name,
            description: row.description,
            version: row.version,
            created_at_ms: row.created_at,
            updated_at_ms: row.updated_at,
            expires_at_ms: row.expires_at,
        }
    }
}

/// One kept version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: u64,
    pub created_at_ms: i64,
    pub current: bool,
}

/// A decrypted secret.
#[derive(Debug)]
pub struct Revealed {
    pub value: SecretValue,
    pub version: u64,
}

/// A newly created reference: the `$secret:` text is shown once, stored hashed.
pub struct SecretReference {
    pub reference: Zeroizing<String>,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for SecretReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretReference")
            .field("reference", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A resolved reference.
#[derive(Debug)]
pub struct ResolvedReference {
    pub vault: String,
    pub name: String,
    pub secret: Revealed,
}

/// A var and its value (vars are not secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub value: String,
    pub updated_at_ms: i64,
}

pub use sqlite::SandboxRow;
pub use sqlite::VaultRow as VaultInfo;

/// What a master key rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// Data keys re-wrapped.
    pub rewrapped: u64,
    /// The old key file, kept until the user deletes it (file-sourced keys).
    pub old_key_file: Option<PathBuf>,
    /// With `$SHROUD_MASTER_KEY`: the file holding the new key, and its text.
    pub new_key_file: Option<PathBuf>,
    pub new_key_text: Option<Zeroizing<String>>,
    /// The first audit record that was already changed or removed before
    /// the chain was re-keyed (recorded in the rotation's own record).
    pub audit_broken: Option<audit::Broken>,
}

/// An open vault store.
pub struct Store {
    conn: Connection,
    keys: KeyRing,
}

/// Who is acting with which key: what every transaction reads beside the connection.
struct KeyRing {
    master: Key,
    /// The audit chain's MAC key, derived from `master`.
    audit: AuditKey,
    key_source: KeySource,
    home: PathBuf,
    actor: String,
}

impl KeyRing {
    fn new(master: Key, key_source: KeySource, home: PathBuf, actor: String) -> Self {
        KeyRing {
            audit: AuditKey::derive(&master),
            master,
            key_source,
            home,
            actor,
        }
    }

    /// Uses `key` from now on (and the audit key derived from it).
    fn adopt(&mut self, key: Key) {
        self.audit = AuditKey::derive(&key);
        self.master = key;
    }

    fn wrong_key(&self) -> StoreError {
        StoreError::WrongMasterKey {
            key_source: self.key_source.clone(),
            home: self.home.clone(),
        }
    }

    /// The key check no longer opens with our key, although it did when the
    /// store was opened: another process rotated the master key since. Finds
    /// the new key where a rotation leaves it (`master.key.next` until it
    /// replaces `master.key`, then `master.key`; the `master.key.new-*` file
    /// of a rotation under `$SHROUD_MASTER_KEY`) and adopts it, so a server
    /// or a long-running writer goes on across any number of rotations.
    fn follow_rotation(&mut self, key_check: &[u8]) -> Result<()> {
        if self.key_source == KeySource::Ephemeral {
            return Err(self.wrong_key());
        }
        for candidate in rotation_candidates(&self.home) {
            if let Ok(Ok(key)) = home::read_key_file(&candidate) {
                if crypto::key_check_opens(&key, key_check) {
                    tracing::info!(file = %candidate.display(), "following a master key rotation");
                    self.adopt(key);
                    return Ok(());
                }
            }
        }
        Err(self.wrong_key())
    }

    /// At open, the key file does not open the key check. Either a rotation
    /// is between its commit and replacing the key file (wait for it: it
    /// holds the rotation lock), or one was cut off there, leaving
    /// `master.key.next`, which opens the data: finish it.
    fn finish_rotation(&mut self, key_check: &[u8]) -> Result<()> {
        let KeySource::File(key_file) = &self.key_source else {
            return Err(self.wrong_key());
        };
        let key_file = key_file.clone();
        let _lock = home::lock_rotation(&self.home).map_err(io_error(
            "cannot lock the master key for rotation",
            &self.home,
        ))?;
        let opens = |path: &Path| match home::read_key_file(path) {
            Ok(Ok(key)) if crypto::key_check_opens(&key, key_check) => Some(key),
            _ => None,
        };
        if let Some(key) = opens(&key_file) {
            self.adopt(key);
            return Ok(());
        }
        let next_path = self.home.join(home::NEXT_KEY_FILE);
        let Some(next) = opens(&next_path) else {
            return Err(self.wrong_key());
        };
        let old = keep_old_key_file(&self.home, &key_file)?;
        fs::rename(&next_path, &key_file)
            .map_err(io_error("cannot install new key file", &key_file))?;
        home::sync_dir(&self.home).map_err(io_error("cannot sync", &self.home))?;
        tracing::warn!(old = %old.display(), "finished an interrupted master key rotation");
        self.adopt(next);
        Ok(())
    }
}

/// Where a rotation leaves the new key, in the order to look: the key file
/// (looked at twice, around `master.key.next`, which a rotation renames
/// over it), then the files of rotations under `$SHROUD_MASTER_KEY`, newest
/// first.
fn rotation_candidates(home_dir: &Path) -> Vec<PathBuf> {
    let key_file = home_dir.join(home::KEY_FILE);
    let mut candidates = vec![
        key_file.clone(),
        home_dir.join(home::NEXT_KEY_FILE),
        key_file,
    ];
    let mut pending: Vec<PathBuf> = fs::read_dir(home_dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("master.key.new-"))
                })
                .collect()
        })
        .unwrap_or_default();
    pending.sort();
    candidates.extend(pending.into_iter().rev());
    candidates
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.keys.key_source != KeySource::Ephemeral {
            sqlite::close(&self.conn, &self.keys.home.join(home::DB_FILE));
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("home", &self.keys.home)
            .field("key_source", &self.keys.key_source)
            .field("actor", &self.keys.actor)
            .finish_non_exhaustive()
    }
}

fn hash_reference_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Store {
    /// Opens the store in `config.home` (see [`OpenMode`]).
    pub fn open(config: StoreConfig, mode: OpenMode) -> Result<Store> {
        // A malformed key is refused before anything is created.
        if let Some(text) = &config.master_key_env {
            env_key(text)?;
        }
        let db_path = config.home.join(home::DB_FILE);
        let db_exists = db_path.exists();
        if !db_exists && mode == OpenMode::Existing {
            return Self::open_ephemeral(config);
        }
        if !db_exists {
            home::create_private_dir(&config.home)
                .map_err(io_error("cannot create home directory", &config.home))?;
            // SQLite gives the -wal and -shm files the database file's mode.
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&db_path)
                .map_err(io_error("cannot create database", &db_path))?;
        }
        let mut conn = sqlite::open_file(&db_path).db("opening the database")?;
        ensure_schema(&mut conn, &config.home)?;
        let key_check = sqlite::meta_get(&conn, KEY_CHECK).db("reading the key check")?;
        let (master, key_source) = load_master_key(&config, key_check.is_some(), mode)?;
        let mut store = Store {
            conn,
            keys: KeyRing::new(master, key_source, config.home, config.actor),
        };
        store.check_or_record_key(key_check)?;
        store.ensure_keyed_audit_chain()?;
        Ok(store)
    }

    /// A private in-memory store standing in for a home that does not exist.
    fn open_ephemeral(config: StoreConfig) -> Result<Store> {
        let mut conn = sqlite::open_memory().db("opening an in-memory database")?;
        ensure_schema(&mut conn, &config.home)?;
        let (master, key_source) = match &config.master_key_env {
            Some(text) => (env_key(text)?, KeySource::Env),
            None => (
                Key::generate().map_err(StoreError::Encrypt)?,
                KeySource::Ephemeral,
            ),
        };
        Ok(Store {
            conn,
            keys: KeyRing::new(master, key_source, config.home, config.actor),
        })
    }

    fn check_or_record_key(&mut self, key_check: Option<Vec<u8>>) -> Result<()> {
        let keys = &mut self.keys;
        match key_check {
            Some(blob) if crypto::key_check_opens(&keys.master, &blob) => Ok(()),
            Some(blob) => keys.finish_rotation(&blob),
            None if keys.key_source == KeySource::Ephemeral => Ok(()),
            None => {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .db("starting a transaction")?;
                match sqlite::meta_get(&tx, KEY_CHECK).db("reading the key check")? {
                    Some(blob) if crypto::key_check_opens(&keys.master, &blob) => {}
                    Some(_) => return Err(keys.wrong_key()),
                    None => {
                        let blob =
                            crypto::seal_key_check(&keys.master).map_err(StoreError::Encrypt)?;
                        sqlite::meta_put(&tx, KEY_CHECK, &blob).db("writing the key check")?;
                        if !audit::is_unkeyed(&tx).db("reading the audit log")? {
                            audit::mark_keyed(&tx).db("marking the audit chain")?;
                        }
                    }
                }
                tx.commit().db("committing the key check")
            }
        }
    }

    /// A store written by an older shroud has an unkeyed audit chain: it
    /// is converted to the keyed one once, here, in one transaction; a
    /// break the old hashes showed is kept as the outcome of the
    /// conversion's own record (with the first broken record's number), so
    /// it is not laundered. Only a store whose key check says it is older
    /// (version 1, sealed: nobody without the key can fake it) is
    /// converted; one whose chain marker merely went missing is marked
    /// again and left as it is, so that `audit verify` shows whatever was
    /// done to it.
    fn ensure_keyed_audit_chain(&mut self) -> Result<()> {
        if self.keys.key_source == KeySource::Ephemeral
            || audit::is_marked_keyed(&self.conn).db("reading the audit log")?
        {
            return Ok(());
        }
        let (tx, keys) = self.begin_write()?;
        let check = sqlite::meta_get(&tx, KEY_CHECK).db("reading the key check")?;
        let older_store = check
            .as_deref()
            .and_then(|blob| crypto::key_check_version(&keys.master, blob))
            == Some(1);
        if older_store && audit::is_unkeyed(&tx).db("reading the audit log")? {
            let broken = audit::upgrade_unkeyed(&tx, &keys.audit).db("converting the audit log")?;
            let outcome = if broken.is_some() {
                Outcome::Error
            } else {
                Outcome::Ok
            };
            let entry = Entry::global(keys.actor.as_str(), Action::AuditUpgrade, outcome)
                .with(broken.as_ref().map(|b| b.seq), outcome);
            audit::append(&tx, &keys.audit, &entry, now_ms()).db("writing the audit record")?;
            if let Some(broken) = broken {
                tracing::warn!(seq = broken.seq, reason = %broken.reason, "the audit log was already broken before it was keyed");
            }
        } else {
            if !older_store && audit::is_unkeyed(&tx).db("reading the audit log")? {
                tracing::warn!("the audit chain's format marker is missing from a store whose chain is keyed: not converting it (run `shroud audit verify`)");
            }
            audit::mark_keyed(&tx).db("marking the audit chain")?;
        }
        if older_store {
            let sealed = crypto::seal_key_check(&keys.master).map_err(StoreError::Encrypt)?;
            sqlite::meta_put(&tx, KEY_CHECK, &sealed).db("writing the key check")?;
        }
        tx.commit().db("committing the audit chain's conversion")
    }

    /// Starts a write transaction and re-checks the master key inside it, so a
    /// rotation committed by another process since we opened is never mixed
    /// with data sealed under the old key.
    fn begin_write(&mut self) -> Result<(Transaction<'_>, &KeyRing)> {
        let Store { conn, keys } = self;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db("starting a write transaction")?;
        if keys.key_source != KeySource::Ephemeral {
            if let Some(blob) = sqlite::meta_get(&tx, KEY_CHECK).db("reading the key check")? {
                if !crypto::key_check_opens(&keys.master, &blob) {
                    keys.follow_rotation(&blob)?;
                }
            }
        }
        Ok((tx, keys))
    }

    /// The home directory of this store.
    pub fn home(&self) -> &Path {
        &self.keys.home
    }

    /// Where the master key came from.
    pub fn key_source(&self) -> &KeySource {
        &self.keys.key_source
    }

    /// Acts as `actor` from now on (a server reuses one store per request).
    pub fn set_actor(&mut self, actor: &str) {
        actor.clone_into(&mut self.keys.actor);
    }

    /// The actor written to audit records.
    pub fn actor(&self) -> &str {
        &self.keys.actor
    }

    /// Sets one secret: a new version, sealed under a fresh data key.
    pub fn set_secret(&mut self, vault: &VaultName, secret: NewSecret) -> Result<SetOutcome> {
        let mut outcomes = self.set_secrets(vault, vec![secret])?;
        Ok(outcomes.pop().expect("one outcome per secret"))
    }

    /// Sets several secrets in one transaction (validation was done per item
    /// by [`NewSecret::new`], so each either is stored or the whole write
    /// failed on a database error).
    pub fn set_secrets(
        &mut self,
        vault: &VaultName,
        secrets: Vec<NewSecret>,
    ) -> Result<Vec<SetOutcome>> {
        let actor = self.keys.actor.clone();
        let mut results = self.set_secrets_batch(vec![(actor, vault.clone(), secrets)])?;
        Ok(results.pop().expect("one result per request"))
    }

    /// Group commit: sets the secrets of several requests, each with its own
    /// actor, in one transaction (one durable commit for all of them).
    pub fn set_secrets_batch(
        &mut self,
        batch: Vec<(String, VaultName, Vec<NewSecret>)>,
    ) -> Result<Vec<Vec<SetOutcome>>> {
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        let mut results = Vec::with_capacity(batch.len());
        for (actor, vault, secrets) in batch {
            sqlite::ensure_vault(&tx, vault.as_str(), now).db("recording the vault")?;
            let mut outcomes = Vec::with_capacity(secrets.len());
            for secret in secrets {
                outcomes.push(set_in_tx(&tx, keys, &actor, &vault, &secret, now)?);
            }
            results.push((vault, outcomes));
        }
        tx.commit().db("committing secrets")?;
        for (vault, outcomes) in &results {
            for outcome in outcomes {
                tracing::debug!(vault = %vault, name = %outcome.name, version = outcome.version, "secret set");
            }
        }
        Ok(results.into_iter().map(|(_, outcomes)| outcomes).collect())
    }

    /// Metadata of a live secret, or `None`.
    pub fn secret_meta(&self, vault: &VaultName, name: &SecretName) -> Result<Option<SecretMeta>> {
        let row =
            sqlite::secret_row(&self.conn, vault.as_str(), name.as_str()).db("reading a secret")?;
        Ok(row
            .filter(|r| r.is_live(now_ms()))
            .map(|r| SecretMeta::from_row(name.as_str().to_owned(), r)))
    }

    /// Metadata of every live secret of a vault, sorted by name.
    pub fn list_secrets(&self, vault: &VaultName) -> Result<Vec<SecretMeta>> {
        Ok(
            sqlite::list_secret_rows(&self.conn, vault.as_str(), now_ms())
                .db("listing secrets")?
                .into_iter()
                .map(|(name, row)| SecretMeta::from_row(name, row))
                .collect(),
        )
    }

    /// Names of every live secret of a vault, sorted.
    pub fn list_secret_names(&self, vault: &VaultName) -> Result<Vec<String>> {
        sqlite::list_secret_names(&self.conn, vault.as_str(), now_ms()).db("listing secrets")
    }

    /// Deletes a secret and all its versions.
    pub fn delete_secret(&mut self, vault: &VaultName, name: &SecretName) -> Result<()> {
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        let actor = keys.actor.as_str();
        let row = live_secret_row(&tx, vault.as_str(), name.as_str(), now)?;
        let mut entry = Entry::about(actor, Action::SecretDelete, vault.as_str(), name.as_str());
        let result = match row {
            Some(row) => {
                sqlite::delete_secret(&tx, vault.as_str(), name.as_str())
                    .db("deleting a secret")?;
                entry = entry.with(Some(row.version), Outcome::Ok);
                Ok(())
            }
            None => Err(not_found(vault, name)),
        };
        audit::append(&tx, &keys.audit, &entry, now).db("writing the audit record")?;
        tx.commit().db("committing the delete")?;
        result
    }

    /// Decrypts a live secret for `purpose` (reveal, inject, render, ...).
    /// The audit record is committed before the value is returned.
    pub fn read_secret(
        &mut self,
        purpose: Action,
        vault: &VaultName,
        name: &SecretName,
        version: Option<u64>,
    ) -> Result<Revealed> {
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        let actor = keys.actor.as_str();
        let result = read_in_tx(
            &tx,
            keys,
            actor,
            purpose,
            vault.as_str(),
            name.as_str(),
            version,
            now,
        );
        tx.commit().db("committing the audit record")?;
        result
    }

    /// Decrypts several live secrets for `purpose` in one transaction, with
    /// one audit record each. All or nothing: if any is missing or fails to
    /// open, the error names the first such secret and no value is returned.
    pub fn read_secrets(
        &mut self,
        purpose: Action,
        vault: &VaultName,
        names: &[SecretName],
    ) -> Result<Vec<Revealed>> {
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        let mut values = Vec::with_capacity(names.len());
        let mut first_error = None;
        for name in names {
            let read = read_in_tx(
                &tx,
                keys,
                keys.actor.as_str(),
                purpose,
                vault.as_str(),
                name.as_str(),
                None,
                now,
            );
            match read {
                Ok(value) => values.push(value),
                Err(e @ StoreError::Database { .. }) => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        tx.commit().db("committing the audit records")?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(values),
        }
    }

    /// `secret reveal`: the value of the current (or a kept) version.
    pub fn reveal_secret(
        &mut self,
        vault: &VaultName,
        name: &SecretName,
        version: Option<u64>,
    ) -> Result<Revealed> {
        self.read_secret(Action::SecretReveal, vault, name, version)
    }

    /// The kept versions of a live secret, oldest first. Never values.
    pub fn history(&self, vault: &VaultName, name: &SecretName) -> Result<Vec<VersionInfo>> {
        let meta = self
            .secret_meta(vault, name)?
            .ok_or_else(|| not_found(vault, name))?;
        Ok(
            sqlite::version_list(&self.conn, vault.as_str(), name.as_str())
                .db("listing versions")?
                .into_iter()
                .map(|(version, created_at_ms)| VersionInfo {
                    version,
                    created_at_ms,
                    current: version == meta.version,
                })
                .collect(),
        )
    }

    /// Creates an opaque `$secret:` reference to a live secret, resolvable by
    /// this store's actor for `ttl_secs`. Only the token's hash is stored.
    pub fn create_reference(
        &mut self,
        vault: &VaultName,
        name: &SecretName,
        ttl_secs: u64,
    ) -> Result<SecretReference> {
        if ttl_secs == 0 || ttl_secs > MAX_REFERENCE_TTL_SECS {
            return Err(StoreError::ReferenceTtl(ttl_secs));
        }
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        let actor = keys.actor.as_str();
        let row = live_secret_row(&tx, vault.as_str(), name.as_str(), now)?;
        let mut entry = Entry::about(
            actor,
            Action::SecretReference,
            vault.as_str(),
            name.as_str(),
        );
        let Some(row) = row else {
            audit::append(&tx, &keys.audit, &entry, now).db("writing the audit record")?;
            tx.commit().db("committing the audit record")?;
            return Err(not_found(vault, name));
        };
        let mut raw = Zeroizing::new([0u8; 32]);
        crypto::fill_random(raw.as_mut()).map_err(StoreError::Encrypt)?;
        let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_ref()));
        let expires_at = now + (ttl_secs as i64) * 1000;
        let ref_row = sqlite::RefRow {
            owner: actor.to_owned(),
            vault: vault.as_str().to_owned(),
            name: name.as_str().to_owned(),
            expires_at,
        };
        sqlite::insert_ref(&tx, &hash_reference_token(&token), &ref_row, now)
            .db("storing the reference")?;
        entry = entry.with(Some(row.version), Outcome::Ok);
        audit::append(&tx, &keys.audit, &entry, now).db("writing the audit record")?;
        tx.commit().db("committing the reference")?;
        Ok(SecretReference {
            reference: Zeroizing::new(format!("{REFERENCE_PREFIX}{}", token.as_str())),
            expires_at_ms: expires_at,
        })
    }

    /// Resolves a `$secret:` reference made by this store's actor to the
    /// secret's current value. Unknown, expired and foreign references are
    /// all the same error, so a caller learns nothing about other actors'.
    pub fn resolve_reference(&mut self, reference: &str) -> Result<ResolvedReference> {
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        let actor = keys.actor.as_str();
        // Malformed references are audited like unknown ones.
        let row = match reference.strip_prefix(REFERENCE_PREFIX) {
            Some(token) => {
                sqlite::ref_row(&tx, &hash_reference_token(token)).db("reading a reference")?
            }
            None => None,
        };
        let usable = row.filter(|r| r.expires_at > now && r.owner == actor);
        let Some(row) = usable else {
            let entry = Entry::global(actor, Action::ReferenceResolve, Outcome::Denied);
            audit::append(&tx, &keys.audit, &entry, now).db("writing the audit record")?;
            tx.commit().db("committing the audit record")?;
            return Err(StoreError::ReferenceNotFound);
        };
        let result = read_in_tx(
            &tx,
            keys,
            actor,
            Action::ReferenceResolve,
            &row.vault,
            &row.name,
            None,
            now,
        );
        tx.commit().db("committing the audit record")?;
        Ok(ResolvedReference {
            vault: row.vault,
            name: row.name,
            secret: result?,
        })
    }

    /// Sets a var (not secret, never masked).
    pub fn set_var(&mut self, vault: &VaultName, name: &SecretName, value: &str) -> Result<()> {
        names::check_var_value(name, value)?;
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        let actor = keys.actor.as_str();
        sqlite::ensure_vault(&tx, vault.as_str(), now).db("recording the vault")?;
        sqlite::put_var(&tx, vault.as_str(), name.as_str(), value, now).db("writing a var")?;
        let entry = Entry::about(actor, Action::VarSet, vault.as_str(), name.as_str())
            .with(None, Outcome::Ok);
        audit::append(&tx, &keys.audit, &entry, now).db("writing the audit record")?;
        tx.commit().db("committing a var")
    }

    pub fn get_var(&self, vault: &VaultName, name: &SecretName) -> Result<Var> {
        sqlite::get_var(&self.conn, vault.as_str(), name.as_str())
            .db("reading a var")?
            .map(|(value, updated_at_ms)| Var {
                name: name.as_str().to_owned(),
                value,
                updated_at_ms,
            })
            .ok_or_else(|| StoreError::VarNotFound {
                vault: vault.as_str().to_owned(),
                name: name.as_str().to_owned(),
            })
    }

    pub fn list_vars(&self, vault: &VaultName) -> Result<Vec<Var>> {
        Ok(sqlite::list_vars(&self.conn, vault.as_str())
            .db("listing vars")?
            .into_iter()
            .map(|(name, value, updated_at_ms)| Var {
                name,
                value,
                updated_at_ms,
            })
            .collect())
    }

    pub fn delete_var(&mut self, vault: &VaultName, name: &SecretName) -> Result<()> {
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        let actor = keys.actor.as_str();
        let existed =
            sqlite::delete_var(&tx, vault.as_str(), name.as_str()).db("deleting a var")?;
        if !existed {
            return Err(StoreError::VarNotFound {
                vault: vault.as_str().to_owned(),
                name: name.as_str().to_owned(),
            });
        }
        let entry = Entry::about(actor, Action::VarDelete, vault.as_str(), name.as_str())
            .with(None, Outcome::Ok);
        audit::append(&tx, &keys.audit, &entry, now).db("writing the audit record")?;
        tx.commit().db("committing a var delete")
    }

    /// Creates an API token; returns the token text, shown this once.
    pub fn create_token(
        &mut self,
        name: &str,
        grants: &[tokens::Grant],
        user: Option<&str>,
    ) -> Result<Zeroizing<String>> {
        names::check_name("token", name)?;
        if RESERVED_ACTORS.contains(&name) {
            return Err(StoreError::Invalid(ValidationError::Name {
                kind: "token",
                name: name.to_owned(),
                rule: "is reserved: shroud itself acts under that name in the audit log",
            }));
        }
        if let Some(user) = user {
            names::check_name("user", user)?;
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        crypto::fill_random(raw.as_mut()).map_err(StoreError::Encrypt)?;
        let token = Zeroizing::new(format!(
            "{}{}",
            tokens::TOKEN_PREFIX,
            URL_SAFE_NO_PAD.encode(raw.as_ref())
        ));
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        if sqlite::token_by_name(&tx, name)
            .db("reading a token")?
            .is_some()
        {
            return Err(StoreError::TokenExists(name.to_owned()));
        }
        let row = sqlite::TokenRow {
            name: name.to_owned(),
            token_hash: hash_reference_token(&token).to_vec(),
            grants: tokens::encode_grants(grants),
            user: user.map(str::to_owned),
            created_at: now,
            revoked_at: None,
        };
        sqlite::insert_token(&tx, &row).db("storing a token")?;
        let entry = Entry {
            secret: Some(name),
            ..Entry::global(keys.actor.as_str(), Action::TokenCreate, Outcome::Ok)
        };
        audit::append(&tx, &keys.audit, &entry, now).db("writing the audit record")?;
        tx.commit().db("committing a token")?;
        Ok(token)
    }

    /// Every token, revoked ones included (never the tokens themselves).
    pub fn list_tokens(&self) -> Result<Vec<tokens::TokenInfo>> {
        Ok(sqlite::list_tokens(&self.conn)
            .db("listing tokens")?
            .into_iter()
            .map(token_info)
            .collect())
    }

    /// Revokes a token: it no longer authenticates.
    pub fn revoke_token(&mut self, name: &str) -> Result<()> {
        let now = now_ms();
        let (tx, keys) = self.begin_write()?;
        if !sqlite::revoke_token(&tx, name, now).db("revoking a token")? {
            return Err(StoreError::TokenNotFound(name.to_owned()));
        }
        let entry = Entry {
            secret: Some(name),
            ..Entry::global(keys.actor.as_str(), Action::TokenRevoke, Outcome::Ok)
        };
        audit::append(&tx, &keys.audit, &entry, now).db("writing the audit record")?;
        tx.commit().db("committing a token revocation")
    }

    /// The live token `presented` is, if any. The stored hash is compared
    /// again in constant time after the lookup by hash.
    pub fn authenticate(&self, presented: &str) -> Result<Option<tokens::TokenInfo>> {
        let hash = hash_reference_token(presented);
        let row = sqlite::token_by_hash(&self.conn, &hash).db("reading a token")?;
        Ok(row
            .filter(|r| r.revoked_at.is_none())
            .filter(|r| constant_time_eq(&r.token_hash, &hash))
            .map(token_info))
    }

    /// Records a new sandbox (audited `sandbox.create`).
    pub fn create_sandbox(&mut self, row: &SandboxRow) -> Result<()> {
        let (tx, keys) = self.begin_write()?;
        sqlite::insert_sandbox(&tx, row).db("storing a sandbox")?;
        sandbox_audit(&tx, keys, Action::SandboxCreate, row)?;
        tx.commit().db("committing a sandbox")
    }

    /// A sandbox by id.
    pub fn sandbox(&self, id: &str) -> Result<SandboxRow> {
        sqlite::sandbox(&self.conn, id)
            .db("reading a sandbox")?
            .ok_or_else(|| StoreError::SandboxNotFound(id.to_owned()))
    }

    /// Every sandbox, oldest first.
    pub fn list_sandboxes(&self) -> Result<Vec<SandboxRow>> {
        sqlite::list_sandboxes(&self.conn).db("listing sandboxes")
    }

    /// Forgets a sandbox (its files are the caller's to remove); audited
    /// `sandbox.delete`.
    pub fn delete_sandbox(&mut self, id: &str) -> Result<()> {
        let (tx, keys) = self.begin_write()?;
        let row = sqlite::sandbox(&tx, id)
            .db("reading a sandbox")?
            .ok_or_else(|| StoreError::SandboxNotFound(id.to_owned()))?;
        sqlite::delete_sandbox(&tx, id).db("deleting a sandbox")?;
        sandbox_audit(&tx, keys, Action::SandboxDelete, &row)?;
        tx.commit().db("committing a sandbox delete")
    }

    /// Notes how the sandbox's last command ended; audited `sandbox.exec`
    /// (the secrets it was given have their own `secret.inject` records).
    pub fn record_sandbox_exit(&mut self, id: &str, code: i64) -> Result<()> {
        let (tx, keys) = self.begin_write()?;
        let row = sqlite::sandbox(&tx, id)
            .db("reading a sandbox")?
            .ok_or_else(|| StoreError::SandboxNotFound(id.to_owned()))?;
        sqlite::record_sandbox_exit(&tx, id, code, now_ms()).db("recording a sandbox exit")?;
        sandbox_audit(&tx, keys, Action::SandboxExec, &row)?;
        tx.commit().db("committing a sandbox exit")
    }

    /// Every vault that has been written to, with counts.
    pub fn list_vaults(&self) -> Result<Vec<VaultInfo>> {
        sqlite::list_vaults(&self.conn, now_ms()).db("listing vaults")
    }

    /// Audit records matching `filter`, oldest first.
    pub fn audit_records(&self, filter: &audit::Filter) -> Result<Vec<audit::Record>> {
        audit::list(&self.conn, filter).db("reading the audit log")
    }

    /// Walks the audit hash chain.
    pub fn verify_audit(&self) -> Result<audit::Verification> {
        audit::verify(&self.conn, &self.keys.audit).db("reading the audit log")
    }

    /// Replaces the master key: every data key is re-wrapped in one
    /// transaction. The new key is on disk (synced) before the transaction
    /// commits; the old key file is kept as `master.key.old-<timestamp>`.
    pub fn rotate_master_key(&mut self) -> Result<Rotation> {
        if self.keys.key_source == KeySource::Ephemeral {
            return Err(StoreError::NoHome(self.keys.home.clone()));
        }
        // One rotation at a time, and openers wait for it to finish
        // installing the new key file (see `KeyRing::finish_rotation`).
        let _lock = home::lock_rotation(&self.keys.home).map_err(io_error(
            "cannot lock the master key for rotation",
            &self.keys.home,
        ))?;
        let new_key = Key::generate().map_err(StoreError::Encrypt)?;
        let now = now_ms();
        let pending_path = match &self.keys.key_source {
            KeySource::Env => unused_path(
                &self.keys.home,
                &format!("master.key.new-{}", clock::file_stamp(now)),
            ),
            _ => self.keys.home.join(home::NEXT_KEY_FILE),
        };
        // A leftover `master.key.next` is from a rotation that never committed
        // (a committed one is finished when the store is opened).
        let _ = fs::remove_file(self.keys.home.join(home::NEXT_KEY_FILE));
        home::write_new_key_file(&pending_path, &new_key)
            .map_err(io_error("cannot write the new key file", &pending_path))?;
        let committed = self.rewrap_all(&new_key, now);
        let (rewrapped, audit_broken) = match committed {
            Ok(done) => done,
            Err(e) => {
                let _ = fs::remove_file(&pending_path);
                return Err(e);
            }
        };
        let mut rotation = Rotation {
            rewrapped,
            old_key_file: None,
            new_key_file: None,
            new_key_text: None,
            audit_broken,
        };
        match &self.keys.key_source {
            KeySource::File(key_file) => {
                let key_file = key_file.clone();
                rotation.old_key_file = Some(keep_old_key_file(&self.keys.home, &key_file)?);
                fs::rename(&pending_path, &key_file)
                    .map_err(io_error("cannot install the new key file", &key_file))?;
                home::sync_dir(&self.keys.home)
                    .map_err(io_error("cannot sync", &self.keys.home))?;
            }
            _ => {
                rotation.new_key_text = Some(home::encode_key(&new_key));
                rotation.new_key_file = Some(pending_path);
            }
        }
        self.keys.adopt(new_key);
        Ok(rotation)
    }

    /// Re-wraps every data key and re-keys the audit chain, in one
    /// transaction. Returns the count, and the first break the chain showed
    /// under the old key (the rotation goes on: a key one fears is
    /// compromised must be replaceable; the break is kept in the rotation's
    /// own record, outcome `error`, with the broken record's number).
    fn rewrap_all(&mut self, new_key: &Key, now: i64) -> Result<(u64, Option<audit::Broken>)> {
        let (tx, keys) = self.begin_write()?;
        let actor = keys.actor.as_str();
        let rows = sqlite::all_wrapped_keys(&tx).db("reading data keys")?;
        for row in &rows {
            let id = RecordId {
                vault: &row.vault,
                name: &row.name,
                version: row.version,
            };
            let rewrapped = crypto::rewrap_data_key(&keys.master, new_key, id, &row.wrapped_key)
                .map_err(|source| StoreError::Decrypt {
                    vault: row.vault.clone(),
                    name: row.name.clone(),
                    version: row.version,
                    source,
                })?;
            sqlite::update_wrapped_key(&tx, &row.vault, &row.name, row.version, &rewrapped)
                .db("re-wrapping a data key")?;
        }
        let check = crypto::seal_key_check(new_key).map_err(StoreError::Encrypt)?;
        sqlite::meta_put(&tx, KEY_CHECK, &check).db("writing the key check")?;
        let new_audit = AuditKey::derive(new_key);
        let broken = audit::rekey(&tx, &keys.audit, &new_audit).db("re-keying the audit log")?;
        let outcome = if broken.is_some() {
            Outcome::Error
        } else {
            Outcome::Ok
        };
        let version = broken.as_ref().map_or(rows.len() as u64, |b| b.seq);
        let entry = Entry::global(actor, Action::KeyRotate, outcome).with(Some(version), outcome);
        audit::append(&tx, &new_audit, &entry, now).db("writing the audit record")?;
        tx.commit().db("committing the key rotation")?;
        Ok((rows.len() as u64, broken))
    }
}

fn token_info(row: sqlite::TokenRow) -> tokens::TokenInfo {
    tokens::TokenInfo {
        grants: tokens::decode_grants(&row.grants),
        name: row.name,
        user: row.user,
        created_at_ms: row.created_at,
        revoked_at_ms: row.revoked_at,
    }
}

/// Byte equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The row of a secret that exists and has not expired.
fn live_secret_row(
    conn: &Connection,
    vault: &str,
    name: &str,
    now: i64,
) -> Result<Option<sqlite::SecretRow>> {
    Ok(sqlite::secret_row(conn, vault, name)
        .db("reading a secret")?
        .filter(|r| r.is_live(now)))
}

fn not_found(vault: &VaultName, name: &SecretName) -> StoreError {
    StoreError::SecretNotFound {
        vault: vault.as_str().to_owned(),
        name: name.as_str().to_owned(),
    }
}

fn ensure_schema(conn: &mut Connection, home: &Path) -> Result<()> {
    let found = sqlite::schema_version(conn).db("reading the schema version")?;
    if found > sqlite::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            home: home.to_owned(),
            found,
            known: sqlite::SCHEMA_VERSION,
        });
    }
    if found == sqlite::SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .db("starting the schema transaction")?;
    sqlite::create_schema(&tx).db("creating the schema")?;
    tx.commit().db("committing the schema")
}

fn env_key(text: &str) -> Result<Key> {
    home::decode_key(text).map_err(|reason| StoreError::BadMasterKey {
        key_source: KeySource::Env,
        reason,
    })
}

fn load_master_key(
    config: &StoreConfig,
    home_has_data: bool,
    mode: OpenMode,
) -> Result<(Key, KeySource)> {
    if let Some(text) = &config.master_key_env {
        return Ok((env_key(text)?, KeySource::Env));
    }
    let key_file = config.home.join(home::KEY_FILE);
    let source = KeySource::File(key_file.clone());
    let decoded = if key_file.exists() {
        home::read_key_file(&key_file).map_err(io_error("cannot read master key", &key_file))?
    } else if home_has_data {
        return Err(StoreError::MissingMasterKey {
            key_file,
            home: config.home.clone(),
        });
    } else if mode == OpenMode::Create {
        home::create_or_read_key_file(&config.home)
            .map_err(io_error("cannot create master key", &key_file))?
    } else {
        let key = Key::generate().map_err(StoreError::Encrypt)?;
        return Ok((key, KeySource::Ephemeral));
    };
    let key = decoded.map_err(|reason| StoreError::BadMasterKey {
        key_source: source.clone(),
        reason,
    })?;
    Ok((key, source))
}

/// `dir/base`, or `dir/base-2`, `-3`, ... if that exists.
fn unused_path(dir: &Path, base: &str) -> PathBuf {
    let first = dir.join(base);
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| dir.join(format!("{base}-{n}")))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

/// Keeps the current key file as `master.key.old-<timestamp>` (a hard link,
/// so `master.key` never goes missing while the new one is installed).
fn keep_old_key_file(home_dir: &Path, key_file: &Path) -> Result<PathBuf> {
    let old = unused_path(
        home_dir,
        &format!("master.key.old-{}", clock::file_stamp(now_ms())),
    );
    fs::hard_link(key_file, &old).map_err(io_error("cannot keep the old key file", &old))?;
    Ok(old)
}

fn set_in_tx(
    tx: &Connection,
    keys: &KeyRing,
    actor: &str,
    vault: &VaultName,
    secret: &NewSecret,
    now: i64,
) -> Result<SetOutcome> {
    let (vault, name) = (vault.as_str(), secret.name.as_str());
    let existing = sqlite::secret_row(tx, vault, name).db("reading a secret")?;
    let (version, created_at) = match existing {
        Some(row) if row.is_live(now) => (row.version + 1, row.created_at),
        Some(_) => {
            // An expired secret is gone: its name starts over at version 1.
            sqlite::delete_secret(tx, vault, name).db("removing an expired secret")?;
            (1, now)
        }
        None => (1, now),
    };
    let id = RecordId {
        vault,
        name,
        version,
    };
    let sealed =
        crypto::seal_secret(&keys.master, id, &secret.value).map_err(StoreError::Encrypt)?;
    sqlite::insert_version(tx, vault, name, version, &sealed, now)
        .db("storing a secret version")?;
    let row = sqlite::SecretRow {
        version,
        description: secret.description.clone(),
        created_at,
        updated_at: now,
        expires_at: secret.ttl_secs.map(|ttl| now + ttl as i64 * 1000),
    };
    sqlite::put_secret_row(tx, vault, name, &row).db("storing a secret")?;
    let entry =
        Entry::about(actor, Action::SecretSet, vault, name).with(Some(version), Outcome::Ok);
    audit::append(tx, &keys.audit, &entry, now).db("writing the audit record")?;
    Ok(SetOutcome {
        name: name.to_owned(),
        version,
        created: version == 1,
    })
}

/// Reads and decrypts a live secret inside `tx`, appending the audit record
/// (whatever the outcome). The caller commits before using the value.
#[expect(
    clippy::too_many_arguments,
    reason = "one audited read needs each of these"
)]
fn read_in_tx(
    tx: &Connection,
    keys: &KeyRing,
    actor: &str,
    purpose: Action,
    vault: &str,
    name: &str,
    version: Option<u64>,
    now: i64,
) -> Result<Revealed> {
    let mut entry = Entry::about(actor, purpose, vault, name).with(version, Outcome::NotFound);
    let row = live_secret_row(tx, vault, name, now)?;
    let result = match row {
        None => Err(StoreError::SecretNotFound {
            vault: vault.to_owned(),
            name: name.to_owned(),
        }),
        Some(row) => {
            let wanted = version.unwrap_or(row.version);
            entry.version = Some(wanted);
            match sqlite::version_row(tx, vault, name, wanted).db("reading a secret version")? {
                None => Err(StoreError::VersionNotFound {
                    vault: vault.to_owned(),
                    name: name.to_owned(),
                    version: wanted,
                }),
                Some(stored) => {
                    let id = RecordId {
                        vault,
                        name,
                        version: wanted,
                    };
                    match crypto::open_secret(&keys.master, id, &stored.sealed) {
                        Ok(value) => {
                            entry.outcome = Outcome::Ok;
                            Ok(Revealed {
                                value,
                                version: wanted,
                            })
                        }
                        Err(source) => {
                            entry.outcome = Outcome::Error;
                            Err(StoreError::Decrypt {
                                vault: vault.to_owned(),
                                name: name.to_owned(),
                                version: wanted,
                                source,
                            })
                        }
                    }
                }
            }
        }
    };
    audit::append(tx, &keys.audit, &entry, now).db("writing the audit record")?;
    result
}

/// The audit record of a sandbox event: its vault, and its id in the name
/// column (as tokens' records carry the token's name).
fn sandbox_audit(
    tx: &Transaction<'_>,
    keys: &KeyRing,
    action: Action,
    row: &SandboxRow,
) -> Result<()> {
    let entry = Entry {
        vault: Some(row.vault.as_str()),
        secret: Some(row.id.as_str()),
        ..Entry::global(keys.actor.as_str(), action, Outcome::Ok)
    };
    audit::append(tx, &keys.audit, &entry, now_ms()).db("writing the audit record")?;
    Ok(())
}
