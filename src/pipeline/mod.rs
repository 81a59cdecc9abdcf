//! Pipeline: the threads that connect the stages. One code path for replay and live
//! capture; only the [`PacketSource`] (and so the clock) differs.
//!
//! ```text
//!  capture thread ──batches──▶ worker 0..N ──rendered records──▶ writer thread
//!  (read, decode,             (flow shard, DNS,                 (k-way merge by
//!   route by internal host)    analytics, enrichment)            order key, files)
//! ```
//!
//! * Each internal host is hashed to one worker, which owns that host's flows and
//!   analytics state: per-host state has a single writer and needs no lock.
//! * Every batch goes to every worker (possibly empty) with the packet clock, so all
//!   workers expire flows at the same packet-time points whatever the thread count.
//! * Records carry an [`OrderKey`]; the writer merges the workers' streams by it, so the
//!   output order does not depend on the number of workers or on scheduling.
//! * A replay with one worker (the default) runs it on the capture thread, batch by
//!   batch, and the worker writes its records itself: same batches, same order, same
//!   bytes, and no batch or rendered line ever changes cores. Live capture always has
//!   worker and writer threads.

pub mod replay;
mod route;
mod worker;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TrySendError};

use crate::analytics::Detector;
use crate::capture::pcapfile::CaptureError;
use crate::capture::RawPacket;
use crate::config::Config;
use crate::decode::{dns::dns_kind, DecodeError, Decoder, Packet, PROTO_TCP, PROTO_UDP};
use crate::enrichment::Attributor;
use crate::time::Ts;

pub use route::{host_hash, name_hash, route_host, route_host_of};
pub use writer::OrderKey;

/// What a packet source yields.
pub enum SourceEvent<'a> {
    Packet(RawPacket<'a>),
    /// No packet for a while (live capture): packet time may advance to this clock.
    Idle(Ts),
    End,
}

/// A source of frames: pcap files, libpcap, AF_XDP.
pub trait PacketSource {
    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError>;
    /// (bytes consumed, bytes total) for a progress display, when known.
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }
    /// Whether a full worker queue should drop (live) rather than wait (replay).
    fn is_live(&self) -> bool {
        false
    }
}

/// Where records go.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    pub alerts: Option<PathBuf>,
    pub flows: Option<PathBuf>,
    pub dns: Option<PathBuf>,
}

/// Builds the detectors of one worker (each worker has its own instances).
pub type DetectorFactory = Arc<dyn Fn(&Config) -> Vec<Box<dyn Detector>> + Send + Sync>;

/// No analytics (a capture tier that publishes: the analytics tier runs them).
pub fn no_detectors() -> DetectorFactory {
    Arc::new(|_: &Config| Vec::new())
}

pub struct RunOptions {
    pub config: Config,
    pub outputs: Outputs,
    pub attributor: Option<Arc<dyn Attributor>>,
    /// Live only: how long an alert may wait for the EDR feed to name its process.
    pub attribution_wait: Option<Duration>,
    pub detectors: DetectorFactory,
    /// Set by a signal handler: stop reading, flush everything, exit.
    pub stop: Arc<AtomicBool>,
    /// Set by SIGHUP: reopen output files.
    pub reopen: Arc<AtomicBool>,
    /// Print a progress line on stderr (when it is a terminal and the run is long).
    pub progress: bool,
    /// Capture tier: publish flow events and DNS answers to Kafka (see [`crate::bus`]).
    pub publish: Option<Arc<crate::bus::publish::Publisher>>,
    /// The process exits right after [`run`] returns: workers leave their flow tables and
    /// detector state to the exit instead of freeing them allocation by allocation (a
    /// replay's 82 k flows and their analytics state took ~2 % of its CPU to free).
    /// Library callers that run the pipeline again keep the default, `false`.
    pub exit_after: bool,
}

/// End-of-run numbers.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunSummary {
    pub packets: u64,
    pub bytes: u64,
    /// Packets of protocols other than TCP/UDP (decoded, not tracked as flows).
    pub other_proto: u64,
    pub flows: u64,
    pub dns_answers: u64,
    pub alerts: u64,
    pub decode_errors: BTreeMap<&'static str, u64>,
    pub dns_errors: BTreeMap<&'static str, u64>,
    pub anomalies: crate::decode::DecodeAnomalies,
    pub flow_stats: crate::flow::table::FlowStats,
    /// Batches dropped because a worker queue was full (live only).
    pub dropped_batches: u64,
    pub dropped_packets: u64,
    pub elapsed_secs: f64,
    pub first_ts: Option<Ts>,
    pub last_ts: Option<Ts>,
}

impl RunSummary {
    pub fn packets_per_sec(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.packets as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }
}

