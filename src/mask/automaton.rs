//! An Aho-Corasick automaton that reports every occurrence and its state depth.
//!
//! The streaming masker needs two things a packaged matcher does not give:
//! every occurrence of every pattern (overlapping ones included), and, after
//! any byte, the *depth* of the current state: the length of the longest
//! suffix of the input so far that is a prefix of some pattern. The depth is
//! exactly how many trailing bytes might still become part of an occurrence,
//! so it is how many bytes the masker must hold back, and no more.
//!
//! Layout: a trie with failure and dictionary-suffix links, numbered
//! breadth-first so that each state's children are consecutive states (no
//! edge array), and dense 256-entry transition rows for the root and its
//! children (at most 257 rows). What a step reads of a deeper state (its
//! first child, failure link, live depth and whether a pattern ends there)
//! is packed in one 12-byte record, beside the record whose first child
//! ends its children: a step touches the line (rarely two) of the state's
//! record and one of its edge labels. The automaton runs only on the short
//! windows the prefilter flags and on the unresolved tail of each chunk, so
//! this compact layout beats a full DFA (which would not fit in cache for
//! thousands of patterns).
//!
//! Pattern bytes are secret material: the edge labels are zeroized on drop.

use zeroize::Zeroize;

/// A state (node) of the automaton.
pub type StateId = u32;
/// The start state.
pub const ROOT: StateId = 0;
const NONE: u32 = u32::MAX;

/// The automaton. Pattern ids are indexes into the slice given to [`Automaton::new`].
///
/// States are numbered breadth-first, and the children of a state are
/// consecutive states in byte order: the children of `n` are the states
/// `states[n].first_child..states[n + 1].first_child`, and `label[c]` is
/// the byte that leads to `c`. So the trie needs no edge array, and
/// building it walks its arrays in order.
pub struct Automaton {
    /// Full transition rows (failures resolved) for the root and the
    /// states one byte deep: row `n` is `dense[256 * n..]`. These states
    /// have the most children, where a search of the edge labels would cost
    /// a mispredicted branch or two a byte; deeper states have few.
    dense: Vec<StateId>,
    /// The states with a dense row: the root and its children, `0..this`.
    dense_states: u32,
    /// One record per state and one more (whose first child ends the last
    /// state's children).
    states: Vec<StateRecord>,
    /// The first state of each depth, and the state count last: states
    /// are numbered breadth-first, so a state's depth is where it falls.
    level_start: Vec<StateId>,
    /// The pattern that ends exactly at this node, or `NONE`.
    output: Vec<u32>,
    /// The nearest node on the failure chain that has an output, or `NONE`.
    dict: Vec<StateId>,
    label: Vec<u8>,
    pattern_len: Vec<u32>,
}

/// What a step reads of a state.
#[derive(Clone, Copy)]
#[repr(C)]
struct StateRecord {
    /// Its children are the states from this to the next record's.
    first_child: StateId,
    fail: StateId,
    /// The depth of the deepest state on the failure chain (itself
    /// included) that has an outgoing edge: the longest suffix that can
    /// still grow into an occurrence; with [`MATCH_BIT`] set when some
    /// pattern ends at this state.
    live: u32,
}

/// In [`StateRecord::live`]: some pattern ends here.
const MATCH_BIT: u32 = 1 << 31;

/// The child of `node` by `byte` in a breadth-first trie (see [`Automaton`]).
#[inline]
fn child_in(states: &[StateRecord], label: &[u8], node: StateId, byte: u8) -> Option<StateId> {
    let start = states[node as usize].first_child as usize;
    let end = states[node as usize + 1].first_child as usize;
    child_between(label, start, end, byte)
}

/// The state among `start..end` (one state's children) reached by `byte`.
#[inline]
fn child_between(label: &[u8], start: usize, end: usize, byte: u8) -> Option<StateId> {
    let bytes = &label[start..end];
    let found = if bytes.len() <= 8 {
        bytes.iter().position(|&b| b == byte)
    } else {
        bytes.binary_search(&byte).ok()
    };
    found.map(|i| (start + i) as StateId)
}

/// From this many states on, the build makes full rows for the states two
/// bytes deep (see [`Automaton::build_with`]).
const SECOND_ROWS_STATES: usize = 64 * 1024;

/// From this many states of one depth on, their links are made on two threads.
const PARALLEL_LINK_STATES: usize = 32 * 1024;

