//! Turns planned steps (DNS lookups, connections) into compact packet records, and those
//! records into Ethernet frames. Records are small (no payload bytes): frames are built
//! only when written, into one reused buffer.

use std::net::IpAddr;

use etherparse::{PacketBuilder, PacketBuilderStep, TcpOptionElement, VlanId};

use super::dns_msg;
use super::rng::Rng;
use crate::time::{Dur, Ts};

pub const SYN: u8 = 1;
pub const ACK: u8 = 2;
pub const PSH: u8 = 4;
pub const FIN: u8 = 8;
pub const RST: u8 = 16;

/// How payload bytes of a flow's sized messages look on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Opaque bytes (already-encrypted or binary protocols).
    Opaque,
    /// TLS application-data records.
    Tls,
    /// HTTP/1.1: a request line and headers, or a status line and a sized body.
    Http,
    /// git pkt-lines, one per segment (git://, port 9418).
    PktLine,
}

/// One flow of an episode: addressing and how to draw its payload.
#[derive(Clone, Debug)]
pub struct Flow {
    pub client: IpAddr,
    pub server: IpAddr,
    pub cport: u16,
    pub sport: u16,
    pub tcp: bool,
    pub cmac: [u8; 6],
    pub smac: [u8; 6],
    pub vlan: Option<u16>,
    pub cttl: u8,
    pub sttl: u8,
    pub style: Style,
    /// Captured payload bytes per packet; 0 captures everything.
    pub snap: u16,
    pub filler_off: u32,
}

#[derive(Clone, Copy, Debug)]
pub enum Content {
    None,
    Blob { idx: u32, off: u32 },
    Msg { off: u32, total: u32 },
}

#[derive(Clone, Copy, Debug)]
pub struct Pkt {
    pub ts: i64,
    pub flow: u32,
    pub from_client: bool,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub len: u32,
    pub content: Content,
}

/// Application message of one side of an exchange.
#[derive(Clone, Debug)]
pub enum Msg {
    None,
    Sized(u32),
    Bytes(Vec<u8>),
}

