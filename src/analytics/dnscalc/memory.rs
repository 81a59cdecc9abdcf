//! Answer memory: the recent DNS answers each internal host received, bounded per host
//! and in hosts (least recently active evicted).
//!
//! The per-flow check must cost a few lookups, so the work is done at answer time: each
//! answer's derived ports (every derivation over every kept address) and, for IPv4, the
//! octet signature its shuffles share are computed then. They reach the sorted per-host
//! index lazily: the first lookup after new answers merges them all at once
//! ([`HostState::settle`]), since answers far outnumber the flows that need a lookup.
//! A new flow then costs one binary search for its port (and, when the destination came
//! from no answer, one for its signature); nothing on that path hashes a string or
//! allocates.
//!
//! Memory per host is bounded twice: the answer ring (`max_answers_per_host`) and the
//! index ([`MAX_INDEX`] entries); when a large answer would overflow the index, the
//! oldest answers go first. See [`HostState::heap_bytes`].

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hashbrown::HashMap;

use crate::baseline::HostBaseline;
use crate::time::{Dur, Ts};

use super::unusual::Unusual;

/// Addresses kept per answer (a CDN answer has a handful; the rest are counted, and all
/// go into the worker's answered-address set).
pub const KEEP_ADDRS: usize = 8;

/// Index entries per host, pending ones included: 8 bytes each, so at most 8 KiB of
/// live entries per host (16 KiB of capacity: the index and the pending entries each
/// grow to at most this many).
pub const MAX_INDEX: usize = 1024;

/// Index key kinds.
pub const KEY_PORT: u64 = 0;
pub const KEY_SIG: u64 = 1;

/// One index entry: `key (kind << 32 | value)` in bits 63..24, answer sequence (low byte)
/// in 15..8, address slot in 7..0. Sorted by key, then answer, then address.
pub fn entry(kind: u64, value: u32, seq: u32, addr: usize) -> u64 {
    ((kind << 32 | u64::from(value)) << 24) | (u64::from(seq & 0xff) << 8) | addr as u64
}

/// Bit of a key in a host's [`HostState::filter`] (4096 bits).
fn filter_bit(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52) as usize
}

/// The octets of an IPv4 address sorted: every byte shuffle of it has the same one.
pub fn octet_sig(a: [u8; 4]) -> u32 {
    let mut o = a;
    o.sort_unstable();
    u32::from_be_bytes(o)
}

/// The kept addresses of one answer (at most [`KEEP_ADDRS`], canonical), in answer
/// order. An answer of IPv4 addresses only (nearly all) keeps them inline in 4 bytes
/// each: a [`Remembered`] takes 80 bytes instead of 160 with eight 17-byte `IpAddr`s,
/// and every host's ring holds up to `max_answers_per_host` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addrs {
    V4 {
        addrs: [Ipv4Addr; KEEP_ADDRS],
        n: u8,
    },
    Mixed(Box<[IpAddr]>),
}

impl Addrs {
    /// The first [`KEEP_ADDRS`] of `ips`.
    pub fn new(ips: &[IpAddr]) -> Addrs {
        let ips = &ips[..ips.len().min(KEEP_ADDRS)];
        let first = match ips.first() {
            Some(IpAddr::V4(a)) => *a,
            _ => Ipv4Addr::UNSPECIFIED,
        };
        let mut v4 = [first; KEEP_ADDRS];
        for (slot, ip) in v4.iter_mut().zip(ips) {
            match ip {
                IpAddr::V4(a) => *slot = *a,
                IpAddr::V6(_) => return Addrs::Mixed(ips.into()),
            }
        }
        Addrs::V4 {
            addrs: v4,
            n: ips.len() as u8,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Addrs::V4 { n, .. } => usize::from(*n),
            Addrs::Mixed(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Address `i` (index entries name their slot, `i < len()`); past the end, the
    /// first address, so that an [`Addrs::new`] never makes it panic.
    pub fn get(&self, i: usize) -> IpAddr {
        match self {
            Addrs::V4 { addrs, .. } => IpAddr::V4(addrs.get(i).copied().unwrap_or(addrs[0])),
            Addrs::Mixed(v) => v.get(i).copied().unwrap_or(v[0]),
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Addrs::V4 { addrs, n }, IpAddr::V4(a)) => addrs[..usize::from(*n)].contains(&a),
            (Addrs::V4 { .. }, IpAddr::V6(_)) => false,
            (Addrs::Mixed(v), ip) => v.contains(&ip),
        }
    }
    pub fn to_vec(&self) -> Vec<IpAddr> {
        self.iter().collect()
    }
    /// Heap bytes held (the boxed addresses of a mixed answer).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Addrs::V4 { .. } => 0,
            Addrs::Mixed(v) => std::mem::size_of_val::<[IpAddr]>(v),
        }
    }
}

