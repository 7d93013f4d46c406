//! The vault: shroud's encrypted store of secrets, vars, references and audit.
//!
//! [`Store`] is the one API every front door uses. It opens the store (the
//! home's SQLite file, or a PostgreSQL database shared by several nodes),
//! checks the master key against the store's key-check record, and runs each
//! operation as one transaction that writes its audit record alongside the
//! change ([`audit`]). The parts:
//!
//! - [`backend`]: the storage seam, the traits every database implements;
//!   [`sqlite`] and [`postgres`] are the two implementations, and no type of
//!   either driver appears in this module's API;
//! - `scripts`: the transaction scripts (set, reveal, references, vars,
//!   tokens, sandboxes, audit), written once against the seam, each through
//!   one helper that begins the write, re-checks the key, and commits;
//! - `keys`: the master key (its sources, rotation, following a rotation made
//!   by another process or node);
//! - [`crypto`] seals and opens values (the only user of AES-GCM), [`names`]
//!   validates names before they get here, [`home`] finds the home.
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
//! let config = StoreConfig::in_home(dir.path().join("home"), None, "docs");
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
pub mod backend;
pub mod backup;
pub mod crypto;
pub mod home;
mod keys;
pub use keys::{Handoff, KEY_HANDOFF_TTL_MS};
pub mod names;
pub mod postgres;
mod scripts;
pub mod sqlite;
pub mod tokens;

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret::SecretValue;
use audit::{Action, Entry, Outcome};
use backend::{Connection, DbError, DbErrorKind, DbResult, Tx};
use crypto::CryptoError;
pub use home::KeySource;
use keys::KeyRing;
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
/// The meta key of the key check.
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
    #[error("the master key from {key_source} does not open the data in {store}: it was written under another key")]
    WrongMasterKey {
        key_source: KeySource,
        store: String,
    },
    #[error("no master key: {key_file} is missing but {store} holds data sealed under a key; set SHROUD_MASTER_KEY or restore the key file")]
    MissingMasterKey { key_file: PathBuf, store: String },
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
    #[error("the store in {store} was written by a newer shroud (schema {found}; this build knows {known})")]
    SchemaTooNew {
        store: String,
        found: i64,
        known: i64,
    },
    #[error("database error while {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: backend::DbError,
    },
    #[error("the database at {store} is unavailable while {context}: {message}; try again when it is back")]
    Unavailable {
        context: &'static str,
        store: String,
        message: String,
    },
    #[error("cannot connect to the database at {store}: {message}")]
    Connect { store: String, message: String },
    /// A backup or restore refused, with what to do instead.
    #[error("{0}")]
    Backup(String),
    /// A restore refused for its key (none, or not the backup's).
    #[error("{0}")]
    BackupKey(String),
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
                | StoreError::BackupKey(_)
        )
    }

    /// True when the database could not be reached (worth a 503 and a retry).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
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

/// Where a store's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// The embedded default: `shroud.db` in the home.
    Home,
    /// A PostgreSQL database (shared by several nodes).
    Postgres(postgres::PgTarget),
}

impl StoreLocation {
    /// `--store` / `$SHROUD_STORE`: `sqlite` (the home's file) or a
    /// `postgres://` URL. Errors never repeat the text (it may hold a
    /// password).
    pub fn parse(text: &str) -> std::result::Result<StoreLocation, String> {
        match text {
            "" | "sqlite" => Ok(StoreLocation::Home),
            url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                postgres::PgTarget::parse(url).map(StoreLocation::Postgres)
            }
            _ => Err("expected `sqlite` or a postgres://user@host:port/db URL".to_owned()),
        }
    }
}

/// How to open a store. Its `Debug` never shows the master key.
#[derive(Clone)]
pub struct StoreConfig {
    /// The home directory (the key file, sandboxes, and with
    /// [`StoreLocation::Home`] the database).
    pub home: PathBuf,
    /// The text of `$SHROUD_MASTER_KEY`, when set.
    pub master_key_env: Option<Zeroizing<String>>,
    /// Who acts, as written to the audit log (`cli` or a token name).
    pub actor: String,
    pub location: StoreLocation,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("home", &self.home)
            .field(
                "master_key_env",
                &self.master_key_env.as_ref().map(|_| "<redacted>"),
            )
            .field("actor", &self.actor)
            .field("location", &self.location)
            .finish()
    }
}

