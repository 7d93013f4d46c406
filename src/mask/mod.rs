//! Masking: rewriting every occurrence of a granted secret in a byte stream.
//!
//! A [`MaskSet`] is built once per run from the granted secrets: each value
//! and its encoded forms ([`variants`]) become patterns, labelled with the
//! secret they came from, compiled into one automaton ([`automaton`]) behind a
//! sampled q-gram prefilter ([`prefilter`]). Each output stream then gets its
//! own [`Masker`] ([`stream`]), a push-based filter: feed it chunks as they
//! arrive and it returns the bytes that are safe to forward now.
//!
//! The promise, checked by a property test against a naive reference:
//!
//! - every byte of every occurrence of every pattern is replaced; overlapping
//!   occurrences merge into one replacement named after the leftmost, then
//!   longest, occurrence (then the secret granted first); occurrences that
//!   only touch are replaced one by one;
//! - the output does not depend on how the input was split into chunks;
//! - a byte is held back only while it may still be part of an occurrence.
//!
//! ```
//! use shroud::mask::{MaskSet, MaskStyle};
//! use shroud::secret::SecretValue;
//!
//! let mut builder = MaskSet::builder(MaskStyle::Label);
//! builder.add("DATABASE_URL", &SecretValue::from_slice(b"pg://u:pw@db"));
//! let set = builder.build();
//! assert_eq!(set.mask_all(b"connecting to pg://u:pw@db ..."), b"connecting to <secret:database_url> ...");
//! ```

pub mod automaton;
pub mod prefilter;
pub mod stream;
pub mod variants;

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::secret::SecretValue;
use automaton::Automaton;
use prefilter::Prefilter;
pub use stream::Masker;

/// What a masked occurrence is replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskStyle {
    /// `<secret:name>`, the name lower-cased.
    Label,
    /// `********`, always eight, whatever the length.
    Stars,
}

impl std::str::FromStr for MaskStyle {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "label" => Ok(MaskStyle::Label),
            "stars" => Ok(MaskStyle::Stars),
            other => Err(format!(
                "invalid mask style {other:?}: expected `label` or `stars`"
            )),
        }
    }
}

/// Collects secrets for a [`MaskSet`].
pub struct MaskSetBuilder {
    style: MaskStyle,
    /// (pattern bytes, secret index), in the order they will get ids.
    patterns: Vec<(Zeroizing<Vec<u8>>, u32)>,
    /// Pattern indices by a (randomly keyed) hash of their bytes, so adding
    /// 10,000 secrets does not compare every pattern with every other.
    seen: std::collections::HashMap<u64, Vec<usize>>,
    /// Hashes the patterns for `seen`.
    hasher: std::collections::hash_map::RandomState,
    /// Line-wrapped base64 forms, added at build time if there are at most
    /// [`WRAPPED_MAX_SECRETS`] secrets.
    wrapped: Vec<(Zeroizing<Vec<u8>>, u32)>,
    replacements: Vec<Vec<u8>>,
}

/// Up to this many secrets, their line-wrapped base64 forms are masked too
/// (about 48 patterns for a 24-byte value). A run's few grants always get
/// them; `redact --all` over a big vault keeps its speed without them.
pub const WRAPPED_MAX_SECRETS: usize = 128;

impl MaskSetBuilder {
    /// Adds a secret and its variants. Returns false (and adds nothing) when
    /// the value is shorter than [`variants::MIN_PATTERN_LEN`] bytes.
    pub fn add(&mut self, name: &str, value: &SecretValue) -> bool {
        if value.len() < variants::MIN_PATTERN_LEN {
            return false;
        }
        let index = self.replacements.len() as u32;
        self.replacements.push(match self.style {
            MaskStyle::Label => format!("<secret:{}>", name.to_lowercase()).into_bytes(),
            MaskStyle::Stars => b"********".to_vec(),
        });
        for form in variants::forms(value.expose()) {
            self.push_pattern(form, index);
        }
        if self.replacements.len() <= WRAPPED_MAX_SECRETS {
            let wrapped = variants::wrapped_base64_forms(value.expose());
            self.wrapped
                .extend(wrapped.into_iter().map(|form| (form, index)));
        } else {
            self.wrapped = Vec::new();
        }
        true
    }

