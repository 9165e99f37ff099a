//! The progress of a migration for people: a bar on a terminal (offline
//! `migrate`, a foreground `mount`), a log line per batch otherwise. Rates
//! are whole numbers with their unit; the ETA is shown only once it has
//! settled (early items cost more: the first record write and sync, cold
//! caches), never as a wild guess from the first few items.

use crate::units::{count, duration, items_per_second, thousands};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::fmt::Write;
use std::time::Duration;

/// A rate is shown once the run has gone on this long.
const RATE_AFTER: Duration = Duration::from_secs(1);
/// An ETA is shown once the run has gone on this long...
const ETA_AFTER: Duration = Duration::from_secs(3);
/// ... and this share of the work is done.
const ETA_SHARE: f64 = 0.1;

/// The average rate since the start, once it means something.
pub fn rate(elapsed: Duration, done: u64) -> Option<f64> {
    (elapsed >= RATE_AFTER && done > 0).then(|| done as f64 / elapsed.as_secs_f64())
}

/// Time left at the average rate since the start, once it has settled:
/// [`ETA_AFTER`] into the run and [`ETA_SHARE`] of the work done.
pub fn eta(elapsed: Duration, done: u64, total: u64) -> Option<Duration> {
    let settled = elapsed >= ETA_AFTER && done as f64 >= total as f64 * ETA_SHARE;
    (settled && done > 0 && done < total).then(|| elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// `, 1,398 items/s` and `, eta 3 s`, where known.
fn rate_and_eta(elapsed: Duration, done: u64, total: u64) -> String {
    let mut s = String::new();
    if let Some(r) = rate(elapsed, done) {
        let _ = write!(s, ", {}", items_per_second(r));
    }
    if let Some(left) = eta(elapsed, done, total) {
        let _ = write!(s, ", eta {}", duration(left));
    }
    s
}

/// The bar of a run over `len` items, drawn on standard error where it is
/// a terminal and `wanted`; hidden otherwise (it still counts, for
/// [`summary`]).
pub fn bar(wanted: bool, len: u64) -> ProgressBar {
    use std::io::IsTerminal;
    if !wanted || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{spinner} migrating [{wide_bar}] {human_pos}/{human_len} items{rate_eta}")
            .expect("the template is valid")
            // (Padded, so that the bar keeps its width when they appear.)
            .with_key("rate_eta", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:<32}", rate_and_eta(s.elapsed(), s.pos(), s.len().unwrap_or(0)));
            })
            .progress_chars("=> "),
    );
    bar
}

/// The progress as a log line: `1,024 of 3,200 items done, 1,398 items/s,
/// eta 2 s`.
pub fn summary(bar: &ProgressBar) -> String {
    let (done, total) = (bar.position(), bar.length().unwrap_or(0));
    format!(
        "{} of {} done{}",
        thousands(done),
        count(total as usize, "item"),
        rate_and_eta(bar.elapsed(), done, total)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{bytes, bytes_per_second};

    #[test]
    fn rates_are_whole_numbers_with_units() {
        assert_eq!(items_per_second(1398.4201), "1,398 items/s");
        assert_eq!(items_per_second(15.4731), "15 items/s");
        assert_eq!(items_per_second(4.74), "4.7 items/s");
        assert_eq!(bytes_per_second(15.4731 * 1048576.0), "15 MiB/s");
        assert_eq!(bytes_per_second(1398.0 * 1048576.0), "1.4 GiB/s");
        assert_eq!(bytes_per_second(1023.0 * 1048576.0), "1,023 MiB/s");
        assert_eq!(bytes(1536 << 20), "1.5 GiB");
        assert_eq!(bytes(1023), "1,023 B");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        let s = Duration::from_secs;
        assert_eq!(duration(s(7)), "7 s");
        assert_eq!(duration(Duration::from_millis(4700)), "5 s");
        assert_eq!(duration(s(420)), "7 min");
        assert_eq!(duration(s(200)), "3 min 20 s");
        assert_eq!(duration(s(7500)), "2 h 5 min");
        assert_eq!(duration(s(7200)), "2 h");
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1, "item"), "1 item");
        assert_eq!(count(0, "item"), "0 items");
        assert_eq!(count(38, "item"), "38 items");
        assert_eq!(count(1, "entry"), "1 entry");
        assert_eq!(count(2, "entry"), "2 entries");
        assert_eq!(count(3200, "problem"), "3,200 problems");
    }

    /// The run of the issue: 4.7 s, whose first items came slowly (the
    /// first record write and sync). Its first ETA said 7 minutes.
    #[test]
    fn the_eta_waits_until_it_has_settled() {
        let ms = Duration::from_millis;
        // Nothing at first, however slow the first items.
        assert_eq!(eta(ms(200), 1, 6000), None);
        assert_eq!(eta(ms(2900), 3000, 6000), None);
        assert_eq!(rate(ms(900), 10), None);
        // Too little done to tell, even late.
        assert_eq!(eta(ms(5000), 100, 6000), None);
        // Then the average rate since the start.
        assert_eq!(eta(ms(3000), 4000, 6000), Some(ms(1500)));
        assert_eq!(rate(ms(2000), 3000), Some(1500.0));
        // Done: nothing left to guess.
        assert_eq!(eta(ms(4700), 6000, 6000), None);
        assert_eq!(rate_and_eta(ms(500), 10, 6000), "");
        assert_eq!(rate_and_eta(ms(3000), 4000, 6000), ", 1,333 items/s, eta 2 s");
    }

    #[test]
    fn a_hidden_bar_still_counts_for_the_log_lines() {
        let bar = bar(false, 3200);
        bar.inc(1024);
        assert!(bar.is_hidden());
        assert!(
            summary(&bar).starts_with("1,024 of 3,200 items done"),
            "{}",
            summary(&bar)
        );
    }
}
