//! Envelope encryption of secret values: the only module that uses AES-GCM.
//!
//! Each secret version gets its own random 256-bit *data key*. The value is
//! sealed with the data key, and the data key is sealed ("wrapped") with the
//! master key. Rotating the master key therefore re-wraps 32-byte keys and
//! never touches the values.
//!
//! Both seals bind the record's identity as AES-GCM associated data: a
//! length-prefixed canonical encoding of
//! `(format version, record kind, vault, name, version)`. A ciphertext copied
//! into another row, another vault or another version fails authentication,
//! exactly like a flipped byte does; opening never returns another value.
//!
//! Sealed blob format (version 1): `0x01 || nonce (12 bytes) || ciphertext || tag (16 bytes)`.
//! Nonces are 96 random bits from the OS; each data key seals exactly one
//! message, and the master key seals one data key per secret version, far below
//! the 2^32 random-nonce bound of AES-GCM.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::secret::SecretValue;

/// Version byte that starts every sealed blob and every associated-data block.
pub const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of master and data keys in bytes.
pub const KEY_LEN: usize = 32;
/// Plaintext of the key-check record that tells a wrong master key apart.
const KEY_CHECK_PLAINTEXT: &[u8] = b"shroud master key check v1";
/// The key check of a store whose audit chain is keyed (see
/// [`key_check_version`]): sealed, so only the key's holder can write it.
const KEY_CHECK_KEYED_AUDIT: &[u8] = b"shroud master key check v2: keyed audit chain";

/// What went wrong opening or sealing a blob. Never carries plaintext.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("ciphertext failed authentication (tampered, moved to another record, or sealed under another key)")]
    Tampered,
    #[error("ciphertext has unsupported format version {0}")]
    UnsupportedFormat(u8),
    #[error("ciphertext is truncated")]
    Truncated,
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
}

/// What a sealed blob protects; part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    SecretValue = 1,
    DataKey = 2,
    KeyCheck = 3,
    KeyHandoff = 4,
}

/// The identity a seal is bound to.
#[derive(Debug, Clone, Copy)]
pub struct RecordId<'a> {
    pub vault: &'a str,
    pub name: &'a str,
    pub version: u64,
}

impl RecordId<'_> {
    /// Canonical associated data: every field length-prefixed, so that no two
    /// distinct identities encode to the same bytes.
    fn associated_data(&self, kind: RecordKind) -> Vec<u8> {
        let mut aad = Vec::with_capacity(2 + 8 + self.vault.len() + self.name.len() + 8);
        aad.push(FORMAT_V1);
        aad.push(kind as u8);
        for field in [self.vault.as_bytes(), self.name.as_bytes()] {
            aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
            aad.extend_from_slice(field);
        }
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad
    }
}

/// A 256-bit key (master or data key): zeroized on drop, redacted in `Debug`.
pub struct Key(Zeroizing<[u8; KEY_LEN]>);

impl Key {
    /// A fresh key from the OS random number generator.
    pub fn generate() -> Result<Key, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(bytes.as_mut())?;
        Ok(Key(bytes))
    }

    /// A key from exactly 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Key> {
        let array: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Key(Zeroizing::new(array)))
    }

    /// The raw key bytes, for writing the key file.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// The key of the audit chain's MAC: derived from the master key with
/// HKDF-SHA256 (its own `info`, so it is never the master key itself or a
/// key any other use derives), re-derived whenever the master key changes.
pub struct AuditKey(Zeroizing<[u8; KEY_LEN]>);

impl AuditKey {
    /// The audit key that belongs to `master`.
    pub fn derive(master: &Key) -> AuditKey {
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(b"shroud audit chain"), master.expose())
            .expand(b"shroud audit chain MAC v2", out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        AuditKey(out)
    }

    /// The raw key bytes, for the MAC.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// Fills `buf` from the OS random number generator.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|e| CryptoError::Random(e.to_string()))
}

fn seal(key: &Key, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Tampered)?;
    let mut blob = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    blob.push(FORMAT_V1);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ciphertext);
    Ok(blob)
}

