//! The records the capture tier publishes and the analytics tier consumes: a small
//! binary layout (little-endian, length-prefixed strings), one Kafka message each.
//!
//! Every record starts with the same envelope: who produced it (a capture instance, one
//! of its workers, and the instance's start epoch), that producer's sequence number, and
//! `at`, the producer's packet clock when it emitted the record. A producer's records
//! are in `at` order; the analytics tier merges producers on it (see [`super::merge`]).
//!
//! Decoding takes untrusted bytes: every read is bounds-checked, every count is capped,
//! and a bad record is an error the consumer counts, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::decode::dns::{
    AnswerRecord, DnsAnomalies, DnsAnswer, DnsKind, RecordData, MAX_CNAME_CHAIN, MAX_RECORDS,
};
use crate::enrichment::reader::Format;
use crate::flow::{ConnState, EndReason, FlowEvent, FlowHandle, FlowRecord, History, FIRST_SIZES};
use crate::time::Ts;

/// First byte of every record: layout version 1.
pub const MAGIC: u8 = 0xB1;

/// Longest string carried (DNS names are at most 255 bytes; EDR lines are capped by
/// the reader at 64 KiB).
const MAX_STR: usize = 1 << 16;

/// Who wrote a record. A capture instance has `workers` independent streams (each
/// worker publishes its own hosts, in its own packet-time order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProducerId {
    /// Hash of the instance name (`--producer-id`, by default the host name).
    pub instance: u64,
    /// Start time of the instance (wall clock, ns): a restarted instance supersedes
    /// its earlier streams.
    pub epoch: u64,
    pub worker: u16,
    pub workers: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub producer: ProducerId,
    pub seq: u64,
    pub at: Ts,
}

/// What a record says.
#[derive(Clone, Debug)]
pub enum Body {
    /// The producer's packet clock reached `at` (a heartbeat, so partitions without
    /// traffic from this producer still advance).
    Clock,
    /// The producer is done: its stream in this partition ends here.
    End,
    Flow(FlowEvent),
    Dns(Box<DnsAnswer>),
    /// One line of an EDR feed, in its own format: the analytics tier parses it with
    /// the same adapters as `--edr`. `feed` numbers the producer's feeds.
    EdrLine {
        feed: u16,
        line_no: u64,
        format: Format,
        line: String,
    },
}

#[derive(Clone, Debug)]
pub struct Record {
    pub env: Envelope,
    pub body: Body,
}

/// Why bytes are not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    Truncated,
    BadMagic,
    BadKind(u8),
    BadValue(&'static str),
    TrailingBytes,
}

impl RecordError {
    pub fn kind(&self) -> &'static str {
        match self {
            RecordError::Truncated => "truncated",
            RecordError::BadMagic => "bad_magic",
            RecordError::BadKind(_) => "bad_kind",
            RecordError::BadValue(_) => "bad_value",
            RecordError::TrailingBytes => "trailing_bytes",
        }
    }
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Truncated => write!(f, "record cut short"),
            RecordError::BadMagic => write!(f, "not a portent record (bad first byte)"),
            RecordError::BadKind(k) => write!(f, "unknown record kind {k}"),
            RecordError::BadValue(what) => write!(f, "bad value for {what}"),
            RecordError::TrailingBytes => write!(f, "bytes after the record"),
        }
    }
}

impl std::error::Error for RecordError {}

const K_CLOCK: u8 = 1;
const K_END: u8 = 2;
const K_STARTED: u8 = 3;
const K_MESSAGE: u8 = 4;
const K_ENDED: u8 = 5;
const K_DNS: u8 = 6;
const K_EDR: u8 = 7;

// ---- encoding -------------------------------------------------------------------------

