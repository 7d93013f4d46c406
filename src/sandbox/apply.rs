//! Applying a sandbox policy: the `shroud __sandbox-init` process.
//!
//! `sandbox exec` runs the command through this init, as three processes:
//!
//! 1. **outer** (the supervisor's child, in its process group): unshares the
//!    namespaces (as root: mount, pid, net, ipc, uts; as a user: a user
//!    namespace with those, root inside mapped to the user), forks, waits;
//! 2. **init** (PID 1 of the new pid namespace): makes mounts private, hides
//!    the shroud home under an empty read-only tmpfs with only the working
//!    directory bound back (through a handle opened inside the new mount
//!    namespace: the kernel refuses binds from another one), mounts a private
//!    /tmp, makes the root file system read-only and mounts a fresh /proc;
//!    forks the command and reaps. When it exits, the kernel kills whatever is
//!    left in the namespace, so no background process outlives a command;
//! 3. **command**: as root, drops to the sandbox's own unprivileged uid (so
//!    RLIMIT_NPROC applies: the kernel never enforces it for uid 0) and enters
//!    a user namespace of its own (root inside, that uid outside); then
//!    rlimits, no_new_privs, the working directory, exec.
//!
//! The command stays in the supervisor's process group, so the supervisor's
//! signals (forwarded SIGINT/SIGTERM/SIGHUP, timeouts) reach it directly.
//! How it ended travels back through a pipe so that "killed by signal N" is
//! reported as such, not as exit code 128 + N.
//!
//! [`probe`] tries each feature on this host, so `sandbox create` can report
//! what a template asks for but the host cannot give.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ns::{self, Namespaces, Rlimit};
use super::template::{Isolation, Limits};
use crate::sys::fd;
use crate::sys::proc::{self, Ended};
use crate::sys::signal::{self, Signal};

/// The one variable `__sandbox-init` starts with: the number of the fd on
/// which it receives the command's environment (`NAME=VALUE` entries, each
/// ended by a NUL byte). The init has nothing else in its environment, so
/// nothing a caller puts in the command's (`LD_PRELOAD`,
/// `LD_LIBRARY_PATH`...) acts on the init, which runs as root before it drops
/// to the sandbox's uid; and values never sit in argv.
pub const ENV_FD_VAR: &str = "SHROUD_ENV_FD";

/// Splits an environment received through [`ENV_FD_VAR`] into its entries.
pub fn env_entries(blob: &[u8]) -> Vec<&[u8]> {
    blob.split(|&b| b == 0).filter(|e| !e.is_empty()).collect()
}

/// What `__sandbox-init` applies (plain data, passed as JSON in its argv;
/// it holds no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxPolicy {
    /// The isolation to apply (what the template asked for and the host gives).
    pub isolation: Isolation,
    pub network: bool,
    pub limits: Limits,
    /// The sandbox's working directory (the command's cwd).
    pub workdir: PathBuf,
    /// Directories covered by an empty read-only tmpfs (the shroud home).
    pub hide: Vec<PathBuf>,
    /// Started as root: run as this (uid, gid) instead.
    pub run_as: Option<(u32, u32)>,
}

impl SandboxPolicy {
    /// The same policy without a feature this host cannot give (by the
    /// feature's name in a probe report). Without a mount namespace, the
    /// features that need one go too.
    pub fn without(&mut self, feature: &str) {
        let iso = &mut self.isolation;
        match feature {
            "user_namespace" => iso.user_namespace = false,
            "mount_namespace" | "private_tmp" | "read_only_system" | "hidden_home" => {
                iso.mount_namespace = false;
                iso.private_tmp = false;
                iso.read_only_system = false;
            }
            "pid_namespace" => iso.pid_namespace = false,
            "net_namespace" => self.network = true,
            "ipc_namespace" => iso.ipc_namespace = false,
            "uts_namespace" => iso.uts_namespace = false,
            "no_new_privs" => iso.no_new_privs = false,
            _ => {}
        }
    }

    /// The namespaces the outer process creates. As root the user namespace
    /// is the command's own (created after it drops to its uid).
    fn namespaces(&self) -> Namespaces {
        let iso = self.isolation;
        Namespaces {
            user: iso.user_namespace && self.run_as.is_none(),
            mount: iso.mount_namespace,
            pid: iso.pid_namespace,
            net: !self.network,
            ipc: iso.ipc_namespace,
            uts: iso.uts_namespace,
        }
    }
}

/// One feature and whether this host gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    pub name: String,
    pub available: bool,
    pub detail: String,
}

const MIB: u64 = 1024 * 1024;

