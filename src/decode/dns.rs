//! DNS messages to [`DnsAnswer`]s, with hickory-proto doing the wire parsing.
//!
//! In: the bytes of one DNS message (a UDP payload, or one message from
//! [`dns_tcp`](super::dns_tcp)) and who sent it to whom. Out: a [`DnsAnswer`] for
//! responses; queries are ignored. Anomalies (a CNAME loop, a chain longer than
//! [`MAX_CNAME_CHAIN`], records that do not belong to the question) are data on the
//! answer, not errors, as in Suricata's DNS parser.
//!
//! Panic contract: never panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Header, MessageType};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::time::Ts;

/// Longest CNAME chain followed from the query name to its addresses (resolvers stop
/// around 8-16; 16 is generous and bounds the work per message).
pub const MAX_CNAME_CHAIN: usize = 16;
/// Answer records kept per message; the rest are counted in `records_dropped`.
pub const MAX_RECORDS: usize = 64;
/// Addresses kept after the CNAME chain (a CDN answer has a handful).
pub const MAX_ADDRS: usize = 32;

/// Largest DNS message: the 16-bit length prefix of DNS over TCP, and the most a UDP
/// datagram can carry. Anything longer is not one DNS message.
pub const MAX_MESSAGE_LEN: usize = 65535;

/// Record type numbers portent looks at.
pub const RTYPE_A: u16 = 1;
pub const RTYPE_CNAME: u16 = 5;
pub const RTYPE_AAAA: u16 = 28;
pub const RTYPE_DNAME: u16 = 39;
pub const RTYPE_OPT: u16 = 41;

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
    /// A section broke off (a record cut short, a bad name, fewer records than the
    /// header counts): what decoded before the fault is kept, the rest is ignored.
    pub incomplete: bool,
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
///
/// hickory-proto reads the header and every name (compression pointers must point
/// backwards, names stay under 255 bytes, labels under 64); the record framing around
/// them is walked here, one record at a time, so that
/// - a record that does not parse ends its section without losing what came before
///   (`anomalies.incomplete`), as Suricata does;
/// - the data of types portent does not keep is skipped by its length, never parsed, and
///   records past [`MAX_RECORDS`] are only skipped: the work is linear in the message
///   length whatever the header counts claim.
///
/// `Err(Malformed)` only when not even the header and the first question decode.
pub fn parse_response(ep: &DnsEndpoints, kind: DnsKind, msg: &[u8]) -> Result<DnsAnswer, DnsError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(DnsError::Malformed);
    }
    let mut dec = BinDecoder::new(msg);
    let header = Header::read(&mut dec).map_err(|_| DnsError::Malformed)?;
    if header.metadata.message_type != MessageType::Response {
        return Err(DnsError::NotResponse);
    }
    let counts = header.counts;
    let mut anomalies = DnsAnomalies {
        truncated: header.metadata.truncation,
        no_question: counts.queries == 0,
        ..DnsAnomalies::default()
    };

    // Question section: the first question is kept, the others skipped.
    let mut query = String::new();
    let mut qtype = 0u16;
    let mut ok = true;
    for i in 0..counts.queries {
        if i == 0 {
            let (name, t) = read_question(&mut dec).ok_or(DnsError::Malformed)?;
            query = name;
            qtype = t;
        } else if skip_question(&mut dec).is_none() {
            ok = false;
            break;
        }
    }

    // Answer section.
    let mut records = Vec::with_capacity(usize::from(counts.answers).min(MAX_RECORDS));
    if ok {
        for _ in 0..counts.answers {
            if records.len() < MAX_RECORDS {
                match read_record(msg, &mut dec) {
                    Some(r) => records.push(r),
                    None => {
                        ok = false;
                        break;
                    }
                }
            } else if skip_record(&mut dec).is_some() {
                anomalies.records_dropped = anomalies.records_dropped.saturating_add(1);
            } else {
                ok = false;
                break;
            }
        }
    }

    // Authority and additional sections: only walked, for the EDNS OPT record whose TTL
    // field holds the upper 8 bits of the 12-bit response code (RFC 6891 6.1.3).
    let mut rcode = u16::from(header.metadata.response_code.low());
    if ok {
        for _ in 0..counts.authorities {
            if skip_record(&mut dec).is_none() {
                ok = false;
                break;
            }
        }
    }
    if ok {
        let mut seen_opt = false;
        for _ in 0..counts.additionals {
            match skip_record(&mut dec) {
                Some((RTYPE_OPT, ttl)) if !seen_opt => {
                    seen_opt = true;
                    rcode |= ((ttl >> 24) as u16) << 4;
                }
                Some(_) => {}
                None => {
                    ok = false;
                    break;
                }
            }
        }
    }
    anomalies.incomplete = !ok;

    // mDNS and LLMNR announcements carry no question: the first answer names the host.
    let mut has_query = counts.queries > 0;
    if !has_query && kind != DnsKind::Dns {
        if let Some(first) = records.first() {
            query.clone_from(&first.name);
            qtype = first.rtype;
            has_query = true;
        }
    }

    let (cname_chain, addrs, min_ttl) = if has_query {
        resolve_chain(&query, &records, &mut anomalies)
    } else {
        anomalies.unrelated_records = saturating_u16(records.len());
        (Vec::new(), Vec::new(), 0)
    };

    Ok(DnsAnswer {
        ts: ep.ts,
        client: ep.dst,
        client_port: ep.dport,
        resolver: ep.src,
        resolver_port: ep.sport,
        transport: ep.transport,
        kind,
        id: header.metadata.id,
        query,
        qtype,
        rcode,
        records,
        cname_chain,
        addrs,
        min_ttl,
        anomalies,
    })
}

