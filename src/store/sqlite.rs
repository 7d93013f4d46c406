//! The embedded SQLite backend: one file in the home, shared by every
//! process on this machine.
//!
//! It implements the storage seam (`backend.rs`): [`SqliteConnection`] and
//! its transactions, with all of SQLite's SQL. Concurrency: WAL mode,
//! `synchronous=FULL` (a commit is on disk before a value or a success is
//! reported), a 30 s busy timeout, and every write transaction starts
//! `IMMEDIATE`, the serialization point: writers queue on the lock instead
//! of failing on a read-to-write upgrade. The WAL outlives each connection
//! and is truncated once it passes 256 KiB when a store closes (most
//! connections live for one short CLI command, and SQLite's own checkpoint
//! on close cost each about 1 ms of syncs).
//!
//! Schema versions are `PRAGMA user_version`, migrated in one immediate
//! transaction when a store opens.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{params, OptionalExtension};

use super::audit::{Filter, Record};
use super::backend::{
    AuditRow, Connection, DbError, DbErrorKind, DbResult, RecordRow, RefRow, SandboxRow, SecretRow,
    TokenRow, Tx, VaultRow, VersionRow, WrappedKeyRow, KEPT_VERSIONS,
};
use super::crypto::SealedSecret;

/// The schema version this build writes (`PRAGMA user_version`).
/// 4: the key check says whether the audit chain is keyed (an older build
/// must refuse such a store as newer, not as "written under another key").
/// 5: sandboxes record the node that made them.
/// 6: the supervisor's records (deployments, agent runs).
/// 7: a secret's purpose.
/// 8: tokens that expire.
/// 9: no `audit_by_secret` index. No query could use it (the audit filter's
/// `?1 IS NULL OR vault = ?1` scans from the newest record), and keeping it
/// cost every injected secret a write to its own index page: with 100
/// grants, 120 of the commit's 121 WAL pages, about 250 us a grant.
pub const SCHEMA_VERSION: i64 = 9;
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema as of version 3; later versions are [`MIGRATIONS`].
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

/// What each version after 3 changes, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (4, ""),
    (
        5,
        "ALTER TABLE sandboxes ADD COLUMN node TEXT NOT NULL DEFAULT ''",
    ),
    (
        6,
        "CREATE TABLE IF NOT EXISTS records (
            kind        TEXT NOT NULL,
            id          TEXT NOT NULL,
            parent      TEXT NOT NULL,
            data        TEXT NOT NULL,
            node        TEXT NOT NULL DEFAULT '',
            lease_until INTEGER NOT NULL DEFAULT 0,
            updated_at  INTEGER NOT NULL,
            PRIMARY KEY (kind, id)
        );
        CREATE INDEX IF NOT EXISTS records_by_parent ON records (kind, parent);",
    ),
    (
        7,
        "ALTER TABLE secrets ADD COLUMN purpose TEXT NOT NULL DEFAULT 'Other'",
    ),
    (8, "ALTER TABLE tokens ADD COLUMN expires_at INTEGER"),
    (9, "DROP INDEX IF EXISTS audit_by_secret"),
];

/// WAL size above which closing a store truncates it.
pub const WAL_TRUNCATE_BYTES: u64 = 256 * 1024;

fn db_error(e: rusqlite::Error) -> DbError {
    let kind = match &e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            DbErrorKind::Conflict
        }
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(code.code, rusqlite::ErrorCode::CannotOpen) =>
        {
            DbErrorKind::Unavailable
        }
        _ => DbErrorKind::Other,
    };
    DbError::new(kind, e.to_string())
}

trait Db<T> {
    fn db(self) -> DbResult<T>;
}

impl<T> Db<T> for rusqlite::Result<T> {
    fn db(self) -> DbResult<T> {
        self.map_err(db_error)
    }
}

