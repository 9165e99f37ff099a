//! The clocks change detection compares against.

pub use rustix::time::ClockId as Clock;

/// Nanoseconds on `clock` now (the clocks used are always there on Linux:
/// rustix's call cannot fail for them).
pub fn nanos(clock: Clock) -> i128 {
    let t = rustix::time::clock_gettime(clock);
    t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128
}
