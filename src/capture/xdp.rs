//! Live capture through AF_XDP sockets, one per receive queue.
//!
//! Library choice: xsk-rs. It is MIT licensed and maintained, binds libxdp (which loads
//! the default XDP redirect program for us) and offers generic (SKB) mode explicitly.
//! xdpilone is pure Rust but EUPL-1.2, a copyleft licence that does not fit portent's
//! MIT licence, and loads no XDP program by itself; afxdp is unmaintained and pinned to
//! a libbpf API that no longer exists. The cost of xsk-rs is a C build (libxdp and
//! libbpf are vendored and linked statically; see `.ci/deps`).
//!
//! Threads: `--queues N` starts one capture thread per queue (queue ids 0..N). Each
//! copies the frames of a ring read into a chunk and sends it on one bounded channel;
//! [`XdpSource`] reads that channel, so N queues merge into the single source the
//! pipeline has. A full channel blocks the queue's thread, the kernel ring then fills
//! and the kernel counts the drops (exported as `cause="ring"`): every loss is counted
//! where it happens, and the frames are copied once anyway (decode builds summaries).
//!
//! Timestamps: AF_XDP gives no receive time per frame, so frames are stamped with the
//! wall clock when their ring read returns (one reading per read, not per frame).
//!
//! Privileges: loading the XDP program needs CAP_NET_ADMIN and CAP_BPF (CAP_SYS_ADMIN
//! on kernels before 5.8); the socket needs CAP_NET_RAW; registering the UMEM counts
//! against RLIMIT_MEMLOCK unless CAP_IPC_LOCK.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use xsk_rs::config::{
    BindFlags, FrameSize, Interface, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{Socket, Umem};

use super::live::{live_error, wall_now, LiveOptions, TICK_EVERY};
use super::pcapfile::CaptureError;
use super::{LinkType, RawPacket};
use crate::pipeline::{PacketSource, SourceEvent};
use crate::telemetry;
use crate::time::Ts;

/// Where the XDP program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic where the driver has no XDP.
    Auto,
    Native,
    /// Generic (SKB) mode: works on any device, copies every frame.
    Generic,
}

impl XdpMode {
    pub fn parse(s: &str) -> Result<XdpMode, String> {
        match s {
            "auto" => Ok(XdpMode::Auto),
            "native" | "drv" => Ok(XdpMode::Native),
            "generic" | "skb" => Ok(XdpMode::Generic),
            _ => Err(format!("XDP mode `{s}`: expected auto, native or generic")),
        }
    }
}

#[derive(Clone, Debug)]
pub struct XdpOptions {
    pub live: LiveOptions,
    pub queues: u32,
    pub mode: XdpMode,
}

/// UMEM frame size: one page, room for a 1500-byte MTU frame plus headroom.
const FRAME_SIZE: u32 = 4096;
/// Descriptors taken from the RX ring per read.
const READ_BATCH: usize = 256;
/// Chunks in flight between the queue threads and the pipeline, per queue.
const CHUNKS_PER_QUEUE: usize = 64;

/// Frames of one ring read, copied out of the UMEM.
struct Chunk {
    ts: Ts,
    buf: Vec<u8>,
    /// (offset in `buf`, captured length, length on the wire)
    frames: Vec<(u32, u32, u32)>,
}

/// Kernel ring counters of one socket (XDP_STATISTICS), cumulative.
#[derive(Default)]
struct QueueStats {
    rx_dropped: AtomicU64,
    rx_ring_full: AtomicU64,
    rx_invalid: AtomicU64,
    fill_empty: AtomicU64,
}

/// XDP ring drop counters summed over the queues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpStats {
    /// Frames the kernel could not put on an RX ring (no free frame, ring full, bad
    /// descriptor).
    pub ring_dropped: u64,
    /// Times the fill ring was empty (a cause of `ring_dropped`, not extra drops).
    pub fill_ring_empty: u64,
}

pub struct XdpSource {
    rx: Receiver<Chunk>,
    recycle: Sender<Chunk>,
    cur: Option<Chunk>,
    idx: usize,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stats: Arc<Vec<QueueStats>>,
    failure: Arc<Mutex<Option<String>>>,
    interface: String,
    timeout: Duration,
    last_pkt: Ts,
    last_tick: Ts,
    next_stats: Instant,
    /// The mode the program was attached in ("native" or "generic").
    pub mode: &'static str,
    /// Sockets and UMEMs of ended queue threads, released by the thread that drops the
    /// source: after `--user` only that thread kept the capabilities libxdp needs to
    /// detach its program (capabilities are per thread).
    leftovers: Receiver<Box<dyn std::any::Any + Send>>,
    _promisc: Option<Promisc>,
}

