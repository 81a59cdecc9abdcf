//! Decode: frames to small, validated [`Packet`] summaries, and DNS messages to
//! [`dns::DnsAnswer`]s.
//!
//! In: a [`RawPacket`](crate::capture::RawPacket) (link type + bytes). Out: a [`Packet`]
//! (addresses, ports, lengths from the IP header, TCP flags and sequence numbers) plus a
//! borrowed view of the L4 payload, or a counted [`DecodeError`].
//!
//! **Panic contract**: no function in this module panics on any input, whatever its
//! length or content; every read is bounds-checked first. Fuzz targets in `fuzz/` and
//! property tests back this promise.
//!
//! Walks: Ethernet (802.1Q / 802.1ad / QinQ stacks), Linux SLL and SLL2, raw IPv4/IPv6,
//! BSD null/loopback; tunnels that carry mirrored traffic (GRE, ERSPAN II/III, VXLAN on
//! UDP 4789) are decoded by their inner packet. IPv4 and IPv6 (extension headers walked);
//! fragments are reassembled ([`frag`]) with bounded memory. TCP and UDP.
//!
//! Lax by design: a transport header cut short by the snap length keeps its addresses
//! (and ports when the first 4 bytes are there); byte counts come from the IP length,
//! never the captured length.

pub mod dns;
pub mod dns_tcp;
pub mod frag;
pub mod ip;
pub mod link;
pub mod transport;
pub mod tunnel;

use std::net::{IpAddr, Ipv4Addr};

use crate::time::Ts;

/// IP protocol numbers portent tracks as flows.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits, as in the TCP header's flags byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// What decode learned about one packet: small and `Copy`; no bytes of the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ts: Ts,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 when the transport header was cut before the ports (see `ports_known`).
    pub sport: u16,
    pub dport: u16,
    /// IP protocol number of the transport ([`PROTO_TCP`], [`PROTO_UDP`], or other).
    pub proto: u8,
    /// IP total length (IPv4 total length; IPv6 40 + payload length), from the header.
    /// After reassembly: the reassembled datagram's length.
    pub ip_len: u32,
    /// Transport payload length implied by the IP length, not by the captured bytes.
    pub payload_len: u32,
    /// TCP only: flags byte, sequence and acknowledgement numbers, window.
    pub tcp_flags: u8,
    pub tcp_seq: u32,
    pub tcp_ack: u32,
    pub tcp_window: u16,
    /// Source MAC of the innermost Ethernet header, when there was one (VM attribution).
    pub src_mac: Option<[u8; 6]>,
    /// Outermost VLAN id, 0 if untagged.
    pub vlan: u16,
    pub ports_known: bool,
    /// The packet was rebuilt from IP fragments.
    pub reassembled: bool,
    /// The packet came out of a tunnel (GRE, ERSPAN, VXLAN).
    pub tunneled: bool,
}

impl Packet {
    /// A placeholder for a packet about to be decoded into (every field is written).
    pub const UNSET: Packet = Packet {
        ts: Ts::ZERO,
        src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        sport: 0,
        dport: 0,
        proto: 0,
        ip_len: 0,
        payload_len: 0,
        tcp_flags: 0,
        tcp_seq: 0,
        tcp_ack: 0,
        tcp_window: 0,
        src_mac: None,
        vlan: 0,
        ports_known: false,
        reassembled: false,
        tunneled: false,
    };
}

/// A decoded packet and the captured bytes of its transport payload (may be shorter than
/// `packet.payload_len` under a snap length).
#[derive(Clone, Copy, Debug)]
pub struct Decoded<'a> {
    pub packet: Packet,
    pub payload: &'a [u8],
}

/// Why a frame produced no [`Packet`]. Each kind is a counter (`decode_errors{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The frame ended inside the named layer's header.
    Truncated(Layer),
    /// A header field holds an impossible value (bad version, header length, ...).
    Malformed(Layer),
    /// A link type portent does not decode.
    UnsupportedLink,
    /// An EtherType / address family / next header portent does not follow (ARP, LLDP...).
    UnsupportedProtocol,
    /// Tunnels nested deeper than [`MAX_ENCAP_DEPTH`].
    TooDeep,
    /// A fragment was stored for reassembly; no packet yet. Not an error: counted apart.
    FragmentHeld,
    /// A fragment that could not be used (overlap conflict, too large, table full).
    FragmentDropped,
}

