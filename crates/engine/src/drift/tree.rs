//! The hash tree both sides of a comparison are summarised into (Merkle-style, order-free).
//!
//! - **leaves**: `2^leaf_bits` buckets by the top `leaf_bits` bits of
//!   [`ItemKey::stable_hash`](tsunagu_domain::ItemKey::stable_hash), with `leaf_bits`
//!   between [`TOP_BITS`] and [`MAX_LEAF_BITS`], chosen so that a leaf holds about
//!   [`TARGET_LEAF_ITEMS`] items; a leaf's digest is its item count and the wrapping sum
//!   of a 64-bit mix of (key hash, version): order-free, so a side computes it in one
//!   streaming pass, in any order, with no per-item memory;
//! - **levels**: the top level has 4096 buckets; each level below splits a bucket into 16
//!   down to the leaves. A parent's digest is the sum of its children's.
//!
//! The comparison starts at the top and descends only into buckets whose digests differ.

use serde::Serialize;

/// Bits of the key hash that pick a top-level bucket (4096 buckets).
pub const TOP_BITS: u32 = 12;
/// Bits added per level below the top: each bucket splits into 16.
pub const FANOUT_BITS: u32 = 4;
/// The finest leaves: 2^20 buckets (16 MiB of digests per side at most).
pub const MAX_LEAF_BITS: u32 = 20;
/// Items per leaf the leaf size aims at.
pub const TARGET_LEAF_ITEMS: u64 = 16;

/// The digest of a set of (key hash, version) pairs: order-free, so it can be summed up
/// in any order and combined from children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Digest {
    pub count: u64,
    pub sum: u64,
}

impl Digest {
    pub fn add(&mut self, hash: u64, version: u64) {
        self.count += 1;
        self.sum = self.sum.wrapping_add(mix(hash, version));
    }

    pub fn merge(&mut self, other: &Digest) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// splitmix64's finaliser.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One item's contribution to a digest: any change of key or version changes it.
fn mix(hash: u64, version: u64) -> u64 {
    splitmix64(hash ^ splitmix64(version ^ 0xA076_1D64_78BD_642F))
}

/// The leaves of one side's hash tree. A side fills it with [`HashTree::add`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTree {
    leaf_bits: u32,
    leaves: Vec<Digest>,
}

impl HashTree {
    /// An empty tree; `leaf_bits` is clamped to [`TOP_BITS`]..=[`MAX_LEAF_BITS`].
    pub fn new(leaf_bits: u32) -> Self {
        let leaf_bits = leaf_bits.clamp(TOP_BITS, MAX_LEAF_BITS);
        Self {
            leaf_bits,
            leaves: vec![Digest::default(); 1 << leaf_bits],
        }
    }

    pub fn leaf_bits(&self) -> u32 {
        self.leaf_bits
    }

    /// The leaf a key hash falls into.
    pub fn leaf_of(leaf_bits: u32, hash: u64) -> usize {
        (hash >> (64 - leaf_bits)) as usize
    }

    /// Adds one live item (its [`ItemKey::stable_hash`](tsunagu_domain::ItemKey::stable_hash)
    /// and version).
    pub fn add(&mut self, hash: u64, version: u64) {
        self.leaves[Self::leaf_of(self.leaf_bits, hash)].add(hash, version);
    }

    /// Adds every leaf of `other` (a tree with the same leaf bits built by another worker
    /// of the same side, e.g. one per scan segment).
    pub fn merge(&mut self, other: &HashTree) {
        for (mine, theirs) in self.leaves.iter_mut().zip(&other.leaves) {
            mine.merge(theirs);
        }
    }

    pub fn items(&self) -> u64 {
        self.leaves.iter().map(|d| d.count).sum()
    }

    /// The digests of the level whose buckets are the top `bits` bits.
    fn level(&self, bits: u32) -> Vec<Digest> {
        if bits == self.leaf_bits {
            return self.leaves.clone();
        }
        let shift = self.leaf_bits - bits;
        let mut out = vec![Digest::default(); 1 << bits];
        for (i, leaf) in self.leaves.iter().enumerate() {
            out[i >> shift].merge(leaf);
        }
        out
    }
}

/// The leaves whose items are read key by key.
#[derive(Debug, Clone)]
pub struct LeafSet {
    leaf_bits: u32,
    wanted: Vec<bool>,
}

impl LeafSet {
    pub fn new(leaf_bits: u32, leaves: &[usize]) -> Self {
        let mut wanted = vec![false; 1 << leaf_bits];
        for &leaf in leaves {
            if let Some(slot) = wanted.get_mut(leaf) {
                *slot = true;
            }
        }
        Self { leaf_bits, wanted }
    }

    /// Whether an item with this key hash lies in one of the leaves.
    pub fn contains(&self, hash: u64) -> bool {
        self.wanted[HashTree::leaf_of(self.leaf_bits, hash)]
    }

    pub fn is_empty(&self) -> bool {
        !self.wanted.iter().any(|w| *w)
    }
}

/// Leaf bits for about [`TARGET_LEAF_ITEMS`] items per leaf.
pub fn leaf_bits_for(estimated_items: u64) -> u32 {
    let leaves = (estimated_items / TARGET_LEAF_ITEMS).max(1);
    let bits = 64 - (leaves - 1).leading_zeros();
    bits.clamp(TOP_BITS, MAX_LEAF_BITS)
}

