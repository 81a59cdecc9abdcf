//! Live capture through libpcap (AF_PACKET on Linux): promiscuous mode, snap length,
//! kernel buffer, BPF filter, immediate mode, and a read timeout so that an idle link
//! still advances packet time.
//!
//! The clock in live mode is still packet time: frames carry the kernel's receive
//! timestamp; when nothing arrives for a read timeout the source yields
//! [`SourceEvent::Idle`] with the wall clock, which lets flows time out and cadence
//! analytics tick on a quiet link.

use std::io;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::pcapfile::CaptureError;
use super::{LinkType, RawPacket};
use crate::pipeline::{PacketSource, SourceEvent};
use crate::telemetry;
use crate::time::{Dur, Ts};

/// Options shared by the live sources.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub interface: String,
    pub snaplen: u32,
    /// Kernel capture buffer (libpcap) or UMEM size (AF_XDP), MiB.
    pub buffer_mb: u32,
    pub filter: Option<String>,
    pub promisc: bool,
    /// Deliver each frame at once instead of when a kernel block fills or times out.
    pub immediate: bool,
    /// Longest wait for a frame before an idle tick, milliseconds.
    pub timeout_ms: u32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            interface: String::new(),
            snaplen: 65_535,
            buffer_mb: 64,
            filter: None,
            promisc: false,
            immediate: false,
            timeout_ms: 100,
        }
    }
}

/// Under steady traffic, an idle tick at least this often (packet time), so batches
/// are handed to workers and alerts written without waiting for a batch to fill.
pub(crate) const TICK_EVERY: Dur = Dur(250_000_000);

/// The wall clock as packet time.
pub(crate) fn wall_now() -> Ts {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ts(d.as_nanos() as i64)
}

pub(crate) fn live_error(interface: &str, msg: impl std::fmt::Display) -> CaptureError {
    CaptureError::Read(PathBuf::from(interface), io::Error::other(msg.to_string()))
}

/// Kernel counters from `pcap_stats`, widened: libpcap's are 32-bit and wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcapStats {
    pub received: u64,
    /// Dropped by the kernel: the capture buffer was full.
    pub dropped: u64,
    /// Dropped by the interface or its driver.
    pub if_dropped: u64,
    last: (u32, u32, u32),
}

impl PcapStats {
    fn update(&mut self, s: pcap::Stat) {
        self.received += s.received.wrapping_sub(self.last.0) as u64;
        self.dropped += s.dropped.wrapping_sub(self.last.1) as u64;
        self.if_dropped += s.if_dropped.wrapping_sub(self.last.2) as u64;
        self.last = (s.received, s.dropped, s.if_dropped);
    }
}

/// A libpcap live capture as a [`PacketSource`].
pub struct PcapSource {
    cap: pcap::Capture<pcap::Active>,
    interface: String,
    link: LinkType,
    timeout: Dur,
    last_pkt: Ts,
    last_tick: Ts,
    stats: PcapStats,
    next_stats: Instant,
    reads: u32,
    /// Read the kernel counters before the next read (set on an idle tick).
    stats_due: bool,
    /// The last read returned a frame: more may be buffered, read before polling.
    pending: bool,
}

impl PcapSource {
    pub fn open(o: &LiveOptions) -> Result<PcapSource, CaptureError> {
        let err = |e: pcap::Error| live_error(&o.interface, e);
        let mut cap = pcap::Capture::from_device(o.interface.as_str())
            .map_err(err)?
            .promisc(o.promisc)
            .snaplen(o.snaplen.min(i32::MAX as u32) as i32)
            .buffer_size((o.buffer_mb.saturating_mul(1 << 20)).min(i32::MAX as u32) as i32)
            .immediate_mode(o.immediate)
            .timeout(o.timeout_ms.max(1) as i32)
            .precision(pcap::Precision::Nano)
            .open()
            .map_err(err)?
            // libpcap's TPACKET_V3 read blocks until a kernel block retires, and the
            // kernel never retires an empty one: on a quiet link it would never
            // return. We poll the descriptor ourselves with the timeout instead.
            .setnonblock()
            .map_err(err)?;
        if let Some(f) = &o.filter {
            cap.filter(f, true)
                .map_err(|e| live_error(&o.interface, format!("filter `{f}`: {e}")))?;
        }
        let link = LinkType::from_linktype(cap.get_datalink().0 as u32);
        Ok(PcapSource {
            cap,
            interface: o.interface.clone(),
            link,
            timeout: Dur::from_millis(o.timeout_ms.max(1) as i64),
            last_pkt: Ts::ZERO,
            last_tick: Ts::ZERO,
            stats: PcapStats::default(),
            next_stats: Instant::now(),
            reads: 0,
            stats_due: false,
            pending: false,
        })
    }

