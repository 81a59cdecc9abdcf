//! Merging producers in one partition: a watermark per producer stream and a bounded
//! reorder buffer.
//!
//! Several capture instances (and, within one, several workers) write into a partition,
//! each in its own packet-time order. A record is released to the analytics only when
//! every live stream has moved past it (`at < W`, W the smallest stream watermark), so a
//! fast producer cannot advance packet time, and expire state, ahead of a slow one.
//! Releasing strictly below W makes the release order (at, producer, seq) a function of
//! the partition's contents alone, not of how its records were batched on the way: a new
//! owner rebuilding a partition emits the same alerts at the same offsets.
//!
//! Bounds: at most `max_buffered` records wait; beyond it the oldest is released anyway
//! (counted as `forced`). A record older than what was already released is `late`: it is
//! counted and handed over at once (nothing accepted is dropped).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use super::record::{Body, ProducerId, Record};
use crate::time::{Dur, Ts};

/// Capture instances one partition tracks.
pub const MAX_INSTANCES: usize = 64;

#[derive(Clone, Debug)]
pub struct MergeConfig {
    /// Capture instances expected in the partition: nothing is released until this many
    /// have shown all their worker streams (each announces itself at its first batch).
    pub expected_instances: usize,
    /// Records held at most before the oldest is released regardless.
    pub max_buffered: usize,
    /// Packet-time step of the analytics' tick (timed evaluations, expiry).
    pub tick: Dur,
}

impl Default for MergeConfig {
    fn default() -> MergeConfig {
        MergeConfig {
            expected_instances: 1,
            max_buffered: 262_144,
            tick: Dur::from_secs(1),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MergeStats {
    pub released: u64,
    /// Records that arrived after packet time had passed them.
    pub late: u64,
    /// Records released before their producers' watermarks allowed (buffer full).
    pub forced: u64,
    /// Streams dropped because their instance restarted (new epoch).
    pub superseded: u64,
    /// Records of instances beyond [`MAX_INSTANCES`]: analysed, but they hold no
    /// watermark (a flood of producer ids cannot grow the merge's tables).
    pub unregistered: u64,
    pub buffered_peak: u64,
}

/// What the merger hands to the analytics, in order.
#[derive(Debug)]
pub enum Released {
    Record(Box<Record>),
    /// Packet time reached this point: run timed analytics.
    Tick(Ts),
}

#[derive(Debug, Clone, Copy)]
struct StreamState {
    watermark: Ts,
    ended: bool,
}

#[derive(Debug, Clone, Copy)]
struct InstanceState {
    epoch: u64,
    workers: u16,
}

struct Pending(Box<Record>);

impl Pending {
    fn key(&self) -> (Ts, ProducerId, u64) {
        let e = &self.0.env;
        (e.at, e.producer, e.seq)
    }
}
impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        self.key() == o.key()
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    // Reversed: BinaryHeap is a max-heap, the merge wants the oldest first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.key().cmp(&self.key())
    }
}

pub struct Merger {
    cfg: MergeConfig,
    instances: BTreeMap<u64, InstanceState>,
    streams: BTreeMap<(u64, u16), StreamState>,
    heap: BinaryHeap<Pending>,
    /// Newest `at` handed over.
    released_through: Option<Ts>,
    /// Packet time of the analytics (last record released or tick).
    clock: Option<Ts>,
    pub stats: MergeStats,
}

impl Merger {
    pub fn new(cfg: MergeConfig) -> Merger {
        Merger {
            cfg,
            instances: BTreeMap::new(),
            streams: BTreeMap::new(),
            heap: BinaryHeap::new(),
            released_through: None,
            clock: None,
            stats: MergeStats::default(),
        }
    }

    pub fn buffered(&self) -> usize {
        self.heap.len()
    }

    /// Every expected instance has ended all its streams and nothing waits.
    pub fn finished(&self) -> bool {
        self.heap.is_empty()
            && self.complete()
            && self.streams.values().all(|s| s.ended)
            && !self.streams.is_empty()
    }

    /// Takes one record (in partition order) and hands over what it releases.
    pub fn push(&mut self, rec: Record, out: &mut impl FnMut(Released)) {
        let p = rec.env.producer;
        let current = self.register(p);
        if current {
            let s = self
                .streams
                .entry((p.instance, p.worker))
                .or_insert(StreamState {
                    watermark: rec.env.at,
                    ended: false,
                });
            if rec.env.at > s.watermark {
                s.watermark = rec.env.at;
            }
            if matches!(rec.body, Body::End) {
                s.ended = true;
            }
        }
        if matches!(rec.body, Body::Flow(_) | Body::Dns(_)) {
            if self.released_through.is_some_and(|t| rec.env.at < t) {
                self.stats.late += 1;
                self.stats.released += 1;
                out(Released::Record(Box::new(rec)));
            } else {
                self.heap.push(Pending(Box::new(rec)));
                self.stats.buffered_peak = self.stats.buffered_peak.max(self.heap.len() as u64);
            }
        }
        while self.heap.len() > self.cfg.max_buffered {
            self.stats.forced += 1;
            self.release_top(out);
        }
        self.release(out);
    }