/// Appends the record to `out` (cleared first). No allocation once `out` has grown.
pub fn encode(env: &Envelope, body: &Body, out: &mut Vec<u8>) {
    out.clear();
    let kind = match body {
        Body::Clock => K_CLOCK,
        Body::End => K_END,
        Body::Flow(FlowEvent::Started(_)) => K_STARTED,
        Body::Flow(FlowEvent::OrigMessage { .. }) => K_MESSAGE,
        Body::Flow(FlowEvent::Ended(..)) => K_ENDED,
        Body::Dns(_) => K_DNS,
        Body::EdrLine { .. } => K_EDR,
    };
    encode_header(env, kind, out);
    match body {
        Body::Clock | Body::End => {}
        Body::Flow(ev) => encode_flow_event(ev, out),
        Body::Dns(a) => encode_dns(a, out),
        Body::EdrLine {
            feed,
            line_no,
            format,
            line,
        } => {
            put_u16(out, *feed);
            put_u64(out, *line_no);
            out.push(format_code(*format));
            put_str(out, line);
        }
    }
}

/// Encodes a flow event without building a [`Body`] (the capture hot path).
pub fn encode_flow(env: &Envelope, ev: &FlowEvent, out: &mut Vec<u8>) {
    out.clear();
    let kind = match ev {
        FlowEvent::Started(_) => K_STARTED,
        FlowEvent::OrigMessage { .. } => K_MESSAGE,
        FlowEvent::Ended(..) => K_ENDED,
    };
    encode_header(env, kind, out);
    encode_flow_event(ev, out);
}

/// Encodes a DNS answer without building a [`Body`] (the capture hot path).
pub fn encode_dns_answer(env: &Envelope, a: &DnsAnswer, out: &mut Vec<u8>) {
    out.clear();
    encode_header(env, K_DNS, out);
    encode_dns(a, out);
}

fn encode_header(env: &Envelope, kind: u8, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.push(kind);
    put_u64(out, env.producer.instance);
    put_u64(out, env.producer.epoch);
    put_u16(out, env.producer.worker);
    put_u16(out, env.producer.workers);
    put_u64(out, env.seq);
    put_i64(out, env.at.0);
}

fn encode_flow_event(ev: &FlowEvent, out: &mut Vec<u8>) {
    match ev {
        FlowEvent::Started(r) => put_flow(out, r),
        FlowEvent::OrigMessage {
            flow,
            start,
            end,
            bytes,
            index,
        } => {
            put_flow(out, flow);
            put_i64(out, start.0);
            put_i64(out, end.0);
            put_u64(out, *bytes);
            put_u32(out, *index);
        }
        FlowEvent::Ended(r, why) => {
            put_flow(out, r);
            out.push(*why as u8);
        }
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_ip(out: &mut Vec<u8>, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v) => {
            out.push(4);
            out.extend_from_slice(&v.octets());
        }
        IpAddr::V6(v) => {
            out.push(6);
            out.extend_from_slice(&v.octets());
        }
    }
}
fn put_str(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(MAX_STR - 1)];
    // A cut may not split a UTF-8 sequence: back off to a char boundary.
    let mut n = b.len();
    while n > 0 && !s.is_char_boundary(n) {
        n -= 1;
    }
    put_u32(out, n as u32);
    out.extend_from_slice(&s.as_bytes()[..n]);
}

fn put_flow(out: &mut Vec<u8>, r: &FlowRecord) {
    put_u64(out, r.uid);
    out.push(r.proto);
    put_ip(out, &r.orig);
    put_u16(out, r.orig_port);
    put_ip(out, &r.resp);
    put_u16(out, r.resp_port);
    out.push(r.orig_is_internal as u8);
    put_i64(out, r.first_ts.0);
    put_i64(out, r.last_ts.0);
    put_u32(out, r.orig_pkts);
    put_u32(out, r.resp_pkts);
    put_u64(out, r.orig_bytes);
    put_u64(out, r.resp_bytes);
    put_u64(out, r.orig_ip_bytes);
    put_u64(out, r.resp_ip_bytes);
    out.push(conn_state_code(r.conn_state));
    let h = r.history.as_str().as_bytes();
    out.push(h.len() as u8);
    out.extend_from_slice(h);
    for s in r.orig_first_sizes.iter().chain(r.resp_first_sizes.iter()) {
        put_u16(out, *s);
    }
    match r.orig_mac {
        Some(m) => {
            out.push(1);
            out.extend_from_slice(&m);
        }
        None => out.push(0),
    }
    put_u16(out, r.vlan);
}

