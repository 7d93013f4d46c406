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
    /// The values of the secrets added since the last chunk went to
    /// `early` (all of them, without it); their forms are made at build
    /// time (on several threads for many secrets).
    values: Vec<Zeroizing<Vec<u8>>>,
    /// The forms of the first values, made while the rest are added.
    early: Option<EarlyForms>,
    replacements: Vec<Vec<u8>>,
}

/// From this many secrets on, the builder hands each chunk of this many
/// values to a thread that makes their forms while the caller goes on
/// adding (reading and decrypting the next ones): `redact --all` over
/// 10,000 secrets makes most of its patterns while the store reads.
const EARLY_FORMS_CHUNK: usize = 512;

// A set with early chunks never has wrapped forms: `patterns_of` makes
// those from the values after the chunks, as if they were all.
const _: () = assert!(WRAPPED_MAX_SECRETS < EARLY_FORMS_CHUNK);

/// The thread that makes the forms of the first chunks of values, in order.
struct EarlyForms {
    chunks: std::sync::mpsc::Sender<Vec<Zeroizing<Vec<u8>>>>,
    worker: std::thread::JoinHandle<Vec<Vec<Zeroizing<Vec<u8>>>>>,
}

/// The cores this process may use, asked once (`available_parallelism`
/// reads the cgroup's quota files: not for every set a run builds).
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

impl EarlyForms {
    /// None when there is one core (the forms would only wait their turn).
    fn start() -> Option<Self> {
        if cores() < 2 {
            return None;
        }
        let (chunks, received) = std::sync::mpsc::channel::<Vec<Zeroizing<Vec<u8>>>>();
        let worker = std::thread::Builder::new()
            .name("shroud-mask-forms".to_owned())
            .spawn(move || {
                let mut forms = Vec::new();
                for chunk in received {
                    forms.extend(chunk.iter().map(|v| variants::forms(v)));
                }
                forms
            })
            .ok()?;
        Some(EarlyForms { chunks, worker })
    }

    /// The forms of every chunk sent, in value order.
    fn finish(self) -> Vec<Vec<Zeroizing<Vec<u8>>>> {
        drop(self.chunks);
        self.worker.join().expect("making the early forms")
    }
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

/// Every value's forms ([`variants::forms`]), in value order; on up to four
/// threads when there are many values.
fn forms_of_all(values: &[Zeroizing<Vec<u8>>]) -> Vec<Vec<Zeroizing<Vec<u8>>>> {
    let serial = || values.iter().map(|v| variants::forms(v)).collect();
    if values.len() < PARALLEL_FORMS_SECRETS {
        return serial();
    }
    let threads = cores().min(4);
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
        if self.values.len() == EARLY_FORMS_CHUNK {
            if self.early.is_none() {
                self.early = EarlyForms::start();
            }
            if let Some(early) = &self.early {
                // A worker gone (it panicked) keeps the chunks it had: it
                // stays, so that `build` fails on joining it instead of
                // compiling the values after them as if they were first.
                if let Err(unsent) = early.chunks.send(std::mem::take(&mut self.values)) {
                    self.values = unsent.0;
                }
            }
        }
        true
    }

    /// Collects the secrets; their forms are made and compiled now for a
    /// few secrets, else on a thread of the set's own (see
    /// [`BACKGROUND_BUILD_SECRETS`]).
    pub fn build(self) -> Arc<MaskSet> {
        let set = self.build_deferred();
        set.start_compiling();
        set
    }

    /// [`MaskSetBuilder::build`], except that a set compiled on a thread
    /// of its own waits for [`MaskSet::start_compiling`] (or its first
    /// use, which compiles it there). A run calls it once its command is
    /// spawned: a thread writing fresh memory while the supervisor forks
    /// made every page it wrote a copy-on-write fault until the child's
    /// exec, about 30 µs a secret on a short command's path.
    pub fn build_deferred(self) -> Arc<MaskSet> {
        let compiled = std::sync::OnceLock::new();
        let mut pending = None;
        let secrets = self.replacements.len();
        let (early, values) = (self.early, self.values);
        if secrets == 0 {
            let _ = compiled.set(None);
        } else if secrets < BACKGROUND_BUILD_SECRETS {
            let _ = compiled.set(Some(Compiled::new(Vec::new(), values)));
        } else {
            pending = Some(Pending::Waiting { early, values });
        }
        Arc::new(MaskSet {
            replacements: self.replacements,
            compiled,
            pending: std::sync::Mutex::new(pending),
        })
    }
}

