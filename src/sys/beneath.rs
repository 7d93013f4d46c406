//! Files beneath one directory, every path resolved by the kernel.
//!
//! [`Beneath`] holds a descriptor of a directory (a sandbox's working
//! directory) and opens paths relative to it with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: a `..` that climbs above it,
//! an absolute symlink, a link that leads out, or a `/proc` magic link
//! fails in the kernel (`EXDEV`, `ELOOP`), whatever a process inside
//! swapped in a moment before. Files are written to a fresh name in their
//! final directory and renamed over the target, so a reader never sees half
//! a file and a link at the target is replaced, never followed. What is
//! created is given to the sandbox's uid. Removal walks directories by
//! descriptor (`openat` with `O_NOFOLLOW`), so it never leaves the tree.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, renameat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

/// Why a path beneath the directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    #[error("`{0}` leaves the directory (an absolute path, `..`, or a link that leads out)")]
    Escapes(String),
    #[error("`{0}` does not exist")]
    NotFound(String),
    #[error("`{0}` is not a directory")]
    NotADirectory(String),
    #[error("`{0}` is a directory")]
    IsADirectory(String),
    #[error("no space left for `{0}` (the sandbox's disk is full)")]
    NoSpace(String),
    #[error("the upload of `{0}` was cut short")]
    Cut(String),
    #[error("`{path}`: {call}: {errno}")]
    Os {
        path: String,
        call: &'static str,
        errno: Errno,
    },
}

impl BeneathError {
    fn from_errno(errno: Errno, path: &Path, call: &'static str) -> Self {
        let shown = shown(path);
        match errno {
            Errno::EXDEV | Errno::ELOOP => BeneathError::Escapes(shown),
            Errno::ENOENT => BeneathError::NotFound(shown),
            Errno::ENOTDIR => BeneathError::NotADirectory(shown),
            Errno::EISDIR => BeneathError::IsADirectory(shown),
            Errno::ENOSPC | Errno::EDQUOT | Errno::EFBIG => BeneathError::NoSpace(shown),
            errno => BeneathError::Os {
                path: shown,
                call,
                errno,
            },
        }
    }
}

/// A path as errors show it: at most 200 characters.
fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    if text.chars().count() > 200 {
        format!("{}...", text.chars().take(200).collect::<String>())
    } else {
        text
    }
}

/// Checks a path the caller gave before the kernel sees it: relative,
/// made of plain names (`.` allowed), no NUL, at most 4096 bytes. Returns
/// it without its `.` parts; empty for the directory itself.
pub fn plain_relative(text: &str) -> Result<PathBuf, BeneathError> {
    let path = Path::new(text);
    let escapes = || BeneathError::Escapes(shown(path));
    if text.contains('\0') || text.len() > 4096 || path.is_absolute() {
        return Err(escapes());
    }
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::CurDir => {}
            _ => return Err(escapes()),
        }
    }
    Ok(clean)
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// `file`, `directory`, `symlink` or `other`.
    pub kind: &'static str,
    pub size: u64,
}