fn open(key: &Key, aad: &[u8], blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (&format, rest) = blob.split_first().ok_or(CryptoError::Truncated)?;
    if format != FORMAT_V1 {
        return Err(CryptoError::UnsupportedFormat(format));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Tampered)
}

/// A secret version as stored: the wrapped data key and the sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub wrapped_key: Vec<u8>,
    pub sealed_value: Vec<u8>,
}

/// Seals `value` under a fresh data key, wrapped by `master`, bound to `id`.
pub fn seal_secret(
    master: &Key,
    id: RecordId<'_>,
    value: &SecretValue,
) -> Result<SealedSecret, CryptoError> {
    let data_key = Key::generate()?;
    let sealed_value = seal(
        &data_key,
        &id.associated_data(RecordKind::SecretValue),
        value.expose(),
    )?;
    let wrapped_key = seal(
        master,
        &id.associated_data(RecordKind::DataKey),
        data_key.expose(),
    )?;
    Ok(SealedSecret {
        wrapped_key,
        sealed_value,
    })
}

fn unwrap_data_key(master: &Key, id: RecordId<'_>, wrapped: &[u8]) -> Result<Key, CryptoError> {
    let raw = open(master, &id.associated_data(RecordKind::DataKey), wrapped)?;
    Key::from_slice(&raw).ok_or(CryptoError::Tampered)
}

/// Opens a stored secret version; any mismatch of key, identity or bytes is an error.
pub fn open_secret(
    master: &Key,
    id: RecordId<'_>,
    sealed: &SealedSecret,
) -> Result<SecretValue, CryptoError> {
    let data_key = unwrap_data_key(master, id, &sealed.wrapped_key)?;
    let plaintext = open(
        &data_key,
        &id.associated_data(RecordKind::SecretValue),
        &sealed.sealed_value,
    )?;
    Ok(SecretValue::from_slice(&plaintext))
}

/// Re-wraps a data key from `old` to `new` master key; the value is untouched.
pub fn rewrap_data_key(
    old: &Key,
    new: &Key,
    id: RecordId<'_>,
    wrapped: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let data_key = unwrap_data_key(old, id, wrapped)?;
    seal(
        new,
        &id.associated_data(RecordKind::DataKey),
        data_key.expose(),
    )
}

const KEY_CHECK_ID: RecordId<'static> = RecordId {
    vault: "",
    name: "",
    version: 0,
};

/// A blob that only `master` opens: stored once per home to detect a wrong key.
pub fn seal_key_check(master: &Key) -> Result<Vec<u8>, CryptoError> {
    seal(
        master,
        &KEY_CHECK_ID.associated_data(RecordKind::KeyCheck),
        KEY_CHECK_KEYED_AUDIT,
    )
}

/// A rotation's new key sealed under the key it replaces, for the nodes that
/// still hold the old one (see `keys::KeyHandoff`). The expiry (ms since
/// the epoch) is bound as associated data: it cannot be moved later
/// without the old key.
pub fn seal_key_handoff(old: &Key, new: &Key, expires_ms: i64) -> Result<Vec<u8>, CryptoError> {
    let id = RecordId {
        vault: "",
        name: "key handoff",
        version: expires_ms as u64,
    };
    seal(
        old,
        &id.associated_data(RecordKind::KeyHandoff),
        new.expose(),
    )
}

/// The new key of a handoff sealed under `old` with `expires_ms`, if it opens.
pub fn open_key_handoff(old: &Key, expires_ms: i64, blob: &[u8]) -> Option<Key> {
    let id = RecordId {
        vault: "",
        name: "key handoff",
        version: expires_ms as u64,
    };
    open(old, &id.associated_data(RecordKind::KeyHandoff), blob)
        .ok()
        .and_then(|plain| Key::from_slice(&plain))
}

/// The key check an older shroud wrote (version 1, before the audit chain
/// was keyed): for tests of the conversion of such stores.
#[doc(hidden)]
pub fn seal_key_check_v1(master: &Key) -> Result<Vec<u8>, CryptoError> {
    seal(
        master,
        &KEY_CHECK_ID.associated_data(RecordKind::KeyCheck),
        KEY_CHECK_PLAINTEXT,
    )
}

