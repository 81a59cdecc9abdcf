//! `portent live`: capture from an interface (libpcap or AF_XDP) and run the same
//! pipeline as replay, on packet time, until SIGINT/SIGTERM; then flush every output.
//!
//! Order of start-up: open the capture (needs privileges), start the metrics listener,
//! drop to `--user` if asked, then open state and outputs so their files belong to
//! that user.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use serde::Deserialize;

use crate::capture::live::{LiveOptions, PcapSource};
use crate::capture::xdp::{XdpMode, XdpOptions, XdpSource};
use crate::config::Config;
use crate::enrichment::index::EdrIndex;
use crate::enrichment::live::LiveEdrConfig;
use crate::pipeline::{self, Outputs, PacketSource, RunOptions};
use crate::telemetry;

/// Default metrics address: loopback only; exposing it is an explicit choice.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9464";

#[derive(Args, Debug, Clone, Default)]
pub struct LiveArgs {
    /// Interface to capture on (a SPAN/mirror port).
    #[arg(long, short)]
    pub interface: Option<String>,
    /// Capture with AF_XDP sockets instead of libpcap.
    #[arg(long)]
    pub xdp: bool,
    /// AF_XDP: receive queues to bind (0..N), one capture thread each.
    #[arg(long, requires = "xdp")]
    pub queues: Option<u32>,
    /// AF_XDP: auto (native, else generic), native or generic (SKB).
    #[arg(long, requires = "xdp")]
    pub xdp_mode: Option<String>,
    /// Bytes kept per frame.
    #[arg(long)]
    pub snaplen: Option<u32>,
    /// Kernel capture buffer (libpcap) or UMEM per queue (AF_XDP), MiB.
    #[arg(long)]
    pub buffer_mb: Option<u32>,
    /// BPF capture filter (libpcap only), e.g. "not port 22".
    #[arg(long)]
    pub filter: Option<String>,
    /// Put the interface in promiscuous mode.
    #[arg(long)]
    pub promisc: bool,
    /// Deliver frames at once rather than per kernel block (lower latency, more CPU).
    #[arg(long)]
    pub immediate: bool,
    /// Prometheus /metrics listener address (`off` to disable).
    #[arg(long)]
    pub metrics: Option<String>,
    /// Drop root to this user (setgid/setuid) once the capture is open.
    #[arg(long)]
    pub user: Option<String>,
    /// Alerts as JSON Lines (`-` for stdout).
    #[arg(long)]
    pub alerts: Option<PathBuf>,
    /// Finished flows as JSON Lines.
    #[arg(long)]
    pub flows: Option<PathBuf>,
    /// DNS answers as JSON Lines.
    #[arg(long)]
    pub dns: Option<PathBuf>,
    /// EDR feed; repeatable.
    #[arg(long)]
    pub edr: Vec<PathBuf>,
    /// Configuration file (TOML); its [live] section holds defaults for these options.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory for baselines (persist across runs).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Worker threads (overrides the config).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The end-of-run summary as JSON, with the capture's own counters.
    #[arg(long)]
    pub stats: Option<PathBuf>,
    #[command(flatten)]
    pub publish: crate::bus::publish::PublishArgs,
    /// No summary on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The `[live]` section of the config file; the command line wins over it.
#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    pub interface: Option<String>,
    pub xdp: Option<bool>,
    pub queues: Option<u32>,
    pub xdp_mode: Option<String>,
    pub snaplen: Option<u32>,
    pub buffer_mb: Option<u32>,
    pub filter: Option<String>,
    pub promisc: Option<bool>,
    pub immediate: Option<bool>,
    /// Read timeout: the longest wait before an idle tick, milliseconds.
    pub timeout_ms: Option<u32>,
    pub metrics: Option<String>,
    pub user: Option<String>,
}

impl LiveConfig {
    pub fn from_table(t: &toml::Table) -> Result<LiveConfig, String> {
        LiveConfig::deserialize(toml::Value::Table(t.clone())).map_err(|e| format!("[live]: {e}"))
    }
}

/// Everything `run_live` needs, after merging the command line over the config.
#[derive(Debug)]
struct Plan {
    xdp: Option<XdpOptions>,
    live: LiveOptions,
    metrics: Option<SocketAddr>,
    user: Option<String>,
}

