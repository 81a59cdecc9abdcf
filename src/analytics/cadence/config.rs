//! `[analytics.cadence]`: thresholds, caps and allowlists of `periodic_transfer` and
//! `fixed_size_transfer`. Only this sub-table is validated here; an unknown key or a bad
//! value is an error naming the key.
//!
//! ```toml
//! [analytics.cadence]
//! periodic = true                 # periodic_transfer
//! fixed_size = true               # fixed_size_transfer
//! by_name = true                  # also group by the DNS name the host resolved
//! by_process = true               # also group by EDR process (needs --edr)
//! min_period_s = 10
//! max_period_s = 3600
//! min_beats = 12
//! max_jitter = 0.30
//! min_significance = 2.0
//! burst_s = 2                     # connections this close form one beat
//! size_floor = 256                # bytes; smaller sizes never count
//! size_abs_tol = 0                # bytes (plus size_rel_tol)
//! size_rel_tol = 0.005
//! min_repeats = 5
//! min_chunk_bytes = 512           # chunk size for multiples inside one connection
//! heartbeat_max_bytes = 256       # repeated messages this small in one flow are keepalives
//! refire_s = 3600                 # quiet time of a series after it alerted
//! max_series = 131072             # per worker; least recently seen evicted
//! max_dns = 262144                # (host, address) -> name entries per worker
//! max_flows = 262144              # live outbound flows tracked per worker
//! builtin_allowlist = true        # keep the defaults below and add to them
//! [analytics.cadence.allowlist]
//! domains = ["updates.example.com"]        # suffix match
//! cidrs = ["203.0.113.0/24"]
//! ports = [8883]
//! processes = ["backupd", "/opt/agent/", "com.example.agent"]
//! ```

use crate::baseline::allow::{normalize_domain, DomainSet};
use crate::config::{Config, ConfigError, NetSet, Section};
use crate::time::Dur;

use super::{PeriodicParams, SizeConfig, SizeParams};

/// Known-good destinations of update agents, MDM, security tools, sync and chat clients
/// and time services: their schedules are periodic by design.
pub const DEFAULT_DOMAINS: &[&str] = &[
    // Apple software update, push, time, iCloud
    "apple.com",
    "icloud.com",
    "mzstatic.com",
    "apple-cloudkit.com",
    // Google / Microsoft updaters
    "tools.google.com",
    "update.googleapis.com",
    "dl.google.com",
    "windowsupdate.com",
    "update.microsoft.com",
    "delivery.mp.microsoft.com",
    // Linux distributions and time
    "ubuntu.com",
    "canonical.com",
    "snapcraft.io",
    "debian.org",
    "fedoraproject.org",
    "ntp.org",
    // security / monitoring / MDM
    "cloudsink.net",
    "crowdstrike.com",
    "sentinelone.net",
    "datadoghq.com",
    "datadoghq.eu",
    "jamfcloud.com",
    "kandji.io",
    "zscaler.net",
    // sync / chat / VPN clients
    "dropbox.com",
    "dropboxapi.com",
    "slack.com",
    "zoom.us",
    "tailscale.com",
];

/// Infrastructure ports: DNS, DHCP, NTP, NetBIOS, IKE/IPsec, OpenVPN, SSDP, STUN, MQTT,
/// Apple/Google push, mDNS, Dropbox LAN sync, WireGuard.
pub const DEFAULT_PORTS: &[u16] = &[
    53, 67, 68, 123, 137, 138, 500, 1194, 1883, 1900, 3478, 4500, 5223, 5228, 5353, 8883, 17500,
    19302, 51820,
];

