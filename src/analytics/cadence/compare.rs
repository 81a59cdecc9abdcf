//! Synthetic benchmark: portent's cadence detector against the RITA v5 reference score
//! ([`super::rita`], alert = score ≥ 0.7) on 24 h series, plus the measurement behind
//! the default minimum number of beats. Deterministic (own PRNG), no I/O: the functions
//! return Markdown for the README; `cargo test --lib analytics::cadence -- --nocapture`
//! prints it.

use std::fmt::Write as _;

use super::periodic::{Observed, PeriodicParams, PeriodicSeries};
use super::rita::{beacon_score, RitaConfig};
use crate::time::Ts;

/// SplitMix64: tiny, fast, good enough for simulation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Exponential with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.uniform()).ln()
    }
}

/// Seconds in the synthetic day.
pub const DAY_S: f64 = 86_400.0;
/// Packet time of the start of the day.
pub const T0_S: i64 = 1_700_000_000;

/// Connection start times (seconds since the start of the day, sorted) and originator
/// bytes, one per connection.
#[derive(Clone, Debug, Default)]
pub struct Synthetic {
    pub ts: Vec<f64>,
    pub bytes: Vec<f64>,
}

impl Synthetic {
    fn push(&mut self, rng: &mut Rng, t: f64) {
        if (0.0..DAY_S).contains(&t) {
            self.ts.push(t);
            // Class-independent sizes: lognormal around 1.5 kB, so that size carries no
            // label information and the comparison is about timing.
            self.bytes
                .push((1500f64.ln() + 0.5 * rng.normal()).exp().round());
        }
    }
    fn finish(mut self) -> Synthetic {
        let mut pairs: Vec<(f64, f64)> = self
            .ts
            .iter()
            .copied()
            .zip(self.bytes.iter().copied())
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.ts = pairs.iter().map(|p| p.0).collect();
        self.bytes = pairs.iter().map(|p| p.1).collect();
        self
    }
}

/// How the schedule's jitter is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JitterKind {
    /// Each sleep is `P·(1 + U[-j, j])` (Cobalt Strike / Sliver style).
    Uniform,
    /// Each sleep is `P·(1 + N(0, j/√3))`: the same variance as the uniform, longer tails.
    Normal,
    /// Each sleep is `P·(1 + j·U(0, 1))`: jitter added to the sleep (Sliver, Mythic).
    Added,
    /// Each sleep is `P·(1 − j·U(0, 1))`: the sleep shortened by up to `j` (Cobalt Strike).
    Shortened,
}

/// A beacon: sleeps `period` with `jitter`, each beat dropped with probability `missed`
/// (the host was busy, the connection failed, the sensor lost it); 30 % of beats open a
/// second connection within half a second.
pub fn periodic(
    rng: &mut Rng,
    period: f64,
    jitter: f64,
    missed: f64,
    kind: JitterKind,
) -> Synthetic {
    let mut s = Synthetic::default();
    let mut t = rng.uniform() * period;
    while t < DAY_S {
        if rng.uniform() >= missed {
            s.push(rng, t);
            if rng.uniform() < 0.3 {
                let extra = t + 0.5 * rng.uniform();
                s.push(rng, extra);
            }
        }
        let noise = match kind {
            JitterKind::Uniform => jitter * (2.0 * rng.uniform() - 1.0),
            JitterKind::Normal => jitter / 3f64.sqrt() * rng.normal(),
            JitterKind::Added => jitter * rng.uniform(),
            JitterKind::Shortened => -jitter * rng.uniform(),
        };
        t += period * (1.0 + noise).max(0.05);
    }
    s.finish()
}

