//! The push-based streaming masker: one per output stream.
//!
//! [`Masker::push`] takes the next chunk and appends to `out` every byte that
//! is now known to be safe (or its replacement); [`Masker::finish`] flushes the
//! rest at end of stream. The output is the same for any split of the input.
//!
//! How it decides, with all positions absolute in the stream:
//!
//! - `resolved`: every occurrence starting before it is known. The prefilter
//!   advances it over text whose samples miss; the automaton, run from the
//!   root at `resolved`, verifies the windows that hit and the short tail of
//!   the data, and leaves `resolved` at the start of the longest suffix that
//!   is still a prefix of some pattern (`end - depth`).
//! - Occurrences found become intervals; overlapping ones merge (touching ones
//!   do not), remembering the leftmost-then-longest occurrence for the label.
//!   An interval is final once its end is at or before `resolved`: nothing
//!   found later can start inside it.
//! - Output: final intervals become their replacement; bytes before
//!   `resolved` that are in no interval go out as they are; the rest waits.
//!
//! So a byte waits only while it is part of a possible occurrence (a pending
//! interval, or the live prefix at the end), and a prompt with no newline is
//! forwarded at once. Memory is bounded: bytes inside a pending interval are
//! dropped (they will be replaced), so an endless run of overlapping
//! occurrences keeps only its start, end and label.

use std::sync::Arc;

use zeroize::Zeroize;

use super::MaskSet;
use crate::mask::automaton::ROOT;

/// A merged run of overlapping occurrences, not yet written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interval {
    start: u64,
    end: u64,
    /// The leftmost-then-longest occurrence (it starts at `start`).
    label_len: u32,
    label_pattern: u32,
}

impl Interval {
    /// True when `self`'s label occurrence is preferred to one at
    /// (`start`, `len`, `pattern`): leftmost, then longest, then first id.
    fn label_beats(&self, start: u64, len: u32, pattern: u32) -> bool {
        (
            self.start,
            std::cmp::Reverse(self.label_len),
            self.label_pattern,
        ) <= (start, std::cmp::Reverse(len), pattern)
    }
}

/// The data a scan reads: bytes at absolute positions `start..`, either the
/// held buffer or a chunk scanned where it lies.
#[derive(Clone, Copy)]
struct Text<'a> {
    bytes: &'a [u8],
    start: u64,
}

impl Text<'_> {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// The bytes from absolute position `from` to `to`.
    fn between(&self, from: u64, to: u64) -> &[u8] {
        &self.bytes[(from - self.start) as usize..(to - self.start) as usize]
    }
}

/// A streaming masker for one output stream.
pub struct Masker {
    set: Arc<MaskSet>,
    /// Bytes from absolute position `buf_start` to the end of the data.
    buf: Vec<u8>,
    buf_start: u64,
    /// Every occurrence starting before this is known.
    resolved: u64,
    /// Output has been produced for everything before this.
    emitted: u64,
    /// Next prefilter sample position (a multiple of the step).
    next_sample: u64,
    /// Merged, sorted, disjoint intervals ending after `emitted`.
    pending: Vec<Interval>,
    hits: Vec<u64>,
}

impl Masker {
    pub fn new(set: Arc<MaskSet>) -> Self {
        Masker {
            set,
            buf: Vec::new(),
            buf_start: 0,
            resolved: 0,
            emitted: 0,
            next_sample: 0,
            pending: Vec::new(),
            hits: Vec::new(),
        }
    }

    /// Bytes received but not yet written out (replaced or not): the delay
    /// this masker adds right now.
    pub fn held(&self) -> u64 {
        self.end() - self.emitted
    }

