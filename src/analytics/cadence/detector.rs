//! The `periodic_transfer` (T1029, AN1115) and `fixed_size_transfer` (T1030, AN0598)
//! detectors: group outbound traffic into series and feed [`PeriodicSeries`] /
//! [`SizeSeries`].
//!
//! * Groups: (internal host, external address, port, transport); (host, DNS name the host
//!   resolved the address from), so rotating CDN / fast-flux addresses form one series;
//!   (host, EDR process executable) when the feed attributes the flow.
//! * Beats: connection starts (TCP from a SYN, UDP), and inside long-lived flows the
//!   starts of outbound messages, except repeated small messages (keepalives).
//! * Sizes: payload per connection, or per message when a flow carried several (never
//!   both); and, inside one connection, messages that are all multiples of one chunk.
//! * Quiet by design: infrastructure ports, known agents (domains, CIDRs, executables,
//!   launchd labels), sizes below the floor, keepalives. EDR context (launchd origin,
//!   unexpected user) raises the score; a schedule periodic for over a day lowers it.
//!
//! Memory: every map is capped; series evict the least recently seen (counted). A live
//! outbound flow costs a few small hash-table slots, keys included: its [`FlowState`]
//! (80 bytes), the first sightings of its keys ([`Fresh`], 40 bytes each) and the name
//! it was resolved from ([`DnsName`], 24 bytes per IPv4 (host, address)); chunk state
//! ([`Chunks`]) only once a long-lived flow carries a large message after a pause.

use hashbrown::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use super::config::CadenceConfig;
use super::{FixedSizeVerdict, Observed, PeriodicSeries, PeriodicVerdict, SizeSeries};
use crate::analytics::{Alert, Analytic, Context, Detector, PerFlow};
use crate::decode::dns::DnsAnswer;
use crate::decode::{PROTO_TCP, PROTO_UDP};
use crate::enrichment::context::UserBaseline;
use crate::enrichment::Attribution;
use crate::flow::{FlowEvent, FlowRecord};
use crate::time::{Dur, Ts};

/// Addresses remembered per series for `dest_ips`.
const MAX_DEST_IPS: usize = 4;
/// Small message sizes remembered per flow (keepalive detection).
const SMALL_SIZES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Addr {
        host: IpAddr,
        peer: IpAddr,
        port: u16,
        proto: u8,
    },
    Name {
        host: IpAddr,
        name: u64,
    },
    Proc {
        host: IpAddr,
        exe: u64,
    },
}

/// One group's state.
struct Series {
    beats: PeriodicSeries,
    sizes: SizeSeries,
    last_seen: Ts,
    /// Last flow in evidence.
    peer: IpAddr,
    port: u16,
    src_port: u16,
    proto: u8,
    uid: u64,
    ips: [Option<IpAddr>; MAX_DEST_IPS],
    name: Option<Arc<Name>>,
    edr: Option<Arc<FlowEdr>>,
    periodic_quiet: Ts,
    size_quiet: Ts,
}

/// A key seen in one flow only: most are one-off destinations, so the full [`Series`]
/// (~850 bytes) is built only when a second flow shares the key. Kept small (32 bytes,
/// under a 64-bit hash of the key): every live outbound flow has two or three.
struct Fresh {
    uid: u64,
    /// Beat time, or [`UNSET`].
    beat: i64,
    /// Size observation time, or [`UNSET`].
    size_at: i64,
    /// Bytes, saturated at `u32::MAX` (as [`SizeSeries::observe`] saturates them).
    size: u32,
    /// The sighting began with its beat (else with its size): that time is its age.
    beat_first: bool,
}

impl Fresh {
    /// When the key was first seen (for eviction).
    fn seen(&self) -> Ts {
        Ts(if self.beat_first {
            self.beat
        } else {
            self.size_at
        })
    }
}

/// No observation in a [`Fresh`] slot (packet times are never this small).
const UNSET: i64 = i64::MIN;

fn key_hash(k: &Key) -> u64 {
    // Fixed constants: deterministic across runs. A collision (p ≈ n²/2⁶⁵) would only
    // merge two first sightings. Packed words, not SipHash over each field: this runs
    // for every beat and size of every outbound flow.
    match *k {
        Key::Addr {
            host,
            peer,
            port,
            proto,
        } => {
            let (h0, h1, hf) = ip_words(host);
            let (p0, p1, pf) = ip_words(peer);
            let tag = (port as u64) << 8 | proto as u64 | hf << 40 | pf << 41;
            fold4(h0, h1, p0, p1, tag)
        }
        Key::Name { host, name } => {
            let (h0, h1, hf) = ip_words(host);
            fold4(h0, h1, name, 1, 1 << 32 | hf << 40)
        }
        Key::Proc { host, exe } => {
            let (h0, h1, hf) = ip_words(host);
            fold4(h0, h1, exe, 2, 2 << 32 | hf << 40)
        }
    }
}

