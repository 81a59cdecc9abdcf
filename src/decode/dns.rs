//! DNS messages to [`DnsAnswer`]s, with hickory-proto doing the wire parsing.
//!
//! In: the bytes of one DNS message (a UDP payload, or one message from
//! [`dns_tcp`](super::dns_tcp)) and who sent it to whom. Out: a [`DnsAnswer`] for
//! responses; queries are ignored. Anomalies (a CNAME loop, a chain longer than
//! [`MAX_CNAME_CHAIN`], records that do not belong to the question) are data on the
//! answer, not errors, as in Suricata's DNS parser.
//!
//! Panic contract: never panics on any input.

use std::net::IpAddr;

use crate::time::Ts;

/// Longest CNAME chain followed from the query name to its addresses (resolvers stop
/// around 8-16; 16 is generous and bounds the work per message).
pub const MAX_CNAME_CHAIN: usize = 16;
/// Answer records kept per message; the rest are counted in `records_dropped`.
pub const MAX_RECORDS: usize = 64;
/// Addresses kept after the CNAME chain (a CDN answer has a handful).
pub const MAX_ADDRS: usize = 32;

/// Well-known ports whose payloads are DNS.
pub const PORT_DNS: u16 = 53;
pub const PORT_MDNS: u16 = 5353;
pub const PORT_LLMNR: u16 = 5355;

/// Where the answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsKind {
    /// Unicast DNS on port 53.
    Dns,
    /// Multicast DNS (5353): local, never an egress signal.
    Mdns,
    /// LLMNR (5355): local, never an egress signal.
    Llmnr,
}

/// One resource record of the answer section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AnswerRecord {
    /// Owner name, lower case, no trailing dot.
    pub name: String,
    /// Record type number (1 = A, 28 = AAAA, 5 = CNAME, ...).
    pub rtype: u16,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordData {
    /// A or AAAA.
    Addr(IpAddr),
    /// CNAME (or DNAME) target, lower case, no trailing dot.
    Name(String),
    /// Any other type: its data is not kept.
    Other,
}

/// Oddities of a response that analytics may use; never a reason to drop it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DnsAnomalies {
    /// The CNAME chain loops back on itself.
    pub cname_loop: bool,
    /// The chain was longer than [`MAX_CNAME_CHAIN`] and was cut.
    pub cname_chain_too_long: bool,
    /// Answer records whose owner is not on the chain from the query name.
    pub unrelated_records: u16,
    /// Records beyond [`MAX_RECORDS`] that were not kept.
    pub records_dropped: u16,
    /// The TC bit was set.
    pub truncated: bool,
    /// The message held no question.
    pub no_question: bool,
}

/// A DNS response as the analytics need it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DnsAnswer {
    pub ts: Ts,
    /// The host that asked (the response's destination).
    pub client: IpAddr,
    pub client_port: u16,
    /// The server that answered (the response's source).
    pub resolver: IpAddr,
    pub resolver_port: u16,
    /// IP protocol the message came over (6 or 17).
    pub transport: u8,
    pub kind: DnsKind,
    pub id: u16,
    /// The first question's name, lower case, no trailing dot ("" without a question).
    pub query: String,
    pub qtype: u16,
    /// Response code (with the EDNS extended bits when present).
    pub rcode: u16,
    /// Answer section, in wire order, at most [`MAX_RECORDS`].
    pub records: Vec<AnswerRecord>,
    /// Names from the query name through its CNAMEs, in order (the query name first).
    pub cname_chain: Vec<String>,
    /// The A/AAAA addresses of the chain's last name, in wire order, de-duplicated.
    pub addrs: Vec<IpAddr>,
    /// Smallest TTL among the address records in `addrs` (0 without addresses).
    pub min_ttl: u32,
    pub anomalies: DnsAnomalies,
}

impl DnsAnswer {
    /// mDNS and LLMNR answers are local: they never count as egress evidence.
    pub fn is_local(&self) -> bool {
        self.kind != DnsKind::Dns
    }
}

/// Why a payload gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnsError {
    /// hickory could not parse the message.
    Malformed,
    /// A query, not a response.
    NotResponse,
}

impl DnsError {
    pub fn kind(&self) -> &'static str {
        match self {
            DnsError::Malformed => "dns_malformed",
            DnsError::NotResponse => "dns_query",
        }
    }
}

/// The endpoints a DNS message travelled between, as seen on the wire.
#[derive(Clone, Copy, Debug)]
pub struct DnsEndpoints {
    pub ts: Ts,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub transport: u8,
}

/// Which kind of DNS a port pair carries, if any.
pub fn dns_kind(sport: u16, dport: u16) -> Option<DnsKind> {
    for p in [sport, dport] {
        match p {
            PORT_DNS => return Some(DnsKind::Dns),
            PORT_MDNS => return Some(DnsKind::Mdns),
            PORT_LLMNR => return Some(DnsKind::Llmnr),
            _ => {}
        }
    }
    None
}

/// Parses one DNS message; responses become [`DnsAnswer`]s.
pub fn parse_response(
    _ep: &DnsEndpoints,
    _kind: DnsKind,
    _msg: &[u8],
) -> Result<DnsAnswer, DnsError> {
    Err(DnsError::Malformed)
}
