//! ESXi logs that tie a VM's name to its MAC and guest address. Produces host events
//! with a `vm` object (`host.os.platform = esxi`).
//!
//! Accepted lines (ESXi 7 and 8 log headers; optionally behind a syslog `<PRI>` and an
//! RFC 5424 version, and with the ESXi host name after the time stamp when forwarded):
//!
//! ```text
//! vmware.log (vmx), ESXi 7:  2026-11-20T09:00:00.123Z| vmx| I005: DICT  ethernet0.generatedAddress = "00:50:56:aa:bb:cc"
//! vmware.log (vmx), ESXi 8:  2026-11-20T09:00:00.123Z In(05) vmx - DICT  displayName = "db-7"
//! hostd, ESXi 7:             2026-11-20T09:05:00.456Z info hostd[2099589] [Originator@6876 sub=Vmsvc.vm:/vmfs/volumes/61e8c2aa-0f5e1b3c/db-7/db-7.vmx opID=5f3a user=vpxuser] ... Guest IP ... 10.3.1.7
//! hostd, ESXi 8:             2026-11-20T09:05:00.456Z In(166) Hostd[2099589]: [Originator@6876 sub=Vmsvc.vm:/vmfs/volumes/.../db-7/db-7.vmx] ...
//! forwarded:                 <166>1 2026-11-20T09:05:00.456Z esx-01 Hostd - - - info hostd[2099589] [...] ...
//! ```
//!
//! What is taken from a line:
//! * VM name: `displayName = "NAME"`, `vmname=NAME` / `vmName=NAME` / `displayName=NAME`,
//!   else the `.vmx` file name of a `Vmsvc.vm:/vmfs/.../NAME.vmx` tag;
//! * MAC: `ethernetN.generatedAddress = "MAC"` / `ethernetN.address = "MAC"` (vmx
//!   configuration dump), or a `macAddress` / `mac` / `MAC` value on a hostd line;
//! * guest addresses: every address after `Guest IP`, `guest IP`, `ipAddress` or
//!   `IpAddress` on a hostd line.
//!
//! A vmware.log names its VM once (`displayName`) and its MACs on other lines, so the
//! adapter remembers, per file, the current VM and the MACs seen before its name. A
//! hostd line stands alone. Lines with none of the above are ignored; a line that has a
//! keyword but a bad MAC/address/time stamp is rejected. Continuation lines (`-->`) are
//! ignored. Never panics.

use std::net::IpAddr;

use super::event::{parse_ip, parse_mac, EdrEvent, HostEvent, Mac, VmEvent};
use super::reader::{Reject, RejectReason, Sink};
use super::{HostInfo, OsInfo};
use crate::time::Ts;

/// Per-file memory of a vmware.log.
#[derive(Debug, Default)]
pub struct State {
    /// The ESXi host name, once a line carried one.
    esx_host: Option<String>,
    /// The VM this vmware.log belongs to.
    vm_name: Option<String>,
    /// MACs seen before the VM's name.
    pending_macs: Vec<Mac>,
}

/// Log header: `<PRI>`/version stripped, time stamp, optional host name, the rest.
struct Header<'a> {
    ts: &'a str,
    host: Option<&'a str>,
    rest: &'a str,
    vmx: bool,
}

fn split_header(line: &str) -> Option<Header<'_>> {
    let mut s = line.trim_start();
    if s.starts_with('<') {
        let gt = s.find('>')?;
        s = s.get(gt + 1..)?;
        if let Some(r) = s.strip_prefix("1 ") {
            s = r;
        }
    }
    let ts_end = s.find([' ', '|']).unwrap_or(s.len());
    let ts = s.get(..ts_end)?;
    // A time stamp starts like 2026-11-20T...
    let b = ts.as_bytes();
    if b.len() < 19 || b.get(4) != Some(&b'-') || b.get(10) != Some(&b'T') {
        return None;
    }
    let mut rest = s.get(ts_end..)?.trim_start_matches(['|', ' ']);
    let first = rest.split_whitespace().next().unwrap_or("");
    let is_app = |t: &str| {
        let t = t.trim_end_matches(':');
        t.starts_with("hostd") || t.starts_with("Hostd") || t.starts_with("vmx") || t == "|"
    };
    let is_level = |t: &str| {
        matches!(
            t,
            "info" | "verbose" | "warning" | "error" | "debug" | "trivia"
        ) || t.get(2..3) == Some("(")
    };
    let mut host = None;
    if !first.is_empty() && !is_app(first) && !is_level(first) {
        // Forwarded: `esx-01 Hostd ...`; the next token must be an app name.
        let second = rest.split_whitespace().nth(1).unwrap_or("");
        if is_app(second) {
            host = Some(first);
            rest = rest.get(first.len()..)?.trim_start();
        }
    }
    let head: String = rest.chars().take(48).collect();
    let vmx = head.starts_with("vmx")
        || head.contains(" vmx ")
        || head.contains(" vmx|")
        || head.starts_with("vmx|");
    Some(Header {
        ts,
        host,
        rest,
        vmx,
    })
}