fn saturating_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Follows CNAMEs from `query` through `records`; returns the chain (query first), the
/// addresses of its last name and their smallest TTL, and sets the chain anomalies.
///
/// Work is bounded by `MAX_CNAME_CHAIN * MAX_RECORDS` name comparisons; names are compared
/// as the lower-cased strings [`name_to_string`] makes, which is DNS's case-insensitive
/// equality. The chain borrows the names; only the final list is copied.
fn resolve_chain(
    query: &str,
    records: &[AnswerRecord],
    anomalies: &mut DnsAnomalies,
) -> (Vec<String>, Vec<IpAddr>, u32) {
    let mut chain: Vec<&str> = Vec::with_capacity(4);
    chain.push(query);
    let mut cur = query;
    loop {
        let next = records.iter().find_map(|r| match &r.data {
            RecordData::Name(target) if r.rtype == RTYPE_CNAME && r.name == cur => {
                Some(target.as_str())
            }
            _ => None,
        });
        let Some(target) = next else { break };
        if chain.contains(&target) {
            anomalies.cname_loop = true;
            break;
        }
        // The chain holds the query name plus at most MAX_CNAME_CHAIN CNAME hops.
        if chain.len() > MAX_CNAME_CHAIN {
            anomalies.cname_chain_too_long = true;
            break;
        }
        chain.push(target);
        cur = target;
    }

    let mut addrs: Vec<IpAddr> = Vec::new();
    let mut min_ttl = u32::MAX;
    let mut unrelated = 0usize;
    for r in records {
        let on_chain = chain.contains(&r.name.as_str());
        if on_chain {
            if let RecordData::Addr(ip) = r.data {
                if r.name == cur {
                    if !addrs.contains(&ip) {
                        if addrs.len() >= MAX_ADDRS {
                            continue;
                        }
                        addrs.push(ip);
                    }
                    min_ttl = min_ttl.min(r.ttl);
                }
            }
        } else if !(r.rtype == RTYPE_DNAME && chain.iter().any(|n| is_subdomain(n, &r.name))) {
            // A DNAME sits at an ancestor of the name it rewrites: related, not on the chain.
            unrelated += 1;
        }
    }
    anomalies.unrelated_records = saturating_u16(unrelated);
    if addrs.is_empty() {
        min_ttl = 0;
    }
    let chain = chain.into_iter().map(str::to_owned).collect();
    (chain, addrs, min_ttl)
}

/// `name` is `zone` or below it (both in [`name_to_string`] form; "" is the root).
fn is_subdomain(name: &str, zone: &str) -> bool {
    if zone.is_empty() || name == zone {
        return true;
    }
    name.len() > zone.len()
        && name.ends_with(zone)
        && name.as_bytes()[name.len() - zone.len() - 1] == b'.'
}

