//! IPv4 and IPv6 fragment reassembly with bounded memory and timeouts (see [`super`]).
//!
//! Datagrams are keyed by (src, dst, id, protocol) for IPv4 (RFC 791) and by (src, dst,
//! id) for IPv6 (RFC 8200, where only the first fragment's Next Header counts).
//!
//! Overlap policy: **first data wins** (the Linux/BSD "first" policy of Suricata and
//! Zeek's target-based defrag): bytes already held are never overwritten; a later
//! fragment only fills the holes it covers. Every fragment that overlaps held bytes is
//! counted in `fragment_overlaps`, whether or not its bytes agreed.
//!
//! Bounds: at most `max_datagrams` datagrams and `max_bytes` buffered bytes; to make room
//! the oldest datagram is given up (counted in `fragment_timeouts`). A datagram older
//! than `timeout` in packet time is given up on the next [`Reassembler::expire`] or the
//! next fragment of the same key.
//!
//! Panic contract (see [`super`]): offsets are bounded by [`MAX_DATAGRAM_DATA`] before any
//! buffer grows, and every copy is between checked ranges.

use std::collections::VecDeque;
use std::net::IpAddr;

use hashbrown::HashMap;

use super::{DecodeAnomalies, DecodeError};
use crate::time::{Dur, Ts};

/// Largest fragmentable part of a datagram: the 16-bit IP length field bounds it.
pub const MAX_DATAGRAM_DATA: usize = 65535;
/// Disjoint byte ranges held per datagram. In-order or reversed arrival keeps one range;
/// many means attacker-chosen tiny fragments with holes, each costing a range entry.
/// Range lists are not counted in `max_bytes`; this caps them at 2 KiB per datagram.
const MAX_RANGES: usize = 128;

/// Limits of the reassembly table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragLimits {
    /// Datagrams being reassembled at once.
    pub max_datagrams: usize,
    /// Bytes held over all datagrams.
    pub max_bytes: usize,
    /// A datagram not complete after this much packet time is dropped (Linux: 30 s).
    pub timeout: Dur,
}

impl Default for FragLimits {
    fn default() -> Self {
        FragLimits {
            max_datagrams: 4096,
            max_bytes: 4 << 20,
            timeout: Dur::from_secs(30),
        }
    }
}

/// Which datagram a fragment belongs to. IPv6 keys carry `proto: 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
}

/// One fragment: its fragmentable data and where it goes.
pub(crate) struct Piece<'b> {
    pub key: FragKey,
    pub ts: Ts,
    /// Byte offset of `data` in the datagram's fragmentable part.
    pub offset: usize,
    /// More fragments follow (IPv4 MF, IPv6 M).
    pub more: bool,
    pub data: &'b [u8],
    /// Bytes of IP header before the fragmentable part (IPv4 IHL; IPv6 40 plus the
    /// unfragmentable extension headers). Only the first fragment's counts.
    pub header_len: usize,
    /// Protocol of the fragmentable part's first header. Only the first fragment's counts.
    pub next_header: u8,
}

/// A complete datagram's fragmentable part, borrowed from the reassembler.
pub(crate) struct Whole<'a> {
    pub data: &'a [u8],
    pub header_len: usize,
    pub next_header: u8,
}

struct Datagram {
    started: Ts,
    /// Tells this datagram apart from an earlier one of the same key in `order`.
    serial: u64,
    /// Fragmentable part, as long as the furthest byte received.
    buf: Vec<u8>,
    /// Received ranges `[start, end)`, sorted, disjoint and not touching.
    have: Vec<(usize, usize)>,
    /// Length of the fragmentable part, once the last fragment arrived.
    end: Option<usize>,
    /// `(header_len, next_header)` of the first fragment, once it arrived.
    first: Option<(usize, u8)>,
}

pub struct Reassembler {
    limits: FragLimits,
    table: HashMap<FragKey, Datagram>,
    /// Datagrams in creation order, oldest first; entries whose serial no longer matches
    /// the table are stale and skipped.
    order: VecDeque<(FragKey, u64)>,
    held: usize,
    next_serial: u64,
    /// The last completed datagram, lent out until the next call.
    done: Vec<u8>,
}

impl Reassembler {
    pub fn new(limits: FragLimits) -> Reassembler {
        Reassembler {
            limits,
            table: HashMap::new(),
            order: VecDeque::new(),
            held: 0,
            next_serial: 0,
            done: Vec::new(),
        }
    }

    /// Drops datagrams that timed out; returns how many.
    pub fn expire(&mut self, now: Ts) -> u64 {
        let mut dropped = 0;
        while let Some(&(key, serial)) = self.order.front() {
            match self.table.get(&key) {
                Some(d) if d.serial == serial => {
                    if !self.timed_out(d, now) {
                        break;
                    }
                    self.remove(&key);
                    dropped += 1;
                }
                _ => {}
            }
            self.order.pop_front();
        }
        dropped
    }

    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Datagrams being reassembled.
    pub fn datagrams(&self) -> usize {
        self.table.len()
    }

    fn timed_out(&self, d: &Datagram, now: Ts) -> bool {
        now.since(d.started) > self.limits.timeout
    }

    fn remove(&mut self, key: &FragKey) -> Option<Datagram> {
        let d = self.table.remove(key)?;
        self.held -= d.buf.len();
        Some(d)
    }

