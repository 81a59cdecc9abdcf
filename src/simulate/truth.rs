//! truth.json: every malicious instance the simulator planted, as the wire carried it.

use serde::{Deserialize, Serialize};

use crate::enrichment::{LaunchdInfo, ProcessInfo, UserInfo, VmInfo};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Truth {
    pub generator: String,
    pub seed: u64,
    pub hosts: usize,
    pub hours: f64,
    pub scenarios: Vec<String>,
    pub start: String,
    pub end: String,
    pub instances: Vec<Instance>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TruthHost {
    pub ip: String,
    pub name: String,
    /// `macos`, `linux` or `esxi` (a VM on an ESXi host).
    pub platform: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TruthConn {
    /// First packet (SYN or first datagram).
    pub start: String,
    pub dest_ip: String,
    pub dest_port: u16,
    pub proto: String,
    /// Application bytes the internal host sent.
    pub bytes_out: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TruthDns {
    pub answered_at: String,
    pub query: String,
    pub answers: Vec<String>,
    pub ttl: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub scenario: String,
    pub variant: String,
    pub technique: String,
    pub analytic: String,
    pub attack_analytics: Vec<String>,
    pub host: TruthHost,
    /// Every external address the instance connected to.
    pub external_ips: Vec<String>,
    pub ports: Vec<u16>,
    pub proto: String,
    #[serde(default)]
    pub domains: Vec<String>,
    /// First and last packet of the instance (RFC 3339).
    pub start: String,
    pub end: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launchd: Option<LaunchdInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmInfo>,
    /// Scenario parameters (formula, period, jitter, chunk size, ...).
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub connections: Vec<TruthConn>,
    #[serde(default)]
    pub dns: Vec<TruthDns>,
}
