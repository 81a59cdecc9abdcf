//! End to end with the EDR feed: simulate captures (seeds not used for tuning), replay
//! them with `--edr`, and check that alerts carry the right process, launchd and VM
//! context, and that `nonbrowser_outbound_deviation` finds its instances precisely.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;

use portent::simulate::score::{group_alerts, matches, score};
use portent::simulate::truth::{Instance, Truth};
use serde_json::Value;

const NB: &str = "nonbrowser_outbound_deviation";

struct Run {
    truth: Truth,
    alerts: Vec<Value>,
    alerts_raw: String,
    /// Hosts (names) with an EDR agent: those the feed's inventory lists, not ESXi.
    covered: HashSet<String>,
    _dir: tempfile::TempDir,
}

fn run(seed: u64, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let st = Command::new(common::bin())
        .args(["simulate", "--quiet", "--seed", &seed.to_string(), "--out"])
        .arg(d)
        .args(extra)
        .status()
        .unwrap();
    assert!(st.success());
    common::run_ok(
        Command::new(common::bin())
            .arg("replay")
            .arg(d.join("traffic.pcap"))
            .arg("--edr")
            .arg(d.join("edr.jsonl"))
            .arg("--alerts")
            .arg(d.join("alerts.jsonl"))
            .arg("--quiet"),
    );
    let _ = std::fs::remove_file(d.join("traffic.pcap"));
    let truth: Truth =
        serde_json::from_str(&std::fs::read_to_string(d.join("truth.json")).unwrap()).unwrap();
    let (alerts_raw, alerts) = common::read_jsonl(&d.join("alerts.jsonl"));
    Run {
        truth,
        alerts,
        alerts_raw,
        covered: covered_hosts(&d.join("edr.jsonl")),
        _dir: dir,
    }
}

fn covered_hosts(edr: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(edr).unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.pointer("/event/category").and_then(Value::as_str) == Some("network"))
        .filter_map(|v| {
            v.pointer("/host/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

/// The alerts that belong to an instance (same rule as `portent score`).
fn alerts_of<'a>(r: &'a Run, i: &Instance) -> Vec<&'a Value> {
    let (groups, _) = group_alerts(&r.alerts_raw);
    let keys: HashSet<(String, String, u16)> = groups
        .iter()
        .filter(|g| matches(g, i, 120.0))
        .map(|g| (g.analytic.clone(), g.dest_ip.clone(), g.dest_port))
        .collect();
    r.alerts
        .iter()
        .filter(|a| {
            a["src_ip"] == i.host.ip.as_str()
                && keys.contains(&(
                    a["analytic"].as_str().unwrap_or("").to_owned(),
                    a["dest_ip"].as_str().unwrap_or("").to_owned(),
                    a["dest_port"].as_u64().unwrap_or(0) as u16,
                ))
        })
        .collect()
}

#[derive(Default, Debug)]
struct Tally {
    alerts: usize,
    right: usize,
    wrong: Vec<String>,
}

/// Right: the process (name and executable), launchd job and VM match the truth.
/// Wrong: any of them present and different (missing is neither right nor wrong).
fn check(r: &Run, t: &mut Tally) {
    for i in &r.truth.instances {
        let vm_host = i.vm.is_some();
        let has_proc = r.covered.contains(&i.host.name);
        if !has_proc && !vm_host {
            continue;
        }
        for a in alerts_of(r, i) {
            t.alerts += 1;
            let mut ok = true;
            if has_proc {
                let p = i.process.as_ref().unwrap();
                for (k, want) in [("name", &p.name), ("executable", &p.executable)] {
                    match a.pointer(&format!("/process/{k}")).and_then(Value::as_str) {
                        Some(got) if Some(got) != want.as_deref() => {
                            t.wrong.push(format!("{}: process.{k} {got}", i.id))
                        }
                        Some(_) => {}
                        None => ok = false,
                    }
                }
                let want = i.launchd.as_ref().and_then(|l| l.label.as_deref());
                let got = a.pointer("/launchd/label").and_then(Value::as_str);
                if got != want {
                    ok = false;
                    if got.is_some() {
                        t.wrong.push(format!("{}: launchd {got:?}", i.id));
                    }
                }
                let want = i.user.as_ref().and_then(|u| u.name.as_deref());
                if let Some(got) = a.pointer("/user/name").and_then(Value::as_str) {
                    if Some(got) != want {
                        t.wrong.push(format!("{}: user {got}", i.id));
                    }
                }
            }
            if let Some(vm) = &i.vm {
                match a.pointer("/vm/name").and_then(Value::as_str) {
                    Some(got) if Some(got) != vm.name.as_deref() => {
                        t.wrong.push(format!("{}: vm {got}", i.id))
                    }
                    Some(_) => {}
                    None => ok = false,
                }
            }
            let platform = a.pointer("/host/os/platform").and_then(Value::as_str);
            let want_an: Vec<&str> = i.attack_analytics.iter().map(String::as_str).collect();
            let got_an: Vec<&str> = a["attack"]["analytics"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if got_an != want_an {
                ok = false;
                if platform.is_some() || i.vm.is_some() {
                    t.wrong.push(format!(
                        "{}: attack.analytics {got_an:?} != {want_an:?}",
                        i.id
                    ));
                }
            }
            if ok {
                t.right += 1;
            }
        }
    }
}

#[test]
fn alerts_carry_edr_context_and_nonbrowser_is_precise() {
    let mut tally = Tally::default();
    let (mut found, mut instances, mut true_groups, mut groups) = (0, 0, 0, 0);
    for seed in [31u64, 47] {
        let r = run(seed, &["--hosts", "60", "--hours", "1.5"]);
        check(&r, &mut tally);
        let (g, bad) = group_alerts(&r.alerts_raw);
        assert_eq!(bad, 0);
        let sc = score(&r.truth, &g, &[], 120.0);
        let (rec, prec) = sc.by_analytic.get(NB).cloned().unwrap_or_default();
        found += rec.num;
        instances += rec.den;
        true_groups += prec.num;
        groups += prec.den;
        eprintln!(
            "seed {seed}: {NB} recall {}/{} precision {}/{}",
            rec.num, rec.den, prec.num, prec.den
        );
    }
    eprintln!("attribution: {tally:?}");
    assert!(tally.wrong.is_empty(), "wrong context: {:?}", tally.wrong);
    assert!(tally.alerts > 0);
    assert!(
        tally.right as f64 >= 0.95 * tally.alerts as f64,
        "only {}/{} alerts carry the full context",
        tally.right,
        tally.alerts
    );
    assert!(
        instances >= 3,
        "too few {NB} instances planted: {instances}"
    );
    assert!(
        found as f64 >= 0.95 * instances as f64,
        "recall {found}/{instances}"
    );
    assert!(
        true_groups as f64 >= 0.95 * groups as f64,
        "precision {true_groups}/{groups}"
    );
}

#[test]
fn benign_only_capture_gives_at_most_one_nonbrowser_alert() {
    let r = run(
        53,
        &["--scenario", "none", "--hosts", "60", "--hours", "1.5"],
    );
    let n = r.alerts.iter().filter(|a| a["analytic"] == NB).count();
    assert!(n <= 1, "{n} {NB} alerts on benign traffic");
}