/// Protocol layers, for error reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Link,
    Vlan,
    Tunnel,
    Ipv4,
    Ipv6,
    Tcp,
    Udp,
}

impl DecodeError {
    /// A stable, metric-friendly name: `truncated_ipv4`, `unsupported_link`, ...
    pub fn kind(&self) -> &'static str {
        use DecodeError::*;
        use Layer::*;
        match self {
            Truncated(Link) => "truncated_link",
            Truncated(Vlan) => "truncated_vlan",
            Truncated(Tunnel) => "truncated_tunnel",
            Truncated(Ipv4) => "truncated_ipv4",
            Truncated(Ipv6) => "truncated_ipv6",
            Truncated(Tcp) => "truncated_tcp",
            Truncated(Udp) => "truncated_udp",
            Malformed(Link) => "malformed_link",
            Malformed(Vlan) => "malformed_vlan",
            Malformed(Tunnel) => "malformed_tunnel",
            Malformed(Ipv4) => "malformed_ipv4",
            Malformed(Ipv6) => "malformed_ipv6",
            Malformed(Tcp) => "malformed_tcp",
            Malformed(Udp) => "malformed_udp",
            UnsupportedLink => "unsupported_link",
            UnsupportedProtocol => "unsupported_protocol",
            TooDeep => "encapsulation_too_deep",
            FragmentHeld => "fragment_held",
            FragmentDropped => "fragment_dropped",
        }
    }
}

/// Tunnels deeper than this are not followed (a GRE-in-VXLAN-in-GRE loop is an attack,
/// not a deployment).
pub const MAX_ENCAP_DEPTH: usize = 4;

/// Counters of anomalies that did not stop a packet from decoding (Suricata's "events").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeAnomalies {
    /// Transport header cut by the snap length; addresses (and maybe ports) kept.
    pub transport_truncated: u64,
    /// Overlapping fragments seen (counted whether or not their bytes agreed).
    pub fragment_overlaps: u64,
    /// Reassembly buffers given up by timeout or to make room.
    pub fragment_timeouts: u64,
    /// Datagrams rebuilt from fragments.
    pub reassembled: u64,
}

/// A stateful decoder: one per capture thread. Holds the fragment reassembly table, so
/// a reassembled datagram's bytes live in the decoder until the next call.
pub struct Decoder {
    frags: frag::Reassembler,
    pub anomalies: DecodeAnomalies,
}

impl Decoder {
    pub fn new(limits: frag::FragLimits) -> Decoder {
        Decoder {
            frags: frag::Reassembler::new(limits),
            anomalies: DecodeAnomalies::default(),
        }
    }

    /// Decodes one frame. The returned payload borrows either `raw.data` or the decoder's
    /// reassembly buffer.
    pub fn decode<'a>(
        &'a mut self,
        raw: &crate::capture::RawPacket<'a>,
    ) -> Result<Decoded<'a>, DecodeError> {
        link::decode_frame(raw, &mut self.frags, &mut self.anomalies)
    }

    /// [`decode`](Self::decode) into `out` (every field written on success), returning
    /// the captured payload.
    pub fn decode_into<'a>(
        &'a mut self,
        out: &mut Packet,
        raw: &crate::capture::RawPacket<'a>,
    ) -> Result<&'a [u8], DecodeError> {
        link::decode_frame_into(out, raw, &mut self.frags, &mut self.anomalies)
    }

    /// Gives up reassembly buffers older than the timeout at packet time `now`.
    pub fn expire(&mut self, now: Ts) {
        self.anomalies.fragment_timeouts += self.frags.expire(now);
    }

    /// Bytes held in reassembly buffers now.
    pub fn held_bytes(&self) -> usize {
        self.frags.held_bytes()
    }
}
