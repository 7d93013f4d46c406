//! A sampled q-gram prefilter: skips text that cannot hold an occurrence.
//!
//! Let `m` be the shortest pattern length and `k = m - Q + 1`. Sample the
//! text at every position that is a multiple of `k`. Any occurrence starting
//! at `s` covers at least `m` bytes, so exactly one sample `p` lies in
//! `[s, s + k)`, and the `Q`-gram at `p` lies inside the occurrence, at offset
//! `p - s < k` of its pattern. So we put every pattern's `Q`-grams at offsets
//! `0..k` into a bitmap (hashed), and a sample that misses the bitmap proves
//! that no occurrence starts in `(p - k, p]`. Only the windows of hits are
//! verified by the automaton.
//!
//! With 24-byte secrets that is one 4-byte load and one bit test per 21 bytes
//! of text. The bitmap is sized to ~1/64 occupancy by the distinct grams
//! (capped at 8 MiB, which stays in this class of machine's L3), so a miss
//! is the common case even with ten thousand secrets. A bitmap larger than
//! 1 MiB gets a 1 MiB coarse copy in front (the same hash, fewer bits: a
//! superset), which lives in L2 and answers most samples without touching
//! L3. A sample that hits is
//! checked once more in a second bitmap of the same grams under a second
//! hash (at most 1 MiB), looked at only on a hit: on log text nearly every
//! hit of the first is a collision, and this drops all but about one in a
//! hundred of them before the automaton is run over their windows. The
//! bitmaps hold hashes of the patterns' first bytes, never the bytes; as
//! grams could be guessed back from two of them, they are zeroized on drop
//! like every other piece of a mask set.

use zeroize::Zeroize;

/// Bytes per sampled gram.
pub const Q: usize = 4;
const MIN_BITS_LOG2: u32 = 16;
const MAX_BITS_LOG2: u32 = 26;
/// 1 MiB: the coarse bitmap mostly stays in L2.
const COARSE_BITS_LOG2: u32 = 23;

/// The bitmaps and the sampling step.
pub struct Prefilter {
    step: usize,
    bits: Vec<u64>,
    /// For large bitmaps: the same grams at `COARSE_BITS_LOG2` bits, or empty.
    coarse: Vec<u64>,
    /// The same grams by [`second_hash`], at most 1 MiB: a sample that hits
    /// `bits` is reported only if it hits here too, so a collision in one
    /// bitmap seldom costs a check by the automaton.
    confirm: Vec<u64>,
}

