//! End to end for T1568.003 (issue #5): simulate small captures on seeds no tuning looked
//! at, replay them, and score `dns_calculated_port` + `unusual_dns_nonstandard_port`
//! with `portent score` (recall and precision at least 0.95); a benign-only capture may
//! raise at most one alert of the two.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portent");
const ANALYTICS: [&str; 2] = ["dns_calculated_port", "unusual_dns_nonstandard_port"];

fn run(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).output().expect("run portent");
    assert!(
        out.status.success(),
        "portent {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Simulates and replays one capture; returns the alerts file.
fn simulate_and_replay(dir: &Path, seed: u64, scenarios: &[&str]) -> std::path::PathBuf {
    let seed = seed.to_string();
    let out = dir.to_str().unwrap();
    let mut args = vec!["simulate", "--seed", &seed, "--hosts", "20", "--hours", "1"];
    for s in scenarios {
        args.extend(["--scenario", s]);
    }
    args.extend(["--out", out]);
    run(&args);
    let alerts = dir.join("alerts.jsonl");
    run(&[
        "replay",
        dir.join("traffic.pcap").to_str().unwrap(),
        "--edr",
        dir.join("edr.jsonl").to_str().unwrap(),
        "--alerts",
        alerts.to_str().unwrap(),
    ]);
    // The capture is the bulk of the disk use; the scores need only truth and alerts.
    let _ = std::fs::remove_file(dir.join("traffic.pcap"));
    alerts
}

#[test]
fn recall_and_precision_on_unseen_seeds() {
    for seed in [8128, 31_337] {
        let d = tempfile::tempdir().unwrap();
        let alerts = simulate_and_replay(d.path(), seed, &["dns-calc", "unusual-dns"]);
        let truth = d.path().join("truth.json");
        let mut args = vec![
            "score",
            "--truth",
            truth.to_str().unwrap(),
            "--alerts",
            alerts.to_str().unwrap(),
            "--technique",
            "T1568.003",
            "--min-recall",
            "0.95",
            "--min-precision",
            "0.95",
        ];
        for a in ANALYTICS {
            args.extend(["--analytic", a]);
        }
        let out = run(&args);
        eprintln!("seed {seed}:\n{}", String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn benign_background_raises_at_most_one_alert() {
    let d = tempfile::tempdir().unwrap();
    let alerts = simulate_and_replay(d.path(), 4321, &["none"]);
    let text = std::fs::read_to_string(alerts).unwrap();
    let n = text
        .lines()
        .filter(|l| {
            ANALYTICS
                .iter()
                .any(|a| l.contains(&format!("\"analytic\":\"{a}\"")))
        })
        .count();
    assert!(n <= 1, "{n} alerts on benign traffic:\n{text}");
}
