//! The attribution index: what the EDR feed said, organised for the join to flows.
//!
//! In: [`EdrEvent`]s from one feed-reader thread ([`EdrIndex::insert`]). Out:
//! [`Attribution`]s for flows, asked by every pipeline worker ([`EdrIndex::attribute`]).
//!
//! **Why dashmap.** One writer and many readers work on the index at once, and the
//! writer may load a whole file (hundreds of thousands of events) while workers keep
//! attributing flows. A single `RwLock<HashMap>` would stall every worker for each
//! write; dashmap shards the map so a write locks one shard, and a reader only waits if
//! it needs that very shard at that moment. Readers clone what they need (`Arc`s) and
//! release the shard before touching another map, so no lock is held across maps (no
//! lock-order deadlock with the writer).
//!
//! **Join rules** (contract): same transport, source ip+port, destination ip+port, and
//! event time within ±`tolerance` of the flow's first packet; the nearest in time wins.
//! Events without a source port join on (source ip, destination ip, destination port),
//! nearest time, within the same tolerance. Events with transport
//! [`ANY_TRANSPORT`] join flows of either transport. Snapshot events (a connection seen
//! open at `ts`) join flows that started within `snapshot_window` before `ts`; an exact
//! event always beats a snapshot. Ties go to the earlier event, then to the one read
//! first: results do not depend on thread timing.
//!
//! **Process identity** is keyed by (host, pid, start time): a network event takes the
//! process that had the pid at the event's time (the latest start not after it, unless
//! that process was seen gone before), so a later process reusing a pid never inherits
//! an earlier one's identity, nor the reverse. Fields the network event carries itself
//! always win over joined ones.
//!
//! **Bounded memory**: at most `max_per_key` events per connection key (oldest
//! dropped), events older than `max_age` before the newest event time dropped, and a
//! hard cap on all network events and on process records (oldest dropped first). Each
//! drop is counted ([`IndexStats`]).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::event::{
    format_mac, AccountEvent, EdrEvent, HostEvent, LaunchdJobEvent, Mac, NetworkEvent,
    ProcessEvent, ANY_TRANSPORT,
};
use super::{Attribution, HostInfo, LaunchdInfo, ProcessInfo, UserInfo, VmInfo};
use crate::time::{Dur, Ts};

/// Limits and join tolerances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Largest distance between an event's time and a flow's first packet (contract:
    /// ±5 s by default).
    pub tolerance: Dur,
    /// How long before a snapshot (a connection seen open) the flow may have started:
    /// one osquery `process_open_sockets` interval.
    pub snapshot_window: Dur,
    /// Network events kept per connection key; the oldest go first.
    pub max_per_key: usize,
    /// Network events older than this before the newest event are dropped. `None`
    /// keeps them (replay: the feed is loaded before the capture is read).
    pub max_age: Option<Dur>,
    /// Hard cap on network events held.
    pub max_network_events: usize,
    /// Hard cap on process records held.
    pub max_processes: usize,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            tolerance: Dur::from_secs(5),
            snapshot_window: Dur::from_secs(3600),
            max_per_key: 16,
            max_age: Some(Dur::from_secs(6 * 3600)),
            max_network_events: 500_000,
            max_processes: 200_000,
        }
    }
}

/// Counters of the index (drops are what matters: each is a possible missed join).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub network_events: usize,
    pub processes: usize,
    pub hosts: usize,
    pub vms: usize,
    pub evicted_per_key: u64,
    pub evicted_by_age: u64,
    pub evicted_by_cap: u64,
    pub evicted_processes: u64,
}

/// A flow as the index sees it: its originator-side 5-tuple, first packet time, and the
/// originator's MAC when the capture had one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowQuery {
    pub transport: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub first_ts: Ts,
    pub src_mac: Option<Mac>,
}

/// Inserts between two housekeeping passes (age and cap) over all keys.
const PRUNE_EVERY: u64 = 4096;
/// Process records kept per (host, pid): enough pid reuse for any realistic window.
const STARTS_PER_PID: usize = 8;
/// Word-boundary prefixes of a launchd job's arguments tried as its executable.
const LAUNCHD_ARG_PREFIXES: usize = 8;
/// Inventory assignments kept per address (DHCP churn).
const HISTORY_PER_IP: usize = 8;

