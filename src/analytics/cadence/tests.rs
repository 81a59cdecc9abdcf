//! Unit and property tests for the cadence series.

use proptest::prelude::*;

use super::compare::{bursty, periodic, poisson, JitterKind, Rng, T0_S};
use super::periodic::{fold, null_hit};
use super::*;
use crate::time::{Dur, Ts};

fn at(s: f64) -> Ts {
    Ts::from_secs_f64(T0_S as f64 + s)
}

fn feed(times: &[f64]) -> PeriodicSeries {
    let mut s = PeriodicSeries::new();
    for &t in times {
        s.observe(at(t));
    }
    s
}

#[test]
fn sizes_are_small() {
    let p = std::mem::size_of::<PeriodicSeries>();
    let z = std::mem::size_of::<SizeSeries>();
    println!("size_of PeriodicSeries = {p} B, SizeSeries = {z} B");
    assert!(p <= 320, "{p}");
    assert!(z <= 360, "{z}");
}

#[test]
fn metronome_fires_with_exact_period() {
    let times: Vec<f64> = (0..40).map(|i| 60.0 * f64::from(i)).collect();
    let s = feed(&times);
    let v = s.evaluate(&PeriodicParams::default()).expect("fires");
    assert!((v.period_s - 60.0).abs() < 1e-6);
    assert_eq!(v.jitter, 0.0);
    assert_eq!(v.missed_beats, 0);
    assert_eq!(v.count, 40);
    assert!(v.score > 0.9, "{}", v.score);
    assert_eq!(v.reasons.len(), 3);
    let c = v.cadence();
    assert_eq!(c.period_s, Some(v.period_s));
    assert_eq!(c.count, Some(40));
}

/// Regression: an hourly beacon with ±40 % uniform jitter and missed beats (the
/// intervals of one day of `compare`'s 60 min / 40 % / 5 % cell) locked onto ~0.7 P,
/// where the upper half of the singles fold as doubles: 9 invented beats in 28, over
/// `max_missed`, so it never fired. The longer-candidate step finds the hour.
#[test]
fn heavy_jitter_does_not_lock_onto_a_fraction_of_the_period() {
    let ivals = [
        4608.0, 2241.0, 2347.0, 4011.0, 9018.0, 3085.0, 2551.0, 3460.0, 2644.0, 4768.0, 2731.0,
        2267.0, 3737.0, 7267.0, 2640.0, 8229.0, 2918.0, 2646.0, 3187.0, 4642.0, 4485.0,
    ];
    let mut times = vec![0.0];
    for d in ivals {
        times.push(times.last().unwrap() + d);
    }
    let v = feed(&times)
        .evaluate(&PeriodicParams::default())
        .expect("fires");
    assert!(
        (v.period_s - 3600.0).abs() < 0.15 * 3600.0,
        "{}",
        v.period_s
    );
    assert!(v.stats.missed_fraction <= 0.25, "{:?}", v.stats);
}

#[test]
fn missed_beats_are_folded() {
    // every 7th beat missing, 5 % uniform jitter
    let mut rng = Rng::new(3);
    let mut times = Vec::new();
    let mut t = 0.0;
    for i in 0..70 {
        if i % 7 != 3 {
            times.push(t);
        }
        t += 300.0 * (1.0 + 0.05 * (2.0 * rng.uniform() - 1.0));
    }
    let v = feed(&times)
        .evaluate(&PeriodicParams::default())
        .expect("fires");
    assert!((v.period_s - 300.0).abs() < 10.0, "{}", v.period_s);
    assert!(v.missed_beats >= 8, "{}", v.missed_beats);
    assert!(v.stats.multiples >= 8);
}

#[test]
fn bursts_collapse_into_beats() {
    let mut times = Vec::new();
    for i in 0..20 {
        let t = 120.0 * f64::from(i);
        times.extend([t, t + 0.2, t + 0.9, t + 1.5]);
    }
    let s = feed(&times);
    assert_eq!(s.beats(), 20);
    assert_eq!(s.connections(), 80);
    let v = s.evaluate(&PeriodicParams::default()).expect("fires");
    assert!((v.period_s - 120.0).abs() < 1e-6);
    // a custom burst window splits them again
    let mut s = PeriodicSeries::with_burst(Dur::from_millis(100));
    for &t in &times {
        s.observe(at(t));
    }
    assert_eq!(s.beats(), 80);
}

