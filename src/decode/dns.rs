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
    let mut seen = SeenNames::default();
    for i in 0..counts.queries {
        if i == 0 {
            let at = dec.index();
            let (name, t) = read_question(&mut dec).ok_or(DnsError::Malformed)?;
            query = name;
            qtype = t;
            seen.add(at, NameAt::Query);
        } else if skip_question(&mut dec).is_none() {
            ok = false;
            break;
        }
    }

    // Answer section.
    let mut records: Vec<AnswerRecord> =
        Vec::with_capacity(usize::from(counts.answers).min(MAX_RECORDS));
    if ok {
        for _ in 0..counts.answers {
            if records.len() < MAX_RECORDS {
                let owner = seen.pointed_to(msg, dec.index()).map(|at| match at {
                    NameAt::Query => query.clone(),
                    NameAt::Target(j) => match &records[j].data {
                        RecordData::Name(n) => n.clone(),
                        _ => String::new(), // never recorded for other data
                    },
                });
                match read_record(msg, &mut dec, owner) {
                    Some((r, target_at)) => {
                        if let Some(at) = target_at {
                            seen.add(at, NameAt::Target(records.len()));
                        }
                        records.push(r);
                    }
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

/// Where a name already decoded from this message is kept.
#[derive(Clone, Copy, Default)]
enum NameAt {
    #[default]
    Query,
    /// The CNAME or DNAME target of answer record `j`.
    Target(usize),
}

/// Offsets at which a name was decoded (the question's, the CNAME targets'), so that an
/// owner name that is only a compression pointer to one of them (nearly every answer
/// record: `c0 0c`) is copied, not decoded again. The name at an offset decodes the same
/// whatever points to it, and a pointer to an earlier offset is one hickory accepts.
#[derive(Default)]
struct SeenNames {
    at: [(usize, NameAt); 8],
    n: usize,
}

impl SeenNames {
    fn add(&mut self, offset: usize, name: NameAt) {
        if self.n < self.at.len() {
            self.at[self.n] = (offset, name);
            self.n += 1;
        }
    }

    /// The decoded name the owner field at `pos` points to, when it is a bare pointer.
    fn pointed_to(&self, msg: &[u8], pos: usize) -> Option<NameAt> {
        let (&b0, &b1) = (msg.get(pos)?, msg.get(pos + 1)?);
        if b0 & 0xC0 != 0xC0 {
            return None;
        }
        let target = usize::from(b0 & 0x3F) << 8 | usize::from(b1);
        self.at[..self.n]
            .iter()
            .find(|(o, _)| *o == target && *o < pos)
            .map(|&(_, name)| name)
    }
}

/// Reads one resource record, its owner given when already known (`owner`: the record
/// starts with a 2-byte pointer to that name). Addresses must have their exact length;
/// CNAME and DNAME targets are read by hickory (compression allowed) and must end inside
/// the record. Also returns where a target name starts.
fn read_record(
    msg: &[u8],
    dec: &mut BinDecoder<'_>,
    owner: Option<String>,
) -> Option<(AnswerRecord, Option<usize>)> {
    let owner = match owner {
        Some(name) => {
            dec.read_slice(2).ok()?;
            name
        }
        None => name_to_string(&Name::read(dec).ok()?),
    };
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
            return Some((
                AnswerRecord {
                    name: owner,
                    rtype,
                    ttl,
                    data: RecordData::Name(name_to_string(&target)),
                },
                Some(start),
            ));
        }
        _ => RecordData::Other,
    };
    Some((
        AnswerRecord {
            name: owner,
            rtype,
            ttl,
            data,
        },
        None,
    ))
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
    // Built as bytes and validated once: every piece pushed is valid UTF-8 (ASCII, whole
    // chars, escapes), so the lossy branch never runs; it is there so nothing can panic.
    let mut out = Vec::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        push_label(&mut out, label);
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn push_label(out: &mut Vec<u8>, label: &[u8]) {
    // Most labels are printable ASCII with nothing to escape: appended as one slice and
    // lowercased in place (pushed char by char, a name cost ~1000 instructions).
    let plain = label
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'.' && b != b'\\');
    if plain {
        let start = out.len();
        out.extend_from_slice(label);
        out[start..].make_ascii_lowercase();
        return;
    }
    for chunk in label.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '.' | '\\' => {
                    out.push(b'\\');
                    out.push(c as u8);
                }
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        push_decimal_escape(out, b);
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.to_ascii_lowercase().encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for &b in chunk.invalid() {
            push_decimal_escape(out, b);
        }
    }
}

fn push_decimal_escape(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(&[b'\\', b'0' + b / 100, b'0' + (b / 10) % 10, b'0' + b % 10]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hex to bytes: whitespace ignored so fixtures can be wrapped and grouped, `#` starts
    /// a comment to the end of the line.
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .lines()
            .flat_map(|l| l.split('#').next().unwrap_or("").bytes())
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn ep(src: &str, dst: &str, sport: u16, dport: u16) -> DnsEndpoints {
        DnsEndpoints {
            ts: Ts(1_000),
            src: src.parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport,
            transport: 17,
        }
    }

    fn parse(msg: &[u8]) -> Result<DnsAnswer, DnsError> {
        parse_response(
            &ep("192.0.2.53", "192.0.2.10", 53, 40000),
            DnsKind::Dns,
            msg,
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // ---------------------------------------------------------------- real captures

    /// dns-udp-a-aaaa-cname-http_wikipedia.pcap frame 21: 141.142.2.2 -> 141.142.228.5,
    /// id 0x65f0, "upload.wikimedia.org" A; answers: CNAME upload.pmtpa.wikimedia.org
    /// (ttl 124), A 208.80.152.3 (ttl 2156); 3 NS in authority, 3 A in additionals.
    const WIKIPEDIA_CNAME_A: &str = "
        65f0 8180 0001 0002 0003 0003
        0675706c6f61640977696b696d65646961036f726700 0001 0001   # upload.wikimedia.org A IN
        c00c 0005 0001 0000007c 000f 0675706c6f616405706d747061c013   # CNAME upload.pmtpa.<ptr>
        c032 0001 0001 0000086c 0004 d0509803                          # A 208.80.152.3
        c013000200010000c0480006036e7331c013 c013000200010000c0480006036e7332c013
        c013000200010000c0480006036e7330c013
        c081000100010000085d0004d0509882 c05d000100010000085d0004d050988e
        c06f000100010000085d00045bc6ae04";

    #[test]
    fn wikipedia_cname_then_a_resolves_to_final_address() {
        let e = ep("141.142.2.2", "141.142.228.5", 53, 53771);
        let a = parse_response(&e, DnsKind::Dns, &hex(WIKIPEDIA_CNAME_A)).unwrap();
        assert_eq!(a.client, ip("141.142.228.5"));
        assert_eq!(a.client_port, 53771);
        assert_eq!(a.resolver, ip("141.142.2.2"));
        assert_eq!(a.resolver_port, 53);
        assert_eq!((a.transport, a.kind, a.id), (17, DnsKind::Dns, 0x65f0));
        assert_eq!(
            (a.query.as_str(), a.qtype, a.rcode),
            ("upload.wikimedia.org", 1, 0)
        );
        assert_eq!(
            a.records,
            vec![
                AnswerRecord {
                    name: "upload.wikimedia.org".into(),
                    rtype: 5,
                    ttl: 124,
                    data: RecordData::Name("upload.pmtpa.wikimedia.org".into()),
                },
                AnswerRecord {
                    name: "upload.pmtpa.wikimedia.org".into(),
                    rtype: 1,
                    ttl: 2156,
                    data: RecordData::Addr(ip("208.80.152.3")),
                },
            ]
        );
        assert_eq!(
            a.cname_chain,
            ["upload.wikimedia.org", "upload.pmtpa.wikimedia.org"]
        );
        assert_eq!(a.addrs, [ip("208.80.152.3")]);
        assert_eq!(a.min_ttl, 2156);
        assert_eq!(a.anomalies, DnsAnomalies::default());
        assert!(!a.is_local());
    }

    /// wikipedia.pcap frame 49: "meta.wikimedia.org" A -> CNAME text.wikimedia.org (723)
    /// -> CNAME text.pmtpa.wikimedia.org (593) -> A 208.80.152.2 (2141).
    const WIKIPEDIA_TWO_CNAMES: &str = "
        423a 8180 0001 0003 0003 0003
        046d6574610977696b696d65646961036f726700 0001 0001
        c00c 0005 0001 000002d3 0007 0474657874c011
        c030 0005 0001 00000251 000d 047465787405706d747061c011
        c043 0001 0001 0000085d 0004 d0509802
        c011000200010000c0480006036e7331c011 c011000200010000c0480006036e7330c011
        c011000200010000c0480006036e7332c011
        c07e000100010000085d0004d0509882 c06c000100010000085d0004d050988e
        c090000100010000085d00045bc6ae04";

    #[test]
    fn wikipedia_two_cname_hops_chain_in_order() {
        let a = parse(&hex(WIKIPEDIA_TWO_CNAMES)).unwrap();
        assert_eq!(
            a.cname_chain,
            [
                "meta.wikimedia.org",
                "text.wikimedia.org",
                "text.pmtpa.wikimedia.org"
            ]
        );
        assert_eq!(a.addrs, [ip("208.80.152.2")]);
        assert_eq!(a.min_ttl, 2141);
        assert_eq!(a.records.len(), 3);
        assert_eq!(a.anomalies, DnsAnomalies::default());
    }

    /// wikipedia.pcap frame 19: "upload.wikimedia.org.ncsa.uiuc.edu" AAAA, NXDOMAIN
    /// (rcode 3), SOA in authority.
    const WIKIPEDIA_NXDOMAIN: &str = "
        673c 8583 0001 0000 0001 0000
        0675706c6f61640977696b696d65646961036f7267046e63736104756975630365647500 001c 0001
        c021 0006 0001 00000384 0023 036e7330c021066e6574646576c021000063e3
        00000e100000038400093a8000000384";

    #[test]
    fn wikipedia_nxdomain_keeps_query_and_rcode() {
        let a = parse(&hex(WIKIPEDIA_NXDOMAIN)).unwrap();
        assert_eq!(a.query, "upload.wikimedia.org.ncsa.uiuc.edu");
        assert_eq!((a.qtype, a.rcode), (28, 3));
        assert!(a.records.is_empty() && a.addrs.is_empty());
        assert_eq!(a.cname_chain, ["upload.wikimedia.org.ncsa.uiuc.edu"]);
        assert_eq!(a.min_ttl, 0);
        assert_eq!(a.anomalies, DnsAnomalies::default());
    }

    /// wikipedia.pcap frame 2: mDNS announcement from fe80::217:f2ff:fed7:cf65, no
    /// question; answer SRV gemini._sftp-ssh._tcp.local; AAAA, A and NSEC in additionals.
    const WIKIPEDIA_MDNS_SRV: &str = "
        0000 8400 0000 0001 0000 0004
        0667656d696e69095f736674702d737368045f746370056c6f63616c00 0021 8001 00000078
            000f 0000 0000 0016 0667656d696e69c022                   # SRV 0 0 22 gemini.local
        c039001c8001000000780010fe800000000000000217f2fffed7cf65
        c039000180010000007800048d8edc32
        c00c002f8001000000780009c00c00050000800040
        c039002f8001000000780008c039000440000008";

    #[test]
    fn mdns_without_question_takes_query_from_first_answer() {
        let e = ep("fe80::217:f2ff:fed7:cf65", "ff02::fb", 5353, 5353);
        let a = parse_response(&e, DnsKind::Mdns, &hex(WIKIPEDIA_MDNS_SRV)).unwrap();
        assert!(a.is_local());
        assert_eq!(a.query, "gemini._sftp-ssh._tcp.local");
        assert_eq!(a.qtype, 33);
        assert!(a.anomalies.no_question);
        assert_eq!(a.anomalies.unrelated_records, 0);
        assert!(!a.anomalies.incomplete);
        assert_eq!(a.records.len(), 1);
        assert_eq!(a.records[0].data, RecordData::Other);
    }

    /// mdns-a-aaaa_mdns.pcap frame 3: from fd52:...:4dc4, no question; answers: AAAA
    /// johanna-QEMU-Virtual-Machine.local fd52:..:4dc4 (ttl 0), PTR (ip6.arpa), AAAA
    /// same name fd52:..:f82f, PTR.
    const MDNS_TWO_AAAA: &str = "
        0000 8400 0000 0004 0000 0000
        1c6a6f68616e6e612d51454d552d5669727475616c2d4d616368696e65056c6f63616c00
            001c 8001 00000000 0010 fd52429ec03c8235883cd6fffee14dc4
        0134016301640134013101650165016601660166013601640163013301380138013501330132
        013801630133013001630165013901320134013201350164016603697036046172706100
            000c 8001 00000000 0002 c00c
        c00c 001c 8001 00000000 0010 fd52429ec03c823559685bc61563f82f
        0166013201380166013301360135013101360163016201350138013601390135c06a
            000c 8001 00000000 0002 c00c";

    #[test]
    fn mdns_addresses_of_announced_host_lower_cased() {
        let e = ep(
            "fd52:429e:c03c:8235:883c:d6ff:fee1:4dc4",
            "ff02::fb",
            5353,
            5353,
        );
        let a = parse_response(&e, DnsKind::Mdns, &hex(MDNS_TWO_AAAA)).unwrap();
        assert_eq!(a.query, "johanna-qemu-virtual-machine.local");
        assert_eq!(a.qtype, 28);
        assert_eq!(
            a.addrs,
            [
                ip("fd52:429e:c03c:8235:883c:d6ff:fee1:4dc4"),
                ip("fd52:429e:c03c:8235:5968:5bc6:1563:f82f")
            ]
        );
        assert_eq!(a.min_ttl, 0);
        assert_eq!(a.anomalies.unrelated_records, 2); // the two PTRs
        assert!(a.anomalies.no_question);
        assert_eq!(
            a.records[1].name,
            "4.c.d.4.1.e.e.f.f.f.6.d.c.3.8.8.5.3.2.8.c.3.0.c.e.9.2.4.2.5.d.f.ip6.arpa"
        );
    }

    /// llmnr-response_llmnr-authority-additional.pcap frame 4: "server.local" A ->
    /// 192.168.1.10 (ttl 120); NS in authority, A in additionals.
    const LLMNR_A: &str = "
        04d3 8500 0001 0001 0001 0001
        06736572766572056c6f63616c00 0001 0001
        06736572766572056c6f63616c00 0001 0001 00000078 0004 c0a8010a
        056c6f63616c00 0002 0001 00000e10 000a 026e73056c6f63616c00
        026e73056c6f63616c00 0001 0001 00000078 0004 c0a80101";

    /// llmnr pcap frame 2: "testhost.local" A, NXDOMAIN, nothing else.
    const LLMNR_NXDOMAIN: &str = "
        04d2 8503 0001 0000 0000 0000 0874657374686f7374056c6f63616c00 0001 0001";

    #[test]
    fn llmnr_answer_and_nxdomain() {
        let e = ep("192.168.1.200", "192.168.1.100", 5355, 50000);
        let a = parse_response(&e, DnsKind::Llmnr, &hex(LLMNR_A)).unwrap();
        assert_eq!((a.query.as_str(), a.qtype, a.rcode), ("server.local", 1, 0));
        assert_eq!(a.addrs, [ip("192.168.1.10")]);
        assert_eq!(a.min_ttl, 120);
        assert!(a.is_local());
        let a = parse_response(&e, DnsKind::Llmnr, &hex(LLMNR_NXDOMAIN)).unwrap();
        assert_eq!((a.query.as_str(), a.rcode), ("testhost.local", 3));
        assert!(a.records.is_empty());
    }

    /// dns-udp-two-responses_dns-two-responses.pcap frame 2: "www.cmu.edu" A; answers
    /// CNAME WWW-CMU.ANDREW.cmu.edu, RRSIG, CNAME (owner by pointer, upper case)
    /// WWW-CMU-2.ANDREW.cmu.edu (ttl 5), A 128.2.10.163 (ttl 21600); EDNS OPT.
    const CMU_MIXED_CASE_CHAIN: &str = "
        5294 8410 0001 0004 0002 0004
        0377777703636d7503656475 00 0001 0001
        c00c 0005 0001 00015180 0011 075757572d434d5506414e44524557c010
        c00c 002e 0001 00015180 009b
            0005070300015180515cb25b5135187a1b2303636d7503656475006b741ab2616a3f33b02d97c4
            1edb5fc04bde32780687bdcf24b8208dae7550e35b164428fba91d0c72e757a70dcb38924d702d
            04a5919b673d05065e2406b93b99cb4ad945c46d550a28edbcc1cbe6db31c7b8650a6428acfab4
            6fc5987db561a714893a1003e464f1550d3e3c344c093a3475efddd7d5d2176c6203350a2eaac0
        29 0005 0001 00000005 000c 095757572d434d552d32c031
        c0ed 0001 0001 00005460 0004 80020aa3
        c0310002000100015180000e074e534155544831034e4554c058
        c0310002000100015180000a074e534155544832c11d
        c1150001000100015180000480020108
        c115001c00010001518000102607fb28000000000000000000000004
        c12f0001000100015180000480ed94a8
        0000291000000080000000";

    #[test]
    fn cname_chain_matches_names_case_insensitively() {
        let a = parse(&hex(CMU_MIXED_CASE_CHAIN)).unwrap();
        assert_eq!(
            a.cname_chain,
            [
                "www.cmu.edu",
                "www-cmu.andrew.cmu.edu",
                "www-cmu-2.andrew.cmu.edu"
            ]
        );
        assert_eq!(a.addrs, [ip("128.2.10.163")]);
        assert_eq!(a.min_ttl, 21600);
        assert_eq!(a.records.len(), 4);
        assert_eq!(a.records[1].rtype, 46);
        assert_eq!(a.anomalies, DnsAnomalies::default());
        assert_eq!(a.rcode, 0);
    }

    /// dns-udp-rrsig-a-aaaa_rrsig.pcap frame 7: "workfamily.sas.upenn.edu" A; answers
    /// CNAME quasar.SAS.upenn.edu (900) + RRSIG, A 128.91.234.145 (30) + RRSIG; 7 NS and
    /// RRSIGs in authority, A/AAAA glue and OPT in additionals (1401 bytes).
    const RRSIG_CNAME_A: &str = "
        69ee 8410 0001 0004 0007 000a
        0a776f726b66616d696c7903736173057570656e6e03656475 00 0001 0001
        0a776f726b66616d696c7903534153057570656e6e03656475 00
            0005 0001 00000384 0009 06717561736172c035
        c02a002e000100000384009d00050504000003845b72fee85b4b6b4ac52b057570656e6e0365647500
        2749e25f64e4e65385e58ae277cdd4e0c46a373cf802f2c1079d05e88401e87c749807db35baf354cc
        25910d26e38ffd405a53f7f4a9e6e61317995ed8a767e2a52bcb9c795aeb2434fd7da5e44ea8b9b633
        8aeb650fd880d4a8132353e53764d8d808a2250c994ba72108ac1b796921e0eb9c58fcd845de48f4ad
        c82f231961
        06717561736172c017 0001 0001 0000001e 0004 805bea91
        c04e002e00010000001e009d000105040000001e5b84eea65b5d5d6ec52b057570656e6e0365647500
        61382280c392a3836c757b483ed4c3488d2eb4962f4509999d0c17dd10b85a5426b148101a6b2c980d
        af8d787dacf99a737966cef84c0406c579c4412cf67caac37447b6cc5eae9eb2b66f6b60561562d6ab
        a4e304e60139af9fb0f6794d207b50b043a085435652fd97402ce0addc37a4fc12c4ee322912ef496b
        6bda413131
        c135000200010001518000080561646e7331c135c135000200010001518000080561646e7332c135
        c135000200010001518000080561646e7333c135c1350002000100015180001006736e732d70620369
        7363036f726700c1350002000100015180000f04646e7331047564656c0365647500c1350002000100
        015180000704646e7332c229c135002e000100015180009d00020502000151805b707f365b48e77ec5
        2b057570656e6e03656475002956867d0f897c2b0411c204cafc50e26a78bb0193b472ba01e1024afc
        8817a72398756120f5eb9f331b535f47d6a07db6e6b68d1e08207fe6dcc70ddae5c919a3a790c8dbfb
        b01bf280092ce236a2c5f626c2f0847df21c343dab4fa49efa0dac8e2340d6151608884850a062a78d
        819dd6ca61352275f108e74339a6704681c1cc00010001000151800004805b0380c1e0000100010001
        51800004805bfe16c1f400010001000151800004805bfb21c1cc001c00010001518000102607f47010
        010000000000000001000ac1e0001c00010001518000102607f470100200000000000000020003c1f4
        001c00010001518000102607f47010030000000000000003000cc1cc002e000100015180009d000105
        03000151805b6ed0a85b473adec52b057570656e6e03656475007880b3d41d0b9283992ade2fc20216
        455d536b629bc10e156a7b5d26eeb3b9a3b2c3e63c93ab60c0414156d498da3961e45c16b644ff6a70
        78118f8fe73898442dfc2b0f0cbe3e4ccce36261e5912e48bba51752e56522e99f7783a18dd67f1142
        320d021eb7312b7808d6554c2a107ed790eb18c2b94907baa35a863783c812c1cc002e000100015180
        009d001c0503000151805b8b610d5b63c9e2c52b057570656e6e03656475004afe51877fc82041b4ec
        de2d44d29d492adc836fbc6702fc7a7e77cd66c938f913a5343c37fb56891ae858953fbc5c70a263d9
        ccd6ca8f1d0d21260cf6cc7d9a60b9a5bbf8ab75247fd6d22ed6d32b19c1248ef73b5e449ac5aabdec
        46050aeaa0f22d5babaf0c600f31edc655eeaaedd3a362fefb8a94b5c37ab0811d0bf3cdc1e0002e00
        0100015180009d00010503000151805b77a5835b500f24c52b057570656e6e0365647500af498491f9
        7cfb994b90f99f072d4a754141b0b07c35a8e82f81731d9d0ba98873a6c6fdcee50cdbb4f1d5d357e7
        3123adfd24bb2f5c751803cff2088b5870799fb1859baa8fd5bc9a628ad4c951757a0f3a03f7e6909f
        842c778f3eb16fe6d6d8200eaadf55ce57606a37917f4759419689e686f1f19073cac19a52cdc52a1f
        0000291000000080000000";

    #[test]
    fn dnssec_answer_rrsigs_are_related_and_skipped() {
        let a = parse(&hex(RRSIG_CNAME_A)).unwrap();
        assert_eq!(a.query, "workfamily.sas.upenn.edu");
        assert_eq!(
            a.cname_chain,
            ["workfamily.sas.upenn.edu", "quasar.sas.upenn.edu"]
        );
        assert_eq!(a.addrs, [ip("128.91.234.145")]);
        assert_eq!(a.min_ttl, 30);
        let types: Vec<u16> = a.records.iter().map(|r| r.rtype).collect();
        assert_eq!(types, [5, 46, 1, 46]);
        assert_eq!(a.anomalies, DnsAnomalies::default());
    }

    /// qinq-dns-loc-truncated_loc-29-trunc.pcap frame 2: "sunn-pt1.es.net" ANY; answers
    /// LOC (type 29, ttl 600) and RRSIG; EDNS OPT with a cookie. Wireshark and Zeek call
    /// the LOC record truncated.
    const LOC_TRUNCATED: &str = "
        820f 8400 0001 0002 0000 0001
        0873756e6e2d707431026573036e657400 00ff 0001
        c00c 001d 0001 00000258 0010 001215138805025065d2d40000989680
        c00c 002e 0001 00000258 007a 001d0e03000002585fced1875fa7397f7f2a026573036e657400
            9778824d12effb20c5bd16db06025c34c6bc0345598fbd77f3b9e18a58fdf08982f069f5183976
            2c138c5c0f149a6c8f2422004faeb6595110905fd6c291cad2f04fbad0711851ad1cf7049d45a1
            20547d6a6e7315bf68e3d3cb87cc5309e305
        00 0029 1000 00000000 001c 000a0018bc31985b673b6cb8010000005fa886fa4d7134934d3ca9c4";

    #[test]
    fn loc_record_data_is_skipped_by_length() {
        let a = parse(&hex(LOC_TRUNCATED)).unwrap();
        assert_eq!(
            (a.query.as_str(), a.qtype, a.rcode),
            ("sunn-pt1.es.net", 255, 0)
        );
        let types: Vec<(u16, u32)> = a.records.iter().map(|r| (r.rtype, r.ttl)).collect();
        assert_eq!(types, [(29, 600), (46, 600)]);
        assert_eq!(a.cname_chain, ["sunn-pt1.es.net"]);
        assert!(a.addrs.is_empty());
        assert_eq!(a.anomalies, DnsAnomalies::default());
    }

    #[test]
    fn record_cut_short_keeps_what_decoded_before() {
        // The LOC fixture cut inside the RRSIG: question and LOC survive.
        let full = hex(LOC_TRUNCATED);
        let a = parse(&full[..80]).unwrap();
        assert_eq!(a.query, "sunn-pt1.es.net");
        assert_eq!(a.records.len(), 1);
        assert_eq!(a.records[0].rtype, 29);
        assert!(a.anomalies.incomplete);
        // Cut in the additional section: all answers kept, still flagged.
        let a = parse(&full[..full.len() - 3]).unwrap();
        assert_eq!(a.records.len(), 2);
        assert!(a.anomalies.incomplete);
    }

    /// rawip4-dns-cname_dns-additionals-with-cname.pcap frame 2: 8.8.8.8, "example.com" A
    /// -> 192.168.1.1 (ttl 300); an unrelated CNAME service.example.com ->
    /// internal-service.example.net in the additionals (not an answer: ignored).
    const ADDITIONAL_CNAME: &str = "
        0000 8580 0001 0001 0000 0001
        076578616d706c6503636f6d00 0001 0001
        076578616d706c6503636f6d00 0001 0001 0000012c 0004 c0a80101
        0773657276696365076578616d706c6503636f6d00 0005 0001 0000012c 001e
            10696e7465726e616c2d73657276696365076578616d706c65036e657400";

    #[test]
    fn cname_in_additionals_is_not_followed() {
        let a = parse(&hex(ADDITIONAL_CNAME)).unwrap();
        assert_eq!(a.cname_chain, ["example.com"]);
        assert_eq!(a.addrs, [ip("192.168.1.1")]);
        assert_eq!(a.min_ttl, 300);
        assert_eq!(a.records.len(), 1);
        assert_eq!(a.anomalies, DnsAnomalies::default());
    }

    /// null-loopback-dns-svcb_dns-svcb.pcap frame 2: "example.com" SVCB (64) -> SVCB 0
    /// foo.example.com (ttl 600).
    const SVCB: &str = "
        c964 8100 0001 0001 0000 0000
        076578616d706c6503636f6d00 0040 0001
        076578616d706c6503636f6d00 0040 0001 00000258 0013 0000 03666f6f076578616d706c6503636f6d00";

    #[test]
    fn svcb_answer_is_kept_as_other() {
        let a = parse(&hex(SVCB)).unwrap();
        assert_eq!((a.query.as_str(), a.qtype), ("example.com", 64));
        assert_eq!(
            a.records,
            [AnswerRecord {
                name: "example.com".into(),
                rtype: 64,
                ttl: 600,
                data: RecordData::Other
            }]
        );
        assert!(a.addrs.is_empty());
        assert_eq!(a.anomalies, DnsAnomalies::default());
    }

    /// dns-udp-classic-wireshark-sample_dns-wiresharkrepo.pcap frame 4: "google.com" MX;
    /// six MX answers, their A records in the additionals.
    const CLASSIC_MX: &str = "
        f76f 8180 0001 0006 0000 0006 06676f6f676c6503636f6d00 000f 0001
        c00c000f000100000228000a002805736d747034c00c c00c000f000100000228000a000a05736d747035c00c
        c00c000f000100000228000a000a05736d747036c00c c00c000f000100000228000a000a05736d747031c00c
        c00c000f000100000228000a000a05736d747032c00c c00c000f000100000228000a002805736d747033c00c
        c02a00010001000002580004d8ef251a c0400001000100000258000440e9a719
        c05600010001000002580004 42660919 c06c00010001000002580004d8ef3919
        c08200010001000002580004d8ef2519 c09800010001000002580004d8ef391a";
    /// frame 16: "www.google.com" AAAA -> CNAME www.l.google.com (ttl 633), no address.
    const CLASSIC_CNAME_ONLY: &str = "
        8db3 8180 0001 0001 0000 0000 0377777706676f6f676c6503636f6d00 001c 0001
        c00c 0005 0001 00000279 0008 03777777016cc010";
    /// frame 24: "www.isc.org" ANY -> AAAA 2001:4f8:0:2::d, A 204.152.184.88 (ttl 600).
    const CLASSIC_ANY: &str = "
        fee3 8180 0001 0002 0000 0000 0377777703697363036f726700 00ff 0001
        c00c 001c 0001 00000258 0010 200104f800000002000000000000000d
        c00c 0001 0001 00000258 0004 cc98b858";
    /// frame 8: "104.9.192.66.in-addr.arpa" PTR -> 66-192-9-104.gen.twtelecom.net.
    const CLASSIC_PTR: &str = "
        9bbb 8180 0001 0001 0000 0000
        0331303401390331393202363607696e2d61646472046172706100 000c 0001
        c00c 000c 0001 00015125 0020 0c36362d3139322d392d3130340367656e09747774656c65636f6d036e657400";
    /// frame 22: "www.example.notginh" AAAA: NXDOMAIN.
    const CLASSIC_NXDOMAIN: &str = "
        266d 8583 0001 0000 0000 0000 03777777076578616d706c65076e6f7467696e6800 001c 0001";

    #[test]
    fn classic_wireshark_sample_many_rrtypes() {
        let a = parse(&hex(CLASSIC_MX)).unwrap();
        assert_eq!((a.query.as_str(), a.qtype), ("google.com", 15));
        assert_eq!(a.records.len(), 6);
        assert!(a
            .records
            .iter()
            .all(|r| r.rtype == 15 && r.data == RecordData::Other));
        assert!(a.addrs.is_empty());
        assert_eq!(a.anomalies, DnsAnomalies::default());

        let a = parse(&hex(CLASSIC_CNAME_ONLY)).unwrap();
        assert_eq!(a.cname_chain, ["www.google.com", "www.l.google.com"]);
        assert!(a.addrs.is_empty());
        assert_eq!(a.min_ttl, 0);

        let a = parse(&hex(CLASSIC_ANY)).unwrap();
        assert_eq!(a.addrs, [ip("2001:4f8:0:2::d"), ip("204.152.184.88")]);
        assert_eq!(a.min_ttl, 600);

        let a = parse(&hex(CLASSIC_PTR)).unwrap();
        assert_eq!(a.query, "104.9.192.66.in-addr.arpa");
        assert_eq!(a.records[0].rtype, 12);
        assert_eq!(a.anomalies, DnsAnomalies::default());

        let a = parse(&hex(CLASSIC_NXDOMAIN)).unwrap();
        assert_eq!((a.query.as_str(), a.rcode), ("www.example.notginh", 3));
    }

    #[test]
    fn query_is_not_a_response() {
        // The LLMNR NXDOMAIN fixture with QR cleared: a query for testhost.local.
        let mut q = hex(LLMNR_NXDOMAIN);
        q[2] &= 0x7f;
        assert_eq!(parse(&q), Err(DnsError::NotResponse));
    }

    // ------------------------------------------------------------- hand-built messages

    /// "a.b" as wire labels (root-terminated).
    fn wire_name(s: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for l in s.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v
    }

    fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
        let mut v = owner.to_vec();
        v.extend_from_slice(&rtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v.extend_from_slice(&ttl.to_be_bytes());
        v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        v.extend_from_slice(rdata);
        v
    }

    fn rr_a(owner: &str, ttl: u32, addr: [u8; 4]) -> Vec<u8> {
        rr(&wire_name(owner), 1, ttl, &addr)
    }

    fn cname(owner: &str, target: &str) -> Vec<u8> {
        rr(&wire_name(owner), 5, 60, &wire_name(target))
    }

    fn question(name: &str, qtype: u16) -> Vec<u8> {
        let mut v = wire_name(name);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        v
    }

    /// Header (id 0x1234, `flags`, counts qd/an/ns/ar) followed by `parts`.
    fn message(flags: u16, counts: [u16; 4], parts: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0x12, 0x34];
        v.extend_from_slice(&flags.to_be_bytes());
        for c in counts {
            v.extend_from_slice(&c.to_be_bytes());
        }
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    }

    const RESPONSE: u16 = 0x8180;

    /// Owner names that only point back are copied from the name decoded at the target
    /// (the question, a CNAME target); pointers to anywhere else are decoded by hickory,
    /// and both give the same text as an uncompressed owner.
    #[test]
    fn pointer_owners_match_decoded_names_wherever_they_point() {
        let q = question("WWW.Example.COM", 1);
        // Offsets: header 12, question name at 12, type/class after it.
        let target_at = 12 + q.len() + 12; // after the CNAME's owner, type, class, ttl, len
        let cname_rr = rr(&[0xC0, 12], 5, 60, &wire_name("Edge.CDN.net"));
        let a1 = rr(&[0xC0, target_at as u8], 1, 30, &[192, 0, 2, 1]);
        // Into the middle of the CNAME target: "cdn.net" (a suffix, never decoded alone).
        let suffix = rr(&[0xC0, (target_at + 5) as u8], 1, 30, &[192, 0, 2, 2]);
        // Uncompressed and mixed case: the same text as the pointer form.
        let plain = rr_a("EDGE.cdn.NET", 20, [192, 0, 2, 3]);
        let msg = message(RESPONSE, [1, 4, 0, 0], &[q, cname_rr, a1, suffix, plain]);
        let a = parse(&msg).unwrap();
        let names: Vec<&str> = a.records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["www.example.com", "edge.cdn.net", "cdn.net", "edge.cdn.net"]
        );
        assert_eq!(a.cname_chain, ["www.example.com", "edge.cdn.net"]);
        assert_eq!(a.addrs, [ip("192.0.2.1"), ip("192.0.2.3")]);
        assert_eq!(a.min_ttl, 20);
        assert_eq!(a.anomalies.unrelated_records, 1);
        assert!(!a.anomalies.incomplete);
    }

    /// A pointer to where a name will be decoded later is a forward pointer: hickory
    /// refuses it, and the copy path must not accept it either.
    #[test]
    fn owner_pointer_to_a_later_target_is_refused() {
        let q = question("a.example", 1);
        let first_rr_at = 12 + q.len();
        // The CNAME's own owner points at its target (which starts 12 bytes later).
        let cname_rr = rr(
            &[0xC0, (first_rr_at + 12) as u8],
            5,
            60,
            &wire_name("b.example"),
        );
        let msg = message(RESPONSE, [1, 1, 0, 0], &[q, cname_rr]);
        let a = parse(&msg).unwrap();
        assert!(a.records.is_empty());
        assert!(a.anomalies.incomplete);
    }

    #[test]
    fn empty_and_one_byte_messages_are_malformed() {
        assert_eq!(parse(&[]), Err(DnsError::Malformed));
        assert_eq!(parse(&[0x80]), Err(DnsError::Malformed));
        assert_eq!(parse(&[0; 11]), Err(DnsError::Malformed));
    }

    #[test]
    fn header_only_response_is_no_question() {
        let a = parse(&message(RESPONSE, [0, 0, 0, 0], &[])).unwrap();
        assert!(a.anomalies.no_question);
        assert_eq!(a.query, "");
        assert!(a.cname_chain.is_empty());
    }

    #[test]
    fn compression_pointer_to_itself_is_malformed() {
        // Question name at offset 12 is a pointer to offset 12.
        let m = message(RESPONSE, [1, 0, 0, 0], &[vec![0xc0, 0x0c, 0, 1, 0, 1]]);
        assert_eq!(parse(&m), Err(DnsError::Malformed));
    }

    #[test]
    fn forward_compression_pointer_is_malformed() {
        // Pointer to offset 18, past the name that holds it.
        let m = message(
            RESPONSE,
            [1, 0, 0, 0],
            &[vec![0xc0, 18, 0, 1, 0, 1, 1, b'x', 0]],
        );
        assert_eq!(parse(&m), Err(DnsError::Malformed));
    }

    #[test]
    fn answer_owner_pointer_loop_stops_the_section() {
        // a.example A; answer 1 fine; answer 2's owner points at itself.
        let q = question("a.example", 1);
        let good = rr_a("a.example", 5, [192, 0, 2, 1]);
        let bad_at = 12 + q.len() + good.len();
        let mut bad = vec![0xc0 | (bad_at >> 8) as u8, bad_at as u8];
        bad.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4]);
        let a = parse(&message(RESPONSE, [1, 2, 0, 0], &[q, good, bad])).unwrap();
        assert_eq!(a.records.len(), 1);
        assert_eq!(a.addrs, [ip("192.0.2.1")]);
        assert!(a.anomalies.incomplete);
    }

    #[test]
    fn name_over_255_bytes_is_malformed() {
        let long = ["x".repeat(63).as_str(); 5].join(".");
        let m = message(RESPONSE, [1, 0, 0, 0], &[question(&long, 1)]);
        assert_eq!(parse(&m), Err(DnsError::Malformed));
        // Also through a chain of backward pointers: 4 x 63 + pointer onto itself again.
        let base = ["y".repeat(63).as_str(); 3].join(".");
        let q = question(&base, 1);
        let ans_owner = [vec![63], "z".repeat(63).into_bytes(), vec![0xc0, 12]].concat();
        let ans = rr(&ans_owner, 1, 1, &[1, 2, 3, 4]);
        let a = parse(&message(RESPONSE, [1, 1, 0, 0], &[q, ans])).unwrap();
        assert!(a.records.is_empty());
        assert!(a.anomalies.incomplete);
    }

    #[test]
    fn label_over_63_bytes_is_malformed() {
        let mut q = vec![64];
        q.extend_from_slice(&[b'a'; 64]);
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(
            parse(&message(RESPONSE, [1, 0, 0, 0], &[q])),
            Err(DnsError::Malformed)
        );
    }

    #[test]
    fn thousands_of_answers_are_capped_and_counted() {
        let q = question("many.example", 1);
        let mut parts = vec![q];
        for i in 0..4000u32 {
            // Owner by pointer to the question name, 16 bytes a record.
            let b = i.to_be_bytes();
            parts.push(rr(&[0xc0, 12], 1, 100 + i, &[10, b[1], b[2], b[3]]));
        }
        let m = message(RESPONSE, [1, 4000, 0, 0], &parts);
        let a = parse(&m).unwrap();
        assert_eq!(a.records.len(), MAX_RECORDS);
        assert_eq!(a.anomalies.records_dropped as usize, 4000 - MAX_RECORDS);
        assert_eq!(a.addrs.len(), MAX_ADDRS);
        assert_eq!(a.min_ttl, 100);
        assert!(!a.anomalies.incomplete);
    }

    #[test]
    fn header_counts_that_overstate_records_flag_incomplete() {
        let m = message(
            RESPONSE,
            [1, 10, 3, 3],
            &[
                question("x.example", 1),
                rr_a("x.example", 9, [192, 0, 2, 9]),
            ],
        );
        let a = parse(&m).unwrap();
        assert_eq!(a.addrs, [ip("192.0.2.9")]);
        assert!(a.anomalies.incomplete);
        // Counts that understate: the extra bytes are ignored.
        let m = message(
            RESPONSE,
            [1, 0, 0, 0],
            &[
                question("x.example", 1),
                rr_a("x.example", 9, [192, 0, 2, 9]),
            ],
        );
        let a = parse(&m).unwrap();
        assert!(a.records.is_empty());
        assert!(!a.anomalies.incomplete);
        // A huge question count over a short message.
        let m = message(RESPONSE, [65535, 0, 0, 0], &[question("x.example", 1)]);
        let a = parse(&m).unwrap();
        assert_eq!(a.query, "x.example");
        assert!(a.anomalies.incomplete);
    }

    #[test]
    fn answers_for_a_name_never_asked_are_unrelated() {
        let m = message(
            RESPONSE,
            [1, 2, 0, 0],
            &[
                question("asked.example", 1),
                rr_a("other.example", 60, [198, 51, 100, 1]),
                rr_a("asked.example", 60, [198, 51, 100, 2]),
            ],
        );
        let a = parse(&m).unwrap();
        assert_eq!(a.addrs, [ip("198.51.100.2")]);
        assert_eq!(a.anomalies.unrelated_records, 1);
    }

    #[test]
    fn cname_loop_is_flagged_and_stops() {
        let m = message(
            RESPONSE,
            [1, 3, 0, 0],
            &[
                question("a.example", 1),
                cname("a.example", "b.example"),
                cname("B.example", "A.EXAMPLE"),
                rr_a("b.example", 1, [192, 0, 2, 2]),
            ],
        );
        let a = parse(&m).unwrap();
        assert!(a.anomalies.cname_loop);
        assert_eq!(a.cname_chain, ["a.example", "b.example"]);
        assert_eq!(a.addrs, [ip("192.0.2.2")]);
    }

    #[test]
    fn cname_chain_longer_than_limit_is_cut() {
        let mut parts = vec![question("n0.example", 1)];
        for i in 0..20 {
            parts.push(cname(
                &format!("n{i}.example"),
                &format!("n{}.example", i + 1),
            ));
        }
        parts.push(rr_a("n20.example", 1, [192, 0, 2, 20]));
        let a = parse(&message(RESPONSE, [1, 21, 0, 0], &parts)).unwrap();
        assert!(a.anomalies.cname_chain_too_long);
        assert_eq!(a.cname_chain.len(), MAX_CNAME_CHAIN + 1);
        assert!(a.addrs.is_empty());
    }

    #[test]
    fn duplicate_addresses_once_with_smallest_ttl() {
        let m = message(
            RESPONSE,
            [1, 3, 0, 0],
            &[
                question("d.example", 1),
                rr_a("d.example", 300, [192, 0, 2, 1]),
                rr_a("d.example", 30, [192, 0, 2, 1]),
                rr_a("d.example", 600, [192, 0, 2, 3]),
            ],
        );
        let a = parse(&m).unwrap();
        assert_eq!(a.addrs, [ip("192.0.2.1"), ip("192.0.2.3")]);
        assert_eq!(a.min_ttl, 30);
    }

    #[test]
    fn dname_above_the_chain_is_related() {
        let m = message(
            RESPONSE,
            [1, 3, 0, 0],
            &[
                question("www.old.example", 1),
                rr(&wire_name("old.example"), 39, 60, &wire_name("new.example")),
                cname("www.old.example", "www.new.example"),
                rr_a("www.new.example", 60, [192, 0, 2, 7]),
            ],
        );
        let a = parse(&m).unwrap();
        assert_eq!(a.records[0].data, RecordData::Name("new.example".into()));
        assert_eq!(a.addrs, [ip("192.0.2.7")]);
        assert_eq!(a.anomalies.unrelated_records, 0);
    }

    #[test]
    fn address_with_wrong_length_stops_the_section() {
        let m = message(
            RESPONSE,
            [1, 1, 0, 0],
            &[
                question("x.example", 1),
                rr(&wire_name("x.example"), 1, 1, &[1, 2, 3]),
            ],
        );
        let a = parse(&m).unwrap();
        assert!(a.records.is_empty());
        assert!(a.anomalies.incomplete);
    }

    #[test]
    fn edns_extended_rcode_and_tc_bit() {
        // OPT: root owner, type 41, class = payload size, TTL = ext-rcode 1 (BADVERS = 16).
        let opt = [0u8, 0, 41, 0x10, 0, 1, 0, 0, 0, 0, 0].to_vec();
        let m = message(
            RESPONSE | 0x0200,
            [1, 0, 0, 1],
            &[question("x.example", 1), opt],
        );
        let a = parse(&m).unwrap();
        assert_eq!(a.rcode, 16);
        assert!(a.anomalies.truncated);
    }

    #[test]
    fn unicast_response_without_question_has_no_chain() {
        let m = message(
            RESPONSE,
            [0, 1, 0, 0],
            &[rr_a("x.example", 1, [192, 0, 2, 1])],
        );
        let a = parse(&m).unwrap();
        assert!(a.anomalies.no_question);
        assert_eq!(a.query, "");
        assert!(a.addrs.is_empty());
        assert_eq!(a.anomalies.unrelated_records, 1);
    }

    #[test]
    fn odd_bytes_in_names_stay_valid_and_recognisable() {
        // Labels: "Caf\u{e9}" in UTF-8, "a\0b", "x.y" (a dot inside a label), "\xff\\".
        let mut q = Vec::new();
        for l in [&b"Caf\xc3\xa9"[..], b"a\0b", b"x.y", b"\xff\\"] {
            q.push(l.len() as u8);
            q.extend_from_slice(l);
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let a = parse(&message(RESPONSE, [1, 0, 0, 0], &[q])).unwrap();
        assert_eq!(a.query, "caf\u{e9}.a\\000b.x\\.y.\\255\\\\");
        assert!(serde_json::to_string(&a).is_ok());
    }

    #[test]
    fn oversized_buffer_is_malformed() {
        let mut m = message(RESPONSE, [1, 0, 0, 0], &[question("x.example", 1)]);
        m.resize(MAX_MESSAGE_LEN + 1, 0);
        assert_eq!(parse(&m), Err(DnsError::Malformed));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
                let _ = parse(&bytes);
            }

            #[test]
            fn arbitrary_bytes_with_response_header_never_panic(
                mut bytes in proptest::collection::vec(any::<u8>(), 12..700),
            ) {
                bytes[2] |= 0x80;
                if let Ok(a) = parse(&bytes) {
                    prop_assert!(a.records.len() <= MAX_RECORDS);
                    prop_assert!(a.addrs.len() <= MAX_ADDRS);
                    prop_assert!(a.cname_chain.len() <= MAX_CNAME_CHAIN + 1);
                }
            }

            #[test]
            fn mutated_valid_responses_never_panic(
                which in 0usize..4,
                edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
                cut in any::<u16>(),
            ) {
                let fixture = [WIKIPEDIA_TWO_CNAMES, CMU_MIXED_CASE_CHAIN, MDNS_TWO_AAAA, LOC_TRUNCATED][which];
                let mut m = hex(fixture);
                for (at, b) in edits {
                    let i = usize::from(at) % m.len();
                    m[i] = b;
                }
                let keep = usize::from(cut) % (m.len() + 1);
                m.truncate(keep.max(m.len() / 2));
                let _ = parse(&m);
                let _ = parse_response(&ep("::1", "::2", 5353, 5353), DnsKind::Mdns, &m);
            }
        }
    }
}