/// The bit widths of the levels, top first, the leaves last.
fn level_bits(leaf_bits: u32) -> Vec<u32> {
    let mut bits = vec![TOP_BITS.min(leaf_bits)];
    while *bits.last().unwrap_or(&leaf_bits) < leaf_bits {
        let next = (bits[bits.len() - 1] + FANOUT_BITS).min(leaf_bits);
        bits.push(next);
    }
    bits
}

/// How the tree comparison went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TreeStats {
    /// Bits of the key hash per level, top first (12, 16, ...), the last being the leaves.
    pub level_bits: Vec<u32>,
    /// Bucket digests compared, all levels together.
    pub buckets_compared: u64,
    /// Buckets whose digests differed, all levels together.
    pub buckets_differing: u64,
    /// Leaves whose items were compared key by key.
    pub leaves_differing: u64,
}

/// Descends from the top level into differing buckets only; returns the differing leaves.
/// Both trees must have the same leaf bits.
pub fn differing_leaves(primary: &HashTree, index: &HashTree) -> (Vec<usize>, TreeStats) {
    let bits = level_bits(primary.leaf_bits);
    let mut stats = TreeStats {
        level_bits: bits.clone(),
        ..TreeStats::default()
    };
    let mut frontier: Vec<usize> = (0..1usize << bits[0]).collect();
    stats.buckets_compared = frontier.len() as u64;
    for (depth, &b) in bits.iter().enumerate() {
        let (p, i) = (primary.level(b), index.level(b));
        let differing: Vec<usize> = frontier.into_iter().filter(|&n| p[n] != i[n]).collect();
        stats.buckets_differing += differing.len() as u64;
        match bits.get(depth + 1) {
            Some(&next) => {
                let split = next - b;
                frontier = differing
                    .iter()
                    .flat_map(|&n| (n << split)..((n + 1) << split))
                    .collect();
                stats.buckets_compared += frontier.len() as u64;
            }
            None => {
                stats.leaves_differing = differing.len() as u64;
                return (differing, stats);
            }
        }
    }
    (Vec::new(), stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_bits_aim_at_small_leaves_within_bounds() {
        assert_eq!(leaf_bits_for(0), TOP_BITS);
        assert_eq!(leaf_bits_for(10_000), TOP_BITS);
        assert_eq!(leaf_bits_for(1_000_000), 16);
        assert_eq!(leaf_bits_for(u64::MAX), MAX_LEAF_BITS);
        assert_eq!(level_bits(12), vec![12]);
        assert_eq!(level_bits(16), vec![12, 16]);
        assert_eq!(level_bits(18), vec![12, 16, 18]);
    }

    #[test]
    fn the_descent_finds_exactly_the_differing_leaves() {
        let bits = 16;
        let (mut a, mut b) = (HashTree::new(bits), HashTree::new(bits));
        for n in 0..50_000u64 {
            let h = splitmix64(n);
            a.add(h, n);
            b.add(h, n);
        }
        // A missing item, a stale version, an extra item.
        let (m, s, e) = (splitmix64(1_000_001), splitmix64(7), splitmix64(1_000_002));
        a.add(m, 1);
        b.leaves[HashTree::leaf_of(bits, s)] = Digest::default();
        for n in 0..50_000u64 {
            let h = splitmix64(n);
            if HashTree::leaf_of(bits, h) == HashTree::leaf_of(bits, s) {
                b.add(h, if h == s { n + 1 } else { n });
            }
        }
        b.add(e, 3);
        let (leaves, stats) = differing_leaves(&a, &b);
        let mut expected: Vec<usize> = [m, s, e]
            .iter()
            .map(|&h| HashTree::leaf_of(bits, h))
            .collect();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(leaves, expected);
        assert_eq!(stats.level_bits, vec![12, 16]);
        assert_eq!(stats.leaves_differing, expected.len() as u64);
        assert!(stats.buckets_compared <= 4096 + 16 * 3);
    }

    #[test]
    fn equal_trees_compare_only_the_top_level() {
        let (mut a, mut b) = (HashTree::new(12), HashTree::new(12));
        for n in 0..1_000u64 {
            a.add(splitmix64(n), n);
            b.add(splitmix64(n), n);
        }
        let (leaves, stats) = differing_leaves(&a, &b);
        assert!(leaves.is_empty());
        assert_eq!(stats.buckets_compared, 4096);
    }

    #[test]
    fn trees_built_in_parts_merge_into_the_whole() {
        let (mut whole, mut left, mut right) =
            (HashTree::new(14), HashTree::new(14), HashTree::new(14));
        for n in 0..5_000u64 {
            whole.add(splitmix64(n), n);
            if n % 2 == 0 {
                left.add(splitmix64(n), n)
            } else {
                right.add(splitmix64(n), n)
            }
        }
        left.merge(&right);
        assert_eq!(left, whole);
        let set = LeafSet::new(14, &[HashTree::leaf_of(14, splitmix64(3))]);
        assert!(set.contains(splitmix64(3)) && !set.is_empty());
    }
}
