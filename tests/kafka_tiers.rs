//! The capture and analytics tiers over a real Kafka-API broker: tansu 0.6.0 on
//! 127.0.0.1 (`.ci/run` installs it). If the broker cannot start, these tests fail.
//!
//! A `portent simulate` capture is split the way a packet broker splits traffic (a
//! symmetric hash of the address pair), so a host's DNS answers and its connections go
//! to different capture instances; the analytics group must still give the alerts of
//! one `portent replay`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_portent");
/// Short group timings (the defaults make a join take over 20 s).
const GROUP_OPTS: [&str; 4] = [
    "--kafka-option",
    "session.timeout.ms=6000",
    "--kafka-option",
    "heartbeat.interval.ms=500",
];

fn tansu() -> PathBuf {
    let home = std::env::var("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo")
        });
    let cand = home.join("bin/tansu");
    if cand.exists() {
        return cand;
    }
    PathBuf::from("tansu")
}

/// One broker test at a time: each runs several paced instances and a group whose
/// timing (session timeouts, joins) is what the tests are about; 2 cores shared by five
/// such tests make the group's timing, not portent, the thing measured.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Broker {
    _serial: std::sync::MutexGuard<'static, ()>,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = dir.join("tansu.log");
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start tansu ({e}): install it with `cargo install --locked tansu --version 0.6.0 --features dynostore`")
            });
        let b = Broker {
            _serial: serial,
            child,
            port,
            log,
        };
        let until = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < until,
                "tansu did not listen on {port}: {}",
                std::fs::read_to_string(&b.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self, topic: &str) -> String {
        format!("kafka://127.0.0.1:{}/{topic}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn simulate(dir: &Path, seed: u64) {
    let st = Command::new(BIN)
        .args([
            "simulate",
            "--seed",
            &seed.to_string(),
            "--hosts",
            "8",
            "--hours",
            "6",
        ])
        .arg("--out")
        .arg(dir)
        .arg("--quiet")
        .status()
        .unwrap();
    assert!(st.success());
}

/// Splits a classic pcap over two files by a symmetric hash of the IP address pair, as
/// a packet broker's load balancing does. Frames without IP go to the first file.
fn split_pcap(src: &Path, a: &Path, b: &Path) -> (u64, u64) {
    let mut data = Vec::new();
    std::fs::File::open(src)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    let magic = u32::from_le_bytes(data[..4].try_into().unwrap());
    assert!(
        magic == 0xa1b2_c3d4 || magic == 0xa1b2_3c4d,
        "classic little-endian pcap (us or ns)"
    );
    let mut outs = [
        std::io::BufWriter::new(std::fs::File::create(a).unwrap()),
        std::io::BufWriter::new(std::fs::File::create(b).unwrap()),
    ];
    for o in outs.iter_mut() {
        o.write_all(&data[..24]).unwrap();
    }
    let mut counts = [0u64; 2];
    let mut off = 24;
    while off + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        let rec = &data[off..off + 16 + caplen];
        let frame = &rec[16..];
        let side = match etherparse::SlicedPacket::from_ethernet(frame)
            .ok()
            .and_then(|p| p.net)
        {
            Some(etherparse::NetSlice::Ipv4(h)) => pair_side(
                IpAddr::V4(h.header().source_addr()),
                IpAddr::V4(h.header().destination_addr()),
            ),
            Some(etherparse::NetSlice::Ipv6(h)) => pair_side(
                IpAddr::V6(h.header().source_addr()),
                IpAddr::V6(h.header().destination_addr()),
            ),
            _ => 0,
        };
        outs[side].write_all(rec).unwrap();
        counts[side] += 1;
        off += 16 + caplen;
    }
    (counts[0], counts[1])
}

fn pair_side(x: IpAddr, y: IpAddr) -> usize {
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    let s = format!("{lo}-{hi}");
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    ((h >> 17) & 1) as usize
}

type Key = (String, String, String, u64);

