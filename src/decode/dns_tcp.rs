//! DNS over TCP: two-byte length-prefixed messages, reassembled across segments
//! (RFC 1035 4.2.2, RFC 7766). One [`DnsTcpStream`] per direction of a TCP flow to or
//! from port 53; gaps and out-of-order segments are skipped and counted, never waited for
//! without bound.
//!
//! Each direction is a small state machine over the sequence space:
//! - bytes already seen (retransmissions, overlaps) are cut off and counted;
//! - a segment that arrives ahead of a hole is held (one segment, a copy) until the hole
//!   fills; a second one ahead gives the hole up as a gap: waiting is bounded by one
//!   segment, memory by one segment plus one message;
//! - a gap inside a message whose length is known discards that message and skips to the
//!   next boundary; a gap that swallowed a boundary loses sync, and the next segment is
//!   assumed to start a message if its length prefix is plausible (DNS clients and
//!   servers write one message, or several whole ones, per segment);
//! - payload cut by the snap length (`payload.len() < wire_len`) is a gap of the missing
//!   bytes.
//!
//! Whole messages inside one segment are handed out in place, without a copy; only a
//! message split across segments is copied into the stream's buffer, which grows with
//! the bytes that actually arrived, never with what a length prefix claims.
//!
//! Panic contract: never panics on any input.

use super::dns::MAX_MESSAGE_LEN;

/// Smallest DNS message (its header). A length prefix below this cannot start a message:
/// used to recognise a message boundary after a gap.
pub const MIN_MESSAGE_LEN: usize = 12;

/// A segment further than this from the expected sequence number (either way) is not a
/// retransmission or a reordering but a jump (a missed SYN, a reused port, a forged
/// segment): the stream resynchronises at it. 1 MiB is far beyond any window a DNS
/// connection opens.
pub const MAX_SEQ_JUMP: u32 = 1 << 20;

/// Largest segment copied to wait for a hole to fill (64 KiB: one TSO/GRO super-segment).
pub const MAX_HELD_SEGMENT: usize = 65536;

/// Per-stream counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsTcpStats {
    /// Whole messages handed out.
    pub messages: u64,
    /// Holes given up on (lost segments, snap-length cuts, sequence jumps).
    pub gaps: u64,
    /// Segments that arrived ahead of a hole, or late into a hole already given up on.
    pub out_of_order: u64,
    /// Segments that repeated bytes already seen (wholly or in part).
    pub retransmits: u64,
    /// Messages whose length prefix was over the stream's limit; skipped, not buffered.
    pub oversize: u64,
}

/// One direction of a DNS-over-TCP connection.
#[derive(Debug)]
pub struct DnsTcpStream {
    /// Next sequence number expected; learnt from the SYN or the first segment.
    next_seq: Option<u32>,
    /// Messages with a longer length prefix are skipped and counted as oversize.
    max_message: usize,
    /// The message being reassembled, its 2-byte length prefix included.
    buf: Vec<u8>,
    /// Bytes still to discard of a message that will not be handed out.
    skip: usize,
    /// The stream position is known: at a message boundary, inside `buf`, or in `skip`.
    synced: bool,
    /// A segment that arrived ahead of a hole: its sequence number and wire length; its
    /// bytes are in `held_data`.
    held: Option<(u32, u32)>,
    held_data: Vec<u8>,
    /// The last hole given up on, `[start, end)`, so that its late bytes are told apart
    /// from retransmissions.
    last_hole: Option<(u32, u32)>,
    pub stats: DnsTcpStats,
}

impl Default for DnsTcpStream {
    fn default() -> Self {
        Self::new()
    }
}

impl DnsTcpStream {
    pub fn new() -> DnsTcpStream {
        Self::with_max_message(MAX_MESSAGE_LEN)
    }

    /// A stream that skips messages longer than `max_message` bytes instead of buffering
    /// them.
    pub fn with_max_message(max_message: usize) -> DnsTcpStream {
        DnsTcpStream {
            next_seq: None,
            max_message: max_message.min(MAX_MESSAGE_LEN),
            buf: Vec::new(),
            skip: 0,
            synced: false,
            held: None,
            held_data: Vec::new(),
            last_hole: None,
            stats: DnsTcpStats::default(),
        }
    }