impl XdpSource {
    pub fn open(o: &XdpOptions) -> Result<XdpSource, CaptureError> {
        let iface = o.live.interface.clone();
        if o.live.filter.is_some() {
            return Err(live_error(
                &iface,
                "--filter is a libpcap (cBPF) filter; AF_XDP captures everything on its queues",
            ));
        }
        let queues = o.queues.max(1);
        raise_memlock();
        let promisc = if o.live.promisc {
            Some(Promisc::enable(&iface).map_err(|e| live_error(&iface, e))?)
        } else {
            None
        };
        let frames = umem_frames(o.live.buffer_mb);
        let (tx, rx) = bounded::<Chunk>(CHUNKS_PER_QUEUE * queues as usize);
        let (recycle, recycle_rx) = bounded::<Chunk>(CHUNKS_PER_QUEUE * queues as usize);
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<Vec<QueueStats>> =
            Arc::new((0..queues).map(|_| QueueStats::default()).collect());
        let failure = Arc::new(Mutex::new(None));
        let (ready_tx, ready_rx) = bounded::<Result<&'static str, String>>(queues as usize);
        let (leftovers_tx, leftovers) = bounded(queues as usize);
        let mut threads = Vec::new();
        for q in 0..queues {
            let ctx = QueueCtx {
                iface: iface.clone(),
                queue: q,
                frames,
                mode: o.mode,
                snaplen: o.live.snaplen.max(64) as usize,
                timeout_ms: o.live.timeout_ms.max(1) as i32,
                tx: tx.clone(),
                recycle: recycle_rx.clone(),
                stop: stop.clone(),
                stats: stats.clone(),
                failure: failure.clone(),
                leftovers: leftovers_tx.clone(),
            };
            let ready = ready_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("portent-xsk-{q}"))
                .spawn(move || ctx.run(ready))
                .map_err(|e| live_error(&iface, e))?;
            threads.push(h);
        }
        drop(tx);
        let mut mode = "native";
        let mut err = None;
        for _ in 0..queues {
            match ready_rx.recv() {
                Ok(Ok(m)) => mode = m,
                Ok(Err(e)) => err = Some(e),
                Err(_) => err = Some("a queue thread ended before opening".into()),
            }
        }
        let src = XdpSource {
            rx,
            recycle,
            cur: None,
            idx: 0,
            stop,
            threads,
            stats,
            failure,
            interface: iface.clone(),
            timeout: Duration::from_millis(o.live.timeout_ms.max(1) as u64),
            last_pkt: Ts::ZERO,
            last_tick: Ts::ZERO,
            next_stats: Instant::now(),
            mode,
            leftovers,
            _promisc: promisc,
        };
        match err {
            // Dropping `src` stops and joins the threads that did open.
            Some(e) => Err(live_error(&iface, e)),
            None => Ok(src),
        }
    }

    /// Ring drop counters as of the last read (threads refresh them every second).
    pub fn stats(&self) -> XdpStats {
        let mut s = XdpStats::default();
        for q in self.stats.iter() {
            s.ring_dropped += q.rx_dropped.load(Ordering::Relaxed)
                + q.rx_ring_full.load(Ordering::Relaxed)
                + q.rx_invalid.load(Ordering::Relaxed);
            s.fill_ring_empty += q.fill_empty.load(Ordering::Relaxed);
        }
        s
    }

    fn publish(&mut self, force: bool) {
        let now = Instant::now();
        if !force && now < self.next_stats {
            return;
        }
        self.next_stats = now + telemetry::PUBLISH_EVERY;
        let s = self.stats();
        telemetry::source_drops(&[(telemetry::DROP_RING, s.ring_dropped)]);
        telemetry::xdp_fill_ring_empty(s.fill_ring_empty);
    }
}

impl Drop for XdpSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Unblock threads waiting for room, then wait for them to detach.
        while self.rx.try_recv().is_ok() {}
        for h in self.threads.drain(..) {
            while !h.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = h.join();
        }
        // Detaches the XDP program (when the last socket goes) on this thread.
        while let Ok(x) = self.leftovers.try_recv() {
            drop(x);
        }
    }
}

