//! The writer: merges the workers' rendered records by [`OrderKey`] and writes them.
//!
//! A record may be written once no worker can still produce a smaller key: every other
//! worker either has a pending record (whose key is not smaller, since we take the
//! minimum) or has reported `done_through` at or past the record's sequence number.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Select, Sender};

use super::{Outputs, PipelineError};
use crate::output::sink::Sink;

/// Total order of output records, independent of the number of workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct OrderKey {
    /// Sequence number of the packet that caused the record, or of the last packet of
    /// the batch after which a sweep ran.
    pub seq: u64,
    /// 0: caused by a packet; 1: flow expiry sweep; 2: analytics tick.
    pub phase: u8,
    /// Sweep records: the flow's last packet time (or the alert's time) ...
    pub t: i64,
    /// ... and its uid (or an alert hash), so ties across workers order stably.
    pub tb: u64,
    /// Order within one cause.
    pub sub: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Flows = 0,
    Dns = 1,
    Alerts = 2,
}

impl Stream {
    const ALL: [Stream; 3] = [Stream::Flows, Stream::Dns, Stream::Alerts];
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct OutRec {
    key: OrderKey,
    stream: Stream,
    start: u32,
    end: u32,
}

/// Rendered records of one worker batch: each stream's lines in one buffer, in record
/// order, so that a writer with one worker writes each buffer whole.
#[derive(Default)]
pub(crate) struct OutBatch {
    recs: Vec<OutRec>,
    /// By [`Stream`].
    bufs: [Vec<u8>; 3],
    pub done_through: u64,
}

impl OutBatch {
    /// Empties the batch, keeping its buffers for reuse.
    pub fn clear(&mut self) {
        self.recs.clear();
        for b in &mut self.bufs {
            b.clear();
        }
        self.done_through = 0;
    }

    /// Renders a record into its stream's buffer.
    pub fn push(&mut self, key: OrderKey, stream: Stream, render: impl FnOnce(&mut Vec<u8>)) {
        let buf = &mut self.bufs[stream as usize];
        let start = buf.len() as u32;
        render(buf);
        let end = buf.len() as u32;
        if end > start {
            self.recs.push(OutRec {
                key,
                stream,
                start,
                end,
            });
        }
    }
}

struct Lane {
    queue: VecDeque<OutBatch>,
    /// Next record index in the front batch.
    next: usize,
    done_through: u64,
    closed: bool,
}

impl Lane {
    fn head(&self) -> Option<OrderKey> {
        self.queue
            .front()
            .and_then(|b| b.recs.get(self.next))
            .map(|r| r.key)
    }
    fn accept(&mut self, b: OutBatch) {
        self.done_through = self.done_through.max(b.done_through);
        if !b.recs.is_empty() {
            self.queue.push_back(b);
        }
    }
}

pub(crate) struct Writer {
    alerts: Option<(PathBuf, Sink)>,
    flows: Option<(PathBuf, Sink)>,
    dns: Option<(PathBuf, Sink)>,
    /// Two streams go to one place (stdout, or one file): their lines interleave in
    /// record order, so batches are never written a stream at a time.
    shared: bool,
}

fn open(p: &Option<PathBuf>) -> Result<Option<(PathBuf, Sink)>, PipelineError> {
    match p {
        None => Ok(None),
        Some(p) => Sink::open(p)
            .map(|s| Some((p.clone(), s)))
            .map_err(|e| PipelineError::Output(p.clone(), e)),
    }
}

impl Writer {
    pub fn open(o: &Outputs, _workers: usize) -> Result<Writer, PipelineError> {
        let paths: Vec<&PathBuf> = [&o.alerts, &o.flows, &o.dns]
            .into_iter()
            .flatten()
            .collect();
        let shared = paths
            .iter()
            .enumerate()
            .any(|(i, p)| paths[..i].contains(p));
        Ok(Writer {
            alerts: open(&o.alerts)?,
            flows: open(&o.flows)?,
            dns: open(&o.dns)?,
            shared,
        })
    }