/// Known-good agents by executable (a trailing `/` matches a directory) or launchd label:
/// harder to borrow than a bare process name.
pub const DEFAULT_PROCESSES: &[&str] = &[
    "/System/Library/PrivateFrameworks/SoftwareUpdateCore.framework/",
    "/System/Library/PrivateFrameworks/ApplePushService.framework/",
    "/usr/libexec/timed",
    "/usr/libexec/mdmclient",
    "/usr/libexec/nsurlsessiond",
    "com.apple.softwareupdated",
    "com.apple.apsd",
    "com.apple.timed",
    "com.google.keystone.agent",
    "com.crowdstrike.falcond",
    "/Library/CS/",
    "/Applications/Dropbox.app/",
    "/Applications/Slack.app/",
    "/Applications/zoom.us.app/",
    "/Applications/WireGuard.app/",
    "/usr/local/jamf/",
    "/usr/sbin/chronyd",
    "/usr/sbin/ntpd",
    "/sbin/ntpd",
    "/lib/systemd/systemd-timesyncd",
    "/usr/lib/apt/methods/",
    "/usr/bin/unattended-upgrade",
    "/usr/lib/snapd/",
    "/opt/datadog-agent/",
    "/opt/CrowdStrike/",
    "/usr/sbin/openvpn",
    "/usr/lib/ipsec/",
    "/usr/sbin/tailscaled",
    // backup clients
    "/usr/bin/restic",
    "/usr/local/bin/restic",
    "/usr/bin/borg",
    "/usr/bin/duplicity",
    "/System/Library/CoreServices/backupd.bundle/",
    "/Applications/Arq.app/",
];

/// Allowlist of the cadence analytics.
#[derive(Clone, Debug, Default)]
pub struct CadenceAllow {
    /// Lower case, no surrounding dots; suffix match on label boundaries.
    pub domains: DomainSet,
    pub cidrs: NetSet,
    pub ports: Vec<u16>,
    /// Executable paths (prefix when ending in `/`), process names or launchd labels.
    pub processes: Vec<String>,
}

impl CadenceAllow {
    pub fn builtin() -> CadenceAllow {
        CadenceAllow {
            domains: DEFAULT_DOMAINS.iter().map(|s| s.to_string()).collect(),
            cidrs: NetSet::default(),
            ports: DEFAULT_PORTS.to_vec(),
            processes: DEFAULT_PROCESSES.iter().map(|s| s.to_string()).collect(),
        }
    }
    pub fn allows_name(&self, name: &str) -> bool {
        self.domains.contains_name(name)
    }
    pub fn allows_port(&self, p: u16) -> bool {
        self.ports.contains(&p)
    }
    /// `exe`, `name`, `label`: the EDR's executable path, process name and launchd label.
    pub fn allows_process(
        &self,
        exe: Option<&str>,
        name: Option<&str>,
        label: Option<&str>,
    ) -> bool {
        self.processes.iter().any(|e| {
            if e.contains('/') {
                exe.is_some_and(|x| {
                    if e.ends_with('/') {
                        x.starts_with(e.as_str())
                    } else {
                        x == e
                    }
                })
            } else {
                name == Some(e.as_str()) || label == Some(e.as_str())
            }
        })
    }
}

#[derive(Clone, Debug)]
pub struct CadenceConfig {
    pub periodic: bool,
    pub fixed_size: bool,
    pub by_name: bool,
    pub by_process: bool,
    pub periodic_params: PeriodicParams,
    pub burst: Dur,
    pub size: SizeConfig,
    pub size_params: SizeParams,
    pub min_chunk_bytes: u64,
    pub heartbeat_max_bytes: u64,
    pub refire: Dur,
    pub max_series: usize,
    pub max_dns: usize,
    pub max_flows: usize,
    pub allow: CadenceAllow,
    /// `[edr.expected_users]`: executable -> the users it should run as.
    pub expected_users: std::collections::HashMap<String, Vec<String>>,
}

