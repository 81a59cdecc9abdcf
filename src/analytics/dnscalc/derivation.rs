//! Derivations: how malware computes a port (or an address) from the address in a DNS
//! answer. The built-in table is named by the expression each function computes, so every
//! name is also valid in the config's expression language ([`super::expr`]) and the
//! tests check the two agree.
//!
//! A value becomes a port as a C `uint16_t` would: modulo 65536 (0 is no port).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::expr::Expr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

/// The numbers derivations work on: `o1..o4` in `v[0..4]` for IPv4, `h1..h8` for IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operands {
    pub family: Family,
    pub v: [i64; 8],
}

impl Operands {
    /// IPv4-mapped and NAT64 (64:ff9b::/96) addresses count as the IPv4 address they carry.
    pub fn from_ip(ip: IpAddr) -> Operands {
        match canonical(ip) {
            IpAddr::V4(a) => {
                let o = a.octets();
                let mut v = [0; 8];
                for i in 0..4 {
                    v[i] = i64::from(o[i]);
                }
                Operands {
                    family: Family::V4,
                    v,
                }
            }
            IpAddr::V6(a) => {
                let s = a.segments();
                let mut v = [0; 8];
                for i in 0..8 {
                    v[i] = i64::from(s[i]);
                }
                Operands {
                    family: Family::V6,
                    v,
                }
            }
        }
    }
}

/// IPv4 carried in IPv6 (mapped, NAT64 well-known prefix) as IPv4; others unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    if let IpAddr::V6(a) = ip {
        if let Some(v4) = a.to_ipv4_mapped() {
            return IpAddr::V4(v4);
        }
        let s = a.segments();
        if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
            return IpAddr::V4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
        }
    }
    ip
}

type CalcFn = fn(&[i64; 8]) -> i64;

/// The built-in port derivations. IPv6 uses only the interface id and the subnet groups
/// (h3..h8): h1/h2 are shared by whole providers (2001:, 2606:4700:), so a formula on
/// them would "match" one port for every address of a provider.
pub static BUILTIN: &[(&str, Family, CalcFn)] = &[
    // APT12 (Etumbot / IXESHE family): port = o1*o2 + o3.
    ("o1*o2+o3", Family::V4, |o| o[0] * o[1] + o[2]),
    ("o1*(o2+o3)", Family::V4, |o| o[0] * (o[1] + o[2])),
    ("o2*o3+o4", Family::V4, |o| o[1] * o[2] + o[3]),
    ("o1*o2+o4", Family::V4, |o| o[0] * o[1] + o[3]),
    ("o3*o4+o2", Family::V4, |o| o[2] * o[3] + o[1]),
    // Two octets as a 16-bit number, both byte orders.
    ("o1*256+o2", Family::V4, |o| o[0] * 256 + o[1]),
    ("o2*256+o1", Family::V4, |o| o[1] * 256 + o[0]),
    ("o2*256+o3", Family::V4, |o| o[1] * 256 + o[2]),
    ("o3*256+o2", Family::V4, |o| o[2] * 256 + o[1]),
    ("o3*256+o4", Family::V4, |o| o[2] * 256 + o[3]),
    ("o4*256+o3", Family::V4, |o| o[3] * 256 + o[2]),
    ("o1*256+o4", Family::V4, |o| o[0] * 256 + o[3]),
    ("o4*256+o1", Family::V4, |o| o[3] * 256 + o[0]),
    // IPv6: low 16 bits of the interface id (both byte orders) and the other groups.
    ("h8", Family::V6, |h| h[7]),
    ("(h8%256)*256+h8/256", Family::V6, |h| {
        (h[7] % 256) * 256 + h[7] / 256
    }),
    ("h7", Family::V6, |h| h[6]),
    ("(h7%256)*256+h7/256", Family::V6, |h| {
        (h[6] % 256) * 256 + h[6] / 256
    }),
    ("h6", Family::V6, |h| h[5]),
    ("h5", Family::V6, |h| h[4]),
    ("h4", Family::V6, |h| h[3]),
    ("h7+h8", Family::V6, |h| h[6] + h[7]),
];

