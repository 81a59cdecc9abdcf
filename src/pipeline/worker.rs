//! A worker: owns one flow-table shard and the analytics state of the hosts routed to it.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::writer::{OrderKey, OutBatch, Stream, Writer};
use super::{InBatch, PipelineError};
use crate::analytics::{Alert, Context, Detector, Engine};
use crate::config::Config;
use crate::decode::dns::{self, DnsAnswer, DnsEndpoints};
use crate::decode::dns_tcp::DnsTcpStream;
use crate::decode::{tcp_flags, Packet, PROTO_TCP, PROTO_UDP};
use crate::enrichment::live::PendingAlerts;
use crate::enrichment::Attributor;
use crate::flow::table::{FlowShard, FlowStats, PacketKey};
use crate::flow::{FlowEvent, FlowKey};
use crate::output;
use crate::telemetry::{WorkerCounts, WorkerPublisher};
use crate::time::Ts;

/// Prefetch distances, in packets (see `run`).
const PREFETCH_FAR: usize = 12;
const PREFETCH_NEAR: usize = 6;
/// Keys computed ahead, a ring indexed by packet number (a power of two past
/// `PREFETCH_FAR`).
const KEY_RING: usize = 16;
const _: () = assert!(KEY_RING.is_power_of_two() && KEY_RING > PREFETCH_FAR);

/// Events ahead whose detector state a sweep starts loading (see `sweep_events`).
const DETECTOR_PREFETCH: usize = 4;

/// Flows ended per output batch during a sweep. A batch keeps its rendered lines (about
/// 550 bytes a flow) until the writer is through, and up to two queues of batches are in
/// flight, buffers kept for reuse: 256 flows make a batch of ~140 KiB. (2048 made
/// ~1.1 MiB batches, ~10 MiB of buffers at the final sweep, the run's high-water mark.)
const SWEEP_CHUNK: usize = 256;

/// TCP DNS streams tracked at once per worker (each holds up to one 64 KiB message).
const MAX_DNS_TCP_STREAMS: usize = 4096;
/// Alerts a worker holds while they wait for their process; beyond it the oldest goes
/// out unattributed (alerts are rare: this bounds memory, it is not a rate).
const MAX_PENDING_ALERTS: usize = 4096;

#[derive(Default, Debug)]
pub(crate) struct WorkerStats {
    /// The first failure to write output, when this worker wrote it (see [`Output`]).
    pub write_error: Option<PipelineError>,
    pub flows: u64,
    pub dns_answers: u64,
    pub alerts: u64,
    /// Alerts by analytic name (for telemetry).
    pub alerts_by: BTreeMap<&'static str, u64>,
    pub dns_errors: BTreeMap<&'static str, u64>,
    pub flow: FlowStats,
}

/// Where a worker's rendered batches go.
pub(crate) enum Output {
    /// To the writer thread, which merges the workers' streams by order key (several
    /// workers; or live capture, where a slow disk must not hold up analysis).
    Thread {
        tx: Sender<OutBatch>,
        recycle: Receiver<OutBatch>,
    },
    /// Written by the worker itself: one worker replaying has nothing to merge, and its
    /// rendered bytes never change cores (the writer thread read every one of them from
    /// the worker's cache, and the worker then rewrote lines the writer's core held).
    Inline {
        writer: Box<Writer>,
        reopen: Arc<AtomicBool>,
        spare: Option<OutBatch>,
        /// The first write error; nothing more is written after it, and the replay
        /// stops as it does when a writer thread fails.
        result: Result<(), PipelineError>,
    },
}

impl Output {
    fn fresh(&mut self) -> OutBatch {
        match self {
            Output::Thread { recycle, .. } => recycle.try_recv().unwrap_or_default(),
            Output::Inline { spare, .. } => spare.take().unwrap_or_default(),
        }
    }

    /// Hands a batch on; false when nothing more can be written (the writer thread is
    /// gone, or a write failed).
    fn send(&mut self, mut b: OutBatch) -> bool {
        match self {
            Output::Thread { tx, .. } => tx.send(b).is_ok(),
            Output::Inline {
                writer,
                reopen,
                spare,
                result,
            } => {
                if result.is_ok() {
                    *result = writer.write_batch(&b, reopen);
                }
                b.clear();
                *spare = Some(b);
                result.is_ok()
            }
        }
    }

