//! `fixed_size_transfer` (T1030, AN0598): does one source keep sending the same amount?
//!
//! # Memory
//! A [`SizeSeries`] keeps a bounded table of [`SIZE_CLUSTERS`] size clusters (centre,
//! range, count, exact repeats, longest consecutive run, running mean/variance) and
//! overall counters: 352 bytes, no heap. A new size joins the nearest cluster within
//! the tolerance `max(abs_tol, rel_tol·size)` (defaults 32 bytes, 0.5 %: TLS adds a
//! per-record overhead that is constant to within a few tens of bytes, so equal
//! plaintext chunks give ciphertext sizes that close), the relative part only where it
//! reaches one record's overhead ([`SizeConfig::tolerance`]). When the table is full the
//! cluster with the fewest members (oldest on ties) is replaced: a size that repeats
//! holds its slot against one-off sizes, which is all a mode finder needs.
//!
//! # Gates
//! A cluster fires when it has at least `min_count` members (default 5), it is tight
//! (CV of its members ≤ `max_cluster_cv`) and either it is a large share of the series
//! (`min_share`, default 30 %: a dedicated exfiltration channel) or `min_count` of its
//! members came back to back (a chunked transfer inside busier traffic). A smaller last
//! chunk directly after a run does not break it. Sizes below `floor` (default 64 bytes:
//! keep-alives, NTP's 48-byte packets, bare ACK payloads) never count, except that for a
//! cluster within twice the floor the sub-floor sizes of at least half the floor are
//! its neighbours: they count in its share and break its runs, so that the floor's
//! position does not make a spread of sizes look like one repeated size.

use crate::time::Ts;

/// Bytes one TLS record adds to its plaintext at the least (TLS 1.3 AEAD: 5 header, 1
/// content type, 16 tag; TLS 1.2 GCM adds 29).
pub const TLS_RECORD_OVERHEAD: u32 = 22;

/// Size clusters kept per series.
pub const SIZE_CLUSTERS: usize = 8;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Cluster {
    center: u32,
    lo: u32,
    hi: u32,
    count: u32,
    exact: u32,
    /// Seconds since the series' first observation, of the last member.
    last_s: u32,
    mean: f32,
    m2: f32,
    best_run: u16,
}

/// Size tolerance and floor, fixed when the series is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeConfig {
    /// Sizes below this never count (bytes).
    pub floor: u32,
    /// Absolute tolerance (bytes).
    pub abs_tol: u32,
    /// Relative tolerance in parts per ten thousand (50 = 0.5 %).
    pub rel_tol_bp: u16,
}

impl Default for SizeConfig {
    fn default() -> Self {
        SizeConfig {
            floor: 64,
            abs_tol: 32,
            rel_tol_bp: 50,
        }
    }
}

impl SizeConfig {
    /// Largest difference from `center` that still counts as the same size. The
    /// relative part exists for TLS: equal plaintext gives equal ciphertext unless it
    /// was split into a different number of records, each adding
    /// [`TLS_RECORD_OVERHEAD`] or more; a relative tolerance below one record's overhead
    /// covers no such case and only merges neighbouring sizes (a source sending
    /// 257, 258 and 259 bytes is not sending one size), so it applies from there up.
    pub fn tolerance(&self, center: u32) -> u32 {
        let rel = (u64::from(center) * u64::from(self.rel_tol_bp) / 10_000) as u32;
        let rel = if rel >= TLS_RECORD_OVERHEAD { rel } else { 0 };
        self.abs_tol.max(rel)
    }
}

/// Thresholds for [`SizeSeries::evaluate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SizeParams {
    pub min_count: u32,
    pub min_share: f64,
    pub max_cluster_cv: f64,
}

impl Default for SizeParams {
    fn default() -> Self {
        SizeParams {
            min_count: 5,
            min_share: 0.30,
            max_cluster_cv: 0.05,
        }
    }
}

/// Streaming state for one source (host→peer, host→name, or process).
#[derive(Clone, Debug)]
pub struct SizeSeries {
    clusters: [Cluster; SIZE_CLUSTERS],
    used: u8,
    /// Cluster of the current run, `u8::MAX` for none.
    run_idx: u8,
    run_len: u16,
    /// The current run has already absorbed its one smaller last chunk.
    run_tail: bool,
    cfg: SizeConfig,
    counted: u32,
    below_floor: u32,
    /// Of those, sizes of at least half the floor (see [`SizeSeries::near_floor`]).
    near_floor: u32,
    mean: f64,
    m2: f64,
    first_seen: Ts,
    last_seen: Ts,
}