/// True when the line is an ESXi hostd or vmx log line.
pub fn looks_like(line: &str) -> bool {
    let Some(h) = split_header(line) else {
        return false;
    };
    let head: String = h.rest.chars().take(64).collect();
    h.vmx || head.contains("hostd[") || head.contains("Hostd[") || head.contains("Hostd:")
}

/// The quoted value after `key = ` (vmx configuration dump style).
fn quoted_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let i = s.find(key)?;
    let rest = s.get(i + key.len()..)?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.get(..rest.find('"')?)
}

/// The value after `key=` (hostd key=value style), unquoted.
fn kv_after<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(rel) = s.get(from..)?.find(key) {
        let at = from + rel;
        from = at + key.len();
        let before_ok = at == 0
            || s.get(..at)
                .and_then(|b| b.chars().next_back())
                .is_some_and(|c| !c.is_alphanumeric());
        let Some(v) = s.get(from..).and_then(|r| r.strip_prefix('=')) else {
            continue;
        };
        if !before_ok {
            continue;
        }
        let v = if let Some(q) = v.strip_prefix('"') {
            q.get(..q.find('"')?)?
        } else {
            v.split([' ', ',', ']', ';']).next()?
        };
        return (!v.is_empty()).then_some(v);
    }
    None
}

/// VM name from a `sub=Vmsvc.vm:/vmfs/volumes/<ds>/<dir>/<name>.vmx` tag.
fn vmx_path_name(s: &str) -> Option<&str> {
    let i = s.find("Vmsvc.vm:")?;
    let path = s.get(i + "Vmsvc.vm:".len()..)?;
    let path = path.split([' ', ']']).next()?;
    let file = path.rsplit('/').next()?;
    let name = file.strip_suffix(".vmx")?;
    (!name.is_empty()).then_some(name)
}

/// MAC of `ethernetN.generatedAddress` / `ethernetN.address` in a vmx dump line.
fn vmx_mac(s: &str) -> Option<Result<Mac, Reject>> {
    let i = s.find("ethernet")?;
    let rest = s.get(i..)?;
    let key_end = rest.find([' ', '='])?;
    let key = rest.get(..key_end)?;
    if !(key.ends_with(".generatedAddress") || key.ends_with(".address")) {
        return None;
    }
    let v = quoted_after(rest, key)?;
    Some(parse_mac(v).ok_or_else(|| Reject::new(RejectReason::BadMac, format!("{key} {v:?}"))))
}

/// Addresses after a guest IP keyword; `None` if the line has no such keyword.
fn guest_ips(s: &str) -> Option<Result<Vec<IpAddr>, Reject>> {
    let i = ["Guest IP", "guest IP", "ipAddress", "IpAddress"]
        .iter()
        .filter_map(|k| s.find(k).map(|i| i + k.len()))
        .min()?;
    let rest = s.get(i..)?;
    let ips: Vec<IpAddr> = rest
        .split(|c: char| {
            c.is_whitespace() || matches!(c, ',' | '[' | ']' | '"' | '\'' | '(' | ')' | '=')
        })
        .filter_map(|t| {
            let t = t.trim_end_matches(['.', ';']);
            // `10.3.1.7/24`: drop the prefix length.
            parse_ip(t.split('/').next().unwrap_or(t))
        })
        .collect();
    Some(if ips.is_empty() {
        Err(Reject::new(
            RejectReason::BadAddress,
            "guest IP report without a valid address",
        ))
    } else {
        Ok(ips)
    })
}