fn plan(a: &LiveArgs, c: LiveConfig) -> Result<Plan, String> {
    let interface = a
        .interface
        .clone()
        .or(c.interface)
        .ok_or("--interface is required (or `interface` in [live])")?;
    let d = LiveOptions::default();
    let live = LiveOptions {
        interface,
        snaplen: a.snaplen.or(c.snaplen).unwrap_or(d.snaplen),
        buffer_mb: a.buffer_mb.or(c.buffer_mb).unwrap_or(d.buffer_mb),
        filter: a.filter.clone().or(c.filter),
        promisc: a.promisc || c.promisc.unwrap_or(false),
        immediate: a.immediate || c.immediate.unwrap_or(false),
        timeout_ms: c.timeout_ms.unwrap_or(d.timeout_ms),
    };
    if !(64..=262_144).contains(&live.snaplen) {
        return Err("snaplen must be 64..=262144".into());
    }
    if !(1..=4096).contains(&live.buffer_mb) {
        return Err("buffer_mb must be 1..=4096".into());
    }
    if !(1..=10_000).contains(&live.timeout_ms) {
        return Err("timeout_ms must be 1..=10000".into());
    }
    let xdp = if a.xdp || c.xdp.unwrap_or(false) {
        let queues = a.queues.or(c.queues).unwrap_or(1);
        if !(1..=256).contains(&queues) {
            return Err("queues must be 1..=256".into());
        }
        let mode = XdpMode::parse(
            a.xdp_mode
                .as_deref()
                .or(c.xdp_mode.as_deref())
                .unwrap_or("auto"),
        )?;
        Some(XdpOptions {
            live: live.clone(),
            queues,
            mode,
        })
    } else {
        None
    };
    let m = a
        .metrics
        .clone()
        .or(c.metrics)
        .unwrap_or_else(|| DEFAULT_METRICS.into());
    let metrics = if m == "off" {
        None
    } else {
        Some(
            m.parse::<SocketAddr>()
                .map_err(|_| format!("metrics address `{m}`: expected IP:PORT or off"))?,
        )
    };
    Ok(Plan {
        xdp,
        live,
        metrics,
        user: a.user.clone().or(c.user),
    })
}

/// Capabilities (bit numbers, linux/capability.h) an AF_XDP sensor keeps after `--user`:
/// on shutdown libxdp releases its XDP program, which takes its lock in a root-only
/// directory (/run/xdp or bpffs), reads the program by id and detaches it over netlink.
/// Without them the program stays attached to the interface after the sensor exits
/// (tests/live.rs checks). systemd/portent.service lists the same set for AF_XDP.
const XDP_KEEP_CAPS: &[u32] = &[
    2,  // CAP_DAC_READ_SEARCH: open the lock directory
    12, // CAP_NET_ADMIN: detach the program
    13, // CAP_NET_RAW
    21, // CAP_SYS_ADMIN: BPF_PROG_GET_FD_BY_ID (without it the detach silently fails)
    39, // CAP_BPF
];

/// Creates libxdp's lock directory while still root. Without bpffs, libxdp creates
/// /run/xdp only when it first takes its lock, which in generic mode may be at shutdown,
/// after `--user`: the mkdir then fails and the program stays attached (seen on a fresh
/// machine). Mode 0700 as libxdp makes it; an existing directory is fine.
fn xdp_lock_dir() {
    use std::os::unix::fs::DirBuilderExt;
    for dir in ["/run/xdp", "/sys/fs/bpf/xdp"] {
        let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    }
}

/// setgroups/setgid/setuid to `name`, when running as root. `keep` lists capabilities
/// to retain (all others are dropped, and root cannot be regained).
fn drop_privileges(name: &str, keep: &[u32]) -> Result<(), String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Err(format!("--user {name}: only root can switch users"));
    }
    let cname = std::ffi::CString::new(name).map_err(|_| "bad user name")?;
    // SAFETY: getpwnam_r writes into our buffers; we read the result before they go.
    let (uid, gid) = unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16384];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        );
        if rc != 0 || out.is_null() {
            return Err(format!("--user {name}: no such user"));
        }
        (pw.pw_uid, pw.pw_gid)
    };
    let os_err = || format!("--user {name}: {}", std::io::Error::last_os_error());
    // SAFETY: plain syscalls; order matters (groups and gid while still root).
    unsafe {
        if !keep.is_empty() && libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 {
            return Err(os_err());
        }
        if libc::setgroups(1, &gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
            return Err(os_err());
        }
    }
    if !keep.is_empty() {
        set_capabilities(keep).map_err(|e| format!("--user {name}: keeping capabilities: {e}"))?;
        // SAFETY: prctl with constant arguments.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    }
    // SAFETY: setuid(0) only probes; it must fail now.
    if uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(format!("--user {name}: root could be regained"));
    }
    Ok(())
}

