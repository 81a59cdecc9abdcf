//! The flow shard's index: key hash → slab position, open addressing with linear probing.
//!
//! Why not hashbrown: a packet's lookup is two dependent cache misses (index, then the
//! flow record), and hashbrown offers no way to start them early. Here a slot is one
//! `u32` (slab position in the low 24 bits, 8 bits of the hash as a tag), so the
//! pipeline can prefetch a packet's slot a few packets ahead ([`FlowIndex::prefetch`])
//! and its flow record once the slot is in cache. Load stays ≤ 1/2; deletion shifts
//! later entries back (no tombstones), so probe lengths never degrade.
//!
//! Panic contract: positions are checked against [`MAX_POSITIONS`] on insert; lookups
//! never index out of bounds (the mask keeps every probe inside the table).

const EMPTY: u32 = 0;
const POS_BITS: u32 = 24;
const POS_MASK: u32 = (1 << POS_BITS) - 1;
/// Slab positions the index can name (the shard's cap is bounded by this).
pub const MAX_POSITIONS: usize = (1 << POS_BITS) - 1;
/// Slots [`FlowIndex::peek`] looks at: a probe run longer than this is rare at load ≤ 1/2.
const PEEK_SLOTS: usize = 8;

pub struct FlowIndex {
    /// `0` = empty; else `(tag << 24) | (position + 1)`.
    slots: Vec<u32>,
    mask: usize,
    len: usize,
}

#[inline]
fn tag_of(hash: u64) -> u32 {
    (hash >> 56) as u32
}

