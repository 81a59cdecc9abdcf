//! Strings from the wire (DNS names with quotes, backslashes, control characters,
//! invalid UTF-8) come out of `portent replay` as valid JSON, one object per line, in
//! every output: `--dns`, `--alerts`, `--flows`.

mod hardening;

use hardening::*;

/// Labels an attacker controls completely: JSON metacharacters, a newline (would split
/// a JSON Lines record), NUL, DEL, C1 controls, invalid and truncated UTF-8, a BOM and
/// bidi overrides.
fn hostile_labels() -> Vec<&'static [u8]> {
    vec![
        b"q\"uo\"te",
        b"back\\slash",
        b"new\nline\r",
        b"nul\0tab\t",
        b"\x7f\x1b[31m",
        b"\xff\xfe\xc3",
        b"\xc2\x85c1",
        b"\xef\xbb\xbf\xe2\x80\xae",
        b"}{\"alert\":1}",
    ]
}

#[test]
fn hostile_names_come_out_as_valid_escaped_json_in_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let labels = hostile_labels();
    let client = [10, 0, 0, 5];
    let resolver = [192, 0, 2, 53];
    let mut frames = Vec::new();
    // One answer per hostile label, the label in the query and in a CNAME target.
    for (i, l) in labels.iter().enumerate() {
        let q = wire_name(&[l, b"example"]);
        let target = wire_name(&[b"cdn", l]);
        let body = [
            rr(&QPTR, 5, 60, &target),
            rr(&target, 1, 60, &[100, 50, 7, 9]),
        ]
        .concat();
        let msg = dns_response(i as u16, &q, [1, 2, 0, 0], &body);
        frames.push(eth_udp(resolver, client, 53, 41000 + i as u16, &msg));
    }
    // Then the client connects to the answered address on a port calculated from it
    // (o1*o2+o3 = 100*50+7 = 5007, the APT12 formula), so an alert quotes the names.
    frames.push(eth_tcp(client, [100, 50, 7, 9], 50000, 5007, 1, SYN));
    frames.push(eth_tcp([100, 50, 7, 9], client, 5007, 50000, 9, SYN | ACK));
    frames.push(eth_tcp(client, [100, 50, 7, 9], 50000, 5007, 2, ACK));
    let p = dir.path().join("hostile-names.pcap");
    std::fs::write(&p, pcap_bytes(&frames)).unwrap();
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let dns = jsonl(&run.dns(), "--dns");
    assert_eq!(dns.len(), labels.len(), "{}", run.stats);
    for a in &dns {
        let q = a["query"].as_str().unwrap();
        // Control characters never reach the output raw, even escaped by JSON: names are
        // written in presentation form (\DDD), so a log viewer shows no terminal codes.
        assert!(
            !q.chars().any(|c| c.is_control()),
            "raw control char in {q:?}"
        );
        assert!(q.ends_with(".example"), "{q:?}");
        let chain = a["cname_chain"].as_array().unwrap();
        assert_eq!(chain.len(), 2, "{a}");
        assert_eq!(a["addrs"][0], "100.50.7.9");
    }
    // Distinct wire names stay distinct after escaping.
    let mut qs: Vec<&str> = dns.iter().map(|a| a["query"].as_str().unwrap()).collect();
    qs.sort();
    qs.dedup();
    assert_eq!(qs.len(), labels.len());

    jsonl(&run.flows(), "--flows");
    let alerts = jsonl(&run.alerts(), "--alerts");
    assert!(!alerts.is_empty(), "no alert to check: {}", run.stats);
    let text = String::from_utf8(run.alerts()).unwrap();
    assert!(text.contains("example"), "{text}");
}
