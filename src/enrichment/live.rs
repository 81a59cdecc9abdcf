//! The EDR feed in `portent live`: files followed as they grow and across rotation, and
//! a short, bounded wait for attribution before an alert is written (the agent may
//! report a connection a moment after the sensor saw it).
//!
//! ```toml
//! [edr]
//! attribution_wait_s = 2   # live only: hold an alert this long for its process (0..=60)
//! poll_ms = 200            # how often followed files are checked for new lines
//! max_age_s = 21600        # network events older than this are forgotten
//! [edr.expected_users]
//! "/usr/local/bin/backupd" = ["root"]
//! ```
//!
//! Replay reads the whole feed before the capture, so it never waits.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::index::EdrIndex;
use super::reader::{follow, ingest_followed, Adapter, EdrStats, Format};
use super::Attributor;
use crate::analytics::Alert;
use crate::config::{Config, ConfigError, Section};
use crate::time::Dur;

/// The `[edr]` settings of the live command.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveEdrConfig {
    pub attribution_wait: Duration,
    pub poll: Duration,
    pub max_age: Dur,
}

impl Default for LiveEdrConfig {
    fn default() -> Self {
        LiveEdrConfig {
            attribution_wait: Duration::from_secs(2),
            poll: Duration::from_millis(200),
            max_age: Dur::from_secs(6 * 3600),
        }
    }
}

impl LiveEdrConfig {
    pub fn from_config(cfg: &Config) -> Result<LiveEdrConfig, ConfigError> {
        let mut c = LiveEdrConfig::default();
        const S: Section = Section("edr");
        let num = |k: &str, lo: f64, hi: f64| -> Result<Option<f64>, ConfigError> {
            cfg.edr.get(k).map(|v| S.num(v, k, lo, hi)).transpose()
        };
        for k in cfg.edr.keys() {
            if ![
                "attribution_wait_s",
                "poll_ms",
                "max_age_s",
                "expected_users",
            ]
            .contains(&k.as_str())
            {
                return Err(S.bad(k, "unknown key"));
            }
        }
        if let Some(x) = num("attribution_wait_s", 0.0, 60.0)? {
            c.attribution_wait = Duration::from_secs_f64(x);
        }
        if let Some(x) = num("poll_ms", 10.0, 10_000.0)? {
            c.poll = Duration::from_millis(x as u64);
        }
        if let Some(x) = num("max_age_s", 60.0, 7.0 * 86_400.0)? {
            c.max_age = Dur::from_secs_f64(x);
        }
        super::context::expected_users_from(&cfg.edr)?;
        Ok(c)
    }

    /// The index settings for a live feed: old events age out.
    pub fn index_config(&self) -> super::IndexConfig {
        super::IndexConfig {
            max_age: Some(self.max_age),
            ..super::IndexConfig::default()
        }
    }
}

/// How often counters are published while following.
const PUBLISH_EVERY: Duration = Duration::from_secs(5);

/// Follows every path (one thread each, like `tail -F`: growth, rotation by rename,
/// truncation), feeding the index until `stop` is set. Publishes the feed counters
/// (events per format, rejects per reason) and the index's attribution hit rate
/// periodically. A file that cannot be read any more is reported and retried. The
/// handle's thread ends when all followers have.
pub fn spawn_follower(
    paths: Vec<PathBuf>,
    index: Arc<EdrIndex>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    spawn_follower_with(paths, index, stop, Duration::from_millis(200))
}

/// Gets every line a follower ingests once its format is known: (feed, the line's
/// number counted across the feed's rotations, format, text). The capture tier forwards
/// them to the analytics tier with it.
pub type LineTap = Arc<dyn Fn(u16, u64, Format, &str) + Send + Sync>;

/// [`spawn_follower`] with the poll interval (`[edr] poll_ms`).
pub fn spawn_follower_with(
    paths: Vec<PathBuf>,
    index: Arc<EdrIndex>,
    stop: Arc<AtomicBool>,
    poll: Duration,
) -> JoinHandle<()> {
    spawn_follower_tapped(paths, index, stop, poll, None)
}

