//! Answer memory: the recent DNS answers each internal host received, bounded per host
//! (a ring of `max_answers_per_host`) and in hosts (least recently active evicted). A
//! connection check walks one host's ring, newest first, and stops at the window's edge:
//! O(answers in the window), no allocation. Only storing an answer allocates (its name).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use crate::baseline::HostBaseline;
use crate::time::{Dur, Ts};

use super::unusual::Unusual;

/// Addresses kept per answer (a CDN answer has a handful; the rest are counted).
pub const KEEP_ADDRS: usize = 8;

/// One answer as remembered for its host.
#[derive(Clone, Debug)]
pub struct Remembered {
    pub ts: Ts,
    pub query: Arc<str>,
    pub addrs: [IpAddr; KEEP_ADDRS],
    pub n_addrs: u8,
    pub ttl: u32,
    pub rcode: u16,
    pub unusual: Unusual,
}

impl Remembered {
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs[..self.n_addrs as usize]
    }
}

/// Everything kept about one internal host.
#[derive(Debug)]
pub struct HostState {
    pub answers: VecDeque<Remembered>,
    pub last_active: Ts,
    pub baseline: HostBaseline,
    /// Learned since the last save.
    pub dirty: bool,
    /// The derivation that last matched for this host and how often it did: the same
    /// formula again on a new answer is strong evidence (chance does not repeat).
    pub repeat: Option<(usize, u32)>,
}

impl HostState {
    fn new(cap: usize, now: Ts, baseline: HostBaseline) -> HostState {
        HostState {
            answers: VecDeque::with_capacity(cap),
            last_active: now,
            baseline,
            dirty: false,
            repeat: None,
        }
    }

    /// Remembers an answer; the oldest one goes when the ring is full (no reallocation).
    pub fn remember(&mut self, r: Remembered, cap: usize) {
        while self.answers.len() >= cap {
            self.answers.pop_front();
        }
        self.answers.push_back(r);
    }

    /// Answers still inside the window at `now`, newest first.
    pub fn recent(&self, now: Ts, window: Dur) -> impl Iterator<Item = &Remembered> {
        let from = now.saturating_sub(window);
        self.answers
            .iter()
            .rev()
            .skip_while(move |r| r.ts > now)
            .take_while(move |r| r.ts >= from)
    }
}

/// The hosts of one worker.
pub struct Hosts {
    pub map: HashMap<IpAddr, HostState>,
    cap: usize,
    answers_per_host: usize,
    pub evictions: u64,
    /// Evicted hosts whose baselines were not saved yet.
    pub evicted_dirty: Vec<(IpAddr, HostBaseline)>,
}

impl Hosts {
    pub fn new(cap: usize, answers_per_host: usize) -> Hosts {
        Hosts {
            map: HashMap::new(),
            cap: cap.max(1),
            answers_per_host,
            evictions: 0,
            evicted_dirty: Vec::new(),
        }
    }

    pub fn answers_per_host(&self) -> usize {
        self.answers_per_host
    }

    /// The host's state, created on first sight with `load` giving its stored baseline.
    pub fn get_or_insert(
        &mut self,
        ip: IpAddr,
        now: Ts,
        load: impl FnOnce() -> HostBaseline,
    ) -> &mut HostState {
        if !self.map.contains_key(&ip) {
            if self.map.len() >= self.cap {
                self.evict(now);
            }
            let st = HostState::new(self.answers_per_host, now, load());
            self.map.insert(ip, st);
        }
        let st = self.map.get_mut(&ip).expect("inserted above");
        st.last_active = st.last_active.max(now);
        st
    }

    /// Drops the least recently active eighth at once, so the scan is amortised over
    /// many inserts.
    fn evict(&mut self, _now: Ts) {
        let mut ages: Vec<Ts> = self.map.values().map(|s| s.last_active).collect();
        let k = (ages.len() / 8).max(1);
        let (_, &mut cut, _) = ages.select_nth_unstable(k - 1);
        let mut left = k;
        let victims: Vec<IpAddr> = self
            .map
            .iter()
            .filter(|(_, s)| s.last_active <= cut)
            .map(|(ip, _)| *ip)
            .filter(|_| {
                let take = left > 0;
                left = left.saturating_sub(1);
                take
            })
            .collect();
        for ip in victims {
            if let Some(s) = self.map.remove(&ip) {
                self.evictions += 1;
                if s.dirty {
                    self.evicted_dirty.push((ip, s.baseline));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rem(t: i64, name: &str) -> Remembered {
        Remembered {
            ts: Ts::from_secs(t),
            query: Arc::from(name),
            addrs: [IpAddr::from([1, 2, 3, 4]); KEEP_ADDRS],
            n_addrs: 1,
            ttl: 60,
            rcode: 0,
            unusual: Unusual::default(),
        }
    }

    #[test]
    fn ring_is_bounded_and_window_stops_the_walk() {
        let mut h = Hosts::new(4, 3);
        let s = h.get_or_insert(IpAddr::from([10, 0, 0, 1]), Ts::ZERO, HostBaseline::default);
        for t in 0..10 {
            s.remember(rem(t * 50, &format!("n{t}")), 3);
        }
        assert_eq!(s.answers.len(), 3);
        assert_eq!(s.answers.capacity(), 3.max(s.answers.capacity()));
        let names: Vec<&str> = s
            .recent(Ts::from_secs(460), Dur::from_secs(120))
            .map(|r| &*r.query)
            .collect();
        assert_eq!(names, vec!["n9", "n8", "n7"]);
        let names: Vec<&str> = s
            .recent(Ts::from_secs(500), Dur::from_secs(60))
            .map(|r| &*r.query)
            .collect();
        assert_eq!(names, vec!["n9"]);
    }

    #[test]
    fn evicts_least_recently_active() {
        let mut h = Hosts::new(16, 2);
        for i in 0..16u8 {
            let s = h.get_or_insert(
                IpAddr::from([10, 0, 0, i]),
                Ts::from_secs(i64::from(i)),
                HostBaseline::default,
            );
            s.dirty = i == 0;
        }
        h.get_or_insert(
            IpAddr::from([10, 0, 1, 0]),
            Ts::from_secs(100),
            HostBaseline::default,
        );
        assert_eq!(h.evictions, 2);
        assert!(!h.map.contains_key(&IpAddr::from([10, 0, 0, 0])));
        assert!(!h.map.contains_key(&IpAddr::from([10, 0, 0, 1])));
        assert!(h.map.contains_key(&IpAddr::from([10, 0, 0, 2])));
        assert_eq!(h.evicted_dirty.len(), 1);
        assert!(h.map.len() <= 16);
    }
}
