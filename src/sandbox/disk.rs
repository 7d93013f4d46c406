//! A sandbox's disk quota: `[limits] disk_mb` as a file system of its own.
//!
//! Without it one sandbox can fill the disk that holds the vault, and every
//! vault operation then fails. Where the host allows it (shroud runs as
//! root, `mkfs.ext4` is installed, loop devices work), the sandbox's
//! directory (`<home>/sandboxes/<id>`, which holds its working and home
//! directories) is an ext4 file system in a sparse image file beside it
//! (`<id>.disk`), mounted through a loop device: writes past the size fail
//! with ENOSPC inside the sandbox and touch nothing else. The image lives on
//! disk, so the files survive the server and the host restarting: an exec
//! mounts it again when it finds it unmounted. Elsewhere the limit cannot be
//! enforced, and [`Feature`]'s report says so.
//!
//! The trade-off: a loop device per live sandbox, and `mkfs` at create
//! (about 25 ms for a sparse image of any size).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::apply::Feature;
use super::ns;

/// The image file of the sandbox whose directory is `sandbox_dir`.
pub fn image_path(sandbox_dir: &Path) -> PathBuf {
    let mut name = sandbox_dir.as_os_str().to_owned();
    name.push(".disk");
    PathBuf::from(name)
}

/// Where `mkfs.ext4` is: on PATH, or in the system directories a minimal
/// PATH leaves out.
fn mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|candidate| candidate.is_file())
}

/// Gives the sandbox at `sandbox_dir` (an empty directory) a file system of
/// `size_mb` MiB owned by `owner`, mounted there. Returns what the report
/// says: available, or why not (nothing is left behind then).
pub fn create(sandbox_dir: &Path, size_mb: u64, owner: Option<(u32, u32)>) -> Feature {
    let result = match owner {
        None => Err(io::Error::other(
            "shroud is not root, so it cannot mount a file system of the sandbox's own; the working directory can fill the disk it is on",
        )),
        Some(owner) => room_for(sandbox_dir, size_mb).and_then(|()| make(sandbox_dir, size_mb, owner)),
    };
    match result {
        Ok(()) => Feature {
            name: "disk_limit".to_owned(),
            available: true,
            detail: format!("available: {size_mb} MiB, a file system of the sandbox's own"),
        },
        Err(e) => {
            let _ = std::fs::remove_file(image_path(sandbox_dir));
            Feature {
                name: "disk_limit".to_owned(),
                available: false,
                detail: format!("not available: {e}"),
            }
        }
    }
}

/// Disk kept free beside every sandbox's promised size, for the vault.
const RESERVE_MB: u64 = 256;

/// Whether the disk holding the sandboxes can keep every promise: the
/// images are sparse, so what they may still grow by (their size less what
/// they hold now), this one's `size_mb` and a reserve for the vault must
/// fit in what is free. Otherwise sandboxes filling their disks would fill
/// the host's, which is what the limit is for.
fn room_for(sandbox_dir: &Path, size_mb: u64) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    const MIB: u64 = 1024 * 1024;
    let Some(parent) = sandbox_dir.parent() else {
        return Ok(());
    };
    let free = ns::free_space(parent)?;
    let promised: u64 = std::fs::read_dir(parent)?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "disk"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len().saturating_sub(m.blocks() * 512))
        .sum();
    let wanted = (size_mb + RESERVE_MB) * MIB;
    if free < promised.saturating_add(wanted) {
        return Err(io::Error::other(format!(
            "the disk holding {} has {} MiB free, and the sandboxes there may still grow by {} MiB: no room to promise {size_mb} MiB more (and keep {RESERVE_MB} MiB for the vault)",
            parent.display(),
            free / MIB,
            promised / MIB
        )));
    }
    Ok(())
}

fn make(sandbox_dir: &Path, size_mb: u64, (uid, gid): (u32, u32)) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mkfs = mkfs().ok_or_else(|| io::Error::other("mkfs.ext4 is not installed"))?;
    let image = image_path(sandbox_dir);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&image)
        .map_err(|e| io::Error::new(e.kind(), format!("create {}: {e}", image.display())))?;
    file.set_len(size_mb.saturating_mul(1024 * 1024))
        .map_err(|e| io::Error::new(e.kind(), format!("size {}: {e}", image.display())))?;
    drop(file);
    let output = Command::new(&mkfs)
        .args(["-q", "-F", "-m", "0", "-E"])
        .arg(format!(
            "lazy_itable_init=1,lazy_journal_init=1,root_owner={uid}:{gid}"
        ))
        .arg(&image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("run {}: {e}", mkfs.display())))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{} failed: {}",
            mkfs.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    ns::mount_image(&image, sandbox_dir)
}

/// Whether the sandbox's directory is what its commands should get: it
/// has no file system of its own, or that file system is mounted.
pub fn is_ready(sandbox_dir: &Path) -> bool {
    !image_path(sandbox_dir).is_file() || ns::is_mount_point(sandbox_dir)
}

/// Mounts the sandbox's file system again if it has one and it is not
/// mounted (after a host restart). Two execs that find it unmounted at
/// once must not both mount it (two loop devices over one image would
/// corrupt it): the check and the mount happen under a lock on the image.
pub fn ensure_mounted(sandbox_dir: &Path) -> io::Result<()> {
    if is_ready(sandbox_dir) {
        return Ok(());
    }
    let image = image_path(sandbox_dir);
    // Under the image's lock, which its removal holds too: an image being
    // removed is not mounted again (the sweep of expired sandboxes looks at
    // every sandbox every second).
    let Some(_locked) = crate::sys::fd::lock_existing(&image)? else {
        return Ok(());
    };
    if image.is_file() && !ns::is_mount_point(sandbox_dir) {
        ns::mount_image(&image, sandbox_dir)?;
    }
    Ok(())
}

/// Unmounts the sandbox's file system and removes its image, if it has one.
pub fn remove(sandbox_dir: &Path) -> io::Result<()> {
    let image = image_path(sandbox_dir);
    // The lock is held until the image is gone (see `ensure_mounted`).
    let _locked = crate::sys::fd::lock_existing(&image)?;
    if ns::is_mount_point(sandbox_dir) {
        ns::unmount(sandbox_dir)?;
    }
    match std::fs::remove_file(&image) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io::Error::new(
            e.kind(),
            format!("remove {}: {e}", image.display()),
        )),
        _ => Ok(()),
    }
}