/// Random spacing bounded above: gaps uniform on `[lo, hi]` over `hours` (a
/// `sleep(lo + rand() · (hi − lo))` loop; with `lo` = 0 not a schedule, with `lo` near
/// `hi` a jittered one).
pub fn uniform_spacing(rng: &mut Rng, lo: f64, hi: f64, hours: f64) -> Synthetic {
    let mut s = Synthetic::default();
    let end = (hours * 3600.0).min(DAY_S);
    let mut t = rng.uniform() * hi;
    while t < end {
        s.push(rng, t);
        t += lo + (hi - lo) * rng.uniform();
    }
    s.finish()
}

/// Poisson arrivals with the given mean gap.
pub fn poisson(rng: &mut Rng, mean_gap: f64) -> Synthetic {
    let mut s = Synthetic::default();
    let mut t = rng.exp(mean_gap);
    while t < DAY_S {
        s.push(rng, t);
        t += rng.exp(mean_gap);
    }
    s.finish()
}

/// A person browsing one site: sessions in a 9-hour working day, about every 40 min,
/// each a geometric number of page loads (mean 8) seconds to a couple of minutes apart.
pub fn bursty(rng: &mut Rng) -> Synthetic {
    let mut s = Synthetic::default();
    let start = 7.0 * 3600.0 + rng.uniform() * 3.0 * 3600.0;
    let end = start + 9.0 * 3600.0;
    let mut t = start + rng.exp(2400.0);
    while t < end {
        let mut u = t;
        loop {
            s.push(rng, u);
            if rng.uniform() < 0.125 {
                break;
            }
            u += if rng.uniform() < 0.8 {
                1.0 + rng.exp(15.0)
            } else {
                rng.exp(120.0)
            };
        }
        t = u + rng.exp(2400.0);
    }
    s.finish()
}

/// Feeds a series and calls `check(t, series)` where portent would evaluate it: at every
/// new beat when `every_beat`, else at every beat up to 128 and every 16th after;
/// stops early when `check` returns `false`.
fn for_each_evaluation(
    s: &Synthetic,
    every_beat: bool,
    mut check: impl FnMut(f64, &PeriodicSeries) -> bool,
) {
    let mut ser = PeriodicSeries::new();
    for &t in &s.ts {
        let ts = Ts::from_secs_f64(T0_S as f64 + t);
        if ser.observe(ts) == Observed::NewBeat {
            let b = ser.beats();
            if (every_beat || b <= 128 || b.is_multiple_of(16)) && !check(t, &ser) {
                return;
            }
        }
    }
}

/// The first firing time (seconds into the day), evaluating as [`for_each_evaluation`].
pub fn portent_first_alert(s: &Synthetic, p: &PeriodicParams, every_beat: bool) -> Option<f64> {
    let mut first = None;
    for_each_evaluation(s, every_beat, |t, ser| {
        if ser.evaluate(p).is_some() {
            first = Some(t);
        }
        first.is_none()
    });
    first
}

/// Like [`portent_first_alert`] (`every_beat` false) but to the end of the day: the
/// first firing time and the largest [`PeriodicSeries::significance_margin`] of the day
/// (portent's continuous score; `None` when no evaluation passed the other gates). It
/// fires exactly where the margin is ≥ 0.
pub fn portent_day(s: &Synthetic, p: &PeriodicParams) -> (Option<f64>, Option<f64>) {
    let (mut first, mut best) = (None, None::<f64>);
    for_each_evaluation(s, false, |t, ser| {
        if let Some(m) = ser.significance_margin(p) {
            best = Some(best.map_or(m, |x| x.max(m)));
            if first.is_none() && m >= 0.0 {
                first = Some(t);
            }
        }
        true
    });
    (first, best)
}

/// portent at the operating point matched to another detector's false alarms: the
/// significance threshold (a margin over the default gate, negative = looser) that keeps
/// portent's alerts on `negatives` at or below `allowed`, and how many of `positives`
/// and `negatives` fire there. Scores are [`portent_day`] margins; `None` never fires.
/// Fires are strictly above the threshold, so ties never exceed `allowed`.
pub fn matched_operating_point(
    positives: &[Option<f64>],
    negatives: &[Option<f64>],
    allowed: u32,
) -> (f64, u32, u32) {
    let mut neg: Vec<f64> = negatives.iter().flatten().copied().collect();
    neg.sort_by(|a, b| b.total_cmp(a));
    let threshold = neg
        .get(allowed as usize)
        .copied()
        .unwrap_or(f64::NEG_INFINITY);
    let fires = |xs: &[Option<f64>]| xs.iter().flatten().filter(|&&m| m > threshold).count() as u32;
    (threshold, fires(positives), fires(negatives))
}

