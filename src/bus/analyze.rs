//! `portent analyze`: the analytics tier. One consumer in a Kafka group; each partition
//! it owns gets its own merge ([`super::merge`]) and its own analytics engine, so a
//! host's state has one writer, as with the pipeline's workers.
//!
//! **Partition moves.** When the group gives this instance a partition, it rebuilds the
//! partition's state by reading it from the start of the retained log (so the topic's
//! retention must cover the longest analytic window, a day for cadence). Alerts raised
//! while reading below the offset the group had committed were already written by the
//! previous owner (it commits only after writing them): they are counted as
//! `replayed_suppressed`, not written again. Between the previous owner's last commit and
//! its death, alerts may be written twice: a duplicate has the same `analytic`, `src_ip`,
//! `dest_ip`, `dest_port` and `timestamp` as its twin (the rebuild is deterministic), and
//! a SIEM can drop it on that key. A partition this instance gives up and gets back with
//! nobody having committed past it in between resumes from where it stopped.
//!
//! **Positions.** A partition's records are processed in offset order with none skipped:
//! a fetch that does not bring the next offset (some brokers answer a fetch from inside
//! a record batch with the batch after it) is sought back until it does ([`Resync`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use super::merge::{MergeConfig, MergeStats, Merger, Released};
use super::record::{self, Body};
use super::BusUrl;
use crate::analytics::{Alert, Context, Engine};
use crate::config::Config;
use crate::enrichment::index::{EdrIndex, IndexConfig};
use crate::enrichment::reader::{self, Adapter, EdrStats};
use crate::enrichment::Attributor;
use crate::time::Dur;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {
    /// The records topic the capture tier publishes to: kafka://HOST:PORT/TOPIC.
    #[arg(long)]
    pub consume: String,
    /// Consumer group: the instances of one group share the topic's partitions.
    #[arg(long)]
    pub group: String,
    /// Alerts as JSON Lines (`-` for stdout).
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Also publish alerts (the same JSON lines, keyed by src_ip) to this topic on the
    /// same brokers.
    #[arg(long)]
    pub alerts_topic: Option<String>,
    /// Configuration file (TOML), as for replay.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// EDR feed files read before consuming (besides EDR lines the capture tier
    /// publishes); repeatable.
    #[arg(long)]
    pub edr: Vec<PathBuf>,
    /// Capture instances that write into the topic: a partition's records are held
    /// until this many have announced themselves.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Records a partition's merge holds at most (the reorder buffer).
    #[arg(long, default_value_t = 262_144)]
    pub reorder_records: usize,
    /// Exit once every owned partition has ended (all producers sent their end) and
    /// nothing arrived for this many seconds. Without it, run until SIGINT/SIGTERM.
    #[arg(long)]
    pub exit_idle: Option<f64>,
    /// At most this many records per second (caps this instance's CPU).
    #[arg(long)]
    pub max_rate: Option<u64>,
    /// Extra librdkafka consumer properties (KEY=VALUE), e.g. session.timeout.ms=6000.
    #[arg(long = "kafka-option")]
    pub kafka_options: Vec<String>,
    /// Serve Prometheus metrics on this address.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// The end-of-run summary as JSON.
    #[arg(long)]
    pub stats: Option<PathBuf>,
    /// No summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// End-of-run numbers of one analytics instance.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AnalyzeSummary {
    pub consumed: u64,
    pub bad_records: BTreeMap<&'static str, u64>,
    pub edr_lines: u64,
    /// EDR lines of feeds beyond the per-instance bound (not ingested).
    pub edr_refused: u64,
    pub alerts: u64,
    /// Alerts a rebuild raised again below the previous owner's commit (not written).
    pub replayed_suppressed: u64,
    pub assigned: u64,
    pub rebuilt: u64,
    pub resumed: u64,
    /// Times this instance left and rejoined the group to get a stranded partition
    /// assigned (see [`OrphanWatch`]).
    pub rejoins: u64,
    pub revoked: u64,
    /// Seeks back because a fetch from a partition's next offset did not bring that
    /// offset (see [`Resync`]).
    pub resyncs: u64,
    /// Offsets skipped because the log no longer has them (retention removed them while
    /// they waited), or never brought them back read from its start: records the
    /// analytics never saw.
    pub offsets_lost: u64,
    pub merge: MergeStats,
    pub elapsed_secs: f64,
}