    /// Gives up the oldest datagram other than `keep`; false if there is none.
    fn evict_oldest(&mut self, keep: Option<&FragKey>) -> bool {
        let mut kept = None;
        let mut evicted = false;
        while let Some((key, serial)) = self.order.pop_front() {
            if self.table.get(&key).is_none_or(|d| d.serial != serial) {
                continue;
            }
            if Some(&key) == keep {
                kept = Some((key, serial));
                continue;
            }
            self.remove(&key);
            evicted = true;
            break;
        }
        if let Some(entry) = kept {
            self.order.push_front(entry);
        }
        evicted
    }

    /// Adds a fragment. `Err(FragmentHeld)` while its datagram is incomplete,
    /// `Err(FragmentDropped)` when the fragment cannot be used; the whole datagram once
    /// this fragment completed it.
    pub(crate) fn insert(
        &mut self,
        piece: Piece<'_>,
        anomalies: &mut DecodeAnomalies,
    ) -> Result<Whole<'_>, DecodeError> {
        let start = piece.offset;
        let end = start + piece.data.len();
        if end > MAX_DATAGRAM_DATA {
            return Err(DecodeError::FragmentDropped);
        }
        anomalies.fragment_timeouts += self.expire(piece.ts);

        // An old datagram of this key left behind by out-of-order timestamps.
        if self
            .table
            .get(&piece.key)
            .is_some_and(|d| self.timed_out(d, piece.ts))
        {
            self.remove(&piece.key);
            anomalies.fragment_timeouts += 1;
        }

        let held_here = self.table.get(&piece.key).map_or(0, |d| d.buf.len());
        let growth = match self.table.get(&piece.key) {
            Some(d) => {
                let conflicting_end = match d.end {
                    Some(e) => end > e || (!piece.more && end != e),
                    None => !piece.more && end < d.buf.len(),
                };
                let touches = d.have.iter().any(|&(s, e)| s <= end && start <= e);
                if conflicting_end || (d.have.len() >= MAX_RANGES && !touches) {
                    return Err(DecodeError::FragmentDropped);
                }
                end.saturating_sub(d.buf.len())
            }
            None => {
                if self.limits.max_datagrams == 0 {
                    return Err(DecodeError::FragmentDropped);
                }
                while self.table.len() >= self.limits.max_datagrams && self.evict_oldest(None) {
                    anomalies.fragment_timeouts += 1;
                }
                end
            }
        };
        if held_here + growth > self.limits.max_bytes {
            return Err(DecodeError::FragmentDropped);
        }
        while self.held + growth > self.limits.max_bytes {
            if !self.evict_oldest(Some(&piece.key)) {
                return Err(DecodeError::FragmentDropped);
            }
            anomalies.fragment_timeouts += 1;
        }

        if !self.table.contains_key(&piece.key) {
            let serial = self.next_serial;
            self.next_serial += 1;
            self.table.insert(
                piece.key,
                Datagram {
                    started: piece.ts,
                    serial,
                    buf: Vec::new(),
                    have: Vec::new(),
                    end: None,
                    first: None,
                },
            );
            self.order.push_back((piece.key, serial));
            if self.order.len() > 2 * self.table.len() + 32 {
                let table = &self.table;
                self.order
                    .retain(|(k, s)| table.get(k).is_some_and(|d| d.serial == *s));
            }
        }
        let Some(d) = self.table.get_mut(&piece.key) else {
            return Err(DecodeError::FragmentDropped);
        };

        if d.buf.len() < end {
            d.buf.resize(end, 0);
        }
        self.held += growth;
        if fill_holes(d, start, piece.data) {
            anomalies.fragment_overlaps += 1;
        }
        if !piece.more {
            d.end = Some(end);
        }
        if start == 0 && d.first.is_none() {
            d.first = Some((piece.header_len, piece.next_header));
        }

        let complete = match (d.end, d.first, d.have.as_slice()) {
            (Some(e), Some(_), &[(0, got)]) => got == e,
            _ => false,
        };
        if !complete {
            return Err(DecodeError::FragmentHeld);
        }
        let Some(d) = self.remove(&piece.key) else {
            return Err(DecodeError::FragmentDropped);
        };
        let (header_len, next_header) = d.first.unwrap_or((0, 0));
        self.done = d.buf;
        anomalies.reassembled += 1;
        Ok(Whole {
            data: &self.done,
            header_len,
            next_header,
        })
    }
}

/// Copies `data` (at `start`) into the bytes of `d` not yet received and records the
/// range. Returns whether it overlapped bytes already held.
fn fill_holes(d: &mut Datagram, start: usize, data: &[u8]) -> bool {
    let end = start + data.len();
    if data.is_empty() {
        return false;
    }
    let mut overlapped = false;
    let mut cursor = start;
    for &(s, e) in &d.have {
        if e <= cursor {
            continue;
        }
        if s >= end {
            break;
        }
        overlapped = true;
        if s > cursor {
            d.buf[cursor..s].copy_from_slice(&data[cursor - start..s - start]);
        }
        cursor = e.min(end);
        if cursor >= end {
            break;
        }
    }
    if cursor < end {
        d.buf[cursor..end].copy_from_slice(&data[cursor - start..]);
    }

    // Union [start, end) into the sorted ranges, merging touching neighbours.
    let first = d.have.partition_point(|&(_, e)| e < start);
    let last = d.have.partition_point(|&(s, _)| s <= end);
    if first < last {
        let merged = (d.have[first].0.min(start), d.have[last - 1].1.max(end));
        d.have.drain(first + 1..last);
        d.have[first] = merged;
    } else {
        d.have.insert(first, (start, end));
    }
    overlapped
}
