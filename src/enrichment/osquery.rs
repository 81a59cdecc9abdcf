//! osquery result logs (the filesystem logger's `osqueryd.results.log`), in its three
//! shapes:
//!
//! * event form, one row per line:
//!   `{"name":"socket_events","hostIdentifier":"mac-17","calendarTime":"...","unixTime":1795168805,
//!     "epoch":0,"counter":12,"numerics":false,"columns":{...},"action":"added"}`
//! * batched form: the same header with `"diffResults":{"added":[...],"removed":[...]}`;
//! * snapshot form: the same header with `"snapshot":[...]` and `"action":"snapshot"`.
//!
//! Column values are strings (or numbers with `numerics: true`). The query name is the
//! user's, so the table is recognised by its columns:
//!
//! | table | becomes |
//! |---|---|
//! | `socket_events` (`action` connect/accept/bind, `pid`, `path`, `family`, `protocol`, `local_*`, `remote_*`, `time`) | network event at the row's `time` (not `unixTime`, which is when the query ran); `connect` is local→remote, `accept` remote→local, `bind` ignored |
//! | `process_open_sockets` (`pid`, `family`, `protocol`, `local_*`, `remote_*`, `state`) | snapshot network event at `unixTime` (seen open then), both orientations; listeners ignored |
//! | `processes` (`pid`, `name`, `path`, `cmdline`, `uid`, `parent`, `start_time`) | process start at `start_time`; a `removed` row marks it gone |
//! | `launchd` (`label`, `program`, `program_arguments`, `path`, `username`) | launchd job: joins processes by executable; kind from the plist's directory |
//! | `users` (`uid`, `username`) | account: uid → user name |
//!
//! Joins happen in the index, by (hostIdentifier, pid) at the event's time. A `username`
//! column (a query that joins `users`) is used directly. Never panics.

use serde_json::{Map, Value};

use super::event::{
    basename, launchd_kind, parse_ip, AccountEvent, EdrEvent, LaunchdJobEvent, NetworkEvent,
    ProcessEvent, ANY_TRANSPORT, TCP, UDP,
};
use super::reader::{Reject, RejectReason, Sink};
use super::{Attribution, HostInfo, LaunchdInfo, ParentInfo, ProcessInfo, UserInfo};
use crate::time::Ts;

/// `start_time` values below this are seconds since boot (osquery before 4.x on
/// Linux), not Unix time: 2001-09-09.
const MIN_EPOCH_SECS: i64 = 1_000_000_000;

pub fn parse_line(line: &str, sink: &mut Sink) {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return sink.reject(Reject::new(RejectReason::InvalidJson, e.to_string())),
    };
    let Some(o) = v.as_object() else {
        return sink.reject(Reject::new(RejectReason::InvalidJson, "not a JSON object"));
    };
    let header = Header {
        name: o.get("name").and_then(Value::as_str).unwrap_or(""),
        host: o
            .get("hostIdentifier")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .map(str::to_owned),
        unix_time: o.get("unixTime").and_then(secs),
    };
    let mut rows: Vec<(&str, &Value)> = Vec::new();
    if let Some(c) = o.get("columns") {
        let action = o.get("action").and_then(Value::as_str).unwrap_or("added");
        rows.push((action, c));
    } else if let Some(d) = o.get("diffResults") {
        for action in ["added", "removed"] {
            match d.get(action) {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) => rows.extend(a.iter().map(|r| (action, r))),
                Some(_) => {
                    return sink.reject(Reject::new(
                        RejectReason::BadField,
                        format!("diffResults.{action} is not an array"),
                    ))
                }
            }
        }
    } else if let Some(s) = o.get("snapshot") {
        match s {
            Value::Array(a) => rows.extend(a.iter().map(|r| ("snapshot", r))),
            _ => {
                return sink.reject(Reject::new(
                    RejectReason::BadField,
                    "snapshot is not an array",
                ))
            }
        }
    } else {
        return sink.reject(Reject::missing("columns, diffResults or snapshot"));
    }
    for (action, row) in rows {
        let Some(row) = row.as_object() else {
            sink.reject(Reject::new(RejectReason::BadField, "row is not an object"));
            continue;
        };
        match parse_row(&header, action, row) {
            Ok(evs) if evs.is_empty() => sink.ignored += 1,
            Ok(evs) => sink.events.extend(evs),
            Err(r) => sink.reject(r),
        }
    }
}

struct Header<'a> {
    name: &'a str,
    host: Option<String>,
    unix_time: Option<Ts>,
}

/// Unix seconds from a number or numeric string.
fn secs(v: &Value) -> Option<Ts> {
    let n = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    (n > 0).then(|| Ts::from_secs(n))
}

struct Row<'a>(&'a Map<String, Value>);