#[test]
fn edge_cases_do_not_panic() {
    let p = PeriodicParams::default();
    let mut s = PeriodicSeries::new();
    assert!(s.evaluate(&p).is_none());
    assert!(s.analyze(&p).is_none());
    assert_eq!(s.observe(at(0.0)), Observed::NewBeat);
    assert!(s.evaluate(&p).is_none()); // one observation
    for _ in 0..100 {
        assert_eq!(s.observe(at(0.0)), Observed::SameBeat); // identical timestamps
    }
    assert_eq!(s.beats(), 1);
    assert!(s.analyze(&p).is_none());
    // backwards beyond the burst: ignored and counted
    assert_eq!(s.observe(at(-500.0)), Observed::Late);
    assert_eq!(s.late(), 1);
    assert_eq!(s.beats(), 1);
    // huge gaps saturate, extreme timestamps do not overflow
    let mut s = PeriodicSeries::new();
    for ts in [
        Ts(i64::MIN),
        Ts(0),
        Ts(i64::MAX),
        Ts(i64::MAX),
        Ts(i64::MIN),
    ] {
        s.observe(ts);
    }
    let _ = s.analyze(&p);
    let _ = s.evaluate(&p);
    let s = feed(&[0.0, 1e7, 2e7, 3e7, 4e7, 5e7]);
    assert!(s.intervals_s().all(|d| d > 0.0));
    assert!(s.evaluate(&p).is_none()); // period out of range
}

#[test]
fn a_handful_of_connections_never_fires() {
    let s = feed(&[0.0, 60.0, 120.0, 180.0, 240.0]);
    assert!(s.evaluate(&PeriodicParams::default()).is_none());
    // but its statistics are there for baselines
    let st = s.analyze(&PeriodicParams::default()).unwrap();
    assert_eq!(st.on_beat, 4);
    assert!((st.period_s - 60.0).abs() < 1e-9);
}

#[test]
fn period_range_is_configurable() {
    let times: Vec<f64> = (0..20).map(|i| 6.0 * 3600.0 * f64::from(i)).collect();
    let s = feed(&times);
    assert!(s.evaluate(&PeriodicParams::default()).is_none());
    let daily = PeriodicParams {
        max_period_s: 86_400.0,
        ..PeriodicParams::default()
    };
    let v = s
        .evaluate(&daily)
        .expect("6 h schedule with the range raised");
    assert!((v.period_s - 21_600.0).abs() < 1e-6);
    // too fast
    let times: Vec<f64> = (0..200).map(|i| 3.0 * f64::from(i)).collect();
    assert!(feed(&times).evaluate(&PeriodicParams::default()).is_none());
}

#[test]
fn random_and_bursty_traffic_do_not_fire() {
    let p = PeriodicParams::default();
    for seed in 0..20 {
        let mut rng = Rng::new(1000 + seed);
        for s in [
            poisson(&mut rng, 45.0),
            poisson(&mut rng, 600.0),
            bursty(&mut rng),
        ] {
            let mut ser = PeriodicSeries::new();
            for &t in &s.ts {
                if ser.observe(at(t)) == Observed::NewBeat {
                    assert!(
                        ser.evaluate(&p).is_none(),
                        "seed {seed}: {:?}",
                        ser.analyze(&p)
                    );
                }
            }
        }
    }
}

#[test]
fn jittered_beacons_fire() {
    let p = PeriodicParams::default();
    for seed in 0..10 {
        let mut rng = Rng::new(seed);
        let kind = if seed % 2 == 0 {
            JitterKind::Uniform
        } else {
            JitterKind::Normal
        };
        let s = periodic(&mut rng, 60.0, 0.4, 0.1, kind);
        let ser = feed(&s.ts);
        let v = ser.evaluate(&p).expect("fires");
        println!(
            "seed {seed} period {:.1} jitter {:.3}",
            v.period_s, v.jitter
        );
        // 40 % jitter with 10 % missed beats: the estimate is within the jitter
        assert!((v.period_s - 60.0).abs() < 8.0, "{}", v.period_s);
        assert!(v.jitter > 0.05 && v.jitter < 0.3, "{}", v.jitter);
    }
}