/// RITA v5's score for the series over the day (integer-second timestamps).
pub fn rita_score(s: &Synthetic) -> Option<f64> {
    let ts: Vec<i64> = s.ts.iter().map(|t| T0_S + t.floor() as i64).collect();
    beacon_score(
        &ts,
        &s.bytes,
        T0_S,
        T0_S + DAY_S as i64,
        &RitaConfig::default(),
    )
    .ok()
    .map(|r| r.score)
}

/// RITA's alert threshold (bucket "low" and up).
pub const RITA_ALERT: f64 = 0.7;

pub const PERIODS: [f64; 5] = [10.0, 60.0, 300.0, 900.0, 3600.0];
pub const JITTERS: [f64; 5] = [0.0, 0.1, 0.2, 0.3, 0.4];
pub const MISSED: [f64; 3] = [0.0, 0.05, 0.1];

/// One grid cell's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub period: f64,
    pub jitter: f64,
    pub missed: f64,
    pub n: u32,
    pub portent: u32,
    pub rita: u32,
    /// False alerts on `n` Poisson series of the same mean gap (period / (1 - missed)).
    pub portent_fa: u32,
    pub rita_fa: u32,
    /// Median time to the first portent alert, seconds.
    pub portent_ttd_s: f64,
    /// portent at RITA's false-alarm rate in this cell ([`matched_operating_point`]):
    /// beacons and Poisson series that fire, and the threshold (margin in decades).
    pub matched_recall: u32,
    pub matched_fa: u32,
    pub matched_threshold: f64,
    /// portent's false alerts in this cell at the loosest threshold it needs to catch as
    /// many beacons as RITA ([`false_alerts_at_recall`]); `None`: out of its reach.
    pub fa_at_rita_recall: Option<u32>,
}

impl Cell {
    /// Accuracy over the cell's beacons and its matched Poisson negatives.
    pub fn accuracy(&self, portent: bool) -> f64 {
        let (tp, fa) = if portent {
            (self.portent, self.portent_fa)
        } else {
            (self.rita, self.rita_fa)
        };
        f64::from(tp + self.n - fa) / f64::from(2 * self.n)
    }
}

/// One negative (or benign) class's result.
#[derive(Clone, Debug, PartialEq)]
pub struct NegRow {
    pub name: String,
    pub n: u32,
    pub portent: u32,
    pub rita: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub cells: Vec<Cell>,
    pub negatives: Vec<NegRow>,
    pub benign: Vec<NegRow>,
}

/// The other matched point: the false alerts on `negatives` at the strictest threshold
/// under which at least `recall` of `positives` fire (fires at or above the threshold,
/// scores as in [`matched_operating_point`]); `None` if fewer than `recall` have a score.
pub fn false_alerts_at_recall(
    positives: &[Option<f64>],
    negatives: &[Option<f64>],
    recall: u32,
) -> Option<u32> {
    if recall == 0 {
        return Some(0);
    }
    let mut pos: Vec<f64> = positives.iter().flatten().copied().collect();
    pos.sort_by(|a, b| b.total_cmp(a));
    let threshold = *pos.get(recall as usize - 1)?;
    Some(
        negatives
            .iter()
            .flatten()
            .filter(|&&m| m >= threshold)
            .count() as u32,
    )
}

