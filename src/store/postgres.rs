//! The PostgreSQL backend: one database shared by several `shroud serve`
//! nodes (and any CLI pointed at it with `--store postgres://...`).
//!
//! It implements the storage seam (`backend.rs`) with the sync `postgres`
//! crate, which fits the store's synchronous design and the blocking
//! threads the API runs it on (an async client would put every CLI call on
//! an executor for nothing). [`Connection::write`] is the serialization
//! point: its first statement locks the audit head row (`SELECT ... FOR
//! UPDATE`), so every change, on every node, runs one at a time in the
//! order the head is taken, and version numbers and the audit chain stay
//! exact however many writers there are. Reads lock nothing. Statements are
//! prepared once per connection.
//!
//! Migrations are versioned (the `shroud_schema` table) and applied when a
//! store opens, under a transaction-level advisory lock, so two nodes that
//! start at once apply each step once. TLS: `sslmode=require` (and
//! `verify-ca`, `verify-full`) connect over rustls and verify the server's
//! certificate against the Mozilla roots, or the PEM file of `sslrootcert`;
//! unlike libpq's `require`, an unverified certificate is refused (a
//! man in the middle would see sealed values only, but also every token
//! hash and reference). Without `sslmode`, or with `disable` or `prefer`,
//! the connection is plain TCP.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use super::audit::{Filter, Record};
use super::backend::{
    AuditRow, Connection, DbError, DbErrorKind, DbResult, RecordRow, RefRow, SandboxRow, SecretRow,
    TokenRow, Tx, VaultRow, VersionRow, WrappedKeyRow, KEPT_VERSIONS,
};
use super::crypto::SealedSecret;

/// The schema version this build writes (rows of `shroud_schema`).
/// 2: the supervisor's records (deployments, agent runs).
/// 3: a secret's purpose.
/// 4: tokens that expire.
pub const SCHEMA_VERSION: i64 = 4;

/// Every step of the schema, in order.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS vaults (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
    vault TEXT NOT NULL, name TEXT NOT NULL, version BIGINT NOT NULL, description TEXT,
    created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, expires_at BIGINT,
    PRIMARY KEY (vault, name));
CREATE TABLE IF NOT EXISTS secret_versions (
    vault TEXT NOT NULL, name TEXT NOT NULL, version BIGINT NOT NULL,
    wrapped_key BYTEA NOT NULL, sealed_value BYTEA NOT NULL, created_at BIGINT NOT NULL,
    PRIMARY KEY (vault, name, version));
CREATE TABLE IF NOT EXISTS vars (
    vault TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, updated_at BIGINT NOT NULL,
    PRIMARY KEY (vault, name));
CREATE TABLE IF NOT EXISTS secret_refs (
    token_hash BYTEA PRIMARY KEY, owner TEXT NOT NULL, vault TEXT NOT NULL, name TEXT NOT NULL,
    created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS secret_refs_expiry ON secret_refs (expires_at);
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY, ts_ms BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    vault TEXT, secret TEXT, version BIGINT, outcome TEXT NOT NULL,
    prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS audit_by_secret ON audit (vault, secret);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY, token_hash BYTEA NOT NULL UNIQUE, grants TEXT NOT NULL,
    user_name TEXT, created_at BIGINT NOT NULL, revoked_at BIGINT);
CREATE TABLE IF NOT EXISTS sandboxes (
    id TEXT PRIMARY KEY, template TEXT NOT NULL, vault TEXT NOT NULL, config TEXT NOT NULL,
    created_at BIGINT NOT NULL, last_exit BIGINT, last_exec_at BIGINT,
    node TEXT NOT NULL DEFAULT '');
-- The row every write transaction locks first: the serialization point.
INSERT INTO meta (key, value) VALUES ('audit_head', ''::bytea) ON CONFLICT (key) DO NOTHING;
",
    ),
    (
        2,
        "
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, id TEXT NOT NULL, parent TEXT NOT NULL, data TEXT NOT NULL,
    node TEXT NOT NULL DEFAULT '', lease_until BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL, PRIMARY KEY (kind, id));
CREATE INDEX IF NOT EXISTS records_by_parent ON records (kind, parent);
",
    ),
    (
        3,
        "ALTER TABLE secrets ADD COLUMN IF NOT EXISTS purpose TEXT NOT NULL DEFAULT 'Other';",
    ),
    (
        4,
        "ALTER TABLE tokens ADD COLUMN IF NOT EXISTS expires_at BIGINT;",
    ),
];

/// The advisory lock migrations take (any constant shared by all nodes).
const MIGRATION_LOCK: i64 = 0x7368_726f_7564;

/// A `postgres://` URL, kept whole (it may hold a password) and never
/// printed: its [`std::fmt::Debug`] and [`PgTarget::describe`] show
/// `host:port/db` only.
#[derive(Clone, PartialEq, Eq)]
pub struct PgTarget {
    url: String,
    describe: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTarget({})", self.describe)
    }
}

/// How to speak to the server, from the URL's `sslmode`.
enum Tls {
    Plain,
    /// Verified TLS, with these extra roots (`sslrootcert`) or the Mozilla ones.
    Verified(Option<String>),
}

impl PgTarget {
    /// Checks a `postgres://user[:password]@host[:port]/db[?params]` URL.
    /// Errors name the problem, never the URL (it may hold a password).
    pub fn parse(url: &str) -> Result<PgTarget, String> {
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err("a PostgreSQL store is a postgres:// URL".to_owned());
        }
        let (config, _) = split_params(url)?;
        let parsed: postgres::Config = config
            .parse()
            .map_err(|e| format!("not a valid postgres:// URL ({e})"))?;
        let host = match parsed.get_hosts().first() {
            Some(postgres::config::Host::Tcp(host)) => host.clone(),
            Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = parsed.get_ports().first().copied().unwrap_or(5432);
        let db = parsed
            .get_dbname()
            .or(parsed.get_user())
            .unwrap_or("postgres")
            .to_owned();
        Ok(PgTarget {
            url: url.to_owned(),
            describe: format!("{host}:{port}/{db}"),
        })
    }