/// One owned partition.
struct Part {
    merge: Merger,
    engine: Engine,
    /// The group's committed offset when this instance took the partition over: alerts
    /// raised below it were written by the previous owner.
    suppress_below: i64,
    /// Next offset to process.
    next: i64,
    /// `next` as last committed.
    committed: i64,
    /// Set while it is not yet known that fetching brings `next` itself.
    resync: Option<Resync>,
}

/// Getting a partition's reading back to `next` after a (re)assignment or a gap.
///
/// A fetch from an offset inside a record batch must return that batch (the client
/// drops its records below the offset). tansu 0.6.0 returns the batch after it instead,
/// or nothing at all when the offset is inside the newest batch. A committed offset is
/// rarely a batch start, so resuming from it would skip records (the partition's state
/// would then differ from the one its log defines) or stall. So until the next offset
/// shows up, positions go back in growing steps (256, 4096, ... records, then the log's
/// start); records below `next` are skipped unread, as after any fetch from before it.
#[derive(Clone, Copy, Debug)]
struct Resync {
    /// When the current position was asked for.
    since: Instant,
    /// How far below `next` that position is (0: `next` itself).
    back: i64,
    /// Times in a row the position was the log's start: a gap seen after
    /// [`MAX_STARTS`] of them is a hole in the log, not an answer from before a seek.
    starts: u32,
}

/// How long a position gets to bring `next` before reading goes further back.
const RESYNC_AFTER: Duration = Duration::from_secs(2);
/// Reads from the log's start that must all skip `next` before it is given up.
const MAX_STARTS: u32 = 3;

impl Resync {
    fn at(back: i64) -> Resync {
        Resync {
            since: Instant::now(),
            back,
            starts: 0,
        }
    }
}

#[derive(Debug)]
enum Change {
    Assigned {
        partition: i32,
        committed: i64,
        resume: bool,
    },
    Revoked(Vec<i32>),
}

/// Rebalance handling. Runs inside `poll`, on the consumer's (main) thread.
struct Group {
    topic: String,
    /// Next offset per owned partition, as processed (kept current by the main loop
    /// before each poll), committed on revocation.
    positions: Mutex<HashMap<i32, i64>>,
    /// What this instance committed when it last gave a partition up.
    parked: Mutex<HashMap<i32, i64>>,
    changes: Mutex<Vec<Change>>,
    /// Flushed before a revocation commit, so committed means written.
    alerts_out: Mutex<Option<AlertsOut>>,
}

impl ClientContext for Group {
    // librdkafka's own log (its `debug=` contexts included) to stderr: portent installs
    // no `log` backend, and a consumer that cannot reach its group must say so.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, msg: &str) {
        if (level as i32) <= (rdkafka::config::RDKafkaLogLevel::Warning as i32)
            || std::env::var_os("PORTENT_KAFKA_DEBUG").is_some()
        {
            eprintln!("portent analyze: kafka {level:?} {fac}: {msg}");
        }
    }
}

impl ConsumerContext for Group {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let committed = c
                    .committed_offsets(tpl.clone(), Duration::from_secs(10))
                    .ok();
                let parked = self.parked.lock().map(|p| p.clone()).unwrap_or_default();
                let mut assign = TopicPartitionList::new();
                let mut changes = Vec::new();
                for e in tpl.elements() {
                    let p = e.partition();
                    let c = committed
                        .as_ref()
                        .and_then(|t| t.find_partition(&self.topic, p))
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                        .unwrap_or(-1);
                    // Ours, and nobody committed past us since: carry on where we were.
                    let resume = parked.get(&p).is_some_and(|&mine| mine == c);
                    let from = if resume {
                        Offset::Offset(c)
                    } else {
                        Offset::Beginning
                    };
                    let _ = assign.add_partition_offset(&self.topic, p, from);
                    changes.push(Change::Assigned {
                        partition: p,
                        committed: c,
                        resume,
                    });
                }
                if let Err(e) = c.assign(&assign) {
                    eprintln!("portent analyze: cannot take the assigned partitions: {e}");
                }
                if let Ok(mut v) = self.changes.lock() {
                    v.extend(changes);
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Ok(mut out) = self.alerts_out.lock() {
                    if let Some(o) = out.as_mut() {
                        o.flush();
                    }
                }
                let pos = self.positions.lock().map(|p| p.clone()).unwrap_or_default();
                let mut commit = TopicPartitionList::new();
                let mut revoked = Vec::new();
                for e in tpl.elements() {
                    let p = e.partition();
                    revoked.push(p);
                    if let Some(&next) = pos.get(&p) {
                        let _ = commit.add_partition_offset(&self.topic, p, Offset::Offset(next));
                    }
                }
                let ok = commit.count() == 0 || c.commit(&commit, CommitMode::Sync).is_ok();
                if let Ok(mut parked) = self.parked.lock() {
                    for p in &revoked {
                        match (ok, pos.get(p)) {
                            (true, Some(&next)) => {
                                parked.insert(*p, next);
                            }
                            _ => {
                                parked.remove(p);
                            }
                        }
                    }
                }
                let _ = c.unassign();
                if let Ok(mut v) = self.changes.lock() {
                    v.push(Change::Revoked(revoked));
                }
            }
            other => eprintln!("portent analyze: rebalance error: {other:?}"),
        }
    }
}

