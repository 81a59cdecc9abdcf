//! Output: JSON Lines for alerts (../shared/spec/alerts.md), flows (Zeek conn.log field
//! names) and DNS answers, plus the Community ID v1 flow hash.
//!
//! Records are rendered to bytes by the workers ([`render_flow`], [`render_dns`],
//! [`render_alert`]) and written in a deterministic order by the pipeline's writer.
//! Strings from the wire (DNS names) may hold quotes, control characters or bytes that
//! were not UTF-8: serde_json escapes them, so every line is valid JSON.

pub mod community_id;
pub mod fmt;
pub mod sink;

use crate::analytics::Alert;
use crate::decode::dns::DnsAnswer;
use crate::flow::{EndReason, FlowRecord};

pub use community_id::community_id;

/// Zeek-style connection uid: "C" and 11 base62 characters of the flow hash.
pub fn uid_string(uid: u64) -> String {
    let mut v = Vec::with_capacity(12);
    push_uid(&mut v, uid);
    String::from_utf8(v).unwrap_or_default()
}

fn push_uid(out: &mut Vec<u8>, uid: u64) {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    out.push(b'C');
    let mut v = uid;
    for _ in 0..11 {
        out.push(ALPHABET[(v % 62) as usize]);
        v /= 62;
    }
}

pub fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        1 => "icmp",
        58 => "icmp6",
        _ => "other",
    }
}

fn end_reason(r: EndReason) -> &'static str {
    match r {
        EndReason::Closed => "closed",
        EndReason::IdleTimeout => "timeout",
        EndReason::Evicted => "evicted",
        EndReason::Shutdown => "end_of_input",
    }
}