#[test]
fn fold_assigns_multiples() {
    assert_eq!(fold(60.0, 60.0, 0.45, 3), Some(1));
    assert_eq!(fold(33.1, 60.0, 0.45, 3), Some(1));
    assert_eq!(fold(32.9, 60.0, 0.45, 3), None);
    assert_eq!(fold(118.0, 60.0, 0.45, 3), Some(2));
    assert_eq!(fold(185.0, 60.0, 0.45, 3), Some(3));
    assert_eq!(fold(240.0, 60.0, 0.45, 3), None); // beyond max_multiple
    assert_eq!(fold(130.0, 60.0, 0.05, 3), None); // off grid for a tight window
    assert_eq!(fold(0.0, 60.0, 0.45, 3), None);
    assert_eq!(fold(60.0, 0.0, 0.45, 3), None);
    assert_eq!(fold(f64::NAN, 60.0, 0.45, 3), None);
}

#[test]
fn null_hit_matches_closed_form() {
    // no dead time, k = 1: max over rates of P(Exp in [0.55P, 1.45P]) = 0.343
    let v = null_hit(100.0, 0.45, 1, 0.0);
    assert!((v - 0.343).abs() < 0.005, "{v}");
    // dead time makes dense random traffic look more regular
    assert!(null_hit(10.0, 0.45, 1, 2.0) > v);
    assert!(null_hit(100.0, 0.1, 1, 0.0) < 0.1);
    assert!(null_hit(100.0, 0.45, 3, 0.0) > v);
    assert_eq!(null_hit(0.0, 0.45, 1, 0.0), 1.0);
}

// ---- fixed size ----

#[test]
fn chunked_transfer_fires_with_smaller_last_chunk() {
    let mut s = SizeSeries::default();
    for i in 0..10 {
        s.observe(at(f64::from(i)), 4096 + 22);
    }
    s.observe(at(10.0), 1234); // last chunk
    let v = s.evaluate(&SizeParams::default()).expect("fires");
    assert_eq!(v.size_bytes, 4118);
    assert_eq!(v.count, 10);
    assert_eq!(v.exact, 10);
    assert_eq!(v.run, 10);
    assert_eq!(v.size_cv, 0.0);
    assert!(v.score > 0.8);
    assert_eq!(v.cadence().size_bytes, Some(4118));
}

#[test]
fn tls_overhead_variation_is_tolerated() {
    let mut s = SizeSeries::default();
    let mut rng = Rng::new(5);
    for i in 0..8 {
        s.observe(
            at(f64::from(i) * 60.0),
            16_384 + 29 + (rng.uniform() * 24.0) as u64,
        );
    }
    let v = s.evaluate(&SizeParams::default()).expect("fires");
    assert_eq!(v.count, 8);
    assert!(v.max_bytes - v.min_bytes <= 24);
}

#[test]
fn variable_telemetry_does_not_fire() {
    let p = SizeParams::default();
    for seed in 0..20 {
        let mut rng = Rng::new(50 + seed);
        let mut s = SizeSeries::default();
        for i in 0..2000 {
            let b = (1500f64.ln() + 0.6 * rng.normal()).exp() as u64;
            s.observe(at(f64::from(i)), b);
            assert!(
                s.evaluate(&p).is_none(),
                "seed {seed} at {i}: {:?}",
                s.evaluate(&p)
            );
        }
        let mut s = SizeSeries::default();
        for i in 0..2000 {
            s.observe(at(f64::from(i)), 200 + (rng.uniform() * 3800.0) as u64);
            assert!(s.evaluate(&p).is_none(), "uniform seed {seed} at {i}");
        }
    }
}

#[test]
fn floor_and_handful() {
    let mut s = SizeSeries::default();
    for i in 0..100 {
        s.observe(at(f64::from(i)), 48); // NTP
    }
    assert_eq!(s.below_floor(), 100);
    assert!(s.evaluate(&SizeParams::default()).is_none());
    for i in 0..4 {
        s.observe(at(f64::from(i)), 1000);
    }
    assert!(s.evaluate(&SizeParams::default()).is_none());
    s.observe(at(5.0), 1000);
    assert!(s.evaluate(&SizeParams::default()).is_some());
}

