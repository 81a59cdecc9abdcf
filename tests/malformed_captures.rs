//! Broken capture files through `portent replay`: an unreadable or non-pcap file is exit
//! code 2 with one line naming the path; anything else is read as far as it can be, with
//! warnings and counts, and every readable packet is still processed.

mod hardening;

use std::path::PathBuf;

use hardening::*;

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Three good DNS-response frames (distinct flows), used around the damage.
fn good_frames() -> Vec<Vec<u8>> {
    (0..3u8)
        .map(|i| {
            let msg = dns_response(
                i as u16,
                &wire_name(&[b"ok", b"example"]),
                [1, 1, 0, 0],
                &rr(&QPTR, 1, 60, &[192, 0, 2, i]),
            );
            eth_udp([192, 0, 2, 53], [10, 0, 0, i + 1], 53, 40000, &msg)
        })
        .collect()
}

fn assert_fatal(run: &Run, path: &std::path::Path, what: &str) {
    assert_eq!(run.code, 2, "{what}: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line: {}", run.stderr);
    assert!(
        lines[0].contains(&path.display().to_string()),
        "{what}: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
}

fn assert_ok(run: &Run, what: &str) {
    assert_eq!(run.code, 0, "{what}: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{what}: {}", run.stderr);
}

#[test]
fn unreadable_and_non_pcap_files_are_exit_2_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, PathBuf)> = vec![
        (
            "bad magic",
            write(&dir, "text.pcap", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ),
        ("empty file", write(&dir, "empty.pcap", b"")),
        (
            "truncated global header",
            write(&dir, "short.pcap", &global_header(1, 65535)[..13]),
        ),
        (
            "magic only",
            write(&dir, "magic.pcap", &0xa1b2_c3d4u32.to_le_bytes()),
        ),
        (
            "truncated pcapng section header",
            write(&dir, "short.pcapng", &[0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0]),
        ),
        ("missing file", dir.path().join("does-not-exist.pcap")),
        ("a directory", dir.path().to_owned()),
    ];
    for (what, p) in cases {
        let run = replay(std::slice::from_ref(&p), None, &[]);
        assert_fatal(&run, &p, what);
    }
}

#[test]
fn truncated_last_record_warns_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = pcap_bytes(&good_frames());
    b.truncate(b.len() - 10);
    let p = write(&dir, "cut.pcap", &b);
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert_ok(&run, "truncated record");
    assert_eq!(u(&run.stats, &["packets"]), 2);
    assert_eq!(u(&run.stats, &["dns_answers"]), 2);
    assert!(run.stderr.contains("cut short"), "{}", run.stderr);
    assert!(run.stderr.contains(&p.display().to_string()));
    // A record header alone, no data.
    let mut b = pcap_bytes(&good_frames());
    b.extend(&record(T0_US, &[0u8; 60])[..16]);
    let p = write(&dir, "header-only.pcap", &b);
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert_ok(&run, "record header only");
    assert_eq!(u(&run.stats, &["packets"]), 3);
}