    /// Reads the kernel counters and publishes them (at most once a period).
    fn poll_stats(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now < self.next_stats {
            return;
        }
        self.next_stats = now + telemetry::PUBLISH_EVERY;
        if let Ok(s) = self.cap.stats() {
            self.stats.update(s);
            telemetry::source_drops(&[
                (telemetry::DROP_KERNEL, self.stats.dropped),
                (telemetry::DROP_INTERFACE, self.stats.if_dropped),
            ]);
        }
    }

    /// The kernel counters as of now.
    pub fn stats(&mut self) -> PcapStats {
        self.poll_stats(true);
        self.stats
    }

    /// Waits up to the read timeout for the capture descriptor to become readable.
    fn wait_readable(&mut self) -> bool {
        use std::os::fd::AsRawFd;
        let mut pfd = libc::pollfd {
            fd: self.cap.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = (self.timeout.0 / 1_000_000) as libc::c_int;
        // SAFETY: one valid pollfd; EINTR (a signal) simply counts as a timeout.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }

    /// An idle tick on the wall clock.
    fn idle(&mut self) -> SourceEvent<'static> {
        self.stats_due = true;
        // A frame may still sit in a kernel block up to one timeout old: keep the
        // clock that far behind the wall so it never overtakes such frames.
        let t = wall_now().saturating_sub(self.timeout);
        self.last_tick = t.max(self.last_tick);
        SourceEvent::Idle(t)
    }

    pub fn link(&self) -> LinkType {
        self.link
    }
}

impl PacketSource for PcapSource {
    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
        self.reads = self.reads.wrapping_add(1);
        if self.reads.is_multiple_of(4096) || self.stats_due {
            self.stats_due = false;
            self.poll_stats(false);
        }
        if self.last_pkt.since(self.last_tick) >= TICK_EVERY {
            self.last_tick = self.last_pkt;
            return Ok(SourceEvent::Idle(self.last_pkt));
        }
        if !self.pending && !self.wait_readable() {
            return Ok(self.idle());
        }
        match self.cap.next_packet() {
            Ok(p) => {
                self.pending = true;
                let h = p.header;
                // With nanosecond precision tv_usec holds nanoseconds.
                // time_t and suseconds_t are narrower on 32-bit targets.
                #[allow(clippy::unnecessary_cast)]
                let ts = Ts(h.ts.tv_sec as i64 * 1_000_000_000 + h.ts.tv_usec as i64);
                if ts > self.last_pkt {
                    self.last_pkt = ts;
                    if self.last_tick == Ts::ZERO {
                        self.last_tick = ts;
                    }
                }
                Ok(SourceEvent::Packet(RawPacket {
                    ts,
                    link: self.link,
                    data: p.data,
                    orig_len: h.len,
                }))
            }
            // Nonblocking: nothing buffered.
            Err(pcap::Error::TimeoutExpired) => {
                self.pending = false;
                self.stats_due = true;
                let t = wall_now().saturating_sub(self.timeout);
                self.last_tick = t.max(self.last_tick);
                Ok(SourceEvent::Idle(t))
            }
            Err(pcap::Error::NoMorePackets) => Ok(SourceEvent::End),
            Err(e) => Err(live_error(&self.interface, e)),
        }
    }

    fn is_live(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_counters_widen_across_wrap() {
        let mut s = PcapStats::default();
        let stat = |r, d, i| pcap::Stat {
            received: r,
            dropped: d,
            if_dropped: i,
        };
        s.update(stat(u32::MAX - 1, 5, 0));
        s.update(stat(3, 7, 1));
        assert_eq!(s.received, u32::MAX as u64 + 4);
        assert_eq!(s.dropped, 7);
        assert_eq!(s.if_dropped, 1);
    }
}
