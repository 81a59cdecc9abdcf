//! Benign background, including the traps the ATT&CK tuning advice warns about: CDNs with
//! rotating low-TTL answers, near-regular update agents and NTP (fixed 48-byte packets),
//! constant-size keepalives, telemetry on a schedule, VPNs, STUN, developer ports, voice
//! and game servers on high ports of resolved addresses, passive FTP, split-horizon names.

use std::net::{IpAddr, Ipv4Addr};

use super::calc::is_derived_port;
use super::plan::{resolve, ConnStep, DnsCache, Episode, Step};
use super::render::{Close, Exchange, Msg, Style};
use super::rng::Rng;
use super::world::{launchd_agent, launchd_daemon, Platform, World, WORDS};
use crate::time::{Dur, Ts};

/// Payload grammar of a benign protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tls,
    Opaque,
    Ntp,
    Mqtt,
    Wireguard,
    NatT,
    OpenVpn,
    Stun,
    Ssh,
    FtpData,
}

#[derive(Clone, Debug)]
pub enum Kind {
    /// Sessions of lookups and HTTPS to many names.
    Browser { sites: Vec<u32>, mean_gap: f64 },
    /// Near-regular check-ins (update agents, NTP, telemetry).
    Scheduled {
        name: u32,
        port: u16,
        udp: bool,
        proto: Proto,
        period: f64,
        jitter: f64,
        up: (u32, u32),
        down: (u32, u32),
    },
    /// One long connection with constant-size keepalives and occasional traffic.
    Keepalive {
        name: u32,
        port: u16,
        udp: bool,
        proto: Proto,
        interval: f64,
        ka: (u32, u32),
        chat: f64,
    },
    /// Sporadic interactive sessions (ssh, git, databases, dev servers, sync).
    Sessions {
        names: Vec<u32>,
        ports: Vec<u16>,
        udp: bool,
        proto: Proto,
        mean_gap: f64,
        turns: (u32, u32),
        up: (u32, u32),
        down: (u32, u32),
    },
    /// Voice/game: a resolved server, then UDP to a high port not derived from it.
    HighPort {
        names: Vec<u32>,
        lo: u16,
        hi: u16,
        mean_gap: f64,
    },
    /// FTP: control on 21, data to the port of the PASV reply.
    PassiveFtp { name: u32, mean_gap: f64 },
    /// LAN discovery broadcasts of a fixed size (Dropbox LAN sync, UDP 17500).
    LanBroadcast { port: u16, interval: f64 },
    /// Planned steps (malicious scenarios).
    Planned,
}

pub struct Activity {
    pub host: usize,
    pub proc: Option<usize>,
    pub kind: Kind,
}

fn size(rng: &mut Rng, r: (u32, u32)) -> u32 {
    if r.0 >= r.1 {
        r.0
    } else {
        rng.log_uniform(r.0 as f64, r.1 as f64) as u32
    }
}

fn ntp(client: bool, rng: &mut Rng) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0] = if client { 0x23 } else { 0x24 };
    if !client {
        b[1] = 2;
        b[12..16].copy_from_slice(&[17, 253, 34, 123]);
    }
    b[2] = 6;
    b[3] = 0xe9;
    let secs = rng.next_u32();
    b[40..44].copy_from_slice(&secs.to_be_bytes());
    b[44..48].copy_from_slice(&rng.next_u32().to_be_bytes());
    if !client {
        b[16..20].copy_from_slice(&secs.to_be_bytes());
        b[32..36].copy_from_slice(&secs.to_be_bytes());
        b[24..28].copy_from_slice(&secs.to_be_bytes());
    }
    b
}

fn stun(request: bool, rng: &mut Rng, addr: Ipv4Addr) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    b.extend_from_slice(&(if request { 0x0001u16 } else { 0x0101 }).to_be_bytes());
    b.extend_from_slice(&(if request { 0u16 } else { 12 }).to_be_bytes());
    b.extend_from_slice(&0x2112_a442u32.to_be_bytes());
    for _ in 0..3 {
        b.extend_from_slice(&rng.next_u32().to_be_bytes());
    }
    if !request {
        b.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
        b.extend_from_slice(&((rng.range(1024, 65535) as u16) ^ 0x2112).to_be_bytes());
        b.extend_from_slice(&(u32::from(addr) ^ 0x2112_a442).to_be_bytes());
    }
    b
}

fn mqtt_connect(rng: &mut Rng) -> Vec<u8> {
    let id = format!("mosq-{:08x}", rng.next_u32());
    let mut var = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    var.extend_from_slice(&(id.len() as u16).to_be_bytes());
    var.extend_from_slice(id.as_bytes());
    let mut b = vec![0x10, var.len() as u8];
    b.extend_from_slice(&var);
    b
}

fn mqtt_publish(rng: &mut Rng, n: u32) -> Vec<u8> {
    let topic = b"sensors/office/env";
    let body = n.clamp(4, 100) as usize;
    let mut b = vec![0x30, (2 + topic.len() + body) as u8, 0, topic.len() as u8];
    b.extend_from_slice(topic);
    b.extend((0..body).map(|_| b'0' + rng.below(10) as u8));
    b
}

fn wireguard(kind: u8, rng: &mut Rng, data: u32) -> Vec<u8> {
    let len = match kind {
        1 => 148,
        2 => 92,
        _ => 32 + (data.div_ceil(16) * 16) as usize,
    };
    let mut b = vec![0u8; len];
    b[0] = kind;
    rng.fill(&mut b[4..]);
    b
}