#[derive(Clone, Debug)]
enum Calc {
    Builtin(CalcFn),
    Expr(Box<Expr>),
}

/// One named way to compute a port from an answer address.
#[derive(Clone, Debug)]
pub struct Derivation {
    pub name: Cow<'static, str>,
    pub family: Family,
    calc: Calc,
}

impl Derivation {
    pub fn builtin(i: usize) -> Option<Derivation> {
        let &(name, family, f) = BUILTIN.get(i)?;
        Some(Derivation {
            name: Cow::Borrowed(name),
            family,
            calc: Calc::Builtin(f),
        })
    }

    /// A derivation from the config's expression language; its text is its name.
    pub fn parse(src: &str) -> Result<Derivation, String> {
        let e = Expr::parse(src)?;
        Ok(Derivation {
            name: Cow::Owned(src.split_whitespace().collect()),
            family: e.family(),
            calc: Calc::Expr(Box::new(e)),
        })
    }

    pub fn value(&self, o: &Operands) -> Option<i64> {
        if o.family != self.family {
            return None;
        }
        match &self.calc {
            Calc::Builtin(f) => Some(f(&o.v)),
            Calc::Expr(e) => e.eval(o),
        }
    }

    /// The port this derivation gives for `o` (value mod 65536; 0 is none).
    pub fn port(&self, o: &Operands) -> Option<u16> {
        let p = self.value(o)?.rem_euclid(65_536) as u16;
        (p != 0).then_some(p)
    }

    /// The formula with the address's numbers in place of the variables, as reasons
    /// show it: `o1*256+o2` on 71.63.201.9 is `71*256+63`.
    pub fn instantiate(&self, o: &Operands) -> String {
        let b = self.name.as_bytes();
        let mut s = String::with_capacity(b.len() + 8);
        let mut i = 0;
        while i < b.len() {
            let var = matches!(b[i], b'o' | b'h')
                && b.get(i + 1).is_some_and(|d| (b'1'..=b'8').contains(d));
            if var {
                let idx = (b[i + 1] - b'1') as usize;
                s.push_str(&o.v[idx].to_string());
                i += 2;
            } else {
                s.push(b[i] as char);
                i += 1;
            }
        }
        s
    }
}

/// Largest address offset that counts as a neighbour (within about one /24).
pub const MAX_OFFSET: i64 = 255;

/// Addresses a host may have computed from an answered address, without a key.
/// Neighbours (±1..±3, one octet ±1) are cheap for benign traffic to hit too (the next
/// server of a farm), so they are kept apart from the bit-shuffling transforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrTransform {
    Reversed,
    SwappedPairs,
    SwappedHalves,
    RotatedLeft,
    RotatedRight,
    AllOctetsPlus1,
    AllOctetsMinus1,
    Offset(i16),
    OctetPlus1(u8),
    OctetMinus1(u8),
}

impl AddrTransform {
    pub const V4: [AddrTransform; 19] = [
        AddrTransform::Reversed,
        AddrTransform::SwappedPairs,
        AddrTransform::SwappedHalves,
        AddrTransform::RotatedLeft,
        AddrTransform::RotatedRight,
        AddrTransform::AllOctetsPlus1,
        AddrTransform::AllOctetsMinus1,
        AddrTransform::Offset(1),
        AddrTransform::Offset(-1),
        AddrTransform::Offset(2),
        AddrTransform::Offset(-2),
        AddrTransform::Offset(3),
        AddrTransform::Offset(-3),
        AddrTransform::OctetPlus1(0),
        AddrTransform::OctetMinus1(0),
        AddrTransform::OctetPlus1(1),
        AddrTransform::OctetMinus1(1),
        AddrTransform::OctetPlus1(2),
        AddrTransform::OctetMinus1(2),
    ];
    pub const V6: [AddrTransform; 7] = [
        AddrTransform::SwappedHalves,
        AddrTransform::Offset(1),
        AddrTransform::Offset(-1),
        AddrTransform::Offset(2),
        AddrTransform::Offset(-2),
        AddrTransform::Offset(3),
        AddrTransform::Offset(-3),
    ];