    /// Adds a pattern unless an earlier secret has the same bytes (it keeps
    /// that secret's label).
    fn push_pattern(&mut self, form: Zeroizing<Vec<u8>>, index: u32) {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one(form.as_slice());
        let same = self.seen.entry(key).or_default();
        if same
            .iter()
            .any(|&i| self.patterns[i].0.as_slice() == form.as_slice())
        {
            return;
        }
        same.push(self.patterns.len());
        self.patterns.push((form, index));
    }

    /// Compiles the patterns.
    pub fn build(mut self) -> Arc<MaskSet> {
        for (form, index) in std::mem::take(&mut self.wrapped) {
            self.push_pattern(form, index);
        }
        let views: Vec<&[u8]> = self.patterns.iter().map(|(p, _)| p.as_slice()).collect();
        let (automaton, prefilter) = if views.is_empty() {
            (None, None)
        } else {
            (Some(Automaton::new(&views)), Some(Prefilter::new(&views)))
        };
        let max_len = views.iter().map(|p| p.len()).max().unwrap_or(0);
        Arc::new(MaskSet {
            secret_of: self.patterns.iter().map(|&(_, s)| s).collect(),
            patterns: self.patterns.into_iter().map(|(p, _)| p).collect(),
            replacements: self.replacements,
            automaton,
            prefilter,
            max_len,
        })
    }
}

/// The compiled patterns of one run. Share it (it is an `Arc`) between the
/// maskers of the run's streams.
pub struct MaskSet {
    patterns: Vec<Zeroizing<Vec<u8>>>,
    /// The secret each pattern belongs to.
    secret_of: Vec<u32>,
    replacements: Vec<Vec<u8>>,
    automaton: Option<Automaton>,
    prefilter: Option<Prefilter>,
    max_len: usize,
}

impl MaskSet {
    pub fn builder(style: MaskStyle) -> MaskSetBuilder {
        MaskSetBuilder {
            style,
            patterns: Vec::new(),
            seen: std::collections::HashMap::new(),
            hasher: std::collections::hash_map::RandomState::new(),
            wrapped: Vec::new(),
            replacements: Vec::new(),
        }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Number of patterns (values and variants).
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// Each pattern's bytes and the secret it belongs to, in id order (the
    /// order used to break ties). Secret material: for tests and tooling.
    pub fn patterns(&self) -> impl Iterator<Item = (&[u8], u32)> {
        self.patterns
            .iter()
            .map(|p| p.as_slice())
            .zip(self.secret_of.iter().copied())
    }

    /// The replacement text of a secret (by index).
    pub fn replacement_of_secret(&self, secret: u32) -> &[u8] {
        &self.replacements[secret as usize]
    }

    /// The replacement for an occurrence of `pattern`.
    fn replacement(&self, pattern: u32) -> &[u8] {
        self.replacement_of_secret(self.secret_of[pattern as usize])
    }

    /// Longest pattern length.
    pub fn max_pattern_len(&self) -> usize {
        self.max_len
    }

    /// Masks a whole buffer at once (a masker fed one chunk).
    pub fn mask_all(self: &Arc<Self>, input: &[u8]) -> Vec<u8> {
        let mut masker = Masker::new(Arc::clone(self));
        let mut out = Vec::with_capacity(input.len());
        masker.push(input, &mut out);
        masker.finish(&mut out);
        out
    }
}

impl std::fmt::Debug for MaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskSet")
            .field("secrets", &self.replacements.len())
            .field("patterns", &self.patterns.len())
            .field("prefilter", &self.prefilter)
            .finish_non_exhaustive()
    }
}
