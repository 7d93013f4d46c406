//! Validation rules for everything a user can name or hand to the store.
//!
//! Names are parsed once, at the edge, into [`VaultName`] and [`SecretName`];
//! the store only ever sees validated names. Values, descriptions and TTLs are
//! checked here too, so every front door (CLI, HTTP API, CI tasks) rejects the
//! same input with the same message.
//!
//! Errors name the thing and the rule that was broken and never contain a
//! secret value. A rejected *name* is echoed (escaped and cut to 64 chars),
//! because names are not secret and the user needs to see which one failed.

use thiserror::Error;

/// Largest secret value accepted, in bytes (64 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Largest description accepted, in bytes (1 KiB).
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Longest TTL accepted, in seconds (ten years): keeps timestamp arithmetic far
/// from overflow while allowing any realistic lifetime.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;
/// Secrets shorter than this are stored but cannot be masked reliably.
pub const MIN_MASKABLE_BYTES: usize = 4;

/// The default vault of every command.
pub const DEFAULT_VAULT: &str = "default";

/// Why a name, value, description or TTL was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ValidationError {
    #[error("invalid vault name {name}: {rule}")]
    VaultName { name: String, rule: &'static str },
    #[error("invalid secret name {name}: {rule}")]
    SecretName { name: String, rule: &'static str },
    #[error("invalid var name {name}: {rule}")]
    VarName { name: String, rule: &'static str },
    #[error("invalid {kind} name {name}: {rule}")]
    Name {
        kind: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("invalid environment variable name {name}: {rule}")]
    EnvName { name: String, rule: &'static str },
    #[error("secret `{name}`: {rule}")]
    SecretValue { name: String, rule: &'static str },
    #[error("var `{name}`: {rule}")]
    VarValue { name: String, rule: &'static str },
    #[error("secret `{name}`: description is {len} bytes; the limit is 1024 bytes")]
    Description { name: String, len: usize },
    #[error("invalid TTL {given}: must be a whole number of seconds from 1 to {MAX_TTL_SECS}")]
    Ttl { given: String },
    #[error("invalid purpose {given:?}: expected APIKey, SSHKey, UsernamePassword or Other")]
    Purpose { given: String },
}

const VAULT_RULE: &str = "must match ^[a-z0-9][a-z0-9._-]{0,62}$ (1-63 chars: lower-case letters, digits, '.', '_', '-'; starting with a letter or digit)";
const SECRET_RULE: &str = "must match ^[A-Za-z_][A-Za-z0-9_.-]{0,127}$ (1-128 chars: letters, digits, '_', '.', '-'; starting with a letter or '_')";
const ENV_RULE: &str =
    "must match ^[A-Za-z_][A-Za-z0-9_]*$ (letters, digits and '_'; starting with a letter or '_')";

/// Renders a rejected name for an error message: escaped, at most 64 chars.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    if cut.len() < name.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

/// A validated vault name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VaultName(String);

impl VaultName {
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        let bytes = name.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(|&b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(VaultName(name.to_owned()))
        } else {
            Err(ValidationError::VaultName {
                name: shown(name),
                rule: VAULT_RULE,
            })
        }
    }

    /// The default vault.
    pub fn default_vault() -> Self {
        VaultName(DEFAULT_VAULT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for VaultName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_secret_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A validated secret (or var) name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        if is_secret_name(name) {
            Ok(SecretName(name.to_owned()))
        } else {
            Err(ValidationError::SecretName {
                name: shown(name),
                rule: SECRET_RULE,
            })
        }
    }

    /// Parses a var name: same rules as a secret name, its own message.
    pub fn parse_var(name: &str) -> Result<Self, ValidationError> {
        if is_secret_name(name) {
            Ok(SecretName(name.to_owned()))
        } else {
            Err(ValidationError::VarName {
                name: shown(name),
                rule: SECRET_RULE,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SecretName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a token or user name (the same rule as secret names).
pub fn check_name(kind: &'static str, name: &str) -> Result<(), ValidationError> {
    if is_secret_name(name) {
        Ok(())
    } else {
        Err(ValidationError::Name {
            kind,
            name: shown(name),
            rule: SECRET_RULE,
        })
    }
}

/// The longest user name: its vault `user.<name>` is at most 63 characters.
pub const MAX_USER_NAME_CHARS: usize = 58;

/// Checks a token's user: a token name that fits its vault, `user.<name>`
/// in lower case (user names are case-insensitive: `Alice` and `alice`
/// are one user, with one vault).
pub fn check_user_name(name: &str) -> Result<(), ValidationError> {
    check_name("user", name)?;
    if name.len() > MAX_USER_NAME_CHARS {
        return Err(ValidationError::Name {
            kind: "user",
            name: shown(name),
            rule: "a user name is at most 58 characters (its vault is `user.<name>`)",
        });
    }
    Ok(())
}

/// Checks that `name` can be an environment variable name.
pub fn check_env_name(name: &str) -> Result<(), ValidationError> {
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ValidationError::EnvName {
            name: shown(name),
            rule: ENV_RULE,
        })
    }
}

/// Checks a secret value: 1 byte to 64 KiB, no NUL byte. Never echoes it.
pub fn check_secret_value(name: &SecretName, value: &[u8]) -> Result<(), ValidationError> {
    let rule = if value.is_empty() {
        "value is empty; a secret needs 1 to 65536 bytes"
    } else if value.len() > MAX_VALUE_BYTES {
        "value is longer than 65536 bytes (64 KiB)"
    } else if value.contains(&0) {
        "value contains a NUL byte, which cannot be passed in an environment variable"
    } else {
        return Ok(());
    };
    Err(ValidationError::SecretValue {
        name: name.as_str().to_owned(),
        rule,
    })
}

/// Checks a var value: up to 64 KiB, no NUL byte (it may be empty).
pub fn check_var_value(name: &SecretName, value: &str) -> Result<(), ValidationError> {
    let rule = if value.len() > MAX_VALUE_BYTES {
        "value is longer than 65536 bytes (64 KiB)"
    } else if value.contains('\0') {
        "value contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(ValidationError::VarValue {
        name: name.as_str().to_owned(),
        rule,
    })
}

/// Checks a description: at most 1 KiB.
pub fn check_description(name: &SecretName, description: &str) -> Result<(), ValidationError> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(ValidationError::Description {
            name: name.as_str().to_owned(),
            len: description.len(),
        });
    }
    Ok(())
}

/// Parses a TTL in seconds: a whole number from 1 to [`MAX_TTL_SECS`].
pub fn parse_ttl(given: &str) -> Result<u64, ValidationError> {
    match given.trim().parse::<u64>() {
        Ok(secs) if (1..=MAX_TTL_SECS).contains(&secs) => Ok(secs),
        _ => Err(ValidationError::Ttl {
            given: shown(given),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_follow_the_rule() {
        for good in ["default", "a", "production", "ws-1.2_x", &"a".repeat(63)] {
            assert!(VaultName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Prod", "-x", ".x", "a b", "a/b", &"a".repeat(64), "é"] {
            assert!(VaultName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_names_follow_the_rule() {
        for good in ["A", "_x", "DATABASE_URL", "api.key-2", &"a".repeat(128)] {
            assert!(SecretName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "1A", "-a", ".a", "a b", "a=b", &"a".repeat(129)] {
            assert!(SecretName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_are_stricter_than_secret_names() {
        assert!(check_env_name("API_KEY").is_ok());
        assert!(check_env_name("api.key").is_err());
        assert!(check_env_name("a-b").is_err());
        assert!(check_env_name("9A").is_err());
    }

    #[test]
    fn value_errors_name_the_secret_not_the_value() {
        let name = SecretName::parse("TOKEN").unwrap();
        let err = check_secret_value(&name, b"abc\0supersecret").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("TOKEN") && text.contains("NUL"), "{text}");
        assert!(!text.contains("supersecret"), "{text}");
        assert!(check_secret_value(&name, b"").is_err());
        assert!(check_secret_value(&name, &vec![b'a'; MAX_VALUE_BYTES + 1]).is_err());
        assert!(check_secret_value(&name, &vec![b'a'; MAX_VALUE_BYTES]).is_ok());
    }

    #[test]
    fn ttl_bounds() {
        assert_eq!(parse_ttl("60"), Ok(60));
        for bad in ["0", "-1", "1.5", "abc", "", "999999999999999999999"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_rejected_names_are_cut() {
        let err = SecretName::parse(&"!".repeat(500)).unwrap_err().to_string();
        assert!(err.len() < 400, "{err}");
    }
}

/// What a secret is for: shown in listings, never used to decide access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Purpose {
    ApiKey,
    SshKey,
    UsernamePassword,
    #[default]
    Other,
}

impl Purpose {
    /// Every purpose, in the order the contract lists them.
    pub const ALL: [Purpose; 4] = [
        Purpose::ApiKey,
        Purpose::SshKey,
        Purpose::UsernamePassword,
        Purpose::Other,
    ];

    /// The name in listings and JSON: `APIKey`, `SSHKey`, `UsernamePassword`, `Other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::ApiKey => "APIKey",
            Purpose::SshKey => "SSHKey",
            Purpose::UsernamePassword => "UsernamePassword",
            Purpose::Other => "Other",
        }
    }

    /// Parses a purpose name, ignoring case (`apikey` is `APIKey`).
    pub fn parse(text: &str) -> Result<Purpose, ValidationError> {
        Purpose::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| ValidationError::Purpose {
                given: text.chars().take(40).collect(),
            })
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
