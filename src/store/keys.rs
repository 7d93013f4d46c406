//! The master key of an open store: where it came from, following a
//! rotation another process (or node) made, and rotating it.
//!
//! [`KeyRing`] is what every transaction reads beside the connection: the
//! master key, the audit chain's key derived from it, where the key came
//! from, and who acts. A store opened before a rotation sees the new key
//! check in its next write transaction and picks up the new key where the
//! rotation left it ([`KeyRing::follow_rotation`]); a rotation cut off
//! between its commit and installing the key file is finished on the next
//! open, under the home's rotation lock ([`KeyRing::finish_rotation`]).
//!
//! Nodes of one PostgreSQL store each keep the key in a home of their own,
//! where a rotation made on another node leaves nothing. So a rotation also
//! leaves a *key handoff* in the database: the new key sealed under the old
//! one, for [`KEY_HANDOFF_TTL_MS`] (15 minutes). A node (server or CLI) whose
//! key no longer opens the key check follows the handoffs from its key to
//! the current one, writes the new key where its own comes from (its
//! `master.key`, the old kept as `master.key.old-*`; under
//! `$SHROUD_MASTER_KEY`, a `master.key.new-*` file and a warning), and goes
//! on. The trade-off: for those 15 minutes whoever holds the old key *and*
//! can read the database can learn the new one. When the old key is the
//! reason for the rotation (it leaked), `key rotate --no-handoff` leaves no
//! handoff (and removes older ones); the other nodes then refuse to work
//! (wrong key, exit 2) until they are given the new key.

use std::fs;
use std::path::{Path, PathBuf};

use super::audit::{self, Action, Entry, Outcome};
use super::backend::{DbError, Tx};
use super::crypto::{self, AuditKey, Key, RecordId};
use super::home::{self, KeySource};
use super::{
    db_error, io_error, OpenMode, Result, Rotation, Store, StoreConfig, StoreError, KEY_CHECK,
};
use crate::clock::{self, now_ms};

/// How long a rotation's key handoff stays in the database.
pub const KEY_HANDOFF_TTL_MS: i64 = 15 * 60 * 1000;

/// The meta row holding the handoffs of recent rotations.
const KEY_HANDOFF: &str = "key_handoff";

/// Whether a rotation leaves its new key for the other nodes (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    Offer,
    Withhold,
}

/// One rotation's new key, sealed under the key it replaced.
struct SealedHandoff {
    expires_ms: i64,
    sealed: Vec<u8>,
}

