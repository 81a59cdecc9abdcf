//! Tunnels that carry mirrored or overlay traffic: GRE (RFC 2784/2890), ERSPAN I/II/III
//! inside GRE, VXLAN (RFC 7348). A tunnel is decoded by its inner packet; the outer
//! GRE/UDP packet is never reported. Nesting is bounded by [`MAX_ENCAP_DEPTH`].
//!
//! Panic contract (see [`super`]): every read goes through a length check or `get`.

use super::frag::Reassembler;
use super::link::{self, be16, Outer, ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use super::{ip, DecodeAnomalies, DecodeError, Layer, Packet, MAX_ENCAP_DEPTH};

const GRE_CHECKSUM: u16 = 0x8000;
/// RFC 1701 routing; RFC 2784 made it reserved. Linux drops such packets too.
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQUENCE: u16 = 0x1000;
/// Version 1 is PPTP's enhanced GRE, which carries PPP, not IP.
const GRE_VERSION_MASK: u16 = 0x0007;
const GRE_BASE_LEN: usize = 4;
const GRE_OPTION_LEN: usize = 4;

const GRE_PROTO_TEB: u16 = 0x6558;
const GRE_PROTO_ERSPAN_2: u16 = 0x88be;
const GRE_PROTO_ERSPAN_3: u16 = 0x22eb;
const ERSPAN_2_HEADER_LEN: usize = 8;
const ERSPAN_3_HEADER_LEN: usize = 12;
const ERSPAN_3_SUBHEADER_LEN: usize = 8;
/// O bit: an optional platform-specific subheader follows the ERSPAN III header.
const ERSPAN_3_OPTIONAL_SUBHEADER: u8 = 0x01;

const VXLAN_HEADER_LEN: usize = 8;
/// I flag: the VNI is valid. Without it the datagram is not VXLAN.
const VXLAN_FLAG_VNI: u8 = 0x08;

fn enter(mut outer: Outer) -> Result<Outer, DecodeError> {
    outer.depth += 1;
    if outer.depth > MAX_ENCAP_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    outer.tunneled = true;
    Ok(outer)
}

/// A GRE packet at the start of `data` (`wire` as in [`ip::ipv4`]).
pub(crate) fn gre<'a>(
    out: &mut Packet,
    outer: Outer,
    data: &'a [u8],
    wire: usize,
    frags: Option<&'a mut Reassembler>,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    let outer = enter(outer)?;
    let base = data
        .get(..GRE_BASE_LEN)
        .ok_or(DecodeError::Truncated(Layer::Tunnel))?;
    let flags = be16(base, 0);
    let proto = be16(base, 2);
    if flags & (GRE_VERSION_MASK | GRE_ROUTING) != 0 {
        return Err(DecodeError::UnsupportedProtocol);
    }
    let options = [GRE_CHECKSUM, GRE_KEY, GRE_SEQUENCE]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count();
    let header_len = GRE_BASE_LEN + options * GRE_OPTION_LEN;
    let body = data
        .get(header_len..)
        .ok_or(DecodeError::Truncated(Layer::Tunnel))?;
    let wire = wire.max(data.len()) - header_len;
    match proto {
        ETHERTYPE_IPV4 => ip::ipv4(out, outer, body, wire, frags, anomalies),
        ETHERTYPE_IPV6 => ip::ipv6(out, outer, body, wire, frags, anomalies),
        GRE_PROTO_TEB => link::ethernet(out, outer, body, wire, frags, anomalies),
        // ERSPAN type I has no sequence number and no header: the frame follows GRE.
        GRE_PROTO_ERSPAN_2 if flags & GRE_SEQUENCE == 0 => {
            link::ethernet(out, outer, body, wire, frags, anomalies)
        }
        GRE_PROTO_ERSPAN_2 => skip_then_ethernet(
            out,
            outer,
            body,
            wire,
            ERSPAN_2_HEADER_LEN,
            frags,
            anomalies,
        ),
        GRE_PROTO_ERSPAN_3 => {
            let header = body
                .get(..ERSPAN_3_HEADER_LEN)
                .ok_or(DecodeError::Truncated(Layer::Tunnel))?;
            let skip = if header[ERSPAN_3_HEADER_LEN - 1] & ERSPAN_3_OPTIONAL_SUBHEADER != 0 {
                ERSPAN_3_HEADER_LEN + ERSPAN_3_SUBHEADER_LEN
            } else {
                ERSPAN_3_HEADER_LEN
            };
            skip_then_ethernet(out, outer, body, wire, skip, frags, anomalies)
        }
        _ => Err(DecodeError::UnsupportedProtocol),
    }
}

fn skip_then_ethernet<'a>(
    out: &mut Packet,
    outer: Outer,
    data: &'a [u8],
    wire: usize,
    skip: usize,
    frags: Option<&'a mut Reassembler>,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    let frame = data
        .get(skip..)
        .ok_or(DecodeError::Truncated(Layer::Tunnel))?;
    link::ethernet(
        out,
        outer,
        frame,
        wire.max(data.len()) - skip,
        frags,
        anomalies,
    )
}

/// Whether a UDP payload to port 4789 is a VXLAN header (RFC 7348): the I flag set, the
/// other flag bits and reserved fields zero (the Group Policy extension's G bit allows
/// its policy fields). A port alone is not enough: a DNS reply to a client that chose
/// source port 4789 would otherwise vanish into a tunnel about half the time.
pub(crate) fn is_vxlan(udp_payload: &[u8]) -> bool {
    let Some(&flags) = udp_payload.first() else {
        return false;
    };
    if flags & 0x7f != VXLAN_FLAG_VNI {
        return false;
    }
    let gbp = flags & 0x80 != 0;
    let reserved_clear = |r: std::ops::Range<usize>| {
        udp_payload
            .get(r.start..r.end.min(udp_payload.len()))
            .is_none_or(|b| b.iter().all(|&x| x == 0))
    };
    (gbp || reserved_clear(1..4)) && reserved_clear(7..8)
}

/// A VXLAN header and inner Ethernet frame at the start of `data` (the UDP payload).
pub(crate) fn vxlan<'a>(
    out: &mut Packet,
    outer: Outer,
    data: &'a [u8],
    wire: usize,
    frags: Option<&'a mut Reassembler>,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    let outer = enter(outer)?;
    skip_then_ethernet(out, outer, data, wire, VXLAN_HEADER_LEN, frags, anomalies)
}
