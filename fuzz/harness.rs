//! Entry points shared by the fuzz targets (`fuzz_targets/*.rs`) and by
//! `tests/fuzz_regressions.rs`, which replays the checked-in corpora through the same
//! functions so CI exercises them without cargo-fuzz. Each function must not panic on
//! any input; the assertions here are the properties a finding breaks.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use portent::capture::pcapfile::PcapReader;
use portent::capture::{LinkType, RawPacket};
use portent::decode::dns::{self, DnsEndpoints, DnsKind};
use portent::decode::dns_tcp::{DnsTcpStream, MAX_HELD_SEGMENT};
use portent::decode::frag::FragLimits;
use portent::decode::Decoder;
use portent::enrichment::index::{EdrIndex, FlowQuery, IndexConfig};
use portent::enrichment::reader::{ingest_bytes, Adapter, EdrStats, Format};
use portent::time::Ts;

/// The link types a frame can be decoded as; the first input byte picks one.
const LINKS: [LinkType; 9] = [
    LinkType::Null,
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Loop,
    LinkType::LinuxSll,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::LinuxSll2,
    LinkType::Other(147),
];

/// Splits `data` into chunks, each preceded by a 2-byte little-endian length (clamped to
/// what is left), so that one input is a sequence of frames or segments.
fn chunks(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.len() < 2 {
            return None;
        }
        let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
        let (c, rest) = data[2..].split_at(n);
        data = rest;
        Some(c)
    })
}

/// Frame decode: byte 0 picks the link type; the rest is a sequence of frames through
/// one decoder (so fragments reassemble across frames), one second apart.
pub fn frame_decode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let link = LINKS[sel as usize % LINKS.len()];
    let limits = FragLimits {
        max_datagrams: 8,
        max_bytes: 1 << 17,
        ..FragLimits::default()
    };
    let mut dec = Decoder::new(limits);
    // The whole rest as one frame, then as a sequence.
    let frames = std::iter::once(rest).chain(chunks(rest));
    for (i, f) in frames.enumerate() {
        let raw = RawPacket {
            ts: Ts::from_secs(i as i64),
            link,
            data: f,
            orig_len: f.len() as u32,
        };
        if let Ok(d) = dec.decode(&raw) {
            assert!(d.payload.len() <= d.packet.payload_len as usize || d.packet.reassembled);
            if let Some(kind) = dns::dns_kind(d.packet.sport, d.packet.dport) {
                let _ = dns_answer_json(kind, d.payload);
            }
        }
        assert!(dec.held_bytes() <= limits.max_bytes);
        dec.expire(Ts::from_secs(i as i64));
    }
}

fn endpoints() -> DnsEndpoints {
    DnsEndpoints {
        ts: Ts::from_secs(1_700_000_000),
        src: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53)),
        sport: 53,
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dport: 40000,
        transport: 17,
    }
}

/// Parses a message and renders the answer as the `--dns` output does: the line must be
/// one valid JSON object whatever bytes the names held.
fn dns_answer_json(kind: DnsKind, msg: &[u8]) -> Option<serde_json::Value> {
    let a = dns::parse_response(&endpoints(), kind, msg).ok()?;
    assert!(a.records.len() <= dns::MAX_RECORDS);
    assert!(a.cname_chain.len() <= dns::MAX_CNAME_CHAIN + 1);
    assert!(a.addrs.len() <= dns::MAX_ADDRS);
    let mut line = Vec::new();
    portent::output::render_dns(&mut line, &a);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
    let v: serde_json::Value = serde_json::from_slice(&line).expect("--dns line is JSON");
    Some(v)
}

/// DNS decode of one message (and its JSON rendering).
pub fn dns_decode(data: &[u8]) {
    dns_answer_json(DnsKind::Dns, data);
}

