//! `shroud secret import FILE` and `shroud secret export`: a whole vault
//! from and to a dotenv file, a JSON object, or shell `export` lines.
//!
//! Import reads the file (or stdin for `-`), never argv, so no value is in
//! the process list; like `vault set-secrets` it is not atomic: each entry
//! is checked on its own, the valid ones are set in one transaction and
//! each failure is reported by name. A syntax error refuses the whole file
//! before anything is set (its line named, never a value). Export decrypts
//! every secret of the vault in one transaction with one `secret.reveal`
//! audit record each, and refuses to print to a terminal unless forced.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use zeroize::Zeroizing;

use super::vault::{store_and_report, ItemError};
use super::{CliError, Context, VaultArg, EXIT_OK};
use crate::dotenv;
use crate::secret::SecretValue;
use crate::store::audit::Action;
use crate::store::names::check_env_name;
use crate::store::{NewSecret, OpenMode, SecretName};

/// The most an import file may hold.
const MAX_IMPORT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    Dotenv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Dotenv,
    Json,
    Shell,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A dotenv file or a JSON object of names to values; `-` reads stdin.
    file: PathBuf,
    /// How the file is written (default: json for a `.json` file, else dotenv).
    #[arg(long, value_enum)]
    format: Option<ImportFormat>,
    #[command(flatten)]
    vault: VaultArg,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// dotenv (`NAME='value'`), json (one object), or shell (`export NAME='value'`).
    /// Default dotenv; json with `--json`.
    #[arg(long, value_enum)]
    format: Option<ExportFormat>,
    #[command(flatten)]
    vault: VaultArg,
    /// Print to a terminal all the same.
    #[arg(long)]
    force: bool,
}

