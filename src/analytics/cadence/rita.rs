//! Reference scorer: RITA v5's beacon score, reimplemented from the description in
//! `shared/reference/rita-beacon-score.md` (no RITA code). It is a public module so the
//! comparison in [`super::compare`] and the simulator's scorer can run the baseline on
//! the same data; portent itself never uses it to decide anything.
//!
//! Inputs as RITA's: one pair's connection start times in integer seconds and the
//! originator bytes per connection, over a dataset window (RITA: the last 24 h).

use super::stats;

/// Defaults of RITA v5 (`default_config.hjson`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RitaConfig {
    pub ts_weight: f64,
    pub ds_weight: f64,
    pub dur_weight: f64,
    pub hist_weight: f64,
    pub unique_connection_threshold: usize,
    pub strobe_count: usize,
    pub bins: usize,
    pub mode_sensitivity: f64,
    pub bimodal_outlier_removal: i64,
    pub bimodal_min_hours_seen: i64,
    pub duration_min_hours_seen: i64,
    pub duration_ideal_consistent_hours: f64,
}

impl Default for RitaConfig {
    fn default() -> Self {
        RitaConfig {
            ts_weight: 0.25,
            ds_weight: 0.25,
            dur_weight: 0.25,
            hist_weight: 0.25,
            unique_connection_threshold: 4,
            strobe_count: 86_400,
            bins: 24,
            mode_sensitivity: 0.05,
            bimodal_outlier_removal: 1,
            bimodal_min_hours_seen: 11,
            duration_min_hours_seen: 6,
            duration_ideal_consistent_hours: 12.0,
        }
    }
}

/// The score and its parts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RitaScore {
    pub score: f64,
    pub ts: f64,
    pub ds: f64,
    pub dur: f64,
    pub hist: f64,
    pub ts_skew: f64,
    pub ts_mad: f64,
}

/// Why a pair was not scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RitaSkip {
    /// Fewer unique timestamps than `unique_connection_threshold`.
    TooFewUnique,
    /// Too many connections: RITA classes the pair a strobe instead.
    Strobe,
    /// Fewer than 4 timestamps or 3 non-zero deltas.
    TooFewIntervals,
    /// Bad dataset window.
    Window,
}

/// `round(x·1000)/1000`.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
fn ceil3(x: f64) -> f64 {
    (x * 1000.0).ceil() / 1000.0
}

/// `(score, skew, mad)` by RITA's `calculateStatisticalScore` on a sorted slice:
/// `(1 - |bowley|) + madScore) / 2`, Bowley forced to 0 unless IQR ≥ 10 and the median
/// differs from both quartiles, `madScore = (median - MAD)/median` when median ≥ 1 else
/// `default_mad_score`, clamped at 0.
pub fn statistical_score(sorted: &[f64], default_mad_score: f64) -> (f64, f64, f64) {
    let Some((q1, q2, q3)) = stats::quartiles_sorted(sorted) else {
        return (0.0, 0.0, 0.0);
    };
    let skew = stats::bowley(q1, q2, q3, 10.0);
    let skew_score = 1.0 - skew.abs();
    let mad = mad_full(sorted, q2);
    let mut mad_score = if q2 >= 1.0 {
        (q2 - mad) / q2
    } else {
        default_mad_score
    };
    if mad_score.is_nan() || mad_score < 0.0 {
        mad_score = 0.0;
    }
    (round3((skew_score + mad_score) / 2.0), skew, mad)
}

fn mad_full(sorted: &[f64], median: f64) -> f64 {
    let mut dev: Vec<f64> = sorted.iter().map(|x| (x - median).abs()).collect();
    stats::sort(&mut dev);
    stats::median_sorted(&dev).unwrap_or(0.0)
}

/// TS score over sorted timestamps: zero deltas dropped, ≥ 4 stamps, ≥ 3 non-zero deltas.
pub fn timestamp_score(ts_sorted: &[i64]) -> Result<(f64, f64, f64), RitaSkip> {
    if ts_sorted.len() < 4 {
        return Err(RitaSkip::TooFewIntervals);
    }
    let mut d: Vec<f64> = ts_sorted
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64)
        .filter(|&x| x != 0.0)
        .collect();
    if d.len() < 3 {
        return Err(RitaSkip::TooFewIntervals);
    }
    stats::sort(&mut d);
    Ok(statistical_score(&d, 1.0))
}

