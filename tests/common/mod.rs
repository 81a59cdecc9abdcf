//! Helpers for integration tests: run the `portent` binary and read what it wrote.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portent")
}

pub fn pcap(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps/public")
        .join(name)
}

/// Runs `cmd`; panics with its stderr unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What one replay wrote.
pub struct Replay {
    pub out: Output,
    pub stats: serde_json::Value,
    pub flows: Vec<serde_json::Value>,
    pub dns: Vec<serde_json::Value>,
    pub alerts: Vec<serde_json::Value>,
    pub alerts_raw: String,
    pub flows_raw: String,
    pub dns_raw: String,
    _dir: tempfile::TempDir,
}

pub fn read_jsonl(path: &Path) -> (String, Vec<serde_json::Value>) {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    let v = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    (raw, v)
}

/// Replays `files` with extra arguments; panics unless the exit code is 0.
pub fn replay(files: &[PathBuf], extra: &[&str]) -> Replay {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = Command::new(bin())
        .arg("replay")
        .args(files)
        .arg("--stats")
        .arg(d.join("stats.json"))
        .arg("--flows")
        .arg(d.join("flows.jsonl"))
        .arg("--dns")
        .arg(d.join("dns.jsonl"))
        .arg("--alerts")
        .arg(d.join("alerts.jsonl"))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "portent replay {files:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats =
        serde_json::from_str(&std::fs::read_to_string(d.join("stats.json")).unwrap()).unwrap();
    let (flows_raw, flows) = read_jsonl(&d.join("flows.jsonl"));
    let (dns_raw, dns) = read_jsonl(&d.join("dns.jsonl"));
    let (alerts_raw, alerts) = read_jsonl(&d.join("alerts.jsonl"));
    Replay {
        out,
        stats,
        flows,
        dns,
        alerts,
        alerts_raw,
        flows_raw,
        dns_raw,
        _dir: dir,
    }
}