/// TCP DNS reassembly: the input is a sequence of segments, each a 7-byte header
/// (op, seq delta u32 LE, cut u16 LE) followed by a 2-byte-length-prefixed payload.
/// op bit 0: SYN; bit 1: flush; bit 2: the seq delta is absolute; the cut is how many
/// bytes the snap length removed (wire length = payload + cut).
pub fn dns_tcp(data: &[u8]) {
    let mut s = DnsTcpStream::new();
    let mut small = DnsTcpStream::with_max_message(512);
    let mut seq: u32 = 1000;
    let mut rest = data;
    let mut emitted = 0usize;
    while rest.len() >= 7 {
        let op = rest[0];
        let delta = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]);
        let cut = u16::from_le_bytes([rest[5], rest[6]]) as u32;
        rest = &rest[7..];
        let Some(payload) = chunks(rest).next() else {
            break;
        };
        rest = &rest[2 + payload.len()..];
        seq = if op & 4 != 0 {
            delta
        } else {
            seq.wrapping_add(delta % 4096)
        };
        let wire = payload.len() as u32 + cut;
        let mut emit = |m: &[u8]| {
            assert!(m.len() <= dns::MAX_MESSAGE_LEN);
            emitted += 1;
            let _ = dns::parse_response(&endpoints(), DnsKind::Dns, m);
        };
        for st in [&mut s, &mut small] {
            if op & 1 != 0 {
                st.syn(seq);
            } else {
                st.push(seq, payload, wire, &mut emit);
            }
            if op & 2 != 0 {
                st.flush(&mut emit);
            }
            // One partial message (with its prefix) plus one held segment at most.
            assert!(st.held_bytes() <= dns::MAX_MESSAGE_LEN + 2 + MAX_HELD_SEGMENT);
        }
    }
    s.flush(&mut |_| {});
    let _ = emitted;
}

/// Every EDR feed format: byte 0 picks the adapter (one per format, or detecting); the
/// rest is lines, each ingested into one index, then a few joins are asked.
pub fn edr_ingest(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut adapter = match Format::ALL.get(sel as usize % (Format::ALL.len() + 1)) {
        Some(&f) => Adapter::new(f),
        None => Adapter::detecting(),
    };
    let index = EdrIndex::new(IndexConfig {
        max_network_events: 64,
        max_processes: 64,
        ..IndexConfig::default()
    });
    let mut stats = EdrStats::default();
    for (i, line) in rest.split(|&b| b == b'\n').enumerate() {
        ingest_bytes(&mut adapter, i as u64 + 1, line, &index, &mut stats);
    }
    let st = index.stats();
    assert!(st.network_events <= 64 + 1, "{st:?}");
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let q = FlowQuery {
        transport: 6,
        src: ip,
        sport: 40000,
        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        dport: 443,
        first_ts: Ts::from_secs(1_700_000_000),
        src_mac: Some([0, 0x50, 0x56, 1, 2, 3]),
    };
    let _ = index.attribute_flow(&q);
    let _ = index.host_by_ip(ip, q.first_ts);
    // Fleet context: who else used the destination, and whether the source has an agent.
    let _ = index.destination_users(6, q.dst, 443, Ts(i64::MIN), Ts(i64::MAX));
    let _ = index.covers(ip);
}

/// The config loader on any text.
pub fn config_load(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portent::config::Config::from_toml(text, "fuzz.toml");
    }
}

/// The pcap/pcapng reader over the input as a whole file; every record is decoded.
pub fn pcap_reader(data: &[u8]) {
    let Ok(mut r) = PcapReader::from_bytes(Path::new("fuzz.pcap"), data.to_vec()) else {
        return;
    };
    let mut dec = Decoder::new(FragLimits::default());
    let mut n = 0u64;
    while let Ok(true) = r.advance() {
        n += 1;
        if let Some(p) = r.current() {
            assert!(p.data.len() <= portent::capture::pcapfile::MAX_BLOCK_LEN as usize);
            let _ = dec.decode(&p);
        }
    }
    assert_eq!(n, r.stats.records);
    // Records can never hold more bytes than the file.
    assert!(r.stats.bytes <= data.len() as u64);
}