    /// `host:port/db`: for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }
}

/// The URL without the parameters we handle ourselves (`sslmode` beyond
/// what the driver knows, `sslrootcert`), and how to speak TLS.
fn split_params(url: &str) -> Result<(String, Tls), String> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, query),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut mode = "disable".to_owned();
    let mut root = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => mode = value.to_owned(),
            "sslrootcert" => root = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let tls = match mode.as_str() {
        "disable" | "prefer" | "allow" => Tls::Plain,
        "require" | "verify-ca" | "verify-full" => {
            kept.push("sslmode=require");
            Tls::Verified(root)
        }
        other => {
            return Err(format!(
                "unknown sslmode `{other}` (disable, prefer, require, verify-ca, verify-full)"
            ))
        }
    };
    if matches!(tls, Tls::Plain) {
        kept.push("sslmode=disable");
    }
    if !query.contains("connect_timeout=") {
        kept.push("connect_timeout=5");
    }
    Ok((format!("{base}?{}", kept.join("&")), tls))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pg_error(e: postgres::Error) -> DbError {
    use postgres::error::SqlState;
    let kind = match e.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            DbErrorKind::Conflict
        }
        Some(code)
            if *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || code.code().starts_with("08") =>
        {
            DbErrorKind::Unavailable
        }
        Some(_) => DbErrorKind::Other,
        // No SQL state: the connection itself failed (closed, refused, I/O).
        None => DbErrorKind::Unavailable,
    };
    // The driver's message names the failure, never a parameter's value.
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            // The driver's own words, then each cause (a TLS handshake
            // says why it failed only there).
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message = format!("{message}: {text}");
                }
                source = cause.source();
            }
            message
        }
    };
    DbError::new(kind, message)
}

/// A failed connection: unavailable (worth trying again) when the server is
/// not there, is starting or stopping, or the network failed; any other
/// failure (authentication, a TLS certificate, a database that does not
/// exist) is not.
fn connect_error(e: postgres::Error) -> DbError {
    let network = {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut found = false;
        while let Some(current) = source {
            if let Some(io) = current.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind::*;
                found = matches!(
                    io.kind(),
                    ConnectionRefused
                        | ConnectionReset
                        | ConnectionAborted
                        | NotConnected
                        | AddrNotAvailable
                        | BrokenPipe
                        | TimedOut
                        | UnexpectedEof
                        | HostUnreachable
                        | NetworkUnreachable
                );
                break;
            }
            source = current.source();
        }
        found
    };
    let transient_state = e.code().is_some_and(|code| {
        *code == postgres::error::SqlState::CANNOT_CONNECT_NOW
            || *code == postgres::error::SqlState::ADMIN_SHUTDOWN
            || *code == postgres::error::SqlState::TOO_MANY_CONNECTIONS
            || code.code().starts_with("08")
    });
    let timed_out = e.to_string().contains("timeout");
    let mut error = pg_error(e);
    error.kind = if network || transient_state || timed_out {
        DbErrorKind::Unavailable
    } else {
        DbErrorKind::Other
    };
    error
}

trait Pg<T> {
    fn pg(self) -> DbResult<T>;
}

impl<T> Pg<T> for Result<T, postgres::Error> {
    fn pg(self) -> DbResult<T> {
        self.map_err(pg_error)
    }
}

/// A connection to a PostgreSQL store.
pub struct PgConnection {
    /// Always `Some` but while dropped.
    client: Option<Client>,
    describe: String,
    statements: HashMap<&'static str, Statement>,
}

const OPEN: &str = "a connection is open until dropped";

impl Drop for PgConnection {
    /// Closing a connection blocks on the driver's own runtime, which panics
    /// on a thread that runs async tasks (a server's state can be dropped
    /// there): such a close is handed to a thread of its own.
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            drop(client);
            return;
        }
        let _ = std::thread::Builder::new()
            .name("shroud-pg-close".to_owned())
            .spawn(move || drop(client));
    }
}

impl PgConnection {
    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect(OPEN)
    }

    /// Connects; an unreachable server is an `Unavailable` error naming
    /// `host:port/db` (never the password).
    pub fn connect(target: &PgTarget) -> DbResult<PgConnection> {
        let (url, tls) =
            split_params(&target.url).map_err(|e| DbError::new(DbErrorKind::Other, e))?;
        let config: postgres::Config = url
            .parse()
            .map_err(|e| DbError::new(DbErrorKind::Other, format!("not a valid URL ({e})")))?;
        let client = match tls {
            Tls::Plain => config.connect(postgres::NoTls),
            Tls::Verified(root) => config.connect(rustls_connector(root.as_deref())?),
        }
        .map_err(connect_error)?;
        Ok(PgConnection {
            client: Some(client),
            describe: target.describe.clone(),
            statements: HashMap::new(),
        })
    }

    /// Brings the schema to [`SCHEMA_VERSION`] (each step once, under an
    /// advisory lock, however many nodes start at once). Returns the
    /// version found before, or an error when the database is newer than
    /// this build.
    pub fn migrate(&mut self) -> DbResult<i64> {
        // Up to date (every open but the first few ever): no lock to wait
        // for. The schema only moves forward, so a version read outside the
        // lock that is current stays current.
        let current = match self
            .client()
            .query_one("SELECT COALESCE(MAX(version), 0) FROM shroud_schema", &[])
        {
            Ok(row) => row.get::<_, i64>(0),
            Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => 0,
            Err(e) => return Err(pg_error(e)),
        };
        if current >= SCHEMA_VERSION {
            return Ok(current);
        }
        let mut tx = self.client().transaction().pg()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .pg()?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS shroud_schema (version BIGINT PRIMARY KEY)")
            .pg()?;
        let found: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM shroud_schema", &[])
            .pg()?
            .get(0);
        if found > SCHEMA_VERSION {
            return Ok(found);
        }
        for (version, sql) in MIGRATIONS {
            if *version > found {
                tx.batch_execute(sql).pg()?;
                tx.execute(
                    "INSERT INTO shroud_schema (version) VALUES ($1)",
                    &[version],
                )
                .pg()?;
            }
        }
        tx.commit().pg()?;
        Ok(found)
    }
}

