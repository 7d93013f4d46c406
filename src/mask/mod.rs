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
    /// The secrets' values, by secret index; their forms are made at build
    /// time (on several threads for many secrets).
    values: Vec<Zeroizing<Vec<u8>>>,
    replacements: Vec<Vec<u8>>,
}

/// Up to this many secrets, their line-wrapped base64 forms are masked too
/// (about 48 patterns for a 24-byte value). A run's few grants always get
/// them; `redact --all` over a big vault keeps its speed without them.
pub const WRAPPED_MAX_SECRETS: usize = 128;

/// From this many patterns on, the prefilter is built beside the automaton
/// on another thread (below it, a thread costs more than it saves).
const PARALLEL_BUILD_PATTERNS: usize = 4096;

/// From this many secrets on, their forms are made on several threads.
const PARALLEL_FORMS_SECRETS: usize = 256;

/// The patterns of a set in id order, each once, with the secret it is
/// masked as (the first one that has it).
struct Patterns {
    list: Vec<(Zeroizing<Vec<u8>>, u32)>,
    /// Hash of a pattern's bytes (randomly keyed) to the newest pattern
    /// with that hash; `older_same_hash` chains the rest. No allocation per
    /// pattern, and no pattern is compared with more than its collisions.
    newest: std::collections::HashMap<u64, u32>,
    older_same_hash: Vec<u32>,
    hasher: std::collections::hash_map::RandomState,
}

impl Patterns {
    fn with_capacity(capacity: usize) -> Self {
        Patterns {
            list: Vec::with_capacity(capacity),
            newest: std::collections::HashMap::with_capacity(capacity),
            older_same_hash: Vec::with_capacity(capacity),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Adds a pattern unless an earlier secret has the same bytes (it keeps
    /// that secret's label).
    fn push(&mut self, form: Zeroizing<Vec<u8>>, secret: u32) {
        use std::hash::BuildHasher;
        let key = self.hasher.hash_one(form.as_slice());
        let id = self.list.len() as u32;
        let mut older = NO_PATTERN;
        if let Some(&newest) = self.newest.get(&key) {
            let mut at = newest;
            while at != NO_PATTERN {
                if self.list[at as usize].0.as_slice() == form.as_slice() {
                    return;
                }
                at = self.older_same_hash[at as usize];
            }
            older = newest;
        }
        self.newest.insert(key, id);
        self.older_same_hash.push(older);
        self.list.push((form, secret));
    }
}

const NO_PATTERN: u32 = u32::MAX;

/// Every value's forms ([`variants::forms`]), in value order; on up to four
/// threads when there are many values.
fn forms_of_all(values: &[Zeroizing<Vec<u8>>]) -> Vec<Vec<Zeroizing<Vec<u8>>>> {
    let serial = || values.iter().map(|v| variants::forms(v)).collect();
    if values.len() < PARALLEL_FORMS_SECRETS {
        return serial();
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    if threads < 2 {
        return serial();
    }
    let chunk = values.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = values
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || part.iter().map(|v| variants::forms(v)).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("making the masked forms"))
            .collect()
    })
}

impl MaskSetBuilder {
    /// Adds a secret and its variants. Returns false (and adds nothing) when
    /// the value is shorter than [`variants::MIN_PATTERN_LEN`] bytes.
    pub fn add(&mut self, name: &str, value: &SecretValue) -> bool {
        if value.len() < variants::MIN_PATTERN_LEN {
            return false;
        }
        self.replacements.push(match self.style {
            MaskStyle::Label => format!("<secret:{}>", name.to_lowercase()).into_bytes(),
            MaskStyle::Stars => b"********".to_vec(),
        });
        self.values.push(Zeroizing::new(value.expose().to_vec()));
        true
    }

