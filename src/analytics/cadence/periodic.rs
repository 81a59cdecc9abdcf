//! `periodic_transfer` (T1029, AN1115): is one group's connection schedule periodic?
//!
//! # Memory
//! A [`PeriodicSeries`] keeps the last [`PERIODIC_CAPACITY`] inter-beat intervals as `u32`
//! milliseconds in a ring (intervals up to 49 days; longer ones saturate), plus the time of
//! the latest beat and a few counters: 296 bytes, fixed, no heap. A ring of exact recent
//! intervals was chosen over an interval histogram because (a) the missed-beat fold needs
//! exact values (a beat that bridged two periods at 40 % jitter lies anywhere in
//! 1.2..2.8 P, a log-binned histogram blurs that into its neighbours), (b) the
//! estimate then follows the *current* behaviour of the group (a new schedule replaces
//! the old one after 64 beats) and (c) 64 intervals are already ample evidence (no
//! false alarm in 4 000 Poisson series of 64 beats, ≥ 99 % recall at 40 % jitter and
//! 10 % missed beats, see `compare::min_beats_study`), so longer history would buy
//! nothing but bytes.
//!
//! # Method
//! 1. Connections less than `burst` (default 2 s) after the start of the current beat
//!    belong to that beat (a check-in may be DNS + several TCP connections).
//! 2. Candidate period: every kept interval (and the medians of the densest ratio
//!    windows) is scored by a kernel over the intervals it folds onto its grid, in a
//!    window of 2/3 `tol` (so doubles cannot pass for slow singles), minus one point
//!    per beat it has to invent. Each interval `d` folds to `k = round(d/P)` beats
//!    (k ≤ `max_multiple`, within `tol·P·√k`), so missed beats do not break the fit.
//! 3. Refinement: `P` becomes the median of the folded `d/k`, first in the narrow
//!    window, then in the full one (the kernel finds the densest spot, which under wide
//!    uniform jitter is wherever noise piled up), as long as no beat is lost.
//!    If that grid is implausible (it explains less than `min_fit` of the intervals
//!    or invents more than `max_missed` of its beats), the longer candidates are tried
//!    and the plausible one with the most beats explained net of beats invented
//!    replaces it (ties to the longer), refined as above: under ±40 % jitter a slow schedule's
//!    few intervals can pull the kernel onto ~0.7 P, where the upper half of the singles
//!    fold as doubles with a missed beat each. The evidence below then counts two
//!    hypotheses (Bonferroni ×2).
//! 4. Evidence: for window widths `tol × {1, ½, ¼, 1/10}`, with and without multiples,
//!    the count of intervals on the grid is compared with the most that random (Poisson,
//!    any rate) arrivals could put there: e.g. at most ≈ 34 % of exponential intervals
//!    fall in any `[0.55 P, 1.45 P]`, more for dense traffic because of the burst dead
//!    time ([`null_hit`], plus `null_margin` 0.06 for having chosen P to fit).
//!    `significance = max -log10 (8 · P(Binomial(n, p0) >= hits))` (Bonferroni over the
//!    8 tests): tight schedules prove themselves in a few beats, 40 % jitter needs more.
//!    Random spacing bounded above (`sleep(rand() · T)`) is far more regular than
//!    Poisson, so the evidence must also show a peak: the same windows against the band
//!    below them, `[burst, P·(1 − tol))`, which such spacing fills as densely as the
//!    window and a schedule leaves to strays ([`PeriodicStats::peak_significance`]).
//!    The significance is the smaller of the two.
//! 5. Gates: beats, period range, significance (raised by `log10` of the number of
//!    disjoint windows a long-lived series has been judged on), fraction explained by
//!    the grid, fraction of missed beats, jitter (MAD/median of every interval over
//!    its nearest multiple of P, gaps beyond `max_multiple` aside).
//!
//! Cost of `evaluate`: one sort of ≤ 64 values, ~70 candidates × 64 folds, 8 binomial
//! tails and ~1 200 `exp` for the null; all on the stack. Call it on
//! [`Observed::NewBeat`], not on every connection.

use crate::time::{Dur, Ts};

use super::stats;