#[inline]
fn hash(gram: u32) -> u32 {
    // The high half of a 64-bit product: its low bits, which pick the
    // slot, depend on every bit of the gram.
    ((u64::from(gram)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// The hash of the confirming bitmap: another multiplier, and the top
/// bits of the product, so a gram that collides in one bitmap seldom
/// collides in the other.
#[inline]
fn second_hash(gram: u32) -> u32 {
    ((u64::from(gram) | 1 << 32).wrapping_mul(0xC2B2_AE3D_27D4_EB4F) >> 40) as u32
}

#[inline]
fn gram_at(text: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(text[at..at + Q].try_into().expect("a gram is Q bytes"))
}

/// `bits` folded down to `2^bits_log2` bits (see [`Prefilter::new`]).
fn fold(bits: &[u64], bits_log2: u32) -> Vec<u64> {
    let mut folded = vec![0u64; 1 << (bits_log2 - 6)];
    for part in bits.chunks(folded.len()) {
        for (word, &other) in folded.iter_mut().zip(part) {
            *word |= other;
        }
    }
    folded
}

/// The bit of `hash` in a bitmap of a power of two bits: its slot is the
/// hash's low bits (so no bounds check is left, and the same hash picks
/// its slot in a bitmap of any size).
#[inline(always)]
fn bit_of(bits: &[u64], hash: u32) -> bool {
    let index = (hash as usize >> 6) & (bits.len() - 1);
    bits.get(index).is_some_and(|w| w & (1 << (hash & 63)) != 0)
}

impl Prefilter {
    /// Builds the filter for patterns that are all at least `Q` bytes long.
    ///
    /// The bitmap is sized by the distinct grams, not by all of them:
    /// variants share most grams with their value (a wrapped base64 form
    /// adds only the few that cross its line break), and a bitmap larger
    /// than it needs to be costs a cache miss per sample. The grams go into
    /// a bitmap sized for all of them first; its set bits count the distinct
    /// ones (at that occupancy almost no two collide), and it is folded
    /// down when they need fewer bits (a slot is the hash's low bits, so a
    /// smaller bitmap's word `i` is the OR of the words `i` modulo its
    /// length: exactly the bitmap a fill at that size would make). The
    /// coarse copy is folded from it the same way.
    pub fn new(patterns: &[&[u8]]) -> Self {
        let shortest = patterns.iter().map(|p| p.len()).min().unwrap_or(Q).max(Q);
        let step = shortest - Q + 1;
        let bits_for = |grams: usize| {
            (grams.max(1) * 64)
                .next_power_of_two()
                .trailing_zeros()
                .clamp(MIN_BITS_LOG2, MAX_BITS_LOG2)
        };
        let upper_bits_log2 = bits_for(patterns.len() * step);
        let mut bits = Self::fill(patterns, step, upper_bits_log2, hash);
        let distinct: u32 = bits.iter().map(|word| word.count_ones()).sum();
        let bits_log2 = bits_for(distinct as usize).min(upper_bits_log2);
        if bits_log2 < upper_bits_log2 {
            let mut folded = fold(&bits, bits_log2);
            std::mem::swap(&mut bits, &mut folded);
            folded.zeroize();
        }
        let coarse = if bits_log2 > COARSE_BITS_LOG2 {
            fold(&bits, COARSE_BITS_LOG2)
        } else {
            Vec::new()
        };
        let confirm = Self::fill(patterns, step, bits_log2.min(COARSE_BITS_LOG2), second_hash);
        Prefilter {
            step,
            bits,
            coarse,
            confirm,
        }
    }

    /// A bitmap of `2^bits_log2` bits with every pattern's grams at offsets
    /// `0..step`.
    fn fill(patterns: &[&[u8]], step: usize, bits_log2: u32, hash: fn(u32) -> u32) -> Vec<u64> {
        let mut bits = vec![0u64; 1 << (bits_log2 - 6)];
        for pattern in patterns {
            for offset in 0..step {
                let slot = hash(gram_at(pattern, offset)) as usize & ((1 << bits_log2) - 1);
                bits[slot >> 6] |= 1 << (slot & 63);
            }
        }
        bits
    }

    /// The sampling step `k`: samples are taken at multiples of it.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Appends to `hits` every sample position `p` (absolute: `base + index`)
    /// from `first` on whose gram fits in `text` and hits. Returns the first
    /// sample position not examined (its gram does not fit yet).
    pub fn scan(&self, text: &[u8], base: u64, first: u64, hits: &mut Vec<u64>) -> u64 {
        assert!(first >= base, "the first sample is not before the text");
        if first - base > text.len() as u64 {
            // Its gram does not fit yet.
            return first;
        }
        let at = (first - base) as usize;
        // Each probe gets a loop compiled for it.
        if self.coarse.is_empty() {
            self.scan_from(text, base, at, hits, |gram| bit_of(&self.bits, hash(gram)))
        } else {
            self.scan_from(text, base, at, hits, |gram| {
                let hash = hash(gram);
                bit_of(&self.coarse, hash) && bit_of(&self.bits, hash)
            })
        }
    }

    /// The sampling loop of [`Prefilter::scan`] from index `at`, with
    /// `probe` telling whether a gram hits; a hit is then confirmed in the
    /// second bitmap. Eight samples a round, their grams loaded before any
    /// is looked up, keep eight independent lookups in flight (each may
    /// wait on the cache), and a round that misses everywhere (the common
    /// case) costs one branch.
    #[inline(always)]
    fn scan_from(
        &self,
        text: &[u8],
        base: u64,
        mut at: usize,
        hits: &mut Vec<u64>,
        probe: impl Fn(u32) -> bool,
    ) -> u64 {
        const ROUND: usize = 8;
        let step = self.step;
        let confirm = |gram| bit_of(&self.confirm, second_hash(gram));
        let limit = text.len().saturating_sub(Q - 1);
        while at + (ROUND - 1) * step < limit {
            let mut found = 0u32;
            for i in 0..ROUND {
                // SAFETY: `i < ROUND`, and the loop's condition gives
                // `at + (ROUND - 1) * step <= limit - 1 = text.len() - Q`, so
                // `at + i * step + Q <= text.len()`: the gram's four bytes
                // are in `text`, and an unaligned read of them is a plain
                // `u32` read. (`scan` starts it within `text`, so nothing
                // wraps.)
                let gram = unsafe {
                    text.as_ptr()
                        .add(at + i * step)
                        .cast::<u32>()
                        .read_unaligned()
                };
                found |= u32::from(probe(u32::from_le(gram))) << i;
            }
            while found != 0 {
                let i = found.trailing_zeros() as usize;
                if confirm(gram_at(text, at + i * step)) {
                    hits.push(base + (at + i * step) as u64);
                }
                found &= found - 1;
            }
            at += ROUND * step;
        }
        while at < limit {
            let gram = gram_at(text, at);
            if probe(gram) && confirm(gram) {
                hits.push(base + at as u64);
            }
            at += step;
        }
        base + at as u64
    }

    /// Memory used by the bitmaps, in bytes.
    pub fn memory(&self) -> usize {
        (self.bits.len() + self.coarse.len() + self.confirm.len()) * 8
    }
}

impl Drop for Prefilter {
    fn drop(&mut self) {
        self.bits.zeroize();
        self.coarse.zeroize();
        self.confirm.zeroize();
    }
}

impl std::fmt::Debug for Prefilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Prefilter(step {}, {} KiB)",
            self.step,
            self.memory() / 1024
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_covered_by_a_hit_sample() {
        let patterns: [&[u8]; 3] = [b"needle-one", b"second-needle!", b"x-needle-3"];
        let filter = Prefilter::new(&patterns);
        assert_eq!(filter.step(), 7);
        for pattern in patterns {
            for start in 0..20 {
                let mut text = vec![b'.'; start];
                text.extend_from_slice(pattern);
                text.extend_from_slice(b"........");
                let mut hits = Vec::new();
                filter.scan(&text, 0, 0, &mut hits);
                // The covering sample is the first multiple of the step at or after the start.
                let covering = (start as u64).div_ceil(filter.step() as u64) * filter.step() as u64;
                assert!(
                    hits.contains(&covering),
                    "occurrence at {start} not flagged: {hits:?}"
                );
            }
        }
    }

    #[test]
    fn the_bitmap_is_sized_by_the_distinct_grams() {
        // 4,096 patterns that differ only in their first four bytes (as a
        // value's wrapped base64 forms share most grams with its plain form).
        let base = b"0123456789abcdefghijklmnopqrstuv".to_vec();
        let patterns: Vec<Vec<u8>> = (0..4096u32)
            .map(|i| {
                let mut p = base.clone();
                p[..4].copy_from_slice(&i.to_le_bytes());
                p
            })
            .collect();
        let views: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).collect();
        let filter = Prefilter::new(&views);
        // Sized by all 4,096 * 29 grams it would take 2^23 bits (1 MiB);
        // the few thousand distinct ones take 2^19 bits (64 KiB), and so
        // does the confirming bitmap.
        assert_eq!(filter.memory(), 2 * 64 * 1024);
        for pattern in &views {
            let mut hits = Vec::new();
            filter.scan(pattern, 0, 0, &mut hits);
            assert_eq!(hits.first(), Some(&0), "every pattern's own grams hit");
        }
    }

    #[test]
    fn folding_makes_the_bitmap_a_fill_at_that_size_would() {
        // Enough patterns for a coarse copy, sharing most of their grams so
        // that the first bitmap is folded down.
        let patterns: Vec<Vec<u8>> = (0..40_000u32)
            .map(|i| {
                let mut p = u64::from(i)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .to_le_bytes()
                    .to_vec();
                p.extend_from_slice(b"-a-tail-all-patterns-share");
                p
            })
            .collect();
        let views: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).collect();
        let filter = Prefilter::new(&views);
        let log2 = |bits: &[u64]| (bits.len() * 64).trailing_zeros();
        assert!(!filter.coarse.is_empty(), "a coarse copy is made");
        let upper = (views.len() * filter.step * 64)
            .next_power_of_two()
            .trailing_zeros()
            .min(MAX_BITS_LOG2);
        assert!(log2(&filter.bits) < upper, "the first bitmap is folded");
        for bits in [&filter.bits, &filter.coarse] {
            assert!(
                *bits == Prefilter::fill(&views, filter.step, log2(bits), hash),
                "a folded bitmap differs from a fill at its size"
            );
        }
    }

    #[test]
    fn the_confirming_bitmap_drops_almost_every_collision() {
        // A thousand patterns against text that holds none of their grams:
        // the first bitmap alone lets about one sample in a hundred by.
        let patterns: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| format!("zq{i:05}!pattern-{i:05}-zq").into_bytes())
            .collect();
        let views: Vec<&[u8]> = patterns.iter().map(Vec::as_slice).collect();
        let filter = Prefilter::new(&views);
        let letters = |mut i: u32| -> String {
            let mut word = String::new();
            while i > 0 {
                word.push(char::from(b'a' + (i % 26) as u8));
                i /= 26;
            }
            word
        };
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("GET /item/{} ok user=alice\n", letters(i)).into_bytes())
            .collect();
        let samples = text.len() / filter.step();
        let mut hits = Vec::new();
        filter.scan(&text, 0, 0, &mut hits);
        assert!(
            hits.len() * 10_000 < samples,
            "{} hits of {samples} samples",
            hits.len()
        );
    }

    #[test]
    fn text_without_patterns_rarely_hits() {
        let filter = Prefilter::new(&[b"zq9!zq9!zq9!".as_slice()]);
        let text = b"GET /index.html 200 OK user=alice bytes=1234\n".repeat(100);
        let mut hits = Vec::new();
        let next = filter.scan(&text, 0, 0, &mut hits);
        assert!(hits.len() < 5, "{hits:?}");
        assert!(next + Q as u64 > text.len() as u64);
        assert_eq!(next % filter.step() as u64, 0);
    }
}