/// Applies the per-connection settings every shroud connection uses.
/// Waits for a lock another connection holds, for up to [`BUSY_TIMEOUT`]:
/// SQLite's own handler sleeps 1, 2, 5, 10 ... 100 ms, far longer than a
/// commit here holds the lock, so concurrent commands queued behind each
/// other's sleeps. This one checks every 100 us for the first 20 ms, then
/// every 2 ms.
fn wait_for_lock(tries_so_far: i32) -> bool {
    const FAST_TRIES: i32 = 200;
    const FAST: Duration = Duration::from_micros(100);
    const SLOW: Duration = Duration::from_millis(2);
    let slow_tries = (BUSY_TIMEOUT.as_micros() / SLOW.as_micros()) as i32;
    if tries_so_far >= FAST_TRIES + slow_tries {
        return false;
    }
    std::thread::sleep(if tries_so_far < FAST_TRIES {
        FAST
    } else {
        SLOW
    });
    true
}

/// The write-ahead log SQLite keeps beside the database file `path`.
pub fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Makes the names of a database and WAL just created durable, as SQLite
/// would have at the first commit had it not been built with
/// `SQLITE_DISABLE_DIRSYNC` (see `.cargo/config.toml`). Best effort, as in
/// SQLite: some file systems cannot sync a directory.
fn sync_directory_of(path: &Path) {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Err(e) = super::home::sync_dir(dir) {
        tracing::debug!(error = %e, "syncing the store's directory");
    }
}

fn configure(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(wait_for_lock))?;
    // Most connections live for one short CLI command. SQLite's default
    // checkpoint on close (re-sync the WAL, sync the database, delete the WAL
    // and re-create it next time) costs every command ~1 ms of syncs; the WAL
    // is kept instead and truncated by `close` once it grows.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )?;
    // Switching a new file to WAL needs a lock SQLite does not wait for
    // with the busy handler (processes racing to create one home): retry.
    let started = std::time::Instant::now();
    let mode: String = loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(code, _))
                if matches!(
                    code.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => break other?,
        }
    };
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        tracing::warn!(%mode, "SQLite did not switch to WAL mode");
    }
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
}

/// A connection to a SQLite store: the home's file, or (for a home that does
/// not exist yet) a private in-memory database.
pub struct SqliteConnection {
    conn: rusqlite::Connection,
    /// The file, `None` in memory.
    path: Option<PathBuf>,
    /// The last write was [`Connection::write_relaxed`]: `synchronous` is
    /// `NORMAL` until the next durable one sets it back.
    relaxed: bool,
}

impl SqliteConnection {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open_file(path: &Path) -> DbResult<Self> {
        let created = std::fs::symlink_metadata(path).is_err()
            || std::fs::symlink_metadata(wal_path(path)).is_err();
        let conn = rusqlite::Connection::open(path).db()?;
        configure(&conn).db()?;
        if created {
            sync_directory_of(path);
        }
        Ok(SqliteConnection {
            conn,
            path: Some(path.to_owned()),
            relaxed: false,
        })
    }

    /// A private in-memory database.
    pub fn open_memory() -> DbResult<Self> {
        let conn = rusqlite::Connection::open_in_memory().db()?;
        configure(&conn).db()?;
        Ok(SqliteConnection {
            conn,
            path: None,
            relaxed: false,
        })
    }

    /// The schema version found in the database (0 when new).
    pub fn schema_version(&self) -> DbResult<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .db()
    }

    /// Brings the schema to [`SCHEMA_VERSION`] in one immediate transaction
    /// (so two processes opening a new home at once do it once).
    pub fn migrate(&mut self) -> DbResult<()> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .db()?;
        let found: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .db()?;
        if found < SCHEMA_VERSION {
            if found < 3 {
                tx.execute_batch(SCHEMA).db()?;
            }
            for (version, sql) in MIGRATIONS {
                // A brand-new database gets the base schema, then every step.
                if *version > found.max(3) && !sql.is_empty() {
                    tx.execute_batch(sql).db()?;
                }
            }
            tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                .db()?;
        }
        tx.commit().db()
    }
}

