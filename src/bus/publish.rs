//! The capture tier's side of the bus: each pipeline worker publishes the flow events
//! and DNS answers of its hosts, keyed by host, through one shared Kafka producer.
//!
//! librdkafka batches (`linger.ms`), compresses (lz4) and reports deliveries on its own
//! thread. Its queue is the buffer: bounded in messages and bytes. When it is full, a
//! live capture drops the record and counts it (capture never waits on the broker); a
//! replay waits for room instead, so a replay publishes every record.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::record::{self, Body, Envelope, ProducerId};
use super::{partition_of, BusUrl};
use crate::config::NetSet;
use crate::decode::dns::DnsAnswer;
use crate::enrichment::reader::Format;
use crate::flow::FlowEvent;
use crate::pipeline::route_host_of;
use crate::time::{Dur, Ts};

/// How a capture instance publishes.
#[derive(Clone, Debug)]
pub struct PublishConfig {
    pub url: BusUrl,
    /// Partitions of the topic when portent creates it.
    pub partitions: u32,
    /// This instance's name (the merge tells producers apart by it): by default the
    /// host name. Two capture instances must not share one.
    pub name: String,
    /// Records held for the broker at most (librdkafka's queue).
    pub buffer_records: usize,
    pub buffer_kbytes: usize,
    /// Live capture drops when the buffer is full; replay waits.
    pub live: bool,
    /// A partition hears from each worker at least this often in packet time.
    pub heartbeat: Dur,
    /// Extra librdkafka properties.
    pub options: Vec<(String, String)>,
}

impl PublishConfig {
    pub fn new(url: BusUrl) -> PublishConfig {
        PublishConfig {
            url,
            partitions: 8,
            name: default_name(),
            buffer_records: 200_000,
            buffer_kbytes: 128 * 1024,
            live: false,
            heartbeat: Dur::from_secs(1),
            options: Vec::new(),
        }
    }
}

fn default_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "portent".into())
}