/// A directory that paths are resolved beneath.
pub struct Beneath {
    root: OwnedFd,
    /// Who owns what is created (the sandbox's uid and gid), when run as root.
    owner: Option<(u32, u32)>,
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl Beneath {
    /// Opens `dir` (it must be a directory; a link there is not followed).
    pub fn open(dir: &Path, owner: Option<(u32, u32)>) -> Result<Self, BeneathError> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|e| BeneathError::from_errno(e, dir, "open"))?;
        Ok(Beneath {
            root: owned(fd),
            owner,
        })
    }

    fn resolve(&self, path: &Path, flags: OFlag) -> Result<OwnedFd, BeneathError> {
        let target: &Path = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        openat2(self.root.as_raw_fd(), target, how(flags))
            .map(owned)
            .map_err(|e| BeneathError::from_errno(e, path, "openat2"))
    }

    /// Opens a file for reading (a link inside that stays inside is followed).
    pub fn open_file(&self, path: &Path) -> Result<(File, u64), BeneathError> {
        let fd = self.resolve(path, OFlag::O_RDONLY)?;
        let stat = nix::sys::stat::fstat(fd.as_raw_fd())
            .map_err(|e| BeneathError::from_errno(e, path, "fstat"))?;
        if kind_of(&stat) == "directory" {
            return Err(BeneathError::IsADirectory(shown(path)));
        }
        Ok((File::from(fd), stat.st_size as u64))
    }

    fn give(&self, fd: RawFd, path: &Path) -> Result<(), BeneathError> {
        if let Some((uid, gid)) = self.owner {
            fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| BeneathError::from_errno(e, path, "fchown"))?;
        }
        Ok(())
    }

    /// Creates every missing directory of `dir` (each given to the owner)
    /// and returns a descriptor of the last.
    pub fn make_dirs(&self, dir: &Path) -> Result<OwnedFd, BeneathError> {
        let mut so_far = PathBuf::new();
        let mut current = self.resolve(&so_far, OFlag::O_DIRECTORY | OFlag::O_RDONLY)?;
        for component in dir.components() {
            let name = component.as_os_str();
            so_far.push(name);
            match mkdirat(
                Some(current.as_raw_fd()),
                name,
                Mode::from_bits_truncate(0o755),
            ) {
                Ok(()) => {
                    let made = openat(
                        Some(current.as_raw_fd()),
                        name,
                        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| BeneathError::from_errno(e, &so_far, "openat"))?;
                    self.give(made, &so_far)?;
                    current = owned(made);
                }
                Err(Errno::EEXIST) => {
                    current = self.resolve(&so_far, OFlag::O_DIRECTORY | OFlag::O_RDONLY)?;
                }
                Err(e) => return Err(BeneathError::from_errno(e, &so_far, "mkdirat")),
            }
        }
        Ok(current)
    }

    /// Starts writing `path` (its directories made): the bytes go to a
    /// fresh file beside it, which [`Upload::commit`] renames over it.
    pub fn create(&self, path: &Path) -> Result<Upload, BeneathError> {
        let name = path
            .file_name()
            .ok_or_else(|| BeneathError::IsADirectory(shown(path)))?
            .to_owned();
        let parent = self.make_dirs(path.parent().unwrap_or(Path::new("")))?;
        let temporary = format!(
            ".{}.shroud-upload-{}",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        );
        let fd = openat(
            Some(parent.as_raw_fd()),
            temporary.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(|e| BeneathError::from_errno(e, path, "openat"))?;
        let file = File::from(owned(fd));
        self.give(file.as_raw_fd(), path)?;
        let _ = fchmod(file.as_raw_fd(), Mode::from_bits_truncate(0o644));
        Ok(Upload {
            file: Some(file),
            parent,
            temporary,
            name: name.to_string_lossy().into_owned(),
            path: path.to_owned(),
        })
    }

    /// The entries of the directory `dir`, sorted by name.
    pub fn list(&self, dir: &Path) -> Result<Vec<Entry>, BeneathError> {
        let fd = self.resolve(dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY)?;
        let mut entries = Vec::new();
        let listed = nix::dir::Dir::from_fd(fd.as_raw_fd())
            .map_err(|e| BeneathError::from_errno(e, dir, "fdopendir"))?;
        // `Dir` owns the descriptor from here on.
        std::mem::forget(fd);
        let mut listed = listed;
        let parent = listed.as_raw_fd();
        let names: Vec<std::ffi::CString> = listed
            .iter()
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_owned())
            .filter(|name| name.as_bytes() != b"." && name.as_bytes() != b"..")
            .filter(|name| !is_upload_in_flight(name.as_bytes()))
            .collect();
        for name in names {
            let stat = match fstatat(
                Some(parent),
                name.as_c_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(stat) => stat,
                // Removed between the read of the directory and now (an
                // upload cut short, a command's own temporary file): it is
                // no longer there to list.
                Err(Errno::ENOENT) => continue,
                Err(e) => return Err(BeneathError::from_errno(e, dir, "fstatat")),
            };
            entries.push(Entry {
                name: name.to_string_lossy().into_owned(),
                kind: kind_of(&stat),
                size: stat.st_size as u64,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Removes `path`: a file or a link (never what it points to), or a
    /// directory with everything in it.
    pub fn remove(&self, path: &Path) -> Result<(), BeneathError> {
        let name = path
            .file_name()
            .ok_or_else(|| BeneathError::Escapes(shown(path)))?;
        let parent = self.resolve(
            path.parent().unwrap_or(Path::new("")),
            OFlag::O_DIRECTORY | OFlag::O_RDONLY,
        )?;
        remove_at(parent.as_raw_fd(), name, path)
    }
}

/// Whether `name` is the temporary file of an upload not yet committed
/// (`.NAME.shroud-upload-` and 32 hex digits): half a file, never listed.
fn is_upload_in_flight(name: &[u8]) -> bool {
    const MARK: &[u8] = b".shroud-upload-";
    let Some(suffix_at) = name.len().checked_sub(32) else {
        return false;
    };
    let (head, suffix) = name.split_at(suffix_at);
    name.first() == Some(&b'.') && head.ends_with(MARK) && suffix.iter().all(u8::is_ascii_hexdigit)
}

/// Removes `name` in the directory `parent`, directories depth first, by
/// descriptor (a link is removed, never followed).
fn remove_at(parent: RawFd, name: &std::ffi::OsStr, path: &Path) -> Result<(), BeneathError> {
    let stat = fstatat(Some(parent), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| BeneathError::from_errno(e, path, "fstatat"))?;
    if kind_of(&stat) != "directory" {
        return unlinkat(Some(parent), name, UnlinkatFlags::NoRemoveDir)
            .map_err(|e| BeneathError::from_errno(e, path, "unlinkat"));
    }
    let fd = openat(
        Some(parent),
        name,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| BeneathError::from_errno(e, path, "openat"))?;
    let mut dir =
        nix::dir::Dir::from_fd(fd).map_err(|e| BeneathError::from_errno(e, path, "fdopendir"))?;
    let children: Vec<std::ffi::OsString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|entry| {
            use std::os::unix::ffi::OsStrExt;
            std::ffi::OsStr::from_bytes(entry.file_name().to_bytes()).to_owned()
        })
        .filter(|child| child != "." && child != "..")
        .collect();
    for child in children {
        remove_at(dir.as_raw_fd(), &child, &path.join(&child))?;
    }
    drop(dir);
    unlinkat(Some(parent), name, UnlinkatFlags::RemoveDir)
        .map_err(|e| BeneathError::from_errno(e, path, "unlinkat"))
}

fn kind_of(stat: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFLNK => "symlink",
        _ => "other",
    }
}

/// A file being written beneath the directory; dropped without
/// [`Upload::commit`], it is removed.
pub struct Upload {
    file: Option<File>,
    parent: OwnedFd,
    temporary: String,
    name: String,
    path: PathBuf,
}

impl Upload {
    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), BeneathError> {
        use std::io::Write;
        let file = self
            .file
            .as_mut()
            .expect("an upload is written before commit");
        file.write_all(bytes).map_err(|e| match e.raw_os_error() {
            Some(code) => BeneathError::from_errno(Errno::from_raw(code), &self.path, "write"),
            None => BeneathError::Os {
                path: shown(&self.path),
                call: "write",
                errno: Errno::EIO,
            },
        })
    }

    /// Allocates `len` bytes for the file up front (the file system's
    /// `fallocate`; where it has none, nothing is done).
    pub fn preallocate(&mut self, len: u64) -> Result<(), BeneathError> {
        let file = self
            .file
            .as_ref()
            .expect("an upload is written before commit");
        match nix::fcntl::fallocate(
            file.as_raw_fd(),
            nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            0,
            len as i64,
        ) {
            Ok(()) | Err(Errno::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(BeneathError::from_errno(e, &self.path, "fallocate")),
        }
    }

    /// Puts the file in place of `path` (atomically: a reader sees the old
    /// file or the whole new one).
    pub fn commit(mut self) -> Result<(), BeneathError> {
        // Not synced: a sandbox's files are scratch, and fsync would cost
        // an upload as much as its writes.
        drop(self.file.take());
        let parent = self.parent.as_raw_fd();
        renameat(
            Some(parent),
            self.temporary.as_str(),
            Some(parent),
            self.name.as_str(),
        )
        .map_err(|e| BeneathError::from_errno(e, &self.path, "renameat"))?;
        self.temporary.clear();
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.temporary.is_empty() {
            let _ = unlinkat(
                Some(self.parent.as_raw_fd()),
                self.temporary.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

impl From<BeneathError> for io::Error {
    fn from(e: BeneathError) -> Self {
        io::Error::other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_in_flight_is_not_listed_and_a_committed_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let beneath = Beneath::open(dir.path(), None).unwrap();
        let mut upload = beneath.create(Path::new("data.bin")).unwrap();
        upload.write(b"abc").unwrap();
        std::fs::write(dir.path().join(".kept.shroud-upload-notahexsuffix"), b"x").unwrap();
        let names = |b: &Beneath| -> Vec<String> {
            b.list(Path::new(""))
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect()
        };
        assert_eq!(names(&beneath), vec![".kept.shroud-upload-notahexsuffix"]);
        upload.commit().unwrap();
        assert_eq!(
            names(&beneath),
            vec![".kept.shroud-upload-notahexsuffix", "data.bin"]
        );
    }

    #[test]
    fn the_temporary_name_is_recognised_exactly() {
        let hex = "0123456789abcdef0123456789abcdef";
        assert!(is_upload_in_flight(
            format!(".a.shroud-upload-{hex}").as_bytes()
        ));
        assert!(!is_upload_in_flight(
            format!("a.shroud-upload-{hex}").as_bytes()
        ));
        assert!(!is_upload_in_flight(
            format!(".a.shroud-upload-{}", &hex[1..]).as_bytes()
        ));
        assert!(!is_upload_in_flight(b".shroud-upload-"));
    }
}
