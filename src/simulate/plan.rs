//! Episodes: what one activity does at one moment (lookups, then connections), planned
//! as steps and rendered into packets when the merger reaches the episode's start.

use std::collections::HashMap;
use std::net::IpAddr;

use super::render::{self, Close, ConnParams, DnsAnswer, Exchange, Flow, Rendered, Style};
use super::rng::Rng;
use super::world::World;
use crate::time::{Dur, Ts};

#[derive(Clone, Debug)]
pub struct ConnStep {
    pub at: Ts,
    /// Use the host's IPv6 address (the destination is IPv6).
    pub dst: IpAddr,
    pub dport: u16,
    pub tcp: bool,
    pub style: Style,
    pub rtt: Dur,
    /// Bulk sender rate, bytes/s.
    pub rate: f64,
    pub sttl: u8,
    pub ex: Vec<Exchange>,
    pub close: Close,
    pub snap: u16,
    /// Fixed source port (NTP's 123, WireGuard's listen port); drawn when `None`.
    pub sport: Option<u16>,
}

impl ConnStep {
    pub fn new(
        at: Ts,
        dst: IpAddr,
        dport: u16,
        tcp: bool,
        style: Style,
        ex: Vec<Exchange>,
    ) -> ConnStep {
        ConnStep {
            at,
            dst,
            dport,
            tcp,
            style,
            rtt: Dur::from_millis(30),
            rate: 5e6,
            sttl: 52,
            ex,
            close: if tcp { Close::Fin } else { Close::Open },
            snap: 0,
            sport: None,
        }
    }

    pub fn up_bytes(&self) -> u64 {
        self.ex.iter().map(|e| e.up.len() as u64).sum()
    }
}

#[derive(Clone, Debug)]
pub enum Step {
    Lookup {
        at: Ts,
        delay: Dur,
        ans: DnsAnswer,
        tcp: bool,
    },
    Conn(ConnStep),
}

impl Step {
    pub fn at(&self) -> Ts {
        match self {
            Step::Lookup { at, .. } => *at,
            Step::Conn(c) => c.at,
        }
    }
}

pub struct Episode {
    pub start: Ts,
    pub act: u32,
    pub seed: u64,
    /// The truth instance this episode belongs to.
    pub instance: Option<u32>,
    /// Planned up front (malicious scenarios); benign episodes are built when rendered.
    pub steps: Option<Vec<Step>>,
}

/// One connection as seen by the EDR agent.
#[derive(Clone, Copy, Debug)]
pub struct EdrConn {
    pub ts: i64,
    pub proc: u32,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub tcp: bool,
}

/// What the wire actually carried for a truth instance.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub conns: Vec<(i64, IpAddr, u16, bool, u64)>,
    pub answers: Vec<(i64, String, Vec<IpAddr>, u32)>,
}

/// Per-host resolver cache, so repeated names are not looked up before every connection.
#[derive(Default)]
pub struct DnsCache {
    map: HashMap<(usize, u32, bool), (i64, Vec<IpAddr>)>,
}

/// Resolves `name` for `host` at `t`: a lookup step when the cache has expired. Returns
/// the addresses and when the answer is in.
#[allow(clippy::too_many_arguments)]
pub fn resolve(
    world: &World,
    cache: &mut DnsCache,
    host: usize,
    name: u32,
    v6: bool,
    t: Ts,
    rng: &mut Rng,
    steps: &mut Vec<Step>,
) -> (Vec<IpAddr>, Ts) {
    let key = (host, name, v6);
    if let Some((exp, addrs)) = cache.map.get(&key) {
        if *exp > t.0 {
            return (addrs.clone(), t);
        }
    }
    let rec = &world.names[name as usize];
    let addrs: Vec<IpAddr> = if v6 {
        rec.v6.iter().map(|a| IpAddr::V6(*a)).collect()
    } else {
        let n = rec.v4.len();
        let rot = rng.below(n as u64) as usize;
        (0..rec.per_answer.min(n))
            .map(|i| IpAddr::V4(rec.v4[(rot + i) % n]))
            .collect()
    };
    // Cached at the resolver most of the time; a full recursion now and then.
    let delay = if rng.chance(0.8) {
        Dur(rng.range(300_000, 4_000_000) as i64)
    } else {
        Dur(rng.range(15_000_000, 140_000_000) as i64)
    };
    let ttl = if rec.ttl > 60 {
        rec.ttl - rng.below(rec.ttl as u64 / 2) as u32
    } else {
        rec.ttl
    };
    steps.push(Step::Lookup {
        at: t,
        delay,
        ans: DnsAnswer {
            qname: rec.name.clone(),
            v6,
            cnames: rec.cnames.clone(),
            addrs: addrs.clone(),
            ttl,
            cname_ttl: 300,
        },
        tcp: rng.chance(0.03),
    });
    cache.map.insert(
        key,
        (t.0 + delay.0 + ttl as i64 * 1_000_000_000, addrs.clone()),
    );
    (addrs, Ts(t.0 + delay.0))
}