/// Counters of one publisher (all tiers' metrics are derived from these).
#[derive(Debug, Default)]
pub struct PublishCounts {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    /// Delivery failed after librdkafka's retries (broker gone past message.timeout.ms).
    pub failed: AtomicU64,
    /// Not queued: the buffer was full (live) or the record was refused.
    pub dropped: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PublishSummary {
    pub published: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub bytes: u64,
    /// Still queued when the flush timed out.
    pub unflushed: u64,
}

struct Reports(Arc<PublishCounts>);

impl ClientContext for Reports {}
impl ProducerContext for Reports {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        let c = if r.is_ok() {
            &self.0.delivered
        } else {
            &self.0.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct Publisher {
    producer: ThreadedProducer<Reports>,
    topic: String,
    partitions: u32,
    live: bool,
    pub counts: Arc<PublishCounts>,
    instance: u64,
    epoch: u64,
    heartbeat: Dur,
    home: NetSet,
    last_metrics: std::sync::Mutex<Instant>,
    /// Sequence of this instance's EDR line records.
    edr_seq: AtomicU64,
}

impl Publisher {
    /// Connects, creating the topic if needed. Fails (naming the address) when no broker
    /// answers within a few seconds: a capture tier without its bus is a setup error.
    pub fn connect(cfg: &PublishConfig, home: NetSet) -> Result<Arc<Publisher>, String> {
        let partitions = super::ensure_topic(
            &cfg.url.brokers,
            &cfg.options,
            &cfg.url.topic,
            cfg.partitions.max(1),
            Duration::from_secs(10),
        )?;
        let mut c: ClientConfig = super::client_config(&cfg.url.brokers, &[]);
        c.set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set("batch.num.messages", "10000")
            .set(
                "queue.buffering.max.messages",
                cfg.buffer_records.max(1).to_string(),
            )
            .set(
                "queue.buffering.max.kbytes",
                cfg.buffer_kbytes.max(1).to_string(),
            );
        for (k, v) in &cfg.options {
            c.set(k, v);
        }
        let counts = Arc::new(PublishCounts::default());
        let producer: ThreadedProducer<Reports> = c
            .create_with_context(Reports(counts.clone()))
            .map_err(|e| format!("kafka://{}: {e}", cfg.url.brokers))?;
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Ok(Arc::new(Publisher {
            producer,
            topic: cfg.url.topic.clone(),
            partitions,
            live: cfg.live,
            counts,
            instance: super::name_hash(&cfg.name),
            epoch,
            heartbeat: cfg.heartbeat,
            home,
            last_metrics: std::sync::Mutex::new(Instant::now()),
            edr_seq: AtomicU64::new(0),
        }))
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// One worker's stream (`workers` streams in all for this instance).
    pub fn sink(self: &Arc<Self>, worker: usize, workers: usize) -> WorkerSink {
        WorkerSink {
            p: self.clone(),
            producer: ProducerId {
                instance: self.instance,
                epoch: self.epoch,
                worker: worker as u16,
                workers: workers.max(1) as u16,
            },
            seq: 0,
            clock: Ts(i64::MIN),
            last_sent: vec![None; self.partitions as usize],
            buf: Vec::with_capacity(512),
        }
    }

    fn send(&self, partition: i32, key: &[u8], payload: &[u8], at: Ts) -> bool {
        let ms = at.0.div_euclid(1_000_000).max(0);
        let mut rec = BaseRecord::to(&self.topic)
            .partition(partition)
            .key(key)
            .payload(payload)
            .timestamp(ms);
        loop {
            match self.producer.send(rec) {
                Ok(()) => {
                    self.counts.published.fetch_add(1, Ordering::Relaxed);
                    self.counts
                        .bytes
                        .fetch_add(payload.len() as u64, Ordering::Relaxed);
                    return true;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if !self.live =>
                {
                    // Replay: wait for the broker to take some (librdkafka's own timeout
                    // fails queued messages if it never does, which frees room).
                    std::thread::sleep(Duration::from_millis(1));
                    rec = back;
                }
                Err(_) => {
                    self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
            }
        }
    }

    /// Publishes EDR feed files, every line to every partition (attribution joins lines
    /// across hosts: inventory, process starts, ESXi VM lines). Returns lines published.
    pub fn publish_edr(&self, paths: &[std::path::PathBuf]) -> Result<u64, String> {
        let mut buf = Vec::new();
        let mut total = 0;
        for (feed, path) in paths.iter().enumerate() {
            let format = sniff(path)?;
            let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let mut r = std::io::BufReader::new(f);
            let mut line = Vec::new();
            let mut line_no = 0u64;
            loop {
                line.clear();
                let n = r
                    .read_until(b'\n', &mut line)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if n == 0 {
                    break;
                }
                line_no += 1;
                // Not UTF-8: the analytics tier would reject it; it is counted there
                // as a bad record if it ever came, so skip it here.
                let Ok(text) = std::str::from_utf8(&line) else {
                    continue;
                };
                if self.edr_line(feed as u16, line_no, format, text, &mut buf) {
                    total += 1;
                }
            }
        }
        Ok(total)
    }

    /// One line of a followed EDR feed (live), to every partition. `line_no` must grow
    /// across the feed's rotations: the analytics tier ingests each (feed, line) once.
    pub fn forward_edr_line(&self, feed: u16, line_no: u64, format: Format, line: &str) {
        let mut buf = Vec::with_capacity(line.len() + 64);
        self.edr_line(feed, line_no, format, line, &mut buf);
    }

    fn edr_line(
        &self,
        feed: u16,
        line_no: u64,
        format: Format,
        text: &str,
        buf: &mut Vec<u8>,
    ) -> bool {
        let text = text.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            return false;
        }
        let producer = ProducerId {
            instance: self.instance,
            epoch: self.epoch,
            worker: 0,
            workers: 1,
        };
        let body = Body::EdrLine {
            feed,
            line_no,
            format,
            line: text.to_string(),
        };
        let env = Envelope {
            producer,
            seq: self.edr_seq.fetch_add(1, Ordering::Relaxed) + 1,
            at: Ts::ZERO,
        };
        buf.clear();
        record::encode(&env, &body, buf);
        for p in 0..self.partitions as i32 {
            self.send(p, b"edr", buf, Ts::ZERO);
        }
        true
    }

    /// Waits for queued records (up to `timeout`) and returns the counts.
    pub fn finish(&self, timeout: Duration) -> PublishSummary {
        let _ = self.producer.flush(timeout);
        self.publish_metrics();
        let c = &self.counts;
        PublishSummary {
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            unflushed: self.producer.in_flight_count().max(0) as u64,
        }
    }

    fn publish_metrics(&self) {
        let c = &self.counts;
        metrics::counter!("portent_bus_published_total")
            .absolute(c.published.load(Ordering::Relaxed));
        metrics::counter!("portent_bus_delivered_total")
            .absolute(c.delivered.load(Ordering::Relaxed));
        metrics::counter!("portent_bus_delivery_failed_total")
            .absolute(c.failed.load(Ordering::Relaxed));
        metrics::counter!("portent_bus_dropped_total").absolute(c.dropped.load(Ordering::Relaxed));
        metrics::gauge!("portent_bus_buffered_records")
            .set(self.producer.in_flight_count().max(0) as f64);
    }

    fn maybe_publish_metrics(&self) {
        let Ok(mut last) = self.last_metrics.try_lock() else {
            return;
        };
        if last.elapsed() >= Duration::from_secs(1) {
            *last = Instant::now();
            drop(last);
            self.publish_metrics();
        }
    }
}

/// Sniffs an EDR file's format as `--edr` does.
fn sniff(path: &Path) -> Result<Format, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .take(64)
        .map_while(Result::ok)
        .collect();
    Format::sniff(lines.iter().map(|s| s.as_str()))
        .ok_or_else(|| format!("{}: not a known EDR feed format", path.display()))
}

/// One worker's publishing state: its producer id, sequence, clock and heartbeats.
pub struct WorkerSink {
    p: Arc<Publisher>,
    producer: ProducerId,
    seq: u64,
    /// Newest `at` published: records go out in non-decreasing `at`.
    clock: Ts,
    /// When each partition last heard from this worker (packet time).
    last_sent: Vec<Option<Ts>>,
    buf: Vec<u8>,
}

impl WorkerSink {
    fn envelope(&mut self, at: Ts) -> Envelope {
        if at > self.clock {
            self.clock = at;
        }
        self.seq += 1;
        Envelope {
            producer: self.producer,
            seq: self.seq,
            at: self.clock,
        }
    }

    fn key(host: IpAddr) -> ([u8; 16], usize) {
        let mut k = [0u8; 16];
        match host {
            IpAddr::V4(v) => {
                k[..4].copy_from_slice(&v.octets());
                (k, 4)
            }
            IpAddr::V6(v) => {
                k.copy_from_slice(&v.octets());
                (k, 16)
            }
        }
    }

    fn send_to_host(&mut self, host: IpAddr) {
        let part = partition_of(host, self.p.partitions);
        let (k, n) = Self::key(host);
        let at = self.clock;
        self.p.send(part, &k[..n], &self.buf, at);
        if let Some(slot) = self.last_sent.get_mut(part as usize) {
            *slot = Some(at);
        }
    }

    pub fn flow(&mut self, ev: &FlowEvent, at: Ts) {
        let r = match ev {
            FlowEvent::Started(r) | FlowEvent::Ended(r, _) => r,
            FlowEvent::OrigMessage { flow, .. } => flow,
        };
        let host = route_host_of(r.orig, r.orig_port, r.resp, r.resp_port, &self.p.home);
        let env = self.envelope(at);
        record::encode_flow(&env, ev, &mut self.buf);
        self.send_to_host(host);
    }

    pub fn dns(&mut self, a: &DnsAnswer, at: Ts) {
        let host = route_host_of(
            a.resolver,
            a.resolver_port,
            a.client,
            a.client_port,
            &self.p.home,
        );
        let env = self.envelope(at);
        record::encode_dns_answer(&env, a, &mut self.buf);
        self.send_to_host(host);
    }

    /// Packet time reached `now`: partitions that have not heard from this worker for a
    /// heartbeat get a clock record (at the first call, all of them: it announces the
    /// stream to every partition's merge).
    pub fn clock(&mut self, now: Ts) {
        if now > self.clock {
            self.clock = now;
        }
        let hb = self.p.heartbeat;
        for part in 0..self.last_sent.len() {
            let due = self.last_sent[part].is_none_or(|t| self.clock.since(t) >= hb);
            if due {
                let env = self.envelope(now);
                record::encode(&env, &Body::Clock, &mut self.buf);
                self.p.send(part as i32, b"clock", &self.buf, self.clock);
                self.last_sent[part] = Some(self.clock);
            }
        }
        if self.producer.worker == 0 {
            self.p.maybe_publish_metrics();
        }
    }

    /// The stream ends: every partition is told.
    pub fn end(&mut self, now: Ts) {
        if now > self.clock {
            self.clock = now;
        }
        for part in 0..self.last_sent.len() {
            let env = self.envelope(now);
            record::encode(&env, &Body::End, &mut self.buf);
            self.p.send(part as i32, b"end", &self.buf, self.clock);
        }
    }
}

/// The capture tier's command-line options (replay and live).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PublishArgs {
    /// Capture tier: publish flow events, DNS answers (and `--edr` lines) to
    /// kafka://HOST:PORT/TOPIC instead of running the analytics here.
    #[arg(long, value_name = "URL")]
    pub publish: Option<String>,
    /// Partitions of the topic if portent creates it.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Name of this capture instance (default: the host name); unique per instance.
    #[arg(long)]
    pub producer_id: Option<String>,
    /// Records buffered for the broker at most; beyond it a live capture drops (counted).
    #[arg(long, default_value_t = 200_000)]
    pub publish_buffer: usize,
    /// Extra librdkafka producer properties (KEY=VALUE).
    #[arg(long = "kafka-option")]
    pub kafka_options: Vec<String>,
}

impl PublishArgs {
    /// Connects when `--publish` was given.
    pub fn connect(
        &self,
        cfg: &crate::config::Config,
        live: bool,
    ) -> Result<Option<Arc<Publisher>>, String> {
        let Some(u) = &self.publish else {
            return Ok(None);
        };
        let mut pc = PublishConfig::new(u.parse()?);
        pc.partitions = self.partitions.max(1);
        if let Some(n) = &self.producer_id {
            pc.name = n.clone();
        }
        pc.buffer_records = self.publish_buffer.max(1);
        pc.live = live;
        pc.options = super::parse_options(&self.kafka_options)?;
        Publisher::connect(&pc, cfg.home_net.clone()).map(Some)
    }
}

impl PublishSummary {
    pub fn render(&self) -> String {
        format!(
            "portent: bus: {} records published ({} bytes), {} delivered, {} failed, {} dropped, {} unflushed",
            self.published, self.bytes, self.delivered, self.failed, self.dropped, self.unflushed
        )
    }
}
