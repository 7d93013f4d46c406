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
        // The trie, as first-child / next-sibling lists in flat arrays (no
        // allocation per node: most nodes have one child), with the root's
        // children in a dense table.
        let mut root_next = Box::new([NONE; 256]);
        let mut first_child = vec![NONE];
        let mut next_sibling = vec![NONE];
        let mut label = vec![0u8];
        let mut output = vec![NONE];
        let mut depth = vec![0u32];
        let total_bytes: usize = patterns.iter().map(|p| p.len()).sum();
        for list in [&mut first_child, &mut next_sibling, &mut output] {
            list.reserve(total_bytes);
        }
        label.reserve(total_bytes);
        depth.reserve(total_bytes);
        let find = |root_next: &[StateId; 256],
                    first_child: &[StateId],
                    next_sibling: &[StateId],
                    label: &[u8],
                    node: StateId,
                    byte: u8|
         -> Option<StateId> {
            if node == ROOT {
                let next = root_next[byte as usize];
                return (next != NONE).then_some(next);
            }
            let mut c = first_child[node as usize];
            while c != NONE {
                if label[c as usize] == byte {
                    return Some(c);
                }
                c = next_sibling[c as usize];
            }
            None
        };
        for (id, pattern) in patterns.iter().enumerate() {
            let mut node = ROOT;
            for &byte in pattern.iter() {
                node = match find(&root_next, &first_child, &next_sibling, &label, node, byte) {
                    Some(next) => next,
                    None => {
                        let new = label.len() as StateId;
                        label.push(byte);
                        first_child.push(NONE);
                        output.push(NONE);
                        depth.push(depth[node as usize] + 1);
                        if node == ROOT {
                            next_sibling.push(NONE);
                            root_next[byte as usize] = new;
                        } else {
                            next_sibling.push(first_child[node as usize]);
                            first_child[node as usize] = new;
                        }
                        new
                    }
                };
            }
            if output[node as usize] == NONE {
                output[node as usize] = id as u32;
            }
        }
        let count = label.len();
        // The children of `node`, sorted by byte, into `out`.
        let children_of = |node: StateId, out: &mut Vec<(u8, StateId)>| {
            out.clear();
            if node == ROOT {
                out.extend(
                    root_next
                        .iter()
                        .enumerate()
                        .filter(|&(_, &next)| next != NONE)
                        .map(|(byte, &next)| (byte as u8, next)),
                );
            } else {
                let mut c = first_child[node as usize];
                while c != NONE {
                    out.push((label[c as usize], c));
                    c = next_sibling[c as usize];
                }
                out.sort_unstable_by_key(|&(byte, _)| byte);
            }
        };
        let child = |node: StateId, byte: u8| {
            find(&root_next, &first_child, &next_sibling, &label, node, byte)
        };

        // Breadth-first: failure links and dictionary links. The BFS order
        // also visits a node's failure target (shallower) before the node.
        let mut fail = vec![ROOT; count];
        let mut dict = vec![NONE; count];
        let mut order: Vec<StateId> = Vec::with_capacity(count);
        let mut edges = Vec::new();
        order.push(ROOT);
        let mut i = 0;
        while i < order.len() {
            let node = order[i];
            i += 1;
            let mut c = if node == ROOT {
                NONE
            } else {
                first_child[node as usize]
            };
            if node == ROOT {
                children_of(ROOT, &mut edges);
            }
            let mut root_edges = edges.iter();
            loop {
                let (byte, next) = if node == ROOT {
                    match root_edges.next() {
                        Some(&edge) => edge,
                        None => break,
                    }
                } else {
                    if c == NONE {
                        break;
                    }
                    let edge = (label[c as usize], c);
                    c = next_sibling[c as usize];
                    edge
                };
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
                order.push(next);
            }
        }

        let mut live_depth = vec![0u32; count];
        for &node in &order[1..] {
            live_depth[node as usize] = if first_child[node as usize] == NONE {
                live_depth[fail[node as usize] as usize]
            } else {
                depth[node as usize]
            };
        }

        let mut edge_start = Vec::with_capacity(count + 1);
        let mut edge_bytes = Vec::with_capacity(count);
        let mut edge_targets = Vec::with_capacity(count);
        for node in 0..count as StateId {
            edge_start.push(edge_bytes.len() as u32);
            children_of(node, &mut edges);
            for &(byte, next) in &edges {
                edge_bytes.push(byte);
                edge_targets.push(next);
            }
        }
        edge_start.push(edge_bytes.len() as u32);
        edges.zeroize();
        label.zeroize();
        for slot in root_next.iter_mut() {
            if *slot == NONE {
                *slot = ROOT;
            }
        }
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
