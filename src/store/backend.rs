//! The storage seam: what the store's transaction scripts ask of a database,
//! whichever it is.
//!
//! A [`Connection`] hands out transactions ([`Tx`]): [`Connection::write`]
//! is *the* serialization point of every change (SQLite: `BEGIN IMMEDIATE`;
//! PostgreSQL: a transaction that first locks the audit head row, so that
//! version numbers and the audit chain stay exact with many writers on many
//! nodes), and [`Connection::read`] a view for reads that change nothing.
//! A `Tx` knows rows and columns, never plaintext: values arrive already
//! sealed by `crypto.rs`. The transaction scripts (`mod.rs`) and the audit
//! chain's MAC math (`audit.rs`) are written once, against these traits;
//! `sqlite.rs` and `postgres.rs` are the two implementations, and no type of
//! either driver appears outside them.

use super::crypto::SealedSecret;

/// How a database failed, as far as callers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbErrorKind {
    /// The database cannot be reached (refused, closed, restarting): worth
    /// a 503 and a retry later, never a 500.
    Unavailable,
    /// Another writer won a race the database could not serialize: the
    /// whole transaction may be retried.
    Conflict,
    /// Anything else (a constraint, a bad statement, corruption).
    Other,
}

/// A database error, in the driver's words (never a value: only sealed
/// blobs and names ever reach a statement).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DbError {
    pub kind: DbErrorKind,
    pub message: String,
}

impl DbError {
    pub fn new(kind: DbErrorKind, message: impl Into<String>) -> Self {
        DbError {
            kind,
            message: message.into(),
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// The `secrets` row of one secret, whether or not it has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub version: u64,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    /// `APIKey`, `SSHKey`, `UsernamePassword` or `Other` (see `names::Purpose`).
    pub purpose: String,
}

impl SecretRow {
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now_ms)
    }
}

/// One stored version of a secret, still sealed.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub sealed: SealedSecret,
    pub created_at: i64,
}

/// A stored version's identity and its wrapped data key.
#[derive(Debug, Clone)]
pub struct WrappedKeyRow {
    pub vault: String,
    pub name: String,
    pub version: u64,
    pub wrapped_key: Vec<u8>,
}

/// A vault with its counts of live secrets and vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultRow {
    pub name: String,
    pub created_at: i64,
    pub secrets: u64,
    pub vars: u64,
}

/// An API token as stored: only the SHA-256 of the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub name: String,
    pub token_hash: Vec<u8>,
    /// `vault:read|write` entries, comma-separated.
    pub grants: String,
    pub user: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// When it stops authenticating (`token create --ttl`).
    pub expires_at: Option<i64>,
}

/// A sandbox as stored. `config` is JSON owned by the sandbox layer (grants,
/// environment, the applied policy); it never holds a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRow {
    pub id: String,
    pub template: String,
    pub vault: String,
    pub config: String,
    pub created_at: i64,
    pub last_exit: Option<i64>,
    pub last_exec_at: Option<i64>,
    /// The node that made it (its files are there).
    pub node: String,
}

/// A record of the supervisor's: a deployment (`kind` "deployment",
/// `parent` its vault) or an agent run ("run", `parent` its deployment's
/// slug). `data` is JSON owned by the supervisor (never a secret value);
/// `node` holds the record under a lease until `lease_until` (ms), so that
/// one node at a time runs a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRow {
    pub kind: String,
    pub id: String,
    pub parent: String,
    pub data: String,
    pub node: String,
    pub lease_until: i64,
    pub updated_at: i64,
}

/// A stored secret reference: who may resolve it, what it points to, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRow {
    pub owner: String,
    pub vault: String,
    pub name: String,
    pub expires_at: i64,
}

/// One audit record as stored, with its chain links. `record` is `None`
/// when the row's fields no longer decode (an edit made outside shroud).
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub seq: u64,
    pub record: Option<super::audit::Record>,
    pub prev_mac: Vec<u8>,
    pub mac: Vec<u8>,
}

