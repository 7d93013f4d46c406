//! Containment: each way out of a sandbox that a hostile review found, as
//! the attack itself, against the real binary. As root and, where the path
//! differs (a user namespace around everything, the kernel keeping the
//! caller's groups), as an unprivileged user of this host.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{test_user, Run, TestHome, TestUser};

const VALUE: &str = "sk-contained-5e4d3c2b1a";

fn home() -> TestHome {
    let home = TestHome::new();
    home.set("API_KEY", VALUE);
    home
}

fn create(home: &TestHome, template: &str) -> String {
    let out = home.run(&["sandbox", "create", "--template", template]);
    out.ok().trim().to_owned()
}

fn sandbox_sh(home: &TestHome, id: &str, script: &str) -> Run {
    home.run(&["sandbox", "exec", id, "--", "sh", "-c", script])
}

/// Reads the pty master until `needle` shows, or panics after 30 s.
fn read_until(master: &mut std::fs::File, seen: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on the terminal: {}",
            String::from_utf8_lossy(seen)
        );
        match master.read(&mut buf) {
            Ok(0) | Err(_) => panic!(
                "terminal closed before {needle:?}: {}",
                String::from_utf8_lossy(seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// The command a sandbox runs to push keystrokes into the terminal on its
/// stdin (TIOCSTI), and to open the controlling terminal directly.
fn injector(marker: &Path) -> String {
    format!(
        "import fcntl, termios\n\
         try:\n    [fcntl.ioctl(0, termios.TIOCSTI, bytes([c])) for c in b'touch {}\\n']\n    print('INJECTED')\n\
         except OSError as e:\n    print('REFUSED-STI', e.errno)\n\
         try:\n    open('/dev/tty', 'w').write('x')\n    print('OPENED-TTY')\n\
         except OSError as e:\n    print('REFUSED-TTY', e.errno)\n",
        marker.display()
    )
}

#[test]
fn a_sandboxed_command_cannot_push_keystrokes_into_the_callers_shell() {
    let home = home();
    let id = create(&home, "python-3");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inject.py"),
        injector(&dir.path().join("pwned")),
    )
    .unwrap();
    // An interactive shell on a terminal, as a user at a keyboard has.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut shell = std::process::Command::new("sh");
    shell
        .arg("-i")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("SHROUD_HOME", home.path())
        .env("PS1", "$ ")
        .current_dir(dir.path())
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
    crate::support::with_controlling_terminal(&mut shell);
    let mut shell = shell.spawn().unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let shroud = crate::support::shroud_binary();
    let mut seen = Vec::new();
    // Without a pty: `--tty never`, and `--tty auto` with stdout piped.
    for (step, (flags, pipe)) in [("--tty never", ""), ("", "| cat")].iter().enumerate() {
        let line = format!(
            "{shroud} sandbox exec {id} {flags} -- python3 -c \"$(cat inject.py)\" {pipe}; echo step-$((40+{step}))-done\n"
        );
        master.write_all(line.as_bytes()).unwrap();
        read_until(&mut master, &mut seen, &format!("step-{}-done", 40 + step));
        // Whatever was pushed into the terminal's input sits before this
        // line: the shell has run it by the time this echo answers.
        master
            .write_all(format!("echo sync-$((50+{step}))\n").as_bytes())
            .unwrap();
        read_until(&mut master, &mut seen, &format!("sync-{}", 50 + step));
    }
    let _ = shell.kill();
    let _ = shell.wait();
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        !dir.path().join("pwned").exists(),
        "keystrokes pushed by the sandbox ran in the caller's shell: {text}"
    );
    assert_eq!(text.matches("REFUSED-STI").count(), 2, "{text}");
    assert_eq!(text.matches("REFUSED-TTY").count(), 2, "{text}");
    assert!(
        !text.contains("INJECTED") && !text.contains("OPENED-TTY"),
        "{text}"
    );
}

#[test]
fn input_typed_at_the_terminal_still_reaches_a_sandboxed_command() {
    // The relay: the command reads a pipe, fed from shroud's terminal.
    let home = home();
    let id = create(&home, "bash");
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut command = home.command(&[
        "sandbox",
        "exec",
        &id,
        "--tty",
        "never",
        "--",
        "sh",
        "-c",
        "test -t 0 || echo stdin-is-a-pipe; read x; echo got=$x; cat; echo end-of-input",
    ]);
    command
        .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::support::with_controlling_terminal(&mut command);
    let child = command.spawn().unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    master.write_all(b"abc\nrest\n\x04").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text, "stdin-is-a-pipe\ngot=abc\nrest\nend-of-input\n",
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(0));
}

