//! `shroud redact`: filter stdin to stdout through the masker.
//!
//! The named secrets (or all of the vault's, with `--all`) are decrypted in
//! one audited transaction and compiled into a mask set (each value added as
//! it is decrypted, so that with many secrets the forms of the first are made
//! while the rest are read); then stdin is read in
//! large blocks, each block masked and written out at once (nothing waits for
//! a newline), and the held tail is flushed at end of input.

use std::io::{Read, Write};
use std::os::fd::AsFd;

use clap::Args;

use super::{CliError, Context, EXIT_OK};
use crate::mask::{MaskSet, MaskStyle, Masker};
use crate::store::audit::Action;
use crate::store::names::MIN_MASKABLE_BYTES;
use crate::store::{OpenMode, SecretName};

/// Bytes read from stdin at a time.
const BLOCK: usize = 256 * 1024;
/// Kernel buffer asked for on stdin and stdout pipes (the default is 64 KiB).
const PIPE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct RedactArgs {
    #[command(flatten)]
    vault: super::VaultArg,
    /// A secret to mask (repeatable).
    #[arg(long = "secret", value_name = "NAME")]
    secrets: Vec<String>,
    /// Mask every secret of the vault.
    #[arg(long)]
    all: bool,
    /// Replacement: `label` writes <secret:name>, `stars` writes ********.
    #[arg(long, value_name = "label|stars", default_value = "label")]
    mask: MaskStyle,
}

pub fn run(ctx: &Context, args: RedactArgs) -> Result<u8, CliError> {
    if ctx.out.is_json() {
        return Err(CliError::Usage(
            "--json: redact writes its input masked, byte for byte; it has no JSON form".to_owned(),
        ));
    }
    let vault = args.vault.parse()?;
    let mut names = args
        .secrets
        .iter()
        .map(|n| SecretName::parse(n))
        .collect::<Result<Vec<_>, _>>()?;
    if names.is_empty() && !args.all {
        return Err(CliError::Usage(
            "name the secrets to mask with --secret NAME, or pass --all".to_owned(),
        ));
    }
    let mut store = ctx.open_store(OpenMode::Existing)?;
    if args.all {
        // (A set: checking each of 10,000 names against a list was a
        // quarter of the start-up.)
        let mut named: std::collections::HashSet<String> =
            names.iter().map(|n| n.as_str().to_owned()).collect();
        for name in store.list_secret_names(&vault)? {
            if named.insert(name.clone()) {
                names.push(SecretName::parse(&name)?);
            }
        }
    }
    // Each value goes into the mask set as it is decrypted, so the forms of
    // the first ones are made while the rest are read. A transaction run
    // again hands them out again: the set then holds the first try's
    // values too, which only masks more.
    let mut builder = MaskSet::builder(args.mask);
    let mut too_short = std::collections::BTreeSet::new();
    store.read_secrets_each(Action::SecretMask, &vault, &names, |index, revealed| {
        if !builder.add(names[index].as_str(), &revealed.value) {
            too_short.insert(index);
        }
    })?;
    // The set compiles while the store closes (its last checkpoint).
    let set = builder.build();
    drop(store);
    for index in too_short {
        ctx.out.warn(&format!(
            "secret `{}` is shorter than {MIN_MASKABLE_BYTES} bytes and is not masked",
            names[index]
        ));
    }
    filter(set)
}

/// Copies stdin to stdout through one masker.
fn filter(set: std::sync::Arc<MaskSet>) -> Result<u8, CliError> {
    let io_error = |context| move |source| CliError::Io { context, source };
    // Unbuffered handles: every masked block is written as soon as it is read.
    let mut input = std::fs::File::from(
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_error("open standard input"))?,
    );
    let mut output = std::fs::File::from(
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io_error("open standard output"))?,
    );
    crate::sys::fd::enlarge_pipe(input.as_fd(), PIPE_BYTES);
    crate::sys::fd::enlarge_pipe(output.as_fd(), PIPE_BYTES);
    let mut masker = Masker::new(set);
    let mut block = vec![0u8; BLOCK];
    let mut masked = Vec::with_capacity(BLOCK + 4096);
    loop {
        let n = match input.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error("read standard input")(e)),
        };
        masked.clear();
        masker.push(&block[..n], &mut masked);
        output
            .write_all(&masked)
            .map_err(io_error("write to standard output"))?;
    }
    masked.clear();
    masker.finish(&mut masked);
    output
        .write_all(&masked)
        .map_err(io_error("write to standard output"))?;
    Ok(EXIT_OK)
}
