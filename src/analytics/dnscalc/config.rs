//! `[analytics.dnscalc]` and its sub-tables. The `analytics` table is shared with other
//! analytics, so only this sub-table is validated here: an unknown key or a bad value in
//! it is an error naming the key.
//!
//! ```toml
//! [analytics.dnscalc]
//! calculated_port = true          # dns_calculated_port
//! unusual_response = true         # unusual_dns_nonstandard_port
//! window_s = 120                  # answer -> connection correlation window
//! immediate_window_s = 60         # ... when the destination came from no answer
//! min_score = 0.5
//! max_answers_per_host = 32
//! max_hosts = 16384               # per worker; least recently active evicted
//! builtin_derivations = true
//! disable_derivations = ["o4*256+o1"]
//! derivations = ["(o1+o4)*256+o2"]   # o1..o4 / h1..h8, + - * / % ( )
//! address_transforms = true
//! standard_ports = [80, 443]      # replaces the built-in list
//! extra_standard_ports = [9418]   # adds to it
//! [analytics.dnscalc.unusual]
//! max_ttl_s = 1
//! min_evidence = 0.4
//! internal_domains = ["corp.example.com"]
//! max_names = 65536              # per worker and generation (two kept); raise for big sites
//! [analytics.dnscalc.baseline]
//! half_life_h = 72
//! regular_min_count = 3
//! regular_min_span_s = 1800
//! top_ports = 32
//! top_dests = 32
//! save_interval_s = 300
//! [analytics.dnscalc.allowlist]
//! domains = ["updates.example.com"]
//! cidrs = ["203.0.113.0/24"]
//! ports = [8883]
//! ```

use crate::baseline::allow::normalize_domain;
use crate::baseline::{Allowlist, BaselineParams};
use crate::config::{Config, ConfigError, NetSet, Section};
use crate::time::Dur;

use super::derivation::{Derivation, BUILTIN};

/// Ports of ordinary services: a connection to one is never "calculated" or "non-standard".
pub const STANDARD_PORTS: &[u16] = &[
    20, 21, 22, 23, 25, 53, 67, 68, 80, 88, 110, 111, 119, 123, 135, 137, 138, 139, 143, 161, 162,
    179, 389, 443, 445, 464, 465, 500, 514, 515, 543, 544, 548, 554, 587, 631, 636, 853, 873, 989,
    990, 993, 995, 1194, 1433, 1521, 1701, 1723, 1812, 1813, 1883, 1935, 2049, 3268, 3269, 3306,
    3389, 3478, 3479, 3480, 3481, 4500, 5060, 5061, 5222, 5223, 5228, 5349, 5432, 5938, 5985, 5986,
    6443, 8008, 8080, 8081, 8443, 8883, 8888, 9418, 19302, 19303, 19304, 19305, 19306, 19307,
    19308, 19309, 51820,
];

/// Public suffixes whose names resolve to private addresses by design (certificates for
/// LAN devices, rebinding test services): not a signal.
pub const PRIVATE_BY_DESIGN: &[&str] = &["plex.direct", "nip.io", "sslip.io", "localtest.me"];

/// A set of ports as a bitmap: O(1) membership on the hot path.
#[derive(Clone)]
pub struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    pub fn new(ports: impl IntoIterator<Item = u16>) -> PortSet {
        let mut b = Box::new([0u64; 1024]);
        for p in ports {
            b[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        PortSet(b)
    }
    pub fn contains(&self, p: u16) -> bool {
        self.0[usize::from(p >> 6)] & (1 << (p & 63)) != 0
    }
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PortSet({} ports)", self.len())
    }
}

#[derive(Clone, Debug)]
pub struct UnusualConfig {
    /// Answers with a TTL at or below this are "very low TTL" (CDNs use 20-60 s).
    pub max_ttl: u32,
    /// Combined weight of unusual properties needed before a connection counts.
    pub min_evidence: f64,
    /// Names under these resolve to private addresses legitimately (split horizon).
    pub internal_domains: Vec<String>,
    /// Names remembered (seen / usual prefixes) per worker.
    pub max_names: usize,
}

#[derive(Clone, Debug)]
pub struct DnsCalcConfig {
    pub calculated_port: bool,
    pub unusual_response: bool,
    pub window: Dur,
    /// Window for matches whose destination no DNS answer gave (a fallback address, an
    /// address computed with a key): malware connects right after the lookup, and the
    /// shorter window keeps such weaker matches rare by chance.
    pub immediate_window: Dur,
    pub min_score: f64,
    pub max_answers_per_host: usize,
    pub max_hosts: usize,
    pub derivations: Vec<Derivation>,
    pub address_transforms: bool,
    pub standard_ports: PortSet,
    pub unusual: UnusualConfig,
    pub baseline: BaselineParams,
    pub save_interval: Dur,
    pub allow: Allowlist,
}

