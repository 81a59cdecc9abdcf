//! IPv4 and IPv6 headers, IPv6 extension headers, and the hand-off of fragments to
//! [`Reassembler`].
//!
//! Hand-written rather than `etherparse::LaxIpSlice`: portent needs a few fixed-offset
//! reads, its own length policy (TSO zero lengths, clamping to the wire length) and the
//! Mobility header in the extension walk, which etherparse stops at; building
//! etherparse's full header values per packet costs more than the reads themselves.
//!
//! Panic contract (see [`super`]): every read goes through a length check or `get`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::frag::{FragKey, Piece, Reassembler};
use super::link::{be16, be32, Outer};
use super::transport::{self, IpInfo};
use super::{DecodeAnomalies, DecodeError, Layer, Packet};

const IPV4_MIN_HEADER_LEN: usize = 20;
const IPV6_HEADER_LEN: usize = 40;
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;

const EXT_HOP_BY_HOP: u8 = 0;
const EXT_ROUTING: u8 = 43;
const EXT_FRAGMENT: u8 = 44;
const EXT_AUTH: u8 = 51;
const EXT_DEST_OPTS: u8 = 60;
const EXT_MOBILITY: u8 = 135;
const IPV6_FRAGMENT_HEADER_LEN: usize = 8;
/// The payload length already bounds the walk (each header is at least 8 bytes); this
/// bounds the work per packet. Real traffic carries 0 to 3.
const MAX_IPV6_EXT_HEADERS: usize = 32;

fn sat_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// An IPv4 packet at the start of `data`; `wire` is its length on the wire at most
/// (at least `data.len()`).
pub(crate) fn ipv4<'a>(
    out: &mut Packet,
    outer: Outer,
    data: &'a [u8],
    wire: usize,
    frags: Option<&'a mut Reassembler>,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    let fixed = data
        .get(..IPV4_MIN_HEADER_LEN)
        .ok_or(DecodeError::Truncated(Layer::Ipv4))?;
    if fixed[0] >> 4 != 4 {
        return Err(DecodeError::Malformed(Layer::Ipv4));
    }
    let header_len = usize::from(fixed[0] & 0x0f) * 4;
    if header_len < IPV4_MIN_HEADER_LEN {
        return Err(DecodeError::Malformed(Layer::Ipv4));
    }
    if data.len() < header_len {
        return Err(DecodeError::Truncated(Layer::Ipv4));
    }
    let wire = wire.max(data.len());
    let total_len = usize::from(be16(fixed, 2));
    // 0 is what TSO/LRO leaves in captures taken on the sending host: trust the wire.
    // A total length beyond the wire is a lie: clamp to the wire.
    let ip_len = match total_len {
        0 => wire,
        n if n < header_len => return Err(DecodeError::Malformed(Layer::Ipv4)),
        n => n.min(wire),
    };
    let src = IpAddr::V4(Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]));
    let proto = fixed[9];
    // Ethernet padding beyond the total length is not payload.
    let payload = data.get(header_len..ip_len).unwrap_or(&data[header_len..]);
    let payload_wire = ip_len - header_len;

    let frag_field = be16(fixed, 6);
    let more = frag_field & IPV4_MORE_FRAGMENTS != 0;
    let offset = usize::from(frag_field & IPV4_OFFSET_MASK) * 8;
    if !more && offset == 0 {
        (out.src, out.dst) = (src, dst);
        let ip = IpInfo {
            proto,
            ip_len: sat_u32(ip_len),
        };
        return transport::decode(out, outer, ip, payload, payload_wire, frags, anomalies);
    }

    // A fragment inside an already reassembled tunnel datagram: the one buffer is taken.
    let frags = frags.ok_or(DecodeError::FragmentDropped)?;
    if payload.len() < payload_wire {
        // Cut by the snap length: its bytes cannot fill the datagram.
        return Err(DecodeError::FragmentDropped);
    }
    let piece = Piece {
        key: FragKey {
            src,
            dst,
            id: u32::from(be16(fixed, 4)),
            proto,
        },
        ts: outer.ts,
        offset,
        more,
        data: payload,
        header_len,
        next_header: proto,
    };
    let whole = frags.insert(piece, anomalies)?;
    (out.src, out.dst) = (src, dst);
    let ip = IpInfo {
        proto,
        ip_len: sat_u32(whole.header_len + whole.data.len()),
    };
    let outer = Outer {
        reassembled: true,
        ..outer
    };
    transport::decode(
        out,
        outer,
        ip,
        whole.data,
        whole.data.len(),
        None,
        anomalies,
    )
}

/// Where an IPv6 extension-header walk stopped.
enum Walk {
    /// At the upper-layer header `proto`, `at` bytes into the payload.
    Upper { proto: u8, at: usize },
    /// At a fragment header (not atomic) `at` bytes into the payload.
    Fragment {
        at: usize,
        next_header: u8,
        offset: usize,
        more: bool,
        id: u32,
    },
}

