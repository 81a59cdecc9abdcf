//! What the report is drawn from: alerts, and the flows and DNS answers that are their
//! evidence, read from portent's JSON Lines outputs. Inputs are streamed; only records
//! that belong to an alert are kept, at most [`MAX_FLOWS_PER_ALERT`] each.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::time::Ts;

/// Flows kept per alert (the most recent ones); the rest are counted.
pub const MAX_FLOWS_PER_ALERT: usize = 500;
/// DNS answers kept per alert.
pub const MAX_DNS_PER_ALERT: usize = 50;
/// Longer lines are not records portent writes; they are skipped and counted.
const MAX_LINE: usize = 1 << 20;
/// How far before an alert its evidence is looked for when the alert does not say.
const DEFAULT_LOOKBACK_S: f64 = 3600.0;

/// One finished connection (portent's flows output, Zeek conn.log names).
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    pub ts: f64,
    pub uid: String,
    pub resp_h: String,
    pub resp_p: u64,
    pub proto: String,
    pub duration: f64,
    pub orig_bytes: u64,
    pub resp_bytes: u64,
    pub conn_state: String,
}

/// One DNS answer the alert's host received for the alert's name.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsSeen {
    pub ts: f64,
    pub query: String,
    pub addrs: Vec<String>,
    pub ttl: u64,
}

/// An alert with its evidence.
#[derive(Clone, Debug)]
pub struct AlertView {
    /// Position in the alerts file (0-based), the anchor of its section.
    pub idx: usize,
    pub raw: Value,
    pub analytic: String,
    pub src: String,
    pub dest: String,
    pub port: u64,
    pub score: f64,
    pub ts: f64,
    /// Every destination address and port the alert names.
    pub dests: Vec<String>,
    pub ports: Vec<u64>,
    /// Names the evidence may have been reached by (dest_name, dns.query).
    pub names: Vec<String>,
    pub flows: VecDeque<Flow>,
    pub flows_total: u64,
    pub dns: VecDeque<DnsSeen>,
}

impl AlertView {
    fn from_value(idx: usize, v: Value) -> Option<AlertView> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let analytic = s("analytic")?;
        let ts = Ts::parse_rfc3339(&s("timestamp")?)?.as_secs_f64();
        let src = s("src_ip").unwrap_or_default();
        let dest = s("dest_ip").unwrap_or_default();
        let port = v.get("dest_port").and_then(Value::as_u64).unwrap_or(0);
        let score = v.get("score").and_then(Value::as_f64).unwrap_or(0.0);
        let strs = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut dests = strs("dest_ips");
        if !dest.is_empty() && !dests.contains(&dest) {
            dests.push(dest.clone());
        }
        let mut ports: Vec<u64> = v
            .get("dest_ports")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if !ports.contains(&port) {
            ports.push(port);
        }
        let mut names = Vec::new();
        for n in [
            s("dest_name"),
            v.pointer("/dns/query")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        Some(AlertView {
            idx,
            raw: v,
            analytic,
            src,
            dest,
            port,
            score,
            ts,
            dests,
            ports,
            names,
            flows: VecDeque::new(),
            flows_total: 0,
            dns: VecDeque::new(),
        })
    }

    pub fn num(&self, ptr: &str) -> Option<f64> {
        self.raw.pointer(ptr).and_then(Value::as_f64)
    }

    pub fn str(&self, ptr: &str) -> Option<&str> {
        self.raw.pointer(ptr).and_then(Value::as_str)
    }

    /// Seconds before the alert its evidence may start: a cadence series spans its
    /// beats; other alerts look back an hour.
    pub fn lookback(&self) -> f64 {
        match (self.num("/cadence/period_s"), self.num("/cadence/count")) {
            (Some(p), Some(n)) if p > 0.0 => (p * (n + 3.0)).clamp(600.0, 7.0 * 86_400.0),
            _ => DEFAULT_LOOKBACK_S,
        }
    }

    fn wants_flow(&self, f: &Flow) -> bool {
        f.ts <= self.ts + 2.0
            && f.ts >= self.ts - self.lookback()
            && self.ports.contains(&f.resp_p)
            && self.dests.contains(&f.resp_h)
    }