/// A rustls connector verifying against `root` (a PEM file) or the Mozilla roots.
fn rustls_connector(root: Option<&str>) -> DbResult<tokio_postgres_rustls::MakeRustlsConnect> {
    let tls_error = |m: String| DbError::new(DbErrorKind::Other, m);
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| tls_error(format!("sslrootcert {path}: {e}")))?;
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| tls_error(format!("sslrootcert {path}: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_error(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl Connection for PgConnection {
    fn read(&mut self) -> DbResult<Box<dyn Tx + '_>> {
        Ok(Box::new(PgTx {
            client: self.client.as_mut().expect(OPEN),
            statements: &mut self.statements,
            pending: WriteBehind::default(),
            in_transaction: false,
        }))
    }

    fn write(&mut self) -> DbResult<Box<dyn Tx + '_>> {
        // The serialization point: every change takes the audit head first.
        // Then the key check, which every write reads next, in a statement
        // of its own: one that started before the lock was granted would
        // read it as it was before a rotation that committed meanwhile (and
        // locking both rows in one statement deadlocks on their order). The
        // three go in one round trip (a simple query of several statements,
        // each with a snapshot of its own): a writer on another node waits
        // on the head for every round trip made while it is held.
        let mut tx = PgTx {
            client: self.client.as_mut().expect(OPEN),
            statements: &mut self.statements,
            pending: WriteBehind::default(),
            in_transaction: true,
        };
        let answers = tx
            .client
            .simple_query(
                // Hex whatever the server's `bytea_output` (a simple
                // query answers in text).
                "BEGIN;
                 SELECT encode(value, 'hex') FROM meta WHERE key = 'audit_head' FOR UPDATE;
                 SELECT encode(value, 'hex') FROM meta WHERE key = 'key_check'",
            )
            .pg()?;
        let mut values: [Option<Vec<u8>>; 3] = [None, None, None];
        let mut statement = 0;
        for answer in answers {
            match answer {
                postgres::SimpleQueryMessage::CommandComplete(_) => statement += 1,
                postgres::SimpleQueryMessage::Row(row) if statement < 3 => {
                    let text = row.get(0).unwrap_or_default();
                    values[statement] = Some(bytes_from_hex(text)?);
                }
                _ => {}
            }
        }
        let [_, head, key_check] = values;
        for (key, value) in LOCKED_META.into_iter().zip([head, key_check]) {
            tx.pending.meta.insert(key.to_owned(), value);
        }
        Ok(Box::new(tx))
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn is_usable(&self) -> bool {
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }
}

struct PgTx<'a> {
    client: &'a mut Client,
    statements: &'a mut HashMap<&'static str, Statement>,
    pending: WriteBehind,
    /// Inside `BEGIN` (a write transaction, until it commits or is rolled
    /// back); otherwise each statement commits on its own (reads).
    in_transaction: bool,
}

impl Drop for PgTx<'_> {
    /// A write transaction dropped uncommitted (an error, a panic) is
    /// rolled back, so the connection goes back to the pool clean (and a
    /// broken one is seen as broken).
    fn drop(&mut self) {
        if self.in_transaction {
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// The bytes of `encode(..., 'hex')`.
fn bytes_from_hex(text: &str) -> DbResult<Vec<u8>> {
    let bad = || DbError::new(DbErrorKind::Other, "a value not in hex form");
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return Err(bad());
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(bad)
        })
        .collect()
}

/// The meta rows a write transaction reads first (it locks the head).
const LOCKED_META: [&str; 2] = ["audit_head", "key_check"];

/// What a write transaction has read or written but not yet sent: a set of
/// secrets costs a round trip per statement otherwise (several per secret),
/// and every writer on every node waits on the audit head meanwhile. The
/// writes of the fast path (vaults, versions, secret rows, audit records,
/// the audit head) go in one statement at the next statement that could
/// see them, or at commit.
#[derive(Default)]
struct WriteBehind {
    /// Values of meta rows as this transaction sees them (`None`: absent).
    meta: HashMap<String, Option<Vec<u8>>>,
    /// The audit head in `meta` is still to be written.
    head_written: bool,
    vaults: Vec<(String, i64)>,
    vaults_seen: std::collections::HashSet<String>,
    /// Secret rows as this transaction sees them, read ahead or written.
    rows: HashMap<(String, String), Option<SecretRow>>,
    /// Secret rows (keys of `rows`) still to be written, first write first.
    rows_written: Vec<(String, String)>,
    versions: Vec<(String, String, u64, SealedSecret, i64)>,
    audit: Vec<(Record, Vec<u8>, Vec<u8>)>,
}

impl WriteBehind {
    fn is_empty(&self) -> bool {
        !self.head_written
            && self.vaults.is_empty()
            && self.rows_written.is_empty()
            && self.versions.is_empty()
            && self.audit.is_empty()
    }
}

/// Every held-back write of a transaction, in one statement (unnest over
/// arrays: one prepared statement whatever the count). Data-modifying WITH
/// queries run on one snapshot, so the versions a batch would prune at
/// once are never inserted, and the DELETE prunes older rows only. Lookups
/// by the arrays' rows go through LATERAL subqueries that cannot be
/// flattened (`OFFSET 0`): the generic plan of a prepared statement guesses
/// a hundred rows per array and would otherwise scan whole tables.
const FLUSH: &str = "
WITH new_vaults AS (
    INSERT INTO vaults (name, created_at)
    SELECT * FROM unnest($1::TEXT[], $2::BIGINT[])
    ON CONFLICT (name) DO NOTHING),
new_versions AS (
    INSERT INTO secret_versions (vault, name, version, wrapped_key, sealed_value, created_at)
    SELECT * FROM unnest($3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BYTEA[], $7::BYTEA[], $8::BIGINT[])),