fn alert_key(v: &serde_json::Value) -> Key {
    (
        v["analytic"].as_str().unwrap().to_string(),
        v["src_ip"].as_str().unwrap().to_string(),
        v["dest_ip"].as_str().unwrap().to_string(),
        v["dest_port"].as_u64().unwrap(),
    )
}

fn alert_keys(files: &[&Path]) -> BTreeSet<Key> {
    let mut s = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            s.insert(alert_key(&v));
        }
    }
    s
}

fn single_replay(dir: &Path) -> BTreeSet<Key> {
    let out = dir.join("single.jsonl");
    let st = Command::new(BIN)
        .arg("replay")
        .arg(dir.join("traffic.pcap"))
        .arg("--edr")
        .arg(dir.join("edr.jsonl"))
        .arg("--alerts")
        .arg(&out)
        .arg("-q")
        .status()
        .unwrap();
    assert!(st.success());
    let k = alert_keys(&[&out]);
    // Every analytic the simulator plants is in there: the comparison means something.
    let analytics: BTreeSet<&str> = k.iter().map(|k| k.0.as_str()).collect();
    assert!(analytics.len() >= 4, "{analytics:?}");
    k
}

fn capture(broker: &Broker, topic: &str, pcap: &Path, name: &str, edr: Option<&Path>) -> Child {
    let mut c = Command::new(BIN);
    c.arg("replay")
        .arg(pcap)
        .args(["--publish", &broker.url(topic), "--partitions", "4"])
        .args(["--producer-id", name, "-q"]);
    if let Some(e) = edr {
        c.arg("--edr").arg(e);
    }
    c.spawn().unwrap()
}

/// An analytics instance expecting two capture instances (`extra` may say otherwise).
fn analyze(broker: &Broker, topic: &str, group: &str, alerts: &Path, extra: &[&str]) -> Child {
    let producers = if extra.contains(&"--producers") {
        &[][..]
    } else {
        &["--producers", "2"][..]
    };
    Command::new(BIN)
        .arg("analyze")
        .args(["--consume", &broker.url(topic), "--group", group])
        .arg("--alerts")
        .arg(alerts)
        .arg("--stats")
        .arg(alerts.with_extension("stats.json"))
        .arg("-q")
        .args(GROUP_OPTS)
        .args(producers)
        .args(extra)
        // Partition states every 5 s, kept out of the test's output unless it fails.
        .env("PORTENT_KAFKA_DEBUG", "1")
        .stderr(std::fs::File::create(alerts.with_extension("log")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits for an analytics instance; on failure, shows what it printed.
fn wait_analyze(c: Child, what: &str, limit: Duration, alerts: &Path) {
    let log = alerts.with_extension("log");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wait_ok(c, what, limit)));
    if let Err(e) = r {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("REQTMOUT") && !l.contains(": suppressed p"))
            .collect();
        let timeouts = text.lines().filter(|l| l.contains("REQTMOUT")).count();
        eprintln!(
            "--- {what}: last lines of {} ({timeouts} REQTMOUT lines left out) ---",
            log.display()
        );
        for l in &lines[lines.len().saturating_sub(80)..] {
            eprintln!("{l}");
        }
        std::panic::resume_unwind(e);
    }
}

