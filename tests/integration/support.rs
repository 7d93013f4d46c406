//! Helpers: a temporary home and a way to run the real binary in it, on
//! either backend (see [`conformance!`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A temporary shroud home, removed when dropped. On the PostgreSQL leg of
/// a conformance test it also has a database of its own, which every
/// command it runs uses (`SHROUD_STORE`).
pub struct TestHome {
    dir: tempfile::TempDir,
    store: Option<String>,
}

thread_local! {
    /// Set while a conformance test runs its PostgreSQL leg.
    static ON_POSTGRES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `test` with every [`TestHome`] it makes on a fresh PostgreSQL
/// database of the shared test cluster (or prints why it is skipped).
pub fn on_postgres(test: impl FnOnce()) {
    if crate::pg::Cluster::shared().is_none() {
        return;
    }
    ON_POSTGRES.with(|flag| flag.set(true));
    test();
    ON_POSTGRES.with(|flag| flag.set(false));
}

/// Turns plain test functions into two tests each: `NAME::sqlite` (the
/// embedded store) and `NAME::postgres` (a database of the test cluster),
/// the store conformance suite.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name();
                }
                #[test]
                fn postgres() {
                    $crate::support::on_postgres(super::$name);
                }
            }
        )*
    };
}

impl Drop for TestHome {
    /// Sandboxes made as root have file systems of their own mounted in
    /// the home (their disk quota): unmount them so the directory can go
    /// and no loop device stays attached.
    fn drop(&mut self) {
        stop_supervisor(&self.path());
        unmount_below(self.dir.path());
    }
}

