//! Sandboxes: create, exec inside, list, rm; isolation and limits, tested
//! against real namespaces, mounts and rlimits on this host.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::support::TestHome;

const VALUE: &str = "sk-sandboxed-9f8e7d6c";

/// A home with a secret and a tightly limited template of its own.
fn home() -> TestHome {
    let home = TestHome::new();
    home.set("API_KEY", VALUE);
    let templates = home.path().join("sandbox-templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("tight.toml"),
        "description = \"tight limits\"\n[runtime]\ninterpreter = \"sh\"\n\
         [limits]\nprocesses = 24\nmemory_mb = 256\nopen_files = 64\nwall_seconds = 60\n",
    )
    .unwrap();
    std::fs::write(
        templates.join("networked.toml"),
        "description = \"network on\"\n[network]\nenabled = true\n",
    )
    .unwrap();
    home
}

fn create(home: &TestHome, args: &[&str]) -> String {
    let mut full = vec!["sandbox", "create"];
    full.extend_from_slice(args);
    let out = home.run(&full);
    let id = out.ok().trim().to_owned();
    assert_eq!(id.len(), 36, "a uuid: {id:?}");
    assert!(uuid_like(&id), "{id}");
    id
}

fn uuid_like(text: &str) -> bool {
    text.split('-').map(str::len).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && text.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

fn sandbox_exec(home: &TestHome, id: &str, command: &[&str]) -> crate::support::Run {
    let mut full = vec!["sandbox", "exec", id, "--"];
    full.extend_from_slice(command);
    home.run(&full)
}

fn create_prints_an_id_and_reports_the_isolation() {
    let home = home();
    let out = home.run(&["sandbox", "create", "--template", "bash", "-v"]);
    let id = out.ok().trim().to_owned();
    assert!(uuid_like(&id), "{id}");
    for feature in [
        "user_namespace",
        "pid_namespace",
        "net_namespace",
        "private_tmp",
        "read_only_system",
        "cgroups",
    ] {
        assert!(
            out.stderr.contains(feature),
            "{feature} not reported: {}",
            out.stderr
        );
    }
    let json = home
        .run(&["--json", "sandbox", "create", "--template", "python-3"])
        .json();
    assert!(uuid_like(json["id"].as_str().unwrap()));
    let features = json["isolation"].as_array().unwrap();
    let cgroups = features.iter().find(|f| f["name"] == "cgroups").unwrap();
    assert_eq!(
        cgroups["available"], false,
        "reported, not silently dropped"
    );
    assert!(features
        .iter()
        .any(|f| f["name"] == "pid_namespace" && f["available"] == true));
    assert_eq!(json["network"], false);
}

fn secrets_env_masking_and_exit_codes_work_inside() {
    let home = home();
    let id = create(
        &home,
        &[
            "--template",
            "bash",
            "--secret",
            "API_KEY",
            "--env",
            "MODE=sandboxed",
        ],
    );
    let out = sandbox_exec(
        &home,
        &id,
        &[
            "sh",
            "-c",
            "echo $MODE $API_KEY; echo err $API_KEY >&2; exit 3",
        ],
    );
    assert_eq!(out.code, 3);
    assert_eq!(out.stdout_text(), "sandboxed <secret:api_key>\n");
    assert_eq!(out.stderr, "err <secret:api_key>\n");
    assert_eq!(sandbox_exec(&home, &id, &["no-such-program-xyz"]).code, 127);
    let json = home.run(&["--json", "sandbox", "exec", &id, "--", "true"]);
    let last: serde_json::Value =
        serde_json::from_str(json.stdout_text().lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "exit");
    let list = home.run(&["sandbox", "list"]).ok();
    assert!(list.contains(&id) && list.contains("bash"), "{list}");
    let listed = home.run(&["--json", "sandbox", "list"]).json();
    assert_eq!(listed["sandboxes"][0]["last_exit"], 0);
    let audit = home.run(&["audit", "--limit", "2"]).ok();
    assert!(
        audit.contains("secret.inject") && audit.contains(&format!("sandbox.exec\tdefault\t{id}")),
        "{audit}"
    );
}

fn files_persist_across_execs_and_tmp_is_private() {
    let home = home();
    let id = create(&home, &["--template", "bash"]);
    let marker = format!("/tmp/shroud-private-tmp-{}", std::process::id());
    let first = sandbox_exec(
        &home,
        &id,
        &[
            "sh",
            "-c",
            &format!("echo kept > notes.txt && echo gone > {marker} && cat {marker}"),
        ],
    );
    assert_eq!(first.ok(), "gone\n", "/tmp is writable");
    assert!(
        !std::path::Path::new(&marker).exists(),
        "the sandbox wrote the host's /tmp"
    );
    let second = sandbox_exec(
        &home,
        &id,
        &[
            "sh",
            "-c",
            &format!("cat notes.txt; test -e {marker} || echo fresh-tmp"),
        ],
    );
    assert_eq!(second.ok(), "kept\nfresh-tmp\n");
    // Another sandbox does not see the first one's files.
    let other = create(&home, &["--template", "bash"]);
    assert_ne!(sandbox_exec(&home, &other, &["cat", "notes.txt"]).code, 0);
}

#[test]
fn the_shroud_home_is_not_reachable() {
    let home = home();
    let id = create(&home, &["--template", "bash"]);
    let home_dir = home.path();
    let script = format!(
        "cat {0}/master.key; cat {0}/shroud.db | head -c 16; ls -a {0}; ls {0}/sandboxes",
        home_dir.display()
    );
    let out = sandbox_exec(&home, &id, &["sh", "-c", &script]);
    assert!(
        !out.stdout_text().contains("SQLite format"),
        "the database is readable: {out:?}"
    );
    let key = std::fs::read_to_string(home.key_path()).unwrap();
    assert!(
        !out.stdout_text().contains(key.trim()),
        "the master key is readable"
    );
    let listing = out.stdout_text();
    assert!(
        !listing.contains("master.key") && !listing.contains("shroud.db"),
        "{listing}"
    );
    assert!(
        listing.contains(&id),
        "only the sandbox's own directory is there: {listing}"
    );
}

#[test]
fn the_network_is_off_unless_the_template_allows_it() {
    let home = home();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = format!(
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n    print('connected')\nexcept OSError as e:\n    print('refused', e)\n"
    );
    let off = create(&home, &["--template", "python-3"]);
    let out = sandbox_exec(&home, &off, &["python3", "-c", &connect]);
    assert!(out.ok().starts_with("refused"), "{out:?}");
    // Its own loopback is up: a server inside answers a client inside.
    let inside = [
        "import socket, threading",
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1)",
        "threading.Thread(target=lambda: s.accept()[0].sendall(b'hello'), daemon=True).start()",
        "c = socket.create_connection(s.getsockname(), timeout=3)",
        "print(c.recv(5).decode())",
    ]
    .join("\n");
    let out = sandbox_exec(&home, &off, &["python3", "-c", &inside]);
    assert_eq!(out.ok(), "hello\n", "{out:?}");
    let on = create(&home, &["--template", "networked"]);
    let out = sandbox_exec(&home, &on, &["python3", "-c", &connect]);
    assert_eq!(
        out.ok(),
        "connected\n",
        "the positive control must connect: {out:?}"
    );
}

