//! The detector behind `dns_calculated_port` and `unusual_dns_nonstandard_port`: one
//! answer memory and one baseline per host serve both analytics.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::analytics::{Alert, AlertDns, Analytic, Context, Detector};
use crate::baseline::{BaselineKey, HostBaseline, Store};
use crate::decode::dns::DnsAnswer;
use crate::decode::{PROTO_TCP, PROTO_UDP};
use crate::flow::{FlowEvent, FlowRecord};
use crate::time::Ts;

use super::config::DnsCalcConfig;
use super::derivation::{canonical, AddrTransform, Derivation, Family, Operands};
use super::memory::{HostState, Hosts, Remembered, KEEP_ADDRS};
use super::unusual::{NameHistory, Unusual};

/// Ports a derivation can land on outside the well-known range.
const HIGH_PORTS: f64 = 64_512.0;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsCalcStats {
    pub answers: u64,
    pub checked_flows: u64,
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
    /// The address derives from an answered one; the port is merely non-standard.
    AddrOnly(AddrTransform),
}

#[derive(Clone, Copy, Debug)]
struct Hit {
    /// Index into the host's answer ring.
    answer: usize,
    addr: IpAddr,
    deriv: Option<usize>,
    kind: HitKind,
}

impl Hit {
    fn rank(&self) -> u8 {
        match self.kind {
            HitKind::Port => 4,
            HitKind::AddrPort(t) if !t.is_neighbour() => 3,
            HitKind::AddrPort(_) => 2,
            HitKind::AddrOnly(t) if !t.is_neighbour() => 1,
            HitKind::AddrOnly(_) => 0,
        }
    }
}

pub struct DnsCalc {
    cfg: Arc<DnsCalcConfig>,
    hosts: Hosts,
    names: NameHistory,
    store: Option<Arc<Store>>,
    platforms: HashMap<String, HostBaseline>,
    last_save: Option<Ts>,
    k_v4: usize,
    k_v6: usize,
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
            store,
            platforms: HashMap::new(),
            last_save: None,
            cfg: Arc::new(cfg),
            stats: DnsCalcStats::default(),
        }
    }

    pub fn host_evictions(&self) -> u64 {
        self.hosts.evictions
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

    fn on_started(&mut self, ctx: &Context, f: &FlowRecord, out: &mut Vec<Alert>) {
        if !f.orig_is_internal
            || !Self::internal(ctx, f.orig)
            || (f.proto != PROTO_TCP && f.proto != PROTO_UDP)
        {
            return;
        }
        let now = f.first_ts;
        let cfg = self.cfg.clone();
        let platform = match ctx.attributor {
            Some(_) => ctx
                .attribute(f)
                .and_then(|a| a.platform().map(str::to_string)),
            None => None,
        };
        if let Some(p) = &platform {
            if !self.platforms.contains_key(p) {
                let b = self
                    .store
                    .as_ref()
                    .and_then(|s| s.load(&BaselineKey::Platform(p.clone())).ok().flatten())
                    .unwrap_or_default();
                self.platforms.insert(p.clone(), b);
            }
        }
        let platform_regular = platform
            .as_ref()
            .and_then(|p| self.platforms.get(p))
            .is_some_and(|b| b.is_regular_port(&cfg.baseline, now, f.resp_port, f.proto));
        let st = Self::host(&mut self.hosts, &self.store, f.orig, now);
        let port = f.resp_port;
        let exempt = cfg.standard_ports.contains(port)
            || cfg.allow.allows_port(port)
            || cfg.allow.allows_addr(f.resp)
            || st
                .baseline
                .is_regular_port(&cfg.baseline, now, port, f.proto);
        let mut alerted = false;
        if !exempt && !st.answers.is_empty() {
            self.stats.checked_flows += 1;
            if cfg.calculated_port {
                if let Some(mut a) =
                    check_calculated(&cfg, st, f, platform_regular, self.k_v4, self.k_v6)
                {
                    if a.score >= cfg.min_score {
                        a.attribution = ctx.attribute(f);
                        out.push(a);
                        self.stats.calculated_port_alerts += 1;
                        alerted = true;
                    }
                }
            }
            if cfg.unusual_response {
                if let Some(mut a) = check_unusual(&cfg, st, f, platform_regular) {
                    a.attribution = ctx.attribute(f);
                    a.score -= crate::enrichment::context::browser_discount(a.attribution.as_ref());
                    if a.score >= cfg.min_score {
                        out.push(a);
                        self.stats.unusual_alerts += 1;
                        alerted = true;
                    }
                }
            }
        }
        // Evidence never teaches the baseline what is normal.
        if !alerted {
            st.baseline
                .observe(&cfg.baseline, now, f.resp, port, f.proto);
            st.dirty = true;
            if let Some(b) = platform.and_then(|p| self.platforms.get_mut(&p)) {
                b.observe(&cfg.baseline, now, f.resp, port, f.proto);
            }
        }
    }
}