    /// The SYN (or SYN-ACK) of this direction: data starts at `isn + 1`, on a message
    /// boundary. Resets the stream.
    pub fn syn(&mut self, isn: u32) {
        let stats = self.stats;
        let max = self.max_message;
        *self = Self::with_max_message(max);
        self.stats = stats;
        self.next_seq = Some(isn.wrapping_add(1));
        self.synced = true;
    }

    /// Bytes the stream holds now (partial message and held segment).
    pub fn held_bytes(&self) -> usize {
        self.buf.len() + self.held_data.len()
    }

    /// One TCP segment of this direction: `seq` its sequence number, `payload` the
    /// captured payload, `wire_len` the payload length on the wire (from the IP header;
    /// more than `payload.len()` under a snap length). Calls `emit` with each DNS message
    /// completed, without its length prefix.
    pub fn push(&mut self, seq: u32, payload: &[u8], wire_len: u32, emit: &mut dyn FnMut(&[u8])) {
        let payload = &payload[..payload.len().min(wire_len as usize)];
        if wire_len == 0 {
            return;
        }
        let next = *self.next_seq.get_or_insert(seq);
        if seq_distance(next, seq).unsigned_abs() > u64::from(MAX_SEQ_JUMP) {
            // Not this stream's sequence space any more: start over at this segment.
            self.drop_held();
            self.gap(usize::MAX);
            self.next_seq = Some(seq);
        }
        loop {
            let next = self.next_seq.unwrap_or(seq);
            let ahead = seq_distance(next, seq);
            if ahead <= 0 {
                self.in_order(seq, payload, wire_len, emit);
                self.release_held(emit);
                return;
            }
            let whole = payload.len() == wire_len as usize;
            match self.held {
                Some((hseq, _)) if hseq == seq => {
                    // The held segment again.
                    self.stats.retransmits += 1;
                    return;
                }
                None if whole && payload.len() <= MAX_HELD_SEGMENT => {
                    // Wait (for one segment at most) for the hole to fill.
                    self.stats.out_of_order += 1;
                    self.held = Some((seq, wire_len));
                    self.held_data.clear();
                    self.held_data.extend_from_slice(payload);
                    return;
                }
                Some((hseq, _)) if seq_distance(next, hseq) < ahead => {
                    // Two segments ahead of the hole: give it up up to the held one,
                    // then look at this segment again.
                    self.skip_to(hseq);
                    self.release_held(emit);
                }
                _ => {
                    self.skip_to(seq);
                    self.in_order(seq, payload, wire_len, emit);
                    self.release_held(emit);
                    return;
                }
            }
        }
    }

    /// End of the connection (or idle): gives up on a hole still waited for and hands
    /// out what the held segment completes. A partial message is dropped.
    pub fn flush(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if let Some((hseq, _)) = self.held {
            self.skip_to(hseq);
            self.release_held(emit);
        }
        self.buf.clear();
    }

    fn drop_held(&mut self) {
        self.held = None;
        self.held_data.clear();
    }

    /// Processes the held segment once the stream has reached it.
    fn release_held(&mut self, emit: &mut dyn FnMut(&[u8])) {
        let Some((hseq, hlen)) = self.held else {
            return;
        };
        let next = self.next_seq.unwrap_or(hseq);
        if seq_distance(next, hseq) > 0 {
            return;
        }
        self.held = None;
        let data = std::mem::take(&mut self.held_data);
        self.in_order(hseq, &data, hlen, emit);
        self.held_data = data;
        self.held_data.clear();
    }

    /// Gives up the hole between the expected sequence number and `seq`.
    fn skip_to(&mut self, seq: u32) {
        let next = self.next_seq.unwrap_or(seq);
        let missing = seq.wrapping_sub(next) as usize;
        if missing > 0 {
            self.gap(missing);
            self.last_hole = Some((next, seq));
        }
        self.next_seq = Some(seq);
    }

