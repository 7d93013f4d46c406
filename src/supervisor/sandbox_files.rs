//! A sandbox's files and lifetime, as the API and `sandbox cp` share them.
//!
//! Files: every path is relative to the working directory and resolved by
//! the kernel beneath it (`sys::beneath`), so `..`, absolute paths and
//! links that lead out are refused (and a link swapped in during an upload
//! gains nothing). Uploads stream to a fresh file renamed into place and
//! given to the sandbox's uid; the template's `disk_mb` bounds them (the
//! sandbox's own disk where the host gives one, a count of the tree's bytes
//! where it does not). Downloads stream through the masker with every
//! secret ever granted to the sandbox (its own grants and every exec's,
//! recorded in `<dir>/granted`), read in one audited `secret.mask`
//! transaction, so that a value a command wrote into a file does not leave
//! through the files API.
//!
//! Lifetime: a sandbox made with a timeout expires that long after its
//! last exec or file call. The activity is the modification time of
//! `<dir>/active` (touched by every call), the timeout is `<dir>/lifetime`;
//! both sit beside the working directory, out of the sandbox's sight, on
//! the node that holds its files. [`expired`] says which sandboxes a
//! server's sweep removes.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::mask::{MaskSet, MaskStyle};
use crate::store::audit::Action;
use crate::store::{SandboxRow, SecretName, Store, VaultName};
use crate::sys::beneath::{Beneath, BeneathError};

use super::plan::{PlanError, SecretGrant};
use super::sandboxes::SandboxConfig;

/// A sandbox's lifetime when it is made through the API without one.
pub const DEFAULT_TIMEOUT_SECS: u64 = 3600;
/// The longest lifetime (a week).
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// The working directory, opened for paths beneath it.
pub fn workdir(config: &SandboxConfig) -> Result<Beneath, BeneathError> {
    let _ = crate::sandbox::disk::ensure_mounted(&config.dir());
    Beneath::open(&config.policy.workdir, config.policy.run_as)
}

/// Remembers that an exec granted `grants` (for the masking of downloads).
pub fn record_grants(config: &SandboxConfig, grants: &[SecretGrant]) -> std::io::Result<()> {
    if grants.is_empty() {
        return Ok(());
    }
    let path = config.dir().join("granted");
    let mut names = read_granted(&path);
    let before = names.len();
    names.extend(grants.iter().map(|g| g.secret.to_string()));
    if names.len() == before {
        return Ok(());
    }
    let text = serde_json::to_string(&names).expect("names serialize");
    replace_file(&path, text.as_bytes())
}

/// Puts `bytes` at `path` whole: written to a fresh file beside it, then
/// renamed over it, so a reader racing the write sees the old file or the
/// new one. The fresh file is removed if it cannot be put in place.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
    let written =
        std::fs::write(&temporary, bytes).and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

fn read_granted(path: &Path) -> BTreeSet<String> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Every secret ever granted to the sandbox: its own and its execs'.
pub fn granted_names(config: &SandboxConfig) -> Vec<SecretName> {
    let mut names = read_granted(&config.dir().join("granted"));
    for text in &config.grants {
        if let Ok(grant) = SecretGrant::parse(text) {
            names.insert(grant.secret.to_string());
        }
    }
    names
        .iter()
        .filter_map(|n| SecretName::parse(n).ok())
        .collect()
}

/// The mask set of a download: the values of every secret ever granted
/// that still exists, with their variants (one audited read).
pub fn download_mask(
    store: &mut Store,
    row: &SandboxRow,
    config: &SandboxConfig,
) -> Result<Arc<MaskSet>, PlanError> {
    let vault = VaultName::parse(&row.vault)?;
    let present: BTreeSet<String> = store.list_secret_names(&vault)?.into_iter().collect();
    let names: Vec<SecretName> = granted_names(config)
        .into_iter()
        .filter(|n| present.contains(n.as_str()))
        .collect();
    let mut builder = MaskSet::builder(MaskStyle::Label);
    if !names.is_empty() {
        for (name, revealed) in
            names
                .iter()
                .zip(store.read_secrets(Action::SecretMask, &vault, &names)?)
        {
            builder.add(name.as_str(), &revealed.value);
        }
    }
    Ok(builder.build())
}