/// One cell: `seeds` beacons (alternating uniform and normal jitter; RNG streams
/// `salt << 32 | seed`) and as many Poisson series of the same mean gap (streams
/// `(7000 + salt) << 32 | seed`), judged by portent (at its defaults and at RITA's
/// false-alarm rate) and by the RITA reference.
pub fn cell(
    period: f64,
    jitter: f64,
    missed: f64,
    seeds: u32,
    salt: u64,
    p: &PeriodicParams,
) -> Cell {
    let (mut a, mut b, mut ttd) = (0, 0, Vec::new());
    let (mut pos_m, mut neg_m) = (Vec::new(), Vec::new());
    for seed in 0..seeds {
        let mut rng = Rng::new(salt << 32 | u64::from(seed));
        let kind = if seed % 2 == 0 {
            JitterKind::Uniform
        } else {
            JitterKind::Normal
        };
        let s = periodic(&mut rng, period, jitter, missed, kind);
        let (first, margin) = portent_day(&s, p);
        if let Some(t) = first {
            a += 1;
            ttd.push(t - s.ts[0]);
        }
        pos_m.push(margin);
        if rita_score(&s).is_some_and(|x| x >= RITA_ALERT) {
            b += 1;
        }
    }
    let (mut fa_a, mut fa_b) = (0, 0);
    let gap = period / (1.0 - missed);
    for seed in 0..seeds {
        let mut rng = Rng::new((7000 + salt) << 32 | u64::from(seed));
        let s = poisson(&mut rng, gap);
        let (first, margin) = portent_day(&s, p);
        fa_a += u32::from(first.is_some());
        neg_m.push(margin);
        if rita_score(&s).is_some_and(|x| x >= RITA_ALERT) {
            fa_b += 1;
        }
    }
    ttd.sort_by(|x, y| x.total_cmp(y));
    let (matched_threshold, matched_recall, matched_fa) =
        matched_operating_point(&pos_m, &neg_m, fa_b);
    let fa_at_rita_recall = false_alerts_at_recall(&pos_m, &neg_m, b);
    Cell {
        period,
        jitter,
        missed,
        n: seeds,
        portent: a,
        rita: b,
        portent_fa: fa_a,
        rita_fa: fa_b,
        portent_ttd_s: ttd.get(ttd.len() / 2).copied().unwrap_or(f64::NAN),
        matched_recall,
        matched_fa,
        matched_threshold,
        fa_at_rita_recall,
    }
}

/// Runs the grid with `seeds` series per cell (alternating uniform and normal jitter)
/// and the negatives with `seeds` series per class.
pub fn compare(seeds: u32, p: &PeriodicParams) -> Comparison {
    let mut cells = Vec::new();
    for (pi, &period) in PERIODS.iter().enumerate() {
        for (ji, &jitter) in JITTERS.iter().enumerate() {
            for (mi, &missed) in MISSED.iter().enumerate() {
                let salt = (pi * 100 + ji * 10 + mi) as u64;
                cells.push(cell(period, jitter, missed, seeds, salt, p));
            }
        }
    }
    let mut negatives = Vec::new();
    let run = |name: String, gen: &mut dyn FnMut(&mut Rng) -> Synthetic, salt: u64, every: bool| {
        let (mut a, mut b) = (0, 0);
        for seed in 0..seeds {
            let mut rng = Rng::new(salt << 40 | u64::from(seed));
            let s = gen(&mut rng);
            if portent_first_alert(&s, p, every).is_some() {
                a += 1;
            }
            if rita_score(&s).is_some_and(|x| x >= RITA_ALERT) {
                b += 1;
            }
        }
        NegRow {
            name,
            n: seeds,
            portent: a,
            rita: b,
        }
    };
    for (i, &gap) in PERIODS.iter().enumerate() {
        negatives.push(run(
            format!("Poisson, mean gap {gap} s"),
            &mut |r| poisson(r, gap),
            900 + i as u64,
            true,
        ));
    }
    negatives.push(run("bursty human browsing".into(), &mut bursty, 990, true));
    let benign = vec![
        run(
            "NTP-like poll 1024 s ± 1 %".into(),
            &mut |r| periodic(r, 1024.0, 0.01, 0.0, JitterKind::Uniform),
            995,
            false,
        ),
        run(
            "update agent 3600 s ± 5 %, 5 % missed".into(),
            &mut |r| periodic(r, 3600.0, 0.05, 0.05, JitterKind::Normal),
            996,
            false,
        ),
    ];
    Comparison {
        cells,
        negatives,
        benign,
    }
}