impl StoreConfig {
    /// A store in `home`'s own SQLite file.
    pub fn in_home(
        home: PathBuf,
        master_key_env: Option<Zeroizing<String>>,
        actor: &str,
    ) -> StoreConfig {
        StoreConfig {
            home,
            master_key_env,
            actor: actor.to_owned(),
            location: StoreLocation::Home,
        }
    }
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
    /// `None`: the secret keeps the purpose it has (`Other` when new).
    pub purpose: Option<names::Purpose>,
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
            purpose: None,
        })
    }

    /// The same secret, with `purpose`.
    pub fn with_purpose(mut self, purpose: Option<names::Purpose>) -> Self {
        self.purpose = purpose;
        self
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
    /// `APIKey`, `SSHKey`, `UsernamePassword` or `Other`.
    pub purpose: String,
}

impl SecretMeta {
    fn from_row(name: String, row: backend::SecretRow) -> Self {
        SecretMeta {
            name,
            description: row.description,
            version: row.version,
            created_at_ms: row.created_at,
            updated_at_ms: row.updated_at,
            expires_at_ms: row.expires_at,
            purpose: row.purpose,
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

pub use backend::SandboxRow;
pub use backend::VaultRow as VaultInfo;

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
    conn: Box<dyn Connection>,
    keys: KeyRing,
    /// What the data is, for messages (a path, or `host:port/db`).
    describe: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("store", &self.describe)
            .field("key_source", &self.keys.key_source)
            .field("actor", &self.keys.actor)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store `config` names (see [`OpenMode`]).
    pub fn open(config: StoreConfig, mode: OpenMode) -> Result<Store> {
        // A malformed key is refused before anything is created.
        if let Some(text) = &config.master_key_env {
            keys::env_key(text)?;
        }
        if let StoreLocation::Postgres(target) = &config.location {
            return Self::open_postgres(target.clone(), config, mode);
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
        let describe = config.home.display().to_string();
        let mut conn = sqlite::SqliteConnection::open_file(&db_path)
            .map_err(|e| db_error("opening the database", &describe, e))?;
        let found = conn
            .schema_version()
            .map_err(|e| db_error("reading the schema version", &describe, e))?;
        if found > sqlite::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                store: describe,
                found,
                known: sqlite::SCHEMA_VERSION,
            });
        }
        if found < sqlite::SCHEMA_VERSION {
            conn.migrate()
                .map_err(|e| db_error("migrating the schema", &describe, e))?;
        }
        Self::finish_open(Box::new(conn), describe, config, mode)
    }