/// One message of `proto`; `turn` counts the connection's exchanges.
fn msg(proto: Proto, client: bool, turn: usize, n: u32, rng: &mut Rng, peer: Ipv4Addr) -> Msg {
    // Datagram protocols: one message per datagram, below the path MTU.
    let n = if matches!(proto, Proto::OpenVpn | Proto::Wireguard | Proto::NatT) {
        n.min(1300)
    } else {
        n
    };
    match proto {
        Proto::Tls | Proto::Opaque | Proto::FtpData => Msg::Sized(n.max(6)),
        Proto::Ntp => Msg::Bytes(ntp(client, rng)),
        Proto::Stun => Msg::Bytes(stun(client, rng, peer)),
        Proto::Mqtt => Msg::Bytes(match (turn, client, n) {
            (0, true, _) => mqtt_connect(rng),
            (0, false, _) => vec![0x20, 0x02, 0x00, 0x00],
            (_, true, 2) => vec![0xc0, 0x00],
            (_, false, 2) => vec![0xd0, 0x00],
            (_, _, n) => mqtt_publish(rng, n),
        }),
        Proto::Wireguard => Msg::Bytes(match (turn, client) {
            (0, true) => wireguard(1, rng, 0),
            (0, false) => wireguard(2, rng, 0),
            _ => wireguard(4, rng, if n <= 32 { 0 } else { n }),
        }),
        Proto::NatT => Msg::Bytes(if n <= 1 {
            vec![0xff]
        } else {
            let mut b = vec![0u8; (n.max(40) as usize).div_ceil(4) * 4];
            rng.fill(&mut b[8..]);
            b[0..4].copy_from_slice(&[0xc3, 0x5a, 0x10, 0x07]);
            b[4..8].copy_from_slice(&(turn as u32 + 1).to_be_bytes());
            b
        }),
        Proto::OpenVpn => {
            // P_DATA_V2 (opcode 9, key 0) with a 24-bit peer id, then ciphertext.
            let mut b = vec![0u8; n.max(24) as usize];
            rng.fill(&mut b[4..]);
            b[0..4].copy_from_slice(&[0x48, 0x00, 0x00, 0x01]);
            Msg::Bytes(b)
        }
        Proto::Ssh => {
            if turn == 0 {
                Msg::Bytes(if client {
                    b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()
                } else {
                    b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10\r\n".to_vec()
                })
            } else {
                Msg::Sized(n.max(36))
            }
        }
    }
}

fn style(proto: Proto, port: u16) -> Style {
    match (proto, port) {
        (Proto::Tls, _) => Style::Tls,
        (_, 80 | 8080) => Style::Http,
        (_, 9418) => Style::PktLine,
        _ => Style::Opaque,
    }
}

/// Picks a port in `lo..=hi` that no DNS-calculation formula derives from `addr`.
pub fn underived_port(rng: &mut Rng, addr: IpAddr, lo: u16, hi: u16) -> u16 {
    loop {
        let p = rng.range_u16(lo, hi);
        match addr {
            IpAddr::V4(a) if is_derived_port(a, p) => continue,
            _ => return p,
        }
    }
}

fn site_name(rng: &mut Rng) -> String {
    let tlds = ["com", "com", "net", "org", "io", "de", "co.uk", "dev"];
    format!(
        "www.{}{}.{}",
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.pick(&tlds)
    )
}

const POPULAR: &[&str] = &[
    "www.google.com",
    "mail.google.com",
    "www.youtube.com",
    "github.com",
    "stackoverflow.com",
    "en.wikipedia.org",
    "news.ycombinator.com",
    "docs.rs",
    "app.slack.com",
    "www.linkedin.com",
    "www.reddit.com",
    "www.bbc.co.uk",
    "www.nytimes.com",
    "login.microsoftonline.com",
    "outlook.office365.com",
    "www.apple.com",
    "zoom.us",
    "www.dropbox.com",
    "calendar.google.com",
    "www.figma.com",
    "www.notion.so",
    "www.atlassian.com",
];

const CDN_ASSETS: &[&str] = &[
    "fonts.googleapis.com",
    "fonts.gstatic.com",
    "ajax.googleapis.com",
    "cdn.jsdelivr.net",
    "static.xx.fbcdn.net",
    "assets.website-files.com",
    "i.ytimg.com",
    "cdnjs.cloudflare.com",
    "images.ctfassets.net",
    "s.yimg.com",
];

pub struct Catalog {
    sites: Vec<u32>,
    corp: Vec<u32>,
}

fn catalog(world: &mut World, rng: &mut Rng) -> Catalog {
    let mut sites = Vec::new();
    for n in POPULAR {
        let (k, ttl) = (
            rng.range(1, 3) as usize,
            *rng.pick(&[60, 300, 300, 1800, 3600]),
        );
        let id = if rng.chance(0.5) {
            world.cdn_name(rng, n)
        } else {
            world.simple_name(rng, n, k, ttl)
        };
        sites.push(id);
    }
    for n in CDN_ASSETS {
        sites.push(world.cdn_name(rng, n));
    }
    for _ in 0..(30 + world.hosts.len()) {
        let n = site_name(rng);
        let (k, ttl) = (
            rng.range(1, 2) as usize,
            *rng.pick(&[300, 600, 3600, 86400]),
        );
        let id = if rng.chance(0.4) {
            world.cdn_name(rng, &n)
        } else {
            world.simple_name(rng, &n, k, ttl)
        };
        sites.push(id);
    }
    let co = format!("{}{}", rng.pick(WORDS), rng.pick(WORDS));
    let corp = ["wiki", "jira", "intranet", "git", "vpn-portal"]
        .iter()
        .map(|s| world.corp_name(rng, &format!("{s}.corp.{co}.com")))
        .collect();
    Catalog { sites, corp }
}

struct Planner<'a> {
    world: &'a mut World,
    rng: &'a mut Rng,
    acts: &'a mut Vec<Activity>,
    eps: &'a mut Vec<Episode>,
}