/// DS score over originator bytes (≥ 3 sizes, default MAD score 0).
pub fn data_size_score(bytes: &[f64]) -> f64 {
    if bytes.len() < 3 {
        return 0.0;
    }
    let mut b = bytes.to_vec();
    stats::sort(&mut b);
    statistical_score(&b, 0.0).0
}

/// Per-bin counts over `bins` equal bins spanning `[min, max]` (the last bin closed).
pub fn histogram(min: i64, max: i64, ts: &[i64], bins: usize) -> Result<Vec<u32>, RitaSkip> {
    if max <= min || bins == 0 || ts.is_empty() {
        return Err(RitaSkip::Window);
    }
    let step = (max - min) as f64 / bins as f64;
    let mut h = vec![0u32; bins];
    for &t in ts {
        let i = (((t - min) as f64 / step).floor().max(0.0) as usize).min(bins - 1);
        h[i] += 1;
    }
    Ok(h)
}

/// `(totalBars, longestRun)`: non-empty bins and longest run of non-empty bins with
/// wrap-around (capped at the bin count).
pub fn bars_and_run(h: &[u32]) -> (i64, i64) {
    let bars = h.iter().filter(|&&c| c > 0).count() as i64;
    let (mut run, mut best) = (0i64, 0i64);
    for i in 0..2 * h.len() {
        if h[i % h.len()] > 0 {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    (bars, best.min(h.len() as i64))
}

/// Histogram score: `max(round3(1 - CV) (0 if CV > 1), bimodal fit)`.
pub fn histogram_score(h: &[u32], cfg: &RitaConfig) -> f64 {
    let n = h.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mean = h.iter().map(|&c| f64::from(c)).sum::<f64>() / n;
    let var = h
        .iter()
        .map(|&c| (f64::from(c) - mean).powi(2))
        .sum::<f64>()
        / n;
    let cv = if mean > 0.0 {
        var.sqrt() / mean
    } else {
        f64::INFINITY
    };
    let cv_score = if cv > 1.0 { 0.0 } else { round3(1.0 - cv) };

    let (bars, _) = bars_and_run(h);
    let mut min_hours = cfg.bimodal_min_hours_seen;
    if min_hours < 6 {
        min_hours = 11;
    }
    let mut bimodal = 0.0;
    if bars >= min_hours {
        let max = h.iter().copied().max().unwrap_or(0);
        let width = ((f64::from(max) * cfg.mode_sensitivity).ceil() as u32).max(1);
        let mut buckets: Vec<(u32, i64)> = Vec::new();
        for &c in h.iter().filter(|&&c| c > 0) {
            let key = c / width;
            match buckets.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => buckets.push((key, 1)),
            }
        }
        let mut counts: Vec<i64> = buckets.iter().map(|&(_, n)| n).collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top2 = counts.iter().take(2).sum::<i64>() as f64;
        let denom = (bars - cfg.bimodal_outlier_removal).max(1) as f64;
        bimodal = round3((top2 / denom).min(1.0));
    }
    cv_score.max(bimodal)
}

/// Duration score: 0 under `min_hours` bars, else `max(coverage, consistency)`, capped.
pub fn duration_score(
    ds_min: i64,
    ds_max: i64,
    first: i64,
    last: i64,
    bars: i64,
    longest_run: i64,
    cfg: &RitaConfig,
) -> f64 {
    if ds_max <= ds_min || bars < cfg.duration_min_hours_seen {
        return 0.0;
    }
    let coverage = ceil3((last - first) as f64 / (ds_max - ds_min) as f64).min(1.0);
    let consistency = ceil3(longest_run as f64 / cfg.duration_ideal_consistent_hours).min(1.0);
    coverage.max(consistency)
}

/// The full beacon score of one pair. `ts` in integer seconds (any order), `bytes` one per
/// connection, dataset window `[ds_min, ds_max]`.
pub fn beacon_score(
    ts: &[i64],
    bytes: &[f64],
    ds_min: i64,
    ds_max: i64,
    cfg: &RitaConfig,
) -> Result<RitaScore, RitaSkip> {
    let mut t = ts.to_vec();
    t.sort_unstable();
    if t.len() >= cfg.strobe_count {
        return Err(RitaSkip::Strobe);
    }
    let mut uniq = t.clone();
    uniq.dedup();
    if uniq.len() < cfg.unique_connection_threshold {
        return Err(RitaSkip::TooFewUnique);
    }
    let (ts_score, ts_skew, ts_mad) = timestamp_score(&t)?;
    let ds = data_size_score(bytes);
    let h = histogram(ds_min, ds_max, &t, cfg.bins)?;
    let (bars, run) = bars_and_run(&h);
    let hist = histogram_score(&h, cfg);
    let dur = duration_score(ds_min, ds_max, t[0], t[t.len() - 1], bars, run, cfg);
    let score = round3(
        cfg.ts_weight * ts_score
            + cfg.ds_weight * ds
            + cfg.dur_weight * dur
            + cfg.hist_weight * hist,
    );
    Ok(RitaScore {
        score,
        ts: ts_score,
        ds,
        dur,
        hist,
        ts_skew,
        ts_mad,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(v: &[i64]) -> (f64, f64, f64) {
        timestamp_score(v).unwrap()
    }

    // Golden vectors: inputs and expected values from RITA's TestGetTimestampScore.
    #[test]
    fn ts_golden_vectors() {
        let base = 1_517_338_924i64;
        let perfect: Vec<i64> = (0..10).map(|i| base + 60 * i).collect();
        assert_eq!(ts(&perfect).0, 1.0);
        let close = [
            1517338924, 1517339022, 1517339121, 1517339220, 1517339320, 1517339420, 1517339520,
            1517339621, 1517339722, 1517339824,
        ];
        let (s, skew, mad) = ts(&close);
        assert_eq!((s, skew, mad), (0.995, 0.0, 1.0));
        let bimodal = [
            1517338924, 1517339022, 1517339322, 1517339420, 1517339720, 1517339818, 1517340118,
            1517340216, 1517340516, 1517340614, 1517340914,
        ];
        let (s, skew, mad) = ts(&bimodal);
        assert_eq!((s, skew, mad), (0.746, 0.0, 101.0));
        let random = [
            1517338924, 1517338925, 1517339224, 1517339249, 1517344224, 1517344314, 1517344316,
            1517344358, 1517344858, 1517346358,
        ];
        let (s, skew, mad) = ts(&random);
        assert_eq!(s, 0.083);
        assert!((skew - 0.845).abs() < 1e-3);
        assert_eq!(mad, 89.0);
        let simple: Vec<i64> = (1..=10).collect();
        assert_eq!(ts(&simple).0, 1.0);
    }

    #[test]
    fn ts_gating() {
        assert_eq!(timestamp_score(&[60; 9]), Err(RitaSkip::TooFewIntervals));
        assert_eq!(timestamp_score(&[1, 2]), Err(RitaSkip::TooFewIntervals));
        assert_eq!(timestamp_score(&[]), Err(RitaSkip::TooFewIntervals));
        let cfg = RitaConfig::default();
        assert_eq!(
            beacon_score(&[5, 5, 5, 9, 9], &[], 0, 100, &cfg),
            Err(RitaSkip::TooFewUnique)
        );
    }

    #[test]
    fn ds_golden_vectors() {
        let simple: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(data_size_score(&simple), 0.773);
        assert_eq!(data_size_score(&[60.0; 9]), 1.0);
        assert_eq!(
            data_size_score(&[98.0, 99.0, 99.0, 100.0, 100.0, 100.0, 101.0, 101.0, 102.0]),
            0.995
        );
        assert_eq!(data_size_score(&[0.0, 0.0, 0.0]), 0.5); // median < 1: MAD score 0
    }

    #[test]
    fn histogram_golden_vectors() {
        let mut cfg = RitaConfig {
            bimodal_min_hours_seen: 6,
            ..RitaConfig::default()
        };
        // simple list 1..10 with i copies of i, 10 bins over [1, 11]
        let t: Vec<i64> = (1..=10)
            .flat_map(|i| std::iter::repeat_n(i, i as usize))
            .collect();
        let h = histogram(1, 11, &t, 10).unwrap();
        assert_eq!(h, (1..=10).collect::<Vec<u32>>());
        assert_eq!(bars_and_run(&h), (10, 10));
        assert_eq!(histogram_score(&h, &cfg), 0.478);
        // closely valued: 8 bins over [98, 102]
        let h = histogram(98, 102, &[98, 99, 99, 100, 100, 100, 101, 101, 102], 8).unwrap();
        assert_eq!(h, vec![1, 0, 2, 0, 3, 0, 2, 1]);
        assert_eq!(bars_and_run(&h), (5, 3));
        assert_eq!(histogram_score(&h, &cfg), 0.064);
        // random, CV > 1
        let t = [
            524885, 1, 5000, 98654, 50, 41, 965842, 3, 12001, 200400, 104001, 199999,
        ];
        let h = histogram(0, 1_000_000, &t, 10).unwrap();
        assert_eq!(h, vec![7, 2, 1, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(bars_and_run(&h), (5, 4));
        assert_eq!(histogram_score(&h, &cfg), 0.0);
        // bimodal histogram
        let t = [
            1, 2, 3, 4, 15, 21, 22, 23, 24, 35, 41, 42, 43, 44, 55, 61, 62, 63, 64, 75, 81, 82, 83,
            84, 95,
        ];
        let h = histogram(0, 100, &t, 10).unwrap();
        assert_eq!(h, vec![4, 1, 4, 1, 4, 1, 4, 1, 4, 1]);
        assert_eq!(histogram_score(&h, &cfg), 1.0);
        // gaps and a wrap-around run
        let h = histogram(0, 250, &[10, 20, 100, 110, 110, 220], 5).unwrap();
        assert_eq!(h, vec![2, 0, 3, 0, 1]);
        assert_eq!(bars_and_run(&h), (3, 2));
        assert_eq!(histogram_score(&h, &cfg), 0.028);
        // regular hourly over 24 h
        cfg.bimodal_min_hours_seen = 11;
        let base = 1_517_338_924i64;
        let t: Vec<i64> = (0..24).map(|i| base + 3600 * i).collect();
        let h = histogram(base, base + 86_400, &t, 24).unwrap();
        assert_eq!(h, vec![1; 24]);
        assert_eq!(histogram_score(&h, &cfg), 1.0);
        // single bar, bimodal threshold below 3 is overridden to 11
        cfg.bimodal_min_hours_seen = 1;
        let t: Vec<i64> = (0..10).map(|i| base + 60 * i).collect();
        let h = histogram(base, base + 86_400, &t, 24).unwrap();
        assert_eq!(bars_and_run(&h), (1, 1));
        assert_eq!(histogram_score(&h, &cfg), 0.0);
        assert!(histogram(1, 0, &t, 24).is_err());
        assert!(histogram(1, 1, &t, 24).is_err());
    }

    #[test]
    fn duration_and_total() {
        let cfg = RitaConfig::default();
        assert_eq!(duration_score(0, 86_400, 0, 86_400, 24, 24, &cfg), 1.0);
        assert_eq!(duration_score(0, 86_400, 0, 18 * 3600, 3, 1, &cfg), 0.0);
        assert_eq!(duration_score(0, 86_400, 0, 6 * 3600, 7, 7, &cfg), 0.584);
        // perfect hourly beacon with constant sizes scores 1
        let t: Vec<i64> = (0..24).map(|i| 3600 * i).collect();
        let s = beacon_score(&t, &[500.0; 24], 0, 86_400, &cfg).unwrap();
        assert_eq!(s.score, 1.0);
        let many = vec![0i64; 86_400];
        assert_eq!(
            beacon_score(&many, &[], 0, 86_400, &cfg),
            Err(RitaSkip::Strobe)
        );
    }
}
