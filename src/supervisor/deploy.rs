//! Deployments as data: what a deployment is ([`Definition`], stored as
//! JSON in the store's `records`), how it is created and checked before
//! anything starts ([`create`]), and the files of its own: the working
//! directory (`<home>/deployments/<slug>/work`, seeded from `--code`), the
//! masked log ([`LogFile`], capped, oldest part dropped), the listening
//! sockets it is handed ([`bind_socket`]) and the `$NOTIFY_SOCKET` an
//! instance reports `READY=1` on ([`NotifySocket`]).
//!
//! The manager (`supervisor::manager`) runs what is defined here; nothing in
//! this file starts a process.

use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::output::{LineSplitter, OutputSink, Stream};
use super::plan::{self, CallerEnv, PlanError};
use super::sandboxes::SandboxHost;
use crate::sandbox::apply::{Feature, SandboxPolicy};
use crate::sandbox::template::{EnvPolicy, Template};
use crate::store::audit::Action;
use crate::store::backend::RecordRow;
use crate::store::{Store, StoreError, VaultName, DEPLOYMENT_KIND};

/// How a deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Keeps `replicas` instances running.
    Service,
    /// Starts one instance per agent run, none by itself.
    Agent,
}

/// When a new instance counts as up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// Alive this many milliseconds.
    AliveFor(u64),
    /// `READY=1` sent to `$NOTIFY_SOCKET`.
    Notify,
}

/// Whether the deployment should run (`deploy stop` / `deploy start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    Running,
    Stopped,
}

/// A deployment as stored (never a secret value).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Definition {
    pub slug: String,
    pub vault: String,
    pub template: String,
    pub mode: Mode,
    pub command: Vec<String>,
    /// `ENV=NAME` grants.
    pub grants: Vec<String>,
    pub env: Vec<(String, String)>,
    pub env_policy: EnvPolicy,
    pub policy: SandboxPolicy,
    pub features: Vec<Feature>,
    pub replicas: u32,
    /// `host:port` or `unix:PATH`, as given.
    pub sockets: Vec<String>,
    pub readiness: Readiness,
    pub desired: Desired,
    pub created_at: i64,
    /// Who created it: `cli`, or the API token's name.
    pub owner: String,
    /// Where its code came from (`--code`, or `<home>/runtimes/<slug>`):
    /// a node that takes the deployment over copies it from there.
    #[serde(default)]
    pub code: Option<PathBuf>,
    /// `runtimeSlug` over the API: its code is `<home>/runtimes/<slug>` of
    /// whichever node runs it.
    #[serde(default)]
    pub runtime: Option<String>,
    /// The last state its node reported (for listings on other nodes).
    #[serde(default)]
    pub status: Option<serde_json::Value>,
}

impl Definition {
    pub fn to_row(&self) -> RecordRow {
        RecordRow {
            kind: DEPLOYMENT_KIND.to_owned(),
            id: self.slug.clone(),
            parent: self.vault.clone(),
            data: serde_json::to_string(self).expect("a definition serializes"),
            node: String::new(),
            lease_until: 0,
            updated_at: crate::clock::now_ms(),
        }
    }

    pub fn from_row(row: &RecordRow) -> Result<Definition, PlanError> {
        serde_json::from_str(&row.data).map_err(|e| {
            PlanError::Usage(format!(
                "deployment `{}` has an unreadable definition: {e}",
                row.id
            ))
        })
    }

    /// The directory of the deployment.
    pub fn dir(&self, home: &Path) -> PathBuf {
        deployment_dir(home, &self.slug)
    }
}

/// `<home>/deployments/<slug>`.
pub fn deployment_dir(home: &Path, slug: &str) -> PathBuf {
    home.join("deployments").join(slug)
}

/// A request to create a deployment, from the CLI or the API.
#[derive(Debug)]
pub struct CreateRequest {
    pub slug: String,
    pub template: String,
    pub vault: VaultName,
    pub grants: Vec<plan::SecretGrant>,
    pub env: Vec<(String, String)>,
    pub mode: Mode,
    pub command: Vec<String>,
    /// Copied into the working directory.
    pub code: Option<PathBuf>,
    /// The `runtimeSlug` `code` was found by (see [`Definition::runtime`]).
    pub runtime: Option<String>,
    pub replicas: u32,
    pub sockets: Vec<String>,
    pub readiness: Readiness,
    pub owner: String,
    pub caller_env: CallerEnv,
}

