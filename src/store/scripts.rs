//! The transaction scripts: every operation of the [`Store`] API, written
//! once against the storage seam.
//!
//! Each change runs through [`Store::write`] (begin the serialized write,
//! re-check the key, the rows and their audit record, commit) and each read
//! through [`Store::read`]; nothing here knows which database it runs on.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::audit::{self, Action, Entry, Outcome};
use super::backend::{RecordRow, RefRow, SandboxRow, SecretRow, TokenRow, Tx};
use super::crypto::{self, RecordId};
use super::keys::KeyRing;
use super::{
    names, tokens, NewSecret, ResolvedReference, Result, Revealed, SecretMeta, SecretName,
    SecretReference, SetOutcome, Store, StoreError, ValidationError, Var, VaultInfo, VaultName,
    VersionInfo, MAX_REFERENCE_TTL_SECS, REFERENCE_PREFIX, RESERVED_ACTORS,
};
use crate::clock::now_ms;

pub(super) fn hash_reference_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Store {
    /// Sets one secret: a new version, sealed under a fresh data key.
    pub fn set_secret(&mut self, vault: &VaultName, secret: NewSecret) -> Result<SetOutcome> {
        let mut outcomes = self.set_secrets(vault, vec![secret])?;
        Ok(outcomes.pop().expect("one outcome per secret"))
    }

    /// Sets several secrets in one transaction (validation was done per item
    /// by [`NewSecret::new`], so each either is stored or the whole write
    /// failed on a database error).
    pub fn set_secrets(
        &mut self,
        vault: &VaultName,
        secrets: Vec<NewSecret>,
    ) -> Result<Vec<SetOutcome>> {
        let actor = self.keys.actor.clone();
        let mut results = self.set_secrets_batch(vec![(actor, vault.clone(), secrets)])?;
        Ok(results.pop().expect("one result per request"))
    }

    /// Group commit: sets the secrets of several requests, each with its own
    /// actor, in one transaction (one durable commit for all of them).
    pub fn set_secrets_batch(
        &mut self,
        batch: Vec<(String, VaultName, Vec<NewSecret>)>,
    ) -> Result<Vec<Vec<SetOutcome>>> {
        let now = now_ms();
        let results = self.write("committing secrets", |tx, keys| {
            let names: Vec<(&str, &str)> = batch
                .iter()
                .flat_map(|(_, vault, secrets)| {
                    secrets
                        .iter()
                        .map(move |s| (vault.as_str(), s.name.as_str()))
                })
                .collect();
            tx.prefetch_secret_rows(&names)
                .map_err(keys.db("reading secrets"))?;
            let mut results = Vec::with_capacity(batch.len());
            for (actor, vault, secrets) in &batch {
                tx.ensure_vault(vault.as_str(), now)
                    .map_err(keys.db("recording the vault"))?;
                let mut outcomes = Vec::with_capacity(secrets.len());
                for secret in secrets {
                    outcomes.push(set_in_tx(tx, keys, actor, vault, secret, now)?);
                }
                results.push(outcomes);
            }
            Ok(Ok(results))
        })?;
        for outcomes in &results {
            for outcome in outcomes {
                tracing::debug!(name = %outcome.name, version = outcome.version, "secret set");
            }
        }
        Ok(results)
    }

    /// A value that changes with every audited write (the audit chain's
    /// head, one row read by its key): how a supervisor learns cheaply, many
    /// times a second, that a secret may have a new version, before it
    /// reads the versions themselves.
    pub fn change_mark(&mut self) -> Result<Option<Vec<u8>>> {
        self.read("reading the audit head", |tx| tx.meta_get(audit::HEAD_KEY))
    }

    /// Metadata of a live secret, or `None`.
    pub fn secret_meta(
        &mut self,
        vault: &VaultName,
        name: &SecretName,
    ) -> Result<Option<SecretMeta>> {
        let row = self.read("reading a secret", |tx| {
            tx.secret_row(vault.as_str(), name.as_str())
        })?;
        Ok(row
            .filter(|r| r.is_live(now_ms()))
            .map(|r| SecretMeta::from_row(name.as_str().to_owned(), r)))
    }

    /// Metadata of every live secret of a vault, sorted by name.
    pub fn list_secrets(&mut self, vault: &VaultName) -> Result<Vec<SecretMeta>> {
        let rows = self.read("listing secrets", |tx| {
            tx.list_secret_rows(vault.as_str(), now_ms())
        })?;
        Ok(rows
            .into_iter()
            .map(|(name, row)| SecretMeta::from_row(name, row))
            .collect())
    }

    /// Names of every live secret of a vault, sorted.
    pub fn list_secret_names(&mut self, vault: &VaultName) -> Result<Vec<String>> {
        self.read("listing secrets", |tx| {
            tx.list_secret_names(vault.as_str(), now_ms())
        })
    }

    /// Deletes a secret and all its versions.
    pub fn delete_secret(&mut self, vault: &VaultName, name: &SecretName) -> Result<()> {
        let now = now_ms();
        self.write("committing the delete", |tx, keys| {
            let row = live_secret_row(tx, keys, vault.as_str(), name.as_str(), now)?;
            let mut entry = Entry::about(
                keys.actor.as_str(),
                Action::SecretDelete,
                vault.as_str(),
                name.as_str(),
            );
            let result = match row {
                Some(row) => {
                    tx.delete_secret(vault.as_str(), name.as_str())
                        .map_err(keys.db("deleting a secret"))?;
                    entry = entry.with(Some(row.version), Outcome::Ok);
                    Ok(())
                }
                None => Err(not_found(vault, name)),
            };
            keys.append_at(tx, &entry, now)?;
            Ok(result)
        })
    }

    /// Decrypts a live secret for `purpose` (reveal, inject, render, ...).
    /// The audit record is committed before the value is returned.
    pub fn read_secret(
        &mut self,
        purpose: Action,
        vault: &VaultName,
        name: &SecretName,
        version: Option<u64>,
    ) -> Result<Revealed> {
        let now = now_ms();
        self.write("committing the audit record", |tx, keys| {
            let actor = keys.actor.clone();
            to_commit(read_in_tx(
                tx,
                keys,
                &actor,
                purpose,
                vault.as_str(),
                name.as_str(),
                version,
                now,
            ))
        })
    }

    /// Decrypts several live secrets for `purpose` in one transaction, with
    /// one audit record each. All or nothing: if any is missing or fails to
    /// open, the error names the first such secret and no value is returned.
    pub fn read_secrets(
        &mut self,
        purpose: Action,
        vault: &VaultName,
        names: &[SecretName],
    ) -> Result<Vec<Revealed>> {
        let mut values = Vec::with_capacity(names.len());
        self.read_secrets_each(purpose, vault, names, |index, value| {
            // A transaction run again hands its values out again.
            values.truncate(index);
            values.push(value);
        })?;
        Ok(values)
    }

    /// [`Self::read_secrets`], handing each value to `each` (with its index
    /// in `names`) as soon as it is decrypted, so the caller's work on it
    /// overlaps the reading of the rest. Called inside the transaction: when
    /// it ends in an error (a secret missing, the audit commit failing),
    /// the values already handed out must not be used. A transaction that
    /// meets a write conflict runs once more and hands the values out again,
    /// from index 0 (they may have changed).
    pub fn read_secrets_each(
        &mut self,
        purpose: Action,
        vault: &VaultName,
        names: &[SecretName],
        mut each: impl FnMut(usize, Revealed),
    ) -> Result<()> {
        let now = now_ms();
        self.write("committing the audit records", |tx, keys| {
            let actor = keys.actor.clone();
            let mut entries = Vec::with_capacity(names.len());
            let mut first_error = None;
            for (index, name) in names.iter().enumerate() {
                let (result, entry) = open_in_tx(
                    tx,
                    keys,
                    &actor,
                    purpose,
                    vault.as_str(),
                    name.as_str(),
                    None,
                    now,
                )?;
                entries.push(entry);
                match result {
                    Ok(value) => {
                        if first_error.is_none() {
                            each(index, value);
                        }
                    }
                    Err(e @ (StoreError::Database { .. } | StoreError::Unavailable { .. })) => {
                        return Err(e)
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            // One read and one write of the chain's head for all of them.
            keys.append_all_at(tx, &entries, now)?;
            Ok(match first_error {
                Some(e) => Err(e),
                None => Ok(()),
            })
        })
    }

    /// `secret reveal`: the value of the current (or a kept) version.
    pub fn reveal_secret(
        &mut self,
        vault: &VaultName,
        name: &SecretName,
        version: Option<u64>,
    ) -> Result<Revealed> {
        self.read_secret(Action::SecretReveal, vault, name, version)
    }

    /// The kept versions of a live secret, oldest first. Never values.
    pub fn history(&mut self, vault: &VaultName, name: &SecretName) -> Result<Vec<VersionInfo>> {
        let meta = self
            .secret_meta(vault, name)?
            .ok_or_else(|| not_found(vault, name))?;
        let versions = self.read("listing versions", |tx| {
            tx.version_list(vault.as_str(), name.as_str())
        })?;
        Ok(versions
            .into_iter()
            .map(|(version, created_at_ms)| VersionInfo {
                version,
                created_at_ms,
                current: version == meta.version,
            })
            .collect())
    }

    /// Creates an opaque `$secret:` reference to a live secret, resolvable by
    /// this store's actor for `ttl_secs`. Only the token's hash is stored.
    pub fn create_reference(
        &mut self,
        vault: &VaultName,
        name: &SecretName,
        ttl_secs: u64,
    ) -> Result<SecretReference> {
        if ttl_secs == 0 || ttl_secs > MAX_REFERENCE_TTL_SECS {
            return Err(StoreError::ReferenceTtl(ttl_secs));
        }
        let now = now_ms();
        self.write("committing the reference", |tx, keys| {
            let actor = keys.actor.as_str();
            let row = live_secret_row(tx, keys, vault.as_str(), name.as_str(), now)?;
            let entry = Entry::about(
                actor,
                Action::SecretReference,
                vault.as_str(),
                name.as_str(),
            );
            let Some(row) = row else {
                keys.append_at(tx, &entry, now)?;
                return Ok(Err(not_found(vault, name)));
            };
            let mut raw = Zeroizing::new([0u8; 32]);
            crypto::fill_random(raw.as_mut()).map_err(StoreError::Encrypt)?;
            let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_ref()));
            let expires_at = now + (ttl_secs as i64) * 1000;
            let ref_row = RefRow {
                owner: actor.to_owned(),
                vault: vault.as_str().to_owned(),
                name: name.as_str().to_owned(),
                expires_at,
            };
            tx.insert_ref(&hash_reference_token(&token), &ref_row, now)
                .map_err(keys.db("storing the reference"))?;
            keys.append_at(tx, &entry.with(Some(row.version), Outcome::Ok), now)?;
            Ok(Ok(SecretReference {
                reference: Zeroizing::new(format!("{REFERENCE_PREFIX}{}", token.as_str())),
                expires_at_ms: expires_at,
            }))
        })
    }

    /// Resolves a `$secret:` reference made by this store's actor to the
    /// secret's current value. Unknown, expired and foreign references are
    /// all the same error, so a caller learns nothing about other actors'.
    pub fn resolve_reference(&mut self, reference: &str) -> Result<ResolvedReference> {
        let now = now_ms();
        self.write("committing the audit record", |tx, keys| {
            let actor = keys.actor.clone();
            // Malformed references are audited like unknown ones.
            let row = match reference.strip_prefix(REFERENCE_PREFIX) {
                Some(token) => tx
                    .ref_row(&hash_reference_token(token))
                    .map_err(keys.db("reading a reference"))?,
                None => None,
            };
            let usable = row.filter(|r| r.expires_at > now && r.owner == actor);
            let Some(row) = usable else {
                let entry = Entry::global(&actor, Action::ReferenceResolve, Outcome::Denied);
                keys.append_at(tx, &entry, now)?;
                return Ok(Err(StoreError::ReferenceNotFound));
            };
            let secret = read_in_tx(
                tx,
                keys,
                &actor,
                Action::ReferenceResolve,
                &row.vault,
                &row.name,
                None,
                now,
            );
            to_commit(secret.map(|secret| ResolvedReference {
                vault: row.vault,
                name: row.name,
                secret,
            }))
        })
    }

    /// Sets a var (not secret, never masked).
    pub fn set_var(&mut self, vault: &VaultName, name: &SecretName, value: &str) -> Result<()> {
        names::check_var_value(name, value)?;
        let now = now_ms();
        self.write("committing a var", |tx, keys| {
            tx.ensure_vault(vault.as_str(), now)
                .map_err(keys.db("recording the vault"))?;
            tx.put_var(vault.as_str(), name.as_str(), value, now)
                .map_err(keys.db("writing a var"))?;
            var_audit(tx, keys, Action::VarSet, vault, name, now)?;
            Ok(Ok(()))
        })
    }

    pub fn get_var(&mut self, vault: &VaultName, name: &SecretName) -> Result<Var> {
        self.read("reading a var", |tx| {
            tx.get_var(vault.as_str(), name.as_str())
        })?
        .map(|(value, updated_at_ms)| Var {
            name: name.as_str().to_owned(),
            value,
            updated_at_ms,
        })
        .ok_or_else(|| StoreError::VarNotFound {
            vault: vault.as_str().to_owned(),
            name: name.as_str().to_owned(),
        })
    }

    pub fn list_vars(&mut self, vault: &VaultName) -> Result<Vec<Var>> {
        Ok(self
            .read("listing vars", |tx| tx.list_vars(vault.as_str()))?
            .into_iter()
            .map(|(name, value, updated_at_ms)| Var {
                name,
                value,
                updated_at_ms,
            })
            .collect())
    }

    pub fn delete_var(&mut self, vault: &VaultName, name: &SecretName) -> Result<()> {
        let now = now_ms();
        self.write("committing a var delete", |tx, keys| {
            let existed = tx
                .delete_var(vault.as_str(), name.as_str())
                .map_err(keys.db("deleting a var"))?;
            if !existed {
                return Err(StoreError::VarNotFound {
                    vault: vault.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                });
            }
            var_audit(tx, keys, Action::VarDelete, vault, name, now)?;
            Ok(Ok(()))
        })
    }

    /// Creates an API token, valid `ttl_secs` when given; returns the token
    /// text, shown this once, and when it expires.
    pub fn create_token(
        &mut self,
        name: &str,
        grants: &[tokens::Grant],
        user: Option<&str>,
        ttl_secs: Option<u64>,
    ) -> Result<tokens::CreatedToken> {
        names::check_name("token", name)?;
        if RESERVED_ACTORS.contains(&name) {
            return Err(StoreError::Invalid(ValidationError::Name {
                kind: "token",
                name: name.to_owned(),
                rule: "is reserved: shroud itself acts under that name in the audit log",
            }));
        }
        if let Some(user) = user {
            names::check_user_name(user)?;
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        crypto::fill_random(raw.as_mut()).map_err(StoreError::Encrypt)?;
        let token = Zeroizing::new(format!(
            "{}{}",
            tokens::TOKEN_PREFIX,
            URL_SAFE_NO_PAD.encode(raw.as_ref())
        ));
        let now = now_ms();
        let expires_at = ttl_secs.map(|ttl| {
            now.saturating_add(
                i64::try_from(ttl)
                    .unwrap_or(i64::MAX / 2)
                    .saturating_mul(1000),
            )
        });
        self.write("committing a token", |tx, keys| {
            if tx
                .token_by_name(name)
                .map_err(keys.db("reading a token"))?
                .is_some()
            {
                return Err(StoreError::TokenExists(name.to_owned()));
            }
            let row = TokenRow {
                name: name.to_owned(),
                token_hash: hash_reference_token(&token).to_vec(),
                grants: tokens::encode_grants(grants),
                user: user.map(str::to_owned),
                created_at: now,
                revoked_at: None,
                expires_at,
            };
            tx.insert_token(&row).map_err(keys.db("storing a token"))?;
            let entry = Entry {
                secret: Some(name),
                ..Entry::global(keys.actor.as_str(), Action::TokenCreate, Outcome::Ok)
            };
            keys.append_at(tx, &entry, now)?;
            Ok(Ok(()))
        })?;
        Ok(tokens::CreatedToken {
            token,
            expires_at_ms: expires_at,
        })
    }

    /// Every token, revoked ones included (never the tokens themselves).
    pub fn list_tokens(&mut self) -> Result<Vec<tokens::TokenInfo>> {
        Ok(self
            .read("listing tokens", |tx| tx.list_tokens())?
            .into_iter()
            .map(token_info)
            .collect())
    }

    /// Revokes a token: it no longer authenticates.
    pub fn revoke_token(&mut self, name: &str) -> Result<()> {
        let now = now_ms();
        self.write("committing a token revocation", |tx, keys| {
            if !tx
                .revoke_token(name, now)
                .map_err(keys.db("revoking a token"))?
            {
                return Err(StoreError::TokenNotFound(name.to_owned()));
            }
            let entry = Entry {
                secret: Some(name),
                ..Entry::global(keys.actor.as_str(), Action::TokenRevoke, Outcome::Ok)
            };
            keys.append_at(tx, &entry, now)?;
            Ok(Ok(()))
        })
    }

    /// The live token `presented` is, if any (not revoked, not expired).
    /// The stored hash is compared again in constant time after the lookup
    /// by hash. Read from the database each time: a revocation made on any
    /// node is seen at once.
    pub fn authenticate(&mut self, presented: &str) -> Result<Option<tokens::TokenInfo>> {
        let hash = hash_reference_token(presented);
        let row = self.read("reading a token", |tx| tx.token_by_hash(&hash))?;
        let now = now_ms();
        Ok(row
            .filter(|r| r.revoked_at.is_none())
            .filter(|r| r.expires_at.is_none_or(|at| at > now))
            .filter(|r| constant_time_eq(&r.token_hash, &hash))
            .map(token_info))
    }

    /// Records a new sandbox (audited `sandbox.create`).
    pub fn create_sandbox(&mut self, row: &SandboxRow) -> Result<()> {
        self.write("committing a sandbox", |tx, keys| {
            tx.insert_sandbox(row)
                .map_err(keys.db("storing a sandbox"))?;
            sandbox_audit(tx, keys, Action::SandboxCreate, row)?;
            Ok(Ok(()))
        })
    }

    /// Records `row` unless a record of its kind and id exists (false
    /// then), with the audit record `audit` (action, vault, name).
    pub fn create_record(
        &mut self,
        row: &RecordRow,
        audit: Option<(Action, &str, &str)>,
    ) -> Result<bool> {
        self.write("committing a record", |tx, keys| {
            if tx
                .record(&row.kind, &row.id)
                .map_err(keys.db("reading a record"))?
                .is_some()
            {
                return Ok(Ok(false));
            }
            tx.put_record(row).map_err(keys.db("storing a record"))?;
            if let Some((action, vault, name)) = audit {
                event_audit(tx, keys, action, vault, name, Outcome::Ok)?;
            }
            Ok(Ok(true))
        })
    }

    /// Stores `row` (a new one, or a new state of one), unaudited.
    pub fn put_record(&mut self, row: &RecordRow) -> Result<()> {
        self.write("committing a record", |tx, keys| {
            tx.put_record(row).map_err(keys.db("storing a record"))?;
            Ok(Ok(()))
        })
    }

    /// Stores a new state of a record that exists; false when it does not
    /// (a record deleted meanwhile stays deleted).
    pub fn update_record(&mut self, row: &RecordRow) -> Result<bool> {
        self.write("committing a record", |tx, keys| {
            Ok(Ok(tx
                .update_record(row)
                .map_err(keys.db("storing a record"))?))
        })
    }

    /// A record by kind and id.
    pub fn record(&mut self, kind: &str, id: &str) -> Result<Option<RecordRow>> {
        self.read("reading a record", |tx| tx.record(kind, id))
    }

    /// Records of `kind` (under `parent`), oldest first.
    pub fn list_records(&mut self, kind: &str, parent: Option<&str>) -> Result<Vec<RecordRow>> {
        self.read("listing records", |tx| tx.list_records(kind, parent))
    }

    /// Deletes a record (and its `children` records) with the audit record
    /// `audit`; false when there was none.
    pub fn delete_record(
        &mut self,
        kind: &str,
        id: &str,
        children: Option<&str>,
        audit: Option<(Action, &str, &str)>,
    ) -> Result<bool> {
        self.write("committing a record delete", |tx, keys| {
            let deleted = tx
                .delete_record(kind, id, children)
                .map_err(keys.db("deleting a record"))?;
            if let (true, Some((action, vault, name))) = (deleted, audit) {
                event_audit(tx, keys, action, vault, name, Outcome::Ok)?;
            }
            Ok(Ok(deleted))
        })
    }

    /// Takes or renews `node`'s leases on records of `kind` (see
    /// `Tx::claim_records`); returns the ids it holds until `until`.
    pub fn claim_records(
        &mut self,
        kind: &str,
        node: &str,
        now: i64,
        until: i64,
    ) -> Result<Vec<String>> {
        self.write("committing leases", |tx, keys| {
            Ok(Ok(tx
                .claim_records(kind, node, now, until)
                .map_err(keys.db("taking leases"))?))
        })
    }

    /// Gives up `node`'s lease on a record.
    pub fn release_record(&mut self, kind: &str, id: &str, node: &str) -> Result<()> {
        self.write("committing a lease", |tx, keys| {
            tx.release_record(kind, id, node)
                .map_err(keys.db("releasing a lease"))?;
            Ok(Ok(()))
        })
    }

    /// Writes one audit record of an event that changes nothing else
    /// (a rotation, an agent run).
    pub fn audit_event(
        &mut self,
        action: Action,
        vault: &str,
        name: &str,
        outcome: Outcome,
    ) -> Result<()> {
        self.write("committing an audit record", |tx, keys| {
            event_audit(tx, keys, action, vault, name, outcome)?;
            Ok(Ok(()))
        })
    }

    /// A sandbox by id.
    pub fn sandbox(&mut self, id: &str) -> Result<SandboxRow> {
        self.read("reading a sandbox", |tx| tx.sandbox(id))?
            .ok_or_else(|| StoreError::SandboxNotFound(id.to_owned()))
    }

    /// Every sandbox, oldest first.
    pub fn list_sandboxes(&mut self) -> Result<Vec<SandboxRow>> {
        self.read("listing sandboxes", |tx| tx.list_sandboxes())
    }

    /// Forgets a sandbox (its files are the caller's to remove); audited
    /// `sandbox.delete`.
    pub fn delete_sandbox(&mut self, id: &str) -> Result<()> {
        self.write("committing a sandbox delete", |tx, keys| {
            let row = tx
                .sandbox(id)
                .map_err(keys.db("reading a sandbox"))?
                .ok_or_else(|| StoreError::SandboxNotFound(id.to_owned()))?;
            tx.delete_sandbox(id)
                .map_err(keys.db("deleting a sandbox"))?;
            sandbox_audit(tx, keys, Action::SandboxDelete, &row)?;
            Ok(Ok(()))
        })
    }

    /// Notes how the sandbox's last command ended; audited `sandbox.exec`
    /// (the secrets it was given have their own `secret.inject` records,
    /// committed durably before it started). This commit does not wait for
    /// the disk: it hands nothing out, and a power loss that takes it takes
    /// the audit head with it, so the chain still verifies.
    pub fn record_sandbox_exit(&mut self, id: &str, code: i64) -> Result<()> {
        self.write_relaxed("committing a sandbox exit", |tx, keys| {
            let row = tx
                .sandbox(id)
                .map_err(keys.db("reading a sandbox"))?
                .ok_or_else(|| StoreError::SandboxNotFound(id.to_owned()))?;
            tx.record_sandbox_exit(id, code, now_ms())
                .map_err(keys.db("recording a sandbox exit"))?;
            sandbox_audit(tx, keys, Action::SandboxExec, &row)?;
            Ok(Ok(()))
        })
    }

    /// Every vault that has been written to, with counts.
    pub fn list_vaults(&mut self) -> Result<Vec<VaultInfo>> {
        self.read("listing vaults", |tx| tx.list_vaults(now_ms()))
    }

    /// Audit records matching `filter`, oldest first.
    pub fn audit_records(&mut self, filter: &audit::Filter) -> Result<Vec<audit::Record>> {
        self.read("reading the audit log", |tx| audit::list(tx, filter))
    }

    /// Walks the audit chain. A store standing in for a home that does not
    /// exist has an empty log, which verifies.
    pub fn verify_audit(&mut self) -> Result<audit::Verification> {
        if self.is_ephemeral() {
            return Ok(audit::Verification {
                records: 0,
                first_broken: None,
            });
        }
        let Store { conn, keys, .. } = self;
        let mut tx = conn.read().map_err(keys.db("reading the audit log"))?;
        audit::verify(&mut *tx, &keys.audit).map_err(keys.db("reading the audit log"))
    }
}

/// What a script returns after an audited read: a database failure aborts
/// the transaction; any other outcome (a value, or "not found") is
/// committed with its audit record, then returned.
fn to_commit<T>(result: Result<T>) -> Result<Result<T>> {
    match result {
        Err(e @ (StoreError::Database { .. } | StoreError::Unavailable { .. })) => Err(e),
        other => Ok(other),
    }
}

fn token_info(row: TokenRow) -> tokens::TokenInfo {
    tokens::TokenInfo {
        grants: tokens::decode_grants(&row.grants),
        name: row.name,
        user: row.user,
        created_at_ms: row.created_at,
        revoked_at_ms: row.revoked_at,
        expires_at_ms: row.expires_at,
    }
}

/// Byte equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The row of a secret that exists and has not expired.
fn live_secret_row(
    tx: &mut dyn Tx,
    keys: &KeyRing,
    vault: &str,
    name: &str,
    now: i64,
) -> Result<Option<SecretRow>> {
    Ok(tx
        .secret_row(vault, name)
        .map_err(keys.db("reading a secret"))?
        .filter(|r| r.is_live(now)))
}

fn not_found(vault: &VaultName, name: &SecretName) -> StoreError {
    StoreError::SecretNotFound {
        vault: vault.as_str().to_owned(),
        name: name.as_str().to_owned(),
    }
}

fn set_in_tx(
    tx: &mut dyn Tx,
    keys: &KeyRing,
    actor: &str,
    vault: &VaultName,
    secret: &NewSecret,
    now: i64,
) -> Result<SetOutcome> {
    let (vault, name) = (vault.as_str(), secret.name.as_str());
    let existing = tx
        .secret_row(vault, name)
        .map_err(keys.db("reading a secret"))?;
    // A new version keeps what it does not set: the description (an
    // empty one clears it) and the purpose.
    let live = existing.as_ref().filter(|row| row.is_live(now));
    let kept_purpose = live.map(|row| row.purpose.clone());
    let description = match &secret.description {
        Some(text) if text.is_empty() => None,
        Some(text) => Some(text.clone()),
        None => live.and_then(|row| row.description.clone()),
    };
    let (version, created_at) = match existing {
        Some(row) if row.is_live(now) => (row.version + 1, row.created_at),
        Some(_) => {
            // An expired secret is gone: its name starts over at version 1.
            tx.delete_secret(vault, name)
                .map_err(keys.db("removing an expired secret"))?;
            (1, now)
        }
        None => (1, now),
    };
    let id = RecordId {
        vault,
        name,
        version,
    };
    let sealed =
        crypto::seal_secret(&keys.master, id, &secret.value).map_err(StoreError::Encrypt)?;
    tx.insert_version(vault, name, version, &sealed, now)
        .map_err(keys.db("storing a secret version"))?;
    let row = SecretRow {
        version,
        description,
        created_at,
        updated_at: now,
        expires_at: secret.ttl_secs.map(|ttl| now + ttl as i64 * 1000),
        purpose: match secret.purpose {
            Some(purpose) => purpose.as_str().to_owned(),
            None => kept_purpose.unwrap_or_else(|| names::Purpose::Other.as_str().to_owned()),
        },
    };
    tx.put_secret_row(vault, name, &row)
        .map_err(keys.db("storing a secret"))?;
    let entry =
        Entry::about(actor, Action::SecretSet, vault, name).with(Some(version), Outcome::Ok);
    keys.append_at(tx, &entry, now)?;
    Ok(SetOutcome {
        name: name.to_owned(),
        version,
        created: version == 1,
    })
}

/// Reads and decrypts a live secret inside `tx`, appending the audit record
/// (whatever the outcome). The caller commits before using the value.
/// Database errors come back as errors too, and abort the transaction.
#[expect(
    clippy::too_many_arguments,
    reason = "one audited read needs each of these"
)]
fn read_in_tx(
    tx: &mut dyn Tx,
    keys: &KeyRing,
    actor: &str,
    purpose: Action,
    vault: &str,
    name: &str,
    version: Option<u64>,
    now: i64,
) -> Result<Revealed> {
    let (result, entry) = open_in_tx(tx, keys, actor, purpose, vault, name, version, now)?;
    keys.append_at(tx, &entry, now)?;
    result
}

