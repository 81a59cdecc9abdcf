//! The detector behind `dns_calculated_port` and `unusual_dns_nonstandard_port`: one
//! answer memory and one baseline per host serve both analytics.
//!
//! Per new flow (TCP only when it began with the originator's SYN: a connection picked up
//! midstream is not new), in order of cost: a standard port ends the check; then one
//! host-map lookup, the host's regular ports, one binary search of its derived-port
//! index and, for IPv4, of its shuffle signatures. Only a candidate from those (or an
//! unusual answer in the window) takes the slow path that scores and explains.

use std::net::IpAddr;
use std::sync::Arc;

use crate::analytics::{Alert, AlertDns, Analytic, Context, Detector};
use crate::baseline::{BaselineKey, HostBaseline, Store};
use crate::decode::dns::DnsAnswer;
use crate::decode::{PROTO_TCP, PROTO_UDP};
use crate::flow::{FlowEvent, FlowRecord};
use crate::time::{Dur, Ts};

use super::config::DnsCalcConfig;
use super::derivation::{canonical, AddrTransform, Derivation, Family, Operands};
use super::memory::{
    entry, octet_sig, Addrs, Answered, HostState, Hosts, IndexEntry, Remembered, KEEP_ADDRS,
    KEY_PORT, KEY_SIG,
};
use super::unusual::{NameHistory, Unusual};

/// Ports a derivation can land on outside the well-known range.
const HIGH_PORTS: f64 = 64_512.0;

/// How often a host without a known platform asks the EDR feed again.
const PLATFORM_RETRY: Dur = Dur(600_000_000_000);

/// Addresses remembered as "given by DNS" per worker (two generations).
const ANSWERED_CAP: usize = 1 << 19;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsCalcStats {
    pub answers: u64,
    /// New flows to a non-standard, non-regular port from a host with answers in memory.
    pub checked_flows: u64,
    /// Checked flows whose port a derivation gives from an address answered to the host
    /// in the window, whatever the destination (the family's raw chance-match count on
    /// benign traffic).
    pub derivation_matches: u64,
    pub calculated_port_alerts: u64,
    pub unusual_alerts: u64,
    pub store_errors: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HitKind {
    /// The port derives from an answered address the host connected to.
    Port,
    /// The address derives from an answered one, and so does the port.
    AddrPort(AddrTransform),
    /// The port derives from an answer just received; the destination came from no
    /// answer (a fallback, or an address computed with a key).
    PortOnly,
    /// The address is a byte shuffle of an answered one; the port is merely non-standard.
    AddrOnly(AddrTransform),
}

#[derive(Clone, Copy, Debug)]
struct Hit {
    seq: u8,
    ts: Ts,
    addr: IpAddr,
    kind: HitKind,
}

impl Hit {
    fn rank(&self) -> u8 {
        match self.kind {
            HitKind::Port => 5,
            HitKind::AddrPort(t) if !t.is_neighbour() => 4,
            HitKind::AddrPort(_) => 3,
            HitKind::PortOnly => 2,
            HitKind::AddrOnly(_) => 1,
        }
    }
    fn better_than(&self, other: Option<Hit>) -> bool {
        other.is_none_or(|b| (self.rank(), self.ts) > (b.rank(), b.ts))
    }
}

/// What the slow path needs besides the host.
struct Env<'a> {
    cfg: &'a DnsCalcConfig,
    answered: &'a Answered,
    platform_regular: bool,
    /// The destination is outside home_net (LAN peers are reached without DNS all the
    /// time: discovery, broadcasts, file shares by address).
    dst_external: bool,
    k_v4: usize,
    k_v6: usize,
}

impl Env<'_> {
    /// An external address no DNS answer gave (to the host, or lately to any host here).
    fn dns_less(&self, st: &HostState, dst: IpAddr) -> bool {
        self.dst_external && !st.answered(dst) && !self.answered.contains(dst)
    }
}

