//! What makes a DNS response "unusual" (the first half of `unusual_dns_nonstandard_port`):
//! properties Zeek/Suricata users hunt for, each with a weight by how rarely benign
//! answers show it. Weights combine as independent evidence: 1 - Π(1 - w).

use hashbrown::HashMap;
use std::net::IpAddr;

use crate::baseline::allow::name_under;
use crate::baseline::dest_key;
use crate::decode::dns::DnsAnswer;

use super::config::UnusualConfig;
use super::derivation::canonical;

/// A set of unusual properties (bit flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unusual(pub u16);

impl Unusual {
    pub const LOW_TTL: Unusual = Unusual(1);
    pub const PRIVATE_FOR_PUBLIC: Unusual = Unusual(2);
    pub const BOGON: Unusual = Unusual(4);
    pub const ODD_RCODE: Unusual = Unusual(8);
    pub const ODD_RECORDS: Unusual = Unusual(16);
    pub const CHANGED_ADDRS: Unusual = Unusual(32);
    pub const NEW_NAME: Unusual = Unusual(64);
    pub const ODD_NAME: Unusual = Unusual(128);

    /// An address no public service can be reached at.
    pub const UNUSABLE: Unusual = Unusual(2 | 4);
    /// Every address of the answer is one of those (a marker, no evidence of its own):
    /// the host cannot use the answer as given, so what it connects to next (a
    /// fallback) is what matters. With one public address among them it can, and a
    /// connection elsewhere is not tied to this answer.
    pub const ALL_UNUSABLE: Unusual = Unusual(256);

    const ALL: [(Unusual, f64, &'static str); 8] = [
        (Unusual::LOW_TTL, 0.40, "very low TTL"),
        (
            Unusual::PRIVATE_FOR_PUBLIC,
            0.50,
            "private address for a public name",
        ),
        (Unusual::BOGON, 0.50, "reserved/loopback address"),
        (Unusual::ODD_RCODE, 0.45, "addresses with an error rcode"),
        (Unusual::ODD_RECORDS, 0.25, "odd record mix"),
        (
            Unusual::CHANGED_ADDRS,
            0.20,
            "addresses outside the name's usual networks",
        ),
        (Unusual::NEW_NAME, 0.15, "name never seen before"),
        (Unusual::ODD_NAME, 0.35, "machine-generated-looking domain"),
    ];

    pub fn has(self, f: Unusual) -> bool {
        self.0 & f.0 != 0
    }
    pub fn set(&mut self, f: Unusual) {
        self.0 |= f.0;
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Combined evidence in 0..1.
    pub fn evidence(self) -> f64 {
        1.0 - Unusual::ALL
            .iter()
            .filter(|(f, _, _)| self.has(*f))
            .map(|(_, w, _)| 1.0 - w)
            .product::<f64>()
    }

    /// The properties in words, strongest first.
    pub fn describe(self, ttl: u32, rcode: u16) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (f, _, text) in Unusual::ALL {
            if self.has(f) {
                parts.push(match f {
                    Unusual::LOW_TTL => format!("{text} ({ttl} s)"),
                    Unusual::ODD_RCODE => format!("{text} ({rcode})"),
                    _ => text.to_string(),
                });
            }
        }
        parts.join(", ")
    }
}

/// Addresses no public name should resolve to.
pub fn is_bogon(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x100 && s[1..4] == [0, 0, 0])
        }
    }
}

/// Private, shared or link-local space (a LAN address).
pub fn is_private(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_private() || a.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(a) => {
            let s0 = a.segments()[0];
            (s0 & 0xfe00) == 0xfc00 || (s0 & 0xffc0) == 0xfe80
        }
    }
}

/// Top-level labels that are never public suffixes (RFC 6762, 6761, 8375, common LAN use).
const LOCAL_TLDS: &[&str] = &[
    "local",
    "lan",
    "internal",
    "intranet",
    "corp",
    "home",
    "localdomain",
    "localhost",
    "arpa",
    "test",
    "invalid",
    "example",
    "private",
    "domain",
    "lab",
];

/// A name under a public suffix (and not one the site declared internal).
pub fn is_public_name(name: &str, internal: &[String]) -> bool {
    let Some((_, tld)) = name.rsplit_once('.') else {
        return false;
    };
    tld.len() >= 2
        && tld.bytes().all(|c| c.is_ascii_alphabetic())
        && !LOCAL_TLDS.iter().any(|t| tld.eq_ignore_ascii_case(t))
        && !internal.iter().any(|d| name_under(name, d))
}