type ExactKey = (u8, IpAddr, u16, IpAddr, u16);
type LooseKey = (u8, IpAddr, IpAddr, u16);
type DestKey = (u8, IpAddr, u16);

/// Network events kept per destination for [`EdrIndex::destination_users`] (the newest).
const EVENTS_PER_DEST: usize = 32;
/// Sources remembered as reporting connections (hosts with an agent).
const MAX_COVERED: usize = 1 << 20;

#[derive(Clone, Debug)]
struct NetEntry {
    ts: Ts,
    seq: u64,
    ev: Arc<NetworkEvent>,
}

#[derive(Clone, Debug)]
struct ProcRecord {
    start: Ts,
    end: Option<Ts>,
    uid: Option<u32>,
    attribution: Arc<Attribution>,
}

#[derive(Clone, Debug, Default)]
struct HostRecord {
    info: HostInfo,
    ips: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default)]
struct VmRecord {
    name: Option<String>,
    esx_host: Option<String>,
    macs: Vec<Mac>,
    ips: Vec<IpAddr>,
}

/// An address's owners over time: (since, insertion order, key).
type History = Vec<(Ts, u64, String)>;

/// See the module documentation.
#[derive(Debug)]
pub struct EdrIndex {
    cfg: IndexConfig,
    exact: DashMap<ExactKey, VecDeque<NetEntry>>,
    loose: DashMap<LooseKey, VecDeque<NetEntry>>,
    /// The same events by destination (the fleet's view of who talks to a peer).
    by_dest: DashMap<DestKey, VecDeque<NetEntry>>,
    /// Sources the feed reported a connection for: hosts with an agent.
    covered: DashMap<IpAddr, ()>,
    procs: DashMap<(String, u32), Vec<ProcRecord>>,
    guids: DashMap<String, (String, u32, Ts)>,
    accounts: DashMap<(String, u32), String>,
    launchd: DashMap<(String, String), (LaunchdInfo, Option<String>)>,
    hosts: DashMap<String, HostRecord>,
    host_ips: DashMap<IpAddr, History>,
    host_macs: DashMap<Mac, String>,
    vms: DashMap<String, VmRecord>,
    vm_ips: DashMap<IpAddr, History>,
    vm_macs: DashMap<Mac, String>,
    seq: AtomicU64,
    newest: AtomicI64,
    net_len: AtomicUsize,
    proc_len: AtomicUsize,
    evicted_per_key: AtomicU64,
    evicted_by_age: AtomicU64,
    evicted_by_cap: AtomicU64,
    evicted_processes: AtomicU64,
    lookups: AtomicU64,
    hits: AtomicU64,
    process_hits: AtomicU64,
}

/// Attribution lookups by the workers and how many the feed could answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookupStats {
    pub lookups: u64,
    /// Any attribution (host inventory or VM at least).
    pub hits: u64,
    /// A joined network event: the process is known.
    pub process_hits: u64,
}

impl Default for EdrIndex {
    fn default() -> Self {
        EdrIndex::new(IndexConfig::default())
    }
}

fn insert_sorted(q: &mut VecDeque<NetEntry>, e: NetEntry) {
    // Feeds are nearly in time order: search from the back.
    let pos = q
        .iter()
        .rposition(|x| (x.ts, x.seq) <= (e.ts, e.seq))
        .map_or(0, |i| i + 1);
    q.insert(pos, e);
}

fn push_history(h: &mut History, ts: Ts, seq: u64, key: &str) {
    if let Some(last) = h.iter().max_by_key(|x| (x.0, x.1)) {
        if last.2 == key && last.0 <= ts {
            return; // same owner, nothing new
        }
    }
    h.push((ts, seq, key.to_owned()));
    h.sort_by_key(|x| (x.0, x.1));
    if h.len() > HISTORY_PER_IP {
        h.remove(0);
    }
}

/// The owner at `ts`: the latest assignment not after `ts`, else the earliest one
/// (inventory is often reported after the traffic it explains).
fn owner_at(h: &History, ts: Ts) -> Option<&str> {
    h.iter()
        .filter(|x| x.0 <= ts)
        .max_by_key(|x| (x.0, x.1))
        .or_else(|| h.iter().min_by_key(|x| (x.0, x.1)))
        .map(|x| x.2.as_str())
}

fn fill<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
    if dst.is_none() {
        dst.clone_from(src);
    }
}