/// Python that prints the numbers of every open descriptor above 2.
const LIST_FDS: &str = "import os\nfds = []\nfor n in range(3, 4096):\n    try:\n        os.fstat(n)\n        fds.append(n)\n    except OSError:\n        pass\nprint('fds', fds)";

#[test]
fn only_stdio_reaches_a_sandboxed_command_or_an_exec() {
    let home = home();
    let id = create(&home, "python-3");
    // Descriptors shroud inherits from its caller (a shell's `exec 3<dir`, a
    // CI runner's), the shroud home among them: a directory descriptor would
    // lead past every mount, to the vault.
    let script = format!(
        "exec 3<'{home}' 4<'{home}/shroud.db' 5>>'{home}/appended' 7<&0; \
         {shroud} sandbox exec {id} -- python3 -c \"$LIST_FDS\"; \
         {shroud} sandbox exec {id} -- sh -c 'cat /proc/self/fd/3/master.key || echo no-way-out'; \
         {shroud} exec --secret API_KEY -- python3 -c \"$LIST_FDS\"",
        home = home.path().display(),
        shroud = crate::support::shroud_binary(),
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(&script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("SHROUD_HOME", home.path())
        .env("LIST_FDS", LIST_FDS);
    let out = home.run_with(cmd, None);
    let text = out.stdout_text();
    let key = std::fs::read_to_string(home.key_path()).unwrap();
    assert!(
        !text.contains(key.trim()),
        "the vault's key leaked: {out:?}"
    );
    assert_eq!(
        text, "fds []\nno-way-out\nfds []\n",
        "a descriptor reached a child: {out:?}"
    );
}

/// What a sandboxed command sees of the host's directories.
const VIEW: &str = "for d in /root /home /run /var/run /tmp /var/tmp /dev/shm; do \
                    printf '%s:' $d; ls -A $d | tr '\\n' ' '; echo; done; \
                    ls -A /dev/pts | tr '\\n' ' '; echo; \
                    echo note > \"$HOME/note\" && cat \"$HOME/note\"; \
                    touch /usr/shroud-escape 2>/dev/null || echo system-read-only; \
                    umount /tmp 2>/dev/null || echo cannot-umount; \
                    mount -o remount,rw / 2>/dev/null || echo cannot-remount";

/// Checks the lines [`VIEW`] printed. `workdir_under` is the directory the
/// sandbox's working directory path passes through (it is recreated there),
/// which may show as the one entry of a cover.
fn check_view(out: &Run, visible_in_tmp: &[&str], visible_in_home: &[&str]) {
    let text = out.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12, "{out:?}");
    let entries = |i: usize| -> Vec<String> {
        lines[i]
            .split_once(':')
            .unwrap()
            .1
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert!(entries(0).is_empty(), "/root: {out:?}");
    let home_entries = entries(1);
    assert!(
        home_entries
            .iter()
            .all(|e| visible_in_home.contains(&e.as_str())),
        "/home shows the host's homes: {out:?}"
    );
    assert!(entries(2).is_empty(), "/run: {out:?}");
    assert!(entries(3).is_empty(), "/var/run: {out:?}");
    assert!(
        entries(4)
            .iter()
            .all(|e| visible_in_tmp.contains(&e.as_str())),
        "/tmp is the host's: {out:?}"
    );
    assert!(entries(5).is_empty(), "/var/tmp: {out:?}");
    assert!(entries(6).is_empty(), "/dev/shm: {out:?}");
    assert_eq!(lines[7].trim(), "ptmx", "a private devpts: {out:?}");
    assert_eq!(lines[8], "note", "$HOME is writable: {out:?}");
    assert_eq!(
        &lines[9..],
        ["system-read-only", "cannot-umount", "cannot-remount"],
        "{out:?}"
    );
}

/// Things of the host's that a sandbox must not see: a file in /tmp, in
/// /dev/shm, in /var/tmp.
struct HostDroppings {
    files: Vec<std::path::PathBuf>,
}

impl HostDroppings {
    fn new() -> Self {
        let tag = format!("shroud-host-file-{}", std::process::id());
        let files: Vec<_> = ["/tmp", "/dev/shm", "/var/tmp"]
            .iter()
            .map(|d| Path::new(d).join(&tag))
            .collect();
        for f in &files {
            std::fs::write(f, "host").unwrap();
        }
        HostDroppings { files }
    }
}

impl Drop for HostDroppings {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[test]
fn a_sandbox_sees_no_home_no_run_and_private_tmp_shm_and_pts_as_root() {
    let _host = HostDroppings::new();
    let home = home();
    let id = create(&home, "bash");
    let out = sandbox_sh(&home, &id, VIEW);
    assert_eq!(out.code, 0, "{out:?}");
    // The test's shroud home lies in /tmp: the path to the working directory
    // is recreated in the private /tmp (and holds only that).
    let first = home
        .path()
        .strip_prefix("/tmp")
        .ok()
        .and_then(|p| p.components().next())
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    let in_tmp: Vec<&str> = first.iter().map(String::as_str).collect();
    check_view(&out, &in_tmp, &[]);
    // $HOME persists between execs, and is the sandbox's own.
    let again = sandbox_sh(&home, &id, "cat \"$HOME/note\"; echo $HOME");
    let text = again.ok();
    assert!(text.starts_with("note\n"), "{text}");
    assert!(text.contains(&id), "HOME is the sandbox's own: {text}");
}

/// A shroud vault of the test user's, in its default home, with a secret.
fn user_vault(user: &TestUser) {
    let out = user.run(None, &["secret", "set", "USER_KEY", VALUE]);
    assert_eq!(out.code, 0, "{out:?}");
}

#[test]
fn an_unprivileged_users_sandbox_cannot_read_its_vault_or_ssh_keys() {
    let Some(user) = test_user() else { return };
    user_vault(user);
    let created = user.run(None, &["sandbox", "create", "--template", "bash", "-v"]);
    assert_eq!(created.code, 0, "{created:?}");
    let id = created.stdout_text().trim().to_owned();
    // What cannot be hidden for a user is said: its supplementary groups.
    assert!(
        created.stderr.contains("supplementary_groups")
            && created.stderr.contains(&user.extra_group),
        "{}",
        created.stderr
    );
    let vault = user.home.join(".local/share/shroud");
    let steal = format!(
        "cat {vault}/master.key {vault}/shroud.db {ssh}/id_ed25519 2>/dev/null | head -c 200; \
         cp -r {vault} /tmp/stolen 2>/dev/null; ls /tmp/stolen 2>/dev/null; echo done",
        vault = vault.display(),
        ssh = user.home.join(".ssh").display(),
    );
    let out = user.run(None, &["sandbox", "exec", &id, "--", "sh", "-c", &steal]);
    assert_eq!(out.code, 0, "{out:?}");
    let key = std::fs::read_to_string(vault.join("master.key")).unwrap();
    let text = out.stdout_text();
    assert!(!text.contains(key.trim()), "the vault's key: {out:?}");
    assert!(!text.contains("SQLite format"), "the database: {out:?}");
    assert!(!text.contains("PRIVATE-SSH-KEY"), "~/.ssh: {out:?}");
    assert!(!text.contains("master.key"), "{out:?}");
    let out = user.run(None, &["sandbox", "exec", &id, "--", "sh", "-c", VIEW]);
    assert_eq!(out.code, 0, "{out:?}");
    // The working directory lies in the user's home: its path is recreated
    // inside the (otherwise empty) /home.
    let name = user
        .home
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    check_view(&out, &[], &[&name]);
    // Nothing the user owns elsewhere on the host is writable from inside.
    let out = user.run(
        None,
        &[
            "sandbox",
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "for d in /var/mail /usr/local; do touch $d/shroud-escape 2>/dev/null && echo wrote-$d; done; echo checked",
        ],
    );
    assert_eq!(out.stdout_text(), "checked\n", "{out:?}");
}

/// A Unix socket listening at `path`, world-writable (any user may connect).
fn listening_socket(path: &Path) -> std::os::unix::net::UnixListener {
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).unwrap();
    listener
}

#[test]
fn host_unix_sockets_are_out_of_reach_with_the_network_off() {
    let home = home();
    let id = create(&home, "python-3");
    let tag = std::process::id();
    let sockets = [
        std::path::PathBuf::from(format!("/run/shroud-test-{tag}.sock")),
        std::path::PathBuf::from(format!("/tmp/shroud-test-{tag}.sock")),
        std::path::PathBuf::from(format!("/root/shroud-test-{tag}.sock")),
    ];
    let listeners: Vec<_> = sockets.iter().map(|p| listening_socket(p)).collect();
    // The positive control: from the host, each socket answers.
    for path in &sockets {
        std::os::unix::net::UnixStream::connect(path).unwrap();
    }
    let probe = format!(
        "import socket\nfor p in {:?}:\n    s = socket.socket(socket.AF_UNIX)\n    try:\n        s.connect(p)\n        print('CONNECTED', p)\n    except OSError as e:\n        print('refused', e.errno)\n",
        sockets
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
    );
    let out = home.run(&["sandbox", "exec", &id, "--", "python3", "-c", &probe]);
    for path in &sockets {
        let _ = std::fs::remove_file(path);
    }
    drop(listeners);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout_text().contains("CONNECTED"), "{out:?}");
    assert_eq!(out.stdout_text().matches("refused").count(), 3, "{out:?}");
}

#[test]
fn the_isolation_report_names_what_a_root_sandbox_gets() {
    let home = home();
    let json = home
        .run(&["--json", "sandbox", "create", "--template", "bash"])
        .json();
    let features = json["isolation"].as_array().unwrap();
    let root = nix::unistd::getuid().is_root();
    for name in [
        "private_tmp",
        "read_only_system",
        "hidden_home",
        "private_dev",
        "capabilities",
        "seccomp",
        "supplementary_groups",
    ] {
        if name == "supplementary_groups" && !root {
            continue; // a user's groups are kept, and reported (tested above)
        }
        let feature = features
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} not reported: {json}"));
        assert_eq!(feature["available"], true, "{feature}");
    }
}

