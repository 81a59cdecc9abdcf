//! Baselines: what an internal host (or a platform, when the EDR feed names it) normally
//! does on the network, learned online from the first packet and kept across restarts in
//! a [`Store`]. A baseline only ever lowers a score or marks a port as the host's own; no
//! analytic waits for one to be learned.
//!
//! Bounded: top-N ports and destination prefixes with exponentially decayed counts (the
//! weakest entry is replaced when full).

pub mod allow;
pub mod cli;
pub mod store;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::time::{Dur, Ts};

pub use allow::Allowlist;
pub use store::{BaselineKey, Store, StoreError};

/// How baselines learn and what counts as "regular".
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineParams {
    /// Counts halve over this much packet time without use.
    pub half_life: Dur,
    /// Decayed uses for a port to be regular...
    pub regular_min_count: f32,
    /// ...spread over at least this span (one burst of retries is not a habit).
    pub regular_min_span: Dur,
    pub top_ports: usize,
    pub top_dests: usize,
}

impl Default for BaselineParams {
    fn default() -> Self {
        BaselineParams {
            half_life: Dur::from_secs(3 * 86_400),
            regular_min_count: 3.0,
            regular_min_span: Dur::from_secs(1800),
            top_ports: 32,
            top_dests: 32,
        }
    }
}

/// One counted key with its decayed count as of `last`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counted<K> {
    pub key: K,
    pub count: f32,
    pub first: i64,
    pub last: i64,
}

impl<K> Counted<K> {
    pub fn count_at(&self, now: Ts, half_life: Dur) -> f32 {
        let dt = now.0.saturating_sub(self.last).max(0) as f64;
        let hl = half_life.0.max(1) as f64;
        (f64::from(self.count) * (-dt / hl).exp2()) as f32
    }
}

/// Top-N keys by decayed count. Lookups scan (N is small, the scan is cache-friendly).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopN<K> {
    pub entries: Vec<Counted<K>>,
}

impl<K: Copy + PartialEq> TopN<K> {
    pub fn get(&self, key: K) -> Option<&Counted<K>> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Counts one use; returns whether the key was new.
    pub fn observe(&mut self, key: K, now: Ts, cap: usize, half_life: Dur) -> bool {
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.count = e.count_at(now, half_life) + 1.0;
            e.last = now.0.max(e.last);
            return false;
        }
        let fresh = Counted {
            key,
            count: 1.0,
            first: now.0,
            last: now.0,
        };
        if self.entries.len() < cap {
            self.entries.push(fresh);
        } else {
            // A newcomer displaces a one-off (a key used once): habits stay, and one-offs
            // keep rotating through, stalest first. Decay only lowers a count, so a stored
            // count under 2 is a one-off without computing it (this runs per flow).
            let stalest = (self.entries.iter().enumerate())
                .filter(|(_, e)| e.count < 2.0)
                .min_by_key(|(_, e)| e.last)
                .map(|(i, _)| i);
            let weakest = stalest.or_else(|| {
                let mut w: Option<(usize, f32)> = None;
                for (i, e) in self.entries.iter().enumerate() {
                    let c = e.count_at(now, half_life);
                    if c < 2.0 && w.is_none_or(|(_, x)| c < x) {
                        w = Some((i, c));
                    }
                }
                w.map(|(i, _)| i)
            });
            if let Some(i) = weakest {
                self.entries[i] = fresh;
            }
        }
        true
    }

    /// Keeps the larger decayed count per key (merging two learners of one platform).
    pub fn merge_max(&mut self, other: &TopN<K>, now: Ts, cap: usize, half_life: Dur) {
        for o in &other.entries {
            match self.entries.iter().position(|e| e.key == o.key) {
                Some(i) => {
                    let e = &mut self.entries[i];
                    if o.count_at(now, half_life) > e.count_at(now, half_life) {
                        *e = Counted {
                            first: e.first.min(o.first),
                            ..*o
                        };
                    }
                }
                None if self.entries.len() < cap => self.entries.push(*o),
                None => {}
            }
        }
    }
}

