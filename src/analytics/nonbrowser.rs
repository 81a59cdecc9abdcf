//! `nonbrowser_outbound_deviation` (AN0730): a non-browser process, as the EDR feed
//! names it, makes repeated outbound connections to destinations or ports outside its
//! own baseline.
//!
//! Per (host, executable) a profile learns, online from the first flow, the
//! destinations (the DNS name the host resolved for the address, by registered domain;
//! else the /24 or /48) and ports the process uses. A process's first minutes build its
//! baseline: what it does before it is *established* (`establish_conns` connections over
//! `establish_s`) is its pattern, not a deviation. After that, a destination or port
//! first seen stays *new* for `novelty_s`; `min_conns` connections with something new,
//! to at least `min_new` new destinations or ports, within `window_s` fire. Extra weight
//! for new names and new non-standard ports. The one exception to the establishment
//! rule is a burst of new non-standard ports (`burst_ports` within `burst_window_s`),
//! which stands on its own even for a process with no history.
//!
//! History only lowers: a process with a long, stable pattern is where a deviation
//! means most, and the profile persists with the baselines (`--state`), so a restart
//! does not reopen the learning minutes.
//!
//! ```toml
//! [analytics.nonbrowser]
//! enabled = true
//! browsers = [...]           # replaces the built-in list; extra_browsers adds to it
//! allow = [...]              # known-good software; extra_allow adds to it
//! window_s = 1800
//! min_conns = 3
//! min_new = 2
//! min_weight = 2.0
//! establish_conns = 5
//! establish_s = 600
//! novelty_s = 3600
//! burst_ports = 4
//! burst_window_s = 300
//! cooldown_s = 3600
//! min_score = 0.5
//! max_profiles = 20000       # per worker; least recently active forgotten
//! save_interval_s = 300
//! ```

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::analytics::dnscalc::config::STANDARD_PORTS;
use crate::analytics::{Alert, Analytic, Context, Detector};
use crate::baseline::Store;
use crate::config::{Config, ConfigError, Section};
use crate::decode::dns::DnsAnswer;
use crate::decode::{PROTO_TCP, PROTO_UDP};
use crate::enrichment::context::{
    self, base_name, origin_reasons, origin_weight, LearnedUsers, NameList, UserBaseline,
    DEFAULT_BROWSERS, UNEXPECTED_USER_WEIGHT,
};
use crate::enrichment::Attribution;
use crate::flow::{FlowEvent, FlowRecord};
use crate::time::{Dur, Ts};

/// Software that legitimately reaches many places: update agents, MDM, security tools,
/// VPN and sync clients, system network daemons.
pub const DEFAULT_ALLOW: &[&str] = &[
    // macOS
    "softwareupdated",
    "Software Update",
    "com.apple.MobileSoftwareUpdate.UpdateBrainService",
    "nsurlsessiond",
    "trustd",
    "apsd",
    "cloudd",
    "timed",
    "mDNSResponder",
    "mdmclient",
    "jamf",
    "JamfDaemon",
    "Kandji Agent",
    "Microsoft AutoUpdate",
    "GoogleSoftwareUpdateAgent",
    "ksfetch",
    "falcond",
    "com.crowdstrike.falcon.Agent",
    "SentinelAgent",
    "osqueryd",
    "XProtect",
    "Dropbox",
    "OneDrive",
    "Google Drive",
    "Box",
    "WireGuardNetworkExtension",
    "Tailscale",
    "tailscaled",
    "GlobalProtect",
    "PanGPS",
    "Cisco Secure Client",
    "vpnagentd",
    "openvpn",
    "charon",
    // Linux
    "apt",
    "http",
    "https",
    "unattended-upgrade",
    "packagekitd",
    "snapd",
    "dnf",
    "yum",
    "fwupd",
    "chronyd",
    "ntpd",
    "systemd-timesyncd",
    "systemd-resolved",
    "falcon-sensor",
];

#[derive(Clone, Debug)]
pub struct NonbrowserConfig {
    pub enabled: bool,
    pub browsers: NameList,
    pub allow: NameList,
    pub window: Dur,
    pub min_conns: usize,
    pub min_new: usize,
    pub min_weight: f64,
    pub establish_conns: u64,
    pub establish: Dur,
    pub novelty: Dur,
    pub burst_ports: usize,
    pub burst_window: Dur,
    pub cooldown: Dur,
    pub min_score: f64,
    pub max_profiles: usize,
    pub save_interval: Dur,
    pub expected_users: HashMap<String, Vec<String>>,
}

