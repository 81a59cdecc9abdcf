//! The `portent` command. Errors from the library become one-line messages and exit
//! codes here, and only here: 2 for bad input or usage, 1 for a failed threshold.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use portent::config::Config;
use portent::pipeline::{self, replay::FileSource, Outputs, RunOptions};

#[derive(Parser)]
#[command(
    name = "portent",
    version,
    about = "Passive sensor for DNS-calculated C2 and fixed-size/periodic exfiltration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read pcap/pcapng files (merged in time order) on packet time.
    Replay(ReplayArgs),
    /// Write labelled traffic (pcap), an EDR feed and the ground truth.
    Simulate(portent::simulate::SimulateArgs),
    /// Score alerts against a simulation's ground truth.
    Score(portent::simulate::ScoreArgs),
    /// Show or reset the learned baselines in a state directory.
    Baseline(portent::baseline::cli::BaselineArgs),
    /// Capture from an interface (libpcap or AF_XDP) until SIGINT/SIGTERM.
    Live(portent::live_cmd::LiveArgs),
    /// One offline HTML file with the evidence behind each alert.
    Report(portent::report::ReportArgs),
    /// Analytics tier: consume the capture tier's records from Kafka, in a group.
    Analyze(portent::bus::analyze::AnalyzeArgs),
}

