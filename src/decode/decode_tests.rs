//! Hand-built frames for every link type, header path and fragment case, plus property
//! tests of the panic contract. Builders below write headers field by field so each test
//! reads as the wire layout it checks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::capture::{LinkType, RawPacket};
use crate::decode::frag::FragLimits;
use crate::decode::{
    tcp_flags, DecodeAnomalies, DecodeError, Decoder, Layer, Packet, MAX_ENCAP_DEPTH, PROTO_TCP,
    PROTO_UDP,
};
use crate::time::{Dur, Ts};

// ---------------------------------------------------------------- builders

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const MAC_INNER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x1e];
const V4_SRC: [u8; 4] = [10, 0, 0, 1];
const V4_DST: [u8; 4] = [10, 0, 0, 2];
const V6_SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const PROTO_ICMP: u8 = 1;
const PROTO_GRE: u8 = 47;

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}
fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    b
}

fn tcp(
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let mut b = Vec::new();
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ack.to_be_bytes());
    b.push((((20 + options.len()) / 4) as u8) << 4);
    b.push(flags);
    b.extend_from_slice(&4096u16.to_be_bytes()); // window
    b.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    b.extend_from_slice(options);
    b.extend_from_slice(payload);
    b
}

/// IPv4 header with `options` (multiple of 4), total length from the payload.
fn ipv4_opts(proto: u8, options: &[u8], id: u16, frag: u16, payload: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    let mut b = vec![0x40 | (ihl / 4) as u8, 0];
    b.extend_from_slice(&((ihl + payload.len()) as u16).to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&frag.to_be_bytes());
    b.extend_from_slice(&[64, proto, 0, 0]);
    b.extend_from_slice(&V4_SRC);
    b.extend_from_slice(&V4_DST);
    b.extend_from_slice(options);
    b.extend_from_slice(payload);
    b
}

fn ipv4(proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_opts(proto, &[], 1, 0x4000, payload)
}

/// IPv4 fragment: `offset` in bytes (multiple of 8).
fn ipv4_frag(id: u16, offset: usize, more: bool, proto: u8, data: &[u8]) -> Vec<u8> {
    let field = (offset / 8) as u16 | if more { 0x2000 } else { 0 };
    ipv4_opts(proto, &[], id, field, data)
}

fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x60, 0, 0, 0];
    b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    b.extend_from_slice(&[next, 64]);
    b.extend_from_slice(&V6_SRC);
    b.extend_from_slice(&V6_DST);
    b.extend_from_slice(payload);
    b
}

/// A generic IPv6 extension header (hop-by-hop, routing, dest opts, mobility): `units`
/// of 8 bytes beyond the first 8.
fn ext(next: u8, units: u8) -> Vec<u8> {
    let mut b = vec![next, units];
    b.resize(8 * (units as usize + 1), 0);
    b
}