/// What the links of one depth's states are made from: the states above
/// it, done (see [`Automaton::new`]).
struct Linker<'a> {
    done: &'a [StateRecord],
    done_dict: &'a [u32],
    /// The first child of the state right after `done` (the first of the
    /// depth being linked): where the children of `done`'s last state end.
    first_child_after_done: StateId,
    label: &'a [u8],
    /// The depth being linked.
    depth: u32,
    output: &'a [u32],
    dense: &'a [StateId],
    dense_states: u32,
    /// Full rows of the states two bytes deep, `second_states`, when made.
    second_rows: &'a [StateId],
    second_states: std::ops::Range<StateId>,
}

impl Linker<'_> {
    fn first_child(&self, node: usize) -> usize {
        self.done
            .get(node)
            .map_or(self.first_child_after_done, |r| r.first_child) as usize
    }

    /// The child of `node` (done) by `byte`, as [`child_in`] finds it.
    fn child(&self, node: StateId, byte: u8) -> Option<StateId> {
        let start = self.done[node as usize].first_child as usize;
        child_between(self.label, start, self.first_child(node as usize + 1), byte)
    }

    /// Links the children of `parents`, the states from `first` on, whose
    /// records are `states` (the record after them starts its children at
    /// `end_first_child`) and whose dictionary links are `dict`.
    fn link(
        &self,
        parents: std::ops::Range<usize>,
        first: usize,
        states: &mut [StateRecord],
        end_first_child: StateId,
        dict: &mut [u32],
    ) {
        for parent in parents {
            for c in self.done[parent].first_child as usize..self.first_child(parent + 1) {
                let byte = self.label[c];
                // A depth-1 state fails to the root; deeper ones follow their
                // parent's failure chain until some state has this edge.
                let target = if parent == ROOT as usize {
                    ROOT
                } else {
                    let mut f = self.done[parent].fail;
                    loop {
                        if f < self.dense_states {
                            break self.dense[256 * f as usize + byte as usize];
                        }
                        if self.second_states.contains(&f) {
                            let row = (f - self.second_states.start) as usize;
                            break self.second_rows[256 * row + byte as usize];
                        }
                        if let Some(t) = self.child(f, byte) {
                            break t;
                        }
                        f = self.done[f as usize].fail;
                    }
                };
                let i = c - first;
                let t = target as usize;
                dict[i] = if self.output[t] != NONE {
                    target
                } else {
                    self.done_dict[t]
                };
                let next_first_child = states.get(i + 1).map_or(end_first_child, |r| r.first_child);
                let live_depth = if states[i].first_child == next_first_child {
                    self.done[t].live & !MATCH_BIT
                } else {
                    self.depth
                };
                let matches = self.output[c] != NONE || dict[i] != NONE;
                states[i].fail = target;
                states[i].live = live_depth | if matches { MATCH_BIT } else { 0 };
            }
        }
    }
}

impl Automaton {
    /// Builds the automaton. Patterns must be non-empty; one given twice is
    /// reported under its lower id.
    ///
    /// In linear time and in order: the pattern ids are sorted by their
    /// bytes, so the patterns below any state are one run of that order and
    /// its children's runs follow each other in byte order. The trie is then
    /// written in one pass over that order, each depth's states numbered
    /// after the one above (breadth-first), and the failure links computed
    /// a depth at a time, where a state's failure target (shallower, so
    /// numbered earlier) is done.
    /// So the links of one depth depend only on the depths above it, and
    /// a large depth (random secrets make 30 of 50,000 states each) is
    /// linked on two threads, each half of it.
    pub fn new(patterns: &[&[u8]]) -> Self {
        // A depth has at most a state a pattern.
        let two_threads = patterns.len() >= PARALLEL_LINK_STATES && super::cores() >= 2;
        let parallel_from = if two_threads {
            PARALLEL_LINK_STATES
        } else {
            usize::MAX
        };
        Self::build_with(patterns, parallel_from, SECOND_ROWS_STATES)
    }

