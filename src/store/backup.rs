//! Consistent copies of a SQLite store, and restoring one into a home.
//!
//! Copying `shroud.db` by hand loses data: the latest writes live in
//! `shroud.db-wal` until SQLite checkpoints them, so the copied file alone
//! can be an empty vault that opens without complaint. [`backup`] writes one
//! self-contained file with `VACUUM INTO` (a snapshot taken in one read
//! transaction, so writers carry on and the copy holds each of their
//! transactions whole or not at all). It never holds the master key: the
//! values in it are sealed under data keys that the master key wraps, and
//! the key stays in `master.key` (or `$SHROUD_MASTER_KEY`), to be kept
//! apart from the backups.
//!
//! [`restore`] first opens the backup as a store of its own, in a scratch
//! directory of the home, with the home's current master key: a file that is
//! not a shroud store, or was sealed under another key, is refused before
//! the home is touched. It refuses a home that holds anything unless forced,
//! then copies the checked store into the home's database with SQLite's
//! backup API in one step, under SQLite's own locks (a server using the home
//! sees the old data or the new, never half of each). Both are audited
//! (`store.backup`, `store.restore`).
//!
//! A PostgreSQL store is backed up with `pg_dump` (the key is not in it
//! either); both refuse it and say so.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::audit::{Action, Entry, Outcome};
use super::home::{self, KeySource};
use super::{io_error, OpenMode, Result, Store, StoreConfig, StoreError, StoreLocation, KEY_CHECK};

/// What a backup holds, or a restore put back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Contents {
    pub vaults: u64,
    pub secrets: u64,
    pub vars: u64,
    pub tokens: u64,
    pub sandboxes: u64,
    /// Records in the audit log (a home whose secrets were all deleted
    /// still holds their history).
    pub audit_records: u64,
}

impl Contents {
    /// Counts what `store` holds; `audit` is its verified chain.
    fn of(store: &mut Store, audit: &super::audit::Verification) -> Result<Contents> {
        let vaults = store.list_vaults()?;
        Ok(Contents {
            vaults: vaults.len() as u64,
            secrets: vaults.iter().map(|v| v.secrets).sum(),
            vars: vaults.iter().map(|v| v.vars).sum(),
            tokens: store.list_tokens()?.len() as u64,
            sandboxes: store.list_sandboxes()?.len() as u64,
            audit_records: audit.records,
        })
    }

    /// True when there is nothing a restore would overwrite.
    pub fn is_empty(&self) -> bool {
        self.secrets == 0
            && self.vars == 0
            && self.tokens == 0
            && self.sandboxes == 0
            && self.audit_records == 0
    }

    /// "3 secrets, 1 var, 2 tokens and 0 sandbox records in 2 vaults, 9
    /// audit records".
    pub fn describe(&self) -> String {
        let plural = |n: u64, one: &str| {
            if n == 1 {
                format!("{n} {one}")
            } else {
                format!("{n} {one}s")
            }
        };
        format!(
            "{}, {}, {} and {} in {}, and {}",
            plural(self.secrets, "secret"),
            plural(self.vars, "var"),
            plural(self.tokens, "token"),
            plural(self.sandboxes, "sandbox record"),
            plural(self.vaults, "vault"),
            plural(self.audit_records, "audit record"),
        )
    }
}

fn refused(message: String) -> StoreError {
    StoreError::Backup(message)
}

fn sqlite_at<'a>(
    context: &'a str,
    path: &'a Path,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |e| refused(format!("{context} {}: {e}", path.display()))
}

/// A read-only connection to the database file at `path`.
fn open_read_only(path: &Path) -> Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_at("cannot open", path))
}

fn only_sqlite(config: &StoreConfig, what: &str) -> Result<()> {
    match config.location {
        StoreLocation::Home => Ok(()),
        StoreLocation::Postgres(_) => Err(refused(format!(
            "the store is PostgreSQL: {what} the database with pg_dump and pg_restore instead (the master key is not in it either: keep it apart)"
        ))),
    }
}