fn family_k(k_v4: usize, k_v6: usize, ip: IpAddr) -> usize {
    match canonical(ip) {
        IpAddr::V4(_) => k_v4,
        IpAddr::V6(_) => k_v6,
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
        answers: r.addrs().to_vec(),
        ttl: r.ttl,
        answered_at: r.ts,
        derivation: None,
    });
    a
}

fn check_calculated(
    cfg: &DnsCalcConfig,
    st: &mut HostState,
    f: &FlowRecord,
    platform_regular: bool,
    k_v4: usize,
    k_v6: usize,
) -> Option<Alert> {
    let now = f.first_ts;
    let dst = canonical(f.resp);
    let port = f.resp_port;
    let (mut answered, mut m_dst, mut in_window) = (false, 0usize, 0usize);
    let mut best: Option<Hit> = None;
    let mut dst_deriv: Option<Option<usize>> = None;
    let from = now.saturating_sub(cfg.window);
    for (i, r) in st.answers.iter().enumerate().rev() {
        if r.ts > now {
            continue;
        }
        if r.ts < from {
            break;
        }
        in_window += 1;
        for &a in r.addrs() {
            let ca = canonical(a);
            if ca == dst {
                answered = true;
                m_dst += 1;
                if best.is_none_or(|b| b.rank() < 4) {
                    if let Some(d) = DnsCalc::derive_port(&cfg.derivations, ca, port) {
                        best = Some(Hit {
                            answer: i,
                            addr: a,
                            deriv: Some(d),
                            kind: HitKind::Port,
                        });
                    }
                }
                continue;
            }
            if !cfg.address_transforms || best.is_some_and(|b| b.rank() >= 3) {
                continue;
            }
            let Some(t) = AddrTransform::between(ca, dst) else {
                continue;
            };
            let ceiling = if t.is_neighbour() { 2 } else { 3 };
            if best.is_some_and(|b| b.rank() >= ceiling) {
                continue;
            }
            let from_dst =
                *dst_deriv.get_or_insert_with(|| DnsCalc::derive_port(&cfg.derivations, dst, port));
            let d = from_dst.or_else(|| DnsCalc::derive_port(&cfg.derivations, ca, port));
            let kind = match d {
                Some(_) => HitKind::AddrPort(t),
                None => HitKind::AddrOnly(t),
            };
            let hit = Hit {
                answer: i,
                addr: a,
                deriv: d,
                kind,
            };
            if best.is_none_or(|b| b.rank() < hit.rank()) {
                best = Some(hit);
            }
        }
    }
    let hit = best?;
    // An answered address makes the address transforms moot: the host was told it.
    if answered && hit.kind != HitKind::Port {
        return None;
    }
    let r = &st.answers[hit.answer];
    let dt = now.since(r.ts).as_secs_f64();
    let recency = 1.0 - (dt / cfg.window.as_secs_f64().max(1e-9)).min(1.0);
    let k = family_k(k_v4, k_v6, hit.addr) as f64;
    let mut reasons = Vec::with_capacity(4);
    let dname = hit.deriv.and_then(|d| cfg.derivations.get(d));
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
    match hit.kind {
        HitKind::Port => {
            let d = dname?;
            reasons.push(format!(
                "{} from {} {} for {} {:.1} s earlier",
                port_text(d, hit.addr),
                rr_type(hit.addr),
                hit.addr,
                r.query,
                dt
            ));
            // Expected chance matches: k formulas over the answers naming this address.
            let lambda = k * m_dst as f64 / HIGH_PORTS;
            score = 0.55 + 0.25 * recency + 0.10 - (100.0 * lambda).min(0.3);
            derivation = d.name.to_string();
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
                    let from = if DnsCalc::derive_port(&cfg.derivations, dst, port) == hit.deriv {
                        dst
                    } else {
                        hit.addr
                    };
                    reasons.push(format!("{} of {from}", port_text(d, from)));
                    score = if shuffle { 0.55 } else { 0.45 } + 0.3 * recency;
                    derivation = format!("{}; {}", t.name(), d.name);
                }
                None => {
                    reasons.push(format!("port {port} is non-standard and new for this host"));
                    score = if shuffle { 0.35 } else { 0.2 } + 0.2 * recency;
                    derivation = t.name();
                }
            }
            // Many addresses in memory give the transforms more chances to hit.
            score -= (0.002 * (in_window * KEEP_ADDRS.min(r.n_addrs as usize)) as f64).min(0.1);
        }
    }
    if r.ttl <= 300 {
        score += 0.05;
    }
    score -= (0.01 * in_window as f64).min(0.1);
    if let (Some((d, n)), Some(cur)) = (st.repeat, hit.deriv) {
        if d == cur && n > 0 {
            score += 0.15;
            reasons.push(format!(
                "same derivation matched {n} time(s) before for this host"
            ));
        }
    }
    if st.baseline.knows_dest(&cfg.baseline, now, f.resp) {
        score -= 0.15;
        reasons.push("destination network is in this host's baseline".into());
    } else if st.baseline.flows > 0 {
        reasons.push(format!("port {port} and destination are new for this host"));
    }
    if platform_regular {
        score -= 0.1;
        reasons.push("port is common on this platform".into());
    }
    if let Some(d) = hit.deriv {
        st.repeat = match st.repeat {
            Some((p, n)) if p == d => Some((d, n + 1)),
            _ => Some((d, 1)),
        };
    }
    let mut a = base_alert(Analytic::DnsCalculatedPort, f, r);
    a.score = score.clamp(0.0, 1.0);
    a.reasons = reasons;
    if let Some(dns) = a.dns.as_mut() {
        dns.derivation = Some(derivation);
    }
    Some(a)
}

