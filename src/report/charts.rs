//! The data behind each chart (bins, markers, points) and its inline SVG. The data
//! functions are separate from drawing so they can be tested on hand-made evidence.

use std::fmt::Write;

/// Equal-width bins over `[lo, hi)`; the last bin takes `hi` itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Bins {
    pub lo: f64,
    pub width: f64,
    pub counts: Vec<u64>,
}

impl Bins {
    pub fn hi(&self) -> f64 {
        self.lo + self.width * self.counts.len() as f64
    }

    /// Horizontal position (0..1) of a value on this axis.
    pub fn frac(&self, x: f64) -> f64 {
        let span = self.hi() - self.lo;
        if span > 0.0 {
            ((x - self.lo) / span).clamp(0.0, 1.0)
        } else {
            0.5
        }
    }
}

/// Histogram of `values` in `n` bins spanning their range widened to include `extra`
/// (a marker that must be on the axis, such as the detected period). Non-finite values
/// are ignored.
pub fn histogram(values: &[f64], n: usize, extra: &[f64]) -> Bins {
    let n = n.max(1);
    let finite = || {
        values
            .iter()
            .chain(extra)
            .copied()
            .filter(|v| v.is_finite())
    };
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return Bins {
            lo: 0.0,
            width: 1.0,
            counts: vec![0; n],
        };
    }
    // A little room on both sides so markers at the ends stay visible.
    let pad = ((hi - lo) * 0.05).max(if lo == hi { lo.abs() * 0.1 + 1.0 } else { 0.0 });
    let (lo, hi) = ((lo - pad).max(0.0_f64.min(lo)), hi + pad);
    let width = (hi - lo) / n as f64;
    let mut counts = vec![0u64; n];
    for v in values.iter().copied().filter(|v| v.is_finite()) {
        let i = (((v - lo) / width) as usize).min(n - 1);
        counts[i] += 1;
    }
    Bins { lo, width, counts }
}

/// Seconds between consecutive starts (sorted first).
pub fn intervals(starts: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = starts.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    s.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The detected period and its jitter band (period ± jitter × period, at least 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeriodMarker {
    pub period: f64,
    pub lo: f64,
    pub hi: f64,
}

pub fn period_marker(period_s: f64, jitter: f64) -> Option<PeriodMarker> {
    if !(period_s.is_finite() && period_s > 0.0) {
        return None;
    }
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Some(PeriodMarker {
        period: period_s,
        lo: (period_s * (1.0 - j)).max(0.0),
        hi: period_s * (1.0 + j),
    })
}

/// One connection on the timeline: x in 0..1 over the time range, y in 0..1 of the
/// largest outbound byte count (log scale, so a keepalive and a bulk upload both show).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimelinePoint {
    pub x: f64,
    pub y: f64,
    pub t: f64,
    pub bytes: u64,
}

pub fn timeline_points(conns: &[(f64, u64)], t0: f64, t1: f64) -> Vec<TimelinePoint> {
    let span = (t1 - t0).max(1e-9);
    let max = conns.iter().map(|c| c.1).max().unwrap_or(0);
    let ly = |b: u64| {
        if max == 0 {
            0.0
        } else {
            (b as f64).ln_1p() / (max as f64).ln_1p()
        }
    };
    conns
        .iter()
        .filter(|(t, _)| t.is_finite())
        .map(|&(t, bytes)| TimelinePoint {
            x: ((t - t0) / span).clamp(0.0, 1.0),
            y: ly(bytes),
            t,
            bytes,
        })
        .collect()
}

const W: f64 = 640.0;
const H: f64 = 170.0;
const PAD_L: f64 = 56.0;
const PAD_R: f64 = 12.0;
const PAD_T: f64 = 14.0;
const PAD_B: f64 = 30.0;

fn plot_w() -> f64 {
    W - PAD_L - PAD_R
}
fn plot_h() -> f64 {
    H - PAD_T - PAD_B
}

fn open_svg(out: &mut String, label: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">"#
    );
    let _ = write!(
        out,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{}" height="{}" fill="#fafbfc" stroke="#d0d7de"/>"##,
        plot_w(),
        plot_h()
    );
}