#[test]
fn caplen_larger_than_snaplen_is_kept_and_impossible_lengths_resync() {
    let dir = tempfile::tempdir().unwrap();
    let f = good_frames();
    // snaplen 64, a record of 90 captured bytes: kept (libpcap writers do this).
    let mut b = global_header(1, 64);
    b.extend(record(T0_US, &f[0]));
    // Zero-length record: skipped by decode as truncated, the reader stays in step.
    b.extend(record_lens(T0_US + 1000, &[], 0, 0));
    // caplen over the 256 KiB limit: corrupt, the reader scans for the next record.
    b.extend(record_lens(
        T0_US + 2000,
        &[0xee; 32],
        0xffff_fff0,
        0xffff_fff0,
    ));
    b.extend(record(T0_US + 3000, &f[1]));
    // orig_len huge but caplen sane: the packet is kept, its length is the wire's.
    b.extend(record_lens(
        T0_US + 4000,
        &f[2],
        f[2].len() as u32,
        u32::MAX,
    ));
    let p = write(&dir, "lengths.pcap", &b);
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert_ok(&run, "lengths");
    assert_eq!(u(&run.stats, &["packets"]), 4, "{}", run.stats);
    assert_eq!(u(&run.stats, &["dns_answers"]), 3, "{}", run.stats);
    let files = &run.stats["files"][0];
    assert_eq!(files["resyncs"], 1, "{}", run.stats);
    assert_eq!(files["skipped_bytes"], 48, "{}", run.stats);
    // Every kept DNS frame is longer than the 64-byte snaplen.
    assert_eq!(files["caplen_over_snaplen"], 3, "{}", run.stats);
    assert!(run.stderr.contains("corrupt region"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("3 record(s) longer than the file's snap length"),
        "{}",
        run.stderr
    );
}

fn ng_block(btype: u32, body: &[u8]) -> Vec<u8> {
    let pad = (4 - body.len() % 4) % 4;
    let len = (12 + body.len() + pad) as u32;
    let mut v = btype.to_le_bytes().to_vec();
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(body);
    v.extend(std::iter::repeat_n(0u8, pad));
    v.extend_from_slice(&len.to_le_bytes());
    v
}

fn shb() -> Vec<u8> {
    let mut b = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    b.extend_from_slice(&[1, 0, 0, 0]);
    b.extend_from_slice(&(-1i64).to_le_bytes());
    ng_block(0x0a0d_0d0a, &b)
}

fn idb(link: u16) -> Vec<u8> {
    let mut b = link.to_le_bytes().to_vec();
    b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    ng_block(1, &b)
}

fn epb(iface: u32, us: u64, data: &[u8]) -> Vec<u8> {
    let mut b = iface.to_le_bytes().to_vec();
    b.extend_from_slice(&((us >> 32) as u32).to_le_bytes());
    b.extend_from_slice(&(us as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    ng_block(6, &b)
}

#[test]
fn pcapng_unknown_and_corrupt_blocks_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let f = good_frames();
    let mut b = shb();
    b.extend(idb(1));
    b.extend(epb(0, T0_US, &f[0]));
    // Unknown block types (a custom block and a made-up one): skipped, counted.
    b.extend(ng_block(0x0000_0bad, b"vendor data"));
    b.extend(ng_block(0x4000_0bad, &[0xff; 40]));
    // Corrupt: the trailing length disagrees with the leading one.
    let mut bad = epb(0, T0_US + 500, &f[1]);
    let n = bad.len();
    bad[n - 4] ^= 0x40;
    b.extend(bad);
    // A block length that is not a multiple of 4 and runs past everything.
    b.extend_from_slice(&6u32.to_le_bytes());
    b.extend_from_slice(&0x7fff_fffdu32.to_le_bytes());
    b.extend_from_slice(&[0u8; 8]);
    b.extend(epb(0, T0_US + 1000, &f[1]));
    // A packet naming an interface never described.
    b.extend(epb(9, T0_US + 1500, &f[2]));
    b.extend(epb(0, T0_US + 2000, &f[2]));
    let p = write(&dir, "blocks.pcapng", &b);
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert_ok(&run, "pcapng blocks");
    assert_eq!(u(&run.stats, &["packets"]), 3, "{}", run.stats);
    assert_eq!(u(&run.stats, &["dns_answers"]), 3, "{}", run.stats);
    let files = &run.stats["files"][0];
    assert_eq!(files["unknown_blocks"], 2, "{}", run.stats);
    // SHB (28 bytes) + IDB (20) + EPB with the first frame: then the vendor block.
    let first_at = (shb().len() + idb(1).len() + epb(0, T0_US, &f[0]).len()) as u64;
    assert_eq!(
        files["first_unknown_block"]["type"], 0x0bad,
        "{}",
        run.stats
    );
    assert_eq!(
        files["first_unknown_block"]["offset"], first_at,
        "{}",
        run.stats
    );
    assert_eq!(files["bad_interface"], 1, "{}", run.stats);
    assert!(
        run.stderr.contains(&format!(
            "2 pcapng block(s) of a type portent does not read skipped (first: type 0x00000bad at byte {first_at})"
        )),
        "{}",
        run.stderr
    );
    assert!(files["resyncs"].as_u64().unwrap() >= 1, "{}", run.stats);
    assert!(
        run.stderr.contains("undeclared pcapng interface"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("corrupt region"), "{}", run.stderr);

    // A pcapng whose last block is cut.
    let mut b = shb();
    b.extend(idb(1));
    b.extend(epb(0, T0_US, &f[0]));
    let last = epb(0, T0_US + 1, &f[1]);
    b.extend(&last[..last.len() - 7]);
    let p = write(&dir, "cut.pcapng", &b);
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert_ok(&run, "cut pcapng");
    assert_eq!(u(&run.stats, &["packets"]), 1);
    assert!(run.stderr.contains("cut short"), "{}", run.stderr);
}

#[test]
fn unknown_link_types_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let f = good_frames();
    // Classic pcap of link type 147 (a user DLT): every frame is a counted skip.
    let mut b = global_header(147, 65535);
    for (i, fr) in f.iter().enumerate() {
        b.extend(record(T0_US + i as u64, fr));
    }
    let p1 = write(&dir, "dlt147.pcap", &b);
    // pcapng: one known and one unknown interface, packets on both.
    let mut b = shb();
    b.extend(idb(1));
    b.extend(idb(0xfffe));
    b.extend(epb(0, T0_US, &f[0]));
    b.extend(epb(1, T0_US + 1, &f[1]));
    b.extend(epb(0, T0_US + 2, &f[2]));
    let p2 = write(&dir, "mixed.pcapng", &b);
    let run = replay(&[p1, p2], None, &[]);
    assert_ok(&run, "unknown links");
    assert_eq!(u(&run.stats, &["packets"]), 6, "{}", run.stats);
    assert_eq!(
        u(&run.stats, &["decode_errors", "unsupported_link"]),
        4,
        "{}",
        run.stats
    );
    assert_eq!(u(&run.stats, &["dns_answers"]), 2, "{}", run.stats);
}

#[test]
fn garbage_between_good_records_costs_only_the_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let f = good_frames();
    let mut b = global_header(1, 65535);
    b.extend(record(T0_US, &f[0]));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..5000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        b.push(seed as u8 | 0x80);
    }
    b.extend(record(T0_US + 1000, &f[1]));
    b.extend(record(T0_US + 2000, &f[2]));
    let p = write(&dir, "garbage.pcap", &b);
    let run = replay(std::slice::from_ref(&p), None, &[]);
    assert_ok(&run, "garbage");
    assert_eq!(u(&run.stats, &["packets"]), 3, "{}", run.stats);
    assert_eq!(
        run.stats["files"][0]["skipped_bytes"], 5000,
        "{}",
        run.stats
    );
}