pruned AS (
    DELETE FROM secret_versions WHERE ctid = ANY(ARRAY(
        SELECT v.ctid
        FROM unnest($9::TEXT[], $10::TEXT[], $11::BIGINT[]) AS t(vault, name, newest_dropped)
        CROSS JOIN LATERAL (
            SELECT ctid FROM secret_versions v
            WHERE v.vault = t.vault AND v.name = t.name AND v.version <= t.newest_dropped
            OFFSET 0) v))),
new_rows AS (
    INSERT INTO secrets (vault, name, version, description, created_at, updated_at, expires_at, purpose)
    SELECT * FROM unnest($12::TEXT[], $13::TEXT[], $14::BIGINT[], $15::TEXT[], $16::BIGINT[],
                         $17::BIGINT[], $18::BIGINT[], $19::TEXT[])
    ON CONFLICT (vault, name) DO UPDATE SET
      version = excluded.version, description = excluded.description,
      created_at = excluded.created_at, updated_at = excluded.updated_at,
      expires_at = excluded.expires_at, purpose = excluded.purpose),
new_records AS (
    INSERT INTO audit (seq, ts_ms, actor, action, vault, secret, version, outcome, prev_hash, hash)
    SELECT * FROM unnest($20::BIGINT[], $21::BIGINT[], $22::TEXT[], $23::TEXT[], $24::TEXT[],
                         $25::TEXT[], $26::BIGINT[], $27::TEXT[], $28::BYTEA[], $29::BYTEA[])),
new_meta AS (
    INSERT INTO meta (key, value)
    SELECT * FROM unnest($30::TEXT[], $31::BYTEA[])
    ON CONFLICT (key) DO UPDATE SET value = excluded.value)
SELECT 1";

impl PgTx<'_> {
    fn statement(&mut self, sql: &'static str) -> DbResult<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).pg()?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// Runs `sql` after every held-back write (it may read them), and
    /// forgets the rows read ahead (it may change them).
    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> DbResult<Vec<Row>> {
        self.flush()?;
        self.pending.rows.clear();
        self.query_now(sql, params)
    }

    /// Runs `sql` now, ahead of the held-back writes (it must not see them).
    fn query_now(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> DbResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params).pg()
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> DbResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// [`Self::query`] for a statement that returns no rows.
    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> DbResult<u64> {
        self.flush()?;
        self.pending.rows.clear();
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params).pg()
    }
}

/// The secret versions of a flush, one array per column of `secret_versions`.
type VersionColumns = (
    Vec<String>,
    Vec<String>,
    Vec<i64>,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
    Vec<i64>,
);

/// The secret rows of a flush, one array per column of `secrets`.
type RowColumns = (
    Vec<String>,
    Vec<String>,
    Vec<i64>,
    Vec<Option<String>>,
    Vec<i64>,
    Vec<i64>,
    Vec<Option<i64>>,
    Vec<String>,
);

/// The audit records of a flush, one array per column of `audit`.
type AuditColumns = (
    Vec<i64>,
    Vec<i64>,
    Vec<String>,
    Vec<String>,
    Vec<Option<String>>,
    Vec<Option<String>>,
    Vec<Option<i64>>,
    Vec<String>,
    Vec<Vec<u8>>,
    Vec<Vec<u8>>,
);

impl PgTx<'_> {
    /// Sends every held-back write, in one statement.
    fn flush(&mut self) -> DbResult<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let WriteBehind {
            meta,
            head_written,
            vaults,
            vaults_seen,
            mut rows,
            rows_written,
            versions,
            audit,
        } = pending;

        let (vault_names, vault_created): (Vec<String>, Vec<i64>) = vaults.into_iter().unzip();

        // The newest version each name gets here; older ones beyond the
        // kept count are dropped (those of this batch by not inserting them).
        let mut newest: HashMap<(String, String), u64> = HashMap::new();
        for (vault, name, version, _, _) in &versions {
            let entry = newest.entry((vault.clone(), name.clone())).or_default();
            *entry = (*entry).max(*version);
        }
        let kept = KEPT_VERSIONS;
        let mut version_columns: VersionColumns = Default::default();
        for (vault, name, version, sealed, created_at) in versions {
            let newest = newest[&(vault.clone(), name.clone())];
            if version + kept <= newest {
                continue;
            }
            version_columns.0.push(vault);
            version_columns.1.push(name);
            version_columns.2.push(version as i64);
            version_columns.3.push(sealed.wrapped_key);
            version_columns.4.push(sealed.sealed_value);
            version_columns.5.push(created_at);
        }
        let mut prune = (Vec::new(), Vec::new(), Vec::new());
        for ((vault, name), newest) in newest {
            prune.0.push(vault);
            prune.1.push(name);
            prune.2.push(newest as i64 - kept as i64);
        }

        let mut row_columns: RowColumns = Default::default();
        for key in rows_written {
            // A row written twice goes once, with its last value (taken out
            // of `rows` the first time).
            let Some(Some(row)) = rows.remove(&key) else {
                continue;
            };
            row_columns.0.push(key.0);
            row_columns.1.push(key.1);
            row_columns.2.push(row.version as i64);
            row_columns.3.push(row.description);
            row_columns.4.push(row.created_at);
            row_columns.5.push(row.updated_at);
            row_columns.6.push(row.expires_at);
            row_columns.7.push(row.purpose);
        }

        let mut audit_columns: AuditColumns = Default::default();
        for (record, prev_mac, mac) in audit {
            audit_columns.0.push(record.seq as i64);
            audit_columns.1.push(record.ts_ms);
            audit_columns.2.push(record.actor);
            audit_columns.3.push(record.action);
            audit_columns.4.push(record.vault);
            audit_columns.5.push(record.secret);
            audit_columns.6.push(record.version.map(|v| v as i64));
            audit_columns.7.push(record.outcome);
            audit_columns.8.push(prev_mac);
            audit_columns.9.push(mac);
        }

        let head = LOCKED_META[0];
        let (meta_keys, meta_values): (Vec<&str>, Vec<Vec<u8>>) =
            match (head_written, meta.get(head)) {
                (true, Some(Some(value))) => (vec![head], vec![value.clone()]),
                _ => (Vec::new(), Vec::new()),
            };

        // What the transaction knows stays known (the meta rows it locked,
        // the vaults it recorded); what it held back is sent now.
        self.pending.meta = meta;
        self.pending.vaults_seen = vaults_seen;
        self.pending.rows = rows;
        self.query_now(
            FLUSH,
            &[
                &vault_names,
                &vault_created,
                &version_columns.0,
                &version_columns.1,
                &version_columns.2,
                &version_columns.3,
                &version_columns.4,
                &version_columns.5,
                &prune.0,
                &prune.1,
                &prune.2,
                &row_columns.0,
                &row_columns.1,
                &row_columns.2,
                &row_columns.3,
                &row_columns.4,
                &row_columns.5,
                &row_columns.6,
                &row_columns.7,
                &audit_columns.0,
                &audit_columns.1,
                &audit_columns.2,
                &audit_columns.3,
                &audit_columns.4,
                &audit_columns.5,
                &audit_columns.6,
                &audit_columns.7,
                &audit_columns.8,
                &audit_columns.9,
                &meta_keys,
                &meta_values,
            ],
        )
        .map(drop)
    }
}

