//! A throwaway PostgreSQL cluster for the tests: `initdb` and `postgres` in a
//! temporary directory, as the `postgres` user when the tests run as root,
//! started once per test run (each test gets a database of its own) or on
//! demand for a test that stops and restarts it. The binaries are found on
//! PATH or under `/usr/lib/postgresql/*/bin`; without them a test prints a
//! visible SKIPPED line instead of passing silently.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The directory holding `initdb`, `postgres`, `createdb`.
fn bin_dir() -> Option<PathBuf> {
    // On PATH (often as a link into the versioned directory, which holds
    // the other programs too).
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find_map(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
            .and_then(|initdb| initdb.parent().map(Path::to_owned))
            .filter(|dir| dir.join("postgres").is_file() && dir.join("createdb").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|bin| bin.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

/// The uid and gid PostgreSQL runs as: ours, or `postgres`'s when we are root
/// (it refuses to run as root).
fn run_as() -> Option<(u32, u32)> {
    if !nix::unistd::getuid().is_root() {
        return Some((
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
}

/// A free TCP port on 127.0.0.1 (there is a small race with other programs).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server's log, beside its data directory (shown when it fails).
fn log_file(data: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_file_name("postgres.log"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null())
}

/// A running cluster.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
    pub port: u16,
    ids: (u32, u32),
    /// `name=value` settings beyond the defaults.
    settings: Vec<String>,
    server: std::sync::Mutex<Option<Child>>,
    databases: AtomicU32,
}

impl Cluster {
    /// Initializes and starts a cluster of its own; `None` (with the reason
    /// printed) when PostgreSQL is not installed here.
    pub fn start() -> Option<Cluster> {
        Self::start_with(&[], false)
    }

    /// [`Self::start`] with extra server settings (`name=value`, over the
    /// defaults), and with `tls` only TLS connections on TCP, under the
    /// test certificate of `tests/fixtures/tls` (for `localhost` and
    /// 127.0.0.1).
    pub fn start_with(settings: &[&str], tls: bool) -> Option<Cluster> {
        let Some(bin) = bin_dir() else {
            eprintln!(
                "SKIPPED (needs PostgreSQL): no initdb on PATH or under /usr/lib/postgresql/*/bin"
            );
            return None;
        };
        let Some(ids) = run_as() else {
            eprintln!(
                "SKIPPED (needs PostgreSQL): running as root and there is no `postgres` user"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("shroud-pg-")
            .tempdir()
            .unwrap();
        std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1)).unwrap();
        let data = dir.path().join("data");
        let out = Command::new(bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .uid(ids.0)
            .gid(ids.1)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut settings: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        if tls {
            let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
            for (from, to) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
                let target = data.join(to);
                std::fs::copy(fixtures.join(from), &target).unwrap();
                std::os::unix::fs::chown(&target, Some(ids.0), Some(ids.1)).unwrap();
                std::fs::set_permissions(
                    &target,
                    std::os::unix::fs::PermissionsExt::from_mode(0o600),
                )
                .unwrap();
            }
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.0/8 trust\n",
            )
            .unwrap();
            settings.push("ssl=on".into());
            // A second address, which the certificate does not name.
            settings.push("listen_addresses=127.0.0.1,127.0.0.2".into());
        }
        let cluster = Cluster {
            bin,
            data,
            settings,
            _dir: dir,
            port: free_port(),
            ids,
            server: std::sync::Mutex::new(None),
            databases: AtomicU32::new(0),
        };
        cluster.run();
        Some(cluster)
    }

    /// The cluster every test shares, started once per test run. A static
    /// is never dropped: a watcher removes its directory (a gigabyte of
    /// data files) once this test process has exited.
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: std::sync::OnceLock<Option<Cluster>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                let cluster = Cluster::start()?;
                cluster.remove_after_this_process();
                Some(cluster)
            })
            .as_ref()
    }

    /// Starts a detached `sh` that waits for this process to end (the
    /// server dies with it), then removes the cluster's directory.
    fn remove_after_this_process(&self) {
        use std::os::unix::process::CommandExt;
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; sleep 2; rm -rf -- '{}'",
            std::process::id(),
            self._dir.path().display()
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn();
    }

    /// Starts the server (after `start`, or after `stop`) and waits until it
    /// accepts connections.
    pub fn run(&self) {
        let socket_dir = self.data.parent().unwrap().to_owned();
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&socket_dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        for setting in &self.settings {
            command.args(["-c", setting]);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(&self.data))
            .uid(self.ids.0)
            .gid(self.ids.1);
        // The server goes with the test process, however it ends. (After
        // the uid change: a change of credentials clears the signal.)
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                Ok(())
            });
        }
        // Spawned from a thread that lives as long as the process: the death
        // signal is tied to the thread that forked.
        let (sent, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let child = command.spawn();
            let _ = sent.send(child);
            loop {
                std::thread::park();
            }
        });
        let child = got.recv().unwrap().expect("start postgres");
        *self.server.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                std::fs::read_to_string(self.data.with_file_name("postgres.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown) and waits for it to go.
    pub fn stop(&self) {
        self.halt(nix::sys::signal::Signal::SIGINT);
    }

    /// Stops the server the hard way (immediate shutdown: no checkpoint,
    /// connections cut, crash recovery at the next start).
    pub fn crash(&self) {
        self.halt(nix::sys::signal::Signal::SIGQUIT);
    }

    /// Sends the server `signal` (its shutdown mode) and waits for it to go.
    fn halt(&self, signal: nix::sys::signal::Signal) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
            let _ = child.wait();
        }
    }

    /// A fresh, empty database; returns its URL.
    pub fn database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        // Over the cluster's unix socket (TCP may want TLS).
        let socket_dir = self.data.parent().unwrap().to_owned();
        let out = Command::new(self.bin.join("createdb"))
            .arg("-h")
            .arg(&socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", &name])
            .uid(self.ids.0)
            .gid(self.ids.1)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// `psql -c SQL` on database `db` (as the superuser); returns stdout.
    pub fn psql(&self, url: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([url, "-X", "-q", "-t", "-A", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `pg_dump` of database `url`: every row as text (without the random
    /// `\restrict` guard lines, so two dumps of the same rows are equal).
    pub fn dump(&self, url: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["--data-only", "--no-owner", url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
            .map(|line| format!("{line}\n"))
            .collect()
    }

    /// A fresh database on this cluster, given to `shroud` by `url`
    /// template: `{port}` and `{db}` are filled in.
    pub fn database_at(&self, template: &str) -> String {
        let url = self.database();
        let db = url.rsplit('/').next().unwrap().to_owned();
        template
            .replace("{port}", &self.port.to_string())
            .replace("{db}", &db)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