pub struct DnsCalc {
    cfg: Arc<DnsCalcConfig>,
    hosts: Hosts,
    names: NameHistory,
    answered: Answered,
    store: Option<Arc<Store>>,
    /// Platform baselines; few platforms, so a list searched by name (no allocation).
    platforms: Vec<(Box<str>, HostBaseline)>,
    last_save: Option<Ts>,
    k_v4: usize,
    k_v6: usize,
    scratch: Vec<u64>,
    pub stats: DnsCalcStats,
}

impl DnsCalc {
    pub fn new(cfg: DnsCalcConfig, store: Option<Arc<Store>>) -> DnsCalc {
        let k = |f: Family| cfg.derivations.iter().filter(|d| d.family == f).count();
        DnsCalc {
            k_v4: k(Family::V4),
            k_v6: k(Family::V6),
            hosts: Hosts::new(cfg.max_hosts, cfg.max_answers_per_host),
            names: NameHistory::new(cfg.unusual.max_names),
            answered: Answered::new(ANSWERED_CAP),
            store,
            platforms: Vec::new(),
            last_save: None,
            cfg: Arc::new(cfg),
            scratch: Vec::new(),
            stats: DnsCalcStats::default(),
        }
    }

    pub fn host_evictions(&self) -> u64 {
        self.hosts.evictions
    }

    /// Hosts tracked and the heap bytes held by them and the worker-wide tables.
    pub fn memory(&self) -> (usize, usize) {
        (
            self.hosts.map.len(),
            self.hosts.heap_bytes() + self.answered.heap_bytes(),
        )
    }

    fn internal(ctx: &Context, ip: IpAddr) -> bool {
        ctx.home_net.is_empty() || ctx.home_net.contains(ip)
    }