fn secret_row_from(row: &Row, at: usize) -> SecretRow {
    SecretRow {
        version: row.get::<_, i64>(at) as u64,
        description: row.get(at + 1),
        created_at: row.get(at + 2),
        updated_at: row.get(at + 3),
        expires_at: row.get(at + 4),
        purpose: row.get(at + 5),
    }
}

fn token_from_row(row: &Row) -> TokenRow {
    TokenRow {
        name: row.get(0),
        token_hash: row.get(1),
        grants: row.get(2),
        user: row.get(3),
        created_at: row.get(4),
        revoked_at: row.get(5),
        expires_at: row.get(6),
    }
}

fn record_row(row: &Row) -> RecordRow {
    RecordRow {
        kind: row.get(0),
        id: row.get(1),
        parent: row.get(2),
        data: row.get(3),
        node: row.get(4),
        lease_until: row.get(5),
        updated_at: row.get(6),
    }
}

fn sandbox_from_row(row: &Row) -> SandboxRow {
    SandboxRow {
        id: row.get(0),
        template: row.get(1),
        vault: row.get(2),
        config: row.get(3),
        created_at: row.get(4),
        last_exit: row.get(5),
        last_exec_at: row.get(6),
        node: row.get(7),
    }
}

fn record_from_row(row: &Row) -> Record {
    Record {
        seq: row.get::<_, i64>(0) as u64,
        ts_ms: row.get(1),
        actor: row.get(2),
        action: row.get(3),
        vault: row.get(4),
        secret: row.get(5),
        version: row.get::<_, Option<i64>>(6).map(|v| v as u64),
        outcome: row.get(7),
    }
}

