//! Hostile DNS responses end to end through `portent replay`: every response here is
//! unsolicited (no query was ever captured), and each is either an answer with its
//! anomalies as data or a counted `dns_malformed`, never a crash or a stall.

mod hardening;

use hardening::*;

const RESOLVER: [u8; 4] = [192, 0, 2, 53];

fn a_rr(owner: &[u8], addr: [u8; 4]) -> Vec<u8> {
    rr(owner, 1, 60, &addr)
}

/// (label, message, expected to parse)
fn cases() -> Vec<(&'static str, Vec<u8>, bool)> {
    let q = wire_name(&[b"www", b"example", b"com"]);
    let mut v = Vec::new();
    // Question name that is a pointer to itself (offset 12 -> 12).
    v.push((
        "pointer to itself",
        dns_response(1, &QPTR, [1, 0, 0, 0], &[]),
        false,
    ));
    // Pointer forward, to a name after it.
    // (header 12 bytes, the pointer, type and class: the name "later" is at offset 18.)
    let later = wire_name(&[b"later"]);
    v.push((
        "forward pointer",
        dns_response(2, &[0xc0, 18], [1, 0, 0, 0], &later),
        false,
    ));
    // Two pointers pointing at each other (a loop of two) inside the question.
    v.push((
        "two-pointer loop",
        dns_response(3, &[0xc0, 14, 0xc0, 12], [1, 0, 0, 0], &[]),
        false,
    ));
    // Name over 255 bytes: 5 labels of 63.
    let l63 = [b'a'; 63];
    v.push((
        "name over 255",
        dns_response(
            4,
            &wire_name(&[&l63, &l63, &l63, &l63, &l63]),
            [1, 0, 0, 0],
            &[],
        ),
        false,
    ));
    // Label length 64 (0x40: the reserved extended-label bits).
    let mut long_label = vec![64u8];
    long_label.extend([b'b'; 64]);
    long_label.push(0);
    v.push((
        "label over 63",
        dns_response(5, &long_label, [1, 0, 0, 0], &[]),
        false,
    ));
    // An answer whose owner is a compression loop: the section stops, the question stays.
    let mut body = a_rr(&QPTR, [198, 51, 100, 1]);
    let off = 12 + q.len() + 4 + body.len();
    body.extend(a_rr(
        &[0xc0 | (off >> 8) as u8, off as u8],
        [198, 51, 100, 2],
    ));
    v.push((
        "answer owner loops",
        dns_response(6, &q, [1, 2, 0, 0], &body),
        true,
    ));
    // Thousands of answers: 3000 A records (48 KB).
    let mut body = Vec::new();
    for i in 0..3000u32 {
        body.extend(a_rr(&QPTR, [198, 18, (i >> 8) as u8, i as u8]));
    }
    v.push((
        "3000 answers",
        dns_response(7, &q, [1, 3000, 0, 0], &body),
        true,
    ));
    // Counts that overstate (50 claimed, 2 present) and understate (0 claimed, 3 present).
    let two: Vec<u8> = [
        a_rr(&QPTR, [198, 51, 100, 3]),
        a_rr(&QPTR, [198, 51, 100, 4]),
    ]
    .concat();
    v.push((
        "overstated counts",
        dns_response(8, &q, [1, 50, 50, 50], &two),
        true,
    ));
    v.push((
        "understated counts",
        dns_response(
            9,
            &q,
            [1, 0, 0, 0],
            &[two.clone(), a_rr(&QPTR, [1, 1, 1, 1])].concat(),
        ),
        true,
    ));
    // Answers for names never asked.
    let other = [
        a_rr(&wire_name(&[b"bank", b"example"]), [203, 0, 113, 9]),
        a_rr(&wire_name(&[b"evil", b"example"]), [203, 0, 113, 10]),
    ]
    .concat();
    v.push((
        "answers for names never asked",
        dns_response(10, &q, [1, 2, 0, 0], &other),
        true,
    ));
    // CNAME loop: www -> a -> www.
    let a = wire_name(&[b"a", b"example", b"com"]);
    let body = [rr(&QPTR, 5, 60, &a), rr(&a, 5, 60, &q)].concat();
    v.push((
        "cname loop",
        dns_response(11, &q, [1, 2, 0, 0], &body),
        true,
    ));
    // A header alone, and a question count of 65535 with one question.
    let mut hdr = dns_response(12, &q, [0, 0, 0, 0], &[]);
    hdr.truncate(12);
    v.push(("header only", hdr, true));
    v.push((
        "65535 questions claimed",
        dns_response(13, &q, [65535, 0, 0, 0], &[]),
        true,
    ));
    v
}

