//! Templates: `sandbox-templates/NAME.toml` parsed into plain data.
//!
//! A template says what environment a run starts from. It is looked up in
//! `<home>/sandbox-templates/NAME.toml` first (a user's own or overriding
//! template), then among the templates shipped inside the binary (the files
//! of this repository's `sandbox-templates/`). Unknown fields are errors, with
//! the file, line and field named, so nothing a template asks for is silently
//! ignored. Without `--template`, [`Template::plain`] applies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::store::names::check_env_name;

/// The templates shipped with shroud: (name, TOML text).
const SHIPPED: &[(&str, &str)] = &[
    ("bash", include_str!("../../sandbox-templates/bash.toml")),
    (
        "python-3",
        include_str!("../../sandbox-templates/python-3.toml"),
    ),
    (
        "nodejs-20",
        include_str!("../../sandbox-templates/nodejs-20.toml"),
    ),
];

/// Variables passed through from the caller by default.
pub const DEFAULT_PASS: [&str; 4] = ["PATH", "HOME", "LANG", "TERM"];

#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("invalid template name {0:?}: use lower-case letters, digits, '.', '_' and '-'")]
    InvalidName(String),
    #[error("template `{name}` not found (looked in {} and the shipped templates: {})", dir.display(), shipped_names())]
    NotFound { name: String, dir: PathBuf },
    #[error("template {}: line {line}: {message}", file.display())]
    Malformed {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("cannot read template {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn shipped_names() -> String {
    SHIPPED
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The environment a template starts a child with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnvPolicy {
    /// Names copied from the caller's environment when set there.
    #[serde(default = "default_pass")]
    pub pass: Vec<String>,
    /// Names set to fixed values.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
}

fn default_pass() -> Vec<String> {
    DEFAULT_PASS.iter().map(|s| (*s).to_owned()).collect()
}

impl Default for EnvPolicy {
    fn default() -> Self {
        EnvPolicy {
            pass: default_pass(),
            set: BTreeMap::new(),
        }
    }
}

/// What the runtime provides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// The interpreter or shell, looked up on the child's PATH.
    #[serde(default)]
    pub interpreter: Option<String>,
}

/// Resource limits (see the shipped templates for what each does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub cpu_seconds: Option<u64>,
    pub memory_mb: Option<u64>,
    pub open_files: Option<u64>,
    pub processes: Option<u64>,
    pub file_size_mb: Option<u64>,
    pub output_mb: Option<u64>,
    pub wall_seconds: Option<u64>,
    /// The sandbox's working and home directories together, in MiB (a file
    /// system of its own where the host can give one; see `sandbox::disk`).
    pub disk_mb: Option<u64>,
}

/// Network access.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Off by default: a network namespace with no interface up.
    #[serde(default)]
    pub enabled: bool,
}

/// The isolation a template asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Isolation {
    pub user_namespace: bool,
    pub pid_namespace: bool,
    pub mount_namespace: bool,
    pub ipc_namespace: bool,
    pub uts_namespace: bool,
    pub private_tmp: bool,
    pub read_only_system: bool,
    pub no_new_privs: bool,
}

impl Default for Isolation {
    /// Everything on: a template asks for less explicitly.
    fn default() -> Self {
        Isolation {
            user_namespace: true,
            pid_namespace: true,
            mount_namespace: true,
            ipc_namespace: true,
            uts_namespace: true,
            private_tmp: true,
            read_only_system: true,
            no_new_privs: true,
        }
    }
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(skip)]
    pub name: String,
    /// What the runtime is, for people.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub env: EnvPolicy,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub isolation: Isolation,
}

impl Template {
    /// The template used without `--template`: PATH, HOME, LANG, TERM.
    pub fn plain() -> Self {
        Template {
            name: "plain".to_owned(),
            description: None,
            runtime: Runtime::default(),
            env: EnvPolicy::default(),
            limits: Limits::default(),
            network: Network { enabled: true },
            isolation: Isolation::default(),
        }
    }