    fn host<'a>(
        hosts: &'a mut Hosts,
        store: &Option<Arc<Store>>,
        ip: IpAddr,
        now: Ts,
    ) -> &'a mut HostState {
        hosts.get_or_insert(ip, now, || {
            store
                .as_ref()
                .and_then(|s| s.load(&BaselineKey::Host(ip)).ok().flatten())
                .unwrap_or_default()
        })
    }

    /// The first derivation giving `port` from `addr`.
    fn derive_port(derivs: &[Derivation], addr: IpAddr, port: u16) -> Option<usize> {
        let o = Operands::from_ip(addr);
        derivs
            .iter()
            .position(|d| d.family == o.family && d.port(&o) == Some(port))
    }

    /// Persists dirty baselines (evicted ones too) and platform baselines.
    fn save(&mut self, now: Ts) {
        self.last_save = Some(now);
        let Some(store) = self.store.clone() else {
            self.hosts.evicted_dirty.clear();
            return;
        };
        let mut items: Vec<(BaselineKey, HostBaseline)> = self
            .hosts
            .evicted_dirty
            .drain(..)
            .map(|(ip, b)| (BaselineKey::Host(ip), b))
            .collect();
        for (ip, s) in self.hosts.map.iter_mut().filter(|(_, s)| s.dirty) {
            s.dirty = false;
            items.push((BaselineKey::Host(*ip), s.baseline.clone()));
        }
        let mut result = store
            .save_all(items.iter().map(|(k, b)| (k, b)))
            .map(|_| ());
        for (p, b) in &self.platforms {
            result = result.and(store.merge_platform(p, b, &self.cfg.baseline, now));
        }
        if let Err(e) = result {
            if self.stats.store_errors == 0 {
                eprintln!("portent: baseline store: {e}");
            }
            self.stats.store_errors += 1;
        }
    }

    /// The platform list index + 1 for `name`, loading its stored baseline once.
    fn platform_slot(
        platforms: &mut Vec<(Box<str>, HostBaseline)>,
        store: &Option<Arc<Store>>,
        name: &str,
    ) -> u8 {
        if let Some(i) = platforms.iter().position(|(p, _)| &**p == name) {
            return (i + 1) as u8;
        }
        if platforms.len() >= 250 {
            return 0;
        }
        let b = store
            .as_ref()
            .and_then(|s| {
                s.load(&BaselineKey::Platform(name.to_string()))
                    .ok()
                    .flatten()
            })
            .unwrap_or_default();
        platforms.push((name.into(), b));
        platforms.len() as u8
    }

    fn on_started(&mut self, ctx: &Context, f: &FlowRecord, out: &mut Vec<Alert>) {
        let port = f.resp_port;
        let tcp = f.proto == PROTO_TCP;
        if !f.orig_is_internal
            || !(tcp || f.proto == PROTO_UDP)
            || (tcp && f.history.as_str().as_bytes().first() != Some(&b'S'))
            || self.cfg.standard_ports.contains(port)
            || !Self::internal(ctx, f.orig)
        {
            return;
        }
        let now = f.first_ts;
        let Self {
            cfg,
            hosts,
            store,
            platforms,
            answered,
            stats,
            k_v4,
            k_v6,
            ..
        } = self;
        let cfg: &DnsCalcConfig = cfg;
        let st = Self::host(hosts, store, f.orig, now);
        // The host's platform, asked of the EDR feed once (and again after a while when
        // it was unknown), never per flow.
        if st.platform == 0
            && ctx.attributor.is_some()
            && st
                .platform_asked
                .is_none_or(|t| now.since(t) >= PLATFORM_RETRY)
        {
            st.platform_asked = Some(now);
            if let Some(a) = ctx.attribute(f) {
                if let Some(p) = a.platform() {
                    st.platform = Self::platform_slot(platforms, store, p);
                }
            }
        }
        let exempt = cfg.allow.allows_port(port)
            || st
                .baseline
                .is_regular_port(&cfg.baseline, now, port, f.proto);
        let mut alerted = false;
        if !exempt && !st.answers.is_empty() {
            stats.checked_flows += 1;
            let dst = canonical(f.resp);
            let port_hits = st.has_port(port);
            let shuffle_hits = cfg.address_transforms
                && match dst {
                    IpAddr::V4(a) => {
                        let o = a.octets();
                        [
                            o,
                            o.map(|x| x.wrapping_sub(1)),
                            o.map(|x| x.wrapping_add(1)),
                        ]
                        .iter()
                        .any(|&x| st.has_sig(octet_sig(x)))
                    }
                    IpAddr::V6(_) => false,
                };
            let unusual_recent = st.last_unusual != Ts::ZERO
                && st.last_unusual <= now
                && now.since(st.last_unusual) <= cfg.window;
            if (port_hits || shuffle_hits || unusual_recent) && !cfg.allow.allows_addr(f.resp) {
                let platform_regular = st.platform > 0
                    && platforms[usize::from(st.platform) - 1].1.is_regular_port(
                        &cfg.baseline,
                        now,
                        port,
                        f.proto,
                    );
                let env = Env {
                    cfg,
                    answered,
                    platform_regular,
                    dst_external: !dst.is_multicast()
                        && dst != IpAddr::from([255, 255, 255, 255])
                        && !(ctx.home_net.is_empty() || ctx.home_net.contains(dst)),
                    k_v4: *k_v4,
                    k_v6: *k_v6,
                };
                if cfg.calculated_port && (port_hits || shuffle_hits) {
                    if let Some(mut a) = check_calculated(&env, st, f, dst, stats) {
                        if a.score >= cfg.min_score {
                            a.attribution = ctx.attribute(f);
                            out.push(a);
                            stats.calculated_port_alerts += 1;
                            alerted = true;
                        }
                    }
                }
                if cfg.unusual_response && unusual_recent {
                    if let Some(mut a) = check_unusual(&env, st, f, dst) {
                        a.attribution = ctx.attribute(f);
                        // A known browser reaching an odd answer is far less telling.
                        a.score -=
                            crate::enrichment::context::browser_discount(a.attribution.as_ref());
                        if a.score >= cfg.min_score {
                            out.push(a);
                            stats.unusual_alerts += 1;
                            alerted = true;
                        }
                    }
                }
            }
        }
        // Evidence never teaches the baseline what is normal. Standard ports are never
        // checked, so the baselines learn only the rest (cheaper, and sharper).
        if !alerted {
            st.baseline
                .observe(&cfg.baseline, now, f.resp, port, f.proto);
            st.dirty = true;
            if st.platform > 0 {
                platforms[usize::from(st.platform) - 1].1.observe(
                    &cfg.baseline,
                    now,
                    f.resp,
                    port,
                    f.proto,
                );
            }
        }
    }
}