/// Where alerts go: a file (or stdout) and/or a Kafka topic.
struct AlertsOut {
    file: Option<Box<dyn Write + Send>>,
    path: String,
    kafka: Option<(ThreadedProducer<DefaultProducerContext>, String)>,
    dirty: bool,
    failed: bool,
    /// Alerts the alerts topic did not take (the file still has them).
    topic_dropped: u64,
}

impl AlertsOut {
    fn write(&mut self, line: &[u8], src: &str) {
        if let Some(f) = self.file.as_mut() {
            if f.write_all(line).is_err() && !self.failed {
                self.failed = true;
                eprintln!("portent analyze: {}: cannot write alerts", self.path);
            }
        }
        if let Some((p, topic)) = &self.kafka {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let mut rec = BaseRecord::to(topic.as_str()).key(src).payload(body);
            // Alerts are rare; wait for room (up to 10 s) rather than lose one.
            let mut sent = false;
            for _ in 0..10_000 {
                match p.send(rec) {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err((_, back)) => {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            if !sent {
                self.topic_dropped += 1;
                metrics::counter!("portent_bus_alerts_topic_dropped_total").increment(1);
                if self.topic_dropped == 1 {
                    eprintln!("portent analyze: {topic}: broker not taking alerts; counting drops");
                }
            }
        }
        self.dirty = true;
    }

    fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
        if let Some((p, _)) = &self.kafka {
            let _ = p.flush(Duration::from_secs(10));
        }
        self.dirty = false;
    }
}

/// EDR lines reach every partition; each line is ingested once per instance.
struct EdrIngest {
    index: Arc<EdrIndex>,
    adapters: HashMap<(u64, u64, u16), (Adapter, u64)>,
    stats: EdrStats,
    /// Lines of feeds beyond [`MAX_EDR_FEEDS`] (not ingested).
    refused: u64,
}

/// EDR feeds (producer instance, epoch, feed) one analytics instance follows.
const MAX_EDR_FEEDS: usize = 1024;

impl EdrIngest {
    fn line(
        &mut self,
        key: (u64, u64, u16),
        format: reader::Format,
        line_no: u64,
        line: &str,
    ) -> bool {
        if !self.adapters.contains_key(&key) && self.adapters.len() >= MAX_EDR_FEEDS {
            self.refused += 1;
            return false;
        }
        let (adapter, seen) = self
            .adapters
            .entry(key)
            .or_insert_with(|| (Adapter::new(format), 0));
        if line_no <= *seen {
            return false;
        }
        if adapter.format() != Some(format) {
            // A followed feed rotated to a file in another format.
            *adapter = Adapter::new(format);
        }
        *seen = line_no;
        reader::ingest_line(adapter, line_no, line, &self.index, &mut self.stats);
        true
    }
}

pub fn run_analyze(a: &AnalyzeArgs) -> Result<AnalyzeSummary, String> {
    let started = Instant::now();
    let url: BusUrl = a.consume.parse()?;
    let opts = super::parse_options(&a.kafka_options)?;
    let cfg = match &a.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    crate::analytics::validate_config(&cfg).map_err(|e| e.to_string())?;
    if let Some(addr) = a.metrics {
        crate::telemetry::install(addr)?;
    }
    let (stop, _reopen) = crate::signals::install();

    let index = Arc::new(EdrIndex::new(IndexConfig {
        max_age: None,
        ..IndexConfig::default()
    }));
    let mut edr = EdrIngest {
        index: index.clone(),
        adapters: HashMap::new(),
        stats: EdrStats::default(),
        refused: 0,
    };
    for p in &a.edr {
        reader::load_path(p, &index, &mut edr.stats).map_err(|e| e.to_string())?;
    }
    let local_edr = !a.edr.is_empty();

    let file: Option<Box<dyn Write + Send>> = match &a.alerts {
        Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
        Some(p) => Some(Box::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("{}: {e}", p.display()))?,
        ))),
        None => None,
    };
    let kafka = match &a.alerts_topic {
        Some(t) => {
            super::ensure_topic(&url.brokers, &opts, t, 1, Duration::from_secs(10))?;
            let p: ThreadedProducer<DefaultProducerContext> =
                super::client_config(&url.brokers, &opts)
                    .create()
                    .map_err(|e| format!("kafka://{}: {e}", url.brokers))?;
            Some((p, t.clone()))
        }
        None => None,
    };
    let group = Group {
        topic: url.topic.clone(),
        positions: Mutex::new(HashMap::new()),
        parked: Mutex::new(HashMap::new()),
        changes: Mutex::new(Vec::new()),
        alerts_out: Mutex::new(Some(AlertsOut {
            file,
            path: a
                .alerts
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            kafka,
            dirty: false,
            failed: false,
            topic_dropped: 0,
        })),
    };
    let mut cc = super::client_config(&url.brokers, &[]);
    cc.set("group.id", &a.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // Keeps the cached log start current (see `cached_watermarks`).
        .set("statistics.interval.ms", "5000");
    for (k, v) in &opts {
        cc.set(k, v);
    }
    let consumer: BaseConsumer<Group> = cc
        .create_with_context(group)
        .map_err(|e| format!("kafka://{}: {e}", url.brokers))?;
    // Wait for the topic, so a consumer started before its producers does not fail.
    let n_partitions =
        super::partition_count(consumer.client(), &url.topic, Duration::from_secs(30))?;
    consumer
        .subscribe(&[&url.topic])
        .map_err(|e| format!("{}: {e}", url.topic))?;
    let session_ms = opts
        .iter()
        .find(|(k, _)| k == "session.timeout.ms")
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(45_000);
    let watch = OrphanWatch::start(
        &url,
        &a.group,
        &opts,
        n_partitions,
        Duration::from_millis(session_ms.saturating_mul(2)),
    )?;

    let factory = crate::analytics::detectors_with_state(None);
    let merge_cfg = MergeConfig {
        expected_instances: a.producers.max(1),
        max_buffered: a.reorder_records.max(1),
        tick: Dur::from_secs(1),
    };
    let new_part = |suppress_below: i64, with_edr: bool| -> Part {
        let attributor: Option<Arc<dyn Attributor>> =
            if with_edr { Some(index.clone()) } else { None };
        let ctx = Context {
            home_net: cfg.home_net.clone(),
            attributor,
        };
        Part {
            merge: Merger::new(merge_cfg.clone()),
            engine: Engine::new(ctx, factory(&cfg), cfg.alerts.window),
            suppress_below,
            next: 0,
            committed: -1,
            resync: None,
        }
    };

    let mut s = AnalyzeSummary::default();
    let mut parts: BTreeMap<i32, Part> = BTreeMap::new();
    let mut parked: BTreeMap<i32, Part> = BTreeMap::new();
    let mut alerts: Vec<Alert> = Vec::new();
    let mut line = Vec::with_capacity(1024);
    let mut last_msg = Instant::now();
    let mut last_commit = Instant::now();
    let mut last_lag = Instant::now();
    let mut rate_window = (Instant::now(), 0u64);
    let mut merged_stats: BTreeMap<i32, MergeStats> = BTreeMap::new();

    let debug = std::env::var_os("PORTENT_KAFKA_DEBUG").is_some();
    let topic_c = std::ffi::CString::new(url.topic.as_str())
        .map_err(|_| format!("{}: a topic name has no NUL byte", url.topic))?;
    loop {
        if stop.load(AtomicOrdering::Relaxed) {
            break;
        }
        // Keep the rebalance callback's and the watch's view of our positions current.
        if let Ok(mut pos) = consumer.context().positions.lock() {
            pos.clear();
            for (p, st) in &parts {
                pos.insert(*p, st.next);
            }
        }
        if let Ok(mut owned) = watch.owned.lock() {
            owned.clear();
            owned.extend(parts.keys().copied());
        }
        if let Some(p) = watch.take_stranded() {
            eprintln!(
                "portent analyze: partition {p}: records wait and no member has committed for \
                 {:.0} s; leaving and rejoining the group so it is assigned again",
                watch.after.as_secs_f64()
            );
            s.rejoins += 1;
            consumer.unsubscribe();
            consumer
                .subscribe(&[&url.topic])
                .map_err(|e| format!("{}: {e}", url.topic))?;
        }
        let msg = consumer.poll(Duration::from_millis(100));
        let changes: Vec<Change> = consumer
            .context()
            .changes
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        for ch in changes {
            if !a.quiet {
                eprintln!("portent analyze: {ch:?}");
            }
            match ch {
                Change::Revoked(ps) => {
                    for p in ps {
                        if let Some(st) = parts.remove(&p) {
                            s.revoked += 1;
                            parked.insert(p, st);
                        }
                    }
                }
                Change::Assigned {
                    partition,
                    committed,
                    resume,
                } => {
                    s.assigned += 1;
                    let st = match (resume, parked.remove(&partition)) {
                        (true, Some(mut st)) => {
                            s.resumed += 1;
                            // Assigned from `next`, which may be inside a batch.
                            st.resync = (st.next > 0).then(|| Resync::at(0));
                            st
                        }
                        _ => {
                            s.rebuilt += 1;
                            new_part(committed, local_edr)
                        }
                    };
                    parts.insert(partition, st);
                }
            }
        }
        match msg {
            None => {}
            // End of partition is not an error here; broker errors are retried.
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => {
                eprintln!("portent analyze: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(Ok(m)) => {
                last_msg = Instant::now();
                s.consumed += 1;
                let pnum = m.partition();
                let offset = m.offset();
                let Some(st) = parts.get_mut(&pnum) else {
                    continue;
                };
                if offset < st.next {
                    // Seen already (a fetch restarted from an older offset). While a
                    // resync reads up to `next`, this is progress: no further step back.
                    if let Some(r) = st.resync.as_mut() {
                        r.since = Instant::now();
                    }
                    continue;
                }
                if offset > st.next {
                    match st.resync {
                        // Wait for the last position's answer (this may predate it).
                        Some(r) if r.back > 0 && r.since.elapsed() < RESYNC_AFTER => continue,
                        Some(r) if r.starts >= MAX_STARTS => {
                            // Read from the log's start again and again, and still a gap:
                            // the log lacks these offsets. Go on, and say what was lost.
                            eprintln!(
                                "portent analyze: partition {pnum}: offsets {}..{offset} are \
                                 missing from the log; going on without them",
                                st.next
                            );
                            s.offsets_lost += (offset - st.next) as u64;
                        }
                        _ => {
                            step_back(&consumer, &url.topic, &topic_c, pnum, st, &mut s);
                            continue;
                        }
                    }
                }
                st.resync = None;
                st.next = offset + 1;
                let rec = match record::decode(m.payload().unwrap_or(&[])) {
                    Ok(r) => r,
                    Err(e) => {
                        *s.bad_records.entry(e.kind()).or_default() += 1;
                        continue;
                    }
                };
                if let Body::EdrLine {
                    feed,
                    line_no,
                    format,
                    line: text,
                } = &rec.body
                {
                    let p = rec.env.producer;
                    if edr.line((p.instance, p.epoch, *feed), *format, *line_no, text) {
                        s.edr_lines += 1;
                    }
                    if st.engine.ctx.attributor.is_none() {
                        st.engine.ctx.attributor = Some(index.clone());
                    }
                    continue;
                }
                let Part { merge, engine, .. } = st;
                merge.push(rec, &mut |rel| match rel {
                    Released::Record(r) => match &r.body {
                        Body::Flow(ev) => engine.on_flow(ev, &mut alerts),
                        Body::Dns(ans) => engine.on_dns(ans, &mut alerts),
                        _ => {}
                    },
                    Released::Tick(t) => engine.on_tick(t, &mut alerts),
                });
                if !alerts.is_empty() {
                    let suppress = offset < st.suppress_below;
                    let mut out = consumer.context().alerts_out.lock().ok();
                    for al in alerts.drain(..) {
                        if suppress {
                            s.replayed_suppressed += 1;
                            if debug {
                                eprintln!(
                                    "portent analyze: suppressed p{pnum}@{offset} {} {} {} {}",
                                    al.analytic.name(),
                                    al.src,
                                    al.dst,
                                    al.dst_port
                                );
                            }
                            continue;
                        }
                        s.alerts += 1;
                        metrics::counter!("portent_alerts_total", "analytic" => al.analytic.name())
                            .increment(1);
                        line.clear();
                        crate::output::render_alert(&mut line, &al);
                        if let Some(Some(o)) = out.as_deref_mut() {
                            o.write(&line, &al.src.to_string());
                        }
                    }
                }
                if let Some(rate) = a.max_rate.filter(|r| *r > 0) {
                    rate_window.1 += 1;
                    if rate_window.1 >= rate.div_ceil(20) {
                        let want = Duration::from_secs_f64(rate_window.1 as f64 / rate as f64);
                        let el = rate_window.0.elapsed();
                        if el < want {
                            std::thread::sleep(want - el);
                        }
                        rate_window = (Instant::now(), 0);
                    }
                }
            }
        }
        if last_commit.elapsed() >= Duration::from_millis(500) {
            for (p, st) in parts.iter_mut() {
                // Nothing came at all (a fetch from inside the newest batch). While
                // other records arrive, a gap record of this partition will tell.
                if st.resync.is_some_and(|r| r.since.elapsed() >= RESYNC_AFTER)
                    && last_msg.elapsed() >= RESYNC_AFTER
                {
                    step_back(&consumer, &url.topic, &topic_c, *p, st, &mut s);
                }
            }
            last_commit = Instant::now();
            commit(&consumer, &url.topic, &mut parts, CommitMode::Async);
            publish_metrics(&s, &parts, &edr.stats);
        }
        if last_lag.elapsed() >= Duration::from_secs(5) {
            last_lag = Instant::now();
            if debug {
                for (p, st) in &parts {
                    eprintln!(
                        "portent analyze: debug: partition {p}: log {:?} next {} committed {} \
                         ended {} resync {:?}; others waiting {}; idle {:.0} s",
                        cached_watermarks(&consumer, &topic_c, *p),
                        st.next,
                        st.committed,
                        st.merge.finished(),
                        st.resync.map(|r| (r.back, r.starts)),
                        watch.others_waiting(),
                        last_msg.elapsed().as_secs_f64()
                    );
                }
            }
            for (p, st) in &parts {
                if let Some(high) = cached_watermarks(&consumer, topic_c.as_c_str(), *p).1 {
                    metrics::gauge!("portent_bus_lag_records", "partition" => p.to_string())
                        .set((high - st.next).max(0) as f64);
                }
            }
        }
        if let Some(idle) = a.exit_idle {
            // Done: our partitions ended and no other partition has records waiting.
            let done = parts.values().all(|p| p.merge.finished()) && !watch.others_waiting();
            if done && last_msg.elapsed().as_secs_f64() >= idle {
                break;
            }
        }
    }
    for st in parts.values_mut() {
        st.engine.on_finish();
    }
    commit(&consumer, &url.topic, &mut parts, CommitMode::Sync);
    if let Ok(mut out) = consumer.context().alerts_out.lock() {
        if let Some(o) = out.as_mut() {
            o.flush();
        }
    }
    for (p, st) in parts.iter().chain(parked.iter()) {
        merged_stats.insert(*p, st.merge.stats);
    }
    for m in merged_stats.values() {
        s.merge.released += m.released;
        s.merge.late += m.late;
        s.merge.forced += m.forced;
        s.merge.superseded += m.superseded;
        s.merge.unregistered += m.unregistered;
        s.merge.buffered_peak = s.merge.buffered_peak.max(m.buffered_peak);
    }
    s.edr_refused = edr.refused;
    publish_metrics(&s, &parts, &edr.stats);
    s.elapsed_secs = started.elapsed().as_secs_f64();
    drop(consumer);
    Ok(s)
}

/// Finds partitions nobody works on: records wait (high watermark above the group's
/// committed offset) and the committed offset has not moved for `after`, while this
/// instance does not own them (a live owner commits every half second while it reads).
/// Seen with tansu 0.6.0: a member that dies without leaving is dropped at its session
/// timeout, but the broker keeps naming it the group's leader, so the survivors are
/// handed their previous assignment again and its partitions stay unassigned. Leaving
/// and rejoining makes this instance a new member, and the group is formed anew.
///
/// Runs on its own thread with its own client (not a group member: broker round trips
/// must not hold up the consumer loop).
struct OrphanWatch {
    owned: Arc<Mutex<Vec<i32>>>,
    stranded: Arc<std::sync::atomic::AtomicI32>,
    waiting: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    after: Duration,
}

impl OrphanWatch {
    fn start(
        url: &BusUrl,
        group: &str,
        opts: &[(String, String)],
        partitions: u32,
        after: Duration,
    ) -> Result<OrphanWatch, String> {
        let mut cc = super::client_config(&url.brokers, opts);
        cc.set("group.id", group).set("enable.auto.commit", "false");
        let client: BaseConsumer = cc
            .create()
            .map_err(|e| format!("kafka://{}: {e}", url.brokers))?;
        let w = OrphanWatch {
            owned: Arc::new(Mutex::new(Vec::new())),
            stranded: Arc::new(std::sync::atomic::AtomicI32::new(-1)),
            waiting: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            stop: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            after,
        };
        let (owned, stranded, waiting, stop) = (
            w.owned.clone(),
            w.stranded.clone(),
            w.waiting.clone(),
            w.stop.clone(),
        );
        let topic = url.topic.clone();
        std::thread::Builder::new()
            .name("portent-orphans".into())
            .spawn(move || {
                let mut seen: HashMap<i32, (i64, Instant)> = HashMap::new();
                while !stop.load(AtomicOrdering::Relaxed) {
                    std::thread::sleep(Duration::from_secs(1));
                    let mut tpl = TopicPartitionList::new();
                    for p in 0..partitions as i32 {
                        tpl.add_partition(&topic, p);
                    }
                    let Ok(committed) = client.committed_offsets(tpl, Duration::from_secs(5))
                    else {
                        // Unknown is not "nothing waits": an exit must wait for a real answer.
                        waiting.store(true, AtomicOrdering::Relaxed);
                        continue;
                    };
                    let mine = owned.lock().map(|o| o.clone()).unwrap_or_default();
                    let mut any_waiting = false;
                    for e in committed.elements() {
                        let p = e.partition();
                        let off = match e.offset() {
                            Offset::Offset(o) => o,
                            _ => 0,
                        };
                        let Ok((_, high)) =
                            client.fetch_watermarks(&topic, p, Duration::from_secs(5))
                        else {
                            any_waiting = true;
                            continue;
                        };
                        if mine.contains(&p) || high <= off {
                            seen.remove(&p);
                            continue;
                        }
                        any_waiting = true;
                        let s = seen.entry(p).or_insert((off, Instant::now()));
                        if s.0 != off {
                            *s = (off, Instant::now());
                        } else if s.1.elapsed() >= after {
                            stranded.store(p, AtomicOrdering::Relaxed);
                            seen.clear();
                        }
                    }
                    waiting.store(any_waiting, AtomicOrdering::Relaxed);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(w)
    }

    fn take_stranded(&self) -> Option<i32> {
        let p = self.stranded.swap(-1, AtomicOrdering::Relaxed);
        (p >= 0).then_some(p)
    }

    fn others_waiting(&self) -> bool {
        self.waiting.load(AtomicOrdering::Relaxed)
    }
}

impl Drop for OrphanWatch {
    fn drop(&mut self) {
        self.stop.store(true, AtomicOrdering::Relaxed);
    }
}

/// The partition's log start and end as the consumer last learnt them (the end from
/// every fetch answer, the start from statistics), without asking the broker. A query
/// from this loop would share the fetcher's connection, and librdkafka drops the
/// connection, with the fetch in flight, when a query outlives its timeout: on a slow
/// broker (tansu answers behind a fetch's long poll) that starved the consumer.
fn cached_watermarks(
    consumer: &BaseConsumer<Group>,
    topic: &std::ffi::CStr,
    p: i32,
) -> (Option<i64>, Option<i64>) {
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the handle lives as long as `consumer`; `topic` is NUL-terminated; the
    // call only reads librdkafka's cached offsets into the two locals.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            p,
            &mut low,
            &mut high,
        )
    };
    if err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return (None, None);
    }
    ((low >= 0).then_some(low), (high >= 0).then_some(high))
}

/// Moves a partition's reading further back (see [`Resync`]), or ends the resync when
/// the log holds nothing at `next` yet (its next batch will start there).
fn step_back(
    consumer: &BaseConsumer<Group>,
    topic: &str,
    topic_c: &std::ffi::CStr,
    p: i32,
    st: &mut Part,
    s: &mut AnalyzeSummary,
) {
    let prev = st.resync.unwrap_or(Resync::at(0));
    let (low, high) = cached_watermarks(consumer, topic_c, p);
    if high.is_some_and(|h| st.next >= h) {
        st.resync = None;
        return;
    }
    // Unknown until the consumer's fetcher has seen it: a seek below the real start is
    // answered from the start (auto.offset.reset), and a gap there counts as lost.
    let low = low.unwrap_or(0);
    if st.next < low {
        // Retention moved the log's start on. A rebuild (from 0) expects that; records
        // this instance had yet to read are lost.
        if st.next > 0 {
            eprintln!(
                "portent analyze: partition {p}: offsets {}..{low} are gone from the log",
                st.next
            );
            s.offsets_lost += (low - st.next) as u64;
        }
        st.next = low;
    }
    let back = if prev.back == 0 {
        256
    } else {
        prev.back.saturating_mul(16)
    };
    let to = st.next.saturating_sub(back).max(low);
    st.resync = Some(Resync {
        since: Instant::now(),
        back,
        starts: if to == low {
            prev.starts.saturating_add(1)
        } else {
            0
        },
    });
    s.resyncs += 1;
    if let Err(e) = consumer.seek(topic, p, Offset::Offset(to), Duration::from_secs(1)) {
        eprintln!("portent analyze: partition {p}: seek to {to}: {e}");
    }
}

/// Commits each owned partition's position (after the alerts it produced were flushed).
fn commit(
    consumer: &BaseConsumer<Group>,
    topic: &str,
    parts: &mut BTreeMap<i32, Part>,
    mode: CommitMode,
) {
    let mut tpl = TopicPartitionList::new();
    for (p, st) in parts.iter() {
        if st.next > st.committed && st.next > 0 {
            let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(st.next));
        }
    }
    if tpl.count() == 0 {
        return;
    }
    if let Ok(mut out) = consumer.context().alerts_out.lock() {
        if let Some(o) = out.as_mut() {
            o.flush();
        }
    }
    let r: KafkaResult<()> = consumer.commit(&tpl, mode);
    if r.is_ok() {
        for st in parts.values_mut() {
            st.committed = st.next;
        }
    }
}