impl Default for CadenceConfig {
    fn default() -> Self {
        CadenceConfig {
            periodic: true,
            fixed_size: true,
            by_name: true,
            by_process: true,
            periodic_params: PeriodicParams::default(),
            burst: Dur::from_secs(2),
            // Equal plaintext gives equal ciphertext (AEAD, one record): small chunks
            // repeat exactly. Only chunks split into a different number of records
            // differ, by ~22-29 bytes per record, which the relative 0.5 % covers
            // from ~6 KB up.
            // Floor 256: below it a repeated total is a protocol command, poll or
            // keystroke (FTP login, SSH, keepalives, NTP), not a data transfer.
            size: SizeConfig {
                floor: 256,
                abs_tol: 0,
                ..SizeConfig::default()
            },
            size_params: SizeParams::default(),
            min_chunk_bytes: 512,
            heartbeat_max_bytes: 256,
            refire: Dur::from_secs(3600),
            max_series: 1 << 17,
            max_dns: 1 << 18,
            max_flows: 1 << 18,
            allow: CadenceAllow::builtin(),
            expected_users: std::collections::HashMap::new(),
        }
    }
}

const S: Section = Section("analytics.cadence");

impl CadenceConfig {
    /// Reads `[analytics.cadence]` (defaults when absent).
    pub fn from_config(cfg: &Config) -> Result<CadenceConfig, ConfigError> {
        let mut c = match cfg.analytics.get("cadence") {
            None => CadenceConfig::default(),
            Some(v) => CadenceConfig::from_table(
                v.as_table().ok_or_else(|| S.bad("", "must be a table"))?,
            )?,
        };
        c.expected_users = crate::enrichment::context::expected_users_from(&cfg.edr)?;
        Ok(c)
    }

    pub fn from_table(t: &toml::Table) -> Result<CadenceConfig, ConfigError> {
        let mut c = CadenceConfig::default();
        let mut builtin = true;
        let mut extra = CadenceAllow::default();
        for (k, v) in t {
            let k = k.as_str();
            let pp = &mut c.periodic_params;
            match k {
                "periodic" => c.periodic = S.bool(v, k)?,
                "fixed_size" => c.fixed_size = S.bool(v, k)?,
                "by_name" => c.by_name = S.bool(v, k)?,
                "by_process" => c.by_process = S.bool(v, k)?,
                "min_period_s" => pp.min_period_s = S.num(v, k, 1.0, 86_400.0)?,
                "max_period_s" => pp.max_period_s = S.num(v, k, 1.0, 7.0 * 86_400.0)?,
                "min_beats" => pp.min_beats = S.int(v, k, 4, 64)? as u32,
                "max_jitter" => pp.max_jitter = S.num(v, k, 0.0, 1.0)?,
                "min_significance" => pp.min_significance = S.num(v, k, 0.0, 30.0)?,
                "burst_s" => c.burst = Dur::from_secs_f64(S.num(v, k, 0.0, 600.0)?),
                "size_floor" => c.size.floor = S.int(v, k, 0, 1 << 20)? as u32,
                "size_abs_tol" => c.size.abs_tol = S.int(v, k, 0, 1 << 16)? as u32,
                "size_rel_tol" => {
                    c.size.rel_tol_bp = (S.num(v, k, 0.0, 0.5)? * 10_000.0).round() as u16
                }
                "min_repeats" => c.size_params.min_count = S.int(v, k, 2, 1000)? as u32,
                "min_chunk_bytes" => c.min_chunk_bytes = S.int(v, k, 1, 1 << 30)? as u64,
                "heartbeat_max_bytes" => c.heartbeat_max_bytes = S.int(v, k, 0, 1 << 20)? as u64,
                "refire_s" => c.refire = Dur::from_secs_f64(S.num(v, k, 0.0, 7.0 * 86_400.0)?),
                "max_series" => c.max_series = S.int(v, k, 16, 1 << 24)? as usize,
                "max_dns" => c.max_dns = S.int(v, k, 16, 1 << 24)? as usize,
                "max_flows" => c.max_flows = S.int(v, k, 16, 1 << 24)? as usize,
                "builtin_allowlist" => builtin = S.bool(v, k)?,
                "allowlist" => {
                    let t = v.as_table().ok_or_else(|| S.bad(k, "must be a table"))?;
                    read_allow(t, &mut extra)?
                }
                _ => return Err(S.bad(k, "unknown key")),
            }
        }
        let pp = &c.periodic_params;
        if pp.min_period_s > pp.max_period_s {
            return Err(S.bad("min_period_s", "must not exceed max_period_s"));
        }
        if !builtin {
            c.allow = CadenceAllow::default();
        }
        c.allow.domains.extend(extra.domains.into_vec());
        c.allow.ports.extend(extra.ports);
        c.allow.processes.extend(extra.processes);
        c.allow.cidrs = extra.cidrs;
        Ok(c)
    }
}