/// Bytes the tree under `dir` holds (links not followed).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(entry.path()),
                Ok(_) => total += entry.metadata().map_or(0, |m| m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

/// Bytes an upload may still write where the host gave the sandbox no disk
/// of its own but the template asks for `disk_mb` (`None`: the disk, or no
/// limit, bounds it).
pub fn room_left(config: &SandboxConfig) -> Option<u64> {
    let limit = config.policy.limits.disk_mb? * 1024 * 1024;
    let has_disk = config
        .features
        .iter()
        .any(|f| f.name == "disk_limit" && f.available);
    if has_disk {
        return None;
    }
    Some(limit.saturating_sub(tree_bytes(&config.policy.workdir)))
}

/// Sets a sandbox's lifetime (`None`: it never expires) and starts it now.
pub fn set_timeout(dir: &Path, timeout_secs: Option<u64>) -> std::io::Result<()> {
    let path = dir.join("lifetime");
    match timeout_secs {
        Some(secs) => std::fs::write(&path, secs.to_string())?,
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    touch(dir)
}

/// A call used the sandbox: its lifetime starts again.
pub fn touch(dir: &Path) -> std::io::Result<()> {
    let path = dir.join("active");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    file.set_modified(std::time::SystemTime::now())
}

/// The sandbox's timeout in seconds, if it has one.
pub fn timeout_of(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("lifetime"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// When the sandbox expires (milliseconds since the epoch), if it does.
pub fn expires_at_ms(dir: &Path) -> Option<i64> {
    let timeout = timeout_of(dir)?;
    let active = std::fs::metadata(dir.join("active"))
        .and_then(|m| m.modified())
        .ok()?;
    let active_ms = active
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    Some(active_ms + timeout as i64 * 1000)
}

/// The sandboxes running a command now, which a sweep leaves alone
/// whatever their lifetime says (shared by a server's API and its
/// manager).
#[derive(Debug, Default)]
pub struct Busy {
    running: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

impl Busy {
    /// Marks `id` busy until the guard is dropped.
    pub fn enter(self: &Arc<Self>, id: &str) -> BusyGuard {
        *self
            .running
            .lock()
            .expect("busy lock")
            .entry(id.to_owned())
            .or_default() += 1;
        BusyGuard {
            busy: Arc::clone(self),
            id: id.to_owned(),
        }
    }

    pub fn is_busy(&self, id: &str) -> bool {
        self.running.lock().expect("busy lock").contains_key(id)
    }
}

/// A command running in a sandbox (see [`Busy`]).
pub struct BusyGuard {
    busy: Arc<Busy>,
    id: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut running = self.busy.running.lock().expect("busy lock");
        if let Some(count) = running.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.id);
            }
        }
    }
}

/// The sandboxes of `rows` (on this node) whose lifetime is over at `now_ms`.
pub fn expired(home: &Path, rows: &[SandboxRow], now_ms: i64) -> Vec<String> {
    let here = crate::store::this_node();
    rows.iter()
        .filter(|row| row.node.is_empty() || row.node == here)
        .filter(|row| {
            let dir = home.join("sandboxes").join(&row.id);
            // Its lifetime files are on its disk (after a reboot, not
            // mounted until something mounts it).
            let _ = crate::sandbox::disk::ensure_mounted(&dir);
            expires_at_ms(&dir).is_some_and(|at| at <= now_ms)
        })
        .map(|row| row.id.clone())
        .collect()
}

/// Bytes copied between a file and the network per step.
pub const COPY_CHUNK: usize = 256 * 1024;

/// Writes what `source` gives to `path` beneath the sandbox's working
/// directory (atomically, bounded by `disk_mb`) and returns its size. A
/// read error (the client went away) leaves nothing behind.
pub fn upload(
    config: &SandboxConfig,
    path: &Path,
    expected_len: Option<u64>,
    mut source: impl std::io::Read,
) -> Result<u64, BeneathError> {
    let room = room_left(config);
    if let (Some(len), Some(room)) = (expected_len, room) {
        if len > room {
            return Err(BeneathError::NoSpace(path.display().to_string()));
        }
    }
    let mut upload = workdir(config)?.create(path)?;
    // A known size is allocated at once (one extent search, not one per
    // write; a disk too small says so before anything is sent).
    if let Some(len) = expected_len.filter(|&len| len > 0) {
        upload.preallocate(len)?;
    }
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut written = 0u64;
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                return Err(BeneathError::Cut(path.display().to_string()));
            }
        };
        written += n as u64;
        if room.is_some_and(|room| written > room) {
            return Err(BeneathError::NoSpace(path.display().to_string()));
        }
        upload.write(&buf[..n])?;
    }
    upload.commit()?;
    Ok(written)
}

/// Copies `file` to `sink` through the masker of `mask`; stops quietly
/// when the sink is gone.
pub fn download(
    mut file: std::fs::File,
    mask: Arc<MaskSet>,
    mut sink: impl std::io::Write,
) -> std::io::Result<()> {
    use std::io::Read;
    let mut masker = crate::mask::Masker::new(mask);
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut out = Vec::with_capacity(COPY_CHUNK + 64);
    loop {
        out.clear();
        let n = file.read(&mut buf)?;
        if n == 0 {
            masker.finish(&mut out);
            sink.write_all(&out)?;
            return sink.flush();
        }
        masker.push(&buf[..n], &mut out);
        sink.write_all(&out)?;
    }
}
