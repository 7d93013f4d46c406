//! The audit log: an append-only table of every sensitive action, chained
//! by a MAC that only the master key's holder can compute.
//!
//! Each record stores `mac = HMAC-SHA256(chain key, "shroud-audit-v2" ||
//! prev_mac || canonical(record))`, where `canonical` length-prefixes every
//! field, `prev_mac` is the previous record's MAC (32 zero bytes for the
//! first), and the chain key is derived from the master key (HKDF-SHA256,
//! see `crypto::AuditKey`). The newest sequence number and MAC are kept in
//! `meta` as the chain's head, with a MAC of their own, updated in the same
//! transaction. So someone who can write the database but lacks the key can
//! neither change nor remove a record (the newest included) and then repair
//! the chain: `verify` names the first record that was changed or removed,
//! and a record whose fields no longer decode counts as changed. What a
//! keyed chain cannot see is a whole old copy of the log put back (the
//! head of an earlier day is as valid as it was then).
//!
//! `key rotate` re-keys the chain in its own transaction ([`rekey`]), and a
//! store written by an older shroud (an unkeyed SHA-256 chain) is converted
//! once, when the key first opens it ([`upgrade_unkeyed`]).
//!
//! Records are appended inside the caller's write transaction, before any value
//! is handed out: if the append fails, the whole operation fails (fail closed).
//! A record never holds a secret value: only names, versions and outcomes.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::backend::{DbResult, Tx};
use super::crypto::AuditKey;

type HmacSha256 = Hmac<Sha256>;

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
    /// A deployment was created (its slug in the name column).
    DeploymentCreate,
    DeploymentDelete,
    /// A deployment rolled its instances onto new secret versions (the
    /// outcome says whether the new instances came up).
    DeploymentRotate,
    /// An agent run started (its id in the name column).
    AgentRun,
    /// The chain was converted from an older, unkeyed format.
    AuditUpgrade,
    /// `shroud backup` copied the store.
    StoreBackup,
    /// `shroud restore` replaced the store with a backup.
    StoreRestore,
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
            Action::DeploymentCreate => "deployment.create",
            Action::DeploymentDelete => "deployment.delete",
            Action::DeploymentRotate => "deployment.rotate",
            Action::AgentRun => "agent.run",
            Action::AuditUpgrade => "audit.upgrade",
            Action::StoreBackup => "store.backup",
            Action::StoreRestore => "store.restore",
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

/// The meta row holding the chain's head (every audited write changes it).
pub(super) const HEAD_KEY: &str = "audit_head";
/// Marks a chain in the keyed format (absent: the unkeyed format of older
/// builds, or no record yet).
const FORMAT_KEY: &str = "audit_chain";
const FORMAT_KEYED: &[u8] = b"hmac-sha256-v2";
const GENESIS: [u8; 32] = [0; 32];

/// Feeds one optional field, length-prefixed, to a MAC or hash.
fn put_field(update: &mut impl FnMut(&[u8]), field: Option<&[u8]>) {
    match field {
        None => update(&[0u8]),
        Some(bytes) => {
            update(&[1u8]);
            update(&(bytes.len() as u64).to_be_bytes());
            update(bytes);
        }
    }
}

/// Feeds `prev` and the canonical encoding of `record`.
fn put_record(update: &mut impl FnMut(&[u8]), prev: &[u8], record: &Record) {
    update(prev);
    update(&record.seq.to_be_bytes());
    update(&record.ts_ms.to_be_bytes());
    put_field(update, Some(record.actor.as_bytes()));
    put_field(update, Some(record.action.as_bytes()));
    put_field(update, record.vault.as_deref().map(str::as_bytes));
    put_field(update, record.secret.as_deref().map(str::as_bytes));
    let version = record.version.map(u64::to_be_bytes);
    put_field(update, version.as_ref().map(|v| v.as_slice()));
    put_field(update, Some(record.outcome.as_bytes()));
}

fn hmac(key: &AuditKey) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length")
}

/// The chained MAC of `record` after `prev`.
pub fn record_mac(key: &AuditKey, prev: &[u8], record: &Record) -> [u8; 32] {
    let mut mac = hmac(key);
    mac.update(b"shroud-audit-v2");
    put_record(&mut |bytes| mac.update(bytes), prev, record);
    mac.finalize().into_bytes().into()
}