impl Tx for PgTx<'_> {
    fn commit(mut self: Box<Self>) -> DbResult<()> {
        self.flush()?;
        if self.in_transaction {
            self.in_transaction = false;
            self.client.batch_execute("COMMIT").pg()?;
        }
        Ok(())
    }

    fn meta_get(&mut self, key: &str) -> DbResult<Option<Vec<u8>>> {
        if let Some(known) = self.pending.meta.get(key) {
            return Ok(known.clone());
        }
        Ok(self
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|row| row.get(0)))
    }

    fn meta_put(&mut self, key: &str, value: &[u8]) -> DbResult<()> {
        if key == LOCKED_META[0] && self.pending.meta.contains_key(key) {
            // The audit head: written once, at the end, however many
            // records the transaction appends.
            self.pending
                .meta
                .insert(key.to_owned(), Some(value.to_vec()));
            self.pending.head_written = true;
            return Ok(());
        }
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        if let Some(known) = self.pending.meta.get_mut(key) {
            *known = Some(value.to_vec());
        }
        Ok(())
    }

    fn meta_put_new(&mut self, key: &str, value: &[u8]) -> DbResult<()> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            &[&key, &value],
        )?;
        self.pending.meta.remove(key);
        Ok(())
    }

    fn meta_delete(&mut self, key: &str) -> DbResult<()> {
        self.execute("DELETE FROM meta WHERE key = $1", &[&key])?;
        if let Some(known) = self.pending.meta.get_mut(key) {
            *known = None;
        }
        Ok(())
    }

    fn meta_with_prefix(&mut self, prefix: &str) -> DbResult<Vec<(String, Vec<u8>)>> {
        Ok(self
            .query(
                "SELECT key, value FROM meta WHERE starts_with(key, $1) ORDER BY key",
                &[&prefix],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    fn ensure_vault(&mut self, vault: &str, now_ms: i64) -> DbResult<()> {
        if self.in_transaction {
            if self.pending.vaults_seen.insert(vault.to_owned()) {
                self.pending.vaults.push((vault.to_owned(), now_ms));
            }
            return Ok(());
        }
        self.execute(
            "INSERT INTO vaults (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&vault, &now_ms],
        )
        .map(drop)
    }

    fn list_vaults(&mut self, now_ms: i64) -> DbResult<Vec<VaultRow>> {
        Ok(self
            .query(
                "SELECT v.name, v.created_at,
                   (SELECT COUNT(*) FROM secrets s WHERE s.vault = v.name
                      AND (s.expires_at IS NULL OR s.expires_at > $1)),
                   (SELECT COUNT(*) FROM vars r WHERE r.vault = v.name)
                 FROM vaults v ORDER BY v.name",
                &[&now_ms],
            )?
            .iter()
            .map(|row| VaultRow {
                name: row.get(0),
                created_at: row.get(1),
                secrets: row.get::<_, i64>(2) as u64,
                vars: row.get::<_, i64>(3) as u64,
            })
            .collect())
    }

    fn secret_row(&mut self, vault: &str, name: &str) -> DbResult<Option<SecretRow>> {
        let key = (vault.to_owned(), name.to_owned());
        if let Some(known) = self.pending.rows.get(&key) {
            return Ok(known.clone());
        }
        // Ahead of the held-back writes: none of them is this row's (it
        // would be known), and a write transaction has every row it read
        // or wrote in `rows` until a statement that may change them.
        let row = self
            .query_now(
                "SELECT version, description, created_at, updated_at, expires_at, purpose
                 FROM secrets WHERE vault = $1 AND name = $2",
                &[&vault, &name],
            )?
            .first()
            .map(|row| secret_row_from(row, 0));
        if self.in_transaction {
            self.pending.rows.insert(key, row.clone());
        }
        Ok(row)
    }

    fn prefetch_secret_rows(&mut self, names: &[(&str, &str)]) -> DbResult<()> {
        if !self.in_transaction || names.len() < 2 {
            return Ok(());
        }
        let wanted: Vec<&(&str, &str)> = names
            .iter()
            .filter(|(v, n)| {
                !self
                    .pending
                    .rows
                    .contains_key(&((*v).to_owned(), (*n).to_owned()))
            })
            .collect();
        let vaults: Vec<&str> = wanted.iter().map(|(v, _)| *v).collect();
        let secret_names: Vec<&str> = wanted.iter().map(|(_, n)| *n).collect();
        let found = self.query_now(
            // An index lookup per name, whatever the plan (see FLUSH).
            "SELECT t.vault, t.name, s.version, s.description, s.created_at, s.updated_at, s.expires_at, s.purpose
             FROM unnest($1::TEXT[], $2::TEXT[]) AS t(vault, name)
             CROSS JOIN LATERAL (
                 SELECT version, description, created_at, updated_at, expires_at, purpose FROM secrets s
                 WHERE s.vault = t.vault AND s.name = t.name OFFSET 0) s",
            &[&vaults, &secret_names],
        )?;
        for (vault, name) in wanted {
            self.pending
                .rows
                .insert(((*vault).to_owned(), (*name).to_owned()), None);
        }
        for row in found {
            self.pending
                .rows
                .insert((row.get(0), row.get(1)), Some(secret_row_from(&row, 2)));
        }
        Ok(())
    }

    fn put_secret_row(&mut self, vault: &str, name: &str, row: &SecretRow) -> DbResult<()> {
        if self.in_transaction {
            let key = (vault.to_owned(), name.to_owned());
            self.pending.rows.insert(key.clone(), Some(row.clone()));
            self.pending.rows_written.push(key);
            return Ok(());
        }
        self.execute(
            "INSERT INTO secrets (vault, name, version, description, created_at, updated_at, expires_at, purpose)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (vault, name) DO UPDATE SET
               version = excluded.version, description = excluded.description,
               created_at = excluded.created_at, updated_at = excluded.updated_at,
               expires_at = excluded.expires_at, purpose = excluded.purpose",
            &[
                &vault,
                &name,
                &(row.version as i64),
                &row.description,
                &row.created_at,
                &row.updated_at,
                &row.expires_at,
                &row.purpose,
            ],
        )
        .map(drop)
    }

    fn insert_version(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
        sealed: &SealedSecret,
        now_ms: i64,
    ) -> DbResult<()> {
        if self.in_transaction {
            self.pending.versions.push((
                vault.to_owned(),
                name.to_owned(),
                version,
                sealed.clone(),
                now_ms,
            ));
            return Ok(());
        }
        self.execute(
            "INSERT INTO secret_versions (vault, name, version, wrapped_key, sealed_value, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &vault,
                &name,
                &(version as i64),
                &sealed.wrapped_key,
                &sealed.sealed_value,
                &now_ms,
            ],
        )?;
        self.execute(
            "DELETE FROM secret_versions WHERE vault = $1 AND name = $2 AND version <= $3",
            &[&vault, &name, &(version as i64 - KEPT_VERSIONS as i64)],
        )
        .map(drop)
    }

    fn version_row(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
    ) -> DbResult<Option<VersionRow>> {
        Ok(self
            .query_opt(
                "SELECT wrapped_key, sealed_value, created_at FROM secret_versions
                 WHERE vault = $1 AND name = $2 AND version = $3",
                &[&vault, &name, &(version as i64)],
            )?
            .map(|row| VersionRow {
                sealed: SealedSecret {
                    wrapped_key: row.get(0),
                    sealed_value: row.get(1),
                },
                created_at: row.get(2),
            }))
    }

    fn version_list(&mut self, vault: &str, name: &str) -> DbResult<Vec<(u64, i64)>> {
        Ok(self
            .query(
                "SELECT version, created_at FROM secret_versions
                 WHERE vault = $1 AND name = $2 ORDER BY version",
                &[&vault, &name],
            )?
            .iter()
            .map(|row| (row.get::<_, i64>(0) as u64, row.get(1)))
            .collect())
    }

    fn delete_secret(&mut self, vault: &str, name: &str) -> DbResult<()> {
        self.execute(
            "DELETE FROM secret_versions WHERE vault = $1 AND name = $2",
            &[&vault, &name],
        )?;
        self.execute(
            "DELETE FROM secrets WHERE vault = $1 AND name = $2",
            &[&vault, &name],
        )
        .map(drop)
    }

    fn list_secret_rows(&mut self, vault: &str, now_ms: i64) -> DbResult<Vec<(String, SecretRow)>> {
        Ok(self
            .query(
                "SELECT name, version, description, created_at, updated_at, expires_at, purpose FROM secrets
                 WHERE vault = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY name",
                &[&vault, &now_ms],
            )?
            .iter()
            .map(|row| (row.get(0), secret_row_from(row, 1)))
            .collect())
    }

    fn list_secret_names(&mut self, vault: &str, now_ms: i64) -> DbResult<Vec<String>> {
        Ok(self
            .query(
                "SELECT name FROM secrets
                 WHERE vault = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY name",
                &[&vault, &now_ms],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn all_wrapped_keys(&mut self) -> DbResult<Vec<WrappedKeyRow>> {
        Ok(self
            .query(
                "SELECT vault, name, version, wrapped_key FROM secret_versions",
                &[],
            )?
            .iter()
            .map(|row| WrappedKeyRow {
                vault: row.get(0),
                name: row.get(1),
                version: row.get::<_, i64>(2) as u64,
                wrapped_key: row.get(3),
            })
            .collect())
    }

    fn update_wrapped_key(
        &mut self,
        vault: &str,
        name: &str,
        version: u64,
        wrapped_key: &[u8],
    ) -> DbResult<()> {
        self.execute(
            "UPDATE secret_versions SET wrapped_key = $4 WHERE vault = $1 AND name = $2 AND version = $3",
            &[&vault, &name, &(version as i64), &wrapped_key],
        )
        .map(drop)
    }

    fn put_var(&mut self, vault: &str, name: &str, value: &str, now_ms: i64) -> DbResult<()> {
        self.execute(
            "INSERT INTO vars (vault, name, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (vault, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &[&vault, &name, &value, &now_ms],
        )
        .map(drop)
    }

    fn get_var(&mut self, vault: &str, name: &str) -> DbResult<Option<(String, i64)>> {
        Ok(self
            .query_opt(
                "SELECT value, updated_at FROM vars WHERE vault = $1 AND name = $2",
                &[&vault, &name],
            )?
            .map(|row| (row.get(0), row.get(1))))
    }

    fn list_vars(&mut self, vault: &str) -> DbResult<Vec<(String, String, i64)>> {
        Ok(self
            .query(
                "SELECT name, value, updated_at FROM vars WHERE vault = $1 ORDER BY name",
                &[&vault],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }

    fn delete_var(&mut self, vault: &str, name: &str) -> DbResult<bool> {
        Ok(self.execute(
            "DELETE FROM vars WHERE vault = $1 AND name = $2",
            &[&vault, &name],
        )? > 0)
    }

    fn insert_token(&mut self, row: &TokenRow) -> DbResult<()> {
        self.execute(
            "INSERT INTO tokens (name, token_hash, grants, user_name, created_at, revoked_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &row.name,
                &row.token_hash,
                &row.grants,
                &row.user,
                &row.created_at,
                &row.revoked_at,
                &row.expires_at,
            ],
        )
        .map(drop)
    }

    fn token_by_name(&mut self, name: &str) -> DbResult<Option<TokenRow>> {
        Ok(self
            .query_opt(
                "SELECT name, token_hash, grants, user_name, created_at, revoked_at, expires_at
                 FROM tokens WHERE name = $1",
                &[&name],
            )?
            .map(|row| token_from_row(&row)))
    }

    fn token_by_hash(&mut self, hash: &[u8]) -> DbResult<Option<TokenRow>> {
        Ok(self
            .query_opt(
                "SELECT name, token_hash, grants, user_name, created_at, revoked_at, expires_at
                 FROM tokens WHERE token_hash = $1",
                &[&hash],
            )?
            .map(|row| token_from_row(&row)))
    }

    fn list_tokens(&mut self) -> DbResult<Vec<TokenRow>> {
        Ok(self
            .query(
                "SELECT name, token_hash, grants, user_name, created_at, revoked_at, expires_at
                 FROM tokens ORDER BY name",
                &[],
            )?
            .iter()
            .map(token_from_row)
            .collect())
    }

    fn revoke_token(&mut self, name: &str, at: i64) -> DbResult<bool> {
        Ok(self.execute(
            "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
            &[&name, &at],
        )? > 0)
    }

    fn insert_sandbox(&mut self, row: &SandboxRow) -> DbResult<()> {
        self.execute(
            "INSERT INTO sandboxes (id, template, vault, config, created_at, last_exit, last_exec_at, node)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &row.id,
                &row.template,
                &row.vault,
                &row.config,
                &row.created_at,
                &row.last_exit,
                &row.last_exec_at,
                &row.node,
            ],
        )
        .map(drop)
    }

    fn sandbox(&mut self, id: &str) -> DbResult<Option<SandboxRow>> {
        Ok(self
            .query_opt(
                "SELECT id, template, vault, config, created_at, last_exit, last_exec_at, node
                 FROM sandboxes WHERE id = $1",
                &[&id],
            )?
            .map(|row| sandbox_from_row(&row)))
    }

    fn list_sandboxes(&mut self) -> DbResult<Vec<SandboxRow>> {
        Ok(self
            .query(
                "SELECT id, template, vault, config, created_at, last_exit, last_exec_at, node
                 FROM sandboxes ORDER BY created_at, id",
                &[],
            )?
            .iter()
            .map(sandbox_from_row)
            .collect())
    }

    fn delete_sandbox(&mut self, id: &str) -> DbResult<bool> {
        Ok(self.execute("DELETE FROM sandboxes WHERE id = $1", &[&id])? > 0)
    }

    fn record_sandbox_exit(&mut self, id: &str, code: i64, at: i64) -> DbResult<()> {
        self.execute(
            "UPDATE sandboxes SET last_exit = $2, last_exec_at = $3 WHERE id = $1",
            &[&id, &code, &at],
        )
        .map(drop)
    }

    fn put_record(&mut self, row: &RecordRow) -> DbResult<()> {
        self.execute(
            "INSERT INTO records (kind, id, parent, data, updated_at, node, lease_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (kind, id) DO UPDATE SET parent = EXCLUDED.parent,
               data = EXCLUDED.data, updated_at = EXCLUDED.updated_at",
            &[
                &row.kind,
                &row.id,
                &row.parent,
                &row.data,
                &row.updated_at,
                &row.node,
                &row.lease_until,
            ],
        )
        .map(drop)
    }

    fn update_record(&mut self, row: &RecordRow) -> DbResult<bool> {
        Ok(self.execute(
            "UPDATE records SET parent = $3, data = $4, updated_at = $5
             WHERE kind = $1 AND id = $2",
            &[&row.kind, &row.id, &row.parent, &row.data, &row.updated_at],
        )? > 0)
    }

    fn record(&mut self, kind: &str, id: &str) -> DbResult<Option<RecordRow>> {
        Ok(self
            .query_opt(
                "SELECT kind, id, parent, data, node, lease_until, updated_at
                 FROM records WHERE kind = $1 AND id = $2",
                &[&kind, &id],
            )?
            .map(|row| record_row(&row)))
    }

    fn list_records(&mut self, kind: &str, parent: Option<&str>) -> DbResult<Vec<RecordRow>> {
        Ok(self
            .query(
                "SELECT kind, id, parent, data, node, lease_until, updated_at FROM records
                 WHERE kind = $1 AND ($2::TEXT IS NULL OR parent = $2) ORDER BY updated_at, id",
                &[&kind, &parent],
            )?
            .iter()
            .map(record_row)
            .collect())
    }

    fn delete_record(&mut self, kind: &str, id: &str, children: Option<&str>) -> DbResult<bool> {
        if let Some(child_kind) = children {
            self.execute(
                "DELETE FROM records WHERE kind = $1 AND parent = $2",
                &[&child_kind, &id],
            )?;
        }
        Ok(self.execute(
            "DELETE FROM records WHERE kind = $1 AND id = $2",
            &[&kind, &id],
        )? > 0)
    }

    fn claim_records(
        &mut self,
        kind: &str,
        node: &str,
        now: i64,
        until: i64,
    ) -> DbResult<Vec<String>> {
        Ok(self
            .query(
                "UPDATE records SET node = $2, lease_until = $4
                 WHERE kind = $1 AND (node = $2 OR lease_until < $3) RETURNING id",
                &[&kind, &node, &now, &until],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn release_record(&mut self, kind: &str, id: &str, node: &str) -> DbResult<()> {
        self.execute(
            "UPDATE records SET lease_until = 0 WHERE kind = $1 AND id = $2 AND node = $3",
            &[&kind, &id, &node],
        )
        .map(drop)
    }

    fn insert_ref(&mut self, token_hash: &[u8], row: &RefRow, now_ms: i64) -> DbResult<()> {
        self.execute("DELETE FROM secret_refs WHERE expires_at <= $1", &[&now_ms])?;
        self.execute(
            "INSERT INTO secret_refs (token_hash, owner, vault, name, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &token_hash,
                &row.owner,
                &row.vault,
                &row.name,
                &now_ms,
                &row.expires_at,
            ],
        )
        .map(drop)
    }

    fn ref_row(&mut self, token_hash: &[u8]) -> DbResult<Option<RefRow>> {
        Ok(self
            .query_opt(
                "SELECT owner, vault, name, expires_at FROM secret_refs WHERE token_hash = $1",
                &[&token_hash],
            )?
            .map(|row| RefRow {
                owner: row.get(0),
                vault: row.get(1),
                name: row.get(2),
                expires_at: row.get(3),
            }))
    }

    fn audit_insert(&mut self, record: &Record, prev_mac: &[u8], mac: &[u8]) -> DbResult<()> {
        if self.in_transaction {
            self.pending
                .audit
                .push((record.clone(), prev_mac.to_vec(), mac.to_vec()));
            return Ok(());
        }
        self.execute(
            "INSERT INTO audit (seq, ts_ms, actor, action, vault, secret, version, outcome, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &(record.seq as i64),
                &record.ts_ms,
                &record.actor,
                &record.action,
                &record.vault,
                &record.secret,
                &record.version.map(|v| v as i64),
                &record.outcome,
                &prev_mac,
                &mac,
            ],
        )
        .map(drop)
    }

    fn audit_list(&mut self, filter: &Filter) -> DbResult<Vec<Record>> {
        let limit = filter.limit.map(|l| l.min(i64::MAX as u64) as i64);
        let mut records: Vec<Record> = self
            .query(
                "SELECT seq, ts_ms, actor, action, vault, secret, version, outcome FROM audit
                 WHERE ($1::TEXT IS NULL OR vault = $1) AND ($2::TEXT IS NULL OR secret = $2)
                 ORDER BY seq DESC LIMIT $3",
                &[&filter.vault, &filter.secret, &limit],
            )?
            .iter()
            .map(record_from_row)
            .collect();
        records.reverse();
        Ok(records)
    }

    fn audit_rows(&mut self) -> DbResult<Vec<AuditRow>> {
        Ok(self
            .query(
                "SELECT seq, ts_ms, actor, action, vault, secret, version, outcome, prev_hash, hash
                 FROM audit ORDER BY seq",
                &[],
            )?
            .iter()
            .map(|row| AuditRow {
                seq: row.get::<_, i64>(0) as u64,
                record: Some(record_from_row(row)),
                prev_mac: row.get(8),
                mac: row.get(9),
            })
            .collect())
    }

    fn audit_relink(&mut self, seq: u64, prev_mac: &[u8], mac: &[u8]) -> DbResult<()> {
        self.execute(
            "UPDATE audit SET prev_hash = $2, hash = $3 WHERE seq = $1",
            &[&(seq as i64), &prev_mac, &mac],
        )
        .map(drop)
    }

    fn audit_any(&mut self) -> DbResult<bool> {
        Ok(self
            .query_opt("SELECT 1 FROM audit LIMIT 1", &[])?
            .is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_decoded_and_anything_else_refused() {
        assert_eq!(bytes_from_hex("00ff10").unwrap(), vec![0, 255, 16]);
        assert_eq!(bytes_from_hex("").unwrap(), Vec::<u8>::new());
        for bad in ["\\x00", "0", "zz", "\u{e9}0"] {
            assert!(bytes_from_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_checked_and_never_shown_whole() {
        let target = PgTarget::parse("postgres://app:s3cret-pass@db.internal:6543/vault").unwrap();
        assert_eq!(target.describe(), "db.internal:6543/vault");
        assert!(!format!("{target:?}").contains("s3cret"));
        assert!(PgTarget::parse("mysql://x@y/z").is_err());
        let err = PgTarget::parse("postgres://u@h/d?sslmode=bogus").unwrap_err();
        assert!(err.contains("sslmode"), "{err}");
        let (url, tls) =
            split_params("postgres://u@h/d?sslmode=require&sslrootcert=%2Fca.pem").unwrap();
        assert!(
            url.contains("sslmode=require") && !url.contains("sslrootcert"),
            "{url}"
        );
        assert!(matches!(tls, Tls::Verified(Some(path)) if path == "/ca.pem"));
    }
}
