//! `portent live` on a real link: two network namespaces joined by a veth pair,
//! `tcpreplay` sending a simulated capture into one end, `portent live` (libpcap, then
//! AF_XDP in generic mode) on the other. Needs root, `ip netns` and tcpreplay; each
//! test prints why it skips where those are missing.
//!
//! * paced sends: the alerts' (analytic, src, dest, port) set equals `portent replay`
//!   of the same file, after SIGTERM (so SIGTERM flushed every alert);
//! * top speed: every frame sent is either captured or counted as dropped;
//! * a real Prometheus server scrapes portent; `promtool check metrics` is clean;
//! * every Grafana panel queries a metric portent exports;
//! * the systemd unit passes `systemd-analyze verify`;
//! * `live --publish` with a followed EDR feed, into tansu, read by `portent analyze`:
//!   the alerts of one replay, every followed line ingested.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portent")
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Why live tests cannot run here, if they cannot.
fn skip_reason(tools: &[&str]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: network namespaces and capture need root".into());
    }
    for t in tools {
        if !have(t) {
            return Some(format!("`{t}` not installed (.ci/deps installs it)"));
        }
    }
    let probe = format!("ptprobe{}", std::process::id());
    let ok = run("ip", &["netns", "add", &probe]).status.success();
    let _ = run("ip", &["netns", "del", &probe]);
    if !ok {
        return Some("`ip netns add` fails here (no network namespaces)".into());
    }
    None
}

macro_rules! skip_unless_live {
    ($($tool:expr),*) => {
        if let Some(why) = skip_reason(&["ip" $(, $tool)*]) {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn must(cmd: &str, args: &[&str]) -> Output {
    let o = run(cmd, args);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Two namespaces and the veth pair between them; removed on drop.
struct Veth {
    send_ns: String,
    recv_ns: String,
    send_if: String,
    recv_if: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Veth {
    fn new() -> Veth {
        let id = format!(
            "{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let v = Veth {
            send_ns: format!("ptS{id}"),
            recv_ns: format!("ptR{id}"),
            send_if: format!("pts{id}"),
            recv_if: format!("ptr{id}"),
        };
        must("ip", &["netns", "add", &v.send_ns]);
        must("ip", &["netns", "add", &v.recv_ns]);
        must(
            "ip",
            &[
                "link", "add", &v.send_if, "type", "veth", "peer", "name", &v.recv_if,
            ],
        );
        must("ip", &["link", "set", &v.send_if, "netns", &v.send_ns]);
        must("ip", &["link", "set", &v.recv_if, "netns", &v.recv_ns]);
        for (ns, dev) in [(&v.send_ns, &v.send_if), (&v.recv_ns, &v.recv_if)] {
            // No IPv6 autoconfiguration chatter: only replayed frames cross the link.
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1",
                ],
            );
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ],
            );
            must("ip", &["-n", ns, "link", "set", dev, "up"]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        v
    }

    fn in_recv(&self, cmd: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.recv_ns, cmd]).args(args);
        c
    }

    /// Sends a capture into the link; returns the frames tcpreplay sent.
    fn tcpreplay(&self, pcap: &Path, speed: &[&str]) -> u64 {
        let mut args = vec![
            "netns",
            "exec",
            &self.send_ns,
            "tcpreplay",
            "-i",
            &self.send_if,
        ];
        args.extend_from_slice(speed);
        let p = pcap.to_str().unwrap();
        args.push(p);
        let o = must("ip", &args);
        let text = String::from_utf8_lossy(&o.stdout);
        let sent = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Successful packets:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("tcpreplay output: {text}"));
        let failed: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Failed packets:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        assert_eq!(failed, 0, "tcpreplay failed to send some frames: {text}");
        sent
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.send_ns]);
        let _ = run("ip", &["netns", "del", &self.recv_ns]);
    }
}

/// A simulated capture, written once per test run.
struct Sim {
    pcap: PathBuf,
    _dir: tempfile::TempDir,
}