fn ipv6_frag_header(next: u8, offset: usize, more: bool, id: u32) -> Vec<u8> {
    let mut b = vec![next, 0];
    b.extend_from_slice(&((offset as u16) | more as u16).to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    b
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    ethernet_from(MAC_A, ethertype, payload)
}

fn ethernet_from(src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = MAC_B.to_vec();
    b.extend_from_slice(&src);
    b.extend_from_slice(&ethertype.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

/// Ethernet with VLAN tags, outermost first: (TPID, VLAN id).
fn ethernet_tagged(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = MAC_B.to_vec();
    b.extend_from_slice(&MAC_A);
    for &(tpid, vid) in tags {
        b.extend_from_slice(&tpid.to_be_bytes());
        b.extend_from_slice(&vid.to_be_bytes());
    }
    b.extend_from_slice(&ethertype.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

fn gre(flags: u16, proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = flags.to_be_bytes().to_vec();
    b.extend_from_slice(&proto.to_be_bytes());
    for bit in [0x8000u16, 0x2000, 0x1000] {
        if flags & bit != 0 {
            b.extend_from_slice(&[0xee, 0xee, 0xee, 0xee]);
        }
    }
    b.extend_from_slice(payload);
    b
}

fn vxlan(inner_frame: &[u8]) -> Vec<u8> {
    let mut b = vec![0x08, 0, 0, 0, 0, 0x12, 0x34, 0];
    b.extend_from_slice(inner_frame);
    b
}

fn udp_dns() -> Vec<u8> {
    udp(53, 40000, b"dns-answer")
}

fn v4_udp_dns() -> Vec<u8> {
    ipv4(PROTO_UDP, &udp_dns())
}

fn raw(link: LinkType, data: &[u8]) -> RawPacket<'_> {
    RawPacket {
        ts: Ts::from_secs(100),
        link,
        data,
        orig_len: data.len() as u32,
    }
}

/// Decodes one frame with a fresh decoder; the payload copied out.
fn decode(link: LinkType, frame: &[u8]) -> Result<(Packet, Vec<u8>), DecodeError> {
    decode_raw(&raw(link, frame)).0
}

fn decode_raw(r: &RawPacket<'_>) -> (Result<(Packet, Vec<u8>), DecodeError>, DecodeAnomalies) {
    let mut d = Decoder::new(FragLimits::default());
    let out = d.decode(r).map(|x| (x.packet, x.payload.to_vec()));
    (out, d.anomalies)
}

fn feed(
    d: &mut Decoder,
    link: LinkType,
    frame: &[u8],
    ts: Ts,
) -> Result<(Packet, Vec<u8>), DecodeError> {
    let r = RawPacket {
        ts,
        link,
        data: frame,
        orig_len: frame.len() as u32,
    };
    d.decode(&r).map(|x| (x.packet, x.payload.to_vec()))
}

/// The DNS-over-UDP packet every tunnel and link test carries.
fn assert_v4_dns(p: &Packet, payload: &[u8]) {
    assert_eq!((p.src, p.dst), (v4(V4_SRC), v4(V4_DST)));
    assert_eq!((p.sport, p.dport, p.proto), (53, 40000, PROTO_UDP));
    assert!(p.ports_known);
    assert_eq!(p.ip_len, 20 + 8 + 10);
    assert_eq!(p.payload_len, 10);
    assert_eq!(payload, b"dns-answer");
}

// ---------------------------------------------------------------- link layers

#[test]
fn ethernet_ipv4_udp_yields_addresses_ports_lengths_and_mac() {
    let (p, payload) = decode(LinkType::Ethernet, &ethernet(0x0800, &v4_udp_dns())).unwrap();
    assert_v4_dns(&p, &payload);
    assert_eq!(p.src_mac, Some(MAC_A));
    assert_eq!(p.vlan, 0);
    assert!(!p.tunneled && !p.reassembled);
}

#[test]
fn ethernet_matches_etherparse_builder() {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv4(V4_SRC, V4_DST, 64)
        .udp(53, 40000)
        .write(&mut frame, b"dns-answer")
        .unwrap();
    let (p, payload) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_v4_dns(&p, &payload);
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut frame = ethernet(0x0800, &v4_udp_dns());
    frame.resize(60 + 20, 0xaa);
    let (p, payload) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_v4_dns(&p, &payload);
}

#[test]
fn ethernet_tcp_reads_flags_seq_ack_window_past_options() {
    let seg = tcp(
        443,
        50000,
        1000,
        2000,
        tcp_flags::SYN | tcp_flags::ACK,
        &[1, 1, 1, 0],
        b"hi",
    );
    let (p, payload) = decode(
        LinkType::Ethernet,
        &ethernet(0x0800, &ipv4(PROTO_TCP, &seg)),
    )
    .unwrap();
    assert_eq!((p.sport, p.dport, p.proto), (443, 50000, PROTO_TCP));
    assert_eq!(p.tcp_flags, tcp_flags::SYN | tcp_flags::ACK);
    assert_eq!((p.tcp_seq, p.tcp_ack, p.tcp_window), (1000, 2000, 4096));
    assert_eq!(p.ip_len, 20 + 24 + 2);
    assert_eq!(p.payload_len, 2);
    assert_eq!(payload, b"hi");
}

#[test]
fn single_vlan_tag_records_its_id() {
    let frame = ethernet_tagged(&[(0x8100, 42)], 0x0800, &v4_udp_dns());
    let (p, payload) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_v4_dns(&p, &payload);
    assert_eq!(p.vlan, 42);
}

#[test]
fn qinq_records_the_outer_vlan() {
    let frame = ethernet_tagged(&[(0x88a8, 100), (0x8100, 7)], 0x0800, &v4_udp_dns());
    let (p, payload) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_v4_dns(&p, &payload);
    assert_eq!(p.vlan, 100);
}

#[test]
fn triple_tag_with_9100_records_the_outer_vlan() {
    let frame = ethernet_tagged(
        &[(0x9100, 0x2fff), (0x88a8, 20), (0x8100, 30)],
        0x86dd,
        &ipv6(PROTO_UDP, &udp_dns()),
    );
    let (p, _) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_eq!(p.vlan, 0x0fff, "priority bits are not part of the id");
    assert_eq!((p.src, p.dst), (v6(V6_SRC), v6(V6_DST)));
    assert_eq!(p.src_mac, Some(MAC_A));
}

#[test]
fn vlan_tag_cut_short_is_truncated_vlan() {
    let frame = ethernet_tagged(&[(0x8100, 5)], 0x0800, &[]);
    assert_eq!(
        decode(LinkType::Ethernet, &frame[..16]).unwrap_err(),
        DecodeError::Truncated(Layer::Vlan)
    );
}

#[test]
fn ethernet_cut_short_is_truncated_link() {
    assert_eq!(
        decode(LinkType::Ethernet, &[0; 13]).unwrap_err(),
        DecodeError::Truncated(Layer::Link)
    );
}

#[test]
fn arp_lldp_and_802_3_length_are_unsupported_protocols() {
    for ethertype in [0x0806u16, 0x88cc, 0x0040] {
        let frame = ethernet(ethertype, &[0; 40]);
        assert_eq!(
            decode(LinkType::Ethernet, &frame).unwrap_err(),
            DecodeError::UnsupportedProtocol
        );
    }
}

#[test]
fn other_link_type_is_unsupported_link() {
    assert_eq!(
        decode(LinkType::Other(147), &v4_udp_dns()).unwrap_err(),
        DecodeError::UnsupportedLink
    );
}

fn sll(proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 1, 0, 6]; // incoming, ARPHRD_ETHER, address length 6
    b.extend_from_slice(&MAC_A);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&proto.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

fn sll2(proto: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = proto.to_be_bytes().to_vec();
    b.extend_from_slice(&[0, 0, 0, 0, 0, 3, 0, 1, 0, 6]); // reserved, ifindex 3, ARPHRD_ETHER, incoming, len 6
    b.extend_from_slice(&MAC_A);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    b
}

#[test]
fn linux_sll_ipv4_takes_protocol_at_offset_14_and_mac() {
    let (p, payload) = decode(LinkType::LinuxSll, &sll(0x0800, &v4_udp_dns())).unwrap();
    assert_v4_dns(&p, &payload);
    assert_eq!(p.src_mac, Some(MAC_A));
}

#[test]
fn linux_sll_with_vlan_ethertype_walks_the_tag() {
    let mut tagged = vec![0, 9, 0x08, 0x00];
    tagged.extend_from_slice(&v4_udp_dns());
    let (p, _) = decode(LinkType::LinuxSll, &sll(0x8100, &tagged)).unwrap();
    assert_eq!(p.vlan, 9);
}

#[test]
fn linux_sll2_ipv6_takes_protocol_at_offset_0_and_mac() {
    let (p, payload) = decode(
        LinkType::LinuxSll2,
        &sll2(0x86dd, &ipv6(PROTO_UDP, &udp_dns())),
    )
    .unwrap();
    assert_eq!(
        (p.src, p.dst, p.sport, p.dport),
        (v6(V6_SRC), v6(V6_DST), 53, 40000)
    );
    assert_eq!(p.ip_len, 40 + 18);
    assert_eq!(payload, b"dns-answer");
    assert_eq!(p.src_mac, Some(MAC_A));
}

#[test]
fn linux_sll_headers_cut_short_are_truncated_link() {
    assert_eq!(
        decode(LinkType::LinuxSll, &[0; 15]).unwrap_err(),
        DecodeError::Truncated(Layer::Link)
    );
    assert_eq!(
        decode(LinkType::LinuxSll2, &[0; 19]).unwrap_err(),
        DecodeError::Truncated(Layer::Link)
    );
}

#[test]
fn raw_ip_picks_the_version_from_the_first_nibble() {
    let (p, payload) = decode(LinkType::Raw, &v4_udp_dns()).unwrap();
    assert_v4_dns(&p, &payload);
    assert_eq!(p.src_mac, None);
    let (p, _) = decode(LinkType::Raw, &ipv6(PROTO_UDP, &udp_dns())).unwrap();
    assert_eq!(p.src, v6(V6_SRC));
    let mut bad = v4_udp_dns();
    bad[0] = 0x55;
    assert_eq!(
        decode(LinkType::Raw, &bad).unwrap_err(),
        DecodeError::Malformed(Layer::Link)
    );
    assert_eq!(
        decode(LinkType::Raw, &[]).unwrap_err(),
        DecodeError::Truncated(Layer::Link)
    );
}

#[test]
fn linktype_ipv4_and_ipv6_decode_their_version_only() {
    let (p, payload) = decode(LinkType::Ipv4, &v4_udp_dns()).unwrap();
    assert_v4_dns(&p, &payload);
    let (p, _) = decode(LinkType::Ipv6, &ipv6(PROTO_UDP, &udp_dns())).unwrap();
    assert_eq!(p.dst, v6(V6_DST));
    assert_eq!(
        decode(LinkType::Ipv4, &ipv6(PROTO_UDP, &udp_dns())).unwrap_err(),
        DecodeError::Malformed(Layer::Ipv4)
    );
    assert_eq!(
        decode(LinkType::Ipv6, &v4_udp_dns()).unwrap_err(),
        DecodeError::Truncated(Layer::Ipv6)
    );
}

fn with_family(family: [u8; 4], ip: &[u8]) -> Vec<u8> {
    let mut b = family.to_vec();
    b.extend_from_slice(ip);
    b
}

#[test]
fn null_accepts_ipv4_family_in_either_byte_order() {
    for family in [2u32.to_le_bytes(), 2u32.to_be_bytes()] {
        let (p, payload) = decode(LinkType::Null, &with_family(family, &v4_udp_dns())).unwrap();
        assert_v4_dns(&p, &payload);
    }
}

#[test]
fn null_accepts_every_bsd_ipv6_family_in_either_byte_order() {
    for af in [24u32, 28, 30] {
        for family in [af.to_le_bytes(), af.to_be_bytes()] {
            let (p, _) = decode(
                LinkType::Null,
                &with_family(family, &ipv6(PROTO_UDP, &udp_dns())),
            )
            .unwrap();
            assert_eq!(p.src, v6(V6_SRC));
        }
    }
}

#[test]
fn null_unknown_family_is_unsupported_protocol() {
    let frame = with_family(7u32.to_le_bytes(), &v4_udp_dns());
    assert_eq!(
        decode(LinkType::Null, &frame).unwrap_err(),
        DecodeError::UnsupportedProtocol
    );
    assert_eq!(
        decode(LinkType::Null, &[2, 0, 0]).unwrap_err(),
        DecodeError::Truncated(Layer::Link)
    );
}

#[test]
fn loop_reads_the_family_in_network_order_only() {
    let (p, payload) = decode(
        LinkType::Loop,
        &with_family(2u32.to_be_bytes(), &v4_udp_dns()),
    )
    .unwrap();
    assert_v4_dns(&p, &payload);
    let (p, _) = decode(
        LinkType::Loop,
        &with_family(30u32.to_be_bytes(), &ipv6(PROTO_UDP, &udp_dns())),
    )
    .unwrap();
    assert_eq!(p.src, v6(V6_SRC));
    let little = with_family(2u32.to_le_bytes(), &v4_udp_dns());
    assert_eq!(
        decode(LinkType::Loop, &little).unwrap_err(),
        DecodeError::UnsupportedProtocol
    );
}

// ---------------------------------------------------------------- tunnels

fn over_gre(gre_packet: &[u8]) -> Vec<u8> {
    ethernet(0x0800, &ipv4(PROTO_GRE, gre_packet))
}

#[test]
fn gre_plain_ipv4_is_decoded_by_its_inner_packet() {
    let (p, payload) = decode(
        LinkType::Ethernet,
        &over_gre(&gre(0, 0x0800, &v4_udp_dns())),
    )
    .unwrap();
    assert_v4_dns(&p, &payload);
    assert!(p.tunneled);
    assert_eq!(
        p.src_mac,
        Some(MAC_A),
        "no inner Ethernet: the outer MAC stays"
    );
}

#[test]
fn gre_with_checksum_key_and_sequence_skips_all_three() {
    let (p, payload) = decode(
        LinkType::Ethernet,
        &over_gre(&gre(0xb000, 0x0800, &v4_udp_dns())),
    )
    .unwrap();
    assert_v4_dns(&p, &payload);
    let (p, _) = decode(
        LinkType::Ethernet,
        &over_gre(&gre(0x2000, 0x86dd, &ipv6(PROTO_UDP, &udp_dns()))),
    )
    .unwrap();
    assert_eq!(p.src, v6(V6_SRC));
    assert!(p.tunneled);
}

#[test]
fn gre_transparent_ethernet_bridging_takes_the_inner_mac() {
    let inner = ethernet_from(MAC_INNER, 0x0800, &v4_udp_dns());
    let (p, payload) = decode(LinkType::Ethernet, &over_gre(&gre(0x2000, 0x6558, &inner))).unwrap();
    assert_v4_dns(&p, &payload);
    assert_eq!(p.src_mac, Some(MAC_INNER));
}

#[test]
fn gre_version_1_routing_and_unknown_payloads_are_unsupported() {
    for (flags, proto) in [(0x0001u16, 0x880bu16), (0x4000, 0x0800), (0, 0x0806)] {
        let err = decode(
            LinkType::Ethernet,
            &over_gre(&gre(flags, proto, &v4_udp_dns())),
        )
        .unwrap_err();
        assert_eq!(err, DecodeError::UnsupportedProtocol);
    }
    let cut = over_gre(&gre(0xb000, 0x0800, &[]));
    assert_eq!(
        decode(LinkType::Ethernet, &cut[..cut.len() - 2]).unwrap_err(),
        DecodeError::Truncated(Layer::Tunnel)
    );
}

fn erspan2(inner: &[u8]) -> Vec<u8> {
    let mut b = vec![0x10, 0x05, 0x00, 0x01, 0, 0, 0, 0]; // ver 1, vlan 5, session 1, index 0
    b.extend_from_slice(inner);
    gre(0x1000, 0x88be, &b)
}

fn erspan3(inner: &[u8], subheader: bool) -> Vec<u8> {
    let mut b = vec![0x20, 0x05, 0x00, 0x01, 1, 2, 3, 4, 0, 0, 0, subheader as u8];
    if subheader {
        b.extend_from_slice(&[0x99; 8]);
    }
    b.extend_from_slice(inner);
    gre(0x1000, 0x22eb, &b)
}

#[test]
fn erspan_type_2_skips_its_8_byte_header() {
    let inner = ethernet_from(MAC_INNER, 0x0800, &v4_udp_dns());
    let (p, payload) = decode(LinkType::Ethernet, &over_gre(&erspan2(&inner))).unwrap();
    assert_v4_dns(&p, &payload);
    assert_eq!(p.src_mac, Some(MAC_INNER));
    assert!(p.tunneled);
}

#[test]
fn erspan_type_1_without_sequence_has_no_header() {
    let inner = ethernet_from(MAC_INNER, 0x0800, &v4_udp_dns());
    let (p, payload) = decode(LinkType::Ethernet, &over_gre(&gre(0, 0x88be, &inner))).unwrap();
    assert_v4_dns(&p, &payload);
}

#[test]
fn erspan_type_3_without_subheader_skips_12_bytes() {
    let inner = ethernet_from(MAC_INNER, 0x0800, &v4_udp_dns());
    let (p, payload) = decode(LinkType::Ethernet, &over_gre(&erspan3(&inner, false))).unwrap();
    assert_v4_dns(&p, &payload);
    assert_eq!(p.src_mac, Some(MAC_INNER));
}

#[test]
fn erspan_type_3_with_o_bit_skips_the_platform_subheader() {
    let inner = ethernet_from(MAC_INNER, 0x0800, &v4_udp_dns());
    let (p, payload) = decode(LinkType::Ethernet, &over_gre(&erspan3(&inner, true))).unwrap();
    assert_v4_dns(&p, &payload);
    let cut = over_gre(&gre(0x1000, 0x22eb, &[0x20, 0, 0, 0]));
    assert_eq!(
        decode(LinkType::Ethernet, &cut).unwrap_err(),
        DecodeError::Truncated(Layer::Tunnel)
    );
}

#[test]
fn vxlan_on_4789_is_decoded_by_its_inner_frame() {
    let inner = ethernet_tagged(&[(0x8100, 77)], 0x0800, &v4_udp_dns());
    let outer_udp = udp(51000, 4789, &vxlan(&inner));
    let frame = ethernet_tagged(&[(0x8100, 3)], 0x0800, &ipv4(PROTO_UDP, &outer_udp));
    let (p, payload) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_v4_dns(&p, &payload);
    assert!(p.tunneled);
    assert_eq!(p.vlan, 3, "outermost VLAN");
    assert_eq!(p.src_mac, Some(MAC_A), "inner Ethernet source");
}

/// The pipeline decodes every packet into one reused `Packet`: nothing of the one
/// before (flags, MAC, VLAN, tunnel mark, ports) survives into the next.
#[test]
fn decode_into_a_reused_packet_equals_a_fresh_decode() {
    let inner = ethernet_tagged(&[(0x8100, 77)], 0x0800, &v4_udp_dns());
    let tunneled = ethernet_tagged(
        &[(0x8100, 3)],
        0x0800,
        &ipv4(PROTO_UDP, &udp(51000, 4789, &vxlan(&inner))),
    );
    let syn = ethernet_tagged(
        &[(0x8100, 9)],
        0x0800,
        &ipv4(PROTO_TCP, &tcp(40000, 443, 7, 0, tcp_flags::SYN, &[], &[])),
    );
    let frames = [
        (LinkType::Ethernet, syn),
        (LinkType::Ethernet, tunneled),
        (LinkType::Raw, ipv6(PROTO_UDP, &udp_dns())),
        (LinkType::Ethernet, ethernet(0x0800, &v4_udp_dns())),
        (LinkType::Raw, ipv4(PROTO_ICMP, &[8, 0, 0, 0])),
    ];
    let mut d = Decoder::new(FragLimits::default());
    let mut reused = Packet::UNSET;
    for (i, (link, frame)) in frames.iter().enumerate() {
        let r = raw(*link, frame);
        let payload = d.decode_into(&mut reused, &r).unwrap().to_vec();
        let (fresh, fresh_payload) = decode(*link, frame).unwrap();
        assert_eq!(reused, fresh, "frame {i}");
        assert_eq!(payload, fresh_payload, "frame {i}");
    }
}

#[test]
fn vxlan_inner_vlan_is_used_when_the_outer_is_untagged() {
    let inner = ethernet_tagged(&[(0x8100, 77)], 0x0800, &v4_udp_dns());
    let frame = ethernet(0x0800, &ipv4(PROTO_UDP, &udp(51000, 4789, &vxlan(&inner))));
    assert_eq!(decode(LinkType::Ethernet, &frame).unwrap().0.vlan, 77);
}

#[test]
fn udp_4789_without_the_i_flag_stays_plain_udp() {
    let mut body = vxlan(&ethernet(0x0800, &v4_udp_dns()));
    body[0] = 0;
    let frame = ethernet(0x0800, &ipv4(PROTO_UDP, &udp(51000, 4789, &body)));
    let (p, _) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_eq!((p.dport, p.tunneled), (4789, false));
}

#[test]
fn dns_reply_to_client_port_4789_is_not_a_tunnel() {
    // A reply whose ID starts 0x08 (the VXLAN I flag) with one answer: QR/RD/RA flags
    // and ANCOUNT fill VXLAN's reserved bytes, so it stays the UDP it is.
    let mut msg = vec![0x08, 0x12, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    msg.extend_from_slice(&[3, b'c', b'2', b'x', 0, 0, 1, 0, 1]);
    msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 7]);
    let frame = ethernet(0x0800, &ipv4(PROTO_UDP, &udp(53, 4789, &msg)));
    let (p, payload) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_eq!((p.sport, p.dport, p.tunneled), (53, 4789, false));
    assert_eq!(payload, msg);
    // From port 4789 nothing is ever a tunnel.
    let frame = ethernet(0x0800, &ipv4(PROTO_UDP, &udp(4789, 53000, &vxlan(&frame))));
    let (p, _) = decode(LinkType::Ethernet, &frame).unwrap();
    assert_eq!((p.sport, p.dport, p.tunneled), (4789, 53000, false));
}

#[test]
fn vxlan_reserved_bits_set_is_plain_udp_unless_group_policy() {
    let inner = ethernet(0x0800, &v4_udp_dns());
    let mut body = vxlan(&inner);
    body[7] = 1; // reserved after the VNI
    let frame = ethernet(0x0800, &ipv4(PROTO_UDP, &udp(51000, 4789, &body)));
    assert!(!decode(LinkType::Ethernet, &frame).unwrap().0.tunneled);
    let mut body = vxlan(&inner);
    body[0] = 0x88; // VXLAN-GBP: G bit, policy id in bytes 2..4
    body[2] = 0x12;
    body[3] = 0x34;
    let frame = ethernet(0x0800, &ipv4(PROTO_UDP, &udp(51000, 4789, &body)));
    let (p, payload) = decode(LinkType::Ethernet, &frame).unwrap();
    assert!(p.tunneled);
    assert_v4_dns(&p, &payload);
}

#[test]
fn vxlan_header_cut_short_is_truncated_tunnel() {
    let frame = ethernet(0x0800, &ipv4(PROTO_UDP, &udp(51000, 4789, &[0x08, 0, 0])));
    assert_eq!(
        decode(LinkType::Ethernet, &frame).unwrap_err(),
        DecodeError::Truncated(Layer::Tunnel)
    );
}

/// `levels` GRE tunnels around the DNS packet.
fn nested_gre(levels: usize) -> Vec<u8> {
    let mut ip = v4_udp_dns();
    for _ in 0..levels {
        ip = ipv4(PROTO_GRE, &gre(0, 0x0800, &ip));
    }
    ethernet(0x0800, &ip)
}

#[test]
fn tunnels_nest_up_to_the_depth_limit_and_no_deeper() {
    let (p, payload) = decode(LinkType::Ethernet, &nested_gre(MAX_ENCAP_DEPTH)).unwrap();
    assert_v4_dns(&p, &payload);
    assert!(p.tunneled);
    assert_eq!(
        decode(LinkType::Ethernet, &nested_gre(MAX_ENCAP_DEPTH + 1)).unwrap_err(),
        DecodeError::TooDeep
    );
}

#[test]
fn mixed_vxlan_in_gre_counts_towards_the_same_limit() {
    let mut frame = ethernet(0x0800, &v4_udp_dns());
    for level in 0..=MAX_ENCAP_DEPTH {
        let ip = if level % 2 == 0 {
            ipv4(PROTO_UDP, &udp(1, 4789, &vxlan(&frame)))
        } else {
            ipv4(PROTO_GRE, &gre(0, 0x6558, &frame))
        };
        frame = ethernet(0x0800, &ip);
    }
    assert_eq!(
        decode(LinkType::Ethernet, &frame).unwrap_err(),
        DecodeError::TooDeep
    );
}

// ---------------------------------------------------------------- IPv4

#[test]
fn ipv4_options_are_skipped_by_ihl() {
    let ip = ipv4_opts(PROTO_UDP, &[0x94, 0x04, 0, 0, 1, 1, 1, 0], 1, 0, &udp_dns());
    let (p, payload) = decode(LinkType::Raw, &ip).unwrap();
    assert_eq!((p.sport, p.dport), (53, 40000));
    assert_eq!(p.ip_len, 28 + 18);
    assert_eq!(payload, b"dns-answer");
}

#[test]
fn ipv4_bad_version_or_ihl_is_malformed() {
    let mut ip = v4_udp_dns();
    ip[0] = 0x44;
    assert_eq!(
        decode(LinkType::Ipv4, &ip).unwrap_err(),
        DecodeError::Malformed(Layer::Ipv4)
    );
    ip[0] = 0x55;
    assert_eq!(
        decode(LinkType::Ipv4, &ip).unwrap_err(),
        DecodeError::Malformed(Layer::Ipv4)
    );
}

#[test]
fn ipv4_options_cut_short_are_truncated() {
    let ip = ipv4_opts(PROTO_UDP, &[1; 8], 1, 0, &[]);
    assert_eq!(
        decode(LinkType::Ipv4, &ip[..24]).unwrap_err(),
        DecodeError::Truncated(Layer::Ipv4)
    );
    assert_eq!(
        decode(LinkType::Ipv4, &ip[..19]).unwrap_err(),
        DecodeError::Truncated(Layer::Ipv4)
    );
}

#[test]
fn ipv4_total_length_below_header_is_malformed() {
    let mut ip = v4_udp_dns();
    ip[2..4].copy_from_slice(&19u16.to_be_bytes());
    assert_eq!(
        decode(LinkType::Ipv4, &ip).unwrap_err(),
        DecodeError::Malformed(Layer::Ipv4)
    );
}

#[test]
fn ipv4_total_length_zero_from_tso_uses_the_wire_length() {
    let mut ip = v4_udp_dns();
    ip[2..4].copy_from_slice(&[0, 0]);
    let (p, payload) = decode(LinkType::Ipv4, &ip).unwrap();
    assert_v4_dns(&p, &payload);
}

#[test]
fn ipv4_total_length_beyond_the_wire_is_clamped() {
    let mut ip = v4_udp_dns();
    ip[2..4].copy_from_slice(&1500u16.to_be_bytes());
    let (p, _) = decode(LinkType::Ipv4, &ip).unwrap();
    assert_eq!(p.ip_len, 38);
    assert_eq!(p.payload_len, 10);
}

#[test]
fn other_ip_protocols_have_no_ports() {
    let icmp = [8, 0, 0, 0, 0, 1, 0, 1];
    let (p, payload) = decode(LinkType::Ipv4, &ipv4(PROTO_ICMP, &icmp)).unwrap();
    assert_eq!(
        (p.proto, p.sport, p.dport, p.ports_known),
        (PROTO_ICMP, 0, 0, false)
    );
    assert_eq!((p.ip_len, p.payload_len), (28, 8));
    assert_eq!(payload, icmp);
}

// ---------------------------------------------------------------- IPv6

fn v6_dns_after(chain: &[(u8, Vec<u8>)]) -> Vec<u8> {
    // chain: (this header's protocol number, its bytes); the last points at UDP.
    let mut payload = Vec::new();
    for (_, h) in chain {
        payload.extend_from_slice(h);
    }
    payload.extend_from_slice(&udp_dns());
    ipv6(chain.first().map_or(PROTO_UDP, |c| c.0), &payload)
}

fn assert_v6_dns(frame: &[u8], ext_len: u32) {
    let (p, payload) = decode(LinkType::Ipv6, frame).unwrap();
    assert_eq!((p.src, p.dst), (v6(V6_SRC), v6(V6_DST)));
    assert_eq!((p.proto, p.sport, p.dport), (PROTO_UDP, 53, 40000));
    assert_eq!(p.ip_len, 40 + ext_len + 18);
    assert_eq!(p.payload_len, 10);
    assert_eq!(payload, b"dns-answer");
}

#[test]
fn ipv6_hop_by_hop_is_walked() {
    assert_v6_dns(&v6_dns_after(&[(0, ext(PROTO_UDP, 0))]), 8);
}

#[test]
fn ipv6_routing_is_walked() {
    assert_v6_dns(&v6_dns_after(&[(43, ext(PROTO_UDP, 2))]), 24);
}

#[test]
fn ipv6_destination_options_are_walked() {
    assert_v6_dns(&v6_dns_after(&[(60, ext(PROTO_UDP, 1))]), 16);
}

#[test]
fn ipv6_mobility_is_walked() {
    assert_v6_dns(&v6_dns_after(&[(135, ext(PROTO_UDP, 0))]), 8);
}

#[test]
fn ipv6_authentication_header_counts_in_4_octet_units_plus_2() {
    // Payload length 4 → (4 + 2) * 4 = 24 bytes.
    let mut ah = vec![PROTO_UDP, 4];
    ah.resize(24, 0);
    assert_v6_dns(&v6_dns_after(&[(51, ah)]), 24);
}

#[test]
fn ipv6_atomic_fragment_is_a_whole_packet() {
    assert_v6_dns(
        &v6_dns_after(&[(44, ipv6_frag_header(PROTO_UDP, 0, false, 9))]),
        8,
    );
}

#[test]
fn ipv6_chain_of_every_extension_header_is_walked() {
    let mut ah = vec![PROTO_UDP, 1];
    ah.resize(12, 0);
    let chain = [
        (0, ext(43, 0)),
        (43, ext(44, 0)),
        (44, ipv6_frag_header(60, 0, false, 1)),
        (60, ext(135, 0)),
        (135, ext(51, 0)),
        (51, ah),
    ];
    assert_v6_dns(&v6_dns_after(&chain), 8 * 5 + 12);
}

#[test]
fn ipv6_no_next_header_stops_the_walk() {
    let frame = ipv6(0, &ext(59, 0));
    let (p, _) = decode(LinkType::Ipv6, &frame).unwrap();
    assert_eq!((p.proto, p.ports_known, p.ip_len), (59, false, 48));
}

#[test]
fn ipv6_extension_beyond_the_payload_length_is_malformed() {
    let mut frame = v6_dns_after(&[(60, ext(PROTO_UDP, 1))]);
    frame[4..6].copy_from_slice(&8u16.to_be_bytes());
    assert_eq!(
        decode(LinkType::Ipv6, &frame).unwrap_err(),
        DecodeError::Malformed(Layer::Ipv6)
    );
}

#[test]
fn ipv6_extension_cut_by_snap_length_is_truncated() {
    let frame = v6_dns_after(&[(60, ext(PROTO_UDP, 1))]);
    let r = RawPacket {
        orig_len: frame.len() as u32,
        ..raw(LinkType::Ipv6, &frame[..50])
    };
    assert_eq!(
        decode_raw(&r).0.unwrap_err(),
        DecodeError::Truncated(Layer::Ipv6)
    );
}

#[test]
fn ipv6_endless_extension_chain_is_bounded() {
    let mut payload = Vec::new();
    for _ in 0..100 {
        payload.extend_from_slice(&ext(60, 0));
    }
    assert_eq!(
        decode(LinkType::Ipv6, &ipv6(60, &payload)).unwrap_err(),
        DecodeError::Malformed(Layer::Ipv6)
    );
}

#[test]
fn ipv6_bad_version_is_malformed() {
    let mut frame = ipv6(PROTO_UDP, &udp_dns());
    frame[0] = 0x40;
    assert_eq!(
        decode(LinkType::Ipv6, &frame).unwrap_err(),
        DecodeError::Malformed(Layer::Ipv6)
    );
}

// ---------------------------------------------------------------- transport

fn cut(frame: &[u8], captured: usize) -> (Result<(Packet, Vec<u8>), DecodeError>, DecodeAnomalies) {
    let r = RawPacket {
        orig_len: frame.len() as u32,
        ..raw(LinkType::Ethernet, &frame[..captured])
    };
    decode_raw(&r)
}

#[test]
fn snap_length_cut_tcp_keeps_ports_and_true_lengths() {
    let seg = tcp(443, 50000, 1, 2, tcp_flags::ACK, &[], &[0x55; 1000]);
    let frame = ethernet(0x0800, &ipv4(PROTO_TCP, &seg));
    // 14 + 20 + 8: ports and sequence number, not the flags.
    let (p, anomalies) = cut(&frame, 42);
    let (p, payload) = p.unwrap();
    assert_eq!((p.sport, p.dport, p.ports_known), (443, 50000, true));
    assert_eq!((p.ip_len, p.payload_len), (1040, 1000));
    assert!(payload.is_empty());
    assert_eq!(anomalies.transport_truncated, 1);
}

#[test]
fn snap_length_cut_inside_the_payload_keeps_every_header_field() {
    let seg = tcp(
        443,
        50000,
        1,
        2,
        tcp_flags::PSH | tcp_flags::ACK,
        &[],
        &[0x55; 1000],
    );
    let frame = ethernet(0x0800, &ipv4(PROTO_TCP, &seg));
    let (p, anomalies) = cut(&frame, 96);
    let (p, payload) = p.unwrap();
    assert_eq!(
        (p.tcp_flags, p.tcp_seq, p.tcp_ack),
        (tcp_flags::PSH | tcp_flags::ACK, 1, 2)
    );
    assert_eq!(
        (p.ip_len, p.payload_len, payload.len()),
        (1040, 1000, 96 - 54)
    );
    assert_eq!(anomalies.transport_truncated, 0);
}

#[test]
fn snap_length_cut_before_the_ports_keeps_addresses() {
    let seg = tcp(443, 50000, 1, 2, tcp_flags::ACK, &[], &[0; 100]);
    let frame = ethernet(0x0800, &ipv4(PROTO_TCP, &seg));
    let (p, anomalies) = cut(&frame, 36);
    let (p, _) = p.unwrap();
    assert_eq!((p.src, p.sport, p.ports_known), (v4(V4_SRC), 0, false));
    assert_eq!(p.ip_len, 140);
    assert_eq!(anomalies.transport_truncated, 1);
}

#[test]
fn snap_length_cut_tcp_options_keeps_the_fixed_header() {
    let seg = tcp(
        443,
        50000,
        7,
        8,
        tcp_flags::SYN,
        &[2, 4, 5, 0xb4, 1, 1, 4, 2],
        &[],
    );
    let frame = ethernet(0x0800, &ipv4(PROTO_TCP, &seg));
    let (p, anomalies) = cut(&frame, 14 + 20 + 22);
    let (p, _) = p.unwrap();
    assert_eq!(
        (p.tcp_flags, p.tcp_seq, p.payload_len),
        (tcp_flags::SYN, 7, 0)
    );
    assert_eq!(anomalies.transport_truncated, 1);
}

#[test]
fn snap_length_cut_udp_keeps_ports_and_lengths() {
    let frame = ethernet(0x0800, &ipv4(PROTO_UDP, &udp(53, 1234, &[0; 300])));
    let (p, anomalies) = cut(&frame, 14 + 20 + 6);
    let (p, _) = p.unwrap();
    assert_eq!(
        (p.sport, p.dport, p.payload_len, p.ip_len),
        (53, 1234, 300, 328)
    );
    assert_eq!(anomalies.transport_truncated, 1);
}

#[test]
fn tcp_data_offset_below_5_or_beyond_the_segment_is_malformed() {
    let mut seg = tcp(1, 2, 0, 0, 0, &[], &[]);
    seg[12] = 0x40;
    assert_eq!(
        decode(LinkType::Ipv4, &ipv4(PROTO_TCP, &seg)).unwrap_err(),
        DecodeError::Malformed(Layer::Tcp)
    );
    seg[12] = 0xf0;
    assert_eq!(
        decode(LinkType::Ipv4, &ipv4(PROTO_TCP, &seg)).unwrap_err(),
        DecodeError::Malformed(Layer::Tcp)
    );
}

#[test]
fn transport_shorter_than_its_header_by_ip_length_is_malformed() {
    assert_eq!(
        decode(LinkType::Ipv4, &ipv4(PROTO_TCP, &[0; 19])).unwrap_err(),
        DecodeError::Malformed(Layer::Tcp)
    );
    assert_eq!(
        decode(LinkType::Ipv4, &ipv4(PROTO_UDP, &[0; 7])).unwrap_err(),
        DecodeError::Malformed(Layer::Udp)
    );
}

#[test]
fn udp_length_smaller_than_ip_wins_and_larger_is_ignored() {
    let mut dgram = udp(53, 40000, b"dns-answer");
    dgram[4..6].copy_from_slice(&12u16.to_be_bytes());
    let (p, payload) = decode(LinkType::Ipv4, &ipv4(PROTO_UDP, &dgram)).unwrap();
    assert_eq!((p.payload_len, payload.as_slice()), (4, &b"dns-"[..]));
    dgram[4..6].copy_from_slice(&900u16.to_be_bytes());
    let (p, payload) = decode(LinkType::Ipv4, &ipv4(PROTO_UDP, &dgram)).unwrap();
    assert_eq!(
        (p.payload_len, payload.as_slice()),
        (10, &b"dns-answer"[..])
    );
}

// ---------------------------------------------------------------- fragments

const DNS_BIG: usize = 3000;

fn big_dns_udp() -> Vec<u8> {
    let body: Vec<u8> = (0..DNS_BIG).map(|i| (i % 251) as u8).collect();
    udp(53, 40000, &body)
}

/// IPv4 fragments of `datagram` at 1480-byte boundaries, each framed in Ethernet.
fn v4_fragments(id: u16, datagram: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, part) in datagram.chunks(chunk).enumerate() {
        let more = (i + 1) * chunk < datagram.len();
        out.push(ethernet(
            0x0800,
            &ipv4_frag(id, i * chunk, more, PROTO_UDP, part),
        ));
    }
    out
}

fn assert_big_dns(p: &Packet, payload: &[u8]) {
    assert_eq!((p.sport, p.dport, p.proto), (53, 40000, PROTO_UDP));
    assert!(p.reassembled);
    assert_eq!(p.payload_len as usize, DNS_BIG);
    assert_eq!(payload, &big_dns_udp()[8..]);
}

fn frag_decoder() -> Decoder {
    Decoder::new(FragLimits::default())
}

#[test]
fn ipv4_fragments_in_order_reassemble() {
    let mut d = frag_decoder();
    let frags = v4_fragments(7, &big_dns_udp(), 1480);
    assert_eq!(frags.len(), 3);
    let t = Ts::from_secs(1);
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &frags[0], t).unwrap_err(),
        DecodeError::FragmentHeld
    );
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &frags[1], t).unwrap_err(),
        DecodeError::FragmentHeld
    );
    let (p, payload) = feed(&mut d, LinkType::Ethernet, &frags[2], t).unwrap();
    assert_big_dns(&p, &payload);
    assert_eq!(p.ip_len as usize, 20 + 8 + DNS_BIG);
    assert_eq!(p.src_mac, Some(MAC_A));
    assert_eq!(d.anomalies.reassembled, 1);
    assert_eq!(d.held_bytes(), 0);
}