    /// Updates the instance table; false for a record of a superseded epoch (its data
    /// is still analysed, but it no longer holds the watermark back).
    fn register(&mut self, p: ProducerId) -> bool {
        let full = self.instances.len() >= MAX_INSTANCES;
        match self.instances.get_mut(&p.instance) {
            None if full => {
                self.stats.unregistered += 1;
                false
            }
            None => {
                self.instances.insert(
                    p.instance,
                    InstanceState {
                        epoch: p.epoch,
                        workers: p.workers,
                    },
                );
                true
            }
            Some(i) if i.epoch == p.epoch => true,
            Some(i) if i.epoch < p.epoch => {
                *i = InstanceState {
                    epoch: p.epoch,
                    workers: p.workers,
                };
                let before = self.streams.len();
                self.streams.retain(|(inst, _), _| *inst != p.instance);
                self.stats.superseded += (before - self.streams.len()) as u64;
                true
            }
            Some(_) => false,
        }
    }

    /// All expected instances are known with all their streams.
    fn complete(&self) -> bool {
        if self.instances.len() < self.cfg.expected_instances.max(1) {
            return false;
        }
        self.instances.iter().all(|(inst, i)| {
            self.streams.range((*inst, 0)..=(*inst, u16::MAX)).count() >= i.workers as usize
        })
    }

    /// The merged watermark: `None` while producers are missing, `Ts::MAX` when all ended.
    fn watermark(&self) -> Option<Ts> {
        if !self.complete() {
            return None;
        }
        Some(
            self.streams
                .values()
                .filter(|s| !s.ended)
                .map(|s| s.watermark)
                .min()
                .unwrap_or(Ts::MAX),
        )
    }

    fn release(&mut self, out: &mut impl FnMut(Released)) {
        let Some(w) = self.watermark() else {
            return;
        };
        while self
            .heap
            .peek()
            .is_some_and(|p| p.0.env.at < w || w == Ts::MAX)
        {
            self.release_top(out);
        }
        if w == Ts::MAX {
            if let Some(c) = self.clock {
                out(Released::Tick(c));
            }
            return;
        }
        // Time moved on without records: advance the analytics' clock on the tick grid.
        if self.clock.is_none_or(|c| self.cell(w) > self.cell(c)) {
            self.clock = Some(w);
            out(Released::Tick(w));
        }
    }

    fn release_top(&mut self, out: &mut impl FnMut(Released)) {
        let Some(Pending(rec)) = self.heap.pop() else {
            return;
        };
        let at = rec.env.at;
        if let Some(c) = self.clock {
            if self.cell(at) > self.cell(c) {
                out(Released::Tick(c));
            }
        }
        if self.clock.is_none_or(|c| at > c) {
            self.clock = Some(at);
        }
        if self.released_through.is_none_or(|t| at > t) {
            self.released_through = Some(at);
        }
        self.stats.released += 1;
        out(Released::Record(rec));
    }

