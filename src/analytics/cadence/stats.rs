//! Small robust statistics over sorted slices: median, MAD, Tukey-hinge quartiles,
//! Bowley skew, and a binomial tail for significance. Everything works on caller-owned
//! (usually stack) slices and never allocates.

/// Sorts `xs` ascending with a total order (NaN last); no allocation.
pub fn sort(xs: &mut [f64]) {
    xs.sort_unstable_by(|a, b| a.total_cmp(b));
}

/// Median of an already sorted slice; `None` when empty.
pub fn median_sorted(s: &[f64]) -> Option<f64> {
    let n = s.len();
    if n == 0 {
        return None;
    }
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// Median absolute deviation about the median of a sorted slice (unscaled:
/// `median(|x - median(x)|)`); `None` when empty. Uses a stack buffer of up to
/// [`MAX_STACK`] values; longer slices are truncated to their central part.
pub fn mad_sorted(s: &[f64]) -> Option<f64> {
    let m = median_sorted(s)?;
    let mut buf = [0.0f64; MAX_STACK];
    let s = central(s);
    let dev = &mut buf[..s.len()];
    for (d, x) in dev.iter_mut().zip(s) {
        *d = (x - m).abs();
    }
    sort(dev);
    median_sorted(dev)
}

/// Largest slice the stack helpers handle in one piece.
pub const MAX_STACK: usize = 128;

fn central(s: &[f64]) -> &[f64] {
    if s.len() <= MAX_STACK {
        s
    } else {
        let cut = (s.len() - MAX_STACK) / 2;
        &s[cut..cut + MAX_STACK]
    }
}

/// Quartiles `(Q1, Q2, Q3)` of a sorted slice by Tukey's hinges: Q1 and Q3 are the
/// medians of the lower and upper halves, the median itself excluded when the length is
/// odd (the method of Go's `montanaflynn/stats.Quartile`, which RITA uses). A single
/// value gives `(x, x, x)`; `None` when empty.
pub fn quartiles_sorted(s: &[f64]) -> Option<(f64, f64, f64)> {
    let n = s.len();
    let q2 = median_sorted(s)?;
    if n == 1 {
        return Some((q2, q2, q2));
    }
    let (lo, hi) = if n.is_multiple_of(2) {
        (&s[..n / 2], &s[n / 2..])
    } else {
        (&s[..n / 2], &s[n / 2 + 1..])
    };
    Some((median_sorted(lo)?, q2, median_sorted(hi)?))
}

/// Bowley (quartile) skewness `(Q1 + Q3 - 2·Q2) / (Q3 - Q1)`, in `[-1, 1]`; 0 when the
/// inter-quartile range is below `min_iqr` or the median sits on a quartile (a spike of
/// identical values is not skewed, it is regular).
pub fn bowley(q1: f64, q2: f64, q3: f64, min_iqr: f64) -> f64 {
    let iqr = q3 - q1;
    if iqr.is_nan() || iqr < min_iqr || iqr <= 0.0 || q2 == q1 || q2 == q3 {
        return 0.0;
    }
    ((q1 + q3 - 2.0 * q2) / iqr).clamp(-1.0, 1.0)
}

/// `P(X >= c)` for `X ~ Binomial(n, p)`, exact by summing the pmf (n is small here).
pub fn binomial_tail(n: u32, c: u32, p: f64) -> f64 {
    if c == 0 {
        return 1.0;
    }
    if c > n {
        return 0.0;
    }
    let p = p.clamp(0.0, 1.0);
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // log pmf(c) = ln C(n,c) + c ln p + (n-c) ln(1-p), then walk upward.
    let mut ln_c = 0.0f64;
    for i in 0..c {
        ln_c += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    let mut pmf = (ln_c + c as f64 * p.ln() + (n - c) as f64 * (1.0 - p).ln()).exp();
    let ratio = p / (1.0 - p);
    let mut sum = 0.0;
    for k in c..=n {
        sum += pmf;
        pmf *= (n - k) as f64 / (k + 1) as f64 * ratio;
    }
    sum.clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median_sorted(&[]), None);
        assert_eq!(median_sorted(&[3.0]), Some(3.0));
        assert_eq!(median_sorted(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median_sorted(&[1.0, 2.0, 4.0, 10.0]), Some(3.0));
    }

    #[test]
    fn mad_known_values() {
        // |x - 100| for 98..102 = 2,1,1,0,0,0,1,1,2 -> median 1
        let s = [98.0, 99.0, 99.0, 100.0, 100.0, 100.0, 101.0, 101.0, 102.0];
        assert_eq!(mad_sorted(&s), Some(1.0));
        let s = [60.0; 9];
        assert_eq!(mad_sorted(&s), Some(0.0));
        let mut s = [1.0, 299.0, 25.0, 4975.0, 90.0, 2.0, 42.0, 500.0, 1500.0];
        sort(&mut s);
        assert_eq!(mad_sorted(&s), Some(89.0));
        assert_eq!(mad_sorted(&[]), None);
    }

    #[test]
    fn quartiles_tukey_hinges() {
        let s: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(quartiles_sorted(&s), Some((3.0, 5.5, 8.0)));
        let mut s = [1.0, 299.0, 25.0, 4975.0, 90.0, 2.0, 42.0, 500.0, 1500.0];
        sort(&mut s);
        assert_eq!(quartiles_sorted(&s), Some((13.5, 90.0, 1000.0)));
        assert_eq!(quartiles_sorted(&[7.0]), Some((7.0, 7.0, 7.0)));
        assert_eq!(quartiles_sorted(&[1.0, 3.0]), Some((1.0, 2.0, 3.0)));
    }

    #[test]
    fn bowley_skew() {
        assert!((bowley(13.5, 90.0, 1000.0, 10.0) - 0.8449).abs() < 1e-3);
        assert_eq!(bowley(99.0, 100.0, 101.0, 10.0), 0.0); // IQR below floor
        assert_eq!(bowley(98.0, 98.0, 300.0, 10.0), 0.0); // median on a quartile
        assert!((bowley(0.0, 1.0, 4.0, 0.0) - 0.5).abs() < 1e-12);
        assert!(bowley(0.0, 3.0, 4.0, 0.0) < 0.0);
        assert_eq!(bowley(f64::NAN, 1.0, 2.0, 0.0), 0.0);
    }

    #[test]
    fn binomial_tail_values() {
        assert_eq!(binomial_tail(10, 0, 0.3), 1.0);
        assert_eq!(binomial_tail(10, 11, 0.3), 0.0);
        assert!((binomial_tail(1, 1, 0.3) - 0.3).abs() < 1e-12);
        // P(Bin(10, .5) >= 9) = 11/1024
        assert!((binomial_tail(10, 9, 0.5) - 11.0 / 1024.0).abs() < 1e-12);
        assert!(binomial_tail(63, 60, 0.4) < 1e-18);
    }
}
