//! Telemetry: every metric portent exports is named in this file, and only here.
//!
//! Threads count in plain integers (the capture thread in its [`RunSummary`], workers
//! in their stats) and hand the counts to a publisher here at most once a second (and
//! once at the end); nothing on the per-packet path touches a metric. Without
//! [`install`] (replay) the `metrics` calls go to a no-op recorder.
//!
//! Names follow Prometheus conventions: `portent_` prefix, `_total` on counters, base
//! units in the name (`_bytes_total`, `_seconds`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::flow::table::FlowStats;
use crate::pipeline::RunSummary;

/// How often the threads publish their counts.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

pub const PACKETS_RECEIVED: &str = "portent_packets_received_total";
pub const BYTES_RECEIVED: &str = "portent_received_bytes_total";
pub const PACKETS_DROPPED: &str = "portent_dropped_packets_total";
pub const BATCHES_DROPPED: &str = "portent_dropped_batches_total";
pub const OTHER_PROTO: &str = "portent_untracked_packets_total";
pub const DECODE_ERRORS: &str = "portent_decode_errors_total";
pub const DNS_ERRORS: &str = "portent_dns_errors_total";
pub const DNS_ANSWERS: &str = "portent_dns_answers_total";
pub const FLOWS_LIVE: &str = "portent_flows_live";
pub const FLOWS_CREATED: &str = "portent_flows_created_total";
pub const FLOWS_ENDED: &str = "portent_flows_ended_total";
pub const ALERTS: &str = "portent_alerts_total";
pub const EDR_EVENTS: &str = "portent_edr_events_total";
pub const XDP_FILL_EMPTY: &str = "portent_xdp_fill_ring_empty_total";
pub const STAGE_SECONDS: &str = "portent_stage_seconds";
pub const BUILD_INFO: &str = "portent_build_info";
pub const CAPTURE_INFO: &str = "portent_capture_info";

/// Drop causes (`cause` label of [`PACKETS_DROPPED`]).
pub const DROP_KERNEL: &str = "kernel";
pub const DROP_INTERFACE: &str = "interface";
pub const DROP_RING: &str = "ring";
pub const DROP_QUEUE_FULL: &str = "queue_full";
const DROP_CAUSES: &[&str] = &[DROP_KERNEL, DROP_INTERFACE, DROP_RING, DROP_QUEUE_FULL];

/// Why a flow ended (`reason` label of [`FLOWS_ENDED`]).
const FLOW_END_REASONS: [&str; 4] = ["closed", "idle", "evicted", "shutdown"];

/// Pipeline stages timed per batch (`stage` label of [`STAGE_SECONDS`]): `queue` is
/// the wait between the capture thread's hand-off and a worker picking the batch up,
/// `analysis` a worker's time on it (flows, DNS, analytics, rendering).
pub const STAGE_QUEUE: &str = "queue";
pub const STAGE_ANALYSIS: &str = "analysis";

