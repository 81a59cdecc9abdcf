//! edr.jsonl in the canonical feed format (../shared/spec/edr-feed.md): host inventory
//! (with `vm` objects on ESXi hosts), process starts and per-connection network events.

use std::io::{self, Write};

use serde_json::{json, Value};

use super::plan::EdrConn;
use super::world::{Platform, Proc, World};
use crate::enrichment::{LaunchdInfo, ProcessInfo, UserInfo, VmInfo};
use crate::time::Ts;

pub fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn process_info(p: &Proc) -> ProcessInfo {
    ProcessInfo {
        pid: Some(p.pid),
        name: Some(p.name.clone()),
        executable: Some(p.exe.clone()),
        parent: Some(crate::enrichment::ParentInfo {
            pid: Some(p.parent.0),
            name: Some(p.parent.1.clone()),
            ..Default::default()
        }),
        code_signature: p
            .signed
            .map(|s| crate::enrichment::CodeSignature { signed: Some(s) }),
        ..Default::default()
    }
}

pub fn user_info(p: &Proc) -> UserInfo {
    UserInfo {
        name: Some(p.user.clone()),
    }
}

pub fn launchd_info(p: &Proc) -> Option<LaunchdInfo> {
    p.launchd.as_ref().map(|l| LaunchdInfo {
        label: Some(l.label.clone()),
        plist: Some(l.plist.clone()),
        kind: Some(l.kind.to_string()),
    })
}

pub fn vm_info(w: &World, host: usize) -> Option<VmInfo> {
    let h = &w.hosts[host];
    let e = h.esxi?;
    Some(VmInfo {
        name: Some(h.name.clone()),
        mac: Some(mac_str(h.mac)),
        ip: vec![h.ip4.to_string()],
        host: Some(w.hosts[e].name.clone()),
    })
}

fn host_obj(w: &World, host: usize) -> Value {
    let h = &w.hosts[host];
    let mut ips = vec![h.ip4.to_string()];
    if let Some(v6) = h.ip6 {
        ips.push(v6.to_string());
    }
    // A VM's own agent reports its guest OS; the VM-to-ESXi mapping is in the inventory.
    let platform = if h.platform == Platform::EsxiVm {
        "linux"
    } else {
        h.platform.name()
    };
    json!({"name": h.name, "ip": ips, "os": {"platform": platform}})
}

fn proc_fields(ev: &mut Value, p: &Proc) {
    ev["process"] = serde_json::to_value(process_info(p)).unwrap_or(Value::Null);
    ev["user"] = serde_json::to_value(user_info(p)).unwrap_or(Value::Null);
    if let Some(l) = launchd_info(p) {
        ev["launchd"] = serde_json::to_value(l).unwrap_or(Value::Null);
    }
}

pub fn write<W: Write>(out: &mut W, w: &World, conns: &mut [EdrConn]) -> io::Result<u64> {
    let mut lines: Vec<(i64, u8, String)> = Vec::new();
    let inv = Ts(w.start.0 - 600_000_000_000);
    for (i, h) in w.hosts.iter().enumerate() {
        match h.platform {
            Platform::Esxi => {
                let me = json!({"name": h.name, "ip": [h.ip4.to_string()], "mac": [mac_str(h.mac)], "os": {"platform": "esxi"}});
                let ev = json!({"@timestamp": inv.rfc3339().to_string(), "event": {"category": "host", "kind": "asset"}, "host": me});
                lines.push((inv.0, 0, ev.to_string()));
                for (j, vm) in w.hosts.iter().enumerate() {
                    if vm.esxi == Some(i) {
                        let v = vm_info(w, j).unwrap_or_default();
                        let ev = json!({"@timestamp": inv.rfc3339().to_string(), "event": {"category": "host", "kind": "asset"}, "host": me, "vm": v});
                        lines.push((inv.0, 0, ev.to_string()));
                    }
                }
            }
            _ if h.edr => {
                let mut ho = host_obj(w, i);
                ho["mac"] = json!([mac_str(h.mac)]);
                let ev = json!({"@timestamp": inv.rfc3339().to_string(), "event": {"category": "host", "kind": "asset"}, "host": ho});
                lines.push((inv.0, 0, ev.to_string()));
            }
            _ => {}
        }
    }
    for p in &w.procs {
        if !w.hosts[p.host].edr {
            continue;
        }
        let mut ev = json!({"@timestamp": p.started.rfc3339().to_string(), "event": {"category": "process", "type": "start"}, "host": host_obj(w, p.host)});
        proc_fields(&mut ev, p);
        lines.push((p.started.0, 1, ev.to_string()));
    }
    conns.sort_by_key(|c| c.ts);
    for c in conns.iter() {
        let p = &w.procs[c.proc as usize];
        let ts = Ts(c.ts);
        let mut ev = json!({
            "@timestamp": ts.rfc3339().to_string(),
            "event": {"category": "network", "action": "connection_attempted"},
            "host": host_obj(w, p.host),
            "source": {"ip": c.src.to_string(), "port": c.sport},
            "destination": {"ip": c.dst.to_string(), "port": c.dport},
            "network": {"transport": if c.tcp { "tcp" } else { "udp" }},
        });
        proc_fields(&mut ev, p);
        lines.push((c.ts, 2, ev.to_string()));
    }
    lines.sort_by_key(|l| (l.0, l.1));
    for (_, _, l) in &lines {
        out.write_all(l.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(lines.len() as u64)
}