#[test]
fn ipv4_fragments_out_of_order_reassemble() {
    let mut d = frag_decoder();
    let frags = v4_fragments(7, &big_dns_udp(), 1000);
    let t = Ts::from_secs(1);
    for i in [2, 0, 1] {
        assert_eq!(
            feed(&mut d, LinkType::Ethernet, &frags[i], t).unwrap_err(),
            DecodeError::FragmentHeld
        );
    }
    let (p, payload) = feed(&mut d, LinkType::Ethernet, &frags[3], t).unwrap();
    assert_big_dns(&p, &payload);
}

#[test]
fn non_first_fragment_never_yields_ports() {
    let mut d = frag_decoder();
    let frags = v4_fragments(7, &big_dns_udp(), 1480);
    // Alone, the second fragment's first bytes are DNS data, not a UDP header.
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &frags[1], Ts::ZERO).unwrap_err(),
        DecodeError::FragmentHeld
    );
    assert_eq!(d.held_bytes(), 2960);
}

#[test]
fn overlapping_fragments_keep_the_first_data_and_are_counted() {
    let mut d = frag_decoder();
    let datagram = big_dns_udp();
    let t = Ts::from_secs(1);
    let first = ethernet(0x0800, &ipv4_frag(9, 0, true, PROTO_UDP, &datagram[..1600]));
    // Overlaps 1200..1600 with different bytes, then runs on to the end.
    let mut forged = datagram[1200..].to_vec();
    forged[..400].fill(0xee);
    let second = ethernet(0x0800, &ipv4_frag(9, 1200, false, PROTO_UDP, &forged));
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &first, t).unwrap_err(),
        DecodeError::FragmentHeld
    );
    let (p, payload) = feed(&mut d, LinkType::Ethernet, &second, t).unwrap();
    assert_big_dns(&p, &payload);
    assert_eq!(d.anomalies.fragment_overlaps, 1);
}