/// Waits up to `limit` for `check` to hold (looking every 50 ms); answers
/// how long it took, or panics naming `what`.
pub fn wait_until(
    limit: std::time::Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> std::time::Duration {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check() {
            return start.elapsed();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// Stops a supervisor still running for the home `dir` (one a `deploy`
/// command started in the background), and waits for it to go.
pub fn stop_supervisor(dir: &Path) {
    let Some(pid) = supervisor_pid(dir) else {
        return;
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    for _ in 0..200 {
        if !Path::new(&format!("/proc/{pid}")).exists() || supervisor_pid(dir).is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The pid of the live supervisor of the home `dir`, if one runs (the pid
/// its lock file holds, when that process is a shroud serve of this home).
pub fn supervisor_pid(dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join("supervisor.lock")).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let home = dir.as_os_str().as_encoded_bytes();
    let mentions = |bytes: &[u8]| bytes.windows(home.len()).any(|w| w == home);
    let serving = cmdline.split(|&b| b == 0).any(|arg| arg == b"serve");
    (serving && (mentions(&cmdline) || mentions(&environ))).then_some(pid)
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
        let store = ON_POSTGRES
            .with(|flag| flag.get())
            .then(|| crate::pg::Cluster::shared().expect("a cluster").database());
        TestHome {
            dir: tempfile::tempdir().expect("temp dir"),
            store,
        }
    }

    /// A home on a fresh database of the shared PostgreSQL cluster, whatever
    /// leg runs; `None` (after saying why) without PostgreSQL.
    pub fn postgres() -> Option<Self> {
        let cluster = crate::pg::Cluster::shared()?;
        Some(TestHome {
            dir: tempfile::tempdir().expect("temp dir"),
            store: Some(cluster.database()),
        })
    }

    /// A home whose records are at `url` (a database of a test's own cluster).
    pub fn with_store(url: &str) -> Self {
        TestHome {
            dir: tempfile::tempdir().expect("temp dir"),
            store: Some(url.to_owned()),
        }
    }

    /// The `SHROUD_STORE` of this home, on PostgreSQL.
    pub fn store_url(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// True when the home's data is in PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.store.is_some()
    }

    /// The configuration that opens this home's store in-process.
    pub fn store_config(&self, actor: &str) -> shroud::store::StoreConfig {
        shroud::store::StoreConfig {
            home: self.path(),
            master_key_env: None,
            actor: actor.to_owned(),
            location: self.store_location(),
        }
    }

    /// Where this home's records are kept, as `--store` would say.
    pub fn store_location(&self) -> shroud::store::StoreLocation {
        match &self.store {
            Some(url) => shroud::store::StoreLocation::parse(url).expect("a test URL"),
            None => shroud::store::StoreLocation::Home,
        }
    }

    /// Runs one SQL statement on the home's database, whichever it is (to
    /// tamper with it as someone with write access to the database would).
    pub fn sql(&self, statement: &str) {
        match &self.store {
            Some(url) => {
                crate::pg::Cluster::shared()
                    .expect("a cluster")
                    .psql(url, statement);
            }
            None => {
                self.sqlite().execute_batch(statement).expect("sql");
            }
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
        if let Some(url) = &self.store {
            cmd.env("SHROUD_STORE", url);
        }
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

    /// One integer a query returns (`SELECT COUNT(*) ...`), whichever
    /// backend holds the home's data.
    pub fn count(&self, query: &str) -> i64 {
        match &self.store {
            Some(url) => {
                let out = crate::pg::Cluster::shared()
                    .expect("a cluster")
                    .psql(url, query);
                out.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("not a number: {out:?}"))
            }
            None => self
                .sqlite()
                .query_row(query, [], |r| r.get(0))
                .expect("count"),
        }
    }

    /// Every byte the store keeps about this home: its files, and on
    /// PostgreSQL a dump of its database with each `bytea` also decoded (a
    /// value sealed badly would show in either form).
    pub fn stored_bytes(&self) -> Vec<(String, Vec<u8>)> {
        let mut stored: Vec<(String, Vec<u8>)> = if self.path().exists() {
            all_file_bytes(&self.path())
                .into_iter()
                .map(|(path, bytes)| (path.display().to_string(), bytes))
                .collect()
        } else {
            Vec::new()
        };
        if let Some(url) = &self.store {
            let dump = crate::pg::Cluster::shared().expect("a cluster").dump(url);
            let decoded = decode_bytea_literals(&dump);
            stored.push(("pg_dump".into(), dump.into_bytes()));
            stored.push(("pg_dump bytea".into(), decoded));
        }
        stored
    }

    /// A direct connection to the database, for inspecting and tampering.
    pub fn sqlite(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).expect("open db")
    }

    /// Every row `sql` selects, each column as text (on SQLite through
    /// plain text, on PostgreSQL as psql prints it), whichever backend holds
    /// the home's data. `{hex:COLUMN}` in `sql` is a blob column in
    /// upper-case hex on either.
    pub fn text_rows(&self, sql: &str) -> Vec<Vec<String>> {
        match &self.store {
            Some(url) => {
                let sql = with_hex_columns(sql, |column| format!("upper(encode({column}, 'hex'))"));
                crate::pg::Cluster::shared()
                    .expect("a cluster")
                    .psql(url, &sql)
                    .lines()
                    .map(|line| line.split('|').map(str::to_owned).collect())
                    .collect()
            }
            None => {
                let conn = self.sqlite();
                let sql = with_hex_columns(sql, |column| format!("hex({column})"));
                let mut stmt = conn.prepare(&sql).expect("prepare");
                let columns = stmt.column_count();
                let rows = stmt
                    .query_map([], |r| {
                        (0..columns)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => String::new(),
                                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                                    rusqlite::types::ValueRef::Real(x) => x.to_string(),
                                    rusqlite::types::ValueRef::Text(t)
                                    | rusqlite::types::ValueRef::Blob(t) => {
                                        String::from_utf8_lossy(t).into_owned()
                                    }
                                })
                            })
                            .collect::<rusqlite::Result<Vec<String>>>()
                    })
                    .expect("query")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("rows");
                rows
            }
        }
    }

    /// `bytes` as a blob literal of the home's backend.
    pub fn blob_literal(&self, bytes: &[u8]) -> String {
        if self.is_postgres() {
            format!("decode('{}', 'hex')", to_hex(bytes))
        } else {
            format!("X'{}'", to_hex(bytes))
        }
    }

    /// The bytes that hold the home's records: the SQLite file, or a dump of
    /// the PostgreSQL database (to check that a refused command changed
    /// nothing).
    pub fn database_snapshot(&self) -> Vec<u8> {
        match &self.store {
            Some(url) => crate::pg::Cluster::shared()
                .expect("a cluster")
                .dump(url)
                .into_bytes(),
            None => std::fs::read(self.db_path()).expect("read the database"),
        }
    }

    /// The two columns of every row `sql` selects, as text.
    pub fn query_pairs(&self, sql: &str) -> Vec<(String, String)> {
        self.text_rows(sql)
            .into_iter()
            .map(|row| {
                assert_eq!(row.len(), 2, "{sql}");
                (row[0].clone(), row[1].clone())
            })
            .collect()
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

/// `sql` with each `{hex:COLUMN}` replaced by `hex(COLUMN)`.
fn with_hex_columns(sql: &str, hex: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(start) = rest.find("{hex:") {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("a closing brace");
        out.push_str(&hex(&rest[start + 5..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The bytes of every `\\x...` hex literal in a dump, one after another
/// (with a zero byte between, so no value spans two).
fn decode_bytea_literals(dump: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for piece in dump.split("\\x").skip(1) {
        let hex: Vec<u8> = piece.bytes().take_while(u8::is_ascii_hexdigit).collect();
        for pair in hex.chunks_exact(2) {
            let text = std::str::from_utf8(pair).expect("hex digits");
            bytes.push(u8::from_str_radix(text, 16).expect("hex digits"));
        }
        bytes.push(0);
    }
    bytes
}

/// `bytes` in lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes a hex string spells.
pub fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
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

/// Whether a process whose command line holds `marker` is running.
pub fn process_is_running(marker: &str) -> bool {
    processes_matching(|cmdline| cmdline.contains(marker))
}

/// Whether the network namespace holder of the sandbox `id` is running.
pub fn netns_holder_is_running(id: &str) -> bool {
    processes_matching(|cmdline| cmdline.contains("__netns-holder") && cmdline.contains(id))
}

fn processes_matching(matches: impl Fn(&str) -> bool) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| matches(&String::from_utf8_lossy(&cmdline)))
    })
}