fn merge_process(dst: &mut ProcessInfo, src: &ProcessInfo) {
    fill(&mut dst.pid, &src.pid);
    fill(&mut dst.name, &src.name);
    fill(&mut dst.executable, &src.executable);
    fill(&mut dst.command_line, &src.command_line);
    fill(&mut dst.parent, &src.parent);
    fill(&mut dst.code_signature, &src.code_signature);
}

/// `dst` gains every field `src` has (newer report wins), keeps the rest.
fn overlay_attribution(dst: &mut Attribution, src: &Attribution) {
    fn over<T: Clone>(d: &mut Option<T>, s: &Option<T>) {
        if s.is_some() {
            d.clone_from(s);
        }
    }
    match (&mut dst.process, &src.process) {
        (Some(d), Some(s)) => {
            let mut n = s.clone();
            merge_process(&mut n, d);
            *d = n;
        }
        (d, s) => over(d, s),
    }
    over(&mut dst.user, &src.user);
    over(&mut dst.launchd, &src.launchd);
    over(&mut dst.host, &src.host);
}

fn host_name(a: &Attribution) -> &str {
    a.host
        .as_ref()
        .and_then(|h| h.name.as_deref())
        .unwrap_or("")
}

impl EdrIndex {
    pub fn new(cfg: IndexConfig) -> EdrIndex {
        EdrIndex {
            cfg,
            exact: DashMap::new(),
            loose: DashMap::new(),
            by_dest: DashMap::new(),
            covered: DashMap::new(),
            procs: DashMap::new(),
            guids: DashMap::new(),
            accounts: DashMap::new(),
            launchd: DashMap::new(),
            hosts: DashMap::new(),
            host_ips: DashMap::new(),
            host_macs: DashMap::new(),
            vms: DashMap::new(),
            vm_ips: DashMap::new(),
            vm_macs: DashMap::new(),
            seq: AtomicU64::new(0),
            newest: AtomicI64::new(i64::MIN),
            net_len: AtomicUsize::new(0),
            proc_len: AtomicUsize::new(0),
            evicted_per_key: AtomicU64::new(0),
            evicted_by_age: AtomicU64::new(0),
            evicted_by_cap: AtomicU64::new(0),
            evicted_processes: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            process_hits: AtomicU64::new(0),
        }
    }

    pub fn lookup_stats(&self) -> LookupStats {
        LookupStats {
            lookups: self.lookups.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            process_hits: self.process_hits.load(Ordering::Relaxed),
        }
    }

    /// Publishes the index's counters and the attribution hit rate as metrics.
    pub fn publish(&self) {
        let l = self.lookup_stats();
        metrics::counter!("portent_edr_attribution_lookups_total").absolute(l.lookups);
        metrics::counter!("portent_edr_attribution_hits_total", "level" => "any").absolute(l.hits);
        metrics::counter!("portent_edr_attribution_hits_total", "level" => "process")
            .absolute(l.process_hits);
        if l.lookups > 0 {
            metrics::gauge!("portent_edr_attribution_hit_ratio")
                .set(l.process_hits as f64 / l.lookups as f64);
        }
        let s = self.stats();
        metrics::gauge!("portent_edr_index_network_events").set(s.network_events as f64);
        metrics::gauge!("portent_edr_index_processes").set(s.processes as f64);
        let ev = s.evicted_per_key + s.evicted_by_age + s.evicted_by_cap;
        metrics::counter!("portent_edr_index_evicted_total").absolute(ev);
    }

    pub fn config(&self) -> &IndexConfig {
        &self.cfg
    }

    pub fn stats(&self) -> IndexStats {
        IndexStats {
            network_events: self.net_len.load(Ordering::Relaxed),
            processes: self.proc_len.load(Ordering::Relaxed),
            hosts: self.hosts.len(),
            vms: self.vms.len(),
            evicted_per_key: self.evicted_per_key.load(Ordering::Relaxed),
            evicted_by_age: self.evicted_by_age.load(Ordering::Relaxed),
            evicted_by_cap: self.evicted_by_cap.load(Ordering::Relaxed),
            evicted_processes: self.evicted_processes.load(Ordering::Relaxed),
        }
    }

    // ---- writer side -------------------------------------------------------------