/// Reads and decrypts one secret; returns what happened and the audit entry
/// that says so, for the caller to append before it hands the value out.
/// The outer error is the database's (the transaction is lost).
#[allow(clippy::too_many_arguments)]
fn open_in_tx<'a>(
    tx: &mut dyn Tx,
    keys: &KeyRing,
    actor: &'a str,
    purpose: Action,
    vault: &'a str,
    name: &'a str,
    version: Option<u64>,
    now: i64,
) -> Result<(Result<Revealed>, Entry<'a>)> {
    let mut entry = Entry::about(actor, purpose, vault, name).with(version, Outcome::NotFound);
    let row = live_secret_row(tx, keys, vault, name, now)?;
    let result = match row {
        None => Err(StoreError::SecretNotFound {
            vault: vault.to_owned(),
            name: name.to_owned(),
        }),
        Some(row) => {
            let wanted = version.unwrap_or(row.version);
            entry.version = Some(wanted);
            match tx
                .version_row(vault, name, wanted)
                .map_err(keys.db("reading a secret version"))?
            {
                None => Err(StoreError::VersionNotFound {
                    vault: vault.to_owned(),
                    name: name.to_owned(),
                    version: wanted,
                }),
                Some(stored) => {
                    let id = RecordId {
                        vault,
                        name,
                        version: wanted,
                    };
                    match crypto::open_secret(&keys.master, id, &stored.sealed) {
                        Ok(value) => {
                            entry.outcome = Outcome::Ok;
                            Ok(Revealed {
                                value,
                                version: wanted,
                            })
                        }
                        Err(source) => {
                            entry.outcome = Outcome::Error;
                            Err(StoreError::Decrypt {
                                vault: vault.to_owned(),
                                name: name.to_owned(),
                                version: wanted,
                                source,
                            })
                        }
                    }
                }
            }
        }
    };
    Ok((result, entry))
}