    /// Makes the patterns and compiles them.
    pub fn build(self) -> Arc<MaskSet> {
        let forms = forms_of_all(&self.values);
        let mut patterns = Patterns::with_capacity(forms.iter().map(Vec::len).sum());
        for (secret, forms) in forms.into_iter().enumerate() {
            for form in forms {
                patterns.push(form, secret as u32);
            }
        }
        if self.values.len() <= WRAPPED_MAX_SECRETS {
            for (secret, value) in self.values.iter().enumerate() {
                for form in variants::wrapped_base64_forms(value) {
                    patterns.push(form, secret as u32);
                }
            }
        }
        drop(self.values);
        let (patterns, secret_of): (Vec<_>, Vec<_>) = patterns.list.into_iter().unzip();
        let patterns: Arc<[Zeroizing<Vec<u8>>]> = patterns.into();
        let max_len = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
        let compiled = std::sync::OnceLock::new();
        let mut pending = None;
        if patterns.is_empty() {
            let _ = compiled.set(None);
        } else if patterns.len() < BACKGROUND_BUILD_PATTERNS {
            let _ = compiled.set(Some(Compiled::new(&patterns)));
        } else {
            // The run starts while this compiles; the first output waits.
            let patterns = Arc::clone(&patterns);
            pending = Some(std::thread::spawn(move || Compiled::new(&patterns)));
        }
        Arc::new(MaskSet {
            patterns,
            secret_of,
            replacements: self.replacements,
            compiled,
            pending: std::sync::Mutex::new(pending),
            max_len,
        })
    }
}

/// From this many patterns on (about 20 secrets with their variants), a set
/// compiles on a thread of its own, beside the start of the run it masks:
/// the command starts without waiting, and its first output waits for the
/// automaton instead (a command that writes nothing never waits).
const BACKGROUND_BUILD_PATTERNS: usize = 2048;

/// The automaton and its prefilter.
struct Compiled {
    automaton: Automaton,
    prefilter: Prefilter,
}

impl Compiled {
    fn new(patterns: &[Zeroizing<Vec<u8>>]) -> Self {
        let views: Vec<&[u8]> = patterns.iter().map(|p| p.as_slice()).collect();
        let (automaton, prefilter) = if views.len() < PARALLEL_BUILD_PATTERNS {
            (Automaton::new(&views), Prefilter::new(&views))
        } else {
            // The two are independent: the prefilter is built on a second
            // core while this one builds the automaton.
            std::thread::scope(|scope| {
                let prefilter = scope.spawn(|| Prefilter::new(&views));
                let automaton = Automaton::new(&views);
                (automaton, prefilter.join().expect("building the prefilter"))
            })
        };
        Compiled {
            automaton,
            prefilter,
        }
    }
}

/// The compiled patterns of one run. Share it (it is an `Arc`) between the
/// maskers of the run's streams.
pub struct MaskSet {
    patterns: Arc<[Zeroizing<Vec<u8>>]>,
    /// The secret each pattern belongs to.
    secret_of: Vec<u32>,
    replacements: Vec<Vec<u8>>,
    /// `None` for an empty set; set at build time, or by the first caller
    /// of [`MaskSet::compiled`] from the thread in `pending`.
    compiled: std::sync::OnceLock<Option<Compiled>>,
    pending: std::sync::Mutex<Option<std::thread::JoinHandle<Compiled>>>,
    max_len: usize,
}

impl MaskSet {
    pub fn builder(style: MaskStyle) -> MaskSetBuilder {
        MaskSetBuilder {
            style,
            values: Vec::new(),
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

    /// The automaton and prefilter (`None` when there is nothing to mask),
    /// waiting for the thread compiling them if it has not finished.
    fn compiled(&self) -> Option<&Compiled> {
        self.compiled
            .get_or_init(|| {
                let thread = self
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .expect("a set not compiled at build time has its thread");
                Some(thread.join().expect("compiling the mask set"))
            })
            .as_ref()
    }

    /// The automaton of a non-empty set.
    fn automaton(&self) -> &Automaton {
        &self.compiled().expect("non-empty set").automaton
    }

    /// The prefilter of a non-empty set.
    fn prefilter(&self) -> &Prefilter {
        &self.compiled().expect("non-empty set").prefilter
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
            .field("compiled", &self.compiled.get().is_some())
            .finish_non_exhaustive()
    }
}
