//! Port and address derivations from a DNS answer (T1568.003), and address classes.

use std::net::Ipv4Addr;

/// Port formulas over the answer's octets o1.o2.o3.o4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortFormula {
    /// APT12: o1*o2 + o3.
    O1xO2PlusO3,
    O1xO2PlusO3Sum,
    O2xO3PlusO4,
    Hi16,
    Lo16,
    Hi16Swapped,
    Lo16Swapped,
}

impl PortFormula {
    pub const ALL: [PortFormula; 7] = [
        PortFormula::O1xO2PlusO3,
        PortFormula::O1xO2PlusO3Sum,
        PortFormula::O2xO3PlusO4,
        PortFormula::Hi16,
        PortFormula::Lo16,
        PortFormula::Hi16Swapped,
        PortFormula::Lo16Swapped,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PortFormula::O1xO2PlusO3 => "o1*o2+o3",
            PortFormula::O1xO2PlusO3Sum => "o1*(o2+o3)",
            PortFormula::O2xO3PlusO4 => "o2*o3+o4",
            PortFormula::Hi16 => "o1*256+o2",
            PortFormula::Lo16 => "o3*256+o4",
            PortFormula::Hi16Swapped => "o2*256+o1",
            PortFormula::Lo16Swapped => "o4*256+o3",
        }
    }

    pub fn apply(self, a: Ipv4Addr) -> u32 {
        let [o1, o2, o3, o4] = a.octets().map(u32::from);
        match self {
            PortFormula::O1xO2PlusO3 => o1 * o2 + o3,
            PortFormula::O1xO2PlusO3Sum => o1 * (o2 + o3),
            PortFormula::O2xO3PlusO4 => o2 * o3 + o4,
            PortFormula::Hi16 => o1 * 256 + o2,
            PortFormula::Lo16 => o3 * 256 + o4,
            PortFormula::Hi16Swapped => o2 * 256 + o1,
            PortFormula::Lo16Swapped => o4 * 256 + o3,
        }
    }
}

/// Address derivations: the implant connects to f(answer), not to the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrFormula {
    Xor(u32),
    Reversed,
    Next(u8),
}

impl AddrFormula {
    pub fn name(self) -> String {
        match self {
            AddrFormula::Xor(k) => format!("xor 0x{k:08x}"),
            AddrFormula::Reversed => "o4.o3.o2.o1".into(),
            AddrFormula::Next(n) => format!("+{n}"),
        }
    }
    pub fn apply(self, a: Ipv4Addr) -> Ipv4Addr {
        let v = u32::from(a);
        match self {
            AddrFormula::Xor(k) => Ipv4Addr::from(v ^ k),
            AddrFormula::Reversed => Ipv4Addr::from(v.swap_bytes()),
            AddrFormula::Next(n) => Ipv4Addr::from(v.wrapping_add(n as u32)),
        }
    }
}

/// Every port any of our formulas derives from `a` (also over the reversed and next
/// addresses), so benign and "non-standard port" traffic can steer clear of them.
pub fn derived_ports(a: Ipv4Addr) -> impl Iterator<Item = u32> {
    let variants = [a, AddrFormula::Reversed.apply(a)];
    variants
        .into_iter()
        .flat_map(|x| PortFormula::ALL.into_iter().map(move |f| f.apply(x)))
}

pub fn is_derived_port(a: Ipv4Addr, port: u16) -> bool {
    derived_ports(a).any(|p| p == port as u32)
}

/// Ports with a well-known service in this network (benign background uses them).
pub const STANDARD_PORTS: &[u16] = &[
    20, 21, 22, 25, 53, 80, 110, 123, 143, 443, 465, 500, 587, 853, 993, 995, 1194, 1433, 1883,
    3000, 3306, 3389, 3478, 4500, 5060, 5222, 5223, 5228, 5349, 5432, 5900, 6379, 8000, 8080, 8443,
    8801, 8883, 9418, 17500, 19302, 27015, 51820,
];

pub fn is_standard_port(p: u32) -> bool {
    p < 1024 || STANDARD_PORTS.iter().any(|&s| s as u32 == p)
}

/// Special-purpose IPv4 blocks (RFC 6890 and friends) plus RFC 1918.
pub fn is_reserved_v4(a: Ipv4Addr) -> bool {
    let [o1, o2, o3, _] = a.octets();
    matches!(o1, 0 | 10 | 127)
        || o1 >= 224
        || (o1 == 100 && (64..128).contains(&o2))
        || (o1 == 169 && o2 == 254)
        || (o1 == 172 && (16..32).contains(&o2))
        || (o1 == 192 && o2 == 168)
        || (o1 == 192 && o2 == 0 && (o3 == 0 || o3 == 2))
        || (o1 == 192 && o2 == 88 && o3 == 99)
        || (o1 == 198 && (o2 == 18 || o2 == 19))
        || (o1 == 198 && o2 == 51 && o3 == 100)
        || (o1 == 203 && o2 == 0 && o3 == 113)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt12_formula() {
        let a: Ipv4Addr = "71.63.201.9".parse().unwrap();
        assert_eq!(PortFormula::O1xO2PlusO3.apply(a), 71 * 63 + 201);
        assert_eq!(PortFormula::Hi16.apply(a), 71 * 256 + 63);
        assert_eq!(
            AddrFormula::Reversed.apply(a),
            "9.201.63.71".parse::<Ipv4Addr>().unwrap()
        );
        assert!(is_derived_port(a, (71 * 256 + 63) as u16));
    }

    #[test]
    fn reserved_ranges() {
        for s in [
            "10.1.2.3",
            "192.168.0.1",
            "172.20.0.1",
            "100.100.0.1",
            "198.18.5.5",
            "240.0.0.1",
            "127.0.0.1",
            "192.0.2.7",
        ] {
            assert!(is_reserved_v4(s.parse().unwrap()), "{s}");
        }
        for s in ["8.8.8.8", "71.63.201.9", "172.32.0.1", "100.128.0.1"] {
            assert!(!is_reserved_v4(s.parse().unwrap()), "{s}");
        }
    }
}
