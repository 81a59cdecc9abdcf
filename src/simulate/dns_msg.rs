//! DNS wire messages for the simulated resolver conversations (hickory-proto encodes them).

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME};
use hickory_proto::rr::{Name, RData, Record, RecordType};

fn name(s: &str) -> Name {
    let mut n =
        Name::from_ascii(s).unwrap_or_else(|_| Name::from_ascii("invalid.example").unwrap());
    n.set_fqdn(true);
    n
}

pub fn qtype(v6: bool) -> RecordType {
    if v6 {
        RecordType::AAAA
    } else {
        RecordType::A
    }
}

pub fn query(id: u16, qname: &str, v6: bool) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), qtype(v6)));
    m.to_vec().unwrap_or_default()
}

/// A recursive resolver's answer: the CNAME chain (each with `cname_ttl`), then the
/// addresses (each with `ttl`). No addresses and no CNAMEs means NXDOMAIN.
pub fn response(
    id: u16,
    qname: &str,
    v6: bool,
    cnames: &[String],
    addrs: &[IpAddr],
    ttl: u32,
    cname_ttl: u32,
) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_query(Query::query(name(qname), qtype(v6)));
    if cnames.is_empty() && addrs.is_empty() {
        m.metadata.response_code = ResponseCode::NXDomain;
    }
    let mut owner = name(qname);
    for c in cnames {
        let target = name(c);
        m.add_answer(Record::from_rdata(
            owner,
            cname_ttl,
            RData::CNAME(CNAME(target.clone())),
        ));
        owner = target;
    }
    for a in addrs {
        let rdata = match a {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        };
        m.add_answer(Record::from_rdata(owner.clone(), ttl, rdata));
    }
    m.to_vec().unwrap_or_default()
}

/// DNS over TCP: the same message behind a two-byte length.
pub fn with_length_prefix(msg: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(msg.len() + 2);
    v.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    v.extend_from_slice(msg);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_round_trips() {
        let addrs: Vec<IpAddr> = vec![
            "71.63.201.9".parse().unwrap(),
            "71.63.201.10".parse().unwrap(),
        ];
        let b = response(
            7,
            "www.example.com",
            false,
            &["e1.cdn.example.net".into()],
            &addrs,
            20,
            300,
        );
        let m = Message::from_vec(&b).unwrap();
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.answers.len(), 3);
        assert_eq!(m.answers[2].ttl, 20);
        let q = query(7, "www.example.com", true);
        assert_eq!(
            Message::from_vec(&q).unwrap().queries[0].query_type(),
            RecordType::AAAA
        );
        let nx = response(8, "nope.example", false, &[], &[], 0, 0);
        assert_eq!(
            Message::from_vec(&nx).unwrap().metadata.response_code,
            ResponseCode::NXDomain
        );
    }
}
