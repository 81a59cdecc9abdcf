//! The replay command's contract: deterministic output whatever the thread count,
//! several files merged in time order, and one-line errors with exit code 2.

mod common;
use common::*;
use std::process::Command;

fn sim(dir: &std::path::Path) {
    let st = Command::new(bin())
        .args([
            "simulate", "--seed", "5", "--hosts", "4", "--hours", "0.3", "--quiet", "--out",
        ])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn output_is_identical_for_any_worker_count() {
    let d = tempfile::tempdir().unwrap();
    sim(d.path());
    let mut files = vec![
        d.path().join("traffic.pcap"),
        pcap("web-tls-many-flows-dns_tls-subjectaltname.pcap"),
        pcap("web-tls-netflix-dns_netflix.pcap"),
        pcap("sll-dns-tls_KakaoTalk_chat.pcap"),
    ];
    let edr = d.path().join("edr.jsonl");
    let edr = edr.to_str().unwrap();
    let base = replay(&files, &["--quiet", "--workers", "1", "--edr", edr]);
    assert!(base.flows.len() > 300 && !base.dns.is_empty());
    assert!(
        !base.alerts.is_empty(),
        "the simulated capture plants detectable instances"
    );
    for w in ["2", "3", "4"] {
        let r = replay(&files, &["--quiet", "--workers", w, "--edr", edr]);
        assert!(
            r.flows_raw == base.flows_raw,
            "flows differ with {w} workers"
        );
        assert!(r.dns_raw == base.dns_raw, "DNS differs with {w} workers");
        assert!(
            r.alerts_raw == base.alerts_raw,
            "alerts differ with {w} workers"
        );
    }
    // Tiny batches and queues move every sweep point and stress the writer's merge (a
    // deadlock once hid here): the records must not change. (Their order may: a flow
    // that times out is written when a sweep or its next packet notices it.)
    let cfg = d.path().join("small-batches.toml");
    std::fs::write(&cfg, "[pipeline]\nbatch_packets = 7\nqueue_batches = 1\n").unwrap();
    let r = replay(
        &files,
        &[
            "--quiet",
            "--workers",
            "2",
            "--edr",
            edr,
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let sorted = |s: &str| {
        let mut v: Vec<&str> = s.lines().collect();
        v.sort_unstable();
        v.join("\n")
    };
    assert!(
        sorted(&r.flows_raw) == sorted(&base.flows_raw),
        "flows differ with small batches"
    );
    assert!(
        sorted(&r.alerts_raw) == sorted(&base.alerts_raw),
        "alerts differ with small batches"
    );
    assert!(
        sorted(&r.dns_raw) == sorted(&base.dns_raw),
        "DNS differs with small batches"
    );
    // The file order on the command line does not matter: records merge by time.
    files.reverse();
    let r = replay(&files, &["--quiet", "--edr", edr]);
    assert!(r.flows_raw == base.flows_raw);
}

#[test]
fn several_files_merge_in_time_order() {
    let a = pcap("dns-udp-a-aaaa-cname-http_wikipedia.pcap");
    let b = pcap("web-tls-netflix-dns_netflix.pcap");
    let r = replay(&[a, b], &["--quiet"]);
    assert_eq!(r.stats["packets"], 136 + 1793);
    assert_eq!(r.dns.len(), 16 + 14);
    let ts: Vec<&str> = r.dns.iter().map(|d| d["ts"].as_str().unwrap()).collect();
    let mut sorted = ts.clone();
    sorted.sort();
    assert_eq!(ts, sorted, "DNS answers come out in packet-time order");
}

fn run_err(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_unreadable_and_non_pcap_files_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope.pcap");
    let (code, err) = run_err(&["replay", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nope.pcap"), "{err}");

    let text = d.path().join("notes.txt");
    std::fs::write(&text, "this is not a capture file at all").unwrap();
    let (code, err) = run_err(&["replay", text.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("notes.txt") && err.contains("not a pcap"),
        "{err}"
    );

    let (code, err) = run_err(&["replay", d.path().to_str().unwrap()]);
    assert_eq!(code, 2, "a directory: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "[flow]\nmax_flowz = 3\n").unwrap();
    let p = pcap("dns-tcp-single-query_dns_tcp.pcap");
    let (code, err) = run_err(&[
        "replay",
        p.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("max_flowz"),
        "{err}"
    );
}

/// An output that fills up (`/dev/full`) is a one-line error naming it, exit code 2,
/// whether the one worker writes its records itself or a writer thread merges them.
#[test]
fn an_output_that_cannot_be_written_is_a_one_line_error() {
    let full = std::path::Path::new("/dev/full");
    if !full.exists() {
        eprintln!("skipped: no /dev/full on this machine");
        return;
    }
    let p = pcap("web-tls-netflix-dns_netflix.pcap");
    for workers in ["1", "2"] {
        let (code, err) = run_err(&[
            "replay",
            p.to_str().unwrap(),
            "--quiet",
            "--workers",
            workers,
            "--flows",
            "/dev/full",
        ]);
        assert_eq!(code, 2, "{workers} workers: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("/dev/full") && err.contains("cannot write"),
            "{err}"
        );
    }
}

#[test]
fn truncated_last_record_is_a_warning_and_earlier_packets_are_kept() {
    // A real file cut in the middle of its last packet.
    let r = replay(&[pcap("truncated-file-http_http-mime-truncated.pcap")], &[]);
    let err = String::from_utf8_lossy(&r.out.stderr);
    assert!(
        err.contains("warning") && err.contains("cut short"),
        "{err}"
    );
    assert_eq!(r.stats["packets"], 2696);
    assert_eq!(r.flows.len(), 1);
}
