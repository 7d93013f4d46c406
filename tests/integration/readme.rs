//! The README's own commands: the quick start, run as written in a fresh
//! home, and the contract it links to.

use std::path::Path;

/// The first ```sh block after `## Quick start`.
fn quick_start() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme.find("## Quick start").expect("a quick start")..];
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_owned()
}

#[test]
fn the_quick_start_runs_as_written_in_a_fresh_home() {
    let script = quick_start();
    let mut lines = script.lines();
    assert!(lines.next().unwrap().starts_with("cargo build --release"));
    let mut rest: Vec<&str> = lines.collect();
    // Not the README's: the sandbox goes (its holder and, as root, its
    // disk's mount with it), so the temporary home can.
    rest.push("shroud sandbox rm \"$ID\" >/dev/null");
    let dir = tempfile::tempdir().unwrap();
    let binary = Path::new(crate::support::shroud_binary());
    let path = format!(
        "{}:{}",
        binary.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(rest.join("\n"))
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The default store was made in ~/.local/share/shroud.
    assert!(dir.path().join(".local/share/shroud/shroud.db").exists());
    for expected in [
        "DATABASE_URL\n",
        "postgres://app:s3cret@db/app\n",
        "connecting to <secret:database_url>\n",
        "using <secret:database_url>\n",
        "ok: ",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }
    // Inside the sandbox: its own processes only, and the value masked.
    assert!(stdout.ends_with("<secret:database_url>\n"), "{stdout}");
    // No value was ever on a command line: no argv warning.
    assert!(!stderr.contains("given on the command line"), "{stderr}");
}

#[test]
fn the_contract_the_readme_links_to_is_in_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["SPEC.md", "DESIGN.md"] {
        let copy = root.join("docs").join(doc);
        assert!(copy.exists(), "docs/{doc}");
        match std::fs::read(root.join("../shared").join(doc)) {
            Ok(shared) => assert!(
                std::fs::read(&copy).unwrap() == shared,
                "docs/{doc} differs from ../shared/{doc}: copy it again"
            ),
            Err(_) => eprintln!(
                "SKIPPED: no ../shared/{doc} beside this clone to compare docs/{doc} with"
            ),
        }
    }
}