fn dur(s: f64) -> String {
    if s.is_nan() {
        "–".into()
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.0} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

impl Comparison {
    /// The tables as Markdown.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let n = self.cells.first().map_or(0, |c| c.n);
        let _ = writeln!(
            m,
            "Recall on 24 h synthetic beacons, {n} series per cell (half uniform, half normal \
             jitter; 30 % of beats open a second connection), and as many Poisson series of \
             the same mean gap (false alerts, FA). portent: any alert during the day; RITA v5 \
             reference: score ≥ {RITA_ALERT} on the whole day. Accuracy over both sets; TTD: \
             median time from the first connection to portent's first alert. At RITA's FA: \
             portent's recall (and FA) with its significance threshold moved to the point \
             where it raises no more false alerts than RITA in that cell; FA at RITA's \
             recall: portent's false alerts with the threshold where it catches as many \
             beacons as RITA (the detectors compared at matched false alarms and at \
             matched recall).\n"
        );
        m.push_str(&cells_table(&self.cells));
        let _ = writeln!(
            m,
            "\nFalse alerts on negatives (portent evaluated at every beat, so any transient \
             alert counts):\n"
        );
        let _ = writeln!(m, "| negative class | portent | RITA |");
        let _ = writeln!(m, "|---|---:|---:|");
        for r in &self.negatives {
            let _ = writeln!(
                m,
                "| {} | {}/{} | {}/{} |",
                r.name, r.portent, r.n, r.rita, r.n
            );
        }
        let _ = writeln!(m, "\nBenign periodic software (expected to fire; suppressed by allowlists/baselines, not by the detector):\n");
        let _ = writeln!(m, "| benign class | portent | RITA |");
        let _ = writeln!(m, "|---|---:|---:|");
        for r in &self.benign {
            let _ = writeln!(
                m,
                "| {} | {}/{} | {}/{} |",
                r.name, r.portent, r.n, r.rita, r.n
            );
        }
        m
    }
}

/// The per-cell rows of [`Comparison::markdown`] as a Markdown table.
pub fn cells_table(cells: &[Cell]) -> String {
    let mut m = String::new();
    m.push_str(concat!(
        "| period | jitter | missed | portent recall | RITA recall | portent FA | RITA FA ",
        "| portent acc. | RITA acc. | portent TTD | portent at RITA's FA ",
        "| portent FA at RITA's recall |\n",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    ));
    for c in cells {
        let n = c.n;
        let at_recall = c
            .fa_at_rita_recall
            .map_or_else(|| "–".to_string(), |f| format!("{f}/{n}"));
        let _ = writeln!(
            m,
            "| {} | {:.0} % | {:.0} % | {}/{n} | {}/{n} | {}/{n} | {}/{n} | {:.2} | {:.2} | {} \
             | {}/{n} (FA {}) | {at_recall} |",
            dur(c.period),
            c.jitter * 100.0,
            c.missed * 100.0,
            c.portent,
            c.rita,
            c.portent_fa,
            c.rita_fa,
            c.accuracy(true),
            c.accuracy(false),
            dur(c.portent_ttd_s),
            c.matched_recall,
            c.matched_fa,
        );
    }
    m
}

/// One row of [`min_beats_study`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinBeatsRow {
    pub beats: u32,
    /// Fraction of Poisson series (exactly `beats` beats) that fire.
    pub false_alarm: f64,
    /// Fraction of 40 %-jitter, 10 %-missed beacons (exactly `beats` beats) that fire.
    pub recall: f64,
}