impl Default for NonbrowserConfig {
    fn default() -> Self {
        NonbrowserConfig {
            enabled: true,
            browsers: NameList::new(DEFAULT_BROWSERS),
            allow: NameList::new(DEFAULT_ALLOW),
            window: Dur::from_secs(1800),
            min_conns: 3,
            min_new: 2,
            min_weight: 2.0,
            establish_conns: 5,
            establish: Dur::from_secs(600),
            novelty: Dur::from_secs(3600),
            burst_ports: 4,
            burst_window: Dur::from_secs(300),
            cooldown: Dur::from_secs(3600),
            min_score: 0.5,
            max_profiles: 20_000,
            save_interval: Dur::from_secs(300),
            expected_users: HashMap::new(),
        }
    }
}

const S: Section = Section("analytics.nonbrowser");

impl NonbrowserConfig {
    /// Reads `[analytics.nonbrowser]` (and `[edr.expected_users]`); defaults when absent.
    pub fn from_config(cfg: &Config) -> Result<NonbrowserConfig, ConfigError> {
        let mut c = NonbrowserConfig {
            expected_users: context::expected_users_from(&cfg.edr)?,
            ..NonbrowserConfig::default()
        };
        let Some(v) = cfg.analytics.get("nonbrowser") else {
            return Ok(c);
        };
        let t = v.as_table().ok_or_else(|| S.bad("", "must be a table"))?;
        let (mut browsers, mut allow): (Vec<String>, Vec<String>) = (
            DEFAULT_BROWSERS.iter().map(|s| s.to_string()).collect(),
            DEFAULT_ALLOW.iter().map(|s| s.to_string()).collect(),
        );
        let secs =
            |v: &toml::Value, k: &str| S.num(v, k, 1.0, 30.0 * 86_400.0).map(Dur::from_secs_f64);
        for (k, v) in t {
            let k = k.as_str();
            match k {
                "enabled" => c.enabled = S.bool(v, k)?,
                "browsers" => browsers = S.strs(v, k)?,
                "extra_browsers" => browsers.extend(S.strs(v, k)?),
                "allow" => allow = S.strs(v, k)?,
                "extra_allow" => allow.extend(S.strs(v, k)?),
                "window_s" => c.window = secs(v, k)?,
                "min_conns" => c.min_conns = S.num(v, k, 1.0, 1000.0)? as usize,
                "min_new" => c.min_new = S.num(v, k, 1.0, 1000.0)? as usize,
                "min_weight" => c.min_weight = S.num(v, k, 0.0, 1000.0)?,
                "establish_conns" => c.establish_conns = S.num(v, k, 0.0, 1e6)? as u64,
                "establish_s" => {
                    c.establish = Dur::from_secs_f64(S.num(v, k, 0.0, 30.0 * 86_400.0)?)
                }
                "novelty_s" => c.novelty = secs(v, k)?,
                "burst_ports" => c.burst_ports = S.num(v, k, 2.0, 1000.0)? as usize,
                "burst_window_s" => c.burst_window = secs(v, k)?,
                "cooldown_s" => {
                    c.cooldown = Dur::from_secs_f64(S.num(v, k, 0.0, 30.0 * 86_400.0)?)
                }
                "min_score" => c.min_score = S.num(v, k, 0.0, 1.0)?,
                "max_profiles" => c.max_profiles = S.num(v, k, 16.0, 1e7)? as usize,
                "save_interval_s" => c.save_interval = secs(v, k)?,
                _ => return Err(S.bad(k, "unknown key")),
            }
        }
        c.browsers = NameList::new(browsers);
        c.allow = NameList::new(allow);
        Ok(c)
    }
}

/// First and last use of a destination or port, and how often.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Seen {
    first: i64,
    last: i64,
    n: u32,
}

const DESTS_PER_PROFILE: usize = 128;
const PORTS_PER_PROFILE: usize = 64;
/// DNS answers remembered per worker (client, address) -> name.
const MAX_NAMES: usize = 200_000;
/// How long an answer names its addresses for the join.
const NAME_TTL: Dur = Dur(3600 * 1_000_000_000);

/// What one process normally does.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Profile {
    first: i64,
    last: i64,
    conns: u64,
    established: Option<i64>,
    dests: HashMap<String, Seen>,
    ports: HashMap<u16, Seen>,
    #[serde(skip)]
    evidence: VecDeque<Novel>,
    #[serde(skip)]
    last_alert: Option<i64>,
    #[serde(skip)]
    dirty: bool,
}