/// One finished flow as a JSON line (Zeek conn.log field names, RFC 3339 `ts`).
/// Every field is a number, an address or a fixed token: nothing needs escaping.
pub fn render_flow(out: &mut Vec<u8>, r: &FlowRecord, reason: EndReason, home_internal: bool) {
    use self::fmt::{push_ip, push_secs6, push_u64};
    out.extend_from_slice(b"{\"ts\":\"");
    r.first_ts.push_rfc3339(out);
    out.extend_from_slice(b"\",\"uid\":\"");
    push_uid(out, r.uid);
    out.extend_from_slice(b"\",\"community_id\":\"");
    community_id::community_id_into(out, 0, r.orig, r.resp, r.orig_port, r.resp_port, r.proto);
    out.extend_from_slice(b"\",\"id.orig_h\":\"");
    push_ip(out, &r.orig);
    out.extend_from_slice(b"\",\"id.orig_p\":");
    push_u64(out, r.orig_port as u64);
    out.extend_from_slice(b",\"id.resp_h\":\"");
    push_ip(out, &r.resp);
    out.extend_from_slice(b"\",\"id.resp_p\":");
    push_u64(out, r.resp_port as u64);
    out.extend_from_slice(b",\"proto\":\"");
    out.extend_from_slice(proto_name(r.proto).as_bytes());
    out.extend_from_slice(b"\",\"duration\":");
    push_secs6(out, r.last_ts.since(r.first_ts).0);
    out.extend_from_slice(b",\"orig_bytes\":");
    push_u64(out, r.orig_bytes);
    out.extend_from_slice(b",\"resp_bytes\":");
    push_u64(out, r.resp_bytes);
    out.extend_from_slice(b",\"conn_state\":\"");
    out.extend_from_slice(r.conn_state.as_str().as_bytes());
    out.extend_from_slice(b"\",\"local_orig\":");
    out.extend_from_slice(if r.orig_is_internal && home_internal {
        b"true"
    } else {
        b"false"
    });
    out.extend_from_slice(b",\"history\":\"");
    out.extend_from_slice(r.history.as_str().as_bytes());
    out.extend_from_slice(b"\",\"orig_pkts\":");
    push_u64(out, r.orig_pkts as u64);
    out.extend_from_slice(b",\"orig_ip_bytes\":");
    push_u64(out, r.orig_ip_bytes);
    out.extend_from_slice(b",\"resp_pkts\":");
    push_u64(out, r.resp_pkts as u64);
    out.extend_from_slice(b",\"resp_ip_bytes\":");
    push_u64(out, r.resp_ip_bytes);
    out.extend_from_slice(b",\"end_reason\":\"");
    out.extend_from_slice(end_reason(reason).as_bytes());
    out.push(b'"');
    if r.vlan != 0 {
        out.extend_from_slice(b",\"vlan\":");
        push_u64(out, r.vlan as u64);
    }
    if let Some(m) = r.orig_mac {
        out.extend_from_slice(b",\"orig_l2_addr\":\"");
        self::fmt::push_mac(out, &m);
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// One DNS answer as a JSON line, rendered straight into `out` (no serde value, no
/// temporary strings): `ts`, `community_id`, then the answer's fields as serde_json
/// would write them (escaping included), `ts` once.
pub fn render_dns(out: &mut Vec<u8>, a: &DnsAnswer) {
    use self::fmt::{push_ip, push_u64};
    use crate::decode::dns::{DnsKind, RecordData};
    let b = |v: bool| -> &'static [u8] {
        if v {
            b"true"
        } else {
            b"false"
        }
    };
    out.extend_from_slice(b"{\"ts\":\"");
    a.ts.push_rfc3339(out);
    out.extend_from_slice(b"\",\"community_id\":\"");
    community_id::community_id_into(
        out,
        0,
        a.client,
        a.resolver,
        a.client_port,
        a.resolver_port,
        a.transport,
    );
    out.extend_from_slice(b"\",\"client\":\"");
    push_ip(out, &a.client);
    out.extend_from_slice(b"\",\"client_port\":");
    push_u64(out, a.client_port as u64);
    out.extend_from_slice(b",\"resolver\":\"");
    push_ip(out, &a.resolver);
    out.extend_from_slice(b"\",\"resolver_port\":");
    push_u64(out, a.resolver_port as u64);
    out.extend_from_slice(b",\"transport\":");
    push_u64(out, a.transport as u64);
    out.extend_from_slice(match a.kind {
        DnsKind::Dns => b",\"kind\":\"dns\",\"id\":",
        DnsKind::Mdns => b",\"kind\":\"mdns\",\"id\":",
        DnsKind::Llmnr => b",\"kind\":\"llmnr\",\"id\":",
    });
    push_u64(out, a.id as u64);
    out.extend_from_slice(b",\"query\":");
    push_json_str(out, &a.query);
    out.extend_from_slice(b",\"qtype\":");
    push_u64(out, a.qtype as u64);
    out.extend_from_slice(b",\"rcode\":");
    push_u64(out, a.rcode as u64);
    out.extend_from_slice(b",\"records\":[");
    for (i, r) in a.records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        push_json_str(out, &r.name);
        out.extend_from_slice(b",\"rtype\":");
        push_u64(out, r.rtype as u64);
        out.extend_from_slice(b",\"ttl\":");
        push_u64(out, r.ttl as u64);
        out.extend_from_slice(b",\"data\":");
        match &r.data {
            RecordData::Addr(ip) => {
                out.extend_from_slice(b"{\"addr\":\"");
                push_ip(out, ip);
                out.extend_from_slice(b"\"}");
            }
            RecordData::Name(n) => {
                out.extend_from_slice(b"{\"name\":");
                push_json_str(out, n);
                out.push(b'}');
            }
            RecordData::Other => out.extend_from_slice(b"\"other\""),
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"],\"cname_chain\":[");
    for (i, n) in a.cname_chain.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, n);
    }
    out.extend_from_slice(b"],\"addrs\":[");
    for (i, ip) in a.addrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        push_ip(out, ip);
        out.push(b'"');
    }
    out.extend_from_slice(b"],\"min_ttl\":");
    push_u64(out, a.min_ttl as u64);
    let x = &a.anomalies;
    out.extend_from_slice(b",\"anomalies\":{\"cname_loop\":");
    out.extend_from_slice(b(x.cname_loop));
    out.extend_from_slice(b",\"cname_chain_too_long\":");
    out.extend_from_slice(b(x.cname_chain_too_long));
    out.extend_from_slice(b",\"unrelated_records\":");
    push_u64(out, x.unrelated_records as u64);
    out.extend_from_slice(b",\"records_dropped\":");
    push_u64(out, x.records_dropped as u64);
    out.extend_from_slice(b",\"truncated\":");
    out.extend_from_slice(b(x.truncated));
    out.extend_from_slice(b",\"no_question\":");
    out.extend_from_slice(b(x.no_question));
    out.extend_from_slice(b",\"incomplete\":");
    out.extend_from_slice(b(x.incomplete));
    out.extend_from_slice(b"}}\n");
}