#[test]
fn overlap_filling_a_hole_between_two_ranges_uses_only_the_hole() {
    let mut d = frag_decoder();
    let datagram = big_dns_udp();
    let t = Ts::from_secs(1);
    let piece = |off: usize, len: usize, more: bool, fill: Option<u8>| {
        let mut bytes = datagram[off..off + len].to_vec();
        if let Some(f) = fill {
            bytes.fill(f);
        }
        ethernet(0x0800, &ipv4_frag(3, off, more, PROTO_UDP, &bytes))
    };
    let _ = feed(&mut d, LinkType::Ethernet, &piece(0, 800, true, None), t);
    let _ = feed(
        &mut d,
        LinkType::Ethernet,
        &piece(1600, 1408, false, None),
        t,
    );
    let mut spanning = datagram[400..2000].to_vec();
    spanning[..400].fill(0xee);
    spanning[1200..].fill(0xee);
    let spanning = ethernet(0x0800, &ipv4_frag(3, 400, true, PROTO_UDP, &spanning));
    let (p, payload) = feed(&mut d, LinkType::Ethernet, &spanning, t).unwrap();
    assert_big_dns(&p, &payload);
    assert_eq!(d.anomalies.fragment_overlaps, 1);
}

#[test]
fn duplicate_fragment_counts_as_an_overlap() {
    let mut d = frag_decoder();
    let frags = v4_fragments(7, &big_dns_udp(), 1480);
    let t = Ts::ZERO;
    let _ = feed(&mut d, LinkType::Ethernet, &frags[0], t);
    let _ = feed(&mut d, LinkType::Ethernet, &frags[0], t);
    let _ = feed(&mut d, LinkType::Ethernet, &frags[1], t);
    assert!(feed(&mut d, LinkType::Ethernet, &frags[2], t).is_ok());
    assert_eq!(d.anomalies.fragment_overlaps, 1);
}