#[derive(Debug)]
pub enum PipelineError {
    Capture(CaptureError),
    Output(PathBuf, std::io::Error),
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineError::Capture(e) => write!(f, "{e}"),
            PipelineError::Output(p, e) => write!(f, "{}: cannot write: {e}", p.display()),
        }
    }
}

impl std::error::Error for PipelineError {}

/// One decoded packet in a batch, with the global sequence number that orders output,
/// and where its DNS payload bytes (if any) sit in the batch arena.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchPacket {
    pub pkt: Packet,
    pub seq: u64,
    pub pay_off: u32,
    pub pay_len: u32,
}

/// A batch for one worker.
pub(crate) struct InBatch {
    pub pkts: Vec<BatchPacket>,
    pub arena: Vec<u8>,
    /// Packet time after this batch (the newest timestamp read so far).
    pub clock: Ts,
    /// Sequence number of the last packet read before this batch was sent.
    pub seq_end: u64,
    pub finish: bool,
    /// When the capture thread handed the batch over (queue latency telemetry).
    pub sent_at: Option<Instant>,
}

impl InBatch {
    fn new(cap: usize) -> InBatch {
        InBatch {
            pkts: Vec::with_capacity(cap),
            arena: Vec::new(),
            clock: Ts::ZERO,
            seq_end: 0,
            finish: false,
            sent_at: None,
        }
    }
}

/// Batches per worker kept in rotation beyond those in flight (see `run`).
const SPARE_BATCHES: usize = 4;

/// DNS payloads larger than this are not carried to workers (a DNS message is at most
/// 65535 bytes; over UDP far less).
const MAX_CARRIED_PAYLOAD: usize = 65_535;