    /// A neighbour of the address rather than a shuffle of its bytes.
    pub fn is_neighbour(self) -> bool {
        matches!(
            self,
            AddrTransform::Offset(_) | AddrTransform::OctetPlus1(_) | AddrTransform::OctetMinus1(_)
        )
    }

    pub fn name(self) -> String {
        match self {
            AddrTransform::Reversed => "octets reversed".into(),
            AddrTransform::SwappedPairs => "octet pairs swapped".into(),
            AddrTransform::SwappedHalves => "halves swapped".into(),
            AddrTransform::RotatedLeft => "octets rotated left".into(),
            AddrTransform::RotatedRight => "octets rotated right".into(),
            AddrTransform::AllOctetsPlus1 => "each octet +1".into(),
            AddrTransform::AllOctetsMinus1 => "each octet -1".into(),
            AddrTransform::Offset(d) => format!("address {d:+}"),
            AddrTransform::OctetPlus1(i) => format!("o{} +1", i + 1),
            AddrTransform::OctetMinus1(i) => format!("o{} -1", i + 1),
        }
    }

    /// The transform turning `from` into `to`, if any: O(1), the check on the hot path
    /// (shuffles need the same octets, neighbours a small distance).
    pub fn between(from: IpAddr, to: IpAddr) -> Option<AddrTransform> {
        use AddrTransform::*;
        match (canonical(from), canonical(to)) {
            (IpAddr::V4(f), IpAddr::V4(t)) => {
                let (fo, to_) = (f.octets(), t.octets());
                let (mut a, mut b) = (fo, to_);
                a.sort_unstable();
                b.sort_unstable();
                if a == b {
                    let shuffles = [
                        Reversed,
                        SwappedPairs,
                        SwappedHalves,
                        RotatedLeft,
                        RotatedRight,
                    ];
                    if let Some(x) = shuffles.into_iter().find(|x| x.apply(from) == Some(to)) {
                        return Some(x);
                    }
                }
                let d = i64::from(u32::from(t)) - i64::from(u32::from(f));
                if d != 0 && d.abs() <= MAX_OFFSET {
                    return Some(Offset(d as i16));
                }
                let differ = (0..4).filter(|&k| fo[k] != to_[k]).count();
                match differ {
                    1 => {
                        let k = (0..3).find(|&k| fo[k] != to_[k])?;
                        match i16::from(to_[k]) - i16::from(fo[k]) {
                            1 => Some(OctetPlus1(k as u8)),
                            -1 => Some(OctetMinus1(k as u8)),
                            _ => None,
                        }
                    }
                    4 if to_ == fo.map(|x| x.wrapping_add(1)) => Some(AllOctetsPlus1),
                    4 if to_ == fo.map(|x| x.wrapping_sub(1)) => Some(AllOctetsMinus1),
                    _ => None,
                }
            }
            (IpAddr::V6(f), IpAddr::V6(t)) => {
                let (fa, tb) = (u128::from(f), u128::from(t));
                if fa != tb && fa.rotate_left(64) == tb {
                    return Some(SwappedHalves);
                }
                let d = tb.wrapping_sub(fa) as i128;
                (d != 0 && d.unsigned_abs() <= MAX_OFFSET as u128).then_some(Offset(d as i16))
            }
            _ => None,
        }
    }

