//! The format-neutral event model. Every adapter (canonical JSON, osquery, Sysmon, ESXi)
//! turns its lines into [`EdrEvent`]s; the [`EdrIndex`](super::EdrIndex) only knows
//! these. Small helpers shared by the adapters (MAC and address parsing, time stamps)
//! live here too.

use std::net::IpAddr;

use super::{Attribution, HostInfo, LaunchdInfo};
use crate::time::Ts;

/// IP protocol numbers used as `transport`.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
/// Transport not reported by the source (osquery's Linux `socket_events` often says
/// `protocol = 0`): such an event joins a flow of either transport.
pub const ANY_TRANSPORT: u8 = 0;

/// A MAC address, as [`crate::decode::Packet::src_mac`] carries it.
pub type Mac = [u8; 6];

/// One fact from the EDR feed.
#[derive(Clone, Debug, PartialEq)]
pub enum EdrEvent {
    /// A process opened (or, for snapshots, held) a connection.
    Network(NetworkEvent),
    /// Inventory: a host's names, addresses and MACs, and optionally a VM it runs.
    Host(HostEvent),
    /// A process started (or, with `exited`, was seen gone).
    Process(ProcessEvent),
    /// A local account: uid to user name on a host (osquery `users`).
    Account(AccountEvent),
    /// A launchd job and the program it runs (osquery `launchd`).
    LaunchdJob(LaunchdJobEvent),
}

impl EdrEvent {
    pub fn ts(&self) -> Ts {
        match self {
            EdrEvent::Network(e) => e.ts,
            EdrEvent::Host(e) => e.ts,
            EdrEvent::Process(e) => e.ts,
            EdrEvent::Account(e) => e.ts,
            EdrEvent::LaunchdJob(e) => e.ts,
        }
    }
}

/// A connection attributed to a process. The host's name (the key for joins by pid) is
/// `attribution.host.name`; the pid is `attribution.process.pid`.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkEvent {
    pub ts: Ts,
    /// [`TCP`], [`UDP`] or [`ANY_TRANSPORT`].
    pub transport: u8,
    /// `None` when the source did not know the local address (osquery on Linux writes
    /// an empty `local_address` for `connect`): ingest fills it from the host inventory.
    pub src: Option<IpAddr>,
    pub sport: Option<u16>,
    pub dst: IpAddr,
    pub dport: u16,
    /// The connection was seen open at `ts` (osquery `process_open_sockets`), not opened
    /// at `ts`: it may join a flow that started up to the index's snapshot window before.
    pub snapshot: bool,
    /// Sysmon `ProcessGuid`: joins to the process-create event.
    pub process_guid: Option<String>,
    /// Numeric user id when the source gives no name (joined to `users` rows).
    pub uid: Option<u32>,
    pub attribution: Attribution,
}

/// Inventory: a host and, for an ESXi host, one VM it runs.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct HostEvent {
    pub ts: Ts,
    pub host: HostInfo,
    pub ips: Vec<IpAddr>,
    pub macs: Vec<Mac>,
    pub vm: Option<VmEvent>,
}

/// A virtual machine's name and addresses, as an ESXi host reports it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct VmEvent {
    pub name: Option<String>,
    pub macs: Vec<Mac>,
    pub ips: Vec<IpAddr>,
}

