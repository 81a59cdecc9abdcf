//! Replays every checked-in fuzz input (`fuzz/corpus/<target>/`) and every regression
//! input (`tests/regressions/<target>/`) through the fuzz targets' own entry points
//! (`fuzz/harness.rs`), so CI exercises them without cargo-fuzz or a nightly feature.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn replay_dir(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in [
        root.join("fuzz/corpus").join(target),
        root.join("tests/regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: {} panicked", f.display());
            n += 1;
        }
    }
    assert!(n > 0, "{target}: no corpus found");
}

#[test]
fn frame_decode_corpus() {
    replay_dir("frame_decode", harness::frame_decode);
}

#[test]
fn dns_decode_corpus() {
    replay_dir("dns_decode", harness::dns_decode);
}

#[test]
fn dns_tcp_corpus() {
    replay_dir("dns_tcp", harness::dns_tcp);
}

#[test]
fn edr_ingest_corpus() {
    replay_dir("edr_ingest", harness::edr_ingest);
}

#[test]
fn config_load_corpus() {
    replay_dir("config_load", harness::config_load);
}

#[test]
fn pcap_reader_corpus() {
    replay_dir("pcap_reader", harness::pcap_reader);
}