/// Intervals kept per series (beats kept = this + 1).
pub const PERIODIC_CAPACITY: usize = 64;

const NS_PER_MS: i64 = 1_000_000;

/// What one observation did to the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Started a new beat: the moment to (re)evaluate.
    NewBeat,
    /// Collapsed into the current beat (same burst).
    SameBeat,
    /// Earlier than the current beat by more than the burst window: ignored.
    Late,
}

/// Streaming state for one group (host, peer, port, transport / host, name / process).
#[derive(Clone, Debug)]
pub struct PeriodicSeries {
    ivals_ms: [u32; PERIODIC_CAPACITY],
    head: u8,
    len: u8,
    burst_ms: u32,
    first_seen: Ts,
    last_beat: Ts,
    beats: u32,
    connections: u32,
    late: u32,
}

impl Default for PeriodicSeries {
    fn default() -> Self {
        Self::new()
    }
}

/// Thresholds for [`PeriodicSeries::evaluate`]. Defaults follow the brief: periods 10 s to
/// 1 h (raise `max_period_s` to 86 400 for daily jobs), jitter up to 40 %, up to 10 %
/// missed beats. The range is of nominal sleeps: the period gate lets the estimate fall
/// `tolerance / 2` below it and `tolerance` above it (see `evaluate`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeriodicParams {
    pub min_period_s: f64,
    pub max_period_s: f64,
    /// Half-width of the on-beat window relative to the period (0.45 admits 40 % jitter).
    pub tolerance: f64,
    /// Longest run of beats one interval may bridge (2 = one missed beat in a row).
    pub max_multiple: u32,
    /// Minimum beats (connections after burst collapse) in evidence. Measured by
    /// `compare::min_beats_study` (4 000 series each, test `min_beats_is_measured`):
    /// with the other gates at default, series of 8 / 10 / 12 / 16 / 20 / 32 beats fire
    /// on a beacon with 40 % uniform jitter and 10 % missed beats 3 / 9 / 25 / 63 / 91 /
    /// 99 % of the time, and on Poisson arrivals never (0 of 4 000 at every count; before
    /// the peak test 0.15 / 0.10 / 0.05 / 0.03 / 0.03 / 0 %, which set 12 as the smallest
    /// count under 1e-3). Schedules with less jitter are caught right at 12.
    pub min_beats: u32,
    /// Required `-log10` of the chance that random arrivals fit the grid as well, for one
    /// look; raised by `log10(beats seen / intervals kept)` for a long-lived series that
    /// has been evaluated at every beat (sequential-testing correction).
    pub min_significance: f64,
    /// Floor of the null probability that a random interval lands on the grid.
    pub null_floor: f64,
    /// Added to the computed null probability (the period was chosen to fit the data).
    pub null_margin: f64,
    /// Fraction of intervals the grid must explain (on beat or bridging missed beats).
    pub min_fit: f64,
    /// Largest fraction of expected beats that may be missing.
    pub max_missed: f64,
    /// Largest jitter (MAD / median of the intervals over their nearest multiple of the
    /// period; ±40 % uniform jitter gives 0.2, uniform spacing over 0..T gives 0.5).
    pub max_jitter: f64,
}

impl Default for PeriodicParams {
    fn default() -> Self {
        PeriodicParams {
            min_period_s: 10.0,
            max_period_s: 3600.0,
            tolerance: 0.45,
            max_multiple: 3,
            min_beats: 12,
            min_significance: 2.0,
            null_floor: 0.0,
            null_margin: 0.06,
            min_fit: 0.75,
            max_missed: 0.25,
            max_jitter: 0.30,
        }
    }
}