/// The unkeyed chained hash of the older format (read only, to convert it).
fn unkeyed_hash(prev: &[u8], record: &Record) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"shroud-audit-v1");
    put_record(&mut |bytes| hasher.update(bytes), prev, record);
    hasher.finalize().into()
}

/// The MAC that seals the head (`seq`, the newest record's MAC).
fn head_mac(key: &AuditKey, seq: u64, last: &[u8]) -> [u8; 32] {
    let mut mac = hmac(key);
    mac.update(b"shroud-audit-head-v2");
    mac.update(&seq.to_be_bytes());
    mac.update(last);
    mac.finalize().into_bytes().into()
}

/// The head as stored: `seq || last MAC || head MAC` (72 bytes; 40 in the
/// unkeyed format, without the head MAC; empty before the first record on
/// a backend that keeps the row to lock it).
struct Head {
    seq: u64,
    last: Vec<u8>,
    seal: Option<Vec<u8>>,
}

fn head(tx: &mut dyn Tx) -> DbResult<Head> {
    Ok(match tx.meta_get(HEAD_KEY)? {
        Some(bytes) if bytes.len() == 40 || bytes.len() == 72 => Head {
            seq: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            last: bytes[8..40].to_vec(),
            seal: (bytes.len() == 72).then(|| bytes[40..].to_vec()),
        },
        _ => Head {
            seq: 0,
            last: GENESIS.to_vec(),
            seal: None,
        },
    })
}

fn put_head(tx: &mut dyn Tx, key: &AuditKey, seq: u64, last: &[u8]) -> DbResult<()> {
    let mut value = Vec::with_capacity(72);
    value.extend_from_slice(&seq.to_be_bytes());
    value.extend_from_slice(last);
    value.extend_from_slice(&head_mac(key, seq, last));
    tx.meta_put(HEAD_KEY, &value)
}

/// Appends `entry` inside the caller's (write) transaction, chained under
/// `key`. Returns its sequence number.
pub fn append(tx: &mut dyn Tx, key: &AuditKey, entry: &Entry<'_>, now_ms: i64) -> DbResult<u64> {
    append_all(tx, key, std::slice::from_ref(entry), now_ms)
}