fn wait_ok(mut c: Child, what: &str, limit: Duration) {
    let until = Instant::now() + limit;
    loop {
        if let Some(st) = c.try_wait().unwrap() {
            assert!(st.success(), "{what} failed: {st}");
            return;
        }
        if Instant::now() > until {
            let _ = c.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stats(alerts: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(alerts.with_extension("stats.json")).unwrap())
        .unwrap()
}

/// Garbage in the records topic: counted by the analytics tier, never fatal.
fn produce_garbage(broker: &Broker, topic: &str) {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let p: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .create()
        .unwrap();
    for part in 0..4 {
        for payload in [
            &b""[..],
            b"\xb1",
            b"{\"not\":\"a record\"}",
            &[0xb1, 3, 0, 0],
        ] {
            p.send(
                BaseRecord::<(), _>::to(topic)
                    .partition(part)
                    .payload(payload),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        }
    }
    p.flush(Duration::from_secs(10)).unwrap();
}

fn read_topic(broker: &Broker, topic: &str, want: usize) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.addr())
        .set("group.id", format!("reader-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while out.len() < want && Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(String::from_utf8_lossy(m.payload().unwrap_or(&[])).into_owned());
        }
    }
    out
}

#[test]
fn two_capture_and_two_analytics_instances_equal_one_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broker = Broker::start(dir);
    simulate(dir, 7);
    let expected = single_replay(dir);
    let (na, nb) = split_pcap(
        &dir.join("traffic.pcap"),
        &dir.join("a.pcap"),
        &dir.join("b.pcap"),
    );
    assert!(na > 100_000 && nb > 100_000, "{na} {nb}");

    // The group first, so it sees the records as they come.
    let (a1, a2) = (dir.join("an1.jsonl"), dir.join("an2.jsonl"));
    let extra = ["--exit-idle", "8", "--alerts-topic", "alerts"];
    let an1 = analyze(&broker, "records", "g-equal", &a1, &extra);
    let an2 = analyze(&broker, "records", "g-equal", &a2, &extra);
    // Both capture instances at once; the EDR feed goes through the first.
    let c1 = capture(
        &broker,
        "records",
        &dir.join("a.pcap"),
        "cap-a",
        Some(&dir.join("edr.jsonl")),
    );
    let c2 = capture(&broker, "records", &dir.join("b.pcap"), "cap-b", None);
    wait_ok(c1, "capture a", Duration::from_secs(120));
    wait_ok(c2, "capture b", Duration::from_secs(120));
    produce_garbage(&broker, "records");
    wait_analyze(an1, "analytics 1", Duration::from_secs(180), &a1);
    wait_analyze(an2, "analytics 2", Duration::from_secs(180), &a2);

    let got = alert_keys(&[&a1, &a2]);
    assert_eq!(got, expected, "alerts of the two tiers vs one replay");
    let (s1, s2) = (stats(&a1), stats(&a2));
    let written = s1["alerts"].as_u64().unwrap() + s2["alerts"].as_u64().unwrap();
    let bad = s1["bad_records"]
        .as_object()
        .unwrap()
        .values()
        .chain(s2["bad_records"].as_object().unwrap().values());
    assert!(
        bad.map(|v| v.as_u64().unwrap()).sum::<u64>() >= 16,
        "{s1} {s2}"
    );
    for s in [&s1, &s2] {
        assert_eq!(s["merge"]["late"], 0, "{s}");
        assert_eq!(s["merge"]["forced"], 0, "{s}");
        assert_eq!(s["offsets_lost"], 0, "{s}");
    }
    // The alerts topic carries what the files carry.
    let lines = read_topic(&broker, "alerts", written as usize);
    assert_eq!(lines.len() as u64, written);
    assert!(lines.iter().all(|l| l.contains("\"event_type\":\"alert\"")));
}

/// Publishes a split simulation with two capture instances; returns the single-replay
/// alerts to compare with.
fn published(broker: &Broker, dir: &Path, topic: &str, seed: u64) -> BTreeSet<Key> {
    simulate(dir, seed);
    let expected = single_replay(dir);
    split_pcap(
        &dir.join("traffic.pcap"),
        &dir.join("a.pcap"),
        &dir.join("b.pcap"),
    );
    let c1 = capture(
        broker,
        topic,
        &dir.join("a.pcap"),
        "cap-a",
        Some(&dir.join("edr.jsonl")),
    );
    let c2 = capture(broker, topic, &dir.join("b.pcap"), "cap-b", None);
    wait_ok(c1, "capture a", Duration::from_secs(120));
    wait_ok(c2, "capture b", Duration::from_secs(120));
    expected
}

/// Paced, so an instance stopped after a few seconds has its partitions half read.
const PACE: [&str; 2] = ["--max-rate", "4000"];

