//! The analytics engine of one worker: runs every [`Detector`] on each event and keeps
//! the deduplication window of the alert contract (one alert per analytic, source,
//! destination and port per window of packet time).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::{Alert, Analytic};
use crate::config::NetSet;
use crate::decode::dns::DnsAnswer;
use crate::enrichment::{Attribution, Attributor};
use crate::flow::{FlowEvent, FlowHandle, FlowRecord};
use crate::time::{Dur, Ts};

/// What detectors may consult besides the event itself. Read-only and clock-free.
pub struct Context {
    pub home_net: NetSet,
    /// The EDR feed, when one was given.
    pub attributor: Option<Arc<dyn Attributor>>,
}

impl Context {
    /// EDR attribution of a flow (by its first packet), if the feed knows it.
    /// Inventory of an internal host (name, platform, VM) at `ts`, no process.
    pub fn host_context(&self, src: IpAddr, ts: Ts) -> Option<Attribution> {
        self.attributor.as_ref()?.host_context(src, ts)
    }

    pub fn attribute(&self, f: &FlowRecord) -> Option<Attribution> {
        let a = self.attributor.as_ref()?;
        a.attribute(
            f.proto,
            f.orig,
            f.orig_port,
            f.resp,
            f.resp_port,
            f.first_ts,
            f.orig_mac,
        )
    }
}

/// One detection. Implementations keep per-host state for the hosts of their worker,
/// bounded in memory, and push alerts; they never deduplicate (the engine does).
pub trait Detector: Send {
    fn on_dns(&mut self, _ctx: &Context, _answer: &DnsAnswer, _out: &mut Vec<Alert>) {}
    fn on_flow(&mut self, _ctx: &Context, _event: &FlowEvent, _out: &mut Vec<Alert>) {}
    /// Packet time advanced to `now` (called at batch boundaries).
    fn on_tick(&mut self, _ctx: &Context, _now: Ts, _out: &mut Vec<Alert>) {}
    /// Flow `handle` ends soon (a sweep is a few events ahead): start loading the state
    /// kept for it. A hint only: sweeps go by time, not by handle, so that state is
    /// rarely cached. (Per packet, measured: costs more than it saves.) Detectors that
    /// keep per-flow state implement it and [`Detector::keeps_flow_state`].
    fn prefetch_flow(&self, _handle: FlowHandle) {}
    /// Whether [`Detector::prefetch_flow`] does anything (asked once).
    fn keeps_flow_state(&self) -> bool {
        false
    }
    /// End of input or shutdown, after the last flows ended: persist state here, and let
    /// go of external handles (the state store): an exiting process may forget the
    /// detector afterwards instead of dropping it (see `RunOptions::exit_after`).
    fn on_finish(&mut self, _ctx: &Context) {}
}

/// Bound on remembered (analytic, src, dst, port) keys of the dedup window.
const MAX_DEDUP_KEYS: usize = 1 << 20;

pub struct Engine {
    pub ctx: Context,
    detectors: Vec<Box<dyn Detector>>,
    /// Indexes of the detectors that keep per-flow state.
    flow_state: Vec<usize>,
    window: Dur,
    last_alert: HashMap<(Analytic, IpAddr, IpAddr, u16), Ts>,
    scratch: Vec<Alert>,
    pub suppressed: u64,
}

impl Engine {
    pub fn new(ctx: Context, detectors: Vec<Box<dyn Detector>>, window: Dur) -> Engine {
        let flow_state = (0..detectors.len())
            .filter(|&i| detectors[i].keeps_flow_state())
            .collect();
        Engine {
            ctx,
            detectors,
            flow_state,
            window,
            last_alert: HashMap::new(),
            scratch: Vec::new(),
            suppressed: 0,
        }
    }

    pub fn on_dns(&mut self, a: &DnsAnswer, out: &mut Vec<Alert>) {
        for d in &mut self.detectors {
            d.on_dns(&self.ctx, a, &mut self.scratch);
        }
        self.flush(out);
    }