    fn sink(&mut self, stream: Stream) -> &mut Option<(PathBuf, Sink)> {
        match stream {
            Stream::Alerts => &mut self.alerts,
            Stream::Flows => &mut self.flows,
            Stream::Dns => &mut self.dns,
        }
    }

    fn write(&mut self, stream: Stream, line: &[u8]) -> Result<(), PipelineError> {
        if let Some((p, s)) = self.sink(stream) {
            s.write_line(line)
                .map_err(|e| PipelineError::Output(p.clone(), e))?;
        }
        Ok(())
    }

    /// Two streams go to one place: batches must be merged record by record.
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// One worker's batch (they come in record order): each stream's buffer is written
    /// whole, no merge, no copy into the sink's buffer. Not for shared destinations.
    pub fn write_batch(&mut self, b: &OutBatch, reopen: &AtomicBool) -> Result<(), PipelineError> {
        if reopen.swap(false, Ordering::Relaxed) {
            self.for_each_sink(|s| s.reopen())?;
        }
        for stream in Stream::ALL {
            let lines = b.recs.iter().filter(|r| r.stream == stream).count() as u64;
            let bytes = &b.bufs[stream as usize];
            if let Some((p, s)) = self.sink(stream) {
                s.write_lines(bytes, lines)
                    .map_err(|e| PipelineError::Output(p.clone(), e))?;
            }
        }
        Ok(())
    }

    /// Flushes every output.
    pub fn finish(&mut self) -> Result<(), PipelineError> {
        self.for_each_sink(|s| s.flush())
    }

    fn run_single(
        &mut self,
        rx: &Receiver<OutBatch>,
        recycle: &Sender<OutBatch>,
        reopen: &AtomicBool,
    ) -> Result<(), PipelineError> {
        let mut result = Ok(());
        while let Ok(mut b) = rx.recv() {
            if result.is_ok() {
                result = self.write_batch(&b, reopen);
            }
            b.clear();
            let _ = recycle.try_send(b);
        }
        result.and(self.finish())
    }

    fn for_each_sink(
        &mut self,
        mut f: impl FnMut(&mut Sink) -> std::io::Result<()>,
    ) -> Result<(), PipelineError> {
        for (p, s) in [&mut self.alerts, &mut self.flows, &mut self.dns]
            .into_iter()
            .flatten()
        {
            f(s).map_err(|e| PipelineError::Output(p.clone(), e))?;
        }
        Ok(())
    }