    /// The internal host's name from the EDR feed, else its address.
    pub fn host(&self) -> &str {
        self.str("/host/name").unwrap_or(&self.src)
    }
}

/// Lines read, records kept and lines skipped, per input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InputStats {
    pub lines: u64,
    pub bad: u64,
    pub first_bad: Option<(u64, String)>,
}

/// Everything the report shows.
#[derive(Debug, Default)]
pub struct Evidence {
    pub alerts: Vec<AlertView>,
    pub first_ts: Option<f64>,
    pub last_ts: Option<f64>,
    pub alerts_in: InputStats,
    pub flows_in: Option<InputStats>,
    pub dns_in: Option<InputStats>,
}

/// Calls `f` with each JSON object of a JSON Lines source; counts the lines that are
/// not one (or are absurdly long).
pub fn for_each_record(
    r: impl Read,
    stats: &mut InputStats,
    mut f: impl FnMut(Value),
) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        stats.lines += 1;
        let mut bad = |why: String| {
            stats.bad += 1;
            if stats.first_bad.is_none() {
                stats.first_bad = Some((stats.lines, why));
            }
        };
        if line.len() > MAX_LINE && line.last() != Some(&b'\n') {
            // Drop the rest of the over-long line.
            loop {
                let buf = r.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        r.consume(i + 1);
                        break;
                    }
                    None => {
                        let k = buf.len();
                        r.consume(k);
                    }
                }
            }
            bad(format!("line longer than {MAX_LINE} bytes"));
            continue;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Value>(text) {
            Ok(v) if v.is_object() => f(v),
            Ok(_) => bad("not a JSON object".into()),
            Err(e) => bad(e.to_string()),
        }
    }
}

fn open(p: &Path) -> Result<File, String> {
    File::open(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn flow_of(v: &Value) -> Option<(String, Flow)> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some((
        s("id.orig_h")?.to_owned(),
        Flow {
            ts: Ts::parse_rfc3339(s("ts")?)?.as_secs_f64(),
            uid: s("uid").unwrap_or("").to_owned(),
            resp_h: s("id.resp_h")?.to_owned(),
            resp_p: v.get("id.resp_p").and_then(Value::as_u64)?,
            proto: s("proto").unwrap_or("").to_owned(),
            duration: v.get("duration").and_then(Value::as_f64).unwrap_or(0.0),
            orig_bytes: n("orig_bytes"),
            resp_bytes: n("resp_bytes"),
            conn_state: s("conn_state").unwrap_or("").to_owned(),
        },
    ))
}

fn dns_of(v: &Value) -> Option<(String, DnsSeen)> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    let addrs = v
        .get("addrs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Some((
        s("client")?.to_owned(),
        DnsSeen {
            ts: Ts::parse_rfc3339(s("ts")?)?.as_secs_f64(),
            query: s("query")?.to_owned(),
            addrs,
            ttl: v.get("min_ttl").and_then(Value::as_u64).unwrap_or(0),
        },
    ))
}