/// A process start (or exit). Keyed in the index by (host name, pid, start).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ProcessEvent {
    pub ts: Ts,
    pub host_ips: Vec<IpAddr>,
    pub pid: u32,
    /// Process start time; `ts` when the source does not say.
    pub start: Ts,
    /// The process was seen gone at `ts` (osquery `removed` row).
    pub exited: bool,
    pub process_guid: Option<String>,
    pub uid: Option<u32>,
    pub attribution: Attribution,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AccountEvent {
    pub ts: Ts,
    pub host: Option<String>,
    pub uid: u32,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LaunchdJobEvent {
    pub ts: Ts,
    pub host: Option<String>,
    /// The executable the job runs (`Program`), when set.
    pub program: Option<String>,
    /// `ProgramArguments` joined by spaces (osquery's form). Its executable may itself
    /// contain spaces, so the index matches any word-boundary prefix of it.
    pub arguments: Option<String>,
    pub launchd: LaunchdInfo,
    /// `UserName` of the job, if set.
    pub user: Option<String>,
}

/// Parses `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff` (either case).
pub fn parse_mac(s: &str) -> Option<Mac> {
    let s = s.trim();
    let sep = match s.as_bytes().get(2) {
        Some(b':') => ':',
        Some(b'-') => '-',
        _ => return None,
    };
    let mut mac = [0u8; 6];
    let mut parts = s.split(sep);
    for byte in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(mac)
}

/// `aa:bb:cc:dd:ee:ff`, lower case.
pub fn format_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// Parses an address, mapping `::ffff:a.b.c.d` to IPv4 (as decode reports it). Accepts
/// a zone suffix (`fe80::1%en0`) by dropping it.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s.split('%').next().unwrap_or(s);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// True for `0.0.0.0` and `::`, which sources write when they do not know the address.
pub fn is_unspecified(ip: &IpAddr) -> bool {
    ip.is_unspecified()
}

/// Transport from a name (`tcp`, `udp`, any case) or an IANA number (`6`, `17`).
pub fn parse_transport(s: &str) -> Option<u8> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("tcp") {
        return Some(TCP);
    }
    if s.eq_ignore_ascii_case("udp") {
        return Some(UDP);
    }
    match s.parse::<u8>().ok()? {
        TCP => Some(TCP),
        UDP => Some(UDP),
        _ => None,
    }
}

/// The last component of a path (`/usr/bin/curl` -> `curl`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// `agent` for `.../LaunchAgents/...`, `daemon` for `.../LaunchDaemons/...`.
pub fn launchd_kind(plist: &str) -> Option<&'static str> {
    if plist.contains("/LaunchAgents/") {
        Some("agent")
    } else if plist.contains("/LaunchDaemons/") {
        Some("daemon")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_both_separators_and_reject_junk() {
        assert_eq!(
            parse_mac("00:50:56:AA:bb:cc"),
            Some([0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc])
        );
        assert_eq!(
            parse_mac("00-50-56-aa-bb-cc"),
            Some([0x00, 0x50, 0x56, 0xaa, 0xbb, 0xcc])
        );
        for bad in [
            "",
            "00:50:56:aa:bb",
            "00:50:56:aa:bb:cc:dd",
            "0:50:56:aa:bb:cc",
            "zz:50:56:aa:bb:cc",
            "00:50-56:aa:bb:cc",
            "+0:50:56:aa:bb:cc",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(
            format_mac(&[0, 0x50, 0x56, 0xaa, 0xbb, 0xcc]),
            "00:50:56:aa:bb:cc"
        );
    }

    #[test]
    fn mapped_v6_becomes_v4() {
        assert_eq!(parse_ip("::ffff:10.1.0.17"), parse_ip("10.1.0.17"));
        assert_eq!(parse_ip("fe80::1%en0"), parse_ip("fe80::1"));
        assert_eq!(parse_ip("10.1.0"), None);
    }

    #[test]
    fn transports_and_launchd_kinds() {
        assert_eq!(parse_transport("TCP"), Some(TCP));
        assert_eq!(parse_transport("17"), Some(UDP));
        assert_eq!(parse_transport("1"), None);
        assert_eq!(
            launchd_kind("/Library/LaunchDaemons/x.plist"),
            Some("daemon")
        );
        assert_eq!(
            launchd_kind("/Users/ann/Library/LaunchAgents/x.plist"),
            Some("agent")
        );
        assert_eq!(launchd_kind("/etc/x.plist"), None);
    }
}