#[inline]
fn fold_mul(x: u64, y: u64) -> u64 {
    let r = (x as u128).wrapping_mul(y as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

/// Four words and a tag, mixed by folded multiplies with fixed odd constants.
#[inline]
fn fold4(a: u64, b: u64, c: u64, d: u64, tag: u64) -> u64 {
    const K: [u64; 4] = [
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7345,
        0xa409_3822_299f_31d1,
        0x082e_fa98_ec4e_6c89,
    ];
    let x = fold_mul(a ^ K[0], b ^ K[1]);
    let y = fold_mul(c ^ K[2], d ^ K[3]);
    fold_mul(fold_mul(x ^ K[1], y ^ tag ^ K[2]) ^ K[0], K[3])
}

/// An address as two words and its family (0 v4, 1 v6), which goes into the tag: no
/// v4 address packs like a v6 one.
#[inline]
fn ip_words(ip: IpAddr) -> (u64, u64, u64) {
    match ip {
        IpAddr::V4(v) => (u32::from_be_bytes(v.octets()) as u64, 0, 0),
        IpAddr::V6(v) => {
            let x = u128::from_be_bytes(v.octets());
            ((x >> 64) as u64, x as u64, 1)
        }
    }
}

#[derive(Clone, Copy)]
enum Obs {
    Beat(Ts),
    Size(Ts, u64),
    /// Build the series now (an alert needs it).
    Force(Ts),
}

/// The name of one DNS answer, shared by its (host, address) entries, the flows that
/// started to those addresses and their series: one pointer each.
struct Name {
    text: Box<str>,
    /// [`hash_str`] of the text.
    hash: u64,
    /// The answer's query or CNAME chain is allowlisted.
    allowed: bool,
}

/// The name a host last resolved an address from.
struct DnsName {
    name: Arc<Name>,
    at: Ts,
}

/// (host, address) → name. A pair of IPv4 addresses (nearly every entry) is keyed by one
/// `u64`: its slot takes 24 bytes instead of 56 with two 17-byte `IpAddr`s.
#[derive(Default)]
struct DnsNames {
    v4: HashMap<u64, DnsName>,
    other: HashMap<(IpAddr, IpAddr), DnsName>,
}

enum PairKey {
    V4(u64),
    Other((IpAddr, IpAddr)),
}

impl DnsNames {
    fn key(host: IpAddr, addr: IpAddr) -> PairKey {
        match (host, addr) {
            (IpAddr::V4(h), IpAddr::V4(a)) => {
                PairKey::V4(u64::from(u32::from(h)) << 32 | u64::from(u32::from(a)))
            }
            _ => PairKey::Other((host, addr)),
        }
    }
    fn len(&self) -> usize {
        self.v4.len() + self.other.len()
    }
    fn get(&self, host: IpAddr, addr: IpAddr) -> Option<&DnsName> {
        match Self::key(host, addr) {
            PairKey::V4(k) => self.v4.get(&k),
            PairKey::Other(k) => self.other.get(&k),
        }
    }
    fn contains(&self, host: IpAddr, addr: IpAddr) -> bool {
        self.get(host, addr).is_some()
    }
    fn insert(&mut self, host: IpAddr, addr: IpAddr, v: DnsName) {
        match Self::key(host, addr) {
            PairKey::V4(k) => self.v4.insert(k, v),
            PairKey::Other(k) => self.other.insert(k, v),
        };
    }
    fn times(&self) -> impl Iterator<Item = Ts> + '_ {
        self.v4.values().chain(self.other.values()).map(|d| d.at)
    }
    fn retain_after(&mut self, cut: Ts) {
        self.v4.retain(|_, d| d.at > cut);
        self.other.retain(|_, d| d.at > cut);
    }
}

/// What the EDR feed said about a flow, with what the series keys and scores derive
/// from it.
struct FlowEdr {
    attr: Attribution,
    /// [`hash_str`] of the executable (or process name); 0 for none.
    exe: u64,
    /// Score bonus from [`edr_bonus`].
    bonus: f64,
}

/// Per live outbound flow: what its Started found out, and the message bookkeeping
/// (72 bytes).
#[derive(Default)]
struct FlowState {
    first: Ts,
    name: Option<Arc<Name>>,
    edr: Option<Arc<FlowEdr>>,
    msgs: u32,
    /// Messages counted as sizes (then the connection total is not).
    sized_msgs: u32,
    last_msg: Ts,
    /// Small message sizes seen in this flow, with counts: a keepalive size stays
    /// known while chat or commands of other small sizes come between.
    small: [(u32, u32); SMALL_SIZES],
}

impl FlowState {
    fn bonus(&self) -> f64 {
        self.edr.as_ref().map_or(0.0, |e| e.bonus)
    }
    fn exe(&self) -> u64 {
        self.edr.as_ref().map_or(0, |e| e.exe)
    }
    fn view(&self) -> FlowView {
        FlowView {
            name: self.name.clone(),
            edr: self.edr.clone(),
            bonus: self.bonus(),
        }
    }
}

/// What a flow's series take from its [`FlowState`], looked up once per flow event
/// (each lookup of the flow map is a hash probe into a table as large as the live
/// flows).
struct FlowView {
    name: Option<Arc<Name>>,
    edr: Option<Arc<FlowEdr>>,
    bonus: f64,
}

/// Messages of one connection that are all multiples of one chunk size. Kept apart from
/// [`FlowState`] (most flows never carry a large message after a pause): created when
/// the first such message sets a chunk size, removed with the flow.
#[derive(Default)]
struct Chunks {
    gcd: u64,
    units: u64,
    counted: u32,
    fired: bool,
}

/// Counters for telemetry and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CadenceStats {
    pub series: usize,
    pub series_evicted: u64,
    pub dns_evicted: u64,
    pub flows_evicted: u64,
    pub allowlisted: u64,
    pub beats: u64,
    pub heartbeats: u64,
    pub sizes: u64,
    pub evaluations: u64,
    /// Alerts of hosts without an agent dropped because known-good software on covered
    /// hosts uses the same destinations (fleet context).
    pub fleet_allowlisted: u64,
}

pub struct Cadence {
    cfg: CadenceConfig,
    series: HashMap<Key, Series>,
    fresh: HashMap<u64, Fresh>,
    dns: DnsNames,
    flows: PerFlow<FlowState>,
    /// Chunk state of live flows in `flows` (a subset).
    chunks: HashMap<u64, Chunks>,
    /// (host, destination name or address) a known-good agent of that host used: its
    /// unattributed flows there are the agent's too (EDR joins miss some flows).
    agent_dests: HashMap<(IpAddr, u64), Ts>,
    stats: CadenceStats,
    pending: Vec<Alert>,
    /// The configured users per executable (`[edr.expected_users]`).
    users: UserBaseline,
}

/// Approximate heap bytes of one series (entry plus hash-table overhead).
pub fn bytes_per_series() -> usize {
    // plus 40 bytes for the first sighting that preceded it (Fresh, dropped on promotion)
    std::mem::size_of::<Key>() + std::mem::size_of::<Series>() + 8
}

fn hash_str(s: &str) -> u64 {
    crate::analytics::text_hash(s) | 1
}

fn hash_ip(ip: IpAddr) -> u64 {
    let (a, b, f) = ip_words(ip);
    fold4(a, b, 0, 0, 3 << 32 | f << 40) | 1
}

/// How long a destination stays a known-good agent's after its last attributed flow.
const AGENT_MEMORY: Dur = Dur(86_400 * 1_000_000_000);