    /// [`Automaton::new`], linking a depth of at least `parallel_from`
    /// states on two threads, and making the build's rows of the states
    /// two bytes deep from `second_rows_from` states on.
    fn build_with(patterns: &[&[u8]], parallel_from: usize, second_rows_from: usize) -> Self {
        // Sorted by each pattern's first eight bytes (zero-padded, big-endian:
        // the same order) and only ties by the whole pattern: most compares
        // touch neither pattern's heap bytes. The prefixes are secret
        // material too, wiped when dropped.
        let prefix: zeroize::Zeroizing<Vec<u64>> = zeroize::Zeroizing::new(
            patterns
                .iter()
                .map(|p| {
                    let mut key = [0u8; 8];
                    let n = p.len().min(8);
                    key[..n].copy_from_slice(&p[..n]);
                    let value = u64::from_be_bytes(key);
                    key.zeroize();
                    value
                })
                .collect(),
        );
        let mut sorted: Vec<u32> = (0..patterns.len() as u32).collect();
        sorted.sort_unstable_by(|&a, &b| {
            prefix[a as usize]
                .cmp(&prefix[b as usize])
                .then_with(|| patterns[a as usize].cmp(patterns[b as usize]))
        });
        drop(prefix);
        let total_bytes: usize = patterns.iter().map(|p| p.len()).sum();
        // The patterns end to end in sorted order (secret material, wiped
        // when dropped; sized once, so never reallocated): each level reads
        // them in order instead of chasing a pointer per pattern.
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(total_bytes));
        let mut starts: Vec<usize> = Vec::with_capacity(sorted.len() + 1);
        for &id in &sorted {
            starts.push(bytes.len());
            bytes.extend_from_slice(patterns[id as usize]);
        }
        starts.push(bytes.len());
        let len_of = |i: usize| starts[i + 1] - starts[i];
        let byte_of = |i: usize, at: usize| bytes[starts[i] + at];
        // Each pattern adds the states of its bytes past the prefix it
        // shares with the one before it in sorted order (`shared`). A
        // depth's states, numbered in sorted order, are then numbered
        // breadth-first: so counting them first (a difference array over
        // the patterns) gives every depth's first number, and one pass over
        // the patterns makes the whole trie, each depth's states written in
        // order.
        let shared = |i: usize| -> usize {
            if i == 0 {
                return 0;
            }
            let (before, this) = (
                &bytes[starts[i - 1]..starts[i]],
                &bytes[starts[i]..starts[i + 1]],
            );
            before.iter().zip(this).take_while(|(a, b)| a == b).count()
        };
        let max_len = (0..sorted.len()).map(len_of).max().unwrap_or(0);
        let mut per_depth = vec![0isize; max_len + 2];
        for i in 0..sorted.len() {
            per_depth[shared(i) + 1] += 1;
            per_depth[len_of(i) + 1] -= 1;
        }
        // The first state of each depth (the states of depth `d` are
        // `level_start[d]..level_start[d + 1]`), the state count last.
        let mut level_start: Vec<usize> = Vec::with_capacity(max_len + 2);
        level_start.extend([0, 1]);
        let mut running = 0isize;
        for &change in &per_depth[1..=max_len] {
            running += change;
            level_start.push(level_start.last().copied().unwrap_or(0) + running as usize);
        }
        let count = level_start[max_len + 1];
        let mut label = vec![0u8; count];
        let mut output = vec![NONE; count];
        let mut states = vec![
            StateRecord {
                first_child: count as StateId,
                fail: ROOT,
                live: 0,
            };
            count + 1
        ];
        // The next number of each depth, and the states on the current
        // pattern's path.
        let mut next: Vec<usize> = level_start.clone();
        next.push(count);
        let mut path: Vec<StateId> = vec![ROOT; max_len + 1];
        states[ROOT as usize].first_child = next[1] as StateId;
        for (i, &id_of_pattern) in sorted.iter().enumerate() {
            let len = len_of(i);
            for d in shared(i) + 1..=len {
                let id = next[d];
                next[d] += 1;
                label[id] = byte_of(i, d - 1);
                // Its children, numbered after every state of the next
                // depth that sorts before it.
                states[id].first_child = next[d + 1] as StateId;
                path[d] = id as StateId;
            }
            // Where it ends (a pattern given twice ends at one state).
            let end = path[len] as usize;
            if output[end] == NONE || id_of_pattern < output[end] {
                output[end] = id_of_pattern;
            }
        }
        drop((sorted, starts, bytes));