/// The label a registrant chose: the one left of the public suffix (two-letter
/// second-level suffixes such as `co.uk` are skipped).
fn registered_label(name: &str) -> Option<&str> {
    let mut it = name.trim_end_matches('.').rsplit('.');
    let _tld = it.next()?;
    let l = it.next()?;
    if l.len() <= 3
        && matches!(
            l,
            "co" | "com" | "net" | "org" | "ac" | "gov" | "edu" | "ne" | "or"
        )
    {
        return it.next();
    }
    Some(l)
}

/// A registered label that looks machine-generated (DGA): long, and either digits
/// interleaved with letters or too few vowels for a pronounceable word (thresholds
/// leave compounds such as "frostbirch" or "matchstrike" alone). Random
/// subdomains of a known domain (CDN node names) do not count: only the label someone
/// registered does.
pub fn is_odd_name(name: &str) -> bool {
    let Some(l) = registered_label(name) else {
        return false;
    };
    let b = l.as_bytes();
    if b.len() < 10 || !b.iter().all(|c| c.is_ascii_alphanumeric()) {
        return false;
    }
    let digits = b.iter().filter(|c| c.is_ascii_digit()).count();
    let letters = b.len() - digits;
    let vowels = b
        .iter()
        .filter(|c| {
            matches!(
                c.to_ascii_lowercase(),
                b'a' | b'e' | b'i' | b'o' | b'u' | b'y'
            )
        })
        .count();
    let switches = b
        .windows(2)
        .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
        .count();
    let mut run = 0;
    let mut max_run = 0;
    for c in b {
        let consonant = c.is_ascii_alphabetic()
            && !matches!(
                c.to_ascii_lowercase(),
                b'a' | b'e' | b'i' | b'o' | b'u' | b'y'
            );
        run = if consonant { run + 1 } else { 0 };
        max_run = max_run.max(run);
    }
    (digits >= 2 && letters >= 4 && switches >= 3)
        || (letters >= 10 && (vowels as f64) < 0.2 * letters as f64)
        || max_run >= 6
}

/// Prefixes remembered per name.
const PREFIXES_PER_NAME: usize = 4;

#[derive(Clone, Copy, Debug, Default)]
struct NameInfo {
    prefixes: [u64; PREFIXES_PER_NAME],
    n: u8,
    next: u8,
    max_ttl: u32,
}

/// Names seen by this worker with their usual address prefixes. Bounded as two
/// generations: when the current one fills, it becomes the old one and the older is
/// dropped, so a name used within the last generation survives (O(1), no scan).
pub struct NameHistory {
    cur: HashMap<u64, NameInfo>,
    old: HashMap<u64, NameInfo>,
    cap: usize,
    pub rotations: u64,
}

fn name_hash(name: &str) -> u64 {
    crate::analytics::text_hash(name)
}

impl NameHistory {
    pub fn new(max_names: usize) -> NameHistory {
        NameHistory {
            cur: HashMap::new(),
            old: HashMap::new(),
            cap: (max_names / 2).max(8),
            rotations: 0,
        }
    }