fn read_allow(t: &toml::Table, a: &mut CadenceAllow) -> Result<(), ConfigError> {
    for (k, v) in t {
        let key = format!("allowlist.{k}");
        match k.as_str() {
            "domains" => {
                for d in S.strs(v, &key)? {
                    a.domains
                        .push(normalize_domain(&d).map_err(|e| S.bad(&key, e))?);
                }
            }
            "cidrs" => a.cidrs = NetSet::parse(&S.strs(v, &key)?).map_err(|e| S.bad(&key, e))?,
            "ports" => {
                let arr = v
                    .as_array()
                    .ok_or_else(|| S.bad(&key, "must be an array of ports"))?;
                for x in arr {
                    a.ports.push(S.int(x, &key, 1, 65_535)? as u16);
                }
            }
            "processes" => a.processes = S.strs(v, &key)?,
            _ => return Err(S.bad(&key, "unknown key")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CadenceConfig, ConfigError> {
        CadenceConfig::from_config(&Config::from_toml(text, "t.toml").unwrap())
    }

    #[test]
    fn defaults_overrides_and_errors() {
        let c = parse("").unwrap();
        assert!(c.allow.allows_port(123) && c.allow.allows_name("swscan.apple.com"));
        let c = parse(
            "[analytics.cadence]\nmin_beats = 8\nsize_floor = 100\n\
             [analytics.cadence.allowlist]\ndomains = [\"*.Corp.example\"]\nprocesses = [\"backupd\"]\nports = [9999]\n",
        )
        .unwrap();
        assert_eq!(c.periodic_params.min_beats, 8);
        assert_eq!(c.size.floor, 100);
        assert!(c.allow.allows_name("a.corp.example") && c.allow.allows_port(9999));
        assert!(c.allow.allows_port(123), "builtin kept");
        assert!(c.allow.allows_process(None, Some("backupd"), None));
        let c = parse("[analytics.cadence]\nbuiltin_allowlist = false\n").unwrap();
        assert!(!c.allow.allows_port(123));
        for (text, key) in [
            (
                "[analytics.cadence]\nmin_beat = 3\n",
                "analytics.cadence.min_beat",
            ),
            (
                "[analytics.cadence]\nmin_beats = 1\n",
                "analytics.cadence.min_beats",
            ),
            ("[analytics.cadence]\nmax_jitter = \"x\"\n", "max_jitter"),
            (
                "[analytics.cadence.allowlist]\nnames = []\n",
                "allowlist.names",
            ),
            (
                "[analytics.cadence.allowlist]\ncidrs = [\"1.2.3.0/99\"]\n",
                "allowlist.cidrs",
            ),
            (
                "[analytics.cadence]\nmin_period_s = 100\nmax_period_s = 50\n",
                "min_period_s",
            ),
            ("[analytics]\ncadence = 1\n", "analytics.cadence"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.0.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn process_matching() {
        let a = CadenceAllow::builtin();
        assert!(a.allows_process(
            Some("/opt/datadog-agent/bin/agent/agent"),
            Some("agent"),
            None
        ));
        assert!(a.allows_process(None, Some("x"), Some("com.apple.timed")));
        // a bare name never matches a path entry: a renamed implant is not allowed
        assert!(!a.allows_process(Some("/tmp/timed"), Some("timed"), None));
    }
}
