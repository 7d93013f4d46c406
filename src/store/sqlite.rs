//! The embedded SQLite backend: connection setup, schema, and row operations.
//!
//! This file holds all of the SQL except the audit table's (in `audit.rs`).
//! It knows rows and columns, never plaintext: values arrive here already
//! sealed by `crypto.rs`. Each function takes a `&Connection`, so the store
//! composes them inside one transaction (a `rusqlite::Transaction` derefs to
//! a connection). A PostgreSQL backend would provide these same functions.
//!
//! Concurrency: WAL mode, `synchronous=FULL` (a commit is on disk before a
//! value or a success is reported), a 30 s busy timeout, and every write
//! transaction starts `IMMEDIATE` so that two writers queue on the lock
//! instead of failing on a read-to-write upgrade. The WAL outlives each
//! connection and is truncated once it passes 256 KiB (see [`close`]).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::crypto::SealedSecret;

/// The schema version this build writes (`PRAGMA user_version`).
/// 4: the key check says whether the audit chain is keyed (an older build
/// must refuse such a store as newer, not as "written under another key").
pub const SCHEMA_VERSION: i64 = 4;
/// How many versions of a secret are kept.
pub const KEPT_VERSIONS: u64 = 10;
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS vaults (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    vault       TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    PRIMARY KEY (vault, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS secret_versions (
    vault        TEXT NOT NULL,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    wrapped_key  BLOB NOT NULL,
    sealed_value BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (vault, name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vars (
    vault      TEXT NOT NULL,
    name       TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (vault, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS secret_refs (
    token_hash BLOB PRIMARY KEY,
    owner      TEXT NOT NULL,
    vault      TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS secret_refs_expiry ON secret_refs (expires_at);
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY,
    ts_ms     INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    vault     TEXT,
    secret    TEXT,
    version   INTEGER,
    outcome   TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_secret ON audit (vault, secret);
CREATE TABLE IF NOT EXISTS tokens (
    name       TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    grants     TEXT NOT NULL,
    user_name  TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS sandboxes (
    id           TEXT PRIMARY KEY,
    template     TEXT NOT NULL,
    vault        TEXT NOT NULL,
    config       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_exit    INTEGER,
    last_exec_at INTEGER
);
";

/// WAL size above which closing a store truncates it (see [`close`]).
pub const WAL_TRUNCATE_BYTES: u64 = 256 * 1024;

/// Applies the per-connection settings every shroud connection uses.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Most connections live for one short CLI command. SQLite's default
    // checkpoint on close (re-sync the WAL, sync the database, delete the WAL
    // and re-create it next time) costs every command ~1 ms of syncs; the WAL
    // is kept instead and truncated by `close` once it grows.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(%mode, "SQLite did not switch to WAL mode");
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
}

/// Opens (creating if needed) the database file at `path`.
pub fn open_file(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn)?;
    Ok(conn)
}

/// Closing a file database: when its WAL has grown past
/// [`WAL_TRUNCATE_BYTES`], copy it into the database and truncate it. Each
/// process that opens the store rebuilds the WAL index by reading the WAL,
/// so keeping it short keeps opening cheap. Best effort: a busy database is
/// left for the next closer.
pub fn close(conn: &Connection, db_path: &Path) {
    let mut wal = db_path.as_os_str().to_owned();
    wal.push("-wal");
    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    if size > WAL_TRUNCATE_BYTES {
        let _ = conn.busy_timeout(Duration::from_millis(200));
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "WAL checkpoint deferred");
        }
    }
}

/// Opens a private in-memory database (used to read a home that does not exist).
pub fn open_memory() -> rusqlite::Result<Connection> {
    let conn = Connection::open_in_memory()?;
    configure(&conn)?;
    Ok(conn)
}

/// The schema version found in the database (0 when new).
pub fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Creates the tables; call inside an immediate transaction.
pub fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
}

pub fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
        row.get(0)
    })
    .optional()
}

pub fn meta_put(conn: &Connection, key: &str, value: &[u8]) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Records that a vault exists (first write to it).
pub fn ensure_vault(conn: &Connection, vault: &str, now_ms: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO vaults (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
        params![vault, now_ms],
    )?;
    Ok(())
}