    /// A segment at or behind the expected sequence number.
    fn in_order(&mut self, seq: u32, payload: &[u8], wire_len: u32, emit: &mut dyn FnMut(&[u8])) {
        let next = self.next_seq.unwrap_or(seq);
        let behind = next.wrapping_sub(seq) as usize;
        let wire = wire_len as usize;
        if behind >= wire {
            if self.in_last_hole(seq) {
                self.stats.out_of_order += 1;
            } else {
                self.stats.retransmits += 1;
            }
            return;
        }
        if behind > 0 {
            self.stats.retransmits += 1;
        }
        if let Some(new) = payload.get(behind..) {
            if !new.is_empty() {
                self.feed(new, emit);
            }
        }
        let captured_end = payload.len().max(behind);
        if captured_end < wire {
            self.gap(wire - captured_end);
        }
        self.next_seq = Some(seq.wrapping_add(wire_len));
    }

    fn in_last_hole(&self, seq: u32) -> bool {
        self.last_hole
            .is_some_and(|(start, end)| seq_distance(start, seq) >= 0 && seq_distance(seq, end) > 0)
    }

    /// `missing` bytes of the stream will never be seen.
    fn gap(&mut self, missing: usize) {
        self.stats.gaps += 1;
        // Bytes left of the current message, when its length is known.
        let rest = if self.skip > 0 {
            Some(self.skip)
        } else if self.buf.len() >= 2 {
            Some(2 + prefix(&self.buf) - self.buf.len())
        } else {
            None
        };
        self.buf.clear();
        match rest {
            Some(rest) if missing <= rest => {
                // The message is lost, but the next one starts `rest - missing` bytes on.
                self.skip = rest - missing;
                self.synced = true;
            }
            _ => {
                self.skip = 0;
                self.synced = false;
            }
        }
    }

    /// New, contiguous stream bytes.
    fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8])) {
        if !self.synced {
            // Lost (or never had) the message boundaries: assume this segment starts a
            // message, if its length prefix could be one.
            if data.len() < 2 || prefix(data) < MIN_MESSAGE_LEN {
                return;
            }
            self.synced = true;
        }
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            if self.buf.is_empty() {
                if data.len() < 2 {
                    self.buf.extend_from_slice(data);
                    return;
                }
                let len = prefix(data);
                data = &data[2..];
                if !self.accept_len(len) {
                    continue;
                }
                if data.len() >= len {
                    self.stats.messages += 1;
                    emit(&data[..len]);
                    data = &data[len..];
                } else {
                    self.buf.extend_from_slice(&(len as u16).to_be_bytes());
                    self.buf.extend_from_slice(data);
                    return;
                }
                continue;
            }
            if self.buf.len() == 1 {
                self.buf.push(data[0]);
                data = &data[1..];
                let len = prefix(&self.buf);
                if !self.accept_len(len) {
                    self.buf.clear();
                    continue;
                }
            }
            let want = 2 + prefix(&self.buf) - self.buf.len();
            let take = want.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if take == want {
                self.stats.messages += 1;
                emit(&self.buf[2..]);
                self.buf.clear();
                // Keep a small buffer for the next split message, not a 64 KiB one.
                self.buf.shrink_to(4096);
            }
        }
    }

    /// A message of `len` bytes starts: false (and skipped) when over the limit.
    fn accept_len(&mut self, len: usize) -> bool {
        if len > self.max_message {
            self.stats.oversize += 1;
            self.skip = len;
            return false;
        }
        true
    }
}

/// The big-endian length prefix at the start of `b` (at least 2 bytes).
fn prefix(b: &[u8]) -> usize {
    match b {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => 0,
    }
}

