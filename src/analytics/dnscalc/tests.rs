//! Detector tests: hand-built answers and connection starts, in packet-time order.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::analytics::{Alert, Analytic, Context, Detector, Engine};
use crate::baseline::Store;
use crate::config::NetSet;
use crate::decode::dns::{DnsAnomalies, DnsAnswer, DnsKind};
use crate::flow::{FlowEvent, FlowRecord};
use crate::time::{Dur, Ts};

const HOST: &str = "10.1.0.17";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ctx() -> Context {
    Context {
        home_net: NetSet::parse(&["10.0.0.0/8"]).unwrap(),
        attributor: None,
    }
}

fn answer(t: f64, client: &str, query: &str, addrs: &[&str], ttl: u32) -> DnsAnswer {
    let addrs: Vec<IpAddr> = addrs.iter().map(|a| ip(a)).collect();
    DnsAnswer {
        ts: Ts::from_secs_f64(t),
        client: ip(client),
        client_port: 40000,
        resolver: ip("10.0.0.53"),
        resolver_port: 53,
        transport: 17,
        kind: DnsKind::Dns,
        id: 1,
        query: query.into(),
        qtype: if addrs.first().is_some_and(|a| a.is_ipv6()) {
            28
        } else {
            1
        },
        rcode: 0,
        records: Vec::new(),
        cname_chain: vec![query.into()],
        addrs,
        min_ttl: ttl,
        anomalies: DnsAnomalies::default(),
    }
}

fn syn() -> crate::flow::History {
    let mut h = crate::flow::History::default();
    h.push(b'S');
    h
}

fn conn(t: f64, src: &str, dst: &str, port: u16) -> FlowEvent {
    FlowEvent::Started(FlowRecord {
        uid: (t * 1000.0) as u64,
        proto: 6,
        orig: ip(src),
        orig_port: 50123,
        resp: ip(dst),
        resp_port: port,
        orig_is_internal: true,
        first_ts: Ts::from_secs_f64(t),
        last_ts: Ts::from_secs_f64(t),
        orig_pkts: 1,
        resp_pkts: 0,
        orig_bytes: 0,
        resp_bytes: 0,
        orig_ip_bytes: 60,
        resp_ip_bytes: 0,
        conn_state: Default::default(),
        history: syn(),
        orig_first_sizes: [0; 4],
        resp_first_sizes: [0; 4],
        orig_mac: None,
        vlan: 0,
        handle: crate::flow::FlowHandle::NONE,
    })
}

enum Ev {
    Dns(DnsAnswer),
    Flow(FlowEvent),
}

fn run_with(cfg: DnsCalcConfig, evs: Vec<Ev>) -> Vec<Alert> {
    let mut d = DnsCalc::new(cfg, None);
    let c = ctx();
    let mut out = Vec::new();
    for e in evs {
        match e {
            Ev::Dns(a) => d.on_dns(&c, &a, &mut out),
            Ev::Flow(f) => d.on_flow(&c, &f, &mut out),
        }
    }
    out
}

fn run(evs: Vec<Ev>) -> Vec<Alert> {
    run_with(DnsCalcConfig::default(), evs)
}

fn calc(out: &[Alert]) -> Vec<&Alert> {
    out.iter()
        .filter(|a| a.analytic == Analytic::DnsCalculatedPort)
        .collect()
}

fn unusual(out: &[Alert]) -> Vec<&Alert> {
    out.iter()
        .filter(|a| a.analytic == Analytic::UnusualDnsNonstandardPort)
        .collect()
}

#[test]
fn apt12_port_fires_with_reason_and_dns_object() {
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
        Ev::Flow(conn(3.1, HOST, "71.63.201.9", 71 * 63 + 201)),
    ]);
    let a = calc(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    let a = a[0];
    assert_eq!(
        a.reasons[0],
        "port 4674 = 71*63+201 from A 71.63.201.9 for upd.example.net 2.1 s earlier"
    );
    let dns = a.dns.as_ref().unwrap();
    assert_eq!(dns.query, "upd.example.net");
    assert_eq!(dns.answers, vec![ip("71.63.201.9")]);
    assert_eq!(dns.ttl, 60);
    assert_eq!(dns.answered_at, Ts::from_secs(1));
    assert_eq!(dns.derivation.as_deref(), Some("o1*o2+o3"));
    assert_eq!(a.dest_name.as_deref(), Some("upd.example.net"));
    assert_eq!(
        (a.src, a.dst, a.dst_port, a.src_port),
        (ip(HOST), ip("71.63.201.9"), 4674, 50123)
    );
    assert!(a.score >= 0.85 && a.score <= 1.0, "{}", a.score);
}

