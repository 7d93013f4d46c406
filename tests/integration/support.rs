//! Helpers: a temporary home and a way to run the real binary in it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A temporary shroud home, removed when dropped.
pub struct TestHome {
    dir: tempfile::TempDir,
}

impl Drop for TestHome {
    /// Sandboxes made as root have file systems of their own mounted in
    /// the home (their disk quota): unmount them so the directory can go
    /// and no loop device stays attached.
    fn drop(&mut self) {
        unmount_below(self.dir.path());
    }
}

/// Detaches every mount at or below `dir`.
pub fn unmount_below(dir: &Path) {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|point| point.starts_with(dir))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// What a finished `shroud` process left behind.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts exit 0 and returns stdout as text.
    #[track_caller]
    pub fn ok(&self) -> String {
        assert_eq!(self.code, 0, "expected success, got {self:?}");
        self.stdout_text()
    }

    /// Asserts the exit code and an `error: ` line on stderr.
    #[track_caller]
    pub fn fails_with(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code: {self:?}");
        assert!(
            self.stderr.lines().any(|l| l.starts_with("error: ")),
            "no `error:` line on stderr: {self:?}"
        );
        self
    }

    /// Parses stdout as one JSON object.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// The binary under test: this build's, or `$SHROUD_TEST_BINARY` (to check
/// that a test catches a bug in an older build: run it against that one).
pub fn shroud_binary() -> &'static str {
    static BINARY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        std::env::var("SHROUD_TEST_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_shroud").to_owned())
    })
}

impl TestHome {
    pub fn new() -> Self {
        TestHome {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The shroud home (a not-yet-existing directory inside the temp dir).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn db_path(&self) -> PathBuf {
        self.path().join("shroud.db")
    }

    pub fn key_path(&self) -> PathBuf {
        self.path().join("master.key")
    }

    /// A command for the binary with a clean environment pointing at this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(shroud_binary());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("SHROUD_HOME", self.path())
            .args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(args), None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        self.run_with(self.command(args), Some(stdin))
    }

    /// Runs with `SHROUD_MASTER_KEY` set to `key`.
    pub fn run_with_key(&self, key: &str, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        cmd.env("SHROUD_MASTER_KEY", key);
        self.run_with(cmd, None)
    }

    pub fn run_with(&self, mut cmd: Command, stdin: Option<&[u8]>) -> Run {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn shroud");
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            let bytes = bytes.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            });
        } else {
            drop(pipe);
        }
        let output = child.wait_with_output().expect("wait for shroud");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Sets a secret, asserting success.
    #[track_caller]
    pub fn set(&self, name: &str, value: &str) {
        self.run(&["secret", "set", name, value]).ok();
    }

    /// `shroud token create NAME FLAGS...`, asserting success; returns the
    /// token it printed.
    #[track_caller]
    pub fn create_token(&self, name: &str, flags: &[&str]) -> String {
        let mut args = vec!["token", "create", name];
        args.extend_from_slice(flags);
        self.run(&args).ok().trim().to_owned()
    }

    /// Reveals a secret, asserting success; the trailing newline is removed.
    #[track_caller]
    pub fn reveal(&self, name: &str) -> String {
        let out = self.run(&["secret", "reveal", name]).ok();
        out.strip_suffix('\n')
            .expect("reveal ends with a newline")
            .to_owned()
    }

    /// Names listed by `secret list` in a vault.
    pub fn list(&self, vault: &str) -> Vec<String> {
        self.run(&["secret", "list", "--vault", vault])
            .ok()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Number of audit records.
    pub fn audit_count(&self) -> usize {
        self.run(&["audit"]).ok().lines().count()
    }

    /// A direct connection to the database, for inspecting and tampering.
    pub fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).expect("open db")
    }

    /// The two columns of every row `sql` selects.
    pub fn query_pairs<A, B>(&self, sql: &str) -> Vec<(A, B)>
    where
        A: rusqlite::types::FromSql,
        B: rusqlite::types::FromSql,
    {
        let conn = self.sqlite();
        let mut stmt = conn.prepare(sql).expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        rows
    }
}