/// The handoffs of a meta row: each is its expiry (8 bytes), the length of
/// its seal (4 bytes), then the seal. A row that does not parse holds none.
fn decode_handoffs(blob: &[u8]) -> Vec<SealedHandoff> {
    let mut handoffs = Vec::new();
    let mut rest = blob;
    while rest.len() >= 12 {
        let expires_ms = i64::from_be_bytes(rest[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(rest[8..12].try_into().expect("4 bytes")) as usize;
        let Some(sealed) = rest.get(12..12 + len) else {
            break;
        };
        handoffs.push(SealedHandoff {
            expires_ms,
            sealed: sealed.to_vec(),
        });
        rest = &rest[12 + len..];
    }
    handoffs
}

fn encode_handoffs(handoffs: &[SealedHandoff]) -> Vec<u8> {
    let mut blob = Vec::new();
    for handoff in handoffs {
        blob.extend_from_slice(&handoff.expires_ms.to_be_bytes());
        blob.extend_from_slice(&(handoff.sealed.len() as u32).to_be_bytes());
        blob.extend_from_slice(&handoff.sealed);
    }
    blob
}

/// The key the handoffs lead to from `start` (one hop per rotation since
/// it), if it opens `key_check`; expired handoffs are not followed.
fn follow_handoffs(start: &Key, blob: &[u8], key_check: &[u8], now: i64) -> Option<Key> {
    let handoffs = decode_handoffs(blob);
    let mut current = Key::from_slice(start.expose()).expect("a key's own bytes");
    for _ in 0..handoffs.len() {
        if crypto::key_check_opens(&current, key_check) {
            break;
        }
        let next = handoffs
            .iter()
            .filter(|h| h.expires_ms > now)
            .find_map(|h| crypto::open_key_handoff(&current, h.expires_ms, &h.sealed))?;
        current = next;
    }
    crypto::key_check_opens(&current, key_check).then_some(current)
}

/// Who is acting with which key: what every transaction reads beside the connection.
pub(super) struct KeyRing {
    pub(super) master: Key,
    /// The audit chain's MAC key, derived from `master`.
    pub(super) audit: AuditKey,
    pub(super) key_source: KeySource,
    pub(super) home: PathBuf,
    pub(super) actor: String,
    /// The store, for messages.
    pub(super) store: String,
}

/// What opening a store reads to check its key: the key check, and the
/// handoffs of recent rotations.
pub(super) struct KeyState {
    pub(super) key_check: Option<Vec<u8>>,
    pub(super) handoffs: Option<Vec<u8>>,
}

impl KeyState {
    pub(super) fn read(tx: &mut dyn Tx) -> std::result::Result<KeyState, DbError> {
        Ok(KeyState {
            key_check: tx.meta_get(KEY_CHECK)?,
            handoffs: tx.meta_get(KEY_HANDOFF)?,
        })
    }
}

impl KeyRing {
    pub(super) fn new(
        master: Key,
        key_source: KeySource,
        home: PathBuf,
        actor: String,
        store: String,
    ) -> Self {
        KeyRing {
            audit: AuditKey::derive(&master),
            master,
            key_source,
            home,
            actor,
            store,
        }
    }

    /// Uses `key` from now on (and the audit key derived from it).
    pub(super) fn adopt(&mut self, key: Key) {
        self.audit = AuditKey::derive(&key);
        self.master = key;
    }

    pub(super) fn wrong_key(&self) -> StoreError {
        StoreError::WrongMasterKey {
            key_source: self.key_source.clone(),
            store: self.store.clone(),
        }
    }

    /// Maps a database error of step `context` to the store's error.
    pub(super) fn db(&self, context: &'static str) -> impl Fn(DbError) -> StoreError + '_ {
        move |e| db_error(context, &self.store, e)
    }

    /// Appends an audit record in `tx`, now, under this ring's audit key.
    pub(super) fn append(&self, tx: &mut dyn Tx, entry: &Entry<'_>) -> Result<u64> {
        self.append_at(tx, entry, now_ms())
    }

    /// [`Self::append`] with the transaction's own time.
    pub(super) fn append_at(&self, tx: &mut dyn Tx, entry: &Entry<'_>, now: i64) -> Result<u64> {
        audit::append(tx, &self.audit, entry, now).map_err(self.db("writing the audit record"))
    }

    /// Appends `entries` in order, chained as if appended one by one.
    pub(super) fn append_all_at(
        &self,
        tx: &mut dyn Tx,
        entries: &[Entry<'_>],
        now: i64,
    ) -> Result<()> {
        audit::append_all(tx, &self.audit, entries, now)
            .map(drop)
            .map_err(self.db("writing the audit records"))
    }

    /// The key check no longer opens with our key, although it did when the
    /// store was opened: another process rotated the master key since. Finds
    /// the new key where a rotation leaves it (`master.key.next` until it
    /// replaces `master.key`, then `master.key`; the `master.key.new-*` file
    /// of a rotation under `$SHROUD_MASTER_KEY`) and adopts it, so a server
    /// or a long-running writer goes on across any number of rotations.
    ///
    /// A rotation made on another node leaves none of those files here: then
    /// the handoffs in `tx` lead to the new key, which is kept where ours
    /// came from ([`Self::keep_handed_off_key`]).
    pub(super) fn follow_rotation(&mut self, tx: &mut dyn Tx, key_check: &[u8]) -> Result<()> {
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
        let handoffs = tx
            .meta_get(KEY_HANDOFF)
            .map_err(self.db("reading the key handoff"))?;
        match handoffs.and_then(|blob| follow_handoffs(&self.master, &blob, key_check, now_ms())) {
            Some(key) => {
                tracing::info!("following a master key rotation made on another node");
                self.keep_handed_off_key(&key);
                self.adopt(key);
                Ok(())
            }
            None => Err(self.wrong_key()),
        }
    }

    /// Keeps a key learnt from a handoff where this node's key comes from:
    /// the key file (the old one kept as `master.key.old-*`), or, under
    /// `$SHROUD_MASTER_KEY`, a new `master.key.new-*` file. Failing that
    /// (a read-only home), the key is used in memory only, with a warning.
    fn keep_handed_off_key(&self, key: &Key) {
        let kept = (|| -> Result<Option<PathBuf>> {
            let _lock = home::lock_rotation(&self.home).map_err(io_error(
                "cannot lock the master key for rotation",
                &self.home,
            ))?;
            match &self.key_source {
                KeySource::File(key_file) => {
                    // Another process of this home may have done it already.
                    if let Ok(Ok(current)) = home::read_key_file(key_file) {
                        if current.expose() == key.expose() {
                            return Ok(None);
                        }
                    }
                    let next = self.home.join(home::NEXT_KEY_FILE);
                    let _ = fs::remove_file(&next);
                    home::write_new_key_file(&next, key)
                        .map_err(io_error("cannot write the new key file", &next))?;
                    keep_old_key_file(&self.home, key_file)?;
                    fs::rename(&next, key_file)
                        .map_err(io_error("cannot install the new key file", key_file))?;
                    home::sync_dir(&self.home).map_err(io_error("cannot sync", &self.home))?;
                    Ok(Some(key_file.clone()))
                }
                _ => {
                    let already = rotation_candidates(&self.home).into_iter().any(|candidate| {
                        matches!(home::read_key_file(&candidate), Ok(Ok(k)) if k.expose() == key.expose())
                    });
                    if already {
                        return Ok(None);
                    }
                    let path = unused_path(
                        &self.home,
                        &format!("master.key.new-{}", clock::file_stamp(now_ms())),
                    );
                    home::write_new_key_file(&path, key)
                        .map_err(io_error("cannot write the new key file", &path))?;
                    tracing::warn!(file = %path.display(), "the master key was rotated on another node: set SHROUD_MASTER_KEY to the key in this file before the handoff expires");
                    Ok(Some(path))
                }
            }
        })();
        match kept {
            Ok(Some(path)) => tracing::info!(file = %path.display(), "kept the rotated master key"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "the rotated master key is used in memory only"),
        }
    }

    /// At open, the key file does not open the key check. Either a rotation
    /// is between its commit and replacing the key file (wait for it: it
    /// holds the rotation lock), or one committed and replaced the key file
    /// after we read the key check (read it again under the lock:
    /// `key_check` does that), or one was cut off there, leaving
    /// `master.key.next`, which opens the data: finish it.
    ///
    /// When none of that opens the data, the rotation was made on another
    /// node: the handoffs lead to the new key, as in [`Self::follow_rotation`].
    pub(super) fn finish_rotation(
        &mut self,
        read: impl FnOnce() -> Result<KeyState>,
    ) -> Result<()> {
        let lock = home::lock_rotation(&self.home).map_err(io_error(
            "cannot lock the master key for rotation",
            &self.home,
        ))?;
        let state = read()?;
        let Some(key_check) = state.key_check else {
            return Err(self.wrong_key());
        };
        let key_check = key_check.as_slice();
        let from_handoff = |keys: &Self| {
            state
                .handoffs
                .as_deref()
                .and_then(|blob| follow_handoffs(&keys.master, blob, key_check, now_ms()))
        };
        let KeySource::File(key_file) = &self.key_source else {
            // `$SHROUD_MASTER_KEY`: only a handoff can help.
            drop(lock);
            let key = from_handoff(self).ok_or_else(|| self.wrong_key())?;
            self.keep_handed_off_key(&key);
            self.adopt(key);
            return Ok(());
        };
        let key_file = key_file.clone();
        // The key file may have changed too.
        if let Ok(Ok(key)) = home::read_key_file(&key_file) {
            self.adopt(key);
        }
        if crypto::key_check_opens(&self.master, key_check) {
            return Ok(());
        }
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
            let key = from_handoff(self).ok_or_else(|| self.wrong_key())?;
            drop(lock);
            self.keep_handed_off_key(&key);
            self.adopt(key);
            return Ok(());
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

impl Store {
    /// Replaces the master key: every data key is re-wrapped in one
    /// transaction. The new key is on disk (synced) before the transaction
    /// commits; the old key file is kept as `master.key.old-<timestamp>`.
    ///
    /// With [`Handoff::Offer`] the new key also waits in the database, sealed
    /// under the old one, for the other nodes (see the module comment).
    pub fn rotate_master_key(&mut self, handoff: Handoff) -> Result<Rotation> {
        if self.is_ephemeral() {
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
        // One home's own database has no other node to hand the key to.
        let handoff = if self.conn.is_shared() {
            handoff
        } else {
            Handoff::Withhold
        };
        let committed = self.rewrap_all(&new_key, now, handoff);
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
    fn rewrap_all(
        &mut self,
        new_key: &Key,
        now: i64,
        handoff: Handoff,
    ) -> Result<(u64, Option<audit::Broken>)> {
        let new_audit = AuditKey::derive(new_key);
        self.write("committing the key rotation", |tx, keys| {
            let rows = tx
                .all_wrapped_keys()
                .map_err(keys.db("reading data keys"))?;
            for row in &rows {
                let id = RecordId {
                    vault: &row.vault,
                    name: &row.name,
                    version: row.version,
                };
                let rewrapped =
                    crypto::rewrap_data_key(&keys.master, new_key, id, &row.wrapped_key).map_err(
                        |source| StoreError::Decrypt {
                            vault: row.vault.clone(),
                            name: row.name.clone(),
                            version: row.version,
                            source,
                        },
                    )?;
                tx.update_wrapped_key(&row.vault, &row.name, row.version, &rewrapped)
                    .map_err(keys.db("re-wrapping a data key"))?;
            }
            let check = crypto::seal_key_check(new_key).map_err(StoreError::Encrypt)?;
            tx.meta_put(KEY_CHECK, &check)
                .map_err(keys.db("writing the key check"))?;
            // Expired handoffs go; this rotation's joins them, or, withheld,
            // every one goes (whoever has an old key learns nothing newer).
            let mut handoffs = match tx
                .meta_get(KEY_HANDOFF)
                .map_err(keys.db("reading the key handoff"))?
            {
                Some(blob) => decode_handoffs(&blob),
                None => Vec::new(),
            };
            handoffs.retain(|h| h.expires_ms > now);
            match handoff {
                Handoff::Offer => {
                    let expires_ms = now + KEY_HANDOFF_TTL_MS;
                    let sealed = crypto::seal_key_handoff(&keys.master, new_key, expires_ms)
                        .map_err(StoreError::Encrypt)?;
                    handoffs.push(SealedHandoff { expires_ms, sealed });
                }
                Handoff::Withhold => handoffs.clear(),
            }
            if handoffs.is_empty() {
                tx.meta_delete(KEY_HANDOFF)
            } else {
                tx.meta_put(KEY_HANDOFF, &encode_handoffs(&handoffs))
            }
            .map_err(keys.db("writing the key handoff"))?;
            let broken = audit::rekey(tx, &keys.audit, &new_audit)
                .map_err(keys.db("re-keying the audit log"))?;
            let outcome = if broken.is_some() {
                Outcome::Error
            } else {
                Outcome::Ok
            };
            let version = broken.as_ref().map_or(rows.len() as u64, |b| b.seq);
            let entry = Entry::global(keys.actor.as_str(), Action::KeyRotate, outcome)
                .with(Some(version), outcome);
            audit::append(tx, &new_audit, &entry, now)
                .map_err(keys.db("writing the audit record"))?;
            Ok(Ok((rows.len() as u64, broken)))
        })
    }
}

pub(super) fn env_key(text: &str) -> Result<Key> {
    home::decode_key(text).map_err(|reason| StoreError::BadMasterKey {
        key_source: KeySource::Env,
        reason,
    })
}

pub(super) fn load_master_key(
    config: &StoreConfig,
    store: &str,
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
            store: store.to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn handoff(old: &Key, new: &Key, expires_ms: i64) -> SealedHandoff {
        SealedHandoff {
            expires_ms,
            sealed: crypto::seal_key_handoff(old, new, expires_ms).unwrap(),
        }
    }

    #[test]
    fn handoffs_lead_from_an_old_key_to_the_current_one_until_they_expire() {
        let keys: Vec<Key> = (0..4).map(|_| Key::generate().unwrap()).collect();
        let check = crypto::seal_key_check(&keys[3]).unwrap();
        // Three rotations, stored newest last (and one entry in a wrong order).
        let blob = encode_handoffs(&[
            handoff(&keys[2], &keys[3], 3_000),
            handoff(&keys[0], &keys[1], 1_000),
            handoff(&keys[1], &keys[2], 2_000),
        ]);
        let followed = follow_handoffs(&keys[0], &blob, &check, 500).unwrap();
        assert_eq!(followed.expose(), keys[3].expose());
        assert_eq!(
            follow_handoffs(&keys[2], &blob, &check, 2_500)
                .unwrap()
                .expose(),
            keys[3].expose()
        );
        // One hop expired: the chain is cut there.
        assert!(follow_handoffs(&keys[0], &blob, &check, 1_500).is_none());
        // A key that never was in the chain learns nothing.
        let stranger = Key::generate().unwrap();
        assert!(follow_handoffs(&stranger, &blob, &check, 0).is_none());
        // An expiry moved later (by someone who can write the database but
        // lacks the key) makes its handoff unopenable.
        let mut moved = decode_handoffs(&blob);
        moved[1].expires_ms = 9_000;
        assert!(follow_handoffs(&keys[0], &encode_handoffs(&moved), &check, 1_500).is_none());
        // Garbage holds no handoff.
        assert!(decode_handoffs(b"\x00\x01garbage").is_empty());
        assert!(follow_handoffs(&keys[0], b"garbage-garbage-garbage", &check, 0).is_none());
    }
}