#[test]
fn incomplete_datagram_times_out_on_packet_time() {
    let mut d = frag_decoder();
    let frags = v4_fragments(7, &big_dns_udp(), 1480);
    let _ = feed(&mut d, LinkType::Ethernet, &frags[0], Ts::from_secs(10));
    d.expire(Ts::from_secs(39));
    assert_eq!((d.anomalies.fragment_timeouts, d.held_bytes()), (0, 1480));
    d.expire(Ts::from_secs(41));
    assert_eq!((d.anomalies.fragment_timeouts, d.held_bytes()), (1, 0));
    // The rest of the datagram alone cannot complete it.
    let _ = feed(&mut d, LinkType::Ethernet, &frags[1], Ts::from_secs(42));
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &frags[2], Ts::from_secs(42)).unwrap_err(),
        DecodeError::FragmentHeld
    );
}

#[test]
fn late_fragment_of_a_timed_out_datagram_starts_afresh() {
    let mut d = frag_decoder();
    let frags = v4_fragments(7, &big_dns_udp(), 1480);
    let _ = feed(&mut d, LinkType::Ethernet, &frags[0], Ts::from_secs(10));
    let _ = feed(&mut d, LinkType::Ethernet, &frags[1], Ts::from_secs(50));
    assert_eq!(d.anomalies.fragment_timeouts, 1);
    assert_eq!(d.held_bytes(), 2960);
}