#[test]
fn contract_example_octet_pair() {
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
        Ev::Flow(conn(3.1, HOST, "71.63.201.9", 18239)),
    ]);
    let a = calc(&out);
    assert_eq!(a.len(), 1);
    assert!(a[0].reasons[0].starts_with("port 18239 = 71*256+63 from A 71.63.201.9"));
    assert_eq!(
        a[0].dns.as_ref().unwrap().derivation.as_deref(),
        Some("o1*256+o2")
    );
}

#[test]
fn ipv6_interface_id_port() {
    let out = run(vec![
        Ev::Dns(answer(
            1.0,
            HOST,
            "v6.example.net",
            &["2a00:1450:4001:81c::1f3a"],
            300,
        )),
        Ev::Flow(conn(1.5, HOST, "2a00:1450:4001:81c::1f3a", 0x1f3a)),
    ]);
    let a = calc(&out);
    assert_eq!(a.len(), 1);
    assert!(a[0].reasons[0].contains("from AAAA"), "{:?}", a[0].reasons);
    assert_eq!(a[0].dns.as_ref().unwrap().derivation.as_deref(), Some("h8"));
}

#[test]
fn config_expression_derivation() {
    let cfg = DnsCalcConfig::from_table(
        &"derivations = [\"(o1+o4)*100+o2\"]"
            .parse::<toml::Table>()
            .unwrap(),
    )
    .unwrap();
    let out = run_with(
        cfg,
        vec![
            Ev::Dns(answer(1.0, HOST, "c2.example.org", &["101.2.3.4"], 60)),
            Ev::Flow(conn(2.0, HOST, "101.2.3.4", 105 * 100 + 2)),
        ],
    );
    assert_eq!(calc(&out).len(), 1);
    assert_eq!(
        calc(&out)[0].dns.as_ref().unwrap().derivation.as_deref(),
        Some("(o1+o4)*100+o2")
    );
}

#[test]
fn derived_address_and_port() {
    // The host connects to the reversed address on a port from the reversed address.
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
        Ev::Flow(conn(2.0, HOST, "9.201.63.71", 9 * 256 + 201)),
    ]);
    let a = calc(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert!(a[0].reasons[0].starts_with("address 9.201.63.71 = octets reversed of A 71.63.201.9"));
    // 9*256+201 is o1*256+o2 of the computed address and o4*256+o3 of the answered one:
    // the answered address is preferred (the formula family is over answers).
    assert!(a[0].reasons[1].starts_with("port 2505 = 9*256+201 of 71.63.201.9"));
    assert_eq!(
        a[0].dns.as_ref().unwrap().derivation.as_deref(),
        Some("octets reversed; o4*256+o3")
    );
}

#[test]
fn derived_address_with_plain_nonstandard_port() {
    let shuffled = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
        Ev::Flow(conn(1.5, HOST, "63.71.9.201", 31337)),
    ]);
    assert_eq!(calc(&shuffled).len(), 1);
    // A neighbour on an arbitrary port is what a server farm looks like: no alert.
    let neighbour = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
        Ev::Flow(conn(1.5, HOST, "71.63.201.10", 31337)),
    ]);
    assert!(calc(&neighbour).is_empty());
}

#[test]
fn no_alert_on_standard_ports() {
    // 1*1+442 = 443: computed, but a standard service port.
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "x.example.net", &["1.1.186.5"], 60)),
        Ev::Flow(conn(1.5, HOST, "1.1.186.5", 443)),
        Ev::Dns(answer(2.0, HOST, "y.example.net", &["31.144.8.8"], 60)),
        Ev::Flow(conn(2.5, HOST, "31.144.8.8", 8080)),
    ]);
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn no_alert_on_baseline_ports() {
    let mut evs = Vec::new();
    // The host uses port 18239 on another server every 10 minutes for hours.
    for i in 0..12 {
        evs.push(Ev::Flow(conn(
            f64::from(i) * 600.0,
            HOST,
            "198.51.100.20",
            18239,
        )));
    }
    evs.push(Ev::Dns(answer(
        8000.0,
        HOST,
        "upd.example.net",
        &["71.63.201.9"],
        60,
    )));
    evs.push(Ev::Flow(conn(8001.0, HOST, "71.63.201.9", 18239)));
    assert!(calc(&run(evs)).is_empty());
}