/// The audit record of a change to a var.
fn var_audit(
    tx: &mut dyn Tx,
    keys: &KeyRing,
    action: Action,
    vault: &VaultName,
    name: &SecretName,
    now: i64,
) -> Result<()> {
    let entry = Entry::about(keys.actor.as_str(), action, vault.as_str(), name.as_str())
        .with(None, Outcome::Ok);
    keys.append_at(tx, &entry, now)?;
    Ok(())
}

/// The audit record of a supervisor event: its vault, and the deployment's
/// slug or the run's id in the name column.
fn event_audit(
    tx: &mut dyn Tx,
    keys: &KeyRing,
    action: Action,
    vault: &str,
    name: &str,
    outcome: Outcome,
) -> Result<()> {
    let entry = Entry {
        vault: Some(vault),
        secret: Some(name),
        ..Entry::global(keys.actor.as_str(), action, outcome)
    };
    keys.append(tx, &entry)?;
    Ok(())
}

/// The audit record of a sandbox event: its vault, and its id in the name
/// column (as tokens' records carry the token's name).
fn sandbox_audit(tx: &mut dyn Tx, keys: &KeyRing, action: Action, row: &SandboxRow) -> Result<()> {
    let entry = Entry {
        vault: Some(row.vault.as_str()),
        secret: Some(row.id.as_str()),
        ..Entry::global(keys.actor.as_str(), action, Outcome::Ok)
    };
    keys.append(tx, &entry)?;
    Ok(())
}