fn global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_unspecified()
                || a.is_link_local())
        }
        IpAddr::V6(a) => {
            !(a.is_loopback()
                || a.is_multicast()
                || a.is_unspecified()
                || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_private(),
        IpAddr::V6(a) => (a.segments()[0] & 0xfe00) == 0xfc00,
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// EDR context that makes a schedule more suspicious: a launchd origin, or a user that
/// has no business making outbound transfers with this executable. The operator's
/// `[edr.expected_users]` decides where it names the executable; otherwise a service
/// account, or root running a tool from a user or temporary directory, is unexpected.
fn edr_bonus(a: &Attribution, users: &UserBaseline) -> (f64, Vec<String>) {
    let mut bonus = 0.0;
    let mut why = Vec::new();
    if let Some(l) = &a.launchd {
        let kind = l.kind.as_deref().unwrap_or("job");
        let label = l.label.as_deref().unwrap_or("?");
        bonus += 0.1;
        why.push(format!("started by launchd {kind} {label}"));
    }
    let user = a.user.as_ref().and_then(|u| u.name.as_deref());
    let exe = a
        .process
        .as_ref()
        .and_then(|p| p.executable.as_deref())
        .unwrap_or("");
    if let Some(u) = user {
        let unexpected = match users.configured(exe, u) {
            Some(verdict) => verdict.map(|w| format!("runs as unexpected user {u}: {w}")),
            None => {
                let service = matches!(u, "nobody" | "_www" | "www-data" | "_nobody" | "daemon");
                let user_tool = [
                    "/usr/bin/",
                    "/bin/",
                    "/usr/local/bin/",
                    "/opt/homebrew/",
                    "/tmp/",
                    "/private/tmp/",
                    "/Users/",
                    "/home/",
                ]
                .iter()
                .any(|p| exe.starts_with(p));
                (service || (u == "root" && user_tool))
                    .then(|| format!("runs as unexpected user {u} ({exe})"))
            }
        };
        if let Some(w) = unexpected {
            bonus += 0.15;
            why.push(w);
        }
    }
    (bonus, why)
}

impl Cadence {
    pub fn new(cfg: CadenceConfig) -> Cadence {
        let users = UserBaseline::new(cfg.expected_users.clone(), 0);
        let max_flows = cfg.max_flows;
        Cadence {
            users,
            cfg,
            series: HashMap::new(),
            fresh: HashMap::new(),
            dns: DnsNames::default(),
            flows: PerFlow::new(max_flows),
            chunks: HashMap::new(),
            agent_dests: HashMap::new(),
            stats: CadenceStats::default(),
            pending: Vec::new(),
        }
    }

    pub fn stats(&self) -> CadenceStats {
        CadenceStats {
            series: self.series.len(),
            ..self.stats
        }
    }

    fn outbound(ctx: &Context, f: &FlowRecord) -> bool {
        if !f.orig_is_internal || !global(f.resp) {
            return false;
        }
        if ctx.home_net.is_empty() {
            !private(f.resp)
        } else {
            ctx.home_net.contains(f.orig) && !ctx.home_net.contains(f.resp)
        }
    }

    /// Keys of a flow's series (up to three), without allocating. Takes the config, not
    /// `self`, so that it can run while the flow's state is borrowed from `self.flows`.
    fn keys_of(cfg: &CadenceConfig, f: &FlowRecord, st: &FlowState) -> [Option<Key>; 3] {
        let host = f.orig;
        [
            Some(Key::Addr {
                host,
                peer: f.resp,
                port: f.resp_port,
                proto: f.proto,
            }),
            st.name
                .as_ref()
                .filter(|_| cfg.by_name)
                .map(|n| Key::Name { host, name: n.hash }),
            (cfg.by_process && st.exe() != 0).then_some(Key::Proc {
                host,
                exe: st.exe(),
            }),
        ]
    }

    fn on_started(&mut self, ctx: &Context, f: &FlowRecord) {
        if !(f.proto == PROTO_TCP || f.proto == PROTO_UDP) || !Self::outbound(ctx, f) {
            return;
        }
        let allow = &self.cfg.allow;
        if allow.allows_port(f.resp_port) || allow.cidrs.contains(f.resp) {
            self.stats.allowlisted += 1;
            return;
        }
        let name = self.dns.get(f.orig, f.resp).map(|d| d.name.clone());
        if name.as_ref().is_some_and(|n| n.allowed) {
            self.stats.allowlisted += 1;
            return;
        }
        let dests = [hash_ip(f.resp), name.as_ref().map_or(0, |n| n.hash)];
        let known = |d: &u64| {
            self.agent_dests
                .get(&(f.orig, *d))
                .is_some_and(|t| f.first_ts.since(*t) < AGENT_MEMORY)
        };
        if dests.iter().filter(|d| **d != 0).any(known) {
            self.stats.allowlisted += 1;
            return;
        }
        let attr = if ctx.attributor.is_some() {
            ctx.attribute(f)
        } else {
            None
        };
        let mut edr = None;
        if let Some(a) = attr {
            let p = a.process.as_ref();
            let x = p.and_then(|p| p.executable.as_deref());
            let n = p.and_then(|p| p.name.as_deref());
            let l = a.launchd.as_ref().and_then(|l| l.label.as_deref());
            if allow.allows_process(x, n, l) {
                self.stats.allowlisted += 1;
                if self.agent_dests.len() >= self.cfg.max_dns {
                    let cut = cutoff(self.agent_dests.values().copied());
                    self.agent_dests.retain(|_, t| *t > cut);
                }
                for d in dests.into_iter().filter(|d| *d != 0) {
                    self.agent_dests.insert((f.orig, d), f.first_ts);
                }
                return;
            }
            let exe = x.or(n).map(hash_str).unwrap_or(0);
            let bonus = edr_bonus(&a, &self.users).0;
            edr = Some(Arc::new(FlowEdr {
                attr: a,
                exe,
                bonus,
            }));
        }
        if self.flows.len() >= self.cfg.max_flows {
            self.evict_flows();
        }
        let st = FlowState {
            first: f.first_ts,
            name,
            edr,
            msgs: 0,
            sized_msgs: 0,
            last_msg: Ts::ZERO,
            small: [(0, 0); SMALL_SIZES],
        };
        let beat = f.proto == PROTO_UDP || f.history.as_str().starts_with('S');
        let keys = Self::keys_of(&self.cfg, f, &st);
        let view = beat.then(|| st.view());
        self.flows.insert(f, st);
        if let Some(view) = view {
            self.beat(f, f.first_ts, &keys, &view);
        }
    }

    fn beat(&mut self, f: &FlowRecord, at: Ts, keys: &[Option<Key>; 3], view: &FlowView) {
        if !self.cfg.periodic {
            return;
        }
        self.stats.beats += 1;
        let bonus = view.bonus;
        for key in keys.iter().flatten() {
            let (refire, params) = (self.cfg.refire, self.cfg.periodic_params);
            let Some(s) = touch(
                &mut self.series,
                &mut self.fresh,
                &mut self.stats,
                view,
                &self.cfg,
                *key,
                f,
                Obs::Beat(at),
            ) else {
                continue;
            };
            if s.beats.observe(at) != Observed::NewBeat {
                continue;
            }
            let n = s.beats.beats();
            if n < params.min_beats || at < s.periodic_quiet || (n > 128 && n % 4 != 0) {
                continue;
            }
            self.stats.evaluations += 1;
            let Some(v) = s.beats.evaluate(&params) else {
                continue;
            };
            // A slow schedule would otherwise re-alert at nearly every beat (and on a
            // new address of a rotating name each time): stay quiet for 24 periods.
            let quiet = Dur::from_secs_f64(v.period_s * 24.0).max(refire);
            s.periodic_quiet = at.saturating_add(quiet);
            let alert = periodic_alert(key, s, &v, at, bonus, &self.users);
            self.pending.push(alert);
        }
    }

    fn sized(
        &mut self,
        f: &FlowRecord,
        at: Ts,
        bytes: u64,
        keys: &[Option<Key>; 3],
        view: &FlowView,
    ) {
        if !self.cfg.fixed_size {
            return;
        }
        self.stats.sizes += 1;
        let bonus = view.bonus;
        for key in keys.iter().flatten() {
            let (refire, params, floor) =
                (self.cfg.refire, self.cfg.size_params, self.cfg.size.floor);
            let Some(s) = touch(
                &mut self.series,
                &mut self.fresh,
                &mut self.stats,
                view,
                &self.cfg,
                *key,
                f,
                Obs::Size(at, bytes),
            ) else {
                continue;
            };
            s.sizes.observe(at, bytes);
            if bytes < u64::from(floor) || at < s.size_quiet || s.sizes.counted() < params.min_count
            {
                continue;
            }
            self.stats.evaluations += 1;
            let Some(v) = s.sizes.evaluate(&params) else {
                continue;
            };
            s.size_quiet = at.saturating_add(refire);
            let alert = size_alert(key, s, &v, at, bonus, &self.users);
            self.pending.push(alert);
        }
    }

    fn on_message(&mut self, f: &FlowRecord, start: Ts, bytes: u64) {
        let Some(st) = self.flows.get_mut(f) else {
            return;
        };
        st.msgs += 1;
        // Real-time media (voice, games) sends a datagram every few ms; a transfer
        // comes after a pause. Only messages that follow one count as sizes.
        let paused = st.msgs == 1 || start.since(st.last_msg) >= Dur::from_secs(1);
        st.last_msg = start;
        let tol = u64::from(
            self.cfg
                .size
                .tolerance(bytes.min(u64::from(u32::MAX)) as u32),
        );
        // A repeated small message in one flow is a keepalive, not a check-in; other
        // small messages in between (chat, commands) do not make the next one a beat.
        let mut heartbeat = false;
        if bytes <= self.cfg.heartbeat_max_bytes {
            let b = bytes.min(u64::from(u32::MAX)) as u32;
            match st
                .small
                .iter_mut()
                .find(|(sz, n)| *n > 0 && u64::from(sz.abs_diff(b)) <= tol)
            {
                Some(e) => {
                    heartbeat = true;
                    e.1 = e.1.saturating_add(1);
                }
                None => {
                    if let Some(e) = st.small.iter_mut().min_by_key(|e| e.1) {
                        *e = (b, 1);
                    }
                }
            }
        }
        // Messages soon after the start are the connection's own beat.
        let long_lived =
            start.since(st.first) >= Dur::from_secs_f64(self.cfg.periodic_params.min_period_s);
        // Inside one connection, small messages are keystrokes and keepalives (SSH pads
        // them to a fixed block): only messages above the heartbeat size are transfers.
        let floor = u64::from(self.cfg.size.floor).max(self.cfg.heartbeat_max_bytes + 1);
        // Opening messages (SSH/TLS handshakes) are constant per client: message sizes
        // count only once the connection has outlived them.
        let paused = paused && bytes >= floor && long_lived;
        if heartbeat {
            self.stats.heartbeats += 1;
        }
        if !paused && (heartbeat || !long_lived) {
            return;
        }
        if paused {
            st.sized_msgs += 1;
        }
        let view = st.view();
        let keys = Self::keys_of(&self.cfg, f, st);
        // Chunks inside one connection: every message a multiple of one size.
        let mut chunk = None;
        if paused {
            let known = if self.chunks.is_empty() {
                None
            } else {
                self.chunks.get_mut(&f.uid)
            };
            let g = match &known {
                Some(c) if c.gcd != 0 => gcd(c.gcd, bytes),
                _ => bytes,
            };
            // A message below the chunk floor changes nothing: only a chunk size
            // creates the state.
            let c = match known {
                Some(c) => Some(c),
                None if g >= self.cfg.min_chunk_bytes => {
                    Some(self.chunks.entry(f.uid).or_default())
                }
                None => None,
            };
            if let Some(c) = c {
                if g >= self.cfg.min_chunk_bytes {
                    c.gcd = g;
                    c.units += bytes / g;
                    c.counted += 1;
                }
                let min = u64::from(self.cfg.size_params.min_count);
                if !c.fired && c.counted >= 3 && c.units >= min && c.units > u64::from(c.counted) {
                    c.fired = true;
                    chunk = Some((c.gcd, c.units, c.counted));
                }
            }
        }
        if let Some(c) = chunk {
            self.chunk_alert(f, start, c, &keys, &view);
        }
        if !heartbeat && long_lived {
            self.beat(f, start, &keys, &view);
        }
        if paused {
            self.sized(f, start, bytes, &keys, &view);
        }
    }

    fn on_ended(&mut self, f: &FlowRecord) {
        let Some(st) = self.flows.remove(f) else {
            return;
        };
        if !self.chunks.is_empty() {
            self.chunks.remove(&f.uid);
        }
        // A flow whose messages were counted one by one is not counted again as a whole.
        if st.sized_msgs == 0 && f.orig_bytes > 0 {
            let keys = Self::keys_of(&self.cfg, f, &st);
            self.sized(f, f.last_ts, f.orig_bytes, &keys, &st.view());
        }
    }

    /// `chunk`: the chunk size, chunks and messages counted.
    fn chunk_alert(
        &mut self,
        f: &FlowRecord,
        at: Ts,
        chunk: (u64, u64, u32),
        keys: &[Option<Key>; 3],
        view: &FlowView,
    ) {
        let (g, units, msgs) = chunk;
        let Some(key) = keys[0] else { return };
        let bonus = view.bonus;
        let Some(s) = touch(
            &mut self.series,
            &mut self.fresh,
            &mut self.stats,
            view,
            &self.cfg,
            key,
            f,
            Obs::Force(at),
        ) else {
            return;
        };
        let mut a = base_alert(Analytic::FixedSizeTransfer, &key, s, at);
        let evidence = 1.0 - (-(units as f64) / 5.0).exp();
        a.score = (0.6 * evidence + 0.2 + bonus).min(1.0);
        a.reasons.push(format!(
            "{units} chunks of {g} bytes in {msgs} messages of one connection to {}",
            target(&key, s)
        ));
        a.cadence = Some(crate::analytics::AlertCadence {
            count: Some(units),
            size_bytes: Some(g),
            size_cv: Some(0.0),
            ..Default::default()
        });
        self.pending.push(a);
    }

    fn on_dns(&mut self, ctx: &Context, a: &DnsAnswer) {
        if a.is_local() || a.addrs.is_empty() || a.query.is_empty() {
            return;
        }
        if !ctx.home_net.is_empty() && !ctx.home_net.contains(a.client) {
            return;
        }
        let allowed = a.cname_chain.iter().any(|n| self.cfg.allow.allows_name(n))
            || self.cfg.allow.allows_name(&a.query);
        let name = Arc::new(Name {
            text: a.query.as_str().into(),
            hash: hash_str(&a.query),
            allowed,
        });
        for &ip in &a.addrs {
            if self.dns.len() >= self.cfg.max_dns && !self.dns.contains(a.client, ip) {
                self.evict_dns();
            }
            self.dns.insert(
                a.client,
                ip,
                DnsName {
                    name: name.clone(),
                    at: a.ts,
                },
            );
        }
    }

    /// Partial EDR coverage: a host without an agent (the feed never reports its
    /// connections) gets no process context, so its backup or update client looks like a
    /// beacon. When allowlisted software on covered hosts used the alert's destinations
    /// (at least two of its addresses, or its only one, same port) within the last day,
    /// the schedule is that software's: the alert is dropped (counted) and the
    /// destination remembered for the host like an attributed agent's. Hosts with an
    /// agent never take this path: their own EDR context decides.
    fn fleet_filter(&mut self, ctx: &Context) {
        let Some(attributor) = ctx.attributor.as_ref() else {
            return;
        };
        let mut i = 0;
        while i < self.pending.len() {
            let a = &self.pending[i];
            let has_process = a.attribution.as_ref().is_some_and(|x| x.process.is_some());
            if has_process || attributor.covers(a.src) {
                i += 1;
                continue;
            }
            if !self.fleet_known(attributor.as_ref(), i) {
                i += 1;
                continue;
            }
            let a = self.pending.remove(i);
            self.stats.fleet_allowlisted += 1;
            if self.agent_dests.len() >= self.cfg.max_dns {
                let cut = cutoff(self.agent_dests.values().copied());
                self.agent_dests.retain(|_, t| *t > cut);
            }
            let named = a.dest_name.as_deref().map(hash_str);
            let addrs = a.dest_ips.iter().chain([&a.dst]).map(|ip| hash_ip(*ip));
            for d in addrs.chain(named) {
                self.agent_dests.insert((a.src, d), a.ts);
            }
        }
    }

    /// Whether allowlisted software on other hosts used the destinations of pending
    /// alert `i` (see [`Cadence::fleet_filter`]).
    fn fleet_known(&self, attributor: &dyn crate::enrichment::Attributor, i: usize) -> bool {
        let a = &self.pending[i];
        let one = [a.dst];
        let ips: &[IpAddr] = if a.dest_ips.is_empty() {
            &one
        } else {
            &a.dest_ips
        };
        let since = Ts(a.ts.0.saturating_sub(AGENT_MEMORY.0));
        let allow = &self.cfg.allow;
        let used = ips
            .iter()
            .filter(|ip| {
                attributor
                    .destination_users(a.proto, **ip, a.dst_port, since, a.ts)
                    .iter()
                    .any(|(src, u)| {
                        let p = u.process.as_ref();
                        *src != a.src
                            && allow.allows_process(
                                p.and_then(|p| p.executable.as_deref()),
                                p.and_then(|p| p.name.as_deref()),
                                u.launchd.as_ref().and_then(|l| l.label.as_deref()),
                            )
                    })
            })
            .count();
        used >= ips.len().min(2)
    }

    /// Drops the oldest eighth (by last sighting) of a full map: amortised O(1) per insert.
    fn evict_dns(&mut self) {
        let cut = cutoff(self.dns.times());
        let before = self.dns.len();
        self.dns.retain_after(cut);
        self.stats.dns_evicted += (before - self.dns.len()) as u64;
    }
    fn evict_flows(&mut self) {
        let cut = cutoff(self.flows.values().map(|f| f.first));
        let before = self.flows.len();
        let chunks = &mut self.chunks;
        self.flows.retain(|uid, f| {
            let keep = f.first > cut;
            if !keep && !chunks.is_empty() {
                chunks.remove(&uid);
            }
            keep
        });
        self.stats.flows_evicted += (before - self.flows.len()) as u64;
    }
}

/// The series of `key`, created (evicting the least recently seen eighth of a full map)
/// when new, updated with the flow as the last in evidence.
#[allow(clippy::too_many_arguments)]
fn touch<'a>(
    series: &'a mut HashMap<Key, Series>,
    fresh: &mut HashMap<u64, Fresh>,
    stats: &mut CadenceStats,
    view: &FlowView,
    cfg: &CadenceConfig,
    key: Key,
    f: &FlowRecord,
    obs: Obs,
) -> Option<&'a mut Series> {
    let now = match obs {
        Obs::Beat(t) | Obs::Size(t, _) | Obs::Force(t) => t,
    };
    let mut replay = None;
    if !series.contains_key(&key) {
        let fk = key_hash(&key);
        match fresh.get_mut(&fk) {
            // a second flow, or a second beat / size of a long-lived one
            Some(fr)
                if fr.uid != f.uid
                    || matches!(obs, Obs::Force(_))
                    || (matches!(obs, Obs::Beat(_)) && fr.beat != UNSET)
                    || (matches!(obs, Obs::Size(..)) && fr.size_at != UNSET) =>
            {
                replay = fresh.remove(&fk)
            }
            Some(fr) => {
                match obs {
                    Obs::Beat(t) => fr.beat = t.0,
                    Obs::Size(t, b) => (fr.size_at, fr.size) = (t.0, saturate(b)),
                    Obs::Force(_) => {}
                }
                return None;
            }
            None if matches!(obs, Obs::Force(_)) => {}
            None => {
                if fresh.len() >= cfg.max_flows {
                    let cut = cutoff(fresh.values().map(Fresh::seen));
                    fresh.retain(|_, x| x.seen() > cut);
                }
                let (beat, size_at, size) = match obs {
                    Obs::Beat(t) => (t.0, UNSET, 0),
                    Obs::Size(t, b) => (UNSET, t.0, saturate(b)),
                    Obs::Force(_) => unreachable!("handled above"),
                };
                fresh.insert(
                    fk,
                    Fresh {
                        uid: f.uid,
                        beat,
                        size_at,
                        size,
                        beat_first: beat != UNSET,
                    },
                );
                return None;
            }
        }
    }
    if series.len() >= cfg.max_series && !series.contains_key(&key) {
        let cut = cutoff(series.values().map(|s| s.last_seen));
        let before = series.len();
        series.retain(|_, s| s.last_seen > cut);
        stats.series_evicted += (before - series.len()) as u64;
    }
    let s = series.entry(key).or_insert_with(|| Series {
        beats: PeriodicSeries::with_burst(cfg.burst),
        sizes: SizeSeries::new(cfg.size),
        last_seen: now,
        peer: f.resp,
        port: f.resp_port,
        src_port: f.orig_port,
        proto: f.proto,
        uid: f.uid,
        ips: [None; MAX_DEST_IPS],
        name: None,
        edr: None,
        periodic_quiet: Ts::ZERO,
        size_quiet: Ts::ZERO,
    });
    if let Some(fr) = replay {
        if fr.beat != UNSET {
            s.beats.observe(Ts(fr.beat));
        }
        if fr.size_at != UNSET {
            s.sizes.observe(Ts(fr.size_at), u64::from(fr.size));
        }
    }
    s.last_seen = s.last_seen.max(now);
    s.peer = f.resp;
    s.port = f.resp_port;
    s.src_port = f.orig_port;
    s.proto = f.proto;
    s.uid = f.uid;
    if !s.ips.contains(&Some(f.resp)) {
        if let Some(slot) = s.ips.iter_mut().find(|x| x.is_none()) {
            *slot = Some(f.resp);
        } else {
            s.ips.rotate_left(1);
            s.ips[MAX_DEST_IPS - 1] = Some(f.resp);
        }
    }
    if s.name.is_none() {
        s.name.clone_from(&view.name);
    }
    if view.edr.is_some() {
        s.edr.clone_from(&view.edr);
    }
    Some(s)
}