/// One connection to a store's database.
pub trait Connection: Send {
    /// A transaction for reads; it changes nothing, so dropping it is as
    /// good as committing it.
    fn read(&mut self) -> DbResult<Box<dyn Tx + '_>>;
    /// A write transaction: the one serialization point of every change.
    fn write(&mut self) -> DbResult<Box<dyn Tx + '_>>;
    /// A write transaction whose commit does not wait for the disk: it
    /// survives a crash of the process, and the store stays consistent after
    /// a power loss, which may lose it. For bookkeeping that hands nothing
    /// out (how a command ended). A backend without the choice commits
    /// durably.
    fn write_relaxed(&mut self) -> DbResult<Box<dyn Tx + '_>> {
        self.write()
    }
    /// Where the data is, for messages (a path, or `host:port/db`; never a
    /// password).
    fn describe(&self) -> String;
    /// False once the connection is known to be broken (a pooled one is then
    /// opened again).
    fn is_usable(&self) -> bool {
        true
    }
    /// True when other nodes, each with a home of its own, may share the
    /// database (a rotation then leaves them a key handoff).
    fn is_shared(&self) -> bool {
        false
    }
}

/// The row operations of one transaction. Every method works on the
/// transaction it is called on; nothing is visible to others before
/// [`Tx::commit`].
pub trait Tx {
    fn commit(self: Box<Self>) -> DbResult<()>;

    fn meta_get(&mut self, key: &str) -> DbResult<Option<Vec<u8>>>;
    fn meta_put(&mut self, key: &str, value: &[u8]) -> DbResult<()>;
    /// Inserts `key` unless it exists.
    fn meta_put_new(&mut self, key: &str, value: &[u8]) -> DbResult<()>;
    fn meta_delete(&mut self, key: &str) -> DbResult<()>;
    /// Keys that start with `prefix`, with their values.
    fn meta_with_prefix(&mut self, prefix: &str) -> DbResult<Vec<(String, Vec<u8>)>>;

    /// Records that a vault exists (first write to it).
    fn ensure_vault(&mut self, vault: &str, now_ms: i64) -> DbResult<()>;
    fn list_vaults(&mut self, now_ms: i64) -> DbResult<Vec<VaultRow>>;

    fn secret_row(&mut self, vault: &str, name: &str) -> DbResult<Option<SecretRow>>;
    /// Reads ahead the rows of `(vault, name)` pairs the transaction is
    /// about to read one by one, for a backend that pays a network round
    /// trip per statement (it answers them from one); others need not.
    fn prefetch_secret_rows(&mut self, _names: &[(&str, &str)]) -> DbResult<()> {
        Ok(())
    }
    fn put_secret_row(&mut self, vault: &str, name: &str, row: &SecretRow) -> DbResult<()>;
    /// Stores one sealed version and drops versions older than the last
    /// [`KEPT_VERSIONS`].
    fn insert_version(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
        sealed: &SealedSecret,
        now_ms: i64,
    ) -> DbResult<()>;
    fn version_row(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
    ) -> DbResult<Option<VersionRow>>;
    /// Kept versions of a secret, oldest first: (version, created_at).
    fn version_list(&mut self, vault: &str, name: &str) -> DbResult<Vec<(u64, i64)>>;
    /// Removes a secret and all its versions.
    fn delete_secret(&mut self, vault: &str, name: &str) -> DbResult<()>;
    /// Live secrets of a vault with their metadata, sorted by name.
    fn list_secret_rows(&mut self, vault: &str, now_ms: i64) -> DbResult<Vec<(String, SecretRow)>>;
    /// Names of the live secrets of a vault, sorted.
    fn list_secret_names(&mut self, vault: &str, now_ms: i64) -> DbResult<Vec<String>>;
    /// Every stored version's identity and wrapped key (for key rotation).
    fn all_wrapped_keys(&mut self) -> DbResult<Vec<WrappedKeyRow>>;
    fn update_wrapped_key(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
        wrapped_key: &[u8],
    ) -> DbResult<()>;

