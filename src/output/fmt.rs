//! Allocation-free formatting of the numbers and addresses in flow records: `write!`
//! through `fmt::Formatter` costs several times more per field, on a path that runs once
//! per flow.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// "00" to "99".
pub const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Digits written two at a time straight into `out` (room for 20 reserved, then cut
/// back): a variable-length copy from a stack buffer was a `memcpy` call per number.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    // Most numbers in a record are small (packets, ports, flags).
    if n < 100 {
        if n < 10 {
            out.push(b'0' + n as u8);
        } else {
            let r = n as usize * 2;
            out.extend_from_slice(&PAIRS[r..r + 2]);
        }
        return;
    }
    let len = n.checked_ilog10().unwrap_or(0) as usize + 1;
    let start = out.len();
    out.extend_from_slice(&[0u8; 20]);
    let b = &mut out[start..start + len];
    let mut i = len;
    while n >= 100 {
        let r = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        b[i..i + 2].copy_from_slice(&PAIRS[r..r + 2]);
    }
    if n >= 10 {
        let r = n as usize * 2;
        b[i - 2..i].copy_from_slice(&PAIRS[r..r + 2]);
    } else {
        b[i - 1] = b'0' + n as u8;
    }
    out.truncate(start + len);
}

/// Decimal text of every octet value (up to 3 digits) and its length in the last byte.
const OCTETS: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut i = 0;
    while i < 256 {
        let n = i as u8;
        t[i] = if n >= 100 {
            [b'0' + n / 100, b'0' + n / 10 % 10, b'0' + n % 10, 3]
        } else if n >= 10 {
            [b'0' + n / 10, b'0' + n % 10, 0, 2]
        } else {
            [b'0' + n, 0, 0, 1]
        };
        i += 1;
    }
    t
};

/// Built in a stack buffer from a table of the 256 octet texts and appended once
/// (digit by digit, an address cost ~170 instructions).
fn push_ipv4(out: &mut Vec<u8>, a: Ipv4Addr) {
    let mut b = [0u8; 16];
    let mut n = 0;
    for (i, &o) in a.octets().iter().enumerate() {
        let t = &OCTETS[usize::from(o)];
        // Three bytes always; the next octet or dot overwrites what is past its length.
        b[n..n + 3].copy_from_slice(&t[..3]);
        n += usize::from(t[3]);
        if i < 3 {
            b[n] = b'.';
            n += 1;
        }
    }
    out.extend_from_slice(&b[..n]);
}

pub fn push_ip(out: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(v) => push_ipv4(out, *v),
        IpAddr::V6(v) => push_ipv6(out, v),
    }
}

/// As std's `Display` writes it (RFC 5952: the first longest run of two or more zero
/// groups becomes `::`; v4-mapped as `::ffff:a.b.c.d`), without `fmt` machinery, which
/// cost several times more per address.
fn push_ipv6(out: &mut Vec<u8>, a: &Ipv6Addr) {
    if let Some(v4) = a.to_ipv4_mapped() {
        out.extend_from_slice(b"::ffff:");
        push_ipv4(out, v4);
        return;
    }
    let seg = a.segments();
    let (mut best, mut best_len, mut cur, mut cur_len) = (0, 0, 0, 0);
    for (i, &s) in seg.iter().enumerate() {
        if s == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                (best, best_len) = (cur, cur_len);
            }
        } else {
            cur_len = 0;
        }
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = [0u8; 39];
    let mut n = 0;
    let group = |b: &mut [u8; 39], n: &mut usize, s: u16| {
        let mut started = false;
        for shift in [12, 8, 4, 0] {
            let d = (s >> shift) & 15;
            if d != 0 || started || shift == 0 {
                b[*n] = HEX[d as usize];
                *n += 1;
                started = true;
            }
        }
    };
    let part = |b: &mut [u8; 39], n: &mut usize, groups: &[u16]| {
        for (i, &s) in groups.iter().enumerate() {
            if i > 0 {
                b[*n] = b':';
                *n += 1;
            }
            group(b, n, s);
        }
    };
    if best_len > 1 {
        part(&mut b, &mut n, &seg[..best]);
        b[n..n + 2].copy_from_slice(b"::");
        n += 2;
        part(&mut b, &mut n, &seg[best + best_len..]);
    } else {
        part(&mut b, &mut n, &seg);
    }
    out.extend_from_slice(&b[..n]);
}