/// Runs the sandbox init (see the module docs); never returns.
pub fn run_init(policy: &SandboxPolicy, command: &[OsString], env: &[&[u8]]) -> ! {
    match outer(policy, command, env) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: sandbox: {e}");
            std::process::exit(125)
        }
    }
}

enum Never {}

/// Unshares the policy's namespaces; in a user namespace, maps root inside
/// to this process's uid and gid outside.
fn enter_namespaces(policy: &SandboxPolicy) -> std::io::Result<()> {
    let (uid, gid) = proc::ids();
    let namespaces = policy.namespaces();
    ns::unshare_namespaces(namespaces)?;
    if namespaces.user {
        ns::map_root_to(uid, gid)?;
    }
    Ok(())
}

fn outer(policy: &SandboxPolicy, command: &[OsString], env: &[&[u8]]) -> std::io::Result<Never> {
    let (uid, _) = proc::ids();
    let processes_before = count_processes_of(policy.run_as.map_or(uid, |(u, _)| u));
    enter_namespaces(policy)?;
    let (status_read, status_write) = std::io::pipe()?;
    match proc::fork_process()? {
        None => {
            drop(status_read);
            let code = match init(policy, command, env, status_write, processes_before) {
                Ok(code) => code,
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "error: sandbox: {e}");
                    125
                }
            };
            std::process::exit(code)
        }
        Some(pid) => {
            drop(status_write);
            // The command gets these through the process group; the outer
            // process only waits.
            for sig in [Signal::INTERRUPT, Signal::TERMINATE, Signal::HANGUP] {
                signal::ignore_signal(sig, true)?;
            }
            let ended = proc::wait_for(Some(pid))?;
            let mut report = [0u8; 5];
            let mut reader = status_read;
            let reported = reader.read_exact(&mut report).is_ok();
            let ended = if reported {
                let value = i32::from_le_bytes(report[1..5].try_into().expect("4 bytes"));
                if report[0] == b'S' {
                    Ended::Signaled(value)
                } else {
                    Ended::Exited(value)
                }
            } else {
                ended.map_or(Ended::Exited(125), |(_, e)| e)
            };
            match ended {
                Ended::Exited(code) => std::process::exit(code),
                Ended::Signaled(signal) => signal::die_by_signal(signal),
            }
        }
    }
}

/// PID 1 of the sandbox: mounts, then runs and reaps. Returns its exit code.
fn init(
    policy: &SandboxPolicy,
    command: &[OsString],
    env: &[&[u8]],
    mut status: std::io::PipeWriter,
    processes_before: u64,
) -> std::io::Result<i32> {
    setup_mounts(policy)?;
    if policy.namespaces().net {
        ns::bring_up_loopback()?;
    }
    if policy.isolation.uts_namespace {
        ns::set_hostname("sandbox")?;
    }
    let command_pid = match proc::fork_process()? {
        None => run_command(policy, command, env, processes_before),
        Some(pid) => pid,
    };
    // Reap every process of the sandbox until the command itself ends.
    loop {
        match proc::wait_for(None)? {
            Some((pid, ended)) if pid == command_pid => {
                let (kind, value) = match ended {
                    Ended::Exited(code) => (b'E', code),
                    Ended::Signaled(signal) => (b'S', signal),
                };
                let mut report = [kind, 0, 0, 0, 0];
                report[1..].copy_from_slice(&value.to_le_bytes());
                let _ = status.write_all(&report);
                return Ok(0);
            }
            Some(_) => continue,
            None => return Ok(125),
        }
    }
}

fn setup_mounts(policy: &SandboxPolicy) -> std::io::Result<()> {
    let iso = policy.isolation;
    if !iso.mount_namespace {
        return Ok(());
    }
    ns::make_mounts_private()?;
    // Opened in this mount namespace, before anything covers it.
    let workdir = fd::open_dir_handle(&policy.workdir)?;
    if iso.private_tmp {
        ns::mount_tmpfs(Path::new("/tmp"), "mode=1777")?;
    }
    // Cover the shroud home (unless the new /tmp already hid it).
    let mut hidden = Vec::new();
    for dir in &policy.hide {
        if dir.is_dir() {
            ns::mount_tmpfs(dir, "mode=755,size=64k")?;
            hidden.push(dir);
        }
    }
    // Re-create the working directory's path in whatever covers it now and
    // bind the real directory there, through the handle opened above.
    std::fs::create_dir_all(&policy.workdir).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("mkdir -p {}: {e}", policy.workdir.display()),
        )
    })?;
    let source = PathBuf::from(format!("/proc/self/fd/{}", workdir.as_raw_fd()));
    ns::bind_mount(&source, &policy.workdir)?;
    drop(workdir);
    for dir in hidden {
        ns::remount_read_only(dir, false)?;
    }
    if iso.read_only_system {
        ns::remount_read_only(Path::new("/"), true)?;
    }
    if iso.pid_namespace {
        ns::mount_proc()?;
    }
    Ok(())
}

