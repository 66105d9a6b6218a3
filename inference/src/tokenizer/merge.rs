//! Pair merging in priority order, shared by both BPE flavours. The symbols form a doubly
//! linked list over a vector and the mergeable adjacent pairs wait in a max-heap; a merge
//! queues at most two new pairs (with its left and right neighbours), and entries a merge made
//! stale are skipped when they come out. A text of n symbols therefore costs at most 3n pair
//! lookups and heap operations, O(n log n), where rescanning the sequence after every merge
//! costs O(n^2). sentencepiece and llama.cpp merge this way.

use alloc::collections::BinaryHeap;
use core::cmp::Reverse;

use alloc::vec::Vec;

/// Work done by an encode, counted so tests can bound it without timing it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeWork {
    /// Symbols the merging started from (characters, bytes).
    pub symbols: usize,
    /// Adjacent pairs looked up in the vocabulary.
    pub pair_lookups: usize,
    /// Entries taken from the merge queue (applied or stale).
    pub queue_pops: usize,
    /// Merges applied.
    pub merges: usize,
}

const NONE: usize = usize::MAX;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    tok: u32,
    prev: usize,
    next: usize,
    alive: bool,
}

/// A mergeable adjacent pair. Field order is the heap order: highest priority first, then
/// the leftmost pair, as a left-to-right rescan would choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    priority: u32,
    left: Reverse<usize>,
    right: usize,
    /// `right`'s token when queued. A symbol only changes by absorbing its right neighbour, so
    /// the pair is still current iff both are alive, adjacent, and `right` kept this token.
    right_tok: u32,
    merged: u32,
}

/// Reusable buffers for merging (one per encode call, reused across pre-tokens).
#[derive(Debug, Default)]
pub(super) struct Merger {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Candidate>,
}

impl Merger {
    /// Merges `tokens` in place: while some adjacent pair merges, the pair with the highest
    /// priority (the leftmost among equals) becomes one token. `pair(left, right)` is
    /// `Some((priority, merged token))` for a pair that merges.
    pub(super) fn merge(
        &mut self,
        tokens: &mut Vec<u32>,
        mut pair: impl FnMut(u32, u32) -> Option<(u32, u32)>,
        work: &mut EncodeWork,
    ) {
        let n = tokens.len();
        work.symbols += n;
        if n < 2 {
            return;
        }
        self.symbols.clear();
        self.queue.clear();
        self.symbols
            .extend(tokens.iter().enumerate().map(|(i, &tok)| Symbol {
                tok,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
                alive: true,
            }));
        for i in 0..n - 1 {
            self.queue_pair(i, i + 1, &mut pair, work);
        }
        while let Some(c) = self.queue.pop() {
            work.queue_pops += 1;
            let (l, r) = (c.left.0, c.right);
            let (ls, rs) = (self.symbols[l], self.symbols[r]);
            if !(ls.alive && rs.alive && ls.next == r && rs.tok == c.right_tok) {
                continue;
            }
            work.merges += 1;
            self.symbols[l].tok = c.merged;
            self.symbols[l].next = rs.next;
            self.symbols[r].alive = false;
            if rs.next != NONE {
                self.symbols[rs.next].prev = l;
                self.queue_pair(l, rs.next, &mut pair, work);
            }
            if ls.prev != NONE {
                self.queue_pair(ls.prev, l, &mut pair, work);
            }
        }
        tokens.clear();
        // The first symbol is nobody's right neighbour, so it is never absorbed.
        let mut i = 0;
        while i != NONE {
            tokens.push(self.symbols[i].tok);
            i = self.symbols[i].next;
        }
    }

    fn queue_pair(
        &mut self,
        left: usize,
        right: usize,
        pair: &mut impl FnMut(u32, u32) -> Option<(u32, u32)>,
        work: &mut EncodeWork,
    ) {
        work.pair_lookups += 1;
        let right_tok = self.symbols[right].tok;
        if let Some((priority, merged)) = pair(self.symbols[left].tok, right_tok) {
            self.queue.push(Candidate {
                priority,
                left: Reverse(left),
                right,
                right_tok,
                merged,
            });
        }
    }
}

/// Merge priority of a sentencepiece score: the order of the floats as a `u32` (higher
/// scores first; -0 equals +0 as `>` has it; NaN, which no real vocabulary has, last).
pub(super) fn score_priority(score: f32) -> u32 {
    let s = if score.is_nan() {
        f32::NEG_INFINITY
    } else {
        score + 0.0
    };
    let bits = s.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// Merge priority of a GPT-2 merge rank (lower ranks first).
pub(super) fn rank_priority(rank: u32) -> u32 {
    u32::MAX - rank
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn score_priority_orders_like_floats() {
        let scores = [
            f32::NEG_INFINITY,
            -1e30,
            -2.5,
            -1e-40,
            0.0,
            1e-40,
            1.0,
            3e38,
            f32::INFINITY,
        ];
        for w in scores.windows(2) {
            assert!(score_priority(w[0]) < score_priority(w[1]), "{w:?}");
        }
        assert_eq!(score_priority(-0.0), score_priority(0.0));
        assert_eq!(score_priority(f32::NAN), score_priority(f32::NEG_INFINITY));
    }

    /// Merges of a toy vocabulary: (a, b) -> c with priority p.
    fn toy(rules: &[(u32, u32, u32, u32)]) -> impl FnMut(u32, u32) -> Option<(u32, u32)> + '_ {
        move |a, b| {
            rules
                .iter()
                .find(|r| r.0 == a && r.1 == b)
                .map(|r| (r.3, r.2))
        }
    }

    #[test]
    fn highest_priority_then_leftmost() {
        let rules = [(1, 1, 10, 5), (1, 2, 11, 7), (10, 10, 12, 1)];
        let mut m = Merger::default();
        let mut w = EncodeWork::default();
        // (1,2) first (priority 7), then the (1,1) pairs left to right, then (10,10).
        let mut t = vec![1, 1, 1, 1, 1, 2];
        m.merge(&mut t, toy(&rules), &mut w);
        assert_eq!(t, [12, 11]);
        assert_eq!(w.merges, 4);
        // Ties: leftmost first, so 1 1 1 -> 10 1, never 1 10.
        let mut t = vec![1, 1, 1];
        m.merge(&mut t, toy(&rules), &mut w);
        assert_eq!(t, [10, 1]);
        let mut t = vec![3];
        m.merge(&mut t, toy(&rules), &mut w);
        assert_eq!(t, [3]);
        let mut t = vec![];
        m.merge(&mut t, toy(&rules), &mut w);
        assert!(t.is_empty());
    }

    #[test]
    fn work_is_linear_in_the_symbols() {
        // Doubling merges: 1 1 -> 2, 2 2 -> 3, ... (the worst case for a rescan).
        let rules: Vec<_> = (1..20).map(|k| (k, k, k + 1, 100 - k)).collect();
        let mut m = Merger::default();
        for n in [1usize << 10, 1 << 16] {
            let mut w = EncodeWork::default();
            let mut t = vec![1; n];
            m.merge(&mut t, toy(&rules), &mut w);
            assert_eq!(t, [n.trailing_zeros() + 1]);
            assert_eq!(w.merges, n - 1);
            assert!(w.pair_lookups <= 3 * n, "{w:?}");
            assert!(w.queue_pops <= 3 * n, "{w:?}");
        }
    }
}