#[test]
fn baseline_never_gates_a_first_connection() {
    // Plenty of history on other ports; the calculated port is new: fires.
    let mut evs = Vec::new();
    for i in 0..50 {
        evs.push(Ev::Flow(conn(
            f64::from(i) * 60.0,
            HOST,
            "198.51.100.20",
            22_000,
        )));
    }
    evs.push(Ev::Dns(answer(
        4000.0,
        HOST,
        "upd.example.net",
        &["71.63.201.9"],
        60,
    )));
    evs.push(Ev::Flow(conn(4001.0, HOST, "71.63.201.9", 18239)));
    let out = run(evs);
    assert_eq!(calc(&out).len(), 1);
    assert!(calc(&out)[0]
        .reasons
        .iter()
        .any(|r| r.contains("new for this host")));
}

#[test]
fn no_alert_for_allowlisted_domain_cidr_or_port() {
    let evs = || {
        vec![
            Ev::Dns(answer(1.0, HOST, "a.upd.example.net", &["71.63.201.9"], 60)),
            Ev::Flow(conn(2.0, HOST, "71.63.201.9", 18239)),
        ]
    };
    for allow in [
        "domains = [\"example.net\"]",
        "cidrs = [\"71.63.0.0/16\"]",
        "ports = [18239]",
    ] {
        let t: toml::Table = format!("[allowlist]\n{allow}\n").parse().unwrap();
        let out = run_with(DnsCalcConfig::from_table(&t).unwrap(), evs());
        assert!(out.is_empty(), "{allow}: {out:#?}");
    }
    assert_eq!(calc(&run(evs())).len(), 1);
}

#[test]
fn no_alert_after_the_window() {
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
        Ev::Flow(conn(122.0, HOST, "71.63.201.9", 18239)),
    ]);
    assert!(out.is_empty());
    let t: toml::Table = "window_s = 300".parse().unwrap();
    let out = run_with(
        DnsCalcConfig::from_table(&t).unwrap(),
        vec![
            Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
            Ev::Flow(conn(122.0, HOST, "71.63.201.9", 18239)),
        ],
    );
    assert_eq!(calc(&out).len(), 1);
}

#[test]
fn no_alert_to_an_address_not_in_the_answer() {
    // Port 18239 derives from the answer, but the host went somewhere unrelated.
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
        Ev::Flow(conn(2.0, HOST, "203.0.113.77", 18239)),
    ]);
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn keyed_address_fires_when_the_key_repeats() {
    // The implant connects to answer XOR key on a port from the answer: once is chance
    // (k/64512), the same key on the next answer is not.
    let key = 0x01a5_3c77u32;
    let xor = |s: &str| {
        let a: std::net::Ipv4Addr = s.parse().unwrap();
        std::net::Ipv4Addr::from(u32::from(a) ^ key).to_string()
    };
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 600)),
        Ev::Flow(conn(3.0, HOST, &xor("71.63.201.9"), 201 * 256 + 9)),
        Ev::Dns(answer(900.0, HOST, "upd.example.net", &["88.14.77.3"], 600)),
        Ev::Flow(conn(902.0, HOST, &xor("88.14.77.3"), 77 * 256 + 3)),
    ]);
    let a = calc(&out);
    assert_eq!(a.len(), 1, "{out:#?}");
    assert_eq!(a[0].dst, ip(&xor("88.14.77.3")));
    assert!(a[0].reasons.iter().any(|r| r.contains("same address key")));
}

#[test]
fn fallback_after_a_bogon_answer() {
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["0.0.0.0"], 300)),
        Ev::Flow(conn(4.0, HOST, "165.145.19.171", 3446)),
        // LAN peers and broadcasts are reached without DNS all the time.
        Ev::Flow(conn(5.0, HOST, "10.1.255.255", 17500)),
    ]);
    let u = unusual(&out);
    assert_eq!(u.len(), 1, "{out:#?}");
    assert_eq!(u[0].dst, ip("165.145.19.171"));
    // A destination some answer gave is no fallback.
    let out = run(vec![
        Ev::Dns(answer(
            1.0,
            HOST,
            "other.example.net",
            &["165.145.19.171"],
            300,
        )),
        Ev::Dns(answer(2.0, HOST, "upd.example.net", &["0.0.0.0"], 300)),
        Ev::Flow(conn(4.0, HOST, "165.145.19.171", 3446)),
    ]);
    assert!(unusual(&out).is_empty(), "{out:#?}");
}