    /// Classifies an answer and learns from it.
    pub fn classify(&mut self, a: &DnsAnswer, cfg: &UnusualConfig) -> Unusual {
        let mut u = Unusual::default();
        let public = is_public_name(&a.query, &cfg.internal_domains);
        if public && is_odd_name(&a.query) {
            u.set(Unusual::ODD_NAME);
        }
        let h = name_hash(&a.query);
        let known = match self.cur.get(&h) {
            Some(i) => Some(*i),
            None => self.old.get(&h).copied(),
        };
        // Split horizon (or a parked name) by habit: a private or reserved address the
        // name has answered with before is its configuration, not news.
        let habitual = |ip: &IpAddr| {
            known.is_some_and(|i| i.prefixes[..i.n as usize].contains(&dest_key(*ip)))
        };
        if public && a.addrs.iter().any(|ip| is_private(*ip) && !habitual(ip)) {
            u.set(Unusual::PRIVATE_FOR_PUBLIC);
        }
        if public && a.addrs.iter().any(|ip| is_bogon(*ip) && !habitual(ip)) {
            u.set(Unusual::BOGON);
        }
        if u.has(Unusual::UNUSABLE) && a.addrs.iter().all(|ip| is_private(*ip) || is_bogon(*ip)) {
            u.set(Unusual::ALL_UNUSABLE);
        }
        if a.rcode != 0 && !a.addrs.is_empty() {
            u.set(Unusual::ODD_RCODE);
        }
        let wrong_family = match a.qtype {
            1 => a.addrs.iter().any(|ip| canonical(*ip).is_ipv6()),
            28 => a.addrs.iter().any(|ip| ip.is_ipv4()),
            _ => false,
        };
        if a.anomalies.cname_loop || a.anomalies.unrelated_records > 0 || wrong_family {
            u.set(Unusual::ODD_RECORDS);
        }

        let mut info = known.unwrap_or_default();
        match known {
            None => u.set(Unusual::NEW_NAME),
            Some(i) => {
                let seen = |ip: &IpAddr| i.prefixes[..i.n as usize].contains(&dest_key(*ip));
                if i.n > 0 && !a.addrs.is_empty() && !a.addrs.iter().any(seen) {
                    u.set(Unusual::CHANGED_ADDRS);
                }
            }
        }
        // A resolver's cache counts TTLs down to 0: a low TTL only counts when this name
        // never came with a longer one.
        if !a.addrs.is_empty() && a.min_ttl <= cfg.max_ttl && info.max_ttl <= cfg.max_ttl {
            u.set(Unusual::LOW_TTL);
        }
        info.max_ttl = info.max_ttl.max(a.min_ttl);
        for ip in &a.addrs {
            let k = dest_key(*ip);
            if !info.prefixes[..info.n as usize].contains(&k) {
                let slot = if (info.n as usize) < PREFIXES_PER_NAME {
                    info.n += 1;
                    info.n as usize - 1
                } else {
                    info.next = (info.next + 1) % PREFIXES_PER_NAME as u8;
                    info.next as usize
                };
                info.prefixes[slot] = k;
            }
        }
        if self.cur.len() >= self.cap && !self.cur.contains_key(&h) {
            self.old = std::mem::take(&mut self.cur);
            self.rotations += 1;
        }
        self.cur.insert(h, info);
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        for s in [
            "127.0.0.1",
            "0.0.0.0",
            "192.0.2.5",
            "240.1.1.1",
            "::1",
            "2001:db8::5",
        ] {
            assert!(is_bogon(s.parse().unwrap()), "{s}");
        }
        for s in [
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(is_private(s.parse().unwrap()), "{s}");
            assert!(!is_bogon(s.parse().unwrap()), "{s}");
        }
        assert!(!is_private("71.63.201.9".parse().unwrap()));
        assert!(!is_bogon("71.63.201.9".parse().unwrap()));
    }

    #[test]
    fn public_names() {
        let internal = vec!["corp.example.com".to_string()];
        assert!(is_public_name("upd.example.net", &internal));
        assert!(!is_public_name("host.corp.example.com", &internal));
        assert!(!is_public_name("printer.local", &internal));
        assert!(!is_public_name("nas.home.arpa", &internal));
        assert!(!is_public_name("localhost", &internal));
        assert!(!is_public_name("1.0.0.10.in-addr.arpa", &internal));
    }

    #[test]
    fn odd_names() {
        for n in [
            "x7k2mz9qpl3.top",
            "qwrtzxcvbnmk.xyz",
            "a1b2c3d4e5f6.biz",
            "kq0v8r2jx4t.cc",
        ] {
            assert!(is_odd_name(n), "{n}");
        }
        for n in [
            "telemetry.cloudcrest.com",
            "www.rivercoral.co.uk",
            "d1a2b3c4e5f6.cloudfront.net",
            "e1234.a.akamaiedge.net",
            "login.microsoftonline.com",
            "stackoverflow.com",
            "registry-1.docker.io",
            "intake.datadoghq.com",
            "x7k2.top",
            "www.frostbirch.com",
            "www.birchstone.io",
        ] {
            assert!(!is_odd_name(n), "{n}");
        }
    }

    #[test]
    fn evidence_combines() {
        let mut u = Unusual::default();
        assert_eq!(u.evidence(), 0.0);
        u.set(Unusual::LOW_TTL);
        assert!((u.evidence() - 0.4).abs() < 1e-9);
        u.set(Unusual::NEW_NAME);
        assert!((u.evidence() - (1.0 - 0.6 * 0.85)).abs() < 1e-9);
        assert_eq!(
            u.describe(0, 0),
            "very low TTL (0 s), name never seen before"
        );
    }
}