/// How far `seq` is ahead of `from` in sequence space (negative: behind), wrap-around
/// included.
fn seq_distance(from: u32, seq: u32) -> i64 {
    i64::from(seq.wrapping_sub(from) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::dns::{parse_response, DnsEndpoints, DnsError, DnsKind};
    use crate::time::Ts;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    /// Feeds `(seq, payload, wire_len)` segments; returns the messages handed out.
    fn run(s: &mut DnsTcpStream, segs: &[(u32, &[u8], u32)]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for &(seq, payload, wire) in segs {
            s.push(seq, payload, wire, &mut |m: &[u8]| out.push(m.to_vec()));
        }
        out
    }

    fn whole(seq: u32, payload: &[u8]) -> (u32, &[u8], u32) {
        (seq, payload, payload.len() as u32)
    }

    /// A framed synthetic message: length prefix + `len` bytes whose first two bytes are
    /// `id` (so messages can be told apart).
    fn framed(id: u16, len: usize) -> Vec<u8> {
        let mut v = (len as u16).to_be_bytes().to_vec();
        let mut body = vec![0u8; len];
        body[..2].copy_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&body);
        v
    }

    fn ids(msgs: &[Vec<u8>]) -> Vec<u16> {
        msgs.iter()
            .map(|m| u16::from_be_bytes([m[0], m[1]]))
            .collect()
    }

    // ---------------------------------------------------------------- real captures

    /// dns-tcp-multi-message-per-segment_dns-tcp-multirequest-buffer.pcap frame 4:
    /// 59092 -> 53, seq 415912045 (SYN at 415912044), 650 bytes: 20 length-prefixed
    /// queries "0.google.com" .. "19.google.com" A, ids 0..19.
    const MULTI_QUERIES: &str = "
        001e 0000 0100 0001 0000 0000 0000 013006676f6f676c6503636f6d0000010001
        001e000101000001000000000000013106676f6f676c6503636f6d0000010001
        001e000201000001000000000000013206676f6f676c6503636f6d0000010001
        001e000301000001000000000000013306676f6f676c6503636f6d0000010001
        001e000401000001000000000000013406676f6f676c6503636f6d0000010001
        001e000501000001000000000000013506676f6f676c6503636f6d0000010001
        001e000601000001000000000000013606676f6f676c6503636f6d0000010001
        001e000701000001000000000000013706676f6f676c6503636f6d0000010001
        001e000801000001000000000000013806676f6f676c6503636f6d0000010001
        001e000901000001000000000000013906676f6f676c6503636f6d0000010001
        001f000a0100000100000000000002313006676f6f676c6503636f6d0000010001
        001f000b0100000100000000000002313106676f6f676c6503636f6d0000010001
        001f000c0100000100000000000002313206676f6f676c6503636f6d0000010001
        001f000d0100000100000000000002313306676f6f676c6503636f6d0000010001
        001f000e0100000100000000000002313406676f6f676c6503636f6d0000010001
        001f000f0100000100000000000002313506676f6f676c6503636f6d0000010001
        001f00100100000100000000000002313606676f6f676c6503636f6d0000010001
        001f00110100000100000000000002313706676f6f676c6503636f6d0000010001
        001f00120100000100000000000002313806676f6f676c6503636f6d0000010001
        001f00130100000100000000000002313906676f6f676c6503636f6d0000010001";

    /// Same capture, frames 8 and 10: 53 -> 59092, seq 2901291201 and 2901291283 (SYN at
    /// 2901291200): NXDOMAIN for "0.google.com" and "1.google.com", SOA in authority.
    const MULTI_RESPONSE_0: &str = "
        0050 0000 8183 0001 0000 0001 0000 013006676f6f676c6503636f6d0000010001
        c00e000600010000003c0026036e7332c00e09646e732d61646d696ec00e082d36ed
        0000038400000384000007080000003c";
    const MULTI_RESPONSE_1: &str = "
        0050 0001 8183 0001 0000 0001 0000 013106676f6f676c6503636f6d0000010001
        c00e000600010000003c0026036e7331c00e09646e732d61646d696ec00e082d36ed
        0000038400000384000007080000003c";

    #[test]
    fn twenty_queries_in_one_segment_come_out_in_place() {
        let seg = hex(MULTI_QUERIES);
        assert_eq!(seg.len(), 650);
        let mut s = DnsTcpStream::new();
        s.syn(415912044);
        let msgs = run(&mut s, &[whole(415912045, &seg)]);
        assert_eq!(ids(&msgs), (0..20).collect::<Vec<u16>>());
        assert_eq!(s.stats.messages, 20);
        assert_eq!(s.held_bytes(), 0);
        assert_eq!(
            s.stats,
            DnsTcpStats {
                messages: 20,
                ..DnsTcpStats::default()
            }
        );
    }

    #[test]
    fn responses_in_separate_segments_parse_as_nxdomain() {
        let (r0, r1) = (hex(MULTI_RESPONSE_0), hex(MULTI_RESPONSE_1));
        let mut s = DnsTcpStream::new();
        s.syn(2901291200);
        let msgs = run(&mut s, &[whole(2901291201, &r0), whole(2901291283, &r1)]);
        assert_eq!(msgs.len(), 2);
        let ep = DnsEndpoints {
            ts: Ts(0),
            src: "10.0.0.1".parse().unwrap(),
            sport: 53,
            dst: "10.0.0.2".parse().unwrap(),
            dport: 59092,
            transport: 6,
        };
        let a = parse_response(&ep, DnsKind::Dns, &msgs[1]).unwrap();
        assert_eq!((a.id, a.query.as_str(), a.rcode), (1, "1.google.com", 3));
    }

    /// null-loopback-dns-tcp-incomplete_dns-incomplete.pcap, client 59194 -> 5353 (SYN
    /// at 4172888100): frame 5 a whole 30-byte query (TXT google.net); frames 9 and 11
    /// split the next one, "google.com" TXT, id 0x1032, after its first 14 bytes.
    #[test]
    fn one_message_split_over_two_segments() {
        let f5 = hex("001c 1133 0100 0001 0000 0000 0000 06676f6f676c65036e65740000100001");
        let f9 = hex("001c 1032 0100 0001 0000 0000 0000");
        let f11 = hex("06676f6f676c6503636f6d0000100001");
        let mut s = DnsTcpStream::new();
        s.syn(4172888100);
        let msgs = run(
            &mut s,
            &[
                whole(4172888101, &f5),
                whole(4172888131, &f9),
                whole(4172888145, &f11),
            ],
        );
        assert_eq!(ids(&msgs), [0x1133, 0x1032]);
        assert_eq!(msgs[1], [&f9[2..], &f11[..]].concat());
        let ep = DnsEndpoints {
            ts: Ts(0),
            src: "127.0.0.1".parse().unwrap(),
            sport: 59194,
            dst: "127.0.0.1".parse().unwrap(),
            dport: 5353,
            transport: 6,
        };
        assert_eq!(
            parse_response(&ep, DnsKind::Mdns, &msgs[1]),
            Err(DnsError::NotResponse)
        );
        assert_eq!(s.stats.gaps + s.stats.retransmits + s.stats.out_of_order, 0);
    }

    /// dns-tcp-with-gap_dns-tcp-ts-gap.pcap, client 46574 -> 53 (SYN at 870718828): frame
    /// 4 query id 0 at 870718829, the id 1 query (870718863, 34 bytes) never captured,
    /// frame 10 query id 2 at 870718897.
    #[test]
    fn missing_segment_is_a_gap_and_the_next_message_still_comes_out() {
        let q0 = hex("0020 0000 0100 0001 0000 0000 0000 0377777706676f6f676c6503636f6d0000010001");
        let q2 = hex("0020 0002 0100 0001 0000 0000 0000 0377777706676f6f676c6503636f6d0000010001");
        let mut s = DnsTcpStream::new();
        s.syn(870718828);
        let mut msgs = run(&mut s, &[whole(870718829, &q0), whole(870718897, &q2)]);
        // The segment after the hole waits (one segment at most) until the flow ends.
        s.flush(&mut |m: &[u8]| msgs.push(m.to_vec()));
        assert_eq!(ids(&msgs), [0, 2]);
        assert_eq!((s.stats.gaps, s.stats.out_of_order), (1, 1));
    }

    // ---------------------------------------------------------------- synthetic

    #[test]
    fn retransmitted_segment_is_skipped() {
        let m = framed(7, 20);
        let mut s = DnsTcpStream::new();
        s.syn(99);
        let msgs = run(&mut s, &[whole(100, &m), whole(100, &m)]);
        assert_eq!(ids(&msgs), [7]);
        assert_eq!(s.stats.retransmits, 1);
    }

    #[test]
    fn overlapping_retransmission_keeps_only_new_bytes() {
        let stream = [framed(1, 20), framed(2, 20)].concat();
        let mut s = DnsTcpStream::new();
        s.syn(0);
        let msgs = run(&mut s, &[whole(1, &stream[..15]), whole(6, &stream[5..])]);
        assert_eq!(ids(&msgs), [1, 2]);
        assert_eq!(s.stats.retransmits, 1);
    }

    #[test]
    fn reordered_segments_are_put_back_in_order() {
        let m = framed(3, 60);
        let (a, b, c) = (&m[..20], &m[20..40], &m[40..]);
        let mut s = DnsTcpStream::new();
        s.syn(999);
        let msgs = run(&mut s, &[whole(1000, a), whole(1040, c), whole(1020, b)]);
        assert_eq!(ids(&msgs), [3]);
        assert_eq!(s.stats.out_of_order, 1);
        assert_eq!(s.stats.gaps, 0);
    }

    #[test]
    fn lost_segment_inside_a_message_resyncs_at_the_next_boundary() {
        // M1 split over A and B; B is lost; M2 and M3 follow in their own segments.
        let m1 = framed(1, 40);
        let (m2, m3) = (framed(2, 30), framed(3, 30));
        let a = &m1[..10];
        let (b_len, c_seq) = (m1.len() - 10, 1 + m1.len() as u32);
        let d_seq = c_seq + m2.len() as u32;
        let mut s = DnsTcpStream::new();
        s.syn(0);
        let msgs = run(&mut s, &[whole(1, a), whole(c_seq, &m2), whole(d_seq, &m3)]);
        assert_eq!(ids(&msgs), [2, 3]);
        assert_eq!((s.stats.gaps, s.stats.out_of_order), (1, 1));
        // B arriving now is late data of a hole given up on.
        let late = vec![0u8; b_len];
        assert!(run(&mut s, &[whole(11, &late)]).is_empty());
        assert_eq!(s.stats.out_of_order, 2);
    }

    #[test]
    fn sequence_numbers_wrap_around() {
        let m = [framed(0xaaaa, 30), framed(0xbbbb, 12)].concat();
        let isn = u32::MAX - 10;
        let mut s = DnsTcpStream::new();
        s.syn(isn);
        let first = isn.wrapping_add(1);
        let msgs = run(
            &mut s,
            &[
                whole(first, &m[..20]),
                whole(first.wrapping_add(20), &m[20..]),
            ],
        );
        assert_eq!(ids(&msgs), [0xaaaa, 0xbbbb]);
        assert_eq!(s.stats.gaps + s.stats.retransmits + s.stats.out_of_order, 0);
    }

    #[test]
    fn oversize_length_prefix_is_skipped_not_buffered() {
        let big = framed(1, 500);
        let small = framed(2, 12);
        let mut s = DnsTcpStream::with_max_message(100);
        s.syn(0);
        let mut msgs = run(&mut s, &[whole(1, &big[..300])]);
        assert_eq!(s.held_bytes(), 0);
        msgs.extend(run(
            &mut s,
            &[whole(301, &[&big[300..], &small[..]].concat())],
        ));
        assert_eq!(ids(&msgs), [2]);
        assert_eq!(s.stats.oversize, 1);
    }

    #[test]
    fn one_byte_segments() {
        let m = [framed(5, 14), framed(6, 12)].concat();
        let mut s = DnsTcpStream::new();
        s.syn(41);
        let segs: Vec<(u32, &[u8], u32)> = m
            .chunks(1)
            .enumerate()
            .map(|(i, b)| (42 + i as u32, b, 1))
            .collect();
        assert_eq!(ids(&run(&mut s, &segs)), [5, 6]);
    }

    #[test]
    fn snap_length_cut_is_a_gap_and_the_next_message_is_found() {
        // One segment of M1 (32 bytes on the wire) + M2 (42 bytes), captured up to 50.
        let seg = [framed(1, 30), framed(2, 40)].concat();
        let m3 = framed(3, 20);
        let mut s = DnsTcpStream::new();
        s.syn(0);
        let msgs = run(
            &mut s,
            &[
                (1, &seg[..50], seg.len() as u32),
                whole(1 + seg.len() as u32, &m3),
            ],
        );
        assert_eq!(ids(&msgs), [1, 3]);
        assert_eq!(s.stats.gaps, 1);
    }

    #[test]
    fn mid_stream_start_waits_for_a_plausible_boundary() {
        // No SYN; the first segment is the tail of a message (prefix bytes 00 03 < 12).
        let tail = [0u8, 3, 9, 9, 9];
        let m = framed(4, 20);
        let mut s = DnsTcpStream::new();
        let msgs = run(&mut s, &[whole(5000, &tail), whole(5005, &m)]);
        assert_eq!(ids(&msgs), [4]);
    }

    #[test]
    fn sequence_jump_resynchronises() {
        let (m1, m2) = (framed(1, 20), framed(2, 20));
        let mut s = DnsTcpStream::new();
        s.syn(0);
        let msgs = run(&mut s, &[whole(1, &m1[..10]), whole(3_000_000_000, &m2)]);
        assert_eq!(ids(&msgs), [2]);
        assert_eq!(s.stats.gaps, 1);
    }

    #[test]
    fn huge_length_prefix_buffers_only_what_arrived() {
        let mut s = DnsTcpStream::new();
        s.syn(0);
        let mut seg = vec![0xff, 0xff];
        seg.extend_from_slice(&[0u8; 100]);
        assert!(run(&mut s, &[whole(1, &seg)]).is_empty());
        assert!(s.held_bytes() <= 102);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_segments_never_panic_and_stay_bounded(
                syn in proptest::option::of(any::<u32>()),
                segs in proptest::collection::vec(
                    (any::<i16>(), proptest::collection::vec(any::<u8>(), 0..300), 0u32..400),
                    0..40,
                ),
            ) {
                let mut s = DnsTcpStream::new();
                let mut seq = syn.unwrap_or(7);
                if let Some(isn) = syn {
                    s.syn(isn);
                    seq = isn.wrapping_add(1);
                }
                for (delta, payload, extra) in segs {
                    let at = seq.wrapping_add(delta as i32 as u32);
                    let wire = payload.len() as u32 + extra % 3 * extra;
                    s.push(at, &payload, wire, &mut |m: &[u8]| assert!(m.len() <= MAX_MESSAGE_LEN));
                    prop_assert!(s.held_bytes() <= MAX_MESSAGE_LEN + 2 + MAX_HELD_SEGMENT);
                    seq = seq.wrapping_add(payload.len() as u32);
                }
                s.flush(&mut |_| {});
            }

            #[test]
            fn any_split_of_a_valid_stream_yields_its_messages(
                lens in proptest::collection::vec(12usize..200, 1..6),
                cuts in proptest::collection::vec(any::<u16>(), 0..10),
            ) {
                let stream: Vec<u8> = lens.iter().enumerate()
                    .flat_map(|(i, &l)| framed(i as u16, l)).collect();
                let mut points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % stream.len()).collect();
                points.push(0);
                points.push(stream.len());
                points.sort_unstable();
                points.dedup();
                let mut s = DnsTcpStream::new();
                s.syn(u32::MAX - 50);
                let mut out = Vec::new();
                for w in points.windows(2) {
                    let seq = (u32::MAX - 49).wrapping_add(w[0] as u32);
                    s.push(seq, &stream[w[0]..w[1]], (w[1] - w[0]) as u32, &mut |m: &[u8]| out.push(m.to_vec()));
                }
                prop_assert_eq!(ids(&out), (0..lens.len() as u16).collect::<Vec<_>>());
            }
        }
    }
}
