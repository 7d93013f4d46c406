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

    /// The key check no longer opens with our key, although it did when the
    /// store was opened: another process rotated the master key since. Finds
    /// the new key where a rotation leaves it (`master.key.next` until it
    /// replaces `master.key`, then `master.key`; the `master.key.new-*` file
    /// of a rotation under `$SHROUD_MASTER_KEY`) and adopts it, so a server
    /// or a long-running writer goes on across any number of rotations.
    pub(super) fn follow_rotation(&mut self, key_check: &[u8]) -> Result<()> {
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
    /// holds the rotation lock), or one committed and replaced the key file
    /// after we read the key check (read it again under the lock:
    /// `key_check` does that), or one was cut off there, leaving
    /// `master.key.next`, which opens the data: finish it.
    pub(super) fn finish_rotation(
        &mut self,
        key_check: impl FnOnce() -> Result<Option<Vec<u8>>>,
    ) -> Result<()> {
        let KeySource::File(key_file) = &self.key_source else {
            return Err(self.wrong_key());
        };
        let key_file = key_file.clone();
        let _lock = home::lock_rotation(&self.home).map_err(io_error(
            "cannot lock the master key for rotation",
            &self.home,
        ))?;
        let Some(key_check) = key_check()? else {
            return Err(self.wrong_key());
        };
        let key_check = key_check.as_slice();
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

impl Store {
    /// Replaces the master key: every data key is re-wrapped in one
    /// transaction. The new key is on disk (synced) before the transaction
    /// commits; the old key file is kept as `master.key.old-<timestamp>`.
    pub fn rotate_master_key(&mut self) -> Result<Rotation> {
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