impl Planner<'_> {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        host: usize,
        pname: &str,
        exe: &str,
        user: &str,
        parent: &str,
        launchd: Option<super::world::Launchd>,
        kind: Kind,
    ) {
        let started = Ts(self.world.start.0 - self.rng.range(60, 86_400) as i64 * 1_000_000_000);
        let proc = self
            .world
            .proc(self.rng, host, pname, exe, user, parent, launchd, started);
        self.schedule(host, proc, kind);
    }

    /// Another activity of the process added last (one app, several habits).
    fn again(&mut self, host: usize, kind: Kind) {
        let proc = self
            .acts
            .last()
            .and_then(|a| a.proc)
            .expect("a process was added");
        self.schedule(host, proc, kind);
    }

    fn schedule(&mut self, host: usize, proc: usize, kind: Kind) {
        let act = self.acts.len() as u32;
        let (s, e) = (self.world.start.0, self.world.end.0);
        let secs = |x: f64| (x * 1e9) as i64;
        let mut times = Vec::new();
        match &kind {
            Kind::Browser { mean_gap, .. }
            | Kind::Sessions { mean_gap, .. }
            | Kind::HighPort { mean_gap, .. }
            | Kind::PassiveFtp { mean_gap, .. } => {
                let mut t = s + secs(self.rng.exp(*mean_gap));
                while t < e {
                    times.push(t);
                    t += secs(self.rng.exp(*mean_gap)).max(1_000_000_000);
                }
            }
            Kind::Scheduled { period, jitter, .. } => {
                let mut t = s + secs(self.rng.uniform(0.0, *period));
                while t < e {
                    times.push(t);
                    t += secs(period * (1.0 + self.rng.uniform(-jitter, *jitter)));
                }
            }
            Kind::Keepalive { .. } | Kind::LanBroadcast { .. } => {
                times.push(s + secs(self.rng.uniform(0.0, 90.0)))
            }
            Kind::Planned => {}
        }
        for t in times {
            self.eps.push(Episode {
                start: Ts(t),
                act,
                seed: self.rng.next_u64(),
                instance: None,
                steps: None,
            });
        }
        self.acts.push(Activity {
            host,
            proc: Some(proc),
            kind,
        });
    }
}