fn axis_label(out: &mut String, x: f64, y: f64, anchor: &str, text: &str) {
    let _ = write!(
        out,
        r##"<text x="{x:.1}" y="{y:.1}" font-size="11" fill="#57606a" text-anchor="{anchor}">{}</text>"##,
        super::html::esc(text)
    );
}

/// Connection starts against bytes sent; markers for the alert (and a DNS answer).
pub fn timeline_svg(
    points: &[TimelinePoint],
    t0: f64,
    t1: f64,
    marks: &[(f64, &str, &str)],
    fmt_t: impl Fn(f64) -> String,
) -> String {
    let mut s = String::new();
    open_svg(&mut s, "connections over time, bytes sent");
    let span = (t1 - t0).max(1e-9);
    let max = points.iter().map(|p| p.bytes).max().unwrap_or(0);
    for &(t, color, label) in marks {
        let x = PAD_L + ((t - t0) / span).clamp(0.0, 1.0) * plot_w();
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{PAD_T}" x2="{x:.1}" y2="{:.1}" stroke="{color}" stroke-dasharray="4 3"/>"#,
            PAD_T + plot_h()
        );
        // Labels near the right edge go to the left of their line.
        if x > PAD_L + 0.75 * plot_w() {
            axis_label(&mut s, x - 3.0, PAD_T + 11.0, "end", label);
        } else {
            axis_label(&mut s, x + 3.0, PAD_T + 11.0, "start", label);
        }
    }
    for p in points {
        let x = PAD_L + p.x * plot_w();
        let y = PAD_T + plot_h() - p.y * (plot_h() - 6.0) - 3.0;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{y:.1}" stroke="#8c959f" stroke-width="1"/><circle cx="{x:.1}" cy="{y:.1}" r="3" fill="#0969da"><title>{} · {} bytes out</title></circle>"##,
            PAD_T + plot_h(),
            super::html::esc(&fmt_t(p.t)),
            p.bytes
        );
    }
    axis_label(&mut s, PAD_L, H - 10.0, "start", &fmt_t(t0));
    axis_label(&mut s, W - PAD_R, H - 10.0, "end", &fmt_t(t1));
    axis_label(
        &mut s,
        PAD_L - 4.0,
        PAD_T + 10.0,
        "end",
        &format!("{max} B"),
    );
    axis_label(&mut s, PAD_L - 4.0, PAD_T + plot_h(), "end", "0");
    s.push_str("</svg>");
    s
}