/// Measures, for each candidate minimum, how often a series of exactly that many beats
/// fires on Poisson arrivals and on the hardest beacon of the brief (40 % uniform jitter,
/// 10 % missed beats). All other gates as in `p`.
pub fn min_beats_study(p: &PeriodicParams, candidates: &[u32], trials: u32) -> Vec<MinBeatsRow> {
    let mut rows = Vec::new();
    for &beats in candidates {
        let q = PeriodicParams {
            min_beats: beats,
            ..*p
        };
        let (mut fa, mut tp) = (0u32, 0u32);
        for trial in 0..trials {
            let mut rng = Rng::new(u64::from(beats) << 32 | u64::from(trial));
            let mut s = PeriodicSeries::new();
            let mut t = 0.0;
            while s.beats() < beats {
                t += rng.exp(60.0);
                s.observe(Ts::from_secs_f64(T0_S as f64 + t));
            }
            fa += u32::from(s.evaluate(&q).is_some());
            let mut s = PeriodicSeries::new();
            let mut t = 0.0;
            while s.beats() < beats {
                t += 60.0 * (1.0 + 0.4 * (2.0 * rng.uniform() - 1.0));
                if rng.uniform() >= 0.1 {
                    s.observe(Ts::from_secs_f64(T0_S as f64 + t));
                }
            }
            tp += u32::from(s.evaluate(&q).is_some());
        }
        rows.push(MinBeatsRow {
            beats,
            false_alarm: f64::from(fa) / f64::from(trials),
            recall: f64::from(tp) / f64::from(trials),
        });
    }
    rows
}