#[test]
fn full_table_drops_the_oldest_datagram() {
    let limits = FragLimits {
        max_datagrams: 2,
        ..FragLimits::default()
    };
    let mut d = Decoder::new(limits);
    let t = Ts::from_secs(1);
    let a = v4_fragments(1, &big_dns_udp(), 1480);
    let b = v4_fragments(2, &big_dns_udp(), 1480);
    let c = v4_fragments(3, &big_dns_udp(), 1480);
    let _ = feed(&mut d, LinkType::Ethernet, &a[0], t);
    let _ = feed(&mut d, LinkType::Ethernet, &b[0], t);
    let _ = feed(&mut d, LinkType::Ethernet, &c[0], t);
    assert_eq!(d.anomalies.fragment_timeouts, 1);
    // Datagrams 2 and 3 still complete; 1 lost its first fragment.
    for rest in [&b, &c] {
        let _ = feed(&mut d, LinkType::Ethernet, &rest[1], t);
        assert!(feed(&mut d, LinkType::Ethernet, &rest[2], t).is_ok());
    }
    let _ = feed(&mut d, LinkType::Ethernet, &a[1], t);
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &a[2], t).unwrap_err(),
        DecodeError::FragmentHeld
    );
}

#[test]
fn byte_limit_drops_the_oldest_datagram_and_never_exceeds() {
    let limits = FragLimits {
        max_bytes: 4000,
        ..FragLimits::default()
    };
    let mut d = Decoder::new(limits);
    let t = Ts::from_secs(1);
    let a = v4_fragments(1, &big_dns_udp(), 1480);
    let b = v4_fragments(2, &big_dns_udp(), 1480);
    let _ = feed(&mut d, LinkType::Ethernet, &a[0], t);
    let _ = feed(&mut d, LinkType::Ethernet, &a[1], t);
    let _ = feed(&mut d, LinkType::Ethernet, &b[0], t);
    assert_eq!(d.anomalies.fragment_timeouts, 1);
    assert!(d.held_bytes() <= 4000);
    // A single datagram larger than the whole budget is refused outright.
    let mut tiny = Decoder::new(FragLimits {
        max_bytes: 1000,
        ..FragLimits::default()
    });
    assert_eq!(
        feed(&mut tiny, LinkType::Ethernet, &a[0], t).unwrap_err(),
        DecodeError::FragmentDropped
    );
}

#[test]
fn fragment_beyond_65535_bytes_is_dropped() {
    let mut d = frag_decoder();
    let frame = ethernet(0x0800, &ipv4_frag(5, 8191 * 8, false, PROTO_UDP, &[0; 16]));
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &frame, Ts::ZERO).unwrap_err(),
        DecodeError::FragmentDropped
    );
}

