//! What a run is made of, before anything starts: which secrets it is granted
//! under which variable names, its environment, and the mask set of those
//! secrets.
//!
//! The CLI (`exec`, `sandbox exec`) and the HTTP API (sandbox routes) build
//! runs through these functions, so both inject, audit and mask the same
//! way. The secrets are decrypted in one audited transaction
//! (`secret.inject`), and a missing or expired one fails the whole run before
//! any process exists.

use std::sync::Arc;

use thiserror::Error;

use super::spawn::{ChildEnv, EnvValue};
use crate::mask::{MaskSet, MaskStyle};
use crate::sandbox::template::EnvPolicy;
use crate::store::audit::Action;
use crate::store::names::{check_env_name, ValidationError};
use crate::store::{SecretName, Store, StoreError, VaultName};

/// Why a run could not be prepared. Messages name secrets, never values.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// Bad input from the caller (a flag, a field, a sandbox id).
    #[error("{0}")]
    Usage(String),
    /// The request is well formed but cannot be met here (a strict
    /// sandbox on a host that lacks a feature).
    #[error("{0}")]
    Refused(String),
    /// A sandbox's files are on the node that made it; this is another.
    #[error(
        "sandbox {id} lives on node `{node}` (this is `{here}`): send the request to that node"
    )]
    OnAnotherNode {
        id: String,
        node: String,
        here: String,
    },
    #[error("cannot {context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// One granted secret: which secret, under which variable name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretGrant {
    pub env: String,
    pub secret: SecretName,
}

impl SecretGrant {
    /// The `ENV=NAME` text this grant parses from.
    pub fn text(&self) -> String {
        format!("{}={}", self.env, self.secret)
    }

    /// Parses `NAME` (injected as `$NAME`) or `ENV=NAME`.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let (env, name) = match text.split_once('=') {
            Some((env, name)) => (env, name),
            None => (text, text),
        };
        let secret = SecretName::parse(name)?;
        check_env_name(env).map_err(|e| {
            if env == name {
                PlanError::Usage(format!(
                    "secret `{name}` cannot be an environment variable name ({e}); grant it as ENV={name}"
                ))
            } else {
                PlanError::Invalid(e)
            }
        })?;
        Ok(SecretGrant {
            env: env.to_owned(),
            secret,
        })
    }
}

/// Parses a list of grants.
pub fn parse_grants<S: AsRef<str>>(texts: &[S]) -> Result<Vec<SecretGrant>, PlanError> {
    texts
        .iter()
        .map(|g| SecretGrant::parse(g.as_ref()))
        .collect()
}

/// Checks one extra environment variable (its name, and no NUL in its value).
pub fn check_env_pair(name: &str, value: &str) -> Result<(), PlanError> {
    check_env_name(name)?;
    if value.contains('\0') {
        return Err(PlanError::Usage(format!(
            "environment variable {name}: the value contains a NUL byte"
        )));
    }
    Ok(())
}

/// How [`build_environment`] gets at the vault.
pub enum StoreAccess<'a> {
    /// Opened only when there are secrets to read (a run without grants
    /// never touches the database).
    Lazy(&'a dyn Fn() -> Result<Store, StoreError>),
    /// A store the caller already holds.
    Open(&'a mut Store),
}

/// A run's environment and the mask set of the secrets in it.
pub struct PreparedEnv {
    pub env: ChildEnv,
    pub mask: Arc<MaskSet>,
    /// Granted secrets too short to be masked (the caller warns about them).
    pub unmasked: Vec<SecretName>,
}

/// Builds the child's environment: the template layer (pass-through names
/// from shroud's own environment, then fixed values), `extra_env`, then the
/// granted secrets, decrypted from `vault` with one `secret.inject` audit
/// record each. `store` is only opened when there are grants.
pub fn build_environment(
    store: StoreAccess<'_>,
    policy: &EnvPolicy,
    extra_env: &[(String, String)],
    vault: &VaultName,
    grants: &[SecretGrant],
    style: MaskStyle,
) -> Result<PreparedEnv, PlanError> {
    let mut env = ChildEnv::from_template(policy, |name| std::env::var_os(name));
    for (name, value) in extra_env {
        env.set(name, EnvValue::Plain(value.into()));
    }
    let mut builder = MaskSet::builder(style);
    let mut unmasked = Vec::new();
    if !grants.is_empty() {
        let names: Vec<SecretName> = grants.iter().map(|g| g.secret.clone()).collect();
        let values = match store {
            StoreAccess::Lazy(open) => open()?.read_secrets(Action::SecretInject, vault, &names)?,
            StoreAccess::Open(store) => store.read_secrets(Action::SecretInject, vault, &names)?,
        };
        for (grant, revealed) in grants.iter().zip(values) {
            if !builder.add(grant.secret.as_str(), &revealed.value) {
                unmasked.push(grant.secret.clone());
            }
            env.set(&grant.env, EnvValue::Secret(revealed.value));
        }
    }
    tracing::debug!(env = ?env.names().collect::<Vec<_>>(), "child environment (names only)");
    Ok(PreparedEnv {
        env,
        mask: builder.build(),
        unmasked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse() {
        let g = SecretGrant::parse("API_KEY").unwrap();
        assert_eq!((g.env.as_str(), g.secret.as_str()), ("API_KEY", "API_KEY"));
        let g = SecretGrant::parse("DB=db.password").unwrap();
        assert_eq!((g.env.as_str(), g.secret.as_str()), ("DB", "db.password"));
        let err = SecretGrant::parse("db.password").unwrap_err().to_string();
        assert!(err.contains("ENV=db.password"), "{err}");
        assert!(SecretGrant::parse("1X=NAME").is_err());
        assert!(SecretGrant::parse("X=").is_err());
    }

    #[test]
    fn env_pairs_are_checked() {
        assert!(check_env_pair("GOOD_NAME", "any value").is_ok());
        assert!(check_env_pair("1BAD", "v").is_err());
        assert!(check_env_pair("NUL", "a\0b").is_err());
    }
}