        let mut root_next = Box::new([ROOT; 256]);
        for c in states[0].first_child..states[1].first_child {
            root_next[label[c as usize] as usize] = c;
        }
        // The dense rows: the root's, and its children's (the states right
        // after it), whose failure link is the root. Made before the
        // failure links, which end on these states most of the time.
        let dense_states = states[1].first_child;
        let mut dense = Vec::with_capacity(256 * dense_states as usize);
        dense.extend_from_slice(&root_next[..]);
        for state in 1..dense_states {
            dense.extend((0..=255u8).map(|byte| {
                child_in(&states, &label, state, byte).unwrap_or(root_next[byte as usize])
            }));
        }
        root_next.zeroize();
        // Failure, dictionary and liveness, a depth at a time: a state's
        // failure target is shallower, so each depth reads only what the
        // ones above it wrote, and a large depth is split between two
        // threads (the prefilter's core is free by then).
        let mut dict = vec![NONE; count];
        // Full rows for the states two bytes deep too, for the build only:
        // most failure chains pass through one of them, where a search of
        // its edge labels cost a mispredicted branch or two. Made once
        // their own links are (after depth 2).
        let mut second_rows: zeroize::Zeroizing<Vec<StateId>> = zeroize::Zeroizing::new(Vec::new());
        let mut second_states = 0..0;
        for d in 1..level_start.len() - 1 {
            if d == 3 && count >= second_rows_from {
                second_states = level_start[2] as StateId..level_start[3] as StateId;
                second_rows.reserve_exact(256 * second_states.len());
                for state in second_states.clone() {
                    let fail = states[state as usize].fail as usize;
                    second_rows.extend((0..=255u8).map(|byte| {
                        child_in(&states, &label, state, byte)
                            .unwrap_or(dense[256 * fail + byte as usize])
                    }));
                }
            }
            let (parents, split, after) = (level_start[d - 1], level_start[d], level_start[d + 1]);
            // The first child of the state after this depth's last one.
            let end_first_child = states[after].first_child;
            let (done, rest) = states.split_at_mut(split);
            let (done_dict, rest_dict) = dict.split_at_mut(split);
            let linker = Linker {
                done,
                done_dict,
                first_child_after_done: after as StateId,
                label: &label,
                depth: d as u32,
                output: &output,
                dense: &dense,
                dense_states,
                second_rows: &second_rows,
                second_states: second_states.clone(),
            };
            let (level, level_dict) = (&mut rest[..after - split], &mut rest_dict[..after - split]);
            if after - split >= parallel_from {
                let middle = (parents + split) / 2;
                let cut = done[middle].first_child as usize;
                let (first, second) = level.split_at_mut(cut - split);
                let (first_dict, second_dict) = level_dict.split_at_mut(cut - split);
                let first_end = second.first().map_or(end_first_child, |r| r.first_child);
                std::thread::scope(|scope| {
                    scope.spawn(|| {
                        linker.link(parents..middle, split, first, first_end, first_dict)
                    });
                    linker.link(middle..split, cut, second, end_first_child, second_dict);
                });
            } else {
                linker.link(parents..split, split, level, end_first_child, level_dict);
            }
        }
        Automaton {
            dense,
            dense_states,
            states,
            level_start: level_start.iter().map(|&s| s as StateId).collect(),
            output,
            dict,
            label,
            pattern_len: patterns.iter().map(|p| p.len() as u32).collect(),
        }
    }

    #[inline]
    fn child(&self, node: StateId, byte: u8) -> Option<StateId> {
        child_in(&self.states, &self.label, node, byte)
    }

    /// The state after reading `byte` in `state`.
    #[inline]
    pub fn next(&self, mut state: StateId, byte: u8) -> StateId {
        loop {
            if state < self.dense_states {
                return self.dense[256 * state as usize + byte as usize];
            }
            if let Some(next) = self.child(state, byte) {
                return next;
            }
            state = self.states[state as usize].fail;
        }
    }

    /// Length of the longest input suffix that is a prefix of some pattern.
    #[inline]
    pub fn depth(&self, state: StateId) -> u32 {
        (self.level_start.partition_point(|&start| start <= state) - 1) as u32
    }

    /// Length of the longest input suffix that can still grow into an
    /// occurrence (a complete pattern that no longer pattern extends is not live).
    #[inline]
    pub fn live_depth(&self, state: StateId) -> u32 {
        self.states[state as usize].live & !MATCH_BIT
    }

    /// True when some pattern ends at this state.
    #[inline]
    pub fn has_match(&self, state: StateId) -> bool {
        self.states[state as usize].live & MATCH_BIT != 0
    }

    /// Calls `f(pattern id, pattern length)` for every pattern ending at this state.
    #[inline]
    pub fn for_each_match(&self, state: StateId, mut f: impl FnMut(u32, u32)) {
        let mut node = state;
        if self.output[node as usize] == NONE {
            node = self.dict[node as usize];
        }
        while node != NONE {
            let id = self.output[node as usize];
            f(id, self.pattern_len[id as usize]);
            node = self.dict[node as usize];
        }
    }

    /// Number of states (for memory estimates).
    pub fn state_count(&self) -> usize {
        self.label.len()
    }
}