/// A firing verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct FixedSizeVerdict {
    /// The repeated size (the cluster's first member, bytes).
    pub size_bytes: u32,
    /// Smallest and largest member of the cluster.
    pub min_bytes: u32,
    pub max_bytes: u32,
    /// Members of the cluster.
    pub count: u32,
    /// Members exactly equal to `size_bytes`.
    pub exact: u32,
    /// Longest back-to-back run of members.
    pub run: u32,
    /// CV of the cluster's members.
    pub size_cv: f64,
    /// CV of every counted size of the series.
    pub series_cv: f64,
    /// count / counted sizes (plus the near-floor ones for a size near the floor).
    pub share: f64,
    /// Sizes counted (at or above the floor).
    pub total: u32,
    pub score: f64,
    pub reasons: Vec<String>,
}

impl FixedSizeVerdict {
    /// The alert contract's `cadence` object.
    pub fn cadence(&self) -> crate::analytics::AlertCadence {
        crate::analytics::AlertCadence {
            period_s: None,
            jitter: None,
            count: Some(u64::from(self.count)),
            size_bytes: Some(u64::from(self.size_bytes)),
            size_cv: Some(self.size_cv),
        }
    }
}

impl Default for SizeSeries {
    fn default() -> Self {
        Self::new(SizeConfig::default())
    }
}

impl SizeSeries {
    pub fn new(cfg: SizeConfig) -> Self {
        SizeSeries {
            clusters: [Cluster::default(); SIZE_CLUSTERS],
            used: 0,
            run_idx: u8::MAX,
            run_len: 0,
            run_tail: false,
            cfg,
            counted: 0,
            below_floor: 0,
            near_floor: 0,
            mean: 0.0,
            m2: 0.0,
            first_seen: Ts::ZERO,
            last_seen: Ts::ZERO,
        }
    }

    /// Sizes counted (at or above the floor).
    pub fn counted(&self) -> u32 {
        self.counted
    }
    /// Sizes ignored for being under the floor.
    pub fn below_floor(&self) -> u32 {
        self.below_floor
    }
    /// Sizes under the floor but at least half of it. The floor cuts through whatever
    /// sizes a source sends; for a size near the floor these are its neighbours, and the
    /// evidence must not depend on where the cut falls (see [`near_floor_cluster`]).
    pub fn near_floor(&self) -> u32 {
        self.near_floor
    }
    pub fn first_seen(&self) -> Ts {
        self.first_seen
    }
    pub fn last_seen(&self) -> Ts {
        self.last_seen
    }

    /// Feeds one outbound size (payload bytes of a connection, or of one message in a
    /// long connection). Never allocates.
    pub fn observe(&mut self, ts: Ts, bytes: u64) {
        if self.counted == 0 && self.below_floor == 0 {
            self.first_seen = ts;
        }
        self.last_seen = self.last_seen.max(ts);
        if bytes < u64::from(self.cfg.floor) {
            self.below_floor = self.below_floor.saturating_add(1);
            if bytes >= u64::from(self.cfg.floor / 2) {
                self.near_floor = self.near_floor.saturating_add(1);
                // A neighbour of a near-floor size came between: the run is broken.
                let run = self.clusters.get(self.run_idx as usize);
                if run.is_some_and(|c| near_floor_cluster(c.center, self.cfg.floor)) {
                    self.run_idx = u8::MAX;
                    self.run_len = 0;
                    self.run_tail = false;
                }
            }
            return;
        }
        let size = bytes.min(u64::from(u32::MAX)) as u32;
        self.counted = self.counted.saturating_add(1);
        let x = f64::from(size);
        let delta = x - self.mean;
        self.mean += delta / f64::from(self.counted);
        self.m2 += delta * (x - self.mean);
        let at_s = (ts.0.saturating_sub(self.first_seen.0) / 1_000_000_000)
            .clamp(0, u32::MAX as i64) as u32;

        let used = self.used as usize;
        let mut best: Option<(usize, u32)> = None;
        for (i, c) in self.clusters[..used].iter().enumerate() {
            let dist = size.abs_diff(c.center);
            if dist <= self.cfg.tolerance(c.center) && best.is_none_or(|(_, d)| dist < d) {
                best = Some((i, dist));
            }
        }
        let idx = match best {
            Some((i, _)) => i,
            None => {
                let i = if used < SIZE_CLUSTERS {
                    self.used += 1;
                    used
                } else {
                    let mut v = 0;
                    for (i, c) in self.clusters.iter().enumerate() {
                        let w = &self.clusters[v];
                        if (c.count, c.last_s) < (w.count, w.last_s) {
                            v = i;
                        }
                    }
                    v
                };
                if self.run_idx as usize == i {
                    self.run_idx = u8::MAX;
                    self.run_len = 0;
                }
                self.clusters[i] = Cluster {
                    center: size,
                    lo: size,
                    hi: size,
                    ..Cluster::default()
                };
                i
            }
        };
        // runs: consecutive members; one smaller chunk may close a run without breaking it.
        if self.run_idx as usize == idx {
            self.run_len = self.run_len.saturating_add(1);
        } else if self.run_idx != u8::MAX
            && !self.run_tail
            && size < self.clusters[self.run_idx as usize].lo
        {
            self.run_tail = true;
        } else {
            self.run_idx = idx as u8;
            self.run_len = 1;
            self.run_tail = false;
        }
        let run_len = if self.run_idx as usize == idx {
            self.run_len
        } else {
            0
        };
        let c = &mut self.clusters[idx];
        c.count = c.count.saturating_add(1);
        if size == c.center {
            c.exact = c.exact.saturating_add(1);
        }
        c.lo = c.lo.min(size);
        c.hi = c.hi.max(size);
        c.last_s = at_s;
        c.best_run = c.best_run.max(run_len);
        let x = size as f32;
        let d = x - c.mean;
        c.mean += d / c.count as f32;
        c.m2 += d * (x - c.mean);
    }

