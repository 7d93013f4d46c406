//! The audit log: an append-only, hash-chained table of every sensitive action.
//!
//! Each record stores `hash = SHA-256(prev_hash || canonical(record))`, where
//! `canonical` length-prefixes every field, and `prev_hash` is the previous
//! record's hash (32 zero bytes for the first). The newest sequence number and
//! hash are also kept in `meta` as the chain's head, updated in the same
//! transaction, so removing the last records is detected as well as editing
//! or removing any record in the middle.
//!
//! Records are appended inside the caller's write transaction, before any value
//! is handed out: if the append fails, the whole operation fails (fail closed).
//! A record never holds a secret value: only names, versions and outcomes.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The kinds of audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SecretSet,
    SecretDelete,
    SecretReveal,
    /// A `$secret:` reference was created (`secret get`).
    SecretReference,
    /// A reference was resolved to its value.
    ReferenceResolve,
    /// A value was injected into a process environment.
    SecretInject,
    /// A value was rendered (HTTP `rendered` route).
    SecretRender,
    /// A value was decrypted only to mask it in output (`redact`).
    SecretMask,
    VarSet,
    VarDelete,
    KeyRotate,
    TokenCreate,
    TokenRevoke,
    SandboxCreate,
    /// A command ran in a sandbox (recorded when it ended).
    SandboxExec,
    SandboxDelete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SecretSet => "secret.set",
            Action::SecretDelete => "secret.delete",
            Action::SecretReveal => "secret.reveal",
            Action::SecretReference => "secret.reference",
            Action::ReferenceResolve => "reference.resolve",
            Action::SecretInject => "secret.inject",
            Action::SecretRender => "secret.render",
            Action::SecretMask => "secret.mask",
            Action::VarSet => "var.set",
            Action::VarDelete => "var.delete",
            Action::KeyRotate => "key.rotate",
            Action::TokenCreate => "token.create",
            Action::TokenRevoke => "token.revoke",
            Action::SandboxCreate => "sandbox.create",
            Action::SandboxExec => "sandbox.exec",
            Action::SandboxDelete => "sandbox.delete",
        }
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    NotFound,
    Denied,
    /// The record exists but failed to decrypt (tampering or key mismatch).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// What a caller records; the log adds sequence, time and hashes.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub actor: &'a str,
    pub action: Action,
    pub vault: Option<&'a str>,
    pub secret: Option<&'a str>,
    pub version: Option<u64>,
    pub outcome: Outcome,
}

impl<'a> Entry<'a> {
    /// An entry about one named secret or var in a vault. It starts as
    /// `not_found` with no version; the caller fills in what happened.
    pub fn about(actor: &'a str, action: Action, vault: &'a str, name: &'a str) -> Self {
        Entry {
            actor,
            action,
            vault: Some(vault),
            secret: Some(name),
            version: None,
            outcome: Outcome::NotFound,
        }
    }

    /// An entry about no particular secret (a rotation, a refused reference).
    pub fn global(actor: &'a str, action: Action, outcome: Outcome) -> Self {
        Entry {
            actor,
            action,
            vault: None,
            secret: None,
            version: None,
            outcome,
        }
    }

    /// The same entry with this version and outcome.
    pub fn with(self, version: Option<u64>, outcome: Outcome) -> Self {
        Entry {
            version,
            outcome,
            ..self
        }
    }
}

/// One stored audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub seq: u64,
    /// Unix time in milliseconds.
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub vault: Option<String>,
    pub secret: Option<String>,
    pub version: Option<u64>,
    pub outcome: String,
}

/// Filters for listing records.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub vault: Option<String>,
    pub secret: Option<String>,
    /// Keep only the newest `limit` matching records.
    pub limit: Option<u64>,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub records: u64,
    /// The first record that breaks the chain, with what is wrong.
    pub first_broken: Option<Broken>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    pub seq: u64,
    pub reason: String,
}

const HEAD_KEY: &str = "audit_head";
const GENESIS: [u8; 32] = [0; 32];

fn put_field(hasher: &mut Sha256, field: Option<&[u8]>) {
    match field {
        None => hasher.update([0u8]),
        Some(bytes) => {
            hasher.update([1u8]);
            hasher.update((bytes.len() as u64).to_be_bytes());
            hasher.update(bytes);
        }
    }
}

/// The chained hash of `record` after `prev`.
pub fn record_hash(prev: &[u8], record: &Record) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"shroud-audit-v1");
    hasher.update(prev);
    hasher.update(record.seq.to_be_bytes());
    hasher.update(record.ts_ms.to_be_bytes());
    put_field(&mut hasher, Some(record.actor.as_bytes()));
    put_field(&mut hasher, Some(record.action.as_bytes()));
    put_field(&mut hasher, record.vault.as_deref().map(str::as_bytes));
    put_field(&mut hasher, record.secret.as_deref().map(str::as_bytes));
    let version = record.version.map(u64::to_be_bytes);
    put_field(&mut hasher, version.as_ref().map(|v| v.as_slice()));
    put_field(&mut hasher, Some(record.outcome.as_bytes()));
    hasher.finalize().into()
}

