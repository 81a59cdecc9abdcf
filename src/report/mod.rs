//! `portent report`: one self-contained HTML file with the evidence behind each alert
//! (timeline, intervals, sizes, DNS answer, attribution), readable offline and with
//! scripts off.
//!
//! ```text
//! portent report --alerts alerts.jsonl [--flows flows.jsonl] [--dns dns.jsonl] --out report.html
//! portent replay CAPTURE.pcap --report report.html     # the same, in one step
//! ```

pub mod charts;
pub mod html;
pub mod model;

use std::path::{Path, PathBuf};

/// Arguments of `portent report`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReportArgs {
    /// Alerts (JSON Lines, as `portent replay --alerts` writes them).
    #[arg(long)]
    pub alerts: PathBuf,
    /// Finished flows (JSON Lines): the connections behind each alert.
    #[arg(long)]
    pub flows: Option<PathBuf>,
    /// DNS answers (JSON Lines).
    #[arg(long)]
    pub dns: Option<PathBuf>,
    /// The HTML file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// No summary on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Builds the report; returns the number of alerts in it.
pub fn write_report(
    alerts: &Path,
    flows: Option<&Path>,
    dns: Option<&Path>,
    out: &Path,
    title: Option<&str>,
) -> Result<usize, String> {
    let ev = model::Evidence::load(alerts, flows, dns)?;
    let mut sources = vec![alerts.display().to_string()];
    sources.extend(flows.map(|p| p.display().to_string()));
    sources.extend(dns.map(|p| p.display().to_string()));
    let title = title.map_or_else(|| sources.join(", "), str::to_owned);
    let page = html::render(&ev, &title, flows.is_some());
    // Written next to the target, then renamed: a reader never sees half a report.
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, page).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (what, st) in [
        ("alerts", Some(&ev.alerts_in)),
        ("flows", ev.flows_in.as_ref()),
        ("dns", ev.dns_in.as_ref()),
    ] {
        if let Some((line, why)) = st.and_then(|s| s.first_bad.as_ref()) {
            eprintln!(
                "portent report: warning: {what}: {} line(s) skipped, first at line {line}: {why}",
                st.map_or(0, |s| s.bad)
            );
        }
    }
    Ok(ev.alerts.len())
}

pub fn run_report(a: &ReportArgs) -> Result<(), String> {
    let n = write_report(
        &a.alerts,
        a.flows.as_deref(),
        a.dns.as_deref(),
        &a.out,
        None,
    )?;
    if !a.quiet {
        eprintln!("portent report: {n} alerts -> {}", a.out.display());
    }
    Ok(())
}