    pub fn run(
        &mut self,
        rxs: Vec<Receiver<OutBatch>>,
        recycle: Vec<Sender<OutBatch>>,
        reopen: &AtomicBool,
    ) -> Result<(), PipelineError> {
        if let ([rx], [tx]) = (&rxs[..], &recycle[..]) {
            if !self.shared {
                return self.run_single(rx, tx, reopen);
            }
        }
        let mut lanes: Vec<Lane> = rxs
            .iter()
            .map(|_| Lane {
                queue: VecDeque::new(),
                next: 0,
                done_through: 0,
                closed: false,
            })
            .collect();
        let mut result = Ok(());
        let mut blockers: Vec<usize> = Vec::with_capacity(lanes.len());
        loop {
            if reopen.swap(false, Ordering::Relaxed) {
                result = result.and(self.for_each_sink(|s| s.reopen()));
            }
            // The smallest pending key.
            let mut best: Option<(usize, OrderKey)> = None;
            for (i, l) in lanes.iter().enumerate() {
                if let Some(k) = l.head() {
                    if best.is_none_or(|(_, b)| k < b) {
                        best = Some((i, k));
                    }
                }
            }
            // Lanes that might still produce something smaller must be heard first. Wait
            // on all of them at once: waiting on one while another's channel is full can
            // close a cycle (writer -> worker A -> capture -> worker B -> writer).
            blockers.clear();
            blockers.extend((0..lanes.len()).filter(|&i| {
                let l = &lanes[i];
                !l.closed && l.head().is_none() && best.is_none_or(|(_, k)| l.done_through < k.seq)
            }));
            if !blockers.is_empty() {
                let mut sel = Select::new();
                for &i in &blockers {
                    sel.recv(&rxs[i]);
                }
                let op = sel.select();
                let i = blockers[op.index()];
                match op.recv(&rxs[i]) {
                    Ok(b) => lanes[i].accept(b),
                    Err(_) => lanes[i].closed = true,
                }
                continue;
            }
            let Some((i, _)) = best else {
                break; // every lane closed and empty
            };
            let lane = &mut lanes[i];
            let (stream, start, end) = {
                let b = &lane.queue[0];
                let r = b.recs[lane.next];
                (r.stream, r.start as usize, r.end as usize)
            };
            if result.is_ok() {
                result = self.write(stream, &lane.queue[0].bufs[stream as usize][start..end]);
            }
            lane.next += 1;
            if lane.next >= lane.queue[0].recs.len() {
                if let Some(mut b) = lane.queue.pop_front() {
                    b.clear();
                    let _ = recycle[i].try_send(b);
                }
                lane.next = 0;
            }
        }
        result.and(self.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::unbounded;

    fn key(seq: u64, sub: u32) -> OrderKey {
        OrderKey {
            seq,
            sub,
            ..OrderKey::default()
        }
    }

    /// Writes `batches` (one list per worker) and returns (flows, dns, alerts) files.
    fn write(batches: Vec<Vec<OutBatch>>, outputs: &Outputs) -> Vec<String> {
        let mut w = Writer::open(outputs, batches.len()).unwrap();
        let (mut rxs, mut recycle) = (Vec::new(), Vec::new());
        for lane in batches {
            let (tx, rx) = unbounded();
            for b in lane {
                tx.send(b).unwrap();
            }
            rxs.push(rx);
            recycle.push(unbounded().0);
        }
        w.run(rxs, recycle, &AtomicBool::new(false)).unwrap();
        drop(w);
        [&outputs.flows, &outputs.dns, &outputs.alerts]
            .iter()
            .map(|p| std::fs::read_to_string(p.as_ref().unwrap()).unwrap())
            .collect()
    }

    fn batch(recs: &[(u64, Stream, &str)], done_through: u64) -> OutBatch {
        let mut b = OutBatch::default();
        for (i, (seq, stream, line)) in recs.iter().enumerate() {
            b.push(key(*seq, i as u32), *stream, |buf| {
                buf.extend_from_slice(format!("{line}\n").as_bytes())
            });
        }
        b.done_through = done_through;
        b
    }

    /// One worker's batches written a stream at a time give the files that merging the
    /// same records from two workers gives.
    #[test]
    fn one_worker_writes_streams_whole_and_agrees_with_the_merge() {
        use Stream::*;
        let dir = tempfile::tempdir().unwrap();
        let outputs = |tag: &str| Outputs {
            flows: Some(dir.path().join(format!("{tag}-flows"))),
            dns: Some(dir.path().join(format!("{tag}-dns"))),
            alerts: Some(dir.path().join(format!("{tag}-alerts"))),
        };
        let recs = [
            (1, Flows, "f1"),
            (2, Dns, "d2"),
            (3, Flows, "f3"),
            (3, Alerts, "a3"),
            (5, Dns, "d5"),
            (6, Flows, "f6"),
        ];
        let one = write(
            vec![vec![batch(&recs[..3], 3), batch(&recs[3..], 6)]],
            &outputs("one"),
        );
        assert_eq!(one, ["f1\nf3\nf6\n", "d2\nd5\n", "a3\n"]);
        let even: Vec<_> = recs.iter().copied().filter(|r| r.0 % 2 == 0).collect();
        let odd: Vec<_> = recs.iter().copied().filter(|r| r.0 % 2 == 1).collect();
        let two = write(
            vec![vec![batch(&even, 6)], vec![batch(&odd, 6)]],
            &outputs("two"),
        );
        assert_eq!(one, two);

        // Streams sharing a destination keep the record-by-record merge.
        let shared = |a: &str, b: &str| {
            let o = Outputs {
                flows: Some(dir.path().join(a)),
                dns: Some(dir.path().join(b)),
                alerts: None,
            };
            Writer::open(&o, 1).unwrap().shared
        };
        assert!(shared("x", "x"));
        assert!(!shared("x", "y"));
    }
}