/// How long the node that creates a deployment holds it before its
/// manager's first renewal (the manager's own lease is as long).
pub const FIRST_LEASE_MS: i64 = 10_000;

/// The most replicas a deployment may ask for.
pub const MAX_REPLICAS: u32 = 64;

/// Checks a slug: 1 to 63 of `a-z`, `0-9`, `-`, starting with a letter or
/// digit.
pub fn check_slug(slug: &str) -> Result<(), PlanError> {
    let bytes = slug.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PlanError::Usage(format!(
            "invalid slug {slug:?}: 1 to 63 of a-z, 0-9 and `-`, starting with a letter or digit"
        )))
    }
}

/// Checks a `--socket` address: `host:port` or `unix:PATH`.
pub fn check_socket_address(address: &str) -> Result<(), PlanError> {
    if let Some(path) = address.strip_prefix("unix:") {
        if path.is_empty() || !Path::new(path).is_absolute() {
            return Err(PlanError::Usage(format!(
                "invalid --socket {address:?}: unix:PATH needs an absolute path"
            )));
        }
        return Ok(());
    }
    use std::net::ToSocketAddrs;
    match address.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(()),
        _ => Err(PlanError::Usage(format!(
            "invalid --socket {address:?}: expected host:port or unix:PATH"
        ))),
    }
}

/// Binds a listening socket for a deployment (a stale Unix socket file is
/// replaced). The error names the address.
pub fn bind_socket(address: &str) -> Result<OwnedFd, PlanError> {
    let bound = if let Some(path) = address.strip_prefix("unix:") {
        let path = Path::new(path);
        if std::fs::symlink_metadata(path)
            .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            && std::os::unix::net::UnixStream::connect(path).is_err()
        {
            let _ = std::fs::remove_file(path);
        }
        std::os::unix::net::UnixListener::bind(path).map(OwnedFd::from)
    } else {
        std::net::TcpListener::bind(address).map(OwnedFd::from)
    };
    bound.map_err(|e| PlanError::Usage(format!("cannot bind --socket {address}: {e}")))
}

