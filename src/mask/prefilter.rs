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
//! of text. The bitmap is sized to ~1/64 occupancy (capped at 8 MiB, which
//! stays in this class of machine's L3), so a miss is the common case even
//! with ten thousand secrets. A bitmap larger than 1 MiB gets a 1 MiB coarse
//! copy in front (the same hash, fewer bits: a superset), which lives in L2
//! and answers most samples without touching L3. Both store hashes only,
//! never pattern bytes.

/// Bytes per sampled gram.
pub const Q: usize = 4;
const MIN_BITS_LOG2: u32 = 16;
const MAX_BITS_LOG2: u32 = 26;
/// 1 MiB: the coarse bitmap mostly stays in L2.
const COARSE_BITS_LOG2: u32 = 23;

/// The bitmaps and the sampling step.
pub struct Prefilter {
    step: usize,
    bits_log2: u32,
    bits: Vec<u64>,
    /// For large bitmaps: the same grams at `COARSE_BITS_LOG2` bits, or empty.
    coarse: Vec<u64>,
}

#[inline]
fn hash(gram: u32) -> u32 {
    gram.wrapping_mul(0x9E37_79B1)
}

#[inline]
fn gram_at(text: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([text[at], text[at + 1], text[at + 2], text[at + 3]])
}

impl Prefilter {
    /// Builds the filter for patterns that are all at least `Q` bytes long.
    pub fn new(patterns: &[&[u8]]) -> Self {
        let shortest = patterns.iter().map(|p| p.len()).min().unwrap_or(Q).max(Q);
        let step = shortest - Q + 1;
        let grams: usize = patterns.len() * step;
        let bits_log2 = (grams.max(1) * 64)
            .next_power_of_two()
            .trailing_zeros()
            .clamp(MIN_BITS_LOG2, MAX_BITS_LOG2);
        let coarse_words = if bits_log2 > COARSE_BITS_LOG2 {
            1 << (COARSE_BITS_LOG2 - 6)
        } else {
            0
        };
        let mut filter = Prefilter {
            step,
            bits_log2,
            bits: vec![0u64; 1 << (bits_log2 - 6)],
            coarse: vec![0u64; coarse_words],
        };
        for pattern in patterns {
            for offset in 0..step {
                let hash = hash(gram_at(pattern, offset));
                let slot = (hash >> (32 - bits_log2)) as usize;
                filter.bits[slot >> 6] |= 1 << (slot & 63);
                if coarse_words > 0 {
                    let slot = (hash >> (32 - COARSE_BITS_LOG2)) as usize;
                    filter.coarse[slot >> 6] |= 1 << (slot & 63);
                }
            }
        }
        filter
    }

    /// The sampling step `k`: samples are taken at multiples of it.
    pub fn step(&self) -> usize {
        self.step
    }

    /// True when the `Q`-gram at `text[at..]` may belong to a pattern.
    #[inline]
    pub fn hit(&self, text: &[u8], at: usize) -> bool {
        let hash = hash(gram_at(text, at));
        if !self.coarse.is_empty() {
            let slot = (hash >> (32 - COARSE_BITS_LOG2)) as usize;
            if self.coarse[slot >> 6] & (1 << (slot & 63)) == 0 {
                return false;
            }
        }
        let slot = (hash >> (32 - self.bits_log2)) as usize;
        self.bits[slot >> 6] & (1 << (slot & 63)) != 0
    }

    /// Appends to `hits` every sample position `p` (absolute: `base + index`)
    /// from `first` on whose gram fits in `text` and hits. Returns the first
    /// sample position not examined (its gram does not fit yet).
    pub fn scan(&self, text: &[u8], base: u64, first: u64, hits: &mut Vec<u64>) -> u64 {
        let step = self.step;
        let mut at = (first - base) as usize;
        let limit = text.len().saturating_sub(Q - 1);
        // Four independent samples per round keep several loads in flight.
        while at + 3 * step < limit {
            let h0 = self.hit(text, at);
            let h1 = self.hit(text, at + step);
            let h2 = self.hit(text, at + 2 * step);
            let h3 = self.hit(text, at + 3 * step);
            if h0 | h1 | h2 | h3 {
                for (i, h) in [h0, h1, h2, h3].into_iter().enumerate() {
                    if h {
                        hits.push(base + (at + i * step) as u64);
                    }
                }
            }
            at += 4 * step;
        }
        while at < limit {
            if self.hit(text, at) {
                hits.push(base + at as u64);
            }
            at += step;
        }
        base + at as u64
    }

    /// Memory used by the bitmap, in bytes.
    pub fn memory(&self) -> usize {
        (self.bits.len() + self.coarse.len()) * 8
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