impl Default for DnsCalcConfig {
    fn default() -> Self {
        DnsCalcConfig {
            calculated_port: true,
            unusual_response: true,
            window: Dur::from_secs(120),
            immediate_window: Dur::from_secs(60),
            min_score: 0.5,
            max_answers_per_host: 32,
            max_hosts: 16_384,
            derivations: (0..BUILTIN.len()).filter_map(Derivation::builtin).collect(),
            address_transforms: true,
            standard_ports: PortSet::new(STANDARD_PORTS.iter().copied()),
            unusual: UnusualConfig {
                max_ttl: 1,
                min_evidence: 0.4,
                internal_domains: PRIVATE_BY_DESIGN.iter().map(|s| s.to_string()).collect(),
                max_names: 1 << 16,
            },
            baseline: BaselineParams::default(),
            save_interval: Dur::from_secs(300),
            allow: Allowlist::default(),
        }
    }
}

const S: Section = Section("analytics.dnscalc");

impl DnsCalcConfig {
    /// Reads `[analytics.dnscalc]` from the configuration (defaults when absent).
    pub fn from_config(cfg: &Config) -> Result<DnsCalcConfig, ConfigError> {
        match cfg.analytics.get("dnscalc") {
            None => Ok(DnsCalcConfig::default()),
            Some(v) => DnsCalcConfig::from_table(S.table(v, "")?),
        }
    }

    pub fn from_table(t: &toml::Table) -> Result<DnsCalcConfig, ConfigError> {
        let mut c = DnsCalcConfig::default();
        let mut builtin = true;
        let mut disabled: Vec<String> = Vec::new();
        let mut extra: Vec<Derivation> = Vec::new();
        let mut extra_ports: Vec<u16> = Vec::new();
        let mut ports: Option<Vec<u16>> = None;
        for (k, v) in t {
            let k = k.as_str();
            match k {
                "calculated_port" => c.calculated_port = S.bool(v, k)?,
                "unusual_response" => c.unusual_response = S.bool(v, k)?,
                "window_s" => c.window = Dur::from_secs_f64(S.num(v, k, 1.0, 3600.0)?),
                "immediate_window_s" => {
                    c.immediate_window = Dur::from_secs_f64(S.num(v, k, 1.0, 3600.0)?)
                }
                "min_score" => c.min_score = S.num(v, k, 0.0, 1.0)?,
                "max_answers_per_host" => c.max_answers_per_host = S.int(v, k, 1, 256)? as usize,
                "max_hosts" => c.max_hosts = S.int(v, k, 16, 1 << 24)? as usize,
                "builtin_derivations" => builtin = S.bool(v, k)?,
                "disable_derivations" => {
                    disabled = S.strs(v, k)?;
                    if let Some(d) = disabled.iter().find(|d| !BUILTIN.iter().any(|b| b.0 == *d)) {
                        return Err(S.bad(k, format!("`{d}` is not a built-in derivation")));
                    }
                }
                "derivations" => {
                    for s in S.strs(v, k)? {
                        extra.push(Derivation::parse(&s).map_err(|e| S.bad(k, e))?);
                    }
                }
                "address_transforms" => c.address_transforms = S.bool(v, k)?,
                "standard_ports" => ports = Some(S.ports(v, k)?),
                "extra_standard_ports" => extra_ports = S.ports(v, k)?,
                "unusual" => c.read_unusual(S.table(v, k)?)?,
                "baseline" => c.read_baseline(S.table(v, k)?)?,
                "allowlist" => c.read_allowlist(S.table(v, k)?)?,
                _ => return Err(S.bad(k, "unknown key")),
            }
        }
        c.derivations = (0..BUILTIN.len())
            .filter(|&i| builtin && !disabled.iter().any(|d| d == BUILTIN[i].0))
            .filter_map(Derivation::builtin)
            .chain(extra)
            .collect();
        let base: Vec<u16> = ports.unwrap_or_else(|| STANDARD_PORTS.to_vec());
        c.standard_ports = PortSet::new(base.into_iter().chain(extra_ports));
        Ok(c)
    }

    fn read_unusual(&mut self, t: &toml::Table) -> Result<(), ConfigError> {
        for (k, v) in t {
            let key = format!("unusual.{k}");
            match k.as_str() {
                "max_ttl_s" => self.unusual.max_ttl = S.int(v, &key, 0, 300)? as u32,
                "min_evidence" => self.unusual.min_evidence = S.num(v, &key, 0.0, 1.0)?,
                "internal_domains" => {
                    for d in S.strs(v, &key)? {
                        let d = normalize_domain(&d).map_err(|e| S.bad(&key, e))?;
                        self.unusual.internal_domains.push(d);
                    }
                }
                "max_names" => self.unusual.max_names = S.int(v, &key, 16, 1 << 24)? as usize,
                _ => return Err(S.bad(&key, "unknown key")),
            }
        }
        Ok(())
    }

