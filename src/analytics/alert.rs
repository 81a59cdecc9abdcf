//! The alert value the analytics produce; [`crate::output`] writes it as the JSON of
//! ../shared/spec/alerts.md.

use std::net::IpAddr;

use crate::enrichment::Attribution;
use crate::time::Ts;

/// The analytic names of the alert contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Analytic {
    DnsCalculatedPort,
    UnusualDnsNonstandardPort,
    FixedSizeTransfer,
    PeriodicTransfer,
    NonbrowserOutboundDeviation,
}

impl Analytic {
    pub const ALL: [Analytic; 5] = [
        Analytic::DnsCalculatedPort,
        Analytic::UnusualDnsNonstandardPort,
        Analytic::FixedSizeTransfer,
        Analytic::PeriodicTransfer,
        Analytic::NonbrowserOutboundDeviation,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Analytic::DnsCalculatedPort => "dns_calculated_port",
            Analytic::UnusualDnsNonstandardPort => "unusual_dns_nonstandard_port",
            Analytic::FixedSizeTransfer => "fixed_size_transfer",
            Analytic::PeriodicTransfer => "periodic_transfer",
            Analytic::NonbrowserOutboundDeviation => "nonbrowser_outbound_deviation",
        }
    }
    pub fn from_name(s: &str) -> Option<Analytic> {
        Analytic::ALL.into_iter().find(|a| a.name() == s)
    }
    pub fn technique(self) -> &'static str {
        match self {
            Analytic::DnsCalculatedPort
            | Analytic::UnusualDnsNonstandardPort
            | Analytic::NonbrowserOutboundDeviation => "T1568.003",
            Analytic::FixedSizeTransfer => "T1030",
            Analytic::PeriodicTransfer => "T1029",
        }
    }
    /// ATT&CK analytic ids, narrowed to the host's platform where it is known.
    pub fn attack_analytics(self, platform: Option<&str>) -> &'static [&'static str] {
        match self {
            Analytic::DnsCalculatedPort | Analytic::UnusualDnsNonstandardPort => match platform {
                Some("macos") => &["AN0730"],
                Some("linux") => &["AN0729"],
                Some("esxi") => &["AN0731"],
                _ => &["AN0729", "AN0730", "AN0731"],
            },
            Analytic::NonbrowserOutboundDeviation => &["AN0730"],
            Analytic::FixedSizeTransfer => &["AN0598"],
            Analytic::PeriodicTransfer => &["AN1115"],
        }
    }
}

/// The `dns` object of an alert.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertDns {
    pub query: String,
    pub answers: Vec<IpAddr>,
    pub ttl: u32,
    pub answered_at: Ts,
    /// The derivation that matched, e.g. `o1*o2+o3`.
    pub derivation: Option<String>,
}

/// The `cadence` object of an alert.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct AlertCadence {
    pub period_s: Option<f64>,
    pub jitter: Option<f64>,
    pub count: Option<u64>,
    pub size_bytes: Option<u64>,
    pub size_cv: Option<f64>,
}

/// One detection. Field meanings follow ../shared/spec/alerts.md.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Packet time of the evidence that completed the detection.
    pub ts: Ts,
    pub analytic: Analytic,
    /// The internal host.
    pub src: IpAddr,
    /// Source port of the (last) flow in evidence, for the Community ID.
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub proto: u8,
    pub score: f64,
    pub reasons: Vec<String>,
    pub dest_name: Option<String>,
    /// Every address / port in the evidence, when more than one.
    pub dest_ips: Vec<IpAddr>,
    pub dest_ports: Vec<u16>,
    pub dns: Option<AlertDns>,
    pub cadence: Option<AlertCadence>,
    /// EDR context, joined before the alert is written.
    pub attribution: Option<Attribution>,
    /// uids of the flows in evidence (for the report's links).
    pub flow_uids: Vec<u64>,
}

impl Alert {
    pub fn new(analytic: Analytic, ts: Ts, src: IpAddr, dst: IpAddr, dst_port: u16) -> Alert {
        Alert {
            ts,
            analytic,
            src,
            src_port: 0,
            dst,
            dst_port,
            proto: crate::decode::PROTO_TCP,
            score: 0.0,
            reasons: Vec::new(),
            dest_name: None,
            dest_ips: Vec::new(),
            dest_ports: Vec::new(),
            dns: None,
            cadence: None,
            attribution: None,
            flow_uids: Vec::new(),
        }
    }
}
