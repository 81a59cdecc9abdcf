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
