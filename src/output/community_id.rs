//! Community ID v1 (corelight/community-id-spec): a flow hash that Zeek, Suricata and
//! many SIEMs agree on, so an alert can be pivoted to their logs.
//!
//! Input hashed: `seed(u16) ‖ saddr ‖ daddr ‖ proto(u8) ‖ 0 ‖ sport(u16) ‖ dport(u16)`, all
//! network byte order, endpoints ordered so the smaller (address, port) comes first;
//! SHA-1, then base64 with padding, prefixed `1:`.

use std::net::IpAddr;

/// SHA-1's initial state (FIPS 180-4, 5.3.1).
const SHA1_INIT: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// SHA-1 of a message of at most 55 bytes (one padded block), straight through the
/// compression function: the generic `Digest` path (block buffer, finalisation) cost
/// as much again as the block itself, for every flow and DNS answer written.
fn sha1_one_block(msg: &[u8]) -> [u8; 20] {
    debug_assert!(msg.len() <= 55);
    let n = msg.len().min(55);
    let mut block = [0u8; 64];
    block[..n].copy_from_slice(&msg[..n]);
    block[n] = 0x80;
    block[56..].copy_from_slice(&(n as u64 * 8).to_be_bytes());
    let mut state = SHA1_INIT;
    sha1::compress(&mut state, &[block.into()]);
    let mut d = [0u8; 20];
    for (out, w) in d.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&w.to_be_bytes());
    }
    d
}

/// Protocols whose port fields are part of the hash.
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 132 | 1 | 58)
}

/// ICMP (v4) type pairs for which the flow is two-way: request type -> reply type.
fn icmp4_counterpart(t: u16) -> Option<u16> {
    Some(match t {
        8 => 0,
        0 => 8,
        13 => 14,
        14 => 13,
        15 => 16,
        16 => 15,
        10 => 9,
        9 => 10,
        17 => 18,
        18 => 17,
        _ => return None,
    })
}

fn icmp6_counterpart(t: u16) -> Option<u16> {
    Some(match t {
        128 => 129,
        129 => 128,
        133 => 134,
        134 => 133,
        135 => 136,
        136 => 135,
        130 => 131,
        131 => 130,
        139 => 140,
        140 => 139,
        _ => return None,
    })
}

/// Community ID v1 of a flow as seen from one packet. For ICMP, `sport` is the type and
/// `dport` the code.
pub fn community_id(
    seed: u16,
    saddr: IpAddr,
    daddr: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
) -> String {
    let mut v = Vec::with_capacity(30);
    community_id_into(&mut v, seed, saddr, daddr, sport, dport, proto);
    String::from_utf8(v).unwrap_or_default()
}

/// [`community_id`] appended to a byte buffer, without allocating.
pub fn community_id_into(
    out: &mut Vec<u8>,
    seed: u16,
    saddr: IpAddr,
    daddr: IpAddr,
    sport: u16,
    dport: u16,
    proto: u8,
) {
    let (mut sport, mut dport) = (sport, dport);
    let mut one_way = false;
    match proto {
        1 => match icmp4_counterpart(sport) {
            Some(c) => dport = c,
            None => one_way = true,
        },
        58 => match icmp6_counterpart(sport) {
            Some(c) => dport = c,
            None => one_way = true,
        },
        _ => {}
    }
    let (mut a, mut b) = (saddr, daddr);
    let ordered = one_way || (addr_order(&a), sport) <= (addr_order(&b), dport);
    if !ordered {
        std::mem::swap(&mut a, &mut b);
        std::mem::swap(&mut sport, &mut dport);
    }
    // The whole message (at most 40 bytes) in one update: SHA-1's block buffering cost
    // more per small update than the hash of the block itself.
    let mut msg = [0u8; 40];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        msg[n..n + bytes.len()].copy_from_slice(bytes);
        n += bytes.len();
    };
    put(&seed.to_be_bytes());
    put(addr_bytes(&a).as_slice());
    put(addr_bytes(&b).as_slice());
    put(&[proto, 0]);
    if has_ports(proto) {
        put(&sport.to_be_bytes());
        put(&dport.to_be_bytes());
    }
    let digest = sha1_one_block(&msg[..n]);
    out.extend_from_slice(b"1:");
    out.extend_from_slice(&base64_digest(&digest));
}

/// Standard base64 with padding of a SHA-1 digest: 28 characters (six groups of three
/// bytes, then two bytes and one `=`).
fn base64_digest(d: &[u8; 20]) -> [u8; 28] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |v: u32, shift: u32| ALPHABET[(v >> shift) as usize & 63];
    let mut o = [b'='; 28];
    for g in 0..6 {
        let v = u32::from(d[3 * g]) << 16 | u32::from(d[3 * g + 1]) << 8 | u32::from(d[3 * g + 2]);
        o[4 * g] = sextet(v, 18);
        o[4 * g + 1] = sextet(v, 12);
        o[4 * g + 2] = sextet(v, 6);
        o[4 * g + 3] = sextet(v, 0);
    }
    let v = u32::from(d[18]) << 16 | u32::from(d[19]) << 8;
    o[24] = sextet(v, 18);
    o[25] = sextet(v, 12);
    o[26] = sextet(v, 6);
    o
}