/// Everything the analysis measured, firing or not: for baselines and allowlists
/// (e.g. "this agent always beats at 3600 s ± 2 %").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeriodicStats {
    /// Estimated period (median of folded intervals), seconds.
    pub period_s: f64,
    /// MAD / median of the intervals over their nearest multiple of the period
    /// (0 = metronome, 0.2 = uniform ±40 %).
    pub jitter: f64,
    /// Beats in the evidence window (intervals + 1).
    pub count: u32,
    pub intervals: u32,
    /// Intervals within `tolerance` of one period.
    pub on_beat: u32,
    /// Intervals bridging 2..=max_multiple periods.
    pub multiples: u32,
    /// Beats those bridging intervals skipped.
    pub missed_beats: u32,
    /// Intervals shorter than one period (extra beats) or longer than `max_multiple`.
    pub short: u32,
    pub long: u32,
    /// (on_beat + multiples) / intervals.
    pub fit: f64,
    /// missed_beats / (beats the grid expects).
    pub missed_fraction: f64,
    /// -log10 of the chance that random arrivals fit the grid this well (Bonferroni-
    /// corrected over the widths tried), capped at 30: the smaller of the evidence
    /// against Poisson arrivals and [`peak_significance`](Self::peak_significance).
    pub significance: f64,
    /// -log10 of the chance that intervals spread evenly over the window and the band
    /// below it (random spacing bounded above) crowd the window this much.
    pub peak_significance: f64,
    /// Raw interval statistics (no folding), seconds.
    pub median_s: f64,
    pub mad_s: f64,
    pub q1_s: f64,
    pub q3_s: f64,
    /// Bowley skew of the raw intervals.
    pub skew: f64,
    pub first_seen: Ts,
    pub last_beat: Ts,
    /// Lifetime counters.
    pub beats_total: u32,
    pub connections_total: u32,
}

/// A firing verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct PeriodicVerdict {
    pub period_s: f64,
    pub jitter: f64,
    pub count: u32,
    pub missed_beats: u32,
    /// 0..1: fit × (evidence + regularity) / 2.
    pub score: f64,
    pub reasons: Vec<String>,
    pub stats: PeriodicStats,
}

impl PeriodicVerdict {
    /// The alert contract's `cadence` object.
    pub fn cadence(&self) -> crate::analytics::AlertCadence {
        crate::analytics::AlertCadence {
            period_s: Some(self.period_s),
            jitter: Some(self.jitter),
            count: Some(u64::from(self.stats.connections_total)),
            size_bytes: None,
            size_cv: None,
        }
    }
}

impl PeriodicSeries {
    /// Empty series; beats are connections more than 2 s apart.
    pub fn new() -> Self {
        Self::with_burst(Dur::from_secs(2))
    }

    /// Empty series with a custom burst window (clamped to 0..=1 h).
    pub fn with_burst(burst: Dur) -> Self {
        PeriodicSeries {
            ivals_ms: [0; PERIODIC_CAPACITY],
            head: 0,
            len: 0,
            burst_ms: (burst.0 / NS_PER_MS).clamp(0, 3_600_000) as u32,
            first_seen: Ts::ZERO,
            last_beat: Ts::ZERO,
            beats: 0,
            connections: 0,
            late: 0,
        }
    }

    /// Feeds one connection start time. Never allocates. Times should arrive in order;
    /// a time earlier than the current beat is folded into it if within the burst window
    /// and otherwise ignored (counted in [`late`](Self::late)).
    pub fn observe(&mut self, ts: Ts) -> Observed {
        self.connections = self.connections.saturating_add(1);
        if self.beats == 0 {
            self.first_seen = ts;
            self.last_beat = ts;
            self.beats = 1;
            return Observed::NewBeat;
        }
        let burst_ns = i64::from(self.burst_ms) * NS_PER_MS;
        let d = ts.0.saturating_sub(self.last_beat.0);
        if d < 0 {
            if d.saturating_neg() <= burst_ns {
                return Observed::SameBeat;
            }
            self.late = self.late.saturating_add(1);
            return Observed::Late;
        }
        if d < burst_ns || d == 0 {
            return Observed::SameBeat;
        }
        let ms = (d / NS_PER_MS).clamp(1, i64::from(u32::MAX)) as u32;
        self.ivals_ms[self.head as usize] = ms;
        self.head = ((self.head as usize + 1) % PERIODIC_CAPACITY) as u8;
        if (self.len as usize) < PERIODIC_CAPACITY {
            self.len += 1;
        }
        self.last_beat = ts;
        self.beats = self.beats.saturating_add(1);
        Observed::NewBeat
    }