/// Walks extension headers from `next` over `payload` (captured bytes of a payload whose
/// declared length is `declared`).
fn walk_extensions(mut next: u8, payload: &[u8], declared: usize) -> Result<Walk, DecodeError> {
    let mut at = 0usize;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        let len = match next {
            EXT_HOP_BY_HOP | EXT_ROUTING | EXT_DEST_OPTS | EXT_MOBILITY => {
                let b = payload
                    .get(at + 1)
                    .ok_or_else(|| short_ext(at + 2, declared))?;
                (usize::from(*b) + 1) * 8
            }
            EXT_AUTH => {
                let b = payload
                    .get(at + 1)
                    .ok_or_else(|| short_ext(at + 2, declared))?;
                (usize::from(*b) + 2) * 4
            }
            EXT_FRAGMENT => {
                let h = payload
                    .get(at..at + IPV6_FRAGMENT_HEADER_LEN)
                    .ok_or_else(|| short_ext(at + IPV6_FRAGMENT_HEADER_LEN, declared))?;
                let field = be16(h, 2);
                let offset = usize::from(field & 0xfff8);
                let more = field & 1 != 0;
                if offset != 0 || more {
                    return Ok(Walk::Fragment {
                        at,
                        next_header: h[0],
                        offset,
                        more,
                        id: be32(h, 4),
                    });
                }
                // Atomic fragment (RFC 6946): processed as a whole packet.
                IPV6_FRAGMENT_HEADER_LEN
            }
            proto => return Ok(Walk::Upper { proto, at }),
        };
        if at + len > declared {
            return Err(DecodeError::Malformed(Layer::Ipv6));
        }
        if at + len > payload.len() {
            return Err(DecodeError::Truncated(Layer::Ipv6));
        }
        next = payload[at];
        at += len;
    }
    Err(DecodeError::Malformed(Layer::Ipv6))
}

fn short_ext(need: usize, declared: usize) -> DecodeError {
    if need > declared {
        DecodeError::Malformed(Layer::Ipv6)
    } else {
        DecodeError::Truncated(Layer::Ipv6)
    }
}

/// An IPv6 packet at the start of `data`; `wire` as for [`ipv4`].
pub(crate) fn ipv6<'a>(
    out: &mut Packet,
    outer: Outer,
    data: &'a [u8],
    wire: usize,
    frags: Option<&'a mut Reassembler>,
    anomalies: &mut DecodeAnomalies,
) -> Result<&'a [u8], DecodeError> {
    let fixed: &[u8; IPV6_HEADER_LEN] = data
        .get(..IPV6_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecodeError::Truncated(Layer::Ipv6))?;
    if fixed[0] >> 4 != 6 {
        return Err(DecodeError::Malformed(Layer::Ipv6));
    }
    let wire_payload = wire.max(data.len()) - IPV6_HEADER_LEN;
    // 0 means a jumbogram or a TSO capture: trust the wire, as for IPv4.
    let declared = match usize::from(be16(fixed, 4)) {
        0 => wire_payload,
        n => n.min(wire_payload),
    };
    let src = IpAddr::V6(Ipv6Addr::from(bytes16(fixed, 8)));
    let dst = IpAddr::V6(Ipv6Addr::from(bytes16(fixed, 24)));
    let rest = &data[IPV6_HEADER_LEN..];
    let payload = rest.get(..declared).unwrap_or(rest);

    match walk_extensions(fixed[6], payload, declared)? {
        Walk::Upper { proto, at } => {
            (out.src, out.dst) = (src, dst);
            let ip = IpInfo {
                proto,
                ip_len: sat_u32(IPV6_HEADER_LEN + declared),
            };
            transport::decode(
                out,
                outer,
                ip,
                &payload[at..],
                declared - at,
                frags,
                anomalies,
            )
        }
        Walk::Fragment {
            at,
            next_header,
            offset,
            more,
            id,
        } => {
            let frags = frags.ok_or(DecodeError::FragmentDropped)?;
            let start = at + IPV6_FRAGMENT_HEADER_LEN;
            let (Some(fragment), Some(frag_wire)) =
                (payload.get(start..), declared.checked_sub(start))
            else {
                return Err(DecodeError::Malformed(Layer::Ipv6));
            };
            if fragment.len() < frag_wire {
                return Err(DecodeError::FragmentDropped);
            }
            let piece = Piece {
                // RFC 8200 keys on (src, dst, id) only: the Next Header of non-first
                // fragments may differ, and only the first fragment's counts.
                key: FragKey {
                    src,
                    dst,
                    id,
                    proto: 0,
                },
                ts: outer.ts,
                offset,
                more,
                data: fragment,
                header_len: IPV6_HEADER_LEN + at,
                next_header,
            };
            let whole = frags.insert(piece, anomalies)?;
            let datagram = whole.data;
            let ip_len = sat_u32(whole.header_len + datagram.len());
            // The fragmentable part may start with more extension headers.
            match walk_extensions(whole.next_header, datagram, datagram.len())? {
                Walk::Upper { proto, at } => {
                    (out.src, out.dst) = (src, dst);
                    let ip = IpInfo { proto, ip_len };
                    let upper = &datagram[at..];
                    let outer = Outer {
                        reassembled: true,
                        ..outer
                    };
                    transport::decode(out, outer, ip, upper, upper.len(), None, anomalies)
                }
                Walk::Fragment { .. } => Err(DecodeError::Malformed(Layer::Ipv6)),
            }
        }
    }
}

fn bytes16(b: &[u8; IPV6_HEADER_LEN], at: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&b[at..at + 16]);
    out
}
