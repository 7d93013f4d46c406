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
    remount(target, bind, true)
}

/// Makes the bind mount at `target` writable again (a bind of a directory
/// from a read-only tree starts read-only), keeping its other flags.
pub fn remount_writable(target: &std::path::Path) -> io::Result<()> {
    remount(target, true, false)
}

fn remount(target: &std::path::Path, bind: bool, read_only: bool) -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sys::statvfs::{statvfs, FsFlags};
    let current = call(|| format!("statvfs({})", target.display()), statvfs(target))?.flags();
    let mut flags = MsFlags::MS_REMOUNT;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
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

/// Changes the working directory to `relative` beneath `dir`, resolved by
/// the kernel (openat2 with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`):
/// `..` above `dir`, an absolute link or one that leads out fails, whatever
/// was swapped in since the supervisor checked the path. Without openat2
/// (Linux before 5.6) it changes directory, then checks where it landed.
pub fn chdir_beneath(dir: &std::path::Path, relative: &std::path::Path) -> io::Result<()> {
    use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let base = call(
        || format!("open({})", dir.display()),
        open(dir, flags, Mode::empty()),
    )?;
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let target = openat2(base, relative, how);
    let _ = nix::unistd::close(base);
    match target {
        Ok(target) => {
            let changed = nix::unistd::fchdir(target);
            let _ = nix::unistd::close(target);
            call(|| format!("fchdir({})", relative.display()), changed)
        }
        Err(nix::errno::Errno::ENOSYS) => {
            std::env::set_current_dir(dir.join(relative))?;
            let landed = std::env::current_dir()?;
            if landed.starts_with(dir.canonicalize()?) {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "{} leads out of {}",
                    relative.display(),
                    dir.display()
                )))
            }
        }
        Err(e) => call(
            || {
                format!(
                    "openat2({}, {}, RESOLVE_BENEATH)",
                    dir.display(),
                    relative.display()
                )
            },
            Err::<(), _>(e),
        ),
    }
}

/// A namespace a sandbox's commands share (see `sandbox::holder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedNamespace {
    User,
    Network,
}

impl SharedNamespace {
    fn name(self) -> &'static str {
        match self {
            SharedNamespace::User => "user",
            SharedNamespace::Network => "net",
        }
    }
}

/// A descriptor of this process's own namespace of `kind`
/// (`/proc/self/ns/...`), which keeps it alive while it is open.
pub fn open_own_namespace(kind: SharedNamespace) -> io::Result<std::os::fd::OwnedFd> {
    let path = format!("/proc/self/ns/{}", kind.name());
    std::fs::File::open(&path)
        .map(std::os::fd::OwnedFd::from)
        .map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))
}

/// setns(2) into the namespace of `kind` that `fd` refers to. Joining a
/// user namespace gives every capability inside it (the caller's uid owns
/// it); the network namespace it owns can be joined after that.
pub fn join_namespace(fd: std::os::fd::BorrowedFd<'_>, kind: SharedNamespace) -> io::Result<()> {
    use nix::sched::{setns, CloneFlags};
    let flag = match kind {
        SharedNamespace::User => CloneFlags::CLONE_NEWUSER,
        SharedNamespace::Network => CloneFlags::CLONE_NEWNET,
    };
    call(|| format!("setns({flag:?})"), setns(fd, flag))
}