/// True when `blob` was sealed by [`seal_key_check`] under `master` (by
/// this build or an older one).
pub fn key_check_opens(master: &Key, blob: &[u8]) -> bool {
    key_check_version(master, blob).is_some()
}

/// Which key check `blob` is under `master`: 2 for a store whose audit
/// chain is keyed, 1 for one written before (unkeyed chain), `None` when it
/// does not open. The version lives inside the sealed plaintext, so someone
/// who can write the database but lacks the key cannot make a store look
/// older than it is (and have its forged unkeyed history converted).
pub fn key_check_version(master: &Key, blob: &[u8]) -> Option<u8> {
    match open(
        master,
        &KEY_CHECK_ID.associated_data(RecordKind::KeyCheck),
        blob,
    ) {
        Ok(plain) if plain.as_slice() == KEY_CHECK_KEYED_AUDIT => Some(2),
        Ok(plain) if plain.as_slice() == KEY_CHECK_PLAINTEXT => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<'a>(vault: &'a str, name: &'a str, version: u64) -> RecordId<'a> {
        RecordId {
            vault,
            name,
            version,
        }
    }

    #[test]
    fn round_trip() {
        let master = Key::generate().unwrap();
        let value = SecretValue::from_slice(b"s3cr3t value");
        let sealed = seal_secret(&master, id("v", "N", 1), &value).unwrap();
        assert!(!sealed
            .sealed_value
            .windows(value.len())
            .any(|w| w == value.expose()));
        let opened = open_secret(&master, id("v", "N", 1), &sealed).unwrap();
        assert_eq!(opened, value);
    }

    #[test]
    fn identity_is_bound() {
        let master = Key::generate().unwrap();
        let value = SecretValue::from_slice(b"value");
        let sealed = seal_secret(&master, id("v", "N", 1), &value).unwrap();
        for other in [
            id("w", "N", 1),
            id("v", "M", 1),
            id("v", "N", 2),
            // Length prefixes keep ("vN", "") apart from ("v", "N").
            id("vN", "", 1),
        ] {
            assert_eq!(
                open_secret(&master, other, &sealed),
                Err(CryptoError::Tampered)
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let master = Key::generate().unwrap();
        let sealed =
            seal_secret(&master, id("v", "N", 1), &SecretValue::from_slice(b"abc")).unwrap();
        for field in 0..2 {
            let len = if field == 0 {
                sealed.wrapped_key.len()
            } else {
                sealed.sealed_value.len()
            };
            for i in 0..len {
                let mut broken = sealed.clone();
                let target = if field == 0 {
                    &mut broken.wrapped_key
                } else {
                    &mut broken.sealed_value
                };
                target[i] ^= 0x01;
                assert!(open_secret(&master, id("v", "N", 1), &broken).is_err());
            }
        }
    }

    #[test]
    fn wrong_master_key_and_rewrap() {
        let old = Key::generate().unwrap();
        let new = Key::generate().unwrap();
        let value = SecretValue::from_slice(b"value");
        let mut sealed = seal_secret(&old, id("v", "N", 3), &value).unwrap();
        assert!(open_secret(&new, id("v", "N", 3), &sealed).is_err());
        sealed.wrapped_key =
            rewrap_data_key(&old, &new, id("v", "N", 3), &sealed.wrapped_key).expect("rewrap");
        assert_eq!(open_secret(&new, id("v", "N", 3), &sealed).unwrap(), value);
        assert!(open_secret(&old, id("v", "N", 3), &sealed).is_err());
    }

    #[test]
    fn key_check() {
        let a = Key::generate().unwrap();
        let b = Key::generate().unwrap();
        let check = seal_key_check(&a).unwrap();
        assert!(key_check_opens(&a, &check));
        assert!(!key_check_opens(&b, &check));
        assert!(format!("{a:?}").contains("redacted"));
    }
}