    /// Beats seen so far (lifetime).
    pub fn beats(&self) -> u32 {
        self.beats
    }
    /// Connections seen so far (lifetime, including collapsed and late ones).
    pub fn connections(&self) -> u32 {
        self.connections
    }
    /// Observations ignored for arriving out of order.
    pub fn late(&self) -> u32 {
        self.late
    }
    pub fn first_seen(&self) -> Ts {
        self.first_seen
    }
    pub fn last_beat(&self) -> Ts {
        self.last_beat
    }

    /// The kept intervals, oldest first, in seconds.
    pub fn intervals_s(&self) -> impl Iterator<Item = f64> + '_ {
        let n = self.len as usize;
        let start = (self.head as usize + PERIODIC_CAPACITY - n) % PERIODIC_CAPACITY;
        (0..n).map(move |i| self.ivals_ms[(start + i) % PERIODIC_CAPACITY] as f64 / 1e3)
    }

    /// Measures the series without judging it; `None` with fewer than 3 intervals.
    pub fn analyze(&self, p: &PeriodicParams) -> Option<PeriodicStats> {
        let n = self.len as usize;
        if n < 3 {
            return None;
        }
        let mut sorted = [0.0f64; PERIODIC_CAPACITY];
        for (slot, v) in sorted.iter_mut().zip(self.intervals_s()) {
            *slot = v;
        }
        let s = &mut sorted[..n];
        stats::sort(s);
        let s: &[f64] = s;
        let median_s = stats::median_sorted(s)?;
        let mad_s = stats::mad_sorted(s)?;
        let (q1_s, _, q3_s) = stats::quartiles_sorted(s)?;
        let skew = stats::bowley(q1_s, median_s, q3_s, 0.0);

        let tol = p.tolerance.clamp(0.01, 0.9);
        let kmax = p.max_multiple.max(1);
        // 2. candidates: every kept interval and the densest windows' medians, scored by
        //    a kernel over the folded residuals in a narrower window (2/3 of `tol`, so
        //    that doubles cannot pass for slow singles) minus a point per beat the
        //    candidate has to invent.
        let est = tol * 2.0 / 3.0;
        let mut best: Option<(f64, f64)> = None;
        let windows = [
            densest_window(s, tol),
            densest_window(s, tol * 0.5),
            densest_window(s, tol * 0.25),
        ];
        for cand in s.iter().copied().chain(windows.into_iter().flatten()) {
            let v = kernel_score(s, cand, est, kmax, median_s);
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((cand, v));
            }
        }
        let (period, val) = best?;
        // 3. refine: the median of the folded intervals, while that fits at least as well.
        let (period, _) = recentre(s, period, est, kmax, val, |q, v| {
            let nv = kernel_score(s, q, est, kmax, median_s);
            (nv >= *v).then_some(nv)
        });
        // The kernel seeks the densest spot, which under wide uniform jitter is wherever
        // noise piled up; centre the estimate on all the on-grid intervals instead (the
        // median of the folded intervals in the full window), while no beat is lost.
        let start = score_candidate(s, period, tol, kmax);
        let (mut period, mut sc) = recentre(s, period, tol, kmax, start, |q, sc| {
            let nsc = score_candidate(s, q, tol, kmax);
            (nsc.net() >= sc.net()).then_some(nsc)
        });
        // 3b. a lock onto a fraction of the period: under heavy jitter the kernel can
        //     settle near 0.7 P, where the upper half of the singles fold as doubles and
        //     the grid has to invent a beat for each. When the estimate invents more
        //     beats than `max_missed` allows (or explains too little), look among the
        //     longer candidates for one that explains the intervals without that.
        let mut looks = 1.0;
        if !plausible(&sc, n, p) {
            if let Some((q, qsc)) = longer_candidate(s, period, tol, kmax, p, &windows) {
                period = q;
                sc = qsc;
                // A second hypothesis was tested: Bonferroni over both.
                looks = 2.0;
            }
        }
        // Jitter over every interval, each divided by its nearest multiple of the period
        // (not only those inside the on-beat window: cutting the spread at the window
        // made any random spacing bounded above look like a ±45 % schedule).
        let mut folded = [0.0f64; PERIODIC_CAPACITY];
        let m = fold_nearest(s, period, kmax, &mut folded);
        let jitter = match (
            stats::median_sorted(&folded[..m]),
            stats::mad_sorted(&folded[..m]),
        ) {
            (Some(med), Some(mad)) if med > 0.0 => (mad / med).min(1.0),
            _ => 1.0,
        };
        let Score {
            on,
            multi,
            missed,
            short,
            long,
            ..
        } = sc;
        let nn = n as u32;
        let fit = f64::from(on + multi) / n as f64;
        let expected = on + multi + missed;
        let missed_fraction = if expected == 0 {
            1.0
        } else {
            f64::from(missed) / f64::from(expected)
        };
        // 4. evidence, scanned over window widths (Bonferroni over the widths).
        let burst_s = f64::from(self.burst_ms) / 1e3;
        let mut significance: f64 = 0.0;
        let tests = (SIG_WIDTHS.len() * 2) as f64 * looks;
        for w in SIG_WIDTHS {
            let t = tol * w;
            for kk in [1, kmax] {
                let hits = s
                    .iter()
                    .filter(|&&d| fold(d, period, t, kk).is_some())
                    .count() as u32;
                let p0 =
                    (null_hit(period, t, kk, burst_s) + p.null_margin).clamp(p.null_floor, 0.99);
                let tail = (stats::binomial_tail(nn, hits, p0) * tests).min(1.0);
                let sig = if tail <= 0.0 { 30.0 } else { -tail.log10() };
                significance = significance.max(sig.min(30.0));
            }
        }
        // 4b. a peak, not a plateau: random spacing bounded above (a `sleep(rand() · T)`
        //     loop) puts as many intervals just below the window as in it, where a
        //     schedule leaves only strays.
        let peak_significance = peak_significance(s, period, tol, burst_s, looks);
        let significance = significance.min(peak_significance);
        Some(PeriodicStats {
            period_s: period,
            jitter,
            count: nn + 1,
            intervals: nn,
            on_beat: on,
            multiples: multi,
            missed_beats: missed,
            short,
            long,
            fit,
            missed_fraction,
            significance,
            peak_significance,
            median_s,
            mad_s,
            q1_s,
            q3_s,
            skew,
            first_seen: self.first_seen,
            last_beat: self.last_beat,
            beats_total: self.beats,
            connections_total: self.connections,
        })
    }

    /// How far the series clears the significance gate of [`evaluate`](Self::evaluate)
    /// (`significance − required`, in decades) when every other gate passes; `None` when
    /// one of them fails. `evaluate` fires exactly when this is `Some(m)` with `m ≥ 0`:
    /// the one knob that trades recall for false alarms, used to compare detectors at a
    /// matched false-alarm rate (`compare`).
    pub fn significance_margin(&self, p: &PeriodicParams) -> Option<f64> {
        self.gated(p).map(|(_, margin)| margin)
    }

    /// The gates of `evaluate` other than significance; the stats and the margin.
    fn gated(&self, p: &PeriodicParams) -> Option<(PeriodicStats, f64)> {
        if self.beats < p.min_beats.max(4) || (self.len as u32) + 1 < p.min_beats {
            return None;
        }
        let st = self.analyze(p)?;
        // Sequential looks: a long-lived series is evaluated at every beat; windows of
        // `intervals` beats are roughly independent, so correct for their number.
        let looks = (f64::from(st.beats_total) / f64::from(st.intervals.max(1))).max(1.0);
        let required = p.min_significance + looks.log10();
        // The range is of nominal periods (the sleep a beacon is configured with). Jitter
        // moves the centre of the intervals: down by up to tol/2 when it shortens sleeps
        // (Cobalt Strike), up by up to tol/2 when it adds to them (Sliver, Mythic). Slow
        // schedules give the fewest intervals a day, so their estimate spreads most: the
        // upper bound allows the whole tolerance.
        let tol = p.tolerance.clamp(0.0, 0.9);
        let pass = st.period_s >= p.min_period_s * (1.0 - tol / 2.0)
            && st.period_s <= p.max_period_s * (1.0 + tol)
            && st.fit >= p.min_fit
            && st.missed_fraction <= p.max_missed
            && st.jitter <= p.max_jitter;
        pass.then_some((st, st.significance - required))
    }

    /// Judges the series; `Some` only when every gate in `p` passes. Allocates only for
    /// the reasons of a firing verdict.
    pub fn evaluate(&self, p: &PeriodicParams) -> Option<PeriodicVerdict> {
        let (st, margin) = self.gated(p)?;
        if margin.is_nan() || margin < 0.0 {
            return None;
        }
        let evidence = (st.significance / (2.0 * p.min_significance.max(0.5))).min(1.0);
        let regularity = (1.0 - st.jitter / 0.5).clamp(0.0, 1.0) * (1.0 - st.missed_fraction);
        let score = (st.fit * (evidence + regularity) / 2.0).clamp(0.0, 1.0);
        let reasons = vec![
            format!(
                "beats every {:.1} s (jitter {:.0} % MAD/median) over the last {} beats",
                st.period_s,
                st.jitter * 100.0,
                st.count
            ),
            format!(
                "{}/{} intervals on beat, {} bridging {} missed beats, {} off-grid",
                st.on_beat,
                st.intervals,
                st.multiples,
                st.missed_beats,
                st.short + st.long
            ),
            format!(
                "chance of random arrivals fitting as well: 1e-{:.1}",
                st.significance
            ),
        ];
        Some(PeriodicVerdict {
            period_s: st.period_s,
            jitter: st.jitter,
            count: st.count,
            missed_beats: st.missed_beats,
            score,
            reasons,
            stats: st,
        })
    }
}