    fn put_var(&mut self, vault: &str, name: &str, value: &str, now_ms: i64) -> DbResult<()>;
    fn get_var(&mut self, vault: &str, name: &str) -> DbResult<Option<(String, i64)>>;
    fn list_vars(&mut self, vault: &str) -> DbResult<Vec<(String, String, i64)>>;
    /// Deletes a var; false when there was none.
    fn delete_var(&mut self, vault: &str, name: &str) -> DbResult<bool>;

    fn insert_token(&mut self, row: &TokenRow) -> DbResult<()>;
    fn token_by_name(&mut self, name: &str) -> DbResult<Option<TokenRow>>;
    fn token_by_hash(&mut self, hash: &[u8]) -> DbResult<Option<TokenRow>>;
    fn list_tokens(&mut self) -> DbResult<Vec<TokenRow>>;
    /// Marks a token revoked; false when there was no live token by that name.
    fn revoke_token(&mut self, name: &str, at: i64) -> DbResult<bool>;

    fn insert_sandbox(&mut self, row: &SandboxRow) -> DbResult<()>;
    fn sandbox(&mut self, id: &str) -> DbResult<Option<SandboxRow>>;
    fn list_sandboxes(&mut self) -> DbResult<Vec<SandboxRow>>;
    /// Deletes a sandbox; false when there was none.
    fn delete_sandbox(&mut self, id: &str) -> DbResult<bool>;
    fn record_sandbox_exit(&mut self, id: &str, code: i64, at: i64) -> DbResult<()>;

    /// Inserts a record (with its lease), or replaces its `parent`, `data`
    /// and `updated_at` (its lease stays as it is).
    fn put_record(&mut self, row: &RecordRow) -> DbResult<()>;
    /// Replaces the `parent`, `data` and `updated_at` of a record that
    /// exists; false when there is none (it is not made again).
    fn update_record(&mut self, row: &RecordRow) -> DbResult<bool>;
    fn record(&mut self, kind: &str, id: &str) -> DbResult<Option<RecordRow>>;
    /// Records of `kind` (under `parent`), oldest first.
    fn list_records(&mut self, kind: &str, parent: Option<&str>) -> DbResult<Vec<RecordRow>>;
    /// Deletes a record and, when `children` names a kind, the records of
    /// that kind under it; false when there was none.
    fn delete_record(&mut self, kind: &str, id: &str, children: Option<&str>) -> DbResult<bool>;
    /// Takes or renews the lease of every record of `kind` that `node`
    /// holds or whose lease ran out before `now`, until `until`; returns
    /// their ids.
    fn claim_records(
        &mut self,
        kind: &str,
        node: &str,
        now: i64,
        until: i64,
    ) -> DbResult<Vec<String>>;
    /// Gives up `node`'s lease on a record (another node may take it at once).
    fn release_record(&mut self, kind: &str, id: &str, node: &str) -> DbResult<()>;

    /// Stores a reference by the hash of its token; prunes expired ones.
    fn insert_ref(&mut self, token_hash: &[u8], row: &RefRow, now_ms: i64) -> DbResult<()>;
    fn ref_row(&mut self, token_hash: &[u8]) -> DbResult<Option<RefRow>>;

    /// Appends one audit record with its chain links.
    fn audit_insert(
        &mut self,
        record: &super::audit::Record,
        prev_mac: &[u8],
        mac: &[u8],
    ) -> DbResult<()>;
    /// Records matching `filter`, oldest first (the newest `limit` of them).
    fn audit_list(&mut self, filter: &super::audit::Filter) -> DbResult<Vec<super::audit::Record>>;
    /// Every record with its links, in sequence order.
    fn audit_rows(&mut self) -> DbResult<Vec<AuditRow>>;
    /// Rewrites the links of record `seq` (re-keying the chain).
    fn audit_relink(&mut self, seq: u64, prev_mac: &[u8], mac: &[u8]) -> DbResult<()>;
    /// True when the log holds at least one record.
    fn audit_any(&mut self) -> DbResult<bool>;
}

/// How many versions of a secret are kept.
pub const KEPT_VERSIONS: u64 = 10;
