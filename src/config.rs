//! Configuration (`--config FILE`, TOML). Every section and key is optional; an unknown
//! key or a bad value is an error that names the key and the file (serde's
//! `deny_unknown_fields` plus toml's located errors).
//!
//! ```toml
//! [network]
//! home_net = ["10.0.0.0/8", "192.168.0.0/16"]
//! [flow]
//! max_flows = 1000000
//! tcp_established_timeout_s = 600
//! [pipeline]
//! workers = 2
//! ```

use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use crate::time::Dur;

/// The default home network: RFC 1918, RFC 6598 shared space, IPv6 ULA and link-local
/// (both families), the ranges a SPAN port's internal hosts live in.
pub const DEFAULT_HOME_NET: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// An IPv4 or IPv6 network in CIDR notation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an address or CIDR"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u32 = match len {
            Some(l) => l
                .trim()
                .parse()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("`{s}`: prefix length must be 0..={max}"))?,
            None => max,
        };
        Ok(match ip {
            IpAddr::V4(v) => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                Cidr::V4 {
                    net: u32::from(v) & mask,
                    mask,
                }
            }
            IpAddr::V6(v) => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                Cidr::V6 {
                    net: u128::from(v) & mask,
                    mask,
                }
            }
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Cidr::V4 { net, mask }, IpAddr::V4(v)) => u32::from(v) & mask == *net,
            (Cidr::V6 { net, mask }, IpAddr::V6(v)) => u128::from(v) & mask == *net,
            // An IPv4-mapped IPv6 address belongs to the IPv4 network.
            (Cidr::V4 { net, mask }, IpAddr::V6(v)) => match v.to_ipv4_mapped() {
                Some(v4) => u32::from(v4) & mask == *net,
                None => false,
            },
            _ => false,
        }
    }
}

/// A set of networks, kept per family: home_net is asked about every new flow and DNS
/// answer several times, and an IPv4 address then scans only the IPv4 networks (8 bytes
/// each) instead of every `Cidr` (48 bytes each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetSet {
    /// `(net, mask)`.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetSet {
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<NetSet, String> {
        let mut set = NetSet::default();
        for s in items {
            match Cidr::parse(s.as_ref())? {
                Cidr::V4 { net, mask } => set.v4.push((net, mask)),
                Cidr::V6 { net, mask } => set.v6.push((net, mask)),
            }
        }
        Ok(set)
    }
    /// As [`Cidr::contains`] over the set: an IPv4-mapped IPv6 address belongs to the
    /// IPv4 networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v) => self.contains_v4(u32::from(v)),
            IpAddr::V6(v) => {
                let x = u128::from(v);
                self.v6.iter().any(|&(net, mask)| x & mask == net)
                    || v.to_ipv4_mapped()
                        .is_some_and(|v4| self.contains_v4(u32::from(v4)))
            }
        }
    }
    fn contains_v4(&self, x: u32) -> bool {
        self.v4.iter().any(|&(net, mask)| x & mask == net)
    }
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// Flow table settings.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowConfig {
    /// Hard cap on live flows over all workers; past it the longest-idle flow is evicted.
    pub max_flows: usize,
    /// TCP flows that never completed a handshake (Zeek's attempt state).
    pub tcp_unestablished_timeout: Dur,
    pub tcp_established_timeout: Dur,
    /// After FIN from both sides or a RST: time left for stray ACKs and retransmissions.
    pub tcp_closed_timeout: Dur,
    /// UDP seen one way only.
    pub udp_timeout: Dur,
    /// UDP with replies.
    pub udp_established_timeout: Dur,
    pub other_timeout: Dur,
    /// An idle gap this long ends an outbound "message" inside a long connection.
    pub message_gap: Dur,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            max_flows: 1_000_000,
            // Suricata's defaults, so flow records line up with its EVE flows.
            tcp_unestablished_timeout: Dur::from_secs(60),
            tcp_established_timeout: Dur::from_secs(600),
            tcp_closed_timeout: Dur::from_secs(60),
            udp_timeout: Dur::from_secs(30),
            udp_established_timeout: Dur::from_secs(300),
            other_timeout: Dur::from_secs(30),
            message_gap: Dur::from_millis(1_000),
        }
    }
}