/// Bars of a histogram; an optional marker line with a shaded band (period ± jitter, or
/// the repeated size).
pub fn histogram_svg(
    b: &Bins,
    marker: Option<(f64, f64, f64, &str)>,
    unit: &str,
    label: &str,
) -> String {
    let mut s = String::new();
    open_svg(&mut s, label);
    let n = b.counts.len().max(1) as f64;
    let top = b.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    if let Some((lo, mid, hi, text)) = marker {
        let (xl, xm, xh) = (
            PAD_L + b.frac(lo) * plot_w(),
            PAD_L + b.frac(mid) * plot_w(),
            PAD_L + b.frac(hi) * plot_w(),
        );
        let _ = write!(
            s,
            r##"<rect x="{xl:.1}" y="{PAD_T}" width="{:.1}" height="{:.1}" fill="#fff8c5"/><line x1="{xm:.1}" y1="{PAD_T}" x2="{xm:.1}" y2="{:.1}" stroke="#bf8700" stroke-width="2"/>"##,
            (xh - xl).max(1.0),
            plot_h(),
            PAD_T + plot_h()
        );
        if xm > PAD_L + 0.75 * plot_w() {
            axis_label(&mut s, xm - 4.0, PAD_T + 11.0, "end", text);
        } else {
            axis_label(&mut s, xm + 4.0, PAD_T + 11.0, "start", text);
        }
    }
    let bw = plot_w() / n;
    for (i, &c) in b.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let h = c as f64 / top * (plot_h() - 4.0);
        let x = PAD_L + i as f64 * bw;
        let lo = b.lo + i as f64 * b.width;
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#0969da" opacity="0.8"><title>{} in {:.1}..{:.1} {unit}</title></rect>"##,
            x + 0.5,
            PAD_T + plot_h() - h,
            (bw - 1.0).max(1.0),
            c,
            lo,
            lo + b.width
        );
    }
    axis_label(
        &mut s,
        PAD_L,
        H - 10.0,
        "start",
        &format!("{:.1} {unit}", b.lo),
    );
    axis_label(
        &mut s,
        W - PAD_R,
        H - 10.0,
        "end",
        &format!("{:.1} {unit}", b.hi()),
    );
    axis_label(&mut s, PAD_L - 4.0, PAD_T + 10.0, "end", &format!("{top}"));
    axis_label(&mut s, PAD_L - 4.0, PAD_T + plot_h(), "end", "0");
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_bins_cover_values_and_markers() {
        let b = histogram(&[10.0, 10.0, 15.0, 20.0], 10, &[30.0]);
        assert_eq!(b.counts.iter().sum::<u64>(), 4);
        assert!(b.lo <= 10.0 && b.hi() >= 30.0, "{b:?}");
        // The two 10 s intervals share the first occupied bin.
        let first = b.counts.iter().position(|&c| c > 0).unwrap();
        assert_eq!(b.counts[first], 2);
        // The marker at 30 sits inside the axis, right of every bar.
        assert!(b.frac(30.0) > b.frac(20.0) && b.frac(30.0) < 1.0);
    }

    #[test]
    fn histogram_of_one_value_or_nothing() {
        let b = histogram(&[5.0, 5.0, 5.0], 4, &[]);
        assert_eq!(b.counts.iter().sum::<u64>(), 3);
        assert!(b.lo < 5.0 && b.hi() > 5.0);
        let e = histogram(&[], 4, &[f64::NAN]);
        assert_eq!(e.counts, vec![0; 4]);
    }

    #[test]
    fn intervals_are_sorted_differences() {
        assert_eq!(intervals(&[30.0, 0.0, 10.0]), vec![10.0, 20.0]);
        assert!(intervals(&[1.0]).is_empty());
    }

    #[test]
    fn period_marker_band() {
        let m = period_marker(60.0, 0.25).unwrap();
        assert_eq!((m.lo, m.period, m.hi), (45.0, 60.0, 75.0));
        assert_eq!(period_marker(60.0, 3.0).unwrap().lo, 0.0);
        assert!(period_marker(0.0, 0.1).is_none());
        assert!(period_marker(f64::NAN, 0.1).is_none());
    }

    #[test]
    fn timeline_points_scale_time_and_bytes() {
        let p = timeline_points(&[(100.0, 0), (150.0, 99), (200.0, 9999)], 100.0, 200.0);
        assert_eq!(p.len(), 3);
        assert_eq!((p[0].x, p[1].x, p[2].x), (0.0, 0.5, 1.0));
        assert_eq!(p[0].y, 0.0);
        assert_eq!(p[2].y, 1.0);
        assert!((p[1].y - 0.5).abs() < 0.01, "log scale: {}", p[1].y);
    }

    #[test]
    fn svgs_are_well_formed_enough() {
        let b = histogram(&[1.0, 2.0], 5, &[]);
        let s = histogram_svg(&b, Some((0.5, 1.0, 1.5, "period <&>")), "s", "x");
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("period &lt;&amp;&gt;"));
        let t = timeline_svg(&[], 0.0, 1.0, &[(0.5, "red", "alert")], |t| format!("{t}"));
        assert!(t.contains("alert") && t.ends_with("</svg>"));
    }
}
