//! The canonical format of the contract (ECS JSON Lines): `network`, `host` and
//! `process` events.
//!
//! Tolerant where ECS producers differ: `event.category` may be a string or an array
//! (ECS makes it an array); `host.ip`, `host.mac`, `vm.ip`, `vm.mac` may be a string or
//! an array; ports and pids may be numbers or numeric strings; `network.transport` may
//! be a name or `network.iana_number` a number. Never panics.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::event::{
    parse_ip, parse_mac, parse_transport, EdrEvent, HostEvent, Mac, NetworkEvent, ProcessEvent,
    VmEvent,
};
use super::reader::{Reject, RejectReason, Sink};
use super::{Attribution, HostInfo, LaunchdInfo, OsInfo, ProcessInfo, UserInfo};
use crate::time::Ts;

pub fn parse_line(line: &str, sink: &mut Sink) {
    match parse(line) {
        Ok(Some(ev)) => sink.events.push(ev),
        Ok(None) => sink.ignored += 1,
        Err(r) => sink.reject(r),
    }
}

fn parse(line: &str) -> Result<Option<EdrEvent>, Reject> {
    let v: Value = serde_json::from_str(line)
        .map_err(|e| Reject::new(RejectReason::InvalidJson, e.to_string()))?;
    let o = v
        .as_object()
        .ok_or_else(|| Reject::new(RejectReason::InvalidJson, "not a JSON object"))?;
    let ts_s = o
        .get("@timestamp")
        .ok_or_else(|| Reject::missing("@timestamp"))?
        .as_str()
        .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, "@timestamp is not a string"))?;
    let ts = Ts::parse_rfc3339(ts_s)
        .ok_or_else(|| Reject::new(RejectReason::BadTimestamp, format!("@timestamp {ts_s:?}")))?;
    let cat = category(o)?;
    match cat {
        Category::Network => network(o, ts).map(Some),
        Category::Host => host(o, ts).map(Some),
        Category::Process => process(o, ts),
    }
}

enum Category {
    Network,
    Host,
    Process,
}

fn category(o: &Map<String, Value>) -> Result<Category, Reject> {
    let c = o
        .get("event")
        .and_then(|e| e.get("category"))
        .ok_or_else(|| Reject::missing("event.category"))?;
    let names: Vec<&str> = match c {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    for n in &names {
        match *n {
            "network" => return Ok(Category::Network),
            "host" => return Ok(Category::Host),
            "process" => return Ok(Category::Process),
            _ => {}
        }
    }
    Err(Reject::new(
        RejectReason::UnknownCategory,
        format!("event.category {c}"),
    ))
}

fn get<'a>(o: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = o.get(*first)?;
    for k in rest {
        v = v.get(k)?;
    }
    (!v.is_null()).then_some(v)
}

/// A number or numeric string in range.
fn uint<T: TryFrom<u64>>(v: &Value, what: &str, reason: RejectReason) -> Result<T, Reject> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| Reject::new(reason, format!("{what} {v}")))
}

fn ip_at(o: &Map<String, Value>, path: &[&str], name: &str) -> Result<IpAddr, Reject> {
    let v = get(o, path).ok_or_else(|| Reject::missing(name))?;
    v.as_str()
        .and_then(parse_ip)
        .ok_or_else(|| Reject::new(RejectReason::BadAddress, format!("{name} {v}")))
}

/// One string or an array of strings (`host.ip`, `vm.mac`, ...), each parsed.
fn one_or_many<T>(
    v: Option<&Value>,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    reason: RejectReason,
) -> Result<Vec<T>, Reject> {
    let bad = |v: &Value| Reject::new(reason, format!("{name} {v}"));
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::String(s)) => Ok(vec![parse(s).ok_or_else(|| bad(&Value::from(s.as_str())))?]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().and_then(&parse).ok_or_else(|| bad(x)))
            .collect(),
        Some(other) => Err(bad(other)),
    }
}

fn typed<'a, T: Deserialize<'a>>(v: Option<&'a Value>, name: &str) -> Result<Option<T>, Reject> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => T::deserialize(v)
            .map(Some)
            .map_err(|e| Reject::new(RejectReason::BadField, format!("{name}: {e}"))),
    }
}

/// `process`, `user`, `launchd` and `host` (name, os) of a network or process event.
fn attribution(o: &Map<String, Value>) -> Result<Attribution, Reject> {
    let mut process: Option<ProcessInfo> = match o.get("process") {
        Some(p @ Value::Object(po)) => {
            // pid may be a numeric string; normalise before the typed read.
            let mut p = p.clone();
            if let Some(pid) = po.get("pid").filter(|v| v.is_string()) {
                let pid: u32 = uint(pid, "process.pid", RejectReason::BadField)?;
                p["pid"] = Value::from(pid);
            }
            typed(Some(&p), "process")?
        }
        other => typed(other, "process")?,
    };
    if process
        .as_ref()
        .is_some_and(|p| *p == ProcessInfo::default())
    {
        process = None;
    }
    let user: Option<UserInfo> = typed(o.get("user"), "user")?;
    let launchd: Option<LaunchdInfo> = typed(o.get("launchd"), "launchd")?;
    if let Some(k) = launchd.as_ref().and_then(|l| l.kind.as_deref()) {
        if k != "agent" && k != "daemon" {
            return Err(Reject::new(
                RejectReason::BadField,
                format!("launchd.kind {k:?}"),
            ));
        }
    }
    let host = host_info(o)?;
    Ok(Attribution {
        host: (host != HostInfo::default()).then_some(host),
        process,
        user,
        launchd,
        vm: None,
    })
}