impl Drop for SqliteConnection {
    /// When the WAL has grown past [`WAL_TRUNCATE_BYTES`], copy it into the
    /// database and truncate it. Each process that opens the store rebuilds
    /// the WAL index by reading the WAL, so keeping it short keeps opening
    /// cheap. Best effort: a busy database is left for the next closer.
    fn drop(&mut self) {
        let Some(path) = &self.path else { return };
        let size = std::fs::metadata(wal_path(path))
            .map(|m| m.len())
            .unwrap_or(0);
        if size > WAL_TRUNCATE_BYTES {
            let _ = self.conn.busy_timeout(Duration::from_millis(200));
            if let Err(e) = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            {
                tracing::debug!(error = %e, "WAL checkpoint deferred");
            }
        }
    }
}

impl SqliteConnection {
    /// An immediate write transaction, its commit synced or (`relaxed`)
    /// not. SQLite takes the setting only outside a transaction, so it is
    /// set here, and set back by the next durable write.
    fn begin_write(&mut self, relaxed: bool) -> DbResult<Box<dyn Tx + '_>> {
        if relaxed != self.relaxed {
            let level = if relaxed { "NORMAL" } else { "FULL" };
            self.conn
                .execute_batch(&format!("PRAGMA synchronous = {level}"))
                .db()?;
            self.relaxed = relaxed;
        }
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .db()?;
        Ok(Box::new(SqliteTx::Write(tx)))
    }
}

impl Connection for SqliteConnection {
    fn read(&mut self) -> DbResult<Box<dyn Tx + '_>> {
        Ok(Box::new(SqliteTx::Read(&self.conn)))
    }

    fn write(&mut self) -> DbResult<Box<dyn Tx + '_>> {
        self.begin_write(false)
    }

    /// `synchronous=NORMAL` until the next [`Connection::write`]: the WAL is
    /// not synced at this commit (it is at the next durable one).
    fn write_relaxed(&mut self) -> DbResult<Box<dyn Tx + '_>> {
        self.begin_write(true)
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => "memory".to_owned(),
        }
    }
}

/// A transaction: a plain read on the connection, or an immediate write.
enum SqliteTx<'a> {
    Read(&'a rusqlite::Connection),
    Write(rusqlite::Transaction<'a>),
}

impl SqliteTx<'_> {
    fn conn(&self) -> &rusqlite::Connection {
        match self {
            SqliteTx::Read(conn) => conn,
            SqliteTx::Write(tx) => tx,
        }
    }
}

fn secret_row_from(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<SecretRow> {
    Ok(SecretRow {
        version: row.get::<_, i64>(at)? as u64,
        description: row.get(at + 1)?,
        created_at: row.get(at + 2)?,
        updated_at: row.get(at + 3)?,
        expires_at: row.get(at + 4)?,
        purpose: row.get(at + 5)?,
    })
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        name: row.get(0)?,
        token_hash: row.get(1)?,
        grants: row.get(2)?,
        user: row.get(3)?,
        created_at: row.get(4)?,
        revoked_at: row.get(5)?,
        expires_at: row.get(6)?,
    })
}

const TOKEN_COLUMNS: &str =
    "name, token_hash, grants, user_name, created_at, revoked_at, expires_at";

const RECORD_COLUMNS: &str = "kind, id, parent, data, node, lease_until, updated_at";

fn record_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok(RecordRow {
        kind: row.get(0)?,
        id: row.get(1)?,
        parent: row.get(2)?,
        data: row.get(3)?,
        node: row.get(4)?,
        lease_until: row.get(5)?,
        updated_at: row.get(6)?,
    })
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
        node: row.get(7)?,
    })
}

const SANDBOX_COLUMNS: &str =
    "id, template, vault, config, created_at, last_exit, last_exec_at, node";