    fn read_baseline(&mut self, t: &toml::Table) -> Result<(), ConfigError> {
        let b = &mut self.baseline;
        for (k, v) in t {
            let key = format!("baseline.{k}");
            match k.as_str() {
                "half_life_h" => {
                    b.half_life = Dur::from_secs_f64(S.num(v, &key, 0.1, 8760.0)? * 3600.0)
                }
                "regular_min_count" => b.regular_min_count = S.num(v, &key, 1.0, 1000.0)? as f32,
                "regular_min_span_s" => {
                    b.regular_min_span = Dur::from_secs_f64(S.num(v, &key, 0.0, 2_592_000.0)?)
                }
                "top_ports" => b.top_ports = S.int(v, &key, 4, 1024)? as usize,
                "top_dests" => b.top_dests = S.int(v, &key, 4, 1024)? as usize,
                "save_interval_s" => {
                    self.save_interval = Dur::from_secs_f64(S.num(v, &key, 10.0, 86_400.0)?)
                }
                _ => return Err(S.bad(&key, "unknown key")),
            }
        }
        Ok(())
    }

    fn read_allowlist(&mut self, t: &toml::Table) -> Result<(), ConfigError> {
        for (k, v) in t {
            let key = format!("allowlist.{k}");
            match k.as_str() {
                "domains" => {
                    for d in S.strs(v, &key)? {
                        let d = normalize_domain(&d).map_err(|e| S.bad(&key, e))?;
                        self.allow.domains.push(d);
                    }
                }
                "cidrs" => {
                    self.allow.cidrs =
                        NetSet::parse(&S.strs(v, &key)?).map_err(|e| S.bad(&key, e))?
                }
                "ports" => self.allow.ports = S.ports(v, &key)?,
                _ => return Err(S.bad(&key, "unknown key")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DnsCalcConfig, ConfigError> {
        let cfg = Config::from_toml(text, "t.toml").unwrap();
        DnsCalcConfig::from_config(&cfg)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse("").unwrap();
        assert_eq!(c.window, Dur::from_secs(120));
        assert_eq!(c.derivations.len(), BUILTIN.len());
        assert!(c.standard_ports.contains(443) && !c.standard_ports.contains(18239));
        let c = parse(
            "[analytics.dnscalc]\nwindow_s = 30\ndisable_derivations = [\"h4\"]\n\
             derivations = [\"o1 + o2*2\"]\nextra_standard_ports = [18239]\n\
             [analytics.dnscalc.allowlist]\ndomains = [\"*.Example.NET\"]\ncidrs = [\"1.2.3.0/24\"]\nports=[9999]\n\
             [analytics.dnscalc.baseline]\nhalf_life_h = 1\n[analytics.dnscalc.unusual]\nmax_ttl_s = 0\n\
             [analytics.other]\nwhatever = 1\n",
        )
        .unwrap();
        assert_eq!(c.window, Dur::from_secs(30));
        assert_eq!(c.derivations.len(), BUILTIN.len());
        assert!(c.derivations.iter().any(|d| d.name == "o1+o2*2"));
        assert!(c.standard_ports.contains(18239) && c.standard_ports.contains(443));
        assert_eq!(c.allow.domains.as_slice(), ["example.net".to_string()]);
        assert!(c.allow.allows_addr("1.2.3.9".parse().unwrap()) && c.allow.allows_port(9999));
        assert_eq!(c.baseline.half_life, Dur::from_secs(3600));
        assert_eq!(c.unusual.max_ttl, 0);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            (
                "[analytics.dnscalc]\nwindo_s = 3\n",
                "analytics.dnscalc.windo_s",
            ),
            (
                "[analytics.dnscalc]\nwindow_s = 0\n",
                "analytics.dnscalc.window_s",
            ),
            (
                "[analytics.dnscalc]\nmin_score = \"x\"\n",
                "analytics.dnscalc.min_score",
            ),
            (
                "[analytics.dnscalc]\nderivations = [\"o1+o9\"]\n",
                "analytics.dnscalc.derivations",
            ),
            (
                "[analytics.dnscalc]\ndisable_derivations = [\"o9\"]\n",
                "disable_derivations",
            ),
            (
                "[analytics.dnscalc]\nstandard_ports = [0]\n",
                "analytics.dnscalc.standard_ports",
            ),
            (
                "[analytics.dnscalc.unusual]\nttl = 1\n",
                "analytics.dnscalc.unusual.ttl",
            ),
            (
                "[analytics.dnscalc.baseline]\ntop_ports = 1\n",
                "baseline.top_ports",
            ),
            (
                "[analytics.dnscalc.allowlist]\ncidrs = [\"1.2.3.0/40\"]\n",
                "allowlist.cidrs",
            ),
            (
                "[analytics.dnscalc.allowlist]\nnames = []\n",
                "allowlist.names",
            ),
            ("[analytics]\ndnscalc = 3\n", "analytics.dnscalc"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.0.contains(key), "{text}: {e}");
        }
    }
}
