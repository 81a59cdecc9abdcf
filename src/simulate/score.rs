//! `portent score`: recall and precision of alerts against a simulation's truth.
//!
//! Definitions (all on packet time):
//!
//! * **Alert group.** Alerts are deduplicated per (`analytic`, `src_ip`, `dest_ip`,
//!   `dest_port`); each group is counted once, however many alert windows it fired in.
//!   Its technique is the analytic's technique (`attack.technique` for unknown analytics).
//! * **Match.** A group matches an instance when (1) the techniques are equal, (2) `src_ip`
//!   is the instance's internal host, (3) `dest_ip` is one of the instance's
//!   `external_ips`, or `dest_port` is one of its `ports` and is not 80 or 443 (web ports
//!   are shared with all of the host's browsing, so alone they prove nothing), and (4) at
//!   least one alert of the group has a `timestamp` in `[start - 1 s, end + slack]`
//!   (`--slack-s`, default 120 s: detections may complete after the last packet).
//! * **True / false alert.** A group is true when it matches at least one instance.
//! * **Found.** An instance is found when a true group matches it. Per technique, any
//!   analytic of that technique may find it; per analytic, only groups of the instance's
//!   own analytic count.
//! * **Recall** = found instances / instances; **precision** = true groups / groups. A ratio
//!   with an empty denominator is shown as `-` and never fails a threshold.
//! * **Thresholds.** `--min-recall` and `--min-precision` must hold overall and for every
//!   technique considered; `--technique` (repeatable) restricts instances and alerts to
//!   the given techniques. Any miss makes `run_score` return `Ok(false)` (exit code 1).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use super::truth::{Instance, Truth};
use crate::analytics::Analytic;
use crate::time::Ts;

/// Arguments of `portent score`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScoreArgs {
    /// truth.json written by `portent simulate`.
    #[arg(long)]
    pub truth: PathBuf,
    /// Alerts (JSON Lines, ../shared/spec/alerts.md).
    #[arg(long)]
    pub alerts: PathBuf,
    /// Fail (exit 1) when recall (overall or of any technique) is below this.
    #[arg(long)]
    pub min_recall: Option<f64>,
    /// Fail (exit 1) when precision (overall or of any technique) is below this.
    #[arg(long)]
    pub min_precision: Option<f64>,
    /// Only score these techniques (e.g. T1568.003); repeatable.
    #[arg(long = "technique")]
    pub techniques: Vec<String>,
    /// Seconds after an instance's last packet during which its alerts still count.
    #[arg(long, default_value_t = 120.0)]
    pub slack_s: f64,
    /// Only score these analytics (instances planted for them, alerts they raised), e.g.
    /// to judge two analytics of a technique another analytic also serves; repeatable.
    #[arg(long = "analytic")]
    pub analytics: Vec<String>,
}

