//! The live EDR path without a network: the demo capture runs through the pipeline with
//! the feed *followed* (as `portent live --edr` does) and written only after every packet
//! was seen, as an agent that reports late would. Alerts must wait for their process
//! (`[edr] attribution_wait_s`) and come out with the same attribution a replay with the
//! whole feed preloaded gives them.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portent::capture::pcapfile::CaptureError;
use portent::config::Config;
use portent::enrichment::index::{EdrIndex, IndexConfig};
use portent::enrichment::live::spawn_follower_with;
use portent::enrichment::Attributor;
use portent::pipeline::replay::FileSource;
use portent::pipeline::{self, Outputs, PacketSource, RunOptions, SourceEvent};
use serde_json::Value;

fn demo(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps/demo")
        .join(name)
}

/// The capture, then (once every packet was read) the feed appears in `feed`, then
/// idle wall time passes for `idle` before the end.
struct LateFeed {
    inner: FileSource,
    feed: PathBuf,
    idle: Duration,
    idle_until: Option<Instant>,
    last: portent::time::Ts,
}

impl PacketSource for LateFeed {
    fn next_event(&mut self) -> Result<SourceEvent<'_>, CaptureError> {
        if self.idle_until.is_none() {
            match self.inner.next_event()? {
                SourceEvent::End => {
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&self.feed)
                        .expect("feed file");
                    f.write_all(&std::fs::read(demo("edr.jsonl")).expect("demo feed"))
                        .expect("writing the feed");
                    self.idle_until = Some(Instant::now() + self.idle);
                }
                SourceEvent::Packet(p) => {
                    self.last = p.ts;
                    return Ok(SourceEvent::Packet(p));
                }
                idle => return Ok(idle),
            }
        }
        if self.idle_until.is_some_and(|t| Instant::now() >= t) {
            return Ok(SourceEvent::End);
        }
        std::thread::sleep(Duration::from_millis(20));
        Ok(SourceEvent::Idle(self.last))
    }
}

/// Runs the demo capture through the pipeline; returns its alerts.
fn run(
    attributor: Option<Arc<dyn Attributor>>,
    wait: Option<Duration>,
    late_feed: Option<&Path>,
    out: &Path,
) -> Vec<Value> {
    let files = [demo("traffic.pcap")];
    let mut inner = FileSource::open(&files).expect("demo capture");
    let opts = RunOptions {
        config: Config::default(),
        outputs: Outputs {
            alerts: Some(out.to_path_buf()),
            ..Outputs::default()
        },
        attributor,
        attribution_wait: wait,
        detectors: portent::analytics::detectors_with_state(None),
        stop: Arc::new(AtomicBool::new(false)),
        reopen: Arc::new(AtomicBool::new(false)),
        progress: false,
        publish: None,
        exit_after: false,
    };
    match late_feed {
        Some(feed) => {
            let mut src = LateFeed {
                inner,
                feed: feed.to_path_buf(),
                idle: Duration::from_millis(1500),
                idle_until: None,
                last: portent::time::Ts::ZERO,
            };
            pipeline::run(&mut src, opts).expect("pipeline");
        }
        None => {
            pipeline::run(&mut inner, opts).expect("pipeline");
        }
    }
    common::read_jsonl(out).1
}

type Key = (String, String, String, u64);

fn key(a: &Value) -> Key {
    (
        a["analytic"].as_str().unwrap().to_string(),
        a["src_ip"].as_str().unwrap().to_string(),
        a["dest_ip"].as_str().unwrap().to_string(),
        a["dest_port"].as_u64().unwrap(),
    )
}

/// What attribution says of an alert: process name and pid, user, launchd label.
fn who(a: &Value) -> Option<(String, i64, String, String)> {
    let p = a.get("process")?;
    Some((
        p["name"].as_str().unwrap_or("").to_string(),
        p["pid"].as_i64().unwrap_or(-1),
        a["user"]["name"].as_str().unwrap_or("").to_string(),
        a["launchd"]["label"].as_str().unwrap_or("").to_string(),
    ))
}

#[test]
fn late_feed_alerts_wait_for_their_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Reference: the whole feed loaded before the capture (what replay does).
    let pre = EdrIndex::new(IndexConfig {
        max_age: None,
        ..IndexConfig::default()
    });
    let mut st = portent::enrichment::reader::EdrStats::default();
    portent::enrichment::reader::load_path(&demo("edr.jsonl"), &pre, &mut st).unwrap();
    let reference: BTreeMap<Key, Value> =
        run(Some(Arc::new(pre)), None, None, &d.join("reference.jsonl"))
            .into_iter()
            .map(|a| (key(&a), a))
            .collect();
    let attributed: Vec<&Key> = reference
        .iter()
        .filter(|(k, a)| who(a).is_some() && k.0 != "nonbrowser_outbound_deviation")
        .map(|(k, _)| k)
        .collect();
    assert!(
        attributed.len() >= 3,
        "the demo should raise attributed alerts: {reference:?}"
    );

    // Live: the feed is followed and written only after the last packet.
    let late = |wait: Option<Duration>, name: &str| {
        let feed = d.join(format!("{name}.edr.jsonl"));
        std::fs::write(&feed, b"").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let index = Arc::new(EdrIndex::new(IndexConfig::default()));
        let follower = spawn_follower_with(
            vec![feed.clone()],
            index.clone(),
            stop.clone(),
            Duration::from_millis(20),
        );
        let alerts = run(
            Some(index as Arc<dyn Attributor>),
            wait,
            Some(&feed),
            &d.join(format!("{name}.alerts.jsonl")),
        );
        stop.store(true, Ordering::Relaxed);
        follower.join().unwrap();
        alerts
            .into_iter()
            .map(|a| (key(&a), a))
            .collect::<BTreeMap<Key, Value>>()
    };

    let waited = late(Some(Duration::from_secs(30)), "waited");
    for k in &attributed {
        let got = waited
            .get(*k)
            .unwrap_or_else(|| panic!("alert {k:?} missing with a late feed"));
        assert_eq!(
            who(got),
            who(&reference[*k]),
            "alert {k:?}: attribution after waiting differs from the preloaded feed's"
        );
    }

    // Control: without the wait the same late feed attributes none of them, so the
    // wait (not the feed's timing) is what the first run shows.
    let at_once = late(None, "at_once");
    for k in &attributed {
        if let Some(a) = at_once.get(*k) {
            assert!(who(a).is_none(), "{k:?} attributed without waiting: {a}");
        }
    }
}