impl Drop for Automaton {
    fn drop(&mut self) {
        self.label.zeroize();
        self.dense.zeroize();
    }
}

impl std::fmt::Debug for Automaton {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Automaton({} states, {} patterns)",
            self.state_count(),
            self.pattern_len.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_made_on_two_threads_and_through_full_rows_are_the_links_made_by_search() {
        // Pseudo-random patterns over a small alphabet (long failure chains
        // that cross the cut between the two threads) and a larger one
        // (states two bytes deep with few children, so that the full rows
        // fall back to their failure's row).
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for alphabet in [&b"abcd"[..], b"abcdefghijklmnopqrstuvwxyz"] {
            let patterns: Vec<Vec<u8>> = (0..3000)
                .map(|_| {
                    let len = 4 + (next() % 12) as usize;
                    (0..len)
                        .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                        .collect()
                })
                .collect();
            let views: Vec<&[u8]> = patterns.iter().map(|p| p.as_slice()).collect();
            let one = Automaton::build_with(&views, usize::MAX, usize::MAX);
            let two = Automaton::build_with(&views, 1, 1);
            assert!(one.state_count() > 10_000);
            let records = |a: &Automaton| -> Vec<(u32, u32, u32)> {
                a.states
                    .iter()
                    .map(|r| (r.first_child, r.fail, r.live))
                    .collect()
            };
            assert!(records(&one) == records(&two), "{}", alphabet.len());
            assert!(one.dict == two.dict, "{}", alphabet.len());
            assert!(one
                .states
                .iter()
                .skip(200)
                .any(|r| r.fail > one.dense_states));
        }
    }

    /// Every (start, end, id) found by stepping through `text` from the root.
    fn all_matches(automaton: &Automaton, text: &[u8]) -> Vec<(usize, usize, u32)> {
        let mut state = ROOT;
        let mut found = Vec::new();
        for (i, &b) in text.iter().enumerate() {
            state = automaton.next(state, b);
            automaton.for_each_match(state, |id, len| {
                found.push((i + 1 - len as usize, i + 1, id))
            });
        }
        found.sort();
        found
    }

    #[test]
    fn finds_overlapping_and_nested_occurrences() {
        let patterns: [&[u8]; 4] = [b"abcdef", b"bcde", b"cd", b"he"];
        let automaton = Automaton::new(&patterns);
        let found = all_matches(&automaton, b"xabcdefhe");
        assert_eq!(found, vec![(1, 7, 0), (2, 6, 1), (3, 5, 2), (7, 9, 3)]);
    }

    #[test]
    fn self_overlapping_patterns() {
        let automaton = Automaton::new(&[b"aa".as_slice()]);
        assert_eq!(
            all_matches(&automaton, b"aaaa"),
            vec![(0, 2, 0), (1, 3, 0), (2, 4, 0)]
        );
    }

    #[test]
    fn depth_is_the_longest_live_prefix() {
        let automaton = Automaton::new(&[b"pa55pa55word".as_slice()]);
        let mut state = ROOT;
        let mut depths = Vec::new();
        for &b in b"xpa55pa5" {
            state = automaton.next(state, b);
            depths.push(automaton.depth(state));
        }
        assert_eq!(depths, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        // "pa55pa55" then "p": the live prefix restarts inside the text.
        for &b in b"5p" {
            state = automaton.next(state, b);
        }
        assert_eq!(
            automaton.depth(state),
            5,
            "the suffix `pa55p` is still live"
        );
    }

    #[test]
    fn a_complete_pattern_that_cannot_grow_is_not_live() {
        let automaton = Automaton::new(&[b"abcd".as_slice(), b"cdxy".as_slice()]);
        let mut state = ROOT;
        for &b in b"zabcd" {
            state = automaton.next(state, b);
        }
        assert_eq!(automaton.depth(state), 4);
        assert_eq!(
            automaton.live_depth(state),
            2,
            "`cd` may still become `cdxy`"
        );
        let alone = Automaton::new(&[b"abcd".as_slice()]);
        let mut state = ROOT;
        for &b in b"abcd" {
            state = alone.next(state, b);
        }
        assert_eq!(alone.live_depth(state), 0);
    }
}
