//! `SecretValue`: the one type that holds a plaintext secret.
//!
//! Every plaintext value in shroud lives in a [`SecretValue`] from the moment it
//! is read (argv, stdin, an API body, a decrypted row) until it is handed to its
//! single point of use (a child's environment, the masker, `secret reveal`).
//! The type is built so that a value cannot leak by accident:
//!
//! - its bytes are overwritten with zeros when it is dropped;
//! - `Debug` prints `SecretValue(<redacted, N bytes>)`, never the bytes;
//! - it has no `Display`, `Serialize` or `Clone`-into-`String` path, so it can
//!   reach a log line, an error message or a JSON body only through an explicit
//!   [`SecretValue::expose`] call, which is easy to grep for in review.
//!
//! The trade-off: callers that need a copy must make one deliberately
//! ([`SecretValue::duplicate`]), and every copy is again a zeroizing value.
//!
//! ```
//! use shroud::secret::SecretValue;
//!
//! let token = SecretValue::from_slice(b"sk-live-1234");
//! assert_eq!(format!("{token:?}"), "SecretValue(<redacted, 12 bytes>)");
//! assert_eq!(token.expose(), b"sk-live-1234"); // only at the point of use
//! ```

use std::fmt;

use zeroize::Zeroizing;

/// A plaintext secret value: zeroized on drop, redacted in `Debug`.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Takes ownership of `bytes`; the vector is zeroized when the value drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretValue(Zeroizing::new(bytes))
    }

    /// Copies `bytes` into a new zeroizing value.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretValue::new(bytes.to_vec())
    }

    /// The plaintext. Call it only at the point of use, never to format.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length of the value in bytes (safe to log).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the value has no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A second zeroizing copy of the same value.
    pub fn duplicate(&self) -> Self {
        SecretValue::from_slice(self.expose())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.0.len())
    }
}

impl PartialEq for SecretValue {
    /// Constant-time in the length of the shorter value's contents.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose(), other.expose());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for SecretValue {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let value = SecretValue::from_slice(b"hunter2-very-secret");
        let printed = format!("{value:?} {value:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("19 bytes"), "{printed}");
    }

    #[test]
    fn duplicate_is_equal_and_independent() {
        let value = SecretValue::from_slice(b"abc");
        let copy = value.duplicate();
        assert_eq!(value, copy);
        assert_ne!(value, SecretValue::from_slice(b"abd"));
        assert_ne!(value, SecretValue::from_slice(b"abcd"));
    }
}
