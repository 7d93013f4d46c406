//! `shroud run FILE.yml` against the real binary: the DAG, skips, timeouts,
//! the summary and JSON lines, masking across tasks, secrets kept out of
//! every argv, refusals that leave no trace, Ctrl-C.

use std::time::{Duration, Instant};

use crate::support::TestHome;

/// Writes `text` as a task file in a folder of its own; returns its path.
fn task_file(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("tasks.yml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn event<'a>(lines: &'a [serde_json::Value], task: &str, kind: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["task"] == task && l["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event of {task}"))
}

#[test]
fn tasks_run_in_parallel_skip_what_depends_on_a_failure_and_summarize() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let file = task_file(
        &dir,
        "tasks:
  - key: slow-a
    run: sleep 0.6; echo a done
  - key: slow-b
    run: sleep 0.6; echo b done
  - key: fails
    run: echo about to fail >&2; exit 3
  - key: needs-fails
    use: [fails]
    run: echo never
  - key: needs-needs
    use: [needs-fails]
    run: echo never either
  - key: after-both
    use: [slow-a, slow-b]
    run: printf 'no newline at the end'
  - key: too-slow
    timeout: 300ms
    run: sleep 10
",
    );
    let run = home.run(&["--json", "run", &file, "--jobs", "4"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines = json_lines(&run.stdout_text());
    // The two sleeps overlapped: each started before the other ended.
    let ts = |task: &str, kind: &str| event(&lines, task, kind)["ts"].as_str().unwrap().to_owned();
    assert!(ts("slow-a", "start") < ts("slow-b", "end"));
    assert!(ts("slow-b", "start") < ts("slow-a", "end"));
    assert_eq!(event(&lines, "fails", "end")["status"], "failed");
    assert_eq!(event(&lines, "fails", "end")["code"], 3);
    for skipped in ["needs-fails", "needs-needs"] {
        assert_eq!(
            event(&lines, skipped, "end")["status"],
            "skipped",
            "{skipped}"
        );
        assert!(lines
            .iter()
            .all(|l| !(l["task"] == skipped && l["event"] == "start")));
    }
    assert_eq!(event(&lines, "after-both", "end")["status"], "succeeded");
    assert_eq!(event(&lines, "too-slow", "end")["status"], "timed_out");
    // Lines as they come, the partial last one too, stderr kept apart.
    assert!(lines
        .iter()
        .any(|l| l["task"] == "after-both" && l["data"] == "no newline at the end"));
    assert!(lines
        .iter()
        .any(|l| l["task"] == "fails" && l["stream"] == "stderr" && l["data"] == "about to fail"));
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["status"], "failed");
    assert_eq!(summary["tasks"].as_array().unwrap().len(), 7);

    // The text form: prefixed lines and a summary table.
    let text = home.run(&["run", &file, "--jobs", "4"]);
    assert_eq!(text.code, 1);
    let out = text.stdout_text();
    assert!(out.contains("[slow-a] a done"), "{out}");
    assert!(out.contains("[after-both] no newline at the end"), "{out}");
    assert!(
        text.stderr.contains("[fails] about to fail"),
        "{}",
        text.stderr
    );
    assert!(out.contains("summary: failed"), "{out}");
    for row in ["fails     ", "failed (exit 3)", "skipped", "timed out"] {
        assert!(out.contains(row), "{row}: {out}");
    }
    // One task at a time with --jobs 1: the sleeps no longer overlap.
    let serial = home.run(&["--json", "run", &file, "--jobs", "1"]);
    let lines = json_lines(&serial.stdout_text());
    let ts = |task: &str, kind: &str| event(&lines, task, kind)["ts"].as_str().unwrap().to_owned();
    assert!(
        ts("slow-b", "start") >= ts("slow-a", "end")
            || ts("slow-a", "start") >= ts("slow-b", "end")
    );
}

crate::conformance!(secrets_are_masked_in_every_task_read_once_and_never_in_an_argv);

fn secrets_are_masked_in_every_task_read_once_and_never_in_an_argv() {
    let home = TestHome::new();
    // Through stdin: the argv scan below sees every process on the machine,
    // including the other store's run of this test setting its secret.
    home.run_stdin(
        &["secret", "set", "DB_PASSWORD"],
        b"sk-live-task-value-0042",
    )
    .ok();
    home.run(&["var", "set", "region", "eu-west-1"]).ok();
    let dir = tempfile::tempdir().unwrap();
    let file = task_file(
        &dir,
        "tasks:
  - key: write
    run: |
      echo \"inline ${{ secrets.DB_PASSWORD }}\"
      printf '%s' \"$PW\" > leaked.txt
      sleep 1.5
    env:
      PW: ${{ secrets.DB_PASSWORD }}
      HEADER: Bearer ${{ vaults.default.secrets.DB_PASSWORD }}
      REGION: ${{ vars.region }}
  - key: read
    use: [write]
    run: cat leaked.txt; echo; echo \"$REGION\"
    env:
      REGION: ${{ vars.region }}
",
    );
    let before = home.audit_count();
    let child = home
        .command(&["run", &file])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // While the first task sleeps: the value is in no process's argv.
    std::thread::sleep(Duration::from_millis(700));
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !cmdline.windows(10).any(|w| w == b"sk-live-ta"),
                "the value is in the argv of {:?}",
                entry.path()
            );
        }
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("[write] inline <secret:db_password>"),
        "{stdout}"
    );
    // Task `read` names no secret, yet prints the value: masked.
    assert!(stdout.contains("[read] <secret:db_password>"), "{stdout}");
    assert!(stdout.contains("[read] eu-west-1"), "{stdout}");
    assert!(!stdout.contains("sk-live-task"), "{stdout}");
    // One secret named three times: read (and audited) once.
    let audit = home
        .run(&["--json", "audit", "--secret", "DB_PASSWORD"])
        .ok();
    let injections = audit.matches("secret.inject").count();
    assert_eq!(injections, 1, "{audit}");
    assert_eq!(home.audit_count(), before + 1);
}