impl Row<'_> {
    fn has(&self, k: &str) -> bool {
        self.0.contains_key(k)
    }
    /// A column as text; empty counts as absent.
    fn get(&self, k: &str) -> Option<String> {
        match self.0.get(k)? {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    fn num<T: std::str::FromStr>(
        &self,
        k: &str,
        reason: RejectReason,
    ) -> Result<Option<T>, Reject> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Reject::new(reason, format!("{k} {v:?}"))),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Table {
    SocketEvents,
    OpenSockets,
    Processes,
    Launchd,
    Users,
    Other,
}

fn table(name: &str, r: &Row) -> Table {
    if r.has("remote_port") && r.has("local_port") {
        if r.has("time") && r.has("action") || name.ends_with("socket_events") {
            return Table::SocketEvents;
        }
        return Table::OpenSockets;
    }
    if r.has("label") && (r.has("program") || r.has("program_arguments")) {
        return Table::Launchd;
    }
    if r.has("pid") && r.has("parent") && (r.has("name") || r.has("path")) {
        return Table::Processes;
    }
    if r.has("uid") && r.has("username") && !r.has("pid") {
        return Table::Users;
    }
    Table::Other
}

fn parse_row(h: &Header, action: &str, row: &Map<String, Value>) -> Result<Vec<EdrEvent>, Reject> {
    let r = Row(row);
    let removed = action == "removed";
    match table(h.name, &r) {
        Table::SocketEvents if !removed => socket_event(h, &r).map(|e| e.into_iter().collect()),
        Table::OpenSockets if !removed => open_socket(h, &r),
        Table::Processes => process(h, &r, removed).map(|e| vec![e]),
        Table::Launchd if !removed => launchd(h, &r).map(|e| e.into_iter().collect()),
        Table::Users if !removed => users(h, &r).map(|e| vec![e]),
        _ => Ok(vec![]),
    }
}

fn host_attr(h: &Header) -> Option<HostInfo> {
    h.host.as_ref().map(|n| HostInfo {
        name: Some(n.clone()),
        os: None,
    })
}

fn query_time(h: &Header) -> Result<Ts, Reject> {
    h.unix_time.ok_or_else(|| {
        Reject::new(
            RejectReason::BadTimestamp,
            "unixTime missing or not a number",
        )
    })
}

/// The transport of `family`/`protocol`, `Ok(None)` for sockets that are not TCP/UDP
/// over IP (unix sockets, raw).
fn transport(r: &Row) -> Result<Option<u8>, Reject> {
    match r.get("family").as_deref() {
        // AF_INET; AF_INET6 on Linux (10) and macOS (30).
        None | Some("2") | Some("10") | Some("30") => {}
        Some(_) => return Ok(None),
    }
    Ok(match r.get("protocol").as_deref() {
        None | Some("0") => Some(ANY_TRANSPORT),
        Some("6") => Some(TCP),
        Some("17") => Some(UDP),
        Some(_) => None,
    })
}

fn addr(r: &Row, k: &str) -> Result<Option<std::net::IpAddr>, Reject> {
    match r.get(k) {
        None => Ok(None),
        Some(v) => parse_ip(&v)
            .map(Some)
            .ok_or_else(|| Reject::new(RejectReason::BadAddress, format!("{k} {v:?}"))),
    }
}

fn socket_process(pid: Option<u32>, path: Option<String>) -> Option<ProcessInfo> {
    (pid.is_some() || path.is_some()).then(|| ProcessInfo {
        pid,
        name: path.as_deref().map(|p| basename(p).to_owned()),
        executable: path,
        ..ProcessInfo::default()
    })
}

fn socket_event(h: &Header, r: &Row) -> Result<Option<EdrEvent>, Reject> {
    let outbound = match r.get("action").as_deref() {
        Some("connect") => true,
        Some("accept") => false,
        _ => return Ok(None), // bind and others: no connection
    };
    let Some(transport) = transport(r)? else {
        return Ok(None);
    };
    let t = r.get("time").ok_or_else(|| Reject::missing("time"))?;
    let ts = secs(&Value::String(t.clone()))
        .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, format!("time {t:?}")))?;
    let local = addr(r, "local_address")?;
    let remote = addr(r, "remote_address")?.ok_or_else(|| Reject::missing("remote_address"))?;
    let lport: Option<u16> = r.num("local_port", RejectReason::BadPort)?;
    let rport: Option<u16> = r.num("remote_port", RejectReason::BadPort)?;
    let rport = rport
        .filter(|&p| p != 0)
        .ok_or_else(|| Reject::missing("remote_port"))?;
    let lport = lport.filter(|&p| p != 0);
    let (src, sport, dst, dport) = if outbound {
        (local, lport, remote, rport)
    } else {
        let (Some(l), Some(lp)) = (local, lport) else {
            return Err(Reject::missing("local_address/local_port of accept"));
        };
        (Some(remote), Some(rport), l, lp)
    };
    let pid: Option<u32> = r.num("pid", RejectReason::BadField)?;
    let uid: Option<u32> = r.num("auid", RejectReason::BadField).ok().flatten();
    Ok(Some(EdrEvent::Network(NetworkEvent {
        ts,
        transport,
        src,
        sport,
        dst,
        dport,
        snapshot: false,
        process_guid: None,
        uid: uid.filter(|&u| u != u32::MAX),
        attribution: Attribution {
            host: host_attr(h),
            process: socket_process(pid, r.get("path")),
            user: r.get("username").map(|u| UserInfo { name: Some(u) }),
            launchd: None,
            vm: None,
        },
    })))
}