/// Evidence that the intervals peak on the period rather than spread evenly below it:
/// for each width of [`SIG_WIDTHS`], the single intervals within `tol·w·P` of `P` against
/// those in the band below the widest window, `[burst, P·(1 − tol))`. Were the density
/// flat over both, each of those intervals would fall in the window with probability
/// width / (width + band): flat is the worst case of random spacing bounded above (a
/// floor on the spacing empties the band and makes it a jittered schedule). `-log10` of
/// the binomial tail, Bonferroni over the widths and the hypotheses tried (`looks`),
/// capped at 30. (No `null_margin` here: it cost 17 of 256 hourly beacons with 40 %
/// jitter and 10 % missed beats their day's detection.) Intervals of random spacing bounded
/// above (uniform on `0..T`) are flat there and fail; a schedule's band holds only
/// strays. With no band (P·(1 − tol) ≤ burst) there is nothing to compare: 30.
fn peak_significance(s: &[f64], period: f64, tol: f64, burst: f64, looks: f64) -> f64 {
    let band_hi = period * (1.0 - tol);
    let band = band_hi - burst.max(0.0);
    if !positive(period) || !positive(band) {
        return 30.0;
    }
    let in_band = s.iter().filter(|&&d| d >= burst && d < band_hi).count() as u32;
    let tests = SIG_WIDTHS.len() as f64 * looks;
    let mut best: f64 = 0.0;
    for w in SIG_WIDTHS {
        let half = tol * w * period;
        let hits = s.iter().filter(|&&d| (d - period).abs() <= half).count() as u32;
        let p0 = (2.0 * half) / (2.0 * half + band);
        let tail = (stats::binomial_tail(hits + in_band, hits, p0) * tests).min(1.0);
        let sig = if tail <= 0.0 { 30.0 } else { -tail.log10() };
        best = best.max(sig.min(30.0));
    }
    best
}