/// A home with a template `name` of its own.
fn home_with_template(name: &str, toml: &str) -> TestHome {
    let home = home();
    let templates = home.path().join("sandbox-templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join(format!("{name}.toml")), toml).unwrap();
    home
}

/// A home whose template `small` caps a sandbox's files at 16 MiB.
fn home_with_small_disk() -> TestHome {
    home_with_template(
        "small",
        "[runtime]\ninterpreter = \"sh\"\n[limits]\ndisk_mb = 16\n",
    )
}

#[test]
fn a_sandbox_cannot_fill_the_disk_that_holds_the_vault() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIPPED: the disk limit needs root (a user's report says so, tested below)");
        return;
    }
    let home = home_with_small_disk();
    let created = home.run(&["--json", "sandbox", "create", "--template", "small"]);
    let json = created.json();
    let id = json["id"].as_str().unwrap().to_owned();
    let disk = json["isolation"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "disk_limit")
        .cloned()
        .unwrap_or_else(|| panic!("disk_limit not reported: {json}"));
    assert_eq!(disk["available"], true, "{disk}");
    assert_eq!(json["limits"]["disk_mb"], 16);
    // 64 MiB into the working directory, 64 more into $HOME: both stop at the cap.
    let fill = "dd if=/dev/zero of=big bs=1M count=64 2>&1 | grep -o 'No space left'; \
                dd if=/dev/zero of=\"$HOME/big\" bs=1M count=64 2>&1 | grep -o 'No space left'; \
                du -sk . \"$HOME\" | awk '{s+=$1} END {print s}'";
    let out = sandbox_sh(&home, &id, fill);
    let text = out.stdout_text();
    assert_eq!(text.matches("No space left").count(), 2, "{out:?}");
    let used_kib: u64 = text.lines().last().unwrap().trim().parse().unwrap();
    assert!(
        used_kib <= 16 * 1024,
        "{used_kib} KiB written under a 16 MiB cap"
    );
    // The vault's own disk is untouched: writes still work.
    home.set("AFTER_FILL", "written-after-the-sandbox-filled-its-disk");
    assert_eq!(
        home.reveal("AFTER_FILL"),
        "written-after-the-sandbox-filled-its-disk"
    );
    // Files persist, across the file system being unmounted too (a host
    // restart): the next exec mounts it again.
    let dir = home.path().join("sandboxes").join(&id);
    sandbox_sh(&home, &id, "rm -f big \"$HOME/big\"; echo kept > note").ok();
    // (A full unmount, as a shutdown does: a lazy one could leave the old
    // mount alive, unflushed, beside the new one. Nothing of shroud's
    // keeps the disk busy: the namespace holder's socket is beside it.)
    // The last exec's mount namespace lets go of the disk as the kernel
    // tears it down, a few milliseconds after the exec returns (the last
    // reference is dropped by deferred work): until then an unmount may be
    // refused as busy, or succeed here while that namespace still holds the
    // file system with the note unwritten. Flush it first, as a shutdown
    // does, then unmount.
    {
        use std::os::fd::AsRawFd;
        let handle = std::fs::File::open(&dir).unwrap();
        nix::unistd::syncfs(handle.as_raw_fd()).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match nix::mount::umount(&dir) {
            Err(nix::errno::Errno::EBUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => break other.unwrap(),
        }
    }
    assert_eq!(sandbox_sh(&home, &id, "cat note").ok(), "kept\n");
    // Removing the sandbox unmounts and removes its disk.
    home.run(&["sandbox", "rm", &id]).ok();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "still mounted: {mounts}");
    assert!(!dir.exists() && !home.path().join(format!("sandboxes/{id}.disk")).exists());
}

