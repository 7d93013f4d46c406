//! An Aho-Corasick automaton that reports every occurrence and its state depth.
//!
//! The streaming masker needs two things a packaged matcher does not give:
//! every occurrence of every pattern (overlapping ones included), and, after
//! any byte, the *depth* of the current state: the length of the longest
//! suffix of the input so far that is a prefix of some pattern. The depth is
//! exactly how many trailing bytes might still become part of an occurrence,
//! so it is how many bytes the masker must hold back, and no more.
//!
//! Layout: a trie with failure and dictionary-suffix links, edges in one
//! sorted array (CSR), and a dense 256-entry table for the root. The
//! automaton runs only on the short windows the prefilter flags and on the
//! unresolved tail of each chunk, so this compact layout beats a full DFA
//! (which would not fit in cache for thousands of patterns).
//!
//! Pattern bytes are secret material: the edge labels are zeroized on drop.

use zeroize::Zeroize;

/// A state (node) of the automaton.
pub type StateId = u32;
/// The start state.
pub const ROOT: StateId = 0;
const NONE: u32 = u32::MAX;

/// The automaton. Pattern ids are indexes into the slice given to [`Automaton::new`].
pub struct Automaton {
    root_next: Box<[StateId; 256]>,
    fail: Vec<StateId>,
    depth: Vec<u32>,
    /// Depth of the deepest state on the failure chain (itself included)
    /// that has an outgoing edge: the longest suffix that can still grow
    /// into an occurrence.
    live_depth: Vec<u32>,
    /// The pattern that ends exactly at this node, or `NONE`.
    output: Vec<u32>,
    /// The nearest node on the failure chain that has an output, or `NONE`.
    dict: Vec<StateId>,
    /// Edges of node `n` are `edge_start[n]..edge_start[n + 1]`, sorted by byte.
    edge_start: Vec<u32>,
    edge_bytes: Vec<u8>,
    edge_targets: Vec<StateId>,
    pattern_len: Vec<u32>,
}

impl Automaton {
    /// Builds the automaton. Patterns must be non-empty and distinct.
    pub fn new(patterns: &[&[u8]]) -> Self {
        // Trie construction with per-node sorted child lists.
        let mut children: Vec<Vec<(u8, StateId)>> = vec![Vec::new()];
        let mut output = vec![NONE];
        let mut depth = vec![0u32];
        for (id, pattern) in patterns.iter().enumerate() {
            let mut node = ROOT;
            for &byte in pattern.iter() {
                let list = &children[node as usize];
                node = match list.binary_search_by_key(&byte, |&(b, _)| b) {
                    Ok(i) => list[i].1,
                    Err(i) => {
                        let new = children.len() as StateId;
                        let parent_depth = depth[node as usize];
                        children[node as usize].insert(i, (byte, new));
                        children.push(Vec::new());
                        output.push(NONE);
                        depth.push(parent_depth + 1);
                        new
                    }
                };
            }
            if output[node as usize] == NONE {
                output[node as usize] = id as u32;
            }
        }
        let count = children.len();
        let child = |node: StateId, byte: u8| -> Option<StateId> {
            let list = &children[node as usize];
            list.binary_search_by_key(&byte, |&(b, _)| b)
                .ok()
                .map(|i| list[i].1)
        };

        // Breadth-first: failure links and dictionary links.
        let mut fail = vec![ROOT; count];
        let mut dict = vec![NONE; count];
        let mut queue = std::collections::VecDeque::with_capacity(count);
        for &(_, next) in &children[ROOT as usize] {
            queue.push_back(next);
        }
        while let Some(node) = queue.pop_front() {
            for &(byte, next) in &children[node as usize] {
                // A depth-1 node fails to the root; deeper ones follow their
                // parent's failure chain until some state has this edge.
                if node != ROOT {
                    let mut f = fail[node as usize];
                    fail[next as usize] = loop {
                        if let Some(t) = child(f, byte) {
                            break t;
                        }
                        if f == ROOT {
                            break ROOT;
                        }
                        f = fail[f as usize];
                    };
                }
                let fl = fail[next as usize] as usize;
                dict[next as usize] = if output[fl] != NONE {
                    fl as StateId
                } else {
                    dict[fl]
                };
                queue.push_back(next);
            }
        }

        // Breadth-first order visits a node's failure target (shallower) first.
        let mut live_depth = vec![0u32; count];
        let mut order = Vec::with_capacity(count);
        order.push(ROOT);
        let mut i = 0;
        while i < order.len() {
            let node = order[i];
            order.extend(children[node as usize].iter().map(|&(_, next)| next));
            i += 1;
        }
        for &node in &order[1..] {
            live_depth[node as usize] = if children[node as usize].is_empty() {
                live_depth[fail[node as usize] as usize]
            } else {
                depth[node as usize]
            };
        }

        let mut root_next = Box::new([ROOT; 256]);
        for &(byte, next) in &children[ROOT as usize] {
            root_next[byte as usize] = next;
        }
        let mut edge_start = Vec::with_capacity(count + 1);
        let total: usize = children.iter().map(Vec::len).sum();
        let mut edge_bytes = Vec::with_capacity(total);
        let mut edge_targets = Vec::with_capacity(total);
        for list in &mut children {
            edge_start.push(edge_bytes.len() as u32);
            for &(byte, next) in list.iter() {
                edge_bytes.push(byte);
                edge_targets.push(next);
            }
            list.zeroize();
        }
        edge_start.push(edge_bytes.len() as u32);
        Automaton {
            root_next,
            fail,
            depth,
            live_depth,
            output,
            dict,
            edge_start,
            edge_bytes,
            edge_targets,
            pattern_len: patterns.iter().map(|p| p.len() as u32).collect(),
        }
    }

    #[inline]
    fn child(&self, node: StateId, byte: u8) -> Option<StateId> {
        let start = self.edge_start[node as usize] as usize;
        let end = self.edge_start[node as usize + 1] as usize;
        let bytes = &self.edge_bytes[start..end];
        if bytes.len() <= 8 {
            bytes
                .iter()
                .position(|&b| b == byte)
                .map(|i| self.edge_targets[start + i])
        } else {
            bytes
                .binary_search(&byte)
                .ok()
                .map(|i| self.edge_targets[start + i])
        }
    }

    /// The state after reading `byte` in `state`.
    #[inline]
    pub fn next(&self, mut state: StateId, byte: u8) -> StateId {
        loop {
            if state == ROOT {
                return self.root_next[byte as usize];
            }
            if let Some(next) = self.child(state, byte) {
                return next;
            }
            state = self.fail[state as usize];
        }
    }

    /// Length of the longest input suffix that is a prefix of some pattern.
    #[inline]
    pub fn depth(&self, state: StateId) -> u32 {
        self.depth[state as usize]
    }

    /// Length of the longest input suffix that can still grow into an
    /// occurrence (a complete pattern that no longer pattern extends is not live).
    #[inline]
    pub fn live_depth(&self, state: StateId) -> u32 {
        self.live_depth[state as usize]
    }

    /// True when some pattern ends at this state.
    #[inline]
    pub fn has_match(&self, state: StateId) -> bool {
        self.output[state as usize] != NONE || self.dict[state as usize] != NONE
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
        self.depth.len()
    }
}

impl Drop for Automaton {
    fn drop(&mut self) {
        self.edge_bytes.zeroize();
        self.root_next.zeroize();
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