    /// Finds and parses template `name` (see the module docs for the order).
    pub fn load(name: &str, home: &Path) -> Result<Self, TemplateError> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && !name.starts_with('.');
        if !valid {
            return Err(TemplateError::InvalidName(name.to_owned()));
        }
        let dir = home.join("sandbox-templates");
        let file = dir.join(format!("{name}.toml"));
        if file.is_file() {
            let text = std::fs::read_to_string(&file).map_err(|source| TemplateError::Read {
                file: file.clone(),
                source,
            })?;
            return Self::parse(name, &text, &file);
        }
        match SHIPPED.iter().find(|(n, _)| *n == name) {
            Some((_, text)) => Self::parse(
                name,
                text,
                &PathBuf::from(format!("sandbox-templates/{name}.toml")),
            ),
            None => Err(TemplateError::NotFound {
                name: name.to_owned(),
                dir,
            }),
        }
    }

    /// Parses template text; `file` is named in errors.
    pub fn parse(name: &str, text: &str, file: &Path) -> Result<Self, TemplateError> {
        let malformed = |line: usize, message: String| TemplateError::Malformed {
            file: file.to_owned(),
            line,
            message,
        };
        let mut template: Template = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            malformed(line, e.message().to_owned())
        })?;
        template.name = name.to_owned();
        let line_of = |needle: &str| {
            text.lines()
                .position(|l| l.contains(needle))
                .map_or(1, |i| i + 1)
        };
        for var in template.env.pass.iter().chain(template.env.set.keys()) {
            check_env_name(var).map_err(|e| malformed(line_of(var), format!("env: {e}")))?;
        }
        let limits = template.limits;
        for (field, value) in [
            ("cpu_seconds", limits.cpu_seconds),
            ("memory_mb", limits.memory_mb),
            ("open_files", limits.open_files),
            ("processes", limits.processes),
            ("file_size_mb", limits.file_size_mb),
            ("output_mb", limits.output_mb),
            ("wall_seconds", limits.wall_seconds),
            ("disk_mb", limits.disk_mb),
        ] {
            if value == Some(0) {
                return Err(malformed(
                    line_of(field),
                    format!("limits.{field}: must be at least 1"),
                ));
            }
        }
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_parse() {
        let home = Path::new("/nonexistent");
        for (name, _) in SHIPPED {
            let template = Template::load(name, home).unwrap();
            assert!(template.env.pass.contains(&"PATH".to_owned()), "{name}");
        }
        assert_eq!(
            Template::load("python-3", home).unwrap().env.set["PYTHONUNBUFFERED"],
            "1"
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "description = \"x\"\n[env]\npass = [\"PATH\"]\nbogus = 1\n";
        let err = Template::parse("t", text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml") && err.contains("line 4") && err.contains("bogus"),
            "{err}"
        );
        let text = "[env]\npass = [\"NOT VALID\"]\n";
        let err = Template::parse("t", text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("NOT VALID"), "{err}");
        let err = Template::parse("t", "[env\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn shipped_templates_ask_for_full_isolation_and_no_network() {
        for (name, _) in SHIPPED {
            let template = Template::load(name, Path::new("/nonexistent")).unwrap();
            assert_eq!(template.isolation, Isolation::default(), "{name}");
            assert!(!template.network.enabled, "{name}");
            assert!(template.limits.processes.is_some() && template.limits.memory_mb.is_some());
            assert!(template.runtime.interpreter.is_some());
        }
    }

    #[test]
    fn limits_and_sections_are_checked() {
        let err = Template::parse("t", "[limits]\nprocesses = 0\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("limits.processes"),
            "{err}"
        );
        let err = Template::parse("t", "[limits]\nprocesses = \"many\"\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = Template::parse("t", "[isolation]\nchroot = true\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("chroot"), "{err}");
        let partial =
            Template::parse("t", "[network]\nenabled = true\n", Path::new("t.toml")).unwrap();
        assert!(partial.network.enabled && partial.isolation.pid_namespace);
    }

    #[test]
    fn unknown_and_invalid_names() {
        let home = Path::new("/nonexistent");
        assert!(matches!(
            Template::load("nope", home),
            Err(TemplateError::NotFound { .. })
        ));
        assert!(matches!(
            Template::load("../etc/passwd", home),
            Err(TemplateError::InvalidName(_))
        ));
    }
}