    /// Adds one event. Meant for a single writer thread (the feed reader); readers may
    /// query concurrently.
    pub fn insert(&self, ev: EdrEvent) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        match ev {
            EdrEvent::Network(n) => self.insert_network(n, seq),
            EdrEvent::Host(h) => self.insert_host(h, seq),
            EdrEvent::Process(p) => self.insert_process(p),
            EdrEvent::Account(a) => self.insert_account(a),
            EdrEvent::LaunchdJob(l) => self.insert_launchd(l),
        }
    }

    fn insert_network(&self, n: NetworkEvent, seq: u64) {
        let Some(src) = n.src else { return };
        self.newest.fetch_max(n.ts.0, Ordering::Relaxed);
        let e = NetEntry {
            ts: n.ts,
            seq,
            ev: Arc::new(n),
        };
        let (mut dropped_key, mut dropped_age) = (0u64, 0u64);
        let horizon = self.horizon();
        let mut add = |q: &mut VecDeque<NetEntry>| {
            insert_sorted(q, e.clone());
            while q.len() > self.cfg.max_per_key {
                q.pop_front();
                dropped_key += 1;
            }
            while q.front().is_some_and(|f| f.ts < horizon) {
                q.pop_front();
                dropped_age += 1;
            }
        };
        let ev = &e.ev;
        {
            let mut q = self
                .by_dest
                .entry((ev.transport, ev.dst.to_canonical(), ev.dport))
                .or_default();
            insert_sorted(&mut q, e.clone());
            while q.len() > EVENTS_PER_DEST || q.front().is_some_and(|f| f.ts < horizon) {
                q.pop_front();
            }
        }
        if self.covered.len() < MAX_COVERED {
            self.covered.insert(src.to_canonical(), ());
        }
        match ev.sport {
            Some(sp) => add(&mut self
                .exact
                .entry((ev.transport, src, sp, ev.dst, ev.dport))
                .or_default()),
            None => add(&mut self
                .loose
                .entry((ev.transport, src, ev.dst, ev.dport))
                .or_default()),
        }
        self.evicted_per_key
            .fetch_add(dropped_key, Ordering::Relaxed);
        self.evicted_by_age
            .fetch_add(dropped_age, Ordering::Relaxed);
        let len = self.net_len.fetch_add(1, Ordering::Relaxed) + 1;
        self.net_len
            .fetch_sub((dropped_key + dropped_age) as usize, Ordering::Relaxed);
        if seq % PRUNE_EVERY == PRUNE_EVERY - 1 || len > self.cfg.max_network_events {
            self.prune();
        }
    }

    /// Events before this time are dropped (age limit relative to the newest event).
    fn horizon(&self) -> Ts {
        let newest = self.newest.load(Ordering::Relaxed);
        match self.cfg.max_age {
            Some(age) if newest != i64::MIN => Ts(newest.saturating_sub(age.0)),
            _ => Ts(i64::MIN),
        }
    }

    /// Housekeeping over all keys: drops events past the age limit, then, above the
    /// cap, the oldest events down to 90 % of it; same for process records. Runs every
    /// [`PRUNE_EVERY`] inserts and when a cap is exceeded; callable by the owner too.
    pub fn prune(&self) {
        let horizon = self.horizon();
        let mut aged = 0usize;
        let mut by_age = |q: &mut VecDeque<NetEntry>| {
            let before = q.len();
            q.retain(|e| e.ts >= horizon);
            aged += before - q.len();
            !q.is_empty()
        };
        self.exact.retain(|_, q| by_age(q));
        self.loose.retain(|_, q| by_age(q));
        self.by_dest.retain(|_, q| {
            q.retain(|e| e.ts >= horizon);
            !q.is_empty()
        });
        self.evicted_by_age
            .fetch_add(aged as u64, Ordering::Relaxed);
        self.net_len.fetch_sub(aged, Ordering::Relaxed);

        let len = self.net_len.load(Ordering::Relaxed);
        if len > self.cfg.max_network_events {
            let target = self.cfg.max_network_events / 10 * 9;
            let mut all: Vec<(Ts, u64)> = Vec::with_capacity(len);
            for q in self.exact.iter() {
                all.extend(q.iter().map(|e| (e.ts, e.seq)));
            }
            for q in self.loose.iter() {
                all.extend(q.iter().map(|e| (e.ts, e.seq)));
            }
            let drop_n = all.len().saturating_sub(target);
            if drop_n > 0 {
                let (_, cut, _) = all.select_nth_unstable(drop_n - 1);
                let cut = *cut;
                let mut dropped = 0usize;
                let mut by_cap = |q: &mut VecDeque<NetEntry>| {
                    let before = q.len();
                    q.retain(|e| (e.ts, e.seq) > cut);
                    dropped += before - q.len();
                    !q.is_empty()
                };
                self.exact.retain(|_, q| by_cap(q));
                self.loose.retain(|_, q| by_cap(q));
                self.by_dest.retain(|_, q| {
                    q.retain(|e| (e.ts, e.seq) > cut);
                    !q.is_empty()
                });
                self.evicted_by_cap
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                self.net_len.fetch_sub(dropped, Ordering::Relaxed);
            }
        }

        let plen = self.proc_len.load(Ordering::Relaxed);
        if plen > self.cfg.max_processes {
            let target = self.cfg.max_processes / 10 * 9;
            let mut starts: Vec<Ts> = Vec::with_capacity(plen);
            for r in self.procs.iter() {
                starts.extend(r.iter().map(|p| p.start));
            }
            let drop_n = starts.len().saturating_sub(target);
            if drop_n > 0 {
                let (_, cut, _) = starts.select_nth_unstable(drop_n - 1);
                let cut = *cut;
                let mut dropped = 0usize;
                self.procs.retain(|_, v| {
                    let before = v.len();
                    v.retain(|p| p.start > cut);
                    dropped += before - v.len();
                    !v.is_empty()
                });
                self.guids.retain(|_, (_, _, start)| *start > cut);
                self.evicted_processes
                    .fetch_add(dropped as u64, Ordering::Relaxed);
                self.proc_len.fetch_sub(dropped, Ordering::Relaxed);
            }
        }
    }

    fn insert_host(&self, h: HostEvent, seq: u64) {
        let key = h
            .host
            .name
            .clone()
            .or_else(|| h.ips.first().map(|ip| ip.to_string()))
            .or_else(|| h.macs.first().map(format_mac));
        if let Some(key) = &key {
            {
                let mut r = self.hosts.entry(key.clone()).or_default();
                fill(&mut r.info.name, &h.host.name);
                if h.host.os.as_ref().is_some_and(|o| o.platform.is_some()) {
                    r.info.os.clone_from(&h.host.os);
                }
                for ip in &h.ips {
                    if !r.ips.contains(ip) {
                        r.ips.push(*ip);
                    }
                }
            }
            for ip in &h.ips {
                push_history(&mut self.host_ips.entry(*ip).or_default(), h.ts, seq, key);
            }
            for mac in &h.macs {
                self.host_macs.insert(*mac, key.clone());
            }
        }
        if let Some(vm) = h.vm {
            let Some(vkey) = vm
                .name
                .clone()
                .or_else(|| vm.macs.first().map(format_mac))
                .or_else(|| vm.ips.first().map(|ip| ip.to_string()))
            else {
                return;
            };
            {
                let mut r = self.vms.entry(vkey.clone()).or_default();
                fill(&mut r.name, &vm.name);
                if h.host.name.is_some() {
                    r.esx_host.clone_from(&h.host.name);
                }
                for m in &vm.macs {
                    if !r.macs.contains(m) {
                        r.macs.push(*m);
                    }
                }
                for ip in &vm.ips {
                    if !r.ips.contains(ip) {
                        r.ips.push(*ip);
                    }
                }
            }
            for ip in &vm.ips {
                push_history(&mut self.vm_ips.entry(*ip).or_default(), h.ts, seq, &vkey);
            }
            for mac in &vm.macs {
                self.vm_macs.insert(*mac, vkey.clone());
            }
        }
    }

    fn insert_process(&self, p: ProcessEvent) {
        let host = host_name(&p.attribution).to_owned();
        let key = (host.clone(), p.pid);
        if p.exited {
            if let Some(mut v) = self.procs.get_mut(&key) {
                let target = if p.start == Ts::MAX {
                    v.iter_mut()
                        .filter(|r| r.start <= p.ts)
                        .max_by_key(|r| r.start)
                } else {
                    v.iter_mut().find(|r| r.start == p.start)
                };
                if let Some(r) = target {
                    r.end = Some(p.ts);
                }
            }
            return;
        }
        if let Some(g) = &p.process_guid {
            self.guids.insert(g.clone(), (host, p.pid, p.start));
        }
        let mut v = self.procs.entry(key).or_default();
        if let Some(r) = v.iter_mut().find(|r| r.start == p.start) {
            let mut a = (*r.attribution).clone();
            overlay_attribution(&mut a, &p.attribution);
            r.attribution = Arc::new(a);
            fill(&mut r.uid, &p.uid);
            return;
        }
        let pos = v.partition_point(|r| r.start <= p.start);
        v.insert(
            pos,
            ProcRecord {
                start: p.start,
                end: None,
                uid: p.uid,
                attribution: Arc::new(p.attribution),
            },
        );
        let mut added = 1usize;
        if v.len() > STARTS_PER_PID {
            v.remove(0);
            added = 0;
            self.evicted_processes.fetch_add(1, Ordering::Relaxed);
        }
        drop(v);
        let len = self.proc_len.fetch_add(added, Ordering::Relaxed) + added;
        if len > self.cfg.max_processes {
            self.prune();
        }
    }

    fn insert_account(&self, a: AccountEvent) {
        self.accounts
            .insert((a.host.unwrap_or_default(), a.uid), a.name);
    }

    fn insert_launchd(&self, l: LaunchdJobEvent) {
        let host = l.host.unwrap_or_default();
        let mut programs: Vec<String> = l.program.into_iter().collect();
        if let Some(args) = &l.arguments {
            // "/Users/ann/Library/Application Support/x/updater --interval 600": the
            // executable is one of the word-boundary prefixes.
            let mut end = 0;
            for word in args.split(' ').take(LAUNCHD_ARG_PREFIXES) {
                end += word.len();
                if !word.is_empty() {
                    programs.push(args.get(..end).unwrap_or(args).to_owned());
                }
                end += 1;
            }
        }
        for p in programs {
            self.launchd
                .insert((host.clone(), p), (l.launchd.clone(), l.user.clone()));
        }
    }

    // ---- reader side -------------------------------------------------------------

    /// The attribution of a flow (see the module documentation for the join rules):
    /// the network event's process/user/launchd, completed from process starts, users
    /// and launchd jobs, plus the host inventory and VM of the source address.
    pub fn attribute(
        &self,
        transport: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        flow_first_ts: Ts,
    ) -> Option<Attribution> {
        self.attribute_flow(&FlowQuery {
            transport,
            src,
            sport,
            dst,
            dport,
            first_ts: flow_first_ts,
            src_mac: None,
        })
    }

    /// [`EdrIndex::attribute`] with the originator's MAC (VM attribution by MAC).
    pub fn attribute_flow(&self, q: &FlowQuery) -> Option<Attribution> {
        let src = q.src.to_canonical();
        let dst = q.dst.to_canonical();
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let mut a = match self.network_match(q.transport, src, q.sport, dst, q.dport, q.first_ts) {
            Some(e) => {
                self.process_hits.fetch_add(1, Ordering::Relaxed);
                self.complete(&e)
            }
            None => Attribution::default(),
        };
        // Host inventory of the source address.
        let inv = self
            .host_by_ip(src, q.first_ts)
            .or_else(|| q.src_mac.and_then(|m| self.host_by_mac(m)));
        if let Some(inv) = inv {
            let h = a.host.get_or_insert_with(HostInfo::default);
            fill(&mut h.name, &inv.name);
            if h.os.as_ref().and_then(|o| o.platform.as_ref()).is_none() {
                h.os.clone_from(&inv.os);
            }
        } else if let Some(h) = a.host.as_mut() {
            // Platform from the inventory entry of the host's name.
            if h.os.is_none() {
                if let Some(name) = &h.name {
                    if let Some(r) = self.hosts.get(name) {
                        h.os.clone_from(&r.info.os);
                    }
                }
            }
        }
        a.vm = self
            .vm_by_ip(src, q.first_ts)
            .or_else(|| q.src_mac.and_then(|m| self.vm_by_mac(m)));
        if a.is_empty() {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(a)
    }

    /// Whether the feed has reported any connection from `src`: the host runs an agent.
    pub fn covers(&self, src: IpAddr) -> bool {
        self.covered.contains_key(&src.to_canonical())
    }

    /// Every connection the feed saw to `dst:dport` (this transport or either) with a
    /// time in `since..=until`, as (source, completed attribution); newest
    /// [`EVENTS_PER_DEST`] per destination. For fleet context: what software on other
    /// hosts uses a peer.
    pub fn destination_users(
        &self,
        transport: u8,
        dst: IpAddr,
        dport: u16,
        since: Ts,
        until: Ts,
    ) -> Vec<(IpAddr, Attribution)> {
        let dst = dst.to_canonical();
        let transports: &[u8] = if transport == ANY_TRANSPORT {
            &[ANY_TRANSPORT]
        } else {
            &[transport, ANY_TRANSPORT]
        };
        let mut out = Vec::new();
        for &tr in transports {
            let Some(q) = self.by_dest.get(&(tr, dst, dport)) else {
                continue;
            };
            for e in q.iter().filter(|e| e.ts >= since && e.ts <= until) {
                if let Some(src) = e.ev.src {
                    out.push((src, self.complete(&e.ev)));
                }
            }
        }
        out
    }

    /// What the inventory knows of the host that had `src` at `ts` (name, platform, VM),
    /// without any process: the fallback for alerts whose flow the feed did not report.
    pub fn host_context(&self, src: IpAddr, ts: Ts) -> Option<Attribution> {
        let src = src.to_canonical();
        let a = Attribution {
            host: self.host_by_ip(src, ts),
            vm: self.vm_by_ip(src, ts),
            ..Attribution::default()
        };
        (!a.is_empty()).then_some(a)
    }

    /// The network event joined to a flow, if any.
    fn network_match(
        &self,
        transport: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        t: Ts,
    ) -> Option<Arc<NetworkEvent>> {
        let transports: &[u8] = if transport == ANY_TRANSPORT {
            &[ANY_TRANSPORT]
        } else {
            &[transport, ANY_TRANSPORT]
        };
        type Best = Option<((u8, i64, Ts, u64), Arc<NetworkEvent>)>;
        let consider = |best: &mut Best, q: &VecDeque<NetEntry>| {
            for e in q {
                if let Some(rank) = self.rank(e, t) {
                    if best.as_ref().is_none_or(|(b, _)| rank < *b) {
                        *best = Some((rank, e.ev.clone()));
                    }
                }
            }
        };
        let mut best: Best = None;
        for &tr in transports {
            if let Some(q) = self.exact.get(&(tr, src, sport, dst, dport)) {
                consider(&mut best, &q);
            }
        }
        if best.is_none() {
            for &tr in transports {
                if let Some(q) = self.loose.get(&(tr, src, dst, dport)) {
                    consider(&mut best, &q);
                }
            }
        }
        best.map(|(_, e)| e)
    }

    /// Sort key of a candidate (lower is better), or `None` outside the window.
    fn rank(&self, e: &NetEntry, t: Ts) -> Option<(u8, i64, Ts, u64)> {
        let tol = self.cfg.tolerance.0;
        let d = t.0.saturating_sub(e.ts.0); // > 0: flow after the event
        if e.ev.snapshot {
            // Seen open at e.ts: the flow started before (within the window) or just after.
            let ok = d <= tol && -d <= self.cfg.snapshot_window.0;
            ok.then_some((1, d.max(0), e.ts, e.seq))
        } else {
            (d.unsigned_abs() <= tol as u64).then_some((0, d.saturating_abs(), e.ts, e.seq))
        }
    }

    /// A network event's attribution completed from process, account and launchd data.
    fn complete(&self, n: &NetworkEvent) -> Attribution {
        let mut a = n.attribution.clone();
        let host = host_name(&a).to_owned();
        let rec = self.process_at(&host, n, n.ts);
        let mut uid = n.uid;
        if let Some(r) = &rec {
            let p = a.process.get_or_insert_with(ProcessInfo::default);
            if let Some(rp) = &r.attribution.process {
                merge_process(p, rp);
            }
            fill(&mut a.user, &r.attribution.user);
            fill(&mut a.launchd, &r.attribution.launchd);
            fill(&mut uid, &r.uid);
            if a.host.as_ref().is_none_or(|h| h.os.is_none()) {
                if let Some(rh) = &r.attribution.host {
                    let h = a.host.get_or_insert_with(HostInfo::default);
                    fill(&mut h.name, &rh.name);
                    fill(&mut h.os, &rh.os);
                }
            }
        }
        if a.user.is_none() {
            if let Some(uid) = uid {
                if let Some(name) = self.accounts.get(&(host.clone(), uid)) {
                    a.user = Some(UserInfo {
                        name: Some(name.clone()),
                    });
                }
            }
        }
        if a.launchd.is_none() {
            let exe = a.process.as_ref().and_then(|p| p.executable.clone());
            if let Some(exe) = exe {
                if let Some(j) = self.launchd.get(&(host.clone(), exe)) {
                    a.launchd = Some(j.0.clone());
                    if a.user.is_none() && j.1.is_some() {
                        a.user = Some(UserInfo { name: j.1.clone() });
                    }
                }
            }
        }
        a
    }

    /// The process that had the event's pid (or Sysmon guid) at `t`.
    fn process_at(&self, host: &str, n: &NetworkEvent, t: Ts) -> Option<ProcRecord> {
        if let Some(g) = &n.process_guid {
            // Copy the key out first: no guid shard stays locked while procs is read.
            let key = self.guids.get(g).map(|k| k.clone());
            if let Some(k) = key {
                let (h, pid, start) = k;
                if let Some(v) = self.procs.get(&(h, pid)) {
                    if let Some(r) = v.iter().find(|r| r.start == start) {
                        return Some(r.clone());
                    }
                }
            }
        }
        let pid = n.attribution.process.as_ref()?.pid?;
        let v = self.procs.get(&(host.to_owned(), pid))?;
        let r = v.iter().rev().find(|r| r.start <= t)?;
        if r.end.is_some_and(|e| e < t) {
            return None; // that process was gone; the pid's new owner is unknown
        }
        Some(r.clone())
    }

    /// Inventory of the host that had `ip` at `ts`.
    pub fn host_by_ip(&self, ip: IpAddr, ts: Ts) -> Option<HostInfo> {
        let hist = self.host_ips.get(&ip.to_canonical())?;
        let key = owner_at(&hist, ts)?.to_owned();
        drop(hist);
        self.hosts.get(&key).map(|r| r.info.clone())
    }

    /// Inventory of the host with this MAC (latest report).
    pub fn host_by_mac(&self, mac: Mac) -> Option<HostInfo> {
        let key = self.host_macs.get(&mac)?.clone();
        self.hosts.get(&key).map(|r| r.info.clone())
    }

    /// Every address the inventory lists for a host name.
    pub fn host_ips(&self, name: &str) -> Vec<IpAddr> {
        self.hosts
            .get(name)
            .map(|r| r.ips.clone())
            .unwrap_or_default()
    }

    /// The VM that had `ip` at `ts`, with its ESXi host.
    pub fn vm_by_ip(&self, ip: IpAddr, ts: Ts) -> Option<VmInfo> {
        let hist = self.vm_ips.get(&ip.to_canonical())?;
        let key = owner_at(&hist, ts)?.to_owned();
        drop(hist);
        self.vm_info(&key)
    }

    /// The VM with this MAC (latest report), with its ESXi host.
    pub fn vm_by_mac(&self, mac: Mac) -> Option<VmInfo> {
        let key = self.vm_macs.get(&mac)?.clone();
        self.vm_info(&key)
    }

    fn vm_info(&self, key: &str) -> Option<VmInfo> {
        let r = self.vms.get(key)?;
        Some(VmInfo {
            name: r.name.clone(),
            mac: r.macs.first().map(format_mac),
            ip: r.ips.iter().map(|ip| ip.to_string()).collect(),
            host: r.esx_host.clone(),
        })
    }
}

impl crate::enrichment::Attributor for EdrIndex {
    fn attribute(
        &self,
        proto: u8,
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        first_ts: Ts,
        src_mac: Option<[u8; 6]>,
    ) -> Option<Attribution> {
        self.attribute_flow(&FlowQuery {
            transport: proto,
            src,
            sport,
            dst,
            dport,
            first_ts,
            src_mac,
        })
    }

    fn host_context(&self, src: IpAddr, ts: Ts) -> Option<Attribution> {
        EdrIndex::host_context(self, src, ts)
    }

    fn covers(&self, src: IpAddr) -> bool {
        EdrIndex::covers(self, src)
    }

    fn destination_users(
        &self,
        proto: u8,
        dst: IpAddr,
        dport: u16,
        since: Ts,
        until: Ts,
    ) -> Vec<(IpAddr, Attribution)> {
        EdrIndex::destination_users(self, proto, dst, dport, since, until)
    }
}