/// Plans every host's benign activities and their episode start times.
pub fn plan(
    world: &mut World,
    rng: &mut Rng,
    acts: &mut Vec<Activity>,
    eps: &mut Vec<Episode>,
) -> Catalog {
    let cat = catalog(world, rng);
    let w = &mut *world;
    let n = |w: &mut World, rng: &mut Rng, name: &str, ttl: u32| w.simple_name(rng, name, 1, ttl);
    let swscan = w.cdn_name(rng, "swscan.apple.com");
    let keystone = n(w, rng, "tools.google.com", 300);
    let time_apple = w.simple_name(rng, "time.apple.com", 4, 900);
    let courier = w.simple_name(rng, "courier.push.apple.com", 3, 60);
    let cloudsink = n(w, rng, "ts01-b.cloudsink.net", 60);
    let slack = n(w, rng, "wss-primary.slack.com", 60);
    let dropbox = n(w, rng, "bolt.dropbox.com", 300);
    let dropbox_up = w.cdn_name(rng, "content.dropboxapi.com");
    let zoom = w.simple_name(rng, "zoom.us", 2, 300);
    let github = n(w, rng, "github.com", 60);
    let kernel = n(w, rng, "git.kernel.org", 3600);
    let broker = n(w, rng, "test.mosquitto.org", 3600);
    let nm = format!("vpn.{}.net", rng.pick(WORDS));
    let wg = n(w, rng, &nm, 3600);
    let xmpp = n(w, rng, "chat.jabber.example.org", 3600);
    let discord = (0..3)
        .map(|i| {
            let nm = format!(
                "{}{}.discord.media",
                ["frankfurt", "rotterdam", "us-east"][i],
                rng.range(1000, 9999)
            );
            n(w, rng, &nm, 60)
        })
        .collect::<Vec<_>>();
    let steam = (0..2)
        .map(|i| n(w, rng, &format!("ams{}.valve.net", i + 1), 300))
        .collect::<Vec<_>>();
    let nm = format!("db.{}cloud.net", rng.pick(WORDS));
    let db = n(w, rng, &nm, 300);
    let nm = format!("api.{}{}.dev", rng.pick(WORDS), rng.pick(WORDS));
    let devapi = n(w, rng, &nm, 300);
    let ubuntu = w.simple_name(rng, "archive.ubuntu.com", 3, 60);
    let ubuntu_ntp = w.simple_name(rng, "ntp.ubuntu.com", 4, 60);
    let pool_ntp = w.simple_name(rng, "pool.ntp.org", 4, 150);
    let datadog = n(w, rng, "intake.datadoghq.com", 300);
    let docker = w.cdn_name(rng, "registry-1.docker.io");
    let nm = format!("{}-backups.s3.amazonaws.com", rng.pick(WORDS));
    let s3 = w.cdn_name(rng, &nm);
    let nm = format!("ipsec.{}-corp.com", rng.pick(WORDS));
    let ipsec = n(w, rng, &nm, 3600);
    let ftp = n(w, rng, "ftp.gnu.org", 3600);

    let mut p = Planner {
        world,
        rng,
        acts,
        eps,
    };
    for h in 0..p.world.hosts.len() {
        let host = p.world.hosts[h].clone();
        let user = host.user.clone();
        let home = format!("/Users/{user}");
        let r = |p: &mut Planner, x: f64| p.rng.chance(x);
        match host.platform {
            Platform::Macos => {
                let mut sites: Vec<u32> = (0..p.rng.range(8, 25))
                    .map(|_| *p.rng.pick(&cat.sites))
                    .collect();
                sites.push(*p.rng.pick(&cat.corp));
                let (bn, be) = match p.rng.below(3) {
                    0 => (
                        "Safari",
                        "/Applications/Safari.app/Contents/MacOS/Safari".to_string(),
                    ),
                    1 => (
                        "firefox",
                        "/Applications/Firefox.app/Contents/MacOS/firefox".to_string(),
                    ),
                    _ => (
                        "Google Chrome",
                        "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome".to_string(),
                    ),
                };
                let gap = p.rng.uniform(40.0, 200.0);
                p.add(
                    h,
                    bn,
                    &be,
                    &user,
                    "launchd",
                    None,
                    Kind::Browser {
                        sites,
                        mean_gap: gap,
                    },
                );
                let period = p.rng.uniform(900.0, 3600.0);
                p.add(h, "softwareupdated", "/System/Library/PrivateFrameworks/SoftwareUpdateCore.framework/Versions/A/Resources/softwareupdated", "root", "launchd",
                    Some(launchd_daemon("com.apple.softwareupdated", true)),
                    Kind::Scheduled { name: swscan, port: 443, udp: false, proto: Proto::Tls, period, jitter: 0.03, up: (600, 1500), down: (2000, 90_000) });
                let poll = *p.rng.pick(&[64.0, 128.0, 256.0, 512.0]);
                p.add(
                    h,
                    "timed",
                    "/usr/libexec/timed",
                    "root",
                    "launchd",
                    Some(launchd_daemon("com.apple.timed", true)),
                    Kind::Scheduled {
                        name: time_apple,
                        port: 123,
                        udp: true,
                        proto: Proto::Ntp,
                        period: poll,
                        jitter: 0.01,
                        up: (48, 48),
                        down: (48, 48),
                    },
                );
                let ka = p.rng.range(40, 90) as u32;
                let iv = p.rng.uniform(240.0, 900.0);
                p.add(
                    h,
                    "apsd",
                    "/System/Library/PrivateFrameworks/ApplePushService.framework/apsd",
                    "root",
                    "launchd",
                    Some(launchd_daemon("com.apple.apsd", true)),
                    Kind::Keepalive {
                        name: courier,
                        port: 5223,
                        udp: false,
                        proto: Proto::Tls,
                        interval: iv,
                        ka: (ka, ka),
                        chat: 0.1,
                    },
                );
                if r(&mut p, 0.6) {
                    let period = p.rng.uniform(1800.0, 3600.0);
                    p.add(h, "GoogleSoftwareUpdateAgent", &format!("{home}/Library/Google/GoogleSoftwareUpdate/GoogleSoftwareUpdate.bundle/Contents/Resources/GoogleSoftwareUpdateAgent.app/Contents/MacOS/GoogleSoftwareUpdateAgent"),
                        &user, "launchd", Some(launchd_agent(&user, "com.google.keystone.agent")),
                        Kind::Scheduled { name: keystone, port: 443, udp: false, proto: Proto::Tls, period, jitter: 0.02, up: (900, 2500), down: (400, 3000) });
                }
                if r(&mut p, 0.5) {
                    let period = p.rng.uniform(30.0, 120.0);
                    p.add(
                        h,
                        "falcond",
                        "/Library/CS/falcond",
                        "root",
                        "launchd",
                        Some(launchd_daemon("com.crowdstrike.falcond", false)),
                        Kind::Scheduled {
                            name: cloudsink,
                            port: 443,
                            udp: false,
                            proto: Proto::Tls,
                            period,
                            jitter: 0.1,
                            up: (300, 12_000),
                            down: (90, 700),
                        },
                    );
                }
                if r(&mut p, 0.4) {
                    let ka = p.rng.range(30, 45) as u32;
                    p.add(
                        h,
                        "Slack",
                        "/Applications/Slack.app/Contents/MacOS/Slack",
                        &user,
                        "launchd",
                        None,
                        Kind::Keepalive {
                            name: slack,
                            port: 443,
                            udp: false,
                            proto: Proto::Tls,
                            interval: 30.0,
                            ka: (ka, ka),
                            chat: 0.15,
                        },
                    );
                }
                if r(&mut p, 0.3) {
                    p.add(
                        h,
                        "Dropbox",
                        "/Applications/Dropbox.app/Contents/MacOS/Dropbox",
                        &user,
                        "launchd",
                        None,
                        Kind::Keepalive {
                            name: dropbox,
                            port: 443,
                            udp: false,
                            proto: Proto::Tls,
                            interval: 60.0,
                            ka: (120, 120),
                            chat: 0.05,
                        },
                    );
                    p.again(
                        h,
                        Kind::LanBroadcast {
                            port: 17500,
                            interval: 30.0,
                        },
                    );
                    p.again(
                        h,
                        Kind::Sessions {
                            names: vec![dropbox_up],
                            ports: vec![443],
                            udp: false,
                            proto: Proto::Tls,
                            mean_gap: 900.0,
                            turns: (1, 4),
                            up: (2000, 4_000_000),
                            down: (200, 800),
                        },
                    );
                }
                if r(&mut p, 0.3) {
                    p.add(
                        h,
                        "zoom.us",
                        "/Applications/zoom.us.app/Contents/MacOS/zoom.us",
                        &user,
                        "launchd",
                        None,
                        Kind::Sessions {
                            names: vec![zoom],
                            ports: vec![3478, 8801],
                            udp: true,
                            proto: Proto::Stun,
                            mean_gap: 1800.0,
                            turns: (2, 6),
                            up: (20, 20),
                            down: (32, 32),
                        },
                    );
                }
                if r(&mut p, 0.3) {
                    p.add(
                        h,
                        "ssh",
                        "/usr/bin/ssh",
                        &user,
                        "zsh",
                        None,
                        Kind::Sessions {
                            names: vec![github],
                            ports: vec![22],
                            udp: false,
                            proto: Proto::Ssh,
                            mean_gap: 1200.0,
                            turns: (4, 30),
                            up: (36, 400),
                            down: (36, 3000),
                        },
                    );
                }
                if r(&mut p, 0.25) {
                    p.add(
                        h,
                        "git",
                        "/usr/bin/git",
                        &user,
                        "zsh",
                        None,
                        Kind::Sessions {
                            names: vec![kernel],
                            ports: vec![9418],
                            udp: false,
                            proto: Proto::Opaque,
                            mean_gap: 2400.0,
                            turns: (1, 3),
                            up: (100, 2000),
                            down: (2000, 900_000),
                        },
                    );
                }
                if r(&mut p, 0.15) {
                    p.add(
                        h,
                        "mosquitto_sub",
                        "/opt/homebrew/bin/mosquitto_sub",
                        &user,
                        "zsh",
                        None,
                        Kind::Keepalive {
                            name: broker,
                            port: 1883,
                            udp: false,
                            proto: Proto::Mqtt,
                            interval: 60.0,
                            ka: (2, 2),
                            chat: 0.3,
                        },
                    );
                }
                if r(&mut p, 0.2) {
                    p.add(h, "WireGuardNetworkExtension", "/Applications/WireGuard.app/Contents/PlugIns/WireGuardNetworkExtension.appex/Contents/MacOS/WireGuardNetworkExtension", "root", "launchd", None,
                        Kind::Keepalive { name: wg, port: 51820, udp: true, proto: Proto::Wireguard, interval: 25.0, ka: (32, 32), chat: 0.2 });
                }
                if r(&mut p, 0.1) {
                    p.add(
                        h,
                        "Adium",
                        "/Applications/Adium.app/Contents/MacOS/Adium",
                        &user,
                        "launchd",
                        None,
                        Kind::Keepalive {
                            name: xmpp,
                            port: 5222,
                            udp: false,
                            proto: Proto::Tls,
                            interval: 90.0,
                            ka: (37, 37),
                            chat: 0.2,
                        },
                    );
                }
                if r(&mut p, 0.15) {
                    p.add(
                        h,
                        "Discord",
                        "/Applications/Discord.app/Contents/MacOS/Discord",
                        &user,
                        "launchd",
                        None,
                        Kind::HighPort {
                            names: discord.clone(),
                            lo: 50000,
                            hi: 65535,
                            mean_gap: 3600.0,
                        },
                    );
                }
                if r(&mut p, 0.3) {
                    let (nm, exe, port, names) = match p.rng.below(3) {
                        0 => ("psql", "/opt/homebrew/bin/psql", 5432, vec![db]),
                        1 => ("node", "/opt/homebrew/bin/node", 3000, vec![devapi]),
                        _ => ("curl", "/usr/bin/curl", 8080, vec![devapi]),
                    };
                    p.add(
                        h,
                        nm,
                        exe,
                        &user,
                        "zsh",
                        None,
                        Kind::Sessions {
                            names,
                            ports: vec![port],
                            udp: false,
                            proto: Proto::Opaque,
                            mean_gap: 900.0,
                            turns: (1, 8),
                            up: (80, 3000),
                            down: (100, 40_000),
                        },
                    );
                    p.add(
                        h,
                        "curl",
                        "/usr/bin/curl",
                        &user,
                        "zsh",
                        None,
                        Kind::Sessions {
                            names: cat.corp.clone(),
                            ports: vec![443, 8443],
                            udp: false,
                            proto: Proto::Tls,
                            mean_gap: 1500.0,
                            turns: (1, 2),
                            up: (200, 1500),
                            down: (300, 30_000),
                        },
                    );
                }
            }
            Platform::Linux | Platform::EsxiVm => {
                let ntp_name = if r(&mut p, 0.5) { ubuntu_ntp } else { pool_ntp };
                let (nn, ne) = if r(&mut p, 0.5) {
                    ("chronyd", "/usr/sbin/chronyd")
                } else {
                    ("systemd-timesyncd", "/lib/systemd/systemd-timesyncd")
                };
                let poll = *p.rng.pick(&[64.0, 128.0, 256.0, 1024.0]);
                let ntp_user = if nn == "chronyd" {
                    "_chrony"
                } else {
                    "systemd-timesync"
                };
                p.add(
                    h,
                    nn,
                    ne,
                    ntp_user,
                    "systemd",
                    None,
                    Kind::Scheduled {
                        name: ntp_name,
                        port: 123,
                        udp: true,
                        proto: Proto::Ntp,
                        period: poll,
                        jitter: 0.02,
                        up: (48, 48),
                        down: (48, 48),
                    },
                );
                let period = p.rng.uniform(1800.0, 4000.0);
                p.add(
                    h,
                    "http",
                    "/usr/lib/apt/methods/http",
                    "_apt",
                    "apt-get",
                    None,
                    Kind::Scheduled {
                        name: ubuntu,
                        port: 80,
                        udp: false,
                        proto: Proto::Opaque,
                        period,
                        jitter: 0.3,
                        up: (180, 400),
                        down: (500, 2_000_000),
                    },
                );
                if r(&mut p, 0.4) {
                    p.add(
                        h,
                        "unattended-upgr",
                        "/usr/bin/unattended-upgrade",
                        "root",
                        "systemd",
                        None,
                        Kind::Sessions {
                            names: vec![ubuntu],
                            ports: vec![80],
                            udp: false,
                            proto: Proto::Opaque,
                            mean_gap: 7200.0,
                            turns: (1, 5),
                            up: (150, 400),
                            down: (10_000, 3_000_000),
                        },
                    );
                }
                if !host.desktop || r(&mut p, 0.3) {
                    let period = *p.rng.pick(&[10.0, 15.0, 15.0, 20.0]);
                    p.add(
                        h,
                        "agent",
                        "/opt/datadog-agent/bin/agent/agent",
                        "dd-agent",
                        "systemd",
                        None,
                        Kind::Scheduled {
                            name: datadog,
                            port: 443,
                            udp: false,
                            proto: Proto::Tls,
                            period,
                            jitter: 0.02,
                            up: (700, 25_000),
                            down: (60, 300),
                        },
                    );
                }
                if host.desktop {
                    let mut sites: Vec<u32> = (0..p.rng.range(6, 18))
                        .map(|_| *p.rng.pick(&cat.sites))
                        .collect();
                    sites.push(*p.rng.pick(&cat.corp));
                    let gap = p.rng.uniform(60.0, 240.0);
                    p.add(
                        h,
                        "firefox",
                        "/usr/lib/firefox/firefox",
                        &user,
                        "systemd",
                        None,
                        Kind::Browser {
                            sites,
                            mean_gap: gap,
                        },
                    );
                    if r(&mut p, 0.4) {
                        p.add(
                            h,
                            "openvpn",
                            "/usr/sbin/openvpn",
                            "root",
                            "systemd",
                            None,
                            Kind::Keepalive {
                                name: wg,
                                port: 1194,
                                udp: true,
                                proto: Proto::OpenVpn,
                                interval: 10.0,
                                ka: (41, 41),
                                chat: 0.3,
                            },
                        );
                    } else {
                        p.add(
                            h,
                            "charon",
                            "/usr/lib/ipsec/charon",
                            "root",
                            "systemd",
                            None,
                            Kind::Keepalive {
                                name: ipsec,
                                port: 4500,
                                udp: true,
                                proto: Proto::NatT,
                                interval: 20.0,
                                ka: (1, 1),
                                chat: 0.3,
                            },
                        );
                    }
                    if r(&mut p, 0.3) {
                        p.add(
                            h,
                            "steam",
                            &format!("/home/{user}/.steam/ubuntu12_32/steam"),
                            &user,
                            "systemd",
                            None,
                            Kind::HighPort {
                                names: steam.clone(),
                                lo: 27015,
                                hi: 27050,
                                mean_gap: 3600.0,
                            },
                        );
                    }
                    if r(&mut p, 0.3) {
                        p.add(
                            h,
                            "lftp",
                            "/usr/bin/lftp",
                            &user,
                            "bash",
                            None,
                            Kind::PassiveFtp {
                                name: ftp,
                                mean_gap: 2400.0,
                            },
                        );
                    }
                    if r(&mut p, 0.3) {
                        p.add(
                            h,
                            "mosquitto_sub",
                            "/usr/bin/mosquitto_sub",
                            &user,
                            "bash",
                            None,
                            Kind::Keepalive {
                                name: broker,
                                port: 1883,
                                udp: false,
                                proto: Proto::Mqtt,
                                interval: 30.0,
                                ka: (2, 2),
                                chat: 0.3,
                            },
                        );
                    }
                }
                p.add(
                    h,
                    "ssh",
                    "/usr/bin/ssh",
                    &user,
                    "bash",
                    None,
                    Kind::Sessions {
                        names: vec![github],
                        ports: vec![22],
                        udp: false,
                        proto: Proto::Ssh,
                        mean_gap: 1800.0,
                        turns: (3, 20),
                        up: (36, 300),
                        down: (36, 5000),
                    },
                );
                if host.platform == Platform::Linux {
                    p.add(
                        h,
                        "git",
                        "/usr/bin/git",
                        &user,
                        "bash",
                        None,
                        Kind::Sessions {
                            names: vec![kernel, github],
                            ports: vec![9418, 443],
                            udp: false,
                            proto: Proto::Opaque,
                            mean_gap: 1800.0,
                            turns: (1, 3),
                            up: (100, 2000),
                            down: (2000, 900_000),
                        },
                    );
                    p.add(
                        h,
                        "dockerd",
                        "/usr/bin/dockerd",
                        "root",
                        "systemd",
                        None,
                        Kind::Sessions {
                            names: vec![docker],
                            ports: vec![443],
                            udp: false,
                            proto: Proto::Tls,
                            mean_gap: 5400.0,
                            turns: (1, 3),
                            up: (300, 1200),
                            down: (50_000, 8_000_000),
                        },
                    );
                } else {
                    let period = *p.rng.pick(&[3600.0, 1800.0]);
                    p.add(
                        h,
                        "restic",
                        "/usr/bin/restic",
                        "root",
                        "cron",
                        None,
                        Kind::Scheduled {
                            name: s3,
                            port: 443,
                            udp: false,
                            proto: Proto::Tls,
                            period,
                            jitter: 0.01,
                            up: (20_000, 5_000_000),
                            down: (300, 2000),
                        },
                    );
                    p.add(
                        h,
                        "psql",
                        "/usr/bin/psql",
                        "postgres",
                        "bash",
                        None,
                        Kind::Sessions {
                            names: vec![db],
                            ports: vec![5432],
                            udp: false,
                            proto: Proto::Opaque,
                            mean_gap: 1200.0,
                            turns: (1, 6),
                            up: (80, 2000),
                            down: (100, 60_000),
                        },
                    );
                }
            }
            Platform::Esxi => {
                p.add(
                    h,
                    "ntpd",
                    "/sbin/ntpd",
                    "root",
                    "init",
                    None,
                    Kind::Scheduled {
                        name: pool_ntp,
                        port: 123,
                        udp: true,
                        proto: Proto::Ntp,
                        period: 64.0,
                        jitter: 0.01,
                        up: (48, 48),
                        down: (48, 48),
                    },
                );
            }
        }
    }
    cat
}