#[test]
fn fragment_contradicting_the_known_end_is_dropped() {
    let mut d = frag_decoder();
    let last = ethernet(0x0800, &ipv4_frag(5, 1000, false, PROTO_UDP, &[0; 8]));
    let past = ethernet(0x0800, &ipv4_frag(5, 1008, true, PROTO_UDP, &[0; 8]));
    let _ = feed(&mut d, LinkType::Ethernet, &last, Ts::ZERO);
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &past, Ts::ZERO).unwrap_err(),
        DecodeError::FragmentDropped
    );
}

#[test]
fn fragment_cut_by_snap_length_is_dropped() {
    let mut d = frag_decoder();
    let frags = v4_fragments(7, &big_dns_udp(), 1480);
    let r = RawPacket {
        orig_len: frags[0].len() as u32,
        ..raw(LinkType::Ethernet, &frags[0][..200])
    };
    assert_eq!(d.decode(&r).unwrap_err(), DecodeError::FragmentDropped);
}

#[test]
fn ipv4_fragments_with_different_protocols_are_different_datagrams() {
    let mut d = frag_decoder();
    let dgram = big_dns_udp();
    let first = ethernet(0x0800, &ipv4_frag(4, 0, true, PROTO_UDP, &dgram[..1480]));
    let rest = ethernet(
        0x0800,
        &ipv4_frag(4, 1480, false, PROTO_TCP, &dgram[1480..]),
    );
    let _ = feed(&mut d, LinkType::Ethernet, &first, Ts::ZERO);
    assert_eq!(
        feed(&mut d, LinkType::Ethernet, &rest, Ts::ZERO).unwrap_err(),
        DecodeError::FragmentHeld
    );
}

#[test]
fn too_many_holes_in_one_datagram_drop_further_disjoint_fragments() {
    let mut d = frag_decoder();
    let piece = |off: usize| ethernet(0x0800, &ipv4_frag(8, off, true, PROTO_UDP, &[0; 8]));
    for i in 0..128 {
        let r = feed(&mut d, LinkType::Ethernet, &piece(i * 16), Ts::ZERO);
        assert_eq!(r.unwrap_err(), DecodeError::FragmentHeld);
    }
    let far = feed(&mut d, LinkType::Ethernet, &piece(128 * 16), Ts::ZERO);
    assert_eq!(far.unwrap_err(), DecodeError::FragmentDropped);
    // Filling a hole merges ranges, so it is still taken.
    let hole = feed(&mut d, LinkType::Ethernet, &piece(8), Ts::ZERO);
    assert_eq!(hole.unwrap_err(), DecodeError::FragmentHeld);
}

#[test]
fn fragment_inside_a_reassembled_tunnel_datagram_is_dropped() {
    let mut d = frag_decoder();
    let inner_fragment = ipv4_frag(21, 0, true, PROTO_UDP, &big_dns_udp()[..1480]);
    let gre_packet = gre(0, 0x0800, &inner_fragment);
    let (a, b) = gre_packet.split_at(800);
    let first = ethernet(0x0800, &ipv4_frag(22, 0, true, PROTO_GRE, a));
    let last = ethernet(0x0800, &ipv4_frag(22, 800, false, PROTO_GRE, b));
    let _ = feed(&mut d, LinkType::Ethernet, &first, Ts::ZERO);
    let r = feed(&mut d, LinkType::Ethernet, &last, Ts::ZERO);
    assert_eq!(r.unwrap_err(), DecodeError::FragmentDropped);
}

fn v6_fragments(
    id: u32,
    unfragmentable: &[(u8, Vec<u8>)],
    first_next: u8,
    fragmentable: &[u8],
    chunk: usize,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, part) in fragmentable.chunks(chunk).enumerate() {
        let more = (i + 1) * chunk < fragmentable.len();
        let mut payload = Vec::new();
        for (_, h) in unfragmentable {
            payload.extend_from_slice(h);
        }
        payload.extend_from_slice(&ipv6_frag_header(first_next, i * chunk, more, id));
        payload.extend_from_slice(part);
        let next = unfragmentable.first().map_or(44, |u| u.0);
        out.push(ethernet(0x86dd, &ipv6(next, &payload)));
    }
    out
}

#[test]
fn ipv6_fragments_reassemble() {
    let mut d = frag_decoder();
    let frags = v6_fragments(0xdead_beef, &[], PROTO_UDP, &big_dns_udp(), 1232);
    let t = Ts::from_secs(1);
    for f in &frags[..frags.len() - 1] {
        assert_eq!(
            feed(&mut d, LinkType::Ethernet, f, t).unwrap_err(),
            DecodeError::FragmentHeld
        );
    }
    let (p, payload) = feed(&mut d, LinkType::Ethernet, frags.last().unwrap(), t).unwrap();
    assert_big_dns(&p, &payload);
    assert_eq!((p.src, p.dst), (v6(V6_SRC), v6(V6_DST)));
    assert_eq!(p.ip_len as usize, 40 + 8 + DNS_BIG);
}

#[test]
fn ipv6_fragments_after_hop_by_hop_with_destination_options_inside() {
    let mut d = frag_decoder();
    let mut fragmentable = ext(PROTO_UDP, 0); // destination options, then UDP
    fragmentable.extend_from_slice(&big_dns_udp());
    let frags = v6_fragments(1, &[(0, ext(44, 0))], 60, &fragmentable, 1232);
    let t = Ts::from_secs(1);
    let mut last = None;
    for f in frags.iter().rev() {
        last = Some(feed(&mut d, LinkType::Ethernet, f, t));
    }
    let (p, payload) = last.unwrap().unwrap();
    assert_big_dns(&p, &payload);
    assert_eq!(p.ip_len as usize, 40 + 8 + 8 + 8 + DNS_BIG);
}

#[test]
fn ipv6_non_first_fragment_next_header_is_ignored() {
    let mut d = frag_decoder();
    let mut frags = v6_fragments(2, &[], PROTO_UDP, &big_dns_udp(), 1232);
    // Next Header of the fragment header in the second fragment: 14 + 40.
    frags[1][54] = PROTO_TCP;
    let mut result = Err(DecodeError::FragmentHeld);
    for f in &frags {
        result = feed(&mut d, LinkType::Ethernet, f, Ts::ZERO);
    }
    assert_big_dns(&result.as_ref().unwrap().0, &result.as_ref().unwrap().1);
}

#[test]
fn fragmented_packet_inside_gre_reassembles_and_stays_tunneled() {
    let mut d = frag_decoder();
    let dgram = big_dns_udp();
    let t = Ts::ZERO;
    let wrap = |inner: Vec<u8>| over_gre(&gre(0, 0x0800, &inner));
    let first = wrap(ipv4_frag(11, 0, true, PROTO_UDP, &dgram[..1480]));
    let rest = wrap(ipv4_frag(11, 1480, false, PROTO_UDP, &dgram[1480..]));
    let _ = feed(&mut d, LinkType::Ethernet, &first, t);
    let (p, payload) = feed(&mut d, LinkType::Ethernet, &rest, t).unwrap();
    assert_big_dns(&p, &payload);
    assert!(p.tunneled);
}

#[test]
fn fragmented_gre_outer_reassembles_then_decodes_the_inner() {
    let mut d = frag_decoder();
    let gre_packet = gre(0, 0x0800, &ipv4(PROTO_UDP, &big_dns_udp()));
    let mut out = None;
    for (i, part) in gre_packet.chunks(1480).enumerate() {
        let more = (i + 1) * 1480 < gre_packet.len();
        let frame = ethernet(0x0800, &ipv4_frag(12, i * 1480, more, PROTO_GRE, part));
        out = Some(feed(&mut d, LinkType::Ethernet, &frame, Ts::ZERO));
    }
    let (p, payload) = out.unwrap().unwrap();
    assert_big_dns(&p, &payload);
    assert!(p.tunneled);
}

// ---------------------------------------------------------------- panic contract

mod properties {
    use super::*;
    use proptest::prelude::*;

    const LINKS: [LinkType; 9] = [
        LinkType::Ethernet,
        LinkType::LinuxSll,
        LinkType::LinuxSll2,
        LinkType::Raw,
        LinkType::Ipv4,
        LinkType::Ipv6,
        LinkType::Null,
        LinkType::Loop,
        LinkType::Other(9),
    ];