/// A set's compile that has not ended.
enum Pending {
    /// Not started: what it compiles.
    Waiting {
        early: Option<EarlyForms>,
        values: Vec<Zeroizing<Vec<u8>>>,
    },
    /// On a thread of its own.
    Running(std::thread::JoinHandle<Compiled>),
}

impl Pending {
    /// The compiled set: compiled here, or the thread's.
    fn finish(self) -> Compiled {
        match self {
            Pending::Waiting { early, values } => {
                Compiled::new(early.map_or_else(Vec::new, EarlyForms::finish), values)
            }
            Pending::Running(thread) => thread.join().expect("compiling the mask set"),
        }
    }
}

/// From this many secrets on (about 250 patterns with their variants), a
/// set makes its patterns and compiles them on a thread of its own, beside
/// the start of the run it masks: the command starts without waiting, and
/// its first output waits for the automaton instead (a command that writes
/// nothing never waits, and never pays for it).
const BACKGROUND_BUILD_SECRETS: usize = 4;

/// The patterns, the automaton and the prefilter.
struct Compiled {
    patterns: Patterns,
    /// The secret each pattern belongs to.
    secret_of: Vec<u32>,
    max_len: usize,
    automaton: Automaton,
    prefilter: Prefilter,
}

/// Every pattern, end to end in one buffer (wiped when dropped): one
/// allocation to wipe and free at the end of a run, where one per pattern
/// (50,000 with 10,000 secrets) took a tenth of `redact --all`'s start-up.
struct Patterns {
    bytes: Zeroizing<Vec<u8>>,
    /// Where each pattern ends in `bytes` (it starts where the one before ends).
    ends: Vec<usize>,
}

impl Patterns {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }
}

/// From this many pieces (secrets' lists of forms) on, [`drop_beside`]
/// frees them on a thread of its own.
const DROP_BESIDE_PIECES: usize = 1024;

/// Drops `garbage` on a thread of its own when it is many pieces (the
/// frees would otherwise wait in line before the automaton), else here.
fn drop_beside<T: Send + 'static>(garbage: Vec<T>) {
    if garbage.len() < DROP_BESIDE_PIECES {
        return drop(garbage);
    }
    // A thread that cannot start drops its closure, and `garbage` with it.
    let _ = std::thread::Builder::new()
        .name("shroud-mask-free".to_owned())
        .spawn(move || drop(garbage));
}

/// The patterns of `values` in id order, each with its secret (by index).
/// Two secrets may share a pattern: it is kept twice, and the automaton
/// reports the lower id, so the secret added first names it. (Finding the
/// few shared ones by hashing every pattern cost more than keeping them.)
///
/// `early` holds the forms of the first values, made already; `values` are
/// the ones after them.
fn patterns_of(
    early: Vec<Vec<Zeroizing<Vec<u8>>>>,
    values: Vec<Zeroizing<Vec<u8>>>,
) -> (Patterns, Vec<u32>) {
    let all_values = early.len() + values.len();
    let mut forms = early;
    forms.extend(forms_of_all(&values));
    // The line-wrapped forms come after all the others.
    let wrapped: Vec<Vec<Zeroizing<Vec<u8>>>> = if all_values <= WRAPPED_MAX_SECRETS {
        values
            .iter()
            .map(|v| variants::wrapped_base64_forms(v))
            .collect()
    } else {
        Vec::new()
    };
    let every = || forms.iter().chain(&wrapped).enumerate();
    let count: usize = every().map(|(_, f)| f.len()).sum();
    let total: usize = every().flat_map(|(_, f)| f).map(|form| form.len()).sum();
    let mut patterns = Patterns {
        bytes: Zeroizing::new(Vec::with_capacity(total)),
        ends: Vec::with_capacity(count),
    };
    let mut secret_of = Vec::with_capacity(count);
    for (index, of_one) in every() {
        // `wrapped` is by secret too, after `forms`.
        let secret = index % all_values.max(1);
        for form in of_one {
            patterns.bytes.extend_from_slice(form);
            patterns.ends.push(patterns.bytes.len());
            secret_of.push(secret as u32);
        }
    }
    drop_beside(forms);
    (patterns, secret_of)
}

