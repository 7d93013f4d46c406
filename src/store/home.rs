//! The shroud home directory and the master key's source.
//!
//! The home is `--home DIR`, else `$SHROUD_HOME`, else `$XDG_DATA_HOME/shroud`,
//! else `~/.local/share/shroud`; it is created with mode 0700 on first write.
//! The master key is `$SHROUD_MASTER_KEY` (base64 of 32 bytes) when set, else
//! `<home>/master.key` (the same base64 text), created with mode 0600.
//!
//! Creating the key file is atomic and race-free: the key is written to a
//! private temporary file, synced, then hard-linked to `master.key`, which
//! fails if another process got there first; the loser reads the winner's key.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use super::crypto::{self, Key};

/// File name of the SQLite database inside the home.
pub const DB_FILE: &str = "shroud.db";
/// File name of the master key inside the home.
pub const KEY_FILE: &str = "master.key";
/// Name of the key file a rotation writes before it commits.
pub const NEXT_KEY_FILE: &str = "master.key.next";

/// Resolves the home directory from the flag and environment (see module docs).
pub fn resolve_home(
    flag: Option<PathBuf>,
    shroud_home: Option<PathBuf>,
    xdg_data_home: Option<PathBuf>,
    user_home: Option<PathBuf>,
) -> Option<PathBuf> {
    let non_empty = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    non_empty(flag)
        .or_else(|| non_empty(shroud_home))
        .or_else(|| non_empty(xdg_data_home).map(|d| d.join("shroud")))
        .or_else(|| non_empty(user_home).map(|h| h.join(".local/share/shroud")))
}

/// `path` made absolute (against the current directory) and, where it
/// exists, canonical (symlinks resolved). A relative home would otherwise
/// mean something else to every process that does not share our current
/// directory (a sandbox's init among them), and a home reached through a
/// symlink must be known by its real path to be hidden.
pub fn absolute(path: &Path) -> io::Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    };
    // The longest existing prefix is canonicalized; the rest is appended.
    let mut existing = joined.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => {
                let mut out = real;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(_) => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                _ => return Ok(joined),
            },
        }
    }
}

/// Where the master key came from; named in every key error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
    /// A throw-away key for reading a home that does not exist yet.
    Ephemeral,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env => f.write_str("$SHROUD_MASTER_KEY"),
            KeySource::File(path) => write!(f, "key file {}", path.display()),
            KeySource::Ephemeral => f.write_str("a temporary key (no home yet)"),
        }
    }
}

/// Decodes the base64 text of a key (surrounding whitespace ignored).
pub fn decode_key(text: &str) -> Result<Key, &'static str> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| "it is not valid base64")?,
    );
    Key::from_slice(&bytes).ok_or("it does not decode to exactly 32 bytes")
}

/// The base64 text of a key, as stored in a key file.
pub fn encode_key(key: &Key) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(key.expose()))
}

/// Creates `dir` with mode 0700 (missing parents get the default mode).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        // Another process created it first: fine, as long as it is a directory.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Reads a key file; a group- or world-readable file is logged as a warning.
pub fn read_key_file(path: &Path) -> io::Result<Result<Key, &'static str>> {
    let text = Zeroizing::new(fs::read_to_string(path)?);
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "master key file is readable by other users; chmod 600 it");
        }
    }
    Ok(decode_key(&text))
}

/// Writes `key` to a new file at `path` with mode 0600, synced; fails if it exists.
pub fn write_new_key_file(path: &Path, key: &Key) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut text = encode_key(key);
    text.push('\n');
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Creates `<dir>/master.key` atomically, or reads the one another process
/// created first. Returns the key that is now on disk.
pub fn create_or_read_key_file(dir: &Path) -> io::Result<Result<Key, &'static str>> {
    let final_path = dir.join(KEY_FILE);
    let mut suffix = [0u8; 8];
    crypto::fill_random(&mut suffix).map_err(io::Error::other)?;
    let temp_path = dir.join(format!(
        ".master.key.tmp-{}-{}",
        std::process::id(),
        u64::from_le_bytes(suffix)
    ));
    let key = Key::generate().map_err(io::Error::other)?;
    write_new_key_file(&temp_path, &key)?;
    let linked = fs::hard_link(&temp_path, &final_path);
    let _ = fs::remove_file(&temp_path);
    match linked {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(Ok(key))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_key_file(&final_path),
        Err(e) => Err(e),
    }
}

/// File whose exclusive lock a master key rotation holds from writing the
/// new key until it is installed.
pub const ROTATION_LOCK_FILE: &str = "master.key.lock";

/// Holds the rotation lock of a home until dropped (`flock`, so a process
/// that dies releases it).
pub type RotationLock = crate::sys::fd::FileLock;

/// Takes the rotation lock of `home_dir`, waiting for a rotation that holds it.
pub fn lock_rotation(home_dir: &Path) -> io::Result<RotationLock> {
    crate::sys::fd::lock_exclusive(&home_dir.join(ROTATION_LOCK_FILE))
}

/// Flushes a directory's entries (renames, new files) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_precedence() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(resolve_home(p("/f"), p("/s"), p("/x"), p("/h")), p("/f"));
        assert_eq!(resolve_home(None, p("/s"), p("/x"), p("/h")), p("/s"));
        assert_eq!(resolve_home(None, p(""), p("/x"), p("/h")), p("/x/shroud"));
        assert_eq!(
            resolve_home(None, None, None, p("/h")),
            p("/h/.local/share/shroud")
        );
        assert_eq!(resolve_home(None, None, None, None), None);
    }

    #[test]
    fn key_text_round_trip_and_errors() {
        let key = Key::generate().unwrap();
        let text = encode_key(&key);
        let back = decode_key(&format!("  {}\n", text.as_str())).unwrap();
        assert_eq!(back.expose(), key.expose());
        assert!(decode_key("not base64!!").is_err());
        assert!(decode_key("AAAA").is_err());
    }

    #[test]
    fn key_file_is_private_and_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = create_or_read_key_file(dir.path()).unwrap().unwrap();
        let second = create_or_read_key_file(dir.path()).unwrap().unwrap();
        assert_eq!(first.expose(), second.expose());
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files are removed");
    }
}