/// Sets the effective and permitted capability sets to exactly `caps` (no inheritable).
fn set_capabilities(caps: &[u32]) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut data = [Data::default(); 2];
    for &c in caps {
        let d = &mut data[(c / 32) as usize];
        d.effective |= 1 << (c % 32);
        d.permitted |= 1 << (c % 32);
    }
    let mut h = Header {
        version: VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads one header and two data structs (version 3 layout).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Starts following the EDR feeds (from their first line, then as they grow and
/// rotate); the index ages events out after `[edr] max_age_s`.
/// With a publisher, every line also goes to the analytics tier.
fn follow_edr(
    paths: &[PathBuf],
    edr: &LiveEdrConfig,
    stop: Arc<AtomicBool>,
    publisher: Option<&Arc<crate::bus::publish::Publisher>>,
) -> Option<(Arc<EdrIndex>, std::thread::JoinHandle<()>)> {
    if paths.is_empty() {
        return None;
    }
    let index = Arc::new(EdrIndex::new(edr.index_config()));
    let tap = publisher.map(|p| {
        let p = p.clone();
        Arc::new(move |feed: u16, line_no: u64, format, text: &str| {
            p.forward_edr_line(feed, line_no, format, text)
        }) as crate::enrichment::live::LineTap
    });
    let h = crate::enrichment::live::spawn_follower_tapped(
        paths.to_vec(),
        index.clone(),
        stop,
        edr.poll,
        tap,
    );
    Some((index, h))
}

/// The capture in use.
enum Source {
    Pcap(PcapSource),
    Xdp(XdpSource),
}

impl Source {
    fn as_dyn(&mut self) -> &mut dyn PacketSource {
        match self {
            Source::Pcap(s) => s,
            Source::Xdp(s) => s,
        }
    }

    /// The capture's own counters, for the summary.
    fn counters(&mut self) -> serde_json::Value {
        match self {
            Source::Pcap(s) => {
                let st = s.stats();
                serde_json::json!({"source": "pcap", "kernel_received": st.received,
                    "kernel_dropped": st.dropped, "interface_dropped": st.if_dropped})
            }
            Source::Xdp(s) => {
                let st = s.stats();
                serde_json::json!({"source": "xdp", "mode": s.mode,
                    "ring_dropped": st.ring_dropped, "fill_ring_empty": st.fill_ring_empty})
            }
        }
    }
}

pub fn run_live(a: LiveArgs) -> Result<(), String> {
    let mut config = match &a.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(w) = a.workers {
        if w == 0 || w > 256 {
            return Err("--workers must be 1..=256".into());
        }
        config.pipeline.workers = w;
    }
    crate::analytics::validate_config(&config).map_err(|e| e.to_string())?;
    let edr_cfg = LiveEdrConfig::from_config(&config).map_err(|e| e.to_string())?;
    let p = plan(&a, LiveConfig::from_table(&config.live)?)?;

    let mut source = match &p.xdp {
        Some(x) => Source::Xdp(XdpSource::open(x).map_err(|e| e.to_string())?),
        None => Source::Pcap(PcapSource::open(&p.live).map_err(|e| e.to_string())?),
    };
    if let Some(addr) = p.metrics {
        telemetry::install(addr)?;
    }
    match &source {
        Source::Pcap(_) => telemetry::capture_info("pcap", "af_packet", &p.live.interface),
        Source::Xdp(s) => telemetry::capture_info("xdp", s.mode, &p.live.interface),
    }
    if let Some(u) = &p.user {
        let keep = match &source {
            Source::Xdp(_) => {
                xdp_lock_dir();
                XDP_KEEP_CAPS
            }
            Source::Pcap(_) => &[],
        };
        drop_privileges(u, keep)?;
    }
    if !a.quiet {
        let how = match &source {
            Source::Pcap(_) => "libpcap".to_string(),
            Source::Xdp(s) => format!("AF_XDP ({} mode)", s.mode),
        };
        let m = p
            .metrics
            .map(|m| format!(", metrics on http://{m}/metrics"))
            .unwrap_or_default();
        eprintln!("portent: capturing on {} with {how}{m}", p.live.interface);
    }
    let state = match &a.state {
        Some(dir) => Some(Arc::new(
            crate::baseline::Store::open(dir).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let (stop, reopen) = crate::signals::install();
    let edr_stop = Arc::new(AtomicBool::new(false));
    let publisher = a.publish.connect(&config, true)?;
    let edr = follow_edr(&a.edr, &edr_cfg, edr_stop.clone(), publisher.as_ref());
    if !a.quiet && edr.is_some() {
        eprintln!(
            "portent: following {} EDR feed(s); alerts wait up to {:?} for their process",
            a.edr.len(),
            edr_cfg.attribution_wait
        );
    }
    let attributor = edr
        .as_ref()
        .map(|(i, _)| i.clone() as Arc<dyn crate::enrichment::Attributor>);
    let detectors = match &publisher {
        Some(_) => pipeline::no_detectors(),
        None => crate::analytics::detectors_with_state(state),
    };
    let opts = RunOptions {
        config,
        outputs: Outputs {
            alerts: a.alerts.clone(),
            flows: a.flows.clone(),
            dns: a.dns.clone(),
        },
        attributor,
        attribution_wait: Some(edr_cfg.attribution_wait),
        detectors,
        stop,
        reopen,
        progress: false,
        publish: publisher.clone(),
        exit_after: true,
    };
    let summary = pipeline::run(source.as_dyn(), opts);
    // The followers first: the lines they forward are flushed with the rest.
    edr_stop.store(true, Ordering::Relaxed);
    if let Some((_, h)) = edr {
        let _ = h.join();
    }
    if let Some(p) = &publisher {
        let ps = p.finish(std::time::Duration::from_secs(10));
        if !a.quiet {
            eprintln!("{}", ps.render());
        }
    }
    let summary = summary.map_err(|e| e.to_string())?;
    let counters = source.counters();
    drop(source);
    if !a.quiet {
        eprint!("{}", summary.render());
        eprintln!("  capture: {counters}");
    }
    if let Some(path) = &a.stats {
        let mut v = serde_json::to_value(&summary).map_err(|e| e.to_string())?;
        v["capture"] = counters;
        std::fs::write(path, format!("{v}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(s: &str) -> toml::Table {
        s.parse().unwrap()
    }

    #[test]
    fn live_section_rejects_unknown_keys() {
        let e = LiveConfig::from_table(&table("interfce = \"eth0\"")).unwrap_err();
        assert!(e.contains("interfce"), "{e}");
    }

    #[test]
    fn command_line_wins_over_config() {
        let c = LiveConfig::from_table(&table(
            "interface = \"eth1\"\nsnaplen = 128\nxdp = true\nqueues = 4\nmetrics = \"off\"",
        ))
        .unwrap();
        let a = LiveArgs {
            snaplen: Some(256),
            ..LiveArgs::default()
        };
        let p = plan(&a, c).unwrap();
        assert_eq!(p.live.interface, "eth1");
        assert_eq!(p.live.snaplen, 256);
        assert_eq!(p.xdp.as_ref().map(|x| x.queues), Some(4));
        assert_eq!(p.metrics, None);
    }

    #[test]
    fn sample_config_is_valid() {
        let c = Config::from_toml(include_str!("../systemd/portent.toml"), "portent.toml").unwrap();
        let l = LiveConfig::from_table(&c.live).unwrap();
        let p = plan(&LiveArgs::default(), l).unwrap();
        assert_eq!(p.live.interface, "eth1");
        assert!(p.live.promisc && p.xdp.is_none());
    }

    #[test]
    fn metrics_default_to_loopback() {
        let a = LiveArgs {
            interface: Some("lo".into()),
            ..LiveArgs::default()
        };
        let p = plan(&a, LiveConfig::default()).unwrap();
        assert_eq!(p.metrics, Some(DEFAULT_METRICS.parse().unwrap()));
        assert!(p.xdp.is_none());
    }
}
