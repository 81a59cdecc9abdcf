//! Floods through `portent replay` with a small `[flow] max_flows`: memory stays bounded
//! (the child's peak RSS, from wait4), and the `--stats` counters say what was evicted
//! or dropped. Each flood is generated here; the size is `PORTENT_FLOOD_PACKETS`
//! (default 1 000 000 in release builds, 200 000 in debug ones, which are ~20x slower).
//!
//! `cargo test --release --test floods -- --nocapture --test-threads 1` prints the
//! numbers reported in README.md's Hardening section.

mod hardening;

use std::path::PathBuf;

use hardening::*;

const MAX_FLOWS: u64 = 10_000;
/// Peak RSS allowed for any flood, whatever its size: the flow cap keeps the table at
/// ~10k records; what remains is buffers, queues and bounded analytics state.
const MAX_RSS_MIB: i64 = 256;
/// The DNS answer flood fills the DNS analytics' name history, capped by
/// `analytics.dnscalc.max_names` (262 144 by default, two generations): a bounded cost.
const MAX_RSS_DNS_MIB: i64 = 512;

fn flood_packets() -> u64 {
    std::env::var("PORTENT_FLOOD_PACKETS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            200_000
        } else {
            1_000_000
        })
}

fn config() -> String {
    format!(
        "[flow]\nmax_flows = {MAX_FLOWS}\n[pipeline]\nworkers = 2\n[network]\nhome_net = [\"10.0.0.0/8\"]\n"
    )
}

/// An address in 198.18.0.0/15 (benchmarking space) from a counter: a million distinct
/// external hosts.
fn ext(i: u64) -> [u8; 4] {
    [198, 18 + ((i >> 16) & 1) as u8, (i >> 8) as u8, i as u8]
}

/// Writes a flood pcap with `frame(i)` for i in 0..n, 10 µs apart.
fn flood_pcap(
    dir: &tempfile::TempDir,
    name: &str,
    n: u64,
    frame: impl Fn(u64) -> Vec<u8>,
) -> PathBuf {
    let p = dir.path().join(name);
    let mut w = PcapWriter::create(&p, 1);
    for i in 0..n {
        w.packet(T0_US + i * 10, &frame(i));
    }
    assert_eq!(w.finish(), n);
    p
}

fn run_flood(name: &str, n: u64, frame: impl Fn(u64) -> Vec<u8>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let p = flood_pcap(&dir, &format!("{name}.pcap"), n, frame);
    let start = std::time::Instant::now();
    let run = replay(&[p], Some(&config()), &[]);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{name}: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"));
    let fs = &run.stats["flow_stats"];
    println!(
        "flood {name}: {n} packets in {secs:.1} s, peak RSS {} MiB, flows created {} evicted {} peak live {}, dns answers {}, alerts {}",
        run.max_rss_kib / 1024,
        fs["created"],
        fs["evicted"],
        fs["peak_live"],
        run.stats["dns_answers"],
        run.stats["alerts"],
    );
    assert_eq!(u(&run.stats, &["packets"]), n, "{name}");
    assert!(u(fs, &["peak_live"]) <= MAX_FLOWS, "{name}: {fs}");
    let bound = if name == "dns-answers" {
        MAX_RSS_DNS_MIB
    } else {
        MAX_RSS_MIB
    };
    assert!(
        run.max_rss_kib / 1024 < bound,
        "{name}: peak RSS {} MiB over {bound} MiB",
        run.max_rss_kib / 1024
    );
    run
}

/// Every flow the cap did not hold was evicted, and every flow ended exactly once.
fn assert_evictions(run: &Run, name: &str, flows: u64) {
    let fs = &run.stats["flow_stats"];
    assert_eq!(u(fs, &["created"]), flows, "{name}: {fs}");
    assert!(u(fs, &["evicted"]) >= flows - MAX_FLOWS, "{name}: {fs}");
    let ended = u(fs, &["evicted"])
        + u(fs, &["ended_idle"])
        + u(fs, &["ended_closed"])
        + u(fs, &["ended_shutdown"]);
    assert_eq!(ended, flows, "{name}: {fs}");
    assert_eq!(u(&run.stats, &["flows"]), flows, "{name}");
}