/// Bytes as a [`Fresh`] keeps them: a [`SizeSeries`] saturates at `u32::MAX` too.
fn saturate(bytes: u64) -> u32 {
    bytes.min(u64::from(u32::MAX)) as u32
}

/// The time at or below which the oldest eighth of `times` lies.
fn cutoff(times: impl Iterator<Item = Ts>) -> Ts {
    let mut v: Vec<Ts> = times.collect();
    v.shrink_to_fit();
    if v.is_empty() {
        return Ts::ZERO;
    }
    let k = v.len() / 8;
    *v.select_nth_unstable(k).1
}

fn target(key: &Key, s: &Series) -> String {
    let addr = match s.peer {
        IpAddr::V6(a) => format!("[{a}]:{}", s.port),
        IpAddr::V4(a) => format!("{a}:{}", s.port),
    };
    let n = s.ips.iter().flatten().count();
    match (key, &s.name) {
        (Key::Name { .. }, Some(name)) if n > 1 => {
            format!("{} ({n} addresses, last {addr})", name.text)
        }
        (_, Some(name)) => format!("{} at {addr}", name.text),
        _ => addr,
    }
}

fn base_alert(an: Analytic, key: &Key, s: &Series, at: Ts) -> Alert {
    let host = match key {
        Key::Addr { host, .. } | Key::Name { host, .. } | Key::Proc { host, .. } => *host,
    };
    let mut a = Alert::new(an, at, host, s.peer, s.port);
    a.proto = s.proto;
    a.src_port = s.src_port;
    a.dest_name = s.name.as_ref().map(|n| n.text.to_string());
    let ips: Vec<IpAddr> = s.ips.iter().flatten().copied().collect();
    if ips.len() > 1 {
        a.dest_ips = ips;
    }
    a.attribution = s.edr.as_ref().map(|x| x.attr.clone());
    a.flow_uids.push(s.uid);
    let process = s.edr.as_ref().and_then(|x| x.attr.process.as_ref());
    if let (Key::Proc { .. }, Some(p)) = (key, process) {
        let who = p.executable.as_deref().or(p.name.as_deref()).unwrap_or("?");
        a.reasons.push(format!("process series of {who}"));
    }
    a
}