/// A MAC on a hostd line (`macAddress = "..."`, `mac=...`, `MAC ...`): the first
/// token after the key that parses as a MAC.
fn hostd_mac(s: &str) -> Option<Mac> {
    ["macAddress", "mac=", "MAC "].iter().find_map(|key| {
        let i = s.find(key)?;
        s.get(i + key.len()..)?
            .split_whitespace()
            .take(3)
            .map(|t| t.trim_matches(|c: char| matches!(c, '=' | '"' | ',' | '\'' | ';')))
            .find_map(parse_mac)
    })
}

fn event(
    ts: Ts,
    esx_host: Option<String>,
    name: Option<String>,
    macs: Vec<Mac>,
    ips: Vec<IpAddr>,
) -> EdrEvent {
    EdrEvent::Host(HostEvent {
        ts,
        host: HostInfo {
            name: esx_host,
            os: Some(OsInfo {
                platform: Some("esxi".into()),
            }),
        },
        ips: vec![],
        macs: vec![],
        vm: Some(VmEvent { name, macs, ips }),
    })
}

pub fn parse_line(st: &mut State, line: &str, sink: &mut Sink) {
    match parse(st, line) {
        Ok(Some(ev)) => sink.events.push(ev),
        Ok(None) => sink.ignored += 1,
        Err(r) => sink.reject(r),
    }
}

fn parse(st: &mut State, line: &str) -> Result<Option<EdrEvent>, Reject> {
    let t = line.trim_start();
    if t.starts_with("-->") {
        return Ok(None);
    }
    let Some(h) = split_header(line) else {
        // Relevant content without a log header is a cut or garbled line.
        let relevant = line.contains("generatedAddress")
            || line.contains("displayName")
            || guest_ips(line).is_some();
        return if relevant {
            Err(Reject::new(RejectReason::BadTimestamp, "no log time stamp"))
        } else {
            Ok(None)
        };
    };
    if let Some(host) = h.host {
        st.esx_host = Some(host.to_owned());
    }
    let ts = || {
        Ts::parse_rfc3339(h.ts).ok_or_else(|| {
            Reject::new(RejectReason::BadTimestamp, format!("time stamp {:?}", h.ts))
        })
    };
    let body = h.rest;
    if h.vmx {
        if let Some(name) = quoted_after(body, "displayName") {
            let ts = ts()?;
            if st.vm_name.as_deref() != Some(name) {
                st.vm_name = Some(name.to_owned());
            }
            let macs = std::mem::take(&mut st.pending_macs);
            if macs.is_empty() {
                return Ok(None); // MACs follow; each emits then
            }
            return Ok(Some(event(
                ts,
                st.esx_host.clone(),
                st.vm_name.clone(),
                macs,
                vec![],
            )));
        }
        if let Some(mac) = vmx_mac(body) {
            let mac = mac?;
            let ts = ts()?;
            if st.vm_name.is_none() {
                if !st.pending_macs.contains(&mac) {
                    st.pending_macs.push(mac);
                }
                return Ok(None);
            }
            return Ok(Some(event(
                ts,
                st.esx_host.clone(),
                st.vm_name.clone(),
                vec![mac],
                vec![],
            )));
        }
        return Ok(None);
    }
    // hostd: each line stands alone.
    let ips = guest_ips(body).transpose()?.unwrap_or_default();
    let mac = match vmx_mac(body).transpose()? {
        Some(m) => Some(m),
        None if !ips.is_empty() => hostd_mac(body),
        None => None,
    };
    if ips.is_empty() && mac.is_none() {
        return Ok(None);
    }
    let name = quoted_after(body, "displayName")
        .or_else(|| kv_after(body, "vmname"))
        .or_else(|| kv_after(body, "vmName"))
        .or_else(|| kv_after(body, "displayName"))
        .or_else(|| vmx_path_name(body))
        .ok_or_else(|| Reject::missing("VM name (vmname=, displayName or Vmsvc.vm:<path>.vmx)"))?;
    Ok(Some(event(
        ts()?,
        st.esx_host.clone(),
        Some(name.to_owned()),
        mac.into_iter().collect(),
        ips,
    )))
}
