//! Replay: pcap files as a [`PacketSource`], and the summary a user reads at the end.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{PacketSource, RunSummary, SourceEvent};
use crate::capture::merge::MergedFiles;
use crate::capture::pcapfile::{CaptureError, ReaderStats};

/// Capture files merged in timestamp order.
pub struct FileSource {
    files: MergedFiles,
    total_bytes: u64,
    records: u64,
}

impl FileSource {
    pub fn open(paths: &[PathBuf]) -> Result<FileSource, CaptureError> {
        let files = MergedFiles::open(paths)?;
        let total_bytes = paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        Ok(FileSource {
            files,
            total_bytes,
            records: 0,
        })
    }

    pub fn stats(&self) -> Vec<(PathBuf, ReaderStats)> {
        self.files.stats()
    }
}

impl PacketSource for FileSource {
    #[inline]
    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
        match self.files.next_packet()? {
            Some(p) => {
                self.records += 1;
                Ok(SourceEvent::Packet(p))
            }
            None => Ok(SourceEvent::End),
        }
    }

    fn progress(&self) -> Option<(u64, u64)> {
        let done: u64 = self
            .files
            .stats()
            .iter()
            .map(|(_, s)| s.bytes + 16 * s.records + s.skipped_bytes)
            .sum();
        Some((done.min(self.total_bytes), self.total_bytes))
    }
}

/// Warnings about the files themselves (truncation, corruption), one line each.
pub fn file_warnings(stats: &[(PathBuf, ReaderStats)]) -> Vec<String> {
    let mut w = Vec::new();
    for (p, s) in stats {
        if s.truncated_tail {
            w.push(format!(
                "{}: the last record is cut short by the end of the file (dropped; {} records before it kept)",
                p.display(),
                s.records
            ));
        }
        if s.resyncs > 0 {
            w.push(format!(
                "{}: {} corrupt region(s) skipped ({} bytes)",
                p.display(),
                s.resyncs,
                s.skipped_bytes
            ));
        }
        if s.unknown_blocks > 0 {
            let first = s
                .first_unknown_block
                .map(|(t, off)| format!(" (first: type 0x{t:08x} at byte {off})"))
                .unwrap_or_default();
            w.push(format!(
                "{}: {} pcapng block(s) of a type portent does not read skipped{first}",
                p.display(),
                s.unknown_blocks
            ));
        }
        if s.caplen_over_snaplen > 0 {
            w.push(format!(
                "{}: {} record(s) longer than the file's snap length (kept)",
                p.display(),
                s.caplen_over_snaplen
            ));
        }
        if s.bad_interface > 0 {
            w.push(format!(
                "{}: {} packet(s) named an undeclared pcapng interface (skipped)",
                p.display(),
                s.bad_interface
            ));
        }
    }
    w
}

impl RunSummary {
    /// The end-of-run summary, several lines for a terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "portent: {} packets ({} bytes) in {:.2} s, {:.0} packets/s",
            self.packets,
            self.bytes,
            self.elapsed_secs,
            self.packets_per_sec()
        );
        if let (Some(a), Some(b)) = (self.first_ts, self.last_ts) {
            let _ = writeln!(s, "  packet time: {} .. {}", a.rfc3339(), b.rfc3339());
        }
        let _ = writeln!(
            s,
            "  flows: {} (evicted {}, timed out {}, closed {}), DNS answers: {}, alerts: {}",
            self.flows,
            self.flow_stats.evicted,
            self.flow_stats.ended_idle,
            self.flow_stats.ended_closed,
            self.dns_answers,
            self.alerts
        );
        if self.other_proto > 0 {
            let _ = writeln!(
                s,
                "  other IP protocols (not tracked): {}",
                self.other_proto
            );
        }
        let a = &self.anomalies;
        if a.reassembled + a.fragment_overlaps + a.fragment_timeouts + a.transport_truncated > 0 {
            let _ = writeln!(
                s,
                "  reassembled datagrams: {}, fragment overlaps: {}, reassembly timeouts: {}, transport headers cut by snaplen: {}",
                a.reassembled, a.fragment_overlaps, a.fragment_timeouts, a.transport_truncated
            );
        }
        if !self.decode_errors.is_empty() {
            let parts: Vec<String> = self
                .decode_errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "  decode errors: {}", parts.join(", "));
        }
        if !self.dns_errors.is_empty() {
            let parts: Vec<String> = self
                .dns_errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "  DNS payloads not answers: {}", parts.join(", "));
        }
        if self.dropped_packets > 0 {
            let _ = writeln!(
                s,
                "  dropped (analysis behind): {} packets in {} batches",
                self.dropped_packets, self.dropped_batches
            );
        }
        s
    }
}