#[test]
fn a_refused_file_names_every_problem_and_runs_nothing() {
    let home = TestHome::new();
    home.set("REAL", "sk-live-real-value-01");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let file = task_file(
        &dir,
        &format!(
            "tasks:
  - key: fine
    run: touch {marker}
  - key: a
    use: [b]
    run: echo ${{{{ secrets.MISSING }}}}
    colour: red
  - key: b
    use: [a]
    run: echo ${{{{ vars.nope }}}}
    timeout: soon
    template: no-such-template
  - key: c
    use: [ghost]
    run: echo ${{{{ not.an.expression }}}}
",
            marker = marker.display()
        ),
    );
    let before = home.audit_count();
    let run = home.run(&["run", &file]);
    assert_eq!(run.code, 2);
    for needle in [
        "tasks.yml:5:5: task `a`, field `use`: a cycle: a -> b -> a",
        "task `a`, field `run`: secret `MISSING` not found",
        "task `a`, field `colour`: unknown field",
        "task `b`, field `run`: var `nope` not found",
        "task `b`, field `timeout`: invalid timeout",
        "task `b`, field `template`: template `no-such-template` not found",
        "task `c`, field `use`: `ghost` names no task",
        "task `c`, field `run`: `${{ not.an.expression }}` is not an expression",
        "8 problems",
    ] {
        assert!(run.stderr.contains(needle), "{needle}:\n{}", run.stderr);
    }
    assert!(!marker.exists(), "a task ran");
    assert_eq!(home.audit_count(), before, "nothing was read");
    // YAML syntax, duplicate keys, a missing file, a directory.
    let broken = task_file(&dir, "tasks:\n  - key: a\n    run: x\n    run: y\n");
    let run = home.run(&["run", &broken]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("tasks.yml:4:5: duplicate key `run`"),
        "{}",
        run.stderr
    );
    let syntax = task_file(&dir, "tasks: [\n");
    let run = home.run(&["run", &syntax]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not valid YAML"), "{}", run.stderr);
    let missing = home.run(&["run", "/nonexistent/tasks.yml"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("no such file"),
        "{}",
        missing.stderr
    );
    let folder = home.run(&["run", dir.path().to_str().unwrap()]);
    assert_eq!(folder.code, 2);
    assert!(
        folder.stderr.contains("is a directory"),
        "{}",
        folder.stderr
    );
    // A home that does not exist is not made by a refusal.
    let fresh = TestHome::new();
    let run = fresh.run(&["run", &file]);
    assert_eq!(run.code, 2);
    assert!(!fresh.path().exists());
}

#[test]
fn a_template_task_runs_in_a_fresh_sandbox_seeded_from_the_files_folder() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input.txt"), "seeded").unwrap();
    let file = task_file(
        &dir,
        "tasks:
  - key: boxed
    template: bash
    run: |
      cat input.txt; echo
      echo made > output.txt
      ls /root | wc -l
",
    );
    let run = home.run(&["run", &file]);
    assert_eq!(run.code, 0, "{}{}", run.stdout_text(), run.stderr);
    let out = run.stdout_text();
    assert!(out.contains("[boxed] seeded"), "{out}");
    assert!(
        out.contains("[boxed] 0"),
        "the host's /root is hidden: {out}"
    );
    // The sandbox is discarded; the file's folder is untouched.
    assert!(!dir.path().join("output.txt").exists());
    let left = std::fs::read_dir(home.path().join("task-sandboxes"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
}

#[test]
fn ctrl_c_stops_every_running_task_and_exits_130() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("77.{}", std::process::id());
    let file = task_file(
        &dir,
        &format!(
            "tasks:
  - key: one
    run: sleep {marker}
  - key: two
    run: sleep {marker}
  - key: later
    use: [one]
    run: touch {}/later
",
            dir.path().display()
        ),
    );
    let child = home
        .command(&["run", &file, "--jobs", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = || -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    c.starts_with(b"sleep\0")
                        && c.windows(marker.len()).any(|w| w == marker.as_bytes())
                })
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while running() < 2 {
        assert!(Instant::now() < deadline, "the tasks did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(running(), 0, "a task outlived the run");
    assert!(!dir.path().join("later").exists());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("summary: interrupted"), "{stdout}");
}

#[test]
fn lines_of_parallel_tasks_never_interleave() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    // Two tasks write long lines in small pieces at once.
    let writer = |c: char| {
        format!(
            "for i in $(seq 1 200); do for j in 1 2 3 4 5 6 7 8; do printf '{c}%.0s' $(seq 1 64); done; echo; done"
        )
    };
    let file = task_file(
        &dir,
        &format!(
            "tasks:\n  - key: a\n    run: \"{}\"\n  - key: b\n    run: \"{}\"\n",
            writer('a'),
            writer('b')
        ),
    );
    let run = home.run(&["run", &file, "--jobs", "2"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.stdout_text();
    let mut counts = [0, 0];
    for line in out.lines().filter(|l| l.starts_with('[')) {
        let (prefix, body) = line.split_at(4);
        let c = match prefix {
            "[a] " => 'a',
            "[b] " => 'b',
            other => panic!("a line without its prefix: {other:?}"),
        };
        assert_eq!(body.len(), 512, "{line}");
        assert!(body.chars().all(|x| x == c), "interleaved: {line}");
        counts[(c == 'b') as usize] += 1;
    }
    assert_eq!(counts, [200, 200]);
}

#[test]
fn no_task_outlives_a_run_killed_with_sigkill() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("78.{}", std::process::id());
    let file = task_file(
        &dir,
        // The plain task's shell dies with shroud (and what it exec'd);
        // a sandboxed task dies whole, descendants included (its pid
        // namespace goes with its init).
        &format!("tasks:\n  - key: plain\n    run: exec sleep {marker}\n  - key: boxed\n    template: bash\n    run: sleep {marker}; true\n"),
    );
    let mut child = home
        .command(&["run", &file, "--jobs", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = || -> usize {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                    c.starts_with(b"sleep\0")
                        && c.windows(marker.len()).any(|w| w == marker.as_bytes())
                })
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleeping() < 2 {
        assert!(Instant::now() < deadline, "the tasks did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleeping() > 0 {
        assert!(Instant::now() < deadline, "a task outlived shroud");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn values_with_shell_characters_stay_values_and_cwd_stays_under_the_folder() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("PWNED");
    home.set(
        "WEIRD",
        &format!("pa$$w0rd-x$(touch {})y&'\"z", pwned.display()),
    );
    let file = task_file(
        &dir,
        "tasks:
  - key: quoted
    run: |
      printf '%s\\n' \"${{ secrets.WEIRD }}\"
      printf 'len=%s\\n' \"$(printf '%s' \"${{ secrets.WEIRD }}\" | wc -c)\"
",
    );
    let run = home.run(&["run", &file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = run.stdout_text();
    assert!(out.contains("[quoted] <secret:weird>"), "{out}");
    assert!(!pwned.exists(), "the value ran as shell code");
    let expected_len = home.reveal("WEIRD").len();
    assert!(out.contains(&format!("len={expected_len}")), "{out}");

    // A `cwd` that leaves the file's folder (absolute, `..`, a link out),
    // or is the shroud home, is refused at the `cwd` field.
    std::os::unix::fs::symlink("/root", dir.path().join("rootlink")).unwrap();
    for (cwd, line) in [("/root", 4), ("..", 4), ("rootlink", 4)] {
        let file = task_file(
            &dir,
            &format!("tasks:\n  - key: out\n    template: bash\n    cwd: {cwd}\n    run: ls\n"),
        );
        let run = home.run(&["run", &file]);
        assert_eq!(run.code, 2, "{cwd}: {}", run.stderr);
        assert!(
            run.stderr
                .contains(&format!("tasks.yml:{line}:10: task `out`, field `cwd`")),
            "{cwd}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_sandbox_left_by_a_killed_run_is_removed_by_the_next() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let file = task_file(
        &dir,
        "tasks:\n  - key: boxed\n    template: bash\n    run: sleep 30\n",
    );
    let mut child = home
        .command(&["run", &file])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sandboxes = home.path().join("task-sandboxes");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&sandboxes).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "no sandbox was made");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(std::fs::read_dir(&sandboxes).unwrap().count() > 0);
    let quick = task_file(&dir, "tasks:\n  - key: quick\n    run: \"true\"\n");
    assert_eq!(home.run(&["run", &quick]).code, 0);
    let left: Vec<_> = std::fs::read_dir(&sandboxes)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_long_line_without_newline_goes_out_in_pieces_and_fast() {
    let home = TestHome::new();
    let dir = tempfile::tempdir().unwrap();
    let file = task_file(
        &dir,
        "tasks:\n  - key: long\n    run: head -c 8000000 /dev/zero | tr '\\\\0' a\n",
    );
    let run = home.run(&["--json", "run", &file]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = json_lines(&run.stdout_text());
    let total: usize = lines
        .iter()
        .filter(|l| l["task"] == "long" && l["stream"] == "stdout")
        .map(|l| l["data"].as_str().unwrap().len())
        .sum();
    assert_eq!(total, 8_000_000);
    assert!(lines
        .iter()
        .filter(|l| l["stream"] == "stdout")
        .all(|l| l["data"].as_str().unwrap().len() <= 64 * 1024));
}