/// Two analytics instances of one group on a published simulation; the first is ended
/// by `signal` after 5 s of paced reading, the second must finish; together they must
/// write the alerts of one replay. Returns the ended instance's keys and the survivor's
/// summary.
fn hand_over(seed: u64, group: &str, signal: i32) -> (BTreeSet<Key>, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broker = Broker::start(dir);
    let expected = published(&broker, dir, "rec", seed);
    let (a1, a2) = (dir.join("ended.jsonl"), dir.join("survivor.jsonl"));
    let ended = analyze(&broker, "rec", group, &a1, &PACE);
    let survivor = analyze(
        &broker,
        "rec",
        group,
        &a2,
        &[&PACE[..], &["--exit-idle", "15"]].concat(),
    );
    std::thread::sleep(Duration::from_secs(5));
    unsafe { libc::kill(ended.id() as i32, signal) };
    if signal == libc::SIGKILL {
        let mut ended = ended;
        ended.wait().unwrap();
    } else {
        wait_analyze(ended, "ended instance", Duration::from_secs(30), &a1);
    }
    wait_analyze(survivor, "survivor", Duration::from_secs(300), &a2);
    let s = stats(&a2);
    let before = alert_keys(&[&a1]);
    assert_eq!(
        alert_keys(&[&a1, &a2]),
        expected,
        "the ended instance wrote {} keys; survivor {s}",
        before.len()
    );
    assert_eq!(s["offsets_lost"], 0, "{s}");
    (before, s)
}

#[test]
fn a_stopped_analytics_instance_hands_its_partitions_over() {
    // SIGTERM: the instance flushes, commits and leaves the group.
    let (before, s) = hand_over(11, "g-stop", libc::SIGTERM);
    assert!(
        s["rebuilt"].as_u64().unwrap() >= 4,
        "the survivor rebuilt the stopped instance's partitions: {s}"
    );
    if !before.is_empty() {
        assert!(s["replayed_suppressed"].as_u64().unwrap() > 0, "{s}");
    }
}