    fn cell(&self, t: Ts) -> i64 {
        t.0.div_euclid(self.cfg.tick.0.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::record::Envelope;

    fn rec(instance: u64, worker: u16, workers: u16, seq: u64, at: i64, body: Body) -> Record {
        Record {
            env: Envelope {
                producer: ProducerId {
                    instance,
                    epoch: 1,
                    worker,
                    workers,
                },
                seq,
                at: Ts::from_secs(at),
            },
            body,
        }
    }

    fn data(instance: u64, seq: u64, at: i64) -> Record {
        let a = crate::decode::dns::DnsAnswer {
            ts: Ts::from_secs(at),
            client: "10.0.0.1".parse().unwrap(),
            client_port: 1,
            resolver: "10.0.0.2".parse().unwrap(),
            resolver_port: 53,
            transport: 17,
            kind: crate::decode::dns::DnsKind::Dns,
            id: 0,
            query: format!("i{instance}s{seq}"),
            qtype: 1,
            rcode: 0,
            records: vec![],
            cname_chain: vec![],
            addrs: vec![],
            min_ttl: 0,
            anomalies: Default::default(),
        };
        rec(instance, 0, 1, seq, at, Body::Dns(Box::new(a)))
    }

    fn run(m: &mut Merger, recs: Vec<Record>) -> Vec<String> {
        let mut got = Vec::new();
        for r in recs {
            m.push(r, &mut |x| {
                got.push(match x {
                    Released::Record(r) => match &r.body {
                        Body::Dns(a) => a.query.clone(),
                        _ => "?".into(),
                    },
                    Released::Tick(t) => format!("tick{}", t.secs()),
                })
            });
        }
        got
    }

    fn two() -> MergeConfig {
        MergeConfig {
            expected_instances: 2,
            max_buffered: 100,
            tick: Dur::from_secs(10),
        }
    }

    #[test]
    fn a_fast_producer_waits_for_the_slow_one() {
        let mut m = Merger::new(two());
        // Instance 1 runs ahead to t=100 before instance 2 has said anything.
        let got = run(
            &mut m,
            vec![
                data(1, 1, 5),
                data(1, 2, 50),
                data(1, 3, 100),
                data(2, 1, 6),
                data(2, 2, 60),
            ],
        );
        // Instance 2 holds the watermark back: released strictly below it, in time order,
        // with a tick at each 10 s cell crossed.
        assert_eq!(got, vec!["i1s1", "i2s1", "tick6", "i1s2", "tick60"]);
        let got = run(
            &mut m,
            vec![
                rec(2, 0, 1, 3, 200, Body::End),
                rec(1, 0, 1, 4, 100, Body::End),
            ],
        );
        assert_eq!(got, vec!["i2s2", "tick100", "i1s3", "tick100"]);
        assert!(m.finished());
        assert_eq!(m.stats.late, 0);
        assert_eq!(m.stats.forced, 0);
    }

    #[test]
    fn release_order_does_not_depend_on_arrival_interleaving() {
        // The same two producer streams, interleaved differently in the partition.
        let a: Vec<(u64, u64, i64)> = (0..40)
            .map(|i| (1, i, (i * 7 % 13 + i * 3) as i64))
            .collect();
        let b: Vec<(u64, u64, i64)> = (0..40).map(|i| (2, i, (i * 4) as i64)).collect();
        let mono = |v: Vec<(u64, u64, i64)>| {
            let mut t = 0;
            v.into_iter()
                .map(|(p, s, at)| {
                    t = t.max(at);
                    (p, s, t)
                })
                .collect::<Vec<_>>()
        };
        let (a, b) = (mono(a), mono(b));
        let mut outs = Vec::new();
        for stride in [1usize, 3, 17] {
            let mut log = Vec::new();
            let (mut i, mut j) = (0, 0);
            while i < a.len() || j < b.len() {
                for _ in 0..stride {
                    if i < a.len() {
                        log.push(data(a[i].0, a[i].1, a[i].2));
                        i += 1;
                    }
                }
                if j < b.len() {
                    log.push(data(b[j].0, b[j].1, b[j].2));
                    j += 1;
                }
            }
            log.push(rec(1, 0, 1, 99, 1000, Body::End));
            log.push(rec(2, 0, 1, 99, 1000, Body::End));
            let mut m = Merger::new(two());
            let got: Vec<String> = run(&mut m, log)
                .into_iter()
                .filter(|s| !s.starts_with("tick"))
                .collect();
            outs.push(got);
        }
        assert_eq!(outs[0], outs[1]);
        assert_eq!(outs[0], outs[2]);
        assert_eq!(outs[0].len(), 80);
    }

    #[test]
    fn a_full_buffer_releases_the_oldest_and_late_records_are_counted() {
        let mut m = Merger::new(MergeConfig {
            max_buffered: 3,
            ..two()
        });
        // Instance 2 never shows up: the buffer bound moves time on.
        let got = run(&mut m, (1..=5).map(|i| data(1, i, i as i64)).collect());
        assert_eq!(got, vec!["i1s1", "i1s2"]);
        assert_eq!(m.stats.forced, 2);
        assert_eq!(m.buffered(), 3);
        // Instance 2's record at t=1 comes after t=2 was released: late, still handed on.
        let got = run(&mut m, vec![data(2, 1, 1)]);
        assert_eq!(got, vec!["i2s1"]);
        assert_eq!(m.stats.late, 1);
    }

    #[test]
    fn producer_ids_beyond_the_bound_hold_no_watermark() {
        let mut m = Merger::new(MergeConfig {
            expected_instances: 1,
            ..two()
        });
        let recs: Vec<Record> = (0..MAX_INSTANCES as u64 + 10)
            .map(|i| rec(i, 0, 1, 1, 5, Body::Clock))
            .collect();
        run(&mut m, recs);
        assert_eq!(m.instances.len(), MAX_INSTANCES);
        assert_eq!(m.stats.unregistered, 10);
    }

    #[test]
    fn a_restarted_instance_supersedes_its_old_streams() {
        let mut m = Merger::new(MergeConfig {
            expected_instances: 1,
            ..two()
        });
        run(
            &mut m,
            vec![
                rec(1, 0, 2, 1, 5, Body::Clock),
                rec(1, 1, 2, 1, 5, Body::Clock),
            ],
        );
        let mut r = data(1, 1, 20);
        r.env.producer.epoch = 2;
        let got = run(&mut m, vec![r]);
        assert_eq!(m.stats.superseded, 2);
        // The new epoch has one worker of one: its watermark (20) alone decides.
        assert_eq!(got, vec!["tick20"]);
        let mut end = rec(1, 0, 1, 2, 30, Body::End);
        end.env.producer.epoch = 2;
        let got = run(&mut m, vec![end]);
        assert_eq!(got, vec!["i1s1", "tick20"]);
        assert!(m.finished());
    }
}