fn rr_type(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "A"
    } else {
        "AAAA"
    }
}

fn base_alert(analytic: Analytic, f: &FlowRecord, r: &Remembered) -> Alert {
    let mut a = Alert::new(analytic, f.first_ts, f.orig, f.resp, f.resp_port);
    a.src_port = f.orig_port;
    a.proto = f.proto;
    a.dest_name = Some(r.query.to_string());
    a.flow_uids.push(f.uid);
    a.dns = Some(AlertDns {
        query: r.query.to_string(),
        answers: r.addrs.to_vec(),
        ttl: r.ttl,
        answered_at: r.ts,
        derivation: None,
    });
    a
}

fn recency(dt: f64, window: Dur) -> f64 {
    1.0 - (dt / window.as_secs_f64().max(1e-9)).min(1.0)
}

/// A key relating an answered address to the destination (their XOR): the same key on a
/// new answer means the host applies one fixed computation.
fn relation(a: IpAddr, dst: IpAddr) -> u128 {
    let k = |ip: IpAddr| match ip {
        IpAddr::V4(x) => u128::from(u32::from(x)),
        IpAddr::V6(x) => u128::from(x),
    };
    k(a) ^ k(dst)
}

fn check_calculated(
    env: &Env,
    st: &mut HostState,
    f: &FlowRecord,
    dst: IpAddr,
    stats: &mut DnsCalcStats,
) -> Option<Alert> {
    let cfg = env.cfg;
    let now = f.first_ts;
    let port = f.resp_port;
    let from = now.saturating_sub(cfg.window);
    let imm_from = now.saturating_sub(cfg.immediate_window);
    let mut dns_less: Option<bool> = None;
    let mut best: Option<Hit> = None;
    let mut matched = false;
    for e in st.lookup_port(port) {
        let seq = e.seq();
        let Some(r) = st.by_seq(seq) else { continue };
        if r.ts > now || r.ts < from {
            continue;
        }
        matched = true;
        let a = r.addrs.get(e.addr());
        let kind = if a == dst {
            HitKind::Port
        } else if !*dns_less.get_or_insert_with(|| env.dns_less(st, dst)) {
            // The host was told this address: relations to other answers are moot.
            continue;
        } else if let Some(t) = AddrTransform::between(a, dst).filter(|_| cfg.address_transforms) {
            HitKind::AddrPort(t)
        } else if r.ts >= imm_from {
            HitKind::PortOnly
        } else {
            continue;
        };
        let hit = Hit {
            seq,
            ts: r.ts,
            addr: a,
            kind,
        };
        if hit.better_than(best) {
            best = Some(hit);
        }
    }
    stats.derivation_matches += u64::from(matched);
    if best.is_none() && cfg.address_transforms {
        if let IpAddr::V4(d4) = dst {
            let o = d4.octets();
            for x in [
                o,
                o.map(|x| x.wrapping_sub(1)),
                o.map(|x| x.wrapping_add(1)),
            ] {
                for e in st.lookup_sig(octet_sig(x)) {
                    let seq = e.seq();
                    let Some(r) = st.by_seq(seq) else { continue };
                    if r.ts > now || r.ts < from {
                        continue;
                    }
                    let a = r.addrs.get(e.addr());
                    let Some(t) = AddrTransform::between(a, dst).filter(|t| !t.is_neighbour())
                    else {
                        continue;
                    };
                    if !*dns_less.get_or_insert_with(|| env.dns_less(st, dst)) {
                        return None;
                    }
                    // The port may derive from the computed address itself.
                    let kind = match DnsCalc::derive_port(&cfg.derivations, dst, port) {
                        Some(_) => HitKind::AddrPort(t),
                        None => HitKind::AddrOnly(t),
                    };
                    let hit = Hit {
                        seq,
                        ts: r.ts,
                        addr: a,
                        kind,
                    };
                    if hit.better_than(best) {
                        best = Some(hit);
                    }
                }
            }
        }
    }
    let hit = best?;
    let r = st.by_seq(hit.seq)?;
    let dt = now.since(r.ts).as_secs_f64();
    let rec = recency(dt, cfg.window);
    let (mut in_window, mut m_dst, mut imm_addrs) = (0usize, 0usize, 0usize);
    for x in st.recent(now, cfg.window) {
        in_window += 1;
        m_dst += usize::from(x.addrs.contains(dst));
        if x.ts >= imm_from {
            imm_addrs += x.addrs.len();
        }
    }
    let k = match hit.addr {
        IpAddr::V4(_) => env.k_v4,
        IpAddr::V6(_) => env.k_v6,
    } as f64;
    let mut reasons = Vec::with_capacity(4);
    // The port's source: the answered address, or (address transforms) the computed one.
    let (deriv, port_from) = match hit.kind {
        HitKind::AddrOnly(_) => (None, hit.addr),
        _ => match DnsCalc::derive_port(&cfg.derivations, hit.addr, port) {
            Some(d) => (Some(d), hit.addr),
            None => (DnsCalc::derive_port(&cfg.derivations, dst, port), dst),
        },
    };
    let dname = deriv.and_then(|d| cfg.derivations.get(d));
    let port_text = |d: &Derivation, from: IpAddr| {
        let o = Operands::from_ip(from);
        let wrapped = d.value(&o).is_some_and(|v| v != i64::from(port));
        format!(
            "port {port} = {}{}",
            d.instantiate(&o),
            if wrapped { " (mod 65536)" } else { "" }
        )
    };
    let mut score;
    let derivation;
    let rel = relation(hit.addr, dst);
    match hit.kind {
        HitKind::Port | HitKind::PortOnly => {
            let d = dname?;
            reasons.push(format!(
                "{} from {} {} for {} {:.1} s earlier",
                port_text(d, hit.addr),
                rr_type(hit.addr),
                hit.addr,
                r.query,
                dt
            ));
            derivation = d.name.to_string();
            if hit.kind == HitKind::Port {
                // Expected chance matches: k formulas over the answers naming this address.
                let lambda = k * m_dst as f64 / HIGH_PORTS;
                score = 0.55 + 0.25 * rec + 0.10 - (100.0 * lambda).min(0.3);
            } else {
                reasons.push(format!(
                    "destination {} came from no DNS answer (answer XOR 0x{rel:x})",
                    f.resp
                ));
                // Chance: k formulas over every address answered in the short window.
                // One such coincidence stays below the threshold; the same key or
                // formula again on a new answer (below) is what fires.
                let lambda = k * imm_addrs.max(1) as f64 / HIGH_PORTS;
                score = 0.30 + 0.15 * recency(dt, cfg.immediate_window) - (100.0 * lambda).min(0.3);
            }
        }
        HitKind::AddrPort(t) | HitKind::AddrOnly(t) => {
            reasons.push(format!(
                "address {} = {} of {} {} for {} {:.1} s earlier (never answered to this host)",
                f.resp,
                t.name(),
                rr_type(hit.addr),
                hit.addr,
                r.query,
                dt
            ));
            let shuffle = !t.is_neighbour();
            match dname {
                Some(d) => {
                    reasons.push(format!("{} of {port_from}", port_text(d, port_from)));
                    score = if shuffle { 0.55 } else { 0.45 } + 0.3 * rec;
                    derivation = format!("{}; {}", t.name(), d.name);
                }
                None => {
                    reasons.push(format!("port {port} is non-standard and new for this host"));
                    score = 0.35 + 0.2 * rec;
                    derivation = t.name();
                }
            }
            // Many addresses in memory give the transforms more chances to hit.
            score -= (0.002 * (in_window * KEEP_ADDRS.min(r.addrs.len())) as f64).min(0.1);
        }
    }
    if r.ttl <= 300 {
        score += 0.05;
    }
    score -= (0.01 * in_window as f64).min(0.1);
    if let (Some((d, n)), Some(cur)) = (st.repeat, deriv) {
        if d == cur && n > 0 {
            score += 0.15;
            reasons.push(format!(
                "same derivation matched {n} time(s) before for this host"
            ));
        }
    }
    let keyed = matches!(hit.kind, HitKind::PortOnly | HitKind::AddrPort(_));
    if keyed {
        if let Some((k0, n)) = st.relation {
            if k0 == rel && n > 0 && hit.kind == HitKind::PortOnly {
                score += 0.25;
                reasons.push(format!(
                    "same address key (XOR 0x{rel:x}) as {n} time(s) before for this host"
                ));
            }
        }
    }
    if st.baseline.knows_dest(&cfg.baseline, now, f.resp) {
        score -= 0.15;
        reasons.push("destination network is in this host's baseline".into());
    } else if st.baseline.flows > 0 {
        reasons.push(format!("port {port} and destination are new for this host"));
    }
    if env.platform_regular {
        score -= 0.1;
        reasons.push("port is common on this platform".into());
    }
    let mut a = base_alert(Analytic::DnsCalculatedPort, f, r);
    a.score = score.clamp(0.0, 1.0);
    a.reasons = reasons;
    if let Some(dns) = a.dns.as_mut() {
        dns.derivation = Some(derivation);
    }
    if let Some(d) = deriv {
        st.repeat = match st.repeat {
            Some((p, n)) if p == d => Some((d, n + 1)),
            _ => Some((d, 1)),
        };
    }
    if keyed {
        st.relation = match st.relation {
            Some((k0, n)) if k0 == rel => Some((rel, n + 1)),
            _ => Some((rel, 1)),
        };
    }
    Some(a)
}