impl Compiled {
    /// Makes the patterns of a non-empty set of values (the first ones'
    /// forms made already: `early`) and compiles them.
    fn new(early: Vec<Vec<Zeroizing<Vec<u8>>>>, values: Vec<Zeroizing<Vec<u8>>>) -> Self {
        let (patterns, secret_of) = patterns_of(early, values);
        let views: Vec<&[u8]> = patterns.iter().collect();
        let max_len = views.iter().map(|p| p.len()).max().unwrap_or(0);
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
            patterns,
            secret_of,
            max_len,
            automaton,
            prefilter,
        }
    }
}

/// The compiled patterns of one run. Share it (it is an `Arc`) between the
/// maskers of the run's streams.
pub struct MaskSet {
    /// One per secret (each has at least one pattern, its value).
    replacements: Vec<Vec<u8>>,
    /// `None` for an empty set; set at build time, or by the first caller
    /// of [`MaskSet::compiled`] from `pending` (joining its thread, or
    /// compiling there when it was never started).
    compiled: std::sync::OnceLock<Option<Compiled>>,
    pending: std::sync::Mutex<Option<Pending>>,
}

impl MaskSet {
    pub fn builder(style: MaskStyle) -> MaskSetBuilder {
        MaskSetBuilder {
            style,
            values: Vec::new(),
            early: None,
            replacements: Vec::new(),
        }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.replacements.is_empty()
    }

    /// Number of patterns (values and variants); waits for the compile.
    pub fn pattern_count(&self) -> usize {
        self.compiled().map_or(0, |c| c.patterns.len())
    }

    /// Each pattern's bytes and the secret it belongs to, in id order (the
    /// order used to break ties); waits for the compile. Secret material:
    /// for tests and tooling.
    pub fn patterns(&self) -> impl Iterator<Item = (&[u8], u32)> {
        let compiled = self.compiled();
        let secret_of = compiled.map_or(&[][..], |c| &c.secret_of[..]);
        compiled
            .into_iter()
            .flat_map(|c| c.patterns.iter())
            .zip(secret_of.iter().copied())
    }

    /// The replacement text of a secret (by index).
    pub fn replacement_of_secret(&self, secret: u32) -> &[u8] {
        &self.replacements[secret as usize]
    }

    /// The replacement for an occurrence of `pattern`.
    fn replacement(&self, pattern: u32) -> &[u8] {
        let secret = self.compiled().expect("non-empty set").secret_of[pattern as usize];
        self.replacement_of_secret(secret)
    }

    /// Starts the compile of a set made by [`MaskSetBuilder::build_deferred`]
    /// on a thread of its own (the run starts while it compiles; the first
    /// output waits). Does nothing when it has started or ended.
    pub fn start_compiling(&self) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(Pending::Waiting { .. }) = pending.as_ref() {
            let waiting = pending.take().expect("matched above");
            *pending = Some(Pending::Running(std::thread::spawn(move || {
                waiting.finish()
            })));
        }
    }

    /// The automaton and prefilter (`None` when there is nothing to mask),
    /// waiting for the thread compiling them if it has not finished.
    fn compiled(&self) -> Option<&Compiled> {
        self.compiled
            .get_or_init(|| {
                let pending = self
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                    .expect("a set not compiled at build time has its compile pending");
                Some(pending.finish())
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

    /// Longest pattern length; waits for the compile.
    pub fn max_pattern_len(&self) -> usize {
        self.compiled().map_or(0, |c| c.max_len)
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
            .field(
                "patterns",
                &self
                    .compiled
                    .get()
                    .map(|c| c.as_ref().map_or(0, |c| c.patterns.len())),
            )
            .finish_non_exhaustive()
    }
}