/// Threading settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Worker threads owning flow-table shards and analytics state.
    pub workers: usize,
    /// Packets decoded before a batch is handed to the workers.
    pub batch_packets: usize,
    /// Batches in flight per worker before the capture side must wait (replay) or drop
    /// and count (live).
    pub queue_batches: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            batch_packets: 4096,
            queue_batches: 8,
        }
    }
}

/// IP reassembly settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragConfig {
    pub max_datagrams: usize,
    pub max_bytes: usize,
    pub timeout: Dur,
}

impl Default for FragConfig {
    fn default() -> Self {
        let d = crate::decode::frag::FragLimits::default();
        FragConfig {
            max_datagrams: d.max_datagrams,
            max_bytes: d.max_bytes,
            timeout: d.timeout,
        }
    }
}

/// Alert output settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertConfig {
    /// One alert per (analytic, src, dest, port) per window of packet time.
    pub window: Dur,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            window: Dur::from_secs(3600),
        }
    }
}

/// The whole configuration, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub home_net: NetSet,
    pub flow: FlowConfig,
    pub pipeline: PipelineConfig,
    pub frag: FragConfig,
    pub alerts: AlertConfig,
    /// Sections of the file for later stages, kept raw and validated by their owners
    /// (analytics, enrichment, live capture).
    pub analytics: toml::Table,
    pub edr: toml::Table,
    pub live: toml::Table,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            home_net: NetSet::parse(DEFAULT_HOME_NET).unwrap_or_default(),
            flow: FlowConfig::default(),
            pipeline: PipelineConfig::default(),
            frag: FragConfig::default(),
            alerts: AlertConfig::default(),
            analytics: toml::Table::new(),
            edr: toml::Table::new(),
            live: toml::Table::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    flow: RawFlow,
    #[serde(default)]
    pipeline: RawPipeline,
    #[serde(default)]
    fragments: RawFrag,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    analytics: toml::Table,
    #[serde(default)]
    edr: toml::Table,
    #[serde(default)]
    live: toml::Table,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    home_net: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    max_flows: Option<u64>,
    tcp_unestablished_timeout_s: Option<f64>,
    tcp_established_timeout_s: Option<f64>,
    tcp_closed_timeout_s: Option<f64>,
    udp_timeout_s: Option<f64>,
    udp_established_timeout_s: Option<f64>,
    other_timeout_s: Option<f64>,
    message_gap_s: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    workers: Option<u64>,
    batch_packets: Option<u64>,
    queue_batches: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFrag {
    max_datagrams: Option<u64>,
    max_bytes: Option<u64>,
    timeout_s: Option<f64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    window_s: Option<f64>,
}

/// Checks a number against a range and names the key when it is out.
fn ranged_u(
    file: &str,
    key: &str,
    v: Option<u64>,
    lo: u64,
    hi: u64,
) -> Result<Option<usize>, ConfigError> {
    match v {
        None => Ok(None),
        Some(n) if (lo..=hi).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(ConfigError(format!(
            "{file}: `{key}` = {n} is out of range ({lo}..={hi})"
        ))),
    }
}