/// `aa:bb:cc:dd:ee:ff`, lower case (as `{:02x}` writes each byte).
pub fn push_mac(out: &mut Vec<u8>, m: &[u8; 6]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = [b':'; 17];
    for (i, x) in m.iter().enumerate() {
        b[3 * i] = HEX[(x >> 4) as usize];
        b[3 * i + 1] = HEX[(x & 15) as usize];
    }
    out.extend_from_slice(&b);
}

/// Seconds with six decimals, from nanoseconds (never negative here).
pub fn push_secs6(out: &mut Vec<u8>, nanos: i64) {
    let micros = (nanos.max(0) + 500) / 1_000;
    push_u64(out, (micros / 1_000_000) as u64);
    out.push(b'.');
    let frac = (micros % 1_000_000) as u64;
    let mut buf = [b'0'; 6];
    let mut f = frac;
    for i in (0..6).rev() {
        buf[i] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    out.extend_from_slice(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_std_formatting() {
        for n in [
            0u64,
            7,
            9,
            10,
            99,
            100,
            101,
            999,
            1000,
            65535,
            10u64.pow(19),
            u64::MAX,
        ] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
        for a in [
            "0.0.0.0",
            "10.1.0.17",
            "255.255.255.255",
            "100.9.10.199",
            "2001:db8::1",
            "::ffff:1.2.3.4",
            "::",
            "::1",
            "1::",
            "fe80::1:0:0:2",
            "1:0:0:2:0:0:0:3",
            "1:0:2:0:3:0:4:0",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            let mut v = Vec::new();
            push_ip(&mut v, &ip);
            assert_eq!(String::from_utf8(v).unwrap(), ip.to_string());
        }
        // v4: every octet value in every position.
        for o in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(o, 255 - o, o / 2, 7),
                Ipv4Addr::new(9, o, 100, o),
            ] {
                let mut v = Vec::new();
                push_ip(&mut v, &IpAddr::V4(ip));
                assert_eq!(String::from_utf8(v).unwrap(), ip.to_string());
            }
        }
        // v6: zero runs of every length at every place (ties, the ends), v4-mapped and
        // v4-compatible forms, and pseudo-random groups, against std.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..20_000u32 {
            let mut seg = [0u16; 8];
            for s in seg.iter_mut() {
                let r = next();
                *s = match r % 5 {
                    0 | 1 => 0,
                    2 => (r >> 8) as u16 & 0xf,
                    3 => (r >> 8) as u16 & 0xfff,
                    _ => (r >> 8) as u16,
                };
            }
            if i % 7 == 0 {
                seg[..5].fill(0);
                seg[5] = if i % 2 == 0 { 0xffff } else { 0 };
            }
            let ip = Ipv6Addr::from(seg);
            let mut v = Vec::new();
            push_ipv6(&mut v, &ip);
            assert_eq!(String::from_utf8(v).unwrap(), ip.to_string(), "{seg:x?}");
        }
        for m in [[0u8; 6], [0x0a, 0xb0, 0xff, 0x01, 0x10, 0x9c]] {
            let mut v = Vec::new();
            push_mac(&mut v, &m);
            let want = m.map(|x| format!("{x:02x}")).join(":");
            assert_eq!(String::from_utf8(v).unwrap(), want);
        }
        for (ns, s) in [
            (0i64, "0.000000"),
            (1_500_000_000, "1.500000"),
            (3_124_000, "0.003124"),
            (999_999_999, "1.000000"),
        ] {
            let mut v = Vec::new();
            push_secs6(&mut v, ns);
            assert_eq!(String::from_utf8(v).unwrap(), s);
        }
    }
}
