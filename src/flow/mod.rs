//! Flow: the connection table. In: [`Packet`](crate::decode::Packet)s. Out:
//! [`FlowEvent`]s (a connection started, an outbound message ended, a connection ended)
//! carrying Zeek-style [`FlowRecord`]s.
//!
//! The table is sharded: each pipeline worker owns one [`table::FlowShard`] holding the
//! flows of the internal hosts hashed to it, so per-host state has a single writer. A
//! shard keeps small `Copy` values only (no packet bytes), an idle list per timeout
//! class, and a hard cap with eviction of the longest-idle flow.

pub mod history;
pub mod index;
pub mod table;

use std::net::IpAddr;

use crate::time::Ts;

pub use history::{ConnState, History};

/// Direction-normalised 5-tuple: `(lo, lo_port) <= (hi, hi_port)`, so both directions of
/// a connection share one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub lo: IpAddr,
    pub hi: IpAddr,
    pub lo_port: u16,
    pub hi_port: u16,
    pub proto: u8,
}

impl FlowKey {
    /// The key of a packet and whether the packet travels `lo -> hi`.
    pub fn from_packet(
        src: IpAddr,
        sport: u16,
        dst: IpAddr,
        dport: u16,
        proto: u8,
    ) -> (FlowKey, bool) {
        if endpoint_le(src, sport, dst, dport) {
            (
                FlowKey {
                    lo: src,
                    hi: dst,
                    lo_port: sport,
                    hi_port: dport,
                    proto,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    lo: dst,
                    hi: src,
                    lo_port: dport,
                    hi_port: sport,
                    proto,
                },
                false,
            )
        }
    }
}

/// `(a, a_port) <= (b, b_port)` as tuples of `IpAddr` and port compare, with the
/// address compared as one integer when both have the same family (every packet
/// computes this; the generic comparison walks the enum and the octets).
#[inline]
fn endpoint_le(a: IpAddr, a_port: u16, b: IpAddr, b_port: u16) -> bool {
    match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => (u32::from(x), a_port) <= (u32::from(y), b_port),
        (IpAddr::V6(x), IpAddr::V6(y)) => (u128::from(x), a_port) <= (u128::from(y), b_port),
        _ => (a, a_port) <= (b, b_port),
    }
}

/// Payload sizes of the first data segments kept per direction (for protocol hints and
/// the fixed-size analytic's per-connection view).
pub const FIRST_SIZES: usize = 4;

/// Where a live flow sits in its shard: a slot of the shard's slab, reused once the
/// flow has ended (after its `Ended` event). Slots are dense from 0, so a detector can
/// keep per-flow state in an array indexed by the handle, next to nothing else, instead
/// of probing a hash map as large as the live flows on every event (see
/// [`crate::analytics::PerFlow`]). Check the uid too: a handle names a slot, not a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowHandle(pub u32);

impl FlowHandle {
    /// Records made without a flow table (decoded from the bus, built in tests).
    pub const NONE: FlowHandle = FlowHandle(u32::MAX);
}

/// A connection as Zeek's conn.log describes it, oriented originator -> responder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// Stable id: a hash of the first packet time and the key (deterministic in replay).
    pub uid: u64,
    pub proto: u8,
    pub orig: IpAddr,
    pub orig_port: u16,
    pub resp: IpAddr,
    pub resp_port: u16,
    /// The originator is the home-net side (or, where neither or both ends are in
    /// home_net, the initiator).
    pub orig_is_internal: bool,
    /// Which end is the internal host: the originator when `orig_is_internal`.
    pub first_ts: Ts,
    pub last_ts: Ts,
    pub orig_pkts: u32,
    pub resp_pkts: u32,
    /// Payload bytes, retransmissions counted once (TCP: from sequence numbers).
    pub orig_bytes: u64,
    pub resp_bytes: u64,
    /// Sum of IP total lengths.
    pub orig_ip_bytes: u64,
    pub resp_ip_bytes: u64,
    pub conn_state: ConnState,
    pub history: History,
    /// Payload sizes of the first data segments from each side (0 = none).
    pub orig_first_sizes: [u16; FIRST_SIZES],
    pub resp_first_sizes: [u16; FIRST_SIZES],
    /// Source MAC seen on the originator's packets, when the link had one.
    pub orig_mac: Option<[u8; 6]>,
    pub vlan: u16,
    /// The flow's slot in the shard that produced the record; not part of the record's
    /// meaning (never written out or published).
    pub handle: FlowHandle,
}

impl FlowRecord {
    /// The internal (home-net) host and the external peer with its port.
    pub fn internal(&self) -> IpAddr {
        if self.orig_is_internal {
            self.orig
        } else {
            self.resp
        }
    }
    pub fn duration_secs(&self) -> f64 {
        self.last_ts.since(self.first_ts).as_secs_f64()
    }
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EndReason {
    /// FIN/RST close seen, then the short close timeout passed.
    Closed = 0,
    /// Idle longer than its protocol/state timeout.
    IdleTimeout = 1,
    /// Pushed out by the live-flow cap (longest idle first).
    Evicted = 2,
    /// End of input (replay finished, or shutdown).
    Shutdown = 3,
}

/// What the flow table tells the analytics.
#[derive(Clone, Copy, Debug)]
pub enum FlowEvent {
    /// The first packet of a new connection.
    Started(FlowRecord),
    /// The originator sent a burst of payload (a "message": payload packets from the
    /// originator not separated by an idle gap or by a responder reply), now finished.
    /// `bytes` counts payload once, retransmissions excluded.
    OrigMessage {
        flow: FlowRecord,
        start: Ts,
        end: Ts,
        bytes: u64,
        index: u32,
    },
    /// The connection ended.
    Ended(FlowRecord, EndReason),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer comparison orders endpoints as the tuple of `IpAddr` and port does.
    #[test]
    fn endpoint_order_matches_the_tuple_order() {
        let addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "10.0.0.1",
            "10.0.0.2",
            "10.0.1.0",
            "192.168.1.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "fe80::1",
            "2001:db8::1",
            "ffff::",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for &a in &addrs {
            for &b in &addrs {
                for (pa, pb) in [(0, 0), (1, 2), (2, 1), (53, 53), (65535, 0)] {
                    assert_eq!(
                        endpoint_le(a, pa, b, pb),
                        (a, pa) <= (b, pb),
                        "{a}:{pa} {b}:{pb}"
                    );
                }
            }
        }
    }
}