fn check_unusual(env: &Env, st: &HostState, f: &FlowRecord, dst: IpAddr) -> Option<Alert> {
    let cfg = env.cfg;
    let now = f.first_ts;
    let imm_from = now.saturating_sub(cfg.immediate_window);
    let mut dns_less: Option<bool> = None;
    let mut fallback: Option<&Remembered> = None;
    let mut direct: Option<&Remembered> = None;
    for r in st.recent(now, cfg.window) {
        if r.unusual.evidence() < cfg.unusual.min_evidence {
            continue;
        }
        if r.addrs.contains(dst) {
            direct = Some(r);
            break;
        }
        if fallback.is_none()
            && r.unusual.has(Unusual::ALL_UNUSABLE)
            && r.ts >= imm_from
            && *dns_less.get_or_insert_with(|| env.dns_less(st, dst))
        {
            fallback = Some(r);
        }
    }
    let (r, is_direct) = match (direct, fallback) {
        (Some(r), _) => (r, true),
        (None, Some(r)) => (r, false),
        _ => return None,
    };
    let dt = now.since(r.ts).as_secs_f64();
    let e = r.unusual.evidence();
    let mut score;
    let mut reasons = vec![format!(
        "unusual answer for {} {:.1} s earlier: {}",
        r.query,
        dt,
        r.unusual.describe(r.ttl, r.rcode)
    )];
    if is_direct {
        score = 0.35 + 0.45 * e + 0.15 * recency(dt, cfg.window);
        reasons.push(format!(
            "port {} to answered {} {} is non-standard and outside this host's baseline",
            f.resp_port,
            rr_type(f.resp),
            f.resp
        ));
    } else {
        // The answer cannot be used as given; the host went straight to an address no
        // DNS answer gave, on a non-standard port: a fallback.
        score = 0.30 + 0.45 * e + 0.15 * recency(dt, cfg.immediate_window);
        reasons.push(format!(
            "then port {} to {}, which no DNS answer gave: non-standard and outside this host's baseline",
            f.resp_port, f.resp
        ));
    }
    if st.baseline.knows_dest(&cfg.baseline, now, f.resp) {
        score -= 0.15;
        reasons.push("destination network is in this host's baseline".into());
    }
    if env.platform_regular {
        score -= 0.1;
        reasons.push("port is common on this platform".into());
    }
    let mut a = base_alert(Analytic::UnusualDnsNonstandardPort, f, r);
    a.score = score.clamp(0.0, 1.0);
    a.reasons = reasons;
    Some(a)
}