    pub fn apply(self, ip: IpAddr) -> Option<IpAddr> {
        match canonical(ip) {
            IpAddr::V4(a) => {
                let o = a.octets();
                let n = u32::from(a);
                let r = match self {
                    AddrTransform::Reversed => [o[3], o[2], o[1], o[0]],
                    AddrTransform::SwappedPairs => [o[1], o[0], o[3], o[2]],
                    AddrTransform::SwappedHalves => [o[2], o[3], o[0], o[1]],
                    AddrTransform::RotatedLeft => [o[1], o[2], o[3], o[0]],
                    AddrTransform::RotatedRight => [o[3], o[0], o[1], o[2]],
                    AddrTransform::AllOctetsPlus1 => o.map(|x| x.wrapping_add(1)),
                    AddrTransform::AllOctetsMinus1 => o.map(|x| x.wrapping_sub(1)),
                    AddrTransform::Offset(d) => n.checked_add_signed(i32::from(d))?.to_be_bytes(),
                    AddrTransform::OctetPlus1(i) | AddrTransform::OctetMinus1(i) => {
                        let mut r = o;
                        let x = r.get_mut(i as usize)?;
                        *x = if matches!(self, AddrTransform::OctetPlus1(_)) {
                            x.checked_add(1)?
                        } else {
                            x.checked_sub(1)?
                        };
                        r
                    }
                };
                let out = IpAddr::V4(Ipv4Addr::from(r));
                (out != IpAddr::V4(a)).then_some(out)
            }
            IpAddr::V6(a) => {
                let n = u128::from(a);
                let r = match self {
                    AddrTransform::SwappedHalves => n.rotate_left(64),
                    AddrTransform::Offset(d) => n.checked_add_signed(i128::from(d))?,
                    _ => return None,
                };
                (r != n).then_some(IpAddr::V6(Ipv6Addr::from(r)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(s: &str) -> Operands {
        Operands::from_ip(s.parse().unwrap())
    }
    fn port_of(name: &str, addr: &str) -> Option<u16> {
        let i = BUILTIN.iter().position(|b| b.0 == name).unwrap();
        Derivation::builtin(i).unwrap().port(&ops(addr))
    }

    // One test per built-in formula, values worked by hand.
    #[test]
    fn apt12_o1_o2_plus_o3() {
        assert_eq!(port_of("o1*o2+o3", "71.63.201.9"), Some(71 * 63 + 201));
        assert_eq!(port_of("o1*o2+o3", "255.255.255.1"), Some(65280));
    }
    #[test]
    fn o1_times_o2_plus_o3_wraps_like_u16() {
        // 200*(250+100) = 70000 = 65536 + 4464
        assert_eq!(port_of("o1*(o2+o3)", "200.250.100.1"), Some(4464));
    }
    #[test]
    fn o2_o3_plus_o4() {
        assert_eq!(port_of("o2*o3+o4", "1.100.150.77"), Some(15077));
    }
    #[test]
    fn o1_o2_plus_o4() {
        assert_eq!(port_of("o1*o2+o4", "100.150.1.77"), Some(15077));
    }
    #[test]
    fn o3_o4_plus_o2() {
        assert_eq!(port_of("o3*o4+o2", "9.77.100.150"), Some(15077));
    }
    #[test]
    fn octet_pairs_both_orders() {
        let a = "71.63.201.9";
        assert_eq!(port_of("o1*256+o2", a), Some(18239));
        assert_eq!(port_of("o2*256+o1", a), Some(63 * 256 + 71));
        assert_eq!(port_of("o2*256+o3", a), Some(63 * 256 + 201));
        assert_eq!(port_of("o3*256+o2", a), Some(201 * 256 + 63));
        assert_eq!(port_of("o3*256+o4", a), Some(201 * 256 + 9));
        assert_eq!(port_of("o4*256+o3", a), Some(9 * 256 + 201));
        assert_eq!(port_of("o1*256+o4", a), Some(71 * 256 + 9));
        assert_eq!(port_of("o4*256+o1", a), Some(9 * 256 + 71));
    }
    #[test]
    fn zero_is_no_port() {
        assert_eq!(port_of("o1*256+o2", "0.0.1.1"), None);
    }
    #[test]
    fn ipv6_interface_id_groups() {
        let a = "2001:db8:1:2:3:4:1234:4f5a";
        assert_eq!(port_of("h8", a), Some(0x4f5a));
        assert_eq!(port_of("(h8%256)*256+h8/256", a), Some(0x5a4f));
        assert_eq!(port_of("h7", a), Some(0x1234));
        assert_eq!(port_of("(h7%256)*256+h7/256", a), Some(0x3412));
        assert_eq!(port_of("h6", a), Some(4));
        assert_eq!(port_of("h5", a), Some(3));
        assert_eq!(port_of("h4", a), Some(2));
        assert_eq!(port_of("h7+h8", a), Some(0x1234 + 0x4f5a));
        assert_eq!(port_of("h8", "71.63.201.9"), None);
    }
    #[test]
    fn mapped_and_nat64_count_as_ipv4() {
        assert_eq!(port_of("o1*256+o2", "::ffff:71.63.201.9"), Some(18239));
        assert_eq!(port_of("o1*256+o2", "64:ff9b::473f:c909"), Some(18239));
    }

    /// Every built-in name is an expression computing the same thing.
    #[test]
    fn builtin_names_are_their_expressions() {
        let mut x: u128 = 0x1234_5678_9abc_def0_0fed_cba9_8765_4321;
        for (i, &(name, fam, _)) in BUILTIN.iter().enumerate() {
            let b = Derivation::builtin(i).unwrap();
            let e = Derivation::parse(name).unwrap();
            assert_eq!(e.family, fam, "{name}");
            assert_eq!(e.name, name);
            for _ in 0..500 {
                x = x
                    .wrapping_mul(0x2545_f491_4f6c_dd1d_2545_f491_4f6c_dd1d)
                    .wrapping_add(1);
                let ip = match fam {
                    Family::V4 => IpAddr::V4(Ipv4Addr::from((x >> 64) as u32)),
                    Family::V6 => IpAddr::V6(Ipv6Addr::from(x | (1 << 125))),
                };
                let o = Operands::from_ip(ip);
                assert_eq!(b.value(&o), e.value(&o), "{name} on {ip}");
            }
        }
    }

    #[test]
    fn instantiates_reason_text() {
        let d = Derivation::parse("o1*256+o2").unwrap();
        assert_eq!(d.instantiate(&ops("71.63.201.9")), "71*256+63");
        let d = Derivation::parse("o1 * (o2 + o3)").unwrap();
        assert_eq!(d.name, "o1*(o2+o3)");
    }

    #[test]
    fn address_transforms() {
        let a: IpAddr = "71.63.201.9".parse().unwrap();
        let t = |t: AddrTransform| t.apply(a).unwrap().to_string();
        assert_eq!(t(AddrTransform::Reversed), "9.201.63.71");
        assert_eq!(t(AddrTransform::SwappedPairs), "63.71.9.201");
        assert_eq!(t(AddrTransform::SwappedHalves), "201.9.71.63");
        assert_eq!(t(AddrTransform::RotatedLeft), "63.201.9.71");
        assert_eq!(t(AddrTransform::RotatedRight), "9.71.63.201");
        assert_eq!(t(AddrTransform::AllOctetsPlus1), "72.64.202.10");
        assert_eq!(t(AddrTransform::AllOctetsMinus1), "70.62.200.8");
        assert_eq!(t(AddrTransform::Offset(-3)), "71.63.201.6");
        assert_eq!(t(AddrTransform::OctetPlus1(1)), "71.64.201.9");
        assert_eq!(
            AddrTransform::OctetPlus1(0).apply("255.1.1.1".parse().unwrap()),
            None
        );
        assert_eq!(
            AddrTransform::Reversed.apply("1.1.1.1".parse().unwrap()),
            None
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            AddrTransform::Offset(2).apply(v6).unwrap().to_string(),
            "2001:db8::3"
        );
        assert_eq!(AddrTransform::Reversed.apply(v6), None);
    }

    #[test]
    fn between_agrees_with_apply() {
        let mut x: u32 = 0x1234_5678;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let a = IpAddr::V4(Ipv4Addr::from(x));
            for t in AddrTransform::V4 {
                if let Some(b) = t.apply(a) {
                    let found = AddrTransform::between(a, b).unwrap();
                    assert_eq!(found.apply(a), Some(b));
                }
            }
            let b = IpAddr::V4(Ipv4Addr::from(x.rotate_left(7) ^ 0x5555));
            if let Some(t) = AddrTransform::between(a, b) {
                assert_eq!(t.apply(a), Some(b));
            }
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            AddrTransform::between(v6, "2001:db8::4".parse().unwrap()),
            Some(AddrTransform::Offset(3))
        );
    }
}