/// Port key: `port << 8 | ip protocol`.
pub fn port_key(port: u16, proto: u8) -> u32 {
    (u32::from(port) << 8) | u32::from(proto)
}

/// Destination key: the /24 of an IPv4 address, the /48 of an IPv6 one (a provider's
/// neighbouring servers count as one destination).
pub fn dest_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => u64::from(u32::from(a) >> 8),
        IpAddr::V6(a) => (1 << 63) | (u128::from(a) >> 80) as u64,
    }
}

/// What one host (or platform) normally does.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HostBaseline {
    pub flows: u64,
    pub first_seen: i64,
    pub last_seen: i64,
    pub ports: TopN<u32>,
    pub dests: TopN<u64>,
}

impl HostBaseline {
    /// Learns one outbound connection.
    pub fn observe(&mut self, p: &BaselineParams, now: Ts, dst: IpAddr, port: u16, proto: u8) {
        if self.flows == 0 {
            self.first_seen = now.0;
        }
        self.flows += 1;
        self.last_seen = now.0.max(self.last_seen);
        self.ports
            .observe(port_key(port, proto), now, p.top_ports, p.half_life);
        self.dests
            .observe(dest_key(dst), now, p.top_dests, p.half_life);
    }

    /// The host uses this port regularly: enough decayed uses, spread over time.
    pub fn is_regular_port(&self, p: &BaselineParams, now: Ts, port: u16, proto: u8) -> bool {
        self.ports.get(port_key(port, proto)).is_some_and(|e| {
            e.count_at(now, p.half_life) >= p.regular_min_count
                && e.last.saturating_sub(e.first) >= p.regular_min_span.0
        })
    }

    /// The host has talked to this destination prefix before (at least twice).
    pub fn knows_dest(&self, p: &BaselineParams, now: Ts, dst: IpAddr) -> bool {
        self.dests
            .get(dest_key(dst))
            .is_some_and(|e| e.count_at(now, p.half_life) >= 2.0)
    }

    pub fn merge_max(&mut self, other: &HostBaseline, p: &BaselineParams, now: Ts) {
        self.flows = self.flows.max(other.flows);
        if self.first_seen == 0 || (other.first_seen != 0 && other.first_seen < self.first_seen) {
            self.first_seen = other.first_seen;
        }
        self.last_seen = self.last_seen.max(other.last_seen);
        self.ports
            .merge_max(&other.ports, now, p.top_ports, p.half_life);
        self.dests
            .merge_max(&other.dests, now, p.top_dests, p.half_life);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn regular_needs_count_and_span() {
        let p = BaselineParams::default();
        let mut b = HostBaseline::default();
        for s in [0, 10, 20, 30] {
            b.observe(&p, Ts::from_secs(s), ip("1.2.3.4"), 8443, 6);
        }
        assert!(
            !b.is_regular_port(&p, Ts::from_secs(40), 8443, 6),
            "a burst is no habit"
        );
        b.observe(&p, Ts::from_secs(4000), ip("1.2.3.4"), 8443, 6);
        assert!(b.is_regular_port(&p, Ts::from_secs(4000), 8443, 6));
        assert!(!b.is_regular_port(&p, Ts::from_secs(4000), 8443, 17));
        assert!(b.knows_dest(&p, Ts::from_secs(4000), ip("1.2.3.200")));
        // Weeks of silence decay it away.
        assert!(!b.is_regular_port(&p, Ts::from_secs(30 * 86_400), 8443, 6));
    }

    #[test]
    fn bounded_top_n_keeps_the_strong() {
        let p = BaselineParams {
            top_ports: 4,
            ..BaselineParams::default()
        };
        let mut b = HostBaseline::default();
        for i in 0..10 {
            b.observe(&p, Ts::from_secs(i), ip("1.2.3.4"), 443, 6);
        }
        for port in 20_000..20_100 {
            b.observe(&p, Ts::from_secs(100), ip("1.2.3.4"), port, 6);
        }
        assert!(b.ports.entries.len() <= 4);
        assert!(b.ports.get(port_key(443, 6)).is_some());
    }
}