fn encode_dns(a: &DnsAnswer, out: &mut Vec<u8>) {
    put_i64(out, a.ts.0);
    put_ip(out, &a.client);
    put_u16(out, a.client_port);
    put_ip(out, &a.resolver);
    put_u16(out, a.resolver_port);
    out.push(a.transport);
    out.push(match a.kind {
        DnsKind::Dns => 0,
        DnsKind::Mdns => 1,
        DnsKind::Llmnr => 2,
    });
    put_u16(out, a.id);
    put_str(out, &a.query);
    put_u16(out, a.qtype);
    put_u16(out, a.rcode);
    put_u16(out, a.records.len().min(MAX_RECORDS) as u16);
    for r in a.records.iter().take(MAX_RECORDS) {
        put_str(out, &r.name);
        put_u16(out, r.rtype);
        put_u32(out, r.ttl);
        match &r.data {
            RecordData::Addr(ip) => {
                out.push(1);
                put_ip(out, ip);
            }
            RecordData::Name(n) => {
                out.push(2);
                put_str(out, n);
            }
            RecordData::Other => out.push(0),
        }
    }
    let chain = a.cname_chain.len().min(MAX_CNAME_CHAIN + 1);
    put_u16(out, chain as u16);
    for n in a.cname_chain.iter().take(chain) {
        put_str(out, n);
    }
    let addrs = a.addrs.len().min(MAX_RECORDS);
    put_u16(out, addrs as u16);
    for ip in a.addrs.iter().take(addrs) {
        put_ip(out, ip);
    }
    put_u32(out, a.min_ttl);
    let an = &a.anomalies;
    let bits = an.cname_loop as u8
        | (an.cname_chain_too_long as u8) << 1
        | (an.truncated as u8) << 2
        | (an.no_question as u8) << 3
        | (an.incomplete as u8) << 4;
    out.push(bits);
    put_u16(out, an.unrelated_records);
    put_u16(out, an.records_dropped);
}

const CONN_STATES: [ConnState; 13] = [
    ConnState::S0,
    ConnState::S1,
    ConnState::SF,
    ConnState::REJ,
    ConnState::S2,
    ConnState::S3,
    ConnState::RSTO,
    ConnState::RSTR,
    ConnState::RSTOS0,
    ConnState::RSTRH,
    ConnState::SH,
    ConnState::SHR,
    ConnState::OTH,
];

fn conn_state_code(s: ConnState) -> u8 {
    CONN_STATES.iter().position(|c| *c == s).unwrap_or(12) as u8
}

fn format_code(f: Format) -> u8 {
    Format::ALL.iter().position(|x| *x == f).unwrap_or(0) as u8
}

// ---- decoding -------------------------------------------------------------------------

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.pos.checked_add(n).ok_or(RecordError::Truncated)?;
        let s = self.b.get(self.pos..end).ok_or(RecordError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_le_bytes(self.arr()?))
    }
    fn bool(&mut self) -> Result<bool, RecordError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::BadValue("bool")),
        }
    }
    fn ip(&mut self) -> Result<IpAddr, RecordError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.arr::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.arr::<16>()?))),
            _ => Err(RecordError::BadValue("address family")),
        }
    }
    fn string(&mut self) -> Result<String, RecordError> {
        let n = self.u32()? as usize;
        if n >= MAX_STR {
            return Err(RecordError::BadValue("string length"));
        }
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| RecordError::BadValue("utf-8"))
    }
    fn count(&mut self, max: usize, what: &'static str) -> Result<usize, RecordError> {
        let n = self.u16()? as usize;
        if n > max {
            return Err(RecordError::BadValue(what));
        }
        Ok(n)
    }
}