    /// The sizes a cluster at `center` is a share of: every counted size and, for a size
    /// near the floor, the sub-floor sizes next to it. A source whose sizes spread
    /// across the floor (a beacon's 220–260-byte check-ins under a 256-byte floor)
    /// otherwise shows only its top few values, and chance repeats among them look like
    /// a dedicated channel.
    fn population(&self, center: u32) -> u32 {
        if near_floor_cluster(center, self.cfg.floor) {
            self.counted.saturating_add(self.near_floor)
        } else {
            self.counted
        }
    }

    /// Judges the series; `Some` for the most repeated size that passes the gates.
    pub fn evaluate(&self, p: &SizeParams) -> Option<FixedSizeVerdict> {
        if self.counted == 0 {
            return None;
        }
        let mut best: Option<(&Cluster, f64, f64, u32)> = None;
        for c in &self.clusters[..self.used as usize] {
            if c.count < p.min_count.max(2) {
                continue;
            }
            let var = (f64::from(c.m2) / f64::from(c.count)).max(0.0);
            let cv = if c.mean > 0.0 {
                var.sqrt() / f64::from(c.mean)
            } else {
                0.0
            };
            let share = f64::from(c.count) / f64::from(self.population(c.center));
            let run = u32::from(c.best_run);
            if cv > p.max_cluster_cv || !(share >= p.min_share || run >= p.min_count) {
                continue;
            }
            if best.is_none_or(|(b, ..)| (c.count, c.exact) > (b.count, b.exact)) {
                best = Some((c, cv, share, run));
            }
        }
        let (c, size_cv, share, run) = best?;
        let series_cv = if self.mean > 0.0 {
            (self.m2 / f64::from(self.counted)).max(0.0).sqrt() / self.mean
        } else {
            0.0
        };
        let evidence = 1.0 - (-f64::from(c.count) / f64::from(p.min_count.max(1))).exp();
        let exactness = f64::from(c.exact) / f64::from(c.count);
        let score = (evidence * (0.5 + 0.25 * share.min(1.0) + 0.25 * exactness)).clamp(0.0, 1.0);
        let reasons = vec![
            format!(
                "{} transfers of {} bytes ({}..{}, {} exact), {:.0} % of {} sizes",
                c.count,
                c.center,
                c.lo,
                c.hi,
                c.exact,
                share * 100.0,
                self.population(c.center)
            ),
            format!("longest back-to-back run {run}, size CV {size_cv:.4}"),
        ];
        Some(FixedSizeVerdict {
            size_bytes: c.center,
            min_bytes: c.lo,
            max_bytes: c.hi,
            count: c.count,
            exact: c.exact,
            run,
            size_cv,
            series_cv,
            share,
            total: self.counted,
            score,
            reasons,
        })
    }
}

/// A cluster whose centre is within a factor of two of the floor: the sub-floor sizes of
/// at least half the floor are its neighbours (they dilute its share and break its runs).
/// Far above the floor (a 512 KB chunk among 200-byte polls) they are other traffic.
pub fn near_floor_cluster(center: u32, floor: u32) -> bool {
    u64::from(center) < 2 * u64::from(floor)
}