    pub fn on_flow(&mut self, ev: &FlowEvent, out: &mut Vec<Alert>) {
        for d in &mut self.detectors {
            d.on_flow(&self.ctx, ev, &mut self.scratch);
        }
        self.flush(out);
    }

    /// See [`Detector::prefetch_flow`].
    #[inline]
    pub fn prefetch_flow(&self, handle: FlowHandle) {
        for &i in &self.flow_state {
            self.detectors[i].prefetch_flow(handle);
        }
    }

    pub fn on_tick(&mut self, now: Ts, out: &mut Vec<Alert>) {
        for d in &mut self.detectors {
            d.on_tick(&self.ctx, now, &mut self.scratch);
        }
        self.flush(out);
        if self.last_alert.len() > MAX_DEDUP_KEYS / 2 {
            let w = self.window;
            self.last_alert.retain(|_, t| t.saturating_add(w) > now);
        }
    }

    pub fn on_finish(&mut self) {
        for d in &mut self.detectors {
            d.on_finish(&self.ctx);
        }
    }

    /// After [`Engine::on_finish`], in a process about to exit: the detectors' tables
    /// are left to the exit, unfreed (the context drops as usual).
    pub fn leave_detectors_to_exit(self) {
        std::mem::forget(self.detectors);
        std::mem::forget(self.last_alert);
    }

    /// Applies the dedup window and fills missing attribution.
    fn flush(&mut self, out: &mut Vec<Alert>) {
        for a in self.scratch.drain(..) {
            let key = (a.analytic, a.src, a.dst, a.dst_port);
            if let Some(t) = self.last_alert.get(&key) {
                if a.ts < t.saturating_add(self.window) {
                    self.suppressed += 1;
                    continue;
                }
            }
            if self.last_alert.len() < MAX_DEDUP_KEYS {
                self.last_alert.insert(key, a.ts);
            }
            let mut a = a;
            if a.attribution.is_none() {
                a.attribution = self.ctx.host_context(a.src, a.ts);
            }
            out.push(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Every;
    impl Detector for Every {
        fn on_tick(&mut self, _c: &Context, now: Ts, out: &mut Vec<Alert>) {
            out.push(Alert::new(
                Analytic::PeriodicTransfer,
                now,
                "10.0.0.1".parse().unwrap(),
                "1.1.1.1".parse().unwrap(),
                443,
            ));
        }
    }

    /// Counts the prefetch hints it gets.
    struct Stateful(Arc<std::sync::atomic::AtomicU32>);
    impl Detector for Stateful {
        fn prefetch_flow(&self, _h: FlowHandle) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fn keeps_flow_state(&self) -> bool {
            true
        }
    }

    #[test]
    fn prefetch_hints_reach_only_detectors_with_flow_state() {
        let ctx = Context {
            home_net: NetSet::default(),
            attributor: None,
        };
        let hints = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let detectors: Vec<Box<dyn Detector>> =
            vec![Box::new(Every), Box::new(Stateful(hints.clone()))];
        let e = Engine::new(ctx, detectors, Dur::from_secs(1));
        assert_eq!(e.flow_state, vec![1]);
        e.prefetch_flow(FlowHandle(3));
        e.prefetch_flow(FlowHandle::NONE);
        assert!(!e.detectors[0].keeps_flow_state());
        assert_eq!(hints.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn one_alert_per_key_per_window() {
        let ctx = Context {
            home_net: NetSet::default(),
            attributor: None,
        };
        let mut e = Engine::new(ctx, vec![Box::new(Every)], Dur::from_secs(3600));
        let mut out = Vec::new();
        for s in [0, 10, 3599, 3600, 5000, 7200] {
            e.on_tick(Ts::from_secs(s), &mut out);
        }
        let at: Vec<i64> = out.iter().map(|a| a.ts.secs()).collect();
        assert_eq!(at, vec![0, 3600, 7200]);
        assert_eq!(e.suppressed, 3);
    }
}