/// [`spawn_follower_with`], handing each ingested line to `tap` too (feed = the path's
/// position in `paths`).
pub fn spawn_follower_tapped(
    paths: Vec<PathBuf>,
    index: Arc<EdrIndex>,
    stop: Arc<AtomicBool>,
    poll: Duration,
    tap: Option<LineTap>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("edr-follow".into())
        .spawn(move || {
            let mut handles = Vec::new();
            for (feed, p) in paths.into_iter().enumerate() {
                let (index, stop, tap) = (index.clone(), stop.clone(), tap.clone());
                let tap = tap.map(|t| (feed as u16, t));
                let h = std::thread::Builder::new()
                    .name("edr-tail".into())
                    .spawn(move || follow_one(&p, &index, &stop, poll, tap));
                match h {
                    Ok(h) => handles.push(h),
                    Err(e) => eprintln!("portent: cannot start EDR follower: {e}"),
                }
            }
            while !stop.load(Ordering::Relaxed) && handles.iter().any(|h| !h.is_finished()) {
                index.publish();
                std::thread::sleep(poll.max(Duration::from_millis(50)).min(PUBLISH_EVERY));
            }
            for h in handles {
                let _ = h.join();
            }
            index.publish();
        })
        .expect("spawning a thread")
}

fn follow_one(
    path: &std::path::Path,
    index: &EdrIndex,
    stop: &AtomicBool,
    poll: Duration,
    tap: Option<(u16, LineTap)>,
) {
    let mut stats = EdrStats::default();
    let mut warned = std::collections::BTreeSet::new();
    // Lines handed to the tap, across rotations and restarts.
    let mut tapped = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut adapter = Adapter::detecting();
        let mut generation = 0;
        let mut last_publish = Instant::now();
        let r = follow(path, poll, stop, |line| {
            if line.generation != generation {
                // Rotated or truncated: the new file may be in another format.
                generation = line.generation;
                adapter = Adapter::detecting();
            }
            ingest_followed(&mut adapter, &line, index, &mut stats);
            if let (Some((feed, tap)), Some(format)) = (&tap, adapter.format()) {
                // Lines before the format was known were rejected; so they are upstream.
                if let Ok(text) = std::str::from_utf8(line.bytes) {
                    if !line.too_long && !text.trim().is_empty() {
                        tapped += 1;
                        tap(*feed, tapped, format, text);
                    }
                }
            }
            for (reason, first) in &stats.first_rejected {
                if warned.insert(*reason) {
                    eprintln!(
                        "portent: warning: {}: EDR line(s) skipped ({}), first at line {}: {}",
                        path.display(),
                        reason.label(),
                        first.line,
                        first.detail
                    );
                }
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                stats.publish();
                last_publish = Instant::now();
            }
        });
        stats.publish();
        if let Err(e) = r {
            eprintln!("portent: warning: EDR feed {e}; retrying");
            std::thread::sleep(poll.max(Duration::from_secs(1)));
        }
    }
}

/// Alerts held until their flow's process is known or their wait is over (live only).
/// Bounded: beyond `max` held alerts the oldest is released as it is.
pub struct PendingAlerts {
    wait: Duration,
    max: usize,
    held: VecDeque<(Instant, Alert)>,
}

impl PendingAlerts {
    pub fn new(wait: Duration, max: usize) -> PendingAlerts {
        PendingAlerts {
            wait,
            max: max.max(1),
            held: VecDeque::new(),
        }
    }

    fn has_process(a: &Alert) -> bool {
        a.attribution.as_ref().is_some_and(|x| x.process.is_some())
    }

    /// Takes an alert: returned at once when it already has its process (or waiting is
    /// off), held otherwise.
    pub fn push(&mut self, a: Alert, now: Instant, out: &mut Vec<Alert>) {
        if self.wait.is_zero() || Self::has_process(&a) {
            out.push(a);
            return;
        }
        if self.held.len() >= self.max {
            if let Some((_, old)) = self.held.pop_front() {
                out.push(old);
            }
        }
        self.held.push_back((now + self.wait, a));
    }

    /// Retries the held alerts against the feed; releases those now attributed and
    /// those whose wait is over, in arrival order.
    pub fn poll(&mut self, attributor: &dyn Attributor, now: Instant, out: &mut Vec<Alert>) {
        let mut keep = VecDeque::with_capacity(self.held.len());
        for (deadline, mut a) in self.held.drain(..) {
            // The alert's time is its (last) flow's first packet for flow-completed
            // detections; the join tolerance absorbs the rest.
            if let Some(x) =
                attributor.attribute(a.proto, a.src, a.src_port, a.dst, a.dst_port, a.ts, None)
            {
                if x.process.is_some() {
                    a.attribution = Some(x);
                    out.push(a);
                    continue;
                }
            }
            if now >= deadline {
                out.push(a);
            } else {
                keep.push_back((deadline, a));
            }
        }
        self.held = keep;
    }