/// One deduplicated alert.
#[derive(Clone, Debug)]
pub struct AlertGroup {
    pub analytic: String,
    pub technique: String,
    pub src_ip: String,
    pub dest_ip: String,
    pub dest_port: u16,
    pub times: Vec<Ts>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ratio {
    pub num: usize,
    pub den: usize,
}

impl Ratio {
    pub fn value(&self) -> Option<f64> {
        (self.den > 0).then(|| self.num as f64 / self.den as f64)
    }
    fn show(&self) -> String {
        match self.value() {
            Some(v) => format!("{v:.3} ({}/{})", self.num, self.den),
            None => "-".into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Scores {
    pub overall: (Ratio, Ratio),
    /// technique -> (recall, precision)
    pub by_technique: BTreeMap<String, (Ratio, Ratio)>,
    /// analytic -> (recall, precision)
    pub by_analytic: BTreeMap<String, (Ratio, Ratio)>,
    pub false_groups: Vec<AlertGroup>,
    pub missed: Vec<String>,
}

/// Reads alert lines into groups; returns the groups and the number of unusable lines.
pub fn group_alerts(text: &str) -> (Vec<AlertGroup>, usize) {
    let mut groups: BTreeMap<(String, String, String, u16), AlertGroup> = BTreeMap::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            bad += 1;
            continue;
        };
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let (Some(analytic), Some(src), Some(ts)) = (
            s("analytic"),
            s("src_ip"),
            s("timestamp").and_then(|t| Ts::parse_rfc3339(&t)),
        ) else {
            bad += 1;
            continue;
        };
        let dest = s("dest_ip").unwrap_or_default();
        let port = v.get("dest_port").and_then(Value::as_u64).unwrap_or(0) as u16;
        let technique = Analytic::from_name(&analytic)
            .map(|a| a.technique().to_string())
            .or_else(|| {
                v.pointer("/attack/technique")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "unknown".into());
        groups
            .entry((analytic.clone(), src.clone(), dest.clone(), port))
            .or_insert_with(|| AlertGroup {
                analytic,
                technique,
                src_ip: src,
                dest_ip: dest,
                dest_port: port,
                times: Vec::new(),
            })
            .times
            .push(ts);
    }
    (groups.into_values().collect(), bad)
}

fn span(i: &Instance) -> Option<(Ts, Ts)> {
    Some((Ts::parse_rfc3339(&i.start)?, Ts::parse_rfc3339(&i.end)?))
}

pub fn matches(g: &AlertGroup, i: &Instance, slack_s: f64) -> bool {
    if g.technique != i.technique || g.src_ip != i.host.ip {
        return false;
    }
    let by_ip = i.external_ips.contains(&g.dest_ip);
    let by_port = g.dest_port != 80 && g.dest_port != 443 && i.ports.contains(&g.dest_port);
    if !(by_ip || by_port) {
        return false;
    }
    let Some((s, e)) = span(i) else { return false };
    let lo = s.0 - 1_000_000_000;
    let hi = e.0 + (slack_s * 1e9) as i64;
    g.times.iter().any(|t| t.0 >= lo && t.0 <= hi)
}

pub fn score(truth: &Truth, groups: &[AlertGroup], techniques: &[String], slack_s: f64) -> Scores {
    let keep = |t: &str| techniques.is_empty() || techniques.iter().any(|x| x == t);
    let insts: Vec<&Instance> = truth
        .instances
        .iter()
        .filter(|i| keep(&i.technique))
        .collect();
    let groups: Vec<&AlertGroup> = groups.iter().filter(|g| keep(&g.technique)).collect();
    let mut sc = Scores::default();
    for t in insts
        .iter()
        .map(|i| i.technique.clone())
        .chain(groups.iter().map(|g| g.technique.clone()))
    {
        sc.by_technique.entry(t).or_default();
    }
    for a in insts
        .iter()
        .map(|i| i.analytic.clone())
        .chain(groups.iter().map(|g| g.analytic.clone()))
    {
        sc.by_analytic.entry(a).or_default();
    }
    for g in &groups {
        let true_alert = insts.iter().any(|i| matches(g, i, slack_s));
        for r in [
            &mut sc.overall.1,
            &mut sc.by_technique.get_mut(&g.technique).unwrap().1,
            &mut sc.by_analytic.get_mut(&g.analytic).unwrap().1,
        ] {
            r.den += 1;
            r.num += true_alert as usize;
        }
        if !true_alert {
            sc.false_groups.push((*g).clone());
        }
    }
    for i in &insts {
        let found = groups.iter().any(|g| matches(g, i, slack_s));
        let found_own = groups
            .iter()
            .any(|g| g.analytic == i.analytic && matches(g, i, slack_s));
        for (r, f) in [
            (&mut sc.overall.0, found),
            (&mut sc.by_technique.get_mut(&i.technique).unwrap().0, found),
            (
                &mut sc.by_analytic.get_mut(&i.analytic).unwrap().0,
                found_own,
            ),
        ] {
            r.den += 1;
            r.num += f as usize;
        }
        if !found {
            sc.missed.push(format!(
                "{} {} {} {} {}..{}",
                i.id,
                i.variant,
                i.host.ip,
                i.external_ips.join(","),
                i.start,
                i.end
            ));
        }
    }
    sc
}

/// Whether every considered ratio meets its threshold.
pub fn passes(sc: &Scores, min_recall: Option<f64>, min_precision: Option<f64>) -> bool {
    let ok = |r: &Ratio, min: Option<f64>| match (r.value(), min) {
        (Some(v), Some(m)) => v + 1e-12 >= m,
        _ => true,
    };
    ok(&sc.overall.0, min_recall)
        && ok(&sc.overall.1, min_precision)
        && sc
            .by_technique
            .values()
            .all(|(r, p)| ok(r, min_recall) && ok(p, min_precision))
}

pub fn report(sc: &Scores) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<32} {:<22} {:<22}", "", "recall", "precision");
    let _ = writeln!(
        s,
        "{:<32} {:<22} {:<22}",
        "overall",
        sc.overall.0.show(),
        sc.overall.1.show()
    );
    for (k, (r, p)) in &sc.by_technique {
        let _ = writeln!(
            s,
            "{:<32} {:<22} {:<22}",
            format!("technique {k}"),
            r.show(),
            p.show()
        );
    }
    for (k, (r, p)) in &sc.by_analytic {
        let _ = writeln!(
            s,
            "{:<32} {:<22} {:<22}",
            format!("analytic {k}"),
            r.show(),
            p.show()
        );
    }
    if !sc.missed.is_empty() {
        let _ = writeln!(s, "\nmissed instances ({}):", sc.missed.len());
        for m in &sc.missed {
            let _ = writeln!(s, "  {m}");
        }
    }
    if !sc.false_groups.is_empty() {
        let _ = writeln!(s, "\nfalse alerts ({}):", sc.false_groups.len());
        for g in &sc.false_groups {
            let first = g.times.iter().min().copied().unwrap_or_default();
            let _ = writeln!(
                s,
                "  {} {} -> {}:{} first {} ({}x)",
                g.analytic,
                g.src_ip,
                g.dest_ip,
                g.dest_port,
                first.rfc3339(),
                g.times.len()
            );
        }
    }
    s
}

/// Runs `portent score`; `Ok(false)` means a threshold was not met (exit code 1).
pub fn run_score(args: &ScoreArgs) -> Result<bool, String> {
    let t = std::fs::read_to_string(&args.truth)
        .map_err(|e| format!("cannot read {}: {e}", args.truth.display()))?;
    let mut truth: Truth = serde_json::from_str(&t)
        .map_err(|e| format!("{}: not a truth file: {e}", args.truth.display()))?;
    let a = std::fs::read_to_string(&args.alerts)
        .map_err(|e| format!("cannot read {}: {e}", args.alerts.display()))?;
    let (mut groups, bad) = group_alerts(&a);
    if !args.analytics.is_empty() {
        let keep = |n: &str| args.analytics.iter().any(|x| x == n);
        truth.instances.retain(|i| keep(&i.analytic));
        groups.retain(|g| keep(&g.analytic));
    }
    if bad > 0 {
        eprintln!("portent score: skipped {bad} alert lines without analytic, src_ip or a valid timestamp");
    }
    let sc = score(&truth, &groups, &args.techniques, args.slack_s);
    print!("{}", report(&sc));
    let ok = passes(&sc, args.min_recall, args.min_precision);
    if !ok {
        println!(
            "\nFAIL: below --min-recall {:?} / --min-precision {:?}",
            args.min_recall, args.min_precision
        );
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::truth::TruthHost;

    fn inst(id: &str, technique: &str, analytic: &str, ip: &str, dst: &str, port: u16) -> Instance {
        Instance {
            id: id.into(),
            technique: technique.into(),
            analytic: analytic.into(),
            host: TruthHost {
                ip: ip.into(),
                name: "h".into(),
                platform: "macos".into(),
            },
            external_ips: vec![dst.into()],
            ports: vec![port],
            start: "2026-11-20T10:00:00Z".into(),
            end: "2026-11-20T11:00:00Z".into(),
            ..Default::default()
        }
    }

    fn truth(instances: Vec<Instance>) -> Truth {
        Truth {
            generator: "t".into(),
            seed: 1,
            hosts: 1,
            hours: 1.0,
            scenarios: vec![],
            start: String::new(),
            end: String::new(),
            instances,
        }
    }

    fn alert(analytic: &str, src: &str, dst: &str, port: u16, ts: &str) -> String {
        format!(
            r#"{{"timestamp":"{ts}","event_type":"alert","analytic":"{analytic}","src_ip":"{src}","dest_ip":"{dst}","dest_port":{port}}}"#
        )
    }

    #[test]
    fn scores_recall_precision_and_dedup() {
        let t = truth(vec![
            inst(
                "a",
                "T1568.003",
                "dns_calculated_port",
                "10.1.0.2",
                "71.63.201.9",
                18239,
            ),
            inst(
                "b",
                "T1029",
                "periodic_transfer",
                "10.1.0.3",
                "5.6.7.8",
                443,
            ),
            inst(
                "c",
                "T1030",
                "fixed_size_transfer",
                "10.1.0.4",
                "9.9.9.9",
                443,
            ),
        ]);
        let lines = [
            // true, twice (deduplicated)
            alert(
                "dns_calculated_port",
                "10.1.0.2",
                "71.63.201.9",
                18239,
                "2026-11-20T10:05:00Z",
            ),
            alert(
                "dns_calculated_port",
                "10.1.0.2",
                "71.63.201.9",
                18239,
                "2026-11-20T10:50:00Z",
            ),
            // true by port although the address differs
            alert(
                "unusual_dns_nonstandard_port",
                "10.1.0.2",
                "1.2.3.4",
                18239,
                "2026-11-20T10:06:00Z",
            ),
            // right host and port 443, wrong address: web port alone does not match
            alert(
                "periodic_transfer",
                "10.1.0.3",
                "1.1.1.1",
                443,
                "2026-11-20T10:30:00Z",
            ),
            // right everything but after end + slack
            alert(
                "fixed_size_transfer",
                "10.1.0.4",
                "9.9.9.9",
                443,
                "2026-11-20T11:10:00Z",
            ),
            "not json".to_string(),
        ];
        let (groups, bad) = group_alerts(&lines.join("\n"));
        assert_eq!((groups.len(), bad), (4, 1));
        let sc = score(&t, &groups, &[], 120.0);
        assert_eq!(sc.overall.0, Ratio { num: 1, den: 3 });
        assert_eq!(sc.overall.1, Ratio { num: 2, den: 4 });
        assert_eq!(
            sc.by_technique["T1568.003"],
            (Ratio { num: 1, den: 1 }, Ratio { num: 2, den: 2 })
        );
        assert_eq!(
            sc.by_analytic["unusual_dns_nonstandard_port"].1,
            Ratio { num: 1, den: 1 }
        );
        assert_eq!(sc.false_groups.len(), 2);
        assert!(passes(&sc, Some(0.0), Some(0.0)));
        // T1029 and T1030 were missed: any positive recall threshold fails.
        assert!(!passes(&sc, Some(0.3), None));
        let only = score(&t, &groups, &["T1568.003".into()], 120.0);
        assert!(passes(&only, Some(1.0), Some(1.0)));
        assert!(report(&sc).contains("false alerts (2)"));
    }

    #[test]
    fn empty_sets_never_fail() {
        let sc = score(&truth(vec![]), &[], &[], 120.0);
        assert!(passes(&sc, Some(1.0), Some(1.0)));
        let (g, _) = group_alerts(&alert(
            "periodic_transfer",
            "10.1.0.3",
            "5.6.7.8",
            443,
            "2026-11-20T10:00:00Z",
        ));
        let sc = score(&truth(vec![]), &g, &[], 120.0);
        assert!(!passes(&sc, None, Some(0.5)));
    }
}