/// The `secrets` row of one secret, whether or not it has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub version: u64,
    pub description: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
}

impl SecretRow {
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now_ms)
    }
}

pub fn secret_row(
    conn: &Connection,
    vault: &str,
    name: &str,
) -> rusqlite::Result<Option<SecretRow>> {
    conn.prepare_cached(
        "SELECT version, description, created_at, updated_at, expires_at
         FROM secrets WHERE vault = ?1 AND name = ?2",
    )?
    .query_row(params![vault, name], |row| {
        Ok(SecretRow {
            version: row.get::<_, i64>(0)? as u64,
            description: row.get(1)?,
            created_at: row.get(2)?,
            updated_at: row.get(3)?,
            expires_at: row.get(4)?,
        })
    })
    .optional()
}

pub fn put_secret_row(
    conn: &Connection,
    vault: &str,
    name: &str,
    row: &SecretRow,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO secrets (vault, name, version, description, created_at, updated_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (vault, name) DO UPDATE SET
           version = excluded.version, description = excluded.description,
           created_at = excluded.created_at, updated_at = excluded.updated_at,
           expires_at = excluded.expires_at",
    )?
    .execute(params![
        vault,
        name,
        row.version as i64,
        row.description,
        row.created_at,
        row.updated_at,
        row.expires_at
    ])?;
    Ok(())
}

/// Stores one sealed version and drops versions older than the last ten.
pub fn insert_version(
    conn: &Connection,
    vault: &str,
    name: &str,
    version: u64,
    sealed: &SealedSecret,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO secret_versions (vault, name, version, wrapped_key, sealed_value, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        vault,
        name,
        version as i64,
        sealed.wrapped_key,
        sealed.sealed_value,
        now_ms
    ])?;
    conn.prepare_cached(
        "DELETE FROM secret_versions WHERE vault = ?1 AND name = ?2 AND version <= ?3",
    )?
    .execute(params![vault, name, version as i64 - KEPT_VERSIONS as i64])?;
    Ok(())
}

/// One stored version of a secret, still sealed.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub sealed: SealedSecret,
    pub created_at: i64,
}

pub fn version_row(
    conn: &Connection,
    vault: &str,
    name: &str,
    version: u64,
) -> rusqlite::Result<Option<VersionRow>> {
    conn.prepare_cached(
        "SELECT wrapped_key, sealed_value, created_at FROM secret_versions
         WHERE vault = ?1 AND name = ?2 AND version = ?3",
    )?
    .query_row(params![vault, name, version as i64], |row| {
        Ok(VersionRow {
            sealed: SealedSecret {
                wrapped_key: row.get(0)?,
                sealed_value: row.get(1)?,
            },
            created_at: row.get(2)?,
        })
    })
    .optional()
}

/// Kept versions of a secret, oldest first: (version, created_at).
pub fn version_list(
    conn: &Connection,
    vault: &str,
    name: &str,
) -> rusqlite::Result<Vec<(u64, i64)>> {
    conn.prepare_cached(
        "SELECT version, created_at FROM secret_versions
         WHERE vault = ?1 AND name = ?2 ORDER BY version",
    )?
    .query_map(params![vault, name], |row| {
        Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
    })?
    .collect()
}

/// Removes a secret and all its versions.
pub fn delete_secret(conn: &Connection, vault: &str, name: &str) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM secret_versions WHERE vault = ?1 AND name = ?2",
        params![vault, name],
    )?;
    conn.execute(
        "DELETE FROM secrets WHERE vault = ?1 AND name = ?2",
        params![vault, name],
    )?;
    Ok(())
}

/// Live secrets of a vault with their metadata, sorted by name.
pub fn list_secret_rows(
    conn: &Connection,
    vault: &str,
    now_ms: i64,
) -> rusqlite::Result<Vec<(String, SecretRow)>> {
    conn.prepare_cached(
        "SELECT name, version, description, created_at, updated_at, expires_at FROM secrets
         WHERE vault = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY name",
    )?
    .query_map(params![vault, now_ms], |row| {
        Ok((
            row.get(0)?,
            SecretRow {
                version: row.get::<_, i64>(1)? as u64,
                description: row.get(2)?,
                created_at: row.get(3)?,
                updated_at: row.get(4)?,
                expires_at: row.get(5)?,
            },
        ))
    })?
    .collect()
}