/// Lets go of a network namespace pinned by a bind mount at `pin` (how
/// shroud before the namespace holder kept one; it ends with its last
/// process), so that the sandbox's directory can be removed.
pub fn unpin_netns(pin: &std::path::Path) -> io::Result<()> {
    if is_mount_point(pin) {
        call(
            || format!("umount2({}, MNT_DETACH)", pin.display()),
            nix::mount::umount2(pin, nix::mount::MntFlags::MNT_DETACH),
        )?;
    }
    // The lock beside it stays: the removal of the sandbox holds it, and
    // removes it with the rest.
    match std::fs::remove_file(pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
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

/// prctl(PR_SET_PDEATHSIG, SIGKILL): this process is killed when the
/// thread that started it ends (the supervisor, even killed by SIGKILL).
/// With `parent`, a parent already gone before the call is caught too:
/// the process exits at once when its parent is no longer `parent`.
pub fn die_with_parent(parent: Option<u32>) -> io::Result<()> {
    call(
        || "prctl(PR_SET_PDEATHSIG, SIGKILL)".to_owned(),
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL),
    )?;
    if let Some(parent) = parent {
        if nix::unistd::getppid().as_raw() as u32 != parent {
            std::process::exit(125);
        }
    }
    Ok(())
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1).
pub fn set_no_new_privs() -> io::Result<()> {
    call(
        || "prctl(PR_SET_NO_NEW_PRIVS, 1)".to_owned(),
        nix::sys::prctl::set_no_new_privs(),
    )
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Makes every mount of this mount namespace read-only, submounts included
/// (`/`, but also `/home`, `/work` or any other file system mounted below
/// it), in one `mount_setattr(2)` with AT_RECURSIVE (Linux 5.12), else by
/// remounting each mount of /proc/self/mountinfo. Mounts made afterwards
/// (a private /tmp, the working directory bound back) are not affected.
pub fn make_tree_read_only() -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `size` bytes of the struct we pass, which
    // lives for the call; the path is a NUL-terminated constant.
    let done = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            nix::libc::AT_FDCWD,
            c"/".as_ptr(),
            nix::libc::AT_RECURSIVE as nix::libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if done == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() != Some(nix::libc::ENOSYS) {
        return Err(io::Error::new(
            error.kind(),
            format!("mount_setattr(/, AT_RECURSIVE, MOUNT_ATTR_RDONLY): {error}"),
        ));
    }
    // An older kernel: one remount per mount point, parents first.
    let table = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| io::Error::new(e.kind(), format!("read /proc/self/mountinfo: {e}")))?;
    for mount_point in table.lines().filter_map(|line| line.split(' ').nth(4)) {
        let path = std::path::PathBuf::from(unescape_mountinfo(mount_point));
        match remount_read_only(&path, true) {
            Ok(()) => {}
            // A mount point hidden under another mount cannot be reached by
            // path; the mount above it was made read-only itself.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Mount points in mountinfo escape space, tab, newline and backslash as
/// `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The device nodes a sandbox's `/dev` holds (bound from the host's).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Gives the sandbox a `/dev` of its own, as bubblewrap's `--dev` does: a
/// small read-only tmpfs holding only [`DEVICES`] (bound from the host's
/// nodes, so they work in a user namespace too), the usual `fd`, `stdin`,
/// `stdout`, `stderr` and `ptmx` links, a devpts instance of its own on
/// `/dev/pts` (so the host's terminals, the user's among them, are not
/// there) and a private `/dev/shm` mounted with `shm_options`. Every other
/// device of the host (a `/dev/kvm`, a `/dev/fuse`, disks) is out of reach.
pub fn mount_private_dev(shm_options: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::path::Path;
    let dev = Path::new("/dev");
    // Handles on the host's nodes, opened before /dev is covered.
    let mut nodes = Vec::new();
    for name in DEVICES {
        let path = dev.join(name);
        if path.exists() {
            nodes.push((crate::sys::fd::open_path(&path)?, name));
        }
    }
    mount_tmpfs(dev, "mode=755,size=64k")?;
    let made = |what: &str, result: io::Result<()>| {
        result.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
    };
    for (handle, name) in &nodes {
        let target = dev.join(name);
        made(
            &format!("create {}", target.display()),
            std::fs::File::create(&target).map(drop),
        )?;
        let source = std::path::PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd()));
        bind_mount(&source, &target)?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        made(
            &format!("symlink /dev/{link}"),
            std::os::unix::fs::symlink(to, dev.join(link)),
        )?;
    }
    for dir in ["pts", "shm"] {
        made(
            &format!("mkdir /dev/{dir}"),
            std::fs::create_dir(dev.join(dir)),
        )?;
    }
    use nix::mount::{mount, MsFlags};
    call(
        || "mount(devpts, /dev/pts, newinstance,ptmxmode=0666,mode=620)".to_owned(),
        mount(
            Some("devpts"),
            &dev.join("pts"),
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=620"),
        ),
    )?;
    mount_tmpfs(&dev.join("shm"), shm_options)?;
    remount_read_only(dev, false)
}

/// Gives this process a new, empty session keyring, so the caller's (a
/// Kerberos ticket cache, ecryptfs keys, anything kept with `keyctl`) is
/// neither readable nor writable from the command.
pub fn leave_callers_keyring() -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: nix::libc::c_long = 1;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, NULL) takes no buffer.
    let id = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<nix::libc::c_char>(),
        )
    };
    if id < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("keyctl(KEYCTL_JOIN_SESSION_KEYRING): {e}"),
        ));
    }
    Ok(())
}