impl Detector for DnsCalc {
    fn on_dns(&mut self, ctx: &Context, a: &DnsAnswer, _out: &mut Vec<Alert>) {
        if a.is_local() || a.addrs.is_empty() || !Self::internal(ctx, a.client) {
            return;
        }
        let cfg = &self.cfg;
        if cfg.allow.allows_name(&a.query) || a.cname_chain.iter().any(|n| cfg.allow.allows_name(n))
        {
            return;
        }
        self.stats.answers += 1;
        let unusual = if cfg.unusual_response {
            self.names.classify(a, &cfg.unusual)
        } else {
            Unusual::default()
        };
        for &ip in &a.addrs {
            self.answered.insert(canonical(ip));
        }
        let mut kept = [canonical(a.addrs[0]); KEEP_ADDRS];
        let n = a.addrs.len().min(KEEP_ADDRS);
        // Derived ports and shuffle signatures, computed once here so that a flow costs
        // lookups only. Standard and allowlisted ports are never checked: not indexed.
        let scratch = &mut self.scratch;
        scratch.clear();
        for (i, slot) in kept.iter_mut().enumerate().take(n) {
            let ip = canonical(a.addrs[i]);
            *slot = ip;
            if cfg.calculated_port {
                let o = Operands::from_ip(ip);
                for d in cfg.derivations.iter().filter(|d| d.family == o.family) {
                    if let Some(p) = d.port(&o) {
                        if !cfg.standard_ports.contains(p) && !cfg.allow.allows_port(p) {
                            scratch.push(entry(KEY_PORT, u32::from(p), 0, i));
                        }
                    }
                }
                if let (true, IpAddr::V4(v4)) = (cfg.address_transforms, ip) {
                    scratch.push(entry(KEY_SIG, octet_sig(v4.octets()), 0, i));
                }
            }
        }
        let r = Remembered {
            seq: 0,
            ts: a.ts,
            query: Arc::from(a.query.as_str()),
            addrs: Addrs::new(&kept[..n]),
            ttl: a.min_ttl,
            rcode: a.rcode,
            unusual,
        };
        let cap = self.hosts.answers_per_host();
        let st = Self::host(&mut self.hosts, &self.store, a.client, a.ts);
        if unusual.evidence() >= cfg.unusual.min_evidence {
            st.last_unusual = st.last_unusual.max(a.ts);
        }
        st.remember(r, &mut self.scratch, cap);
    }