/// Score adjustments shared by both analytics: EDR context raises it; a schedule that
/// has run for more than a day is more likely known software and lowers it.
fn adjust(score: f64, bonus: f64, age: Dur) -> f64 {
    let s = score + bonus;
    let s = if age > Dur::from_secs(86_400) {
        s * 0.8
    } else {
        s
    };
    s.clamp(0.0, 1.0)
}

fn periodic_alert(
    key: &Key,
    s: &Series,
    v: &PeriodicVerdict,
    at: Ts,
    bonus: f64,
    users: &UserBaseline,
) -> Alert {
    let mut a = base_alert(Analytic::PeriodicTransfer, key, s, at);
    a.score = adjust(v.score, bonus, at.since(v.stats.first_seen));
    a.reasons.insert(
        0,
        format!(
            "{} connections every {:.0} s ± {:.0} % to {} ({} missed beats)",
            v.stats.connections_total,
            v.period_s,
            v.jitter * 100.0,
            target(key, s),
            v.missed_beats
        ),
    );
    a.reasons.extend(v.reasons.iter().cloned());
    if let Some(edr) = &s.edr {
        a.reasons.extend(edr_bonus(&edr.attr, users).1);
    }
    a.cadence = Some(v.cadence());
    a
}

fn size_alert(
    key: &Key,
    s: &Series,
    v: &FixedSizeVerdict,
    at: Ts,
    bonus: f64,
    users: &UserBaseline,
) -> Alert {
    let mut a = base_alert(Analytic::FixedSizeTransfer, key, s, at);
    a.score = adjust(v.score, bonus, at.since(s.sizes.first_seen()));
    a.reasons.insert(
        0,
        format!(
            "{} transfers of {} bytes (CV {:.3}) to {}",
            v.count,
            v.size_bytes,
            v.size_cv,
            target(key, s)
        ),
    );
    a.reasons.extend(v.reasons.iter().cloned());
    if let Some(edr) = &s.edr {
        a.reasons.extend(edr_bonus(&edr.attr, users).1);
    }
    a.cadence = Some(v.cadence());
    a
}