impl PacketSource for XdpSource {
    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
        while self.cur.as_ref().is_none_or(|c| self.idx >= c.frames.len()) {
            if let Some(mut c) = self.cur.take() {
                c.buf.clear();
                c.frames.clear();
                let _ = self.recycle.try_send(c);
            }
            if self.last_pkt.since(self.last_tick) >= TICK_EVERY {
                self.last_tick = self.last_pkt;
                self.publish(false);
                return Ok(SourceEvent::Idle(self.last_pkt));
            }
            match self.rx.recv_timeout(self.timeout) {
                Ok(c) => {
                    if c.ts > self.last_pkt {
                        self.last_pkt = c.ts;
                        if self.last_tick == Ts::ZERO {
                            self.last_tick = c.ts;
                        }
                    }
                    self.cur = Some(c);
                    self.idx = 0;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.publish(false);
                    let t = wall_now();
                    self.last_tick = t.max(self.last_tick);
                    return Ok(SourceEvent::Idle(t));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.publish(true);
                    let f = self.failure.lock().ok().and_then(|mut f| f.take());
                    return match f {
                        Some(e) => Err(live_error(&self.interface, e)),
                        None => Ok(SourceEvent::End),
                    };
                }
            }
        }
        let i = self.idx;
        self.idx += 1;
        let Some(c) = &self.cur else {
            return Ok(SourceEvent::End);
        };
        let (off, cl, ol) = c.frames[i];
        Ok(SourceEvent::Packet(RawPacket {
            ts: c.ts,
            link: LinkType::Ethernet,
            data: &c.buf[off as usize..(off + cl) as usize],
            orig_len: ol,
        }))
    }

    fn is_live(&self) -> bool {
        true
    }
}

/// Frames per queue's UMEM: `buffer_mb` worth, a power of two (ring sizes must be),
/// between 2048 and 262144.
fn umem_frames(buffer_mb: u32) -> u32 {
    let want = (buffer_mb as u64 * (1 << 20) / FRAME_SIZE as u64).clamp(2048, 1 << 18) as u32;
    1 << (31 - want.leading_zeros())
}

/// Best effort: UMEM pages count against RLIMIT_MEMLOCK.
fn raise_memlock() {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid struct; failure (no privilege) is harmless.
    unsafe {
        libc::setrlimit(libc::RLIMIT_MEMLOCK, &r);
    }
}

/// Promiscuous mode held by a membership on an AF_PACKET socket: the kernel counts
/// such requests and undoes them when the socket closes, even if we crash.
struct Promisc(libc::c_int);

impl Promisc {
    fn enable(iface: &str) -> Result<Promisc, String> {
        let name = std::ffi::CString::new(iface).map_err(|e| e.to_string())?;
        // SAFETY: plain syscalls on a socket we own; `mreq` is a valid packet_mreq.
        unsafe {
            let idx = libc::if_nametoindex(name.as_ptr());
            if idx == 0 {
                return Err("no such interface".into());
            }
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            if fd < 0 {
                return Err(format!(
                    "promiscuous mode: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let mut mreq: libc::packet_mreq = std::mem::zeroed();
            mreq.mr_ifindex = idx as libc::c_int;
            mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
            let rc = libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
            );
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(format!("promiscuous mode: {e}"));
            }
            Ok(Promisc(fd))
        }
    }
}

impl Drop for Promisc {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe {
            libc::close(self.0);
        }
    }
}

/// What one queue thread needs.
struct QueueCtx {
    iface: String,
    queue: u32,
    frames: u32,
    mode: XdpMode,
    snaplen: usize,
    timeout_ms: i32,
    tx: Sender<Chunk>,
    recycle: Receiver<Chunk>,
    stop: Arc<AtomicBool>,
    stats: Arc<Vec<QueueStats>>,
    failure: Arc<Mutex<Option<String>>>,
    leftovers: Sender<Box<dyn std::any::Any + Send>>,
}

fn qsize(n: u32) -> Result<QueueSize, String> {
    QueueSize::new(n).map_err(|e| e.to_string())
}