/// The command process: limits, then exec. Never returns.
fn run_command(
    policy: &SandboxPolicy,
    command: &[OsString],
    env: &[&[u8]],
    processes_before: u64,
) -> ! {
    let prepared = (|| -> std::io::Result<()> {
        if let Some((uid, gid)) = policy.run_as {
            ns::become_user(uid, gid)?;
            if policy.isolation.user_namespace {
                ns::unshare_namespaces(Namespaces {
                    user: true,
                    ..Namespaces::default()
                })?;
                ns::map_root_to(uid, gid)?;
            }
        }
        std::env::set_current_dir(&policy.workdir).map_err(|e| {
            std::io::Error::new(e.kind(), format!("chdir {}: {e}", policy.workdir.display()))
        })?;
        let limits = policy.limits;
        ns::set_rlimit(Rlimit::CoreBytes, 0)?;
        let apply = |which, value: Option<u64>, scale: u64| match value {
            Some(v) => ns::set_rlimit(which, v.saturating_mul(scale)),
            None => Ok(()),
        };
        apply(Rlimit::CpuSeconds, limits.cpu_seconds, 1)?;
        apply(Rlimit::AddressSpaceBytes, limits.memory_mb, MIB)?;
        apply(Rlimit::OpenFiles, limits.open_files, 1)?;
        apply(Rlimit::FileSizeBytes, limits.file_size_mb, MIB)?;
        // RLIMIT_NPROC counts every process of the uid: with a dedicated uid
        // (started as root) that is the sandbox alone; otherwise the user's
        // existing processes are added so the limit means "this many more".
        let base = if policy.run_as.is_some() {
            0
        } else {
            processes_before
        };
        apply(Rlimit::Processes, limits.processes.map(|p| p + base), 1)?;
        if policy.isolation.no_new_privs {
            ns::set_no_new_privs()?;
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        let _ = writeln!(std::io::stderr(), "error: sandbox: {e}");
        std::process::exit(125);
    }
    let error = proc::exec_program(command, env);
    let program = command
        .first()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (code, what) = match error.kind() {
        std::io::ErrorKind::NotFound => (127, "not found".to_owned()),
        _ => (126, format!("cannot be executed: {error}")),
    };
    let _ = writeln!(std::io::stderr(), "error: program `{program}` {what}");
    std::process::exit(code)
}

/// Processes that `uid` runs now (from /proc).
fn count_processes_of(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|u| u.parse::<u32>().ok())
                == Some(uid)
        })
        .count() as u64
}

/// Tries each isolation feature of `policy` on this host. Runs in the
/// `__sandbox-init --probe` process; returns one entry per feature.
pub fn probe(policy: &SandboxPolicy) -> Vec<Feature> {
    let mut features = Vec::new();
    let iso = policy.isolation;
    // As a user every namespace comes with a user namespace; as root the
    // others are created directly and the user namespace by the dropped uid.
    let base = Namespaces {
        user: policy.run_as.is_none(),
        ..Namespaces::default()
    };
    let kinds = [
        (
            "mount_namespace",
            iso.mount_namespace,
            Namespaces {
                mount: true,
                ..base
            },
        ),
        (
            "pid_namespace",
            iso.pid_namespace,
            Namespaces { pid: true, ..base },
        ),
        (
            "net_namespace",
            !policy.network,
            Namespaces { net: true, ..base },
        ),
        (
            "ipc_namespace",
            iso.ipc_namespace,
            Namespaces { ipc: true, ..base },
        ),
        (
            "uts_namespace",
            iso.uts_namespace,
            Namespaces { uts: true, ..base },
        ),
    ];
    if iso.user_namespace {
        let result = in_child(|| {
            if let Some((uid, gid)) = policy.run_as {
                ns::become_user(uid, gid)?;
            }
            ns::unshare_namespaces(Namespaces {
                user: true,
                ..Namespaces::default()
            })
        });
        features.push(feature("user_namespace", result));
    }
    for (name, wanted, namespaces) in kinds {
        if wanted {
            features.push(feature(
                name,
                in_child(|| ns::unshare_namespaces(namespaces)),
            ));
        }
    }
    let mounts_wanted = iso.mount_namespace
        && (iso.private_tmp
            || iso.read_only_system
            || iso.pid_namespace
            || !policy.hide.is_empty());
    if mounts_wanted {
        // The whole mount setup, as a command would get it, with what this
        // host lacks turned off (a missing mount namespace fails it).
        let mut trial = policy.clone();
        let mut mount_namespace = true;
        for f in features.iter().filter(|f| !f.available) {
            if f.name == "mount_namespace" {
                mount_namespace = false;
            } else {
                trial.without(&f.name);
            }
        }
        let result = if mount_namespace {
            in_child(|| {
                enter_namespaces(&trial)?;
                // A pid namespace applies to children: mount /proc from one.
                in_child(|| setup_mounts(&trial))
            })
        } else {
            Err(std::io::Error::other("no mount namespace"))
        };
        for (name, wanted) in [
            ("private_tmp", iso.private_tmp),
            ("read_only_system", iso.read_only_system),
            ("hidden_home", !policy.hide.is_empty()),
        ] {
            if wanted {
                features.push(feature(name, clone_result(&result)));
            }
        }
    }
    if iso.no_new_privs {
        features.push(feature("no_new_privs", in_child(ns::set_no_new_privs)));
    }
    features.push(Feature {
        name: "rlimits".to_owned(),
        available: true,
        detail: match policy.run_as {
            Some((uid, _)) => format!("applied; processes counted on the sandbox's own uid {uid}"),
            None => {
                "applied; processes counted on your user (shroud is not root, so no dedicated uid)"
                    .to_owned()
            }
        },
    });
    features.push(Feature {
        name: "cgroups".to_owned(),
        available: false,
        detail: cgroup_detail(),
    });
    features
}