/// SIGKILL: no commit, no LeaveGroup. The group drops the member at its session
/// timeout; the survivor rebuilds the partitions from the log and writes what the dead
/// instance had not committed.
#[test]
fn a_killed_analytics_instance_loses_no_alert() {
    let (_, s) = hand_over(13, "g-kill", libc::SIGKILL);
    assert!(s["rebuilt"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn replay_publish_to_no_broker_is_a_clear_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let any = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/demo/traffic.pcap");
    let started = Instant::now();
    let out = Command::new(BIN)
        .arg("replay")
        .arg(&any)
        .args(["--publish", &format!("kafka://127.0.0.1:{port}/t"), "-q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_live_publisher_drops_and_counts_when_the_broker_is_gone() {
    use portent::bus::publish::{PublishConfig, Publisher};
    use std::sync::atomic::Ordering;
    let tmp = tempfile::tempdir().unwrap();
    let broker = Broker::start(tmp.path());
    let mut cfg = PublishConfig::new(broker.url("gone").parse().unwrap());
    cfg.partitions = 2;
    cfg.live = true;
    cfg.buffer_records = 1000;
    cfg.options = vec![("message.timeout.ms".into(), "2000".into())];
    let p = Publisher::connect(&cfg, portent::config::Config::default().home_net).unwrap();
    drop(broker);
    let mut sink = p.sink(0, 1);
    let flow = portent::flow::FlowRecord {
        uid: 1,
        proto: 6,
        orig: "10.0.0.1".parse().unwrap(),
        orig_port: 40000,
        resp: "198.51.100.1".parse().unwrap(),
        resp_port: 443,
        orig_is_internal: true,
        first_ts: portent::time::Ts::from_secs(1),
        last_ts: portent::time::Ts::from_secs(1),
        orig_pkts: 1,
        resp_pkts: 0,
        orig_bytes: 0,
        resp_bytes: 0,
        orig_ip_bytes: 60,
        resp_ip_bytes: 0,
        conn_state: portent::flow::ConnState::S0,
        history: Default::default(),
        orig_first_sizes: [0; 4],
        resp_first_sizes: [0; 4],
        orig_mac: None,
        vlan: 0,
        handle: portent::flow::FlowHandle::NONE,
    };
    // Far more than the buffer holds: the sends return at once, the excess is counted.
    for i in 0..50_000 {
        sink.flow(
            &portent::flow::FlowEvent::Started(flow),
            portent::time::Ts::from_secs(1 + i / 1000),
        );
    }
    let published = p.counts.published.load(Ordering::Relaxed);
    let dropped = p.counts.dropped.load(Ordering::Relaxed);
    assert_eq!(published + dropped, 50_000);
    assert!(
        dropped >= 45_000,
        "published {published}, dropped {dropped}"
    );
    let s = p.finish(Duration::from_secs(5));
    assert_eq!(s.delivered, 0, "{s:?}");
}

/// (analytic, source, destination, port, executable): what attribution adds.
fn attributed_keys(f: &Path) -> BTreeSet<(Key, String)> {
    let text = std::fs::read_to_string(f).unwrap_or_default();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let exe = v["process"]["executable"]
            .as_str()
            .unwrap_or("")
            .to_string();
        out.insert((alert_key(&v), exe));
    }
    out
}

/// The EDR feed as `portent live --edr --publish` follows and forwards it: the analytics
/// tier attributes the alerts as one replay with the feed does (process included, and
/// the analytic that needs the feed fires).
#[test]
fn a_followed_edr_feed_is_forwarded_to_the_analytics_tier() {
    use portent::bus::publish::{PublishConfig, Publisher};
    use portent::enrichment::index::{EdrIndex, IndexConfig};
    use portent::enrichment::live::{spawn_follower_tapped, LineTap};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let broker = Broker::start(dir);
    simulate(dir, 7);
    let single = dir.join("single.jsonl");
    let keys = single_replay(dir);
    let expected = attributed_keys(&single);
    assert!(
        expected
            .iter()
            .any(|(k, e)| k.0 == "nonbrowser_outbound_deviation" && !e.is_empty()),
        "{expected:?}"
    );

    let mut cfg = PublishConfig::new(broker.url("fol").parse().unwrap());
    cfg.partitions = 4;
    cfg.live = true;
    cfg.name = "edr-sensor".into();
    let p = Publisher::connect(&cfg, portent::config::Config::default().home_net).unwrap();
    let feed = dir.join("edr.jsonl");
    let lines = std::fs::read_to_string(&feed)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    let index = Arc::new(EdrIndex::new(IndexConfig::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let fwd = p.clone();
    let tap: LineTap =
        Arc::new(move |feed, n, format, text: &str| fwd.forward_edr_line(feed, n, format, text));
    let follower = spawn_follower_tapped(
        vec![feed],
        index,
        stop.clone(),
        Duration::from_millis(50),
        Some(tap),
    );
    let until = Instant::now() + Duration::from_secs(60);
    while p.counts.published.load(Ordering::Relaxed) < lines * 4 {
        assert!(
            Instant::now() < until,
            "forwarded {} of {}",
            p.counts.published.load(Ordering::Relaxed),
            lines * 4
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    follower.join().unwrap();
    let ps = p.finish(Duration::from_secs(30));
    assert_eq!((ps.delivered, ps.dropped), (lines * 4, 0), "{ps:?}");

    // The flows from a capture instance without the feed.
    let c = capture(&broker, "fol", &dir.join("traffic.pcap"), "cap", None);
    wait_ok(c, "capture", Duration::from_secs(120));
    let out = dir.join("an.jsonl");
    let an = analyze(
        &broker,
        "fol",
        "g-fol",
        &out,
        &["--producers", "1", "--exit-idle", "5"],
    );
    wait_analyze(an, "analytics", Duration::from_secs(180), &out);
    assert_eq!(alert_keys(&[&out]), keys);
    assert_eq!(attributed_keys(&out), expected);
    assert_eq!(
        stats(&out)["edr_lines"].as_u64(),
        Some(lines),
        "{}",
        stats(&out)
    );
}