/// Decodes one record. Never panics, whatever the bytes.
pub fn decode(b: &[u8]) -> Result<Record, RecordError> {
    let mut r = Reader { b, pos: 0 };
    if r.u8()? != MAGIC {
        return Err(RecordError::BadMagic);
    }
    let kind = r.u8()?;
    let producer = ProducerId {
        instance: r.u64()?,
        epoch: r.u64()?,
        worker: r.u16()?,
        workers: r.u16()?,
    };
    // A capture instance has at most 256 workers (`--workers`).
    if producer.workers == 0 || producer.workers > 256 || producer.worker >= producer.workers {
        return Err(RecordError::BadValue("worker index"));
    }
    let env = Envelope {
        producer,
        seq: r.u64()?,
        at: Ts(r.i64()?),
    };
    let body = match kind {
        K_CLOCK => Body::Clock,
        K_END => Body::End,
        K_STARTED => Body::Flow(FlowEvent::Started(flow(&mut r)?)),
        K_MESSAGE => {
            let f = flow(&mut r)?;
            Body::Flow(FlowEvent::OrigMessage {
                flow: f,
                start: Ts(r.i64()?),
                end: Ts(r.i64()?),
                bytes: r.u64()?,
                index: r.u32()?,
            })
        }
        K_ENDED => {
            let f = flow(&mut r)?;
            let why = match r.u8()? {
                0 => EndReason::Closed,
                1 => EndReason::IdleTimeout,
                2 => EndReason::Evicted,
                3 => EndReason::Shutdown,
                _ => return Err(RecordError::BadValue("end reason")),
            };
            Body::Flow(FlowEvent::Ended(f, why))
        }
        K_DNS => Body::Dns(Box::new(dns(&mut r)?)),
        K_EDR => {
            let feed = r.u16()?;
            let line_no = r.u64()?;
            let format = *Format::ALL
                .get(r.u8()? as usize)
                .ok_or(RecordError::BadValue("EDR format"))?;
            let line = r.string()?;
            Body::EdrLine {
                feed,
                line_no,
                format,
                line,
            }
        }
        k => return Err(RecordError::BadKind(k)),
    };
    if r.pos != b.len() {
        return Err(RecordError::TrailingBytes);
    }
    Ok(Record { env, body })
}

fn flow(r: &mut Reader<'_>) -> Result<FlowRecord, RecordError> {
    let uid = r.u64()?;
    let proto = r.u8()?;
    let orig = r.ip()?;
    let orig_port = r.u16()?;
    let resp = r.ip()?;
    let resp_port = r.u16()?;
    let orig_is_internal = r.bool()?;
    let first_ts = Ts(r.i64()?);
    let last_ts = Ts(r.i64()?);
    let orig_pkts = r.u32()?;
    let resp_pkts = r.u32()?;
    let orig_bytes = r.u64()?;
    let resp_bytes = r.u64()?;
    let orig_ip_bytes = r.u64()?;
    let resp_ip_bytes = r.u64()?;
    let conn_state = *CONN_STATES
        .get(r.u8()? as usize)
        .ok_or(RecordError::BadValue("conn_state"))?;
    let hlen = r.u8()? as usize;
    if hlen > History::CAP {
        return Err(RecordError::BadValue("history length"));
    }
    let mut history = History::default();
    for &c in r.take(hlen)? {
        if !c.is_ascii_graphic() {
            return Err(RecordError::BadValue("history letter"));
        }
        history.push(c);
    }
    let mut orig_first_sizes = [0u16; FIRST_SIZES];
    let mut resp_first_sizes = [0u16; FIRST_SIZES];
    for s in orig_first_sizes
        .iter_mut()
        .chain(resp_first_sizes.iter_mut())
    {
        *s = r.u16()?;
    }
    let orig_mac = if r.bool()? { Some(r.arr::<6>()?) } else { None };
    let vlan = r.u16()?;
    Ok(FlowRecord {
        uid,
        proto,
        orig,
        orig_port,
        resp,
        resp_port,
        orig_is_internal,
        first_ts,
        last_ts,
        orig_pkts,
        resp_pkts,
        orig_bytes,
        resp_bytes,
        orig_ip_bytes,
        resp_ip_bytes,
        conn_state,
        history,
        orig_first_sizes,
        resp_first_sizes,
        orig_mac,
        vlan,
        // The analytics tier has no flow table: per-flow state falls back to the uid.
        handle: FlowHandle::NONE,
    })
}

