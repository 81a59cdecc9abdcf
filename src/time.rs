//! Packet time. Every stage after capture runs on the timestamps of the packets it sees,
//! never on the wall clock: that is what makes a replay deterministic and lets a six-hour
//! capture run as fast as the CPU allows. Live capture passes the same kind of clock.

use std::fmt;

/// Nanoseconds since the Unix epoch, as stamped by the capture.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Ts(pub i64);

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

impl Ts {
    pub const ZERO: Ts = Ts(0);
    pub const MAX: Ts = Ts(i64::MAX);

    pub fn from_secs_f64(s: f64) -> Ts {
        Ts((s * NANOS_PER_SEC as f64).round() as i64)
    }
    pub fn from_secs(s: i64) -> Ts {
        Ts(s.saturating_mul(NANOS_PER_SEC))
    }
    pub fn from_micros(us: i64) -> Ts {
        Ts(us.saturating_mul(1_000))
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
    pub fn secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }
    pub fn saturating_add(self, d: Dur) -> Ts {
        Ts(self.0.saturating_add(d.0))
    }
    pub fn saturating_sub(self, d: Dur) -> Ts {
        Ts(self.0.saturating_sub(d.0))
    }
    /// `self - earlier`, never negative.
    pub fn since(self, earlier: Ts) -> Dur {
        Dur(self.0.saturating_sub(earlier.0).max(0))
    }
    /// RFC 3339, UTC, microsecond precision: `2026-11-20T10:00:03.221409Z`.
    pub fn rfc3339(self) -> Rfc3339 {
        Rfc3339(self)
    }

    /// Appends the RFC 3339 form (as [`Ts::rfc3339`]) to a byte buffer, without
    /// `fmt` machinery: flow records print one per flow.
    pub fn push_rfc3339(self, out: &mut Vec<u8>) {
        let ns = self.0;
        let secs = ns.div_euclid(NANOS_PER_SEC);
        let micros = ns.rem_euclid(NANOS_PER_SEC) / 1_000;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        if !(0..=9999).contains(&y) {
            out.extend_from_slice(self.rfc3339().to_string().as_bytes());
            return;
        }
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        // Two digits at a time from a table: a digit at a time cost a division each.
        let mut pair = |at: usize, v: i64| {
            let r = (v % 100) as usize * 2;
            b[at..at + 2].copy_from_slice(&crate::output::fmt::PAIRS[r..r + 2]);
        };
        pair(0, y / 100);
        pair(2, y % 100);
        pair(5, m as i64);
        pair(8, d as i64);
        pair(11, sod / 3600);
        pair(14, sod % 3600 / 60);
        pair(17, sod % 60);
        pair(20, micros / 10_000);
        pair(22, micros / 100 % 100);
        pair(24, micros % 100);
        out.extend_from_slice(&b);
    }

    /// Parses RFC 3339 (`Z` or `±hh:mm` offset, optional fraction of any length).
    pub fn parse_rfc3339(s: &str) -> Option<Ts> {
        let b = s.as_bytes();
        if b.len() < 19 {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = s.get(r)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
            return None;
        }
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos: i64 = 0;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + (b[i] - b'0') as i64;
                }
                i += 1;
            }
            let digits = (i - start).min(9);
            if i == start {
                return None;
            }
            nanos *= 10i64.pow((9 - digits) as u32);
        }
        let offset_secs = match b.get(i) {
            Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
            Some(&c @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                let o = oh * 3600 + om * 60;
                if c == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
        Some(Ts(secs.checked_mul(NANOS_PER_SEC)?.checked_add(nanos)?))
    }
}

/// A span of packet time in nanoseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Dur(pub i64);

impl Dur {
    pub const ZERO: Dur = Dur(0);
    pub fn from_secs(s: i64) -> Dur {
        Dur(s.saturating_mul(NANOS_PER_SEC))
    }
    pub fn from_millis(ms: i64) -> Dur {
        Dur(ms.saturating_mul(1_000_000))
    }
    pub fn from_secs_f64(s: f64) -> Dur {
        Dur((s * NANOS_PER_SEC as f64).round() as i64)
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }
}

/// Howard Hinnant's days-from-civil: days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Display adapter for [`Ts::rfc3339`]; formats without allocating.
pub struct Rfc3339(Ts);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0 .0;
        let secs = ns.div_euclid(NANOS_PER_SEC);
        let micros = ns.rem_euclid(NANOS_PER_SEC) / 1_000;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            y,
            m,
            d,
            sod / 3600,
            (sod % 3600) / 60,
            sod % 60,
            micros
        )
    }
}

impl serde::Serialize for Ts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_contract_example() {
        let t = Ts::parse_rfc3339("2026-11-20T10:00:03.221409Z").unwrap();
        assert_eq!(t.rfc3339().to_string(), "2026-11-20T10:00:03.221409Z");
        assert_eq!(Ts(0).rfc3339().to_string(), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let a = Ts::parse_rfc3339("2026-11-20T10:00:01.120Z").unwrap();
        let b = Ts::parse_rfc3339("2026-11-20T11:00:01.12+01:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.0 % NANOS_PER_SEC, 120_000_000);
        assert!(Ts::parse_rfc3339("2026-13-20T10:00:00Z").is_none());
        assert!(Ts::parse_rfc3339("garbage").is_none());
        assert!(Ts::parse_rfc3339("2026-11-20T10:00:00").is_none());
        assert!(Ts::parse_rfc3339("2026-11-20T10:00:00.Z").is_none());
    }

    #[test]
    fn push_form_matches_display() {
        for t in [
            0i64,
            1_700_000_000_123_456_789,
            -86_400_000_000_123,
            253_402_300_799_999_999,
        ] {
            let mut v = Vec::new();
            Ts(t).push_rfc3339(&mut v);
            assert_eq!(String::from_utf8(v).unwrap(), Ts(t).rfc3339().to_string());
        }
    }

    #[test]
    fn round_trips_many_dates() {
        for days in (-100_000i64..100_000).step_by(97) {
            let t = Ts(days * 86_400 * NANOS_PER_SEC + 12_345_678_000);
            let s = t.rfc3339().to_string();
            assert_eq!(Ts::parse_rfc3339(&s), Some(t), "{s}");
        }
    }
}