    fn on_flow(&mut self, ctx: &Context, ev: &FlowEvent, out: &mut Vec<Alert>) {
        if let FlowEvent::Started(f) = ev {
            self.on_started(ctx, f, out);
        }
    }

    fn on_tick(&mut self, _ctx: &Context, now: Ts, _out: &mut Vec<Alert>) {
        match self.last_save {
            None => self.last_save = Some(now),
            Some(t) if now.since(t) >= self.cfg.save_interval => self.save(now),
            Some(_) => {}
        }
    }

    fn on_finish(&mut self, _ctx: &Context) {
        let now = self.last_save.unwrap_or(Ts::ZERO);
        let latest = self
            .hosts
            .map
            .values()
            .map(|s| s.last_active)
            .max()
            .unwrap_or(now);
        self.save(latest.max(now));
        // Saved for the last time: the store closes when its last handle goes.
        self.store = None;
        // Operators measuring chance matches on their own traffic ask for the counters.
        if std::env::var_os("PORTENT_DNSCALC_STATS").is_some() {
            let (hosts, bytes) = self.memory();
            let s = &self.stats;
            eprintln!(
                "dnscalc: answers {} checked_flows {} derivation_matches {} (rate {:.2e}) \
                 calculated_port_alerts {} unusual_alerts {} hosts {hosts} heap_bytes {bytes}",
                s.answers,
                s.checked_flows,
                s.derivation_matches,
                s.derivation_matches as f64 / (s.checked_flows.max(1)) as f64,
                s.calculated_port_alerts,
                s.unusual_alerts,
            );
        }
    }
}