fn sim() -> &'static Sim {
    static SIM: OnceLock<Sim> = OnceLock::new();
    SIM.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        // 3 minutes of traffic, 7 k frames, with two DNS-calculated C2 connections.
        must(
            bin(),
            &[
                "simulate", "--seed", "3", "--hours", "0.05", "--hosts", "5", "--out", out,
                "--quiet",
            ],
        );
        Sim {
            pcap: dir.path().join("traffic.pcap"),
            _dir: dir,
        }
    })
}

type AlertKey = (String, String, String, u64);

fn alert_set(path: &Path) -> BTreeSet<AlertKey> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "alerts file ends mid-line"
    );
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("alert is JSON");
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (
                s("analytic"),
                s("src_ip"),
                s("dest_ip"),
                v["dest_port"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn replay_alerts(pcap: &Path) -> BTreeSet<AlertKey> {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("alerts.jsonl");
    must(
        bin(),
        &[
            "replay",
            pcap.to_str().unwrap(),
            "--alerts",
            a.to_str().unwrap(),
            "-q",
        ],
    );
    alert_set(&a)
}

/// A running `portent live`.
struct Live {
    child: Child,
    dir: tempfile::TempDir,
}

impl Live {
    fn start(v: &Veth, extra: &[&str]) -> Live {
        let dir = tempfile::tempdir().unwrap();
        if extra.contains(&"--user") {
            // Outputs are opened after the privilege drop (as with systemd's LogsDirectory).
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        }
        let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
        let (alerts, stats, err) = (p("alerts.jsonl"), p("stats.json"), p("stderr"));
        let mut args = vec![
            "live",
            "--interface",
            &v.recv_if,
            "--alerts",
            &alerts,
            "--stats",
            &stats,
        ];
        args.extend_from_slice(extra);
        let child = v
            .in_recv(bin(), &args)
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let live = Live { child, dir };
        // Ready once it says it is capturing (the XDP program may take a moment).
        let deadline = Instant::now() + Duration::from_secs(20);
        while !live.stderr().contains("capturing on") {
            assert!(
                Instant::now() < deadline,
                "live did not start: {}",
                live.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        live
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// SIGTERM, wait, and the end-of-run summary.
    fn stop(mut self) -> (serde_json::Value, BTreeSet<AlertKey>) {
        // `ip netns exec` execs the command, so the child's pid is portent's.
        // SAFETY: kill on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("live ignored SIGTERM: {}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "live failed: {}", self.stderr());
        // Shown when a test fails (libtest captures it otherwise).
        eprintln!("portent's stderr:\n{}", self.stderr());
        let stats = std::fs::read_to_string(self.dir.path().join("stats.json")).unwrap();
        let alerts = alert_set(&self.dir.path().join("alerts.jsonl"));
        (serde_json::from_str(&stats).unwrap(), alerts)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Frames the kernel or the rings dropped before portent read them.
fn capture_drops(stats: &serde_json::Value) -> u64 {
    let c = &stats["capture"];
    ["kernel_dropped", "interface_dropped", "ring_dropped"]
        .iter()
        .map(|k| c[k].as_u64().unwrap_or(0))
        .sum()
}

fn scrape(v: &Veth, port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let o = v.in_recv("curl", &["-sf", &url]).output().unwrap();
    assert!(o.status.success(), "scrape of {url} failed");
    String::from_utf8(o.stdout).unwrap()
}

fn promtool_clean(metrics: &str) {
    let mut c = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && complaints.trim().is_empty(),
        "promtool check metrics: {complaints}"
    );
}

/// A metric's value in a scrape (the sum over its series matching `labels`).
fn metric_value(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A Prometheus server in the receiving namespace, scraping portent every second.
struct Prometheus {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(v: &Veth, target_port: u16, port: u16) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: portent\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
            ),
        )
        .unwrap();
        let data = dir.path().join("data");
        let child = v
            .in_recv(
                "prometheus",
                &[
                    &format!("--config.file={}", cfg.display()),
                    &format!("--storage.tsdb.path={}", data.display()),
                    &format!("--web.listen-address=127.0.0.1:{port}"),
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus { child, _dir: dir }
    }

    /// Polls `/api/v1/query` until `ok` accepts the summed value.
    fn wait_for(&self, v: &Veth, port: u16, query: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let url = format!("http://127.0.0.1:{port}/api/v1/query");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = v
                .in_recv(
                    "curl",
                    &[
                        "-sf",
                        "--get",
                        "--data-urlencode",
                        &format!("query={query}"),
                        &url,
                    ],
                )
                .output()
                .unwrap();
            let last = String::from_utf8_lossy(&o.stdout).into_owned();
            if let Ok(j) = serde_json::from_str::<serde_json::Value>(&last) {
                if let Some(rs) = j["data"]["result"].as_array() {
                    let sum: f64 = rs
                        .iter()
                        .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                        .sum();
                    if !rs.is_empty() && ok(sum) {
                        return sum;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus query {query}: {last}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Paced send at the capture's own pace (about 3 minutes): same alerts as replay, every
/// frame accounted for. Not compressed in time: a faster multiplier would shrink the
/// periodic scenario's intervals below the analytic's 10 s floor and change the evidence.
fn paced(extra: &[&str]) -> (u64, serde_json::Value) {
    let s = sim();
    let expected = replay_alerts(&s.pcap);
    assert!(
        !expected.is_empty(),
        "the simulated capture should raise alerts"
    );
    let v = Veth::new();
    let mut args = vec!["--metrics", "127.0.0.1:9464"];
    args.extend_from_slice(extra);
    let live = Live::start(&v, &args);
    let sent = v.tcpreplay(&s.pcap, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let (stats, got) = live.stop();
    assert_eq!(got, expected, "live alerts differ from replay ({extra:?})");
    let captured = stats["packets"].as_u64().unwrap();
    assert_eq!(captured + capture_drops(&stats), sent, "{stats}");
    eprintln!(
        "paced {extra:?}: sent {sent}, captured {captured}, dropped before capture {}, dropped in pipeline {}",
        capture_drops(&stats),
        stats["dropped_packets"]
    );
    (sent, stats)
}

#[test]
fn pcap_paced_alerts_match_replay() {
    skip_unless_live!("tcpreplay", "curl");
    paced(&[]);
}

#[test]
fn xdp_generic_paced_alerts_match_replay() {
    skip_unless_live!("tcpreplay", "curl");
    let (_, stats) = paced(&["--xdp", "--xdp-mode", "generic"]);
    assert_eq!(stats["capture"]["mode"], "generic");
}

/// Top speed, the capture sent three times over: captured + dropped = sent.
fn topspeed(extra: &[&str]) {
    let s = sim();
    let v = Veth::new();
    let mut args = vec!["--metrics", "off"];
    args.extend_from_slice(extra);
    let live = Live::start(&v, &args);
    if let Some(i) = extra.iter().position(|a| *a == "--user") {
        // Capture is open; from here on the sensor runs as that user.
        let status = std::fs::read_to_string(format!("/proc/{}/status", live.child.id())).unwrap();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .unwrap()
            .split_whitespace()
            .map(|x| x.parse::<u32>().unwrap())
            .collect::<Vec<_>>();
        let want = user_id(extra[i + 1]);
        assert_eq!(
            uid,
            vec![want; 4],
            "real/effective/saved/fs uid after --user"
        );
    }
    let sent = v.tcpreplay(&s.pcap, &["--topspeed", "--loop", "3"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (stats, _) = live.stop();
    // Whatever the user it ended as, the sensor leaves no XDP program on the interface.
    let link = v
        .in_recv("ip", &["link", "show", "dev", &v.recv_if])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout);
    assert!(!link.contains("xdp"), "XDP program left attached: {link}");
    let captured = stats["packets"].as_u64().unwrap();
    let dropped = capture_drops(&stats);
    eprintln!(
        "topspeed {extra:?}: sent {sent}, captured {captured}, dropped {dropped} (kernel/ring), {} more dropped in the pipeline (queue full)",
        stats["dropped_packets"]
    );
    assert_eq!(captured + dropped, sent, "{stats}");
}

/// The uid of a user from /etc/passwd.
fn user_id(name: &str) -> u32 {
    std::fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name)).then(|| f[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no user {name}"))
}

/// Both run as `nobody` once capture is open, as `--user` does outside systemd.
#[test]
fn pcap_topspeed_counts_every_frame() {
    skip_unless_live!("tcpreplay");
    topspeed(&["--user", "nobody"]);
}

#[test]
fn xdp_topspeed_counts_every_frame() {
    skip_unless_live!("tcpreplay");
    topspeed(&["--xdp", "--xdp-mode", "generic", "--user", "nobody"]);
}

/// Metric names a PromQL expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(off) = expr[i..].find("portent_") {
        let start = i + off;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.push(expr[start..end].to_string());
        i = end;
    }
    out
}

/// Prometheus scrapes a live portent; the dashboard's metrics exist; promtool is happy.
#[test]
fn prometheus_scrapes_and_dashboard_matches() {
    skip_unless_live!("tcpreplay", "curl", "prometheus", "promtool");
    let s = sim();
    let v = Veth::new();
    let live = Live::start(&v, &["--metrics", "127.0.0.1:9464"]);
    let prom = Prometheus::start(&v, 9464, 9090);
    let sent = v.tcpreplay(&s.pcap, &["--topspeed"]);
    std::thread::sleep(Duration::from_millis(1500));

    let text = scrape(&v, 9464);
    promtool_clean(&text);
    let received = metric_value(&text, "portent_packets_received_total", "");
    assert_eq!(received as u64, sent, "packets counter");
    assert!(metric_value(&text, "portent_alerts_total", "dns_calculated_port") >= 1.0);

    let got = prom.wait_for(&v, 9090, "portent_packets_received_total", |x| {
        x as u64 == sent
    });
    assert_eq!(got as u64, sent);
    prom.wait_for(
        &v,
        9090,
        "portent_alerts_total{analytic=\"dns_calculated_port\"}",
        |x| x >= 1.0,
    );

    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("systemd/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(
                !names.is_empty(),
                "panel {} queries no portent metric",
                p["title"]
            );
            for n in names {
                let exported = text
                    .lines()
                    .any(|l| l.starts_with(&format!("{n} ")) || l.starts_with(&format!("{n}{{")));
                assert!(
                    exported,
                    "panel {} queries {n}, which portent does not export",
                    p["title"]
                );
            }
        }
    }
    drop(prom);
    live.stop();
}

/// The unit file verifies with its binary installed where ExecStart says.
#[test]
fn systemd_unit_verifies() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: not root: the test installs /usr/local/bin/portent");
        return;
    }
    if !have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze not installed (.ci/deps installs systemd)");
        return;
    }
    let unit = repo("systemd/portent.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .and_then(|l| l.split_whitespace().next())
        .expect("ExecStart");
    std::fs::create_dir_all(Path::new(exec).parent().unwrap()).unwrap();
    // Copy beside, then rename: never a half-written binary at the path.
    let tmp = format!("{exec}.test-{}", std::process::id());
    std::fs::copy(bin(), &tmp).unwrap();
    std::fs::rename(&tmp, exec).unwrap();
    let o = run("systemd-analyze", &["verify", unit.to_str().unwrap()]);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success() && out.trim().is_empty(),
        "systemd-analyze verify: {out}"
    );
    for key in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=portent",
        "LogsDirectory=portent",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "--state /var/lib/portent",
    ] {
        assert!(text.contains(key), "unit lacks {key}");
    }
}

/// tansu as `.ci/tansu` installs it (like tests/kafka_tiers.rs: no broker is a failure).
fn tansu() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let cand = home.join("bin/tansu");
    if cand.exists() {
        cand
    } else {
        PathBuf::from("tansu")
    }
}

/// A canonical EDR inventory line for a host outside the simulation (it attributes
/// nothing there, so the alerts stay those of a replay without a feed).
fn inventory_line(i: u32) -> String {
    format!(
        "{{\"@timestamp\":\"2026-11-20T00:00:{:02}Z\",\"event\":{{\"category\":\"host\",\
         \"kind\":\"asset\"}},\"host\":{{\"name\":\"far-{i}\",\"ip\":[\"192.0.2.{}\"],\
         \"os\":{{\"platform\":\"linux\"}}}}}}\n",
        i % 60,
        i % 250 + 1
    )
}

/// `portent live --publish` on the link, following an EDR feed that grows while it
/// runs, into tansu in the receiving namespace; then `portent analyze` on the topic.
/// The analytics tier must give the alerts of one `portent replay` of the file, and
/// ingest every EDR line the capture tier followed (live's own wiring of publisher,
/// follower and tap, which tests/kafka_tiers.rs drives only through the library).
#[test]
fn live_publishes_records_and_followed_edr_to_the_analytics_tier() {
    skip_unless_live!("tcpreplay", "curl");
    let s = sim();
    let expected = replay_alerts(&s.pcap);
    assert!(!expected.is_empty());
    let v = Veth::new();
    let work = tempfile::tempdir().unwrap();
    let port = "19092";
    let url = format!("tcp://127.0.0.1:{port}");
    let mut broker = v
        .in_recv(
            tansu().to_str().unwrap(),
            &[
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ],
        )
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("tansu.log")).unwrap())
        .spawn()
        .expect(
            "tansu (install: cargo install --locked tansu --version 0.6.0 --features dynostore)",
        );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !v
        .in_recv(
            "bash",
            &["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")],
        )
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        assert!(Instant::now() < deadline, "tansu did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }

    let feed = work.path().join("edr.jsonl");
    let mut f = std::fs::File::create(&feed).unwrap();
    for i in 0..40 {
        f.write_all(inventory_line(i).as_bytes()).unwrap();
    }
    f.flush().unwrap();
    let topic = format!("kafka://127.0.0.1:{port}/lv");
    let live = Live::start(
        &v,
        &[
            "--publish",
            &topic,
            "--partitions",
            "2",
            "--edr",
            feed.to_str().unwrap(),
        ],
    );
    let sender = {
        let (send_ns, send_if, pcap) = (v.send_ns.clone(), v.send_if.clone(), s.pcap.clone());
        std::thread::spawn(move || {
            must(
                "ip",
                &[
                    "netns",
                    "exec",
                    &send_ns,
                    "tcpreplay",
                    "-i",
                    &send_if,
                    pcap.to_str().unwrap(),
                ],
            )
        })
    };
    // The feed grows while live runs: the follower must forward these too.
    std::thread::sleep(Duration::from_secs(5));
    for i in 40..100 {
        f.write_all(inventory_line(i).as_bytes()).unwrap();
    }
    f.flush().unwrap();
    sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let (stats, local) = live.stop();
    assert!(local.is_empty(), "the capture tier raises no alert itself");
    assert!(stats["packets"].as_u64().unwrap() > 0, "{stats}");

    let out = work.path().join("an.jsonl");
    let an_stats = work.path().join("an.stats.json");
    let an = v
        .in_recv(
            bin(),
            &[
                "analyze",
                "--consume",
                &topic,
                "--group",
                "g-live",
                "--producers",
                "1",
                "--exit-idle",
                "5",
                "--alerts",
                out.to_str().unwrap(),
                "--stats",
                an_stats.to_str().unwrap(),
                "-q",
                "--kafka-option",
                "session.timeout.ms=6000",
                "--kafka-option",
                "heartbeat.interval.ms=500",
            ],
        )
        .output()
        .unwrap();
    let _ = broker.kill();
    let _ = broker.wait();
    assert!(
        an.status.success(),
        "analyze: {}",
        String::from_utf8_lossy(&an.stderr)
    );
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&an_stats).unwrap()).unwrap();
    assert_eq!(alert_set(&out), expected, "analytics tier: {st}");
    assert_eq!(st["edr_lines"].as_u64(), Some(100), "{st}");
    assert_eq!(st["offsets_lost"].as_u64(), Some(0), "{st}");
}
