//! Capture builders and a measured `portent replay` for the hardening tests: frames and
//! DNS messages are built byte by byte here so each test shows exactly what is on the
//! wire.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portent")
}

/// A classic pcap (microseconds, little endian) written as it is built.
pub struct PcapWriter {
    w: BufWriter<File>,
    pub records: u64,
}

impl PcapWriter {
    pub fn create(path: &Path, link: u32) -> PcapWriter {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
        w.write_all(&global_header(link, 65535)).unwrap();
        PcapWriter { w, records: 0 }
    }
    pub fn packet(&mut self, ts_us: u64, frame: &[u8]) {
        self.w.write_all(&record(ts_us, frame)).unwrap();
        self.records += 1;
    }
    pub fn finish(mut self) -> u64 {
        self.w.flush().unwrap();
        self.records
    }
}

pub fn global_header(link: u32, snaplen: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&snaplen.to_le_bytes());
    v.extend_from_slice(&link.to_le_bytes());
    v
}

pub fn record(ts_us: u64, frame: &[u8]) -> Vec<u8> {
    record_lens(ts_us, frame, frame.len() as u32, frame.len() as u32)
}

/// A record header with the given caplen and orig_len fields, then `frame`.
pub fn record_lens(ts_us: u64, frame: &[u8], caplen: u32, orig: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + frame.len());
    v.extend_from_slice(&((ts_us / 1_000_000) as u32).to_le_bytes());
    v.extend_from_slice(&((ts_us % 1_000_000) as u32).to_le_bytes());
    v.extend_from_slice(&caplen.to_le_bytes());
    v.extend_from_slice(&orig.to_le_bytes());
    v.extend_from_slice(frame);
    v
}

/// A whole classic pcap of Ethernet frames, one millisecond apart from `t0_us`.
pub fn pcap_bytes(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut v = global_header(1, 65535);
    for (i, f) in frames.iter().enumerate() {
        v.extend(record(T0_US + i as u64 * 1000, f));
    }
    v
}

/// 2023-11-14: a plausible capture time.
pub const T0_US: u64 = 1_700_000_000_000_000;

pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let total = (20 + l4.len()) as u16;
    let mut v = vec![0x45, 0];
    v.extend_from_slice(&total.to_be_bytes());
    v.extend_from_slice(&[0, 1, 0, 0, 64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(l4);
    v
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

pub fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(20 + payload.len());
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    v.extend_from_slice(payload);
    v
}

pub fn eth(ip: &[u8]) -> Vec<u8> {
    let mut v = vec![
        0, 0x11, 0x22, 0x33, 0x44, 0x55, 0, 0x66, 0x77, 0x88, 0x99, 0xaa, 8, 0,
    ];
    v.extend_from_slice(ip);
    v
}

pub fn eth_udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    eth(&ipv4(src, dst, 17, &udp(sport, dport, payload)))
}

pub fn eth_tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, seq: u32, flags: u8) -> Vec<u8> {
    eth(&ipv4(src, dst, 6, &tcp(sport, dport, seq, flags, b"")))
}

/// A name in wire form from raw labels (any bytes, any lengths: no checks, on purpose).
pub fn wire_name(labels: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in labels {
        v.push(l.len() as u8);
        v.extend_from_slice(l);
    }
    v.push(0);
    v
}

/// One resource record: `owner` already in wire form (or a pointer), then the fields.
pub fn rr(owner: &[u8], rtype: u16, ttl: u32, rdata: &[u8]) -> Vec<u8> {
    let mut v = owner.to_vec();
    v.extend_from_slice(&rtype.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&ttl.to_be_bytes());
    v.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    v.extend_from_slice(rdata);
    v
}

/// A response: header with the given counts, the question (`qname` in wire form, type
/// A), then `body` (the answer records, already encoded).
pub fn dns_response(id: u16, qname: &[u8], counts: [u16; 4], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&0x8180u16.to_be_bytes());
    for c in counts {
        v.extend_from_slice(&c.to_be_bytes());
    }
    v.extend_from_slice(qname);
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// A pointer to the question name (offset 12).
pub const QPTR: [u8; 2] = [0xc0, 0x0c];

/// A replay still running after this long is killed (a hang).
pub const WATCHDOG_SECS: u64 = 300;

/// What a replay did: exit code, stderr, the `--stats` JSON, the raw output files and
/// the child's peak RSS in KiB (wait4's ru_maxrss).
pub struct Run {
    pub code: i32,
    pub stderr: String,
    pub stats: serde_json::Value,
    pub max_rss_kib: i64,
    pub dir: tempfile::TempDir,
}

// Outputs are read on demand, never kept: a flood's output held in this process would
// count in the next child's ru_maxrss (a forked child starts with the parent's pages).
impl Run {
    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap_or_default()
    }
    pub fn dns(&self) -> Vec<u8> {
        self.read("dns.jsonl")
    }
    pub fn alerts(&self) -> Vec<u8> {
        self.read("alerts.jsonl")
    }
    pub fn flows(&self) -> Vec<u8> {
        self.read("flows.jsonl")
    }
}

/// `portent replay FILES --stats --dns --alerts --flows [--config TOML] EXTRA`.
pub fn replay(files: &[PathBuf], config: Option<&str>, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let mut cmd = Command::new(bin());
    cmd.arg("replay").args(files).arg("--quiet");
    for (flag, name) in [
        ("--stats", "stats.json"),
        ("--dns", "dns.jsonl"),
        ("--alerts", "alerts.jsonl"),
        ("--flows", "flows.jsonl"),
    ] {
        cmd.arg(flag).arg(d.join(name));
    }
    if let Some(toml) = config {
        let p = d.join("config.toml");
        std::fs::write(&p, toml).unwrap();
        cmd.arg("--config").arg(p);
    }
    cmd.args(extra).stdout(Stdio::null()).stderr(Stdio::piped());
    // wait4 (not Child::wait) reaps it, for the child's own rusage.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().unwrap();
    // A hang is a finding too: the watchdog kills a run that outlives WATCHDOG_SECS, and
    // the check below reports it as death by signal.
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    std::thread::spawn(move || {
        let t = std::time::Instant::now();
        while t.elapsed().as_secs() < WATCHDOG_SECS {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if d2.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
        }
        // SAFETY: signalling our own child, not yet reaped (`done` is still false).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let mut status = 0;
    // SAFETY: plain syscall on our own child; rusage is a plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // Wait for the exit without reaping (the pid cannot be reused while it is a
    // zombie), stop the watchdog, then reap with wait4 for the rusage.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, child.id() as libc::pid_t, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        panic!(
            "portent replay died by signal {}: {stderr}",
            libc::WTERMSIG(status)
        );
    };
    let stats = std::fs::read_to_string(d.join("stats.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    Run {
        code,
        stderr,
        stats,
        max_rss_kib: ru.ru_maxrss,
        dir,
    }
}

/// Every line of an output file is one JSON object (bytes checked as UTF-8 first, so an
/// invalid byte is a failure, not a silently empty file).
pub fn jsonl(raw: &[u8], what: &str) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(raw).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"));
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("{what}: bad JSON line {l:?}: {e}"))
        })
        .collect()
}

pub fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {v}"))
}
