//! TCP and UDP headers, and the hand-off of GRE and VXLAN to [`super::tunnel`].
//!
//! Lengths come from the IP header (`payload_wire`), never from the captured bytes: a
//! header cut by the snap length keeps the addresses, the ports when the first 4 bytes
//! are there, and the true payload length, and is counted in `transport_truncated`.
//!
//! Panic contract (see [`super`]): every read goes through a length check or `get`.

use super::frag::Reassembler;
use super::link::{be16, be32, Outer};
use super::tunnel;
use super::{DecodeAnomalies, DecodeError, Layer, Packet, PROTO_TCP, PROTO_UDP};

pub(crate) const PROTO_GRE: u8 = 47;
pub(crate) const VXLAN_PORT: u16 = 4789;
const TCP_MIN_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;

/// What the IP layer learned, handed to the transport layer. The addresses go straight
/// into the packet (the IP layer writes `out.src` and `out.dst`): copied through here,
/// each was read back at once as wider words than its enum had been stored in, a
/// store-forwarding stall on every packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IpInfo {
    pub proto: u8,
    pub ip_len: u32,
}

fn sat_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Decodes the IP payload: `payload` are its captured bytes (at most `payload_wire`,
/// its length by the IP header). Writes every field of `out` but those the link and IP
/// layers have written (addresses, source MAC, VLAN).
pub(crate) fn decode<'a>(
    out: &mut Packet,
    outer: Outer,
    ip: IpInfo,
    payload: &'a [u8],
    payload_wire: usize,
    frags: Option<&'a mut Reassembler>,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    // Field by field: the addresses are the IP layer's, `src_mac` and `vlan` the link
    // layers'. The pattern names every field, so a new one cannot be left holding the
    // previous packet's value (the pipeline decodes into a reused `Packet`).
    let Packet {
        ts,
        src: _,
        dst: _,
        sport,
        dport,
        proto,
        ip_len,
        payload_len,
        tcp_flags,
        tcp_seq,
        tcp_ack,
        tcp_window,
        src_mac: _,
        vlan: _,
        ports_known,
        reassembled,
        tunneled,
    } = out;
    *ts = outer.ts;
    *sport = 0;
    *dport = 0;
    *proto = ip.proto;
    *ip_len = ip.ip_len;
    *payload_len = sat_u32(payload_wire);
    *tcp_flags = 0;
    *tcp_seq = 0;
    *tcp_ack = 0;
    *tcp_window = 0;
    *ports_known = false;
    *reassembled = outer.reassembled;
    *tunneled = outer.tunneled;
    match ip.proto {
        PROTO_TCP => tcp(out, payload, payload_wire, anomalies),
        PROTO_UDP => {
            if payload_wire < UDP_HEADER_LEN {
                return Err(DecodeError::Malformed(Layer::Udp));
            }
            if let Some(ports) = payload.get(..4) {
                out.sport = be16(ports, 0);
                out.dport = be16(ports, 2);
                out.ports_known = true;
            }
            out.payload_len = sat_u32(payload_wire - UDP_HEADER_LEN);
            let Some(header) = payload.get(..UDP_HEADER_LEN) else {
                anomalies.transport_truncated += 1;
                return Ok(&[]);
            };
            // The smaller sane length wins: a UDP length beyond the IP length is a lie,
            // and 0 (jumbograms) or under 8 says nothing.
            let udp_len = usize::from(be16(header, 4));
            let udp_payload_len = if (UDP_HEADER_LEN..=payload_wire).contains(&udp_len) {
                udp_len - UDP_HEADER_LEN
            } else {
                payload_wire - UDP_HEADER_LEN
            };
            out.payload_len = sat_u32(udp_payload_len);
            let rest = &payload[UDP_HEADER_LEN..];
            let body = rest.get(..udp_payload_len).unwrap_or(rest);
            if out.dport == VXLAN_PORT && tunnel::is_vxlan(body) {
                return tunnel::vxlan(out, outer, body, udp_payload_len, frags, anomalies);
            }
            Ok(body)
        }
        PROTO_GRE => tunnel::gre(out, outer, payload, payload_wire, frags, anomalies),
        _ => Ok(payload),
    }
}

fn tcp<'a>(
    packet: &mut Packet,
    segment: &'a [u8],
    segment_wire: usize,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    if segment_wire < TCP_MIN_HEADER_LEN {
        return Err(DecodeError::Malformed(Layer::Tcp));
    }
    if let Some(ports) = segment.get(..4) {
        packet.sport = be16(ports, 0);
        packet.dport = be16(ports, 2);
        packet.ports_known = true;
    }
    let Some(fixed) = segment.get(..TCP_MIN_HEADER_LEN) else {
        // Data offset unknown: assume no options.
        anomalies.transport_truncated += 1;
        packet.payload_len = sat_u32(segment_wire - TCP_MIN_HEADER_LEN);
        return Ok(&[]);
    };
    let header_len = usize::from(fixed[12] >> 4) * 4;
    if header_len < TCP_MIN_HEADER_LEN || header_len > segment_wire {
        return Err(DecodeError::Malformed(Layer::Tcp));
    }
    packet.tcp_seq = be32(fixed, 4);
    packet.tcp_ack = be32(fixed, 8);
    packet.tcp_flags = fixed[13];
    packet.tcp_window = be16(fixed, 14);
    packet.payload_len = sat_u32(segment_wire - header_len);
    let payload = match segment.get(header_len..) {
        Some(p) => p,
        None => {
            // Options cut by the snap length.
            anomalies.transport_truncated += 1;
            &[]
        }
    };
    Ok(payload)
}