fn dns(r: &mut Reader<'_>) -> Result<DnsAnswer, RecordError> {
    let ts = Ts(r.i64()?);
    let client = r.ip()?;
    let client_port = r.u16()?;
    let resolver = r.ip()?;
    let resolver_port = r.u16()?;
    let transport = r.u8()?;
    let kind = match r.u8()? {
        0 => DnsKind::Dns,
        1 => DnsKind::Mdns,
        2 => DnsKind::Llmnr,
        _ => return Err(RecordError::BadValue("DNS kind")),
    };
    let id = r.u16()?;
    let query = r.string()?;
    let qtype = r.u16()?;
    let rcode = r.u16()?;
    let n = r.count(MAX_RECORDS, "record count")?;
    let mut records = Vec::with_capacity(n);
    for _ in 0..n {
        let name = r.string()?;
        let rtype = r.u16()?;
        let ttl = r.u32()?;
        let data = match r.u8()? {
            0 => RecordData::Other,
            1 => RecordData::Addr(r.ip()?),
            2 => RecordData::Name(r.string()?),
            _ => return Err(RecordError::BadValue("record data")),
        };
        records.push(AnswerRecord {
            name,
            rtype,
            ttl,
            data,
        });
    }
    let n = r.count(MAX_CNAME_CHAIN + 1, "CNAME chain length")?;
    let mut cname_chain = Vec::with_capacity(n);
    for _ in 0..n {
        cname_chain.push(r.string()?);
    }
    let n = r.count(MAX_RECORDS, "address count")?;
    let mut addrs = Vec::with_capacity(n);
    for _ in 0..n {
        addrs.push(r.ip()?);
    }
    let min_ttl = r.u32()?;
    let bits = r.u8()?;
    if bits >> 5 != 0 {
        return Err(RecordError::BadValue("DNS anomaly bits"));
    }
    let anomalies = DnsAnomalies {
        cname_loop: bits & 1 != 0,
        cname_chain_too_long: bits & 2 != 0,
        truncated: bits & 4 != 0,
        no_question: bits & 8 != 0,
        incomplete: bits & 16 != 0,
        unrelated_records: r.u16()?,
        records_dropped: r.u16()?,
    };
    Ok(DnsAnswer {
        ts,
        client,
        client_port,
        resolver,
        resolver_port,
        transport,
        kind,
        id,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Envelope {
        Envelope {
            producer: ProducerId {
                instance: 7,
                epoch: 99,
                worker: 1,
                workers: 2,
            },
            seq: 42,
            at: Ts::from_secs(1_700_000_000),
        }
    }

    fn flow_record() -> FlowRecord {
        let mut history = History::default();
        for c in b"ShADadFf" {
            history.push(*c);
        }
        FlowRecord {
            uid: 0xdead_beef,
            proto: 6,
            orig: "10.1.0.17".parse().unwrap(),
            orig_port: 50123,
            resp: "2001:db8::9".parse().unwrap(),
            resp_port: 443,
            orig_is_internal: true,
            first_ts: Ts::from_secs(10),
            last_ts: Ts::from_secs(12),
            orig_pkts: 5,
            resp_pkts: 4,
            orig_bytes: 1234,
            resp_bytes: 99,
            orig_ip_bytes: 1500,
            resp_ip_bytes: 300,
            conn_state: ConnState::RSTR,
            history,
            orig_first_sizes: [517, 80, 0, 0],
            resp_first_sizes: [1400, 0, 0, 0],
            orig_mac: Some([2, 0, 0, 0, 0, 1]),
            vlan: 12,
            handle: crate::flow::FlowHandle::NONE,
        }
    }

    fn answer() -> DnsAnswer {
        DnsAnswer {
            ts: Ts::from_micros(1_000_001),
            client: "10.1.0.17".parse().unwrap(),
            client_port: 40000,
            resolver: "10.1.0.2".parse().unwrap(),
            resolver_port: 53,
            transport: 17,
            kind: DnsKind::Dns,
            id: 77,
            query: "upd.example.net".into(),
            qtype: 1,
            rcode: 0,
            records: vec![
                AnswerRecord {
                    name: "upd.example.net".into(),
                    rtype: 5,
                    ttl: 30,
                    data: RecordData::Name("cdn.example.net".into()),
                },
                AnswerRecord {
                    name: "cdn.example.net".into(),
                    rtype: 1,
                    ttl: 60,
                    data: RecordData::Addr("71.63.201.9".parse().unwrap()),
                },
                AnswerRecord {
                    name: "cdn.example.net".into(),
                    rtype: 16,
                    ttl: 60,
                    data: RecordData::Other,
                },
            ],
            cname_chain: vec!["upd.example.net".into(), "cdn.example.net".into()],
            addrs: vec!["71.63.201.9".parse().unwrap()],
            min_ttl: 60,
            anomalies: DnsAnomalies {
                truncated: true,
                unrelated_records: 1,
                ..DnsAnomalies::default()
            },
        }
    }

    fn bodies() -> Vec<Body> {
        let f = flow_record();
        vec![
            Body::Clock,
            Body::End,
            Body::Flow(FlowEvent::Started(f)),
            Body::Flow(FlowEvent::OrigMessage {
                flow: f,
                start: Ts::from_secs(11),
                end: Ts::from_secs(11),
                bytes: 517,
                index: 3,
            }),
            Body::Flow(FlowEvent::Ended(f, EndReason::IdleTimeout)),
            Body::Dns(Box::new(answer())),
            Body::EdrLine {
                feed: 1,
                line_no: 9,
                format: Format::Osquery,
                line: "{\"name\":\"socket_events\"}".into(),
            },
        ]
    }

    fn same(a: &Body, b: &Body) -> bool {
        // FlowEvent has no PartialEq: compare its debug form.
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn every_kind_round_trips() {
        let mut buf = Vec::new();
        for b in bodies() {
            encode(&env(), &b, &mut buf);
            let r = decode(&buf).unwrap();
            assert_eq!(r.env, env());
            assert!(same(&r.body, &b), "{b:?} came back as {:?}", r.body);
        }
        let mut fast = Vec::new();
        encode_dns_answer(&env(), &answer(), &mut fast);
        encode(&env(), &Body::Dns(Box::new(answer())), &mut buf);
        assert_eq!(fast, buf);
    }

    #[test]
    fn every_prefix_and_every_byte_flip_is_an_error_or_a_record() {
        let mut buf = Vec::new();
        for b in bodies() {
            encode(&env(), &b, &mut buf);
            for n in 0..buf.len() {
                assert!(decode(&buf[..n]).is_err(), "prefix {n} of {b:?}");
            }
            for i in 0..buf.len() {
                for x in [0x01u8, 0x80, 0xff] {
                    let mut c = buf.clone();
                    c[i] ^= x;
                    let _ = decode(&c);
                }
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert!(matches!(decode(&longer), Err(RecordError::TrailingBytes)));
        }
        assert!(matches!(decode(&[0x42]), Err(RecordError::BadMagic)));
    }

    #[test]
    fn long_strings_are_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_STR);
        let mut out = Vec::new();
        put_str(&mut out, &s);
        let n = u32::from_le_bytes(out[..4].try_into().unwrap()) as usize;
        assert!(n < MAX_STR);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
