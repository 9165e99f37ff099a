//! Waiting, bounded, for something to happen: a condition polled until it
//! holds, a process until it has ended.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

/// Polls `f` every 20 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` has ended: gone, or a zombie nobody reaped yet
/// (or one being reaped).
pub fn has_ended(pid: i32) -> bool {
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
    });
    matches!(state, None | Some('Z') | Some('X'))
}

/// Whether process `pid` ends within `timeout` (see [`has_ended`]).
pub fn ends_within(pid: i32, timeout: Duration) -> bool {
    wait_for(timeout, || has_ended(pid).then_some(())).is_some()
}