/// System calls a sandboxed command gets EPERM for: the kernel keyring
/// (the caller's secrets live there), io_uring, eBPF, perf events,
/// userfaultfd, module and kexec loading, `open_by_handle_at` (the classic
/// container escape), accounting, swap and reboot. None is needed by the
/// programs a sandbox runs; each is kernel attack surface or a way out.
fn denied_syscalls() -> Vec<i64> {
    use nix::libc;
    vec![
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_open_by_handle_at,
        libc::SYS_acct,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
    ]
}

/// Installs the sandbox's seccomp filters: [`denied_syscalls`] fail with
/// EPERM, and with `network_off`, `socket(AF_VSOCK, ...)` fails with
/// EAFNOSUPPORT (a network namespace does not cover vsock, the way to the
/// hypervisor and whatever the VM's host forwards). Installed with the
/// capability the process has in its user namespace, so it does not force
/// `no_new_privs` on a template that turned it off.
pub fn install_seccomp(network_off: bool) -> io::Result<()> {
    use seccompiler::{
        BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
        SeccompRule, TargetArch,
    };
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| io::Error::other(format!("seccomp on {}: {e}", std::env::consts::ARCH)))?;
    let compile = |rules: std::collections::BTreeMap<i64, Vec<SeccompRule>>, errno: i32| {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .and_then(BpfProgram::try_from)
        .map_err(|e| io::Error::other(format!("compile the seccomp filter: {e}")))?;
        Ok::<_, io::Error>(filter)
    };
    let mut programs = vec![compile(
        denied_syscalls()
            .into_iter()
            .map(|n| (n, Vec::new()))
            .collect(),
        nix::libc::EPERM,
    )?];
    if network_off {
        let vsock = SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            nix::libc::AF_VSOCK as u64,
        )
        .map_err(|e| io::Error::other(format!("seccomp condition: {e}")))?])
        .map_err(|e| io::Error::other(format!("seccomp rule: {e}")))?;
        programs.push(compile(
            [(nix::libc::SYS_socket, vec![vsock])].into_iter().collect(),
            nix::libc::EAFNOSUPPORT,
        )?);
    }
    for program in &programs {
        let fprog = nix::libc::sock_fprog {
            len: program.len() as u16,
            filter: program.as_ptr() as *mut nix::libc::sock_filter,
        };
        // SAFETY: seccomp copies the program, which lives for the call.
        let done = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_seccomp,
                nix::libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const nix::libc::sock_fprog,
            )
        };
        if done != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("seccomp(SECCOMP_SET_MODE_FILTER): {e}"),
            ));
        }
    }
    Ok(())
}

/// Drops every capability for good: the bounding set emptied, ambient
/// capabilities cleared, the securebits that keep uid 0 from regaining
/// them at exec set and locked, and the permitted, effective and
/// inheritable sets emptied. After it, "root" inside a user namespace is an
/// ordinary user: it cannot unmount the sandbox's mounts to see what they
/// cover, nor remount the system read-write. Needs CAP_SETPCAP (in the
/// process's own user namespace) for the first two steps.
pub fn drop_capabilities() -> io::Result<()> {
    use nix::libc;
    // Up to the kernel's last capability: PR_CAPBSET_DROP says EINVAL past it.
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break; // beyond the kernel's last capability
            }
            return Err(io::Error::new(
                e.kind(),
                format!("prctl(PR_CAPBSET_DROP, {cap}): {e}"),
            ));
        }
    }
    // SAFETY: prctl with integer arguments only.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if cleared != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("prctl(PR_CAP_AMBIENT_CLEAR_ALL): {e}"),
        ));
    }
    let bits = libc::SECBIT_NOROOT
        | libc::SECBIT_NOROOT_LOCKED
        | libc::SECBIT_NO_SETUID_FIXUP
        | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE
        | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong, 0, 0, 0) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("prctl(PR_SET_SECUREBITS, {bits:#x}): {e}"),
        ));
    }
    #[repr(C)]
    struct CapHeader {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    struct CapData {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
        CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads one header and two data structs (version 3),
    // which live for the call.
    let set = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if set != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("capset(0, 0, 0): {e}")));
    }
    Ok(())
}