/// Every byte of every regular file below `dir`.
pub fn all_file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(all_file_bytes(&path));
        } else {
            files.push((path.clone(), std::fs::read(&path).expect("read file")));
        }
    }
    files
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A fresh random master key, base64.
pub fn random_key() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("random");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An unprivileged user of this host, created once per test run (as root,
/// with `useradd`) so that the tests of what a non-root caller's sandbox can
/// reach run for real: it has a home with a shroud vault and an `~/.ssh` of
/// its own, and a supplementary group.
pub struct TestUser {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    /// The supplementary group it is in (its name).
    pub extra_group: String,
}

const TEST_USER: &str = "shroud-test";
const TEST_GROUP: &str = "shroud-test-extra";

/// The test user, or `None` (after printing why the test is skipped) when
/// this process is not root or the user cannot be created.
pub fn test_user() -> Option<&'static TestUser> {
    static USER: std::sync::OnceLock<Result<TestUser, String>> = std::sync::OnceLock::new();
    let user = USER.get_or_init(create_test_user);
    match user {
        Ok(user) => Some(user),
        Err(why) => {
            eprintln!("SKIPPED (needs an unprivileged user): {why}");
            None
        }
    }
}

fn create_test_user() -> Result<TestUser, String> {
    if !nix::unistd::getuid().is_root() {
        return Err("not running as root, so no user can be created".to_owned());
    }
    let run = |program: &str, args: &[&str]| -> Result<(), String> {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run("groupadd", &["-f", TEST_GROUP])?;
    let exists = |name: &str| {
        std::fs::read_to_string("/etc/passwd")
            .unwrap_or_default()
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .map(str::to_owned)
    };
    if exists(TEST_USER).is_none() {
        run(
            "useradd",
            &[
                "--create-home",
                "--shell",
                "/bin/sh",
                "--groups",
                TEST_GROUP,
                TEST_USER,
            ],
        )?;
    }
    let line = exists(TEST_USER).ok_or("useradd did not create the user")?;
    let fields: Vec<&str> = line.split(':').collect();
    let user = TestUser {
        uid: fields[2].parse().map_err(|_| "bad uid")?,
        gid: fields[3].parse().map_err(|_| "bad gid")?,
        home: PathBuf::from(fields[5]),
        extra_group: TEST_GROUP.to_owned(),
    };
    // Its private files: an ssh key and (created by the tests) a vault.
    let ssh = user.home.join(".ssh");
    std::fs::create_dir_all(&ssh).map_err(|e| e.to_string())?;
    std::fs::write(ssh.join("id_ed25519"), "PRIVATE-SSH-KEY-OF-THE-TEST-USER\n")
        .map_err(|e| e.to_string())?;
    for path in [&user.home, &ssh, &ssh.join("id_ed25519")] {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(|e| e.to_string())?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    std::fs::set_permissions(&user.home, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| e.to_string())?;
    Ok(user)
}

impl TestUser {
    /// A command that runs `shroud ARGS` as this user (its supplementary
    /// groups kept, as a login would), with HOME and PATH set and the
    /// default home (`~/.local/share/shroud`) unless `home` is given.
    pub fn command(&self, home: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg("--")
            .arg(shroud_binary());
        if let Some(home) = home {
            cmd.arg("--home").arg(home);
        }
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &self.home)
            .current_dir(&self.home);
        cmd
    }

    /// Runs `shroud ARGS` as this user and collects what it left.
    pub fn run(&self, home: Option<&Path>, args: &[&str]) -> Run {
        TestHome::new().run_with(self.command(home, args), None)
    }
}

/// Makes the command a session leader whose controlling terminal is its
/// stdin (a pty slave given as stdin), as a login shell's is.
pub fn with_controlling_terminal(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()?;
            nix::ioctl_write_int_bad!(set_controlling_tty, nix::libc::TIOCSCTTY);
            set_controlling_tty(0, 0)?;
            Ok(())
        })
    }
}