/// An address as a key that orders as the spec's comparison of the network-order byte
/// strings does (integers instead of a `memcmp` per record; a string before a longer
/// one it prefixes).
fn addr_order(a: &IpAddr) -> (u128, u8) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(*v)) << 96, 4),
        IpAddr::V6(v) => (u128::from(*v), 16),
    }
}

enum AddrBytes {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl AddrBytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            AddrBytes::V4(b) => b,
            AddrBytes::V6(b) => b,
        }
    }
}

fn addr_bytes(a: &IpAddr) -> AddrBytes {
    match a {
        IpAddr::V4(v) => AddrBytes::V4(v.octets()),
        IpAddr::V6(v) => AddrBytes::V6(v.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let id = community_id(
            0,
            "192.168.1.52".parse().unwrap(),
            "8.8.8.8".parse().unwrap(),
            54585,
            53,
            17,
        );
        assert_eq!(id, "1:d/FP5EW3wiY1vCndhwleRRKHowQ=");
        let a = "2001:470:e5bf:dead:4957:2174:e82c:4887".parse().unwrap();
        let b = "2607:f8b0:400c:c03::1a".parse().unwrap();
        assert_eq!(
            community_id(0, a, b, 63943, 25, 6),
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4="
        );
        assert_eq!(
            community_id(1, a, b, 63943, 25, 6),
            "1:eJYTW6AOzFLlSUoESovMjnu7rMw="
        );
    }

    /// corelight/community-id-spec's baseline vectors (tests/fixtures/community-id):
    /// seed 0 and seed 1 in base64, and the hex digests, which check the one-block
    /// SHA-1 without the base64 step.
    #[test]
    fn spec_baseline_vectors() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/community-id/");
        let read = |f: &str| -> Vec<serde_json::Value> {
            let text = std::fs::read_to_string(format!("{dir}{f}")).unwrap();
            serde_json::from_str(&text).unwrap()
        };
        let mut n = 0;
        for (file, seed, hex) in [
            ("baseline_deflt.json", 0, false),
            ("baseline_seed1.json", 1, false),
            ("baseline_nob64.json", 0, true),
        ] {
            for v in read(file) {
                let ip = |k: &str| v[k].as_str().unwrap().parse::<IpAddr>().unwrap();
                let port = |k: &str| v[k].as_u64().unwrap_or(0) as u16;
                let proto = v["proto"].as_u64().unwrap() as u8;
                let want = v["communityid"].as_str().unwrap();
                let id = if hex { hex_id } else { community_id };
                let got = id(
                    seed,
                    ip("saddr"),
                    ip("daddr"),
                    port("sport"),
                    port("dport"),
                    proto,
                );
                assert_eq!(got, want, "{file}: {v}");
                n += 1;
            }
        }
        assert!(n >= 60, "{n} vectors");
    }

    /// The hex-digest form of the spec's `nob64` vectors, from the same message.
    fn hex_id(seed: u16, a: IpAddr, b: IpAddr, sport: u16, dport: u16, proto: u8) -> String {
        let mut out = Vec::new();
        community_id_into(&mut out, seed, a, b, sport, dport, proto);
        let b64 = std::str::from_utf8(&out[2..]).unwrap();
        // Decode the base64 digest back to bytes (28 chars, one '=').
        let val = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => (c - b'A') as u32,
                b'a'..=b'z' => (c - b'a' + 26) as u32,
                b'0'..=b'9' => (c - b'0' + 52) as u32,
                b'+' => 62,
                b'/' => 63,
                _ => 0,
            }
        };
        let mut bytes = Vec::new();
        for g in b64.as_bytes().chunks(4) {
            let v = g.iter().fold(0u32, |acc, &c| acc << 6 | val(c));
            bytes.extend_from_slice(&v.to_be_bytes()[1..]);
        }
        bytes.truncate(20);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("1:{hex}")
    }

    /// One-block SHA-1 against FIPS 180 examples.
    #[test]
    fn sha1_of_short_messages() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(
            hex(sha1_one_block(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(sha1_one_block(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        let m55 = [b'a'; 55];
        assert_eq!(
            hex(sha1_one_block(&m55)),
            "c1c8bbdc22796e28c0e15163d20899b65621d65a"
        );
    }

    #[test]
    fn base64_of_a_digest_matches_the_standard_alphabet_with_padding() {
        let counting: [u8; 20] = std::array::from_fn(|i| i as u8);
        assert_eq!(&base64_digest(&counting), b"AAECAwQFBgcICQoLDA0ODxAREhM=");
        assert_eq!(&base64_digest(&[255; 20]), b"//////////////////////////8=");
        let mut plus = [0u8; 20];
        plus[..3].copy_from_slice(&[251, 239, 190]);
        assert_eq!(&base64_digest(&plus), b"++++AAAAAAAAAAAAAAAAAAAAAAA=");
    }
}
