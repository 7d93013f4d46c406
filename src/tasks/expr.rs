//! `${{ ... }}` expressions in a task file's `env` values and `run`
//! scripts: `vaults.V.secrets.N`, `secrets.N` (the `--vault` vault),
//! `vars.N`, `vaults.V.vars.N`, whole or inside text (`Bearer ${{
//! secrets.T }}`).
//!
//! [`parse`] splits a text into literal pieces and references, or says
//! what does not parse (never echoing more of the text than the
//! expression itself, which names things, not values).

use crate::store::{SecretName, VaultName};

/// What an expression names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ref {
    /// A secret of `vault` (`None`: the run's `--vault`).
    Secret { vault: Option<String>, name: String },
    /// A var of `vault` (`None`: the run's `--vault`).
    Var { vault: Option<String>, name: String },
}

impl Ref {
    /// The vault it is read from, given the run's.
    pub fn vault<'a>(&'a self, default: &'a str) -> &'a str {
        match self {
            Ref::Secret { vault, .. } | Ref::Var { vault, .. } => {
                vault.as_deref().unwrap_or(default)
            }
        }
    }

    /// The same reference with its vault spelled out (`secrets.N` and
    /// `vaults.DEFAULT.secrets.N` are one secret, read once).
    pub fn in_vault(&self, default: &str) -> Ref {
        match self {
            Ref::Secret { vault, name } => Ref::Secret {
                vault: Some(vault.clone().unwrap_or_else(|| default.to_owned())),
                name: name.clone(),
            },
            Ref::Var { vault, name } => Ref::Var {
                vault: Some(vault.clone().unwrap_or_else(|| default.to_owned())),
                name: name.clone(),
            },
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Ref::Secret { name, .. } | Ref::Var { name, .. } => name,
        }
    }

    pub fn is_secret(&self) -> bool {
        matches!(self, Ref::Secret { .. })
    }
}

/// A piece of a text with expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Expr(Ref),
}

/// Splits `text` into literal text and references.
pub fn parse(text: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        if start > 0 {
            pieces.push(Piece::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 3..];
        let Some(end) = after.find("}}") else {
            return Err("`${{` without its closing `}}`".to_owned());
        };
        pieces.push(Piece::Expr(parse_ref(after[..end].trim())?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_owned()));
    }
    Ok(pieces)
}

fn parse_ref(expr: &str) -> Result<Ref, String> {
    let parts: Vec<&str> = expr.split('.').collect();
    let bad = || {
        format!(
            "`${{{{ {expr} }}}}` is not an expression shroud knows: use vaults.V.secrets.N, secrets.N, vars.N or vaults.V.vars.N"
        )
    };
    let (vault, kind, name) = match parts.as_slice() {
        ["vaults", vault, kind, name] => (Some(*vault), *kind, *name),
        [kind, name] => (None, *kind, *name),
        _ => return Err(bad()),
    };
    if let Some(vault) = vault {
        VaultName::parse(vault).map_err(|e| format!("in `${{{{ {expr} }}}}`: {e}"))?;
    }
    let vault = vault.map(str::to_owned);
    let name_ok = SecretName::parse(name).map_err(|e| format!("in `${{{{ {expr} }}}}`: {e}"));
    match kind {
        "secrets" => {
            name_ok?;
            Ok(Ref::Secret {
                vault,
                name: name.to_owned(),
            })
        }
        "vars" => {
            name_ok?;
            Ok(Ref::Var {
                vault,
                name: name.to_owned(),
            })
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_parse_whole_inside_text_and_refuse_the_rest() {
        assert_eq!(
            parse("Bearer ${{ secrets.TOKEN }}!").unwrap(),
            vec![
                Piece::Text("Bearer ".into()),
                Piece::Expr(Ref::Secret {
                    vault: None,
                    name: "TOKEN".into()
                }),
                Piece::Text("!".into()),
            ]
        );
        assert_eq!(
            parse("${{vaults.prod.vars.region}}").unwrap(),
            vec![Piece::Expr(Ref::Var {
                vault: Some("prod".into()),
                name: "region".into()
            })]
        );
        assert_eq!(
            parse("no expression").unwrap(),
            vec![Piece::Text("no expression".into())]
        );
        for bad in [
            "${{ secrets.A",
            "${{ env.HOME }}",
            "${{ vaults.prod.secrets }}",
            "${{ secrets.a b }}",
            "${{ vaults.Bad!.secrets.X }}",
            "${{ }}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