/// A mixed answer (a private address among public ones) is unusual, but usable: the
/// host may connect to its public addresses, so a connection elsewhere soon after is
/// not a fallback from it. The peer benchmark's random answers raised 284 such alerts.
#[test]
fn mixed_answer_has_no_fallback() {
    let mixed = ["172.31.155.86", "52.60.59.29", "142.225.107.140"];
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "api.initech126.org", &mixed, 300)),
        Ev::Flow(conn(1.3, HOST, "198.122.132.26", 7594)),
    ]);
    assert!(unusual(&out).is_empty(), "{out:#?}");
    // Its public addresses are still reached directly and judged as such.
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "api.initech126.org", &mixed, 300)),
        Ev::Flow(conn(1.3, HOST, "52.60.59.29", 7594)),
    ]);
    let u = unusual(&out);
    assert_eq!(u.len(), 1, "{out:#?}");
    assert_eq!(u[0].dst, ip("52.60.59.29"));
}

#[test]
fn midstream_tcp_is_not_a_new_connection() {
    let mut f = conn(3.1, HOST, "71.63.201.9", 18239);
    if let FlowEvent::Started(r) = &mut f {
        r.history = Default::default();
        r.history.push(b'D');
    }
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "upd.example.net", &["71.63.201.9"], 60)),
        Ev::Flow(f),
    ]);
    assert!(out.is_empty());
}

#[test]
fn odd_name_then_nonstandard_port() {
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "x7k2mz9qpl3v.top", &["71.63.201.9"], 300)),
        Ev::Flow(conn(4.0, HOST, "71.63.201.9", 3446)),
    ]);
    assert_eq!(unusual(&out).len(), 1, "{out:#?}");
}

#[test]
fn memory_per_host_is_bounded() {
    let mut d = DnsCalc::new(DnsCalcConfig::default(), None);
    let c = ctx();
    let mut out = Vec::new();
    let addrs: Vec<String> = (0..8).map(|i| format!("71.63.{i}.9")).collect();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    for h in 0..64 {
        let host = format!("10.1.1.{h}");
        for i in 0..200 {
            let a = answer(f64::from(i), &host, &format!("n{i}.example.com"), &refs, 60);
            d.on_dns(&c, &a, &mut out);
        }
        for p in 0..40 {
            d.on_flow(
                &c,
                &conn(300.0, &host, "198.51.100.7", 20_000 + p),
                &mut out,
            );
        }
    }
    let (hosts, bytes) = d.memory();
    let per_host = bytes / hosts;
    eprintln!("dnscalc: worst-case memory {per_host} bytes per host ({hosts} hosts)");
    assert!(per_host < 24 * 1024, "{per_host}");
}

#[test]
fn no_alert_for_mdns_or_answers_to_another_host() {
    let mut m = answer(1.0, HOST, "upd.local", &["71.63.201.9"], 60);
    m.kind = DnsKind::Mdns;
    let out = run(vec![
        Ev::Dns(m),
        Ev::Flow(conn(2.0, HOST, "71.63.201.9", 18239)),
    ]);
    assert!(out.is_empty());
    let out = run(vec![
        Ev::Dns(answer(
            1.0,
            "10.1.0.99",
            "upd.example.net",
            &["71.63.201.9"],
            60,
        )),
        Ev::Flow(conn(2.0, HOST, "71.63.201.9", 18239)),
    ]);
    assert!(out.is_empty());
}

#[test]
fn unusual_low_ttl_then_nonstandard_port() {
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "x7k2.example.biz", &["45.77.12.34"], 0)),
        Ev::Flow(conn(1.4, HOST, "45.77.12.34", 4444)),
    ]);
    let u = unusual(&out);
    assert_eq!(u.len(), 1, "{out:#?}");
    assert!(
        u[0].reasons[0].contains("very low TTL (0 s)"),
        "{:?}",
        u[0].reasons
    );
    assert!(u[0].reasons[0].contains("name never seen before"));
    assert!(calc(&out).is_empty());
    assert_eq!(u[0].dns.as_ref().unwrap().ttl, 0);
}

