//! Allocation-free formatting of the numbers and addresses in flow records: `write!`
//! through `fmt::Formatter` costs several times more per field, on a path that runs once
//! per flow.

use std::net::{IpAddr, Ipv4Addr};

pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_ipv4(out: &mut Vec<u8>, a: Ipv4Addr) {
    for (i, o) in a.octets().iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_u64(out, *o as u64);
    }
}

pub fn push_ip(out: &mut Vec<u8>, a: &IpAddr) {
    match a {
        IpAddr::V4(v) => push_ipv4(out, *v),
        IpAddr::V6(v) => {
            use std::io::Write;
            // Rare enough, and RFC 5952 compression is fiddly: std does it right.
            let _ = write!(out, "{v}");
        }
    }
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
        for n in [0u64, 7, 10, 99, 100, 65535, u64::MAX] {
            let mut v = Vec::new();
            push_u64(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
        for a in [
            "0.0.0.0",
            "10.1.0.17",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = a.parse().unwrap();
            let mut v = Vec::new();
            push_ip(&mut v, &ip);
            assert_eq!(String::from_utf8(v).unwrap(), ip.to_string());
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