    fn end(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    /// Feeds the next chunk; appends what is safe to forward to `out`.
    ///
    /// The chunk is scanned where it lies. Only two short runs are copied:
    /// a bridge (the bytes still held from before, with the chunk's first
    /// bytes behind them, until every start among the held bytes is
    /// settled) and the held tail at the end (a live prefix, a pending
    /// occurrence, the next sample's gram), which waits for the next chunk.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.set.is_empty() {
            out.extend_from_slice(chunk);
            return;
        }
        if chunk.is_empty() {
            return;
        }
        let chunk_start = self.end();
        if !self.buf.is_empty() {
            let mut rest = chunk;
            let mut bridge = self.bridge_len();
            loop {
                let take = rest.len().min(bridge);
                self.buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                self.settle_buf(out, false);
                self.compact();
                if rest.is_empty() {
                    return;
                }
                if self.buf_start >= chunk_start {
                    break;
                }
                // Still holding bytes from before the chunk: bridge on,
                // twice as far each time.
                bridge *= 2;
            }
            // Everything held is a copy of the chunk's own bytes: let go of
            // the copy and read the chunk itself from there on.
            self.buf.zeroize();
            self.buf.clear();
        }
        self.settle(
            Text {
                bytes: chunk,
                start: chunk_start,
            },
            out,
            false,
        );
        let keep_from = self.keep_from(chunk_start);
        self.buf
            .extend_from_slice(&chunk[(keep_from - chunk_start) as usize..]);
        self.buf_start = keep_from;
        self.shrink_buf();
    }

    /// Scans `text` and writes out what is settled: everything before
    /// `resolved`, or with `to_end` (the stream's end) all of it.
    fn settle(&mut self, text: Text<'_>, out: &mut Vec<u8>, to_end: bool) {
        self.scan(text);
        let limit = if to_end { text.end() } else { self.resolved };
        self.emit(text, out, limit);
    }

    /// [`Masker::settle`] over the held bytes in `buf`.
    fn settle_buf(&mut self, out: &mut Vec<u8>, to_end: bool) {
        let buf = std::mem::take(&mut self.buf);
        let text = Text {
            bytes: &buf,
            start: self.buf_start,
        };
        self.settle(text, out, to_end);
        self.buf = buf;
    }

    /// How much of a new chunk to copy behind held bytes: enough for each
    /// start among them to be settled (a live prefix is shorter than the
    /// longest pattern) and for the next sample's gram to be read, so that
    /// what stays held afterwards lies within the chunk.
    fn bridge_len(&self) -> usize {
        self.set.max_pattern_len() + self.step() as usize + super::prefilter::Q
    }

    /// Ends the stream: flushes everything still held (held bytes that were
    /// not part of a complete occurrence go out as they are).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        // Nothing ever came: nothing to look at (nor a compile to wait for).
        if self.set.is_empty() || self.end() == 0 {
            return;
        }
        self.settle_buf(out, true);
        let end = self.end();
        self.buf.zeroize();
        self.buf.clear();
        self.buf_start = end;
        self.resolved = end;
        self.next_sample = end.div_ceil(self.step()) * self.step();
    }

    fn step(&self) -> u64 {
        if self.set.is_empty() {
            1
        } else {
            self.set.prefilter().step() as u64
        }
    }

    /// Finds every occurrence that can be known from the data so far and
    /// advances `resolved` as far as the data allows.
    fn scan(&mut self, text: Text<'_>) {
        let set = Arc::clone(&self.set);
        let prefilter = set.prefilter();
        let step = prefilter.step() as u64;
        let end = text.end();
        let mut hits = std::mem::take(&mut self.hits);
        hits.clear();
        // Starts below this had their samples examined by earlier scans;
        // those still unresolved (a live prefix at the old end of the data)
        // are verified first, since their samples' hits were not kept.
        let carried_frontier = (self.next_sample + 1).saturating_sub(step);
        self.next_sample = prefilter.scan(text.bytes, text.start, self.next_sample, &mut hits);
        // Starts below `frontier` had their sample examined.
        let frontier = (self.next_sample + 1).saturating_sub(step);
        if self.resolved < carried_frontier {
            let (resolved, reached_end) =
                self.run_automaton(text, self.resolved, carried_frontier - 1);
            self.resolved = resolved;
            if reached_end {
                self.hits = hits;
                return;
            }
        }
        for &sample in &hits {
            // Starts in (sample - step, sample] may hold an occurrence; those
            // between the previous window and this one do not.
            let window_start = (sample + 1).saturating_sub(step);
            self.resolved = self.resolved.max(window_start.min(frontier));
            if sample >= self.resolved {
                let (resolved, reached_end) = self.run_automaton(text, self.resolved, sample);
                self.resolved = resolved;
                if reached_end {
                    // That run read every byte to the end of the data: nothing
                    // is left to skip or verify.
                    self.hits = hits;
                    return;
                }
            }
        }
        self.hits = hits;
        // Every window is resolved; starts up to the frontier had their
        // samples examined and missed.
        self.resolved = self.resolved.max(frontier);
        // The unresolved tail (shorter than the shortest pattern): run it to
        // the end so that only a live prefix is held back.
        self.resolved = self.run_automaton(text, self.resolved, end).0;
    }

    /// Runs the automaton from the root at `from`, recording occurrences,
    /// until no live prefix starts at or before `until` (or the data ends).
    /// Returns the new resolved position (the start of the live prefix) and
    /// whether the run reached the end of the data.
    fn run_automaton(&mut self, text: Text<'_>, from: u64, until: u64) -> (u64, bool) {
        let set = Arc::clone(&self.set);
        let automaton = set.automaton();
        let mut state = ROOT;
        let mut after = from;
        for &byte in text.between(from, text.end()) {
            state = automaton.next(state, byte);
            after += 1;
            if automaton.has_match(state) {
                automaton.for_each_match(state, |pattern, len| {
                    self.record(after - u64::from(len), after, len, pattern);
                });
            }
            let live_start = after - u64::from(automaton.live_depth(state));
            if live_start > until {
                return (live_start, false);
            }
        }
        (text.end() - u64::from(automaton.live_depth(state)), true)
    }

    /// Adds the occurrence [start, end) of `pattern`, merging overlaps.
    fn record(&mut self, start: u64, end: u64, len: u32, pattern: u32) {
        let mut merged = Interval {
            start,
            end,
            label_len: len,
            label_pattern: pattern,
        };
        // Intervals are disjoint and sorted; those overlapping [start, end)
        // are contiguous, starting at the first whose end is after `start`.
        let first = self.pending.partition_point(|iv| iv.end <= start);
        let mut last = first;
        while last < self.pending.len() && self.pending[last].start < end {
            let other = self.pending[last];
            if other.label_beats(merged.start, merged.label_len, merged.label_pattern) {
                merged.label_len = other.label_len;
                merged.label_pattern = other.label_pattern;
            }
            merged.start = merged.start.min(other.start);
            merged.end = merged.end.max(other.end);
            last += 1;
        }
        self.pending.splice(first..last, [merged]);
    }

    /// Writes out everything before `limit` that is settled.
    fn emit(&mut self, text: Text<'_>, out: &mut Vec<u8>, limit: u64) {
        let mut done = 0;
        while let Some(&interval) = self.pending.get(done) {
            if interval.end > limit {
                break;
            }
            self.copy_raw(text, out, interval.start);
            out.extend_from_slice(self.set.replacement(interval.label_pattern));
            self.emitted = interval.end;
            done += 1;
        }
        self.pending.drain(..done);
        let stop = self.pending.first().map_or(limit, |iv| iv.start.min(limit));
        self.copy_raw(text, out, stop);
    }

    /// Copies the bytes from `emitted` to `to` (outside any interval).
    fn copy_raw(&mut self, text: Text<'_>, out: &mut Vec<u8>, to: u64) {
        if to > self.emitted {
            out.extend_from_slice(text.between(self.emitted, to));
            self.emitted = to;
        }
    }

    /// Drops bytes no longer needed: before `resolved` (emitted, or inside a
    /// pending interval) and before the next sample's gram.
    fn compact(&mut self) {
        let keep_from = self.keep_from(self.buf_start);
        let drop = (keep_from - self.buf_start) as usize;
        if drop > 0 {
            self.buf[..drop].zeroize();
            self.buf.drain(..drop);
            self.buf_start = keep_from;
        }
        self.shrink_buf();
    }

    /// The first position a later scan or emit can read (not below `floor`,
    /// where the data starts).
    fn keep_from(&self, floor: u64) -> u64 {
        self.resolved.min(self.next_sample).max(floor)
    }

    fn shrink_buf(&mut self) {
        // Keep the allocation from growing without bound after a huge chunk.
        if self.buf.capacity() > (1 << 20) && self.buf.len() < (1 << 16) {
            self.buf.shrink_to(1 << 16);
        }
    }
}

impl Drop for Masker {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker")
            .field("held", &self.held())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}