impl Msg {
    pub fn len(&self) -> u32 {
        match self {
            Msg::None => 0,
            Msg::Sized(n) => *n,
            Msg::Bytes(b) => b.len() as u32,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request/response (or push/ack) turn of a connection.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// Idle time before this turn starts (after the previous turn ended).
    pub gap: Dur,
    pub up: Msg,
    pub down: Msg,
    pub server_first: bool,
}

impl Exchange {
    pub fn new(gap: Dur, up: Msg, down: Msg) -> Exchange {
        Exchange {
            gap,
            up,
            down,
            server_first: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    Fin,
    ServerFin,
    Rst,
    /// Still open when the capture ends.
    Open,
}

/// The packets of one episode, sorted by time; consumed front to back by the merger.
#[derive(Default)]
pub struct Rendered {
    pub flows: Vec<Flow>,
    pub blobs: Vec<Vec<u8>>,
    pub pkts: Vec<Pkt>,
    pub pos: usize,
}

impl Rendered {
    pub fn add_flow(&mut self, f: Flow) -> u32 {
        self.flows.push(f);
        (self.flows.len() - 1) as u32
    }

    fn blob(&mut self, b: Vec<u8>) -> u32 {
        self.blobs.push(b);
        (self.blobs.len() - 1) as u32
    }

    pub fn finish(&mut self) {
        // Stable: packets of one flow at the same instant keep their causal order.
        self.pkts.sort_by_key(|p| p.ts);
    }

    pub fn next_ts(&self) -> Option<i64> {
        self.pkts.get(self.pos).map(|p| p.ts)
    }
}

/// Link/IP parameters of a connection, before ports and payload.
pub struct ConnParams {
    pub rtt: Dur,
    /// Sender rate for bulk segments, bytes per second.
    pub rate: f64,
    pub mss: u32,
}

fn tiny(rng: &mut Rng) -> i64 {
    rng.range(20_000, 250_000) as i64
}

/// Sends one application message as segments; returns the time of the last segment.
#[allow(clippy::too_many_arguments)]
fn tcp_send(
    r: &mut Rendered,
    rng: &mut Rng,
    fid: u32,
    from_client: bool,
    msg: &Msg,
    mut t: i64,
    seq: &mut u32,
    peer_seq: &mut u32,
    p: &ConnParams,
) -> i64 {
    let total = msg.len();
    if total == 0 {
        return t;
    }
    let blob = match msg {
        Msg::Bytes(b) => Some(r.blob(b.clone())),
        _ => None,
    };
    let per_byte_ns = 1e9 / p.rate;
    let mut off = 0u32;
    let mut nseg = 0u32;
    let rtt = p.rtt.0;
    while off < total {
        let mut len = (total - off).min(p.mss);
        // No runt tail segment: protocols framed per segment need a few bytes.
        if (1..6).contains(&(total - off - len)) {
            len = total - off - 6;
        }
        let last = off + len == total;
        let content = match blob {
            Some(idx) => Content::Blob { idx, off },
            None => Content::Msg { off, total },
        };
        r.pkts.push(Pkt {
            ts: t,
            flow: fid,
            from_client,
            flags: ACK | if last { PSH } else { 0 },
            seq: *seq,
            ack: *peer_seq,
            len,
            content,
        });
        *seq = seq.wrapping_add(len);
        nseg += 1;
        // Delayed ACK: every second segment and the last one; seen one RTT later when
        // the receiver is the far side (the sensor sits next to the client).
        if nseg.is_multiple_of(2) || last {
            let at = if from_client { t + rtt } else { t + tiny(rng) };
            r.pkts.push(Pkt {
                ts: at,
                flow: fid,
                from_client: !from_client,
                flags: ACK,
                seq: *peer_seq,
                ack: *seq,
                len: 0,
                content: Content::None,
            });
        }
        off += len;
        if !last {
            t += (len as f64 * per_byte_ns) as i64 + rng.range(1_000, 30_000) as i64;
        }
    }
    t
}

/// Renders a TCP connection; returns the time of its last packet.
#[allow(clippy::too_many_arguments)]
pub fn tcp_conn(
    r: &mut Rendered,
    rng: &mut Rng,
    fid: u32,
    start: Ts,
    p: &ConnParams,
    exchanges: &[Exchange],
    close: Close,
) -> i64 {
    let rtt = p.rtt.0;
    let mut cseq = rng.next_u32();
    let mut sseq = rng.next_u32();
    let mut t = start.0;
    let pk = |ts, from_client, flags, seq, ack| Pkt {
        ts,
        flow: fid,
        from_client,
        flags,
        seq,
        ack,
        len: 0,
        content: Content::None,
    };
    r.pkts.push(pk(t, true, SYN, cseq, 0));
    cseq = cseq.wrapping_add(1);
    t += rtt;
    r.pkts.push(pk(t, false, SYN | ACK, sseq, cseq));
    sseq = sseq.wrapping_add(1);
    t += tiny(rng);
    r.pkts.push(pk(t, true, ACK, cseq, sseq));
    for e in exchanges {
        t += e.gap.0;
        let think = |rng: &mut Rng| rng.range(200_000, 30_000_000) as i64;
        if e.server_first {
            if !e.down.is_empty() {
                t = tcp_send(r, rng, fid, false, &e.down, t, &mut sseq, &mut cseq, p);
            }
            if !e.up.is_empty() {
                t += tiny(rng) + rng.range(0, 5_000_000) as i64;
                t = tcp_send(r, rng, fid, true, &e.up, t, &mut cseq, &mut sseq, p);
                t += rtt;
            }
        } else {
            if !e.up.is_empty() {
                t = tcp_send(r, rng, fid, true, &e.up, t, &mut cseq, &mut sseq, p);
            }
            if !e.down.is_empty() {
                t += rtt + think(rng);
                t = tcp_send(r, rng, fid, false, &e.down, t, &mut sseq, &mut cseq, p);
            } else if !e.up.is_empty() {
                t += rtt;
            }
        }
    }
    match close {
        Close::Fin => {
            t += rng.range(100_000, 200_000_000) as i64;
            r.pkts.push(pk(t, true, FIN | ACK, cseq, sseq));
            cseq = cseq.wrapping_add(1);
            t += rtt;
            r.pkts.push(pk(t, false, FIN | ACK, sseq, cseq));
            sseq = sseq.wrapping_add(1);
            t += tiny(rng);
            r.pkts.push(pk(t, true, ACK, cseq, sseq));
        }
        Close::ServerFin => {
            t += rng.range(100_000, 200_000_000) as i64;
            r.pkts.push(pk(t, false, FIN | ACK, sseq, cseq));
            sseq = sseq.wrapping_add(1);
            t += tiny(rng);
            r.pkts.push(pk(t, true, FIN | ACK, cseq, sseq));
            cseq = cseq.wrapping_add(1);
            t += rtt;
            r.pkts.push(pk(t, false, ACK, sseq, cseq));
        }
        Close::Rst => {
            t += rng.range(100_000, 50_000_000) as i64;
            r.pkts.push(pk(t, true, RST | ACK, cseq, sseq));
        }
        Close::Open => {}
    }
    t
}

/// Renders UDP request/response turns; returns the time of the last datagram.
pub fn udp_conn(
    r: &mut Rendered,
    rng: &mut Rng,
    fid: u32,
    start: Ts,
    rtt: Dur,
    exchanges: &[Exchange],
) -> i64 {
    let mut t = start.0;
    for (i, e) in exchanges.iter().enumerate() {
        if i > 0 {
            t += e.gap.0;
        }
        let order: [(bool, &Msg); 2] = if e.server_first {
            [(false, &e.down), (true, &e.up)]
        } else {
            [(true, &e.up), (false, &e.down)]
        };
        for (k, (from_client, m)) in order.into_iter().enumerate() {
            if m.is_empty() {
                continue;
            }
            if k == 1 {
                t += if from_client {
                    tiny(rng)
                } else {
                    rtt.0 + rng.range(50_000, 3_000_000) as i64
                };
            }
            let blob = match m {
                Msg::Bytes(b) => Some(r.blob(b.clone())),
                _ => None,
            };
            let total = m.len();
            let mut off = 0;
            while off < total {
                let len = (total - off).min(1400);
                let content = match blob {
                    Some(idx) => Content::Blob { idx, off },
                    None => Content::Msg { off, total: len },
                };
                r.pkts.push(Pkt {
                    ts: t,
                    flow: fid,
                    from_client,
                    flags: 0,
                    seq: 0,
                    ack: 0,
                    len,
                    content,
                });
                off += len;
                if off < total {
                    t += rng.range(5_000, 200_000) as i64;
                }
            }
        }
    }
    t
}

/// A DNS question and the resolver's answer as the client sees it.
#[derive(Clone, Debug)]
pub struct DnsAnswer {
    pub qname: String,
    pub v6: bool,
    pub cnames: Vec<String>,
    pub addrs: Vec<IpAddr>,
    pub ttl: u32,
    pub cname_ttl: u32,
}

/// Renders one lookup (UDP, or TCP with the length prefix); returns the answer time.
pub fn dns_lookup(
    r: &mut Rendered,
    rng: &mut Rng,
    fid: u32,
    start: Ts,
    delay: Dur,
    ans: &DnsAnswer,
    tcp: bool,
) -> i64 {
    let id = rng.next_u32() as u16;
    let q = dns_msg::query(id, &ans.qname, ans.v6);
    let a = dns_msg::response(
        id,
        &ans.qname,
        ans.v6,
        &ans.cnames,
        &ans.addrs,
        ans.ttl,
        ans.cname_ttl,
    );
    if tcp {
        let p = ConnParams {
            rtt: Dur(rng.range(150_000, 600_000) as i64),
            rate: 50e6,
            mss: 1460,
        };
        let mut ex = Exchange::new(
            Dur::ZERO,
            Msg::Bytes(dns_msg::with_length_prefix(&q)),
            Msg::Bytes(dns_msg::with_length_prefix(&a)),
        );
        ex.gap = Dur(0);
        let before = r.pkts.len();
        tcp_conn(r, rng, fid, start, &p, &[ex], Close::Fin);
        // Answer time: the first server data segment.
        r.pkts[before..]
            .iter()
            .find(|p| !p.from_client && p.len > 0)
            .map(|p| p.ts)
            .unwrap_or(start.0)
    } else {
        let qi = r.blob(q);
        let ai = r.blob(a);
        let (ql, al) = (
            r.blobs[qi as usize].len() as u32,
            r.blobs[ai as usize].len() as u32,
        );
        r.pkts.push(Pkt {
            ts: start.0,
            flow: fid,
            from_client: true,
            flags: 0,
            seq: 0,
            ack: 0,
            len: ql,
            content: Content::Blob { idx: qi, off: 0 },
        });
        let at = start.0 + delay.0;
        r.pkts.push(Pkt {
            ts: at,
            flow: fid,
            from_client: false,
            flags: 0,
            seq: 0,
            ack: 0,
            len: al,
            content: Content::Blob { idx: ai, off: 0 },
        });
        at
    }
}

pub const FILLER_LEN: usize = 1 << 16;

/// Builds frames from packet records into reused buffers.
pub struct FrameBuilder {
    filler: Vec<u8>,
    payload: Vec<u8>,
    pub frame: Vec<u8>,
}

impl Default for FrameBuilder {
    fn default() -> Self {
        Self::new()
    }
}

const TLS_REC: u32 = 16384 + 5;

/// Where the TLS record headers of a `total`-byte message start, and their lengths.
fn tls_records(total: u32, mut f: impl FnMut(u32, u32)) {
    let mut pos = 0;
    while pos < total {
        let rest = total - pos;
        let len = if rest <= TLS_REC {
            rest
        } else if rest - TLS_REC < 6 {
            rest - 6
        } else {
            TLS_REC
        };
        f(pos, len.saturating_sub(5));
        pos += len;
    }
}

impl FrameBuilder {
    pub fn new() -> FrameBuilder {
        // Fixed filler: high-entropy like ciphertext, independent of the seed.
        let mut filler = vec![0u8; FILLER_LEN];
        Rng::new(0x5eed_f111).fill(&mut filler);
        FrameBuilder {
            filler,
            payload: Vec::with_capacity(70_000),
            frame: Vec::with_capacity(70_000),
        }
    }

    /// Fills the first `keep` payload bytes of `p` (all of them unless snapped).
    fn fill_payload(&mut self, flow: &Flow, blobs: &[Vec<u8>], p: &Pkt, keep: u32) {
        self.payload.clear();
        match p.content {
            Content::None => {}
            Content::Blob { idx, off } => {
                let b = &blobs[idx as usize];
                let s = off as usize;
                self.payload.extend_from_slice(&b[s..s + keep as usize]);
            }
            Content::Msg { off, total } => {
                let mut need = keep as usize;
                let mut at = (flow.filler_off as usize + off as usize) % FILLER_LEN;
                while need > 0 {
                    let n = need.min(FILLER_LEN - at);
                    self.payload.extend_from_slice(&self.filler[at..at + n]);
                    need -= n;
                    at = 0;
                }
                if flow.style == Style::Http && off == 0 {
                    let head = http_head(p.from_client, total);
                    let n = head.len().min(self.payload.len());
                    self.payload[..n].copy_from_slice(&head[..n]);
                }
                if flow.style == Style::PktLine && p.len >= 4 {
                    let h = format!("{:04x}", p.len);
                    let h = &h[..keep.min(4) as usize];
                    self.payload[..h.len()].copy_from_slice(h.as_bytes());
                }
                if flow.style == Style::Tls && total > 5 {
                    let (lo, hi) = (off, off + keep);
                    let payload = &mut self.payload;
                    tls_records(total, |start, len| {
                        let hdr = [0x17, 0x03, 0x03, (len >> 8) as u8, len as u8];
                        for (i, b) in hdr.iter().enumerate() {
                            let a = start + i as u32;
                            if a >= lo && a < hi {
                                payload[(a - lo) as usize] = *b;
                            }
                        }
                    });
                }
            }
        }
    }

    /// Builds the frame of `p` into `self.frame`; returns (captured length, wire length).
    pub fn build(&mut self, flow: &Flow, blobs: &[Vec<u8>], p: &Pkt) -> (usize, usize) {
        // Snapped packets: only the captured bytes are built; lengths are patched below.
        let keep = if flow.snap > 0 && p.len > flow.snap as u32 {
            flow.snap as u32
        } else {
            p.len
        };
        self.fill_payload(flow, blobs, p, keep);
        let (smac, dmac, src, dst, sport, dport, ttl, win) = if p.from_client {
            (
                flow.cmac,
                flow.smac,
                flow.client,
                flow.server,
                flow.cport,
                flow.sport,
                flow.cttl,
                65535,
            )
        } else {
            (
                flow.smac,
                flow.cmac,
                flow.server,
                flow.client,
                flow.sport,
                flow.cport,
                flow.sttl,
                64240,
            )
        };
        let eth = PacketBuilder::ethernet2(smac, dmac);
        let ip: PacketBuilderStep<etherparse::IpHeaders> = match flow.vlan {
            Some(v) => {
                let s = eth.single_vlan(VlanId::try_new(v).unwrap_or(VlanId::ZERO));
                match (src, dst) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => s.ipv4(a.octets(), b.octets(), ttl),
                    (a, b) => s.ipv6(v6(a), v6(b), ttl),
                }
            }
            None => match (src, dst) {
                (IpAddr::V4(a), IpAddr::V4(b)) => eth.ipv4(a.octets(), b.octets(), ttl),
                (a, b) => eth.ipv6(v6(a), v6(b), ttl),
            },
        };
        self.frame.clear();
        if flow.tcp {
            let mut t = ip.tcp(sport, dport, p.seq, win);
            if p.flags & SYN != 0 {
                t = t.syn();
                let mss = if src.is_ipv4() { 1460 } else { 1440 };
                t = t
                    .options(&[
                        TcpOptionElement::MaximumSegmentSize(mss),
                        TcpOptionElement::Noop,
                        TcpOptionElement::WindowScale(6),
                        TcpOptionElement::SelectiveAcknowledgementPermitted,
                        TcpOptionElement::Noop,
                        TcpOptionElement::Noop,
                    ])
                    .expect("static options fit");
            }
            if p.flags & ACK != 0 {
                t = t.ack(p.ack);
            }
            if p.flags & PSH != 0 {
                t = t.psh();
            }
            if p.flags & FIN != 0 {
                t = t.fin();
            }
            if p.flags & RST != 0 {
                t = t.rst();
            }
            t.write(&mut self.frame, &self.payload).expect("frame fits");
        } else {
            let u = ip.udp(sport, dport);
            u.write(&mut self.frame, &self.payload).expect("frame fits");
        }
        let extra = (p.len - keep) as usize;
        if extra > 0 {
            patch_lengths(&mut self.frame, flow.vlan.is_some(), flow.tcp, extra as u16);
        }
        (self.frame.len(), self.frame.len() + extra)
    }
}

/// The start of an HTTP message of exactly `total` bytes (the rest is body or padding).
fn http_head(request: bool, total: u32) -> Vec<u8> {
    if request && total < 300 {
        let base =
            "GET /pkg/ HTTP/1.1\r\nHost: mirror\r\nAccept: */*\r\nX-Req: \r\n\r\n".len() as u32;
        let pad = total.saturating_sub(base) as usize;
        let mut h = format!(
            "GET /pkg/ HTTP/1.1\r\nHost: mirror\r\nAccept: */*\r\nX-Req: {}\r\n\r\n",
            "a".repeat(pad)
        )
        .into_bytes();
        h.truncate(total as usize);
        return h;
    }
    let start = if request {
        "POST /upload HTTP/1.1\r\nHost: mirror\r\n"
    } else {
        "HTTP/1.1 200 OK\r\n"
    };
    let base = (start.len() + "Content-Length: \r\n\r\n".len()) as u32;
    for digits in 1..=10u32 {
        let body = total.saturating_sub(base + digits);
        if body.to_string().len() as u32 == digits {
            return format!("{start}Content-Length: {body}\r\n\r\n").into_bytes();
        }
    }
    Vec::new()
}

/// Grows the IP (and UDP) length fields by `extra` uncaptured payload bytes, so the
/// headers tell the true size. The transport checksum covers only what was built; nobody
/// can verify it without the missing bytes.
fn patch_lengths(frame: &mut [u8], vlan: bool, tcp: bool, extra: u16) {
    let l3 = if vlan { 18 } else { 14 };
    let add = |f: &mut [u8], at: usize| {
        let v = u16::from_be_bytes([f[at], f[at + 1]]).wrapping_add(extra);
        f[at..at + 2].copy_from_slice(&v.to_be_bytes());
    };
    let l4 = if frame[l3] >> 4 == 4 {
        let ihl = (frame[l3] & 0x0f) as usize * 4;
        add(frame, l3 + 2);
        frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let mut sum: u32 = frame[l3..l3 + ihl]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]) as u32)
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        frame[l3 + 10..l3 + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        l3 + ihl
    } else {
        add(frame, l3 + 4);
        l3 + 40
    };
    if !tcp {
        add(frame, l4 + 4);
    }
}

fn v6(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(x) => x.octets(),
        IpAddr::V4(x) => x.to_ipv6_mapped().octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapped_frames_keep_true_lengths() {
        let mut r = Rendered::default();
        let flow = Flow {
            client: "10.1.0.2".parse().unwrap(),
            server: "93.184.216.34".parse().unwrap(),
            cport: 50000,
            sport: 443,
            tcp: true,
            cmac: [2, 0, 0, 0, 0, 1],
            smac: [2, 0, 0, 0, 0, 2],
            vlan: Some(10),
            cttl: 64,
            sttl: 52,
            style: Style::Tls,
            snap: 96,
            filler_off: 0,
        };
        let f = r.add_flow(flow.clone());
        let mut fb = FrameBuilder::new();
        let p = Pkt {
            ts: 0,
            flow: f,
            from_client: false,
            flags: ACK,
            seq: 1,
            ack: 1,
            len: 1460,
            content: Content::Msg {
                off: 0,
                total: 5000,
            },
        };
        let (cap, wire) = fb.build(&flow, &r.blobs, &p);
        assert_eq!(wire, 18 + 20 + 20 + 1460);
        assert_eq!(cap, 18 + 20 + 20 + 96);
        let h = etherparse::Ipv4HeaderSlice::from_slice(&fb.frame[18..]).unwrap();
        assert_eq!(h.total_len(), 20 + 20 + 1460);
        assert!(h.to_header().calc_header_checksum() == h.header_checksum());
        let mut udp = flow.clone();
        udp.tcp = false;
        let (cap, wire) = fb.build(&udp, &r.blobs, &Pkt { len: 200, ..p });
        assert_eq!((cap, wire), (18 + 28 + 96, 18 + 28 + 200));
        assert_eq!(
            u16::from_be_bytes([fb.frame[18 + 24], fb.frame[18 + 25]]),
            208
        );
    }

    #[test]
    fn tls_records_cover_message() {
        for total in [6u32, 100, 16389, 16390, 16394, 16395, 40_000, 65_536] {
            let mut sum = 0;
            let mut next = 0;
            tls_records(total, |start, len| {
                assert_eq!(start, next);
                assert!((1..=16384).contains(&len), "total {total} len {len}");
                sum += len + 5;
                next = start + len + 5;
            });
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn tcp_seq_ack_consistent() {
        let mut r = Rendered::default();
        let mut rng = Rng::new(1);
        let f = r.add_flow(Flow {
            client: "10.1.0.2".parse().unwrap(),
            server: "93.184.216.34".parse().unwrap(),
            cport: 50000,
            sport: 443,
            tcp: true,
            cmac: [2, 0, 0, 0, 0, 1],
            smac: [2, 0, 0, 0, 0, 2],
            vlan: Some(10),
            cttl: 64,
            sttl: 52,
            style: Style::Tls,
            snap: 0,
            filler_off: 0,
        });
        let p = ConnParams {
            rtt: Dur::from_millis(20),
            rate: 10e6,
            mss: 1460,
        };
        let ex = [Exchange::new(Dur::ZERO, Msg::Sized(5000), Msg::Sized(3000))];
        tcp_conn(
            &mut r,
            &mut rng,
            f,
            Ts::from_secs(1000),
            &p,
            &ex,
            Close::Fin,
        );
        r.finish();
        let up: u32 = r.pkts.iter().filter(|p| p.from_client).map(|p| p.len).sum();
        let down: u32 = r
            .pkts
            .iter()
            .filter(|p| !p.from_client)
            .map(|p| p.len)
            .sum();
        assert_eq!((up, down), (5000, 3000));
        let syn = r.pkts[0];
        let fin = r
            .pkts
            .iter()
            .find(|p| p.from_client && p.flags & FIN != 0)
            .unwrap();
        assert_eq!(fin.seq, syn.seq.wrapping_add(1 + 5000));
        let mut fb = FrameBuilder::new();
        for p in &r.pkts {
            let (cap, wire) = fb.build(&r.flows[0], &r.blobs, p);
            assert_eq!(cap, wire);
            etherparse::SlicedPacket::from_ethernet(&fb.frame).unwrap();
        }
    }
}