    /// Flushes what this worker wrote itself; its first write error.
    fn finish(self) -> Option<PipelineError> {
        match self {
            Output::Thread { .. } => None,
            Output::Inline {
                mut writer, result, ..
            } => result.and_then(|_| writer.finish()).err(),
        }
    }
}

pub(crate) struct Worker {
    shard: FlowShard,
    engine: Engine,
    /// hashbrown (foldhash): every flow end looks its two directions up here, and
    /// SipHash over a key's fields cost more than the lookup. Never iterated.
    dns_tcp: hashbrown::HashMap<(FlowKey, bool), DnsTcpStream>,
    events: Vec<FlowEvent>,
    alerts: Vec<Alert>,
    answers: Vec<DnsAnswer>,
    stats: WorkerStats,
    has_home_net: bool,
    telemetry: WorkerPublisher,
    /// Live with an EDR feed: alerts wait briefly for their process (see
    /// [`PendingAlerts`]); `None` writes them at once.
    pending: Option<PendingAlerts>,
    /// Alerts ready to be written (scratch, reused).
    released: Vec<Alert>,
    /// Capture tier: this worker's stream to the bus.
    bus: Option<crate::bus::publish::WorkerSink>,
    /// See [`super::RunOptions::exit_after`].
    exit_after: bool,
    /// Records of packets up to this sequence number have all been handed out.
    done_through: u64,
}

impl Worker {
    pub fn new(
        id: usize,
        cfg: &Config,
        cap: usize,
        attributor: Option<Arc<dyn Attributor>>,
        detectors: Vec<Box<dyn Detector>>,
        attribution_wait: Option<Duration>,
        bus: Option<crate::bus::publish::WorkerSink>,
    ) -> Worker {
        let pending = match (&attributor, attribution_wait) {
            (Some(_), Some(w)) if !w.is_zero() => Some(PendingAlerts::new(w, MAX_PENDING_ALERTS)),
            _ => None,
        };
        let ctx = Context {
            home_net: cfg.home_net.clone(),
            attributor,
        };
        Worker {
            shard: FlowShard::new(&cfg.flow, cap, cfg.home_net.clone()),
            engine: Engine::new(ctx, detectors, cfg.alerts.window),
            dns_tcp: hashbrown::HashMap::new(),
            events: Vec::with_capacity(16),
            alerts: Vec::new(),
            answers: Vec::new(),
            stats: WorkerStats::default(),
            has_home_net: !cfg.home_net.is_empty(),
            telemetry: WorkerPublisher::new(id),
            pending,
            released: Vec::new(),
            bus,
            exit_after: false,
            done_through: 0,
        }
    }

    /// See [`super::RunOptions::exit_after`].
    pub fn exit_after(mut self, yes: bool) -> Worker {
        self.exit_after = yes;
        self
    }

    pub fn run(
        mut self,
        rx: Receiver<InBatch>,
        recycle: Sender<InBatch>,
        mut out: Output,
    ) -> WorkerStats {
        while let Ok(mut b) = rx.recv() {
            let finish = b.finish;
            if !self.step(&mut b, &mut out) {
                return self.finish_stats();
            }
            b.pkts.clear();
            b.arena.clear();
            let _ = recycle.send(b);
            if finish {
                break;
            }
        }
        self.end(out)
    }