/// A JSON string: copied as is when nothing needs escaping (the common case for DNS
/// names), else escaped by serde_json so hostile names stay exactly as escaped before.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// One alert as a JSON line, exactly the contract's required fields first.
pub fn render_alert(out: &mut Vec<u8>, a: &Alert) {
    let v = alert_json(a);
    if serde_json::to_writer(&mut *out, &v).is_ok() {
        out.push(b'\n');
    }
}

/// The alert as a JSON value (field order as in the contract's example).
pub fn alert_json(a: &Alert) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let platform = a.attribution.as_ref().and_then(|x| x.platform());
    let mut m = Map::new();
    m.insert("timestamp".into(), json!(a.ts.rfc3339().to_string()));
    m.insert("event_type".into(), json!("alert"));
    m.insert("analytic".into(), json!(a.analytic.name()));
    m.insert(
        "attack".into(),
        json!({"technique": a.analytic.technique(), "analytics": a.analytic.attack_analytics(platform)}),
    );
    m.insert("src_ip".into(), json!(a.src.to_string()));
    m.insert("dest_ip".into(), json!(a.dst.to_string()));
    m.insert("dest_port".into(), json!(a.dst_port));
    m.insert("proto".into(), json!(proto_name(a.proto)));
    m.insert(
        "community_id".into(),
        json!(community_id(
            0, a.src, a.dst, a.src_port, a.dst_port, a.proto
        )),
    );
    let score = (a.score.clamp(0.0, 1.0) * 1000.0).round() / 1000.0;
    m.insert("score".into(), json!(score));
    m.insert("reasons".into(), json!(a.reasons));
    if let Some(n) = &a.dest_name {
        m.insert("dest_name".into(), json!(n));
    }
    if a.dest_ips.len() > 1 {
        let ips: Vec<String> = a.dest_ips.iter().map(|i| i.to_string()).collect();
        m.insert("dest_ips".into(), json!(ips));
    }
    if a.dest_ports.len() > 1 {
        m.insert("dest_ports".into(), json!(a.dest_ports));
    }
    if let Some(d) = &a.dns {
        let answers: Vec<String> = d.answers.iter().map(|i| i.to_string()).collect();
        let mut o = Map::new();
        o.insert("query".into(), json!(d.query));
        o.insert("answers".into(), json!(answers));
        o.insert("ttl".into(), json!(d.ttl));
        o.insert(
            "answered_at".into(),
            json!(d.answered_at.rfc3339().to_string()),
        );
        if let Some(x) = &d.derivation {
            o.insert("derivation".into(), json!(x));
        }
        m.insert("dns".into(), Value::Object(o));
    }
    if let Some(c) = &a.cadence {
        let mut o = Map::new();
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        if let Some(x) = c.period_s {
            o.insert("period_s".into(), json!(r3(x)));
        }
        if let Some(x) = c.jitter {
            o.insert("jitter".into(), json!(r3(x)));
        }
        if let Some(x) = c.count {
            o.insert("count".into(), json!(x));
        }
        if let Some(x) = c.size_bytes {
            o.insert("size_bytes".into(), json!(x));
        }
        if let Some(x) = c.size_cv {
            o.insert("size_cv".into(), json!(r3(x)));
        }
        m.insert("cadence".into(), Value::Object(o));
    }
    if let Some(at) = &a.attribution {
        if let Ok(Value::Object(o)) = serde_json::to_value(at) {
            for (k, v) in o {
                m.insert(k, v);
            }
        }
    }
    if !a.flow_uids.is_empty() {
        let uids: Vec<String> = a.flow_uids.iter().map(|u| uid_string(*u)).collect();
        m.insert("flow_uids".into(), json!(uids));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::{AlertDns, Analytic};
    use crate::enrichment::{Attribution, HostInfo, OsInfo};
    use crate::time::Ts;

    #[test]
    fn alert_has_contract_fields_and_narrowed_analytics() {
        let mut a = Alert::new(
            Analytic::DnsCalculatedPort,
            Ts::parse_rfc3339("2026-11-20T10:00:03.221409Z").unwrap(),
            "10.1.0.17".parse().unwrap(),
            "71.63.201.9".parse().unwrap(),
            18239,
        );
        a.src_port = 50123;
        a.score = 0.93;
        a.reasons.push("port 18239 = 71*256+63".into());
        a.dns = Some(AlertDns {
            query: "upd.example.net".into(),
            answers: vec!["71.63.201.9".parse().unwrap()],
            ttl: 60,
            answered_at: Ts::parse_rfc3339("2026-11-20T10:00:01.102311Z").unwrap(),
            derivation: Some("o1*256+o2".into()),
        });
        a.attribution = Some(Attribution {
            host: Some(HostInfo {
                name: Some("mac-17".into()),
                os: Some(OsInfo {
                    platform: Some("macos".into()),
                }),
            }),
            ..Default::default()
        });
        let mut buf = Vec::new();
        render_alert(&mut buf, &a);
        assert_eq!(buf.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["timestamp"], "2026-11-20T10:00:03.221409Z");
        assert_eq!(v["event_type"], "alert");
        assert_eq!(v["analytic"], "dns_calculated_port");
        assert_eq!(v["attack"]["technique"], "T1568.003");
        assert_eq!(v["attack"]["analytics"], serde_json::json!(["AN0730"]));
        assert_eq!(v["src_ip"], "10.1.0.17");
        assert_eq!(v["dest_ip"], "71.63.201.9");
        assert_eq!(v["dest_port"], 18239);
        assert_eq!(v["proto"], "tcp");
        assert!(v["community_id"].as_str().unwrap().starts_with("1:"));
        assert_eq!(v["score"], 0.93);
        assert_eq!(v["dns"]["derivation"], "o1*256+o2");
        assert_eq!(v["dns"]["answered_at"], "2026-11-20T10:00:01.102311Z");
        assert_eq!(v["host"]["os"]["platform"], "macos");
    }

    #[test]
    fn dns_line_has_serde_json_fields_and_one_ts() {
        use crate::decode::dns::{AnswerRecord, DnsAnomalies, DnsKind, RecordData};
        #[derive(serde::Serialize)]
        struct Line<'a> {
            ts: Ts,
            community_id: String,
            #[serde(flatten)]
            answer: &'a DnsAnswer,
        }
        let mut a = DnsAnswer {
            ts: Ts(1_700_000_000_123_456_789),
            client: "10.0.0.1".parse().unwrap(),
            client_port: 5353,
            resolver: "2001:db8::53".parse().unwrap(),
            resolver_port: 53,
            transport: 17,
            kind: DnsKind::Mdns,
            id: 7,
            query: "a\"b\\c\u{0}\u{1b}\u{7f}\u{fffd}.evil".into(),
            qtype: 28,
            rcode: 3,
            records: vec![
                AnswerRecord {
                    name: "x.example".into(),
                    rtype: 5,
                    ttl: 60,
                    data: RecordData::Name("t\tab".into()),
                },
                AnswerRecord {
                    name: "y".into(),
                    rtype: 28,
                    ttl: 1,
                    data: RecordData::Addr("::1".parse().unwrap()),
                },
                AnswerRecord {
                    name: String::new(),
                    rtype: 16,
                    ttl: 0,
                    data: RecordData::Other,
                },
            ],
            cname_chain: vec!["x.example".into(), "t\tab".into()],
            addrs: vec!["::1".parse().unwrap(), "1.2.3.4".parse().unwrap()],
            min_ttl: 1,
            anomalies: DnsAnomalies {
                cname_loop: true,
                unrelated_records: 2,
                incomplete: true,
                ..Default::default()
            },
        };
        for kind in [DnsKind::Dns, DnsKind::Mdns, DnsKind::Llmnr] {
            a.kind = kind;
            let line = Line {
                ts: a.ts,
                community_id: community_id(0, a.client, a.resolver, 5353, 53, 17),
                answer: &a,
            };
            let want = serde_json::to_value(&line).unwrap();
            let mut got = Vec::new();
            render_dns(&mut got, &a);
            let text = String::from_utf8(got).unwrap();
            assert!(
                text.starts_with("{\"ts\":\"") && text.ends_with("}\n"),
                "{text}"
            );
            // One `ts` (serde's flattened struct wrote it twice; SIEMs reject that).
            assert_eq!(text.matches("\"ts\":").count(), 1, "{text}");
            let got: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn hostile_names_stay_valid_json() {
        let mut a = Alert::new(
            Analytic::UnusualDnsNonstandardPort,
            Ts(0),
            "10.0.0.1".parse().unwrap(),
            "1.2.3.4".parse().unwrap(),
            4444,
        );
        a.dest_name = Some("a\"b\\c\u{0}\u{1b}[31m\u{fffd}.evil".into());
        let mut buf = Vec::new();
        render_alert(&mut buf, &a);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["dest_name"], "a\"b\\c\u{0}\u{1b}[31m\u{fffd}.evil");
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
