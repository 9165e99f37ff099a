//! Deterministic timestamps, and Go's RFC3339Nano rendering of them.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// 2013-05-01T00:00:00Z: legacy roots date from Docker 0.3 to 0.6.
pub(crate) const EPOCH: i64 = 1_367_366_400;
pub(crate) const DAY: i64 = 86_400;

/// A point in time, seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Stamp {
    pub fn new(secs: i64, nanos: u32) -> Stamp {
        Stamp { secs, nanos }
    }

    pub fn after_secs(self, secs: i64) -> Stamp {
        Stamp::new(self.secs + secs, self.nanos)
    }

    /// A random instant in `[self - span, self]`, never before EPOCH - span.
    pub fn before(self, rng: &mut ChaCha8Rng, span: i64) -> Stamp {
        Stamp::new(
            self.secs - rng.random_range(0..span.max(1)),
            rng.random_range(0..1_000_000_000),
        )
    }

    /// A random instant in `[self, self + span]`.
    pub fn after(self, rng: &mut ChaCha8Rng, span: i64) -> Stamp {
        Stamp::new(
            self.secs + rng.random_range(0..span.max(1)),
            rng.random_range(0..1_000_000_000),
        )
    }

    /// Go's `time.RFC3339Nano` ("2006-01-02T15:04:05.999999999Z07:00") for the local
    /// time at `offset_minutes` east of UTC: trailing zeros of the fraction dropped.
    pub fn rfc3339_nano(self, offset_minutes: i32) -> String {
        let mut s = self.civil(offset_minutes);
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push_str(&zone(offset_minutes));
        s
    }

    /// Go's zero `time.Time` as encoding/json writes it, for "never happened".
    pub fn zero_rfc3339() -> &'static str {
        "0001-01-01T00:00:00Z"
    }

    /// `2013-05-01T12:00:00` in the zone `offset_minutes` east of UTC.
    fn civil(self, offset_minutes: i32) -> String {
        let local = self.secs + i64::from(offset_minutes) * 60;
        let (days, rem) = (local.div_euclid(DAY), local.rem_euclid(DAY));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

fn zone(offset_minutes: i32) -> String {
    if offset_minutes == 0 {
        return "Z".to_string();
    }
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let m = offset_minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_go_rfc3339nano() {
        assert_eq!(Stamp::new(EPOCH, 0).rfc3339_nano(0), "2013-05-01T00:00:00Z");
        assert_eq!(
            Stamp::new(1_379_524_873, 618_433_700).rfc3339_nano(-7 * 60),
            "2013-09-18T10:21:13.6184337-07:00"
        );
        assert_eq!(
            Stamp::new(951_782_400, 5).rfc3339_nano(330),
            "2000-02-29T05:30:00.000000005+05:30"
        );
    }
}