/// Window widths (fractions of `tolerance`) the significance scan tries.
const SIG_WIDTHS: [f64; 4] = [1.0, 0.5, 0.25, 0.1];

/// How well one candidate period explains the intervals.
#[derive(Clone, Copy, Debug)]
struct Score {
    on: u32,
    multi: u32,
    missed: u32,
    short: u32,
    long: u32,
    /// Sum of |d/k - P| / P over the folded intervals.
    residual: f64,
}

impl Score {
    /// Beats explained net of the beats invented.
    fn net(&self) -> i64 {
        i64::from(self.on) + i64::from(self.multi) - i64::from(self.missed)
    }
}

fn score_candidate(s: &[f64], period: f64, tol: f64, kmax: u32) -> Score {
    let mut sc = Score {
        on: 0,
        multi: 0,
        missed: 0,
        short: 0,
        long: 0,
        residual: 0.0,
    };
    for &d in s {
        match fold(d, period, tol, kmax) {
            Some(k) => {
                sc.residual += (d / f64::from(k) - period).abs() / period;
                if k == 1 {
                    sc.on += 1;
                } else {
                    sc.multi += 1;
                    sc.missed += k - 1;
                }
            }
            None if d < period => sc.short += 1,
            None => sc.long += 1,
        }
    }
    sc
}