fn head(conn: &Connection) -> rusqlite::Result<(u64, Vec<u8>)> {
    let stored: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [HEAD_KEY], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(match stored {
        Some(bytes) if bytes.len() == 40 => {
            let seq = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
            (seq, bytes[8..].to_vec())
        }
        _ => (0, GENESIS.to_vec()),
    })
}

/// Appends `entry` inside the caller's (write) transaction. Returns its sequence number.
pub fn append(conn: &Connection, entry: &Entry<'_>, now_ms: i64) -> rusqlite::Result<u64> {
    let (last_seq, prev_hash) = head(conn)?;
    let record = Record {
        seq: last_seq + 1,
        ts_ms: now_ms,
        actor: entry.actor.to_owned(),
        action: entry.action.as_str().to_owned(),
        vault: entry.vault.map(str::to_owned),
        secret: entry.secret.map(str::to_owned),
        version: entry.version,
        outcome: entry.outcome.as_str().to_owned(),
    };
    let hash = record_hash(&prev_hash, &record);
    conn.execute(
        "INSERT INTO audit (seq, ts_ms, actor, action, vault, secret, version, outcome, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            record.seq as i64,
            record.ts_ms,
            record.actor,
            record.action,
            record.vault,
            record.secret,
            record.version.map(|v| v as i64),
            record.outcome,
            prev_hash,
            hash.as_slice(),
        ],
    )?;
    let mut new_head = Vec::with_capacity(40);
    new_head.extend_from_slice(&record.seq.to_be_bytes());
    new_head.extend_from_slice(&hash);
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![HEAD_KEY, new_head],
    )?;
    Ok(record.seq)
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        seq: row.get::<_, i64>(0)? as u64,
        ts_ms: row.get(1)?,
        actor: row.get(2)?,
        action: row.get(3)?,
        vault: row.get(4)?,
        secret: row.get(5)?,
        version: row.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        outcome: row.get(7)?,
    })
}

const COLUMNS: &str = "seq, ts_ms, actor, action, vault, secret, version, outcome";

/// Lists records oldest first; with a limit, the newest `limit` of them.
pub fn list(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<Record>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit
         WHERE (?1 IS NULL OR vault = ?1) AND (?2 IS NULL OR secret = ?2)
         ORDER BY seq DESC LIMIT ?3"
    );
    let limit = filter
        .limit
        .map(|l| l.min(i64::MAX as u64) as i64)
        .unwrap_or(-1);
    let mut stmt = conn.prepare(&sql)?;
    let mut records = stmt
        .query_map(params![filter.vault, filter.secret, limit], record_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    records.reverse();
    Ok(records)
}

/// Walks the whole chain and names the first record that breaks it.
pub fn verify(conn: &Connection) -> rusqlite::Result<Verification> {
    let (head_seq, head_hash) = head(conn)?;
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS}, prev_hash, hash FROM audit ORDER BY seq"
    ))?;
    let mut rows = stmt.query([])?;
    let mut expected_prev = GENESIS.to_vec();
    let mut expected_seq = 1u64;
    let mut count = 0u64;
    let broken = |seq: u64, reason: String| Broken { seq, reason };
    while let Some(row) = rows.next()? {
        let record = record_from_row(row)?;
        let prev: Vec<u8> = row.get(8)?;
        let hash: Vec<u8> = row.get(9)?;
        count += 1;
        let problem = if record.seq != expected_seq {
            Some(format!(
                "record {} follows record {}: record(s) {}..{} were removed",
                record.seq,
                expected_seq - 1,
                expected_seq,
                record.seq - 1
            ))
        } else if prev != expected_prev {
            Some(format!(
                "record {} does not link to the record before it (that record was changed or removed)",
                record.seq
            ))
        } else if record_hash(&prev, &record).as_slice() != hash.as_slice() {
            Some(format!(
                "record {} was changed after it was written",
                record.seq
            ))
        } else {
            None
        };
        if let Some(reason) = problem {
            return Ok(Verification {
                records: count,
                first_broken: Some(broken(record.seq.min(expected_seq), reason)),
            });
        }
        expected_prev = hash;
        expected_seq += 1;
    }
    let last_seq = expected_seq - 1;
    let first_broken = if head_seq != last_seq || head_hash != expected_prev {
        Some(broken(
            last_seq + 1,
            format!(
                "the log ends at record {last_seq} but its head says {head_seq}: the newest record(s) were removed or changed"
            ),
        ))
    } else {
        None
    };
    Ok(Verification {
        records: count,
        first_broken,
    })
}
