//! One shard of the flow table, owned by one worker.
//!
//! Layout, chosen for memory per flow (target ≤ 256 bytes, table included): flows live
//! in a slab (`Vec<Flow>`, reused through a free list); the index ([`FlowIndex`]) holds
//! one `u32` per slot at load ≤ 1/2, about 8 bytes per flow, and lets the worker
//! prefetch a packet's slot and flow record a few packets ahead. Each flow sits on one intrusive idle list per
//! timeout class (unestablished TCP, established TCP, closed TCP, UDP, other): within a
//! class every flow has the same timeout, so the list tail is always the next to expire
//! and expiry costs O(1) per expired flow, whatever the table size.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};

use super::index::{self, FlowIndex};

use super::history::{ConnState, History};
use super::{EndReason, FlowEvent, FlowHandle, FlowKey, FlowRecord, FIRST_SIZES};
use crate::config::{FlowConfig, NetSet};
use crate::decode::{tcp_flags as tf, Packet, PROTO_TCP, PROTO_UDP};
use crate::time::{Dur, Ts};

const NIL: u32 = u32::MAX;

/// How many due flows ahead [`FlowShard::end_due`] prefetches a record.
const END_PREFETCH: usize = 4;

/// Cache lines of a [`Flow`] that packets touch (see its layout).
const HOT_LINES: usize = 3;

/// A flow moves to the head of its idle list at most this often (packet time). Relinking
/// on every packet touches two neighbours' cache lines; this bounds how late an idle flow
/// is noticed instead (by this much at most).
const LRU_REFRESH: Dur = Dur(1_000_000_000);

/// Timeout classes; each has its own idle list.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Class {
    TcpUnestablished = 0,
    TcpEstablished = 1,
    TcpClosed = 2,
    Udp = 3,
    Other = 4,
    /// UDP with traffic both ways.
    UdpEstablished = 5,
    /// Not a live flow: a slab slot on the free list (or ended in a drain). On no idle
    /// list, so never used as an index into the per-class arrays.
    Free = 6,
}
const CLASSES: usize = 6;

/// TCP endpoint states, as Zeek names them.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[repr(u8)]
enum EpState {
    #[default]
    Inactive,
    SynSent,
    SynAckSent,
    Partial,
    Established,
    Closed,
    Reset,
}

/// Per-direction state: 24 bytes.
#[derive(Clone, Copy, Default, Debug)]
struct Side {
    /// Sequence number of the first payload byte (ISN + 1), once known.
    seq_base: u32,
    /// Highest payload offset seen relative to `seq_base` (wrapping, < 2^31 ahead).
    seq_max: u32,
    /// Sequence number of the last FIN / SYN this side sent (Zeek repeats a letter only
    /// for a new sequence number).
    last_flag_seq: u32,
    pkts: u32,
    /// Retransmitted data segments (for Zeek's logarithmic 't' letters).
    retrans: u16,
    state: EpState,
    seq_known: bool,
    active: bool,
    /// History letters already recorded once for this side: bit per letter group.
    once: u8,
}

const ONCE_ACK: u8 = 1;
const ONCE_DATA: u8 = 2;
const ONCE_MULTI: u8 = 4;
const ONCE_INCONSISTENT: u8 = 8;
const ONCE_ZERO_WIN: u8 = 16;

/// One live connection. `Copy` values only: never packet bytes.
///
/// Laid out by cache line, in the order a packet needs them (`repr(C)` keeps it): a
/// packet without payload touches the first two lines, one with payload the third too;
/// the fourth holds what only a flow's start, end and first packets use. The prefetch
/// stages load the first three ([`FlowShard::prefetch_flow`]).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Flow {
    // Line 0: lookup, timeout check, direction.
    key: FlowKey,
    last_ts: Ts,
    /// When the flow was last (re)queued at its idle list's head; the list is ordered by
    /// it. Refreshed at most every [`LRU_REFRESH`], so most packets touch no neighbour.
    queued: Ts,
    /// Idle list class.
    class: Class,
    /// The originator is the key's `lo` endpoint.
    orig_is_lo: bool,
    has_mac: bool,
    orig_is_internal: bool,
    msg_index: u32,
    // Line 1: per-side state and counts of every packet.
    sides: [Side; 2],
    ip_bytes: [u64; 2],
    // Line 2: payload.
    /// Payload bytes per side (index 0 = originator), retransmissions counted once.
    bytes: [u64; 2],
    /// The outbound message in progress: bytes, start and last payload time.
    msg_bytes: u64,
    msg_start: Ts,
    msg_last: Ts,
    first_sizes: [[u16; FIRST_SIZES]; 2],
    /// Idle list links.
    prev: u32,
    next: u32,
    // Line 3: start, end, history letters.
    /// `flow_uid(first_ts, key)`, computed once: records and sweeps need it several
    /// times per flow and the hash is byte-serial.
    uid: u64,
    first_ts: Ts,
    mac: [u8; 6],
    vlan: u16,
    history: History,
}

/// Counters of a shard; published as metrics by the pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowStats {
    pub created: u64,
    pub ended_closed: u64,
    pub ended_idle: u64,
    pub evicted: u64,
    pub ended_shutdown: u64,
    pub live: u64,
    pub peak_live: u64,
}

/// A shard of the flow table. Not thread-safe by design: one worker owns it.
pub struct FlowShard {
    index: FlowIndex,
    hasher: KeyHasher,
    flows: Vec<Flow>,
    free: Vec<u32>,
    heads: [u32; CLASSES],
    tails: [u32; CLASSES],
    /// Flows found due by the last expiry pass, in output order, not yet ended.
    due: Vec<Due>,
    /// A drain is ending every flow: ended flows are left where they are (no unlink,
    /// no index removal, no free list) and the whole table is reset after the last.
    draining: bool,
    timeouts: [Dur; CLASSES],
    message_gap: Dur,
    cap: usize,
    home_net: NetSet,
    pub stats: FlowStats,
}

/// A packet's flow key, direction and hash (see [`FlowShard::key_of`]).
#[derive(Clone, Copy, Debug)]
pub struct PacketKey {
    pub key: FlowKey,
    pub from_lo: bool,
    pub hash: u64,
}

impl Default for PacketKey {
    /// A placeholder (all-zero IPv4 key) for buffers filled before use.
    fn default() -> Self {
        let zero = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        PacketKey {
            key: FlowKey {
                lo: zero,
                hi: zero,
                lo_port: 0,
                hi_port: 0,
                proto: 0,
            },
            from_lo: true,
            hash: 0,
        }
    }
}