impl QueueCtx {
    /// Creates the UMEM and socket in the given mode.
    #[allow(clippy::type_complexity)]
    fn open(
        &self,
        flags: XdpFlags,
        bind: BindFlags,
    ) -> Result<
        (
            Umem,
            Vec<xsk_rs::FrameDesc>,
            xsk_rs::RxQueue,
            xsk_rs::FillQueue,
        ),
        String,
    > {
        let ucfg = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME_SIZE).map_err(|e| e.to_string())?)
            .fill_queue_size(qsize(self.frames)?)
            .comp_queue_size(qsize(64)?)
            .build()
            .map_err(|e| e.to_string())?;
        let count = NonZeroU32::new(self.frames).ok_or("no frames")?;
        let (umem, descs) = Umem::new(ucfg, count, false).map_err(|e| format!("UMEM: {e}"))?;
        let scfg = SocketConfig::builder()
            .rx_queue_size(qsize(self.frames)?)
            .tx_queue_size(qsize(64)?)
            .xdp_flags(flags)
            .bind_flags(bind)
            .build();
        let ifname: Interface = self.iface.parse().map_err(|_| "bad interface name")?;
        // SAFETY: the UMEM is not shared, so the program-load flag rule does not apply.
        let (_tx, rxq, fq_cq) =
            unsafe { Socket::new(scfg, &umem, &ifname, self.queue) }.map_err(|e| {
                format!(
                    "queue {}: {e}: {:?}",
                    self.queue,
                    std::error::Error::source(&e)
                )
            })?;
        let (fq, _cq) = fq_cq.ok_or("no fill queue")?;
        Ok((umem, descs, rxq, fq))
    }

    fn run(self, ready: Sender<Result<&'static str, String>>) {
        let native = (XdpFlags::XDP_FLAGS_DRV_MODE, BindFlags::empty());
        let generic = (XdpFlags::XDP_FLAGS_SKB_MODE, BindFlags::XDP_COPY);
        let opened = match self.mode {
            XdpMode::Native => self.open(native.0, native.1).map(|s| (s, "native")),
            XdpMode::Generic => self.open(generic.0, generic.1).map(|s| (s, "generic")),
            XdpMode::Auto => self
                .open(native.0, native.1)
                .map(|s| (s, "native"))
                .or_else(|_| self.open(generic.0, generic.1).map(|s| (s, "generic"))),
        };
        let ((umem, mut descs, mut rxq, mut fq), mode) = match opened {
            Ok(x) => x,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        // SAFETY: every descriptor belongs to this UMEM and none is in use.
        unsafe {
            fq.produce(&descs);
        }
        let _ = ready.send(Ok(mode));
        drop(ready);
        let mut next_stats = Instant::now();
        let mut batch = vec![descs[0]; READ_BATCH];
        descs.clear();
        let stats = &self.stats[self.queue as usize];
        while !self.stop.load(Ordering::Relaxed) {
            // SAFETY: descriptors read from the RX ring are ours until produced back.
            let n = match unsafe { rxq.poll_and_consume(&mut batch, self.timeout_ms) } {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    if let Ok(mut f) = self.failure.lock() {
                        *f = Some(format!("queue {}: poll: {e}", self.queue));
                    }
                    break;
                }
            };
            if n > 0 {
                let mut c = self.recycle.try_recv().unwrap_or_else(|_| Chunk {
                    ts: Ts::ZERO,
                    buf: Vec::with_capacity(READ_BATCH * 1600),
                    frames: Vec::with_capacity(READ_BATCH),
                });
                c.ts = wall_now();
                for d in &batch[..n] {
                    // SAFETY: `d` came from this UMEM's RX ring.
                    let data = unsafe { umem.data(d) };
                    let bytes = data.contents();
                    let cl = bytes.len().min(self.snaplen);
                    c.frames
                        .push((c.buf.len() as u32, cl as u32, bytes.len() as u32));
                    c.buf.extend_from_slice(&bytes[..cl]);
                }
                // SAFETY: the frames were copied out; hand them back to the kernel.
                unsafe {
                    let mut done = 0;
                    while done < n {
                        done += fq.produce(&batch[done..n]);
                    }
                }
                // Blocks while the pipeline is behind: the ring then fills and the
                // kernel counts the drops.
                let mut c = Some(c);
                while let Some(chunk) = c.take() {
                    match self.tx.send_timeout(chunk, Duration::from_millis(100)) {
                        Ok(()) => {}
                        Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                            if self.stop.load(Ordering::Relaxed) {
                                break;
                            }
                            c = Some(back);
                        }
                        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => break,
                    }
                }
            }
            if Instant::now() >= next_stats {
                next_stats = Instant::now() + telemetry::PUBLISH_EVERY;
                if let Ok(s) = rxq.fd().xdp_statistics() {
                    stats.rx_dropped.store(s.rx_dropped(), Ordering::Relaxed);
                    stats
                        .rx_ring_full
                        .store(s.rx_ring_full(), Ordering::Relaxed);
                    stats
                        .rx_invalid
                        .store(s.rx_invalid_descs(), Ordering::Relaxed);
                    stats
                        .fill_empty
                        .store(s.rx_fill_ring_empty_descs(), Ordering::Relaxed);
                }
            }
        }
        if let Ok(s) = rxq.fd().xdp_statistics() {
            stats.rx_dropped.store(s.rx_dropped(), Ordering::Relaxed);
            stats
                .rx_ring_full
                .store(s.rx_ring_full(), Ordering::Relaxed);
            stats
                .rx_invalid
                .store(s.rx_invalid_descs(), Ordering::Relaxed);
            stats
                .fill_empty
                .store(s.rx_fill_ring_empty_descs(), Ordering::Relaxed);
        }
        // The socket goes first, then its UMEM; the owner's thread drops them.
        let _ = self.leftovers.send(Box::new((rxq, fq, umem)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn umem_frames_are_powers_of_two_within_bounds() {
        assert_eq!(umem_frames(0), 2048);
        assert_eq!(umem_frames(64), 16384);
        assert_eq!(umem_frames(65), 16384);
        assert_eq!(umem_frames(100_000), 1 << 18);
    }
}