/// Runs the pipeline until the source ends or `stop` is set.
///
/// Generic over the source so that a replay's record reads inline into the loop (through
/// `dyn`, every packet came back through a stack slot read at once after the call).
pub fn run<S: PacketSource + ?Sized>(
    source: &mut S,
    opts: RunOptions,
) -> Result<RunSummary, PipelineError> {
    let started = Instant::now();
    let cfg = &opts.config;
    let n = cfg.pipeline.workers.max(1);
    let per_worker_cap = cfg.flow.max_flows.div_ceil(n);

    let live = source.is_live();
    let writer = writer::Writer::open(&opts.outputs, n)?;
    let mut in_txs: Vec<Sender<InBatch>> = Vec::with_capacity(n);
    let mut recycle_rxs: Vec<Receiver<InBatch>> = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    let mut out_rxs = Vec::with_capacity(n);
    let mut out_recycle_txs = Vec::with_capacity(n);
    let new_worker = |id: usize| {
        worker::Worker::new(
            id,
            cfg,
            per_worker_cap,
            opts.attributor.clone(),
            (opts.detectors)(cfg),
            opts.attribution_wait,
            opts.publish.as_ref().map(|p| p.sink(id, n)),
        )
        .exit_after(opts.exit_after)
    };
    // Replay into one worker: this thread runs it, batch by batch, and the worker
    // writes its own records (see `worker::Output`). A second thread would only move
    // every batch and every rendered line to another core's cache: measured, 5-12 %
    // more CPU (README, Performance). Live capture keeps worker and writer threads, so
    // a slow analysis or disk never holds up the capture; several workers run in
    // parallel and the writer merges their streams.
    let mut local: Option<(worker::Worker, worker::Output)> = None;
    let mut writer = Some(writer);
    if n == 1 && !live && !writer.as_ref().is_some_and(|w| w.shared()) {
        let output = worker::Output::Inline {
            writer: Box::new(writer.take().expect("writer")),
            reopen: opts.reopen.clone(),
            spare: None,
            result: Ok(()),
        };
        local = Some((new_worker(0), output));
    }
    for id in (0..n).filter(|_| local.is_none()) {
        let (tx, rx) = bounded::<InBatch>(cfg.pipeline.queue_batches);
        let (rtx, rrx) = unbounded::<InBatch>();
        // Spare batches in the recycle queue (taken oldest first): a batch is refilled
        // only after the worker has read several others, by which time its lines have
        // left the worker's cache and the capture core takes them from memory, not
        // from the other core (measured: see README, Performance).
        for _ in 0..SPARE_BATCHES {
            let _ = rtx.send(InBatch::new(cfg.pipeline.batch_packets.max(1)));
        }
        in_txs.push(tx);
        recycle_rxs.push(rrx);
        let (otx, orx) = bounded::<writer::OutBatch>(cfg.pipeline.queue_batches * 2);
        let (ortx, orrx) = bounded::<writer::OutBatch>(cfg.pipeline.queue_batches * 2);
        out_recycle_txs.push(ortx);
        out_rxs.push(orx);
        let output = worker::Output::Thread {
            tx: otx,
            recycle: orrx,
        };
        let w = new_worker(id);
        handles.push(
            std::thread::Builder::new()
                .name(format!("portent-worker-{id}"))
                .spawn(move || w.run(rx, rtx, output))
                .expect("spawning a worker thread"),
        );
    }
    let reopen = opts.reopen.clone();
    let writer_handle = writer.map(|mut writer| {
        std::thread::Builder::new()
            .name("portent-writer".into())
            .spawn(move || {
                let r = writer.run(out_rxs, out_recycle_txs, &reopen);
                (writer, r)
            })
            .expect("spawning the writer thread")
    });

    let mut summary = RunSummary::default();
    let mut decoder = Decoder::new(cfg.frag_limits());
    // With several workers a packet is decoded here, then copied into the batch of the
    // worker its host hashes to; with one, straight into that batch's next slot.
    let mut p = Packet::UNSET;
    let one = n == 1;
    let batch_packets = cfg.pipeline.batch_packets.max(1);
    let mut batches: Vec<InBatch> = (0..n).map(|_| InBatch::new(batch_packets)).collect();
    let mut in_batch = 0usize;
    let mut seq: u64 = 0;
    let mut clock = Ts::ZERO;
    let mut progress = Progress::new(opts.progress);
    let mut last_frag_expire = Ts::ZERO;
    let home = cfg.home_net.clone();
    let mut telemetry = crate::telemetry::CapturePublisher::new();

    let send_all = |batches: &mut Vec<InBatch>,
                    local: &mut Option<(worker::Worker, worker::Output)>,
                    clock: Ts,
                    seq_end: u64,
                    finish: bool,
                    summary: &mut RunSummary|
     -> bool {
        let mut alive = true;
        let now = Instant::now();
        for (w, b) in batches.iter_mut().enumerate() {
            if let Some((worker, out)) = local.as_mut() {
                b.clock = clock;
                b.seq_end = seq_end;
                b.finish = finish;
                alive &= worker.step(b, out);
                b.pkts.clear();
                b.arena.clear();
                continue;
            }
            let fresh = recycle_rxs[w]
                .try_recv()
                .unwrap_or_else(|_| InBatch::new(batch_packets));
            let mut full = std::mem::replace(b, fresh);
            full.clock = clock;
            full.seq_end = seq_end;
            full.finish = finish;
            full.sent_at = Some(now);
            if live && !finish {
                match in_txs[w].try_send(full) {
                    Ok(()) => {}
                    Err(TrySendError::Full(mut lost)) => {
                        summary.dropped_batches += 1;
                        summary.dropped_packets += lost.pkts.len() as u64;
                        lost.pkts.clear();
                        lost.arena.clear();
                        // An empty batch still carries the clock; wait for room.
                        alive &= in_txs[w].send(lost).is_ok();
                    }
                    Err(TrySendError::Disconnected(_)) => alive = false,
                }
            } else {
                alive &= in_txs[w].send(full).is_ok();
            }
        }
        alive
    };

    loop {
        if opts.stop.load(Ordering::Relaxed) {
            break;
        }
        let ev = source.next_event().map_err(PipelineError::Capture)?;
        match ev {
            SourceEvent::End => break,
            SourceEvent::Idle(t) => {
                if t > clock {
                    clock = t;
                }
                if !send_all(&mut batches, &mut local, clock, seq, false, &mut summary) {
                    break;
                }
                in_batch = 0;
                telemetry.maybe_publish(&summary, false);
                continue;
            }
            SourceEvent::Packet(raw) => {
                summary.packets += 1;
                summary.bytes += raw.orig_len as u64;
                if summary.first_ts.is_none() {
                    summary.first_ts = Some(raw.ts);
                }
                if raw.ts > clock {
                    clock = raw.ts;
                }
                seq += 1;
                in_batch += 1;
                // Decoding into the slot (taken back if nothing is kept) spares a copy
                // of the packet just written, which waited on the decoder's stores.
                if one {
                    batches[0].pkts.push(BatchPacket {
                        pkt: Packet::UNSET,
                        seq,
                        pay_off: 0,
                        pay_len: 0,
                    });
                }
                let decoded = match batches[0].pkts.last_mut() {
                    Some(slot) if one => decoder.decode_into(&mut slot.pkt, &raw),
                    _ => decoder.decode_into(&mut p, &raw),
                };
                let w = match decoded {
                    Ok(_) if !one => route::worker_for(&p, &home, n),
                    _ => 0,
                };
                let b = &mut batches[w];
                let head = match b.pkts.last() {
                    Some(slot) if one => &slot.pkt,
                    _ => &p,
                };
                let (proto, sport, dport) = (head.proto, head.sport, head.dport);
                match decoded {
                    Ok(payload) if proto == PROTO_TCP || proto == PROTO_UDP => {
                        let (mut off, mut len) = (0u32, 0u32);
                        if !payload.is_empty()
                            && payload.len() <= MAX_CARRIED_PAYLOAD
                            && dns_kind(sport, dport).is_some()
                        {
                            off = b.arena.len() as u32;
                            len = payload.len() as u32;
                            b.arena.extend_from_slice(payload);
                        }
                        match b.pkts.last_mut() {
                            Some(slot) if one => (slot.pay_off, slot.pay_len) = (off, len),
                            _ => b.pkts.push(BatchPacket {
                                pkt: p,
                                seq,
                                pay_off: off,
                                pay_len: len,
                            }),
                        }
                    }
                    kept => {
                        if one {
                            b.pkts.pop();
                        }
                        match kept {
                            Ok(_) => summary.other_proto += 1,
                            Err(e) if e != DecodeError::FragmentHeld => {
                                *summary.decode_errors.entry(e.kind()).or_default() += 1;
                            }
                            Err(_) => {}
                        }
                    }
                }
                if clock.since(last_frag_expire).0 >= crate::time::NANOS_PER_SEC {
                    decoder.expire(clock);
                    last_frag_expire = clock;
                }
            }
        }
        if in_batch >= batch_packets {
            in_batch = 0;
            if !send_all(&mut batches, &mut local, clock, seq, false, &mut summary) {
                break;
            }
            progress.tick(source.progress(), summary.packets, started);
            telemetry.maybe_publish(&summary, false);
        }
    }
    send_all(&mut batches, &mut local, clock, seq, true, &mut summary);
    telemetry.maybe_publish(&summary, true);
    drop(in_txs);
    // No batch is filled again: free the spares now, and let worker threads free the
    // ones still queued as they finish them (a closed recycle channel drops them) before
    // their final sweep, which runs with every flow still live: the run's high-water
    // mark. (A worker on this thread has swept already, with one batch allocated.)
    drop(batches);
    drop(recycle_rxs);
    progress.done();

    let mut write_error = None;
    let stats = handles
        .into_iter()
        .filter_map(|h| h.join().ok())
        .chain(local.map(|(w, out)| w.end(out)));
    for mut ws in stats {
        write_error = write_error.or(ws.write_error.take());
        summary.flows += ws.flows;
        summary.dns_answers += ws.dns_answers;
        summary.alerts += ws.alerts;
        for (k, v) in ws.dns_errors {
            *summary.dns_errors.entry(k).or_default() += v;
        }
        let fs = &mut summary.flow_stats;
        fs.created += ws.flow.created;
        fs.ended_closed += ws.flow.ended_closed;
        fs.ended_idle += ws.flow.ended_idle;
        fs.evicted += ws.flow.evicted;
        fs.ended_shutdown += ws.flow.ended_shutdown;
        fs.peak_live += ws.flow.peak_live;
    }
    if let Some(h) = writer_handle {
        let (_writer, wr) = h.join().map_err(|_| {
            PipelineError::Output(
                PathBuf::from("(writer)"),
                std::io::Error::other("writer thread panicked"),
            )
        })?;
        wr?;
    }
    if let Some(e) = write_error {
        return Err(e);
    }
    summary.anomalies = decoder.anomalies;
    summary.last_ts = Some(clock).filter(|_| summary.packets > 0);
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// A progress line on stderr, for replays longer than a couple of seconds.
struct Progress {
    enabled: bool,
    shown: bool,
    last: Option<Instant>,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            shown: false,
            last: None,
        }
    }

    fn tick(&mut self, pos: Option<(u64, u64)>, packets: u64, started: Instant) {
        if !self.enabled {
            return;
        }
        let el = started.elapsed().as_secs_f64();
        if el < 2.0 || self.last.is_some_and(|l| l.elapsed().as_millis() < 250) {
            return;
        }
        self.last = Some(Instant::now());
        self.shown = true;
        let rate = packets as f64 / el;
        match pos {
            Some((done, total)) if total > 0 => {
                let frac = done as f64 / total as f64;
                let width = 30usize;
                let filled = ((frac * width as f64) as usize).min(width);
                eprint!(
                    "\r[{}{}] {:5.1}% {} packets, {:.0} packets/s   ",
                    "#".repeat(filled),
                    " ".repeat(width - filled),
                    frac * 100.0,
                    packets,
                    rate
                );
            }
            _ => eprint!("\r{packets} packets, {rate:.0} packets/s   "),
        }
    }

    fn done(&mut self) {
        if self.shown {
            eprintln!();
        }
    }
}
