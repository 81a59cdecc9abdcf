//! Link layers: Ethernet (with VLAN stacks), Linux SLL/SLL2, raw IP, BSD null/loop.
//!
//! Panic contract (see [`super`]): every read goes through a length check or `get`.

use super::{frag::Reassembler, ip, DecodeAnomalies, DecodeError, Decoded, Layer, Packet};
use crate::capture::{LinkType, RawPacket};
use crate::time::Ts;

pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
/// Pre-standard QinQ outer tag some switches still emit.
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

const ETHERNET_HEADER_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const SLL_HEADER_LEN: usize = 16;
const SLL2_HEADER_LEN: usize = 20;
const NULL_HEADER_LEN: usize = 4;
/// ARPHRD_ETHER: the SLL address is a MAC.
const ARPHRD_ETHER: u16 = 1;

/// BSD address families for IPv6 differ per OS: 24 (NetBSD/OpenBSD), 28 (FreeBSD),
/// 30 (macOS). IPv4 is 2 everywhere.
const AF_INET: u32 = 2;
const AF_INET6: [u32; 3] = [24, 28, 30];

/// What the layers above the IP header contribute to a [`super::Packet`], carried down
/// through link, IP and tunnels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outer {
    pub ts: Ts,
    pub tunneled: bool,
    /// This packet, or a tunnel packet around it, was rebuilt from fragments.
    pub reassembled: bool,
    /// Tunnels entered so far.
    pub depth: usize,
}

/// Decodes one frame from its link layer down to the transport payload.
pub fn decode_frame<'a>(
    raw: &RawPacket<'a>,
    frags: &'a mut Reassembler,
    anomalies: &mut DecodeAnomalies,
) -> Result<Decoded<'a>, DecodeError> {
    let mut packet = Packet::UNSET;
    let payload = decode_frame_into(&mut packet, raw, frags, anomalies)?;
    Ok(Decoded { packet, payload })
}

/// [`decode_frame`] writing the packet into `out` (every field, on success) and
/// returning its captured payload: the pipeline decodes straight into its batch.
pub fn decode_frame_into<'a>(
    out: &mut Packet,
    raw: &RawPacket<'a>,
    frags: &'a mut Reassembler,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    let outer = Outer {
        ts: raw.ts,
        tunneled: false,
        reassembled: false,
        depth: 0,
    };
    // The link layers write these straight into the packet (the innermost Ethernet
    // source, the outermost VLAN): carried in `Outer`, they were read back at once in
    // other widths than they had been stored in, a store-forwarding stall per packet.
    out.vlan = 0;
    out.src_mac = None;
    let data = raw.data;
    // Bytes on the wire; a broken record may claim fewer than it holds.
    let wire = (raw.orig_len as usize).max(data.len());
    match raw.link {
        LinkType::Ethernet => ethernet(out, outer, data, wire, Some(frags), anomalies),
        LinkType::LinuxSll => {
            let hdr = data
                .get(..SLL_HEADER_LEN)
                .ok_or(DecodeError::Truncated(Layer::Link))?;
            let arphrd = be16(hdr, 2);
            let addr_len = be16(hdr, 4);
            if arphrd == ARPHRD_ETHER && addr_len == 6 {
                out.src_mac = mac_at(hdr, 6);
            }
            let proto = be16(hdr, 14);
            ethertype(
                out,
                outer,
                proto,
                data,
                SLL_HEADER_LEN,
                wire,
                Some(frags),
                anomalies,
            )
        }
        LinkType::LinuxSll2 => {
            let hdr = data
                .get(..SLL2_HEADER_LEN)
                .ok_or(DecodeError::Truncated(Layer::Link))?;
            let arphrd = be16(hdr, 8);
            let addr_len = hdr[11];
            if arphrd == ARPHRD_ETHER && addr_len == 6 {
                out.src_mac = mac_at(hdr, 12);
            }
            let proto = be16(hdr, 0);
            ethertype(
                out,
                outer,
                proto,
                data,
                SLL2_HEADER_LEN,
                wire,
                Some(frags),
                anomalies,
            )
        }
        LinkType::Raw => {
            let first = *data.first().ok_or(DecodeError::Truncated(Layer::Link))?;
            match first >> 4 {
                4 => ip::ipv4(out, outer, data, wire, Some(frags), anomalies),
                6 => ip::ipv6(out, outer, data, wire, Some(frags), anomalies),
                _ => Err(DecodeError::Malformed(Layer::Link)),
            }
        }
        LinkType::Ipv4 => ip::ipv4(out, outer, data, wire, Some(frags), anomalies),
        LinkType::Ipv6 => ip::ipv6(out, outer, data, wire, Some(frags), anomalies),
        LinkType::Null | LinkType::Loop => {
            let hdr = data
                .get(..NULL_HEADER_LEN)
                .ok_or(DecodeError::Truncated(Layer::Link))?;
            let bytes = [hdr[0], hdr[1], hdr[2], hdr[3]];
            let be = u32::from_be_bytes(bytes);
            // Null is in the capturing host's byte order, which the file does not say.
            let le = if raw.link == LinkType::Null {
                u32::from_le_bytes(bytes)
            } else {
                be
            };
            let rest = &data[NULL_HEADER_LEN..];
            let wire = wire - NULL_HEADER_LEN;
            if be == AF_INET || le == AF_INET {
                ip::ipv4(out, outer, rest, wire, Some(frags), anomalies)
            } else if AF_INET6.contains(&be) || AF_INET6.contains(&le) {
                ip::ipv6(out, outer, rest, wire, Some(frags), anomalies)
            } else {
                Err(DecodeError::UnsupportedProtocol)
            }
        }
        LinkType::Other(_) => Err(DecodeError::UnsupportedLink),
    }
}

