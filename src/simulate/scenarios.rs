//! Malicious scenario instances. Each instance draws its variant and every parameter from
//! the seed, is planned in full up front (so truth knows what it planted), and is kept
//! attributable to its own technique only: calculated ports never collide with standard
//! ports, "non-standard" ports are never derivable from the answer, periodic beats vary
//! their sizes, fixed-size chunks come at irregular gaps.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::{json, Map, Value};

use super::calc::{is_derived_port, is_reserved_v4, is_standard_port, AddrFormula, PortFormula};
use super::edr::{launchd_info, process_info, user_info, vm_info};
use super::plan::{ConnStep, Observed, Step};
use super::render::{Close, DnsAnswer, Exchange, Msg, Style};
use super::rng::Rng;
use super::truth::{Instance, TruthConn, TruthDns, TruthHost};
use super::world::{launchd_agent, launchd_daemon, Launchd, Platform, World, WORDS};
use crate::analytics::Analytic;
use crate::time::{Dur, Ts};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    DnsCalc,
    UnusualDns,
    FixedSize,
    Periodic,
    Nonbrowser,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::DnsCalc,
        Scenario::UnusualDns,
        Scenario::FixedSize,
        Scenario::Periodic,
        Scenario::Nonbrowser,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Scenario::DnsCalc => "dns-calc",
            Scenario::UnusualDns => "unusual-dns",
            Scenario::FixedSize => "fixed-size",
            Scenario::Periodic => "periodic",
            Scenario::Nonbrowser => "nonbrowser",
        }
    }
}