#[derive(Clone, Debug)]
struct Novel {
    ts: Ts,
    dst: IpAddr,
    sport: u16,
    port: u16,
    proto: u8,
    uid: u64,
    dest: String,
    name: Option<String>,
    new_dest: bool,
    new_port: bool,
    nonstandard: bool,
    weight: f64,
    attribution: Attribution,
}

fn touch<K: std::hash::Hash + Eq + Clone>(m: &mut HashMap<K, Seen>, k: &K, now: i64, cap: usize) {
    if let Some(s) = m.get_mut(k) {
        s.last = now;
        s.n = s.n.saturating_add(1);
        return;
    }
    if m.len() >= cap {
        // Forget the least used, least recent entry.
        if let Some(old) = m
            .iter()
            .min_by_key(|(_, s)| (s.n.min(8), s.last))
            .map(|(k, _)| k.clone())
        {
            m.remove(&old);
        }
    }
    m.insert(
        k.clone(),
        Seen {
            first: now,
            last: now,
            n: 1,
        },
    );
}

/// The registered domain, approximately: the last two labels (three under a two-letter
/// second level such as co.uk). CDN subdomains of one service are one destination.
fn domain_of(name: &str) -> &str {
    let labels: Vec<&str> = name.rsplitn(4, '.').collect();
    let n = if labels.len() >= 3 && labels[1].len() <= 3 && labels[0].len() == 2 {
        3
    } else {
        2
    };
    if labels.len() <= n {
        return name;
    }
    let keep: usize = labels[..n].iter().map(|l| l.len()).sum::<usize>() + n - 1;
    &name[name.len() - keep..]
}