#[test]
fn a_fork_bomb_is_stopped_by_the_process_limit() {
    let home = home();
    let id = create(&home, &["--template", "tight"]);
    let started = Instant::now();
    let out = sandbox_exec(
        &home,
        &id,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do sleep 20 & i=$((i+1)); done; echo all-started",
        ],
    );
    assert_ne!(
        out.code, 0,
        "200 processes started under a limit of 24: {out:?}"
    );
    assert!(!out.stdout_text().contains("all-started"));
    assert!(out.stderr.to_lowercase().contains("fork"), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the bomb was not stopped"
    );
    let limits = sandbox_exec(&home, &id, &["cat", "/proc/self/limits"]).ok();
    let soft = |name: &str| {
        let line = limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {limits}"));
        line[name.len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(soft("Max processes"), "24");
    assert_eq!(soft("Max open files"), "64");
    assert_eq!(soft("Max address space"), (256u64 << 20).to_string());
    assert_eq!(soft("Max core file size"), "0");
}

#[test]
fn hitting_the_memory_limit_is_a_failure_not_a_hang() {
    let home = home();
    let id = create(&home, &["--template", "tight"]);
    let out = sandbox_exec(
        &home,
        &id,
        &[
            "python3",
            "-c",
            "b = bytearray(1024 * 1024 * 1024); print('allocated')",
        ],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(!out.stdout_text().contains("allocated"));
    assert!(out.stderr.contains("MemoryError"), "{}", out.stderr);
}

#[test]
fn a_background_process_does_not_outlive_its_exec() {
    let home = home();
    let id = create(&home, &["--template", "bash"]);
    let tag = format!("{}.{}", 31, std::process::id());
    let out = sandbox_exec(
        &home,
        &id,
        &["sh", "-c", &format!("sleep {tag} & echo started")],
    );
    assert_eq!(out.ok(), "started\n");
    std::thread::sleep(Duration::from_millis(200));
    let survivors = std::process::Command::new("pgrep")
        .args(["-f", &format!("sleep {tag}")])
        .output()
        .unwrap();
    assert!(
        survivors.stdout.is_empty(),
        "survived: {}",
        String::from_utf8_lossy(&survivors.stdout)
    );
}

#[test]
fn malformed_templates_are_rejected_with_file_line_and_field() {
    let home = home();
    let templates = home.path().join("sandbox-templates");
    std::fs::write(
        templates.join("broken.toml"),
        "description = \"x\"\n[limits]\nprocesess = 5\n",
    )
    .unwrap();
    let out = home.run(&["sandbox", "create", "--template", "broken"]);
    out.fails_with(2);
    assert!(
        out.stderr.contains("broken.toml")
            && out.stderr.contains("line 3")
            && out.stderr.contains("processes"),
        "{}",
        out.stderr
    );
    home.run(&["sandbox", "create", "--template", "no-such"])
        .fails_with(2);
    assert!(home.run(&["sandbox", "list"]).ok().is_empty());
}

#[test]
fn what_the_host_cannot_give_is_reported_and_strict_refuses_it() {
    let home = home();
    let templates = home.path().join("sandbox-templates");
    std::fs::write(
        templates.join("exotic.toml"),
        "[runtime]\ninterpreter = \"no-such-interpreter-xyz\"\n",
    )
    .unwrap();
    // One line names what is missing; -v says why.
    let summary = home.run(&["sandbox", "create", "--template", "exotic"]);
    assert_eq!(summary.code, 0);
    assert!(
        summary.stderr.starts_with("warning: isolation: ")
            && summary.stderr.contains("not available here: ")
            && summary.stderr.contains("interpreter"),
        "{}",
        summary.stderr
    );
    let lenient = home.run(&["sandbox", "create", "--template", "exotic", "-v"]);
    assert_eq!(lenient.code, 0);
    assert!(
        lenient.stderr.contains("warning: interpreter")
            && lenient.stderr.contains("no-such-interpreter-xyz"),
        "{}",
        lenient.stderr
    );
    let strict = home.run(&["sandbox", "create", "--template", "exotic", "--strict"]);
    strict.fails_with(1);
    assert!(
        strict.stderr.contains("--strict") && strict.stderr.contains("interpreter"),
        "{}",
        strict.stderr
    );
    assert!(strict.stdout.is_empty());
    assert_eq!(
        home.run(&["sandbox", "list"]).ok().lines().count(),
        2,
        "the two lenient ones were created, the strict one was not"
    );
}

fn rm_removes_the_files_and_later_execs_fail() {
    let home = home();
    let id = create(&home, &["--template", "bash"]);
    sandbox_exec(&home, &id, &["sh", "-c", "echo data > file"]).ok();
    let dir = home.path().join("sandboxes").join(&id);
    assert!(dir.join("work/file").exists());
    home.run(&["sandbox", "rm", &id]).ok();
    assert!(!dir.exists());
    let out = sandbox_exec(&home, &id, &["true"]);
    assert_eq!(out.code, 125);
    assert!(out.stderr.contains("not found"), "{}", out.stderr);
    home.run(&["sandbox", "rm", &id]).fails_with(1);
    assert!(!home.run(&["sandbox", "list"]).ok().contains(&id));
}

#[test]
fn a_sandbox_command_gets_a_terminal_when_asked() {
    let home = home();
    let id = create(&home, &["--template", "bash"]);
    let out = home.run(&[
        "sandbox",
        "exec",
        &id,
        "--tty",
        "always",
        "--",
        "sh",
        "-c",
        "test -t 1 && echo tty",
    ]);
    assert_eq!(out.ok().replace('\r', ""), "tty\n");
    let mut child = home
        .command(&[
            "sandbox",
            "exec",
            &id,
            "--timeout",
            "0.5",
            "--",
            "sleep",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut sink = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut sink).unwrap();
    assert_eq!(
        child.wait().unwrap().code(),
        Some(124),
        "timeout inside a sandbox"
    );
}

#[test]
fn an_unprivileged_user_gets_the_same_isolation() {
    // As root, run shroud as `nobody` (setpriv), so that the user-namespace
    // path is tested too; run as a user, every test here already takes it.
    if !nix::unistd::getuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let home = dir.path().join("home");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                crate::support::shroud_binary(),
                "--home",
            ])
            .arg(&home)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(run(&["secret", "set", "API_KEY", VALUE]).0, Some(0));
    let (code, id, err) = run(&[
        "sandbox",
        "create",
        "--template",
        "bash",
        "--secret",
        "API_KEY",
        "-v",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("processes counted on your user"), "{err}");
    let id = id.trim().to_owned();
    let script = format!(
        "echo $API_KEY; id -u; ps ax | wc -l; ls {}; touch /usr/x 2>/dev/null || echo read-only; echo kept > f",
        home.display()
    );
    let (code, out, err) = run(&["sandbox", "exec", &id, "--", "sh", "-c", &script]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "<secret:api_key>");
    assert_eq!(lines[1], "0", "root inside its user namespace");
    assert!(
        lines[2].trim().parse::<u32>().unwrap() <= 6,
        "only the sandbox's processes: {out}"
    );
    assert_eq!(lines[3], "sandboxes", "the home is hidden: {out}");
    assert_eq!(lines[4], "read-only");
    assert_eq!(run(&["sandbox", "exec", &id, "--", "cat", "f"]).1, "kept\n");
}

crate::conformance!(
    create_prints_an_id_and_reports_the_isolation,
    secrets_env_masking_and_exit_codes_work_inside,
    files_persist_across_execs_and_tmp_is_private,
    rm_removes_the_files_and_later_execs_fail,
);

/// What pid 1 of a sandbox runs, as `/proc/1/cmdline` shows it inside.
fn init_cmdline(home: &TestHome, binary: &std::path::Path, id: &str) -> String {
    let mut cmd = std::process::Command::new(binary);
    let template = home.command(&[]);
    cmd.env_clear();
    for (key, value) in template.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    cmd.args(["sandbox", "exec", id, "--", "sh", "-c"])
        .arg("tr '\\0' ' ' < /proc/1/cmdline; echo; echo $API_KEY");
    let out = home.run_with(cmd, None);
    let text = out.ok().to_owned();
    assert!(
        text.contains("<secret:api_key>") && !text.contains(VALUE),
        "{text}"
    );
    text
}

#[test]
fn the_init_is_its_own_small_binary_and_shroud_alone_still_runs_sandboxes() {
    let home = home();
    let id = create(&home, &["--template", "bash", "--secret", "API_KEY"]);
    let shroud = std::path::Path::new(crate::support::shroud_binary());
    let beside = init_binary();
    assert!(
        beside.is_file(),
        "the build puts {} beside shroud",
        beside.display()
    );
    let normal = init_cmdline(&home, shroud, &id);
    assert!(
        normal.starts_with(&format!("{} --policy ", beside.display())),
        "pid 1 is the small init: {normal}"
    );
    // `shroud` copied somewhere on its own: the init is `shroud __sandbox-init`.
    let alone_dir = tempfile::tempdir().unwrap();
    let alone = alone_dir.path().join("shroud");
    std::fs::copy(shroud, &alone).unwrap();
    let fallback = init_cmdline(&home, &alone, &id);
    assert!(
        fallback.starts_with(&format!("{} __sandbox-init --policy ", alone.display())),
        "pid 1 is shroud's own entry point: {fallback}"
    );
}

#[test]
fn a_command_whose_secrets_cannot_be_read_never_runs_though_its_init_started() {
    // The init starts while the secrets are read; a grant that fails
    // (missing secret) kills it before its command can start.
    let home = home();
    let id = create(&home, &["--template", "bash"]);
    let out = home.run(&[
        "sandbox",
        "exec",
        &id,
        "--secret",
        "NO_SUCH_SECRET",
        "--",
        "sh",
        "-c",
        "echo ran; echo ran > ran.txt",
    ]);
    out.fails_with(125);
    assert!(out.stderr.contains("NO_SUCH_SECRET"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    std::thread::sleep(Duration::from_millis(300));
    let listed = sandbox_exec(&home, &id, &["sh", "-c", "ls; echo listed"]);
    assert_eq!(listed.ok(), "listed\n", "the command ran");
}

/// The small init binary the build puts beside `shroud`.
fn init_binary() -> std::path::PathBuf {
    std::path::Path::new(crate::support::shroud_binary()).with_file_name("shroud-sandbox-init")
}

/// Whether an ELF file names a dynamic loader (has a `PT_INTERP` program
/// header), read from its 64-bit little-endian headers.
fn names_a_dynamic_loader(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let word = |at: usize, n: usize| {
        let mut value = 0u64;
        for (i, byte) in elf[at..at + n].iter().enumerate() {
            value |= u64::from(*byte) << (8 * i);
        }
        value as usize
    };
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    let (table, entry_size, entries) = (word(0x20, 8), word(0x36, 2), word(0x38, 2));
    (0..entries).any(|i| word(table + i * entry_size, 4) as u32 == PT_INTERP)
}

/// Every sandboxed command starts an init: the build links it statically
/// (no dynamic loader to map and resolve three libraries) wherever the C
/// toolchain has glibc's static archives, as this one's `.ci/run` installs.
#[test]
fn the_init_is_linked_statically_where_the_static_libraries_are() {
    let libc_archive = std::process::Command::new("cc")
        .arg("-print-file-name=libc.a")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|path| std::path::Path::new(path).is_absolute());
    let Some(libc_archive) = libc_archive else {
        eprintln!("SKIP: no libc.a for this C compiler; the init is linked dynamically");
        return;
    };
    let init = std::fs::read(init_binary()).expect("the init binary");
    assert!(
        !names_a_dynamic_loader(&init),
        "{} is linked dynamically though {libc_archive} is there",
        init_binary().display()
    );
    // And it runs (a static link that still needed a shared library would
    // not even start): its usage error, from its own code.
    let ran = std::process::Command::new(init_binary()).output().unwrap();
    assert_eq!(ran.status.code(), Some(2), "{ran:?}");
    assert!(
        String::from_utf8_lossy(&ran.stderr).starts_with("error: "),
        "{ran:?}"
    );
    let shroud = std::fs::read(crate::support::shroud_binary()).expect("shroud");
    assert!(
        names_a_dynamic_loader(&shroud),
        "shroud itself stays dynamic (NSS)"
    );
}

/// The init as `shroud sandbox exec` starts it, by hand: its policy from
/// a real exec's pid 1 (with no parent to die with), `sh -c 'echo ran'` as
/// its command, and `environment` on its stdin (`SHROUD_ENV_FD=0`), the
/// writer closed after it.
fn run_init_by_hand(policy: &str, environment: &[u8]) -> std::process::Output {
    use std::io::Write;
    let init = init_binary();
    let mut child = std::process::Command::new(init)
        .args(["--policy", policy, "--", "/bin/sh", "-c", "echo ran"])
        .env_clear()
        .env("SHROUD_ENV_FD", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(environment).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn the_command_starts_only_once_its_whole_environment_has_arrived() {
    // shroud may start the init before the secrets are read and send them
    // after their audit commit: an environment cut short (shroud killed
    // before or while sending it) must not start the command.
    let home = home();
    let id = create(&home, &["--template", "bash", "--secret", "API_KEY"]);
    let text = init_cmdline(
        &home,
        std::path::Path::new(crate::support::shroud_binary()),
        &id,
    );
    let json = text.split_whitespace().nth(2).expect("pid 1's --policy");
    let mut policy: serde_json::Value = serde_json::from_str(json).unwrap();
    policy["die_with"] = serde_json::Value::Null;
    let policy = policy.to_string();
    let entries = b"PATH=/usr/bin:/bin\0";
    let whole = [&(entries.len() as u64).to_le_bytes()[..], entries].concat();
    for (what, environment) in [
        ("nothing", Vec::new()),
        ("half a length", whole[..4].to_vec()),
        (
            "a length and part of what it counts",
            whole[..whole.len() - 3].to_vec(),
        ),
        (
            "more than its length counts",
            [&whole[..], b"LD_PRELOAD=/x\0"].concat(),
        ),
    ] {
        let out = run_init_by_hand(&policy, &environment);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{what}: {stderr}");
        assert!(out.stdout.is_empty(), "{what}: the command ran");
        assert!(stderr.contains("did not arrive whole"), "{what}: {stderr}");
    }
    let out = run_init_by_hand(&policy, &whole);
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "ran\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_init_binary_refuses_bad_arguments_with_an_error_line() {
    let init = init_binary();
    for (args, message) in [
        (vec!["--bogus"], "unexpected argument"),
        (vec![], "--policy is required"),
        (vec!["--policy"], "--policy needs a value"),
        (
            vec!["--policy", "{}", "--", "true"],
            "invalid sandbox policy",
        ),
    ] {
        let out = std::process::Command::new(&init)
            .args(&args)
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(message),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
    // The holder started by hand, with no listening socket at fd 3: an
    // error at once, not a loop (a review found it waiting forever).
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&init)
        .args(["__netns-holder"])
        .arg(dir.path())
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a listening socket"), "{stderr}");
}

/// `sandbox exec ID` with shroud's debug log on, as `home.run` does it.
fn sandbox_exec_logged(home: &TestHome, id: &str, command: &[&str]) -> crate::support::Run {
    let mut full = vec!["sandbox", "exec", id, "--"];
    full.extend_from_slice(command);
    let mut cmd = home.command(&full);
    cmd.env("SHROUD_LOG", "debug");
    home.run_with(cmd, None)
}

const GUESS_USED: &str = "the sandbox init started on the cached policy is the one to run";

/// Where a sandbox's last CLI exec left its policy.
fn policy_cache(home: &TestHome, id: &str) -> std::path::PathBuf {
    home.path().join("sandboxes").join(id).join("init.json")
}

/// From its second CLI exec on, a sandbox's init starts before the store
/// is read, on the policy the exec before ran under, and is the one that
/// runs when that policy is still right; `sandbox rm` takes the cache away.
#[test]
fn an_exec_starts_its_init_on_the_previous_exec_s_policy() {
    let home = home();
    let id = create(&home, &["--template", "bash", "--secret", "API_KEY"]);
    let first = sandbox_exec_logged(&home, &id, &["sh", "-c", "echo \"$API_KEY\""]);
    assert_eq!(first.ok(), "<secret:api_key>\n", "{first:?}");
    assert!(!first.stderr.contains(GUESS_USED), "nothing to go on yet");
    assert!(policy_cache(&home, &id).is_file());
    let second = sandbox_exec_logged(
        &home,
        &id,
        &["sh", "-c", "echo \"$API_KEY\"; ps ax | wc -l"],
    );
    assert!(second.stderr.contains(GUESS_USED), "{second:?}");
    let text = second.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "<secret:api_key>", "{second:?}");
    // Its own pid namespace still: ps's header, pid 1, sh, ps and wc.
    assert!(lines[1].trim().parse::<u32>().unwrap() <= 5, "{second:?}");
    home.run(&["sandbox", "rm", &id]).ok();
    assert!(
        !policy_cache(&home, &id).exists(),
        "removed with the sandbox"
    );
}

/// A cached policy that is not the sandbox's (weakened by whoever can
/// write the home, stale, or not a policy at all) is never what a command
/// runs under: the guessed init is killed and the real one runs.
#[test]
fn a_cached_policy_that_is_not_the_sandbox_s_runs_nothing() {
    let home = home();
    let id = create(&home, &["--template", "bash"]);
    sandbox_exec(&home, &id, &["true"]).ok();
    let cache = policy_cache(&home, &id);
    let mut policy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    policy["isolation"]["read_only_system"] = false.into();
    policy["hide"] = serde_json::json!([]);
    policy["limits"]["processes"] = 100_000.into();
    let weakened = serde_json::to_vec(&policy).unwrap();
    for cached in [weakened.clone(), b"{not json".to_vec(), Vec::new()] {
        std::fs::write(&cache, &cached).unwrap();
        let out = sandbox_exec_logged(
            &home,
            &id,
            &["sh", "-c", "touch /usr/escaped 2>/dev/null && echo wrote; ls -A /root | wc -l; awk '/Max processes/ {print $3}' /proc/self/limits"],
        );
        assert!(!out.stderr.contains(GUESS_USED), "{out:?}");
        assert_eq!(out.ok(), "0\n256\n", "the sandbox's own policy: {out:?}");
        assert!(!std::path::Path::new("/usr/escaped").exists());
    }
    // The real policy is cached again, and used from then on.
    assert_ne!(std::fs::read(&cache).unwrap(), weakened);
    let out = sandbox_exec_logged(&home, &id, &["true"]);
    assert!(out.stderr.contains(GUESS_USED), "{out:?}");
    out.ok();
}