/// One answer as remembered for its host (addresses canonical: mapped IPv4 as IPv4).
#[derive(Clone, Debug)]
pub struct Remembered {
    pub seq: u32,
    pub ts: Ts,
    pub query: Arc<str>,
    pub addrs: Addrs,
    pub ttl: u32,
    pub rcode: u16,
    pub unusual: Unusual,
}

/// Everything kept about one internal host.
#[derive(Debug)]
pub struct HostState {
    pub answers: VecDeque<Remembered>,
    /// Sorted [`entry`]s of the remembered answers, except the `pending` ones.
    pub index: Vec<u64>,
    /// Entries of answers remembered since the last [`HostState::settle`], in answer
    /// order. Most answers are never looked up before the next one comes (flows that
    /// need a lookup are far fewer than answers), so merging each one into the index and
    /// the filter at once touched the host's whole index per answer; now one merge
    /// serves every answer since the last lookup.
    pending: Vec<u64>,
    /// Which keys may be in the index: most flows are answered "no" by one bit test,
    /// without a binary search (a full index sets about a fifth of the bits).
    filter: Box<[u64; 64]>,
    /// Entries removed since the filter was last rebuilt: their bits may still be set
    /// (a false "maybe" costs one binary search), so it is rebuilt only when they
    /// outnumber the live entries.
    stale: usize,
    next_seq: u32,
    /// Time of the newest answer with unusual evidence (`Ts::ZERO`: none).
    pub last_unusual: Ts,
    pub last_active: Ts,
    pub baseline: HostBaseline,
    /// Learned since the last save.
    pub dirty: bool,
    /// The derivation that last matched for this host and how often it did: the same
    /// formula again on a new answer is strong evidence (chance does not repeat).
    pub repeat: Option<(usize, u32)>,
    /// The address relation (answer XOR destination) of the last port-only match and how
    /// often it was seen: a fixed key applied to every answer.
    pub relation: Option<(u128, u32)>,
    /// The host's platform (index into the detector's platform list + 1; 0 unknown) and
    /// when the EDR feed was last asked.
    pub platform: u8,
    pub platform_asked: Option<Ts>,
}

impl HostState {
    fn new(cap: usize, now: Ts, baseline: HostBaseline) -> HostState {
        HostState {
            answers: VecDeque::with_capacity(cap.min(8)),
            index: Vec::new(),
            pending: Vec::new(),
            filter: Box::new([0; 64]),
            stale: 0,
            next_seq: 0,
            last_unusual: Ts::ZERO,
            last_active: now,
            baseline,
            dirty: false,
            repeat: None,
            relation: None,
            platform: 0,
            platform_asked: None,
        }
    }

    /// The remembered answer with this sequence low byte, if still kept.
    pub fn by_seq(&self, seq_lo: u8) -> Option<&Remembered> {
        let front = self.answers.front()?.seq as u8;
        self.answers.get(usize::from(seq_lo.wrapping_sub(front)))
    }

    /// Entries with this key (kind and value), in index order. Call
    /// [`HostState::settle`] first: entries still pending are not found.
    pub fn lookup(&self, kind: u64, value: u32) -> &[u64] {
        debug_assert!(self.pending.is_empty(), "lookup before settle");
        let key = kind << 32 | u64::from(value);
        let bit = filter_bit(key);
        if self.filter[bit / 64] & (1 << (bit % 64)) == 0 {
            return &[];
        }
        let lo = key << 24;
        let hi = lo + (1 << 24);
        let a = self.index.partition_point(|&e| e < lo);
        let n = self.index[a..].iter().take_while(|&&e| e < hi).count();
        &self.index[a..a + n]
    }