/// Starts the exporter: an HTTP listener serving `/metrics` on `addr`.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    // Batches take microseconds to milliseconds; the top buckets catch stalls.
    let buckets = [
        1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("metrics on {addr}: {e}"))?;
    describe();
    // Every series a dashboard shows exists from the start, at zero.
    counter!(PACKETS_RECEIVED).absolute(0);
    counter!(BYTES_RECEIVED).absolute(0);
    counter!(BATCHES_DROPPED).absolute(0);
    counter!(OTHER_PROTO).absolute(0);
    counter!(DNS_ANSWERS).absolute(0);
    counter!(FLOWS_CREATED).absolute(0);
    counter!(EDR_EVENTS).absolute(0);
    counter!(XDP_FILL_EMPTY).absolute(0);
    for c in DROP_CAUSES {
        counter!(PACKETS_DROPPED, "cause" => *c).absolute(0);
    }
    for r in &FLOW_END_REASONS {
        counter!(FLOWS_ENDED, "reason" => *r).absolute(0);
    }
    for a in crate::analytics::Analytic::ALL {
        counter!(ALERTS, "analytic" => a.name()).absolute(0);
    }
    for k in ["truncated_link", "unsupported_protocol"] {
        counter!(DECODE_ERRORS, "kind" => k).absolute(0);
    }
    for k in ["dns_malformed", "dns_query"] {
        counter!(DNS_ERRORS, "kind" => k).absolute(0);
    }
    gauge!(FLOWS_LIVE, "worker" => "0").set(0.0);
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(PACKETS_RECEIVED, "Frames read from the capture source.");
    describe_counter!(
        BYTES_RECEIVED,
        Unit::Bytes,
        "Bytes on the wire of the frames read."
    );
    describe_counter!(
        PACKETS_DROPPED,
        "Frames lost, by cause: kernel and interface (libpcap), ring (AF_XDP), queue_full (analysis behind)."
    );
    describe_counter!(
        BATCHES_DROPPED,
        "Batches dropped because a worker queue was full."
    );
    describe_counter!(OTHER_PROTO, "Packets of IP protocols other than TCP/UDP.");
    describe_counter!(DECODE_ERRORS, "Frames that did not decode, by kind.");
    describe_counter!(DNS_ERRORS, "DNS payloads that gave no answer, by kind.");
    describe_counter!(DNS_ANSWERS, "DNS answers decoded.");
    describe_gauge!(FLOWS_LIVE, "Flows in the flow table, by worker.");
    describe_counter!(FLOWS_CREATED, "Flows created.");
    describe_counter!(FLOWS_ENDED, "Flows ended, by reason (evicted: table full).");
    describe_counter!(ALERTS, "Alerts raised, by analytic.");
    describe_counter!(EDR_EVENTS, "EDR events loaded.");
    describe_counter!(
        XDP_FILL_EMPTY,
        "AF_XDP: frames that found the fill ring empty (already in cause=\"ring\" drops)."
    );
    describe_histogram!(
        STAGE_SECONDS,
        Unit::Seconds,
        "Time a batch spends per pipeline stage."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version is a label.");
    describe_gauge!(
        CAPTURE_INFO,
        "Always 1; the capture source and mode are labels."
    );
}

/// The capture source in use, as labels (`source`: pcap or xdp; `mode`).
pub fn capture_info(source: &'static str, mode: &str, interface: &str) {
    gauge!(CAPTURE_INFO, "source" => source, "mode" => mode.to_string(),
        "interface" => interface.to_string())
    .set(1.0);
}