#[test]
fn unusual_private_answer_for_public_name() {
    let out = run(vec![
        Ev::Dns(answer(
            1.0,
            HOST,
            "login.example-bank.com",
            &["10.9.8.7"],
            300,
        )),
        Ev::Flow(conn(2.0, HOST, "10.9.8.7", 4444)),
    ]);
    let u = unusual(&out);
    assert_eq!(u.len(), 1, "{out:#?}");
    assert!(u[0].reasons[0].contains("private address for a public name"));
    // Split horizon: a declared internal domain resolving privately is normal.
    let t: toml::Table = "[unusual]\ninternal_domains = [\"example-bank.com\"]"
        .parse()
        .unwrap();
    let out = run_with(
        DnsCalcConfig::from_table(&t).unwrap(),
        vec![
            Ev::Dns(answer(
                1.0,
                HOST,
                "login.example-bank.com",
                &["10.9.8.7"],
                300,
            )),
            Ev::Flow(conn(2.0, HOST, "10.9.8.7", 4444)),
        ],
    );
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn ordinary_answer_then_nonstandard_port_is_not_unusual() {
    // New name, TTL 60, public address: weak evidence only.
    let out = run(vec![
        Ev::Dns(answer(
            1.0,
            HOST,
            "game.example.com",
            &["93.184.216.34"],
            60,
        )),
        Ev::Flow(conn(1.5, HOST, "93.184.216.34", 27015)),
    ]);
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn cache_countdown_ttl_is_not_low() {
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "cdn.example.com", &["93.184.216.34"], 60)),
        Ev::Dns(answer(60.0, HOST, "cdn.example.com", &["93.184.216.34"], 1)),
        Ev::Flow(conn(60.5, HOST, "93.184.216.34", 27015)),
    ]);
    assert!(out.is_empty(), "{out:#?}");
}

#[test]
fn unusual_needs_the_answered_address() {
    let out = run(vec![
        Ev::Dns(answer(1.0, HOST, "x7k2.example.biz", &["45.77.12.34"], 0)),
        Ev::Flow(conn(1.4, HOST, "45.77.99.1", 4444)),
        Ev::Flow(conn(1.5, HOST, "45.77.12.34", 443)),
    ]);
    assert!(unusual(&out).is_empty(), "{out:#?}");
}

#[test]
fn engine_dedups_repeats() {
    let mut e = Engine::new(
        ctx(),
        vec![Box::new(DnsCalc::new(DnsCalcConfig::default(), None))],
        Dur::from_secs(3600),
    );
    let mut out = Vec::new();
    for i in 0..5 {
        let t = f64::from(i) * 60.0;
        e.on_dns(
            &answer(t, HOST, "upd.example.net", &["71.63.201.9"], 60),
            &mut out,
        );
        e.on_flow(&conn(t + 1.0, HOST, "71.63.201.9", 18239), &mut out);
    }
    assert_eq!(calc(&out).len(), 1);
}

#[test]
fn repeated_derivation_raises_the_score() {
    let mut d = DnsCalc::new(DnsCalcConfig::default(), None);
    let c = ctx();
    let mut out = Vec::new();
    d.on_dns(
        &c,
        &answer(1.0, HOST, "a.example.net", &["71.63.201.9"], 60),
        &mut out,
    );
    d.on_flow(&c, &conn(50.0, HOST, "71.63.201.9", 18239), &mut out);
    d.on_dns(
        &c,
        &answer(500.0, HOST, "a.example.net", &["80.10.1.1"], 60),
        &mut out,
    );
    d.on_flow(&c, &conn(549.0, HOST, "80.10.1.1", 80 * 256 + 10), &mut out);
    assert_eq!(out.len(), 2);
    assert!(
        out[1].score > out[0].score,
        "{} {}",
        out[0].score,
        out[1].score
    );
    assert!(out[1]
        .reasons
        .iter()
        .any(|r| r.contains("same derivation matched 1")));
}

