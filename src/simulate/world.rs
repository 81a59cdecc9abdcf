//! The simulated site: hosts (macOS, Linux, VMs on ESXi), resolvers, the processes that
//! talk, and the public names they resolve.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::calc::{derived_ports, is_reserved_v4, STANDARD_PORTS};
use super::rng::Rng;
use crate::time::Ts;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Macos,
    Linux,
    /// A virtual machine on an ESXi host.
    EsxiVm,
    /// The hypervisor itself.
    Esxi,
}

impl Platform {
    /// `host.os.platform` of the EDR feed and the truth (a VM counts as `esxi`).
    pub fn name(self) -> &'static str {
        match self {
            Platform::Macos => "macos",
            Platform::Linux => "linux",
            Platform::EsxiVm | Platform::Esxi => "esxi",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub platform: Platform,
    pub ip4: Ipv4Addr,
    pub ip6: Option<Ipv6Addr>,
    pub mac: [u8; 6],
    pub vlan: Option<u16>,
    /// Has an EDR agent (network and process events).
    pub edr: bool,
    /// Interactive user (desktops) or main service account.
    pub user: String,
    /// Linux desktop (browser, dev tools) rather than a server.
    pub desktop: bool,
    /// Index of the ESXi hypervisor of a VM.
    pub esxi: Option<usize>,
    pub resolver: usize,
    pub eph: (u16, u16),
}

#[derive(Clone, Debug)]
pub struct Launchd {
    pub label: String,
    pub plist: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug)]
pub struct Proc {
    pub host: usize,
    pub pid: u32,
    pub name: String,
    pub exe: String,
    pub user: String,
    pub parent: (u32, String),
    pub launchd: Option<Launchd>,
    pub signed: Option<bool>,
    pub started: Ts,
}

/// A public (or split-horizon) name and how the resolver answers it.
#[derive(Clone, Debug)]
pub struct NameRec {
    pub name: String,
    pub cnames: Vec<String>,
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    pub ttl: u32,
    /// Addresses per answer (CDNs hand out several, rotated).
    pub per_answer: usize,
    pub rtt_ms: f64,
    pub sttl: u8,
}

pub struct World {
    pub start: Ts,
    pub end: Ts,
    pub hosts: Vec<Host>,
    pub procs: Vec<Proc>,
    pub names: Vec<NameRec>,
    name_idx: HashMap<String, u32>,
    pub resolvers: Vec<Ipv4Addr>,
    pub gateway_mac: [u8; 6],
    used_v4: HashSet<Ipv4Addr>,
}

const MAC_USERS: &[&str] = &[
    "ann", "bob", "chen", "dana", "eli", "fatima", "greg", "hana", "ivan", "jo", "kofi", "lena",
    "mia", "noor", "omar", "priya", "quinn", "rui", "sara", "tom",
];

pub const WORDS: &[&str] = &[
    "alpha", "amber", "atlas", "beacon", "birch", "blue", "bright", "cedar", "cloud", "coral",
    "crest", "delta", "ember", "field", "flux", "forge", "frost", "grid", "harbor", "helix",
    "iris", "jade", "kite", "lumen", "maple", "metro", "nova", "nimbus", "orbit", "pixel", "prism",
    "quartz", "river", "sage", "signal", "solar", "spark", "stone", "terra", "tide", "vector",
    "vista", "wave", "zen",
];