/// A source's own drop counters (cumulative since it opened), by cause.
pub fn source_drops(drops: &[(&'static str, u64)]) {
    for (cause, n) in drops {
        counter!(PACKETS_DROPPED, "cause" => *cause).absolute(*n);
    }
}

/// AF_XDP fill-ring-empty events (cumulative).
pub fn xdp_fill_ring_empty(n: u64) {
    counter!(XDP_FILL_EMPTY).absolute(n);
}

/// Adds `now - *last` to a counter and remembers `now`.
fn delta(c: &Counter, now: u64, last: &mut u64) {
    if now > *last {
        c.increment(now - *last);
        *last = now;
    }
}

fn delta_map(
    name: &'static str,
    now: &BTreeMap<&'static str, u64>,
    last: &mut BTreeMap<&'static str, u64>,
) {
    for (k, v) in now {
        let l = last.entry(k).or_default();
        if *v > *l {
            counter!(name, "kind" => *k).increment(*v - *l);
            *l = *v;
        }
    }
}

/// Publishes the capture thread's counts (kept in its [`RunSummary`]).
pub(crate) struct CapturePublisher {
    next: Instant,
    packets: (Counter, u64),
    bytes: (Counter, u64),
    other: (Counter, u64),
    dropped_batches: (Counter, u64),
    dropped_packets: (Counter, u64),
    decode_errors: BTreeMap<&'static str, u64>,
}

impl CapturePublisher {
    pub fn new() -> CapturePublisher {
        CapturePublisher {
            next: Instant::now() + PUBLISH_EVERY,
            packets: (counter!(PACKETS_RECEIVED), 0),
            bytes: (counter!(BYTES_RECEIVED), 0),
            other: (counter!(OTHER_PROTO), 0),
            dropped_batches: (counter!(BATCHES_DROPPED), 0),
            dropped_packets: (counter!(PACKETS_DROPPED, "cause" => DROP_QUEUE_FULL), 0),
            decode_errors: BTreeMap::new(),
        }
    }

    /// Called once per batch; publishes when a period has passed (or `force`).
    pub fn maybe_publish(&mut self, s: &RunSummary, force: bool) {
        let now = Instant::now();
        if !force && now < self.next {
            return;
        }
        self.next = now + PUBLISH_EVERY;
        delta(&self.packets.0, s.packets, &mut self.packets.1);
        delta(&self.bytes.0, s.bytes, &mut self.bytes.1);
        delta(&self.other.0, s.other_proto, &mut self.other.1);
        delta(
            &self.dropped_batches.0,
            s.dropped_batches,
            &mut self.dropped_batches.1,
        );
        delta(
            &self.dropped_packets.0,
            s.dropped_packets,
            &mut self.dropped_packets.1,
        );
        delta_map(DECODE_ERRORS, &s.decode_errors, &mut self.decode_errors);
    }
}

/// A worker's counts, as the worker keeps them.
pub(crate) struct WorkerCounts<'a> {
    pub dns_answers: u64,
    pub alerts: &'a BTreeMap<&'static str, u64>,
    pub dns_errors: &'a BTreeMap<&'static str, u64>,
    pub flow: &'a FlowStats,
    pub live_flows: usize,
}

/// Publishes one worker's counts; also times its batches.
pub(crate) struct WorkerPublisher {
    next: Instant,
    live: Gauge,
    dns_answers: (Counter, u64),
    created: (Counter, u64),
    ended: [(Counter, u64); 4],
    alerts: BTreeMap<&'static str, u64>,
    dns_errors: BTreeMap<&'static str, u64>,
    pub queue: Histogram,
    pub analysis: Histogram,
}

impl WorkerPublisher {
    pub fn new(worker: usize) -> WorkerPublisher {
        let ended = FLOW_END_REASONS.map(|r| (counter!(FLOWS_ENDED, "reason" => r), 0));
        WorkerPublisher {
            next: Instant::now() + PUBLISH_EVERY,
            live: gauge!(FLOWS_LIVE, "worker" => worker.to_string()),
            dns_answers: (counter!(DNS_ANSWERS), 0),
            created: (counter!(FLOWS_CREATED), 0),
            ended,
            alerts: BTreeMap::new(),
            dns_errors: BTreeMap::new(),
            queue: histogram!(STAGE_SECONDS, "stage" => STAGE_QUEUE),
            analysis: histogram!(STAGE_SECONDS, "stage" => STAGE_ANALYSIS),
        }
    }

    pub fn maybe_publish(&mut self, c: WorkerCounts<'_>, force: bool) {
        let now = Instant::now();
        if !force && now < self.next {
            return;
        }
        self.next = now + PUBLISH_EVERY;
        self.live.set(c.live_flows as f64);
        delta(&self.dns_answers.0, c.dns_answers, &mut self.dns_answers.1);
        delta(&self.created.0, c.flow.created, &mut self.created.1);
        let f = c.flow;
        let ends = [f.ended_closed, f.ended_idle, f.evicted, f.ended_shutdown];
        for ((ctr, last), now) in self.ended.iter_mut().zip(ends) {
            delta(ctr, now, last);
        }
        for (k, v) in c.alerts {
            let l = self.alerts.entry(k).or_default();
            if *v > *l {
                counter!(ALERTS, "analytic" => *k).increment(*v - *l);
                *l = *v;
            }
        }
        delta_map(DNS_ERRORS, c.dns_errors, &mut self.dns_errors);
    }
}