/// Names of the live secrets of a vault, sorted.
pub fn list_secret_names(
    conn: &Connection,
    vault: &str,
    now_ms: i64,
) -> rusqlite::Result<Vec<String>> {
    conn.prepare_cached(
        "SELECT name FROM secrets
         WHERE vault = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY name",
    )?
    .query_map(params![vault, now_ms], |row| row.get(0))?
    .collect()
}

/// A stored version's identity and its wrapped data key.
#[derive(Debug, Clone)]
pub struct WrappedKeyRow {
    pub vault: String,
    pub name: String,
    pub version: u64,
    pub wrapped_key: Vec<u8>,
}

/// Every stored version's identity and wrapped key (for key rotation).
pub fn all_wrapped_keys(conn: &Connection) -> rusqlite::Result<Vec<WrappedKeyRow>> {
    conn.prepare("SELECT vault, name, version, wrapped_key FROM secret_versions")?
        .query_map([], |row| {
            Ok(WrappedKeyRow {
                vault: row.get(0)?,
                name: row.get(1)?,
                version: row.get::<_, i64>(2)? as u64,
                wrapped_key: row.get(3)?,
            })
        })?
        .collect()
}

pub fn update_wrapped_key(
    conn: &Connection,
    vault: &str,
    name: &str,
    version: u64,
    wrapped_key: &[u8],
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE secret_versions SET wrapped_key = ?4 WHERE vault = ?1 AND name = ?2 AND version = ?3",
    )?
    .execute(params![vault, name, version as i64, wrapped_key])?;
    Ok(())
}

/// A vault with its counts of live secrets and vars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultRow {
    pub name: String,
    pub created_at: i64,
    pub secrets: u64,
    pub vars: u64,
}

pub fn list_vaults(conn: &Connection, now_ms: i64) -> rusqlite::Result<Vec<VaultRow>> {
    conn.prepare(
        "SELECT v.name, v.created_at,
           (SELECT COUNT(*) FROM secrets s WHERE s.vault = v.name
              AND (s.expires_at IS NULL OR s.expires_at > ?1)),
           (SELECT COUNT(*) FROM vars r WHERE r.vault = v.name)
         FROM vaults v ORDER BY v.name",
    )?
    .query_map([now_ms], |row| {
        Ok(VaultRow {
            name: row.get(0)?,
            created_at: row.get(1)?,
            secrets: row.get::<_, i64>(2)? as u64,
            vars: row.get::<_, i64>(3)? as u64,
        })
    })?
    .collect()
}

pub fn put_var(
    conn: &Connection,
    vault: &str,
    name: &str,
    value: &str,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO vars (vault, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (vault, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        params![vault, name, value, now_ms],
    )?;
    Ok(())
}

pub fn get_var(
    conn: &Connection,
    vault: &str,
    name: &str,
) -> rusqlite::Result<Option<(String, i64)>> {
    conn.query_row(
        "SELECT value, updated_at FROM vars WHERE vault = ?1 AND name = ?2",
        params![vault, name],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .optional()
}

pub fn list_vars(conn: &Connection, vault: &str) -> rusqlite::Result<Vec<(String, String, i64)>> {
    conn.prepare("SELECT name, value, updated_at FROM vars WHERE vault = ?1 ORDER BY name")?
        .query_map([vault], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect()
}

/// Deletes a var; false when there was none.
pub fn delete_var(conn: &Connection, vault: &str, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "DELETE FROM vars WHERE vault = ?1 AND name = ?2",
        params![vault, name],
    )? > 0)
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
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        name: row.get(0)?,
        token_hash: row.get(1)?,
        grants: row.get(2)?,
        user: row.get(3)?,
        created_at: row.get(4)?,
        revoked_at: row.get(5)?,
    })
}