    /// Analyses one batch and hands its records to `out`; false when nothing more can
    /// be written (see [`Output::send`]).
    pub fn step(&mut self, b: &mut InBatch, out: &mut Output) -> bool {
        let started = Instant::now();
        if let Some(sent) = b.sent_at {
            self.telemetry
                .queue
                .record(started.saturating_duration_since(sent).as_secs_f64());
        }
        let mut ob = out.fresh();
        // Two-stage software prefetch: the index slot of the packet PREFETCH_FAR
        // ahead, the flow record of the one PREFETCH_NEAR ahead, so this packet's
        // lookups hit the cache instead of waiting on memory.
        let n = b.pkts.len();
        // Flow keys of the next packets, computed once each for prefetch and lookup. On
        // the stack, not in `self`: the packet's key is then lent in place, where a copy
        // out of `self` was read back at once in pieces that straddled the copy's stores
        // (a store-forwarding stall on every packet).
        let mut keys = [PacketKey::default(); KEY_RING];
        for (i, bp) in b.pkts.iter().enumerate().take(PREFETCH_FAR) {
            keys[i] = self.shard.key_of(&bp.pkt);
        }
        for i in 0..n {
            if let Some(far) = b.pkts.get(i + PREFETCH_FAR) {
                let k = self.shard.key_of(&far.pkt);
                self.shard.prefetch_slot(&k);
                keys[(i + PREFETCH_FAR) % KEY_RING] = k;
            }
            if i + PREFETCH_NEAR < n {
                self.shard
                    .prefetch_flow(&keys[(i + PREFETCH_NEAR) % KEY_RING]);
            }
            let bp = &b.pkts[i];
            let k = &keys[i % KEY_RING];
            let payload = &b.arena[bp.pay_off as usize..(bp.pay_off + bp.pay_len) as usize];
            self.packet(&bp.pkt, k, payload, bp.seq, &mut ob);
        }
        // Expiry in chunks: a mass timeout (or the final drain) never holds every
        // flow's events or rendered lines at once.
        let mut due = if b.finish {
            self.shard.drain_begin(b.clock)
        } else {
            self.shard.expire_begin(b.clock)
        };
        let mut sub = 0u32;
        loop {
            self.events.clear();
            let more = due > 0 && self.shard.end_due(SWEEP_CHUNK, &mut self.events);
            due = due.saturating_sub(SWEEP_CHUNK);
            self.sweep_events(b.clock, b.seq_end, &mut sub, &mut ob);
            if !more {
                break;
            }
            ob.done_through = self.done_through;
            let next = out.fresh();
            if !out.send(std::mem::replace(&mut ob, next)) {
                return false;
            }
        }
        self.tick(b.clock, b.seq_end, &mut sub, &mut ob);
        self.release_pending(b.finish, b.seq_end, &mut sub, &mut ob);
        if let Some(bus) = self.bus.as_mut() {
            if b.finish {
                bus.end(b.clock);
            } else {
                bus.clock(b.clock);
            }
        }
        if b.finish {
            self.engine.on_finish();
        }
        self.done_through = b.seq_end;
        ob.done_through = self.done_through;
        self.telemetry
            .analysis
            .record(started.elapsed().as_secs_f64());
        self.publish(b.finish);
        out.send(ob)
    }

    /// The input has ended (or the writer is gone): flushes `out` and returns the counts.
    pub fn end(mut self, out: Output) -> WorkerStats {
        let mut stats = self.finish_stats();
        stats.write_error = out.finish();
        if self.exit_after {
            self.leave_to_exit();
        }
        stats
    }

    /// The process is about to exit: the flow table, the TCP DNS streams and the
    /// detectors' state go with it, unfreed. Everything else (the bus sink, the EDR
    /// attributor) drops as usual; detectors let go of their state store in `on_finish`.
    fn leave_to_exit(self) {
        let Worker {
            shard,
            engine,
            dns_tcp,
            ..
        } = self;
        std::mem::forget(shard);
        std::mem::forget(dns_tcp);
        engine.leave_detectors_to_exit();
    }

    /// Hands the counts to telemetry (it publishes at most once a period).
    fn publish(&mut self, force: bool) {
        let counts = WorkerCounts {
            dns_answers: self.stats.dns_answers,
            alerts: &self.stats.alerts_by,
            dns_errors: &self.stats.dns_errors,
            flow: &self.shard.stats,
            live_flows: self.shard.live(),
        };
        self.telemetry.maybe_publish(counts, force);
    }

    fn finish_stats(&mut self) -> WorkerStats {
        self.stats.flow = self.shard.stats;
        std::mem::take(&mut self.stats)
    }

    fn packet(&mut self, p: &Packet, k: &PacketKey, payload: &[u8], seq: u64, ob: &mut OutBatch) {
        self.events.clear();
        self.shard.process_keyed(p, k, &mut self.events);
        let mut sub = 0u32;
        let key = |sub: &mut u32| {
            *sub += 1;
            OrderKey {
                seq,
                phase: 0,
                t: 0,
                tb: 0,
                sub: *sub,
            }
        };
        // Taken and put back: events are read in place (a copy is ~200 bytes each).
        let events = std::mem::take(&mut self.events);
        for ev in &events {
            self.engine.on_flow(ev, &mut self.alerts);
            if let Some(bus) = self.bus.as_mut() {
                bus.flow(ev, p.ts);
            }
            if let FlowEvent::Ended(r, why) = ev {
                self.stats.flows += 1;
                let k = key(&mut sub);
                ob.push(k, Stream::Flows, |buf| {
                    output::render_flow(buf, r, *why, self.has_home_net)
                });
                self.close_dns_streams(r);
            }
        }
        self.events = events;
        let tcp_syn = p.proto == PROTO_TCP && p.tcp_flags & tcp_flags::SYN != 0;
        if !payload.is_empty() || (tcp_syn && dns::dns_kind(p.sport, p.dport).is_some()) {
            self.dns(p, payload);
        }
        // Drained and put back: a `for` over the taken Vec freed its buffer on every
        // DNS packet.
        if !self.answers.is_empty() {
            let mut answers = std::mem::take(&mut self.answers);
            for a in answers.drain(..) {
                self.stats.dns_answers += 1;
                let k = key(&mut sub);
                ob.push(k, Stream::Dns, |buf| output::render_dns(buf, &a));
                self.engine.on_dns(&a, &mut self.alerts);
                if let Some(bus) = self.bus.as_mut() {
                    bus.dns(&a, p.ts);
                }
            }
            self.answers = answers;
        }
        let base = OrderKey {
            seq,
            ..OrderKey::default()
        };
        self.emit_alerts(base, false, &mut sub, ob);
    }

