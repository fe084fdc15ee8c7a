//! [`BucketTree`]: totals per millisecond in a treap ordered by the millisecond, each
//! node also holding the totals of its subtree, so that a window of any width is summed
//! in O(log n) and a payment recorded late (out of order) costs the same O(log n).
//! Memory is one node per millisecond that has payments, as a `BTreeMap` would be.

use crate::summary::Totals;

const NIL: u32 = u32::MAX;

/// 40 bytes: this millisecond's own totals are not stored, they are the subtree's
/// minus its children's.
#[derive(Debug, Clone)]
struct Node {
    ms: i64,
    /// This subtree's payments.
    sum: Totals,
    /// Heap order on random priorities keeps the tree balanced in expectation.
    prio: u32,
    left: u32,
    right: u32,
}

/// Payments per millisecond, summable over any inclusive range in O(log n).
#[derive(Debug, Clone)]
pub(crate) struct BucketTree {
    nodes: Vec<Node>,
    root: u32,
    /// xorshift32 state for the priorities: deterministic, so runs are reproducible.
    rng: u32,
}

impl Default for BucketTree {
    fn default() -> Self {
        BucketTree {
            nodes: Vec::new(),
            root: NIL,
            rng: 0x9E37_79B9,
        }
    }
}

impl BucketTree {
    /// Buckets held.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    fn next_prio(&mut self) -> u32 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    fn sum_of(&self, n: u32) -> Totals {
        if n == NIL {
            Totals::default()
        } else {
            self.nodes[n as usize].sum
        }
    }

    /// This node's own millisecond: its subtree without its children.
    fn own(&self, n: u32) -> Totals {
        let node = &self.nodes[n as usize];
        node.sum
            .minus(&self.sum_of(node.left))
            .minus(&self.sum_of(node.right))
    }

    /// Recomputes `n`'s sum after its children changed, keeping its own totals.
    fn relink(&mut self, n: u32, own: Totals) {
        let (l, r) = {
            let node = &self.nodes[n as usize];
            (node.left, node.right)
        };
        let mut sum = own;
        sum.merge(&self.sum_of(l));
        sum.merge(&self.sum_of(r));
        self.nodes[n as usize].sum = sum;
    }

    /// Adds `totals` to millisecond `ms`.
    pub(crate) fn add(&mut self, ms: i64, totals: Totals) {
        self.root = self.insert(self.root, ms, totals);
    }

    fn insert(&mut self, n: u32, ms: i64, totals: Totals) -> u32 {
        if n == NIL {
            let prio = self.next_prio();
            self.nodes.push(Node {
                ms,
                sum: totals,
                prio,
                left: NIL,
                right: NIL,
            });
            return (self.nodes.len() - 1) as u32;
        }
        let key = self.nodes[n as usize].ms;
        // Every subtree on the way down gains `totals`, whatever the rotations do.
        self.nodes[n as usize].sum.merge(&totals);
        if ms == key {
            return n;
        }
        if ms < key {
            let child = self.insert(self.nodes[n as usize].left, ms, totals);
            self.nodes[n as usize].left = child;
            if self.nodes[child as usize].prio > self.nodes[n as usize].prio {
                return self.rotate_right(n);
            }
        } else {
            let child = self.insert(self.nodes[n as usize].right, ms, totals);
            self.nodes[n as usize].right = child;
            if self.nodes[child as usize].prio > self.nodes[n as usize].prio {
                return self.rotate_left(n);
            }
        }
        n
    }

    /// `n`'s left child becomes the subtree's root (whose sum is `n`'s old one).
    fn rotate_right(&mut self, n: u32) -> u32 {
        let l = self.nodes[n as usize].left;
        let total = self.nodes[n as usize].sum;
        let own_n = self.own(n);
        self.nodes[n as usize].left = self.nodes[l as usize].right;
        self.nodes[l as usize].right = n;
        self.relink(n, own_n);
        self.nodes[l as usize].sum = total;
        l
    }

    /// `n`'s right child becomes the subtree's root (whose sum is `n`'s old one).
    fn rotate_left(&mut self, n: u32) -> u32 {
        let r = self.nodes[n as usize].right;
        let total = self.nodes[n as usize].sum;
        let own_n = self.own(n);
        self.nodes[n as usize].right = self.nodes[r as usize].left;
        self.nodes[r as usize].left = n;
        self.relink(n, own_n);
        self.nodes[r as usize].sum = total;
        r
    }

    /// Totals of every millisecond `<= hi`.
    fn prefix(&self, hi: i64) -> Totals {
        let mut acc = Totals::default();
        let mut n = self.root;
        while n != NIL {
            let node = &self.nodes[n as usize];
            if node.ms <= hi {
                // This node and its left subtree: the subtree without its right.
                acc.merge(&node.sum.minus(&self.sum_of(node.right)));
                n = node.right;
            } else {
                n = node.left;
            }
        }
        acc
    }

    /// Totals of the milliseconds in `lo..=hi`.
    pub(crate) fn range(&self, lo: i64, hi: i64) -> Totals {
        if lo > hi {
            return Totals::default();
        }
        let upto = self.prefix(hi);
        if lo == i64::MIN {
            return upto;
        }
        upto.minus(&self.prefix(lo - 1))
    }

    /// Every millisecond with payments, in order (for snapshots).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, Totals)> + '_ {
        let mut stack = Vec::new();
        let mut n = self.root;
        std::iter::from_fn(move || {
            while n != NIL {
                stack.push(n);
                n = self.nodes[n as usize].left;
            }
            let top = stack.pop()?;
            let node = &self.nodes[top as usize];
            n = node.right;
            Some((node.ms, self.own(top)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cents;
    use proptest::prelude::*;

    fn t(count: u64, cents: i64) -> Totals {
        Totals {
            count,
            amount: Cents(cents),
        }
    }

    #[test]
    fn sums_ranges_and_iterates_in_order() {
        let mut b = BucketTree::default();
        for ms in [50, 10, 30, 10, 70, -5] {
            b.add(ms, t(1, ms));
        }
        assert_eq!(b.nodes.len(), 5);
        assert_eq!(b.range(10, 50), t(4, 100));
        assert_eq!(b.range(i64::MIN, i64::MAX), t(6, 165));
        assert_eq!(b.range(11, 29), Totals::default());
        assert_eq!(b.range(60, 20), Totals::default());
        let keys: Vec<i64> = b.iter().map(|(ms, _)| ms).collect();
        assert_eq!(keys, vec![-5, 10, 30, 50, 70]);
    }

    #[test]
    fn stays_shallow_for_in_order_inserts() {
        // Payments are recorded in roughly increasing order: the case that degrades an
        // unbalanced tree into a list.
        let mut b = BucketTree::default();
        for ms in 0..200_000 {
            b.add(ms, t(1, 1));
        }
        fn depth(b: &BucketTree, n: u32) -> usize {
            if n == NIL {
                return 0;
            }
            let node = &b.nodes[n as usize];
            1 + depth(b, node.left).max(depth(b, node.right))
        }
        let d = depth(&b, b.root);
        assert!(d < 60, "depth {d} for 200,000 nodes");
        assert_eq!(b.range(1_000, 1_999).count, 1_000);
    }

    proptest! {
        #[test]
        fn agrees_with_a_btreemap(
            adds in proptest::collection::vec((-50i64..50, 1u64..5, 1i64..1000), 0..300),
            lo in -60i64..60,
            hi in -60i64..60,
        ) {
            let mut b = BucketTree::default();
            let mut m = std::collections::BTreeMap::<i64, Totals>::new();
            for (ms, c, a) in adds {
                b.add(ms, t(c, a));
                m.entry(ms).or_default().merge(&t(c, a));
            }
            let mut want = Totals::default();
            if lo <= hi {
                for (_, v) in m.range(lo..=hi) {
                    want.merge(v);
                }
            }
            prop_assert_eq!(b.range(lo, hi), want);
            let got: Vec<(i64, Totals)> = b.iter().collect();
            let expect: Vec<(i64, Totals)> = m.into_iter().collect();
            prop_assert_eq!(got, expect);
        }
    }
}