/// Renders the steps of one episode of `host`, attributed to `proc`.
#[allow(clippy::too_many_arguments)]
pub fn render_steps(
    world: &World,
    host: usize,
    proc: Option<usize>,
    steps: &[Step],
    rng: &mut Rng,
    out: &mut Rendered,
    edr: &mut Vec<EdrConn>,
    mut obs: Option<&mut Observed>,
) {
    let h = &world.hosts[host];
    for step in steps {
        let before = out.pkts.len();
        match step {
            Step::Lookup {
                at,
                delay,
                ans,
                tcp,
            } => {
                let resolver = if rng.chance(0.9) {
                    h.resolver
                } else {
                    1 - h.resolver
                };
                let server = IpAddr::V4(world.resolvers[resolver]);
                let fid = out.add_flow(Flow {
                    client: IpAddr::V4(h.ip4),
                    server,
                    cport: rng.range(h.eph.0 as u64, h.eph.1 as u64) as u16,
                    sport: 53,
                    tcp: *tcp,
                    cmac: h.mac,
                    smac: [0x00, 0x16, 0x3e, 0x00, 0x00, 0x53 + resolver as u8],
                    vlan: h.vlan,
                    cttl: 64,
                    sttl: 64,
                    style: Style::Opaque,
                    snap: 0,
                    filler_off: 0,
                });
                let answered = render::dns_lookup(out, rng, fid, *at, *delay, ans, *tcp);
                if let Some(o) = obs.as_deref_mut() {
                    o.answers
                        .push((answered, ans.qname.clone(), ans.addrs.clone(), ans.ttl));
                }
            }
            Step::Conn(c) => {
                let client = match (c.dst, h.ip6) {
                    (IpAddr::V6(_), Some(v6)) => IpAddr::V6(v6),
                    _ => IpAddr::V4(h.ip4),
                };
                let broadcast = matches!(c.dst, IpAddr::V4(a) if a.octets()[2..] == [255, 255]);
                let smac = if broadcast {
                    [0xff; 6]
                } else if World::is_internal(c.dst) {
                    world
                        .mac_of(c.dst)
                        .unwrap_or([0x00, 0x16, 0x3e, 0x10, 0x00, 0x01])
                } else {
                    world.gateway_mac
                };
                let cport = c
                    .sport
                    .unwrap_or_else(|| rng.range(h.eph.0 as u64, h.eph.1 as u64) as u16);
                let fid = out.add_flow(Flow {
                    client,
                    server: c.dst,
                    cport,
                    sport: c.dport,
                    tcp: c.tcp,
                    cmac: h.mac,
                    smac,
                    vlan: h.vlan,
                    cttl: 64,
                    sttl: c.sttl,
                    style: c.style,
                    snap: c.snap,
                    filler_off: rng.below(render::FILLER_LEN as u64) as u32,
                });
                if c.tcp {
                    let mss = if client.is_ipv4() { 1460 } else { 1440 };
                    let p = ConnParams {
                        rtt: c.rtt,
                        rate: c.rate,
                        mss,
                    };
                    render::tcp_conn(out, rng, fid, c.at, &p, &c.ex, c.close);
                } else {
                    render::udp_conn(out, rng, fid, c.at, c.rtt, &c.ex);
                }
                if let (Some(p), true) = (proc, h.edr) {
                    edr.push(EdrConn {
                        ts: c.at.0 + rng.range(0, 3_000_000) as i64,
                        proc: p as u32,
                        src: client,
                        sport: cport,
                        dst: c.dst,
                        dport: c.dport,
                        tcp: c.tcp,
                    });
                }
                if let Some(o) = obs.as_deref_mut() {
                    o.conns.push((c.at.0, c.dst, c.dport, c.tcp, c.up_bytes()));
                }
            }
        }
        if let Some(o) = obs.as_deref_mut() {
            for p in &out.pkts[before..] {
                if p.ts <= world.end.0 {
                    o.first = Some(o.first.map_or(p.ts, |f| f.min(p.ts)));
                    o.last = Some(o.last.map_or(p.ts, |l| l.max(p.ts)));
                }
            }
        }
    }
}