    /// DNS messages carried by this packet (UDP payload, or TCP stream reassembly).
    fn dns(&mut self, p: &Packet, payload: &[u8]) {
        let Some(kind) = dns::dns_kind(p.sport, p.dport) else {
            return;
        };
        let ep = DnsEndpoints {
            ts: p.ts,
            src: p.src,
            sport: p.sport,
            dst: p.dst,
            dport: p.dport,
            transport: p.proto,
        };
        let stats = &mut self.stats;
        let answers = &mut self.answers;
        let mut parse = |msg: &[u8]| match dns::parse_response(&ep, kind, msg) {
            Ok(a) => answers.push(a),
            Err(e) => *stats.dns_errors.entry(e.kind()).or_default() += 1,
        };
        if p.proto == PROTO_UDP {
            parse(payload);
        } else if p.proto == PROTO_TCP {
            let (fk, from_lo) = FlowKey::from_packet(p.src, p.sport, p.dst, p.dport, p.proto);
            if !self.dns_tcp.contains_key(&(fk, from_lo))
                && self.dns_tcp.len() >= MAX_DNS_TCP_STREAMS
            {
                *stats.dns_errors.entry("dns_tcp_streams_full").or_default() += 1;
                return;
            }
            let s = self.dns_tcp.entry((fk, from_lo)).or_default();
            if p.tcp_flags & tcp_flags::SYN != 0 {
                s.syn(p.tcp_seq);
            } else {
                s.push(p.tcp_seq, payload, p.payload_len, &mut parse);
            }
        }
    }

    /// A flow ended: messages still held behind a hole in its DNS streams come out now.
    fn close_dns_streams(&mut self, r: &crate::flow::FlowRecord) {
        if self.dns_tcp.is_empty() {
            return;
        }
        let k = key_of(r);
        for dir in [true, false] {
            let Some(mut s) = self.dns_tcp.remove(&(k, dir)) else {
                continue;
            };
            let (src, sport, dst, dport) = if dir {
                (k.lo, k.lo_port, k.hi, k.hi_port)
            } else {
                (k.hi, k.hi_port, k.lo, k.lo_port)
            };
            let ep = DnsEndpoints {
                ts: r.last_ts,
                src,
                sport,
                dst,
                dport,
                transport: PROTO_TCP,
            };
            let kind = dns::dns_kind(sport, dport).unwrap_or(dns::DnsKind::Dns);
            let stats = &mut self.stats;
            let answers = &mut self.answers;
            s.flush(
                &mut |msg: &[u8]| match dns::parse_response(&ep, kind, msg) {
                    Ok(a) => answers.push(a),
                    Err(e) => *stats.dns_errors.entry(e.kind()).or_default() += 1,
                },
            );
        }
    }