#[derive(Args)]
struct ReplayArgs {
    /// Capture files (pcap or pcapng).
    #[arg(required = true)]
    pcaps: Vec<PathBuf>,
    /// Alerts as JSON Lines (`-` for stdout).
    #[arg(long)]
    alerts: Option<PathBuf>,
    /// Finished flows as JSON Lines (Zeek conn.log fields).
    #[arg(long)]
    flows: Option<PathBuf>,
    /// DNS answers as JSON Lines.
    #[arg(long)]
    dns: Option<PathBuf>,
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The end-of-run summary as JSON (packets, flows, DNS answers, errors by kind...).
    #[arg(long)]
    stats: Option<PathBuf>,
    /// EDR feed (canonical JSON, osquery, Sysmon for Linux, ESXi logs); repeatable.
    #[arg(long)]
    edr: Vec<PathBuf>,
    /// State directory: baselines are loaded from it and saved back (persist across runs).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Workers, one flow-table shard each (overrides the config). One worker replaying
    /// runs on the capture thread; more, or live capture, get threads of their own.
    #[arg(long)]
    workers: Option<usize>,
    /// Also write the HTML report of this run (as `portent report` would).
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    publish: portent::bus::publish::PublishArgs,
    /// No summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

fn load_config(path: &Option<PathBuf>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

/// Loads EDR feeds for a replay: the whole feed is read before the capture, so nothing
/// ages out. Bad lines are counted; one warning per reason names its first line.
fn load_edr(
    paths: &[PathBuf],
    quiet: bool,
) -> Result<Option<Arc<dyn portent::enrichment::Attributor>>, String> {
    use portent::enrichment::index::{EdrIndex, IndexConfig};
    if paths.is_empty() {
        return Ok(None);
    }
    let index = EdrIndex::new(IndexConfig {
        max_age: None,
        ..IndexConfig::default()
    });
    for p in paths {
        let mut stats = portent::enrichment::reader::EdrStats::default();
        portent::enrichment::reader::load_path(p, &index, &mut stats).map_err(|e| e.to_string())?;
        for (reason, first) in &stats.first_rejected {
            let n = stats.rejected.get(reason).copied().unwrap_or(0);
            eprintln!(
                "portent: warning: {}: {} line(s) skipped ({}), first at line {}: {}",
                p.display(),
                n,
                reason.label(),
                first.line,
                first.detail
            );
        }
        if !quiet {
            let events: u64 = stats.events.values().sum();
            eprintln!(
                "portent: {}: {} EDR events from {} lines",
                p.display(),
                events,
                stats.lines
            );
        }
    }
    Ok(Some(Arc::new(index)))
}

fn replay(a: ReplayArgs) -> Result<(), String> {
    let mut config = load_config(&a.config)?;
    if let Some(w) = a.workers {
        if w == 0 || w > 256 {
            return Err("--workers must be 1..=256".into());
        }
        config.pipeline.workers = w;
    }
    portent::analytics::validate_config(&config).map_err(|e| e.to_string())?;
    // Replay reads whole feeds and never waits, but a config meant for `live` is checked
    // here too, so a typo in `[edr]` is found before deployment.
    portent::enrichment::live::LiveEdrConfig::from_config(&config).map_err(|e| e.to_string())?;
    let state = match &a.state {
        Some(dir) => Some(Arc::new(
            portent::baseline::Store::open(dir).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let publisher = a.publish.connect(&config, false)?;
    // Capture tier: the analytics run in `portent analyze`, which also gets the EDR lines.
    let attributor = match &publisher {
        Some(p) => {
            let n = p.publish_edr(&a.edr)?;
            if !a.quiet && n > 0 {
                eprintln!("portent: published {n} EDR lines");
            }
            None
        }
        None => load_edr(&a.edr, a.quiet)?,
    };
    let detectors = match &publisher {
        Some(_) => portent::pipeline::no_detectors(),
        None => portent::analytics::detectors_with_state(state),
    };
    let mut source = FileSource::open(&a.pcaps).map_err(|e| e.to_string())?;
    // The report reads the run's records back: files the user did not ask for go to a
    // scratch directory beside the report, removed afterwards.
    let scratch = a.report.as_ref().map(|r| r.with_extension("records.tmp"));
    let mut outputs = Outputs {
        alerts: a.alerts.clone(),
        flows: a.flows.clone(),
        dns: a.dns.clone(),
    };
    if let Some(dir) = &scratch {
        let stdout = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str() == "-");
        if [&outputs.alerts, &outputs.flows, &outputs.dns]
            .iter()
            .any(|p| stdout(p))
        {
            return Err("--report cannot read records written to stdout (`-`)".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (slot, name) in [
            (&mut outputs.alerts, "alerts.jsonl"),
            (&mut outputs.flows, "flows.jsonl"),
            (&mut outputs.dns, "dns.jsonl"),
        ] {
            slot.get_or_insert_with(|| dir.join(name));
        }
    }
    let (stop, reopen) = portent::signals::install();
    let opts = RunOptions {
        config,
        outputs: outputs.clone(),
        attributor,
        attribution_wait: None,
        detectors,
        stop,
        reopen,
        progress: !a.quiet && std::io::stderr().is_terminal(),
        publish: publisher.clone(),
        exit_after: true,
    };
    let summary = pipeline::run(&mut source, opts).map_err(|e| e.to_string())?;
    if let Some(p) = &publisher {
        let ps = p.finish(std::time::Duration::from_secs(60));
        if !a.quiet {
            eprintln!("{}", ps.render());
        }
        if ps.failed + ps.dropped + ps.unflushed > 0 {
            return Err(format!("not every record reached the bus: {}", ps.render()));
        }
    }
    for w in pipeline::replay::file_warnings(&source.stats()) {
        eprintln!("portent: warning: {w}");
    }
    if !a.quiet {
        eprint!("{}", summary.render());
    }
    if let Some(p) = &a.stats {
        let mut v = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
        let files: Vec<serde_json::Value> = source
            .stats()
            .iter()
            .map(|(p, s)| {
                serde_json::json!({"path": p.display().to_string(), "records": s.records,
                    "resyncs": s.resyncs, "skipped_bytes": s.skipped_bytes,
                    "truncated_tail": s.truncated_tail, "unknown_blocks": s.unknown_blocks,
                    "first_unknown_block": s.first_unknown_block
                        .map(|(t, off)| serde_json::json!({"type": t, "offset": off})),
                    "caplen_over_snaplen": s.caplen_over_snaplen,
                    "bad_interface": s.bad_interface})
            })
            .collect();
        v["files"] = serde_json::Value::Array(files);
        std::fs::write(p, format!("{v}\n")).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if let (Some(report), Some(alerts)) = (&a.report, &outputs.alerts) {
        let r = portent::report::write_report(
            alerts,
            outputs.flows.as_deref(),
            outputs.dns.as_deref(),
            report,
            Some(&format!(
                "replay of {}",
                a.pcaps
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        );
        if let Some(dir) = &scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
        let n = r?;
        if !a.quiet {
            eprintln!("portent: report of {n} alerts -> {}", report.display());
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Replay(a) => match replay(a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("portent replay: {e}");
                2
            }
        },
        Command::Simulate(a) => match portent::simulate::run_simulate(&a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("portent simulate: {e}");
                2
            }
        },
        Command::Baseline(a) => match portent::baseline::cli::run_baseline(&a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("portent baseline: {e}");
                2
            }
        },
        Command::Report(a) => match portent::report::run_report(&a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("portent report: {e}");
                2
            }
        },
        Command::Live(a) => match portent::live_cmd::run_live(a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("portent live: {e}");
                2
            }
        },
        Command::Analyze(a) => match portent::bus::analyze::run_analyze(&a) {
            Ok(s) => {
                if !a.quiet {
                    eprint!("{}", s.render());
                }
                match &a.stats {
                    Some(p) => match serde_json::to_string(&s) {
                        Ok(j) => match std::fs::write(p, format!("{j}\n")) {
                            Ok(()) => 0,
                            Err(e) => {
                                eprintln!("portent analyze: {}: {e}", p.display());
                                2
                            }
                        },
                        Err(e) => {
                            eprintln!("portent analyze: {e}");
                            2
                        }
                    },
                    None => 0,
                }
            }
            Err(e) => {
                eprintln!("portent analyze: {e}");
                2
            }
        },
        Command::Score(a) => match portent::simulate::run_score(&a) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("portent score: {e}");
                2
            }
        },
    };
    std::process::exit(code);
}
