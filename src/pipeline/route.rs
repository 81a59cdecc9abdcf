//! Which worker owns a packet: the one its internal host hashes to.
//!
//! Must be a function of the unordered endpoint pair, so both directions of a flow meet
//! in one worker, and must pick the same host for a host's DNS answers and its
//! connections, so the DNS analytics see both.

use std::net::IpAddr;

use crate::config::NetSet;
use crate::decode::Packet;

/// The host whose state a packet belongs to: the home-net end when exactly one end is in
/// home_net; otherwise the client-looking end (the higher port, as ephemeral ports are
/// high; ties go to the lower address).
pub fn route_host(p: &Packet, home: &NetSet) -> IpAddr {
    route_host_of(p.src, p.sport, p.dst, p.dport, home)
}

/// [`route_host`] of one direction of an endpoint pair (either direction gives the same
/// host): the capture tier keys its records by it.
pub fn route_host_of(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, home: &NetSet) -> IpAddr {
    let (s, d) = (home.contains(src), home.contains(dst));
    if s != d {
        return if s { src } else { dst };
    }
    if (sport, src) > (dport, dst) {
        src
    } else {
        dst
    }
}

pub(crate) fn worker_for(p: &Packet, home: &NetSet, workers: usize) -> usize {
    (host_hash(route_host(p, home)) >> 32) as usize % workers
}

/// Fibonacci hash of a host address: spreads consecutive addresses. Workers take bits
/// from 32 up, Kafka partitions from 40 up, so the two choices are independent.
pub fn host_hash(ip: IpAddr) -> u64 {
    let h = match ip {
        IpAddr::V4(v) => u32::from(v) as u64,
        IpAddr::V6(v) => {
            let x = u128::from(v);
            (x as u64) ^ ((x >> 64) as u64)
        }
    };
    h.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// A stable 64-bit hash of a name (FNV-1a): alert tiebreaks, capture instance ids.
pub fn name_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