impl Detector for Cadence {
    fn prefetch_flow(&self, handle: crate::flow::FlowHandle) {
        self.flows.prefetch(handle);
    }
    fn keeps_flow_state(&self) -> bool {
        true
    }
    fn on_dns(&mut self, ctx: &Context, a: &DnsAnswer, _out: &mut Vec<Alert>) {
        Cadence::on_dns(self, ctx, a);
    }
    fn on_flow(&mut self, ctx: &Context, ev: &FlowEvent, out: &mut Vec<Alert>) {
        match ev {
            FlowEvent::Started(f) => self.on_started(ctx, f),
            FlowEvent::OrigMessage {
                flow, start, bytes, ..
            } => self.on_message(flow, *start, *bytes),
            FlowEvent::Ended(f, _) => self.on_ended(f),
        }
        if !self.pending.is_empty() {
            self.fleet_filter(ctx);
        }
        out.append(&mut self.pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetSet;
    use crate::decode::dns::{DnsAnomalies, DnsKind};
    use crate::enrichment::{Attributor, ProcessInfo};
    use crate::flow::{ConnState, EndReason, History};

    const T0: i64 = 1_700_000_000;

    fn ctx(attr: Option<Arc<dyn Attributor>>) -> Context {
        Context {
            home_net: NetSet::parse(&["10.0.0.0/8"]).unwrap(),
            attributor: attr,
        }
    }

    fn flow(uid: u64, dst: &str, port: u16, proto: u8, at: f64, bytes: u64) -> FlowRecord {
        let mut history = History::default();
        history.push(if proto == PROTO_TCP { b'S' } else { b'D' });
        FlowRecord {
            uid,
            proto,
            orig: "10.0.0.5".parse().unwrap(),
            orig_port: 40_000 + (uid % 20_000) as u16,
            resp: dst.parse().unwrap(),
            resp_port: port,
            orig_is_internal: true,
            first_ts: Ts::from_secs_f64(T0 as f64 + at),
            last_ts: Ts::from_secs_f64(T0 as f64 + at + 0.5),
            orig_pkts: 3,
            resp_pkts: 3,
            orig_bytes: bytes,
            resp_bytes: 500,
            orig_ip_bytes: bytes + 120,
            resp_ip_bytes: 620,
            conn_state: ConnState::SF,
            history,
            orig_first_sizes: [0; 4],
            resp_first_sizes: [0; 4],
            orig_mac: None,
            vlan: 0,
            handle: crate::flow::FlowHandle::NONE,
        }
    }

    fn answer(name: &str, addrs: &[&str], at: f64) -> DnsAnswer {
        DnsAnswer {
            ts: Ts::from_secs_f64(T0 as f64 + at),
            client: "10.0.0.5".parse().unwrap(),
            client_port: 5353,
            resolver: "10.0.0.1".parse().unwrap(),
            resolver_port: 53,
            transport: PROTO_UDP,
            kind: DnsKind::Dns,
            id: 1,
            query: name.into(),
            qtype: 1,
            rcode: 0,
            records: Vec::new(),
            cname_chain: vec![name.into()],
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            min_ttl: 60,
            anomalies: DnsAnomalies::default(),
        }
    }

    /// 30 TCP connections to port 443, `gap` seconds apart, over `ips` in turn.
    fn rotating(ips: &[&str], gap: f64, size: impl Fn(u64) -> u64) -> Vec<FlowRecord> {
        (0..30)
            .map(|i| {
                let dst = ips[i as usize % ips.len()];
                flow(i, dst, 443, PROTO_TCP, 1.0 + gap * i as f64, size(i))
            })
            .collect()
    }

    /// Feeds whole connections (start, end) and returns the alerts.
    fn connections(d: &mut Cadence, c: &Context, flows: &[FlowRecord]) -> Vec<Alert> {
        let mut out = Vec::new();
        for f in flows {
            d.on_flow(c, &FlowEvent::Started(*f), &mut out);
            d.on_flow(c, &FlowEvent::Ended(*f, EndReason::Closed), &mut out);
        }
        out
    }

    fn of(out: &[Alert], a: Analytic) -> Vec<&Alert> {
        out.iter().filter(|x| x.analytic == a).collect()
    }

    #[test]
    fn cdn_rotation_forms_one_series_by_name() {
        let mut d = Cadence::new(CadenceConfig::default());
        let c = ctx(None);
        let ips = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"];
        let mut out = Vec::new();
        Detector::on_dns(&mut d, &c, &answer("c2.example.net", &ips, 0.0), &mut out);
        let flows = rotating(&ips, 300.0, |i| 700 + 37 * i);
        let out = connections(&mut d, &c, &flows);
        let p = of(&out, Analytic::PeriodicTransfer);
        assert!(!p.is_empty(), "no periodic alert");
        let a = p[0];
        assert_eq!(a.dest_name.as_deref(), Some("c2.example.net"));
        assert_eq!(a.dest_ips.len(), 4);
        let cad = a.cadence.as_ref().unwrap();
        assert!((cad.period_s.unwrap() - 300.0).abs() < 1.0);
        assert!(
            a.reasons[0].contains("connections every 300 s"),
            "{:?}",
            a.reasons
        );
        assert!(
            of(&out, Analytic::FixedSizeTransfer).is_empty(),
            "sizes vary"
        );
    }

    struct OneProcess;
    impl Attributor for OneProcess {
        fn attribute(
            &self,
            _: u8,
            _: IpAddr,
            _: u16,
            _: IpAddr,
            _: u16,
            _: Ts,
            _: Option<[u8; 6]>,
        ) -> Option<Attribution> {
            Some(Attribution {
                process: Some(ProcessInfo {
                    name: Some("curl".into()),
                    executable: Some("/usr/bin/curl".into()),
                    ..Default::default()
                }),
                user: Some(crate::enrichment::UserInfo {
                    name: Some("nobody".into()),
                }),
                ..Default::default()
            })
        }
    }

    #[test]
    fn configured_expected_users_decide_over_the_heuristic() {
        let flows: Vec<_> = (0..30)
            .map(|i| flow(i, "198.51.100.7", 8443, PROTO_TCP, 120.0 * i as f64, 900))
            .collect();
        let run = |expected: &[(&str, &[&str])]| {
            let cfg = CadenceConfig {
                expected_users: expected
                    .iter()
                    .map(|(e, us)| (e.to_string(), us.iter().map(|u| u.to_string()).collect()))
                    .collect(),
                ..CadenceConfig::default()
            };
            let mut d = Cadence::new(cfg);
            let out = connections(&mut d, &ctx(Some(Arc::new(OneProcess))), &flows);
            let p = of(&out, Analytic::PeriodicTransfer);
            assert!(!p.is_empty(), "{out:#?}");
            p[0].reasons.clone()
        };
        // curl as nobody: the operator says that is how it runs here.
        let why = run(&[("curl", &["nobody"])]);
        assert!(
            !why.iter().any(|r| r.contains("unexpected user")),
            "{why:?}"
        );
        // The operator expects root: nobody is unexpected, with the operator's words.
        let why = run(&[("/usr/bin/curl", &["root"])]);
        assert!(
            why.iter()
                .any(|r| r.contains("unexpected user nobody: curl runs as nobody, expected root")),
            "{why:?}"
        );
    }

    #[test]
    fn process_series_spans_addresses_and_users_raise_score() {
        let mut d = Cadence::new(CadenceConfig::default());
        let c = ctx(Some(Arc::new(OneProcess)));
        // every beat to a new address, no DNS: only the process series is periodic
        let flows: Vec<_> = (0..30)
            .map(|i| {
                flow(
                    i,
                    &format!("198.51.100.{}", i + 1),
                    8443,
                    PROTO_TCP,
                    120.0 * i as f64,
                    900,
                )
            })
            .collect();
        let out = connections(&mut d, &c, &flows);
        let p = of(&out, Analytic::PeriodicTransfer);
        assert_eq!(p.len(), 1, "{out:#?}");
        assert!(p[0]
            .reasons
            .iter()
            .any(|r| r.contains("process series of /usr/bin/curl")));
        assert!(p[0]
            .reasons
            .iter()
            .any(|r| r.contains("unexpected user nobody")));
        assert!(p[0].attribution.is_some());
        // the same 900 bytes to 30 addresses: a process-level fixed-size series
        assert!(!of(&out, Analytic::FixedSizeTransfer).is_empty());
    }

    #[test]
    fn fixed_size_fires_with_short_last_chunk_not_below_floor() {
        let mut d = Cadence::new(CadenceConfig::default());
        let c = ctx(None);
        let gaps = [3.0, 40.0, 7.0, 250.0, 12.0, 90.0];
        let mut t = 0.0;
        let mut flows = Vec::new();
        for (i, g) in gaps.iter().enumerate() {
            let size = if i == 5 { 1500 } else { 4096 };
            flows.push(flow(i as u64, "203.0.113.9", 443, PROTO_TCP, t, size));
            t += g;
        }
        let out = connections(&mut d, &c, &flows);
        let f = of(&out, Analytic::FixedSizeTransfer);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].cadence.as_ref().unwrap().size_bytes, Some(4096));
        // tiny constant totals (commands, polls) never count
        let mut d = Cadence::new(CadenceConfig::default());
        let flows: Vec<_> = (0..20)
            .map(|i| flow(i, "203.0.113.9", 21, PROTO_TCP, 37.0 * i as f64, 70))
            .collect();
        assert!(of(
            &connections(&mut d, &c, &flows),
            Analytic::FixedSizeTransfer
        )
        .is_empty());
    }