    /// Everything held, as it is (shutdown).
    pub fn drain(&mut self, out: &mut Vec<Alert>) {
        out.extend(self.held.drain(..).map(|(_, a)| a));
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::Analytic;
    use crate::time::Ts;
    use std::io::Write;

    const NET: &str = r#"{"@timestamp":"2026-11-20T10:00:01Z","event":{"category":"network"},"host":{"name":"mac-17"},"process":{"pid":4242,"name":"updater"},"source":{"ip":"10.1.0.17","port":50123},"destination":{"ip":"71.63.201.9","port":18239},"network":{"transport":"tcp"}}"#;

    fn alert() -> Alert {
        let mut a = Alert::new(
            Analytic::DnsCalculatedPort,
            Ts::parse_rfc3339("2026-11-20T10:00:02Z").unwrap(),
            "10.1.0.17".parse().unwrap(),
            "71.63.201.9".parse().unwrap(),
            18239,
        );
        a.src_port = 50123;
        a
    }

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn follower_reads_growth_and_rotation_and_alerts_wait() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edr.jsonl");
        std::fs::write(&p, "not json\n").unwrap();
        let index = Arc::new(EdrIndex::default());
        let stop = Arc::new(AtomicBool::new(false));
        let h = spawn_follower_with(
            vec![p.clone()],
            index.clone(),
            stop.clone(),
            Duration::from_millis(10),
        );
        let mut pending = PendingAlerts::new(Duration::from_secs(30), 16);
        let mut out = Vec::new();
        pending.push(alert(), Instant::now(), &mut out);
        assert!(out.is_empty());
        assert_eq!(pending.len(), 1);
        // The agent reports the connection after the sensor saw it.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        writeln!(f, "{NET}").unwrap();
        drop(f);
        assert!(wait_for(|| {
            pending.poll(index.as_ref(), Instant::now(), &mut out);
            !out.is_empty()
        }));
        let at = out[0].attribution.as_ref().unwrap();
        assert_eq!(
            at.process.as_ref().unwrap().name.as_deref(),
            Some("updater")
        );
        // Rotation by rename: the new file is read from its start.
        std::fs::rename(&p, dir.path().join("edr.jsonl.1")).unwrap();
        std::fs::write(&p, NET.replace("50123", "50999") + "\n").unwrap();
        assert!(wait_for(|| index
            .attribute(
                6,
                "10.1.0.17".parse().unwrap(),
                50999,
                "71.63.201.9".parse().unwrap(),
                18239,
                Ts::parse_rfc3339("2026-11-20T10:00:01Z").unwrap()
            )
            .is_some()));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
        assert!(index.lookup_stats().lookups >= 2);
        assert!(index.lookup_stats().process_hits >= 2);
    }

    #[test]
    fn unattributed_alert_is_released_after_its_wait() {
        let index = EdrIndex::default();
        let mut pending = PendingAlerts::new(Duration::from_millis(1), 16);
        let mut out = Vec::new();
        let t0 = Instant::now();
        pending.push(alert(), t0, &mut out);
        pending.poll(&index, t0, &mut out);
        assert!(out.is_empty());
        pending.poll(&index, t0 + Duration::from_millis(5), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].attribution.is_none());
        let mut off = PendingAlerts::new(Duration::ZERO, 16);
        off.push(alert(), t0, &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn edr_section_parses() {
        let c = Config::from_toml("[edr]\nattribution_wait_s = 0.5\n", "t").unwrap();
        let l = LiveEdrConfig::from_config(&c).unwrap();
        assert_eq!(l.attribution_wait, Duration::from_millis(500));
        let c = Config::from_toml("[edr]\nattribution_wait_s = 600\n", "t").unwrap();
        assert!(LiveEdrConfig::from_config(&c).is_err());
        let c = Config::from_toml("[edr]\nwait = 1\n", "t").unwrap();
        assert!(LiveEdrConfig::from_config(&c).is_err());
    }
}
