//! Enrichment: the optional EDR feed (see ../shared/spec/edr-feed.md) and host inventory.
//!
//! In: EDR lines (canonical JSON, osquery, Sysmon for Linux, ESXi logs), format detected
//! per file. Out: an [`Attribution`] for a flow (process, user, launchd job, host, VM),
//! looked up by transport, addresses, ports and time. Bad lines are counted and skipped,
//! never fatal.
//!
//! The index is shared between the feed reader (writer) and the pipeline workers
//! (readers), so it lives in lock-sharded maps (dashmap).
//!
//! Layout:
//! * [`event`]: the format-neutral [`EdrEvent`] every adapter produces.
//! * [`canonical`], [`osquery`], [`sysmon`], [`esxi`]: one adapter per input format;
//!   each turns one line into zero or more events, or counted rejects. None panics.
//! * [`index`]: [`EdrIndex`], the attribution index the workers query.
//! * [`reader`]: format sniffing, [`load_path`], [`ingest_line`], [`follow`], [`EdrStats`].
//! * [`live`]: following growing feeds for `portent live` ([`live::spawn_follower`]) and
//!   the short wait alerts may take for their attribution.
//! * [`context`]: score helpers for detectors (origin weight, browsers, unexpected users).

pub mod canonical;
pub mod context;
pub mod esxi;
pub mod event;
pub mod index;
pub mod live;
pub mod osquery;
pub mod reader;
pub mod sysmon;
mod xml;

#[cfg(test)]
mod tests;

pub use event::EdrEvent;
pub use index::{EdrIndex, IndexConfig, IndexStats, LookupStats};
pub use reader::{
    follow, ingest_bytes, ingest_followed, ingest_line, load_path, Adapter, EdrError, EdrStats,
    Format, RejectReason,
};

use serde::{Deserialize, Serialize};

/// `host` object (ECS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os: Option<OsInfo>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// `macos`, `linux`, `esxi`, `windows`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeSignature {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed: Option<bool>,
}

/// `process` object (ECS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_signature: Option<CodeSignature>,
}

/// `user` object (ECS).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `launchd` object: the LaunchAgent/LaunchDaemon that started the process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchdInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plist: Option<String>,
    /// `agent` or `daemon`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `vm` object: a virtual machine and the ESXi host it runs on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip: Vec<String>,
    /// Name of the ESXi host running the VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Everything the EDR feed knows about the origin of a flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<HostInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launchd: Option<LaunchdInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmInfo>,
}

impl Attribution {
    /// The host's platform (`macos`, `linux`, `esxi`), a VM counting as `esxi`.
    pub fn platform(&self) -> Option<&str> {
        if self.vm.is_some() {
            return Some("esxi");
        }
        self.host.as_ref()?.os.as_ref()?.platform.as_deref()
    }
    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.process.is_none()
            && self.user.is_none()
            && self.launchd.is_none()
            && self.vm.is_none()
    }
}

/// Looks up who owns a flow. Implemented by the EDR index; the analytics see only this.
pub trait Attributor: Send + Sync {
    /// Attribution of a flow by transport, originator and responder endpoints, the time
    /// of its first packet, and the originator's MAC when the link had one.
    #[allow(clippy::too_many_arguments)]
    fn attribute(
        &self,
        proto: u8,
        src: std::net::IpAddr,
        sport: u16,
        dst: std::net::IpAddr,
        dport: u16,
        first_ts: crate::time::Ts,
        src_mac: Option<[u8; 6]>,
    ) -> Option<Attribution>;

    /// Host inventory (name, platform, VM) of an internal address at `ts`, without
    /// process context: the fallback for alerts that carry no attribution.
    fn host_context(&self, _src: std::net::IpAddr, _ts: crate::time::Ts) -> Option<Attribution> {
        None
    }

    /// Whether the feed reports connections from `src` at all (an agent runs there).
    fn covers(&self, _src: std::net::IpAddr) -> bool {
        false
    }

    /// Who the feed saw connecting to `dst:dport` between `since` and `until`, as
    /// (source, attribution): what software on other hosts uses this peer.
    fn destination_users(
        &self,
        _proto: u8,
        _dst: std::net::IpAddr,
        _dport: u16,
        _since: crate::time::Ts,
        _until: crate::time::Ts,
    ) -> Vec<(std::net::IpAddr, Attribution)> {
        Vec::new()
    }
}