/// Regression (found with a lab-traffic generator other than `portent simulate`): a
/// beacon whose check-ins are 220–260 bytes under the 256-byte floor of
/// `[analytics.cadence]` showed only its top five values; chance repeats among those
/// (5 of 9 counted sizes at 256..257, "56 %") fired as a fixed-size transfer. The
/// sub-floor neighbours now count in a near-floor size's share and break its runs.
#[test]
fn sizes_spread_across_the_floor_do_not_fire() {
    let cfg = SizeConfig {
        floor: 256,
        abs_tol: 0,
        rel_tol_bp: 50,
    };
    let p = SizeParams::default();
    for seed in 0..64 {
        let mut rng = Rng::new(0xF100_0000 | seed);
        let mut s = SizeSeries::new(cfg);
        for i in 0..320 {
            let size = 220 + (rng.uniform() * 41.0) as u64;
            s.observe(at(45.0 * f64::from(i)), size);
            assert!(
                s.evaluate(&p).is_none(),
                "seed {seed} at {i}: {:?}",
                s.evaluate(&p)
            );
        }
        assert!(s.near_floor() > 0);
    }
    // The same check-ins at one fixed size are a fixed-size series, floor or not.
    let mut s = SizeSeries::new(cfg);
    for i in 0..20 {
        s.observe(at(45.0 * f64::from(i)), if i % 2 == 0 { 230 } else { 260 });
    }
    let v = s.evaluate(&p).expect("half the check-ins are 260 bytes");
    assert_eq!((v.size_bytes, v.count), (260, 10));
}

/// Far above the floor, sub-floor polls are other traffic: 512 KB chunks among polls of
/// 200 bytes (five per chunk) still fire, on their back-to-back run of counted sizes.
#[test]
fn chunks_among_small_polls_fire() {
    let cfg = SizeConfig {
        floor: 256,
        abs_tol: 0,
        rel_tol_bp: 50,
    };
    let mut s = SizeSeries::new(cfg);
    let mut t = 0.0;
    for _ in 0..5 {
        for _ in 0..5 {
            s.observe(at(t), 200);
            t += 10.0;
        }
        s.observe(at(t), 512_000);
        t += 10.0;
    }
    let v = s.evaluate(&SizeParams::default()).expect("fires");
    assert_eq!((v.size_bytes, v.count, v.run), (512_000, 5, 5));
    assert_eq!(s.near_floor(), 25);
}

#[test]
fn run_inside_busy_traffic_fires() {
    let mut rng = Rng::new(9);
    let mut s = SizeSeries::default();
    for i in 0..300 {
        s.observe(at(f64::from(i)), 200 + (rng.uniform() * 5000.0) as u64);
    }
    assert!(s.evaluate(&SizeParams::default()).is_none());
    for i in 0..6 {
        s.observe(at(400.0 + f64::from(i)), 65_536);
    }
    let v = s.evaluate(&SizeParams::default()).expect("run fires");
    assert_eq!(v.size_bytes, 65_536);
    assert!(v.share < 0.3);
    assert_eq!(v.run, 6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn periodic_never_panics(ts in proptest::collection::vec(any::<i64>(), 0..200),
                             burst in any::<i64>()) {
        let mut s = PeriodicSeries::with_burst(Dur(burst));
        for t in ts {
            s.observe(Ts(t));
            let _ = s.evaluate(&PeriodicParams::default());
        }
        if let Some(st) = s.analyze(&PeriodicParams::default()) {
            prop_assert!(st.fit >= 0.0 && st.fit <= 1.0);
            prop_assert!(st.jitter >= 0.0 && st.jitter <= 1.0);
        }
    }

    #[test]
    fn periodic_small_gaps_never_panic(gaps in proptest::collection::vec(0u32..5_000_000, 0..150)) {
        let mut s = PeriodicSeries::new();
        let mut t = 0i64;
        for g in gaps {
            t += i64::from(g) * 1_000_000;
            s.observe(Ts(t));
            if let Some(v) = s.evaluate(&PeriodicParams::default()) {
                prop_assert!(v.score >= 0.0 && v.score <= 1.0);
            }
        }
    }

    #[test]
    fn size_never_panics(obs in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..300),
                         floor in any::<u32>(), abs in any::<u32>(), rel in any::<u16>()) {
        let mut s = SizeSeries::new(SizeConfig { floor, abs_tol: abs, rel_tol_bp: rel });
        for (t, b) in obs {
            s.observe(Ts(t), b);
            if let Some(v) = s.evaluate(&SizeParams::default()) {
                prop_assert!(v.score >= 0.0 && v.score <= 1.0);
                prop_assert!(v.count <= v.total);
            }
        }
    }
}