/// The grid explains at least `min_fit` of the intervals and invents at most
/// `max_missed` of the beats it expects: what the gates of `evaluate` require.
fn plausible(sc: &Score, n: usize, p: &PeriodicParams) -> bool {
    let fit = f64::from(sc.on + sc.multi) / n.max(1) as f64;
    let expected = sc.on + sc.multi + sc.missed;
    expected > 0 && fit >= p.min_fit && f64::from(sc.missed) <= p.max_missed * f64::from(expected)
}

/// For an implausible estimate `period` (see [`plausible`]): among the candidates longer
/// than it (kept intervals and densest windows), the plausible one that explains the
/// most beats net of the beats it invents (ties to the longer period), then centred on
/// the median of its folded intervals while that explains as much. `None` if no longer
/// candidate is plausible. Only longer ones: the failure this mends is a lock onto a
/// fraction of the period; a shorter grid explains the same intervals only by inventing
/// beats. Cost: one fold pass per candidate, one refinement (called only when the
/// primary estimate failed).
fn longer_candidate(
    s: &[f64],
    period: f64,
    tol: f64,
    kmax: u32,
    p: &PeriodicParams,
    windows: &[Option<f64>],
) -> Option<(f64, Score)> {
    let mut best: Option<(f64, Score)> = None;
    for cand in s.iter().copied().chain(windows.iter().copied().flatten()) {
        if cand <= period * (1.0 + tol / 2.0) {
            continue;
        }
        let sc = score_candidate(s, cand, tol, kmax);
        if !plausible(&sc, s.len(), p) {
            continue;
        }
        let better = match best {
            None => true,
            Some((bq, bs)) => sc.net() > bs.net() || (sc.net() == bs.net() && cand > bq),
        };
        if better {
            best = Some((cand, sc));
        }
    }
    let (q, sc) = best?;
    let (q, sc) = recentre(s, q, tol, kmax, sc, |q, sc| {
        let nsc = score_candidate(s, q, tol, kmax);
        (nsc.net() >= sc.net() && plausible(&nsc, s.len(), p)).then_some(nsc)
    });
    (q > period).then_some((q, sc))
}

/// Moves `period` to the median of the intervals folded onto its grid (window `tol`),
/// up to 4 times, while `accept` takes the new period's value (it returns `None` when
/// the fit got worse); stops where the median no longer moves.
fn recentre<V>(
    s: &[f64],
    mut period: f64,
    tol: f64,
    kmax: u32,
    mut val: V,
    mut accept: impl FnMut(f64, &V) -> Option<V>,
) -> (f64, V) {
    let mut folded = [0.0f64; PERIODIC_CAPACITY];
    for _ in 0..4 {
        let m = fold_all(s, period, tol, kmax, &mut folded);
        let Some(next) = stats::median_sorted(&folded[..m]) else {
            break;
        };
        if (next - period).abs() <= period * 1e-9 {
            break;
        }
        let Some(nv) = accept(next, &val) else {
            break;
        };
        period = next;
        val = nv;
    }
    (period, val)
}

/// Σ (1 - (r / (tol·√k))²) over the intervals within `tol·√k·P` of `k·P`, with
/// `r = (d - k·P) / scale` (one scale for every candidate, so that a longer candidate
/// does not look tighter merely for being longer), minus 1 per invented (missed) beat.
fn kernel_score(s: &[f64], period: f64, tol: f64, kmax: u32, scale: f64) -> f64 {
    let mut v = 0.0;
    for &d in s {
        if let Some(k) = fold(d, period, tol, kmax) {
            let kf = f64::from(k);
            let r = (d - kf * period) / (scale * tol * kf.sqrt());
            v += 1.0 - r * r - (kf - 1.0);
        }
    }
    v
}