/// Appends `entries` in order inside the caller's transaction: the same
/// records and chain as appending them one at a time, with one read and one
/// write of the head. Returns the last sequence number (the head's if
/// `entries` is empty).
pub fn append_all(
    tx: &mut dyn Tx,
    key: &AuditKey,
    entries: &[Entry<'_>],
    now_ms: i64,
) -> DbResult<u64> {
    let head = head(tx)?;
    let (mut seq, mut last) = (head.seq, head.last);
    if entries.is_empty() {
        return Ok(seq);
    }
    for entry in entries {
        seq += 1;
        let record = Record {
            seq,
            ts_ms: now_ms,
            actor: entry.actor.to_owned(),
            action: entry.action.as_str().to_owned(),
            vault: entry.vault.map(str::to_owned),
            secret: entry.secret.map(str::to_owned),
            version: entry.version,
            outcome: entry.outcome.as_str().to_owned(),
        };
        let mac = record_mac(key, &last, &record);
        tx.audit_insert(&record, &last, &mac)?;
        last = mac.to_vec();
    }
    put_head(tx, key, seq, &last)?;
    Ok(seq)
}

/// Lists records oldest first; with a limit, the newest `limit` of them.
pub fn list(tx: &mut dyn Tx, filter: &Filter) -> DbResult<Vec<Record>> {
    tx.audit_list(filter)
}

/// How a chain is checked: under a key, or by its older unkeyed hash.
#[derive(Clone, Copy)]
enum Check<'a> {
    Keyed(&'a AuditKey),
    Unkeyed,
}

/// Walks the whole chain and names the first record that breaks it.
pub fn verify(tx: &mut dyn Tx, key: &AuditKey) -> DbResult<Verification> {
    walk(tx, Check::Keyed(key))
}

fn walk(tx: &mut dyn Tx, check: Check<'_>) -> DbResult<Verification> {
    let head = head(tx)?;
    let rows = tx.audit_rows()?;
    let mut expected_prev = GENESIS.to_vec();
    let mut expected_seq = 1u64;
    let mut count = 0u64;
    let broken = |seq: u64, reason: String| Broken { seq, reason };
    for row in rows {
        count += 1;
        let Some(record) = row.record else {
            return Ok(Verification {
                records: count,
                first_broken: Some(broken(
                    expected_seq,
                    format!("record {expected_seq} was changed after it was written (its fields no longer decode)"),
                )),
            });
        };
        let expected_mac = match check {
            Check::Keyed(key) => record_mac(key, &row.prev_mac, &record),
            Check::Unkeyed => unkeyed_hash(&row.prev_mac, &record),
        };
        let problem = if record.seq != expected_seq {
            Some(format!(
                "record {} follows record {}: record(s) {}..{} were removed",
                record.seq,
                expected_seq - 1,
                expected_seq,
                record.seq.saturating_sub(1)
            ))
        } else if row.prev_mac != expected_prev {
            Some(format!(
                "record {} does not link to the record before it (that record was changed or removed)",
                record.seq
            ))
        } else if expected_mac.as_slice() != row.mac.as_slice() {
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
        expected_prev = row.mac;
        expected_seq += 1;
    }
    let last_seq = expected_seq - 1;
    // Every keyed store has a sealed head from its first transaction on
    // (the genesis head, sealed with the key check): a log emptied of
    // everything, head included, shows too.
    let sealed = match check {
        Check::Keyed(key) => head
            .seal
            .as_deref()
            .is_some_and(|seal| seal == head_mac(key, head.seq, &head.last).as_slice()),
        Check::Unkeyed => true,
    };
    let first_broken = if head.seq != last_seq || head.last != expected_prev || !sealed {
        Some(broken(
            last_seq + 1,
            format!(
                "the log ends at record {last_seq} but its head says {}: the newest record(s) were removed or changed",
                head.seq
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

/// Recomputes every MAC of the chain under `key`, in the caller's write
/// transaction, after checking it with `check` first. Returns the first
/// break that check found (the chain is re-keyed either way: a log that
/// was tampered with is still what there is; the caller records the break).
fn rechain(tx: &mut dyn Tx, check: Check<'_>, key: &AuditKey) -> DbResult<Option<Broken>> {
    let found = walk(tx, check)?.first_broken;
    let rows = tx.audit_rows()?;
    let mut prev = GENESIS.to_vec();
    let mut last_seq = 0;
    for row in rows {
        // An undecodable record cannot be re-sealed: it keeps its links,
        // and stays visible as the break it is.
        let Some(record) = row.record else { continue };
        let mac = record_mac(key, &prev, &record);
        tx.audit_relink(record.seq, &prev, &mac)?;
        prev = mac.to_vec();
        last_seq = record.seq;
    }
    put_head(tx, key, last_seq, &prev)?;
    tx.meta_put(FORMAT_KEY, FORMAT_KEYED)?;
    Ok(found)
}

/// `key rotate`: re-keys the chain from `old` to `new` (in the rotation's
/// transaction). Returns the first break found under the old key, if any.
pub fn rekey(tx: &mut dyn Tx, old: &AuditKey, new: &AuditKey) -> DbResult<Option<Broken>> {
    rechain(tx, Check::Keyed(old), new)
}

/// True when the chain is marked as keyed (the common case, one read).
pub fn is_marked_keyed(tx: &mut dyn Tx) -> DbResult<bool> {
    Ok(tx.meta_get(FORMAT_KEY)?.is_some())
}

/// True when the chain is in the older unkeyed format (records written by
/// an earlier shroud, not yet converted).
pub fn is_unkeyed(tx: &mut dyn Tx) -> DbResult<bool> {
    Ok(!is_marked_keyed(tx)? && tx.audit_any()?)
}

/// Converts an unkeyed chain to the keyed format under `key` (call inside
/// a write transaction). Returns the first break the old hashes showed.
pub fn upgrade_unkeyed(tx: &mut dyn Tx, key: &AuditKey) -> DbResult<Option<Broken>> {
    rechain(tx, Check::Unkeyed, key)
}

/// Starts a keyed chain with no record yet: marks the format and seals the
/// genesis head, so that emptying the log later shows.
pub fn start_keyed(tx: &mut dyn Tx, key: &AuditKey) -> DbResult<()> {
    tx.meta_put(FORMAT_KEY, FORMAT_KEYED)?;
    put_head(tx, key, 0, &GENESIS)
}