    fn set_filter(filter: &mut [u64; 64], entries: &[u64]) {
        for &e in entries {
            let bit = filter_bit(e >> 24);
            filter[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn rebuild_filter(&mut self) {
        self.filter.fill(0);
        Self::set_filter(&mut self.filter, &self.index);
        self.stale = 0;
    }

    /// Remembers an answer with its index entries (`new` is scratch: consumed); they
    /// reach the index at the next [`HostState::settle`]. The oldest answers go when the
    /// ring or the index would overflow; no allocation once the ring, the index and the
    /// pending entries have grown to their caps.
    pub fn remember(&mut self, mut r: Remembered, new: &mut Vec<u64>, cap: usize) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        r.seq = seq;
        for e in new.iter_mut() {
            *e = (*e & !0xff00) | (u64::from(seq & 0xff) << 8);
        }
        new.sort_unstable();
        new.dedup();
        new.truncate(MAX_INDEX);
        while !self.answers.is_empty()
            && (self.answers.len() >= cap
                || self.index.len() + self.pending.len() + new.len() > MAX_INDEX)
        {
            self.answers.pop_front();
            self.prune();
        }
        self.answers.push_back(r);
        reserve_entries(&mut self.pending, new.len());
        self.pending.extend_from_slice(new);
        new.clear();
    }

    /// Moves the pending entries into the index and the filter (before lookups).
    pub fn settle(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.pending.sort_unstable();
        merge_into(&mut self.index, &self.pending);
        Self::set_filter(&mut self.filter, &self.pending);
        self.pending.clear();
        if self.stale > self.index.len() {
            self.rebuild_filter();
        }
    }

    /// Drops index and pending entries of answers no longer kept.
    fn prune(&mut self) {
        let before = self.index.len();
        match self.answers.front().map(|r| r.seq as u8) {
            None => {
                self.index.clear();
                self.pending.clear();
            }
            Some(front) => {
                let n = self.answers.len();
                let kept = |e: &u64| usize::from(((*e >> 8) as u8).wrapping_sub(front)) < n;
                self.index.retain(kept);
                // In answer order: the dropped answers' entries lead.
                let gone = self.pending.iter().take_while(|e| !kept(e)).count();
                self.pending.drain(..gone);
            }
        }
        self.stale += before - self.index.len();
    }

    /// Answers still inside the window at `now`, newest first.
    pub fn recent(&self, now: Ts, window: Dur) -> impl Iterator<Item = &Remembered> {
        let from = now.saturating_sub(window);
        self.answers
            .iter()
            .rev()
            .skip_while(move |r| r.ts > now)
            .take_while(move |r| r.ts >= from)
    }

    /// Whether any remembered answer named `ip` (canonical).
    pub fn answered(&self, ip: IpAddr) -> bool {
        self.answers.iter().any(|r| r.addrs.contains(ip))
    }

    /// Heap bytes held (ring, index, names counted once each, baseline).
    pub fn heap_bytes(&self) -> usize {
        let names: usize = self
            .answers
            .iter()
            .map(|r| r.query.len() + 16 + r.addrs.heap_bytes())
            .sum();
        self.answers.capacity() * std::mem::size_of::<Remembered>()
            + self.index.capacity() * 8
            + self.pending.capacity() * 8
            + 512
            + names
            + self.baseline.ports.entries.capacity() * 24
            + self.baseline.dests.entries.capacity() * 24
    }
}

/// Merges sorted `new` into sorted `v` in place, from the back.
/// Makes room for `extra` more entries, growing by a quarter, capped at [`MAX_INDEX`]: a
/// few reallocations per host (exact growth reallocated on every answer, ~1.6 % of a
/// replay's CPU), and the high-water mark stays within 1.25 times what the host needed,
/// not up to twice.
fn reserve_entries(v: &mut Vec<u64>, extra: usize) {
    let need = v.len() + extra;
    if v.capacity() < need {
        let want = need
            .max(v.capacity() + v.capacity() / 4)
            .min(MAX_INDEX.max(need));
        v.reserve_exact(want - v.len());
    }
}

fn merge_into(v: &mut Vec<u64>, new: &[u64]) {
    let (n, m) = (v.len(), new.len());
    reserve_entries(v, m);
    v.resize(n + m, 0);
    let (mut i, mut j, mut k) = (n, m, n + m);
    while j > 0 {
        if i > 0 && v[i - 1] > new[j - 1] {
            v[k - 1] = v[i - 1];
            i -= 1;
        } else {
            v[k - 1] = new[j - 1];
            j -= 1;
        }
        k -= 1;
    }
}

/// The hosts of one worker.
pub struct Hosts {
    pub map: HashMap<IpAddr, HostState>,
    cap: usize,
    answers_per_host: usize,
    pub evictions: u64,
    /// Evicted hosts whose baselines were not saved yet.
    pub evicted_dirty: Vec<(IpAddr, HostBaseline)>,
}

impl Hosts {
    pub fn new(cap: usize, answers_per_host: usize) -> Hosts {
        Hosts {
            map: HashMap::new(),
            cap: cap.max(1),
            answers_per_host,
            evictions: 0,
            evicted_dirty: Vec::new(),
        }
    }

    pub fn answers_per_host(&self) -> usize {
        self.answers_per_host
    }

    /// The host's state, created on first sight with `load` giving its stored baseline.
    pub fn get_or_insert(
        &mut self,
        ip: IpAddr,
        now: Ts,
        load: impl FnOnce() -> HostBaseline,
    ) -> &mut HostState {
        if !self.map.contains_key(&ip) {
            if self.map.len() >= self.cap {
                self.evict(now);
            }
            let st = HostState::new(self.answers_per_host, now, load());
            self.map.insert(ip, st);
        }
        let st = self.map.get_mut(&ip).expect("inserted above");
        st.last_active = st.last_active.max(now);
        st
    }

    /// Heap bytes of all hosts (map slots included).
    pub fn heap_bytes(&self) -> usize {
        self.map.capacity() * (std::mem::size_of::<IpAddr>() + std::mem::size_of::<HostState>() + 1)
            + self.map.values().map(HostState::heap_bytes).sum::<usize>()
    }

    /// Drops the least recently active eighth at once, so the scan is amortised over
    /// many inserts.
    fn evict(&mut self, _now: Ts) {
        let mut ages: Vec<Ts> = self.map.values().map(|s| s.last_active).collect();
        let k = (ages.len() / 8).max(1);
        let (_, &mut cut, _) = ages.select_nth_unstable(k - 1);
        let mut left = k;
        let victims: Vec<IpAddr> = self
            .map
            .iter()
            .filter(|(_, s)| s.last_active <= cut)
            .map(|(ip, _)| *ip)
            .filter(|_| {
                let take = left > 0;
                left = left.saturating_sub(1);
                take
            })
            .collect();
        for ip in victims {
            if let Some(s) = self.map.remove(&ip) {
                self.evictions += 1;
                if s.dirty {
                    self.evicted_dirty.push((ip, s.baseline));
                }
            }
        }
    }
}

/// Addresses answered to any host of this worker lately: a destination in it was given
/// by DNS even when the host's own ring has rolled over. Two generations bound it.
pub struct Answered {
    cur: HashMap<u128, ()>,
    old: HashMap<u128, ()>,
    cap: usize,
}

fn addr_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)) | (1 << 127),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Answered {
    pub fn new(cap: usize) -> Answered {
        Answered {
            cur: HashMap::new(),
            old: HashMap::new(),
            cap: (cap / 2).max(8),
        }
    }
    pub fn insert(&mut self, ip: IpAddr) {
        if self.cur.len() >= self.cap {
            self.old = std::mem::take(&mut self.cur);
        }
        self.cur.insert(addr_key(ip), ());
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        let k = addr_key(ip);
        self.cur.contains_key(&k) || self.old.contains_key(&k)
    }
    pub fn heap_bytes(&self) -> usize {
        (self.cur.capacity() + self.old.capacity()) * 17
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rem(t: i64, name: &str) -> Remembered {
        Remembered {
            seq: 0,
            ts: Ts::from_secs(t),
            query: Arc::from(name),
            addrs: Addrs::new(&[IpAddr::from([1, 2, 3, 4])]),
            ttl: 60,
            rcode: 0,
            unusual: Unusual::default(),
        }
    }

    #[test]
    fn ring_is_bounded_and_window_stops_the_walk() {
        let mut h = Hosts::new(4, 3);
        let s = h.get_or_insert(IpAddr::from([10, 0, 0, 1]), Ts::ZERO, HostBaseline::default);
        let mut scratch = Vec::new();
        for t in 0..10 {
            scratch.push(entry(KEY_PORT, 1000 + t as u32, 0, 0));
            s.remember(rem(t * 50, &format!("n{t}")), &mut scratch, 3);
        }
        assert_eq!(s.answers.len(), 3);
        assert_eq!(s.index.len() + s.pending.len(), 3);
        s.settle();
        assert_eq!(s.index.len(), 3);
        assert!(s.lookup(KEY_PORT, 1006).is_empty());
        let e = s.lookup(KEY_PORT, 1008);
        assert_eq!(e.len(), 1);
        assert_eq!(&*s.by_seq((e[0] >> 8) as u8).unwrap().query, "n8");
        let names: Vec<&str> = s
            .recent(Ts::from_secs(460), Dur::from_secs(120))
            .map(|r| &*r.query)
            .collect();
        assert_eq!(names, vec!["n9", "n8", "n7"]);
        let names: Vec<&str> = s
            .recent(Ts::from_secs(500), Dur::from_secs(60))
            .map(|r| &*r.query)
            .collect();
        assert_eq!(names, vec!["n9"]);
    }

    #[test]
    fn index_cap_drops_oldest_answers_and_survives_seq_wrap() {
        let mut h = Hosts::new(4, 32);
        let s = h.get_or_insert(IpAddr::from([10, 0, 0, 1]), Ts::ZERO, HostBaseline::default);
        let mut scratch = Vec::new();
        for t in 0..600u32 {
            for p in 0..300 {
                scratch.push(entry(KEY_PORT, t * 1000 + p, 0, (p % 8) as usize));
            }
            s.remember(rem(i64::from(t), "x"), &mut scratch, 32);
            assert!(s.index.len() + s.pending.len() <= MAX_INDEX);
            // Settled only now and then: pending entries of dropped answers go too.
            if t % 3 == 0 {
                continue;
            }
            s.settle();
            assert!(s.index.len() <= MAX_INDEX);
            assert!(s.index.windows(2).all(|w| w[0] < w[1]));
            for &e in s.lookup(KEY_PORT, t * 1000 + 5) {
                assert_eq!(
                    s.by_seq((e >> 8) as u8).unwrap().ts,
                    Ts::from_secs(t.into())
                );
            }
        }
        assert!(s.answers.len() <= 4);
    }

    #[test]
    fn filter_keeps_every_live_key_and_is_rebuilt_when_mostly_stale() {
        let mut h = Hosts::new(4, 4);
        let s = h.get_or_insert(IpAddr::from([10, 0, 0, 1]), Ts::ZERO, HostBaseline::default);
        let mut scratch = Vec::new();
        let mut rebuilt = false;
        for t in 0..200u32 {
            for p in 0..40 {
                scratch.push(entry(KEY_PORT, t * 100 + p, 0, 0));
            }
            let stale_before = s.stale;
            s.remember(rem(i64::from(t), "x"), &mut scratch, 4);
            s.settle();
            rebuilt |= s.stale < stale_before;
            assert!(s.stale <= s.index.len());
            // Every live key passes the filter; keys of dropped answers are never found.
            for p in [0, 17, 39] {
                assert_eq!(s.lookup(KEY_PORT, t * 100 + p).len(), 1);
                if t >= 4 {
                    assert!(s.lookup(KEY_PORT, (t - 4) * 100 + p).is_empty());
                }
            }
            // Amortised growth, bounded: within a quarter of what 4 answers need.
            assert!(
                s.index.capacity() <= 160 + 160 / 4,
                "{}",
                s.index.capacity()
            );
        }
        assert!(rebuilt);
    }

    #[test]
    fn addrs_keep_order_inline_for_ipv4_and_boxed_otherwise() {
        assert_eq!(std::mem::size_of::<Remembered>(), 80);
        let v4: Vec<IpAddr> = (1..=10u8).map(|i| IpAddr::from([192, 0, 2, i])).collect();
        let a = Addrs::new(&v4);
        assert!(matches!(a, Addrs::V4 { n: 8, .. }));
        assert_eq!(a.to_vec(), v4[..KEEP_ADDRS].to_vec());
        assert!(a.contains(v4[7]) && !a.contains(v4[8]));
        assert!(!a.contains("2001:db8::1".parse().unwrap()));
        let mixed: Vec<IpAddr> = vec![v4[0], "2001:db8::1".parse().unwrap()];
        let m = Addrs::new(&mixed);
        assert!(matches!(m, Addrs::Mixed(_)));
        assert_eq!((m.len(), m.get(1)), (2, mixed[1]));
        assert!(m.contains(mixed[0]) && m.contains(mixed[1]) && !m.contains(v4[1]));
        assert_eq!((a.get(8), m.get(5)), (v4[0], mixed[0]));
        assert!(Addrs::new(&[]).is_empty());
    }

    #[test]
    fn evicts_least_recently_active() {
        let mut h = Hosts::new(16, 2);
        for i in 0..16u8 {
            let s = h.get_or_insert(
                IpAddr::from([10, 0, 0, i]),
                Ts::from_secs(i64::from(i)),
                HostBaseline::default,
            );
            s.dirty = i == 0;
        }
        h.get_or_insert(
            IpAddr::from([10, 0, 1, 0]),
            Ts::from_secs(100),
            HostBaseline::default,
        );
        assert_eq!(h.evictions, 2);
        assert!(!h.map.contains_key(&IpAddr::from([10, 0, 0, 0])));
        assert!(!h.map.contains_key(&IpAddr::from([10, 0, 0, 1])));
        assert!(h.map.contains_key(&IpAddr::from([10, 0, 0, 2])));
        assert_eq!(h.evicted_dirty.len(), 1);
        assert!(h.map.len() <= 16);
    }
}