/// Reads the whole file (or stdin), bounded, into a zeroizing buffer.
fn read_input(file: &Path) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let io_error = |source| CliError::Io {
        context: "read the file to import",
        source,
    };
    let mut bytes = Zeroizing::new(Vec::new());
    let read = if file.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_IMPORT_BYTES + 1)
            .read_to_end(&mut bytes)
    } else {
        let opened = std::fs::File::open(file).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CliError::Usage(format!("{} does not exist", file.display()))
            }
            _ => io_error(e),
        })?;
        opened.take(MAX_IMPORT_BYTES + 1).read_to_end(&mut bytes)
    };
    read.map_err(io_error)?;
    if bytes.len() as u64 > MAX_IMPORT_BYTES {
        return Err(CliError::Usage(format!(
            "{} is larger than {} MiB",
            file.display(),
            MAX_IMPORT_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// The file's entries as (name, value, where: `line N` or `member N`), in
/// order.
fn entries(
    file: &Path,
    format: ImportFormat,
    bytes: &[u8],
) -> Result<Vec<(String, SecretValue, String)>, CliError> {
    let shown = file.display();
    match format {
        ImportFormat::Dotenv => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| CliError::Usage(format!("{shown} is not UTF-8 text")))?;
            let parsed =
                dotenv::parse(text).map_err(|e| CliError::Usage(format!("{shown}: {e}")))?;
            Ok(parsed
                .into_iter()
                .map(|entry| {
                    let value = SecretValue::from_slice(entry.value.as_bytes());
                    (entry.name, value, format!("line {}", entry.line))
                })
                .collect())
        }
        ImportFormat::Json => {
            // Raw values: a non-string is stored as its JSON text, exactly.
            let object: Vec<(String, Box<serde_json::value::RawValue>)> =
                serde_json::from_slice::<JsonObject>(bytes)
                    .map_err(|e| {
                        CliError::Usage(format!(
                            "{shown} is not a JSON object of names to values (line {}, column {})",
                            e.line(),
                            e.column()
                        ))
                    })?
                    .0;
            object
                .into_iter()
                .enumerate()
                .map(|(index, (name, raw))| {
                    let value = crate::wire::value_from_json(&raw).ok_or_else(|| {
                        CliError::Usage(format!("{shown}: the value of `{name}` is not valid JSON"))
                    })?;
                    Ok((
                        name,
                        SecretValue::from_slice(&value),
                        format!("member {}", index + 1),
                    ))
                })
                .collect()
        }
    }
}

/// A JSON object's members in file order (duplicates kept, as in dotenv).
struct JsonObject(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = JsonObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonObject, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(JsonObject(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

pub fn import(ctx: &Context, args: ImportArgs) -> Result<u8, CliError> {
    let vault = args.vault.parse()?;
    let format = args.format.unwrap_or_else(|| {
        if args.file.extension().is_some_and(|e| e == "json") {
            ImportFormat::Json
        } else {
            ImportFormat::Dotenv
        }
    });
    let bytes = read_input(&args.file)?;
    let entries = entries(&args.file, format, &bytes)?;
    drop(bytes);
    // A name given twice: the last one counts, as loaders do.
    let mut last = std::collections::HashMap::new();
    for (index, (name, _, place)) in entries.iter().enumerate() {
        if last.insert(name.clone(), index).is_some() {
            let shown = match SecretName::parse(name) {
                Ok(_) => format!("`{name}`"),
                Err(_) => format!("the name at {place}"),
            };
            ctx.out.warn(&format!(
                "{shown} is given more than once in {}: the last one is imported",
                args.file.display()
            ));
        }
    }
    let entries = entries
        .into_iter()
        .enumerate()
        .filter(|(index, (name, _, _))| last[name] == *index)
        .map(|(_, entry)| entry);
    let mut valid = Vec::new();
    let mut errors = Vec::new();
    for (name, value, place) in entries {
        // A line such as `KEY: value=...` makes a "name" of a value: one
        // that is not a name is not shown, only where it is.
        let Ok(parsed) = SecretName::parse(&name) else {
            errors.push(ItemError {
                error: format!(
                    "{place}: the part before `=` is not a secret name (letters, digits, `_`, `.` and `-`, starting with a letter or `_`; not shown, in case it is a value)"
                ),
                name: place,
            });
            continue;
        };
        match NewSecret::new(parsed, value, None, None) {
            Ok(secret) => valid.push(secret),
            Err(e) => errors.push(ItemError {
                name,
                error: e.to_string(),
            }),
        }
    }
    store_and_report(ctx, &vault, valid, errors)
}

pub fn export(ctx: &Context, args: ExportArgs) -> Result<u8, CliError> {
    let vault = args.vault.parse()?;
    let format = match (args.format, ctx.out.is_json()) {
        (None, true) | (Some(ExportFormat::Json), _) => ExportFormat::Json,
        (None, false) => ExportFormat::Dotenv,
        (Some(other), true) => {
            return Err(CliError::Usage(format!(
                "--json prints a JSON object: it does not go with --format {}",
                other
                    .to_possible_value()
                    .map(|v| v.get_name().to_owned())
                    .unwrap_or_default()
            )))
        }
        (Some(other), false) => other,
    };
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !args.force {
        return Err(CliError::Usage(format!(
            "refusing to print every secret of vault `{vault}` to a terminal: redirect it (`> .env`) or pass --force"
        )));
    }
    let mut store = ctx.open_store(OpenMode::Existing)?;
    let names = store.list_secret_names(&vault)?;
    let parsed: Vec<SecretName> = names
        .iter()
        .map(|n| SecretName::parse(n))
        .collect::<Result<_, _>>()?;
    if format == ExportFormat::Shell {
        for name in &parsed {
            check_env_name(name.as_str())?;
        }
    }
    let values = if parsed.is_empty() {
        Vec::new()
    } else {
        store.read_secrets(Action::SecretReveal, &vault, &parsed)?
    };
    let mut out = Zeroizing::new(Vec::new());
    fn text_of<'v>(
        format: ExportFormat,
        name: &SecretName,
        value: &'v SecretValue,
    ) -> Result<&'v str, CliError> {
        std::str::from_utf8(value.expose()).map_err(|_| {
            CliError::Usage(format!(
                "secret `{name}` is not UTF-8 text, so it cannot be written as {}: read it with `shroud secret reveal {name} --json` (value_base64) or export with --format shell",
                if format == ExportFormat::Json { "JSON" } else { "dotenv" }
            ))
        })
    }
    match format {
        ExportFormat::Dotenv => {
            for (name, revealed) in parsed.iter().zip(&values) {
                let quoted = dotenv::quote(text_of(format, name, &revealed.value)?);
                out.extend_from_slice(format!("{name}=").as_bytes());
                out.extend_from_slice(quoted.as_bytes());
                out.push(b'\n');
            }
        }
        ExportFormat::Shell => {
            for (name, revealed) in parsed.iter().zip(&values) {
                out.extend_from_slice(format!("export {name}=").as_bytes());
                out.extend_from_slice(&dotenv::shell_quote(revealed.value.expose()));
                out.push(b'\n');
            }
        }
        ExportFormat::Json => {
            let mut object = serde_json::Map::new();
            for (name, revealed) in parsed.iter().zip(&values) {
                object.insert(
                    name.to_string(),
                    text_of(format, name, &revealed.value)?.to_owned().into(),
                );
            }
            let object = serde_json::Value::Object(object);
            let mut text =
                Zeroizing::new(serde_json::to_vec(&object).map_err(|e| CliError::Io {
                    context: "encode JSON",
                    source: std::io::Error::other(e),
                })?);
            // The map's strings are copies of the values: gone with it.
            zeroize_json(object);
            out.append(&mut text);
            out.push(b'\n');
        }
    }
    ctx.out.bytes(&out)?;
    ctx.out.note(&format!(
        "exported {} secret(s) of vault `{vault}` (each audited as a reveal)",
        values.len()
    ));
    Ok(EXIT_OK)
}

/// Overwrites the strings of a JSON object before it is dropped.
fn zeroize_json(value: serde_json::Value) {
    use zeroize::Zeroize;
    if let serde_json::Value::Object(map) = value {
        for (_, member) in map {
            if let serde_json::Value::String(mut text) = member {
                text.zeroize();
            }
        }
    }
}