/// A flow to end: sorted by (last packet time, uid) so the output order does not depend
/// on how flows were spread over shards (then slot and reason: a total order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Due {
    last_ts: Ts,
    uid: u64,
    slot: u32,
    reason: u8,
}

impl Due {
    /// (last packet time, uid) as one integer, ordered as the pair is: a drain sorts
    /// every live flow by it, and the field-by-field comparison cost twice as much.
    fn key(&self) -> u128 {
        let t = (self.last_ts.0 as u64) ^ (1 << 63);
        u128::from(t) << 64 | u128::from(self.uid)
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Lazily: the slot and reason decide only between equal keys (never, in
        // practice), and `Ordering::then` would compare them every time.
        match self.key().cmp(&other.key()) {
            std::cmp::Ordering::Equal => (self.slot, self.reason).cmp(&(other.slot, other.reason)),
            o => o,
        }
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A keyed hash of a flow key: the 5-tuple packed into words and mixed by folded
/// multiplies (as foldhash does) with per-process random seeds, so crafted traffic cannot
/// aim at one index slot. `Hash` on the key fed each field (and the address enum tags)
/// through the hasher one call at a time, several times slower.
struct KeyHasher {
    seeds: [u64; 4],
}

impl KeyHasher {
    fn new() -> KeyHasher {
        let r = hashbrown::DefaultHashBuilder::default();
        KeyHasher {
            seeds: [0u64, 1, 2, 3].map(|i| r.hash_one(i) | 1),
        }
    }
}

#[inline]
fn fold_mul(x: u64, y: u64) -> u64 {
    let r = (x as u128).wrapping_mul(y as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// An address as two words (a v4 address marked so it never equals a v6 one).
#[inline]
fn addr_words(a: &IpAddr) -> (u64, u64) {
    match a {
        IpAddr::V4(v) => (u32::from_ne_bytes(v.octets()) as u64, 1 << 63),
        IpAddr::V6(v) => {
            let o = v.octets();
            let mut hi = [0u8; 8];
            let mut lo = [0u8; 8];
            hi.copy_from_slice(&o[..8]);
            lo.copy_from_slice(&o[8..]);
            (u64::from_ne_bytes(hi), u64::from_ne_bytes(lo))
        }
    }
}

/// Every input word goes into its own seeded multiply operand, so no choice of fields
/// collides independently of the seeds.
#[inline]
fn hash_key(h: &KeyHasher, k: &FlowKey) -> u64 {
    let s = &h.seeds;
    if let (IpAddr::V4(l), IpAddr::V4(r)) = (k.lo, k.hi) {
        return hash_v4(h, l, r, k.lo_port, k.hi_port, k.proto);
    }
    let ports = (k.lo_port as u64) << 24 | (k.hi_port as u64) << 8 | k.proto as u64;
    let (l0, l1) = addr_words(&k.lo);
    let (h0, h1) = addr_words(&k.hi);
    let a = fold_mul(l0 ^ s[0], l1 ^ s[1]);
    let b = fold_mul(h0 ^ s[2], h1 ^ s[3]);
    fold_mul(fold_mul(a ^ s[1], b ^ ports ^ s[2]) ^ s[0], s[3])
}

/// [`hash_key`] of an IPv4 key, from its parts.
#[inline]
fn hash_v4(
    h: &KeyHasher,
    lo: Ipv4Addr,
    hi: Ipv4Addr,
    lo_port: u16,
    hi_port: u16,
    proto: u8,
) -> u64 {
    let s = &h.seeds;
    let ports = (lo_port as u64) << 24 | (hi_port as u64) << 8 | proto as u64;
    let x = (u32::from_ne_bytes(lo.octets()) as u64) << 32 | u32::from_ne_bytes(hi.octets()) as u64;
    fold_mul(fold_mul(x ^ s[0], ports ^ s[1]) ^ s[2], s[3])
}

/// Deterministic flow uid: FNV-1a over the first packet time and the key.
pub fn flow_uid(first_ts: Ts, key: &FlowKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= x as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&first_ts.0.to_le_bytes());
    for a in [key.lo, key.hi] {
        match a {
            IpAddr::V4(v) => eat(&v.octets()),
            IpAddr::V6(v) => eat(&v.octets()),
        }
    }
    eat(&key.lo_port.to_le_bytes());
    eat(&key.hi_port.to_le_bytes());
    eat(&[key.proto]);
    h
}

/// Relative position of `seq` after `base`, or None when it lies behind it.
fn rel(seq: u32, base: u32) -> Option<u32> {
    let d = seq.wrapping_sub(base);
    (d < 1 << 31).then_some(d)
}

impl FlowShard {
    pub fn new(cfg: &FlowConfig, cap: usize, home_net: NetSet) -> FlowShard {
        FlowShard {
            index: FlowIndex::new(),
            hasher: KeyHasher::new(),
            flows: Vec::new(),
            free: Vec::new(),
            heads: [NIL; CLASSES],
            tails: [NIL; CLASSES],
            due: Vec::new(),
            draining: false,
            timeouts: [
                cfg.tcp_unestablished_timeout,
                cfg.tcp_established_timeout,
                cfg.tcp_closed_timeout,
                cfg.udp_timeout,
                cfg.other_timeout,
                cfg.udp_established_timeout,
            ],
            message_gap: cfg.message_gap,
            cap: cap.clamp(1, index::MAX_POSITIONS),
            home_net,
            stats: FlowStats::default(),
        }
    }

    pub fn live(&self) -> usize {
        self.flows.len() - self.free.len()
    }

    /// Heap bytes held by the shard (slab, free list and index), for memory reports.
    pub fn heap_bytes(&self) -> usize {
        self.flows.capacity() * std::mem::size_of::<Flow>()
            + self.free.capacity() * 4
            + self.index.capacity() * 4
    }

    /// Bytes per flow record in the slab.
    pub const FLOW_SIZE: usize = std::mem::size_of::<Flow>();

    fn unlink(&mut self, i: u32) {
        let (p, n, c) = {
            let f = &self.flows[i as usize];
            (f.prev, f.next, f.class as usize)
        };
        if p != NIL {
            self.flows[p as usize].next = n;
        } else {
            self.heads[c] = n;
        }
        if n != NIL {
            self.flows[n as usize].prev = p;
        } else {
            self.tails[c] = p;
        }
    }

    fn push_head(&mut self, i: u32, class: Class, now: Ts) {
        let c = class as usize;
        let old = self.heads[c];
        {
            let f = &mut self.flows[i as usize];
            f.class = class;
            f.queued = now;
            f.prev = NIL;
            f.next = old;
        }
        if old != NIL {
            self.flows[old as usize].prev = i;
        } else {
            self.tails[c] = i;
        }
        self.heads[c] = i;
    }

    fn find(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let flows = &self.flows;
        self.index.find(hash, |i| flows[i as usize].key == *key)
    }

    /// A packet's flow key, its direction, and the key's hash, computed once and shared
    /// by the prefetch stages and [`process_keyed`](Self::process_keyed).
    #[inline(always)]
    pub fn key_of(&self, p: &Packet) -> PacketKey {
        if let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src, p.dst) {
            // IPv4 (nearly every packet) in one pass: order, key and hash from the two
            // address words, without matching the address enums three times.
            let (s, d) = (u32::from(src), u32::from(dst));
            let from_lo = (s, p.sport) <= (d, p.dport);
            let (lo, hi, lo_port, hi_port) = if from_lo {
                (src, dst, p.sport, p.dport)
            } else {
                (dst, src, p.dport, p.sport)
            };
            return PacketKey {
                hash: hash_v4(&self.hasher, lo, hi, lo_port, hi_port, p.proto),
                key: FlowKey {
                    lo: IpAddr::V4(lo),
                    hi: IpAddr::V4(hi),
                    lo_port,
                    hi_port,
                    proto: p.proto,
                },
                from_lo,
            };
        }
        let (key, from_lo) = FlowKey::from_packet(p.src, p.sport, p.dst, p.dport, p.proto);
        PacketKey {
            hash: hash_key(&self.hasher, &key),
            key,
            from_lo,
        }
    }

    /// First prefetch stage for a packet that [`process_keyed`](Self::process_keyed)
    /// will see soon: starts loading its index slot.
    #[inline]
    pub fn prefetch_slot(&self, k: &PacketKey) {
        self.index.prefetch(k.hash);
    }

    /// Second stage, a few packets later (the slot is in cache by then): starts loading
    /// the flow record the slot names.
    #[inline]
    pub fn prefetch_flow(&self, k: &PacketKey) {
        if let Some(i) = self.index.peek(k.hash) {
            if let Some(f) = self.flows.get(i as usize) {
                let f = f as *const Flow as *const u8;
                for line in 0..HOT_LINES {
                    index::prefetch(f.wrapping_add(line * 64));
                }
            }
        }
    }

    /// Feeds one packet; events go to `out` in the order they happened.
    pub fn process(&mut self, p: &Packet, out: &mut Vec<FlowEvent>) {
        let k = self.key_of(p);
        self.process_keyed(p, &k, out);
    }

    /// [`process`](Self::process) with the key already computed by [`key_of`](Self::key_of).
    pub fn process_keyed(&mut self, p: &Packet, k: &PacketKey, out: &mut Vec<FlowEvent>) {
        if self.draining {
            // A packet before a drain finished (the pipeline never does this): the drain
            // completes first, so no lookup meets a flow it already ended.
            self.end_due(usize::MAX, out);
        }
        let (key, from_lo, hash) = (k.key, k.from_lo, k.hash);
        let mut found = self.find(&key, hash);
        if let Some(i) = found {
            // Timed out before this packet, whether or not a sweep has run since: the
            // packet starts a new connection (as Zeek does), so where flows split does
            // not depend on batch sizes.
            let f = &self.flows[i as usize];
            let c = f.class as usize;
            if f.last_ts.saturating_add(self.timeouts[c]) <= p.ts {
                let reason = if c == Class::TcpClosed as usize {
                    EndReason::Closed
                } else {
                    EndReason::IdleTimeout
                };
                self.end(i, reason, out);
                found = None;
            }
        }
        match found {
            Some(i) => self.update(i, p, from_lo, out),
            None => {
                if self.live() >= self.cap {
                    self.evict_one(out);
                }
                let i = self.insert(key, hash, p, from_lo);
                // A first packet cannot finish a message, so `update` emits nothing here
                // and Started carries the first packet's counts and state.
                self.update(i, p, from_lo, out);
                out.push(FlowEvent::Started(self.record(i)));
            }
        }
    }

    fn insert(&mut self, key: FlowKey, hash: u64, p: &Packet, from_lo: bool) -> u32 {
        // Room in the index first, while it holds exactly the live flows: the slots not
        // marked free (a growth meets none in practice, as the slab grows only when no
        // slot is free).
        let (flows, hasher) = (&self.flows, &self.hasher);
        self.index.reserve_one(|| {
            flows
                .iter()
                .enumerate()
                .filter(|(_, f)| f.class != Class::Free)
                .map(|(i, f)| (hash_key(hasher, &f.key), i as u32))
        });
        let src_home = self.home_net.contains(p.src);
        let dst_home = self.home_net.contains(p.dst);
        // Initiator: the SYN sender; else the home-net side; else the first packet's
        // sender.
        let tcp = p.proto == PROTO_TCP;
        let syn = tcp && p.tcp_flags & tf::SYN != 0;
        let ack = tcp && p.tcp_flags & tf::ACK != 0;
        let src_is_orig = if syn {
            !ack
        } else if src_home != dst_home {
            src_home
        } else {
            true
        };
        let orig_home = if src_is_orig { src_home } else { dst_home };
        let resp_home = if src_is_orig { dst_home } else { src_home };
        let orig_is_internal = orig_home || !resp_home;
        let mut history = History::default();
        if !src_is_orig {
            history.push(b'^');
        }
        let flow = Flow {
            key,
            uid: flow_uid(p.ts, &key),
            first_ts: p.ts,
            last_ts: p.ts,
            bytes: [0; 2],
            ip_bytes: [0; 2],
            sides: [Side::default(); 2],
            first_sizes: [[0; FIRST_SIZES]; 2],
            msg_bytes: 0,
            msg_start: p.ts,
            msg_last: p.ts,
            msg_index: 0,
            history,
            queued: p.ts,
            prev: NIL,
            next: NIL,
            class: Class::Other,
            orig_is_lo: src_is_orig == from_lo,
            orig_is_internal,
            has_mac: false,
            mac: [0; 6],
            vlan: p.vlan,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.flows[i as usize] = flow;
                i
            }
            None => {
                self.flows.push(flow);
                (self.flows.len() - 1) as u32
            }
        };
        self.index.insert(hash, i);
        let class = match p.proto {
            PROTO_TCP => Class::TcpUnestablished,
            PROTO_UDP => Class::Udp,
            _ => Class::Other,
        };
        self.push_head(i, class, p.ts);
        self.stats.created += 1;
        self.stats.live += 1;
        self.stats.peak_live = self.stats.peak_live.max(self.stats.live);
        i
    }

    fn update(&mut self, i: u32, p: &Packet, from_lo: bool, out: &mut Vec<FlowEvent>) {
        let gap = self.message_gap;
        let f = &mut self.flows[i as usize];
        let from_orig = from_lo == f.orig_is_lo;
        let d = if from_orig { 0 } else { 1 };
        if p.ts > f.last_ts {
            f.last_ts = p.ts;
        }
        f.ip_bytes[d] += p.ip_len as u64;
        if from_orig && !f.has_mac {
            if let Some(m) = p.src_mac {
                f.mac = m;
                f.has_mac = true;
            }
        }
        let side = &mut f.sides[d];
        side.pkts = side.pkts.saturating_add(1);
        side.active = true;
        let new_bytes = if p.proto == PROTO_TCP {
            tcp_update(f, d, p)
        } else {
            let letter = if from_orig { b'D' } else { b'd' };
            if p.payload_len > 0 && f.sides[d].once & ONCE_DATA == 0 {
                f.sides[d].once |= ONCE_DATA;
                f.history.push(letter);
            }
            p.payload_len as u64
        };
        if new_bytes > 0 {
            f.bytes[d] += new_bytes;
            if let Some(slot) = f.first_sizes[d].iter_mut().find(|s| **s == 0) {
                *slot = new_bytes.min(u16::MAX as u64) as u16;
            }
        }
        // Outbound messages: a run of originator payload ended by a reply or by a gap.
        let mut finished = None;
        if new_bytes > 0 && from_orig {
            if f.msg_bytes > 0 && p.ts.since(f.msg_last) >= gap {
                finished = Some((f.msg_start, f.msg_last, f.msg_bytes, f.msg_index));
                f.msg_index += 1;
                f.msg_bytes = 0;
            }
            if f.msg_bytes == 0 {
                f.msg_start = p.ts;
            }
            f.msg_bytes += new_bytes;
            f.msg_last = p.ts;
        } else if new_bytes > 0 && f.msg_bytes > 0 {
            finished = Some((f.msg_start, f.msg_last, f.msg_bytes, f.msg_index));
            f.msg_index += 1;
            f.msg_bytes = 0;
        }
        let class = self.class_of(i);
        let (old_class, queued) = {
            let f = &self.flows[i as usize];
            (f.class, f.queued)
        };
        if old_class != class || p.ts.since(queued) >= LRU_REFRESH {
            self.unlink(i);
            self.push_head(i, class, p.ts.max(queued));
        }
        if let Some((start, end, bytes, index)) = finished {
            out.push(FlowEvent::OrigMessage {
                flow: self.record(i),
                start,
                end,
                bytes,
                index,
            });
        }
    }

    fn class_of(&self, i: u32) -> Class {
        let f = &self.flows[i as usize];
        match f.key.proto {
            PROTO_TCP => {
                let (o, r) = (f.sides[0].state, f.sides[1].state);
                if o == EpState::Reset
                    || r == EpState::Reset
                    || (o == EpState::Closed && r == EpState::Closed)
                {
                    Class::TcpClosed
                } else if o == EpState::Established || r == EpState::Established {
                    Class::TcpEstablished
                } else if matches!(o, EpState::Partial | EpState::Closed)
                    && matches!(r, EpState::Partial | EpState::Closed)
                {
                    // Midstream both ways: a live connection whose start we missed.
                    Class::TcpEstablished
                } else {
                    Class::TcpUnestablished
                }
            }
            PROTO_UDP if f.sides[0].active && f.sides[1].active => Class::UdpEstablished,
            PROTO_UDP => Class::Udp,
            _ => Class::Other,
        }
    }

    /// Builds the record of a live flow.
    fn record(&self, i: u32) -> FlowRecord {
        let f = &self.flows[i as usize];
        let (o, op, r, rp) = if f.orig_is_lo {
            (f.key.lo, f.key.lo_port, f.key.hi, f.key.hi_port)
        } else {
            (f.key.hi, f.key.hi_port, f.key.lo, f.key.lo_port)
        };
        FlowRecord {
            uid: f.uid,
            proto: f.key.proto,
            orig: o,
            orig_port: op,
            resp: r,
            resp_port: rp,
            orig_is_internal: f.orig_is_internal,
            first_ts: f.first_ts,
            last_ts: f.last_ts,
            orig_pkts: f.sides[0].pkts,
            resp_pkts: f.sides[1].pkts,
            orig_bytes: f.bytes[0],
            resp_bytes: f.bytes[1],
            orig_ip_bytes: f.ip_bytes[0],
            resp_ip_bytes: f.ip_bytes[1],
            conn_state: conn_state(f),
            history: f.history,
            orig_first_sizes: f.first_sizes[0],
            resp_first_sizes: f.first_sizes[1],
            orig_mac: f.has_mac.then_some(f.mac),
            vlan: f.vlan,
            handle: FlowHandle(i),
        }
    }

    /// Removes flow `i`, emitting its final message (if any) and its end.
    fn end(&mut self, i: u32, reason: EndReason, out: &mut Vec<FlowEvent>) {
        let rec = self.record(i);
        let f = self.flows[i as usize];
        if f.msg_bytes > 0 {
            out.push(FlowEvent::OrigMessage {
                flow: rec,
                start: f.msg_start,
                end: f.msg_last,
                bytes: f.msg_bytes,
                index: f.msg_index,
            });
        }
        out.push(FlowEvent::Ended(rec, reason));
        if !self.draining {
            self.unlink(i);
            let hash = hash_key(&self.hasher, &f.key);
            let flows = &self.flows;
            let hasher = &self.hasher;
            self.index
                .remove(hash, i, |j| hash_key(hasher, &flows[j as usize].key));
            self.free.push(i);
        }
        self.flows[i as usize].class = Class::Free;
        self.stats.live -= 1;
        match reason {
            EndReason::Closed => self.stats.ended_closed += 1,
            EndReason::IdleTimeout => self.stats.ended_idle += 1,
            EndReason::Evicted => self.stats.evicted += 1,
            EndReason::Shutdown => self.stats.ended_shutdown += 1,
        }
    }

    /// Evicts the longest-idle flow over all classes.
    fn evict_one(&mut self, out: &mut Vec<FlowEvent>) {
        let victim = self
            .tails
            .iter()
            .filter(|&&t| t != NIL)
            .min_by_key(|&&t| (self.flows[t as usize].last_ts, t))
            .copied();
        if let Some(v) = victim {
            self.end(v, EndReason::Evicted, out);
        }
    }

    /// Finds every flow idle past its class timeout at packet time `now` and queues it to
    /// be ended by [`end_due`](Self::end_due); returns how many are due.
    pub fn expire_begin(&mut self, now: Ts) -> usize {
        if self.draining {
            // Every flow is due already (and ended ones are still on their lists).
            return self.due.len();
        }
        self.due.clear();
        for c in 0..CLASSES {
            let timeout = self.timeouts[c];
            let reason = if c == Class::TcpClosed as usize {
                EndReason::Closed
            } else {
                EndReason::IdleTimeout
            };
            // The list is ordered by `queued`; a flow's last packet is at most
            // LRU_REFRESH after it, so the walk stops at the first flow queued too late.
            let mut t = self.tails[c];
            while t != NIL {
                let f = &self.flows[t as usize];
                if f.queued.saturating_add(timeout) > now {
                    break;
                }
                if f.last_ts.saturating_add(timeout) <= now {
                    self.due.push(Due {
                        last_ts: f.last_ts,
                        uid: f.uid,
                        slot: t,
                        reason: reason as u8,
                    });
                }
                t = f.prev;
            }
        }
        self.due.sort_unstable_by(|a, b| b.cmp(a));
        self.due.len()
    }

    /// Queues every live flow to be ended (end of input or shutdown at packet time
    /// `now`); flows already past their timeout end as timed out, as a sweep would
    /// have ended them. [`end_due`](Self::end_due) ends them; a packet fed before it has
    /// ended them all ends the rest first. The table is then empty.
    ///
    /// Every flow goes, so nothing is unlinked or removed one by one: the slab is read
    /// in order (not by chasing idle-list links, a cache miss per flow) and reset after
    /// the last end. On the benchmark capture, where all 82 k flows end here, the
    /// per-flow index removal and unlinking were ~3 % of the run's CPU.
    pub fn drain_begin(&mut self, now: Ts) -> usize {
        self.due.clear();
        for (slot, f) in self.flows.iter().enumerate() {
            if f.class == Class::Free {
                continue;
            }
            let c = f.class as usize;
            let reason = if f.last_ts.saturating_add(self.timeouts[c]) > now {
                EndReason::Shutdown
            } else if c == Class::TcpClosed as usize {
                EndReason::Closed
            } else {
                EndReason::IdleTimeout
            };
            self.due.push(Due {
                last_ts: f.last_ts,
                uid: f.uid,
                slot: slot as u32,
                reason: reason as u8,
            });
        }
        self.due.sort_unstable_by(|a, b| b.cmp(a));
        self.draining = true;
        if self.due.is_empty() {
            self.reset();
        }
        self.due.len()
    }

    /// Empties the table after a drain, keeping its allocations.
    fn reset(&mut self) {
        self.flows.clear();
        self.free.clear();
        self.index.clear();
        self.heads = [NIL; CLASSES];
        self.tails = [NIL; CLASSES];
        self.draining = false;
    }

    /// Ends up to `max` queued flows, in (last packet time, uid) order, each flow's final
    /// message just before its end. Returns whether more remain.
    pub fn end_due(&mut self, max: usize, out: &mut Vec<FlowEvent>) -> bool {
        for _ in 0..max {
            // Due flows come in time order, scattered over the slab: start loading the
            // record a few ends ahead (a drain ends every live flow).
            if let Some(ahead) = self.due.len().checked_sub(1 + END_PREFETCH) {
                let f = self
                    .flows
                    .as_ptr()
                    .wrapping_add(self.due[ahead].slot as usize);
                for line in 0..std::mem::size_of::<Flow>().div_ceil(64) {
                    index::prefetch((f as *const u8).wrapping_add(line * 64));
                }
            }
            let Some(d) = self.due.pop() else {
                break;
            };
            let reason = match d.reason {
                0 => EndReason::Closed,
                1 => EndReason::IdleTimeout,
                2 => EndReason::Evicted,
                _ => EndReason::Shutdown,
            };
            self.end(d.slot, reason, out);
        }
        if self.draining && self.due.is_empty() {
            self.reset();
        }
        !self.due.is_empty()
    }

    /// Ends every flow idle past its timeout at `now` (all at once; tests and small
    /// tables).
    pub fn expire(&mut self, now: Ts, out: &mut Vec<FlowEvent>) {
        self.expire_begin(now);
        self.end_due(usize::MAX, out);
    }

    /// Ends every flow (all at once).
    pub fn drain(&mut self, out: &mut Vec<FlowEvent>) {
        self.drain_begin(Ts::ZERO);
        self.end_due(usize::MAX, out);
    }
}

/// TCP bookkeeping for one packet from side `d`; returns the new payload bytes it
/// carried (retransmitted bytes excluded).
fn tcp_update(f: &mut Flow, d: usize, p: &Packet) -> u64 {
    let upper = d == 0;
    let letter = |c: u8| if upper { c.to_ascii_uppercase() } else { c };
    let flags = p.tcp_flags;
    let syn = flags & tf::SYN != 0;
    let ack = flags & tf::ACK != 0;
    let fin = flags & tf::FIN != 0;
    let rst = flags & tf::RST != 0;
    let o = 1 - d;
    let mut me = f.sides[d];
    let mut peer_state = f.sides[o].state;

    // History letters as Zeek's update_history: a multi-flag packet gets only Q or I.
    let bits = syn as u8 + fin as u8 + rst as u8;
    if bits > 1 {
        let (bit, c) = if fin && rst {
            (ONCE_INCONSISTENT, b'i')
        } else {
            (ONCE_MULTI, b'q')
        };
        if me.once & bit == 0 {
            me.once |= bit;
            f.history.push(letter(c));
        }
    } else if syn {
        if me.state == EpState::Inactive || me.last_flag_seq != p.tcp_seq {
            f.history.push(letter(if ack { b'h' } else { b's' }));
        }
    } else if fin {
        if !matches!(me.state, EpState::Closed | EpState::Reset) || me.last_flag_seq != p.tcp_seq {
            f.history.push(letter(b'f'));
        }
    } else if rst {
        if me.state != EpState::Reset {
            f.history.push(letter(b'r'));
        }
    } else if ack && p.payload_len == 0 && me.once & ONCE_ACK == 0 {
        me.once |= ONCE_ACK;
        f.history.push(letter(b'a'));
    }
    if syn {
        me.last_flag_seq = p.tcp_seq;
        me.seq_base = p.tcp_seq.wrapping_add(1);
        me.seq_max = 0;
        me.seq_known = true;
        if !matches!(me.state, EpState::Closed | EpState::Reset) {
            me.state = if ack {
                EpState::SynAckSent
            } else {
                EpState::SynSent
            };
        }
    } else if !me.seq_known && p.ports_known {
        me.seq_base = p.tcp_seq;
        me.seq_max = 0;
        me.seq_known = true;
    }

    // Payload: count only bytes beyond the highest sequence seen.
    let mut new_bytes = 0u64;
    let len = p.payload_len;
    if len > 0 && !syn {
        match rel(p.tcp_seq, me.seq_base) {
            Some(start) => {
                let end = start.wrapping_add(len);
                if rel(end, me.seq_max).is_some_and(|adv| adv > 0) {
                    new_bytes = end.wrapping_sub(me.seq_max) as u64;
                    me.seq_max = end;
                    if start < me.seq_max.wrapping_sub(new_bytes as u32) {
                        // Partly old data.
                        me.retrans = me.retrans.saturating_add(1);
                    }
                } else {
                    me.retrans = me.retrans.saturating_add(1);
                    if matches!(me.retrans, 1 | 10 | 100 | 1000 | 10000) {
                        f.history.push(letter(b't'));
                    }
                }
            }
            None => {
                me.retrans = me.retrans.saturating_add(1);
                if matches!(me.retrans, 1 | 10 | 100 | 1000 | 10000) {
                    f.history.push(letter(b't'));
                }
            }
        }
        if new_bytes > 0 && me.once & ONCE_DATA == 0 {
            me.once |= ONCE_DATA;
            f.history.push(letter(b'd'));
        }
    }
    if p.tcp_window == 0 && !syn && !rst && me.once & ONCE_ZERO_WIN == 0 {
        me.once |= ONCE_ZERO_WIN;
        f.history.push(letter(b'w'));
    }

    // Endpoint state machine (Zeek's names).
    if !syn {
        match me.state {
            EpState::Inactive => me.state = EpState::Partial,
            EpState::SynSent if ack && peer_state == EpState::SynAckSent => {
                me.state = EpState::Established;
                peer_state = EpState::Established;
            }
            EpState::SynAckSent if ack && peer_state == EpState::Established => {
                me.state = EpState::Established;
            }
            _ => {}
        }
    }
    if fin {
        if me.state != EpState::Reset {
            me.state = EpState::Closed;
        }
        me.last_flag_seq = p.tcp_seq;
    }
    if rst {
        me.state = EpState::Reset;
    }
    f.sides[d] = me;
    f.sides[o].state = peer_state;
    new_bytes
}

/// Zeek's conn_state decision procedure (reference: zeek-conn-and-community-id.md).
fn conn_state(f: &Flow) -> ConnState {
    use EpState::*;
    let (os, rs) = (f.sides[0], f.sides[1]);
    match f.key.proto {
        PROTO_TCP => {
            let o_inactive = matches!(os.state, Inactive | Partial);
            let r_inactive = matches!(rs.state, Inactive | Partial);
            if rs.state == Reset {
                if matches!(os.state, SynSent | SynAckSent)
                    || (os.state == Reset && f.bytes[0] == 0 && f.bytes[1] == 0)
                {
                    ConnState::REJ
                } else if o_inactive {
                    ConnState::RSTRH
                } else {
                    ConnState::RSTR
                }
            } else if os.state == Reset {
                if r_inactive {
                    if history_rstos0(f.history.as_str()) {
                        ConnState::RSTOS0
                    } else {
                        ConnState::OTH
                    }
                } else {
                    ConnState::RSTO
                }
            } else if os.state == Closed && rs.state == Closed {
                ConnState::SF
            } else if os.state == Closed {
                if r_inactive {
                    ConnState::SH
                } else {
                    ConnState::S2
                }
            } else if rs.state == Closed {
                if o_inactive {
                    ConnState::SHR
                } else {
                    ConnState::S3
                }
            } else if os.state == SynSent && rs.state == Inactive {
                ConnState::S0
            } else if os.state == Established && rs.state == Established {
                ConnState::S1
            } else {
                ConnState::OTH
            }
        }
        _ => match (os.active, rs.active) {
            (true, true) => ConnState::SF,
            (true, false) => ConnState::S0,
            (false, true) => ConnState::SHR,
            (false, false) => ConnState::OTH,
        },
    }
}

/// `/^\^?S[^HAFGIQ]*R.*/`: originator SYN then RST with nothing established between.
fn history_rstos0(h: &str) -> bool {
    let b = h.strip_prefix('^').unwrap_or(h).as_bytes();
    if b.first() != Some(&b'S') {
        return false;
    }
    for &c in &b[1..] {
        if c == b'R' {
            return true;
        }
        if b"HAFGIQ".contains(&c) {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_HOME_NET;

    const C: &str = "10.0.0.5";
    const S: &str = "93.184.216.34";

    fn shard() -> FlowShard {
        FlowShard::new(
            &FlowConfig::default(),
            1000,
            NetSet::parse(DEFAULT_HOME_NET).unwrap(),
        )
    }

    /// A TCP packet; `from_client` picks the direction, `flags` like "S", "SA", "A", "FA",
    /// "R", "PA"; `len` payload bytes.
    fn tcp(t_ms: i64, from_client: bool, flags: &str, seq: u32, len: u32) -> Packet {
        let mut f = 0u8;
        for c in flags.chars() {
            f |= match c {
                'S' => tf::SYN,
                'A' => tf::ACK,
                'F' => tf::FIN,
                'R' => tf::RST,
                'P' => tf::PSH,
                _ => 0,
            };
        }
        let (src, dst, sport, dport) = if from_client {
            (C, S, 50123, 443)
        } else {
            (S, C, 443, 50123)
        };
        Packet {
            ts: Ts(t_ms * 1_000_000),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            sport,
            dport,
            proto: PROTO_TCP,
            ip_len: 40 + len,
            payload_len: len,
            tcp_flags: f,
            tcp_seq: seq,
            tcp_ack: 0,
            tcp_window: 1024,
            src_mac: None,
            vlan: 0,
            ports_known: true,
            reassembled: false,
            tunneled: false,
        }
    }

    fn run(pkts: &[Packet]) -> (FlowRecord, Vec<FlowEvent>) {
        let mut s = shard();
        let mut ev = Vec::new();
        for p in pkts {
            s.process(p, &mut ev);
        }
        s.drain(&mut ev);
        let rec = ev
            .iter()
            .find_map(|e| match e {
                FlowEvent::Ended(r, _) => Some(*r),
                _ => None,
            })
            .unwrap();
        (rec, ev)
    }

    // Golden table from Zeek's conn_state procedure and history letters.
    #[test]
    fn zeek_golden_states_and_histories() {
        let cases: Vec<(Vec<Packet>, &str, &str)> = vec![
            (vec![tcp(0, true, "S", 100, 0)], "S0", "S"),
            (
                vec![
                    tcp(0, true, "S", 100, 0),
                    tcp(1, false, "SA", 900, 0),
                    tcp(2, true, "A", 101, 0),
                    tcp(3, true, "PA", 101, 10),
                    tcp(4, false, "A", 901, 0),
                    tcp(4, false, "PA", 901, 20),
                    tcp(5, true, "FA", 111, 0),
                    tcp(6, false, "FA", 921, 0),
                    tcp(7, true, "A", 112, 0),
                ],
                "SF",
                "ShADadFf",
            ),
            (
                vec![tcp(0, true, "S", 100, 0), tcp(1, false, "RA", 0, 0)],
                "REJ",
                "Sr",
            ),
            (
                vec![tcp(0, true, "S", 100, 0), tcp(1, true, "R", 101, 0)],
                "RSTOS0",
                "SR",
            ),
            (
                vec![tcp(0, true, "PA", 100, 5), tcp(1, false, "PA", 900, 7)],
                "OTH",
                "Dd",
            ),
            (
                vec![
                    tcp(0, true, "S", 100, 0),
                    tcp(1, false, "SA", 900, 0),
                    tcp(2, true, "A", 101, 0),
                ],
                "S1",
                "ShA",
            ),
            (
                vec![
                    tcp(0, true, "S", 100, 0),
                    tcp(1, false, "SA", 900, 0),
                    tcp(2, true, "A", 101, 0),
                    tcp(3, true, "RA", 101, 0),
                ],
                "RSTO",
                "ShAR",
            ),
            (
                vec![
                    tcp(0, true, "S", 100, 0),
                    tcp(1, false, "SA", 900, 0),
                    tcp(2, true, "A", 101, 0),
                    tcp(3, false, "RA", 901, 0),
                ],
                "RSTR",
                "ShAr",
            ),
            (
                vec![tcp(0, true, "S", 100, 0), tcp(1, true, "FA", 101, 0)],
                "SH",
                "SF",
            ),
        ];
        for (pkts, state, hist) in cases {
            let (r, _) = run(&pkts);
            assert_eq!(
                (r.conn_state.as_str(), r.history.as_str()),
                (state, hist),
                "{pkts:?}"
            );
        }
    }

    #[test]
    fn syn_ack_first_flips_direction() {
        let (r, _) = run(&[tcp(0, false, "SA", 900, 0), tcp(1, true, "A", 101, 0)]);
        assert_eq!(r.orig, C.parse::<IpAddr>().unwrap());
        assert!(r.history.as_str().starts_with("^h"), "{:?}", r.history);
    }

    #[test]
    fn midstream_reply_first_picks_home_net_side_as_originator() {
        let (r, _) = run(&[tcp(0, false, "PA", 900, 7), tcp(1, true, "PA", 100, 5)]);
        assert_eq!(r.orig, C.parse::<IpAddr>().unwrap());
        assert!(r.orig_is_internal);
    }

    #[test]
    fn retransmissions_are_counted_once() {
        let (r, _) = run(&[
            tcp(0, true, "S", 100, 0),
            tcp(1, false, "SA", 900, 0),
            tcp(2, true, "A", 101, 0),
            tcp(3, true, "PA", 101, 100),
            tcp(4, true, "PA", 101, 100),
            tcp(5, true, "PA", 201, 50),
        ]);
        assert_eq!(r.orig_bytes, 150);
        assert_eq!(r.orig_pkts, 5);
        assert!(r.history.as_str().contains('T'));
        assert_eq!(r.orig_first_sizes, [100, 50, 0, 0]);
    }

    #[test]
    fn sequence_wraparound_keeps_counting() {
        let base = u32::MAX - 10;
        let (r, _) = run(&[
            tcp(0, true, "S", base, 0),
            tcp(1, false, "SA", 900, 0),
            tcp(2, true, "PA", base.wrapping_add(1), 20),
            tcp(3, true, "PA", base.wrapping_add(21), 20),
        ]);
        assert_eq!(r.orig_bytes, 40);
    }

    #[test]
    fn messages_split_by_reply_and_gap() {
        let mut s = shard();
        let mut ev = Vec::new();
        for p in [
            tcp(0, true, "S", 100, 0),
            tcp(1, false, "SA", 900, 0),
            tcp(2, true, "A", 101, 0),
            tcp(10, true, "PA", 101, 300),
            tcp(11, true, "PA", 401, 212),
            tcp(20, false, "PA", 901, 10),
            tcp(3000, true, "PA", 613, 512),
            tcp(6000, true, "PA", 1125, 512),
        ] {
            s.process(&p, &mut ev);
        }
        s.drain(&mut ev);
        let msgs: Vec<(u64, u32)> = ev
            .iter()
            .filter_map(|e| match e {
                FlowEvent::OrigMessage { bytes, index, .. } => Some((*bytes, *index)),
                _ => None,
            })
            .collect();
        assert_eq!(msgs, vec![(512, 0), (512, 1), (512, 2)]);
    }

    fn udp(t_s: i64, sport: u16) -> Packet {
        let mut p = tcp(0, true, "", 0, 48);
        p.proto = PROTO_UDP;
        p.sport = sport;
        p.dport = 123;
        p.ts = Ts::from_secs(t_s);
        p.ip_len = 76;
        p
    }

    /// The drain order key orders as (last packet time, uid) does, negative times too.
    #[test]
    fn due_order_is_time_then_uid() {
        let due = |t: i64, uid: u64, slot: u32| Due {
            last_ts: Ts(t),
            uid,
            slot,
            reason: 0,
        };
        let mut v = vec![
            due(5, 1, 0),
            due(-3, 9, 1),
            due(5, 0, 2),
            due(i64::MAX, 0, 3),
            due(i64::MIN, u64::MAX, 4),
            due(0, 7, 5),
            due(5, 1, 6),
        ];
        let mut by_fields = v.clone();
        by_fields.sort_by_key(|d| (d.last_ts, d.uid, d.slot, d.reason));
        v.sort();
        assert_eq!(v, by_fields);
    }

    /// Index growth with freed slots in the slab: the rebuilt index holds exactly the
    /// live flows, so every later packet of a live flow finds it and no ended flow is
    /// found again.
    #[test]
    fn index_growth_keeps_exactly_the_live_flows() {
        let mut s = shard();
        let mut ev = Vec::new();
        let mut live = std::collections::BTreeSet::new();
        for round in 0..6i64 {
            // 700 new flows a round; every third of the previous ones times out first.
            for k in 0..700u16 {
                let sport = 1000 + (round as u16) * 700 + k;
                s.process(&udp(round * 20, sport), &mut ev);
                live.insert(sport);
                if k % 3 == 0 && round > 0 {
                    // A packet of a flow from an earlier round keeps it alive.
                    let old = 1000 + (round as u16 - 1) * 700 + k;
                    if live.contains(&old) {
                        s.process(&udp(round * 20, old), &mut ev);
                    }
                }
            }
            // UDP times out after 30 s: the previous round's flows not seen again go.
            s.expire(Ts::from_secs(round * 20 + 15), &mut ev);
            for e in &ev {
                if let FlowEvent::Ended(r, _) = e {
                    assert!(live.remove(&r.orig_port), "ended twice: {}", r.orig_port);
                }
            }
            ev.clear();
            assert_eq!((s.live(), s.index.len()), (live.len(), live.len()));
            if round > 0 {
                assert!(live.len() > 700 && live.len() < 1400, "{}", live.len());
            }
        }
        // Each live flow's next packet is an update (no Started): it was found.
        for &sport in &live {
            ev.clear();
            s.process(&udp(6 * 20, sport), &mut ev);
            let started = ev.iter().any(|e| matches!(e, FlowEvent::Started(_)));
            assert!(!started, "{sport} not found");
        }
        assert!(s.index.capacity() > 1024);
    }

    #[test]
    fn drain_ends_every_live_flow_in_order_and_leaves_an_empty_table() {
        let mut s = shard();
        let mut ev = Vec::new();
        // Slab order 1001..1005; 1002 is the last to see a packet.
        for (t, sport) in [
            (1, 1001),
            (2, 1002),
            (3, 1003),
            (4, 1004),
            (5, 1005),
            (6, 1002),
        ] {
            s.process(&udp(t, sport), &mut ev);
        }
        // A freed slot in the slab: 1001 times out (UDP, 30 s) and is not drained twice.
        ev.clear();
        s.expire(Ts::from_secs(31), &mut ev);
        assert_eq!(s.live(), 4);
        ev.clear();
        assert_eq!(s.drain_begin(Ts::from_secs(34)), 4);
        // In chunks, as the pipeline drains; (last packet time, uid) order.
        while s.end_due(3, &mut ev) {}
        let ended: Vec<(u16, EndReason)> = ev
            .iter()
            .filter_map(|e| match e {
                FlowEvent::Ended(r, why) => Some((r.orig_port, *why)),
                _ => None,
            })
            .collect();
        assert_eq!(
            ended,
            vec![
                (1003, EndReason::IdleTimeout),
                (1004, EndReason::IdleTimeout),
                (1005, EndReason::Shutdown),
                (1002, EndReason::Shutdown),
            ]
        );
        assert_eq!((s.live(), s.index.len(), s.flows.len()), (0, 0, 0));
        // Usable again: the same key is a new connection.
        ev.clear();
        s.process(&udp(50, 1005), &mut ev);
        assert!(matches!(ev[0], FlowEvent::Started(_)));
        assert_eq!(s.live(), 1);
        ev.clear();
        s.drain(&mut ev);
        let ends = ev.iter().filter(|e| matches!(e, FlowEvent::Ended(..)));
        assert_eq!(ends.count(), 1);
        // An expiry pass in the middle of a drain adds nothing and ends nothing twice.
        ev.clear();
        for sport in [3001, 3002] {
            s.process(&udp(80, sport), &mut ev);
        }
        assert_eq!(s.drain_begin(Ts::from_secs(81)), 2);
        assert!(s.end_due(1, &mut ev));
        assert_eq!(s.expire_begin(Ts::from_secs(500)), 1);
        while s.end_due(8, &mut ev) {}
        let ends = ev.iter().filter(|e| matches!(e, FlowEvent::Ended(..)));
        assert_eq!((ends.count(), s.live()), (2, 0));
        // A packet in the middle of a drain: the drain completes first.
        ev.clear();
        for sport in [2001, 2002, 2003] {
            s.process(&udp(70, sport), &mut ev);
        }
        assert_eq!(s.drain_begin(Ts::from_secs(71)), 3);
        assert!(s.end_due(1, &mut ev));
        s.process(&udp(72, 2001), &mut ev);
        let ended = ev
            .iter()
            .filter(|e| matches!(e, FlowEvent::Ended(..)))
            .count();
        assert_eq!((ended, s.live()), (3, 1));
        assert!(matches!(ev.last(), Some(FlowEvent::Started(_))));
        ev.clear();
        s.drain(&mut ev);
        // A drain of an empty table is a no-op.
        assert_eq!(s.drain_begin(Ts::from_secs(60)), 0);
        assert!(!s.end_due(8, &mut ev));
    }

    #[test]
    fn idle_timeout_and_eviction() {
        let mut s = FlowShard::new(
            &FlowConfig::default(),
            2,
            NetSet::parse(DEFAULT_HOME_NET).unwrap(),
        );
        let mut ev = Vec::new();
        s.process(&udp(0, 1000), &mut ev);
        s.process(&udp(1, 1001), &mut ev);
        s.process(&udp(2, 1002), &mut ev); // evicts sport 1000
        assert_eq!(s.stats.evicted, 1);
        assert_eq!(s.live(), 2);
        ev.clear();
        s.expire(Ts::from_secs(31), &mut ev);
        assert_eq!(s.live(), 1);
        let ended: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                FlowEvent::Ended(r, why) => Some((r.orig_port, *why)),
                _ => None,
            })
            .collect();
        assert_eq!(ended, vec![(1001, EndReason::IdleTimeout)]);
        s.expire(Ts::from_secs(100), &mut ev);
        assert_eq!(s.live(), 0);
        assert_eq!(s.stats.ended_idle, 2);
        // Slots are reused.
        s.process(&udp(200, 7), &mut ev);
        assert_eq!(s.flows.len(), 2);
        let r = match ev.last() {
            Some(FlowEvent::Started(r)) => *r,
            _ => panic!(),
        };
        assert_eq!(r.conn_state, ConnState::S0);
    }

    // Slab record plus ~8 index bytes must stay within 256 bytes per flow.
    const _: () = assert!(FlowShard::FLOW_SIZE + 8 <= 256);
}
