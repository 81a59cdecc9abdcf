//! End to end: `portent simulate` → `replay` → `score` for the cadence analytics
//! (`periodic_transfer` T1029, `fixed_size_transfer` T1030) on seeds not used for tuning,
//! and a benign-only capture. 24 h of 4 hosts: the simulator's slowest schedules beat
//! hourly, and 24 beats are needed to show a 40 %-jitter schedule.

mod common;
use common::bin;
use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run portent");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn simulate(dir: &Path, seed: u64, scenarios: &[&str]) {
    let mut a = vec![
        "simulate".to_string(),
        "--seed".into(),
        seed.to_string(),
        "--hosts".into(),
        "4".into(),
        "--hours".into(),
        "24".into(),
        "--quiet".into(),
        "--out".into(),
        dir.display().to_string(),
    ];
    for s in scenarios {
        a.push("--scenario".into());
        a.push(s.to_string());
    }
    let st = Command::new(bin()).args(&a).status().unwrap();
    assert!(st.success());
}

fn replay(dir: &Path) -> std::path::PathBuf {
    let alerts = dir.join("alerts.jsonl");
    let st = Command::new(bin())
        .arg("replay")
        .arg(dir.join("traffic.pcap"))
        .arg("--edr")
        .arg(dir.join("edr.jsonl"))
        .arg("--alerts")
        .arg(&alerts)
        .arg("-q")
        .status()
        .unwrap();
    assert!(st.success());
    alerts
}

/// (found, instances, true groups, groups) of `technique` from `portent score`'s table.
fn ratios(report: &str, technique: &str) -> [usize; 4] {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("technique {technique}")))
        .unwrap_or_else(|| panic!("no {technique} row in\n{report}"));
    let nums: Vec<usize> = line
        .split(['(', ')', '/'])
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    [nums[0], nums[1], nums[2], nums[3]]
}

#[test]
fn recall_and_precision_over_unseen_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tot = [[0usize; 4]; 2];
    for seed in [101u64, 202] {
        let dir = tmp.path().join(seed.to_string());
        simulate(&dir, seed, &["periodic", "fixed-size"]);
        let alerts = replay(&dir);
        let truth = dir.join("truth.json");
        let report = run(&[
            "score",
            "--truth",
            truth.to_str().unwrap(),
            "--alerts",
            alerts.to_str().unwrap(),
            "--technique",
            "T1029",
            "--technique",
            "T1030",
        ]);
        eprintln!("seed {seed}:\n{report}");
        for (i, t) in ["T1029", "T1030"].iter().enumerate() {
            let r = ratios(&report, t);
            for k in 0..4 {
                tot[i][k] += r[k];
            }
        }
    }
    for (i, t) in ["T1029", "T1030"].iter().enumerate() {
        let [f, n, tg, g] = tot[i];
        let recall = f as f64 / n.max(1) as f64;
        let precision = tg as f64 / g.max(1) as f64;
        eprintln!("{t}: recall {recall:.3} ({f}/{n}) precision {precision:.3} ({tg}/{g})");
        assert!(n > 0 && recall >= 0.95, "{t} recall {recall}");
        // Known limit (README "Cadence analytics"): an hourly backup client on a VM
        // without EDR coverage is, on the wire, a 1 h beacon with no jitter; seed 101
        // has one. Every other alert of these seeds is true.
        let min_precision = if *t == "T1029" { 0.75 } else { 0.95 };
        assert!(precision >= min_precision, "{t} precision {precision}");
    }
}

#[test]
fn benign_only_is_quiet() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("none");
    simulate(&dir, 303, &["none"]);
    let alerts = replay(&dir);
    let text = std::fs::read_to_string(alerts).unwrap();
    let n = text
        .lines()
        .filter(|l| l.contains("\"periodic_transfer\"") || l.contains("\"fixed_size_transfer\""))
        .count();
    assert!(n <= 1, "{n} cadence alerts on benign traffic:\n{text}");
}
