//! Answer memory: the recent DNS answers each internal host received, bounded per host
//! and in hosts (least recently active evicted).
//!
//! The per-flow check must cost a few lookups, so the work is done at answer time: each
//! answer's derived ports (every derivation over every kept address) and, for IPv4, the
//! octet signature its shuffles share are computed then and kept per host as compact
//! entries in answer order. A new flow then costs one scan of the host's port entries
//! (4 bytes each, a few hundred at most for a busy host; one scan of its signatures
//! when the destination came from no answer); nothing on that path hashes a string or
//! allocates. Answers far outnumber the flows that need a lookup, so the entries are
//! never sorted: a sorted index merged lazily cost more to keep than the scans it saved.
//!
//! Memory per host is bounded twice: the answer ring (`max_answers_per_host`) and the
//! entries ([`MAX_INDEX`]); when a large answer would overflow them, the oldest answers
//! go first. A port entry takes 4 bytes, a signature entry 8 (ports are ~12 of every
//! 13 entries). See [`HostState::heap_bytes`].

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use crate::baseline::HostBaseline;
use crate::time::{Dur, Ts};

use super::unusual::Unusual;

/// Addresses kept per answer (a CDN answer has a handful; the rest are counted, and all
/// go into the worker's answered-address set).
pub const KEEP_ADDRS: usize = 8;

/// Entries per host (ports and signatures): at most 8 KiB of live entries per host.
pub const MAX_INDEX: usize = 1024;

/// Index key kinds.
pub const KEY_PORT: u64 = 0;
pub const KEY_SIG: u64 = 1;

/// One new entry as the detector computes it: `key (kind << 32 | value)` in bits 63..24,
/// answer sequence (low byte) in 15..8, address slot in 7..0. [`HostState::remember`]
/// stores it with the entries of its kind.
pub fn entry(kind: u64, value: u32, seq: u32, addr: usize) -> u64 {
    ((kind << 32 | u64::from(value)) << 24) | (u64::from(seq & 0xff) << 8) | addr as u64
}

/// A stored entry of either kind (port: `u32`, value in bits 31..16; signature: `u64`,
/// value in bits 47..16), with the answer sequence in bits 15..8 and the address slot in
/// 7..0: ordered as entries are, by value, then answer, then address.
pub trait IndexEntry: Copy + Ord {
    /// The low byte of the answer's sequence number.
    fn seq(self) -> u8;
    /// The address slot in the answer.
    fn addr(self) -> usize;
}

impl IndexEntry for u32 {
    fn seq(self) -> u8 {
        (self >> 8) as u8
    }
    fn addr(self) -> usize {
        (self & 0xff) as usize
    }
}

impl IndexEntry for u64 {
    fn seq(self) -> u8 {
        (self >> 8) as u8
    }
    fn addr(self) -> usize {
        (self & 0xff) as usize
    }
}

/// One kind of entries, in answer order.
#[derive(Debug, Default)]
struct Entries<E> {
    v: Vec<E>,
}

impl<E: IndexEntry> Entries<E> {
    fn len(&self) -> usize {
        self.v.len()
    }

    /// Whether an entry has this value (`value_of` reads it).
    fn has<V: PartialEq>(&self, value: V, value_of: impl Fn(E) -> V) -> bool {
        self.v.iter().any(|&e| value_of(e) == value)
    }

    /// The entries with this value, ordered by (answer sequence byte, address slot) as a
    /// sorted index gave them (the checks that pick among matches keep the first of
    /// equals).
    fn matching<V: PartialEq>(&self, value: V, value_of: impl Fn(E) -> V) -> Vec<E> {
        let mut m: Vec<E> = self
            .v
            .iter()
            .copied()
            .filter(|&e| value_of(e) == value)
            .collect();
        m.sort_unstable();
        m
    }

    /// Keeps the entries whose answer is still in the ring.
    fn prune(&mut self, kept: impl Fn(E) -> bool) {
        self.v.retain(|&e| kept(e));
    }

    fn clear(&mut self) {
        self.v.clear();
    }

    fn push_new(&mut self, new: impl ExactSizeIterator<Item = E>) {
        reserve_entries(&mut self.v, new.len());
        self.v.extend(new);
    }
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
    /// Derived-port entries of the remembered answers.
    ports: Entries<u32>,
    /// Octet-signature entries (IPv4 shuffles).
    sigs: Entries<u64>,
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
            ports: Entries::default(),
            sigs: Entries::default(),
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

    /// Whether a remembered address derives `port`.
    pub fn has_port(&self, port: u16) -> bool {
        self.ports.has(port, |e| (e >> 16) as u16)
    }

    /// Entries deriving `port` from a remembered address, ordered by (answer sequence
    /// byte, address slot).
    pub fn lookup_port(&self, port: u16) -> Vec<u32> {
        self.ports.matching(port, |e| (e >> 16) as u16)
    }