#[test]
fn baselines_persist_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let c = ctx();
    let mut out = Vec::new();
    {
        let mut d = DnsCalc::new(DnsCalcConfig::default(), Some(store.clone()));
        for i in 0..12 {
            d.on_flow(
                &c,
                &conn(f64::from(i) * 600.0, HOST, "198.51.100.20", 18239),
                &mut out,
            );
        }
        d.on_finish(&c);
    }
    let b = store
        .load(&crate::baseline::BaselineKey::Host(ip(HOST)))
        .unwrap()
        .unwrap();
    assert_eq!(b.flows, 12);
    // A new detector (a restart) knows 18239 is this host's own port.
    let mut d = DnsCalc::new(DnsCalcConfig::default(), Some(store));
    d.on_dns(
        &c,
        &answer(8000.0, HOST, "upd.example.net", &["71.63.201.9"], 60),
        &mut out,
    );
    d.on_flow(&c, &conn(8001.0, HOST, "71.63.201.9", 18239), &mut out);
    assert!(out.is_empty(), "{out:#?}");
}

/// xorshift64*: deterministic random data without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Chance matches on benign data: hosts resolve random public names and connect, within
/// seconds, to a random high port on an answered address. Every alert is a false one.
/// Expected rate per connection ≈ k/64512 (k = IPv4 formulas); measured and bounded.
#[test]
fn chance_match_rate_on_random_benign_traffic() {
    let cfg = DnsCalcConfig::default();
    let k = cfg
        .derivations
        .iter()
        .filter(|d| d.family == derivation::Family::V4)
        .count();
    let mut d = DnsCalc::new(cfg, None);
    let c = ctx();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut out = Vec::new();
    let conns = 80_000u64;
    let hosts = 100u64;
    let mut t = 0.0;
    for i in 0..conns {
        t += 0.05;
        let host = IpAddr::from([10, 1, (i % hosts / 256) as u8, (i % hosts) as u8 + 1]);
        let n_addrs = 1 + rng.below(4) as usize;
        let addrs: Vec<String> = (0..n_addrs)
            .map(|_| {
                // Public unicast only: benign names answer with public addresses.
                let a = loop {
                    let a = IpAddr::from(std::net::Ipv4Addr::from(rng.next() as u32));
                    if !unusual::is_bogon(a) && !unusual::is_private(a) {
                        break a;
                    }
                };
                a.to_string()
            })
            .collect();
        let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let ttl = [20, 60, 300, 3600][rng.below(4) as usize];
        let mut a = answer(
            t,
            "10.0.0.1",
            &format!("n{}.example.com", rng.below(5000)),
            &refs,
            ttl,
        );
        a.client = host;
        d.on_dns(&c, &a, &mut out);
        let dst = refs[rng.below(n_addrs as u64) as usize];
        let port = 1024 + rng.below(64_512) as u16;
        d.on_flow(&c, &conn(t + 0.5, &host.to_string(), dst, port), &mut out);
    }
    let fp = calc(&out).len() as f64;
    let rate = fp / conns as f64;
    let expected = k as f64 / 64_512.0;
    eprintln!(
        "chance matches: {fp} alerts in {conns} benign connections: rate {rate:.2e} \
         (k={k}, k/64512 = {expected:.2e}); unusual: {}",
        unusual(&out).len()
    );
    assert!(rate < 2.0 * expected, "rate {rate:.2e}");
    assert!(unusual(&out).is_empty());
}

/// Rough cost of checking one new outbound flow against a full answer memory (debug
/// builds are slow; the number is printed, not asserted).
#[test]
fn cost_per_new_flow() {
    let mut d = DnsCalc::new(DnsCalcConfig::default(), None);
    let c = ctx();
    let mut out = Vec::new();
    for i in 0..32 {
        let a = format!("71.63.{i}.9");
        d.on_dns(
            &c,
            &answer(
                f64::from(i),
                HOST,
                "n.example.com",
                &[&a, "71.63.201.10"],
                60,
            ),
            &mut out,
        );
    }
    let evs: Vec<FlowEvent> = (0..20_000)
        .map(|i| {
            conn(
                40.0 + f64::from(i) * 1e-4,
                HOST,
                "71.63.7.9",
                20_000 + (i % 30_000) as u16,
            )
        })
        .collect();
    let t0 = std::time::Instant::now();
    for e in &evs {
        d.on_flow(&c, e, &mut out);
    }
    let ns = t0.elapsed().as_nanos() as f64 / evs.len() as f64;
    eprintln!("dnscalc: {ns:.0} ns per new flow (32 answers in the window, this build profile)");
}