const AUDIT_COLUMNS: &str = "seq, ts_ms, actor, action, vault, secret, version, outcome";

/// Decodes a stored audit row; `None` when a field no longer has its type
/// (SQLite keeps whatever value an edit gives it).
fn decode_record(row: &rusqlite::Row<'_>) -> Option<Record> {
    fn int(v: ValueRef<'_>) -> Option<i64> {
        match v {
            ValueRef::Integer(i) => Some(i),
            _ => None,
        }
    }
    fn text(v: ValueRef<'_>) -> Option<String> {
        match v {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).ok(),
            _ => None,
        }
    }
    fn opt<T>(v: ValueRef<'_>, f: fn(ValueRef<'_>) -> Option<T>) -> Option<Option<T>> {
        match v {
            ValueRef::Null => Some(None),
            other => f(other).map(Some),
        }
    }
    Some(Record {
        seq: u64::try_from(int(row.get_ref(0).ok()?)?).ok()?,
        ts_ms: int(row.get_ref(1).ok()?)?,
        actor: text(row.get_ref(2).ok()?)?,
        action: text(row.get_ref(3).ok()?)?,
        vault: opt(row.get_ref(4).ok()?, text)?,
        secret: opt(row.get_ref(5).ok()?, text)?,
        version: opt(row.get_ref(6).ok()?, int)?
            .map(u64::try_from)
            .transpose()
            .ok()?,
        outcome: text(row.get_ref(7).ok()?)?,
    })
}