fn ranged_secs(
    file: &str,
    key: &str,
    v: Option<f64>,
    lo: f64,
    hi: f64,
) -> Result<Option<Dur>, ConfigError> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= lo && s <= hi => Ok(Some(Dur::from_secs_f64(s))),
        Some(s) => Err(ConfigError(format!(
            "{file}: `{key}` = {s} is out of range ({lo}..={hi} seconds)"
        ))),
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read config: {e}", path.display())))?;
        Config::from_toml(&text, &path.display().to_string())
    }

    /// Parses TOML text; `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError(format!("{file}: {}", e.to_string().trim_end())))?;
        let mut c = Config::default();
        if let Some(nets) = raw.network.home_net {
            c.home_net = NetSet::parse(&nets)
                .map_err(|e| ConfigError(format!("{file}: `network.home_net`: {e}")))?;
        }
        let f = &raw.flow;
        let day = 86_400.0;
        if let Some(n) = ranged_u(file, "flow.max_flows", f.max_flows, 1, 1 << 28)? {
            c.flow.max_flows = n;
        }
        let secs = [
            (
                "flow.tcp_unestablished_timeout_s",
                f.tcp_unestablished_timeout_s,
                &mut c.flow.tcp_unestablished_timeout,
            ),
            (
                "flow.tcp_established_timeout_s",
                f.tcp_established_timeout_s,
                &mut c.flow.tcp_established_timeout,
            ),
            (
                "flow.tcp_closed_timeout_s",
                f.tcp_closed_timeout_s,
                &mut c.flow.tcp_closed_timeout,
            ),
            (
                "flow.udp_timeout_s",
                f.udp_timeout_s,
                &mut c.flow.udp_timeout,
            ),
            (
                "flow.udp_established_timeout_s",
                f.udp_established_timeout_s,
                &mut c.flow.udp_established_timeout,
            ),
            (
                "flow.other_timeout_s",
                f.other_timeout_s,
                &mut c.flow.other_timeout,
            ),
        ];
        for (key, v, slot) in secs {
            if let Some(d) = ranged_secs(file, key, v, 0.001, day)? {
                *slot = d;
            }
        }
        if let Some(d) = ranged_secs(file, "flow.message_gap_s", f.message_gap_s, 0.001, 3600.0)? {
            c.flow.message_gap = d;
        }
        let p = &raw.pipeline;
        if let Some(n) = ranged_u(file, "pipeline.workers", p.workers, 1, 256)? {
            c.pipeline.workers = n;
        }
        if let Some(n) = ranged_u(file, "pipeline.batch_packets", p.batch_packets, 1, 65_536)? {
            c.pipeline.batch_packets = n;
        }
        if let Some(n) = ranged_u(file, "pipeline.queue_batches", p.queue_batches, 1, 4096)? {
            c.pipeline.queue_batches = n;
        }
        let fr = &raw.fragments;
        if let Some(n) = ranged_u(
            file,
            "fragments.max_datagrams",
            fr.max_datagrams,
            1,
            1 << 20,
        )? {
            c.frag.max_datagrams = n;
        }
        if let Some(n) = ranged_u(file, "fragments.max_bytes", fr.max_bytes, 65_536, 1 << 32)? {
            c.frag.max_bytes = n;
        }
        if let Some(d) = ranged_secs(file, "fragments.timeout_s", fr.timeout_s, 0.001, 3600.0)? {
            c.frag.timeout = d;
        }
        if let Some(d) = ranged_secs(
            file,
            "alerts.window_s",
            raw.alerts.window_s,
            0.0,
            30.0 * day,
        )? {
            c.alerts.window = d;
        }
        c.analytics = raw.analytics;
        c.edr = raw.edr;
        c.live = raw.live;
        Ok(c)
    }

    pub fn frag_limits(&self) -> crate::decode::frag::FragLimits {
        crate::decode::frag::FragLimits {
            max_datagrams: self.frag.max_datagrams,
            max_bytes: self.frag.max_bytes,
            timeout: self.frag.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-family set answers as a scan of its CIDRs does.
    #[test]
    fn net_set_agrees_with_its_cidrs() {
        let cidrs = [
            "10.0.0.0/8",
            "192.168.1.0/24",
            "203.0.113.7",
            "0.0.0.0/0",
            "fc00::/7",
            "2001:db8::/32",
            "::/0",
        ];
        let addrs = [
            "10.1.2.3",
            "11.0.0.1",
            "192.168.1.200",
            "192.168.2.1",
            "203.0.113.7",
            "203.0.113.8",
            "::ffff:10.9.9.9",
            "::ffff:8.8.8.8",
            "fd00::1",
            "2001:db8:1::1",
            "2001:db9::1",
            "::1",
        ];
        for n in 0..cidrs.len() {
            for k in [1, 2, 3] {
                let pick: Vec<&str> = cidrs.iter().skip(n).step_by(k).copied().collect();
                let set = NetSet::parse(&pick).unwrap();
                let list: Vec<Cidr> = pick.iter().map(|c| Cidr::parse(c).unwrap()).collect();
                for a in addrs {
                    let ip: IpAddr = a.parse().unwrap();
                    let scan = list.iter().any(|c| c.contains(ip));
                    assert_eq!(set.contains(ip), scan, "{pick:?} {a}");
                }
                assert_eq!(set.is_empty(), list.is_empty());
            }
        }
        assert!(!NetSet::default().contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn default_home_net_covers_private_ranges() {
        let c = Config::default();
        for ip in [
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "100.64.1.1",
            "fd00::1",
        ] {
            assert!(c.home_net.contains(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "2001:db8::1"] {
            assert!(!c.home_net.contains(ip.parse().unwrap()), "{ip}");
        }
        assert!(c.home_net.contains("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn parses_sections() {
        let c = Config::from_toml(
            "[network]\nhome_net=[\"198.51.100.0/24\"]\n[flow]\nmax_flows=5000\nudp_timeout_s=30\n[pipeline]\nworkers=3\n",
            "t.toml",
        )
        .unwrap();
        assert!(c.home_net.contains("198.51.100.7".parse().unwrap()));
        assert!(!c.home_net.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(c.flow.max_flows, 5000);
        assert_eq!(c.flow.udp_timeout, Dur::from_secs(30));
        assert_eq!(c.pipeline.workers, 3);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = Config::from_toml("[flow]\nmax_flow = 3\n", "site.toml").unwrap_err();
        assert!(e.0.contains("site.toml") && e.0.contains("max_flow"), "{e}");
        let e = Config::from_toml("[nework]\n", "site.toml").unwrap_err();
        assert!(e.0.contains("nework"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = Config::from_toml("[pipeline]\nworkers = 0\n", "a.toml").unwrap_err();
        assert!(
            e.0.contains("pipeline.workers") && e.0.contains("a.toml"),
            "{e}"
        );
        let e = Config::from_toml("[network]\nhome_net=[\"10.0.0.0/33\"]\n", "a.toml").unwrap_err();
        assert!(e.0.contains("home_net"), "{e}");
        let e = Config::from_toml("[flow]\nudp_timeout_s = \"x\"\n", "a.toml").unwrap_err();
        assert!(e.0.contains("udp_timeout_s"), "{e}");
        let e = Config::from_toml("[flow]\nudp_timeout_s = -1\n", "a.toml").unwrap_err();
        assert!(e.0.contains("flow.udp_timeout_s"), "{e}");
    }
}

/// Typed reads of one section's values for the analytics' own parsers. Every error
/// names the full key (`analytics.dnscalc.window_s`) and what was expected.
#[derive(Clone, Copy, Debug)]
pub struct Section(pub &'static str);

impl Section {
    pub fn bad(self, key: &str, why: impl std::fmt::Display) -> ConfigError {
        if key.is_empty() {
            ConfigError(format!("config: `{}`: {why}", self.0))
        } else {
            ConfigError(format!("config: `{}.{key}`: {why}", self.0))
        }
    }

    pub fn bool(self, v: &toml::Value, key: &str) -> Result<bool, ConfigError> {
        v.as_bool()
            .ok_or_else(|| self.bad(key, "must be true or false"))
    }

    /// A number (integer or float) within `lo..=hi`.
    pub fn num(self, v: &toml::Value, key: &str, lo: f64, hi: f64) -> Result<f64, ConfigError> {
        let n = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            _ => return Err(self.bad(key, "must be a number")),
        };
        if n.is_finite() && (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(self.bad(key, format!("{n} is out of range ({lo}..={hi})")))
        }
    }

    pub fn int(self, v: &toml::Value, key: &str, lo: i64, hi: i64) -> Result<i64, ConfigError> {
        match v.as_integer() {
            Some(i) if (lo..=hi).contains(&i) => Ok(i),
            Some(i) => Err(self.bad(key, format!("{i} is out of range ({lo}..={hi})"))),
            None => Err(self.bad(key, "must be an integer")),
        }
    }

    pub fn strs(self, v: &toml::Value, key: &str) -> Result<Vec<String>, ConfigError> {
        let not = || self.bad(key, "must be an array of strings");
        v.as_array()
            .ok_or_else(not)?
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(not))
            .collect()
    }

    pub fn ports(self, v: &toml::Value, key: &str) -> Result<Vec<u16>, ConfigError> {
        v.as_array()
            .ok_or_else(|| self.bad(key, "must be an array of ports"))?
            .iter()
            .map(|x| self.int(x, key, 1, 65_535).map(|p| p as u16))
            .collect()
    }

    pub fn table<'a>(self, v: &'a toml::Value, key: &str) -> Result<&'a toml::Table, ConfigError> {
        v.as_table().ok_or_else(|| self.bad(key, "must be a table"))
    }
}
