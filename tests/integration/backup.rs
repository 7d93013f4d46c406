//! `shroud backup` and `shroud restore`: a consistent copy taken while
//! other processes write, restored into a fresh home and read back value by
//! value; never the key in it; every refusal leaves the home as it was.

use std::path::Path;

use crate::support::TestHome;

fn value_of(name: &str) -> String {
    format!("value of {name}: 'quoted' \"and\" = # not a comment")
}

/// A fresh home holding `key_file` as its master key.
fn home_with_key(key_file: &Path) -> TestHome {
    let home = TestHome::new();
    std::fs::create_dir_all(home.path()).unwrap();
    std::fs::copy(key_file, home.key_path()).unwrap();
    home
}

fn secrets_in(home: &TestHome, vault: &str) -> Vec<String> {
    let out = home.run(&["secret", "list", "--vault", vault]);
    out.ok().lines().map(str::to_owned).collect()
}

fn reveal_in(home: &TestHome, vault: &str, name: &str) -> String {
    let out = home.run(&["secret", "reveal", name, "--vault", vault]);
    out.ok().strip_suffix('\n').unwrap().to_owned()
}

#[test]
fn a_backup_taken_during_writes_restores_every_value() {
    let source = TestHome::new();
    source.set("BEFORE", "written-before-the-backups");
    const PER_WRITER: usize = 25;
    let writers: Vec<_> = (0..2)
        .map(|writer| {
            let command = |args: &[&str]| source.command(args);
            let commands: Vec<_> = (0..PER_WRITER)
                .map(|i| {
                    let name = format!("W{writer}_{i:02}");
                    (
                        name.clone(),
                        command(&["secret", "set", &name, "--vault", "w"]),
                    )
                })
                .collect();
            std::thread::spawn(move || {
                for (name, mut cmd) in commands {
                    use std::io::Write;
                    let mut child = cmd
                        .stdin(std::process::Stdio::piped())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .unwrap();
                    child
                        .stdin
                        .take()
                        .unwrap()
                        .write_all(value_of(&name).as_bytes())
                        .unwrap();
                    assert!(child.wait().unwrap().success());
                }
            })
        })
        .collect();
    let backups = tempfile::tempdir().unwrap();
    let mut taken = Vec::new();
    for n in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let file = backups.path().join(format!("during-{n}.db"));
        let out = source.run(&["backup", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{out:?}");
        taken.push(file);
    }
    for writer in writers {
        writer.join().unwrap();
    }
    let after = backups.path().join("after.db");
    source.run(&["backup", after.to_str().unwrap()]).ok();
    taken.push(after);
    for (n, file) in taken.iter().enumerate() {
        let restored = home_with_key(&source.key_path());
        let out = restored.run(&["restore", file.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(restored.reveal("BEFORE"), "written-before-the-backups");
        let names = secrets_in(&restored, "w");
        // Each writer's secrets are a prefix of what it wrote: the copy is
        // one moment of the store, each `secret set` whole or absent.
        for writer in 0..2 {
            let mine: Vec<_> = names
                .iter()
                .filter(|name| name.starts_with(&format!("W{writer}_")))
                .collect();
            let expected: Vec<String> = (0..mine.len())
                .map(|i| format!("W{writer}_{i:02}"))
                .collect();
            assert_eq!(mine, expected.iter().collect::<Vec<_>>(), "backup {n}");
        }
        for name in &names {
            assert_eq!(reveal_in(&restored, "w", name), value_of(name), "{name}");
        }
        if n == taken.len() - 1 {
            assert_eq!(
                names.len(),
                2 * PER_WRITER,
                "the last backup holds every write"
            );
        }
        let verified = restored.run(&["audit", "verify"]);
        assert_eq!(verified.code, 0, "{verified:?}");
    }
}

#[test]
fn a_backup_holds_no_key_and_no_value_in_plaintext() {
    let home = TestHome::new();
    home.set("API_KEY", "sk-backup-plaintext-9f8e7d6c");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shroud.backup");
    let out = home.run(&["--json", "backup", file.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["secrets"], 1);
    assert!(
        out.stderr.contains("the master key is not in it"),
        "{}",
        out.stderr
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bytes = std::fs::read(&file).unwrap();
    let key_text = std::fs::read_to_string(home.key_path()).unwrap();
    let key_text = key_text.trim();
    use base64::Engine as _;
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(key_text)
        .unwrap();
    for needle in [
        key_text.as_bytes(),
        &key_bytes,
        b"sk-backup-plaintext-9f8e7d6c",
    ] {
        assert!(!crate::support::contains(&bytes, needle));
    }
    // One file: no -wal or -journal beside it, and no leftover partial.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["shroud.backup"]);
    // A second backup to the same file is refused and leaves it alone.
    home.run(&["backup", file.to_str().unwrap()]).fails_with(1);
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
}

#[test]
fn restore_refuses_what_it_should_and_changes_nothing() {
    let source = TestHome::new();
    source.set("API_KEY", "sk-from-the-backup-1234");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.db");
    source.run(&["backup", file.to_str().unwrap()]).ok();
    let file = file.to_str().unwrap();

    // No key at all: it says where to put the one kept with the backup.
    let keyless = TestHome::new();
    let out = keyless.run(&["restore", file]);
    assert_eq!(out.code, 2, "a key problem: {out:?}");
    assert!(
        out.stderr.contains("no master key")
            && out.stderr.contains("master.key")
            && out.stderr.contains("SHROUD_MASTER_KEY"),
        "{}",
        out.stderr
    );
    assert!(!keyless.db_path().exists());

    // Another key: refused before the home is touched.
    let other = TestHome::new();
    other.set("MINE", "sk-kept-in-the-home-5678");
    let out = other.run(&["restore", file, "--force"]);
    assert_eq!(out.code, 2, "a key problem: {out:?}");
    assert!(out.stderr.contains("does not open"), "{}", out.stderr);
    assert_eq!(other.reveal("MINE"), "sk-kept-in-the-home-5678");
    assert!(secrets_in(&other, "default") == vec!["MINE"]);

    // The right key but a home with data: --force is needed.
    let full = home_with_key(&source.key_path());
    full.set("MINE", "sk-kept-in-the-home-5678");
    let out = full.run(&["restore", file]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("--force") && out.stderr.contains("1 secret"),
        "{}",
        out.stderr
    );
    assert_eq!(full.reveal("MINE"), "sk-kept-in-the-home-5678");
    let out = full.run(&["restore", file, "--force"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(secrets_in(&full, "default"), vec!["API_KEY"]);
    assert_eq!(full.reveal("API_KEY"), "sk-from-the-backup-1234");
    let audit = full.run(&["audit"]).ok();
    assert!(audit.contains("\tstore.restore\t"), "{audit}");

    // Not a backup at all: a text file, an SQLite file of someone else's,
    // a missing file.
    let empty = home_with_key(&source.key_path());
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "not a database\n").unwrap();
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    for bad in [&junk, &foreign, &dir.path().join("missing.db")] {
        let out = empty.run(&["restore", bad.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{bad:?}: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{}", out.stderr);
    }
    assert!(!empty.db_path().exists());

    // A live store's own file (its latest writes in the -wal beside it) is
    // refused: copying it is the trap a backup avoids.
    let live = TestHome::new();
    live.set("IN_THE_WAL", "sk-in-the-wal-1234");
    let wal = format!("{}-wal", live.db_path().display());
    if std::path::Path::new(&wal).exists() {
        let out = empty.run(&["restore", live.db_path().to_str().unwrap()]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("live store"), "{}", out.stderr);
    }
    let out = live.run(&["restore", live.db_path().to_str().unwrap(), "--force"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(live.reveal("IN_THE_WAL"), "sk-in-the-wal-1234");
    assert!(!empty.db_path().exists());

    // A home whose only trace is its audit history counts as holding data.
    let history = home_with_key(&source.key_path());
    history.set("GONE", "sk-deleted-later-1234");
    history.run(&["secret", "delete", "GONE"]).ok();
    let out = history.run(&["restore", file]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("audit record"), "{}", out.stderr);

    // A backup whose audit log was tampered with is refused (without --force).
    let tampered = dir.path().join("tampered.db");
    std::fs::copy(file, &tampered).unwrap();
    rusqlite::Connection::open(&tampered)
        .unwrap()
        .execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 1", [])
        .unwrap();
    let fresh = home_with_key(&source.key_path());
    let out = fresh.run(&["restore", tampered.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("audit log") && out.stderr.contains("broken"),
        "{}",
        out.stderr
    );
    assert!(!fresh.db_path().exists());
    // No scratch copy (nor a key) is left in the home after any of it.
    for home in [&fresh, &history, &full] {
        let leftovers: Vec<_> = std::fs::read_dir(home.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".restore-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}

#[test]
fn a_postgres_store_is_backed_up_with_pg_dump() {
    let Some(home) = TestHome::postgres() else {
        return;
    };
    home.set("API_KEY", "sk-on-postgres-1234");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.db");
    for args in [
        ["backup", file.to_str().unwrap()],
        ["restore", file.to_str().unwrap()],
    ] {
        let out = home.run(&args);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(out.stderr.contains("pg_dump"), "{}", out.stderr);
    }
    assert!(!file.exists());
}
