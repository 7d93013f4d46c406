//! The sandbox's own syscalls: namespaces, mounts, resource limits and
//! privileges. The only file that calls them (DESIGN.md, style rule 3);
//! `apply.rs` decides what to apply, in which order.
//!
//! Every function names the call it makes and its arguments in its error,
//! so a failure on an unusual host says what the kernel refused.

use std::io;

use nix::sys::resource::{setrlimit, Resource};

use crate::sys::call;

/// Which namespaces to create.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Namespaces {
    pub user: bool,
    pub mount: bool,
    pub pid: bool,
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

/// unshare(2) with the requested namespaces.
pub fn unshare_namespaces(ns: Namespaces) -> io::Result<()> {
    use nix::sched::CloneFlags;
    let mut flags = CloneFlags::empty();
    for (on, flag) in [
        (ns.user, CloneFlags::CLONE_NEWUSER),
        (ns.mount, CloneFlags::CLONE_NEWNS),
        (ns.pid, CloneFlags::CLONE_NEWPID),
        (ns.net, CloneFlags::CLONE_NEWNET),
        (ns.ipc, CloneFlags::CLONE_NEWIPC),
        (ns.uts, CloneFlags::CLONE_NEWUTS),
    ] {
        if on {
            flags |= flag;
        }
    }
    call(|| format!("unshare({flags:?})"), nix::sched::unshare(flags))
}

/// Drops every privilege to `uid`/`gid` (needs root): no supplementary groups.
pub fn become_user(uid: u32, gid: u32) -> io::Result<()> {
    use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
    call(|| "setgroups([])".to_owned(), setgroups(&[]))?;
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    call(|| format!("setresgid({gid})"), setresgid(g, g, g))?;
    call(|| format!("setresuid({uid})"), setresuid(u, u, u))
}

/// Maps root inside a new user namespace to `uid`/`gid` outside.
pub fn map_root_to(uid: u32, gid: u32) -> io::Result<()> {
    // Writing the maps needs a dumpable process; shroud made itself
    // undumpable at start (RLIMIT_CORE stays 0, so still no core files).
    crate::sys::proc::set_dumpable()?;
    let write = |file: &str, text: String| {
        std::fs::write(file, &text)
            .map_err(|e| io::Error::new(e.kind(), format!("write {file} ({text:?}): {e}")))
    };
    write("/proc/self/setgroups", "deny".to_owned())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))
}

/// Makes every mount private to this mount namespace.
pub fn make_mounts_private() -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    call(
        || "mount(/, MS_REC | MS_PRIVATE)".to_owned(),
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
    )
}

/// Mounts a tmpfs at `target` with `options` (e.g. "mode=1777").
pub fn mount_tmpfs(target: &std::path::Path, options: &str) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    call(
        || format!("mount(tmpfs, {}, {options})", target.display()),
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options),
        ),
    )
}

/// Bind-mounts `source` at `target`.
pub fn bind_mount(source: &std::path::Path, target: &std::path::Path) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    call(
        || {
            format!(
                "mount({}, {}, MS_BIND | MS_REC)",
                source.display(),
                target.display()
            )
        },
        mount(
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        ),
    )
}

/// Remounts the mount at `target` read-only, keeping its locked flags.
pub fn remount_read_only(target: &std::path::Path, bind: bool) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sys::statvfs::{statvfs, FsFlags};
    let current = call(|| format!("statvfs({})", target.display()), statvfs(target))?.flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    if bind {
        flags |= MsFlags::MS_BIND;
    }
    for (have, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(have) {
            flags |= keep;
        }
    }
    call(
        || format!("mount({}, {flags:?})", target.display()),
        mount(None::<&str>, target, None::<&str>, flags, None::<&str>),
    )
}

/// Mounts a fresh procfs at /proc (for a new pid namespace).
pub fn mount_proc() -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    call(
        || "mount(proc, /proc)".to_owned(),
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        ),
    )
}

/// Brings the loopback interface up in this process's network namespace
/// (a new one starts with `lo` down): programs that talk to themselves over
/// 127.0.0.1 work, and nothing outside is reachable (the namespace has no
/// other interface). Needs CAP_NET_ADMIN over the namespace.
pub fn bring_up_loopback() -> io::Result<()> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let what = |call: &str, e: io::Error| io::Error::new(e.kind(), format!("{call} lo: {e}"));
    // SAFETY: socket(2) with constant arguments; the fd is owned below.
    let fd = unsafe {
        nix::libc::socket(
            nix::libc::AF_INET,
            nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(what("socket(AF_INET) for", io::Error::last_os_error()));
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut request: nix::libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as nix::libc::c_char;
    }
    let raw = std::os::fd::AsRawFd::as_raw_fd(&socket);
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq passed,
    // which lives for both calls.
    unsafe {
        if nix::libc::ioctl(raw, nix::libc::SIOCGIFFLAGS, &mut request) < 0 {
            return Err(what("ioctl(SIOCGIFFLAGS)", io::Error::last_os_error()));
        }
        request.ifr_ifru.ifru_flags |=
            (nix::libc::IFF_UP | nix::libc::IFF_RUNNING) as nix::libc::c_short;
        if nix::libc::ioctl(raw, nix::libc::SIOCSIFFLAGS, &request) < 0 {
            return Err(what("ioctl(SIOCSIFFLAGS)", io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// sethostname(2).
pub fn set_hostname(name: &str) -> io::Result<()> {
    call(
        || format!("sethostname({name})"),
        nix::unistd::sethostname(name),
    )
}

/// A resource limit for the command (soft = hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    CpuSeconds,
    AddressSpaceBytes,
    OpenFiles,
    Processes,
    FileSizeBytes,
    CoreBytes,
}

/// setrlimit(2), soft and hard.
pub fn set_rlimit(which: Rlimit, value: u64) -> io::Result<()> {
    let resource = match which {
        Rlimit::CpuSeconds => Resource::RLIMIT_CPU,
        Rlimit::AddressSpaceBytes => Resource::RLIMIT_AS,
        Rlimit::OpenFiles => Resource::RLIMIT_NOFILE,
        Rlimit::Processes => Resource::RLIMIT_NPROC,
        Rlimit::FileSizeBytes => Resource::RLIMIT_FSIZE,
        Rlimit::CoreBytes => Resource::RLIMIT_CORE,
    };
    call(
        || format!("setrlimit({resource:?}, {value})"),
        setrlimit(resource, value, value),
    )
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1).
pub fn set_no_new_privs() -> io::Result<()> {
    call(
        || "prctl(PR_SET_NO_NEW_PRIVS, 1)".to_owned(),
        nix::sys::prctl::set_no_new_privs(),
    )
}