/// `--scenario` values: none given means all, `none` means benign only.
pub fn parse(names: &[String]) -> Result<Vec<Scenario>, String> {
    if names.is_empty() {
        return Ok(Scenario::ALL.to_vec());
    }
    let mut out = Vec::new();
    for n in names.iter().flat_map(|s| s.split(',')) {
        if n == "none" {
            continue;
        }
        let s = Scenario::ALL
            .into_iter()
            .find(|s| s.name() == n)
            .ok_or_else(|| format!("unknown scenario {n:?} (dns-calc, unusual-dns, fixed-size, periodic, nonbrowser, none)"))?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// One planted instance: its truth skeleton and its episodes.
pub struct Planted {
    pub instance: Instance,
    pub host: usize,
    pub proc: usize,
    pub episodes: Vec<(Ts, Vec<Step>)>,
    /// Same process, not part of the instance (the baseline of a deviation).
    pub background: Vec<(Ts, Vec<Step>)>,
}

struct Ctx<'a> {
    world: &'a mut World,
    rng: &'a mut Rng,
    used: HashSet<usize>,
    out: Vec<Planted>,
    counter: usize,
}

fn secs(x: f64) -> Dur {
    Dur::from_secs_f64(x)
}

fn delay_ns(rng: &mut Rng, lo: u64, hi: u64) -> i64 {
    rng.range(lo, hi) as i64
}

fn c2_name(rng: &mut Rng) -> String {
    let sub = [
        "api",
        "cdn",
        "update",
        "sync",
        "telemetry",
        "static",
        "img",
        "news",
        "mail",
        "cloud",
    ];
    let tld = ["com", "net", "io", "org", "co"];
    format!(
        "{}.{}{}.{}",
        rng.pick(&sub),
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.pick(&tld)
    )
}

fn dga_name(rng: &mut Rng) -> String {
    let n = rng.range(11, 19);
    let label: String = (0..n)
        .map(|_| {
            let c = rng.below(36) as u8;
            (if c < 26 { b'a' + c } else { b'0' + c - 26 }) as char
        })
        .collect();
    format!("{label}.{}", rng.pick(&["top", "xyz", "info", "biz", "cc"]))
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// A port in 1024..65535 that is neither standard nor derivable from any of `addrs`.
fn nonstd_port(rng: &mut Rng, addrs: &[Ipv4Addr]) -> u16 {
    loop {
        let p = rng.range_u16(1025, 65535);
        if !is_standard_port(p as u32) && !addrs.iter().any(|a| is_derived_port(*a, p)) {
            return p;
        }
    }
}

/// Small, varied command-and-control turns.
fn beacon_exchanges(rng: &mut Rng) -> Vec<Exchange> {
    (0..rng.range(1, 4))
        .map(|i| {
            let gap = if i == 0 {
                Dur::ZERO
            } else {
                secs(rng.uniform(0.2, 8.0))
            };
            Exchange::new(
                gap,
                Msg::Sized(rng.range_u32(60, 900)),
                Msg::Sized(rng.range_u32(40, 6000)),
            )
        })
        .collect()
}

fn conn(
    rng: &mut Rng,
    at: Ts,
    dst: Ipv4Addr,
    port: u16,
    ex: Vec<Exchange>,
    style: Style,
) -> ConnStep {
    let mut c = ConnStep::new(at, IpAddr::V4(dst), port, true, style, ex);
    c.rtt = secs(rng.uniform(0.02, 0.2));
    c.sttl = *rng.pick(&[46u8, 49, 50, 53, 112, 113, 237]);
    c.rate = rng.log_uniform(0.5e6, 10e6);
    c.close = if rng.chance(0.85) {
        Close::Fin
    } else {
        Close::Rst
    };
    c
}

/// An uncached lookup (recursion to the C2's authoritative server); returns the answer time.
fn lookup(rng: &mut Rng, at: Ts, name: &str, addrs: &[IpAddr], ttl: u32) -> (Step, Ts) {
    let delay = Dur(rng.range(8_000_000, 90_000_000) as i64);
    let ans = DnsAnswer {
        qname: name.to_string(),
        v6: false,
        cnames: Vec::new(),
        addrs: addrs.to_vec(),
        ttl,
        cname_ttl: ttl,
    };
    (
        Step::Lookup {
            at,
            delay,
            ans,
            tcp: false,
        },
        Ts(at.0 + delay.0),
    )
}

/// `n` times spread over `[lo, hi]`, at least `min_gap` apart where possible.
fn spread(rng: &mut Rng, lo: i64, hi: i64, n: usize, min_gap: i64) -> Vec<i64> {
    let mut v: Vec<i64> = Vec::with_capacity(n);
    for _ in 0..n * 20 {
        if v.len() == n {
            break;
        }
        let t = lo + rng.below((hi - lo).max(1) as u64) as i64;
        if v.iter().all(|x| (x - t).abs() >= min_gap) {
            v.push(t);
        }
    }
    v.sort();
    v
}

impl Ctx<'_> {
    fn pick_host(&mut self, plats: &[Platform], need_edr: bool) -> Option<usize> {
        let cands: Vec<usize> = (0..self.world.hosts.len())
            .filter(|&i| {
                plats.contains(&self.world.hosts[i].platform)
                    && (!need_edr || self.world.hosts[i].edr)
            })
            .collect();
        let fresh: Vec<usize> = cands
            .iter()
            .copied()
            .filter(|i| !self.used.contains(i))
            .collect();
        let h = if !fresh.is_empty() {
            *self.rng.pick(&fresh)
        } else if !cands.is_empty() {
            *self.rng.pick(&cands)
        } else {
            return None;
        };
        self.used.insert(h);
        Some(h)
    }

    fn span(&self) -> (i64, i64) {
        (self.world.start.0, self.world.end.0)
    }

    /// A malicious process: a LaunchAgent/Daemon on macOS, cron or a systemd timer elsewhere.
    fn implant(&mut self, host: usize, first: Ts, style: &str) -> (usize, Map<String, Value>) {
        let h = self.world.hosts[host].clone();
        let (w1, w2) = (*self.rng.pick(WORDS), *self.rng.pick(WORDS));
        let label = format!("com.{w1}.{w2}");
        let started = Ts(first.0 - self.rng.range(2, 300) as i64 * 1_000_000_000);
        let mut params = Map::new();
        let (name, exe, user, parent, ld): (String, String, String, &str, Option<Launchd>) =
            match (h.platform, style) {
                (Platform::Macos, "daemon") => (
                    format!("{w2}-helper"),
                    format!("/Library/Application Support/{}/{w2}-helper", cap(w1)),
                    "root".into(),
                    "launchd",
                    Some(launchd_daemon(&label, false)),
                ),
                (Platform::Macos, "user:_www")
                | (Platform::Macos, "user:root")
                | (Platform::Macos, "user:nobody") => {
                    let tool = *self.rng.pick(&["curl", "rsync", "python3", "nc"]);
                    params.insert("unexpected_user".into(), json!(true));
                    (
                        tool.into(),
                        format!("/usr/bin/{tool}"),
                        style[5..].into(),
                        "sh",
                        None,
                    )
                }
                (Platform::Macos, _) => (
                    format!("{w2}d"),
                    format!(
                        "/Users/{}/Library/Application Support/{}/{w2}d",
                        h.user,
                        cap(w1)
                    ),
                    h.user.clone(),
                    "launchd",
                    Some(launchd_agent(&h.user, &label)),
                ),
                (_, s) if s.starts_with("user:") => {
                    let tool = *self.rng.pick(&["curl", "wget", "python3", "socat"]);
                    params.insert("unexpected_user".into(), json!(true));
                    (
                        tool.into(),
                        format!("/usr/bin/{tool}"),
                        s[5..].into(),
                        "sh",
                        None,
                    )
                }
                (_, "systemd") => {
                    params.insert("scheduler".into(), json!("systemd-timer"));
                    params.insert("unit".into(), json!(format!("{w1}-{w2}.timer")));
                    (
                        format!("{w1}-{w2}"),
                        format!("/usr/local/bin/{w1}-{w2}"),
                        "root".into(),
                        "systemd",
                        None,
                    )
                }
                _ => {
                    params.insert("scheduler".into(), json!("cron"));
                    let user = if self.rng.chance(0.5) {
                        "www-data".to_string()
                    } else {
                        h.user.clone()
                    };
                    (
                        w2.to_string(),
                        format!("/var/tmp/.{w1}/{w2}"),
                        user,
                        "cron",
                        None,
                    )
                }
            };
        if h.platform == Platform::Macos && ld.is_some() {
            params.insert("launchd_kind".into(), json!(ld.as_ref().map(|l| l.kind)));
        }
        let p = self
            .world
            .proc(self.rng, host, &name, &exe, &user, parent, ld, started);
        (p, params)
    }

    fn instance(
        &mut self,
        scenario: Scenario,
        analytic: Analytic,
        variant: &str,
        host: usize,
        proc: usize,
        params: Map<String, Value>,
    ) -> Instance {
        self.counter += 1;
        let h = &self.world.hosts[host];
        let p = &self.world.procs[proc];
        Instance {
            id: format!("{}-{}", scenario.name(), self.counter),
            scenario: scenario.name().into(),
            variant: variant.into(),
            technique: analytic.technique().into(),
            analytic: analytic.name().into(),
            attack_analytics: analytic
                .attack_analytics(Some(h.platform.name()))
                .iter()
                .map(|s| s.to_string())
                .collect(),
            host: TruthHost {
                ip: h.ip4.to_string(),
                name: h.name.clone(),
                platform: h.platform.name().into(),
            },
            proto: "tcp".into(),
            process: Some(process_info(p)),
            user: Some(user_info(p)),
            launchd: launchd_info(p),
            vm: vm_info(self.world, host),
            params,
            ..Default::default()
        }
    }

    fn dns_calc(&mut self, plat: Platform) {
        let Some(host) = self.pick_host(&[plat], false) else {
            return;
        };
        let rng = &mut *self.rng;
        let formula = *rng.pick(&PortFormula::ALL);
        let addr_f = if rng.chance(0.3) {
            Some(match rng.below(3) {
                0 => AddrFormula::Xor(rng.next_u32() & 0x00ff_ffff | 0x0100_0000),
                1 => AddrFormula::Reversed,
                _ => AddrFormula::Next(rng.range(1, 16) as u8),
            })
        } else {
            None
        };
        let name = c2_name(rng);
        let ttl = *rng.pick(&[60u32, 120, 300, 600, 1800]);
        let repeats = rng.range(3, 6) as usize;
        let rotate = rng.chance(0.6);
        let (s, e) = self.span();
        let times = spread(
            self.rng,
            s + 120_000_000_000,
            e - 180_000_000_000,
            repeats,
            240_000_000_000,
        );
        let Some(&first) = times.first() else { return };
        let kind = if plat == Platform::Macos && self.rng.chance(0.3) {
            "daemon"
        } else {
            "agent"
        };
        let (proc, mut params) = self.implant(host, Ts(first), kind);
        let mut episodes = Vec::new();
        let mut answer = None;
        for &t in &times {
            if answer.is_none() || rotate {
                answer = Some(loop {
                    let a = self.world.public_v4(self.rng);
                    let p = formula.apply(a);
                    if !(1024..=65535).contains(&p) || is_standard_port(p) {
                        continue;
                    }
                    if let Some(f) = addr_f {
                        let d = f.apply(a);
                        if is_reserved_v4(d) || !self.world.claim_v4(d) {
                            continue;
                        }
                    }
                    break a;
                });
            }
            let a = answer.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let dst = addr_f.map_or(a, |f| f.apply(a));
            let port = formula.apply(a) as u16;
            let (step, answered) = lookup(self.rng, Ts(t), &name, &[IpAddr::V4(a)], ttl);
            let at = Ts(answered.0 + secs(self.rng.uniform(0.2, 20.0)).0);
            let ex = beacon_exchanges(self.rng);
            let c = conn(self.rng, at, dst, port, ex, Style::Opaque);
            episodes.push((Ts(t), vec![step, Step::Conn(c)]));
        }
        params.insert("formula".into(), json!(formula.name()));
        if let Some(f) = addr_f {
            params.insert("address_formula".into(), json!(f.name()));
        }
        params.insert("repeats".into(), json!(times.len()));
        params.insert("rotating_answers".into(), json!(rotate));
        params.insert("ttl".into(), json!(ttl));
        let variant = if addr_f.is_some() {
            "calculated-address"
        } else {
            "calculated-port"
        };
        let mut inst = self.instance(
            Scenario::DnsCalc,
            Analytic::DnsCalculatedPort,
            variant,
            host,
            proc,
            params,
        );
        inst.domains = vec![name];
        self.out.push(Planted {
            instance: inst,
            host,
            proc,
            episodes,
            background: Vec::new(),
        });
    }

    fn unusual_dns(&mut self) {
        let Some(host) =
            self.pick_host(&[Platform::Macos, Platform::Linux, Platform::EsxiVm], false)
        else {
            return;
        };
        let variant = *self
            .rng
            .pick(&["low-ttl", "bogon-answer", "private-answer", "odd-name"]);
        let (s, e) = self.span();
        let n = self.rng.range(1, 3) as usize;
        let times = spread(
            self.rng,
            s + 60_000_000_000,
            e - 120_000_000_000,
            n,
            300_000_000_000,
        );
        let Some(&first) = times.first() else { return };
        let (proc, mut params) = self.implant(host, Ts(first), "agent");
        let rng = &mut *self.rng;
        let name = if variant == "odd-name" {
            dga_name(rng)
        } else {
            c2_name(rng)
        };
        let hardcoded = self.world.public_v4(self.rng);
        let mut episodes = Vec::new();
        let mut port = None;
        for &t in &times {
            let rng = &mut *self.rng;
            let (answer, dst, ttl) = match variant {
                "low-ttl" => {
                    let a = self.world.public_v4(self.rng);
                    (a, a, self.rng.range(0, 1) as u32)
                }
                "bogon-answer" => {
                    let a = match rng.below(5) {
                        0 => Ipv4Addr::new(127, 0, 0, rng.range(1, 254) as u8),
                        1 => Ipv4Addr::new(
                            100,
                            rng.range(64, 127) as u8,
                            rng.below(256) as u8,
                            rng.range(1, 254) as u8,
                        ),
                        2 => Ipv4Addr::new(198, 18, rng.below(256) as u8, rng.range(1, 254) as u8),
                        3 => Ipv4Addr::new(
                            240,
                            rng.below(256) as u8,
                            rng.below(256) as u8,
                            rng.range(1, 254) as u8,
                        ),
                        _ => Ipv4Addr::new(0, 0, 0, 0),
                    };
                    (a, hardcoded, rng.range(60, 600) as u32)
                }
                "private-answer" => {
                    let a = match rng.below(3) {
                        0 => Ipv4Addr::new(
                            10,
                            rng.range(100, 250) as u8,
                            rng.below(256) as u8,
                            rng.range(1, 254) as u8,
                        ),
                        1 => Ipv4Addr::new(
                            172,
                            rng.range(16, 31) as u8,
                            rng.below(256) as u8,
                            rng.range(1, 254) as u8,
                        ),
                        _ => Ipv4Addr::new(192, 168, rng.below(256) as u8, rng.range(1, 254) as u8),
                    };
                    // A private address is reachable (an internal relay, rebinding):
                    // the implant uses it. Only unreachable bogons send it to a fallback.
                    (a, a, rng.range(60, 600) as u32)
                }
                _ => {
                    let a = self.world.public_v4(self.rng);
                    (a, a, 300)
                }
            };
            let p = *port.get_or_insert_with(|| nonstd_port(self.rng, &[answer, dst]));
            let p = if is_derived_port(answer, p) || is_derived_port(dst, p) {
                nonstd_port(self.rng, &[answer, dst])
            } else {
                p
            };
            let (step, answered) = lookup(self.rng, Ts(t), &name, &[IpAddr::V4(answer)], ttl);
            let at = Ts(answered.0 + secs(self.rng.uniform(0.5, 30.0)).0);
            let ex = beacon_exchanges(self.rng);
            let c = conn(self.rng, at, dst, p, ex, Style::Opaque);
            episodes.push((Ts(t), vec![step, Step::Conn(c)]));
        }
        params.insert("events".into(), json!(times.len()));
        let mut inst = self.instance(
            Scenario::UnusualDns,
            Analytic::UnusualDnsNonstandardPort,
            variant,
            host,
            proc,
            params,
        );
        inst.domains = vec![name];
        self.out.push(Planted {
            instance: inst,
            host,
            proc,
            episodes,
            background: Vec::new(),
        });
    }

    /// Resolves `name` when its TTL ran out; returns the answer time.
    fn cached_lookup(
        &mut self,
        steps: &mut Vec<Step>,
        t: Ts,
        name: &str,
        a: Ipv4Addr,
        ttl: u32,
        expiry: &mut i64,
    ) -> Ts {
        if t.0 < *expiry {
            return t;
        }
        let (s, ans) = lookup(self.rng, t, name, &[IpAddr::V4(a)], ttl);
        steps.push(s);
        *expiry = ans.0 + ttl as i64 * 1_000_000_000;
        ans
    }

    /// A public address for a resolved name whose standard `port` is not derivable from it.
    fn plain_answer(&mut self, port: u16) -> Ipv4Addr {
        loop {
            let a = self.world.public_v4(self.rng);
            if !is_derived_port(a, port) {
                return a;
            }
        }
    }

    fn fixed_size(&mut self, plats: &[Platform]) {
        let Some(host) = self.pick_host(plats, false) else {
            return;
        };
        let rng = &mut *self.rng;
        let stream = rng.chance(0.4);
        let chunk = if rng.chance(0.5) {
            1u32 << rng.range(9, 16)
        } else {
            rng.range_u32(512, 65536)
        };
        let port = if rng.chance(0.75) { 443 } else { 80 };
        let who = if self.world.hosts[host].platform == Platform::Macos {
            *rng.pick(&["agent", "agent", "user:root", "user:_www", "user:nobody"])
        } else {
            *rng.pick(&["user:nobody", "user:www-data", "user:root"])
        };
        let use_dns = rng.chance(0.6);
        let name = c2_name(rng);
        let (s, e) = self.span();
        let dur = e - s;
        let t0 = s + (dur as f64 * self.rng.uniform(0.05, 0.45)) as i64;
        let (proc, mut params) = self.implant(host, Ts(t0), who);
        let dst = self.plain_answer(port);
        let ttl = 3600;
        let style = if port == 443 { Style::Tls } else { Style::Http };
        let mut episodes = Vec::new();
        let mut expiry = i64::MIN;
        let mut t = t0;
        let mut last_chunk = chunk;
        if !stream {
            let n = self.rng.range(6, 30) as usize;
            let short_last = self.rng.chance(0.5);
            let mut sent = 0;
            for i in 0..n {
                if t > e - 30_000_000_000 {
                    break;
                }
                let mut steps = Vec::new();
                let ready = if use_dns {
                    self.cached_lookup(&mut steps, Ts(t), &name, dst, ttl, &mut expiry)
                } else {
                    Ts(t)
                };
                let size = if i == n - 1 && short_last {
                    (chunk as f64 * self.rng.uniform(0.1, 0.9)) as u32
                } else {
                    chunk
                };
                last_chunk = size;
                let down = self.rng.range_u32(40, 400);
                let ex = vec![Exchange::new(Dur::ZERO, Msg::Sized(size), Msg::Sized(down))];
                let at = Ts(ready.0 + delay_ns(self.rng, 1_000_000, 50_000_000));
                let mut c = conn(self.rng, at, dst, port, ex, style);
                c.close = Close::Fin;
                steps.push(Step::Conn(c));
                episodes.push((Ts(t), steps));
                sent += 1;
                t += secs(self.rng.log_uniform(3.0, 300.0)).0;
            }
            params.insert("chunks".into(), json!(sent));
            params.insert("last_chunk_bytes".into(), json!(last_chunk));
        } else {
            let mut steps = Vec::new();
            let ready = if use_dns {
                self.cached_lookup(&mut steps, Ts(t), &name, dst, ttl, &mut expiry)
            } else {
                Ts(t)
            };
            let mut ex = Vec::new();
            let bursts = self.rng.range(5, 20);
            let mut total_msgs = 0;
            let mut elapsed = 0i64;
            for b in 0..bursts {
                let gap = if b == 0 {
                    Dur::ZERO
                } else {
                    secs(self.rng.log_uniform(10.0, 600.0))
                };
                elapsed += gap.0;
                if t0 + elapsed > e - 60_000_000_000 {
                    break;
                }
                for m in 0..self.rng.range(3, 12) {
                    let g = if m == 0 {
                        gap
                    } else {
                        Dur(self.rng.range(20_000_000, 300_000_000) as i64)
                    };
                    ex.push(Exchange::new(g, Msg::Sized(chunk), Msg::None));
                    total_msgs += 1;
                }
            }
            let mut c = conn(self.rng, Ts(ready.0 + 5_000_000), dst, port, ex, style);
            c.close = Close::Fin;
            steps.push(Step::Conn(c));
            episodes.push((Ts(t), steps));
            params.insert("messages".into(), json!(total_msgs));
        }
        params.insert("chunk_bytes".into(), json!(chunk));
        params.insert("via_dns".into(), json!(use_dns));
        let variant = if stream {
            "messages-in-one-connection"
        } else {
            "connection-per-chunk"
        };
        let mut inst = self.instance(
            Scenario::FixedSize,
            Analytic::FixedSizeTransfer,
            variant,
            host,
            proc,
            params,
        );
        if use_dns {
            inst.domains = vec![name];
        }
        inst.params.insert("attribution".into(), json!(who));
        self.out.push(Planted {
            instance: inst,
            host,
            proc,
            episodes,
            background: Vec::new(),
        });
    }

    fn periodic(&mut self, plats: &[Platform]) {
        let Some(host) = self.pick_host(plats, false) else {
            return;
        };
        let (s, e) = self.span();
        let dur_s = (e - s) as f64 / 1e9;
        let rng = &mut *self.rng;
        let period = rng.log_uniform(10.0, (dur_s / 10.0).clamp(10.0, 3600.0));
        let jitter = rng.uniform(0.0, 0.4);
        let missed = rng.uniform(0.0, 0.1);
        let port = if rng.chance(0.7) { 443 } else { 80 };
        let name = c2_name(rng);
        let ttl = *rng.pick(&[300u32, 600, 3600]);
        let base = rng.log_uniform(150.0, 3000.0);
        let style_name = if self.world.hosts[host].platform == Platform::Macos {
            *self.rng.pick(&["agent", "daemon"])
        } else {
            *self.rng.pick(&["cron", "systemd"])
        };
        let t0 = s + secs(self.rng.uniform(0.0, period.min(dur_s / 4.0))).0;
        let (proc, mut params) = self.implant(host, Ts(t0), style_name);
        let dst = self.plain_answer(port);
        let style = if port == 443 { Style::Tls } else { Style::Http };
        let mut episodes = Vec::new();
        let mut expiry = i64::MIN;
        let (mut beats, mut skipped) = (0, 0);
        let mut t = t0;
        while t < e - 5_000_000_000 {
            if beats > 0 && self.rng.chance(missed) {
                skipped += 1;
            } else {
                let mut steps = Vec::new();
                let ready = self.cached_lookup(&mut steps, Ts(t), &name, dst, ttl, &mut expiry);
                let up = (base * self.rng.uniform(0.4, 1.8)) as u32;
                let down = self.rng.range_u32(60, 4000);
                let ex = vec![Exchange::new(
                    Dur::ZERO,
                    Msg::Sized(up.max(40)),
                    Msg::Sized(down),
                )];
                let at = Ts(ready.0 + delay_ns(self.rng, 1_000_000, 30_000_000));
                let c = conn(self.rng, at, dst, port, ex, style);
                steps.push(Step::Conn(c));
                episodes.push((Ts(t), steps));
                beats += 1;
            }
            t += secs(period * (1.0 + self.rng.uniform(-jitter, jitter))).0;
        }
        params.insert("period_s".into(), json!((period * 1000.0).round() / 1000.0));
        params.insert("jitter".into(), json!((jitter * 1000.0).round() / 1000.0));
        params.insert(
            "missed_ratio".into(),
            json!((missed * 1000.0).round() / 1000.0),
        );
        params.insert("beats".into(), json!(beats));
        params.insert("missed_beats".into(), json!(skipped));
        params.insert("mean_bytes_out".into(), json!(base.round()));
        let mut inst = self.instance(
            Scenario::Periodic,
            Analytic::PeriodicTransfer,
            style_name,
            host,
            proc,
            params,
        );
        inst.domains = vec![name];
        self.out.push(Planted {
            instance: inst,
            host,
            proc,
            episodes,
            background: Vec::new(),
        });
    }

    fn nonbrowser(&mut self) {
        let host = match self.pick_host(&[Platform::Macos], true) {
            Some(h) => h,
            None => {
                // AN0730 needs process context: give one Mac an EDR agent.
                let Some(h) = self.pick_host(&[Platform::Macos], false) else {
                    return;
                };
                self.world.hosts[h].edr = true;
                h
            }
        };
        let apps = [
            ("Spotify", "/Applications/Spotify.app/Contents/MacOS/Spotify", ["apresolve.spotify.com", "spclient.wg.spotify.com"]),
            ("Notion Helper", "/Applications/Notion.app/Contents/Frameworks/Notion Helper.app/Contents/MacOS/Notion Helper", ["www.notion.so", "msgstore.www.notion.so"]),
            ("Grammarly Desktop", "/Applications/Grammarly Desktop.app/Contents/MacOS/Grammarly Desktop", ["capi.grammarly.com", "f-log-extension.grammarly.io"]),
        ];
        let (app, exe, base_names) = *self.rng.pick(&apps);
        let user = self.world.hosts[host].user.clone();
        let (s, e) = self.span();
        let started = Ts(s - self.rng.range(600, 20_000) as i64 * 1_000_000_000);
        let proc = self
            .world
            .proc(self.rng, host, app, exe, &user, "launchd", None, started);
        let base: Vec<(String, Ipv4Addr)> = base_names
            .iter()
            .map(|n| (n.to_string(), self.plain_answer(443)))
            .collect();
        let mut background = Vec::new();
        let mut expiry = vec![i64::MIN; base.len()];
        let mut t = s + secs(self.rng.exp(60.0)).0;
        while t < e {
            let k = self.rng.below(base.len() as u64) as usize;
            let mut steps = Vec::new();
            let ready = self.cached_lookup(
                &mut steps,
                Ts(t),
                &base[k].0.clone(),
                base[k].1,
                300,
                &mut expiry[k],
            );
            let ex = beacon_exchanges(self.rng);
            let c = conn(
                self.rng,
                Ts(ready.0 + 3_000_000),
                base[k].1,
                443,
                ex,
                Style::Tls,
            );
            steps.push(Step::Conn(c));
            background.push((Ts(t), steps));
            t += secs(self.rng.exp(120.0)).0.max(5_000_000_000);
        }
        let t_dev = s + ((e - s) as f64 * self.rng.uniform(0.4, 0.7)) as i64;
        let n_new = self.rng.range(3, 8) as usize;
        let mut episodes = Vec::new();
        let mut names = Vec::new();
        for _ in 0..n_new {
            let name = c2_name(self.rng);
            let a = self.world.public_v4(self.rng);
            let port = nonstd_port(self.rng, &[a]);
            let mut exp = i64::MIN;
            let visits = self.rng.range(2, 5) as usize;
            for t in spread(self.rng, t_dev, e - 60_000_000_000, visits, 20_000_000_000) {
                let mut steps = Vec::new();
                let ready = self.cached_lookup(&mut steps, Ts(t), &name, a, 300, &mut exp);
                let ex = beacon_exchanges(self.rng);
                let at = Ts(ready.0 + delay_ns(self.rng, 2_000_000, 40_000_000));
                let c = conn(self.rng, at, a, port, ex, Style::Opaque);
                steps.push(Step::Conn(c));
                episodes.push((Ts(t), steps));
            }
            names.push(name);
        }
        let mut params = Map::new();
        params.insert("baseline_names".into(), json!(base_names));
        params.insert("baseline_ports".into(), json!([443]));
        params.insert(
            "deviation_at".into(),
            json!(Ts(t_dev).rfc3339().to_string()),
        );
        params.insert("new_destinations".into(), json!(n_new));
        let mut inst = self.instance(
            Scenario::Nonbrowser,
            Analytic::NonbrowserOutboundDeviation,
            "new-names-and-ports",
            host,
            proc,
            params,
        );
        inst.domains = names;
        self.out.push(Planted {
            instance: inst,
            host,
            proc,
            episodes,
            background,
        });
    }
}

/// Plans the instances of the chosen scenarios; more hosts, more instances.
pub fn plan(world: &mut World, rng: &mut Rng, which: &[Scenario]) -> Vec<Planted> {
    let scale = 1 + world.hosts.len() / 50;
    let mut cx = Ctx {
        world,
        rng,
        used: HashSet::new(),
        out: Vec::new(),
        counter: 0,
    };
    for &s in which {
        for _ in 0..scale {
            match s {
                Scenario::DnsCalc => {
                    for p in [Platform::Macos, Platform::Linux, Platform::EsxiVm] {
                        cx.dns_calc(p);
                    }
                }
                Scenario::UnusualDns => {
                    for _ in 0..2 {
                        cx.unusual_dns();
                    }
                }
                Scenario::FixedSize => {
                    cx.fixed_size(&[Platform::Macos]);
                    cx.fixed_size(&[Platform::Macos, Platform::Linux, Platform::EsxiVm]);
                }
                Scenario::Periodic => {
                    cx.periodic(&[Platform::Macos]);
                    cx.periodic(&[Platform::Linux, Platform::EsxiVm]);
                }
                Scenario::Nonbrowser => cx.nonbrowser(),
            }
        }
    }
    cx.out
}

/// Fills each instance from what the wire carried; drops instances with no packets.
pub fn finish(instances: Vec<Instance>, observed: &[Observed]) -> Vec<Instance> {
    let mut out = Vec::new();
    for (mut inst, o) in instances.into_iter().zip(observed) {
        let (Some(first), Some(last)) = (o.first, o.last) else {
            continue;
        };
        inst.start = Ts(first).rfc3339().to_string();
        inst.end = Ts(last).rfc3339().to_string();
        let mut ips: Vec<String> = Vec::new();
        let mut ports: Vec<u16> = Vec::new();
        let mut conns: Vec<_> = o.conns.iter().filter(|c| c.0 <= last).collect();
        conns.sort_by_key(|c| c.0);
        for c in conns {
            let ip = c.1.to_string();
            if !ips.contains(&ip) {
                ips.push(ip.clone());
            }
            if !ports.contains(&c.2) {
                ports.push(c.2);
            }
            inst.connections.push(TruthConn {
                start: Ts(c.0).rfc3339().to_string(),
                dest_ip: ip,
                dest_port: c.2,
                proto: if c.3 { "tcp".into() } else { "udp".into() },
                bytes_out: c.4,
            });
        }
        let mut answers: Vec<_> = o.answers.iter().collect();
        answers.sort_by_key(|a| a.0);
        for a in answers {
            inst.dns.push(TruthDns {
                answered_at: Ts(a.0).rfc3339().to_string(),
                query: a.1.clone(),
                answers: a.2.iter().map(|x| x.to_string()).collect(),
                ttl: a.3,
            });
        }
        inst.external_ips = ips;
        inst.ports = ports;
        out.push(inst);
    }
    out
}