    #[test]
    fn traps_stay_quiet() {
        let c = ctx(None);
        // NTP: UDP 123, 48 bytes, metronomic
        let mut d = Cadence::new(CadenceConfig::default());
        let flows: Vec<_> = (0..40)
            .map(|i| flow(i, "203.0.113.20", 123, PROTO_UDP, 64.0 * i as f64, 48))
            .collect();
        assert!(connections(&mut d, &c, &flows).is_empty());
        // an update agent's near-regular schedule to an allowlisted domain
        let mut d = Cadence::new(CadenceConfig::default());
        let mut out = Vec::new();
        Detector::on_dns(
            &mut d,
            &c,
            &answer("swscan.apple.com", &["203.0.113.30"], 0.0),
            &mut out,
        );
        let flows: Vec<_> = (0..40)
            .map(|i| {
                flow(
                    i,
                    "203.0.113.30",
                    443,
                    PROTO_TCP,
                    1.0 + 1800.0 * i as f64,
                    1200,
                )
            })
            .collect();
        assert!(connections(&mut d, &c, &flows).is_empty());
        assert!(d.stats().allowlisted >= 40);
        // telemetry of varying size: periodic (it is), never fixed-size
        let mut d = Cadence::new(CadenceConfig::default());
        let flows: Vec<_> = (0..40)
            .map(|i| {
                flow(
                    i,
                    "203.0.113.40",
                    443,
                    PROTO_TCP,
                    60.0 * i as f64,
                    300 + (i * 7919) % 12_000,
                )
            })
            .collect();
        assert!(of(
            &connections(&mut d, &c, &flows),
            Analytic::FixedSizeTransfer
        )
        .is_empty());
        // constant-size keepalives inside one persistent connection
        let mut d = Cadence::new(CadenceConfig::default());
        let f = flow(1, "203.0.113.50", 443, PROTO_TCP, 0.0, 0);
        let mut out = Vec::new();
        d.on_flow(&c, &FlowEvent::Started(f), &mut out);
        for i in 0..200u32 {
            let start = Ts::from_secs_f64(T0 as f64 + 30.0 * f64::from(i) + 1.0);
            let ev = FlowEvent::OrigMessage {
                flow: f,
                start,
                end: start,
                bytes: 120,
                index: i,
            };
            d.on_flow(&c, &ev, &mut out);
        }
        assert!(out.is_empty(), "{out:#?}");
        assert!(d.stats().heartbeats >= 198);
    }

    #[test]
    fn chunks_inside_one_connection() {
        let mut d = Cadence::new(CadenceConfig::default());
        let c = ctx(None);
        let f = flow(7, "203.0.113.60", 443, PROTO_TCP, 0.0, 0);
        let mut out = Vec::new();
        d.on_flow(&c, &FlowEvent::Started(f), &mut out);
        for (i, k) in [3u64, 7, 4, 9].iter().enumerate() {
            let start = Ts::from_secs_f64(T0 as f64 + 20.0 + 60.0 * i as f64);
            let ev = FlowEvent::OrigMessage {
                flow: f,
                start,
                end: start,
                bytes: k * 2048,
                index: i as u32,
            };
            d.on_flow(&c, &ev, &mut out);
        }
        let a = of(&out, Analytic::FixedSizeTransfer);
        assert_eq!(a.len(), 1, "{out:#?}");
        assert_eq!(a[0].cadence.as_ref().unwrap().size_bytes, Some(2048));
    }