const TOKEN_COLUMNS: &str = "name, token_hash, grants, user_name, created_at, revoked_at";

pub fn insert_token(conn: &Connection, row: &TokenRow) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            row.name,
            row.token_hash,
            row.grants,
            row.user,
            row.created_at,
            row.revoked_at
        ],
    )?;
    Ok(())
}

pub fn token_by_name(conn: &Connection, name: &str) -> rusqlite::Result<Option<TokenRow>> {
    conn.query_row(
        &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE name = ?1"),
        [name],
        token_from_row,
    )
    .optional()
}

pub fn token_by_hash(conn: &Connection, hash: &[u8]) -> rusqlite::Result<Option<TokenRow>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?1"
    ))?
    .query_row([hash], token_from_row)
    .optional()
}

pub fn list_tokens(conn: &Connection) -> rusqlite::Result<Vec<TokenRow>> {
    conn.prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"))?
        .query_map([], token_from_row)?
        .collect()
}

/// Marks a token revoked; false when there was no live token by that name.
pub fn revoke_token(conn: &Connection, name: &str, at: i64) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, at],
    )? > 0)
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
}

fn sandbox_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<SandboxRow> {
    Ok(SandboxRow {
        id: row.get(0)?,
        template: row.get(1)?,
        vault: row.get(2)?,
        config: row.get(3)?,
        created_at: row.get(4)?,
        last_exit: row.get(5)?,
        last_exec_at: row.get(6)?,
    })
}

const SANDBOX_COLUMNS: &str = "id, template, vault, config, created_at, last_exit, last_exec_at";

pub fn insert_sandbox(conn: &Connection, row: &SandboxRow) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO sandboxes ({SANDBOX_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![
            row.id,
            row.template,
            row.vault,
            row.config,
            row.created_at,
            row.last_exit,
            row.last_exec_at
        ],
    )?;
    Ok(())
}

pub fn sandbox(conn: &Connection, id: &str) -> rusqlite::Result<Option<SandboxRow>> {
    conn.query_row(
        &format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = ?1"),
        [id],
        sandbox_from_row,
    )
    .optional()
}

pub fn list_sandboxes(conn: &Connection) -> rusqlite::Result<Vec<SandboxRow>> {
    conn.prepare(&format!(
        "SELECT {SANDBOX_COLUMNS} FROM sandboxes ORDER BY created_at, id"
    ))?
    .query_map([], sandbox_from_row)?
    .collect()
}

/// Deletes a sandbox; false when there was none.
pub fn delete_sandbox(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    Ok(conn.execute("DELETE FROM sandboxes WHERE id = ?1", [id])? > 0)
}

pub fn record_sandbox_exit(
    conn: &Connection,
    id: &str,
    code: i64,
    at: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE sandboxes SET last_exit = ?2, last_exec_at = ?3 WHERE id = ?1",
        params![id, code, at],
    )?;
    Ok(())
}

/// A stored secret reference: who may resolve it, what it points to, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefRow {
    pub owner: String,
    pub vault: String,
    pub name: String,
    pub expires_at: i64,
}

/// Stores a reference by the hash of its token; prunes long-expired ones.
pub fn insert_ref(
    conn: &Connection,
    token_hash: &[u8],
    row: &RefRow,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM secret_refs WHERE expires_at <= ?1", [now_ms])?;
    conn.execute(
        "INSERT INTO secret_refs (token_hash, owner, vault, name, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            token_hash,
            row.owner,
            row.vault,
            row.name,
            now_ms,
            row.expires_at
        ],
    )?;
    Ok(())
}

pub fn ref_row(conn: &Connection, token_hash: &[u8]) -> rusqlite::Result<Option<RefRow>> {
    conn.query_row(
        "SELECT owner, vault, name, expires_at FROM secret_refs WHERE token_hash = ?1",
        [token_hash],
        |row| {
            Ok(RefRow {
                owner: row.get(0)?,
                vault: row.get(1)?,
                name: row.get(2)?,
                expires_at: row.get(3)?,
            })
        },
    )
    .optional()
}