/// A shroud home of the test user's, in a temporary directory, with a
/// template `name` of its own.
fn user_home_with_template(
    user: &TestUser,
    name: &str,
    toml: &str,
) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let shroud_home = dir.path().join("home");
    let templates = shroud_home.join("sandbox-templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(templates.join(format!("{name}.toml")), toml).unwrap();
    for path in [dir.path(), &shroud_home, &templates] {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
    }
    (dir, shroud_home)
}

#[test]
fn a_users_sandbox_reports_that_its_disk_is_not_limited() {
    let Some(user) = test_user() else { return };
    let (_dir, shroud_home) = user_home_with_template(user, "small", "[limits]\ndisk_mb = 16\n");
    let out = user.run(
        Some(&shroud_home),
        &["sandbox", "create", "--template", "small", "-v"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("disk_limit: not available") && out.stderr.contains("not root"),
        "{}",
        out.stderr
    );
    let strict = user.run(
        Some(&shroud_home),
        &["sandbox", "create", "--template", "small", "--strict"],
    );
    assert_ne!(
        strict.code, 0,
        "--strict refuses what cannot be given: {strict:?}"
    );
}

#[test]
fn a_relative_home_puts_nothing_of_the_callers_under_the_covers() {
    // `--home .shroud` from a project directory in the user's home: the
    // init used to keep that directory, and `..` from it walked the host
    // beneath every cover, to ~/.ssh and the user's default vault.
    let Some(user) = test_user() else { return };
    user_vault(user);
    let project = user.home.join("relative-home-project");
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(&project).unwrap();
    std::os::unix::fs::chown(&project, Some(user.uid), Some(user.gid)).unwrap();
    let run = |args: &[&str]| {
        let mut cmd = user.command(None, &[]);
        cmd.args(["--home", ".shroud"])
            .args(args)
            .current_dir(&project);
        TestHome::new().run_with(cmd, None)
    };
    let created = run(&["sandbox", "create", "--template", "bash"]);
    assert_eq!(created.code, 0, "{created:?}");
    let id = created.stdout_text().trim().to_owned();
    let walk = "for up in .. ../.. ../../.. ../../../.. ../../../../.. ../../../../../..; do \
                cat $up/.ssh/id_ed25519 $up/.local/share/shroud/master.key 2>/dev/null; done; pwd";
    let out = run(&["sandbox", "exec", &id, "--", "sh", "-c", walk]);
    assert_eq!(out.code, 0, "{out:?}");
    let key = std::fs::read_to_string(user.home.join(".local/share/shroud/master.key")).unwrap();
    assert!(!out.stdout_text().contains("PRIVATE-SSH-KEY"), "{out:?}");
    assert!(!out.stdout_text().contains(key.trim()), "{out:?}");
    assert!(
        out.stdout_text().trim().starts_with('/'),
        "the working directory is absolute: {out:?}"
    );
    let _ = std::fs::remove_dir_all(&project);
}

#[test]
fn a_home_reached_through_a_symlink_is_hidden_where_it_really_is() {
    let real = tempfile::tempdir().unwrap();
    let link_dir = tempfile::tempdir().unwrap();
    let link = link_dir.path().join("linked-home");
    std::os::unix::fs::symlink(real.path(), &link).unwrap();
    // A template without a private /tmp, so that only the cover of the
    // home (which lies in /tmp here) can hide it.
    let cmd = |args: &[&str]| {
        let mut c = std::process::Command::new(crate::support::shroud_binary());
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("SHROUD_HOME", &link);
        TestHome::new().run_with(c, None)
    };
    cmd(&["secret", "set", "LINKED", VALUE]).ok();
    std::fs::create_dir_all(real.path().join("sandbox-templates")).unwrap();
    std::fs::write(
        real.path().join("sandbox-templates/shared-tmp.toml"),
        "[isolation]\nprivate_tmp = false\n",
    )
    .unwrap();
    let id = cmd(&["sandbox", "create", "--template", "shared-tmp"])
        .ok()
        .trim()
        .to_owned();
    let script = format!(
        "cat {0}/master.key {1}/master.key 2>/dev/null; ls {0} {1}",
        real.path().display(),
        link.display()
    );
    let out = cmd(&["sandbox", "exec", &id, "--", "sh", "-c", &script]);
    let key = std::fs::read_to_string(real.path().join("master.key")).unwrap();
    assert!(!out.stdout_text().contains(key.trim()), "{out:?}");
    assert!(!out.stdout_text().contains("shroud.db"), "{out:?}");
    crate::support::unmount_below(real.path());
}

#[test]
fn the_callers_keyring_vsock_and_an_input_file_are_out_of_reach() {
    let home = home();
    let id = create(&home, "python-3");
    // The caller keeps a key in its session keyring (as a Kerberos ticket
    // cache would); the sandbox tries to read it and to clear the keyring.
    let probe = r#"
import ctypes, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
KEY_SPEC_SESSION_KEYRING = -3
found = libc.syscall(250, 2, ctypes.c_char_p(b"user"), ctypes.c_char_p(b"shroud-test-key"), 0)
print("keyring", "REACHED" if found >= 0 else "refused")
try:
    socket.socket(40, socket.SOCK_STREAM); print("vsock OPEN")
except OSError as e:
    print("vsock refused", e.errno)
try:
    open("/proc/self/fd/0", "w").write("overwritten by the sandbox")
    print("stdin WRITTEN")
except OSError as e:
    print("stdin refused")
"#;
    let input = home.path().join("input.txt");
    std::fs::write(&input, "the caller's file").unwrap();
    // A python that adds a key to a fresh session keyring, then runs shroud
    // in it, with the file as its stdin.
    let runner = format!(
        "import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall(250, 1, None)
assert libc.syscall(248, b'user', b'shroud-test-key', b'KERBEROS-TICKET', 15, -3) >= 0
fd = os.open({input:?}, os.O_RDONLY)
os.dup2(fd, 0)
os.execv({shroud:?}, [{shroud:?}, 'sandbox', 'exec', {id:?}, '--', 'python3', '-c', {probe:?}])
",
        input = input.display().to_string(),
        shroud = crate::support::shroud_binary(),
    );
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", &runner])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("SHROUD_HOME", home.path());
    let out = home.run_with(cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    let text = out.stdout_text();
    assert!(text.contains("keyring refused"), "{out:?}");
    assert!(text.contains("vsock refused 97"), "{out:?}");
    assert!(text.contains("stdin refused"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&input).unwrap(),
        "the caller's file"
    );
}

#[test]
fn dev_holds_only_the_usual_nodes_and_private_tmp_is_bounded() {
    let home = home_with_small_disk();
    let id = create(&home, "small");
    let out = sandbox_sh(
        &home,
        &id,
        "ls /dev | tr '\\n' ' '; echo; df -m /tmp | tail -1 | awk '{print $2}'; \
        dd if=/dev/zero of=/tmp/fill bs=1M count=64 2>&1 | grep -o 'No space left'",
    );
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    let entries: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        entries,
        [
            "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout",
            "tty", "urandom", "zero"
        ],
        "{text}"
    );
    let tmp_mb: u64 = lines[1].trim().parse().unwrap();
    assert!(
        tmp_mb <= 16,
        "/tmp is {tmp_mb} MiB under a 16 MiB disk_mb: {text}"
    );
    assert_eq!(lines.get(2).copied(), Some("No space left"), "{text}");
}

#[test]
fn a_users_process_limit_is_the_templates_not_more() {
    let Some(user) = test_user() else { return };
    let (_dir, shroud_home) = user_home_with_template(
        user,
        "eight",
        "[runtime]\ninterpreter = \"python3\"\n[limits]\nprocesses = 8\n",
    );
    // The user runs other processes outside (they must not add headroom).
    let mut others: Vec<_> = (0..6)
        .map(|_| {
            let mut c = std::process::Command::new("setpriv");
            c.arg(format!("--reuid={}", user.uid))
                .arg(format!("--regid={}", user.gid))
                .args(["--clear-groups", "sleep", "30"]);
            c.spawn().unwrap()
        })
        .collect();
    let id = user
        .run(
            Some(&shroud_home),
            &["sandbox", "create", "--template", "eight"],
        )
        .ok()
        .trim()
        .to_owned();
    let bomb = "import os, time\nn = 0\ntry:\n    for i in range(100):\n        if os.fork() == 0:\n            time.sleep(3)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\nprint(n)";
    let out = user.run(
        Some(&shroud_home),
        &["sandbox", "exec", &id, "--", "python3", "-c", bomb],
    );
    for other in &mut others {
        let _ = other.kill();
        let _ = other.wait();
    }
    let forked: u32 = out
        .stdout_text()
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{out:?}"));
    // The sandbox's init processes and python are among the 8.
    assert!(
        (1..8).contains(&forked),
        "{forked} processes forked under a limit of 8: {out:?}"
    );
}

#[test]
fn a_disk_limit_the_host_has_no_room_for_is_reported() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("SKIPPED: the disk limit needs root");
        return;
    }
    // 100 TiB: more than this disk has, so sandboxes could not all grow.
    let home = home_with_template("huge", "[limits]\ndisk_mb = 104857600\n");
    let out = home.run(&["sandbox", "create", "--template", "huge", "-v"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("disk_limit: not available") && out.stderr.contains("no room"),
        "{}",
        out.stderr
    );
    let strict = home.run(&["sandbox", "create", "--template", "huge", "--strict"]);
    assert_ne!(strict.code, 0, "{strict:?}");
    assert!(!std::fs::read_dir(home.path().join("sandboxes"))
        .unwrap()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "disk")));
}