    /// Whether a remembered IPv4 address has octet signature `sig`.
    pub fn has_sig(&self, sig: u32) -> bool {
        self.sigs.has(sig, |e| (e >> 16) as u32)
    }

    /// Entries of remembered IPv4 addresses with octet signature `sig`, ordered as
    /// [`HostState::lookup_port`]'s.
    pub fn lookup_sig(&self, sig: u32) -> Vec<u64> {
        self.sigs.matching(sig, |e| (e >> 16) as u32)
    }

    /// Remembers answer `r` with its new entries (from [`entry`], in any order;
    /// `new` is left empty), dropping the oldest answers past `cap` or [`MAX_INDEX`].
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
                || self.ports.len() + self.sigs.len() + new.len() > MAX_INDEX)
        {
            self.answers.pop_front();
            self.prune();
        }
        self.answers.push_back(r);
        // Sorted by kind first: ports, then signatures.
        let n_ports = new.partition_point(|&e| e >> 56 == KEY_PORT);
        let low = |e: u64| e & 0xffff;
        self.ports.push_new(
            new[..n_ports]
                .iter()
                .map(|&e| ((e >> 24) as u32) << 16 | low(e) as u32),
        );
        self.sigs.push_new(
            new[n_ports..]
                .iter()
                .map(|&e| ((e >> 24) & 0xffff_ffff) << 16 | low(e)),
        );
        new.clear();
    }

    fn prune(&mut self) {
        match self.answers.front().map(|r| r.seq as u8) {
            None => {
                self.ports.clear();
                self.sigs.clear();
            }
            Some(front) => {
                let n = self.answers.len();
                let live = |seq: u8| usize::from(seq.wrapping_sub(front)) < n;
                self.ports.prune(|e| live(e.seq()));
                self.sigs.prune(|e| live(e.seq()));
            }
        }
    }

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
            + self.ports.v.capacity() * 4
            + self.sigs.v.capacity() * 8
            + names
            + self.baseline.ports.entries.capacity() * 24
            + self.baseline.dests.entries.capacity() * 24
    }
}

/// Makes room for `extra` more entries, doubling, capped at [`MAX_INDEX`]: a few
/// reallocations per host (growing by a quarter reallocated on nearly every answer of a
/// host with few: ~13 % of the detector's answer time).
fn reserve_entries<E>(v: &mut Vec<E>, extra: usize) {
    let need = v.len() + extra;
    if v.capacity() < need {
        let want = need.max(2 * v.capacity()).min(MAX_INDEX.max(need));
        v.reserve_exact(want - v.len());
    }
}

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
/// by DNS even when the host's own ring has rolled over. Two generations bound it (the
/// cap counts both families). IPv4 addresses are kept as 4-byte keys: nearly every
/// answer inserts some, and 16-byte keys made the table four times as large.
pub struct Answered {
    cur: (HashSet<u32>, HashSet<u128>),
    old: (HashSet<u32>, HashSet<u128>),
    cap: usize,
}