    #[test]
    fn series_are_capped_and_evictions_counted() {
        let cfg = CadenceConfig {
            max_series: 64,
            max_flows: 64,
            ..CadenceConfig::default()
        };
        let mut d = Cadence::new(cfg);
        let c = ctx(None);
        let flows: Vec<_> = (0..1000)
            .map(|i| {
                let dst = format!("198.51.{}.{}", i / 400, (i / 2) % 200 + 1);
                flow(i, &dst, 443, PROTO_TCP, i as f64, 0)
            })
            .collect();
        connections(&mut d, &c, &flows);
        let st = d.stats();
        // every address twice in a row: each builds a series
        assert!(st.series <= 64 && st.series_evicted > 0, "{st:?}");
        assert!(d.fresh.len() <= 64);
        assert!(bytes_per_series() < 1024, "{}", bytes_per_series());
        // what every live outbound flow costs (module doc)
        assert_eq!(std::mem::size_of::<(u64, FlowState)>(), 80);
        assert_eq!(std::mem::size_of::<(u64, Fresh)>(), 40);
        assert_eq!(std::mem::size_of::<(u64, DnsName)>(), 24);
        eprintln!("bytes per series: {}", bytes_per_series());
    }

    /// The feed of a fleet: `covered` hosts run an agent; `users` is what it saw
    /// connecting to each address.
    struct Fleet {
        covered: Vec<IpAddr>,
        users: Vec<(IpAddr, IpAddr, &'static str)>,
    }
    impl Attributor for Fleet {
        fn attribute(
            &self,
            _: u8,
            _: IpAddr,
            _: u16,
            _: IpAddr,
            _: u16,
            _: Ts,
            _: Option<[u8; 6]>,
        ) -> Option<Attribution> {
            None
        }
        fn covers(&self, src: IpAddr) -> bool {
            self.covered.contains(&src)
        }
        fn destination_users(
            &self,
            _: u8,
            dst: IpAddr,
            _: u16,
            _: Ts,
            _: Ts,
        ) -> Vec<(IpAddr, Attribution)> {
            self.users
                .iter()
                .filter(|u| u.1 == dst)
                .map(|u| {
                    let p = ProcessInfo {
                        executable: Some(u.2.into()),
                        ..Default::default()
                    };
                    let a = Attribution {
                        process: Some(p),
                        ..Default::default()
                    };
                    (u.0, a)
                })
                .collect()
        }
    }

    /// An hourly backup from a host without an agent: quiet when the allowlisted client
    /// on covered hosts uses the same addresses, an alert otherwise (unknown software
    /// there, a single shared address, or the host has an agent of its own).
    #[test]
    fn fleet_context_quiets_uncovered_hosts_of_known_software() {
        let ips = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
        let other: IpAddr = "10.0.0.9".parse().unwrap();
        let me: IpAddr = "10.0.0.5".parse().unwrap();
        let run = |fleet: Fleet| {
            let mut d = Cadence::new(CadenceConfig::default());
            let c = ctx(Some(Arc::new(fleet)));
            let mut out = Vec::new();
            Detector::on_dns(
                &mut d,
                &c,
                &answer("b.backups.example", &ips, 0.0),
                &mut out,
            );
            let flows = rotating(&ips, 1800.0, |i| 50_000 + 977 * i);
            let out = connections(&mut d, &c, &flows);
            (
                of(&out, Analytic::PeriodicTransfer).len(),
                d.stats().fleet_allowlisted,
            )
        };
        let restic = |n: usize| -> Vec<(IpAddr, IpAddr, &'static str)> {
            ips[..n]
                .iter()
                .map(|ip| (other, ip.parse().unwrap(), "/usr/bin/restic"))
                .collect()
        };
        let (alerts, quiet) = run(Fleet {
            covered: vec![other],
            users: restic(2),
        });
        assert_eq!((alerts, quiet > 0), (0, true));
        // one shared address is not enough for a series over three
        let (alerts, _) = run(Fleet {
            covered: vec![other],
            users: restic(1),
        });
        assert!(alerts > 0);
        // software that is not allowlisted proves nothing
        let users = ips
            .iter()
            .map(|ip| (other, ip.parse().unwrap(), "/tmp/x"))
            .collect();
        let (alerts, _) = run(Fleet {
            covered: vec![other],
            users,
        });
        assert!(alerts > 0);
        // a host with its own agent is judged by its own context
        let (alerts, _) = run(Fleet {
            covered: vec![other, me],
            users: restic(3),
        });
        assert!(alerts > 0);
    }

    /// A chat client's keepalive every 90 s inside one connection, with chat messages of
    /// other small sizes between: no beat comes from the keepalives.
    #[test]
    fn keepalives_between_chat_messages_are_no_beats() {
        let mut d = Cadence::new(CadenceConfig::default());
        let c = ctx(None);
        let f = flow(1, "198.51.100.20", 5222, PROTO_TCP, 0.0, 0);
        let mut out = Vec::new();
        d.on_flow(&c, &FlowEvent::Started(f), &mut out);
        let mut chat = 0u64;
        for i in 1..400u32 {
            let t = Ts::from_secs_f64(T0 as f64 + 90.0 * f64::from(i));
            let mut msg = |start: Ts, bytes: u64, out: &mut Vec<Alert>| {
                let ev = FlowEvent::OrigMessage {
                    flow: f,
                    start,
                    end: start,
                    bytes,
                    index: i,
                };
                d.on_flow(&c, &ev, out);
            };
            msg(t, 66, &mut out);
            // chat at irregular moments (a fixed pseudo-random pattern), sizes varying
            if (i * 7919) % 11 < 3 {
                chat += 1;
                let at = t.saturating_add(Dur::from_secs(i64::from(5 + (i * 31) % 80)));
                msg(at, 80 + (chat * 37) % 150, &mut out);
            }
        }
        assert!(of(&out, Analytic::PeriodicTransfer).is_empty(), "{out:#?}");
    }

    /// A C2 channel kept open (WebSocket, HTTP/2): one connection, a check-in every
    /// 60 s ± 30 % with tasking of varying size, 5 % of check-ins missed.
    #[test]
    fn beacon_inside_one_long_lived_connection_fires() {
        let mut d = Cadence::new(CadenceConfig::default());
        let c = ctx(None);
        let f = flow(3, "198.51.100.77", 443, PROTO_TCP, 0.0, 0);
        let mut out = Vec::new();
        d.on_flow(&c, &FlowEvent::Started(f), &mut out);
        let mut rng = crate::analytics::cadence::compare::Rng::new(41);
        let mut t = 30.0;
        for i in 0..120u32 {
            t += 60.0 * (1.0 + 0.3 * (2.0 * rng.uniform() - 1.0));
            if rng.uniform() < 0.05 {
                continue;
            }
            let start = Ts::from_secs_f64(T0 as f64 + t);
            let ev = FlowEvent::OrigMessage {
                flow: f,
                start,
                end: start,
                bytes: 300 + (rng.uniform() * 1500.0) as u64,
                index: i,
            };
            d.on_flow(&c, &ev, &mut out);
        }
        let a = of(&out, Analytic::PeriodicTransfer);
        assert!(!a.is_empty(), "{out:#?}");
        let p = a[0].cadence.as_ref().unwrap().period_s.unwrap();
        assert!((50.0..70.0).contains(&p), "period {p}");
    }
}
