//! Capture: where frames come from. Sources hand out [`RawPacket`]s (a borrowed frame,
//! its link type and its capture timestamp) and know nothing about protocols.
//!
//! * [`pcapfile`]: classic pcap (µs and ns, either byte order) and pcapng, read through a
//!   large buffer, skipping corrupt records instead of stopping at them.
//! * [`merge`]: several files merged into one stream in timestamp order.
//! * [`live`]: libpcap live capture; [`xdp`]: AF_XDP sockets, one thread per queue.
//!   Both yield the same type and idle ticks on wall time.

pub mod live;
pub mod merge;
pub mod pcapfile;
pub mod xdp;

use crate::time::Ts;

/// Link-layer header types, by their LINKTYPE_ numbers (tcpdump.org/linktypes.html).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum LinkType {
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family in host byte order.
    Null,
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_RAW (101) or DLT_RAW (12/14 on some systems): raw IPv4 or IPv6.
    Raw,
    /// LINKTYPE_LOOP (108): like Null but the family is in network byte order.
    Loop,
    /// LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
    /// Anything else: frames are counted and skipped.
    Other(u32),
}

impl LinkType {
    pub fn from_linktype(n: u32) -> LinkType {
        match n {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }
}

/// One captured frame, borrowed from the source's buffer.
#[derive(Clone, Copy, Debug)]
pub struct RawPacket<'a> {
    pub ts: Ts,
    pub link: LinkType,
    /// The bytes captured (possibly cut by the snap length).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}