fn secs(x: f64) -> Dur {
    Dur::from_secs_f64(x)
}

fn params(world: &World, name: u32, c: &mut ConnStep, rng: &mut Rng) {
    let rec = &world.names[name as usize];
    c.rtt = secs(rec.rtt_ms * rng.uniform(0.9, 1.2) / 1000.0);
    c.sttl = rec.sttl;
    c.rate = rng.log_uniform(1e6, 40e6);
    let total: u64 =
        c.ex.iter()
            .map(|e| e.up.len() as u64 + e.down.len() as u64)
            .sum();
    // Bulk transfers are captured with a snap length; the IP length stays true.
    if total > 200_000 && !matches!(c.style, Style::Http | Style::PktLine) {
        c.snap = 96;
    }
}

/// Builds the steps of a benign episode when the merger reaches it.
pub fn build_steps(
    world: &World,
    act: &Activity,
    start: Ts,
    rng: &mut Rng,
    cache: &mut DnsCache,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let h = act.host;
    let has6 = world.hosts[h].ip6.is_some();
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(x) => x,
        _ => Ipv4Addr::UNSPECIFIED,
    };
    match &act.kind {
        Kind::Browser { sites, .. } => {
            let mut t = start;
            let main = *rng.pick(sites);
            let mut names = vec![main];
            for _ in 0..rng.below(3) {
                names.push(*rng.pick(sites));
            }
            for (i, &name) in names.iter().enumerate() {
                let use6 = has6 && !world.names[name as usize].v6.is_empty() && rng.chance(0.5);
                let (mut addrs, mut ready) =
                    resolve(world, cache, h, name, false, t, rng, &mut steps);
                if use6 {
                    let (a6, r6) = resolve(world, cache, h, name, true, t, rng, &mut steps);
                    addrs = a6;
                    ready = ready.max(r6);
                }
                let mut at = Ts(ready.0 + rng.range(1_000_000, 40_000_000) as i64);
                for _ in 0..rng.range(1, if i == 0 { 5 } else { 2 }) {
                    let dst = *rng.pick(&addrs);
                    let port = if rng.chance(0.93) { 443 } else { 80 };
                    let ex = (0..rng.range(1, 6))
                        .map(|k| {
                            let gap = if k == 0 {
                                Dur::ZERO
                            } else {
                                secs(rng.exp(2.0))
                            };
                            Exchange::new(
                                gap,
                                Msg::Sized(size(rng, (300, 1800))),
                                Msg::Sized(size(rng, (400, 400_000))),
                            )
                        })
                        .collect();
                    let mut c = ConnStep::new(
                        at,
                        dst,
                        port,
                        true,
                        if port == 443 { Style::Tls } else { Style::Http },
                        ex,
                    );
                    c.close = if rng.chance(0.1) {
                        Close::Rst
                    } else if rng.chance(0.5) {
                        Close::ServerFin
                    } else {
                        Close::Fin
                    };
                    params(world, name, &mut c, rng);
                    steps.push(Step::Conn(c));
                    at = Ts(at.0 + rng.range(2_000_000, 400_000_000) as i64);
                }
                t = Ts(t.0 + rng.range(50_000_000, 3_000_000_000) as i64);
            }
        }
        Kind::Scheduled {
            name,
            port,
            udp,
            proto,
            up,
            down,
            ..
        } => {
            let (addrs, ready) = resolve(world, cache, h, *name, false, start, rng, &mut steps);
            let dst = addrs[0];
            let at = Ts(ready.0 + rng.range(500_000, 20_000_000) as i64);
            let ex = vec![Exchange::new(
                Dur::ZERO,
                msg(*proto, true, 1, size(rng, *up), rng, v4(dst)),
                msg(*proto, false, 1, size(rng, *down), rng, v4(dst)),
            )];
            let mut c = ConnStep::new(at, dst, *port, !udp, style(*proto, *port), ex);
            if *proto == Proto::Ntp && rng.chance(0.5) {
                c.sport = Some(123);
            }
            params(world, *name, &mut c, rng);
            steps.push(Step::Conn(c));
        }
        Kind::Keepalive {
            name,
            port,
            udp,
            proto,
            interval,
            ka,
            chat,
        } => {
            let (addrs, ready) = resolve(world, cache, h, *name, false, start, rng, &mut steps);
            let dst = addrs[0];
            let peer = v4(dst);
            let mut ex = vec![Exchange::new(
                Dur::ZERO,
                msg(*proto, true, 0, 517, rng, peer),
                msg(*proto, false, 0, 3000, rng, peer),
            )];
            let mut t = 0.0;
            let span = (world.end.0 - start.0) as f64 / 1e9;
            let mut turn = 1;
            while t < span {
                let gap = if *udp {
                    *interval
                } else {
                    interval * rng.uniform(0.98, 1.02)
                };
                t += gap;
                let e = if rng.chance(*chat) {
                    let mut e = Exchange::new(
                        secs(gap),
                        msg(*proto, true, turn, size(rng, (60, 3000)), rng, peer),
                        msg(*proto, false, turn, size(rng, (60, 20_000)), rng, peer),
                    );
                    e.server_first = rng.chance(0.5);
                    e
                } else {
                    Exchange::new(
                        secs(gap),
                        msg(*proto, true, turn, ka.0, rng, peer),
                        msg(*proto, false, turn, ka.1, rng, peer),
                    )
                };
                ex.push(e);
                turn += 1;
            }
            let mut c = ConnStep::new(
                Ts(ready.0 + 2_000_000),
                dst,
                *port,
                !udp,
                style(*proto, *port),
                ex,
            );
            c.close = Close::Open;
            if *proto == Proto::Wireguard || *proto == Proto::NatT {
                c.sport = Some(*port);
            }
            params(world, *name, &mut c, rng);
            c.snap = 0;
            steps.push(Step::Conn(c));
        }
        Kind::Sessions {
            names,
            ports,
            udp,
            proto,
            turns,
            up,
            down,
            ..
        } => {
            let k = rng.below(names.len().max(ports.len()) as u64) as usize;
            let name = names[k % names.len()];
            let (addrs, ready) = resolve(world, cache, h, name, false, start, rng, &mut steps);
            let dst = *rng.pick(&addrs);
            let port = ports[k % ports.len()];
            let peer = v4(dst);
            let proto = if *proto == Proto::Stun && port != 3478 {
                Proto::Opaque
            } else {
                *proto
            };
            let ex = (0..rng.range(turns.0 as u64, turns.1 as u64))
                .map(|i| {
                    let gap = if i == 0 {
                        Dur::ZERO
                    } else {
                        secs(rng.exp(1.5))
                    };
                    Exchange::new(
                        gap,
                        msg(proto, true, i as usize, size(rng, *up), rng, peer),
                        msg(proto, false, i as usize, size(rng, *down), rng, peer),
                    )
                })
                .collect();
            let mut c = ConnStep::new(
                Ts(ready.0 + rng.range(1_000_000, 80_000_000) as i64),
                dst,
                port,
                !udp,
                style(proto, port),
                ex,
            );
            params(world, name, &mut c, rng);
            steps.push(Step::Conn(c));
        }
        Kind::HighPort { names, lo, hi, .. } => {
            let name = *rng.pick(names);
            let (addrs, ready) = resolve(world, cache, h, name, false, start, rng, &mut steps);
            let dst = addrs[0];
            let port = underived_port(rng, dst, *lo, *hi);
            // A voice call: 20 ms frames both ways for a minute or three.
            let n = rng.range(1500, 9000);
            let ex = (0..n)
                .map(|i| {
                    Exchange::new(
                        if i == 0 {
                            Dur::ZERO
                        } else {
                            Dur::from_millis(20)
                        },
                        Msg::Sized(size(rng, (60, 180))),
                        Msg::Sized(size(rng, (60, 220))),
                    )
                })
                .collect();
            let mut c = ConnStep::new(
                Ts(ready.0 + rng.range(100_000_000, 900_000_000) as i64),
                dst,
                port,
                false,
                Style::Opaque,
                ex,
            );
            params(world, name, &mut c, rng);
            c.rtt = Dur::from_millis(1);
            steps.push(Step::Conn(c));
        }
        Kind::PassiveFtp { name, .. } => {
            let (addrs, ready) = resolve(world, cache, h, *name, false, start, rng, &mut steps);
            let dst = addrs[0];
            let data_port = underived_port(rng, dst, 30000, 60999);
            let a = v4(dst).octets();
            let pasv = format!(
                "227 Entering Passive Mode ({},{},{},{},{},{}).\r\n",
                a[0],
                a[1],
                a[2],
                a[3],
                data_port >> 8,
                data_port & 0xff
            );
            let file = format!(
                "gnu/{}/{}-1.{}.tar.gz",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.range(0, 20)
            );
            let lines: Vec<(String, String)> = vec![
                (String::new(), "220 GNU FTP server ready.\r\n".into()),
                (
                    "USER anonymous\r\n".into(),
                    "230 Login successful.\r\n".into(),
                ),
                (
                    "TYPE I\r\n".into(),
                    "200 Switching to Binary mode.\r\n".into(),
                ),
                ("PASV\r\n".into(), pasv),
                (
                    format!("RETR {file}\r\n"),
                    "150 Opening BINARY mode data connection.\r\n".into(),
                ),
                (String::new(), "226 Transfer complete.\r\n".into()),
                ("QUIT\r\n".into(), "221 Goodbye.\r\n".into()),
            ];
            let ex: Vec<Exchange> = lines
                .into_iter()
                .enumerate()
                .map(|(i, (u, d))| {
                    let up = if u.is_empty() {
                        Msg::None
                    } else {
                        Msg::Bytes(u.into_bytes())
                    };
                    let mut e = Exchange::new(
                        Dur(if i == 5 {
                            2_500_000_000
                        } else {
                            rng.range(50_000_000, 500_000_000) as i64
                        }),
                        up,
                        Msg::Bytes(d.into_bytes()),
                    );
                    e.server_first = i == 0 || i == 5;
                    e
                })
                .collect();
            let at = Ts(ready.0 + rng.range(1_000_000, 30_000_000) as i64);
            let mut ctl = ConnStep::new(at, dst, 21, true, Style::Opaque, ex);
            params(world, *name, &mut ctl, rng);
            ctl.snap = 0;
            let mut data = ConnStep::new(
                Ts(at.0 + 1_500_000_000),
                dst,
                data_port,
                true,
                Style::Opaque,
                vec![Exchange::new(
                    Dur::ZERO,
                    Msg::None,
                    Msg::Sized(size(rng, (20_000, 2_000_000))),
                )],
            );
            params(world, *name, &mut data, rng);
            data.close = Close::ServerFin;
            steps.push(Step::Conn(ctl));
            steps.push(Step::Conn(data));
        }
        Kind::LanBroadcast { port, interval } => {
            let hi = world.hosts[h].ip4.octets();
            let dst = IpAddr::V4(Ipv4Addr::new(hi[0], hi[1], 255, 255));
            let body = format!(
                "{{\"host_int\": {}, \"version\": [2, 0], \"displayname\": \"\", \"port\": {port}, \"namespaces\": [{}, {}]}}",
                rng.next_u64() >> 1,
                rng.range(100_000_000, 999_999_999),
                rng.range(100_000_000, 999_999_999)
            )
            .into_bytes();
            let n = ((world.end.0 - start.0) as f64 / 1e9 / interval) as usize + 1;
            let ex = (0..n)
                .map(|i| {
                    Exchange::new(
                        if i == 0 { Dur::ZERO } else { secs(*interval) },
                        Msg::Bytes(body.clone()),
                        Msg::None,
                    )
                })
                .collect();
            let mut c = ConnStep::new(start, dst, *port, false, Style::Opaque, ex);
            c.sport = Some(*port);
            c.sttl = 64;
            steps.push(Step::Conn(c));
        }
        Kind::Planned => {}
    }
    steps
}