#[test]
fn a_users_sandbox_commands_share_a_loopback_held_out_of_their_reach() {
    // As a user there is no mount to pin a namespace with: a holder
    // process keeps the sandbox's user and network namespaces, and each
    // command joins them.
    let Some(user) = test_user() else { return };
    let (_dir, home) = user_home_with_template(user, "unused", "");
    let run = |args: &[&str]| user.run(Some(&home), args);
    let created = run(&["sandbox", "create", "--template", "bash", "-v"]);
    assert_eq!(created.code, 0, "{created:?}");
    assert!(
        created.stderr.contains("shared_loopback: available"),
        "{}",
        created.stderr
    );
    let id = created.stdout_text().trim().to_owned();
    let server = "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', 8766))\ns.listen()\nprint('listening', flush=True)\nc, _ = s.accept()\nc.sendall(b'from-the-background')\nc.close()";
    let serve = || {
        let mut serving = user
            .command(
                Some(&home),
                &[
                    "sandbox",
                    "exec",
                    &id,
                    "--",
                    "/usr/bin/python3",
                    "-c",
                    server,
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first_line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(serving.stdout.take().unwrap()),
            &mut first_line,
        )
        .unwrap();
        if first_line != "listening\n" {
            let ended = serving.wait_with_output().unwrap();
            panic!(
                "the server did not start: {first_line:?} {}",
                String::from_utf8_lossy(&ended.stderr)
            );
        }
        serving
    };
    let client =
        "import socket\nprint(socket.create_connection(('127.0.0.1', 8766)).recv(100).decode())";
    // A later command of the sandbox fetches from the server, which ends.
    let fetch_from = |sandbox: &str, serving: std::process::Child| {
        let fetched = run(&[
            "sandbox",
            "exec",
            sandbox,
            "--",
            "/usr/bin/python3",
            "-c",
            client,
        ]);
        assert_eq!(
            fetched.stdout_text(),
            "from-the-background\n",
            "{fetched:?}"
        );
        assert!(serving.wait_with_output().unwrap().status.success());
    };
    let serving = serve();
    fetch_from(&id, serving);
    // The holder runs as the user, and no command sees it, let alone
    // signals it: `kill -9 -1` inside ends only the sandbox's own.
    let holder = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("__netns-holder") && c.contains(&id)
            })
        })
        .expect("the sandbox's holder is running");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(holder.metadata().unwrap().uid(), user.uid);
    let seen = run(&[
        "sandbox",
        "exec",
        &id,
        "--",
        "sh",
        "-c",
        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '; kill -9 -1",
    ]);
    assert!(
        !seen.stdout_text().contains("netns-holder"),
        "{}",
        seen.stdout_text()
    );
    assert!(crate::support::netns_holder_is_running(&id));
    // Another sandbox of the same user has a loopback of its own: the
    // server (started again) is not there.
    let other = run(&["sandbox", "create", "--template", "bash"]);
    let other = other.stdout_text().trim().to_owned();
    let serving = serve();
    let refused = run(&[
        "sandbox",
        "exec",
        &other,
        "--",
        "/usr/bin/python3",
        "-c",
        client,
    ]);
    assert_ne!(refused.code, 0, "{refused:?}");
    fetch_from(&id, serving);
    // Removing the sandbox ends its holder.
    for sandbox in [&id, &other] {
        let removed = run(&["sandbox", "rm", sandbox]);
        assert_eq!(removed.code, 0, "{removed:?}");
        crate::support::wait_until(
            Duration::from_secs(5),
            "the sandbox's holder to end with it",
            || !crate::support::netns_holder_is_running(sandbox),
        );
    }
}