fn open_socket(h: &Header, r: &Row) -> Result<Vec<EdrEvent>, Reject> {
    let Some(transport) = transport(r)? else {
        return Ok(vec![]);
    };
    if r.get("state").is_some_and(|s| s == "LISTEN") {
        return Ok(vec![]);
    }
    let ts = query_time(h)?;
    let (Some(l), Some(rm)) = (addr(r, "local_address")?, addr(r, "remote_address")?) else {
        return Ok(vec![]);
    };
    let lp: u16 = r.num("local_port", RejectReason::BadPort)?.unwrap_or(0);
    let rp: u16 = r.num("remote_port", RejectReason::BadPort)?.unwrap_or(0);
    if rm.is_unspecified() || l.is_unspecified() || lp == 0 || rp == 0 {
        return Ok(vec![]); // not connected
    }
    let pid: Option<u32> = r.num("pid", RejectReason::BadField)?;
    let attribution = Attribution {
        host: host_attr(h),
        // `path` here is a unix socket's path, not the executable: join by pid.
        process: pid.map(|pid| ProcessInfo {
            pid: Some(pid),
            ..ProcessInfo::default()
        }),
        user: r.get("username").map(|u| UserInfo { name: Some(u) }),
        launchd: None,
        vm: None,
    };
    // Direction unknown: the socket owner explains the connection either way.
    let ev = |src, sport, dst, dport| {
        EdrEvent::Network(NetworkEvent {
            ts,
            transport,
            src: Some(src),
            sport: Some(sport),
            dst,
            dport,
            snapshot: true,
            process_guid: None,
            uid: None,
            attribution: attribution.clone(),
        })
    };
    Ok(vec![ev(l, lp, rm, rp), ev(rm, rp, l, lp)])
}

fn process(h: &Header, r: &Row, removed: bool) -> Result<EdrEvent, Reject> {
    let pid: u32 = r
        .num("pid", RejectReason::BadField)?
        .ok_or_else(|| Reject::missing("pid"))?;
    let qt = query_time(h)?;
    let start_secs: Option<i64> = r.num("start_time", RejectReason::BadTimestamp)?;
    // Unknown start: treat as "long before" so the row still explains connections.
    let start = match start_secs {
        Some(s) if s >= MIN_EPOCH_SECS => Ts::from_secs(s),
        _ => Ts::ZERO,
    };
    let path = r.get("path");
    let parent = r
        .num::<i64>("parent", RejectReason::BadField)?
        .and_then(|p| u32::try_from(p).ok())
        .map(|p| ParentInfo {
            pid: Some(p),
            ..ParentInfo::default()
        });
    let uid: Option<u32> = r.num("uid", RejectReason::BadField).ok().flatten();
    Ok(EdrEvent::Process(ProcessEvent {
        ts: if removed { qt } else { start.max(Ts::ZERO) },
        host_ips: vec![],
        pid,
        start,
        exited: removed,
        process_guid: None,
        uid,
        attribution: Attribution {
            host: host_attr(h),
            process: Some(ProcessInfo {
                pid: Some(pid),
                name: r
                    .get("name")
                    .or_else(|| path.as_deref().map(|p| basename(p).to_owned())),
                executable: path,
                command_line: r.get("cmdline"),
                parent,
                code_signature: None,
            }),
            user: r.get("username").map(|u| UserInfo { name: Some(u) }),
            launchd: None,
            vm: None,
        },
    }))
}

fn launchd(h: &Header, r: &Row) -> Result<Option<EdrEvent>, Reject> {
    let ts = query_time(h)?;
    let program = r.get("program");
    let arguments = r.get("program_arguments");
    if program.is_none() && arguments.is_none() {
        return Ok(None);
    }
    let plist = r.get("path");
    Ok(Some(EdrEvent::LaunchdJob(LaunchdJobEvent {
        ts,
        host: h.host.clone(),
        program,
        arguments,
        launchd: LaunchdInfo {
            label: r.get("label"),
            kind: plist.as_deref().and_then(launchd_kind).map(str::to_owned),
            plist,
        },
        user: r.get("username"),
    })))
}

fn users(h: &Header, r: &Row) -> Result<EdrEvent, Reject> {
    let uid: u32 = r
        .num("uid", RejectReason::BadField)?
        .ok_or_else(|| Reject::missing("uid"))?;
    let name = r
        .get("username")
        .ok_or_else(|| Reject::missing("username"))?;
    Ok(EdrEvent::Account(AccountEvent {
        ts: query_time(h)?,
        host: h.host.clone(),
        uid,
        name,
    }))
}