fn cgroup_detail() -> String {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        "not used: limits are rlimits (cgroup v2 is present, but shroud does not manage cgroups yet)".to_owned()
    } else {
        "not available: the host has cgroup v1 without delegation; limits are rlimits".to_owned()
    }
}

fn feature(name: &str, result: std::io::Result<()>) -> Feature {
    Feature {
        name: name.to_owned(),
        available: result.is_ok(),
        detail: match result {
            Ok(()) => "available".to_owned(),
            Err(e) => format!("not available: {e}"),
        },
    }
}

fn clone_result(result: &std::io::Result<()>) -> std::io::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    }
}

/// Runs `f` in a forked child and reports whether it succeeded.
fn in_child(f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
    let (mut read, mut write) = std::io::pipe()?;
    match proc::fork_process()? {
        None => {
            drop(read);
            let code = match f() {
                Ok(()) => 0,
                Err(e) => {
                    let _ = write.write_all(e.to_string().as_bytes());
                    1
                }
            };
            std::process::exit(code)
        }
        Some(pid) => {
            drop(write);
            let mut message = String::new();
            let _ = read.read_to_string(&mut message);
            match proc::wait_for(Some(pid))? {
                Some((_, Ended::Exited(0))) => Ok(()),
                _ => Err(std::io::Error::other(if message.is_empty() {
                    "failed".to_owned()
                } else {
                    message
                })),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(run_as: Option<(u32, u32)>, network: bool) -> SandboxPolicy {
        SandboxPolicy {
            isolation: Isolation::default(),
            network,
            limits: Limits::default(),
            workdir: PathBuf::from("/w"),
            hide: vec![],
            run_as,
        }
    }

    #[test]
    fn namespaces_follow_the_policy() {
        // As a user, the outer process needs a user namespace for the rest.
        let user = policy(None, false).namespaces();
        assert!(user.user && user.mount && user.pid && user.net && user.ipc && user.uts);
        // As root, the user namespace is the command's own, made after it
        // drops to the sandbox's uid.
        let root = policy(Some((200_001, 200_001)), false).namespaces();
        assert!(!root.user && root.mount && root.pid && root.net);
        // Network on: no network namespace.
        assert!(!policy(None, true).namespaces().net);
        let mut bare = policy(None, false);
        bare.isolation.pid_namespace = false;
        bare.isolation.uts_namespace = false;
        let ns = bare.namespaces();
        assert!(!ns.pid && !ns.uts && ns.mount);
    }

    #[test]
    fn without_turns_off_a_feature_and_what_depends_on_it() {
        let mut p = policy(None, false);
        p.without("net_namespace");
        assert!(p.network);
        p.without("private_tmp");
        assert!(
            !p.isolation.mount_namespace
                && !p.isolation.private_tmp
                && !p.isolation.read_only_system
        );
        assert!(p.isolation.pid_namespace && p.isolation.no_new_privs);
        p.without("cgroups");
        p.without("no_new_privs");
        assert!(!p.isolation.no_new_privs && p.isolation.user_namespace);
    }

    #[test]
    fn policy_round_trips_as_json_without_secrets() {
        let p = policy(Some((1, 2)), false);
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<SandboxPolicy>(&text).unwrap(), p);
    }
}