impl World {
    pub fn new(rng: &mut Rng, hosts: usize, hours: f64) -> World {
        // A weekday morning in late 2026, shifted by the seed.
        let base = Ts::parse_rfc3339("2026-11-16T07:00:00Z").unwrap_or(Ts::ZERO);
        let start = Ts(base.0
            + rng.range(0, 4 * 86_400) as i64 * 1_000_000_000
            + rng.range(0, 3600 * 1000) as i64 * 1_000_000);
        let end = Ts(start.0 + (hours * 3600.0 * 1e9) as i64);
        let mut w = World {
            start,
            end,
            hosts: Vec::new(),
            procs: Vec::new(),
            names: Vec::new(),
            name_idx: HashMap::new(),
            resolvers: vec![Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 0, 54)],
            gateway_mac: [
                0x00,
                0x1c,
                0x73,
                rng.next_u32() as u8,
                rng.next_u32() as u8,
                0x01,
            ],
            used_v4: HashSet::new(),
        };
        w.make_hosts(rng, hosts.max(1));
        w
    }

    fn make_hosts(&mut self, rng: &mut Rng, n: usize) {
        // Roughly half Macs, a quarter Linux, a quarter VMs; at least one of each from 3 up.
        let mut plats: Vec<Platform> = (0..n)
            .map(|i| match i % 4 {
                0 | 2 => Platform::Macos,
                1 => Platform::Linux,
                _ => Platform::EsxiVm,
            })
            .collect();
        if n >= 3 {
            plats[0] = Platform::Macos;
            plats[1] = Platform::Linux;
            plats[2] = Platform::EsxiVm;
        }
        let n_vm = plats.iter().filter(|p| **p == Platform::EsxiVm).count();
        let n_esxi = n_vm.div_ceil(8);
        let mut esxi_idx = Vec::new();
        for e in 0..n_esxi {
            let mac = [0x00, 0x25, 0xb5, 0x00, (e >> 8) as u8, e as u8 + 1];
            esxi_idx.push(self.hosts.len());
            self.hosts.push(Host {
                name: format!("esx-{:02}", e + 1),
                platform: Platform::Esxi,
                ip4: Ipv4Addr::new(10, 3, 0, 1 + e as u8),
                ip6: None,
                mac,
                vlan: Some(30),
                edr: false,
                user: "root".into(),
                desktop: false,
                esxi: None,
                resolver: e % 2,
                eph: (32768, 60999),
            });
        }
        let (mut nm, mut nl, mut nv) = (0u32, 0u32, 0u32);
        for p in plats {
            let edr = rng.chance(0.8);
            let resolver = rng.below(2) as usize;
            let mut m = [0u8; 6];
            rng.fill(&mut m);
            let h = match p {
                Platform::Macos => {
                    nm += 1;
                    let user = MAC_USERS[(nm as usize - 1) % MAC_USERS.len()].to_string();
                    Host {
                        name: format!("mac-{nm:02}"),
                        platform: p,
                        ip4: Ipv4Addr::new(10, 1, (nm / 250) as u8, (nm % 250) as u8 + 2),
                        ip6: rng
                            .chance(0.5)
                            .then(|| Ipv6Addr::new(0xfd00, 0x1, 0, 0, 0, 0, 0, nm as u16 + 2)),
                        mac: [0xa4, 0x83, 0xe7, m[0], m[1], m[2]],
                        vlan: None,
                        edr,
                        user: format!(
                            "{user}{}",
                            if nm as usize > MAC_USERS.len() {
                                nm.to_string()
                            } else {
                                String::new()
                            }
                        ),
                        desktop: true,
                        esxi: None,
                        resolver,
                        eph: (49152, 65535),
                    }
                }
                Platform::Linux => {
                    nl += 1;
                    let desktop = nl % 2 == 1;
                    Host {
                        name: if desktop {
                            format!("ws-{nl:02}")
                        } else {
                            format!("build-{nl:02}")
                        },
                        platform: p,
                        ip4: Ipv4Addr::new(10, 2, (nl / 250) as u8, (nl % 250) as u8 + 2),
                        ip6: rng
                            .chance(0.3)
                            .then(|| Ipv6Addr::new(0xfd00, 0x2, 0, 0, 0, 0, 0, nl as u16 + 2)),
                        mac: [0x52, 0x54, 0x00, m[0], m[1], m[2]],
                        vlan: Some(20),
                        edr,
                        user: if desktop {
                            MAC_USERS[(nl as usize + 7) % MAC_USERS.len()].to_string()
                        } else {
                            "deploy".into()
                        },
                        desktop,
                        esxi: None,
                        resolver,
                        eph: (32768, 60999),
                    }
                }
                _ => {
                    nv += 1;
                    let role = WORDS[rng.below(WORDS.len() as u64) as usize];
                    Host {
                        name: format!(
                            "{}-{nv}",
                            ["db", "app", "web", "cache", role][nv as usize % 5]
                        ),
                        platform: Platform::EsxiVm,
                        ip4: Ipv4Addr::new(10, 3, 1 + (nv / 250) as u8, (nv % 250) as u8 + 2),
                        ip6: None,
                        mac: [0x00, 0x50, 0x56, m[0] & 0x3f, m[1], m[2]],
                        vlan: Some(30),
                        edr,
                        user: "svc".into(),
                        desktop: false,
                        esxi: Some(esxi_idx[(nv as usize - 1) / 8]),
                        resolver,
                        eph: (32768, 60999),
                    }
                }
            };
            self.hosts.push(h);
        }
    }

    /// A fresh public IPv4 address that no other name uses, from which no DNS-calculation
    /// formula yields a service port: benign traffic to standard ports never looks
    /// calculated, so only planted instances do.
    pub fn public_v4(&mut self, rng: &mut Rng) -> Ipv4Addr {
        loop {
            let a = Ipv4Addr::from(rng.next_u32());
            if usable(a) && self.used_v4.insert(a) {
                return a;
            }
        }
    }

    /// `n` addresses in one public /24 (a CDN edge or a provider's block).
    pub fn public_block(&mut self, rng: &mut Rng, n: usize) -> Vec<Ipv4Addr> {
        let base = u32::from(self.public_v4(rng)) & 0xffff_ff00;
        let first = rng.range(2, 120) as u32;
        let mut out = Vec::with_capacity(n);
        for i in first..255 {
            let a = Ipv4Addr::from(base | i);
            if out.len() < n && usable(a) && self.used_v4.insert(a) {
                out.push(a);
            }
        }
        while out.len() < n {
            let a = self.public_v4(rng);
            out.push(a);
        }
        out
    }

    pub fn claim_v4(&mut self, a: Ipv4Addr) -> bool {
        self.used_v4.insert(a)
    }

    pub fn public_v6(rng: &mut Rng) -> Ipv6Addr {
        let prefixes = [0x2606u16, 0x2a00, 0x2a03, 0x2600, 0x2a04, 0x2001];
        let p = *rng.pick(&prefixes);
        let second = if p == 0x2001 {
            0x4860
        } else {
            rng.range(0x1000, 0xfff0) as u16
        };
        Ipv6Addr::new(
            p,
            second,
            rng.next_u32() as u16,
            rng.next_u32() as u16,
            0,
            0,
            rng.next_u32() as u16,
            rng.next_u32() as u16,
        )
    }

    pub fn name_id(&self, name: &str) -> Option<u32> {
        self.name_idx.get(name).copied()
    }

    pub fn add_name(&mut self, rec: NameRec) -> u32 {
        if let Some(id) = self.name_idx.get(&rec.name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.name_idx.insert(rec.name.clone(), id);
        self.names.push(rec);
        id
    }

    /// A plain public name: a few addresses, ordinary TTL.
    pub fn simple_name(&mut self, rng: &mut Rng, name: &str, n: usize, ttl: u32) -> u32 {
        if let Some(id) = self.name_id(name) {
            return id;
        }
        let v4 = self.public_block(rng, n);
        let v6 = if rng.chance(0.5) {
            vec![Self::public_v6(rng)]
        } else {
            Vec::new()
        };
        let rec = NameRec {
            name: name.to_string(),
            cnames: Vec::new(),
            v4,
            v6,
            ttl,
            per_answer: n,
            rtt_ms: rng.log_uniform(8.0, 160.0),
            sttl: *rng.pick(&[48u8, 52, 54, 56, 57, 115, 118, 241, 243]),
        };
        self.add_name(rec)
    }

    /// A CDN-hosted name: CNAME chain, many rotating addresses, low TTL.
    pub fn cdn_name(&mut self, rng: &mut Rng, name: &str) -> u32 {
        if let Some(id) = self.name_id(name) {
            return id;
        }
        let tag: String = (0..8)
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect();
        let num = rng.range(1000, 9999);
        let cnames = match rng.below(3) {
            0 => vec![format!("d{tag}.cloudfront.net")],
            1 => vec![
                format!("{name}.edgekey.net"),
                format!("e{num}.a.akamaiedge.net"),
            ],
            _ => vec![format!("dualstack.{tag}.map.fastly.net")],
        };
        let n = rng.range(4, 8) as usize;
        let v4 = self.public_block(rng, n + 4);
        let v6 = (0..2).map(|_| Self::public_v6(rng)).collect();
        let rec = NameRec {
            name: name.to_string(),
            cnames,
            v4,
            v6,
            ttl: *rng.pick(&[20u32, 30, 60, 60, 120]),
            per_answer: n,
            rtt_ms: rng.log_uniform(3.0, 30.0),
            sttl: *rng.pick(&[56u8, 57, 58, 59, 60]),
        };
        self.add_name(rec)
    }

    /// Split-horizon name: a corporate name the internal resolvers answer with 10.x.
    pub fn corp_name(&mut self, rng: &mut Rng, name: &str) -> u32 {
        if let Some(id) = self.name_id(name) {
            return id;
        }
        let rec = NameRec {
            name: name.to_string(),
            cnames: Vec::new(),
            v4: vec![Ipv4Addr::new(
                10,
                9,
                rng.range(0, 3) as u8,
                rng.range(2, 250) as u8,
            )],
            v6: Vec::new(),
            ttl: 300,
            per_answer: 1,
            rtt_ms: rng.uniform(0.3, 2.0),
            sttl: 63,
        };
        self.add_name(rec)
    }

    pub fn add_proc(&mut self, p: Proc) -> usize {
        self.procs.push(p);
        self.procs.len() - 1
    }

    /// A process on `host`; pids are drawn, the start time precedes the first use.
    #[allow(clippy::too_many_arguments)]
    pub fn proc(
        &mut self,
        rng: &mut Rng,
        host: usize,
        name: &str,
        exe: &str,
        user: &str,
        parent: &str,
        launchd: Option<Launchd>,
        started: Ts,
    ) -> usize {
        let parent_pid = if parent == "launchd" || parent == "systemd" {
            1
        } else {
            rng.range(300, 30000) as u32
        };
        let signed = (self.hosts[host].platform == Platform::Macos)
            .then(|| !exe.starts_with("/Users/") && !exe.starts_with("/tmp"));
        self.add_proc(Proc {
            host,
            pid: rng.range(300, 99_000) as u32,
            name: name.to_string(),
            exe: exe.to_string(),
            user: user.to_string(),
            parent: (parent_pid, parent.to_string()),
            launchd,
            signed,
            started,
        })
    }

    pub fn mac_of(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.hosts
            .iter()
            .find(|h| IpAddr::V4(h.ip4) == ip || h.ip6.map(IpAddr::V6) == Some(ip))
            .map(|h| h.mac)
    }

    pub fn hosts_of(&self, p: Platform) -> Vec<usize> {
        (0..self.hosts.len())
            .filter(|&i| self.hosts[i].platform == p)
            .collect()
    }

    /// Inside the monitored network (RFC 1918 or our ULA prefix).
    pub fn is_internal(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => a.is_private(),
            IpAddr::V6(a) => (a.segments()[0] & 0xfe00) == 0xfc00,
        }
    }
}

fn usable(a: Ipv4Addr) -> bool {
    !is_reserved_v4(a)
        && !derived_ports(a).any(|p| p <= 65535 && STANDARD_PORTS.contains(&(p as u16)))
}

pub fn launchd_agent(user: &str, label: &str) -> Launchd {
    Launchd {
        label: label.to_string(),
        plist: format!("/Users/{user}/Library/LaunchAgents/{label}.plist"),
        kind: "agent",
    }
}

pub fn launchd_daemon(label: &str, system: bool) -> Launchd {
    let dir = if system {
        "/System/Library/LaunchDaemons"
    } else {
        "/Library/LaunchDaemons"
    };
    Launchd {
        label: label.to_string(),
        plist: format!("{dir}/{label}.plist"),
        kind: "daemon",
    }
}