#[test]
fn a_million_distinct_sources() {
    let n = flood_packets();
    // Each source sends one UDP datagram to an internal server.
    let run = run_flood("distinct-sources", n, |i| {
        eth_udp(
            ext(i),
            [10, 1, 0, 1],
            1024 + (i % 60000) as u16,
            8080,
            b"knock",
        )
    });
    assert_evictions(&run, "distinct-sources", n);
}

#[test]
fn syn_flood() {
    let n = flood_packets();
    // Spoofed sources and ports, one SYN each, at one internal web server.
    let run = run_flood("syn-flood", n, |i| {
        eth_tcp(
            ext(i * 7919),
            [10, 1, 0, 2],
            (i % 64000) as u16 + 1024,
            443,
            i as u32,
            SYN,
        )
    });
    assert_evictions(&run, "syn-flood", n);
}

#[test]
fn dns_answer_flood() {
    let n = flood_packets();
    // Unsolicited answers to one client, each for a new name and a new address: the
    // answer memory of the DNS analytics must hold a bounded number.
    let run = run_flood("dns-answers", n, |i| {
        let label = format!("h{i:x}");
        let q = wire_name(&[label.as_bytes(), b"flood", b"example"]);
        let msg = dns_response(i as u16, &q, [1, 1, 0, 0], &rr(&QPTR, 1, 300, &ext(i)));
        eth_udp(
            [192, 0, 2, 53],
            [10, 0, 0, 9],
            53,
            1024 + (i % 60000) as u16,
            &msg,
        )
    });
    // Every datagram is an answer or a counted decode error (a few client ports are
    // tunnel ports such as VXLAN's 4789: those are decoded as tunnels, and counted).
    let errors: u64 = run.stats["decode_errors"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    println!("dns-answers decode errors: {}", run.stats["decode_errors"]);
    assert_eq!(u(&run.stats, &["dns_answers"]) + errors, n, "{}", run.stats);
}

#[test]
fn one_host_opens_a_million_flows() {
    let n = flood_packets();
    // One internal host, a new (destination, port) pair each packet: per-host analytics
    // state (ports, destinations, cadence) is the structure under pressure here.
    let run = run_flood("one-host", n, |i| {
        eth_tcp(
            [10, 0, 0, 66],
            ext(i),
            20000 + (i % 40000) as u16,
            1024 + (i % 50000) as u16,
            1,
            SYN,
        )
    });
    assert_evictions(&run, "one-host", n);
}

#[test]
fn one_host_flood_does_not_deadlock_the_writer() {
    // Regression: every flow routed to one worker, whose expiry sweep sends several
    // output batches while the writer waited on the other (idle) worker's lane alone and
    // the capture thread waited on the busy worker's full input queue. Small queues make
    // it quick to reach; the watchdog turns a hang into a failure.
    let dir = tempfile::tempdir().unwrap();
    let p = flood_pcap(&dir, "one-host-small.pcap", 60_000, |i| {
        eth_tcp(
            [10, 0, 0, 66],
            ext(i),
            20000 + (i % 40000) as u16,
            1024 + (i % 50000) as u16,
            1,
            SYN,
        )
    });
    let cfg = "[flow]\nmax_flows = 5000\n[pipeline]\nworkers = 2\nqueue_batches = 1\nbatch_packets = 64\n";
    let start = std::time::Instant::now();
    let run = replay(&[p], Some(cfg), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(u(&run.stats, &["flow_stats", "created"]), 60_000);
    assert!(start.elapsed().as_secs() < 120, "{:?}", start.elapsed());
}
