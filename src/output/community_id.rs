//! Community ID v1 (corelight/community-id-spec): a flow hash that Zeek, Suricata and
//! many SIEMs agree on, so an alert can be pivoted to their logs.
//!
//! Input hashed: `seed(u16) ‖ saddr ‖ daddr ‖ proto(u8) ‖ 0 ‖ sport(u16) ‖ dport(u16)`, all
//! network byte order, endpoints ordered so the smaller (address, port) comes first;
//! SHA-1, then base64 with padding, prefixed `1:`.

use std::net::IpAddr;

use sha1::{Digest, Sha1};

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
    let (a_bytes, b_bytes) = (addr_bytes(&a), addr_bytes(&b));
    let ordered = one_way
        || a_bytes.as_slice() < b_bytes.as_slice()
        || (a_bytes == b_bytes && sport <= dport);
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
    let digest: [u8; 20] = Sha1::digest(&msg[..n]).into();
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

impl PartialEq for AddrBytes {
    fn eq(&self, o: &Self) -> bool {
        self.as_slice() == o.as_slice()
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