/// A row for display: what decodes is shown, what does not reads as `?`.
fn record_for_display(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    if let Some(record) = decode_record(row) {
        return Ok(record);
    }
    let shown = |i: usize| match row.get_ref(i) {
        Ok(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
        Ok(ValueRef::Integer(n)) => n.to_string(),
        _ => "?".to_owned(),
    };
    Ok(Record {
        seq: row.get::<_, i64>(0).map(|s| s as u64).unwrap_or(0),
        ts_ms: row.get(1).unwrap_or(0),
        actor: shown(2),
        action: shown(3),
        vault: Some(shown(4)),
        secret: Some(shown(5)),
        version: None,
        outcome: shown(7),
    })
}

fn blob(row: &rusqlite::Row<'_>, i: usize) -> Vec<u8> {
    match row.get_ref(i) {
        Ok(ValueRef::Blob(b)) => b.to_vec(),
        _ => Vec::new(),
    }
}

impl Tx for SqliteTx<'_> {
    fn commit(self: Box<Self>) -> DbResult<()> {
        match *self {
            SqliteTx::Read(_) => Ok(()),
            SqliteTx::Write(tx) => tx.commit().db(),
        }
    }

    fn meta_get(&mut self, key: &str) -> DbResult<Option<Vec<u8>>> {
        self.conn()
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |row| row.get(0)).optional())
            .db()
    }

    fn meta_put(&mut self, key: &str, value: &[u8]) -> DbResult<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute(params![key, value]))
            .map(drop)
            .db()
    }

    fn meta_put_new(&mut self, key: &str, value: &[u8]) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
                params![key, value],
            )
            .map(drop)
            .db()
    }

    fn meta_delete(&mut self, key: &str) -> DbResult<()> {
        self.conn()
            .execute("DELETE FROM meta WHERE key = ?1", [key])
            .map(drop)
            .db()
    }

    fn meta_with_prefix(&mut self, prefix: &str) -> DbResult<Vec<(String, Vec<u8>)>> {
        let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
        self.conn()
            .prepare("SELECT key, value FROM meta WHERE key LIKE ?1 ESCAPE '\\' ORDER BY key")
            .and_then(|mut s| {
                s.query_map([pattern], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .db()
    }

    fn ensure_vault(&mut self, vault: &str, now_ms: i64) -> DbResult<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO vaults (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![vault, now_ms]))
            .map(drop)
            .db()
    }

    fn list_vaults(&mut self, now_ms: i64) -> DbResult<Vec<VaultRow>> {
        self.conn()
            .prepare(
                "SELECT v.name, v.created_at,
                   (SELECT COUNT(*) FROM secrets s WHERE s.vault = v.name
                      AND (s.expires_at IS NULL OR s.expires_at > ?1)),
                   (SELECT COUNT(*) FROM vars r WHERE r.vault = v.name)
                 FROM vaults v ORDER BY v.name",
            )
            .and_then(|mut s| {
                s.query_map([now_ms], |row| {
                    Ok(VaultRow {
                        name: row.get(0)?,
                        created_at: row.get(1)?,
                        secrets: row.get::<_, i64>(2)? as u64,
                        vars: row.get::<_, i64>(3)? as u64,
                    })
                })?
                .collect()
            })
            .db()
    }

    fn secret_row(&mut self, vault: &str, name: &str) -> DbResult<Option<SecretRow>> {
        self.conn()
            .prepare_cached(
                "SELECT version, description, created_at, updated_at, expires_at, purpose
                 FROM secrets WHERE vault = ?1 AND name = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![vault, name], |row| secret_row_from(row, 0))
                    .optional()
            })
            .db()
    }

    fn put_secret_row(&mut self, vault: &str, name: &str, row: &SecretRow) -> DbResult<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO secrets (vault, name, version, description, created_at, updated_at, expires_at, purpose)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (vault, name) DO UPDATE SET
                   version = excluded.version, description = excluded.description,
                   created_at = excluded.created_at, updated_at = excluded.updated_at,
                   expires_at = excluded.expires_at, purpose = excluded.purpose",
            )
            .and_then(|mut s| {
                s.execute(params![
                    vault,
                    name,
                    row.version as i64,
                    row.description,
                    row.created_at,
                    row.updated_at,
                    row.expires_at,
                    row.purpose
                ])
            })
            .map(drop)
            .db()
    }

    fn insert_version(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
        sealed: &SealedSecret,
        now_ms: i64,
    ) -> DbResult<()> {
        let conn = self.conn();
        conn.prepare_cached(
            "INSERT INTO secret_versions (vault, name, version, wrapped_key, sealed_value, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                vault,
                name,
                version as i64,
                sealed.wrapped_key,
                sealed.sealed_value,
                now_ms
            ])
        })
        .db()?;
        conn.prepare_cached(
            "DELETE FROM secret_versions WHERE vault = ?1 AND name = ?2 AND version <= ?3",
        )
        .and_then(|mut s| s.execute(params![vault, name, version as i64 - KEPT_VERSIONS as i64]))
        .map(drop)
        .db()
    }

    fn version_row(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
    ) -> DbResult<Option<VersionRow>> {
        self.conn()
            .prepare_cached(
                "SELECT wrapped_key, sealed_value, created_at FROM secret_versions
                 WHERE vault = ?1 AND name = ?2 AND version = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![vault, name, version as i64], |row| {
                    Ok(VersionRow {
                        sealed: SealedSecret {
                            wrapped_key: row.get(0)?,
                            sealed_value: row.get(1)?,
                        },
                        created_at: row.get(2)?,
                    })
                })
                .optional()
            })
            .db()
    }

    fn version_list(&mut self, vault: &str, name: &str) -> DbResult<Vec<(u64, i64)>> {
        self.conn()
            .prepare_cached(
                "SELECT version, created_at FROM secret_versions
                 WHERE vault = ?1 AND name = ?2 ORDER BY version",
            )
            .and_then(|mut s| {
                s.query_map(params![vault, name], |row| {
                    Ok((row.get::<_, i64>(0)? as u64, row.get(1)?))
                })?
                .collect()
            })
            .db()
    }

    fn delete_secret(&mut self, vault: &str, name: &str) -> DbResult<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM secret_versions WHERE vault = ?1 AND name = ?2",
            params![vault, name],
        )
        .db()?;
        conn.execute(
            "DELETE FROM secrets WHERE vault = ?1 AND name = ?2",
            params![vault, name],
        )
        .map(drop)
        .db()
    }

    fn list_secret_rows(&mut self, vault: &str, now_ms: i64) -> DbResult<Vec<(String, SecretRow)>> {
        self.conn()
            .prepare_cached(
                "SELECT name, version, description, created_at, updated_at, expires_at, purpose FROM secrets
                 WHERE vault = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY name",
            )
            .and_then(|mut s| {
                s.query_map(params![vault, now_ms], |row| {
                    Ok((row.get(0)?, secret_row_from(row, 1)?))
                })?
                .collect()
            })
            .db()
    }

    fn list_secret_names(&mut self, vault: &str, now_ms: i64) -> DbResult<Vec<String>> {
        self.conn()
            .prepare_cached(
                "SELECT name FROM secrets
                 WHERE vault = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY name",
            )
            .and_then(|mut s| {
                s.query_map(params![vault, now_ms], |row| row.get(0))?
                    .collect()
            })
            .db()
    }

    fn all_wrapped_keys(&mut self) -> DbResult<Vec<WrappedKeyRow>> {
        self.conn()
            .prepare("SELECT vault, name, version, wrapped_key FROM secret_versions")
            .and_then(|mut s| {
                s.query_map([], |row| {
                    Ok(WrappedKeyRow {
                        vault: row.get(0)?,
                        name: row.get(1)?,
                        version: row.get::<_, i64>(2)? as u64,
                        wrapped_key: row.get(3)?,
                    })
                })?
                .collect()
            })
            .db()
    }

    fn update_wrapped_key(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
        wrapped_key: &[u8],
    ) -> DbResult<()> {
        self.conn()
            .prepare_cached(
                "UPDATE secret_versions SET wrapped_key = ?4 WHERE vault = ?1 AND name = ?2 AND version = ?3",
            )
            .and_then(|mut s| s.execute(params![vault, name, version as i64, wrapped_key]))
            .map(drop)
            .db()
    }

    fn put_var(&mut self, vault: &str, name: &str, value: &str, now_ms: i64) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO vars (vault, name, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (vault, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![vault, name, value, now_ms],
            )
            .map(drop)
            .db()
    }

    fn get_var(&mut self, vault: &str, name: &str) -> DbResult<Option<(String, i64)>> {
        self.conn()
            .query_row(
                "SELECT value, updated_at FROM vars WHERE vault = ?1 AND name = ?2",
                params![vault, name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .db()
    }

    fn list_vars(&mut self, vault: &str) -> DbResult<Vec<(String, String, i64)>> {
        self.conn()
            .prepare("SELECT name, value, updated_at FROM vars WHERE vault = ?1 ORDER BY name")
            .and_then(|mut s| {
                s.query_map([vault], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect()
            })
            .db()
    }

    fn delete_var(&mut self, vault: &str, name: &str) -> DbResult<bool> {
        self.conn()
            .execute(
                "DELETE FROM vars WHERE vault = ?1 AND name = ?2",
                params![vault, name],
            )
            .map(|n| n > 0)
            .db()
    }

    fn insert_token(&mut self, row: &TokenRow) -> DbResult<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ),
                params![
                    row.name,
                    row.token_hash,
                    row.grants,
                    row.user,
                    row.created_at,
                    row.revoked_at,
                    row.expires_at
                ],
            )
            .map(drop)
            .db()
    }

    fn token_by_name(&mut self, name: &str) -> DbResult<Option<TokenRow>> {
        self.conn()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE name = ?1"),
                [name],
                token_from_row,
            )
            .optional()
            .db()
    }

    fn token_by_hash(&mut self, hash: &[u8]) -> DbResult<Option<TokenRow>> {
        self.conn()
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?1"
            ))
            .and_then(|mut s| s.query_row([hash], token_from_row).optional())
            .db()
    }

    fn list_tokens(&mut self) -> DbResult<Vec<TokenRow>> {
        self.conn()
            .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name"))
            .and_then(|mut s| s.query_map([], token_from_row)?.collect())
            .db()
    }

    fn revoke_token(&mut self, name: &str, at: i64) -> DbResult<bool> {
        self.conn()
            .execute(
                "UPDATE tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
                params![name, at],
            )
            .map(|n| n > 0)
            .db()
    }

    fn insert_sandbox(&mut self, row: &SandboxRow) -> DbResult<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO sandboxes ({SANDBOX_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    row.id,
                    row.template,
                    row.vault,
                    row.config,
                    row.created_at,
                    row.last_exit,
                    row.last_exec_at,
                    row.node
                ],
            )
            .map(drop)
            .db()
    }

    fn sandbox(&mut self, id: &str) -> DbResult<Option<SandboxRow>> {
        self.conn()
            .query_row(
                &format!("SELECT {SANDBOX_COLUMNS} FROM sandboxes WHERE id = ?1"),
                [id],
                sandbox_from_row,
            )
            .optional()
            .db()
    }

    fn list_sandboxes(&mut self) -> DbResult<Vec<SandboxRow>> {
        self.conn()
            .prepare(&format!(
                "SELECT {SANDBOX_COLUMNS} FROM sandboxes ORDER BY created_at, id"
            ))
            .and_then(|mut s| s.query_map([], sandbox_from_row)?.collect())
            .db()
    }

    fn delete_sandbox(&mut self, id: &str) -> DbResult<bool> {
        self.conn()
            .execute("DELETE FROM sandboxes WHERE id = ?1", [id])
            .map(|n| n > 0)
            .db()
    }

    fn record_sandbox_exit(&mut self, id: &str, code: i64, at: i64) -> DbResult<()> {
        self.conn()
            .execute(
                "UPDATE sandboxes SET last_exit = ?2, last_exec_at = ?3 WHERE id = ?1",
                params![id, code, at],
            )
            .map(drop)
            .db()
    }

    fn put_record(&mut self, row: &RecordRow) -> DbResult<()> {
        self.conn()
            .execute(
                "INSERT INTO records (kind, id, parent, data, updated_at, node, lease_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (kind, id) DO UPDATE SET parent = excluded.parent,
                   data = excluded.data, updated_at = excluded.updated_at",
                params![
                    row.kind,
                    row.id,
                    row.parent,
                    row.data,
                    row.updated_at,
                    row.node,
                    row.lease_until
                ],
            )
            .map(drop)
            .db()
    }

    fn update_record(&mut self, row: &RecordRow) -> DbResult<bool> {
        self.conn()
            .execute(
                "UPDATE records SET parent = ?3, data = ?4, updated_at = ?5
                 WHERE kind = ?1 AND id = ?2",
                params![row.kind, row.id, row.parent, row.data, row.updated_at],
            )
            .map(|n| n > 0)
            .db()
    }

    fn record(&mut self, kind: &str, id: &str) -> DbResult<Option<RecordRow>> {
        self.conn()
            .query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM records WHERE kind = ?1 AND id = ?2"),
                [kind, id],
                record_row,
            )
            .optional()
            .db()
    }

    fn list_records(&mut self, kind: &str, parent: Option<&str>) -> DbResult<Vec<RecordRow>> {
        self.conn()
            .prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM records
                 WHERE kind = ?1 AND (?2 IS NULL OR parent = ?2) ORDER BY updated_at, id"
            ))
            .and_then(|mut s| s.query_map(params![kind, parent], record_row)?.collect())
            .db()
    }

    fn delete_record(&mut self, kind: &str, id: &str, children: Option<&str>) -> DbResult<bool> {
        let conn = self.conn();
        if let Some(child_kind) = children {
            conn.execute(
                "DELETE FROM records WHERE kind = ?1 AND parent = ?2",
                [child_kind, id],
            )
            .db()?;
        }
        conn.execute(
            "DELETE FROM records WHERE kind = ?1 AND id = ?2",
            [kind, id],
        )
        .map(|n| n > 0)
        .db()
    }

    fn claim_records(
        &mut self,
        kind: &str,
        node: &str,
        now: i64,
        until: i64,
    ) -> DbResult<Vec<String>> {
        self.conn()
            .prepare(
                "UPDATE records SET node = ?2, lease_until = ?4
                 WHERE kind = ?1 AND (node = ?2 OR lease_until < ?3) RETURNING id",
            )
            .and_then(|mut s| {
                s.query_map(params![kind, node, now, until], |row| row.get(0))?
                    .collect()
            })
            .db()
    }

    fn release_record(&mut self, kind: &str, id: &str, node: &str) -> DbResult<()> {
        self.conn()
            .execute(
                "UPDATE records SET lease_until = 0 WHERE kind = ?1 AND id = ?2 AND node = ?3",
                [kind, id, node],
            )
            .map(drop)
            .db()
    }

    fn insert_ref(&mut self, token_hash: &[u8], row: &RefRow, now_ms: i64) -> DbResult<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM secret_refs WHERE expires_at <= ?1", [now_ms])
            .db()?;
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
        )
        .map(drop)
        .db()
    }

    fn ref_row(&mut self, token_hash: &[u8]) -> DbResult<Option<RefRow>> {
        self.conn()
            .query_row(
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
            .db()
    }

    fn audit_insert(&mut self, record: &Record, prev_mac: &[u8], mac: &[u8]) -> DbResult<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO audit (seq, ts_ms, actor, action, vault, secret, version, outcome, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    record.seq as i64,
                    record.ts_ms,
                    record.actor,
                    record.action,
                    record.vault,
                    record.secret,
                    record.version.map(|v| v as i64),
                    record.outcome,
                    prev_mac,
                    mac,
                ])
            })
            .map(drop)
            .db()
    }

    fn audit_list(&mut self, filter: &Filter) -> DbResult<Vec<Record>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit
             WHERE (?1 IS NULL OR vault = ?1) AND (?2 IS NULL OR secret = ?2)
             ORDER BY seq DESC LIMIT ?3"
        );
        let limit = filter
            .limit
            .map(|l| l.min(i64::MAX as u64) as i64)
            .unwrap_or(-1);
        let mut records = self
            .conn()
            .prepare(&sql)
            .and_then(|mut s| {
                s.query_map(
                    params![filter.vault, filter.secret, limit],
                    record_for_display,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .db()?;
        records.reverse();
        Ok(records)
    }

    fn audit_rows(&mut self) -> DbResult<Vec<AuditRow>> {
        self.conn()
            .prepare(&format!(
                "SELECT {AUDIT_COLUMNS}, prev_hash, hash FROM audit ORDER BY seq"
            ))
            .and_then(|mut s| {
                s.query_map([], |row| {
                    Ok(AuditRow {
                        seq: row.get::<_, i64>(0).map(|s| s as u64).unwrap_or(0),
                        record: decode_record(row),
                        prev_mac: blob(row, 8),
                        mac: blob(row, 9),
                    })
                })?
                .collect()
            })
            .db()
    }

    fn audit_relink(&mut self, seq: u64, prev_mac: &[u8], mac: &[u8]) -> DbResult<()> {
        self.conn()
            .prepare_cached("UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE seq = ?1")
            .and_then(|mut s| s.execute(params![seq as i64, prev_mac, mac]))
            .map(drop)
            .db()
    }

    fn audit_any(&mut self) -> DbResult<bool> {
        self.conn()
            .query_row("SELECT 1 FROM audit LIMIT 1", [], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .db()
    }
}