    /// Connects to a PostgreSQL store and brings its schema up to date
    /// (reading commands too: a database with no tables reads as empty).
    fn open_postgres(
        target: postgres::PgTarget,
        config: StoreConfig,
        mode: OpenMode,
    ) -> Result<Store> {
        let describe = target.describe().to_owned();
        let mut conn = postgres::PgConnection::connect(&target).map_err(|e| match e.kind {
            DbErrorKind::Unavailable => db_error("connecting", &describe, e),
            _ => StoreError::Connect {
                store: describe.clone(),
                message: e.message,
            },
        })?;
        let found = conn
            .migrate()
            .map_err(|e| db_error("migrating the schema", &describe, e))?;
        if found > postgres::SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                store: describe,
                found,
                known: postgres::SCHEMA_VERSION,
            });
        }
        if mode == OpenMode::Create {
            // The key file and the sandboxes live in the home all the same.
            home::create_private_dir(&config.home)
                .map_err(io_error("cannot create home directory", &config.home))?;
        }
        Self::finish_open(Box::new(conn), describe, config, mode)
    }

    /// Checks (or, in a new store, records) the key, and converts an older
    /// store's audit chain: the part of opening every backend shares.
    fn finish_open(
        mut conn: Box<dyn Connection>,
        describe: String,
        config: StoreConfig,
        mode: OpenMode,
    ) -> Result<Store> {
        let key_check = {
            let mut tx = conn
                .read()
                .map_err(|e| db_error("reading the key check", &describe, e))?;
            tx.meta_get(KEY_CHECK)
                .map_err(|e| db_error("reading the key check", &describe, e))?
        };
        let (master, key_source) =
            keys::load_master_key(&config, &describe, key_check.is_some(), mode)?;
        let mut store = Store::assemble(conn, master, key_source, config, describe);
        store.check_or_record_key(key_check)?;
        store.ensure_keyed_audit_chain()?;
        Ok(store)
    }

    /// A private in-memory store standing in for a home that does not exist.
    fn open_ephemeral(config: StoreConfig) -> Result<Store> {
        let describe = config.home.display().to_string();
        let mut conn = sqlite::SqliteConnection::open_memory()
            .map_err(|e| db_error("opening an in-memory database", &describe, e))?;
        conn.migrate()
            .map_err(|e| db_error("creating the schema", &describe, e))?;
        let (master, key_source) = match &config.master_key_env {
            Some(text) => (keys::env_key(text)?, KeySource::Env),
            None => (
                crypto::Key::generate().map_err(StoreError::Encrypt)?,
                KeySource::Ephemeral,
            ),
        };
        Ok(Store::assemble(
            Box::new(conn),
            master,
            key_source,
            config,
            describe,
        ))
    }

    fn assemble(
        conn: Box<dyn Connection>,
        master: crypto::Key,
        key_source: KeySource,
        config: StoreConfig,
        describe: String,
    ) -> Store {
        Store {
            conn,
            keys: KeyRing::new(
                master,
                key_source,
                config.home,
                config.actor,
                describe.clone(),
            ),
            describe,
        }
    }

    /// True for a store standing in for a home that does not exist.
    fn is_ephemeral(&self) -> bool {
        self.keys.key_source == KeySource::Ephemeral
    }

    fn check_or_record_key(&mut self, key_check: Option<Vec<u8>>) -> Result<()> {
        match key_check {
            Some(blob) if crypto::key_check_opens(&self.keys.master, &blob) => Ok(()),
            Some(_) => {
                let conn = &mut self.conn;
                let describe = &self.describe;
                self.keys.finish_rotation(|| {
                    let mut tx = conn
                        .read()
                        .map_err(|e| db_error("reading the key check", describe, e))?;
                    keys::KeyState::read(&mut *tx)
                        .map_err(|e| db_error("reading the key check", describe, e))
                })
            }
            None if self.is_ephemeral() => Ok(()),
            None => self.write("recording the key check", |tx, keys| {
                match tx
                    .meta_get(KEY_CHECK)
                    .map_err(keys.db("reading the key check"))?
                {
                    Some(blob) if crypto::key_check_opens(&keys.master, &blob) => {}
                    Some(_) => return Err(keys.wrong_key()),
                    None => {
                        let blob =
                            crypto::seal_key_check(&keys.master).map_err(StoreError::Encrypt)?;
                        tx.meta_put(KEY_CHECK, &blob)
                            .map_err(keys.db("writing the key check"))?;
                        if !audit::is_unkeyed(tx).map_err(keys.db("reading the audit log"))? {
                            audit::start_keyed(tx, &keys.audit)
                                .map_err(keys.db("starting the audit chain"))?;
                        }
                    }
                }
                Ok(Ok(()))
            }),
        }
    }

    /// A store written by an older shroud has an unkeyed audit chain: it
    /// is converted to the keyed one once, here, in one transaction; a
    /// break the old hashes showed is kept as the outcome of the
    /// conversion's own record (with the first broken record's number), so
    /// it is not laundered. Only a store whose key check says it is older
    /// (version 1, sealed: nobody without the key can fake it) is
    /// converted; one whose chain marker merely went missing is left as it
    /// is, so that `audit verify` shows whatever was done to it.
    fn ensure_keyed_audit_chain(&mut self) -> Result<()> {
        if self.is_ephemeral() {
            return Ok(());
        }
        let marked = self.read("reading the audit log", |tx| audit::is_marked_keyed(tx))?;
        if marked {
            return Ok(());
        }
        self.write("converting the audit log", |tx, keys| {
            let check = tx.meta_get(KEY_CHECK).map_err(keys.db("reading the key check"))?;
            let older_store = check
                .as_deref()
                .and_then(|blob| crypto::key_check_version(&keys.master, blob))
                == Some(1);
            if !older_store {
                tracing::warn!("the audit chain's format marker is missing from a store whose chain is keyed: not converting it (run `shroud audit verify`)");
                return Ok(Ok(()));
            }
            if audit::is_unkeyed(tx).map_err(keys.db("reading the audit log"))? {
                let broken = audit::upgrade_unkeyed(tx, &keys.audit)
                    .map_err(keys.db("converting the audit log"))?;
                let outcome = if broken.is_some() {
                    Outcome::Error
                } else {
                    Outcome::Ok
                };
                let entry = Entry::global(keys.actor.as_str(), Action::AuditUpgrade, outcome)
                    .with(broken.as_ref().map(|b| b.seq), outcome);
                keys.append(tx, &entry)?;
                if let Some(broken) = broken {
                    tracing::warn!(seq = broken.seq, reason = %broken.reason, "the audit log was already broken before it was keyed");
                }
            } else {
                audit::start_keyed(tx, &keys.audit).map_err(keys.db("starting the audit chain"))?;
            }
            let sealed = crypto::seal_key_check(&keys.master).map_err(StoreError::Encrypt)?;
            tx.meta_put(KEY_CHECK, &sealed)
                .map_err(keys.db("writing the key check"))?;
            Ok(Ok(()))
        })
    }

    /// Runs `script` in a write transaction, the one serialization point of
    /// every change: the key is re-checked inside it first (following a
    /// rotation another process made since), then the script does its rows
    /// and audit records. An error from the script aborts the transaction;
    /// what it returns inside `Ok` (a value, or an error such as "not
    /// found" whose audit record must stay) is returned once committed.
    /// A transaction the database could not serialize is run again once.
    fn write<T>(
        &mut self,
        context: &'static str,
        script: impl FnMut(&mut dyn Tx, &KeyRing) -> Result<Result<T>>,
    ) -> Result<T> {
        self.write_with(true, context, script)
    }

    /// [`Self::write`] whose commit does not wait for the disk (see
    /// [`Connection::write_relaxed`]): for bookkeeping that hands nothing out.
    fn write_relaxed<T>(
        &mut self,
        context: &'static str,
        script: impl FnMut(&mut dyn Tx, &KeyRing) -> Result<Result<T>>,
    ) -> Result<T> {
        self.write_with(false, context, script)
    }

    fn write_with<T>(
        &mut self,
        durable: bool,
        context: &'static str,
        mut script: impl FnMut(&mut dyn Tx, &KeyRing) -> Result<Result<T>>,
    ) -> Result<T> {
        let mut retried = false;
        loop {
            let Store { conn, keys, .. } = self;
            let attempt = (|| {
                let begun = if durable {
                    conn.write()
                } else {
                    conn.write_relaxed()
                };
                let mut tx = begun.map_err(keys.db("starting a write transaction"))?;
                if keys.key_source != KeySource::Ephemeral {
                    if let Some(blob) = tx
                        .meta_get(KEY_CHECK)
                        .map_err(keys.db("reading the key check"))?
                    {
                        if !crypto::key_check_opens(&keys.master, &blob) {
                            keys.follow_rotation(&mut *tx, &blob)?;
                        }
                    }
                }
                let outcome = script(&mut *tx, keys)?;
                tx.commit().map_err(keys.db(context))?;
                Ok(outcome)
            })();
            match attempt {
                Err(StoreError::Database { source, .. })
                    if source.kind == DbErrorKind::Conflict && !retried =>
                {
                    retried = true;
                    tracing::debug!(context, "write conflict; running the transaction again");
                }
                other => return other?,
            }
        }
    }

    /// Runs `query` in a read transaction.
    fn read<T>(
        &mut self,
        context: &'static str,
        query: impl FnOnce(&mut dyn Tx) -> DbResult<T>,
    ) -> Result<T> {
        let Store { conn, keys, .. } = self;
        let mut tx = conn.read().map_err(keys.db(context))?;
        query(&mut *tx).map_err(keys.db(context))
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

    /// False once the store's connection is known to be broken.
    pub fn is_usable(&self) -> bool {
        self.conn.is_usable()
    }
}

/// The kind of a deployment's record (see `backend::RecordRow`).
pub const DEPLOYMENT_KIND: &str = "deployment";
/// The kind of an agent run's record.
pub const RUN_KIND: &str = "run";

/// The name of this node, as sandboxes record it: `$SHROUD_NODE`, else the
/// host name.
pub fn this_node() -> String {
    std::env::var("SHROUD_NODE")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A database error, named after the step that failed and the store.
fn db_error(context: &'static str, store: &str, source: DbError) -> StoreError {
    match source.kind {
        DbErrorKind::Unavailable => StoreError::Unavailable {
            context,
            store: store.to_owned(),
            message: source.message,
        },
        _ => StoreError::Database { context, source },
    }
}