/// Writes a consistent copy of the store `config` names to `dest` (which
/// must not exist), mode 0600; returns what it holds.
pub fn backup(config: &StoreConfig, dest: &Path) -> Result<Contents> {
    only_sqlite(config, "back up")?;
    let dir = match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(refused(format!(
            "cannot write {}: {} is not a directory",
            dest.display(),
            dir.display()
        )));
    }
    let db = config.home.join(home::DB_FILE);
    if !db.exists() {
        return Err(refused(format!(
            "there is no store at {} to back up",
            config.home.display()
        )));
    }
    if fs::symlink_metadata(dest).is_ok() {
        return Err(refused(format!(
            "{} exists: back up to a new file",
            dest.display()
        )));
    }
    // Opening checks the key and brings the schema up to date first.
    let mut store = Store::open(config.clone(), OpenMode::Existing)?;
    let partial = dir.join(format!(
        ".{}.partial-{}",
        dest.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = write_snapshot(&db, &partial).and_then(|()| {
        // A link fails if `dest` appeared meanwhile: never overwritten.
        fs::hard_link(&partial, dest).map_err(io_error("cannot write the backup", dest))?;
        // The new name is on disk before the backup is reported written.
        home::sync_dir(&dir).map_err(io_error("cannot sync", &dir))
    });
    let _ = fs::remove_file(&partial);
    written?;
    let verified = store.verify_audit()?;
    let contents = Contents::of(&mut store, &verified)?;
    audit_store_event(&mut store, Action::StoreBackup)?;
    Ok(contents)
}

/// `VACUUM INTO partial` from a read-only connection, then the copy made
/// self-contained (rollback journal, so it is one file) and synced.
fn write_snapshot(db: &Path, partial: &Path) -> Result<()> {
    // Created first, empty and 0600 (SQLite would make it with the
    // umask's mode); VACUUM INTO fills an empty file.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .map_err(io_error("cannot write the backup", partial))?;
    let source = open_read_only(db)?;
    source
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_at("cannot open", db))?;
    let target = partial
        .to_str()
        .ok_or_else(|| refused(format!("{} is not valid UTF-8", partial.display())))?;
    source
        .execute("VACUUM INTO ?1", [target])
        .map_err(sqlite_at("cannot write the backup", partial))?;
    let copy = rusqlite::Connection::open(partial).map_err(sqlite_at("cannot open", partial))?;
    copy.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(sqlite_at("cannot finish", partial))?;
    drop(copy);
    fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(io_error("cannot sync the backup", partial))
}

/// Restores the backup `from` into the home `config` names: refused when
/// the home holds anything (unless `force`), or when the home's master key
/// does not open the backup. Returns what was restored.
pub fn restore(config: &StoreConfig, from: &Path, force: bool) -> Result<Contents> {
    only_sqlite(config, "restore")?;
    // A malformed key is refused before anything is made.
    if let Some(text) = &config.master_key_env {
        super::keys::env_key(text)?;
    }
    refuse_live_store(config, from)?;
    check_is_backup(from)?;
    let key = current_key(config)?;
    home::create_private_dir(&config.home)
        .map_err(io_error("cannot create home directory", &config.home))?;
    remove_stale_scratch(&config.home);
    let scratch = config
        .home
        .join(format!(".restore-{}", uuid::Uuid::new_v4().simple()));
    let restored = restore_through(config, from, force, &key, &scratch);
    let _ = fs::remove_dir_all(&scratch);
    let contents = restored?;
    let mut store = Store::open(config.clone(), OpenMode::Existing)?;
    audit_store_event(&mut store, Action::StoreRestore)?;
    Ok(contents)
}

/// A store's own file is not a backup: its latest writes may be in the
/// `-wal` file beside it, which a copy of the file leaves behind (the trap
/// `shroud backup` exists for); and the home's own file is what a restore
/// replaces.
fn refuse_live_store(config: &StoreConfig, from: &Path) -> Result<()> {
    let wal = super::sqlite::wal_path(from);
    let own = config.home.join(home::DB_FILE);
    let same = |a: &Path, b: &Path| match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same(from, &own) {
        return Err(refused(format!(
            "{} is this home's own database: there is nothing to restore from it",
            from.display()
        )));
    }
    if wal.exists() {
        return Err(refused(format!(
            "{} has a write-ahead log beside it ({}-wal): it is a live store, not a backup, and a copy of it would miss its latest writes; run `shroud backup FILE` on its home instead",
            from.display(),
            from.display()
        )));
    }
    Ok(())
}