/// `struct loop_info64` of the loop driver.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    size_limit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` of LOOP_CONFIGURE.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const LOOP_CTL_GET_FREE: nix::libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: nix::libc::c_ulong = 0x4C0A;
const LOOP_SET_FD: nix::libc::c_ulong = 0x4C00;
const LOOP_SET_STATUS64: nix::libc::c_ulong = 0x4C04;
const LOOP_CLR_FD: nix::libc::c_ulong = 0x4C01;
/// Detach the loop device when its last user (the mount) goes away.
const LO_FLAGS_AUTOCLEAR: u32 = 4;

fn ioctl_error(what: String) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Mounts the ext4 file system in the image file `image` at `target`
/// (nosuid, nodev), through a loop device of its own that the kernel
/// detaches once the file system is unmounted. Needs root.
pub fn mount_image(image: &std::path::Path, target: &std::path::Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", image.display())))?;
    let control = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")
        .map_err(|e| io::Error::new(e.kind(), format!("open /dev/loop-control: {e}")))?;
    // Another process may take the free device between the two calls: try
    // again with the next one.
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let number = unsafe { nix::libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if number < 0 {
            return Err(ioctl_error(
                "ioctl(/dev/loop-control, LOOP_CTL_GET_FREE)".to_owned(),
            ));
        }
        let path = format!("/dev/loop{number}");
        let device = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))?;
        // SAFETY: all-zero is a valid loop_config.
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = backing.as_raw_fd() as u32;
        config.info.flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads one loop_config, which lives for the call.
        let mut done = unsafe { nix::libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE, &config) };
        if done < 0 && io::Error::last_os_error().raw_os_error() == Some(nix::libc::EINVAL) {
            // A kernel before 5.8: attach, then set the flags.
            // SAFETY: LOOP_SET_FD takes the backing file's descriptor.
            done =
                unsafe { nix::libc::ioctl(device.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) };
            if done == 0 {
                // SAFETY: LOOP_SET_STATUS64 reads one loop_info64.
                done = unsafe {
                    nix::libc::ioctl(device.as_raw_fd(), LOOP_SET_STATUS64, &config.info)
                };
                if done < 0 {
                    let e = ioctl_error(format!("ioctl({path}, LOOP_SET_STATUS64)"));
                    // SAFETY: LOOP_CLR_FD takes no argument.
                    unsafe { nix::libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD) };
                    return Err(e);
                }
            }
        }
        if done < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(nix::libc::EBUSY) {
                continue;
            }
            return Err(ioctl_error(format!("ioctl({path}, LOOP_CONFIGURE)")));
        }
        use nix::mount::{mount, MsFlags};
        let mounted = call(
            || format!("mount({path}, {}, ext4)", target.display()),
            mount(
                Some(path.as_str()),
                target,
                Some("ext4"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                None::<&str>,
            ),
        );
        if mounted.is_err() {
            // SAFETY: LOOP_CLR_FD takes no argument.
            unsafe { nix::libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD) };
        }
        // Closing `device` leaves the mount as the loop device's only user.
        return mounted;
    }
    Err(io::Error::other(
        "no free loop device after 16 tries (other processes took each one)",
    ))
}

/// Detaches the mount at `target` (MNT_DETACH: at once for new lookups,
/// fully once nothing uses it); a path that is not a mount point is fine.
pub fn unmount(target: &std::path::Path) -> io::Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("umount2({}, MNT_DETACH): {e}", target.display()),
        )),
    }
}

/// Bytes an unprivileged writer may still write on the file system
/// holding `path` (statvfs).
pub fn free_space(path: &std::path::Path) -> io::Result<u64> {
    let stat = call(
        || format!("statvfs({})", path.display()),
        nix::sys::statvfs::statvfs(path),
    )?;
    Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

/// True when `path` is the root of a mount (its device differs from its
/// parent's).
pub fn is_mount_point(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Some(Ok(parent))) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    here.dev() != parent.dev()
}

#[cfg(test)]
mod tests {
    use super::unescape_mountinfo;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\"), "/end\\");
    }
}