    /// Renders the flow ends (and what analytics make of them) in `self.events`.
    fn sweep_events(&mut self, clock: Ts, seq_end: u64, sub: &mut u32, ob: &mut OutBatch) {
        let events = std::mem::take(&mut self.events);
        for (i, ev) in events.iter().enumerate() {
            if let Some(FlowEvent::Ended(r, _)) = events.get(i + DETECTOR_PREFETCH) {
                self.engine.prefetch_flow(r.handle);
            }
            self.engine.on_flow(ev, &mut self.alerts);
            if let Some(bus) = self.bus.as_mut() {
                bus.flow(ev, clock);
            }
            let (t, tb) = match ev {
                FlowEvent::Ended(r, _) | FlowEvent::Started(r) => (r.last_ts.0, r.uid),
                FlowEvent::OrigMessage { flow, .. } => (flow.last_ts.0, flow.uid),
            };
            let mut key = || {
                *sub += 1;
                OrderKey {
                    seq: seq_end,
                    phase: 1,
                    t,
                    tb,
                    sub: *sub,
                }
            };
            if let FlowEvent::Ended(r, why) = ev {
                self.stats.flows += 1;
                let k = key();
                ob.push(k, Stream::Flows, |buf| {
                    output::render_flow(buf, r, *why, self.has_home_net)
                });
                self.close_dns_streams(r);
            }
            if !self.answers.is_empty() {
                let mut answers = std::mem::take(&mut self.answers);
                for a in answers.drain(..) {
                    self.stats.dns_answers += 1;
                    let k = key();
                    ob.push(k, Stream::Dns, |buf| output::render_dns(buf, &a));
                    self.engine.on_dns(&a, &mut self.alerts);
                    if let Some(bus) = self.bus.as_mut() {
                        bus.dns(&a, clock);
                    }
                }
                self.answers = answers;
            }
            let base = OrderKey {
                seq: seq_end,
                phase: 1,
                t,
                tb,
                sub: 0,
            };
            self.emit_alerts(base, false, sub, ob);
        }
        self.events = events;
    }

    /// Packet time advanced: analytics that work on time (cadence) report here.
    fn tick(&mut self, clock: Ts, seq_end: u64, sub: &mut u32, ob: &mut OutBatch) {
        self.engine.on_tick(clock, &mut self.alerts);
        let base = OrderKey {
            seq: seq_end,
            phase: 2,
            ..OrderKey::default()
        };
        self.emit_alerts(base, true, sub, ob);
    }

    /// Writes `self.alerts` (or hands them to the attribution wait). `base` orders them
    /// among the batch's records; tick alerts take their time and hash as tiebreak.
    /// The check inline (it runs once per packet and alerts are rare), the work not.
    #[inline]
    fn emit_alerts(&mut self, base: OrderKey, tick: bool, sub: &mut u32, ob: &mut OutBatch) {
        if !self.alerts.is_empty() {
            self.emit_alerts_now(base, tick, sub, ob);
        }
    }

    #[inline(never)]
    fn emit_alerts_now(&mut self, base: OrderKey, tick: bool, sub: &mut u32, ob: &mut OutBatch) {
        match self.pending.as_mut() {
            Some(p) => {
                let now = Instant::now();
                for a in self.alerts.drain(..) {
                    p.push(a, now, &mut self.released);
                }
            }
            None => self.released.append(&mut self.alerts),
        }
        self.write_released(base, tick, sub, ob);
    }

    /// Alerts whose process has arrived or whose wait is over (all of them at the end).
    fn release_pending(&mut self, finish: bool, seq_end: u64, sub: &mut u32, ob: &mut OutBatch) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if finish {
            p.drain(&mut self.released);
        } else if !p.is_empty() {
            if let Some(attr) = self.engine.ctx.attributor.as_deref() {
                p.poll(attr, Instant::now(), &mut self.released);
            }
        }
        let base = OrderKey {
            seq: seq_end,
            phase: 2,
            ..OrderKey::default()
        };
        self.write_released(base, true, sub, ob);
    }

    fn write_released(&mut self, base: OrderKey, tick: bool, sub: &mut u32, ob: &mut OutBatch) {
        for a in self.released.drain(..) {
            self.stats.alerts += 1;
            *self.stats.alerts_by.entry(a.analytic.name()).or_default() += 1;
            *sub += 1;
            let mut k = OrderKey { sub: *sub, ..base };
            if tick {
                k.t = a.ts.0;
                k.tb = alert_tiebreak(&a);
            }
            ob.push(k, Stream::Alerts, |buf| output::render_alert(buf, &a));
        }
    }
}

fn key_of(r: &crate::flow::FlowRecord) -> FlowKey {
    FlowKey::from_packet(r.orig, r.orig_port, r.resp, r.resp_port, r.proto).0
}

/// A stable tiebreak for alerts raised at the same packet-time point by different
/// workers: the flow uid of (time, src, dst, port) mixed with the analytic's name.
fn alert_tiebreak(a: &Alert) -> u64 {
    let name = super::name_hash(a.analytic.name());
    crate::flow::table::flow_uid(
        a.ts,
        &FlowKey::from_packet(a.src, 0, a.dst, a.dst_port, a.proto).0,
    ) ^ name
}