#[test]
fn hostile_responses_are_answers_with_anomalies_or_counted_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, m, _))| eth_udp(RESOLVER, [10, 0, 0, 10 + i as u8], 53, 40000 + i as u16, m))
        .collect();
    let p = dir.path().join("hostile-dns.pcap");
    std::fs::write(&p, pcap_bytes(&frames)).unwrap();
    let start = std::time::Instant::now();
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
    assert_eq!(run.code, 0, "{}", run.stderr);
    let good = cases.iter().filter(|c| c.2).count() as u64;
    let bad = cases.len() as u64 - good;
    assert_eq!(u(&run.stats, &["packets"]), cases.len() as u64);
    assert_eq!(u(&run.stats, &["dns_answers"]), good, "{}", run.stats);
    assert_eq!(
        u(&run.stats, &["dns_errors", "dns_malformed"]),
        bad,
        "{}",
        run.stats
    );

    let answers = jsonl(&run.dns(), "--dns");
    assert_eq!(answers.len() as u64, good);
    let by_id = |id: u64| {
        answers
            .iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("no answer id {id}"))
    };
    let loops = by_id(6);
    assert_eq!(loops["anomalies"]["incomplete"], true);
    assert_eq!(loops["addrs"].as_array().unwrap().len(), 1);
    let many = by_id(7);
    assert_eq!(many["records"].as_array().unwrap().len(), 64);
    assert_eq!(many["anomalies"]["records_dropped"], 3000 - 64);
    assert_eq!(by_id(8)["anomalies"]["incomplete"], true);
    assert_eq!(by_id(8)["addrs"].as_array().unwrap().len(), 2);
    assert_eq!(by_id(9)["records"].as_array().unwrap().len(), 0);
    let unrelated = by_id(10);
    assert_eq!(unrelated["anomalies"]["unrelated_records"], 2);
    assert_eq!(unrelated["addrs"].as_array().unwrap().len(), 0);
    assert_eq!(by_id(11)["anomalies"]["cname_loop"], true);
    assert_eq!(by_id(12)["anomalies"]["no_question"], true);
    assert_eq!(by_id(13)["query"], "www.example.com");
}

#[test]
fn dns_over_tcp_with_lying_length_prefixes_is_bounded() {
    // One TCP connection to port 53 whose server sends length prefixes of 65535 and then
    // only a few bytes per segment, for thousands of segments: the stream holds at most
    // one message and the run ends promptly with the connection's flow.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tcp-dns.pcap");
    let mut w = PcapWriter::create(&p, 1);
    let (c, s) = ([10, 0, 0, 7], RESOLVER);
    let mut t = T0_US;
    w.packet(t, &eth_tcp(c, s, 40000, 53, 100, SYN));
    w.packet(t, &eth_tcp(s, c, 53, 40000, 5000, SYN | ACK));
    let mut seq = 5001u32;
    let q = wire_name(&[b"tcp", b"example"]);
    let msg = dns_response(77, &q, [1, 1, 0, 0], &a_rr(&QPTR, [198, 51, 100, 77]));
    for i in 0..5000u32 {
        t += 100;
        let payload: Vec<u8> = if i % 1000 == 999 {
            // Now and then a real message, after a gap (a sequence jump).
            seq = seq.wrapping_add(70_000);
            [&(msg.len() as u16).to_be_bytes()[..], &msg].concat()
        } else {
            vec![0xff, 0xff, 0, 0]
        };
        let seg = tcp(53, 40000, seq, ACK, &payload);
        w.packet(t, &eth(&ipv4(s, c, 6, &seg)));
        seq = seq.wrapping_add(payload.len() as u32);
    }
    w.finish();
    let start = std::time::Instant::now();
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert!(start.elapsed().as_secs() < 60);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(u(&run.stats, &["packets"]), 5002);
    let answers = jsonl(&run.dns(), "--dns");
    assert!(!answers.is_empty(), "{}", run.stats);
    assert!(answers.iter().all(|a| a["query"] == "tcp.example"));
}