fn check_unusual(
    cfg: &DnsCalcConfig,
    st: &mut HostState,
    f: &FlowRecord,
    platform_regular: bool,
) -> Option<Alert> {
    let now = f.first_ts;
    let dst = canonical(f.resp);
    let r = st.recent(now, cfg.window).find(|r| {
        r.unusual.evidence() >= cfg.unusual.min_evidence
            && r.addrs().iter().any(|&a| canonical(a) == dst)
    })?;
    let dt = now.since(r.ts).as_secs_f64();
    let recency = 1.0 - (dt / cfg.window.as_secs_f64().max(1e-9)).min(1.0);
    let e = r.unusual.evidence();
    let mut score = 0.35 + 0.45 * e + 0.15 * recency;
    let mut reasons = vec![
        format!(
            "unusual answer for {} {:.1} s earlier: {}",
            r.query,
            dt,
            r.unusual.describe(r.ttl, r.rcode)
        ),
        format!(
            "port {} to answered {} {} is non-standard and outside this host's baseline",
            f.resp_port,
            rr_type(f.resp),
            f.resp
        ),
    ];
    if st.baseline.knows_dest(&cfg.baseline, now, f.resp) {
        score -= 0.15;
        reasons.push("destination network is in this host's baseline".into());
    }
    if platform_regular {
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
        let mut addrs = [a.addrs[0]; KEEP_ADDRS];
        let n = a.addrs.len().min(KEEP_ADDRS);
        addrs[..n].copy_from_slice(&a.addrs[..n]);
        let r = Remembered {
            ts: a.ts,
            query: Arc::from(a.query.as_str()),
            addrs,
            n_addrs: n as u8,
            ttl: a.min_ttl,
            rcode: a.rcode,
            unusual,
        };
        let cap = self.hosts.answers_per_host();
        Self::host(&mut self.hosts, &self.store, a.client, a.ts).remember(r, cap);
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
    }
}