/// Everything [`create`] checks before a deployment exists: the slug, the
/// template, the secrets, the sockets, the code directory. Returns the
/// definition, stored, and the bound sockets.
pub fn create(
    host: &SandboxHost,
    store: &mut Store,
    request: CreateRequest,
) -> Result<(Definition, Vec<OwnedFd>), PlanError> {
    check_slug(&request.slug)?;
    let template = Template::load(&request.template, &host.home).map_err(PlanError::template)?;
    if request
        .command
        .first()
        .is_none_or(|program| program.is_empty())
    {
        return Err(PlanError::Usage("no command to run".to_owned()));
    }
    if request.command.iter().any(|arg| arg.contains('\0')) {
        return Err(PlanError::Usage(
            "the command contains a NUL byte".to_owned(),
        ));
    }
    if request.replicas == 0 || request.replicas > MAX_REPLICAS {
        return Err(PlanError::Usage(format!(
            "--replicas {}: expected 1 to {MAX_REPLICAS}",
            request.replicas
        )));
    }
    if request.sockets.len() > crate::sys::fd::MAX_PASSED_FDS {
        return Err(PlanError::Usage(format!(
            "at most {} --socket addresses",
            crate::sys::fd::MAX_PASSED_FDS
        )));
    }
    for address in &request.sockets {
        check_socket_address(address)?;
    }
    if let Some(code) = &request.code {
        std::fs::read_dir(code).map_err(|e| {
            PlanError::Usage(format!(
                "--code {}: cannot read the directory: {e}",
                code.display()
            ))
        })?;
    }
    for grant in &request.grants {
        if store.secret_meta(&request.vault, &grant.secret)?.is_none() {
            return Err(PlanError::Store(StoreError::SecretNotFound {
                vault: request.vault.to_string(),
                name: grant.secret.to_string(),
            }));
        }
    }
    let io = |context| move |source| PlanError::Io { context, source };
    crate::store::home::create_private_dir(&host.home.join("deployments"))
        .map_err(io("create the deployments directory"))?;
    // One create of a slug at a time: the one that finds no record owns
    // the directory; a second one waits here and then finds the record.
    let _creating = crate::sys::fd::lock_exclusive(
        &host
            .home
            .join("deployments")
            .join(format!("{}.lock", request.slug)),
    )
    .map_err(io("lock the deployment's slug"))?;
    if store.record(DEPLOYMENT_KIND, &request.slug)?.is_some() {
        return Err(PlanError::Usage(format!(
            "a deployment named `{}` already exists; pick another slug",
            request.slug
        )));
    }
    let sockets = request
        .sockets
        .iter()
        .map(|address| bind_socket(address))
        .collect::<Result<Vec<_>, _>>()?;
    let dir = deployment_dir(&host.home, &request.slug);
    if dir.exists() {
        // Left over by a deployment removed while its files were busy.
        let _ = crate::sandbox::disk::remove(&dir);
        std::fs::remove_dir_all(&dir).map_err(io("clear an old deployment's directory"))?;
    }
    std::fs::create_dir_all(&dir).map_err(io("create the deployment's directory"))?;
    let made = (|| {
        let (policy, features) = host.provision(
            store,
            &template,
            &dir,
            false,
            &request.caller_env,
            request.slug.as_bytes(),
        )?;
        if let Some(code) = &request.code {
            copy_tree(code, &policy.workdir, policy.run_as)
                .map_err(io("copy --code into the working directory"))?;
        }
        let definition = Definition {
            slug: request.slug.clone(),
            vault: request.vault.to_string(),
            template: template.name.clone(),
            mode: request.mode,
            command: request.command,
            grants: request.grants.iter().map(plan::SecretGrant::text).collect(),
            env: request.env,
            env_policy: template.env.clone(),
            policy,
            features,
            replicas: request.replicas,
            sockets: request.sockets,
            readiness: request.readiness,
            desired: Desired::Running,
            created_at: crate::clock::now_ms(),
            owner: request.owner,
            code: request.code.clone(),
            runtime: request.runtime.clone(),
            status: None,
        };
        // Held by this node from the start: no other node may take it
        // before this one's manager renews the lease.
        let mut row = definition.to_row();
        row.node = crate::store::this_node();
        row.lease_until = crate::clock::now_ms() + FIRST_LEASE_MS;
        let created = store.create_record(
            &row,
            Some((
                Action::DeploymentCreate,
                definition.vault.as_str(),
                definition.slug.as_str(),
            )),
        )?;
        if !created {
            return Err(PlanError::Usage(format!(
                "a deployment named `{}` already exists; pick another slug",
                definition.slug
            )));
        }
        Ok(definition)
    })();
    match made {
        Ok(definition) => Ok((definition, sockets)),
        Err(e) => {
            let _ = crate::sandbox::disk::remove(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// Makes the deployment's directory on this node when it is not there (a
/// node taking over a deployment made on another): the template's sandbox
/// provisioned again under this home, the code copied again from where it
/// came from (when this node has it). Answers the definition as this node
/// runs it, stored.
pub fn provision_here(
    host: &SandboxHost,
    store: &mut Store,
    mut definition: Definition,
    caller_env: &CallerEnv,
) -> Result<(Definition, Option<String>), PlanError> {
    let dir = definition.dir(&host.home);
    if definition.policy.workdir.starts_with(&dir) && definition.policy.workdir.is_dir() {
        return Ok((definition, None));
    }
    let io = |context| move |source| PlanError::Io { context, source };
    let template = Template::load(&definition.template, &host.home)
        .map_err(|e| PlanError::Usage(e.to_string()))?;
    crate::store::home::create_private_dir(&host.home.join("deployments"))
        .map_err(io("create the deployments directory"))?;
    std::fs::create_dir_all(&dir).map_err(io("create the deployment's directory"))?;
    let (policy, features) = host.provision(
        store,
        &template,
        &dir,
        false,
        caller_env,
        definition.slug.as_bytes(),
    )?;
    let mut warning = None;
    let code = match &definition.runtime {
        Some(runtime) => Some(host.home.join("runtimes").join(runtime)),
        None => definition.code.clone(),
    };
    if let Some(code) = &code {
        if code.is_dir() {
            copy_tree(code, &policy.workdir, policy.run_as)
                .map_err(io("copy the code into the working directory"))?;
        } else {
            warning = Some(format!(
                "the code of this deployment ({}) is not on this node; the working directory starts empty",
                code.display()
            ));
        }
    }
    definition.policy = policy;
    definition.features = features;
    store.update_record(&definition.to_row())?;
    Ok((definition, warning))
}

/// Copies the files of `from` into `to` (directories, regular files and
/// symlinks as links), given to `owner` when shroud is root.
pub fn copy_tree(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    copy_tree_except(from, to, owner, None)
}

/// [`copy_tree`] leaving out the directory `except` (a shroud home inside
/// the folder copied: its vault never goes into a sandbox).
pub fn copy_tree_except(
    from: &Path,
    to: &Path,
    owner: Option<(u32, u32)>,
    except: Option<&Path>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if except.is_some_and(|except| same_dir(&entry.path(), except)) {
            continue;
        }
        if kind.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree_except(&entry.path(), &target, owner, except)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)?;
        } else {
            continue;
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// True when `a` and `b` are the same directory (by device and inode).
fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.is_dir() && a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A deployment's (or a run's) masked log: JSON lines in a file, capped at
/// `cap` bytes: past it the file becomes `<name>.1` (the one before is
/// dropped) and a new one starts, so at most twice the cap is kept.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    cap: u64,
    file: Mutex<Option<(std::fs::File, u64)>>,
}

/// A deployment's log is kept up to this size (twice, with the older part).
pub const LOG_CAP_BYTES: u64 = 8 * 1024 * 1024;

impl LogFile {
    pub fn new(path: PathBuf, cap: u64) -> LogFile {
        LogFile {
            path,
            cap,
            file: Mutex::new(None),
        }
    }

    /// The file that holds the older part.
    pub fn older_path(path: &Path) -> PathBuf {
        Self::older(path)
    }

    fn older(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    /// Appends one JSON line (errors are logged, never the line).
    pub fn append(&self, line: &serde_json::Value) {
        let mut text = serde_json::to_vec(line).expect("a log line serializes");
        text.push(b'\n');
        let mut file = self.file.lock().expect("log lock");
        let result = (|| -> std::io::Result<()> {
            if file.as_ref().is_some_and(|(_, size)| *size >= self.cap) {
                *file = None;
                std::fs::rename(&self.path, Self::older(&self.path))?;
            }
            if file.is_none() {
                let opened = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?;
                let size = opened.metadata()?.len();
                *file = Some((opened, size));
            }
            let (handle, size) = file.as_mut().expect("opened above");
            handle.write_all(&text)?;
            *size += text.len() as u64;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write a log line");
            *file = None;
        }
    }

    /// A supervisor event (`started`, `up`, `exited with code N`, ...).
    pub fn event(&self, instance: &str, message: &str) {
        self.append(&serde_json::json!({
            "ts": crate::clock::rfc3339(crate::clock::now_ms()),
            "instance": instance,
            "event": message,
        }));
    }

    /// Every line kept, oldest first.
    pub fn read_lines(path: &Path) -> Vec<String> {
        let mut lines = Vec::new();
        for file in [Self::older(path), path.to_owned()] {
            if let Ok(opened) = std::fs::File::open(&file) {
                lines.extend(
                    std::io::BufReader::new(opened)
                        .lines()
                        .map_while(Result::ok),
                );
            }
        }
        lines
    }
}

/// One instance's view of a [`LogFile`]: its output, one log line per
/// output line (a partial line waits for its end, up to 16 KiB, or for the
/// end of the stream).
pub struct InstanceLog {
    pub log: std::sync::Arc<LogFile>,
    pub instance: String,
    lines: LineSplitter,
}

/// A partial line this long is written out as it is.
const MAX_PARTIAL_LINE: usize = 16 * 1024;

impl InstanceLog {
    pub fn new(log: std::sync::Arc<LogFile>, instance: String) -> Self {
        InstanceLog {
            log,
            instance,
            lines: LineSplitter::new(MAX_PARTIAL_LINE),
        }
    }
}

/// Appends one output line of `instance` to `log`.
fn log_line(log: &LogFile, instance: &str, stream: Stream, bytes: &[u8]) {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    log.append(&serde_json::json!({
        "ts": crate::clock::rfc3339(crate::clock::now_ms()),
        "instance": instance,
        "stream": stream.name(),
        "data": String::from_utf8_lossy(bytes),
    }));
}

impl OutputSink for InstanceLog {
    fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let (log, instance) = (&self.log, &self.instance);
        self.lines
            .push(stream, bytes, |line| log_line(log, instance, stream, line));
    }

    fn finish(&mut self, stream: Stream) {
        let (log, instance) = (&self.log, &self.instance);
        self.lines
            .finish(stream, |line| log_line(log, instance, stream, line));
    }
}

/// The `$NOTIFY_SOCKET` of one instance: a datagram socket in
/// `<workdir>/.shroud/` (the working directory is the one place a sandboxed
/// instance sees of the host, at the same path), writable by the
/// instance's uid. The instance can write that directory, so nothing here
/// goes through a path it could swap for a link: the directory is opened
/// with O_NOFOLLOW, and the socket is bound, chowned and removed through
/// that descriptor.
pub struct NotifySocket {
    pub path: PathBuf,
    dir: OwnedFd,
    name: String,
    socket: std::os::unix::net::UnixDatagram,
}

impl NotifySocket {
    pub fn bind(
        workdir: &Path,
        instance: &str,
        owner: Option<(u32, u32)>,
    ) -> std::io::Result<NotifySocket> {
        use crate::sys::fd;
        use std::os::fd::AsFd;
        let work = fd::open_dir_nofollow(workdir)?;
        // Whatever the instance left at `.shroud` (a link, a file) is
        // removed, never followed, and the directory made again.
        let dir = match fd::open_or_make_dir_at(work.as_fd(), ".shroud") {
            Ok(dir) => dir,
            Err(_) => {
                fd::unlink_at(work.as_fd(), ".shroud")?;
                fd::open_or_make_dir_at(work.as_fd(), ".shroud")?
            }
        };
        if let Some((uid, gid)) = owner {
            fd::chown_fd(dir.as_fd(), uid, gid)?;
        }
        let name = format!("notify-{instance}.sock");
        let _ = fd::unlink_at(dir.as_fd(), &name);
        let socket = std::os::unix::net::UnixDatagram::bind(fd::path_of(dir.as_fd()).join(&name))?;
        if let Some((uid, gid)) = owner {
            fd::chown_at(dir.as_fd(), &name, uid, gid)?;
        }
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(NotifySocket {
            path: workdir.join(".shroud").join(&name),
            dir,
            name,
            socket,
        })
    }

    /// Waits for `READY=1` until `keep_waiting` says no; true when it came.
    pub fn wait_ready(&self, keep_waiting: impl Fn() -> bool) -> bool {
        let mut buf = [0u8; 4096];
        while keep_waiting() {
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if text.lines().any(|line| line.trim() == "READY=1") {
                        return true;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        use std::os::fd::AsFd;
        let _ = crate::sys::fd::unlink_at(self.dir.as_fd(), &self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_socket_addresses_are_checked() {
        for good in ["web", "api-2", "0x"] {
            assert!(check_slug(good).is_ok(), "{good}");
        }
        for bad in ["", "-web", "Web", "a_b", "a/b", &"a".repeat(64)] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
        assert!(check_socket_address("127.0.0.1:8080").is_ok());
        assert!(check_socket_address("unix:/tmp/x.sock").is_ok());
        for bad in ["8080", "unix:", "unix:relative.sock", "host:port"] {
            assert!(check_socket_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_log_keeps_lines_and_drops_the_oldest_part_past_its_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let log = std::sync::Arc::new(LogFile::new(path.clone(), 200));
        let mut sink = InstanceLog::new(std::sync::Arc::clone(&log), "1".to_owned());
        sink.write(Stream::Stdout, b"first li");
        sink.write(Stream::Stdout, b"ne\nsecond\npart");
        sink.finish(Stream::Stdout);
        let lines = LogFile::read_lines(&path);
        let data: Vec<String> = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["data"].to_string())
            .collect();
        assert_eq!(data, ["\"first line\"", "\"second\"", "\"part\""]);
        for n in 0..50 {
            log.event("1", &format!("event {n}"));
        }
        let kept = LogFile::read_lines(&path);
        assert!(kept.len() < 53, "the oldest lines were dropped");
        assert!(kept.last().unwrap().contains("event 49"));
        assert!(std::fs::metadata(&path).unwrap().len() <= 200 + 100);
    }
}