fn publish_metrics(s: &AnalyzeSummary, parts: &BTreeMap<i32, Part>, edr: &EdrStats) {
    metrics::counter!("portent_bus_consumed_total").absolute(s.consumed);
    metrics::counter!("portent_bus_bad_records_total").absolute(s.bad_records.values().sum());
    metrics::counter!("portent_bus_replayed_suppressed_total").absolute(s.replayed_suppressed);
    metrics::counter!("portent_bus_resyncs_total").absolute(s.resyncs);
    metrics::counter!("portent_bus_offsets_lost_total").absolute(s.offsets_lost);
    metrics::gauge!("portent_bus_owned_partitions").set(parts.len() as f64);
    let (mut late, mut forced, mut buffered) = (0, 0, 0);
    for st in parts.values() {
        late += st.merge.stats.late;
        forced += st.merge.stats.forced;
        buffered += st.merge.buffered();
    }
    metrics::gauge!("portent_bus_reorder_buffered_records").set(buffered as f64);
    metrics::gauge!("portent_bus_late_records").set(late as f64);
    metrics::gauge!("portent_bus_forced_records").set(forced as f64);
    edr.publish();
}

impl AnalyzeSummary {
    pub fn render(&self) -> String {
        format!(
            "portent analyze: {} records consumed ({} bad), {} EDR lines, {} alerts \
             ({} re-raised by rebuilds, not written); partitions: {} assigned, {} rebuilt, \
             {} resumed, {} revoked, {} rejoins, {} resyncs, {} offsets lost; merge: {} late, {} forced, peak {} buffered; {:.1} s\n",
            self.consumed,
            self.bad_records.values().sum::<u64>(),
            self.edr_lines,
            self.alerts,
            self.replayed_suppressed,
            self.assigned,
            self.rebuilt,
            self.resumed,
            self.revoked,
            self.rejoins,
            self.resyncs,
            self.offsets_lost,
            self.merge.late,
            self.merge.forced,
            self.merge.buffered_peak,
            self.elapsed_secs
        )
    }
}