/// Writes the folded intervals `d/k` into `out`, sorted; returns how many.
fn fold_all(
    s: &[f64],
    period: f64,
    tol: f64,
    kmax: u32,
    out: &mut [f64; PERIODIC_CAPACITY],
) -> usize {
    let mut m = 0;
    for &d in s {
        if let Some(k) = fold(d, period, tol, kmax) {
            if m < out.len() {
                out[m] = d / f64::from(k);
                m += 1;
            }
        }
    }
    stats::sort(&mut out[..m]);
    m
}

/// Writes `d / k` into `out`, sorted, for every interval `d` with `k = round(d/P)`
/// clamped to at least 1, skipping gaps longer than `kmax` periods (the host was away);
/// returns how many. Unlike [`fold_all`] nothing is cut at the on-beat window, so the
/// spread of these values is the spread of the schedule.
fn fold_nearest(s: &[f64], period: f64, kmax: u32, out: &mut [f64; PERIODIC_CAPACITY]) -> usize {
    if !positive(period) {
        return 0;
    }
    let mut m = 0;
    for &d in s {
        let k = (d / period).round().max(1.0);
        if k <= f64::from(kmax) && m < out.len() {
            out[m] = d / k;
            m += 1;
        }
    }
    stats::sort(&mut out[..m]);
    m
}

/// Median of the sorted intervals in the ratio window `[x, x·(1+tol)/(1-tol)]` holding
/// the most of them (two-pointer sweep).
fn densest_window(s: &[f64], tol: f64) -> Option<f64> {
    let ratio = (1.0 + tol) / (1.0 - tol);
    let (mut best_i, mut best_c, mut j) = (0usize, 0usize, 0usize);
    for i in 0..s.len() {
        if !positive(s[i]) {
            continue;
        }
        j = j.max(i);
        while j < s.len() && s[j] <= s[i] * ratio {
            j += 1;
        }
        if j - i > best_c {
            best_c = j - i;
            best_i = i;
        }
    }
    if best_c == 0 {
        return None;
    }
    stats::median_sorted(&s[best_i..best_i + best_c])
}

/// Largest probability that one interval of random arrivals (Poisson at any rate) lands
/// on the grid of `period` — within `tol·P·√k` of `k·P` for some `k ≤ kmax`, as
/// [`fold`] accepts — given that arrivals within `burst` of a beat merge into it (a dead
/// time that makes dense random traffic more regular): intervals are `burst + Exp(μ)`,
/// maximised over μ on a log grid from P/20 to 20·P.
pub fn null_hit(period: f64, tol: f64, kmax: u32, burst: f64) -> f64 {
    if !positive(period) || !positive(tol) {
        return 1.0;
    }
    let mut best: f64 = 0.0;
    for i in 0..=48 {
        let mu = period * 20f64.powf(f64::from(i) / 24.0 - 1.0);
        let mut mass = 0.0;
        for k in 1..=kmax.max(1) {
            let kf = f64::from(k);
            let half = tol * period * kf.sqrt();
            // fold() assigns k by rounding, so the window is also cut at (k ± 0.5)·P
            let lo = (kf * period - half).max((kf - 0.5) * period).max(0.0) - burst;
            let hi = (kf * period + half).min((kf + 0.5) * period) - burst;
            if hi <= 0.0 {
                continue;
            }
            let lo = lo.max(0.0);
            mass += (-lo / mu).exp() - (-hi / mu).exp();
        }
        best = best.max(mass);
    }
    best.clamp(0.0, 1.0)
}

/// Number of periods `d` spans if it sits on the grid of `period` (within `tol`·period
/// for one beat, within `tol`·period·√k for k beats, as jitter adds up), else `None`.
pub fn fold(d: f64, period: f64, tol: f64, kmax: u32) -> Option<u32> {
    if !positive(period) || !positive(d) {
        return None;
    }
    let k = (d / period).round().max(1.0);
    if k > f64::from(kmax) {
        return None;
    }
    let dev = (d - k * period).abs();
    if dev <= tol * period * k.sqrt() {
        Some(k as u32)
    } else {
        None
    }
}

/// `x > 0`, false for NaN.
fn positive(x: f64) -> bool {
    x > 0.0
}