fn host_info(o: &Map<String, Value>) -> Result<HostInfo, Reject> {
    let name = match get(o, &["host", "name"]) {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => {
            return Err(Reject::new(
                RejectReason::BadField,
                format!("host.name {v}"),
            ))
        }
    };
    let os: Option<OsInfo> = typed(get(o, &["host", "os"]), "host.os")?;
    Ok(HostInfo { name, os })
}

fn host_ips(o: &Map<String, Value>) -> Result<Vec<IpAddr>, Reject> {
    one_or_many(
        get(o, &["host", "ip"]),
        "host.ip",
        parse_ip,
        RejectReason::BadAddress,
    )
}

fn network(o: &Map<String, Value>, ts: Ts) -> Result<EdrEvent, Reject> {
    let transport = match get(o, &["network", "transport"]) {
        Some(Value::String(s)) => parse_transport(s),
        Some(v) => v.as_u64().and_then(|n| parse_transport(&n.to_string())),
        None => match get(o, &["network", "iana_number"]) {
            Some(v) => {
                let s = v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
                parse_transport(&s)
            }
            None => return Err(Reject::missing("network.transport")),
        },
    }
    .ok_or_else(|| {
        Reject::new(
            RejectReason::UnknownTransport,
            format!(
                "network.transport {}",
                get(o, &["network"]).unwrap_or(&Value::Null)
            ),
        )
    })?;
    let src = ip_at(o, &["source", "ip"], "source.ip")?;
    let dst = ip_at(o, &["destination", "ip"], "destination.ip")?;
    let sport = match get(o, &["source", "port"]) {
        None => None,
        Some(v) => Some(uint::<u16>(v, "source.port", RejectReason::BadPort)?).filter(|&p| p != 0),
    };
    let dport = get(o, &["destination", "port"])
        .ok_or_else(|| Reject::missing("destination.port"))
        .and_then(|v| uint::<u16>(v, "destination.port", RejectReason::BadPort))?;
    Ok(EdrEvent::Network(NetworkEvent {
        ts,
        transport,
        src: Some(src),
        sport,
        dst,
        dport,
        snapshot: false,
        process_guid: get(o, &["process", "entity_id"])
            .and_then(Value::as_str)
            .map(str::to_owned),
        uid: None,
        attribution: attribution(o)?,
    }))
}

fn host(o: &Map<String, Value>, ts: Ts) -> Result<EdrEvent, Reject> {
    if !o.get("host").is_some_and(Value::is_object) {
        return Err(Reject::missing("host"));
    }
    let host = host_info(o)?;
    let ips = host_ips(o)?;
    let macs: Vec<Mac> = one_or_many(
        get(o, &["host", "mac"]),
        "host.mac",
        parse_mac,
        RejectReason::BadMac,
    )?;
    let vm = match o.get("vm") {
        None | Some(Value::Null) => None,
        Some(Value::Object(vm)) => {
            let name = match vm.get("name") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v) => return Err(Reject::new(RejectReason::BadField, format!("vm.name {v}"))),
            };
            let macs = one_or_many(vm.get("mac"), "vm.mac", parse_mac, RejectReason::BadMac)?;
            let ips = one_or_many(vm.get("ip"), "vm.ip", parse_ip, RejectReason::BadAddress)?;
            if macs.is_empty() && ips.is_empty() {
                return Err(Reject::missing("vm.mac or vm.ip"));
            }
            Some(VmEvent { name, macs, ips })
        }
        Some(v) => return Err(Reject::new(RejectReason::BadField, format!("vm {v}"))),
    };
    if host.name.is_none() && ips.is_empty() && macs.is_empty() && vm.is_none() {
        return Err(Reject::missing("host.name, host.ip or host.mac"));
    }
    Ok(EdrEvent::Host(HostEvent {
        ts,
        host,
        ips,
        macs,
        vm,
    }))
}

fn process(o: &Map<String, Value>, ts: Ts) -> Result<Option<EdrEvent>, Reject> {
    let pid_v = get(o, &["process", "pid"]).ok_or_else(|| Reject::missing("process.pid"))?;
    let pid: u32 = uint(pid_v, "process.pid", RejectReason::BadField)?;
    // Only starts are indexed; `end` events mark the process gone.
    let types: Vec<&str> = match get(o, &["event", "type"]) {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let exited = types.contains(&"end");
    let start = match get(o, &["process", "start"]).and_then(Value::as_str) {
        Some(s) => Ts::parse_rfc3339(s).ok_or_else(|| {
            Reject::new(RejectReason::BadTimestamp, format!("process.start {s:?}"))
        })?,
        None if exited => Ts::MAX, // unknown: the index ends the live process with this pid
        None => ts,
    };
    Ok(Some(EdrEvent::Process(ProcessEvent {
        ts,
        host_ips: host_ips(o)?,
        pid,
        start,
        exited,
        process_guid: get(o, &["process", "entity_id"])
            .and_then(Value::as_str)
            .map(str::to_owned),
        uid: None,
        attribution: attribution(o)?,
    })))
}