/// [`min_beats_study`] as Markdown.
pub fn min_beats_markdown(rows: &[MinBeatsRow], trials: u32) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "Series of exactly N beats, {trials} trials each: false alarms on Poisson arrivals, \
         recall on beacons with 40 % uniform jitter and 10 % missed beats.\n"
    );
    let _ = writeln!(m, "| beats | false alarm | recall |");
    let _ = writeln!(m, "|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            m,
            "| {} | {:.4} | {:.3} |",
            r.beats, r.false_alarm, r.recall
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The measurement behind `PeriodicParams::min_beats` (12): per-series false alarms
    /// on Poisson arrivals stay below 1e-3 from 12 beats on, with other gates at default.
    #[test]
    fn min_beats_is_measured() {
        let p = PeriodicParams::default();
        let trials = 4000;
        let rows = min_beats_study(&p, &[6, 8, 10, 12, 16, 20, 24, 32, 64], trials);
        println!("{}", min_beats_markdown(&rows, trials));
        for r in rows.iter().filter(|r| r.beats >= p.min_beats) {
            assert!(r.false_alarm <= 1e-3, "{r:?}");
        }
        let last = rows.last().unwrap();
        assert!(last.recall >= 0.98, "{last:?}");
    }

    #[test]
    fn matched_operating_points_count_ties_conservatively() {
        let pos = [Some(3.0), Some(0.5), Some(-0.5), None, Some(-2.0)];
        // Two negatives tie at -1.0: allowing one must not let both fire.
        let neg = [Some(-1.0), Some(-1.0), None, Some(-3.0)];
        assert_eq!(matched_operating_point(&pos, &neg, 0), (-1.0, 3, 0));
        assert_eq!(matched_operating_point(&pos, &neg, 1), (-1.0, 3, 0));
        assert_eq!(matched_operating_point(&pos, &neg, 2), (-3.0, 4, 2));
        // Allowing every scored negative: everything with a score fires, `None` never.
        let (t, r, f) = matched_operating_point(&pos, &neg, 3);
        assert_eq!((t, r, f), (f64::NEG_INFINITY, 4, 3));
        let (_, r, f) = matched_operating_point(&pos, &[], 0);
        assert_eq!((r, f), (4, 0));
        // To catch 3 beacons the threshold is -0.5: the two negatives at -1.0 stay quiet.
        assert_eq!(false_alerts_at_recall(&pos, &neg, 3), Some(0));
        assert_eq!(false_alerts_at_recall(&pos, &neg, 4), Some(2));
        assert_eq!(false_alerts_at_recall(&pos, &neg, 5), None);
        assert_eq!(false_alerts_at_recall(&pos, &neg, 0), Some(0));
    }

    /// portent against the RITA v5 reference on the same synthetic days.
    ///
    /// Measured outcome (see the printed table): RITA's score ≥ 0.7 catches nearly every
    /// beacon that runs all day, whatever the jitter, because half its weight (histogram
    /// and duration) rewards any steady all-day traffic; that same property makes it
    /// alert on most steady Poisson sources. Asserted per cell, over the cell's beacons
    /// and as many Poisson series of the same mean gap: portent's accuracy is at least
    /// RITA's, and strictly higher where jitter exceeds 20 %; portent's recall is at
    /// least RITA's less 1/8 of the series in every cell and 1 % in total; with its
    /// threshold moved to RITA's false-alarm rate in the cell, portent's recall is at least
    /// RITA's in every cell; no false alert on the fixed negative classes except at most
    /// one of the slowest Poisson class.
    #[test]
    fn portent_beats_rita_reference() {
        let c = compare(16, &PeriodicParams::default());
        println!("{}", c.markdown());
        let (mut a, mut b) = (0, 0);
        for cell in &c.cells {
            assert!(cell.accuracy(true) >= cell.accuracy(false), "{cell:?}");
            if cell.jitter > 0.2 {
                assert!(cell.accuracy(true) > cell.accuracy(false), "{cell:?}");
            }
            assert!((cell.portent + cell.n / 8) >= cell.rita, "{cell:?}");
            // At RITA's false-alarm rate portent's recall is at least RITA's, every cell.
            assert!(cell.matched_fa <= cell.rita_fa, "{cell:?}");
            assert!(cell.matched_recall >= cell.rita, "{cell:?}");
            assert!(
                cell.fa_at_rita_recall.is_some_and(|f| f <= cell.rita_fa),
                "{cell:?}"
            );
            a += cell.portent;
            b += cell.rita;
        }
        assert!(f64::from(a) >= 0.99 * f64::from(b), "{a} < {b}");
        let fa: u32 = c.negatives.iter().map(|n| n.portent).sum();
        assert!(fa <= 1, "{:?}", c.negatives);
        for n in &c.benign {
            assert!(
                n.portent * 4 >= n.n * 3,
                "benign periodic should look periodic: {n:?}"
            );
        }
    }

    /// Frameworks jitter one way: Sliver and Mythic add up to `j` to the sleep, Cobalt
    /// Strike takes up to `j` off it, so the intervals centre on `P·(1 ± j/2)`. A beacon
    /// configured with the longest default period (1 h) and 40 % added jitter beats
    /// every 72 min on average; a range gate with only `tol/2` slack above dropped the
    /// series whose estimate landed over 73.5 min (here 29/32 fired at 0 % missed).
    #[test]
    fn one_sided_jitter_at_the_longest_default_period_fires() {
        let p = PeriodicParams::default();
        let n = 32u32;
        // (kind, where its intervals centre, relative to the sleep)
        let kinds = [(JitterKind::Added, 1.2), (JitterKind::Shortened, 0.8)];
        for (ki, (kind, centre)) in kinds.into_iter().enumerate() {
            for (mi, missed) in [0.0, 0.1].into_iter().enumerate() {
                let (mut hit, mut fa) = (0, 0);
                for seed in 0..n {
                    let salt = (0x51DE_u64 + ki as u64 * 10 + mi as u64) << 32;
                    let mut rng = Rng::new(salt | u64::from(seed));
                    let s = periodic(&mut rng, 3600.0, 0.4, missed, kind);
                    hit += u32::from(portent_first_alert(&s, &p, false).is_some());
                    let noise = poisson(&mut rng, 3600.0 * centre / (1.0 - missed));
                    fa += u32::from(portent_first_alert(&noise, &p, false).is_some());
                }
                assert!(hit + 1 >= n, "{kind:?} missed {missed}: {hit}/{n}");
                assert!(
                    fa <= 1,
                    "{kind:?} missed {missed}: {fa}/{n} Poisson series fired"
                );
            }
        }
    }

    /// The slow cells at 256 series each (fresh RNG streams, not the grid's): where a
    /// day holds the fewest beats, 16 series cannot tell a 3 % recall gap from chance.
    /// portent keeps recall ≥ 95 % per cell with ≤ 2 % false alerts per cell (0.5 % in
    /// all), and at RITA's false-alarm rate it catches at least as many as RITA.
    #[test]
    fn slow_schedules_at_scale() {
        let p = PeriodicParams::default();
        let n = 256;
        let mut cells = Vec::new();
        for (pi, period) in [900.0, 3600.0].into_iter().enumerate() {
            for (ji, jitter) in [0.3, 0.4].into_iter().enumerate() {
                for (mi, missed) in MISSED.into_iter().enumerate() {
                    let salt = 0x5_0000 + (pi * 100 + ji * 10 + mi) as u64;
                    cells.push(cell(period, jitter, missed, n, salt, &p));
                }
            }
        }
        println!("{}", cells_table(&cells));
        let mut fa = 0;
        for c in &cells {
            assert!(c.portent * 100 >= c.n * 95, "{c:?}");
            assert!(c.portent_fa * 50 <= c.n, "{c:?}");
            assert!(
                c.matched_fa <= c.rita_fa && c.matched_recall >= c.rita,
                "{c:?}"
            );
            fa += c.portent_fa;
        }
        assert!(fa * 200 <= n * cells.len() as u32, "{fa} false alerts");
    }

    /// Random spacing bounded above is not a schedule: a loop sleeping `rand() · T`
    /// spreads its gaps evenly over 0..T, so its intervals fill the band below any
    /// window as densely as the window (`peak_significance`), and their spread over all
    /// intervals is ~0.5 MAD/median. Measured over 256 series each: 24 h of uniform gaps
    /// on 0..60 s fired 252/256 and on 0..600 s 121/256 while the jitter was measured on
    /// the in-window intervals only and no peak was asked for; now 25 and 17 (RITA 256
    /// and 256). With a floor under the gaps the spacing is a jittered schedule and
    /// fires: 30..60 s is a 45 s beacon with ±33 % jitter.
    #[test]
    fn random_spacing_bounded_above_is_not_a_schedule() {
        let p = PeriodicParams::default();
        let n = 128u32;
        let run = |lo: f64, hi: f64, hours: f64, salt: u64| {
            (0..n)
                .filter(|&seed| {
                    let mut rng = Rng::new(salt << 32 | u64::from(seed));
                    let s = uniform_spacing(&mut rng, lo, hi, hours);
                    portent_first_alert(&s, &p, false).is_some()
                })
                .count() as u32
        };
        let rows = [
            (0.0, 60.0, 24.0, run(0.0, 60.0, 24.0, 0xA1)),
            (0.0, 600.0, 24.0, run(0.0, 600.0, 24.0, 0xA2)),
            (0.0, 60.0, 4.0, run(0.0, 60.0, 4.0, 0xA3)),
            (30.0, 60.0, 4.0, run(30.0, 60.0, 4.0, 0xA4)),
        ];
        for (lo, hi, hours, fired) in rows {
            println!("gaps U({lo}, {hi}) s over {hours} h: {fired}/{n} fire");
        }
        for &(lo, _, _, fired) in &rows[..3] {
            assert!(fired * 100 <= n * 15, "{lo}: {fired}/{n}");
        }
        assert_eq!(rows[3].3, n, "a 45 s schedule with ±33 % jitter");
    }
}