fn prefix_of(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v) => {
            let o = v.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NonbrowserStats {
    pub flows: u64,
    pub attributed: u64,
    pub browsers: u64,
    pub allowed: u64,
    pub alerts: u64,
    pub store_errors: u64,
}

pub struct Nonbrowser {
    cfg: Arc<NonbrowserConfig>,
    standard: crate::analytics::dnscalc::config::PortSet,
    profiles: HashMap<(String, String), Profile>,
    names: HashMap<(IpAddr, IpAddr), (Arc<str>, Ts)>,
    users: UserBaseline,
    store: Option<Arc<Store>>,
    last_save: Option<Ts>,
    latest: Ts,
    pub stats: NonbrowserStats,
}

impl Nonbrowser {
    pub fn new(cfg: NonbrowserConfig, store: Option<Arc<Store>>) -> Nonbrowser {
        Nonbrowser {
            standard: crate::analytics::dnscalc::config::PortSet::new(
                STANDARD_PORTS.iter().copied(),
            ),
            profiles: HashMap::new(),
            names: HashMap::new(),
            users: UserBaseline::new(cfg.expected_users.clone(), cfg.max_profiles),
            store,
            last_save: None,
            latest: Ts::ZERO,
            cfg: Arc::new(cfg),
            stats: NonbrowserStats::default(),
        }
    }

    fn store_key(k: &(String, String)) -> String {
        format!("nonbrowser/{}/{}", k.0, k.1)
    }

    /// Where the users an executable runs as on a host are kept (`--state`).
    fn users_key(host: &str, exe: &str) -> String {
        format!("nonbrowser-users/{}", UserBaseline::store_key(host, exe))
    }

    fn profile(&mut self, key: &(String, String), now: Ts) -> &mut Profile {
        if !self.profiles.contains_key(key) {
            if self.profiles.len() >= self.cfg.max_profiles {
                self.evict();
            }
            let p = self
                .store
                .as_ref()
                .and_then(|s| {
                    s.load_profile::<Profile>(&Self::store_key(key))
                        .ok()
                        .flatten()
                })
                .unwrap_or(Profile {
                    first: now.0,
                    last: now.0,
                    ..Profile::default()
                });
            self.profiles.insert(key.clone(), p);
        }
        self.profiles.get_mut(key).expect("inserted above")
    }

    /// Drops the tenth of profiles idle longest (persisting them first).
    fn evict(&mut self) {
        let mut idle: Vec<(i64, (String, String))> = self
            .profiles
            .iter()
            .map(|(k, p)| (p.last, k.clone()))
            .collect();
        idle.sort();
        let n = (idle.len() / 10).max(1);
        let gone: Vec<((String, String), Profile)> = idle[..n]
            .iter()
            .filter_map(|(_, k)| self.profiles.remove_entry(k))
            .collect();
        self.persist(gone.iter().filter(|(_, p)| p.dirty));
    }

    fn persist<'a>(&mut self, items: impl Iterator<Item = &'a ((String, String), Profile)>) {
        let Some(store) = &self.store else { return };
        let keyed: Vec<(String, &Profile)> = items.map(|(k, p)| (Self::store_key(k), p)).collect();
        if keyed.is_empty() {
            return;
        }
        if let Err(e) = store.save_profiles(keyed.iter().map(|(k, p)| (k.as_str(), *p))) {
            self.stats.store_errors += 1;
            if self.stats.store_errors == 1 {
                eprintln!("portent: warning: nonbrowser profiles not saved: {e}");
            }
        }
    }

    fn save(&mut self, now: Ts) {
        self.last_save = Some(now);
        let Some(store) = self.store.clone() else {
            return;
        };
        let users = self.users.take_dirty();
        if !users.is_empty() {
            let keyed: Vec<(String, &LearnedUsers)> = users
                .iter()
                .map(|(k, m)| (format!("nonbrowser-users/{k}"), m))
                .collect();
            if let Err(e) = store.save_profiles(keyed.iter().map(|(k, m)| (k.as_str(), *m))) {
                self.stats.store_errors += 1;
                if self.stats.store_errors == 1 {
                    eprintln!("portent: warning: learned users not saved: {e}");
                }
            }
        }
        let dirty: Vec<((String, String), Profile)> = self
            .profiles
            .iter_mut()
            .filter(|(_, p)| p.dirty)
            .map(|(k, p)| {
                p.dirty = false;
                (k.clone(), p.clone())
            })
            .collect();
        self.persist(dirty.iter());
    }

    fn name_of(&self, client: IpAddr, addr: IpAddr, now: Ts) -> Option<Arc<str>> {
        let (n, t) = self.names.get(&(client, addr.to_canonical()))?;
        (now.since(*t) <= NAME_TTL).then(|| n.clone())
    }

    fn on_started(&mut self, ctx: &Context, f: &FlowRecord, out: &mut Vec<Alert>) {
        if !f.orig_is_internal
            || (f.proto != PROTO_TCP && f.proto != PROTO_UDP)
            || ctx.attributor.is_none()
            || (!ctx.home_net.is_empty() && ctx.home_net.contains(f.resp))
            || f.resp.is_multicast()
            || !(ctx.home_net.is_empty() || ctx.home_net.contains(f.orig))
        {
            return;
        }
        self.stats.flows += 1;
        let Some(attr) = ctx.attribute(f) else {
            return;
        };
        let Some(exe) = context::process_key(&attr).map(str::to_owned) else {
            return;
        };
        self.stats.attributed += 1;
        if self.cfg.browsers.matches(&attr) {
            self.stats.browsers += 1;
            return;
        }
        if self.cfg.allow.matches(&attr) {
            self.stats.allowed += 1;
            return;
        }
        let now = f.first_ts;
        self.latest = self.latest.max(now);
        let host = attr
            .host
            .as_ref()
            .and_then(|h| h.name.clone())
            .unwrap_or_else(|| f.orig.to_string());
        let user = attr.user.as_ref().and_then(|u| u.name.clone());
        if user.is_some() && !self.users.knows(&host, &exe) {
            let stored = self.store.as_ref().and_then(|s| {
                s.load_profile::<LearnedUsers>(&Self::users_key(&host, &exe))
                    .ok()
                    .flatten()
            });
            self.users.restore(&host, &exe, stored);
        }
        let unexpected_user = user
            .as_deref()
            .and_then(|u| self.users.is_unexpected_user(&host, &exe, u, now));
        if let Some(u) = &user {
            self.users.observe(&host, &exe, u, now);
        }
        let name = self.name_of(f.orig, f.resp, now);
        let dest = match &name {
            Some(n) => domain_of(n).to_owned(),
            None => prefix_of(f.resp),
        };
        let prefix = prefix_of(f.resp);
        let port = f.resp_port;
        let nonstandard = !self.standard.contains(port);
        let cfg = self.cfg.clone();
        let key = (host, exe);
        let p = self.profile(&key, now);

        // Is this connection new for an established process?
        let est = p.established.filter(|e| *e <= now.0);
        let fresh = |s: Option<&Seen>| match (est, s) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(e), Some(s)) => s.first > e && now.0 - s.first < cfg.novelty.0,
        };
        let new_dest = fresh(p.dests.get(&dest));
        // A new name served from a network the process already uses is half new.
        let known_net = name.is_some() && p.dests.get(&prefix).is_some_and(|s| !fresh(Some(s)));
        let new_port = fresh(p.ports.get(&port));
        let mut weight = 0.0;
        if new_dest {
            weight += if name.is_some() { 0.7 } else { 0.5 };
            if known_net {
                weight -= 0.3;
            }
        }
        // A process that already uses several non-standard ports (passive FTP, P2P,
        // RTP) picks ephemeral ones: a new port to a known destination says nothing.
        let ephemeral = !new_dest
            && p.ports
                .iter()
                .filter(|(k, s)| !STANDARD_PORTS.contains(k) && est.is_some_and(|e| s.first <= e))
                .count()
                >= 2;
        if new_port && !ephemeral {
            weight += if nonstandard { 0.6 } else { 0.1 };
        } else if !new_port && new_dest && nonstandard {
            weight += 0.1;
        }
        let first_port_use = !p.ports.contains_key(&port);

        // Learn (the process's own use, new or not, is its future baseline).
        touch(&mut p.dests, &dest, now.0, DESTS_PER_PROFILE);
        if name.is_some() {
            touch(&mut p.dests, &prefix, now.0, DESTS_PER_PROFILE);
        }
        touch(&mut p.ports, &port, now.0, PORTS_PER_PROFILE);
        p.conns += 1;
        p.last = now.0;
        p.dirty = true;
        if p.established.is_none()
            && p.conns >= cfg.establish_conns
            && now.0 - p.first >= cfg.establish.0
        {
            p.established = Some(now.0);
        }

        let cutoff = now.0 - cfg.window.0.max(cfg.burst_window.0);
        while p.evidence.front().is_some_and(|n| n.ts.0 < cutoff) {
            p.evidence.pop_front();
        }
        // A burst of ports never used before, non-standard: counts with or without history.
        let burst_port = nonstandard && first_port_use;
        if weight > 0.0 || burst_port {
            p.evidence.push_back(Novel {
                ts: now,
                dst: f.resp,
                sport: f.orig_port,
                port,
                proto: f.proto,
                uid: f.uid,
                dest: dest.clone(),
                name: name.as_deref().map(str::to_owned),
                new_dest,
                new_port: new_port || burst_port,
                nonstandard,
                weight,
                attribution: attr.clone(),
            });
            if p.evidence.len() > 256 {
                p.evidence.pop_front();
            }
        }
        if weight <= 0.0 && !burst_port {
            return;
        }
        if p.last_alert.is_some_and(|t| now.0 - t < cfg.cooldown.0) {
            return;
        }
        let in_window: Vec<&Novel> = p
            .evidence
            .iter()
            .filter(|n| n.weight > 0.0 && n.ts.0 >= now.0 - cfg.window.0)
            .collect();
        let mut new_things: Vec<String> = Vec::new();
        for n in &in_window {
            if n.new_dest && !new_things.contains(&n.dest) {
                new_things.push(n.dest.clone());
            }
            let pk = format!("port {}", n.port);
            if n.new_port && !new_things.contains(&pk) {
                new_things.push(pk);
            }
        }
        let wsum: f64 = in_window.iter().map(|n| n.weight).sum();
        let deviation = in_window.len() >= cfg.min_conns
            && new_things.len() >= cfg.min_new
            && wsum >= cfg.min_weight;
        let burst: Vec<&Novel> = p
            .evidence
            .iter()
            .filter(|n| n.ts.0 >= now.0 - cfg.burst_window.0 && n.nonstandard && n.new_port)
            .collect();
        let mut burst_ports: Vec<u16> = burst.iter().map(|n| n.port).collect();
        burst_ports.sort_unstable();
        burst_ports.dedup();
        let is_burst = burst_ports.len() >= cfg.burst_ports;
        if !deviation && !is_burst {
            return;
        }
        let evidence: Vec<Novel> = if deviation {
            in_window.into_iter().cloned().collect()
        } else {
            burst.into_iter().cloned().collect()
        };
        let Some(last) = evidence.last().cloned() else {
            return;
        };
        let mut a = Alert::new(
            Analytic::NonbrowserOutboundDeviation,
            now,
            f.orig,
            last.dst,
            last.port,
        );
        a.src_port = last.sport;
        a.proto = last.proto;
        for n in &evidence {
            if !a.dest_ips.contains(&n.dst) {
                a.dest_ips.push(n.dst);
            }
            if !a.dest_ports.contains(&n.port) {
                a.dest_ports.push(n.port);
            }
            if !a.flow_uids.contains(&n.uid) {
                a.flow_uids.push(n.uid);
            }
        }
        if a.dest_ips.len() < 2 {
            a.dest_ips.clear();
        }
        if a.dest_ports.len() < 2 {
            a.dest_ports.clear();
        }
        a.dest_name = last.name.clone();
        let pname = context::process_name(&attr)
            .unwrap_or(base_name(&key.1))
            .to_owned();
        let new_dests: Vec<&Novel> = {
            let mut seen: Vec<&str> = Vec::new();
            evidence
                .iter()
                .filter(|n| {
                    let fresh = (n.new_dest || n.new_port) && !seen.contains(&n.dest.as_str());
                    if fresh {
                        seen.push(&n.dest);
                    }
                    fresh
                })
                .collect()
        };
        let n_named = new_dests
            .iter()
            .filter(|n| n.new_dest && n.name.is_some())
            .count();
        let any_nonstd = evidence.iter().any(|n| n.new_port && n.nonstandard);
        let mut score = if deviation { 0.5 } else { 0.45 };
        let n_new = if deviation {
            new_things.len()
        } else {
            burst_ports.len()
        };
        score += 0.06 * (n_new.min(6) as f64 - 1.0);
        if any_nonstd {
            score += 0.1;
        }
        if n_named > 0 {
            score += 0.04;
        }
        let span_min = (now.0 - evidence[0].ts.0) as f64 / 60e9;
        let mut reasons = vec![if deviation {
            format!(
                "non-browser process {pname} ({}) made {} connections to {} destination(s)/port(s) new for it within {:.0} min",
                key.1,
                evidence.len(),
                new_things.len(),
                span_min.max(1.0)
            )
        } else {
            format!(
                "non-browser process {pname} ({}) used {} new non-standard ports within {:.0} min",
                key.1,
                burst_ports.len(),
                span_min.max(1.0)
            )
        }];
        let shown: Vec<String> = new_dests
            .iter()
            .take(6)
            .map(|n| {
                let what = n.name.clone().unwrap_or_else(|| n.dst.to_string());
                format!(
                    "{what}:{}{}",
                    n.port,
                    if n.new_port && n.nonstandard {
                        " (new non-standard port)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        reasons.push(format!("new: {}", shown.join(", ")));
        // What the process normally does, for the analyst.
        let mut usual: Vec<(&String, &Seen)> = p
            .dests
            .iter()
            .filter(|(k, s)| !k.contains('/') && est.is_some_and(|e| s.first <= e))
            .collect();
        usual.sort_by_key(|u| std::cmp::Reverse(u.1.n));
        let mut ports: Vec<u16> = p
            .ports
            .iter()
            .filter(|(_, s)| est.is_some_and(|e| s.first <= e))
            .map(|(k, _)| *k)
            .collect();
        ports.sort_unstable();
        if est.is_some() {
            reasons.push(format!(
                "its baseline since {}: {} connection(s){}{}",
                Ts(p.first).rfc3339(),
                p.conns.saturating_sub(evidence.len() as u64),
                if usual.is_empty() {
                    String::new()
                } else {
                    format!(
                        " to {}",
                        usual
                            .iter()
                            .take(4)
                            .map(|(k, _)| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                if ports.is_empty() {
                    String::new()
                } else {
                    format!(
                        " on port(s) {}",
                        ports
                            .iter()
                            .take(6)
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ));
        }
        score += origin_weight(&attr);
        reasons.extend(origin_reasons(&attr));
        if let Some(why) = unexpected_user {
            score += UNEXPECTED_USER_WEIGHT;
            reasons.push(format!("unexpected user: {why}"));
        }
        if attr
            .process
            .as_ref()
            .and_then(|x| x.code_signature.as_ref())
            .and_then(|c| c.signed)
            == Some(true)
        {
            score -= 0.05;
        }
        a.score = score.clamp(0.0, 0.99);
        if a.score < cfg.min_score {
            return;
        }
        a.reasons = reasons;
        a.attribution = Some(last.attribution);
        p.last_alert = Some(now.0);
        p.evidence.clear();
        self.stats.alerts += 1;
        out.push(a);
    }
}

impl Detector for Nonbrowser {
    fn on_dns(&mut self, ctx: &Context, a: &DnsAnswer, _out: &mut Vec<Alert>) {
        if a.is_local() || a.addrs.is_empty() || ctx.attributor.is_none() {
            return;
        }
        if !(ctx.home_net.is_empty() || ctx.home_net.contains(a.client)) {
            return;
        }
        if self.names.len() >= MAX_NAMES {
            let horizon = a.ts.saturating_sub(NAME_TTL);
            self.names.retain(|_, v| v.1 >= horizon);
            if self.names.len() >= MAX_NAMES {
                self.names.clear();
            }
        }
        let name: Arc<str> = Arc::from(a.query.as_str());
        for addr in &a.addrs {
            self.names
                .insert((a.client, addr.to_canonical()), (name.clone(), a.ts));
        }
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
        let t = self.latest;
        self.save(t);
        // Saved for the last time: the store closes when its last handle goes.
        self.store = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrichment::{Attributor, HostInfo, ProcessInfo};

    /// Attributes every flow from 10.1.0.3 to one process, by destination port 9999
    /// to a second one.
    struct Fixed;
    impl Attributor for Fixed {
        fn attribute(
            &self,
            _p: u8,
            _s: IpAddr,
            _sp: u16,
            _d: IpAddr,
            _dp: u16,
            _t: Ts,
            _m: Option<[u8; 6]>,
        ) -> Option<Attribution> {
            Some(Attribution {
                host: Some(HostInfo {
                    name: Some("mac-01".into()),
                    os: None,
                }),
                process: Some(ProcessInfo {
                    name: Some("Spotify".into()),
                    executable: Some("/Applications/Spotify.app/Contents/MacOS/Spotify".into()),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
    }

    fn ctx() -> Context {
        Context {
            home_net: crate::config::NetSet::parse(&["10.0.0.0/8"]).unwrap(),
            attributor: Some(Arc::new(Fixed)),
        }
    }

    fn flow(t: i64, dst: &str, port: u16) -> FlowEvent {
        FlowEvent::Started(FlowRecord {
            uid: t as u64,
            proto: PROTO_TCP,
            orig: "10.1.0.3".parse().unwrap(),
            orig_port: 40000 + (t % 20000) as u16,
            resp: dst.parse().unwrap(),
            resp_port: port,
            orig_is_internal: true,
            first_ts: Ts::from_secs(t),
            last_ts: Ts::from_secs(t),
            orig_pkts: 1,
            resp_pkts: 0,
            orig_bytes: 0,
            resp_bytes: 0,
            orig_ip_bytes: 60,
            resp_ip_bytes: 0,
            conn_state: Default::default(),
            history: Default::default(),
            orig_first_sizes: [0; 4],
            resp_first_sizes: [0; 4],
            orig_mac: None,
            vlan: 0,
            handle: crate::flow::FlowHandle::NONE,
        })
    }

    fn run(d: &mut Nonbrowser, evs: &[(i64, &str, u16)]) -> Vec<Alert> {
        let c = ctx();
        let mut out = Vec::new();
        for (t, dst, port) in evs {
            d.on_flow(&c, &flow(*t, dst, *port), &mut out);
        }
        out
    }

    /// Every flow comes from one executable running as `user`.
    struct AsUser(&'static str);
    impl Attributor for AsUser {
        fn attribute(
            &self,
            p: u8,
            s: IpAddr,
            sp: u16,
            d: IpAddr,
            dp: u16,
            t: Ts,
            m: Option<[u8; 6]>,
        ) -> Option<Attribution> {
            let mut a = Fixed.attribute(p, s, sp, d, dp, t, m)?;
            a.user = Some(crate::enrichment::UserInfo {
                name: Some(self.0.into()),
            });
            Some(a)
        }
    }

    #[test]
    fn learned_users_persist_across_runs() {
        let dir = tempfile::tempdir().unwrap();
        let exe = "/Applications/Spotify.app/Contents/MacOS/Spotify";
        let run_as = |d: &mut Nonbrowser, user: &'static str, from: i64, n: i64| {
            let c = Context {
                attributor: Some(Arc::new(AsUser(user))),
                ..ctx()
            };
            let mut out = Vec::new();
            for i in 0..n {
                d.on_flow(&c, &flow(from + i * 200, "35.186.224.1", 443), &mut out);
            }
        };
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut first = Nonbrowser::new(NonbrowserConfig::default(), Some(store.clone()));
        // A habit: ten uses as ann over half an hour.
        run_as(&mut first, "ann", 0, 10);
        assert!(first
            .users
            .is_unexpected_user("mac-01", exe, "mallory", Ts::from_secs(2000))
            .is_some());
        first.on_finish(&ctx());
        drop(first);

        // A new sensor run: one more use as ann, then mallory is already unusual.
        let mut second = Nonbrowser::new(NonbrowserConfig::default(), Some(store));
        run_as(&mut second, "ann", 5000, 1);
        let why = second
            .users
            .is_unexpected_user("mac-01", exe, "mallory", Ts::from_secs(5000));
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("normally as ann")),
            "{why:?}"
        );

        // Without the store the second run knows nothing yet.
        let mut fresh = Nonbrowser::new(NonbrowserConfig::default(), None);
        run_as(&mut fresh, "ann", 5000, 1);
        assert!(fresh
            .users
            .is_unexpected_user("mac-01", exe, "mallory", Ts::from_secs(5000))
            .is_none());
    }

    #[test]
    fn domains() {
        assert_eq!(domain_of("spclient.wg.spotify.com"), "spotify.com");
        assert_eq!(domain_of("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(domain_of("localhost"), "localhost");
    }

    #[test]
    fn new_process_builds_baseline_then_deviation_fires() {
        let mut d = Nonbrowser::new(NonbrowserConfig::default(), None);
        let mut evs: Vec<(i64, &str, u16)> = Vec::new();
        // Its first minutes: three places on 443, nothing fires.
        for i in 0..20 {
            let dst = ["35.186.224.1", "35.186.224.2", "104.199.1.1"][i % 3];
            evs.push((i as i64 * 100, dst, 443));
        }
        assert!(run(&mut d, &evs).is_empty());
        // Later: new addresses on new non-standard ports.
        let out = run(
            &mut d,
            &[
                (3000, "52.1.2.3", 18239),
                (3100, "76.5.4.3", 40111),
                (3200, "52.1.2.3", 18239),
            ],
        );
        assert_eq!(out.len(), 1, "{out:?}");
        let a = &out[0];
        assert_eq!(a.dst_port, 18239);
        assert_eq!(a.dest_ports, vec![18239, 40111]);
        assert!(a.reasons[0].contains("Spotify"), "{:?}", a.reasons);
        assert!(a.attribution.is_some());
    }

    #[test]
    fn brand_new_process_does_not_fire_on_its_first_connections() {
        let mut d = Nonbrowser::new(NonbrowserConfig::default(), None);
        let out = run(
            &mut d,
            &[
                (0, "52.1.2.3", 443),
                (5, "76.5.4.3", 443),
                (9, "8.8.4.4", 8443),
                (20, "1.2.3.4", 5222),
            ],
        );
        assert!(out.is_empty());
        // A burst of new non-standard ports stands on its own.
        let out = run(
            &mut d,
            &[
                (30, "52.1.2.3", 18239),
                (35, "52.1.2.4", 23001),
                (40, "52.1.2.5", 31337),
                (45, "52.1.2.6", 40404),
            ],
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn browsers_and_allowlisted_are_skipped() {
        let cfg = NonbrowserConfig {
            allow: NameList::new(["Spotify"]),
            ..Default::default()
        };
        let mut d = Nonbrowser::new(cfg, None);
        let out = run(
            &mut d,
            &[
                (30, "52.1.2.3", 18239),
                (35, "52.1.2.4", 23001),
                (40, "52.1.2.5", 31337),
                (45, "52.1.2.6", 40404),
            ],
        );
        assert!(out.is_empty());
        assert_eq!(d.stats.allowed, 4);
    }

    #[test]
    fn config_section() {
        let c = Config::from_toml(
            "[analytics.nonbrowser]\nextra_allow = [\"MyAgent\"]\nmin_conns = 4\n",
            "t",
        )
        .unwrap();
        let n = NonbrowserConfig::from_config(&c).unwrap();
        assert_eq!(n.min_conns, 4);
        let c = Config::from_toml("[analytics.nonbrowser]\nbogus = 1\n", "t").unwrap();
        assert!(NonbrowserConfig::from_config(&c).is_err());
    }
}
