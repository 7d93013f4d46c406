//! Build script: links the sandbox init (`shroud-sandbox-init`) as a
//! static executable where the C toolchain has glibc's static libraries.
//!
//! Every sandboxed command starts one init, and on a virtual machine the
//! dynamic loader's start (mapping libc, libgcc_s and libm, resolving their
//! symbols, faulting in their pages) is a good part of its start-up: about
//! 0.8 ms of a `sandbox exec` here. Rust can link statically only for a
//! whole build (`-C target-feature=+crt-static`, which also breaks the
//! proc-macros when no `--target` is given), so this does it for the one
//! binary: `-static-pie` for the C driver (the self-relocating start file
//! and a static link, still position-independent), and a directory searched
//! first in which each library rustc names (`-lgcc_s`, `-lc`, `-lm`, ...)
//! is the static archive (libgcc_s's unwinder is libgcc_eh's). Where an
//! archive is missing, the init is linked as before, dynamically.
//! `shroud` itself stays dynamic: it resolves host names through NSS.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What rustc asks the linker for (glibc's libraries and the unwinder),
/// and the static archive that stands for each.
const ARCHIVES: &[(&str, &str)] = &[
    ("libgcc_s.a", "libgcc_eh.a"),
    ("libc.a", "libc.a"),
    ("libm.a", "libm.a"),
    ("libpthread.a", "libpthread.a"),
    ("libdl.a", "libdl.a"),
    ("librt.a", "librt.a"),
    ("libutil.a", "libutil.a"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SHROUD_DYNAMIC_INIT");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    println!("cargo:rerun-if-env-changed=CC");
    // The archives are probed with the host's C compiler.
    let native = std::env::var("HOST").ok() == std::env::var("TARGET").ok();
    if !linux_gnu || !native || std::env::var_os("SHROUD_DYNAMIC_INIT").is_some() {
        return;
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let dir = out.join("static-init");
    match archive_dir(&dir) {
        Ok(()) => {
            println!(
                "cargo:rustc-link-arg-bin=shroud-sandbox-init=-L{}",
                dir.display()
            );
            println!("cargo:rustc-link-arg-bin=shroud-sandbox-init=-static-pie");
        }
        Err(why) => println!(
            "cargo:warning=shroud-sandbox-init is linked dynamically ({why}); \
             install glibc's static libraries (libc6-dev) for a faster sandbox start"
        ),
    }
}

/// Fills `dir` with links to the static archives, or says which is missing.
fn archive_dir(dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    // `-static-pie` starts from the self-relocating start file.
    find_archive("rcrt1.o").ok_or("no rcrt1.o")?;
    for (name, archive) in ARCHIVES {
        let found = find_archive(archive).ok_or_else(|| format!("no {archive}"))?;
        // A toolchain upgrade that moves or replaces one relinks the init.
        println!("cargo:rerun-if-changed={}", found.display());
        std::os::unix::fs::symlink(&found, dir.join(name))
            .map_err(|e| format!("link {}: {e}", found.display()))?;
    }
    Ok(())
}

/// Where the C compiler finds `archive` (`cc -print-file-name`), if it does.
fn find_archive(archive: &str) -> Option<PathBuf> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let output = Command::new(cc)
        .arg(format!("-print-file-name={archive}"))
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    // An archive it cannot find comes back as its bare name.
    (path.is_absolute() && path.is_file()).then(|| path.canonicalize().unwrap_or(path))
}