impl FlowIndex {
    pub fn new() -> FlowIndex {
        FlowIndex {
            slots: vec![EMPTY; 16],
            mask: 15,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Forgets every entry, keeping the table's size.
    pub fn clear(&mut self) {
        self.slots.fill(EMPTY);
        self.len = 0;
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        // The low bits pick the slot; the top 8 are the tag.
        hash as usize & self.mask
    }

    /// Hints the CPU to load the slot a lookup of `hash` starts at.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        prefetch_read(self.slots.as_ptr().wrapping_add(self.home(hash)));
    }

    /// The position in the first slot of `hash`'s probe run whose tag matches, looking
    /// at most [`PEEK_SLOTS`] slots (a guess worth prefetching the flow record for; the
    /// lookup confirms it). Not the home slot only: at the loads the table runs at
    /// (1/4 to 1/2), 12 to 25 % of the keys sit past their home slot, and their lookups
    /// then waited on memory for the record.
    #[inline]
    pub fn peek(&self, hash: u64) -> Option<u32> {
        let tag = tag_of(hash);
        let mut i = self.home(hash);
        for _ in 0..PEEK_SLOTS {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s >> POS_BITS == tag {
                return Some((s & POS_MASK) - 1);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Finds the position whose key matches, `is_key(position)` confirming candidates.
    #[inline]
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if s >> POS_BITS == tag && is_key((s & POS_MASK) - 1) {
                return Some((s & POS_MASK) - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Makes room for one more entry: past half full the table doubles, and `entries`
    /// (called only then) lists every stored position with its hash, in any order. The
    /// flow table lists them by walking its slab in order: re-placing each old slot by
    /// its position read every flow record at random (~25 ms over a growth to 82 k flows).
    pub fn reserve_one<I: Iterator<Item = (u64, u32)>>(&mut self, entries: impl FnOnce() -> I) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.slots = vec![EMPTY; self.slots.len() * 2];
            self.mask = self.slots.len() - 1;
            let mut placed = 0;
            for (hash, pos) in entries() {
                self.place(hash, pos);
                placed += 1;
            }
            debug_assert_eq!(placed, self.len, "entries must list every stored position");
        }
    }

    /// Inserts a position known to be absent, into the room [`reserve_one`] made.
    ///
    /// [`reserve_one`]: FlowIndex::reserve_one
    pub fn insert(&mut self, hash: u64, pos: u32) {
        debug_assert!((pos as usize) < MAX_POSITIONS);
        debug_assert!(
            (self.len + 1) * 2 <= self.slots.len(),
            "insert without reserve_one"
        );
        self.place(hash, pos);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, pos: u32) {
        let mut i = self.home(hash);
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = (tag_of(hash) << POS_BITS) | ((pos & POS_MASK) + 1);
    }

    /// Removes `pos` (stored under `hash`); later entries of its probe run shift back.
    pub fn remove(&mut self, hash: u64, pos: u32, hash_of: impl Fn(u32) -> u64) -> bool {
        let want = (pos & POS_MASK) + 1;
        let mut i = self.home(hash);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return false;
            }
            if s & POS_MASK == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion (Knuth 6.4, algorithm R).
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = self.home(hash_of((s & POS_MASK) - 1));
            // Move `s` into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }
}

impl Default for FlowIndex {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn prefetch_read<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Hints the CPU to load the cache line at `p` (the flow record a packet will touch).
#[inline]
pub fn prefetch<T>(p: *const T) {
    prefetch_read(p);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn mix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Random inserts and removes against a HashMap model, with hashes that collide on
    /// purpose (few distinct low bits) so probe runs wrap and shift.
    #[test]
    fn matches_a_model_under_churn_and_collisions() {
        for low_bits in [3u32, 64] {
            let mut idx = FlowIndex::new();
            let hash_for = |pos: u32| {
                if low_bits < 64 {
                    (mix(pos as u64) & !0xff_ffff) | (pos as u64 % (1 << low_bits))
                } else {
                    mix(pos as u64)
                }
            };
            let mut present: HashMap<u32, ()> = HashMap::new();
            let mut rng = 1u64;
            for step in 0..20_000u64 {
                rng = mix(rng + step);
                let pos = (rng % 3000) as u32;
                let h = hash_for(pos);
                if present.remove(&pos).is_some() {
                    assert!(idx.remove(h, pos, hash_for));
                } else {
                    idx.reserve_one(|| present.keys().map(|&p| (hash_for(p), p)));
                    present.insert(pos, ());
                    idx.insert(h, pos);
                }
                if step % 997 == 0 {
                    for &p in present.keys() {
                        assert_eq!(idx.find(hash_for(p), |q| q == p), Some(p));
                    }
                    assert_eq!(idx.len(), present.len());
                }
            }
            for &p in present.keys() {
                assert_eq!(idx.find(hash_for(p), |q| q == p), Some(p));
            }
            for p in 3000..3100 {
                assert_eq!(idx.find(hash_for(p), |q| q == p), None);
            }
        }
    }

    #[test]
    fn peek_guesses_home_slot() {
        let mut idx = FlowIndex::new();
        let h = mix(5);
        idx.reserve_one(std::iter::empty);
        idx.insert(h, 7);
        assert_eq!(idx.peek(h), Some(7));
        assert_eq!(idx.peek(h ^ (1 << 60)), None);
        idx.prefetch(h);
    }

    /// A key pushed past its home slot by others with the same home is still peeked
    /// (its record gets prefetched too); a run longer than `PEEK_SLOTS` is not walked.
    #[test]
    fn peek_finds_keys_displaced_along_the_probe_run() {
        let mut idx = FlowIndex::new();
        // Same low bits (same home slot), distinct tags.
        let h = |tag: u64| (tag << 56) | 3;
        for p in 0..7u32 {
            idx.reserve_one(std::iter::empty);
            idx.insert(h(u64::from(p) + 1), p);
        }
        for p in 0..7u32 {
            assert_eq!(idx.peek(h(u64::from(p) + 1)), Some(p), "position {p}");
            assert_eq!(idx.find(h(u64::from(p) + 1), |q| q == p), Some(p));
        }
        // An absent tag: the run ends at an empty slot.
        assert_eq!(idx.peek(h(200)), None);
        // A table that is one run (no empty slot): the walk stops after PEEK_SLOTS.
        let mut full = FlowIndex {
            slots: vec![(9 << POS_BITS) | 1; 16],
            mask: 15,
            len: 16,
        };
        assert_eq!(full.peek(h(200)), None);
        full.slots[(3 + PEEK_SLOTS) & 15] = (200 << POS_BITS) | 5;
        assert_eq!(full.peek(h(200)), None, "past PEEK_SLOTS");
        full.slots[3 + PEEK_SLOTS - 1] = (200 << POS_BITS) | 5;
        assert_eq!(full.peek(h(200)), Some(4), "last slot looked at");
    }
}