impl Answered {
    pub fn new(cap: usize) -> Answered {
        Answered {
            cur: Default::default(),
            old: Default::default(),
            cap: (cap / 2).max(8),
        }
    }
    pub fn insert(&mut self, ip: IpAddr) {
        if self.cur.0.len() + self.cur.1.len() >= self.cap {
            self.old = std::mem::take(&mut self.cur);
        }
        match ip {
            IpAddr::V4(a) => self.cur.0.insert(u32::from(a)),
            IpAddr::V6(a) => self.cur.1.insert(u128::from(a)),
        };
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let k = u32::from(a);
                self.cur.0.contains(&k) || self.old.0.contains(&k)
            }
            IpAddr::V6(a) => {
                let k = u128::from(a);
                self.cur.1.contains(&k) || self.old.1.contains(&k)
            }
        }
    }
    pub fn heap_bytes(&self) -> usize {
        (self.cur.0.capacity() + self.old.0.capacity()) * 5
            + (self.cur.1.capacity() + self.old.1.capacity()) * 17
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
        assert_eq!(s.ports.len(), 3);
        assert!(s.lookup_port(1006).is_empty() && !s.has_port(1006));
        assert!(s.has_port(1008));
        let e = s.lookup_port(1008);
        assert_eq!(e.len(), 1);
        assert_eq!(&*s.by_seq(e[0].seq()).unwrap().query, "n8");
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
            // 250 ports and 50 signatures an answer (ports wrap: older answers share
            // them, with another sequence number).
            for p in 0..300u32 {
                let (kind, value) = match p {
                    0..250 => (KEY_PORT, (t * 250 + p) % 65_536),
                    _ => (KEY_SIG, t * 1000 + p),
                };
                scratch.push(entry(kind, value, 0, (p % 8) as usize));
            }
            s.remember(rem(i64::from(t), "x"), &mut scratch, 32);
            assert!(s.ports.len() + s.sigs.len() <= MAX_INDEX);
            let port = ((t * 250 + 5) % 65_536) as u16;
            let e = s.lookup_port(port);
            assert_eq!(e.len(), 1, "t={t}");
            assert_eq!(s.by_seq(e[0].seq()).unwrap().ts, Ts::from_secs(t.into()));
            assert_eq!(e[0].addr(), 5);
            let e = s.lookup_sig(t * 1000 + 260);
            assert_eq!(e.len(), 1);
            assert_eq!(
                (s.by_seq(e[0].seq()).unwrap().ts, e[0].addr()),
                (Ts::from_secs(t.into()), 260 % 8)
            );
        }
        assert!(s.answers.len() <= 4);
    }

    #[test]
    fn growth_is_bounded_and_dropped_answers_are_never_found() {
        let mut h = Hosts::new(4, 4);
        let s = h.get_or_insert(IpAddr::from([10, 0, 0, 1]), Ts::ZERO, HostBaseline::default);
        let mut scratch = Vec::new();
        for t in 0..200u32 {
            for p in 0..40 {
                scratch.push(entry(KEY_PORT, t * 100 + p, 0, 0));
            }
            s.remember(rem(i64::from(t), "x"), &mut scratch, 4);
            for p in [0, 17, 39] {
                assert_eq!(s.lookup_port((t * 100 + p) as u16).len(), 1);
                if t >= 4 {
                    assert!(!s.has_port(((t - 4) * 100 + p) as u16));
                }
            }
            // Doubling growth, bounded by what 4 answers need (160 entries) doubled once.
            assert!(s.ports.v.capacity() <= 2 * 160, "{}", s.ports.v.capacity());
        }
    }

    /// New entries in any order: every entry of every answer still in the ring is
    /// found, in (answer sequence byte, address) order, and no other.
    #[test]
    fn every_live_entry_is_found_after_merges_of_any_order() {
        let mut h = Hosts::new(4, 6);
        let s = h.get_or_insert(IpAddr::from([10, 0, 0, 1]), Ts::ZERO, HostBaseline::default);
        let mut scratch = Vec::new();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut rng = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // What each remembered answer added, by its time.
        let mut added: Vec<(i64, Vec<u16>, Vec<u32>)> = Vec::new();
        for t in 0..400i64 {
            let n = (rng() % 60) as usize;
            let ports: Vec<u16> = (0..n).map(|_| (rng() % 2000) as u16 + 1).collect();
            let sigs: Vec<u32> = (0..n / 10).map(|_| rng() as u32).collect();
            for (i, &p) in ports.iter().enumerate() {
                scratch.push(entry(KEY_PORT, u32::from(p), 0, i % KEEP_ADDRS));
            }
            for &g in &sigs {
                scratch.push(entry(KEY_SIG, g, 0, 0));
            }
            s.remember(rem(t, "x"), &mut scratch, 6);
            added.push((t, ports, sigs));
            if rng() % 3 != 0 {
                continue;
            }
            let live: Vec<Ts> = s.answers.iter().map(|r| r.ts).collect();
            for (at, ports, sigs) in &added {
                let ts = Ts::from_secs(*at);
                let alive = live.contains(&ts);
                for &p in ports {
                    let m = s.lookup_port(p);
                    assert!(m.windows(2).all(|w| w[0] < w[1]));
                    assert_eq!(s.has_port(p), !m.is_empty());
                    let found = m
                        .iter()
                        .any(|e| s.by_seq(e.seq()).is_some_and(|r| r.ts == ts));
                    assert_eq!(found, alive, "t={t} answer {at} port {p}");
                }
                for &g in sigs {
                    let found = s
                        .lookup_sig(g)
                        .iter()
                        .any(|e| s.by_seq(e.seq()).is_some_and(|r| r.ts == ts));
                    assert_eq!(found, alive, "t={t} answer {at} sig {g}");
                }
            }
            added.retain(|(at, ..)| live.contains(&Ts::from_secs(*at)));
        }
    }

    /// Two generations whose cap counts both families: an address stays known for one
    /// full generation after the one it came in.
    #[test]
    fn answered_addresses_last_two_generations() {
        let mut a = Answered::new(16); // 8 per generation
        let v4 = |i: u8| IpAddr::from([192, 0, 2, i]);
        let v6 = |i: u16| IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, i]);
        a.insert(v4(1));
        a.insert(v6(1));
        assert!(a.contains(v4(1)) && a.contains(v6(1)));
        assert!(!a.contains(v4(2)) && !a.contains(v6(2)));
        assert!(!a.contains("::ffff:192.0.2.1".parse().unwrap()));
        for i in 2..8 {
            a.insert(v4(i));
        }
        a.insert(v6(2)); // the ninth: a new generation; the first eight are old
        assert!(a.contains(v4(1)) && a.contains(v6(1)) && a.contains(v6(2)));
        for i in 8..16 {
            a.insert(v4(i)); // fills the new generation; the last one rotates again
        }
        assert!(!a.contains(v4(1)) && !a.contains(v6(1)));
        assert!(a.contains(v6(2)) && a.contains(v4(15)));
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