    fn valid_frames() -> Vec<(LinkType, Vec<u8>)> {
        let inner = ethernet_from(MAC_INNER, 0x0800, &v4_udp_dns());
        let seg = tcp(443, 50000, 1, 2, tcp_flags::ACK, &[1, 1, 1, 0], b"hello");
        let mut v = vec![
            (LinkType::Ethernet, ethernet(0x0800, &ipv4(PROTO_TCP, &seg))),
            (
                LinkType::Ethernet,
                ethernet_tagged(
                    &[(0x88a8, 1), (0x8100, 2)],
                    0x86dd,
                    &ipv6(PROTO_UDP, &udp_dns()),
                ),
            ),
            (LinkType::Ethernet, over_gre(&gre(0xb000, 0x6558, &inner))),
            (LinkType::Ethernet, over_gre(&erspan2(&inner))),
            (LinkType::Ethernet, over_gre(&erspan3(&inner, true))),
            (
                LinkType::Ethernet,
                ethernet(0x0800, &ipv4(PROTO_UDP, &udp(1, 4789, &vxlan(&inner)))),
            ),
            (LinkType::Ethernet, nested_gre(3)),
            (LinkType::LinuxSll, sll(0x0800, &v4_udp_dns())),
            (
                LinkType::LinuxSll2,
                sll2(
                    0x86dd,
                    &v6_dns_after(&[(0, ext(60, 0)), (60, ext(PROTO_UDP, 1))]),
                ),
            ),
            (
                LinkType::Raw,
                ipv4_opts(PROTO_UDP, &[1, 1, 1, 1], 1, 0, &udp_dns()),
            ),
            (
                LinkType::Null,
                with_family(2u32.to_le_bytes(), &v4_udp_dns()),
            ),
            (
                LinkType::Loop,
                with_family(30u32.to_be_bytes(), &ipv6(PROTO_UDP, &udp_dns())),
            ),
        ];
        for f in v4_fragments(1, &big_dns_udp(), 1480) {
            v.push((LinkType::Ethernet, f));
        }
        for f in v6_fragments(1, &[], PROTO_UDP, &big_dns_udp()[..600], 256) {
            v.push((LinkType::Ethernet, f));
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(link in 0..LINKS.len(), data in proptest::collection::vec(any::<u8>(), 0..200), extra in 0u32..3000) {
            let mut d = Decoder::new(FragLimits { max_datagrams: 4, max_bytes: 8192, timeout: Dur::from_secs(1) });
            let r = RawPacket { ts: Ts::ZERO, link: LINKS[link], data: &data, orig_len: data.len() as u32 + extra };
            let _ = d.decode(&r);
            let r = RawPacket { orig_len: 0, ..r };
            let _ = d.decode(&r);
        }

        #[test]
        fn mutated_valid_frames_never_panic(
            pick in any::<proptest::sample::Index>(),
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
            keep in any::<proptest::sample::Index>(),
        ) {
            let frames = valid_frames();
            let (link, mut frame) = frames[pick.index(frames.len())].clone();
            for (at, byte) in edits {
                let i = at.index(frame.len());
                frame[i] = byte;
            }
            let orig_len = frame.len() as u32;
            frame.truncate(keep.index(frame.len() + 1));
            let mut d = Decoder::new(FragLimits::default());
            let r = RawPacket { ts: Ts::ZERO, link, data: &frame, orig_len };
            if let Ok(x) = d.decode(&r) {
                prop_assert!(x.payload.len() <= x.packet.payload_len as usize);
            }
        }

        #[test]
        fn random_fragment_streams_stay_within_limits(
            pieces in proptest::collection::vec((0u16..4, 0usize..700, any::<bool>(), 0usize..400, 0i64..50), 1..60),
        ) {
            let limits = FragLimits { max_datagrams: 3, max_bytes: 6000, timeout: Dur::from_secs(10) };
            let mut d = Decoder::new(limits);
            let body: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
            for (id, offset8, more, len, secs) in pieces {
                let off = offset8 * 8;
                let data = &body[..len];
                let frame = if id % 2 == 0 {
                    ethernet(0x0800, &ipv4_frag(id, off, more, PROTO_UDP, data))
                } else {
                    let mut p = ipv6_frag_header(PROTO_UDP, off, more, id as u32);
                    p.extend_from_slice(data);
                    ethernet(0x86dd, &ipv6(44, &p))
                };
                let _ = feed(&mut d, LinkType::Ethernet, &frame, Ts::from_secs(secs));
                prop_assert!(d.held_bytes() <= limits.max_bytes);
                d.expire(Ts::from_secs(secs));
            }
        }
    }
}

// ---------------------------------------------------------------- real captures

/// Every public capture decodes without panicking, and the TCP/UDP packets decode yields
/// match tshark's count of `(udp or tcp) and not icmp and not icmpv6` (tshark reassembles
/// fragments too). Read with portent's own capture reader, from the copies in pcaps/.
#[test]
fn public_captures_match_tshark_counts() {
    let expected: &[(&str, usize)] = &[
        (
            "dns-tcp-multi-message-per-segment_dns-tcp-multirequest-buffer.pcap",
            48,
        ),
        ("dns-tcp-single-query_dns_tcp.pcap", 11),
        ("dns-tcp-two-queries_issue-4759-tcpdns.pcap", 20),
        ("dns-tcp-with-gap_dns-tcp-ts-gap.pcap", 15),
        ("dns-udp-a-aaaa-cname-http_wikipedia.pcap", 126),
        (
            "dns-udp-classic-wireshark-sample_dns-wiresharkrepo.pcap",
            38,
        ),
        ("dns-udp-edns-ecs-tcp-frag_dns-edns-ecs.pcap", 85),
        ("dns-udp-rrsig-a-aaaa_rrsig.pcap", 7),
        ("dns-udp-same-5tuple_long-connection.pcap", 22),
        ("dns-udp-two-responses_dns-two-responses.pcap", 3),
        ("ipv4-ipv6-fragmented-dns-tcp_dns_fragmented.pcap", 59),
        ("ipv6-dstopts-ext-headers_covert_send6.pcap", 0),
        ("ipv6-fragmented-dns_ipv6-fragmented-dns.pcap", 5),
        ("ipv6-vlan-frag-ext-tcp_frag-eth-vlan-ipv6-tcp.pcap", 1),
        ("llmnr-response_llmnr-authority-additional.pcap", 4),
        ("mdns-a-aaaa_mdns.pcap", 18),
        ("nanosecond-pcap-http-ssh_get-to-ssh-server.pcap", 9),
        ("null-loopback-dns-svcb_dns-svcb.pcap", 2),
        ("null-loopback-dns-tcp-incomplete_dns-incomplete.pcap", 18),
        ("qinq-dns-loc-truncated_loc-29-trunc.pcap", 2),
        ("qinq-udp_q-in-q.pcap", 4),
        ("rawip-dns-ech_ech.pcap", 4),
        ("rawip4-dns-cname_dns-additionals-with-cname.pcap", 2),
        ("rawip6-ipv6-frag-tcp_frag-ip-tcp.pcap", 1),
        ("rawip6-single_LINKTYPE_IPV6.pcap", 1),
        ("sll-dns-tls_KakaoTalk_chat.pcap", 346),
        ("sll-nanosecond-tcp-handshake_tcp-handshake-nano.pcap", 3),
        ("sll2-ipv6_linux_dlt_sll2.pcap", 0),
        ("sll2-tls_openjdk-zeek.org.pcap", 6),
        ("snaplen68-truncated-header_truncated-header.pcap", 24),
        ("snaplen96-tcp_communityid-tcp.pcap", 12),
        ("truncated-file-http_http-mime-truncated.pcap", 2696),
        ("vlan-dns-notify_dns_notify2.pcap", 4),
        ("vlan-triple-tag-http_vlan-qinqinq.pcap", 14),
        ("web-tls-many-flows-dns_tls-subjectaltname.pcap", 3086),
        ("web-tls-netflix-dns_netflix.pcap", 1792),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/public");
    let mut mismatches = Vec::new();
    for &(name, want) in expected {
        let mut reader = crate::capture::pcapfile::PcapReader::open(&dir.join(name)).unwrap();
        let mut d = Decoder::new(FragLimits::default());
        let mut got = 0;
        let mut errors = std::collections::BTreeMap::new();
        while let Some(r) = reader.next_packet().unwrap() {
            match d.decode(&r) {
                Ok(x) if matches!(x.packet.proto, PROTO_TCP | PROTO_UDP) => got += 1,
                Ok(x) => {
                    *errors
                        .entry(format!("proto_{}", x.packet.proto))
                        .or_insert(0) += 1
                }
                Err(e) => *errors.entry(e.kind().to_string()).or_insert(0) += 1,
            }
        }
        println!("{name}: {got}/{want} {errors:?} {:?}", d.anomalies);
        if got != want {
            mismatches.push(name);
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:?}");
}
