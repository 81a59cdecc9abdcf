//! One self-contained HTML page: inline CSS, inline SVG, a small inline script for
//! filtering and sorting. Without scripts every section is shown, highest score first.
//! Every string from the inputs is escaped (names and reasons come from the wire).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use super::charts;
use super::model::{AlertView, Evidence, MAX_FLOWS_PER_ALERT};
use crate::time::Ts;

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn t_full(t: f64) -> String {
    Ts::from_secs_f64(t).rfc3339().to_string()
}

fn t_short(t: f64) -> String {
    let s = t_full(t);
    s.get(11..19).map(str::to_owned).unwrap_or(s)
}

const CSS: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#d0d7de}main{padding:16px 24px;max-width:1200px}
h2{font-size:17px;margin:22px 0 8px}table{border-collapse:collapse;background:#fff;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#eaeef2}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:130px}
.card b{display:block;font-size:22px}.alert{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 16px;margin:14px 0}
.alert h3{margin:0 0 6px;font-size:16px}.tag{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;color:#fff;margin-right:6px}
.score{font-weight:600}.hi{background:#cf222e}.mid{background:#bf8700}.lo{background:#57606a}
.grid{display:flex;flex-wrap:wrap;gap:18px}.facts td:first-child{color:#57606a;white-space:nowrap}
.chart{max-width:100%;height:auto;background:#fff}figure{margin:6px 0}figcaption{font-size:12px;color:#57606a}
.controls{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;margin:8px 0}
.controls label{margin-right:14px}ul.reasons{margin:4px 0 8px 18px;padding:0}.muted{color:#57606a}
details{margin:6px 0}summary{cursor:pointer;color:#0969da}
"#;

const SCRIPT: &str = r#"
(function(){
  var secs=[].slice.call(document.querySelectorAll('section.alert'));
  var rows=[].slice.call(document.querySelectorAll('#alert-list tbody tr'));
  var fa=document.getElementById('f-analytic'),fh=document.getElementById('f-host'),
      fs=document.getElementById('f-score'),so=document.getElementById('f-sort');
  function fill(sel,key){var seen={};secs.forEach(function(s){seen[s.dataset[key]]=1;});
    Object.keys(seen).sort().forEach(function(v){var o=document.createElement('option');o.value=v;o.textContent=v;sel.appendChild(o);});}
  fill(fa,'analytic');fill(fh,'host');
  function keep(el){return (!fa.value||el.dataset.analytic===fa.value)&&(!fh.value||el.dataset.host===fh.value)
      &&parseFloat(el.dataset.score)>=parseFloat(fs.value||'0');}
  function apply(){
    var shown=0;secs.forEach(function(s){var k=keep(s);s.hidden=!k;if(k)shown++;});
    rows.forEach(function(r){r.hidden=!keep(r);});
    var key=so.value,desc=key==='score';
    function cmp(a,b){var x=parseFloat(a.dataset[key]),y=parseFloat(b.dataset[key]);return desc?y-x:x-y;}
    var box=document.getElementById('alerts');secs.slice().sort(cmp).forEach(function(s){box.appendChild(s);});
    var tb=document.querySelector('#alert-list tbody');rows.slice().sort(cmp).forEach(function(r){tb.appendChild(r);});
    document.getElementById('shown').textContent=shown+' of '+secs.length+' alerts shown';
  }
  [fa,fh,fs,so].forEach(function(e){e.addEventListener('change',apply);});
  document.getElementById('controls').hidden=false;apply();
  document.body.setAttribute('data-ready','1');
})();
"#;

fn score_class(s: f64) -> &'static str {
    if s >= 0.8 {
        "hi"
    } else if s >= 0.6 {
        "mid"
    } else {
        "lo"
    }
}

fn fact(out: &mut String, k: &str, v: &str) {
    let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
}

/// Attribution objects as key: value rows (host, process, user, launchd, vm).
fn attribution(out: &mut String, a: &AlertView) {
    let mut rows = String::new();
    let mut add = |label: &str, ptr: &str| {
        if let Some(v) = a.raw.pointer(ptr) {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Null => return,
                other => other.to_string(),
            };
            fact(&mut rows, label, &text);
        }
    };
    add("host", "/host/name");
    add("platform", "/host/os/platform");
    add("process", "/process/name");
    add("pid", "/process/pid");
    add("executable", "/process/executable");
    add("parent", "/process/parent/name");
    add("signed", "/process/code_signature/signed");
    add("user", "/user/name");
    add("launchd job", "/launchd/label");
    add("launchd kind", "/launchd/kind");
    add("VM", "/vm/name");
    add("VM host", "/vm/host");
    if rows.is_empty() {
        out.push_str(r#"<p class="muted">No attribution (no EDR feed for this host).</p>"#);
    } else {
        let _ = write!(out, r#"<table class="facts">{rows}</table>"#);
    }
}

fn section(out: &mut String, a: &AlertView, with_flows: bool) {
    let id = a.idx + 1;
    let _ = write!(
        out,
        r#"<section class="alert" id="alert-{id}" data-analytic="{}" data-host="{}" data-score="{:.3}" data-ts="{:.6}">"#,
        esc(&a.analytic),
        esc(a.host()),
        a.score,
        a.ts
    );
    let _ = write!(
        out,
        r#"<h3><span class="tag {}">{:.2}</span>#{id} {} · {} → {}:{}</h3>"#,
        score_class(a.score),
        a.score,
        esc(&a.analytic),
        esc(&a.src),
        esc(a.str("/dest_name").unwrap_or(&a.dest)),
        a.port
    );
    out.push_str(r#"<ul class="reasons">"#);
    if let Some(rs) = a.raw.get("reasons").and_then(Value::as_array) {
        for r in rs.iter().filter_map(Value::as_str) {
            let _ = write!(out, "<li>{}</li>", esc(r));
        }
    }
    out.push_str("</ul><div class=\"grid\"><div>");
    let mut facts = String::new();
    fact(&mut facts, "time", &t_full(a.ts));
    fact(
        &mut facts,
        "technique",
        a.str("/attack/technique").unwrap_or("?"),
    );
    if let Some(ids) = a.raw.pointer("/attack/analytics").and_then(Value::as_array) {
        let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
        fact(&mut facts, "ATT&CK analytics", &ids.join(", "));
    }
    fact(&mut facts, "source", &a.src);
    fact(
        &mut facts,
        "destination",
        &format!("{}:{} {}", a.dest, a.port, a.str("/proto").unwrap_or("")),
    );
    if a.dests.len() > 1 {
        fact(&mut facts, "all addresses", &a.dests.join(", "));
    }
    if let Some(c) = a.str("/community_id") {
        fact(&mut facts, "community id", c);
    }
    if let Some(p) = a.num("/cadence/period_s") {
        fact(&mut facts, "period", &format!("{p:.1} s"));
    }
    if let Some(j) = a.num("/cadence/jitter") {
        fact(&mut facts, "jitter", &format!("{:.0} %", j * 100.0));
    }
    if let Some(n) = a.num("/cadence/count") {
        fact(&mut facts, "count", &format!("{n}"));
    }
    if let Some(b) = a.num("/cadence/size_bytes") {
        fact(&mut facts, "repeated size", &format!("{b} bytes"));
    }
    if let Some(cv) = a.num("/cadence/size_cv") {
        fact(&mut facts, "size CV", &format!("{cv:.4}"));
    }
    let _ = write!(out, r#"<table class="facts">{facts}</table></div><div>"#);
    attribution(out, a);
    out.push_str("</div>");
    if a.raw.get("dns").is_some() {
        dns_box(out, a);
    }
    out.push_str("</div>");
    charts_for(out, a, with_flows);
    if with_flows {
        flow_table(out, a);
    }
    out.push_str("</section>\n");
}

fn dns_box(out: &mut String, a: &AlertView) {
    let mut rows = String::new();
    if let Some(q) = a.str("/dns/query") {
        fact(&mut rows, "query", q);
    }
    if let Some(ans) = a.raw.pointer("/dns/answers").and_then(Value::as_array) {
        let v: Vec<&str> = ans.iter().filter_map(Value::as_str).collect();
        fact(&mut rows, "answers", &v.join(", "));
    }
    if let Some(t) = a.num("/dns/ttl") {
        fact(&mut rows, "TTL", &format!("{t} s"));
    }
    if let Some(d) = a.str("/dns/derivation") {
        fact(&mut rows, "derivation", d);
    }
    if let Some(at) = a
        .str("/dns/answered_at")
        .and_then(Ts::parse_rfc3339)
        .map(Ts::as_secs_f64)
    {
        fact(&mut rows, "answered at", &t_full(at));
        fact(
            &mut rows,
            "answer → connection",
            &format!("{:.3} s", a.ts - at),
        );
    }
    let _ = write!(out, r#"<div><table class="facts">{rows}</table>"#);
    if !a.dns.is_empty() {
        out.push_str("<details><summary>Answers the host received for this name</summary><table><tr><th>time</th><th>query</th><th>addresses</th><th>TTL</th></tr>");
        for d in &a.dns {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
                esc(&t_full(d.ts)),
                esc(&d.query),
                esc(&d.addrs.join(", ")),
                d.ttl
            );
        }
        out.push_str("</table></details>");
    }
    out.push_str("</div>");
}

fn charts_for(out: &mut String, a: &AlertView, with_flows: bool) {
    if !with_flows {
        out.push_str(r#"<p class="muted">Charts need the flows (<code>--flows</code>).</p>"#);
        return;
    }
    if a.flows.is_empty() {
        out.push_str(r#"<p class="muted">No flow of this alert in the flows file.</p>"#);
        return;
    }
    let conns: Vec<(f64, u64)> = a.flows.iter().map(|f| (f.ts, f.orig_bytes)).collect();
    let answered = a
        .str("/dns/answered_at")
        .and_then(Ts::parse_rfc3339)
        .map(Ts::as_secs_f64);
    let t0 = conns
        .iter()
        .map(|c| c.0)
        .chain(answered)
        .fold(a.ts, f64::min);
    let t1 = conns.iter().map(|c| c.0).fold(a.ts, f64::max);
    let pts = charts::timeline_points(&conns, t0, t1);
    let mut marks = vec![(a.ts, "#cf222e", "alert")];
    if let Some(at) = answered {
        marks.push((at, "#8250df", "DNS answer"));
    }
    out.push_str(r#"<div class="grid">"#);
    let _ = write!(
        out,
        "<figure>{}<figcaption>Connections over time ({} shown), height = bytes sent (log)</figcaption></figure>",
        charts::timeline_svg(&pts, t0, t1, &marks, t_short),
        a.flows.len()
    );
    if a.analytic == "periodic_transfer" || a.num("/cadence/period_s").is_some() {
        let starts: Vec<f64> = conns.iter().map(|c| c.0).collect();
        let iv = charts::intervals(&starts);
        let m = charts::period_marker(
            a.num("/cadence/period_s").unwrap_or(f64::NAN),
            a.num("/cadence/jitter").unwrap_or(0.0),
        );
        let extra: Vec<f64> = m.map(|m| vec![m.lo, m.hi]).unwrap_or_default();
        let b = charts::histogram(&iv, 30, &extra);
        let marker = m.map(|m| (m.lo, m.period, m.hi, "period ± jitter"));
        let _ = write!(
            out,
            "<figure>{}<figcaption>Intervals between connection starts ({} intervals)</figcaption></figure>",
            charts::histogram_svg(&b, marker, "s", "interval histogram"),
            iv.len()
        );
    }
    if a.analytic == "fixed_size_transfer" || a.num("/cadence/size_bytes").is_some() {
        let sizes: Vec<f64> = conns.iter().map(|c| c.1 as f64).collect();
        let size = a.num("/cadence/size_bytes");
        let b = charts::histogram(&sizes, 30, &size.into_iter().collect::<Vec<_>>());
        let marker = size.map(|s| (s, s, s, "repeated size"));
        let _ = write!(
            out,
            "<figure>{}<figcaption>Bytes sent per connection</figcaption></figure>",
            charts::histogram_svg(&b, marker, "B", "size distribution")
        );
    }
    out.push_str("</div>");
}

fn flow_table(out: &mut String, a: &AlertView) {
    let id = a.idx + 1;
    let more = a.flows_total.saturating_sub(a.flows.len() as u64);
    let _ = write!(
        out,
        r#"<details id="alert-{id}-flows"><summary>Flows in evidence: {}{}</summary><table><tr><th>start</th><th>uid</th><th>destination</th><th>proto</th><th>duration</th><th>bytes out</th><th>bytes in</th><th>state</th></tr>"#,
        a.flows.len(),
        if more > 0 {
            format!(" (the last {MAX_FLOWS_PER_ALERT}; {more} earlier not shown)")
        } else {
            String::new()
        }
    );
    let uids: Vec<&str> = a
        .raw
        .get("flow_uids")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for f in &a.flows {
        let mark = if uids.contains(&f.uid.as_str()) {
            " style=\"background:#fff8c5\""
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<tr{mark}><td>{}</td><td>{}</td><td>{}:{}</td><td>{}</td><td class="num">{:.3}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
            esc(&t_full(f.ts)),
            esc(&f.uid),
            esc(&f.resp_h),
            f.resp_p,
            esc(&f.proto),
            f.duration,
            f.orig_bytes,
            f.resp_bytes,
            esc(&f.conn_state)
        );
    }
    out.push_str("</table></details>");
}

/// The whole page.
pub fn render(ev: &Evidence, sources: &str, with_flows: bool) -> String {
    let mut out = String::with_capacity(64 << 10);
    let range = match (ev.first_ts, ev.last_ts) {
        (Some(a), Some(b)) => format!("{} .. {}", t_full(a), t_full(b)),
        _ => "no records".into(),
    };
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>portent report</title><style>{CSS}</style></head><body><header><h1>portent report</h1><p>{} · {}</p></header><main>"#,
        esc(sources),
        esc(&range)
    );
    // Overview.
    let mut by: BTreeMap<&str, (usize, f64, f64)> = BTreeMap::new();
    let mut hosts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &ev.alerts {
        let e = by.entry(&a.analytic).or_insert((0, f64::INFINITY, 0.0));
        e.0 += 1;
        e.1 = e.1.min(a.score);
        e.2 = e.2.max(a.score);
        *hosts.entry(a.host()).or_default() += 1;
    }
    let _ = write!(
        out,
        r#"<h2>Overview</h2><div class="cards"><div class="card"><b>{}</b>alerts</div><div class="card"><b>{}</b>analytics</div><div class="card"><b>{}</b>hosts</div><div class="card"><b>{}</b>high score (≥ 0.8)</div></div>"#,
        ev.alerts.len(),
        by.len(),
        hosts.len(),
        ev.alerts.iter().filter(|a| a.score >= 0.8).count()
    );
    out.push_str(
        r#"<div class="grid"><table><tr><th>analytic</th><th>alerts</th><th>score range</th></tr>"#,
    );
    for (k, (n, lo, hi)) in &by {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{n}</td><td class="num">{lo:.2} – {hi:.2}</td></tr>"#,
            esc(k)
        );
    }
    out.push_str(r#"</table><table><tr><th>host</th><th>alerts</th></tr>"#);
    for (h, n) in &hosts {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td class="num">{n}</td></tr>"#,
            esc(h)
        );
    }
    out.push_str("</table></div>");
    let bins = charts::histogram(
        &ev.alerts.iter().map(|a| a.score).collect::<Vec<_>>(),
        20,
        &[0.0, 1.0],
    );
    let _ = write!(
        out,
        "<figure>{}<figcaption>Alert scores</figcaption></figure>",
        charts::histogram_svg(&bins, None, "", "alert scores")
    );
    let mut notes = Vec::new();
    for (what, st) in [
        ("alerts", Some(&ev.alerts_in)),
        ("flows", ev.flows_in.as_ref()),
        ("DNS", ev.dns_in.as_ref()),
    ] {
        if let Some(st) = st {
            if st.bad > 0 {
                let first = st
                    .first_bad
                    .as_ref()
                    .map(|(l, w)| format!(", first at line {l}: {w}"))
                    .unwrap_or_default();
                notes.push(format!("{what}: {} line(s) skipped{first}", st.bad));
            }
        }
    }
    for n in notes {
        let _ = write!(out, r#"<p class="muted">{}</p>"#, esc(&n));
    }
    // Controls (shown by the script) and the alert list.
    out.push_str(r#"<h2>Alerts</h2><div class="controls" id="controls" hidden><label>Analytic <select id="f-analytic"><option value="">all</option></select></label><label>Host <select id="f-host"><option value="">all</option></select></label><label>Score ≥ <select id="f-score"><option>0</option><option>0.5</option><option>0.7</option><option>0.8</option><option>0.9</option></select></label><label>Sort <select id="f-sort"><option value="score">score</option><option value="ts">time</option></select></label><span class="muted" id="shown"></span></div>"#);
    let mut order: Vec<&AlertView> = ev.alerts.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.ts.total_cmp(&b.ts)));
    out.push_str(r#"<table id="alert-list"><thead><tr><th>#</th><th>time</th><th>analytic</th><th>source</th><th>destination</th><th>score</th><th>host · process</th></tr></thead><tbody>"#);
    for a in &order {
        let id = a.idx + 1;
        let who = match a.str("/process/name") {
            Some(p) => format!("{} · {p}", a.host()),
            None => a.host().to_owned(),
        };
        let _ = write!(
            out,
            r##"<tr data-analytic="{}" data-host="{}" data-score="{:.3}" data-ts="{:.6}"><td><a href="#alert-{id}">{id}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}:{}</td><td class="num score">{:.2}</td><td>{}</td></tr>"##,
            esc(&a.analytic),
            esc(a.host()),
            a.score,
            a.ts,
            esc(&t_full(a.ts)),
            esc(&a.analytic),
            esc(&a.src),
            esc(a.str("/dest_name").unwrap_or(&a.dest)),
            a.port,
            a.score,
            esc(&who)
        );
    }
    out.push_str("</tbody></table><div id=\"alerts\">");
    for a in &order {
        section(&mut out, a, with_flows);
    }
    let _ = writeln!(out, "</div></main><script>{SCRIPT}</script></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(
            esc("<script>\"x\"&'y'\u{1}"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;\u{fffd}"
        );
    }
}