/// Removes what an interrupted restore left in the home (`.restore-*`).
fn remove_stale_scratch(home_dir: &Path) {
    let Ok(entries) = fs::read_dir(home_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(".restore-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Where the home's master key comes from (what a restore needs first).
enum CurrentKey {
    Env,
    File(PathBuf),
}

fn current_key(config: &StoreConfig) -> Result<CurrentKey> {
    if config.master_key_env.is_some() {
        return Ok(CurrentKey::Env);
    }
    let file = config.home.join(home::KEY_FILE);
    if file.exists() {
        return Ok(CurrentKey::File(file));
    }
    Err(StoreError::BackupKey(format!(
        "no master key to open the backup with: put the master key you kept apart from it at {} (mode 0600, its one line of base64) or set SHROUD_MASTER_KEY, then run restore again",
        file.display()
    )))
}

/// The file is an SQLite database of shroud's: a schema version and a key
/// check (anything else would open as a new, empty store).
fn check_is_backup(from: &Path) -> Result<()> {
    let not_ours = || {
        refused(format!(
            "{} is not a shroud backup (made by `shroud backup`)",
            from.display()
        ))
    };
    let mut header = [0u8; 16];
    fs::File::open(from)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => not_ours(),
            io::ErrorKind::NotFound => refused(format!("{} does not exist", from.display())),
            _ => StoreError::Io {
                context: "cannot read the backup",
                path: from.to_owned(),
                source: e,
            },
        })?;
    if &header != b"SQLite format 3\0" {
        return Err(not_ours());
    }
    let conn = open_read_only(from)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|_| not_ours())?;
    let key_check: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [KEY_CHECK],
            |row| row.get(0),
        )
        .ok();
    if version < 1 || key_check.is_none() {
        return Err(not_ours());
    }
    if version > super::sqlite::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            store: from.display().to_string(),
            found: version,
            known: super::sqlite::SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn restore_through(
    config: &StoreConfig,
    from: &Path,
    force: bool,
    key: &CurrentKey,
    scratch: &Path,
) -> Result<Contents> {
    // 1. The backup, opened in a scratch home with the home's key: the key
    //    check, the schema brought up to date, the audit chain.
    home::create_private_dir(scratch).map_err(io_error("cannot create", scratch))?;
    let copy = scratch.join(home::DB_FILE);
    fs::copy(from, &copy).map_err(io_error("cannot copy the backup", from))?;
    fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(io_error("cannot copy the backup", &copy))?;
    integrity_check(&copy, from)?;
    // The key goes to the scratch store in memory: no copy of the key file.
    let key_text = match key {
        CurrentKey::Env => config.master_key_env.clone(),
        CurrentKey::File(file) => Some(zeroize::Zeroizing::new(
            fs::read_to_string(file)
                .map_err(io_error("cannot read master key", file))?
                .trim()
                .to_owned(),
        )),
    };
    let scratch_config = StoreConfig {
        home: scratch.to_owned(),
        master_key_env: key_text,
        ..config.clone()
    };
    let contents = match Store::open(scratch_config, OpenMode::Existing) {
        Ok(mut checked) => {
            let verified = checked.verify_audit()?;
            if let Some(broken) = &verified.first_broken {
                if !force {
                    return Err(refused(format!(
                        "the audit log in {} is broken at record {}: {}; nothing was restored (--force restores it all the same)",
                        from.display(),
                        broken.seq,
                        broken.reason
                    )));
                }
            }
            Contents::of(&mut checked, &verified)?
        }
        Err(e @ StoreError::BadMasterKey { .. }) => return Err(e),
        Err(e) if e.is_key_error() => {
            let source = match key {
                CurrentKey::Env => KeySource::Env,
                CurrentKey::File(file) => KeySource::File(file.clone()),
            };
            return Err(StoreError::BackupKey(format!(
                "the master key from {source} does not open {}: it was sealed under another key; put that key at {} (mode 0600) or set SHROUD_MASTER_KEY to it, then run restore again",
                from.display(),
                config.home.join(home::KEY_FILE).display()
            )));
        }
        Err(e) => return Err(e),
    };
    // 2. The home: nothing in it is overwritten unless asked.
    let db = config.home.join(home::DB_FILE);
    if db.exists() {
        let mut live = Store::open(config.clone(), OpenMode::Existing)?;
        let verified = live.verify_audit()?;
        let there = Contents::of(&mut live, &verified)?;
        if !there.is_empty() && !force {
            return Err(refused(format!(
                "{} already holds {}: restoring replaces all of it; run again with --force to do so (back it up first with `shroud backup FILE`)",
                config.home.display(),
                there.describe()
            )));
        }
    } else {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&db)
            .map_err(io_error("cannot create database", &db))?;
    }
    // 3. Into the home's database, in one step of SQLite's backup API.
    copy_into(&copy, &db)?;
    Ok(contents)
}

/// SQLite's own check of every page of the copy (a flipped byte in an
/// index or a table's structure; a sealed value that was changed fails its
/// AES-GCM check when it is read, and the audit chain is verified).
fn integrity_check(copy: &Path, from: &Path) -> Result<()> {
    let conn = open_read_only(copy)?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check(1)", [], |row| row.get(0))
        .map_err(sqlite_at("cannot check", from))?;
    if verdict != "ok" {
        return Err(refused(format!(
            "{} is damaged (SQLite: {verdict}); nothing was restored",
            from.display()
        )));
    }
    Ok(())
}

/// Replaces the content of the database `db` with that of `source`, in
/// one step of the backup API (retried while another connection writes).
fn copy_into(source: &Path, db: &Path) -> Result<()> {
    let from = open_read_only(source)?;
    let mut into = rusqlite::Connection::open(db).map_err(sqlite_at("cannot open", db))?;
    into.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite_at("cannot open", db))?;
    let backup = rusqlite::backup::Backup::new(&from, &mut into)
        .map_err(sqlite_at("cannot restore into", db))?;
    let started = std::time::Instant::now();
    loop {
        match backup.step(-1) {
            Ok(rusqlite::backup::StepResult::Done) => return Ok(()),
            Ok(_) if started.elapsed() < std::time::Duration::from_secs(30) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(_) => {
                return Err(refused(format!(
                    "{} stayed busy for 30 s (another process writing): nothing was restored; try again",
                    db.display()
                )))
            }
            Err(e) => return Err(sqlite_at("cannot restore into", db)(e)),
        }
    }
}

/// One audit record of a backup or restore (no vault, no secret).
fn audit_store_event(store: &mut Store, action: Action) -> Result<()> {
    store.write("committing an audit record", |tx, keys| {
        keys.append(tx, &Entry::global(keys.actor.as_str(), action, Outcome::Ok))?;
        Ok(Ok(()))
    })
}