/// An Ethernet II frame at the start of `data` (also the inner frame of TEB, ERSPAN and
/// VXLAN). `wire` is the frame's length on the wire, at least `data.len()`.
pub(crate) fn ethernet<'a>(
    out: &mut Packet,
    outer: Outer,
    data: &'a [u8],
    wire: usize,
    frags: Option<&'a mut Reassembler>,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    let hdr = data
        .get(..ETHERNET_HEADER_LEN)
        .ok_or(DecodeError::Truncated(Layer::Link))?;
    out.src_mac = mac_at(hdr, 6);
    let proto = be16(hdr, 12);
    ethertype(
        out,
        outer,
        proto,
        data,
        ETHERNET_HEADER_LEN,
        wire,
        frags,
        anomalies,
    )
}

/// Follows an EtherType found at `data[..at]`, through any VLAN tags, to IP.
// The decode chain's arguments plus the tag walk's position: a struct would only move them.
#[allow(clippy::too_many_arguments)]
fn ethertype<'a>(
    out: &mut Packet,
    outer: Outer,
    mut proto: u16,
    data: &'a [u8],
    mut at: usize,
    wire: usize,
    frags: Option<&'a mut Reassembler>,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    // Each tag consumes 4 bytes, so the frame length bounds this loop.
    while matches!(proto, ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD) {
        let tag = data
            .get(at..at + VLAN_TAG_LEN)
            .ok_or(DecodeError::Truncated(Layer::Vlan))?;
        if out.vlan == 0 {
            out.vlan = be16(tag, 0) & 0x0fff;
        }
        proto = be16(tag, 2);
        at += VLAN_TAG_LEN;
    }
    let rest = &data[at..];
    let wire = wire.saturating_sub(at).max(rest.len());
    match proto {
        ETHERTYPE_IPV4 => ip::ipv4(out, outer, rest, wire, frags, anomalies),
        ETHERTYPE_IPV6 => ip::ipv6(out, outer, rest, wire, frags, anomalies),
        _ => Err(DecodeError::UnsupportedProtocol),
    }
}

/// Big-endian u16 at `at`; callers have checked `at + 2 <= b.len()`, and a short slice
/// reads as 0 rather than panicking.
#[inline(always)]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Big-endian u32 at `at`, 0 when short (callers check lengths first).
#[inline(always)]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[w, x, y, z]) => u32::from_be_bytes([w, x, y, z]),
        _ => 0,
    }
}

fn mac_at(b: &[u8], at: usize) -> Option<[u8; 6]> {
    b.get(at..at + 6)?.try_into().ok()
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
