//! Whole-pipeline throughput on a generated 1 M-packet capture (mixed sizes, ~5 % DNS,
//! thousands of hosts, some IPv6 and 802.1Q): the speed and memory targets.
//!
//! The capture comes from `benches/gen_mix_pcap.py --packets 1000000 --seed 1` (the
//! shared peer-benchmark generator, pinned here with its seed) and is written to
//! `$PORTENT_BENCH_PCAP` or `/tmp/portent-bench-mix1m.pcap` on first use (~700 MB, kept
//! out of the repository).
//!
//! Each iteration runs the `portent replay` binary as users run it, everything on
//! (flows, DNS and alerts written as JSON), and criterion's "time" is the child's CPU
//! seconds (user + system, all threads), read with wait4: packets per CPU-second is the
//! throughput line. Peak RSS of each run is printed. Compare with the peers on the same
//! file: `../shared/bench/bench_peers.sh FILE tcpdump_w softflowd argus suricata_single`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PACKETS: u64 = 1_000_000;
const SEED: u64 = 1;

fn bench_pcap() -> PathBuf {
    let path = std::env::var_os("PORTENT_BENCH_PCAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/portent-bench-mix1m.pcap"));
    if !path.exists() {
        let gen = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/gen_mix_pcap.py");
        let st = Command::new("python3")
            .arg(gen)
            .args([
                "--packets",
                &PACKETS.to_string(),
                "--seed",
                &SEED.to_string(),
            ])
            .arg("--out")
            .arg(&path)
            .status()
            .expect("running python3 benches/gen_mix_pcap.py");
        assert!(st.success(), "generating the benchmark capture failed");
    }
    path
}

/// Runs the binary; returns (CPU time, peak RSS in KiB).
fn run_once(pcap: &Path, out: &Path, workers: usize) -> (Duration, i64) {
    // wait4 (not Child::wait) reaps it, because it also returns the child's rusage.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_portent"))
        .arg("replay")
        .arg(pcap)
        .args(["--quiet", "--workers", &workers.to_string()])
        .arg("--alerts")
        .arg(out.join("alerts.jsonl"))
        .arg("--flows")
        .arg(out.join("flows.jsonl"))
        .arg("--dns")
        .arg(out.join("dns.jsonl"))
        .spawn()
        .expect("spawning portent");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child, with out-pointers to locals.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "portent replay failed"
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss)
}

fn replay(c: &mut Criterion) {
    let pcap = bench_pcap();
    let out = tempfile::tempdir().expect("temp dir");
    let mut g = c.benchmark_group("replay_mix1m");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(PACKETS));
    for workers in [1usize, 2] {
        g.bench_function(format!("cpu_seconds_workers_{workers}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut peak = 0;
                for _ in 0..iters {
                    let (cpu, rss) = run_once(&pcap, out.path(), workers);
                    total += cpu;
                    peak = peak.max(rss);
                }
                eprintln!(
                    "  workers={workers}: {:.3} CPU-s/run, peak RSS {:.1} MiB",
                    total.as_secs_f64() / iters as f64,
                    peak as f64 / 1024.0
                );
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