/// Reads the first question: its name and type (the class is not checked: mDNS sets its
/// top bit to ask for a unicast reply).
fn read_question(dec: &mut BinDecoder<'_>) -> Option<(String, u16)> {
    let name = Name::read(dec).ok()?;
    let qtype = dec.read_u16().ok()?.unverified();
    dec.read_u16().ok()?;
    Some((name_to_string(&name), qtype))
}

fn skip_question(dec: &mut BinDecoder<'_>) -> Option<()> {
    skip_name(dec)?;
    dec.read_slice(4).ok()?;
    Some(())
}

/// Reads one resource record. Addresses must have their exact length; CNAME and DNAME
/// targets are read by hickory (compression allowed) and must end inside the record.
fn read_record(msg: &[u8], dec: &mut BinDecoder<'_>) -> Option<AnswerRecord> {
    let owner = Name::read(dec).ok()?;
    let rtype = dec.read_u16().ok()?.unverified();
    dec.read_u16().ok()?; // class
    let ttl = dec.read_u32().ok()?.unverified();
    let rdlen = usize::from(dec.read_u16().ok()?.unverified());
    let start = dec.index();
    let rdata = dec.read_slice(rdlen).ok()?.unverified();
    let data = match rtype {
        RTYPE_A => RecordData::Addr(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(rdata).ok()?))),
        RTYPE_AAAA => RecordData::Addr(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(rdata).ok()?,
        ))),
        RTYPE_CNAME | RTYPE_DNAME => {
            // A decoder over the whole message, so that pointers can reach back.
            let mut target_dec = BinDecoder::new(msg);
            target_dec.read_slice(start).ok()?;
            let target = Name::read(&mut target_dec).ok()?;
            if target_dec.index() > start + rdlen {
                return None;
            }
            RecordData::Name(name_to_string(&target))
        }
        _ => RecordData::Other,
    };
    Some(AnswerRecord {
        name: name_to_string(&owner),
        rtype,
        ttl,
        data,
    })
}

/// Skips one resource record without parsing its data; returns its type and TTL.
fn skip_record(dec: &mut BinDecoder<'_>) -> Option<(u16, u32)> {
    skip_name(dec)?;
    let rtype = dec.read_u16().ok()?.unverified();
    dec.read_u16().ok()?; // class
    let ttl = dec.read_u32().ok()?.unverified();
    let rdlen = usize::from(dec.read_u16().ok()?.unverified());
    dec.read_slice(rdlen).ok()?;
    Some((rtype, ttl))
}

/// Steps over a name on the wire: labels up to the root label or a compression pointer
/// (which ends the name in place; its target is not visited). Bounded by the bytes left.
fn skip_name(dec: &mut BinDecoder<'_>) -> Option<()> {
    loop {
        let len = dec.read_u8().ok()?.unverified();
        match len & 0xC0 {
            0x00 if len == 0 => return Some(()),
            0x00 => {
                dec.read_slice(usize::from(len)).ok()?;
            }
            0xC0 => {
                dec.read_u8().ok()?;
                return Some(());
            }
            _ => return None, // 0x40 and 0x80: reserved label types
        }
    }
}

/// A wire name as text: labels joined by '.', ASCII lower-cased, no trailing dot, the
/// root as "". Always valid UTF-8 and safe to log as JSON: valid UTF-8 in a label is kept
/// (mDNS names carry it), control characters and invalid bytes become `\DDD` (decimal, as
/// in zone files), and a '.' or '\' inside a label is escaped with a backslash.
pub fn name_to_string(name: &Name) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_label(&mut out, label);
    }
    out
}

fn push_label(out: &mut String, label: &[u8]) {
    for chunk in label.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '.' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        push_decimal_escape(out, b);
                    }
                }
                c => out.push(c.to_ascii_lowercase()),
            }
        }
        for &b in chunk.invalid() {
            push_decimal_escape(out, b);
        }
    }
}

fn push_decimal_escape(out: &mut String, b: u8) {
    out.push('\\');
    out.push(char::from(b'0' + b / 100));
    out.push(char::from(b'0' + (b / 10) % 10));
    out.push(char::from(b'0' + b % 10));
}