impl Evidence {
    /// Reads the alerts, then streams the flows and DNS answers past them.
    pub fn load(
        alerts: &Path,
        flows: Option<&Path>,
        dns: Option<&Path>,
    ) -> Result<Evidence, String> {
        let mut ev = Evidence::default();
        let mut raw = Vec::new();
        for_each_record(open(alerts)?, &mut ev.alerts_in, |v| raw.push(v))
            .map_err(|e| format!("{}: {e}", alerts.display()))?;
        for v in raw {
            let idx = ev.alerts.len();
            match AlertView::from_value(idx, v) {
                Some(a) => ev.alerts.push(a),
                None => {
                    ev.alerts_in.bad += 1;
                    if ev.alerts_in.first_bad.is_none() {
                        ev.alerts_in.first_bad =
                            Some((idx as u64 + 1, "no analytic or timestamp".into()));
                    }
                }
            }
        }
        let times: Vec<f64> = ev.alerts.iter().map(|a| a.ts).collect();
        for t in times {
            ev.widen(t);
        }
        let mut by_src: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, a) in ev.alerts.iter().enumerate() {
            by_src.entry(a.src.clone()).or_default().push(i);
        }
        if let Some(p) = flows {
            let mut st = InputStats::default();
            let mut range = (f64::INFINITY, f64::NEG_INFINITY);
            let alerts = &mut ev.alerts;
            for_each_record(open(p)?, &mut st, |v| {
                let Some((orig, f)) = flow_of(&v) else {
                    return;
                };
                range = (range.0.min(f.ts), range.1.max(f.ts));
                let Some(ids) = by_src.get(&orig) else {
                    return;
                };
                for &i in ids {
                    let a = &mut alerts[i];
                    if a.wants_flow(&f) {
                        a.flows_total += 1;
                        if a.flows.len() >= MAX_FLOWS_PER_ALERT {
                            a.flows.pop_front();
                        }
                        a.flows.push_back(f.clone());
                    }
                }
            })
            .map_err(|e| format!("{}: {e}", p.display()))?;
            if range.0.is_finite() {
                ev.widen(range.0);
                ev.widen(range.1);
            }
            ev.flows_in = Some(st);
        }
        if let Some(p) = dns {
            let mut st = InputStats::default();
            let alerts = &mut ev.alerts;
            for_each_record(open(p)?, &mut st, |v| {
                let Some((client, d)) = dns_of(&v) else {
                    return;
                };
                let Some(ids) = by_src.get(&client) else {
                    return;
                };
                for &i in ids {
                    let a = &mut alerts[i];
                    if d.ts <= a.ts + 1.0
                        && d.ts >= a.ts - a.lookback()
                        && a.names.iter().any(|n| n.eq_ignore_ascii_case(&d.query))
                    {
                        if a.dns.len() >= MAX_DNS_PER_ALERT {
                            a.dns.pop_front();
                        }
                        a.dns.push_back(d.clone());
                    }
                }
            })
            .map_err(|e| format!("{}: {e}", p.display()))?;
            ev.dns_in = Some(st);
        }
        for a in &mut ev.alerts {
            a.flows
                .make_contiguous()
                .sort_by(|x, y| x.ts.total_cmp(&y.ts));
        }
        Ok(ev)
    }

    fn widen(&mut self, t: f64) {
        self.first_ts = Some(self.first_ts.map_or(t, |x| x.min(t)));
        self.last_ts = Some(self.last_ts.map_or(t, |x| x.max(t)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_counted_not_fatal() {
        let input = b"{\"a\":1}\nnot json\n[1,2]\n\n{\"b\":2}\n".to_vec();
        let mut st = InputStats::default();
        let mut got = Vec::new();
        for_each_record(&input[..], &mut st, |v| got.push(v)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(st.bad, 2);
        assert_eq!(st.first_bad.as_ref().unwrap().0, 2);
    }

    #[test]
    fn over_long_lines_are_skipped_whole() {
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\n{\"ok\":true}\n");
        let mut st = InputStats::default();
        let mut got = Vec::new();
        for_each_record(&input[..], &mut st, |v| got.push(v)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(st.bad, 1);
    }

    #[test]
    fn a_cadence_alert_takes_its_series_flows() {
        let a = AlertView::from_value(
            0,
            serde_json::json!({"analytic":"periodic_transfer","timestamp":"2026-11-20T10:10:00Z",
              "src_ip":"10.0.0.1","dest_ip":"1.2.3.4","dest_port":443,"score":0.9,
              "dest_ips":["1.2.3.5"],"cadence":{"period_s":60.0,"count":10,"jitter":0.1}}),
        )
        .unwrap();
        assert_eq!(a.lookback(), 780.0);
        let f = |t: f64, h: &str, p: u64| Flow {
            ts: a.ts + t,
            uid: String::new(),
            resp_h: h.into(),
            resp_p: p,
            proto: "tcp".into(),
            duration: 0.0,
            orig_bytes: 0,
            resp_bytes: 0,
            conn_state: String::new(),
        };
        assert!(a.wants_flow(&f(-60.0, "1.2.3.4", 443)));
        assert!(
            a.wants_flow(&f(-120.0, "1.2.3.5", 443)),
            "every address in evidence"
        );
        assert!(!a.wants_flow(&f(-60.0, "1.2.3.4", 80)));
        assert!(
            !a.wants_flow(&f(-800.0, "1.2.3.4", 443)),
            "before the series"
        );
        assert!(!a.wants_flow(&f(60.0, "1.2.3.4", 443)), "after the alert");
    }
}
